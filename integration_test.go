package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/nats-io/stan.go"
)

// do sends one request and returns the response with its body read.
func do(t testing.TB, method, url, contentType string, body []byte) response {
	t.Helper()
	req, err := http.NewRequest(method, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("%s %s: reading body: %v", method, url, err)
	}
	return response{resp.StatusCode, resp.Header, string(data)}
}

// wantStatus fails t unless r has the status.
func wantStatus(t testing.TB, what string, r response, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s = %d %s, want %d", what, r.status, r.body, status)
	}
}

// getOK polls url until it answers 200 and returns the body.
func getOK(t testing.TB, url string) string {
	t.Helper()
	var body string
	eventually(t, "GET "+url, func() error {
		r := do(t, "GET", url, "", nil)
		if r.status != http.StatusOK {
			return fmt.Errorf("status %d: %s", r.status, r.body)
		}
		body = r.body
		return nil
	})
	return body
}

// publish sends raw messages to the test's channel and waits for the
// server to acknowledge each.
func (e *testEnv) publish(t testing.TB, msgs ...[]byte) {
	t.Helper()
	sc, err := stan.Connect(testClusterID, unique("pub"), stan.NatsURL(e.vars["NATS_URL"]))
	if err != nil {
		t.Fatalf("connecting publisher: %v", err)
	}
	defer sc.Close()
	for _, m := range msgs {
		if err := sc.Publish(e.vars["NATS_CHANNEL"], m); err != nil {
			t.Fatalf("publishing: %v", err)
		}
	}
}

var (
	buildMu sync.Mutex
	built   = map[string]string{}
)

// buildCmd builds a command of this module once per test run and returns
// its path. Under -race the binary is built with the race detector too.
func buildCmd(t testing.TB, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if p, ok := built[pkg]; ok {
		return p
	}
	name := filepath.Base(pkg)
	if pkg == "." {
		name = "orders"
	}
	out := filepath.Join(harnessDir, "bin", name)
	args := []string{"build", "-o", out}
	if raceEnabled {
		args = append(args, "-race")
	}
	cmd := exec.Command("go", append(args, pkg)...)
	if msg, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, msg)
	}
	built[pkg] = out
	return out
}

// produce runs the producer with the test's NATS settings.
func (e *testEnv) produce(t testing.TB, args ...string) string {
	t.Helper()
	return e.produceAsync(t, args...)()
}

// produceAsync starts the producer and returns a function that waits for
// it to succeed and returns its output.
func (e *testEnv) produceAsync(t testing.TB, args ...string) (wait func() string) {
	t.Helper()
	cmd := exec.Command(buildCmd(t, "./producer"), args...)
	cmd.Env = []string{
		"PATH=" + os.Getenv("PATH"),
		"NATS_URL=" + e.vars["NATS_URL"],
		"NATS_CLUSTER_ID=" + e.vars["NATS_CLUSTER_ID"],
		"NATS_CHANNEL=" + e.vars["NATS_CHANNEL"],
	}
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	return func() string {
		t.Helper()
		if err := cmd.Wait(); err != nil {
			t.Fatalf("producer %v: %v\n%s", args, err, out.String())
		}
		return out.String()
	}
}

func canonicalSample(t testing.TB) Record {
	t.Helper()
	r, err := decodeOrder(sampleOrder(t))
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// answer is what the API sends for an order whose stored body is body.
func answer(body []byte) string {
	return string(body) + "\n"
}

// orderWithID returns the sample order with another order_uid, encoded
// canonically.
func orderWithID(t testing.TB, uid string) []byte {
	t.Helper()
	data := modified(t, set("order_uid", uid))
	r, err := decodeOrder(data)
	if err != nil {
		t.Fatal(err)
	}
	return r.Body
}

func TestProducerSampleReachesDatabaseAndCache(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)

	out := env.produce(t)
	if !strings.Contains(out, "1 acknowledged, 0 failed") {
		t.Errorf("producer output %q does not report one acknowledged publish", out)
	}

	want := canonicalSample(t)
	fromCache := getOK(t, svc.base+"/api/models/cache/"+want.UID)
	fromDB := getOK(t, svc.base+"/api/models/"+want.UID)
	if fromCache != answer(want.Body) {
		t.Errorf("cache route = %s\nwant %s", fromCache, answer(want.Body))
	}
	if fromDB != fromCache {
		t.Errorf("database route and cache route differ:\n%s\n%s", fromDB, fromCache)
	}
}

