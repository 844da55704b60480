package main

import (
	"context"
	"time"
)

// dbWorkers run the database calls of requests on long-lived goroutines,
// so that a request can stop waiting at its deadline while the call goes
// on (see callDB). A fresh goroutine per call would cost a stack grown
// anew through database/sql and lib/pq every time.
type dbWorkers struct {
	jobs chan func()
}

// startDBWorkers starts n workers; close(jobs) stops them.
func startDBWorkers(n int) *dbWorkers {
	w := &dbWorkers{jobs: make(chan func())}
	for range n {
		go func() {
			for job := range w.jobs {
				job()
			}
		}()
	}
	return w
}

// callDB runs fn on a worker with a deadline and returns by the deadline
// even if fn has not. A database that stops answering without closing
// its connections (a frozen server, a lost network) keeps lib/pq waiting
// past any context, so the request answers 503 in time and fn finishes in
// the background when its connection gives up (see stallTimeout). With
// every worker stuck that way, calls wait for none past their deadline.
func callDB[T any](w *dbWorkers, ctx context.Context, timeout time.Duration, fn func(context.Context) (T, error)) (T, error) {
	// The context ends when the caller returns: at the deadline that
	// abandons fn, or after fn is done.
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	type result struct {
		v   T
		err error
	}
	done := make(chan result, 1)
	job := func() {
		v, err := fn(ctx)
		done <- result{v, err}
	}
	var zero T
	select {
	case w.jobs <- job:
	case <-ctx.Done():
		return zero, deadlineError(ctx)
	}
	select {
	case r := <-done:
		return r.v, r.err
	case <-ctx.Done():
		// A result that came in at the same moment still counts.
		select {
		case r := <-done:
			return r.v, r.err
		default:
			return zero, deadlineError(ctx)
		}
	}
}

func deadlineError(ctx context.Context) error {
	if ctx.Err() == context.DeadlineExceeded {
		return errDBUnavailable
	}
	return ctx.Err()
}
