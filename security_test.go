package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"database/sql"
	"encoding/pem"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSecretsNeverLeak(t *testing.T) {
	const (
		natsPass = "nats-secret-7c2a"
		token    = "api-secret-91fd"
	)
	env := newPrivateEnvWith(t, "orders", natsPass)
	// Secrets on the command line, where ps, /debug/vars and
	// /debug/pprof/cmdline could show them.
	args := []string{"-database-url", env.vars["DATABASE_URL"], "-nats-url=" + env.vars["NATS_URL"], "-api-token", token}
	delete(env.vars, "DATABASE_URL")
	natsURL := env.vars["NATS_URL"]
	delete(env.vars, "NATS_URL")
	svc := env.startProcArgs(t, args, "PPROF", "true")
	svc.waitReady(t)

	// Ingest through the producer, which takes the credentials in NATS_URL.
	env.vars["NATS_URL"] = natsURL
	env.produce(t, "-n", "20", "-q")
	eventually(t, "20 orders ingested", func() error {
		if n := len(listIDs(t, do(t, "GET", svc.base+"/api/models/cache", "", nil).body)); n != 20 {
			return errNotYet
		}
		return nil
	})

	// Answers an operator or a client could see.
	seen := []string{}
	auth := func(method, path string) response {
		req, _ := http.NewRequest(method, svc.base+path, nil)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		return response{resp.StatusCode, resp.Header, string(body)}
	}
	for _, path := range []string{"/debug/vars", "/debug/pprof/cmdline", "/api/rejected"} {
		r := auth("GET", path)
		wantStatus(t, path, r, http.StatusOK)
		seen = append(seen, r.body)
	}
	seen = append(seen, do(t, "POST", svc.base+"/api/models", "application/json", sampleOrder(t)).body)

	// A database call that fails, and its log line.
	if err := env.pg.stop(); err != nil {
		t.Fatal(err)
	}
	r := do(t, "GET", svc.base+"/api/models/b563feb7b2b84b6test", "", nil)
	wantStatus(t, "GET with the database stopped", r, http.StatusServiceUnavailable)
	seen = append(seen, r.body)
	if err := env.pg.start(); err != nil {
		t.Fatal(err)
	}
	svc.terminate(t)

	seen = append(seen, svc.logs.String())
	for _, secret := range []string{testPGPassword, natsPass, token} {
		for _, text := range seen {
			if strings.Contains(text, secret) {
				t.Errorf("secret %q leaked in:\n%.2000s", secret, text)
			}
		}
	}
	if svc.logs.count("msg=starting", "api_token=xxxxx", "nats_url=nats://orders:xxxxx@") != 1 {
		t.Errorf("the start-up line does not show the settings redacted:\n%s", svc.logs)
	}
}

func TestPostgresVerifyFull(t *testing.T) {
	env := newPrivateEnv(t)
	pg := env.pg
	ca := writeServerCert(t, pg)
	if err := pg.stop(); err != nil {
		t.Fatal(err)
	}
	pg.extra = []string{"-c", "ssl=on",
		"-c", "ssl_cert_file=" + filepath.Join(pg.data, "server.crt"),
		"-c", "ssl_key_file=" + filepath.Join(pg.data, "server.key")}
	if err := pg.start(); err != nil {
		t.Fatal(err)
	}

	// The certificate names localhost: verify-full accepts that name...
	good := strings.Replace(env.vars["DATABASE_URL"], "127.0.0.1", "localhost", 1) +
		"&sslmode=verify-full&sslrootcert=" + ca
	good = strings.Replace(good, "?sslmode=disable&", "?", 1)
	env.vars["DATABASE_URL"] = good
	svc := env.start(t)
	wantStatus(t, "POST over TLS", do(t, "POST", svc.base+"/api/models", "application/json", sampleOrder(t)), http.StatusCreated)
	db, err := sql.Open("postgres", good)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var ssl bool
	if err := db.QueryRow(`SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()`).Scan(&ssl); err != nil || !ssl {
		t.Errorf("connection with sslmode=verify-full is not encrypted (ssl=%v, %v)", ssl, err)
	}
	svc.stop(t)

	// ...and refuses another, though it reaches the same server.
	env.vars["DATABASE_URL"] = strings.Replace(good, "localhost", "127.0.0.1", 1)
	var logs logBuffer
	err = run(t.Context(), []string{"orders", "-http-addr", "127.0.0.1:0"}, func(k string) string { return env.vars[k] }, &logs, &logs)
	if err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("start with a certificate for another name = %v, want an error about the certificate", err)
	}
}

// writeServerCert makes a certificate authority and a server certificate
// for localhost, puts the server's pair in pg's data folder, and returns
// the path of the authority's certificate.
func writeServerCert(t *testing.T, pg *pgServer) string {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "orders test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caTmpl, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)

	write := func(path, kind string, der []byte, mode os.FileMode) {
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), mode); err != nil {
			t.Fatal(err)
		}
		if pg.cred != nil {
			os.Chown(path, int(pg.cred.Uid), int(pg.cred.Gid))
		}
	}
	write(filepath.Join(pg.data, "server.crt"), "CERTIFICATE", der, 0o644)
	write(filepath.Join(pg.data, "server.key"), "EC PRIVATE KEY", keyDER, 0o600)
	ca := filepath.Join(harnessDir, unique("ca")+".crt")
	write(ca, "CERTIFICATE", caDER, 0o644)
	return ca
}
