package main

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
)

func rec(uid string) Record {
	return Record{UID: uid, Body: []byte(`{"order_uid":"` + uid + `"}`)}
}

func TestCacheGetPutDelete(t *testing.T) {
	var c Cache
	if _, ok := c.Get("a"); ok {
		t.Fatal("Get on an empty cache found an order")
	}
	c.Put(rec("a"))
	body, ok := c.Get("a")
	if !ok || string(body) != `{"order_uid":"a"}` {
		t.Fatalf("Get(a) = %s, %v; want the stored body", body, ok)
	}

	c.Put(Record{UID: "a", Body: []byte(`{"v":2}`)})
	if body, _ := c.Get("a"); string(body) != `{"v":2}` {
		t.Errorf("after replacing, Get(a) = %s, want {\"v\":2}", body)
	}
	if n := c.Len(); n != 1 {
		t.Errorf("Len = %d after replacing, want 1", n)
	}

	if !c.Delete("a") {
		t.Error("Delete(a) = false, want true")
	}
	if c.Delete("a") {
		t.Error("second Delete(a) = true, want false")
	}
	if _, ok := c.Get("a"); ok || c.Len() != 0 {
		t.Errorf("after Delete, Get(a) found = %v, Len = %d; want false, 0", ok, c.Len())
	}
}

// scanAll pages through the cache n at a time and returns the ids.
func scanAll(c *Cache, n int) []string {
	var ids []string
	after := ""
	for {
		page, last := c.Scan(nil, after, n)
		for _, body := range page {
			ids = append(ids, lastUID(body))
		}
		if len(page) < n {
			return ids
		}
		after = last
	}
}

func TestCacheScanMatchesSortedSetUnderRandomChanges(t *testing.T) {
	// A model set checks the block index through inserts, deletes,
	// block splits and emptied blocks, with real hashes and with every
	// id clashing.
	for _, clash := range []bool{false, true} {
		t.Run(fmt.Sprintf("clashAll=%v", clash), func(t *testing.T) {
			checkCacheAgainstModel(t, &Cache{clashAll: clash})
		})
	}
}

func checkCacheAgainstModel(t *testing.T, c *Cache) {
	model := map[string]bool{}
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 20000; i++ {
		uid := fmt.Sprintf("id%05d", r.IntN(5000))
		if r.IntN(3) == 0 {
			if got, want := c.Delete(uid), model[uid]; got != want {
				t.Fatalf("Delete(%s) = %v, want %v", uid, got, want)
			}
			delete(model, uid)
			continue
		}
		c.Put(rec(uid))
		model[uid] = true
	}

	var want []string
	for uid := range model {
		want = append(want, uid)
	}
	slices.Sort(want)
	for _, n := range []int{1, 7, maxBlock, 100000} {
		if got := scanAll(c, n); !slices.Equal(got, want) {
			t.Fatalf("paging by %d: got %d ids, want %d (first difference near %v)", n, len(got), len(want), firstDiff(got, want))
		}
	}
	if c.Len() != len(want) {
		t.Errorf("Len = %d, want %d", c.Len(), len(want))
	}
}

func firstDiff(a, b []string) string {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return fmt.Sprintf("index %d: %s vs %s", i, a[i], b[i])
		}
	}
	return "the end"
}

func TestCacheScanStartsAfterCursor(t *testing.T) {
	var c Cache
	for _, uid := range []string{"b", "d", "f"} {
		c.Put(rec(uid))
	}
	tests := []struct {
		after    string
		want     []string
		wantLast string
	}{
		{"", []string{"b", "d", "f"}, "f"},
		{"a", []string{"b", "d", "f"}, "f"},
		{"b", []string{"d", "f"}, "f"},
		{"c", []string{"d", "f"}, "f"},
		{"f", nil, "f"},
		{"z", nil, "z"},
	}
	for _, tt := range tests {
		page, last := c.Scan(nil, tt.after, 10)
		var got []string
		for _, body := range page {
			got = append(got, lastUID(body))
		}
		if !slices.Equal(got, tt.want) || last != tt.wantLast {
			t.Errorf("Scan(after %q) = %v, last %q; want %v, last %q", tt.after, got, last, tt.want, tt.wantLast)
		}
	}
}

