package main

import (
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// These tests kill, stop and restart the service, PostgreSQL and NATS
// Streaming, and check that every valid order ends up stored exactly once.

// procService is the service running as a process of its own, so that it
// can be sent SIGTERM or killed like a real deployment.
type procService struct {
	base   string
	logs   *logBuffer
	cmd    *exec.Cmd
	exited chan struct{}
}

// startProc starts the built service with the environment's settings plus
// extra ones, and waits until its API listens. It does not wait for
// readiness, so it can start with a dependency down.
func (e *testEnv) startProc(t testing.TB, extra ...string) *procService {
	t.Helper()
	return e.startProcArgs(t, nil, extra...)
}

// startProcArgs is startProc with command-line arguments for the service.
func (e *testEnv) startProcArgs(t testing.TB, args []string, extra ...string) *procService {
	t.Helper()
	port, err := freePort()
	if err != nil {
		t.Fatal(err)
	}
	vars := map[string]string{"HTTP_ADDR": fmt.Sprintf("127.0.0.1:%d", port)}
	for k, v := range e.vars {
		vars[k] = v
	}
	for i := 0; i+1 < len(extra); i += 2 {
		vars[extra[i]] = extra[i+1]
	}
	cmd := exec.Command(buildCmd(t, "."), args...)
	// Only the test's settings, not the developer's environment.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	p := &procService{base: "http://" + vars["HTTP_ADDR"], logs: &logBuffer{}, cmd: cmd, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.logs, p.logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("service (pid %d) log:\n%s", cmd.Process.Pid, p.logs)
		}
	})
	eventually(t, "service listening", func() error {
		select {
		case <-p.exited:
			return fmt.Errorf("service exited: %s", p.logs)
		default:
		}
		resp, err := http.Get(p.base + "/healthz")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return p
}

// waitReady waits until /readyz answers 200.
func (p *procService) waitReady(t testing.TB) {
	t.Helper()
	eventually(t, "service ready", func() error {
		return (&testService{base: p.base}).ready()
	})
}

// terminate sends SIGTERM and waits for a clean exit.
func (p *procService) terminate(t testing.TB) {
	t.Helper()
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(startTimeout):
		t.Fatal("service did not exit after SIGTERM")
	}
	if code := p.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code after SIGTERM = %d, want 0", code)
	}
}

// kill kills the service the way a crash would.
func (p *procService) kill() {
	p.cmd.Process.Kill()
	<-p.exited
}

// metric reads one of the service's counters from /debug/vars.
func metric(t testing.TB, base, name string) int64 {
	t.Helper()
	r := do(t, "GET", base+"/debug/vars", "", nil)
	var vars struct {
		Orders map[string]json.RawMessage `json:"orders"`
	}
	if err := json.Unmarshal([]byte(r.body), &vars); err != nil {
		t.Fatalf("/debug/vars: %v", err)
	}
	var n int64
	json.Unmarshal(vars.Orders[name], &n)
	return n
}

// count runs a counting query.
func count(t testing.TB, db *sql.DB, query string, args ...any) int {
	t.Helper()
	var n int
	if err := db.QueryRow(query, args...).Scan(&n); err != nil {
		t.Fatalf("%s: %v", query, err)
	}
	return n
}

// waitStored waits until the orders table holds n rows.
func waitStored(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("%d orders stored", n), func() error {
		var got int
		if err := db.QueryRow(`SELECT count(*) FROM orders`).Scan(&got); err != nil {
			return err
		}
		if got != n {
			return fmt.Errorf("%d stored", got)
		}
		return nil
	})
}

// waitStoredAtLeast waits until the orders table holds n rows or more.
func waitStoredAtLeast(t testing.TB, db *sql.DB, n int) {
	t.Helper()
	eventually(t, fmt.Sprintf("at least %d orders stored", n), func() error {
		if got := count(t, db, `SELECT count(*) FROM orders`); got < n {
			return fmt.Errorf("%d stored", got)
		}
		return nil
	})
}

