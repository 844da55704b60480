package main

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// newCacheServer returns a server whose cache holds the given orders and
// whose database is not connected, for tests of what needs no database.
func newCacheServer(t testing.TB, recs ...Record) *server {
	t.Helper()
	s := &server{
		log:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		cache:   &Cache{},
		maxBody: 4096,
	}
	s.metrics = newMetrics([]string{"orders"}, s.cache.Len)
	s.workers = startDBWorkers(1)
	t.Cleanup(func() { close(s.workers.jobs) })
	s.cache.PutAll(recs)
	s.cacheReady.Store(true)
	return s
}

type response struct {
	status int
	header http.Header
	body   string
}

func serve(h http.Handler, method, target, contentType, body string) response {
	req := httptest.NewRequest(method, target, strings.NewReader(body))
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	return serveRequest(h, req)
}

func newRecorder() *httptest.ResponseRecorder { return httptest.NewRecorder() }

// errorOf returns the message of a JSON error body, or fails.
func errorOf(t testing.TB, r response) string {
	t.Helper()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Error == "" {
		t.Fatalf("body %q is not a JSON error: %v", r.body, err)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("error Content-Type = %q, want application/json", ct)
	}
	return e.Error
}

func TestHandlersStatusCodes(t *testing.T) {
	sample, err := decodeOrder(sampleOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	h := newCacheServer(t, sample).routes()
	big := `{"order_uid":"` + strings.Repeat("a", 5000) + `"}`

	tests := []struct {
		name        string
		method      string
		target      string
		contentType string
		body        string
		wantStatus  int
		wantErr     string // part of the JSON error; "" for success
	}{
		{"cache hit", "GET", "/api/models/cache/b563feb7b2b84b6test", "", "", 200, ""},
		{"cache miss", "GET", "/api/models/cache/nope", "", "", 404, "order not found"},
		{"database not connected", "GET", "/api/models/b563feb7b2b84b6test", "", "", 503, "database is not connected"},
		{"post without content type", "POST", "/api/models", "", string(sampleOrder(t)), 415, "Content-Type must be application/json"},
		{"post form", "POST", "/api/models", "application/x-www-form-urlencoded", "a=b", 415, "Content-Type must be application/json"},
		{"post too large", "POST", "/api/models", "application/json", big, 413, "larger than 4096 bytes"},
		{"post not JSON", "POST", "/api/models", "application/json", "{oops", 400, "invalid JSON at offset 1"},
		{"post invalid order", "POST", "/api/models", "application/json; charset=utf-8", `{"order_uid":"x"}`, 400, "track_number: is required"},
		{"post valid, database not connected", "POST", "/api/models", "application/json", string(sampleOrder(t)), 503, "database is not connected"},
		{"list bad limit", "GET", "/api/models/cache?limit=0", "", "", 400, "limit must be an integer from 1 to 1000"},
		{"list limit too large", "GET", "/api/models/cache?limit=1001", "", "", 400, "limit must be an integer from 1 to 1000"},
		{"list limit not a number", "GET", "/api/models/cache?limit=ten", "", "", 400, "limit must be an integer"},
		{"list unknown parameter", "GET", "/api/models/cache?offset=5", "", "", 400, `unknown query parameter "offset"`},
		{"post latin-1", "POST", "/api/models", "application/json; charset=latin1", string(sampleOrder(t)), 415, "charset must be utf-8"},
		{"list repeated limit", "GET", "/api/models/cache?limit=1&limit=2", "", "", 400, `query parameter "limit" is given 2 times`},
		{"list after with NUL", "GET", "/api/models/cache?after=%00", "", "", 400, "after must be an order_uid"},
		{"list after invalid UTF-8", "GET", "/api/models?after=%ff", "", "", 400, "after must be an order_uid"},
		{"cache id with NUL", "GET", "/api/models/cache/%00", "", "", 404, "order not found"},
		{"unknown route", "GET", "/api/orders", "", "", 404, "no such route"},
		{"wrong method", "PUT", "/api/models/x", "", "", 405, "method PUT is not allowed"},
		{"health", "GET", "/healthz", "", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := serve(h, tt.method, tt.target, tt.contentType, tt.body)
			if r.status != tt.wantStatus {
				t.Fatalf("status = %d, want %d (body %s)", r.status, tt.wantStatus, r.body)
			}
			if tt.wantErr == "" {
				return
			}
			if msg := errorOf(t, r); !strings.Contains(msg, tt.wantErr) {
				t.Errorf("error = %q, want it to contain %q", msg, tt.wantErr)
			}
			if tt.wantStatus == 503 && r.header.Get("Retry-After") == "" {
				t.Error("503 without Retry-After")
			}
			if tt.wantStatus == 405 && r.header.Get("Allow") == "" {
				t.Error("405 without Allow")
			}
		})
	}
}

