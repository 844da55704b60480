package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net"
	"net/http"
	"net/http/pprof"
	"net/url"
	"strings"
	"sync/atomic"
	"time"
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
	workers   *dbWorkers
	lookups   *lookups
	dbTimeout time.Duration
	maxBody   int64
	token     apiToken
	// logRequests logs a line per request; pprof serves profiles.
	logRequests bool
	pprof       bool

	dbReady    atomic.Bool
	cacheReady atomic.Bool
}

// apiRoute is one documented route of the API. A protected route needs
// the API token, when one is set.
type apiRoute struct {
	pattern   string
	handler   func(*server, http.ResponseWriter, *http.Request)
	protected bool
}

// apiRoutes lists every route swagger.json documents, in the same terms;
// a test holds the two equal.
var apiRoutes = []apiRoute{
	{"GET /api/models", (*server).handleList, false},
	{"POST /api/models", (*server).handleCreate, true},
	{"GET /api/models/{id}", (*server).handleGet, false},
	{"DELETE /api/models/{id}", (*server).handleDelete, true},
	{"GET /api/models/cache", (*server).handleCacheList, false},
	{"GET /api/models/cache/{id}", (*server).handleCacheGet, false},
	{"GET /api/rejected", (*server).handleRejected, true},
	{"GET /healthz", (*server).handleHealth, false},
	{"GET /readyz", (*server).handleReady, false},
	{"GET /debug/vars", (*server).handleVars, true},
}

// routes returns the handler for every route the service serves.
func (s *server) routes() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range apiRoutes {
		var h http.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			rt.handler(s, w, r)
		})
		if rt.protected {
			h = s.protect(h)
		}
		mux.Handle(rt.pattern, h)
	}
	page, files := lookupHandler()
	mux.Handle("GET /{$}", page)
	mux.Handle("GET /web/", files)
	mux.Handle("GET /swagger/", http.StripPrefix("/swagger", swaggerHandler()))
	mux.Handle("GET /swagger", http.RedirectHandler("/swagger/index.html", http.StatusMovedPermanently))
	if s.pprof {
		mux.Handle("GET /debug/pprof/", s.protect(http.HandlerFunc(pprof.Index)))
		mux.Handle("GET /debug/pprof/cmdline", s.protect(http.HandlerFunc(s.handleCmdline)))
		mux.Handle("GET /debug/pprof/profile", s.protect(http.HandlerFunc(pprof.Profile)))
		mux.Handle("GET /debug/pprof/symbol", s.protect(http.HandlerFunc(pprof.Symbol)))
		mux.Handle("GET /debug/pprof/trace", s.protect(http.HandlerFunc(pprof.Trace)))
	}
	return s.instrument(s.jsonFallback(mux))
}

// Errors a request can cause before it reaches the store.
var (
	errNotJSON       = &httpError{http.StatusUnsupportedMediaType, "Content-Type must be application/json"}
	errNotUTF8       = &httpError{http.StatusUnsupportedMediaType, "Content-Type charset must be utf-8"}
	errCacheLoading  = &httpError{http.StatusServiceUnavailable, "cache is still loading, retry later"}
	errDBStarting    = &httpError{http.StatusServiceUnavailable, "database is not connected yet, retry later"}
	errBodyTimeout   = &httpError{http.StatusRequestTimeout, "the request body did not arrive in time"}
	errDBUnavailable = fmt.Errorf("%w: no answer within the deadline", ErrUnavailable)
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
	s.list(w, r, func(ctx context.Context, dst [][]byte, after string, n int) (page, error) {
		if !s.dbReady.Load() {
			return page{}, errDBStarting
		}
		return callDB(s.workers, ctx, s.dbTimeout, func(ctx context.Context) (page, error) {
			bodies, last, err := s.store.Scan(ctx, dst, after, n)
			return page{bodies, last}, err
		})
	})
}

// handleCacheList serves GET /api/models/cache: the same list as
// handleList, from the cache.
func (s *server) handleCacheList(w http.ResponseWriter, r *http.Request) {
	s.list(w, r, func(_ context.Context, dst [][]byte, after string, n int) (page, error) {
		if !s.cacheReady.Load() {
			return page{}, errCacheLoading
		}
		bodies, last := s.cache.Scan(dst, after, n)
		return page{bodies, last}, nil
	})
}

