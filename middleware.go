package main

import (
	"net/http"
	"runtime/debug"
	"sync"
	"time"
)

// instrument wraps the routes: it counts every response by status class,
// turns a panic in a handler into a logged 500 for that request alone, and
// logs each request when asked to.
func (s *server) instrument(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var start time.Time
		if s.logRequests {
			start = time.Now()
		}
		w.Header()["X-Content-Type-Options"] = nosniff
		sw := statusWriters.Get().(*statusWriter)
		sw.ResponseWriter, sw.status = w, 0
		defer func() {
			if v := recover(); v != nil {
				if v == http.ErrAbortHandler {
					panic(v) // the handler chose to cut the response
				}
				s.log.Error("handler panicked", "method", r.Method, "path", r.URL.Path, "panic", v, "stack", string(debug.Stack()))
				if sw.status == 0 {
					writeJSON(sw, http.StatusInternalServerError, map[string]string{"error": "internal error"})
				}
			}
			s.metrics.countResponse(sw.code())
			if s.logRequests {
				s.log.Info("request", "method", r.Method, "path", r.URL.Path, "status", sw.code(), "took", time.Since(start))
			}
			sw.ResponseWriter = nil
			statusWriters.Put(sw)
		}()
		h.ServeHTTP(sw, r)
	})
}

// statusWriter remembers the status a handler sent.
type statusWriter struct {
	http.ResponseWriter
	status int
}

var statusWriters = sync.Pool{New: func() any { return new(statusWriter) }}

func (w *statusWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// code returns the status sent, 200 if the handler wrote nothing.
func (w *statusWriter) code() int {
	if w.status == 0 {
		return http.StatusOK
	}
	return w.status
}

// jsonFallback makes the mux's own answers for unknown paths and wrong
// methods JSON errors like every other.
func (s *server) jsonFallback(mux *http.ServeMux) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, pattern := mux.Handler(r); pattern != "" {
			mux.ServeHTTP(w, r)
			return
		}
		// Let the mux decide between 404, 405 (with Allow) and a
		// redirect, and keep only its status and headers.
		rec := &headerRecorder{header: http.Header{}}
		mux.ServeHTTP(rec, r)
		for k, v := range rec.header {
			if k != "Content-Type" && k != "X-Content-Type-Options" {
				w.Header()[k] = v
			}
		}
		switch rec.status {
		case http.StatusNotFound:
			writeJSON(w, rec.status, map[string]string{"error": "no such route: " + r.URL.Path})
		case http.StatusMethodNotAllowed:
			writeJSON(w, rec.status, map[string]string{"error": "method " + r.Method + " is not allowed here; allowed: " + rec.header.Get("Allow")})
		default:
			w.WriteHeader(rec.status)
		}
	})
}

// headerRecorder keeps the status and headers a handler writes and drops
// its body.
type headerRecorder struct {
	header http.Header
	status int
}

func (h *headerRecorder) Header() http.Header         { return h.header }
func (h *headerRecorder) Write(b []byte) (int, error) { return len(b), nil }
func (h *headerRecorder) WriteHeader(status int)      { h.status = status }