func TestCacheRouteServesStoredBytes(t *testing.T) {
	sample, err := decodeOrder(sampleOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	r := serve(newCacheServer(t, sample).routes(), "GET", "/api/models/cache/"+sample.UID, "", "")
	if r.body != answer(sample.Body) {
		t.Errorf("body = %q, want the stored body and a newline, %q", r.body, answer(sample.Body))
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
}

func TestOddIDsAreNotFoundWithoutTheDatabase(t *testing.T) {
	// The database is "ready" but absent: a query would panic.
	s := newCacheServer(t)
	s.dbReady.Store(true)
	for _, target := range []string{"/api/models/%00", "/api/models/%ff", "/api/models/%C3%28", "/api/models/a%20b"} {
		for _, method := range []string{"GET", "DELETE"} {
			r := serve(s.routes(), method, target, "", "")
			if r.status != http.StatusNotFound {
				t.Errorf("%s %s = %d %s, want 404", method, target, r.status, r.body)
			}
		}
	}
}

func TestWritesWaitForTheCache(t *testing.T) {
	// A write during the load could be undone by it.
	s := newCacheServer(t)
	s.dbReady.Store(true)
	s.cacheReady.Store(false)
	for _, req := range []struct{ method, target, body string }{
		{"POST", "/api/models", string(sampleOrder(t))},
		{"DELETE", "/api/models/b563feb7b2b84b6test", ""},
	} {
		r := serve(s.routes(), req.method, req.target, "application/json", req.body)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, "cache is still loading") {
			t.Errorf("%s %s while loading = %d %s, want 503 saying the cache is loading", req.method, req.target, r.status, r.body)
		}
	}
}

func TestCacheRoutesWhileLoading(t *testing.T) {
	s := newCacheServer(t)
	s.cacheReady.Store(false)
	for _, target := range []string{"/api/models/cache", "/api/models/cache/x"} {
		r := serve(s.routes(), "GET", target, "", "")
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Errorf("GET %s while loading = %d (Retry-After %q), want 503 with Retry-After", target, r.status, r.header.Get("Retry-After"))
		}
	}
}

// listIDs decodes a list response into the orders' ids.
func listIDs(t testing.TB, body string) []string {
	t.Helper()
	var orders []struct {
		OrderUID string `json:"order_uid"`
	}
	if err := json.Unmarshal([]byte(body), &orders); err != nil {
		t.Fatalf("list body is not a JSON array of orders: %v\n%.200s", err, body)
	}
	ids := make([]string, len(orders))
	for i, o := range orders {
		ids[i] = o.OrderUID
	}
	return ids
}

