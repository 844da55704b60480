package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"strings"

	"github.com/lib/pq"
)

// The statements that write orders, each plain and logging the change in
// the same statement under the origin in the last parameter. Deleting an
// order leaves a tombstone in deleted_orders, so that a redelivered or
// replayed message of it does not bring it back; creating it through the
// API clears the tombstone.
const (
	insertSQL = `
		WITH cleared AS (
			DELETE FROM deleted_orders WHERE order_uid = $1)
		INSERT INTO orders (order_uid, body) VALUES ($1, $2)
		ON CONFLICT DO NOTHING`
	insertLoggedSQL = `
		WITH cleared AS (
			DELETE FROM deleted_orders WHERE order_uid = $1),
		written AS (
			INSERT INTO orders (order_uid, body) VALUES ($1, $2)
			ON CONFLICT DO NOTHING
			RETURNING order_uid)
		INSERT INTO changes (origin, order_uid) SELECT $3, order_uid FROM written`
	deleteSQL = `
		WITH written AS (
			DELETE FROM orders WHERE order_uid = $1
			RETURNING order_uid, body),
		tombstone AS (
			INSERT INTO deleted_orders (order_uid, digest)
			SELECT order_uid, sha256(convert_to(body, 'UTF8')) FROM written
			ON CONFLICT (order_uid) DO UPDATE SET deleted_at = now(), digest = excluded.digest)
		SELECT body FROM written`
	deleteLoggedSQL = `
		WITH written AS (
			DELETE FROM orders WHERE order_uid = $1
			RETURNING order_uid, body),
		tombstone AS (
			INSERT INTO deleted_orders (order_uid, digest)
			SELECT order_uid, sha256(convert_to(body, 'UTF8')) FROM written
			ON CONFLICT (order_uid) DO UPDATE SET deleted_at = now(), digest = excluded.digest),
		logged AS (
			INSERT INTO changes (origin, order_uid) SELECT $2, order_uid FROM written)
		SELECT body FROM written`
	insertBatchSQL = `
		INSERT INTO orders (order_uid, body)
		SELECT u, b FROM unnest(string_to_array($1, ','), string_to_array($2, E'\n')) AS t(u, b)
		WHERE NOT EXISTS (SELECT 1 FROM deleted_orders d WHERE d.order_uid = t.u)
		ON CONFLICT DO NOTHING
		RETURNING order_uid`
	insertBatchLoggedSQL = `
		WITH written AS (` + insertBatchSQL + `)
		INSERT INTO changes (origin, order_uid) SELECT $3, order_uid FROM written
		RETURNING order_uid`
)

// pick returns the statement to run: the logged one when the store logs
// changes.
func (s *Store) pick(plain, logged string) string {
	if s.logging {
		return logged
	}
	return plain
}

// args appends the origin to a statement's arguments when it is logged.
func (s *Store) args(args ...any) []any {
	if s.logging {
		args = append(args, s.origin)
	}
	return args
}

// Begin starts a transaction for writing orders.
func (s *Store) Begin(ctx context.Context) (*Tx, error) {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return nil, wrap("beginning transaction", err)
	}
	return &Tx{tx: tx, s: s}, nil
}

// A Tx is a transaction that writes orders. Its changes are visible to
// others only after Commit. A Tx is not safe for concurrent use.
type Tx struct {
	tx *sql.Tx
	s  *Store
}

// Commit makes the transaction's writes durable.
func (t *Tx) Commit() error {
	return wrap("committing", t.tx.Commit())
}

// Rollback abandons the transaction. It is safe to call after Commit.
func (t *Tx) Rollback() {
	t.tx.Rollback()
}

// Insert stores a new order, or returns ErrExists if its id is taken.
func (t *Tx) Insert(ctx context.Context, r Record) error {
	res, err := t.tx.StmtContext(ctx, t.s.insert).ExecContext(ctx, t.s.args(r.UID, r.Body)...)
	if err != nil {
		return wrap("inserting order", err)
	}
	n, err := res.RowsAffected()
	if err != nil {
		return wrap("inserting order", err)
	}
	if n == 0 {
		return ErrExists
	}
	return nil
}

// Delete removes an order and returns its body.
func (t *Tx) Delete(ctx context.Context, uid string) ([]byte, error) {
	var body []byte
	err := t.tx.StmtContext(ctx, t.s.delete).QueryRowContext(ctx, t.s.args(uid)...).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return body, wrap("deleting order", err)
}

// An Outcome says what writing one record of a batch did.
type Outcome int

const (
	// Inserted: the record is now stored.
	Inserted Outcome = iota
	// Duplicate: an identical order was already stored; nothing changed.
	Duplicate
	// Conflict: a different order with the same id is stored; nothing
	// changed.
	Conflict
	// Deleted: this order was deleted through the API; it is not stored
	// again.
	Deleted
	// DeletedDiffers: an order with this id was deleted through the API,
	// and this record is a different one; nothing changed.
	DeletedDiffers
)