// waitAcked waits until the server holds no unacknowledged message for
// the test's channel: after that nothing can be redelivered.
func (e *testEnv) waitAcked(t testing.TB) {
	t.Helper()
	eventually(t, "every message acknowledged", func() error {
		n, err := e.nats.pending(e.vars["NATS_CHANNEL"])
		if err != nil {
			return err
		}
		if n != 0 {
			return fmt.Errorf("%d unacknowledged", n)
		}
		return nil
	})
}

func TestRacingPublishersAndPostStoreOnce(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	body := orderWithID(t, "raced")

	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			msgs := make([][]byte, 20)
			for i := range msgs {
				msgs[i] = body
			}
			env.publish(t, msgs...)
		}()
	}
	statuses := make(chan int, 5)
	for range 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- do(t, "POST", svc.base+"/api/models", "application/json", body).status
		}()
	}
	wg.Wait()
	close(statuses)
	created := 0
	for st := range statuses {
		switch st {
		case http.StatusCreated:
			created++
		case http.StatusConflict:
		default:
			t.Errorf("POST status %d, want 201 or 409", st)
		}
	}
	if created > 1 {
		t.Errorf("%d POSTs created the order, want at most 1", created)
	}

	env.publish(t, orderWithID(t, "marker"))
	getOK(t, svc.base+"/api/models/cache/marker")
	env.waitAcked(t)
	db := env.db(t)
	if n := count(t, db, `SELECT count(*) FROM orders WHERE order_uid = 'raced'`); n != 1 {
		t.Errorf("rows for the raced order = %d, want 1", n)
	}
	if n := count(t, db, `SELECT count(*) FROM rejected`); n != 0 {
		t.Errorf("rejected rows = %d, want 0: identical copies are duplicates, not conflicts", n)
	}
	r := do(t, "GET", svc.base+"/api/models/cache/raced", "", nil)
	if r.body != answer(body) {
		t.Errorf("cached raced order = %s, want %s", r.body, body)
	}
}

func TestOrderThePostgresRefusesIsRejectedAlone(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	db := env.db(t)
	// Stand-in for any order PostgreSQL refuses although it passed
	// validation: a trigger that raises a data exception.
	_, err := db.Exec(`
		CREATE FUNCTION refuse_poison() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NEW.order_uid LIKE 'poison%' THEN
				RAISE EXCEPTION 'poison order' USING ERRCODE = '22023';
			END IF;
			RETURN NEW;
		END $$;
		CREATE TRIGGER refuse_poison BEFORE INSERT ON orders
			FOR EACH ROW EXECUTE FUNCTION refuse_poison();`)
	if err != nil {
		t.Fatal(err)
	}

	env.publish(t, orderWithID(t, "good-1"), orderWithID(t, "poison-1"), orderWithID(t, "good-2"))
	getOK(t, svc.base+"/api/models/cache/good-1")
	getOK(t, svc.base+"/api/models/cache/good-2")
	env.waitAcked(t)

	if n := count(t, db, `SELECT count(*) FROM orders`); n != 2 {
		t.Errorf("orders stored = %d, want 2", n)
	}
	var reason string
	if err := db.QueryRow(`SELECT reason FROM rejected WHERE sequence = 2`).Scan(&reason); err != nil {
		t.Fatalf("no rejected row for the poison order: %v", err)
	}
	if !strings.Contains(reason, "database refused the order: poison order") {
		t.Errorf("rejection reason = %q, want it to say the database refused the order", reason)
	}

	r := do(t, "GET", svc.base+"/api/rejected", "", nil)
	var listed []rejectedJSON
	if err := json.Unmarshal([]byte(r.body), &listed); err != nil || len(listed) != 1 || listed[0].Sequence != 2 {
		t.Errorf("GET /api/rejected = %s, want one message with sequence 2", r.body)
	}
}

