package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// Limits of the list routes.
const (
	maxPageLimit      = 1000             // largest limit a client may ask for
	scanChunk         = 256              // orders read per step when streaming a whole list
	chunkWriteTimeout = 30 * time.Second // longest one chunk of a list may take to send
)

// A page is some orders' bodies and the id of the last.
type page struct {
	bodies [][]byte
	last   string
}

// A scanFunc reads a page of orders after a cursor; see Store.Scan.
type scanFunc func(ctx context.Context, dst [][]byte, after string, n int) (page, error)

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
	p, err := scan(r.Context(), nil, after, chunk)
	if err != nil {
		s.error(w, r, err)
		return
	}

	w.Header().Set("Content-Type", "application/json")
	if limit > 0 && len(p.bodies) > limit {
		p.bodies = p.bodies[:limit]
		next := url.Values{"after": {lastUID(p.bodies[limit-1])}, "limit": {strconv.Itoa(limit)}}
		w.Header().Set("Link", fmt.Sprintf("<%s?%s>; rel=\"next\"", r.URL.Path, next.Encode()))
	}
	w.WriteHeader(http.StatusOK)

	rc := http.NewResponseController(w)
	io.WriteString(w, "[")
	for i := 0; ; i++ {
		// A long list may take longer than the server's write timeout;
		// keep extending it while the client keeps reading.
		rc.SetWriteDeadline(time.Now().Add(chunkWriteTimeout))
		for j, body := range p.bodies {
			if i > 0 || j > 0 {
				io.WriteString(w, ",")
			}
			w.Write(body)
		}
		if limit > 0 || len(p.bodies) < chunk {
			break
		}
		if p, err = scanAgain(r.Context(), scan, p.bodies[:0], p.last, chunk); err != nil {
			// The status line is gone; cut the response short so the
			// client sees a broken body, not a shorter list.
			if r.Context().Err() != nil {
				s.log.Debug("client left during a list", "path", r.URL.Path)
			} else {
				s.log.Error("listing orders failed mid-response", "path", r.URL.Path, "err", err)
			}
			panic(http.ErrAbortHandler)
		}
		if len(p.bodies) == 0 {
			break
		}
	}
	io.WriteString(w, "]\n")
}

// midListAttempts is how often a chunk of a list already under way is
// tried before the response is cut short.
const midListAttempts = 3

// scanAgain is scan, tried again while the database is unavailable: once
// a list is under way, its status line is sent and a failure can only cut
// it short, so a busy moment is worth waiting out.
func scanAgain(ctx context.Context, scan scanFunc, dst [][]byte, after string, n int) (page, error) {
	var p page
	var err error
	for range midListAttempts {
		p, err = scan(ctx, dst, after, n)
		if !errors.Is(err, ErrUnavailable) || ctx.Err() != nil {
			break
		}
	}
	return p, err
}

// parseListQuery reads the after and limit parameters. A limit of 0 means
// no limit.
func parseListQuery(q url.Values) (after string, limit int, err error) {
	if err := checkQuery(q); err != nil {
		return "", 0, err
	}
	after = q.Get("after")
	if after != "" && !validID(after) {
		return "", 0, badRequest("after must be an order_uid (letters, digits, '-' and '_'), got %q", after)
	}
	limit, err = parseLimit(q, 0)
	return after, limit, err
}

// checkQuery accepts only after and limit, each at most once.
func checkQuery(q url.Values) error {
	for key, values := range q {
		switch {
		case key != "after" && key != "limit":
			return badRequest("unknown query parameter %q; want after or limit", key)
		case len(values) > 1:
			return badRequest("query parameter %q is given %d times; give it once", key, len(values))
		}
	}
	return nil
}

// parseLimit reads the limit parameter, or returns def without one.
func parseLimit(q url.Values, def int) (int, error) {
	v := q.Get("limit")
	if v == "" {
		return def, nil
	}
	limit, err := strconv.Atoi(v)
	if err != nil || limit < 1 || limit > maxPageLimit {
		return 0, badRequest("limit must be an integer from 1 to %d, got %q", maxPageLimit, v)
	}
	return limit, nil
}

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
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
