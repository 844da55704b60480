package main

import (
	"context"
	"log/slog"
	"time"

	"github.com/lib/pq"
)

// Timing of following the change log.
const (
	// followPoll is how often the log is read without a notification,
	// so a lost notification delays a change by this much at most.
	followPoll = 500 * time.Millisecond
	// changeRetention is how long a change stays in the log.
	changeRetention = time.Minute
	// reloadAfter is how long following may fail before the cache is
	// reloaded whole: changes it missed may have been pruned by then.
	reloadAfter = changeRetention / 2
	// listenerPing is how often the listening connection is checked.
	listenerPing = 30 * time.Second
	// settle is how long a pass waits after a notification for others:
	// busy writers notify many times a second, and one pass serves them
	// all.
	settle = 10 * time.Millisecond
	// followBatch bounds the orders re-read per query.
	followBatch = 1000
)

// A follower keeps this process's cache equal to the database when other
// instances write to it. Every create and delete is logged in the changes
// table in its own transaction; the follower reads the log, on a
// PostgreSQL notification or at the latest every followPoll, and re-reads
// the orders the others changed.
//
// It reads by transaction id: horizon is a point such that every change
// whose transaction id is lower has been applied. Each pass asks
// PostgreSQL for the oldest transaction still running (the xmin of a
// snapshot); everything below it has ended, so the changes between the
// horizon and it are complete, and the horizon moves up to it. A
// transaction that committed late is never skipped, as reading by a
// sequence would skip it.
type follower struct {
	svc     *Service
	log     *slog.Logger
	metrics *Metrics
	horizon uint64

	caughtUp time.Time // last pass that succeeded
	pruned   time.Time
	marks    []mark // horizons seen, for pruning
}

// A mark is the horizon at a time.
type mark struct {
	at      time.Time
	horizon uint64
}

// follow follows the change log until ctx is done, starting at horizon.
func (s *Service) follow(ctx context.Context, log *slog.Logger, m *Metrics, horizon uint64) {
	f := &follower{svc: s, log: log, metrics: m, horizon: horizon, caughtUp: time.Now(), pruned: time.Now()}
	listener := pq.NewListener(s.store.dsn, 100*time.Millisecond, 5*time.Second, func(ev pq.ListenerEventType, err error) {
		if err != nil {
			log.Warn("change listener", "event", ev.String(), "err", err)
		}
	})
	defer listener.Close()
	// Listen waits for the connection; the log is polled meanwhile.
	go func() {
		if err := listener.Listen("order_changes"); err != nil && ctx.Err() == nil {
			log.Warn("listening for changes", "err", err)
		}
	}()

	poll := time.NewTicker(followPoll)
	defer poll.Stop()
	ping := time.NewTicker(listenerPing)
	defer ping.Stop()
	settled := time.NewTimer(settle)
	settled.Stop()
	waiting := false
	for {
		select {
		case <-ctx.Done():
			return
		case <-ping.C:
			listener.Ping()
			continue
		case <-listener.Notify:
			// A nil notification follows a reconnection: anything may
			// have been missed, which the pass catches up on.
			if !waiting {
				settled.Reset(settle)
				waiting = true
			}
			continue
		case <-settled.C:
		case <-poll.C:
		}
		waiting = false
		f.pass(ctx)
	}
}

// pass applies the changes others made since the horizon, prunes the log
// now and then, and reloads the cache if following failed for too long.
func (f *follower) pass(ctx context.Context) {
	if time.Since(f.caughtUp) > reloadAfter {
		if err := f.reload(ctx); err != nil {
			f.log.Warn("reloading the cache", "err", err)
			return
		}
	}
	if err := f.apply(ctx); err != nil {
		if ctx.Err() == nil {
			f.log.Warn("following changes", "err", err)
		}
		return
	}
	f.caughtUp = time.Now()
	f.prune(ctx)
}

// apply re-reads the orders that others changed since the horizon and
// moves the horizon up.
func (f *follower) apply(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, writeTimeout)
	defer cancel()

	upto, uids, err := f.svc.store.Changes(ctx, f.horizon)
	if err != nil {
		return err
	}
	for len(uids) > 0 {
		n := min(len(uids), followBatch)
		if err := f.svc.refresh(ctx, uids[:n]); err != nil {
			return err
		}
		f.metrics.ChangesApplied.Add(int64(n))
		uids = uids[n:]
	}
	f.horizon = upto
	f.marks = append(f.marks, mark{time.Now(), upto})
	return nil
}

// prune deletes changes older than changeRetention, at most every few
// seconds. Every instance prunes; they do the same work.
func (f *follower) prune(ctx context.Context) {
	if time.Since(f.pruned) < changeRetention/10 {
		return
	}
	f.pruned = time.Now()
	cut := time.Now().Add(-changeRetention)
	i := 0
	for i < len(f.marks) && f.marks[i].at.Before(cut) {
		i++
	}
	if i == 0 {
		return
	}
	below := f.marks[i-1].horizon
	f.marks = f.marks[i:]
	if err := f.svc.store.PruneChanges(ctx, below); err != nil {
		f.log.Warn("pruning changes", "err", err)
	}
}

// reload loads the whole cache again and restarts following from there.
func (f *follower) reload(ctx context.Context) error {
	f.log.Warn("change log lost track; reloading the cache", "behind", time.Since(f.caughtUp).Round(time.Second))
	horizon, err := f.svc.Load(ctx)
	if err != nil {
		return err
	}
	f.horizon, f.caughtUp, f.marks = horizon, time.Now(), nil
	f.metrics.Reloads.Add(1)
	return nil
}
