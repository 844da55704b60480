package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strconv"
	"sync/atomic"
	"time"
	"unicode/utf8"
)

// Limits of the list routes.
const (
	maxPageLimit = 1000 // largest limit a client may ask for
	scanChunk    = 256  // orders read per step when streaming a whole list
)

// server serves the HTTP API. Its dependencies are set before it serves;
// the ready flags open the database and cache routes once their data is
// there, so a client never reads a half-loaded cache.
type server struct {
	log       *slog.Logger
	metrics   *Metrics
	store     *Store
	cache     *Cache
	svc       *Service
	ingester  *Ingester
	dbTimeout time.Duration
	maxBody   int64
	// logRequests logs a line per request; pprof serves profiles.
	logRequests bool
	pprof       bool

	dbReady    atomic.Bool
	cacheReady atomic.Bool
}

// apiRoute is one documented route of the API.
type apiRoute struct {
	pattern string
	handler func(*server, http.ResponseWriter, *http.Request)
}

// apiRoutes lists every route swagger.json documents, in the same terms;
// a test holds the two equal.
var apiRoutes = []apiRoute{
	{"GET /api/models", (*server).handleList},
	{"POST /api/models", (*server).handleCreate},
	{"GET /api/models/{id}", (*server).handleGet},
	{"DELETE /api/models/{id}", (*server).handleDelete},
	{"GET /api/models/cache", (*server).handleCacheList},
	{"GET /api/models/cache/{id}", (*server).handleCacheGet},
	{"GET /api/rejected", (*server).handleRejected},
	{"GET /healthz", (*server).handleHealth},
	{"GET /readyz", (*server).handleReady},
	{"GET /debug/vars", (*server).handleVars},
}

// routes returns the handler for every route the service serves.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range apiRoutes {
		mux.HandleFunc(rt.pattern, func(w http.ResponseWriter, r *http.Request) {
			rt.handler(s, w, r)
		})
	}
	page, files := lookupHandler()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /web/", files)
	mux.Handle("GET /swagger/", http.StripPrefix("/swagger", swaggerHandler()))
	mux.Handle("GET /swagger", http.RedirectHandler("/swagger/index.html", http.StatusMovedPermanently))
	if s.pprof {
		mux.HandleFunc("GET /debug/pprof/", pprof.Index)
		mux.HandleFunc("GET /debug/pprof/cmdline", pprof.Cmdline)
		mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
		mux.HandleFunc("GET /debug/pprof/symbol", pprof.Symbol)
		mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	}
	return s.instrument(s.jsonFallback(mux))
}

// Errors a request can cause before it reaches the store.
var (
	errNotJSON      = &httpError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	errCacheLoading = &httpError{http.StatusServiceUnavailable, "cache is still loading, retry later"}
	errDBStarting   = &httpError{http.StatusServiceUnavailable, "database is not connected yet, retry later"}
)

// An httpError is an error whose status and message go to the client as
// they are.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// handleList serves GET /api/models: orders from the database, in
// order_uid order, optionally one page at a time.
func (s *server) handleList(w http.ResponseWriter, r *http.Request) {
	if !s.dbReady.Load() {
		s.error(w, r, errDBStarting)
		return
	}
	s.list(w, r, func(ctx context.Context, dst [][]byte, after string, n int) ([][]byte, string, error) {
		ctx, cancel := context.WithTimeout(ctx, s.dbTimeout)
		defer cancel()
		return s.store.Scan(ctx, dst, after, n)
	})
}

// handleCacheList serves GET /api/models/cache: the same list as
// handleList, from the cache.
func (s *server) handleCacheList(w http.ResponseWriter, r *http.Request) {
	if !s.cacheReady.Load() {
		s.error(w, r, errCacheLoading)
		return
	}
	s.list(w, r, func(_ context.Context, dst [][]byte, after string, n int) ([][]byte, string, error) {
		dst, last := s.cache.Scan(dst, after, n)
		return dst, last, nil
	})
}

