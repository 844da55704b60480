package main

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/lib/pq"
)

// A snapshot is PostgreSQL's view of which transactions have ended: every
// transaction id below xmax has ended except those in running, and none
// from xmax on has.
type snapshot struct {
	xmax    uint64
	running []uint64
}

// currentSnapshot reads the snapshot of the statement it runs in.
func currentSnapshot(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (snapshot, error) {
	var text string
	if err := q.QueryRowContext(ctx, `SELECT pg_current_snapshot()::text`).Scan(&text); err != nil {
		return snapshot{}, err
	}
	return parseSnapshot(text)
}

// parseSnapshot reads PostgreSQL's text form of a snapshot,
// xmin:xmax:running,running,...
func parseSnapshot(text string) (snapshot, error) {
	parts := strings.Split(text, ":")
	if len(parts) != 3 {
		return snapshot{}, fmt.Errorf("unexpected snapshot %q", text)
	}
	xmax, err := strconv.ParseUint(parts[1], 10, 64)
	if err != nil {
		return snapshot{}, fmt.Errorf("unexpected snapshot %q", text)
	}
	s := snapshot{xmax: xmax}
	for _, x := range strings.Split(parts[2], ",") {
		if x == "" {
			continue
		}
		id, err := strconv.ParseUint(x, 10, 64)
		if err != nil {
			return snapshot{}, fmt.Errorf("unexpected snapshot %q", text)
		}
		s.running = append(s.running, id)
	}
	return s, nil
}

// A cursor is how far a reader of the change log has got: every change by
// a transaction below next has been read, except those of the pending
// transactions, which were still running when the reader went past them.
type cursor struct {
	next    uint64
	pending []uint64
}

// cursorAt returns the cursor of a reader that has seen what snap shows.
func cursorAt(snap snapshot) cursor {
	return cursor{next: snap.xmax, pending: slices.Clone(snap.running)}
}

// low returns the oldest transaction whose changes the cursor still needs:
// what the log must keep for it.
func (c cursor) low() uint64 {
	low := c.next
	for _, x := range c.pending {
		low = min(low, x)
	}
	return low
}

// Changes returns the ids of the orders changed by transactions that
// ended since the cursor, and the cursor after them. A transaction that
// is still running is left for a later call, however old it is, and its
// changes are read once it ends, however late; so nothing is skipped and
// one long transaction holds up only its own changes. With own false,
// changes this store logged itself are left out.
func (s *Store) Changes(ctx context.Context, from cursor, own bool) ([]string, cursor, error) {
	snap, err := currentSnapshot(ctx, s.db)
	if err != nil {
		return nil, from, wrap("reading changes", err)
	}
	var ended, pending []uint64
	for _, x := range from.pending {
		if slices.Contains(snap.running, x) {
			pending = append(pending, x)
		} else {
			ended = append(ended, x)
		}
	}
	for _, x := range snap.running {
		if x >= from.next && x < snap.xmax {
			pending = append(pending, x)
		}
	}
	to := cursor{next: max(from.next, snap.xmax), pending: pending}

	origin := s.origin
	if own {
		origin = 0 // no store draws 0
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT DISTINCT order_uid FROM changes
		WHERE ((xid >= $1::text::xid8 AND xid < $2::text::xid8) OR xid = ANY($3::text[]::xid8[]))
		  AND NOT xid = ANY($4::text[]::xid8[])
		  AND origin <> $5`,
		xidText(from.next), xidText(snap.xmax), xidArray(ended), xidArray(snap.running), origin)
	if err != nil {
		return nil, from, wrap("reading changes", err)
	}
	var uids []string
	if err := collect(rows, func(uid string, _ []byte) { uids = append(uids, uid) }); err != nil {
		return nil, from, wrap("reading changes", err)
	}
	return uids, to, nil
}

func xidText(x uint64) string { return strconv.FormatUint(x, 10) }

func xidArray(xs []uint64) pq.StringArray {
	a := make(pq.StringArray, len(xs))
	for i, x := range xs {
		a[i] = xidText(x)
	}
	return a
}

// Follow records that this store reads the change log and still needs
// the changes of transactions from low on. Instances that stop recording
// for followerStale no longer hold back pruning.
func (s *Store) Follow(ctx context.Context, low uint64) error {
	_, err := s.db.ExecContext(ctx, `
		INSERT INTO followers (origin, low, seen_at) VALUES ($1, $2::text::xid8, now())
		ON CONFLICT (origin) DO UPDATE SET low = excluded.low, seen_at = excluded.seen_at`,
		s.origin, xidText(low))
	return wrap("recording follower", err)
}

// Unfollow removes this store's record, at shutdown.
func (s *Store) Unfollow(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM followers WHERE origin = $1`, s.origin)
	return wrap("removing follower", err)
}

// PruneChanges deletes the changes every live follower has read, and
// forgets followers long gone.
func (s *Store) PruneChanges(ctx context.Context) error {
	_, err := s.db.ExecContext(ctx, fmt.Sprintf(`
		WITH gone AS (
			DELETE FROM followers WHERE seen_at < now() - interval '%d seconds')
		DELETE FROM changes
		WHERE xid < (SELECT min(low) FROM followers WHERE seen_at > now() - interval '%d seconds')`,
		int(followerGone.Seconds()), int(followerStale.Seconds())))
	return wrap("pruning changes", err)
}
