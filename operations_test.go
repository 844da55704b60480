package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

func TestLogsAreJSONWhenAsked(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t, "LOG_FORMAT", "json", "LOG_REQUESTS", "true", "LOG_LEVEL", "info")
	do(t, "GET", svc.base+"/healthz", "", nil)
	do(t, "GET", svc.base+"/api/models/cache/missing", "", nil)

	var sawStart, sawRequest bool
	eventually(t, "request logged", func() error {
		sawStart, sawRequest = false, false
		for _, line := range strings.Split(strings.TrimSpace(svc.logs.String()), "\n") {
			var rec map[string]any
			if err := json.Unmarshal([]byte(line), &rec); err != nil {
				t.Fatalf("log line is not JSON: %q", line)
			}
			switch rec["msg"] {
			case "starting":
				sawStart = true
				cfg, _ := rec["config"].(map[string]any)
				if s, ok := cfg["db_timeout"].(string); !ok || s == "" {
					t.Errorf("config.db_timeout in the JSON start line = %#v, want a duration such as \"2s\"", cfg["db_timeout"])
				}
			case "request":
				if rec["path"] == "/api/models/cache/missing" && rec["status"] == float64(404) {
					sawRequest = true
				}
			}
		}
		if !sawStart || !sawRequest {
			return errNotYet
		}
		return nil
	})
}

func TestStartLineShowsConfigurationWithoutSecrets(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	logs := svc.logs.String()
	if strings.Contains(logs, testPGPassword) {
		t.Errorf("the log holds the database password:\n%s", logs)
	}
	if svc.logs.count("msg=starting", "config.database_url=", "xxxxx", "config.nats_channel="+env.vars["NATS_CHANNEL"]) != 1 {
		t.Errorf("no start-up line with the redacted configuration:\n%s", logs)
	}
	// Requests are not logged unless asked for.
	do(t, "GET", svc.base+"/healthz", "", nil)
	if n := svc.logs.count("msg=request"); n != 0 {
		t.Errorf("%d request lines with LOG_REQUESTS off, want none", n)
	}
}

func TestProfilingIsOffUnlessEnabled(t *testing.T) {
	env := newTestEnv(t)
	off := env.start(t)
	wantStatus(t, "pprof when off", do(t, "GET", off.base+"/debug/pprof/", "", nil), http.StatusNotFound)
	off.stop(t)

	on := env.start(t, "PPROF", "true")
	r := do(t, "GET", on.base+"/debug/pprof/", "", nil)
	wantStatus(t, "pprof when on", r, http.StatusOK)
	if !strings.Contains(r.body, "goroutine") {
		t.Errorf("pprof index does not list profiles:\n%.300s", r.body)
	}
}

func TestMetricsCountWhatHappens(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	wantStatus(t, "POST", do(t, "POST", svc.base+"/api/models", "application/json", orderWithID(t, "m-1")), http.StatusCreated)
	do(t, "GET", svc.base+"/api/models/cache/nope", "", nil)
	env.publish(t, orderWithID(t, "m-2"), orderWithID(t, "m-2"), []byte("junk"))
	getOK(t, svc.base+"/api/models/cache/m-2")
	env.waitAcked(t)

	for name, want := range map[string]int64{"created": 1, "ingested": 1, "duplicates": 1, "rejected": 1, "cache_orders": 2} {
		if got := metric(t, svc.base, name); got != want {
			t.Errorf("metric %s = %d, want %d", name, got, want)
		}
	}
	r := do(t, "GET", svc.base+"/debug/vars", "", nil)
	var vars struct {
		Memstats map[string]any `json:"memstats"`
		Orders   struct {
			HTTP map[string]int64 `json:"http_responses"`
		} `json:"orders"`
	}
	if err := json.Unmarshal([]byte(r.body), &vars); err != nil {
		t.Fatal(err)
	}
	if vars.Memstats == nil || vars.Orders.HTTP["4xx"] < 1 || vars.Orders.HTTP["2xx"] < 1 {
		t.Errorf("/debug/vars lacks memstats or response counts: %.400s", r.body)
	}
}
