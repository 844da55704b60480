package main

import (
	"context"
	"time"
)

// maxLookupBatch bounds the ids read in one query.
const maxLookupBatch = 64

// lookups reads single orders from the database for GET
// /api/models/{id}, coalescing the requests that arrive while a read is
// under way into the next query. Under load most of the cost of a lookup
// is the round trip, through database/sql, lib/pq, the kernel and a
// PostgreSQL backend; one query for many ids pays it once. A lone request
// is read at once, without waiting for company.
//
// The zero value is not usable; use startLookups. It is safe for
// concurrent use.
type lookups struct {
	store   *Store
	timeout time.Duration
	reqs    chan *lookup
}

// A lookup is one request for one order.
type lookup struct {
	uid  string
	body []byte
	err  error
	done chan struct{}
}

// startLookups starts the given number of readers, each reading one batch
// at a time under timeout. Closing reqs stops them.
func startLookups(store *Store, readers int, timeout time.Duration) *lookups {
	l := &lookups{store: store, timeout: timeout, reqs: make(chan *lookup, 1024)}
	for range readers {
		go l.run()
	}
	return l
}

// get returns the body of one order, or ErrNotFound. It gives up at ctx's
// deadline even if the database has not answered.
func (l *lookups) get(ctx context.Context, uid string) ([]byte, error) {
	req := &lookup{uid: uid, done: make(chan struct{})}
	select {
	case l.reqs <- req:
	case <-ctx.Done():
		return nil, deadlineError(ctx)
	}
	select {
	case <-req.done:
		return req.body, req.err
	case <-ctx.Done():
		select {
		case <-req.done:
			return req.body, req.err
		default:
			return nil, deadlineError(ctx)
		}
	}
}

// run reads batches until reqs is closed: the first waiting request and
// whatever else is queued by then.
func (l *lookups) run() {
	batch := make([]*lookup, 0, maxLookupBatch)
	uids := make([]string, 0, maxLookupBatch)
	for first := range l.reqs {
		batch = append(batch[:0], first)
	gather:
		for len(batch) < maxLookupBatch {
			select {
			case req, ok := <-l.reqs:
				if !ok {
					break gather
				}
				batch = append(batch, req)
			default:
				break gather
			}
		}

		ctx, cancel := context.WithTimeout(context.Background(), l.timeout)
		if len(batch) == 1 {
			// The plain lookup is cheaper than one through an array.
			first.body, first.err = l.store.Get(ctx, first.uid)
			cancel()
			close(first.done)
			continue
		}
		uids = uids[:0]
		for _, req := range batch {
			uids = append(uids, req.uid)
		}
		found, err := l.store.GetMany(ctx, uids)
		cancel()
		for _, req := range batch {
			req.body, req.err = found[req.uid], err
			if err == nil && req.body == nil {
				req.err = ErrNotFound
			}
			close(req.done)
		}
	}
}