func TestProducerCopiesGetFreshIDs(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)

	env.produce(t, "-n", "50")
	var ids []string
	eventually(t, "50 orders in the cache", func() error {
		ids = listIDs(t, do(t, "GET", svc.base+"/api/models/cache", "", nil).body)
		if len(ids) != 50 {
			return fmt.Errorf("cache lists %d orders", len(ids))
		}
		return nil
	})
	seen := map[string]bool{}
	for _, id := range ids {
		if id == canonicalSample(t).UID || seen[id] {
			t.Fatalf("id %s is the sample's or repeated", id)
		}
		seen[id] = true
	}
}

func TestCreateGetDeleteRoundTrip(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	body := orderWithID(t, "round-trip-1")

	r := do(t, "POST", svc.base+"/api/models", "application/json", body)
	wantStatus(t, "POST", r, http.StatusCreated)
	if loc := r.header.Get("Location"); loc != "/api/models/round-trip-1" {
		t.Errorf("Location = %q, want /api/models/round-trip-1", loc)
	}
	if r.body != answer(body) {
		t.Errorf("POST answered %s, want the stored order %s", r.body, body)
	}

	for _, path := range []string{"/api/models/round-trip-1", "/api/models/cache/round-trip-1"} {
		r := do(t, "GET", svc.base+path, "", nil)
		wantStatus(t, "GET "+path, r, http.StatusOK)
		if r.body != answer(body) {
			t.Errorf("GET %s = %s, want %s", path, r.body, body)
		}
	}

	r = do(t, "DELETE", svc.base+"/api/models/round-trip-1", "", nil)
	wantStatus(t, "DELETE", r, http.StatusOK)
	if r.body != answer(body) {
		t.Errorf("DELETE answered %s, want the deleted order", r.body)
	}
	for _, path := range []string{"/api/models/round-trip-1", "/api/models/cache/round-trip-1"} {
		r := do(t, "GET", svc.base+path, "", nil)
		wantStatus(t, "GET "+path+" after DELETE", r, http.StatusNotFound)
		errorOf(t, r)
	}
	r = do(t, "DELETE", svc.base+"/api/models/round-trip-1", "", nil)
	wantStatus(t, "second DELETE", r, http.StatusNotFound)
}

func TestDuplicatePostIsConflict(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	body := orderWithID(t, "dup-1")

	wantStatus(t, "first POST", do(t, "POST", svc.base+"/api/models", "application/json", body), http.StatusCreated)
	r := do(t, "POST", svc.base+"/api/models", "application/json", body)
	wantStatus(t, "second POST", r, http.StatusConflict)
	if msg := errorOf(t, r); !strings.Contains(msg, "already exists") {
		t.Errorf("409 error = %q, want it to say the order already exists", msg)
	}

	var n int
	if err := env.db(t).QueryRow(`SELECT count(*) FROM orders WHERE order_uid = 'dup-1'`).Scan(&n); err != nil || n != 1 {
		t.Errorf("rows for dup-1 = %d (%v), want 1", n, err)
	}
}

func TestRestartRestoresCacheFromDatabase(t *testing.T) {
	env := newTestEnv(t)
	first := env.start(t)
	want := map[string][]byte{}
	for i := range 3 {
		uid := fmt.Sprintf("restart-%d", i)
		want[uid] = orderWithID(t, uid)
		wantStatus(t, "POST "+uid, do(t, "POST", first.base+"/api/models", "application/json", want[uid]), http.StatusCreated)
	}
	if err := first.stop(t); err != nil {
		t.Fatalf("stopping the service: %v", err)
	}

	second := env.start(t)
	for uid, body := range want {
		r := do(t, "GET", second.base+"/api/models/cache/"+uid, "", nil)
		wantStatus(t, "GET cache "+uid+" after restart", r, http.StatusOK)
		if r.body != answer(body) {
			t.Errorf("cache %s after restart = %s, want %s", uid, r.body, body)
		}
	}
	if second.logs.count("cache loaded", "orders=3") != 1 {
		t.Errorf("restart log does not report loading 3 orders:\n%s", second.logs)
	}
}