func TestRejectedListPages(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	env.publish(t, []byte("one"), []byte{0xff, 0xfe}, []byte("three"))
	eventually(t, "three rejected", func() error {
		if n := metric(t, svc.base, "rejected"); n != 3 {
			return fmt.Errorf("%d rejected", n)
		}
		return nil
	})

	first := do(t, "GET", svc.base+"/api/rejected?limit=2", "", nil)
	var page []rejectedJSON
	json.Unmarshal([]byte(first.body), &page)
	if len(page) != 2 || page[0].Payload == nil || *page[0].Payload != "one" || page[1].PayloadBase64 != "//4=" {
		t.Fatalf("first page = %s, want \"one\" as text and 0xfffe in base64", first.body)
	}
	link := first.header.Get("Link")
	want := fmt.Sprintf("</api/rejected?after=%d&limit=2>; rel=\"next\"", page[1].ID)
	if link != want {
		t.Fatalf("Link = %q, want %q", link, want)
	}
	second := do(t, "GET", svc.base+strings.TrimPrefix(strings.Split(link, ">")[0], "<"), "", nil)
	json.Unmarshal([]byte(second.body), &page)
	if len(page) != 1 || *page[0].Payload != "three" || second.header.Get("Link") != "" {
		t.Errorf("second page = %s (Link %q), want only \"three\" and no Link", second.body, second.header.Get("Link"))
	}
	bad := do(t, "GET", svc.base+"/api/rejected?after=-1", "", nil)
	wantStatus(t, "after=-1", bad, http.StatusBadRequest)
}

func TestRejectedPagesStopAtTheirByteBudget(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	// Five messages of 0.4 of the budget each: a page takes those that
	// start within the budget, so pages of 3 and 2, however high the limit.
	size := maxRejectedPage * 2 / 5
	for i := range 5 {
		_, err := env.db(t).Exec(`INSERT INTO rejected (channel, sequence, payload, reason) VALUES ('big', $1, $2, 'too big')`,
			i+1, bytes.Repeat([]byte{'x'}, size))
		if err != nil {
			t.Fatal(err)
		}
	}

	var seqs []uint64
	var pageSizes []int
	target := svc.base + "/api/rejected?limit=100"
	for target != "" && len(pageSizes) < 10 {
		r := do(t, "GET", target, "", nil)
		wantStatus(t, "GET "+target, r, http.StatusOK)
		var page []rejectedJSON
		if err := json.Unmarshal([]byte(r.body), &page); err != nil {
			t.Fatalf("page is not JSON: %v", err)
		}
		for _, m := range page {
			if m.Payload == nil || len(*m.Payload) != size {
				t.Fatalf("message %d has a payload of %d bytes, want %d", m.Sequence, len(*m.Payload), size)
			}
			seqs = append(seqs, m.Sequence)
		}
		pageSizes = append(pageSizes, len(page))
		target = ""
		if link := r.header.Get("Link"); link != "" {
			target = svc.base + strings.TrimPrefix(strings.Split(link, ">")[0], "<")
		}
	}
	if fmt.Sprint(pageSizes) != "[3 2]" || fmt.Sprint(seqs) != "[1 2 3 4 5]" {
		t.Errorf("pages of %v holding sequences %v, want pages of [3 2] holding [1 2 3 4 5]", pageSizes, seqs)
	}
}

