package main

import (
	"bytes"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func parse(t *testing.T, env map[string]string, args ...string) (Config, string, error) {
	t.Helper()
	var out bytes.Buffer
	c, err := parseConfig(append([]string{"orders"}, args...), func(k string) string { return env[k] }, &out)
	return c, out.String(), err
}

func TestConfigDefaults(t *testing.T) {
	c, _, err := parse(t, nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":8000" || c.Stream.URL != "nats://localhost:4222" || c.Stream.ClusterID != "test-cluster" ||
		c.Stream.Channel != "orders" || c.DBTimeout != 2*time.Second || c.LogRequests || c.Pprof {
		t.Errorf("defaults = %+v", c)
	}
}

func TestConfigFlagBeatsEnvironment(t *testing.T) {
	env := map[string]string{"HTTP_ADDR": ":9000", "BATCH_WAIT": "20ms", "LOG_REQUESTS": "true"}
	c, _, err := parse(t, env, "-http-addr", ":9100")
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPAddr != ":9100" || c.Stream.BatchWait != 20*time.Millisecond || !c.LogRequests {
		t.Errorf("got addr %q, batch wait %v, log requests %v; want :9100 from the flag, 20ms and true from the environment",
			c.HTTPAddr, c.Stream.BatchWait, c.LogRequests)
	}
}

func TestConfigIgnoresVariablesAFlagOverrides(t *testing.T) {
	env := map[string]string{"DB_TIMEOUT": "abc", "PPROF": "maybe"}
	c, _, err := parse(t, env, "-db-timeout", "1s", "-pprof=false")
	if err != nil {
		t.Fatalf("flags that override bad variables: got error %v, want none", err)
	}
	if c.DBTimeout != time.Second || c.Pprof {
		t.Errorf("got db timeout %v and pprof %v, want 1s and false from the flags", c.DBTimeout, c.Pprof)
	}
}

func TestConfigRejectsBadValues(t *testing.T) {
	tests := []struct {
		env     map[string]string
		args    []string
		wantErr string
	}{
		{map[string]string{"BATCH_WAIT": "abc"}, nil, `invalid BATCH_WAIT "abc": want a duration`},
		{map[string]string{"DB_MAX_CONNS": "many"}, nil, `invalid DB_MAX_CONNS "many": want a whole number`},
		{map[string]string{"PPROF": "maybe"}, nil, `invalid PPROF "maybe": want true or false`},
		{map[string]string{"LOG_LEVEL": "verbose"}, nil, `invalid LOG_LEVEL "verbose": want debug, info, warn or error`},
		{nil, []string{"-db-timeout=abc"}, `invalid value "abc" for flag -db-timeout: want a duration such as 500ms, 5s or 1m`},
		{nil, []string{"-batch-size", "many"}, `invalid value "many" for flag -batch-size: want a whole number`},
		{nil, []string{"-log-level", "verbose"}, `invalid value "verbose" for flag -log-level: want debug, info, warn or error`},
		{nil, []string{"-pprof=maybe"}, `invalid boolean value "maybe" for -pprof: want true or false`},
		{nil, []string{"-db-max-conns", "0"}, "-db-max-conns (DB_MAX_CONNS) must be positive"},
		{nil, []string{"-ack-wait", "500ms"}, "-ack-wait (ACK_WAIT) must be at least 1s"},
		{nil, []string{"-max-inflight", "10", "-batch-size", "100"}, "less than -batch-size"},
		{nil, []string{"-log-format", "xml"}, "-log-format (LOG_FORMAT) must be text or json"},
		{nil, []string{"-database-url", "mysql://x"}, "want a postgres:// URL"},
		{nil, []string{"-database-url", "host=x port=notaport password=hunter2"}, "not a valid postgres:// URL"},
		{nil, []string{"-nats-url", "http://x"}, "want a nats:// or tls:// URL"},
		{nil, []string{"-nats-channel", ""}, "-nats-channel (NATS_CHANNEL) must be non-empty"},
		{nil, []string{"-nats-channel", "a b"}, `-nats-channel (NATS_CHANNEL) must be non-empty letters, digits, '-', '_' and '.', got "a b"`},
		{nil, []string{"-nats-channel", "orders.*"}, "-nats-channel (NATS_CHANNEL) must be"},
		{nil, []string{"-nats-client-id", "svc.1"}, "-nats-client-id (NATS_CLIENT_ID) must be"},
		{nil, []string{"-db-timeout", "-1s"}, "-db-timeout (DB_TIMEOUT) must be positive, got -1s"},
		{nil, []string{"-no-such-flag"}, "flag provided but not defined"},
		{nil, []string{"-pprof", "true", "-api-token", "hunter2"}, "3 unexpected arguments after the flags"},
		{map[string]string{"API_TOKEN": "tok "}, nil, "starts or ends with white space"},
		{nil, []string{"-http-addr", "nonsense"}, `-http-addr (HTTP_ADDR): want host:port or :port, such as :8000, got "nonsense"`},
		{map[string]string{"HTTP_ADDR": "localhost:http"}, nil, `-http-addr (HTTP_ADDR): want a port number from 0 to 65535, got "http"`},
		{nil, []string{"-http-addr", ":70000"}, "want a port number from 0 to 65535"},
	}
	for _, tt := range tests {
		_, _, err := parse(t, tt.env, tt.args...)
		if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
			t.Errorf("env %v args %v: error %v, want one containing %q", tt.env, tt.args, err, tt.wantErr)
		}
		if err != nil && strings.Contains(err.Error(), "hunter2") {
			t.Errorf("the error repeats a password: %v", err)
		}
	}
}

func TestConfigHelpListsEverySetting(t *testing.T) {
	_, out, err := parse(t, nil, "-h")
	if !errors.Is(err, flag.ErrHelp) {
		t.Fatalf("-h returned %v, want flag.ErrHelp", err)
	}
	for _, want := range []string{"HTTP_ADDR", "DATABASE_URL", "NATS_URL", "NATS_CLUSTER_ID", "NATS_CLIENT_ID",
		"NATS_CHANNEL", "NATS_DURABLE", "LOG_FORMAT", "PPROF", `(default ":8000")`} {
		if !strings.Contains(out, want) {
			t.Errorf("-h output lacks %q:\n%s", want, out)
		}
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ in, want string }{
		{"postgres://orders:secret@db:5432/orders?sslmode=disable", "postgres://orders:xxxxx@db:5432/orders?sslmode=disable"},
		{"postgres://orders@db/orders", "postgres://orders@db/orders"},
		{"postgres://db/orders?password=secret", "postgres://db/orders?password=xxxxx"},
		{"host=db password=secret user=orders", "host=db password=xxxxx user=orders"},
		{"host=db password='se cret' user=orders", "host=db password=xxxxx user=orders"},
		{"nats://user:secret@nats:4222", "nats://user:xxxxx@nats:4222"},
		{"nats://s3cr3tt0ken@nats:4222", "nats://xxxxx@nats:4222"},
		{"nats://nats:4222", "nats://nats:4222"},
		{"nats://a:p1@n1:4222,nats://a:p2@n2:4222", "nats://a:xxxxx@n1:4222,nats://a:xxxxx@n2:4222"},
		{"nats://t1@n1:4222,nats://t2@n2:4222", "nats://xxxxx@n1:4222,nats://xxxxx@n2:4222"},
	}
	for _, tt := range tests {
		if got := redactURL(tt.in); got != tt.want {
			t.Errorf("redactURL(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}