func TestBadMessagesAreRecordedAndSkipped(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)

	notJSON := []byte("this is not JSON")
	negative := modified(t, set("payment.amount", -5))
	// PostgreSQL cannot store a NUL in text: the reason naming this key
	// must still be storable, or the message would block the channel.
	nulKey := []byte(`{"bad\u0000key": 1}`)
	env.publish(t, notJSON, negative, []byte{}, nulKey, orderWithID(t, "after-bad-ones"))
	getOK(t, svc.base+"/api/models/cache/after-bad-ones")

	if svc.logs.count("message rejected", "seq=1", "not JSON") != 1 {
		t.Errorf("no log line rejects seq 1 as invalid JSON")
	}
	if svc.logs.count("message rejected", "seq=2", "payment.amount: must not be negative") != 1 {
		t.Errorf("no log line rejects seq 2 for its negative amount")
	}
	wantRejected := []struct {
		seq    int
		reason string
		data   []byte
	}{
		{1, "not JSON", notJSON},
		{2, "payment.amount: must not be negative", negative},
		{3, "empty document", []byte{}},
		{4, `"bad\x00key": unknown field`, nulKey},
	}
	rows, err := env.db(t).Query(`SELECT sequence, reason, payload FROM rejected ORDER BY sequence`)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	n := 0
	for ; rows.Next(); n++ {
		var seq int
		var reason string
		var payload []byte
		if err := rows.Scan(&seq, &reason, &payload); err != nil {
			t.Fatal(err)
		}
		if n >= len(wantRejected) {
			t.Fatalf("unexpected rejected row %d %q", seq, reason)
		}
		w := wantRejected[n]
		if seq != w.seq || !strings.HasPrefix(reason, w.reason) || !bytes.Equal(payload, w.data) {
			t.Errorf("rejected row %d = (%d, %q, %q), want (%d, %q..., the published bytes)", n, seq, reason, payload, w.seq, w.reason)
		}
	}
	if n != len(wantRejected) {
		t.Errorf("rejected holds %d rows, want %d", n, len(wantRejected))
	}

	// The bad messages were acknowledged: a restart does not see them
	// again, and a new order still arrives.
	if err := svc.stop(t); err != nil {
		t.Fatal(err)
	}
	again := env.start(t)
	env.publish(t, orderWithID(t, "after-restart"))
	getOK(t, again.base+"/api/models/cache/after-restart")
	if n := again.logs.count("message rejected"); n != 0 {
		t.Errorf("after restart %d messages were rejected again, want 0:\n%s", n, again.logs)
	}
}

func TestStreamRedeliveryIsNoOpAndConflictIsRejected(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	body := orderWithID(t, "same-id")
	other := modified(t, func(m map[string]any) {
		m["order_uid"] = "same-id"
		m["customer_id"] = "someone-else"
	})

	env.publish(t, body, body, other, orderWithID(t, "marker"))
	getOK(t, svc.base+"/api/models/cache/marker")

	r := do(t, "GET", svc.base+"/api/models/same-id", "", nil)
	if r.body != answer(body) {
		t.Errorf("stored same-id = %s, want the first version", r.body)
	}
	var rows, rejected int
	db := env.db(t)
	db.QueryRow(`SELECT count(*) FROM orders`).Scan(&rows)
	db.QueryRow(`SELECT count(*) FROM rejected WHERE reason LIKE '%already stored with different content%'`).Scan(&rejected)
	if rows != 2 || rejected != 1 {
		t.Errorf("orders = %d, conflicting rejections = %d; want 2 and 1", rows, rejected)
	}
}