func TestCacheConcurrentUse(t *testing.T) {
	// Run with -race: readers, scanners and writers at once.
	var c Cache
	var wg sync.WaitGroup
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 2000; i++ {
				uid := fmt.Sprintf("w%d-%d", w, i%300)
				switch i % 4 {
				case 0, 1:
					c.Put(rec(uid))
				case 2:
					c.Get(uid)
				case 3:
					c.Delete(uid)
				}
			}
		}()
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 200; i++ {
				ids := scanAll(&c, 50)
				if !slices.IsSorted(ids) {
					t.Errorf("scan returned ids out of order")
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestCacheWithClashingHashes(t *testing.T) {
	// Every id hashes alike, so all but one live in clashes.
	c := Cache{clashAll: true}
	for _, uid := range []string{"a", "b", "c"} {
		c.Put(rec(uid))
	}
	for _, uid := range []string{"a", "b", "c"} {
		if body, ok := c.Get(uid); !ok || lastUID(body) != uid {
			t.Errorf("Get(%s) = %s, %v", uid, body, ok)
		}
	}
	if !c.Delete("a") || c.Delete("a") {
		t.Error("deleting the indexed id twice did not report true, then false")
	}
	c.Put(Record{UID: "b", Body: []byte(`{"order_uid":"b","v":2}`)})
	if body, _ := c.Get("b"); string(body) != `{"order_uid":"b","v":2}` {
		t.Errorf("replaced clashing id reads %s", body)
	}
	if got := strings.Join(scanAll(&c, 10), ""); got != "bc" || c.Len() != 2 {
		t.Errorf("after the changes: %s, Len %d; want bc, 2", got, c.Len())
	}
}

func TestCacheMemoryFollowsLiveOrders(t *testing.T) {
	// Replace and delete 4 KiB orders over and over at a constant count:
	// dead records must not pile up.
	var c Cache
	body := func(uid string, v int) Record {
		b := fmt.Appendf(nil, `{"order_uid":%q,"v":%d,"pad":"%s"}`, uid, v, strings.Repeat("x", 4000))
		return Record{UID: uid, Body: b}
	}
	const n = 2000
	for i := range n {
		c.Put(body(fmt.Sprintf("o%05d", i), 0))
	}
	r := rand.New(rand.NewPCG(3, 4))
	for round := range 20000 {
		uid := fmt.Sprintf("o%05d", r.IntN(n))
		if round%3 == 0 {
			c.Delete(uid)
		}
		c.Put(body(uid, round))
	}
	live := 0
	for i := range n {
		uid := fmt.Sprintf("o%05d", i)
		b, ok := c.Get(uid)
		if !ok || !strings.Contains(string(b), fmt.Sprintf(`"order_uid":%q`, uid)) {
			t.Fatalf("Get(%s) after churn = %.40s, %v", uid, b, ok)
		}
		live += recordHeader + len(uid) + len(b)
	}
	if limit := live + live/8 + 2*chunkSize; c.arena.total > limit {
		t.Errorf("arena holds %d bytes for %d live; want at most %d", c.arena.total, live, limit)
	}
	if got := scanAll(&c, 100); len(got) != n {
		t.Errorf("scan lists %d orders, want %d", len(got), n)
	}
}

func TestCacheLoad(t *testing.T) {
	var c Cache
	c.Put(rec("stale"))
	rows := []string{"m", "b", "x", "a"}
	err := c.Load(2, func(add func(uid, body []byte)) error {
		buf := make([]byte, 0, 64)
		for _, uid := range rows {
			// The same buffer every time: Load must copy.
			buf = append(buf[:0], rec(uid).Body...)
			add([]byte(uid), buf)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(scanAll(&c, 10), ""); got != "abmx" {
		t.Errorf("after Load the cache lists %s, want abmx", got)
	}
	if _, ok := c.Get("stale"); ok || c.Len() != 4 {
		t.Errorf("Load kept the old contents: Len %d", c.Len())
	}
	c.Put(rec("c"))
	if got := strings.Join(scanAll(&c, 10), ""); got != "abcmx" {
		t.Errorf("after a Put the cache lists %s, want abcmx", got)
	}
}

func TestCacheLoadFailureKeepsContents(t *testing.T) {
	var c Cache
	c.Put(rec("kept"))
	err := c.Load(1, func(add func(uid, body []byte)) error {
		add([]byte("half"), rec("half").Body)
		return errors.New("connection lost")
	})
	if err == nil {
		t.Fatal("Load returned nil for a failing fill")
	}
	if _, ok := c.Get("kept"); !ok || c.Len() != 1 {
		t.Errorf("after a failed load: kept present %v, Len %d; want the old contents", ok, c.Len())
	}
	if _, ok := c.Get("half"); ok {
		t.Error("a half-loaded order is visible")
	}
}
