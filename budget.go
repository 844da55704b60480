package main

import "sync"

// budget counts bytes against a limit. acquire waits while the limit is
// reached, except that one request is always let through alone, however
// large, so a message bigger than the limit cannot stall ingestion. It is
// safe for concurrent use once init has been called.
type budget struct {
	mu      sync.Mutex
	cond    sync.Cond
	used    int64
	limit   int64
	waiting int // acquires waiting for room
	stopped bool
}

// init sets the limit and makes waiting acquires give up once stop closes.
func (b *budget) init(limit int64, stop <-chan struct{}) {
	b.cond.L = &b.mu
	b.limit = limit
	go func() {
		<-stop
		b.mu.Lock()
		b.stopped = true
		b.mu.Unlock()
		b.cond.Broadcast()
	}()
}

// acquire takes n bytes, waiting for room, and reports false if it gave up
// because the ingester is stopping.
func (b *budget) acquire(n int64) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.used > 0 && b.used+n > b.limit && !b.stopped {
		b.waiting++
		b.cond.Wait()
		b.waiting--
	}
	if b.stopped {
		return false
	}
	b.used += n
	return true
}

// release returns n bytes.
func (b *budget) release(n int64) {
	b.mu.Lock()
	b.used -= n
	b.mu.Unlock()
	b.cond.Broadcast()
}