// handleGet serves GET /api/models/{id} from the database.
func (s *server) handleGet(w http.ResponseWriter, r *http.Request) {
	if !s.dbReady.Load() {
		s.error(w, r, errDBStarting)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
	defer cancel()

	body, err := s.store.Get(ctx, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeRaw(w, http.StatusOK, body)
}

// handleCacheGet serves GET /api/models/cache/{id} from the cache.
func (s *server) handleCacheGet(w http.ResponseWriter, r *http.Request) {
	if !s.cacheReady.Load() {
		s.error(w, r, errCacheLoading)
		return
	}
	body, ok := s.cache.Get(r.PathValue("id"))
	if !ok {
		s.error(w, r, ErrNotFound)
		return
	}
	writeRaw(w, http.StatusOK, body)
}

// handleCreate serves POST /api/models: it stores the order in the
// database, then in the cache, and answers with the stored order.
func (s *server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r.Header.Get("Content-Type")) {
		s.error(w, r, errNotJSON)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		s.error(w, r, err)
		return
	}
	rec, err := decodeOrder(data)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if !s.dbReady.Load() {
		s.error(w, r, errDBStarting)
		return
	}

	ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
	defer cancel()
	if err := s.svc.Create(ctx, rec); err != nil {
		s.error(w, r, err)
		return
	}
	s.metrics.Created.Add(1)
	w.Header().Set("Location", "/api/models/"+url.PathEscape(rec.UID))
	writeRaw(w, http.StatusCreated, rec.Body)
}

// handleDelete serves DELETE /api/models/{id}: it removes the order from
// the database, then from the cache, and answers with the removed order.
func (s *server) handleDelete(w http.ResponseWriter, r *http.Request) {
	if !s.dbReady.Load() {
		s.error(w, r, errDBStarting)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
	defer cancel()

	body, err := s.svc.Delete(ctx, r.PathValue("id"))
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.metrics.Deleted.Add(1)
	writeRaw(w, http.StatusOK, body)
}

// A scanFunc reads a page of orders after a cursor; see Store.Scan.
type scanFunc func(ctx context.Context, dst [][]byte, after string, n int) ([][]byte, string, error)

// list writes a JSON array of orders read through scan. With a limit it
// writes one page and, when more orders follow, a Link header to the next;
// without one it streams every order, a chunk at a time, so memory stays
// flat however many orders there are.
func (s *server) list(w http.ResponseWriter, r *http.Request, scan scanFunc) {
	after, limit, err := parseListQuery(r.URL.Query())
	if err != nil {
		s.error(w, r, err)
		return
	}
	chunk := scanChunk
	if limit > 0 {
		chunk = limit + 1 // one more tells whether a next page exists
	}
	page, last, err := scan(r.Context(), nil, after, chunk)
	if err != nil {
		s.error(w, r, err)
		return
	}

	w.Header().Set("Content-Type", "application/json")
	if limit > 0 && len(page) > limit {
		page = page[:limit]
		last = lastUID(page[limit-1])
		next := url.Values{"after": {last}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", r.URL.Path, next.Encode()))
	}
	w.WriteHeader(http.StatusOK)

	io.WriteString(w, "[")
	for i := 0; ; i++ {
		for j, body := range page {
			if i > 0 || j > 0 {
				io.WriteString(w, ",")
			}
			w.Write(body)
		}
		if limit > 0 || len(page) < chunk {
			break
		}
		if page, last, err = scan(r.Context(), page[:0], last, chunk); err != nil {
			// The status line is gone; cut the response short so the
			// client sees a broken body, not a shorter list.
			if r.Context().Err() != nil {
				s.log.Debug("client left during a list", "path", r.URL.Path)
			} else {
				s.log.Error("listing orders failed mid-response", "path", r.URL.Path, "err", err)
			}
			panic(http.ErrAbortHandler)
		}
		if len(page) == 0 {
			break
		}
	}
	io.WriteString(w, "]")
}

// parseListQuery reads the after and limit parameters. A limit of 0 means
// no limit.
func parseListQuery(q url.Values) (after string, limit int, err error) {
	for key := range q {
		if key != "after" && key != "limit" {
			return "", 0, &httpError{http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q; want after or limit", key)}
		}
	}
	after = q.Get("after")
	if v := q.Get("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit < 1 || limit > maxPageLimit {
			return "", 0, &httpError{http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d, got %q", maxPageLimit, v)}
		}
	}
	return after, limit, nil
}

// lastUID reads the order_uid of a canonical body, which always comes
// first.
func lastUID(body []byte) string {
	var head struct {
		OrderUID string `json:"order_uid"`
	}
	json.Unmarshal(body, &head)
	return head.OrderUID
}

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
	ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
	defer cancel()
	msgs, err := s.store.Rejected(ctx, after, limit+1)
	if err != nil {
		s.error(w, r, err)
		return
	}

	if len(msgs) > limit {
		msgs = msgs[:limit]
		next := url.Values{"after": {strconv.FormatInt(msgs[limit-1].ID, 10)}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", r.URL.Path, next.Encode()))
	}
	out := make([]rejectedJSON, len(msgs))
	for i, m := range msgs {
		out[i] = rejectedJSON{ID: m.ID, Channel: m.Channel, Sequence: m.Sequence, Reason: m.Reason, RejectedAt: m.RejectedAt}
		if utf8.Valid(m.Payload) {
			text := string(m.Payload)
			out[i].Payload = &text
		} else {
			out[i].PayloadBase64 = base64.StdEncoding.EncodeToString(m.Payload)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// parseRejectedQuery reads after (an id, default 0) and limit (default
// 100).
func parseRejectedQuery(q url.Values) (after int64, limit int, err error) {
	for key := range q {
		if key != "after" && key != "limit" {
			return 0, 0, &httpError{http.StatusBadRequest, fmt.Sprintf("unknown query parameter %q; want after or limit", key)}
		}
	}
	limit = 100
	if v := q.Get("limit"); v != "" {
		limit, err = strconv.Atoi(v)
		if err != nil || limit < 1 || limit > maxPageLimit {
			return 0, 0, &httpError{http.StatusBadRequest, fmt.Sprintf("limit must be an integer from 1 to %d, got %q", maxPageLimit, v)}
		}
	}
	if v := q.Get("after"); v != "" {
		after, err = strconv.ParseInt(v, 10, 64)
		if err != nil || after < 0 {
			return 0, 0, &httpError{http.StatusBadRequest, fmt.Sprintf("after must be a rejected message id (a non-negative integer), got %q", v)}
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
// database answers and the stream is connected, 503 otherwise. The body
// names the state of each.
func (s *server) handleReady(w http.ResponseWriter, r *http.Request) {
	state := func(ok bool, good, bad string) string {
		if ok {
			return good
		}
		return bad
	}

	dbOK := false
	if s.dbReady.Load() {
		ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
		defer cancel()
		dbOK = s.store.Ping(ctx) == nil
	}
	cacheOK := s.cacheReady.Load()
	streamOK := s.ingester != nil && s.ingester.Connected()

	ready := dbOK && cacheOK && streamOK
	status := http.StatusOK
	if !ready {
		status = http.StatusServiceUnavailable
	}
	writeJSON(w, status, map[string]any{
		"status":   state(ready, "ready", "not ready"),
		"database": state(dbOK, "up", "down"),
		"cache":    state(cacheOK, "loaded", "loading"),
		"stream":   state(streamOK, "connected", "disconnected"),
		"orders":   s.cache.Len(),
	})
}

// error answers a failed request. It is the one place that maps errors to
// statuses; the client gets a short message, the log gets the detail.
func (s *server) error(w http.ResponseWriter, r *http.Request, err error) {
	var (
		status int
		msg    string
		he     *httpError
		ie     *InvalidError
		tooBig *http.MaxBytesError
	)
	switch {
	case errors.As(err, &he):
		status, msg = he.status, he.msg
	case errors.As(err, &ie):
		status, msg = http.StatusBadRequest, ie.Error()
	case errors.As(err, &tooBig):
		status, msg = http.StatusRequestEntityTooLarge, fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit)
	case errors.Is(err, ErrNotFound):
		status, msg = http.StatusNotFound, "order not found"
	case errors.Is(err, ErrExists):
		status, msg = http.StatusConflict, "an order with this order_uid already exists"
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads the answer.
		s.log.Debug("request canceled", "method", r.Method, "path", r.URL.Path)
		return
	case errors.Is(err, ErrUnavailable):
		status, msg = http.StatusServiceUnavailable, "database unavailable, retry later"
	default:
		status, msg = http.StatusInternalServerError, "internal error"
	}

	if errors.Is(err, ErrUnavailable) || status == http.StatusInternalServerError {
		s.metrics.DBErrors.Add(1)
	}
	switch {
	case status == http.StatusServiceUnavailable:
		// Expected while a dependency is down; the caller retries.
		s.log.Warn("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	case status >= 500:
		s.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "status", status, "err", err)
	}
	if status == http.StatusServiceUnavailable {
		w.Header().Set("Retry-After", "1")
	}
	writeJSON(w, status, map[string]string{"error": msg})
}

var jsonContentType = []string{"application/json"}

// writeRaw writes a body that is already JSON.
func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(body)
}

// writeJSON encodes v as the response body.
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		// Only values built by this file reach here.
		panic(err)
	}
	writeRaw(w, status, append(body, '\n'))
}

// isJSON reports whether a Content-Type header names JSON.
func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}