func TestListsAgreeAndPage(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	ids := []string{"m-3", "m-1", "M-2", "m-10", "a"}
	for _, id := range ids {
		wantStatus(t, "POST "+id, do(t, "POST", svc.base+"/api/models", "application/json", orderWithID(t, id)), http.StatusCreated)
	}

	fromDB := do(t, "GET", svc.base+"/api/models", "", nil)
	fromCache := do(t, "GET", svc.base+"/api/models/cache", "", nil)
	if fromDB.body != fromCache.body {
		t.Fatalf("database list and cache list differ:\n%s\n%s", fromDB.body, fromCache.body)
	}
	// Byte order of order_uid: upper case sorts before lower case.
	if got := strings.Join(listIDs(t, fromDB.body), " "); got != "M-2 a m-1 m-10 m-3" {
		t.Errorf("list order = %s, want M-2 a m-1 m-10 m-3", got)
	}

	for _, base := range []string{"/api/models", "/api/models/cache"} {
		page := do(t, "GET", svc.base+base+"?limit=2&after=a", "", nil)
		if got := strings.Join(listIDs(t, page.body), " "); got != "m-1 m-10" {
			t.Errorf("%s page = %s, want m-1 m-10", base, got)
		}
		wantLink := "<" + base + "?after=m-10&limit=2>; rel=\"next\""
		if link := page.header.Get("Link"); link != wantLink {
			t.Errorf("%s Link = %q, want %q", base, link, wantLink)
		}
	}
}

func TestListStreamsLargeTables(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	env.produce(t, "-n", "1000", "-q")
	eventually(t, "1000 orders cached", func() error {
		var ready struct{ Orders int }
		json.Unmarshal([]byte(do(t, "GET", svc.base+"/readyz", "", nil).body), &ready)
		if ready.Orders != 1000 {
			return fmt.Errorf("%d orders", ready.Orders)
		}
		return nil
	})
	fromDB := do(t, "GET", svc.base+"/api/models", "", nil)
	fromCache := do(t, "GET", svc.base+"/api/models/cache", "", nil)
	if n := len(listIDs(t, fromDB.body)); n != 1000 {
		t.Errorf("database list holds %d orders, want 1000", n)
	}
	if fromDB.body != fromCache.body {
		t.Error("database list and cache list differ")
	}
}

func TestDeletedOrderStaysDeletedWhenItsMessageComesAgain(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	body := orderWithID(t, "gone")
	env.publish(t, body)
	getOK(t, svc.base+"/api/models/cache/gone")
	wantStatus(t, "DELETE", do(t, "DELETE", svc.base+"/api/models/gone", "", nil), http.StatusOK)

	// The same message again, as a redelivery or a replay would bring it.
	env.publish(t, body, orderWithID(t, "marker-1"))
	getOK(t, svc.base+"/api/models/cache/marker-1")
	wantStatus(t, "GET after the message came again", do(t, "GET", svc.base+"/api/models/gone", "", nil), http.StatusNotFound)
	if n := metric(t, svc.base, "deleted_skipped"); n != 1 {
		t.Errorf("deleted_skipped = %d, want 1", n)
	}

	// A different order under the deleted id is not dropped unseen: it
	// is recorded as rejected, and the id stays free.
	other := modified(t, func(m map[string]any) {
		m["order_uid"] = "gone"
		m["customer_id"] = "someone-else"
	})
	env.publish(t, other, orderWithID(t, "marker-other"))
	getOK(t, svc.base+"/api/models/cache/marker-other")
	wantStatus(t, "GET after a different order came", do(t, "GET", svc.base+"/api/models/gone", "", nil), http.StatusNotFound)
	var rejected int
	env.db(t).QueryRow(`SELECT count(*) FROM rejected WHERE reason LIKE '%gone was deleted through the API%'`).Scan(&rejected)
	if rejected != 1 {
		t.Errorf("rejections of the different order = %d, want 1", rejected)
	}
	if n := metric(t, svc.base, "deleted_skipped"); n != 1 {
		t.Errorf("deleted_skipped after the different order = %d, want still 1", n)
	}

	// Creating it through the API brings it back, for good.
	wantStatus(t, "POST", do(t, "POST", svc.base+"/api/models", "application/json", body), http.StatusCreated)
	env.publish(t, body, orderWithID(t, "marker-2"))
	getOK(t, svc.base+"/api/models/cache/marker-2")
	wantStatus(t, "GET after the POST", do(t, "GET", svc.base+"/api/models/gone", "", nil), http.StatusOK)
}
