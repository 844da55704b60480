package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"net/http"
	"strings"
)

// An apiToken guards the routes that change orders or show operators'
// data. It keeps only a digest of the token, so the token itself is in
// no field a dump could show. The zero value guards nothing.
type apiToken struct {
	digest [sha256.Size]byte
	set    bool
}

func newAPIToken(token string) apiToken {
	if token == "" {
		return apiToken{}
	}
	return apiToken{digest: sha256.Sum256([]byte(token)), set: true}
}

// check reports why a request may not pass, or "" if it may. Digests of
// equal length are compared in constant time, so neither the token's
// length nor its bytes leak through timing.
func (t apiToken) check(r *http.Request) string {
	if !t.set {
		return ""
	}
	auth := r.Header.Get("Authorization")
	if auth == "" {
		return "missing"
	}
	scheme, token, ok := strings.Cut(auth, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "invalid"
	}
	got := sha256.Sum256([]byte(strings.TrimSpace(token)))
	if subtle.ConstantTimeCompare(got[:], t.digest[:]) != 1 {
		return "invalid"
	}
	return ""
}

// protect lets a request through to h only with the API token.
func (s *server) protect(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		problem := s.token.check(r)
		if problem == "" {
			h.ServeHTTP(w, r)
			return
		}
		// Logged without the header, whatever it held.
		s.log.Warn("unauthorized request", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr, "token", problem)
		challenge := `Bearer realm="orders"`
		if problem == "invalid" {
			challenge += `, error="invalid_token"`
		}
		w.Header().Set("WWW-Authenticate", challenge)
		writeJSON(w, http.StatusUnauthorized, map[string]string{"error": problem + " bearer token: this route needs Authorization: Bearer <API_TOKEN>"})
	})
}

// Security headers. The lookup page and the Swagger UI run only their own
// scripts and styles. Swagger UI sets styles from script, which CSP allows
// without 'unsafe-inline', and shows icons as data: images. Its React tree
// also renders one <style> element; the Swagger UI policy allows exactly
// that element's text by its hash. A new swagger-ui-dist version may
// change the text: the browser test then reports the blocked style and
// the hash to put here. The online validator, which would load an image
// from another site, is turned off in swagger-initializer.js.
var (
	nosniff       = []string{"nosniff"}
	pagePolicy    = []string{"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}
	swaggerPolicy = []string{"default-src 'none'; script-src 'self'; style-src 'self' 'sha256-RL3ie0nH+Lzz2YNqQN83mnU0J1ot4QL7b99vMdIX99w='; img-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"}
	frameDenied   = []string{"DENY"}
	referrerLimit = []string{"no-referrer"}
)

// setPageHeaders sets the security headers of an HTML page and the files
// it loads, with the given Content-Security-Policy.
func setPageHeaders(h http.Header, policy []string) {
	h["Content-Security-Policy"] = policy
	h["X-Frame-Options"] = frameDenied
	h["Referrer-Policy"] = referrerLimit
}

// redactArgs returns a command line fit to show: the value of -api-token
// is replaced, and every argument passes through redactURL, which hides
// credentials in URLs and password=... in connection strings.
func redactArgs(args []string) []string {
	out := make([]string, len(args))
	secretNext := false
	for i, a := range args {
		name, value, hasValue := strings.Cut(a, "=")
		switch {
		case secretNext:
			out[i], secretNext = "xxxxx", false
		case isSecretFlag(name) && hasValue:
			out[i] = name + "=xxxxx"
		case isSecretFlag(name):
			out[i], secretNext = a, true
		case strings.HasPrefix(name, "-") && hasValue:
			out[i] = name + "=" + redactURL(value)
		default:
			out[i] = redactURL(a)
		}
	}
	return out
}

// isSecretFlag reports whether name is a flag whose value is a secret as a
// whole.
func isSecretFlag(name string) bool {
	return strings.HasPrefix(name, "-") && strings.TrimLeft(name, "-") == "api-token"
}

// handleCmdline serves GET /debug/pprof/cmdline like net/http/pprof, but
// with the command line redacted.
func (s *server) handleCmdline(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Write([]byte(strings.Join(s.metrics.cmdline, "\x00")))
}
