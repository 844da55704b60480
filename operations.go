package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
	"unicode/utf8"
)

// The routes for operators: dead letters, metrics, health and readiness.

// maxRejectedPage bounds the bytes of payloads and reasons in one page
// of GET /api/rejected; a page stops early, after at least one message,
// once they pass it.
const maxRejectedPage = 1 << 20

// rejectedJSON is how a rejected message is listed. The payload is shown
// as text when it is UTF-8, and in base64 otherwise.
type rejectedJSON struct {
	ID            int64     `json:"id"`
	Channel       string    `json:"channel"`
	Sequence      uint64    `json:"sequence"`
	Reason        string    `json:"reason"`
	RejectedAt    time.Time `json:"rejected_at"`
	Payload       *string   `json:"payload"`
	PayloadBase64 string    `json:"payload_base64,omitempty"`
}

// handleRejected serves GET /api/rejected: stream messages that could not
// become orders, oldest first, a page at a time.
func (s *server) handleRejected(w http.ResponseWriter, r *http.Request) {
	if !s.dbReady.Load() {
		s.error(w, r, errDBStarting)
		return
	}
	after, limit, err := parseRejectedQuery(r.URL.Query())
	if err != nil {
		s.error(w, r, err)
		return
	}
	type result struct {
		msgs []RejectedMessage
		more bool
	}
	res, err := callDB(s.workers, r.Context(), s.dbTimeout, func(ctx context.Context) (result, error) {
		msgs, more, err := s.store.Rejected(ctx, after, limit, maxRejectedPage)
		return result{msgs, more}, err
	})
	if err != nil {
		s.error(w, r, err)
		return
	}

	if res.more && len(res.msgs) > 0 {
		next := url.Values{"after": {strconv.FormatInt(res.msgs[len(res.msgs)-1].ID, 10)}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", r.URL.Path, next.Encode()))
	}
	// One message at a time: a text payload grows up to six times as a
	// JSON string, and the page is held once, not twice.
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(http.StatusOK)
	io.WriteString(w, "[")
	for i, m := range res.msgs {
		if i > 0 {
			io.WriteString(w, ",")
		}
		out := rejectedJSON{ID: m.ID, Channel: m.Channel, Sequence: m.Sequence, Reason: m.Reason, RejectedAt: m.RejectedAt}
		if utf8.Valid(m.Payload) {
			text := string(m.Payload)
			out.Payload = &text
		} else {
			out.PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
		}
		body, err := json.Marshal(out)
		if err != nil {
			panic(err) // a struct of strings, numbers and a time
		}
		w.Write(body)
	}
	io.WriteString(w, "]\n")
}

// parseRejectedQuery reads after (an id, default 0) and limit (default
// 100).
func parseRejectedQuery(q url.Values) (after int64, limit int, err error) {
	if err := checkQuery(q); err != nil {
		return 0, 0, err
	}
	if limit, err = parseLimit(q, 100); err != nil {
		return 0, 0, err
	}
	if v := q.Get("after"); v != "" {
		after, err = strconv.ParseInt(v, 10, 64)
		if err != nil || after < 0 {
			return 0, 0, badRequest("after must be a rejected message id (a non-negative integer), got %q", v)
		}
	}
	return after, limit, nil
}

// handleVars serves GET /debug/vars: the process's expvar variables and
// the service's counters.
func (s *server) handleVars(w http.ResponseWriter, r *http.Request) {
	s.metrics.ServeHTTP(w, r)
}

// handleHealth serves GET /healthz: the process is alive.
func (s *server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
}

// handleReady serves GET /readyz: 200 when the cache is loaded, the
// database answers, the stream is connected and ingestion advances; 503
// otherwise. The body names the state of each.
func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	state := func(ok bool, good, bad string) string {
		if ok {
			return good
		}
		return bad
	}

	dbOK := false
	if s.dbReady.Load() {
		_, err := callDB(s.workers, r.Context(), s.dbTimeout, func(ctx context.Context) (struct{}, error) {
			return struct{}{}, s.store.Ping(ctx)
		})
		dbOK = err == nil
	}
	cacheOK := s.cacheReady.Load()
	streamOK := s.ingester != nil && s.ingester.Connected()
	ingestOK := s.ingester != nil && !s.ingester.Failing()

	ready := dbOK && cacheOK && streamOK && ingestOK
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{
		"status":    state(ready, "ready", "not ready"),
		"database":  state(dbOK, "up", "down"),
		"cache":     state(cacheOK, "loaded", "loading"),
		"stream":    state(streamOK, "connected", "disconnected"),
		"ingestion": state(ingestOK, "ok", "retrying"),
		"orders":    s.cache.Len(),
	})
}