func TestCacheListPages(t *testing.T) {
	var recs []Record
	for _, uid := range []string{"e", "a", "d", "b", "c"} {
		recs = append(recs, rec(uid))
	}
	h := newCacheServer(t, recs...).routes()

	all := serve(h, "GET", "/api/models/cache", "", "")
	if got := strings.Join(listIDs(t, all.body), ""); got != "abcde" {
		t.Errorf("whole list = %s, want abcde", got)
	}
	if link := all.header.Get("Link"); link != "" {
		t.Errorf("unpaged list has Link %q, want none", link)
	}

	var got []string
	target := "/api/models/cache?limit=2"
	for pages := 0; target != ""; pages++ {
		if pages > 5 {
			t.Fatal("paging does not end")
		}
		r := serve(h, "GET", target, "", "")
		if r.status != 200 {
			t.Fatalf("GET %s = %d %s", target, r.status, r.body)
		}
		got = append(got, listIDs(t, r.body)...)
		target = ""
		if link := r.header.Get("Link"); link != "" {
			target = strings.TrimPrefix(strings.Split(link, ">")[0], "<")
		}
	}
	if strings.Join(got, "") != "abcde" {
		t.Errorf("pages joined = %v, want a..e", got)
	}

	r := serve(h, "GET", "/api/models/cache?after=c", "", "")
	if got := strings.Join(listIDs(t, r.body), ""); got != "de" {
		t.Errorf("after=c = %s, want de", got)
	}
	r = serve(h, "GET", "/api/models/cache?after=e", "", "")
	if r.body != "[]\n" {
		t.Errorf("after the last id = %q, want \"[]\\n\"", r.body)
	}
}

func TestCacheListStreamsManyChunks(t *testing.T) {
	var recs []Record
	for i := range 3*scanChunk + 7 {
		recs = append(recs, rec(strings.Repeat("x", 1+i/100)+string(rune('a'+i%26))+strings.Repeat("0", i%5)))
	}
	s := newCacheServer(t, recs...)
	r := serve(s.routes(), "GET", "/api/models/cache", "", "")
	if n := len(listIDs(t, r.body)); n != s.cache.Len() {
		t.Errorf("list holds %d orders, want %d", n, s.cache.Len())
	}
}

func TestSwaggerUIIsServed(t *testing.T) {
	h := newCacheServer(t).routes()
	for _, tt := range []struct{ target, wantType, wantText string }{
		{"/swagger/index.html", "text/html; charset=utf-8", `id="swagger-ui"`},
		{"/swagger/swagger.json", "application/json", `"openapi"`},
		{"/swagger/swagger-initializer.js", "text/javascript; charset=utf-8", "swagger.json"},
	} {
		r := serve(h, "GET", tt.target, "", "")
		if r.status != 200 || r.header.Get("Content-Type") != tt.wantType || !strings.Contains(r.body, tt.wantText) {
			t.Errorf("GET %s = %d %q, want 200 %q containing %q", tt.target, r.status, r.header.Get("Content-Type"), tt.wantType, tt.wantText)
		}
	}
	r := serve(h, "GET", "/swagger", "", "")
	if r.status != http.StatusMovedPermanently || r.header.Get("Location") != "/swagger/index.html" {
		t.Errorf("GET /swagger = %d to %q, want a redirect to /swagger/index.html", r.status, r.header.Get("Location"))
	}
}

func TestPanicBecomesA500ForThatRequestOnly(t *testing.T) {
	var logs logBuffer
	s := newCacheServer(t)
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	h := s.instrument(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/boom" {
			panic("secret internal detail")
		}
		w.Write([]byte("fine"))
	}))

	r := serve(h, "GET", "/boom", "", "")
	if r.status != http.StatusInternalServerError {
		t.Fatalf("panicking handler answered %d, want 500", r.status)
	}
	if msg := errorOf(t, r); msg != "internal error" {
		t.Errorf("error = %q, want \"internal error\" and nothing of the panic", msg)
	}
	if logs.count("handler panicked", "secret internal detail") != 1 {
		t.Errorf("the panic was not logged:\n%s", logs.String())
	}
	if r := serve(h, "GET", "/ok", "", ""); r.status != http.StatusOK || r.body != "fine" {
		t.Errorf("the next request got %d %q, want 200 fine", r.status, r.body)
	}
	if got := s.metrics.Responses.Get("5xx"); got == nil || got.String() != "1" {
		t.Errorf("5xx responses counted = %v, want 1", got)
	}
}