// InsertBatch stores the records whose ids are free and reports, for each
// record in rs, what happened to it. Records may repeat an id; the first
// one wins. Nothing is visible to others until Commit.
func (t *Tx) InsertBatch(ctx context.Context, rs []Record) ([]Outcome, error) {
	// The batch travels as two text parameters, the ids joined by commas
	// and the bodies by newlines, which neither can hold (see checkID and
	// appendOrder). Unlike an array literal, that needs no escaping of
	// the quotes in every body.
	first := make(map[string]int, len(rs))
	uidSize, bodySize := 0, 0
	for _, r := range rs {
		uidSize += len(r.UID) + 1
		bodySize += len(r.Body) + 1
	}
	var uids, bodies strings.Builder
	uids.Grow(uidSize)
	bodies.Grow(bodySize)
	for i, r := range rs {
		if _, ok := first[r.UID]; ok {
			continue
		}
		if len(first) > 0 {
			uids.WriteByte(',')
			bodies.WriteByte('\n')
		}
		first[r.UID] = i
		uids.WriteString(r.UID)
		bodies.Write(r.Body)
	}

	rows, err := t.tx.QueryContext(ctx, t.s.pick(insertBatchSQL, insertBatchLoggedSQL),
		t.s.args(uids.String(), bodies.String())...)
	if err != nil {
		return nil, wrap("inserting batch", err)
	}
	inserted := make([]bool, len(rs)) // by index of the first record of an id
	if err := collect(rows, func(uid string, _ []byte) { inserted[first[uid]] = true }); err != nil {
		return nil, wrap("inserting batch", err)
	}
	tombstoned, err := t.undoResurrected(ctx, first, inserted)
	if err != nil {
		return nil, err
	}

	// Ids not inserted: read what is stored under them to tell a
	// redelivered copy from a different order, and which were deleted.
	var taken []string
	for uid, i := range first {
		if !inserted[i] {
			taken = append(taken, uid)
		}
	}
	var existing map[string][]byte
	if len(taken) > 0 {
		existing = make(map[string][]byte, len(taken))
		rows, err := t.tx.QueryContext(ctx, `
			SELECT t.u, o.body, d.order_uid IS NOT NULL, d.digest
			FROM unnest($1::text[]) AS t(u)
			LEFT JOIN orders o ON o.order_uid = t.u
			LEFT JOIN deleted_orders d ON d.order_uid = t.u`, pq.StringArray(taken))
		if err != nil {
			return nil, wrap("reading existing orders", err)
		}
		defer rows.Close()
		for rows.Next() {
			var uid string
			var body, digest []byte
			var deleted bool
			if err := rows.Scan(&uid, &body, &deleted, &digest); err != nil {
				return nil, wrap("reading existing orders", err)
			}
			if body != nil {
				existing[uid] = body
			} else if deleted {
				tombstoned[uid] = digest
			}
		}
		if err := rows.Err(); err != nil {
			return nil, wrap("reading existing orders", err)
		}
	}

	out := make([]Outcome, len(rs))
	for i, r := range rs {
		j := first[r.UID]
		stored, ok := rs[j].Body, inserted[j]
		if !ok {
			stored, ok = existing[r.UID]
		}
		digest, deleted := tombstoned[r.UID]
		switch {
		case !ok && deleted && differs(digest, r.Body):
			out[i] = DeletedDiffers
		case !ok && deleted:
			out[i] = Deleted
		case !ok:
			// The conflicting row was deleted after our insert saw it.
			// Retrying the batch will store this record.
			return nil, fmt.Errorf("inserting batch: order %s was deleted concurrently", r.UID)
		case !bytes.Equal(stored, r.Body):
			out[i] = Conflict
		case inserted[j] && j == i:
			out[i] = Inserted
		default:
			out[i] = Duplicate
		}
	}
	return out, nil
}

// undoResurrected deletes again the orders the batch inserted that a
// concurrent DELETE has since tombstoned, and returns the tombstones of the
// batch's ids, with the deleted bodies' digests, for InsertBatch to fill
// in. The insert checks for tombstones with the snapshot its statement
// started with; a DELETE of a stored copy that commits while the insert
// waits for the row's lock leaves the insert free to store the order
// again, under a tombstone it did not see. This second statement sees it.
func (t *Tx) undoResurrected(ctx context.Context, first map[string]int, inserted []bool) (map[string][]byte, error) {
	var ids []string
	for uid, i := range first {
		if inserted[i] {
			ids = append(ids, uid)
		}
	}
	tombstoned := make(map[string][]byte)
	if len(ids) == 0 {
		return tombstoned, nil
	}
	// Joined by commas, as the insert takes them (see InsertBatch).
	rows, err := t.tx.QueryContext(ctx, `
		DELETE FROM orders o USING deleted_orders d
		WHERE o.order_uid = d.order_uid AND o.order_uid = ANY(string_to_array($1, ','))
		RETURNING o.order_uid, d.digest`, strings.Join(ids, ","))
	if err != nil {
		return nil, wrap("checking inserted orders for deletions", err)
	}
	err = collect(rows, func(uid string, digest []byte) {
		inserted[first[uid]] = false
		tombstoned[uid] = digest
	})
	if err != nil {
		return nil, wrap("checking inserted orders for deletions", err)
	}
	return tombstoned, nil
}

// differs reports whether body is not the deleted order whose digest is
// given. Tombstones from before digests were kept have none, and are
// taken to match.
func differs(digest, body []byte) bool {
	if digest == nil {
		return false
	}
	sum := sha256.Sum256(body)
	return !bytes.Equal(digest, sum[:])
}

// A Rejection is a stream message that can never become an order.
type Rejection struct {
	Channel  string
	Sequence uint64
	Payload  []byte
	Reason   string
}

// Reject records messages that will not be stored as orders. Recording the
// same message twice leaves one row.
func (t *Tx) Reject(ctx context.Context, rs []Rejection) error {
	for _, r := range rs {
		payload := r.Payload
		if payload == nil {
			payload = []byte{} // an empty message; NULL would break NOT NULL
		}
		_, err := t.tx.ExecContext(ctx, `
			INSERT INTO rejected (channel, sequence, payload, reason)
			VALUES ($1, $2, $3, $4)
			ON CONFLICT (channel, sequence, md5(payload)) DO NOTHING`,
			r.Channel, int64(r.Sequence), payload, r.Reason)
		if err != nil {
			return wrap("recording rejected message", err)
		}
	}
	return nil
}