func TestSIGTERMFinishesAndRestartContinues(t *testing.T) {
	env := newTestEnv(t)
	svc := env.startProc(t)
	svc.waitReady(t)
	db := env.db(t)

	// Publish at a pace that keeps ingestion going, and stop the
	// service in the middle of it.
	published := env.produceAsync(t, "-n", "3000", "-rate", "1500", "-q")
	waitStoredAtLeast(t, db, 500)
	svc.terminate(t)
	stored := count(t, db, `SELECT count(*) FROM orders`)
	if stored >= 3000 {
		t.Fatalf("all orders were stored before the stop; the test did not stop mid-stream")
	}
	t.Logf("stopped with %d of 3000 orders stored", stored)

	// The steps of a graceful shutdown, in order.
	logs := svc.logs.String()
	last := -1
	for _, step := range []string{"shutting down", "http stopped", "stream closed", "database closed"} {
		i := strings.Index(logs, "msg=\""+step+"\"")
		if i < 0 {
			i = strings.Index(logs, "msg="+step)
		}
		if i <= last {
			t.Fatalf("shutdown step %q missing or out of order in:\n%s", step, logs)
		}
		last = i
	}

	published()
	env.produce(t, "-n", "500", "-q") // published while the service is down
	again := env.startProc(t)
	again.waitReady(t)
	waitStored(t, db, 3500)
	env.waitAcked(t)
	if n := count(t, db, `SELECT count(*) FROM rejected`); n != 0 {
		t.Errorf("rejected = %d, want 0", n)
	}
	if n := metric(t, again.base, "cache_orders"); n != 3500 {
		t.Errorf("cache holds %d orders, want 3500", n)
	}
}

func TestKillDuringIngestionLosesNothing(t *testing.T) {
	env := newTestEnv(t)
	svc := env.startProc(t)
	svc.waitReady(t)
	db := env.db(t)

	published := env.produceAsync(t, "-n", "4000", "-rate", "2000", "-q")
	waitStoredAtLeast(t, db, 500)
	svc.kill()
	stored := count(t, db, `SELECT count(*) FROM orders`)
	if stored >= 4000 {
		t.Fatalf("all orders were stored before the kill; the test did not kill mid-stream")
	}
	t.Logf("killed with %d of 4000 orders stored", stored)

	// Restart at once: the streaming server may still hold the dead
	// process's client id, and the new one must wait it out.
	again := env.startProc(t)
	again.waitReady(t)
	t.Logf("restarted; %d connection attempts were refused first", again.logs.count("stream connect failed"))
	published()
	waitStored(t, db, 4000)
	env.waitAcked(t)
	if n := metric(t, again.base, "cache_orders"); n != 4000 {
		t.Errorf("cache holds %d orders, want 4000", n)
	}
	if n := count(t, db, `SELECT count(*) FROM rejected`); n != 0 {
		t.Errorf("rejected = %d, want 0", n)
	}
}

