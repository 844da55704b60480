package main

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

func TestProtectedRoutesNeedTheToken(t *testing.T) {
	var logs logBuffer
	s := newCacheServer(t, rec("x"))
	s.log = slog.New(slog.NewTextHandler(&logs, nil))
	s.token = newAPIToken("s3cret-token")
	s.pprof = true
	h := s.routes()
	order := string(sampleOrder(t))

	protected := []struct{ method, target, body string }{
		{"POST", "/api/models", order},
		{"DELETE", "/api/models/x", ""},
		{"GET", "/api/rejected", ""},
		{"GET", "/debug/vars", ""},
		{"GET", "/debug/pprof/", ""},
		{"GET", "/debug/pprof/cmdline", ""},
	}
	for _, p := range protected {
		for _, auth := range []struct{ header, wantErr, wantChallenge string }{
			{"", "missing bearer token", `Bearer realm="orders"`},
			{"Bearer wrong-token-123", "invalid bearer token", `Bearer realm="orders", error="invalid_token"`},
			{"Basic czNjcmV0LXRva2Vu", "invalid bearer token", `Bearer realm="orders", error="invalid_token"`},
			{"Bearer s3cret-token-but-longer", "invalid bearer token", `Bearer realm="orders", error="invalid_token"`},
		} {
			r := serveAuth(h, p.method, p.target, p.body, auth.header)
			if r.status != http.StatusUnauthorized || r.header.Get("WWW-Authenticate") != auth.wantChallenge {
				t.Errorf("%s %s with %q = %d (WWW-Authenticate %q), want 401 with %q",
					p.method, p.target, auth.header, r.status, r.header.Get("WWW-Authenticate"), auth.wantChallenge)
				continue
			}
			if msg := errorOf(t, r); !strings.Contains(msg, auth.wantErr) {
				t.Errorf("%s %s with %q: error %q, want it to contain %q", p.method, p.target, auth.header, msg, auth.wantErr)
			}
		}
		r := serveAuth(h, p.method, p.target, p.body, "Bearer s3cret-token")
		if r.status == http.StatusUnauthorized {
			t.Errorf("%s %s with the right token = 401 %s", p.method, p.target, r.body)
		}
	}
	if n := logs.count("unauthorized request"); n != len(protected)*4 {
		t.Errorf("%d unauthorized requests logged, want %d", n, len(protected)*4)
	}
	if strings.Contains(logs.String(), "wrong-token-123") || strings.Contains(logs.String(), "s3cret") {
		t.Errorf("a token reached the log:\n%s", logs.String())
	}
}

func serveAuth(h http.Handler, method, target, body, auth string) response {
	req, _ := http.NewRequest(method, target, strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	return serveRequest(h, req)
}

func TestReadRoutesStayOpen(t *testing.T) {
	s := newCacheServer(t, rec("x"))
	s.token = newAPIToken("s3cret-token")
	h := s.routes()
	for _, target := range []string{"/api/models/cache/x", "/api/models/cache", "/healthz", "/", "/swagger/index.html", "/swagger/swagger.json"} {
		if r := serve(h, "GET", target, "", ""); r.status != http.StatusOK {
			t.Errorf("GET %s without a token = %d, want 200", target, r.status)
		}
	}
}

func TestWithoutTokenEverythingIsOpen(t *testing.T) {
	h := newCacheServer(t).routes()
	if r := serve(h, "GET", "/debug/vars", "", ""); r.status != http.StatusOK {
		t.Errorf("GET /debug/vars with no API_TOKEN = %d, want 200", r.status)
	}
}

func TestSecurityHeaders(t *testing.T) {
	h := newCacheServer(t, rec("x")).routes()
	for _, target := range []string{"/api/models/cache/x", "/api/models/cache/missing", "/nope", "/", "/web/lookup.js", "/swagger/index.html", "/swagger/swagger-ui-bundle.js"} {
		req, _ := http.NewRequest("GET", target, nil)
		req.Header.Set("Origin", "https://elsewhere.example")
		r := serveRequest(h, req)
		if got := r.header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", target, got)
		}
		if got := r.header.Get("Access-Control-Allow-Origin"); got != "" {
			t.Errorf("GET %s: Access-Control-Allow-Origin %q, want none", target, got)
		}
	}
	for _, target := range []string{"/", "/web/lookup.js", "/swagger/index.html", "/swagger/swagger-initializer.js"} {
		r := serve(h, "GET", target, "", "")
		csp := r.header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "script-src 'self';") || !strings.Contains(csp, "default-src 'none'") || strings.Contains(csp, "unsafe") {
			t.Errorf("GET %s: Content-Security-Policy %q, want only the page's own scripts", target, csp)
		}
	}
}

func TestRedactArgs(t *testing.T) {
	got := redactArgs([]string{"orders", "-api-token", "tok1", "--api-token=tok2",
		"-database-url", "postgres://u:pgpass@db/orders", "-nats-url=nats://n:natspass@host:4222,nats://n:natspass2@h2:4222",
		"-database-url", "host=db password=kvpass user=u", "-nats-url", "nats://natstoken@h:4222", "-http-addr", ":8000"})
	joined := strings.Join(got, " ")
	for _, secret := range []string{"tok1", "tok2", "pgpass", "natspass", "natspass2", "kvpass", "natstoken"} {
		if strings.Contains(joined, secret) {
			t.Errorf("redactArgs left %q in %q", secret, joined)
		}
	}
	if !strings.Contains(joined, "-http-addr :8000") || !strings.Contains(joined, "postgres://u:xxxxx@db/orders") {
		t.Errorf("redactArgs = %q, want the rest kept", joined)
	}
}

// serveRequest serves a prepared request.
func serveRequest(h http.Handler, req *http.Request) response {
	w := newRecorder()
	h.ServeHTTP(w, req)
	body, _ := io.ReadAll(w.Body)
	return response{w.Code, w.Header(), string(body)}
}
