package main

import (
	"fmt"
	"math/rand/v2"
	"slices"
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
	// block splits and emptied blocks.
	var c Cache
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
		if got := scanAll(&c, n); !slices.Equal(got, want) {
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