func TestNATSRestartMidStream(t *testing.T) {
	env := newPrivateEnv(t)
	svc := env.start(t)
	db := env.db(t)

	env.produce(t, "-n", "2000", "-q") // before
	if err := env.nats.stop(); err != nil {
		t.Fatal(err)
	}
	eventually(t, "readyz reports the stream down", func() error {
		r := do(t, "GET", svc.base+"/readyz", "", nil)
		if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"stream":"disconnected"`) {
			return fmt.Errorf("readyz %d %s", r.status, r.body)
		}
		return nil
	})
	if err := env.nats.start(); err != nil {
		t.Fatal(err)
	}
	env.produce(t, "-n", "1000", "-q") // during: before the service is back
	eventually(t, "stream reconnected", func() error {
		return svc.ready()
	})
	env.produce(t, "-n", "1000", "-q") // after

	waitStored(t, db, 4000)
	env.waitAcked(t)
	if n := svc.logs.count("stream connected"); n < 2 {
		t.Errorf("stream connected %d times, want a reconnection", n)
	}
}

func TestPostgresOutage(t *testing.T) {
	env := newPrivateEnv(t)
	svc := env.start(t, "DB_TIMEOUT", "500ms")
	body := orderWithID(t, "before-outage")
	wantStatus(t, "POST", do(t, "POST", svc.base+"/api/models", "application/json", body), http.StatusCreated)

	if err := env.pg.stop(); err != nil {
		t.Fatal(err)
	}
	// The cache keeps serving; database routes fail fast with 503.
	r := do(t, "GET", svc.base+"/api/models/cache/before-outage", "", nil)
	wantStatus(t, "cache route during the outage", r, http.StatusOK)
	for _, path := range []string{"/api/models/before-outage", "/api/models"} {
		start := time.Now()
		r := do(t, "GET", svc.base+path, "", nil)
		took := time.Since(start)
		wantStatus(t, "GET "+path+" during the outage", r, http.StatusServiceUnavailable)
		if r.header.Get("Retry-After") == "" || took > 3*time.Second {
			t.Errorf("GET %s took %v with Retry-After %q, want a quick 503 with Retry-After", path, took, r.header.Get("Retry-After"))
		}
		if msg := errorOf(t, r); strings.Contains(msg, "dial") || strings.Contains(msg, "pq:") {
			t.Errorf("503 leaks internals: %q", msg)
		}
	}
	r = do(t, "GET", svc.base+"/readyz", "", nil)
	if r.status != http.StatusServiceUnavailable || !strings.Contains(r.body, `"database":"down"`) {
		t.Errorf("readyz during the outage = %d %s, want 503 naming the database down", r.status, r.body)
	}

	env.produce(t, "-n", "500", "-q")
	if err := env.pg.start(); err != nil {
		t.Fatal(err)
	}
	db := env.db(t)
	waitStored(t, db, 501)
	env.waitAcked(t)
	if n := metric(t, svc.base, "cache_orders"); n != 501 {
		t.Errorf("cache holds %d orders, want 501", n)
	}
	eventually(t, "ready again", svc.ready)
}

func TestFrozenDatabaseAnswers503InTime(t *testing.T) {
	env := newPrivateEnv(t)
	svc := env.start(t, "DB_TIMEOUT", "500ms")
	wantStatus(t, "POST", do(t, "POST", svc.base+"/api/models", "application/json", orderWithID(t, "frozen")), http.StatusCreated)

	if err := env.pg.freeze(); err != nil {
		t.Fatal(err)
	}
	defer env.pg.thaw()
	client := &http.Client{Timeout: 10 * time.Second}
	for _, req := range []struct{ method, path string }{
		{"GET", "/api/models/frozen"},
		{"GET", "/api/models?limit=5"},
		{"DELETE", "/api/models/frozen"},
		{"GET", "/readyz"},
	} {
		start := time.Now()
		hr, _ := http.NewRequest(req.method, svc.base+req.path, nil)
		resp, err := client.Do(hr)
		if err != nil {
			t.Fatalf("%s %s with the database frozen: %v", req.method, req.path, err)
		}
		resp.Body.Close()
		if took := time.Since(start); resp.StatusCode != http.StatusServiceUnavailable || took > 2*time.Second {
			t.Errorf("%s %s with the database frozen = %d after %v, want 503 within about DB_TIMEOUT (500ms)", req.method, req.path, resp.StatusCode, took)
		}
	}
	wantStatus(t, "cache route with the database frozen", do(t, "GET", svc.base+"/api/models/cache/frozen", "", nil), http.StatusOK)

	if err := env.pg.thaw(); err != nil {
		t.Fatal(err)
	}
	getOK(t, svc.base+"/api/models/frozen")
	eventually(t, "ready after the thaw", svc.ready)
}

func TestShutdownWithFrozenDatabaseIsBounded(t *testing.T) {
	env := newPrivateEnv(t)
	svc := env.start(t)
	env.publish(t, orderWithID(t, "before-freeze"))
	getOK(t, svc.base+"/api/models/cache/before-freeze")

	if err := env.pg.freeze(); err != nil {
		t.Fatal(err)
	}
	defer env.pg.thaw()
	env.publish(t, orderWithID(t, "during-freeze"))
	eventually(t, "the message handed to the service", func() error {
		n, err := env.nats.pending(env.vars["NATS_CHANNEL"])
		if err == nil && n == 0 {
			err = errors.New("no message awaits acknowledgement")
		}
		return err
	})

	// The batch's connection would wait out its stall timeout (20 s);
	// shutdown gives up on it after stopTimeout.
	start := time.Now()
	svc.stop(t)
	if took := time.Since(start); took > stopTimeout+5*time.Second {
		t.Errorf("shutdown with the database frozen took %v, want about %v at most", took, stopTimeout)
	}

	// Nothing is lost: the unacknowledged message comes again.
	if err := env.pg.thaw(); err != nil {
		t.Fatal(err)
	}
	svc = env.start(t)
	getOK(t, svc.base+"/api/models/cache/during-freeze")
}

func TestServiceStartsBeforePostgres(t *testing.T) {
	env := newPrivateEnv(t)
	if err := env.pg.stop(); err != nil {
		t.Fatal(err)
	}
	svc := env.startProc(t)
	r := do(t, "GET", svc.base+"/readyz", "", nil)
	if r.status != http.StatusServiceUnavailable {
		t.Errorf("readyz without a database = %d, want 503", r.status)
	}
	if err := env.pg.start(); err != nil {
		t.Fatal(err)
	}
	svc.waitReady(t)
	env.produce(t)
	getOK(t, svc.base+"/api/models/b563feb7b2b84b6test")
}

func TestPostgresRestartWhileLoadingIsWaitedOut(t *testing.T) {
	env := newPrivateEnv(t)
	db := env.db(t)
	if _, err := db.Exec(schema); err != nil {
		t.Fatal(err)
	}
	// Hold the service at the start of its load: with a queue group it
	// first records itself in followers, which this lock makes wait.
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`LOCK TABLE followers IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	svc := env.startProc(t, "NATS_QUEUE_GROUP", "orders")
	eventually(t, "service waiting on the lock", func() error {
		var n int
		if err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'`).Scan(&n); err != nil || n == 0 {
			return fmt.Errorf("%d sessions wait for a lock (err %v)", n, err)
		}
		return nil
	})

	if err := env.pg.stop(); err != nil {
		t.Fatal(err)
	}
	if err := env.pg.start(); err != nil {
		t.Fatal(err)
	}
	svc.waitReady(t)
	if svc.logs.count("loading cache failed") == 0 {
		t.Errorf("the service did not report the interrupted load:\n%s", svc.logs)
	}
	env.produce(t)
	getOK(t, svc.base+"/api/models/cache/b563feb7b2b84b6test")
}

func TestSlowDatabaseRedeliveryStoresOnce(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t, "ACK_WAIT", "1s")
	db := env.db(t)
	// The first batch takes longer than the acknowledgement wait, so the
	// server sends its messages again while it is still being written.
	_, err := db.Exec(`
		CREATE TABLE slow_once (done bool NOT NULL);
		INSERT INTO slow_once VALUES (false);
		CREATE FUNCTION slow_first() RETURNS trigger LANGUAGE plpgsql AS $$
		BEGIN
			IF NOT (SELECT done FROM slow_once) THEN
				UPDATE slow_once SET done = true;
				PERFORM pg_sleep(2.5);
			END IF;
			RETURN NULL;
		END $$;
		CREATE TRIGGER slow_first AFTER INSERT ON orders
			FOR EACH STATEMENT EXECUTE FUNCTION slow_first();`)
	if err != nil {
		t.Fatal(err)
	}

	env.produce(t, "-n", "200", "-q")
	waitStored(t, db, 200)
	env.waitAcked(t)
	if n := metric(t, svc.base, "redelivered"); n == 0 {
		t.Fatalf("no message was redelivered; the test did not slow the database enough")
	}
	if dup, ing := metric(t, svc.base, "duplicates"), metric(t, svc.base, "ingested"); ing != 200 || dup == 0 {
		t.Errorf("ingested %d, duplicates %d; want 200 ingested and the redelivered copies counted as duplicates", ing, dup)
	}
	if n := count(t, db, `SELECT count(*) FROM orders`); n != 200 {
		t.Errorf("orders = %d, want 200", n)
	}
}

