package main

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/lib/pq"
)

// Timing of following the change log.
const (
	// followPoll is how often the log is read without a notification,
	// so a lost notification delays a change by this much at most.
	followPoll = 500 * time.Millisecond
	// settle is how long a pass waits after a notification for others:
	// busy writers notify many times a second, and one pass serves them
	// all.
	settle = 10 * time.Millisecond
	// followerBeat is how often a follower records what it still needs.
	followerBeat = 10 * time.Second
	// followerStale is how long a follower may go without recording
	// before others prune the changes it needs; followerGone, before its
	// record is deleted.
	followerStale = 5 * time.Minute
	followerGone  = 24 * time.Hour
	// reloadAfter is how long a follower may fail to record before it
	// assumes it was taken for stale and reloads its cache whole.
	reloadAfter = followerStale - time.Minute
	// pruneEvery is how often a follower prunes the log.
	pruneEvery = 5 * time.Second
	// followBatch bounds the orders re-read per query.
	followBatch = 1000
	// listenerPing is how often the listening connection is checked.
	listenerPing = 30 * time.Second
)

// A follower keeps this process's cache equal to the database when other
// instances write to it. Every create and delete is logged in the changes
// table in its own transaction; the follower reads the log, on a
// PostgreSQL notification or at the latest every followPoll, and re-reads
// the orders the others changed (see Store.Changes for how it tells which
// changes have committed). It records in the followers table how far it
// has read, and the log is pruned only below every live follower.
type follower struct {
	svc     *Service
	log     *slog.Logger
	metrics *Metrics

	mu       sync.Mutex // guards at and recorded
	at       cursor
	recorded time.Time // last time the followers table took our cursor
	own      bool      // read our own changes too, once, after a reload

	beating  chan struct{}      // closed when beat returns
	stopBeat context.CancelFunc // ends beat before ctx does
}

// startFollowing records, before the cache is loaded, that this process
// follows the change log from where it stands now, and goes on recording
// until ctx is done, so that no change it needs is pruned however long
// the load takes. Call run once the load has set the cursor.
func (s *Service) startFollowing(ctx context.Context, log *slog.Logger, m *Metrics) (*follower, error) {
	snap, err := currentSnapshot(ctx, s.store.db)
	if err != nil {
		return nil, wrap("reading the change log's position", err)
	}
	f := &follower{svc: s, log: log, metrics: m, at: cursorAt(snap), beating: make(chan struct{})}
	if err := s.store.Follow(ctx, f.at.low()); err != nil {
		return nil, err
	}
	f.recorded = time.Now()
	beatCtx, stop := context.WithCancel(ctx)
	f.stopBeat = stop
	go func() {
		defer close(f.beating)
		f.beat(beatCtx)
	}()
	return f, nil
}

// abandon stops a follower that will not run, after a failed load.
func (f *follower) abandon() {
	f.stopBeat()
	<-f.beating
}

// setCursor moves the follower to the cursor of a cache load.
func (f *follower) setCursor(at cursor) {
	f.mu.Lock()
	f.at = at
	f.mu.Unlock()
}

// run follows the change log until ctx is done.
func (f *follower) run(ctx context.Context) {
	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		f.stopBeat()
		<-f.beating
	}()

	wake := make(chan struct{}, 1)
	listener := pq.NewListener(f.svc.store.dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			f.log.Warn("change listener", "event", ev.String(), "err", err)
		}
	})
	defer listener.Close()
	// The listener's notifications are always drained, here, so that it
	// never blocks on them while a pass or a ping waits for it.
	wg.Go(func() {
		for range listener.Notify { // a nil one follows a reconnection
			select {
			case wake <- struct{}{}:
			default:
			}
		}
	})
	wg.Go(func() {
		// Listen waits for the connection; the log is polled meanwhile.
		if err := listener.Listen("order_changes"); err != nil && ctx.Err() == nil {
			f.log.Warn("listening for changes", "err", err)
		}
		ping := time.NewTicker(listenerPing)
		defer ping.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-ping.C:
				listener.Ping()
			}
		}
	})

	poll := time.NewTicker(followPoll)
	defer poll.Stop()
	prune := time.NewTicker(pruneEvery)
	defer prune.Stop()
	for {
		select {
		case <-ctx.Done():
			listener.Close() // ends the drain loop
			return
		case <-prune.C:
			if err := f.svc.store.PruneChanges(ctx); err != nil && ctx.Err() == nil {
				f.log.Warn("pruning changes", "err", err)
			}
			continue
		case <-wake:
			if !sleep(ctx, settle) {
				continue
			}
		case <-poll.C:
		}
		f.pass(ctx)
	}
}

// beat records the follower's cursor every followerBeat until ctx is done,
// and once more without it at the end: a stopped process no longer holds
// back pruning.
func (f *follower) beat(ctx context.Context) {
	t := time.NewTicker(followerBeat)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			stopCtx, cancel := context.WithTimeout(context.Background(), writeTimeout)
			defer cancel()
			f.svc.store.Unfollow(stopCtx)
			return
		case <-t.C:
			f.record(ctx)
		}
	}
}

// record writes the oldest transaction the follower still needs.
func (f *follower) record(ctx context.Context) {
	f.mu.Lock()
	low := f.at.low()
	f.mu.Unlock()
	if err := f.svc.store.Follow(ctx, low); err != nil {
		if ctx.Err() == nil {
			f.log.Warn("recording the change-log follower", "err", err)
		}
		return
	}
	f.mu.Lock()
	f.recorded = time.Now()
	f.mu.Unlock()
}

// pass re-reads the orders others changed since the cursor. If the
// follower could not record itself for so long that others may have
// pruned changes it needs, it reloads the cache whole instead.
func (f *follower) pass(ctx context.Context) {
	f.mu.Lock()
	at, own, stale := f.at, f.own, time.Since(f.recorded) > reloadAfter
	f.mu.Unlock()
	if stale {
		f.reload(ctx)
		return
	}

	passCtx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()
	uids, next, err := f.svc.store.Changes(passCtx, at, own)
	if err == nil {
		err = f.svc.refresh(passCtx, uids)
	}
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("following changes", "err", err)
		}
		return
	}
	f.metrics.ChangesApplied.Add(int64(len(uids)))
	f.mu.Lock()
	f.at, f.own = next, false
	f.mu.Unlock()
}

// reload loads the whole cache again and follows on from there. Writes
// this process made meanwhile went to the cache being replaced, so the
// next pass reads its own changes too.
func (f *follower) reload(ctx context.Context) {
	f.log.Warn("the change log may have been pruned past this instance; reloading the cache")
	at, err := f.svc.Load(ctx)
	if err != nil {
		if ctx.Err() == nil {
			f.log.Warn("reloading the cache", "err", err)
		}
		return
	}
	f.mu.Lock()
	f.at, f.own = at, true
	f.mu.Unlock()
	f.record(ctx)
	f.metrics.Reloads.Add(1)
	f.log.Info("cache reloaded", "orders", f.svc.cache.Len())
}
