package main

import (
	"context"
	"database/sql"
	"strconv"
)

// snapshotXmin returns the oldest transaction still running: every
// transaction with a lower id has ended.
func snapshotXmin(ctx context.Context, q interface {
	QueryRowContext(context.Context, string, ...any) *sql.Row
}) (uint64, error) {
	var xmin string
	if err := q.QueryRowContext(ctx, `SELECT pg_snapshot_xmin(pg_current_snapshot())::text`).Scan(&xmin); err != nil {
		return 0, err
	}
	return strconv.ParseUint(xmin, 10, 64)
}

// Changes returns a new horizon and the ids of the orders that other
// processes changed by transactions between the given horizon and the new
// one. Every such transaction has ended, so the list is complete.
func (s *Store) Changes(ctx context.Context, horizon uint64) (uint64, []string, error) {
	upto, err := snapshotXmin(ctx, s.db)
	if err != nil {
		return 0, nil, wrap("reading changes", err)
	}
	if upto <= horizon {
		return horizon, nil, nil
	}
	rows, err := s.db.QueryContext(ctx, `
		SELECT DISTINCT order_uid FROM changes
		WHERE xid >= $1::text::xid8 AND xid < $2::text::xid8 AND origin <> $3`,
		strconv.FormatUint(horizon, 10), strconv.FormatUint(upto, 10), s.origin)
	if err != nil {
		return 0, nil, wrap("reading changes", err)
	}
	var uids []string
	if err := collect(rows, func(uid string, _ []byte) { uids = append(uids, uid) }); err != nil {
		return 0, nil, wrap("reading changes", err)
	}
	return upto, uids, nil
}

// PruneChanges deletes the logged changes of transactions below horizon.
func (s *Store) PruneChanges(ctx context.Context, horizon uint64) error {
	_, err := s.db.ExecContext(ctx, `DELETE FROM changes WHERE xid < $1::text::xid8`, strconv.FormatUint(horizon, 10))
	return wrap("pruning changes", err)
}
