package main

import (
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestThreeInstances runs three instances as one queue group against one
// PostgreSQL and one NATS Streaming server: they share the stream, every
// cache follows every change, and killing one mid-stream loses nothing.
func TestThreeInstances(t *testing.T) {
	env := newPrivateEnv(t)
	db := env.db(t)
	var inst []*procService
	for i := range 3 {
		p := env.startProc(t, "NATS_QUEUE_GROUP", "orders-group", "NATS_CLIENT_ID", fmt.Sprintf("instance-%d", i))
		p.waitReady(t)
		inst = append(inst, p)
	}

	published := env.produceAsync(t, "-n", "5000", "-rate", "1000", "-id-prefix", "pub-", "-q")

	// Kill one instance while it ingests.
	waitStoredAtLeast(t, db, 1000)
	inst[2].kill()
	stored := count(t, db, `SELECT count(*) FROM orders`)
	if stored >= 5000 {
		t.Fatal("every order was stored before the kill; the test did not kill mid-stream")
	}
	t.Logf("killed instance 2 with %d orders stored", stored)
	survivors := inst[:2]

	// Create through one instance and delete through another while the
	// stream flows on, timing how long each change takes to reach the
	// other's cache.
	var lagMu sync.Mutex
	var lags []time.Duration
	seenBy := func(base, uid string, present bool) {
		start := time.Now()
		eventually(t, fmt.Sprintf("%s present=%v at %s", uid, present, base), func() error {
			status := do(t, "GET", base+"/api/models/cache/"+uid, "", nil).status
			if (status == http.StatusOK) != present {
				return fmt.Errorf("status %d", status)
			}
			return nil
		})
		lagMu.Lock()
		lags = append(lags, time.Since(start))
		lagMu.Unlock()
	}
	for i := range 30 {
		uid := fmt.Sprintf("api-%02d", i)
		a, b := survivors[i%2], survivors[(i+1)%2]
		wantStatus(t, "POST "+uid, do(t, "POST", a.base+"/api/models", "application/json", orderWithID(t, uid)), http.StatusCreated)
		seenBy(b.base, uid, true)
		if i%3 == 0 {
			wantStatus(t, "DELETE "+uid, do(t, "DELETE", b.base+"/api/models/"+uid, "", nil), http.StatusOK)
			seenBy(a.base, uid, false)
		}
	}

	published()
	waitStored(t, db, 5000+30-10)
	env.waitAcked(t)

	// Delete stream orders now that every message is acknowledged, so no
	// redelivery can bring one back.
	for i := 1; i <= 10; i++ {
		uid := fmt.Sprintf("pub-%08d", i*7)
		wantStatus(t, "DELETE "+uid, do(t, "DELETE", survivors[i%2].base+"/api/models/"+uid, "", nil), http.StatusOK)
		seenBy(survivors[(i+1)%2].base, uid, false)
	}
	if n := count(t, db, `SELECT count(*) FROM orders`); n != 5000+30-10-10 {
		t.Errorf("orders stored = %d, want %d", n, 5000+30-10-10)
	}

	// Every surviving cache equals the table, order by order.
	want := do(t, "GET", survivors[0].base+"/api/models", "", nil).body
	for i, p := range survivors {
		eventually(t, fmt.Sprintf("instance %d's cache equals the table", i), func() error {
			got := do(t, "GET", p.base+"/api/models/cache", "", nil).body
			if got != want {
				return fmt.Errorf("cache lists %d orders, table %d", strings.Count(got, `"order_uid"`), strings.Count(want, `"order_uid"`))
			}
			return nil
		})
	}
	ids := listIDs(t, want)
	if slices.Contains(ids, "api-00") || slices.Contains(ids, "pub-00000007") {
		t.Error("a deleted order is still listed")
	}

	slices.Sort(lags)
	t.Logf("cache lag between instances over %d changes: median %v, longest %v", len(lags), lags[len(lags)/2], lags[len(lags)-1])
	if longest := lags[len(lags)-1]; longest > time.Second {
		t.Errorf("a change took %v to reach another instance's cache, want under a second", longest)
	}
}

// TestLongTransactionDoesNotHoldUpOtherChanges keeps a writing transaction
// open while orders are created through one instance: the other instance
// must see them at once all the same.
func TestLongTransactionDoesNotHoldUpOtherChanges(t *testing.T) {
	env := newPrivateEnv(t)
	a := env.start(t, "NATS_QUEUE_GROUP", "g", "NATS_CLIENT_ID", "a")
	b := env.start(t, "NATS_QUEUE_GROUP", "g", "NATS_CLIENT_ID", "b")

	db := env.db(t)
	tx, err := db.Begin()
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback()
	if _, err := tx.Exec(`CREATE TABLE long_running (x int)`); err != nil {
		t.Fatal(err)
	}

	wantStatus(t, "POST", do(t, "POST", a.base+"/api/models", "application/json", orderWithID(t, "during-long-tx")), http.StatusCreated)
	start := time.Now()
	getOK(t, b.base+"/api/models/cache/during-long-tx")
	if lag := time.Since(start); lag > time.Second {
		t.Errorf("the other instance saw the order after %v with a long transaction open, want under a second", lag)
	}
}

// TestStoredButUncachedOrderIsHealed stores an order behind the service's
// back, as a commit whose answer was lost would: when its message comes,
// the order is found stored, and the cache is brought to hold it.
func TestStoredButUncachedOrderIsHealed(t *testing.T) {
	env := newTestEnv(t)
	svc := env.start(t)
	body := orderWithID(t, "behind-the-back")
	if _, err := env.db(t).Exec(`INSERT INTO orders (order_uid, body) VALUES ($1, $2)`, "behind-the-back", string(body)); err != nil {
		t.Fatal(err)
	}
	wantStatus(t, "cache before the message", do(t, "GET", svc.base+"/api/models/cache/behind-the-back", "", nil), http.StatusNotFound)

	env.publish(t, body)
	if got := getOK(t, svc.base+"/api/models/cache/behind-the-back"); got != answer(body) {
		t.Errorf("cache holds %s, want %s", got, body)
	}
}
