package main

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestStorableReason(t *testing.T) {
	long := strings.Repeat("é", maxReason) // two bytes each
	tests := []struct{ in, want string }{
		{"items[0].price: must not be negative", "items[0].price: must not be negative"},
		{"key \x00 here", `key \x00 here`},
		{"bad \xff byte", "bad \uFFFD byte"},
		{long, long[:maxReason] + "..."},
		{"x" + long, "x" + long[:maxReason-2] + "..."},
	}
	for _, tt := range tests {
		got := storableReason(tt.in)
		if got != tt.want {
			t.Errorf("storableReason(%.40q) = %.40q..., want %.40q...", tt.in, got, tt.want)
		}
		if !utf8.ValidString(got) || strings.Contains(got, "\x00") {
			t.Errorf("storableReason(%.40q) = %.40q, which PostgreSQL cannot store", tt.in, got)
		}
	}
}

func TestBudgetBlocksUntilReleased(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	var b budget
	b.init(100, stop)

	if !b.acquire(60) || !b.acquire(40) {
		t.Fatal("acquiring within the limit failed")
	}
	got := make(chan bool, 1)
	go func() { got <- b.acquire(10) }()
	err := waitFor(5*time.Second, func() error {
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.waiting != 1 {
			return errNotYet
		}
		return nil
	})
	if err != nil {
		t.Fatal("acquire past the limit did not wait")
	}
	b.release(60)
	if ok := <-got; !ok {
		t.Error("acquire after a release = false, want true")
	}
}

func TestBudgetLetsOneOversizedRequestThrough(t *testing.T) {
	stop := make(chan struct{})
	defer close(stop)
	var b budget
	b.init(100, stop)
	if !b.acquire(1000) {
		t.Fatal("a request larger than the limit was refused on an empty budget")
	}
	b.release(1000)
	if !b.acquire(50) {
		t.Fatal("acquire after releasing everything failed")
	}
}

func TestBudgetGivesUpWhenStopped(t *testing.T) {
	stop := make(chan struct{})
	var b budget
	b.init(100, stop)
	b.acquire(100)
	got := make(chan bool)
	go func() { got <- b.acquire(1) }()
	close(stop)
	select {
	case ok := <-got:
		if ok {
			t.Error("acquire while stopping = true, want false")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("acquire kept waiting after stop")
	}
}