func TestDatabaseRouteOverloadAnswers503(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t, "DB_MAX_CONNS", "2", "DB_TIMEOUT", "200ms")
	wantStatus(t, "POST", do(t, "POST", svc.base+"/api/models", "application/json", orderWithID(t, "busy")), http.StatusCreated)

	// Hold a lock every read waits for, so requests pile up on the two
	// connections and must time out.
	db := env.db(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(`LOCK TABLE orders IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	statuses := make(chan response, 32)
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			statuses <- do(t, "GET", svc.base+"/api/models/busy", "", nil)
		}()
	}
	wg.Wait()
	tx.Rollback()
	close(statuses)
	for r := range statuses {
		if r.status != http.StatusServiceUnavailable || r.header.Get("Retry-After") == "" {
			t.Fatalf("overloaded database route = %d %s (Retry-After %q), want 503 with Retry-After", r.status, r.body, r.header.Get("Retry-After"))
		}
	}

	r := do(t, "GET", svc.base+"/api/models/busy", "", nil)
	wantStatus(t, "after the load", r, http.StatusOK)
}

// A DELETE that commits while a stream batch waits to insert the same
// order must win: the batch's insert checked for tombstones before the
// DELETE made one, and would otherwise store the order again under it.
func TestDeleteRacingBatchInsertStaysDeleted(t *testing.T) {
	env := newTestEnv(t)
	store := env.store(t)
	ctx := context.Background()
	record := func(body []byte) Record {
		r, err := decodeOrder(body)
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	same := record(orderWithID(t, "racing-same"))
	other := record(orderWithID(t, "racing-other"))
	changed := record(modified(t, func(m map[string]any) {
		m["order_uid"] = "racing-other"
		m["customer_id"] = "someone-else"
	}))

	first, err := store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if out, err := first.InsertBatch(ctx, []Record{same, other}); err != nil || out[0] != Inserted || out[1] != Inserted {
		t.Fatalf("storing the orders: outcomes %v, error %v", out, err)
	}
	if err := first.Commit(); err != nil {
		t.Fatal(err)
	}

	deleter, err := store.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer deleter.Rollback()
	for _, uid := range []string{same.UID, other.UID} {
		if _, err := deleter.Delete(ctx, uid); err != nil {
			t.Fatalf("deleting %s: %v", uid, err)
		}
	}

	type result struct {
		out []Outcome
		err error
	}
	done := make(chan result, 1)
	go func() {
		tx, err := store.Begin(ctx)
		if err != nil {
			done <- result{err: err}
			return
		}
		defer tx.Rollback()
		out, err := tx.InsertBatch(ctx, []Record{same, changed})
		if err == nil {
			err = tx.Commit()
		}
		done <- result{out, err}
	}()

	// The batch's insert now waits for the deleter's row locks.
	db := env.db(t)
	eventually(t, "the batch insert waiting for the delete", func() error {
		var waiting int
		err := db.QueryRow(`SELECT count(*) FROM pg_stat_activity
			WHERE wait_event_type = 'Lock' AND query LIKE '%INSERT INTO orders%'`).Scan(&waiting)
		if err != nil || waiting == 0 {
			return fmt.Errorf("%d waiting (%v)", waiting, err)
		}
		return nil
	})
	if err := deleter.Commit(); err != nil {
		t.Fatal(err)
	}

	r := <-done
	if r.err != nil {
		t.Fatalf("batch insert: %v", r.err)
	}
	if r.out[0] != Deleted || r.out[1] != DeletedDiffers {
		t.Errorf("outcomes = %v, want [%v %v] (deleted; deleted, and a different order)", r.out, Deleted, DeletedDiffers)
	}
	var stored, tombstones int
	db.QueryRow(`SELECT count(*) FROM orders WHERE order_uid LIKE 'racing-%'`).Scan(&stored)
	db.QueryRow(`SELECT count(*) FROM deleted_orders WHERE order_uid LIKE 'racing-%'`).Scan(&tombstones)
	if stored != 0 || tombstones != 2 {
		t.Errorf("after the race: %d orders and %d tombstones, want 0 and 2", stored, tombstones)
	}
}
