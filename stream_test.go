package main

import (
	"testing"
	"time"
)

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