// handleGet serves GET /api/models/{id} from the database.
func (s *server) handleGet(w http.ResponseWriter, r *http.Request) {
	if !s.dbReady.Load() {
		s.error(w, r, errDBStarting)
		return
	}
	uid := r.PathValue("id")
	if !validID(uid) {
		s.error(w, r, ErrNotFound) // no stored order has such an id
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), s.dbTimeout)
	defer cancel()
	body, err := s.lookups.get(ctx, uid)
	if err != nil {
		s.error(w, r, err)
		return
	}
	writeOrder(w, http.StatusOK, body)
}

// writable reports whether writes may go ahead: the database must be
// connected and the cache loaded, or the load could undo a write made
// during it.
func (s *server) writable() error {
	switch {
	case !s.dbReady.Load():
		return errDBStarting
	case !s.cacheReady.Load():
		return errCacheLoading
	}
	return nil
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
	writeOrder(w, http.StatusOK, body)
}

// handleCreate serves POST /api/models: it stores the order in the
// database, then in the cache, and answers with the stored order.
func (s *server) handleCreate(w http.ResponseWriter, r *http.Request) {
	if err := checkJSON(r.Header.Get("Content-Type")); err != nil {
		s.error(w, r, err)
		return
	}
	data, err := io.ReadAll(http.MaxBytesReader(w, r.Body, s.maxBody))
	if err != nil {
		s.error(w, r, bodyError(err))
		return
	}
	rec, err := decodeOrder(data)
	if err != nil {
		s.error(w, r, err)
		return
	}
	if err := s.writable(); err != nil {
		s.error(w, r, err)
		return
	}

	_, err = callDB(s.workers, r.Context(), s.dbTimeout, func(ctx context.Context) (struct{}, error) {
		return struct{}{}, s.svc.Create(ctx, rec)
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.metrics.Created.Add(1)
	w.Header().Set("Location", "/api/models/"+url.PathEscape(rec.UID))
	writeOrder(w, http.StatusCreated, rec.Body)
}

// handleDelete serves DELETE /api/models/{id}: it removes the order from
// the database, then from the cache, and answers with the removed order.
func (s *server) handleDelete(w http.ResponseWriter, r *http.Request) {
	if err := s.writable(); err != nil {
		s.error(w, r, err)
		return
	}
	uid := r.PathValue("id")
	if !validID(uid) {
		s.error(w, r, ErrNotFound)
		return
	}
	body, err := callDB(s.workers, r.Context(), s.dbTimeout, func(ctx context.Context) ([]byte, error) {
		return s.svc.Delete(ctx, uid)
	})
	if err != nil {
		s.error(w, r, err)
		return
	}
	s.metrics.Deleted.Add(1)
	writeOrder(w, http.StatusOK, body)
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

var newline = []byte{'\n'}

// writeOrder writes an order's stored body, ended by a newline as every
// JSON answer of the service is, so that it reads well in a terminal.
func writeOrder(w http.ResponseWriter, status int, body []byte) {
	w.Header()["Content-Type"] = jsonContentType
	w.WriteHeader(status)
	w.Write(body)
	w.Write(newline)
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

// checkJSON accepts a Content-Type of JSON in UTF-8, the only encoding
// JSON has (RFC 8259).
func checkJSON(contentType string) error {
	mt, params, err := mime.ParseMediaType(contentType)
	if err != nil || mt != "application/json" {
		return errNotJSON
	}
	if cs, ok := params["charset"]; ok && !strings.EqualFold(cs, "utf-8") && !strings.EqualFold(cs, "utf8") {
		return errNotUTF8
	}
	return nil
}

// bodyError tells why a request body could not be read.
func bodyError(err error) error {
	var tooBig *http.MaxBytesError
	var netErr net.Error
	switch {
	case errors.As(err, &tooBig):
		return err
	case errors.As(err, &netErr) && netErr.Timeout():
		return errBodyTimeout
	}
	return &httpError{http.StatusBadRequest, "could not read the request body: " + err.Error()}
}

// validID reports whether uid could be the id of a stored order; see
// checkID. Other ids are answered 404 without asking the database, which
// could not even take some of them (NUL, invalid UTF-8).
func validID(uid string) bool {
	return checkID("order_uid", uid) == nil
}
