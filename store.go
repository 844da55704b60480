package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/lib/pq"
)

//go:embed schema.sql
var schema string

// schemaLockID serialises schema changes between instances that start at
// the same time; CREATE ... IF NOT EXISTS alone races in PostgreSQL.
const schemaLockID = 0x6f72646572 // "order"

var (
	// ErrNotFound means no order has the requested id.
	ErrNotFound = errors.New("order not found")
	// ErrExists means an order with the same id is already stored.
	ErrExists = errors.New("order already exists")
	// ErrUnavailable means the database could not serve the request in
	// time: it is down, unreachable or out of connections.
	ErrUnavailable = errors.New("database unavailable")
)

// Store keeps orders in PostgreSQL. When several instances share the
// database, it also logs each change in the changes table under its
// origin, a number drawn at random for each Store, so that a process can
// tell its own changes from the others' (see follower). It is safe for
// concurrent use.
type Store struct {
	origin  int64
	logging bool // log changes; set before Init
	dsn     string
	db      *sql.DB
	get     *sql.Stmt
	getMany *sql.Stmt
	scan    *sql.Stmt
	insert  *sql.Stmt
	delete  *sql.Stmt
}

// NewStore returns a Store for the database at dsn without connecting;
// call Init before anything else. maxConns caps the pool; keep it below
// the server's max_connections.
func NewStore(dsn string, maxConns int) (*Store, error) {
	connector, err := pq.NewConnector(dsn)
	if err != nil {
		// The error would quote the connection string, password and all.
		return nil, errors.New("opening database: DATABASE_URL is not a valid connection string")
	}
	connector.Dialer(stallDialer{})
	db := sql.OpenDB(connector)
	db.SetMaxOpenConns(maxConns)
	db.SetMaxIdleConns(maxConns)
	var origin [8]byte
	rand.Read(origin[:])
	return &Store{origin: int64(binary.LittleEndian.Uint64(origin[:]) >> 1), dsn: dsn, db: db}, nil
}

// Init connects, applies the schema and prepares the statements the
// service uses. It may be called again after it fails.
func (s *Store) Init(ctx context.Context) error {
	if err := s.db.PingContext(ctx); err != nil {
		return wrap("connecting to database", err)
	}
	if err := s.migrate(ctx); err != nil {
		return err
	}
	stmts := []struct {
		dst   **sql.Stmt
		query string
	}{
		{&s.get, `SELECT body FROM orders WHERE order_uid = $1`},
		{&s.getMany, `SELECT order_uid, body FROM orders WHERE order_uid = ANY($1)`},
		{&s.scan, `SELECT order_uid, body FROM orders WHERE order_uid > $1 ORDER BY order_uid LIMIT $2`},
		{&s.insert, s.pick(insertSQL, insertLoggedSQL)},
		{&s.delete, s.pick(deleteSQL, deleteLoggedSQL)},
	}
	for _, st := range stmts {
		stmt, err := s.db.PrepareContext(ctx, st.query)
		if err != nil {
			return wrap("preparing statements", err)
		}
		*st.dst = stmt
	}
	return nil
}

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
			INSERT INTO deleted_orders (order_uid) SELECT order_uid FROM written
			ON CONFLICT (order_uid) DO UPDATE SET deleted_at = now())
		SELECT body FROM written`
	deleteLoggedSQL = `
		WITH written AS (
			DELETE FROM orders WHERE order_uid = $1
			RETURNING order_uid, body),
		tombstone AS (
			INSERT INTO deleted_orders (order_uid) SELECT order_uid FROM written
			ON CONFLICT (order_uid) DO UPDATE SET deleted_at = now()),
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

func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return wrap("applying schema", err)
	}
	defer tx.Rollback()

	if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, schemaLockID); err != nil {
		return wrap("applying schema", err)
	}
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return wrap("applying schema", err)
	}
	return wrap("applying schema", tx.Commit())
}

// Close closes the statements and the pool.
func (s *Store) Close() error {
	return s.db.Close()
}

// Ping checks that the database answers.
func (s *Store) Ping(ctx context.Context) error {
	return wrap("pinging database", s.db.PingContext(ctx))
}

// Get returns the body of one order.
func (s *Store) Get(ctx context.Context, uid string) ([]byte, error) {
	var body []byte
	err := s.get.QueryRowContext(ctx, uid).Scan(&body)
	if errors.Is(err, sql.ErrNoRows) {
		return nil, ErrNotFound
	}
	return body, wrap("getting order", err)
}

// GetMany returns the bodies of the orders with the given ids that exist.
func (s *Store) GetMany(ctx context.Context, uids []string) (map[string][]byte, error) {
	rows, err := s.getMany.QueryContext(ctx, pq.StringArray(uids))
	if err != nil {
		return nil, wrap("getting orders", err)
	}
	found := make(map[string][]byte, len(uids))
	if err := collect(rows, func(uid string, body []byte) { found[uid] = body }); err != nil {
		return nil, wrap("getting orders", err)
	}
	return found, nil
}

// Scan appends to dst the bodies of up to n orders whose ids sort after
// the given one, in order, and returns them with the id of the last. It
// reads one page per call so that no connection is held while the caller
// writes the page out.
func (s *Store) Scan(ctx context.Context, dst [][]byte, after string, n int) ([][]byte, string, error) {
	rows, err := s.scan.QueryContext(ctx, after, n)
	if err != nil {
		return dst, after, wrap("listing orders", err)
	}
	defer rows.Close()

	last := after
	for rows.Next() {
		var body []byte
		if err := rows.Scan(&last, &body); err != nil {
			return dst, after, wrap("listing orders", err)
		}
		dst = append(dst, body)
	}
	if err := rows.Err(); err != nil {
		return dst, after, wrap("listing orders", err)
	}
	return dst, last, nil
}

// Estimate returns the planner's estimate of the number of stored orders,
// which costs nothing to read; it is -1 before the table was analysed.
func (s *Store) Estimate(ctx context.Context) (int, error) {
	var n float64
	err := s.db.QueryRowContext(ctx, `SELECT reltuples FROM pg_class WHERE oid = 'orders'::regclass`).Scan(&n)
	return int(n), wrap("estimating orders", err)
}

// Load calls fn with the id and body of every stored order, in no
// particular order, and returns the change-log horizon of what it read
// (see follower): changes by transactions below it are in what fn saw.
// The slices passed to fn are valid only until it returns.
func (s *Store) Load(ctx context.Context, fn func(uid, body []byte)) (uint64, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return 0, wrap("loading orders", err)
	}
	defer tx.Rollback()

	// In one snapshot: the horizon, then the rows.
	horizon, err := snapshotXmin(ctx, tx)
	if err != nil {
		return 0, wrap("loading orders", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT order_uid, body FROM orders`)
	if err != nil {
		return 0, wrap("loading orders", err)
	}
	defer rows.Close()

	var uid, body sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&uid, &body); err != nil {
			return 0, wrap("loading orders", err)
		}
		fn(uid, body)
	}
	return horizon, wrap("loading orders", rows.Err())
}

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
	// Deleted: an order with this id was deleted through the API; it is
	// not stored again.
	Deleted
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

	// Ids not inserted: read what is stored under them to tell a
	// redelivered copy from a different order, and which were deleted.
	var taken []string
	for uid, i := range first {
		if !inserted[i] {
			taken = append(taken, uid)
		}
	}
	var existing map[string][]byte
	var tombstoned map[string]bool
	if len(taken) > 0 {
		existing = make(map[string][]byte, len(taken))
		tombstoned = make(map[string]bool)
		rows, err := t.tx.QueryContext(ctx, `
			SELECT t.u, o.body, d.order_uid IS NOT NULL
			FROM unnest($1::text[]) AS t(u)
			LEFT JOIN orders o ON o.order_uid = t.u
			LEFT JOIN deleted_orders d ON d.order_uid = t.u`, pq.StringArray(taken))
		if err != nil {
			return nil, wrap("reading existing orders", err)
		}
		defer rows.Close()
		for rows.Next() {
			var uid string
			var body []byte
			var deleted bool
			if err := rows.Scan(&uid, &body, &deleted); err != nil {
				return nil, wrap("reading existing orders", err)
			}
			if body != nil {
				existing[uid] = body
			} else if deleted {
				tombstoned[uid] = true
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
		switch {
		case !ok && tombstoned[r.UID]:
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

// collect reads (order_uid[, body]) rows and closes them.
func collect(rows *sql.Rows, fn func(uid string, body []byte)) error {
	defer rows.Close()

	cols, err := rows.Columns()
	if err != nil {
		return err
	}
	var uid string
	var body []byte
	dest := []any{&uid, &body}[:len(cols)]
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		fn(uid, body)
		body = nil
	}
	return rows.Err()
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

// A RejectedMessage is a stored Rejection.
type RejectedMessage struct {
	ID         int64
	RejectedAt time.Time
	Rejection
}

// Rejected returns up to n rejected messages whose ids are greater than
// after, oldest first.
func (s *Store) Rejected(ctx context.Context, after int64, n int) ([]RejectedMessage, error) {
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, channel, sequence, payload, reason, rejected_at
		FROM rejected WHERE id > $1 ORDER BY id LIMIT $2`, after, n)
	if err != nil {
		return nil, wrap("listing rejected messages", err)
	}
	defer rows.Close()

	var out []RejectedMessage
	for rows.Next() {
		var m RejectedMessage
		var seq int64
		if err := rows.Scan(&m.ID, &m.Channel, &seq, &m.Payload, &m.Reason, &m.RejectedAt); err != nil {
			return nil, wrap("listing rejected messages", err)
		}
		m.Sequence = uint64(seq)
		out = append(out, m)
	}
	return out, wrap("listing rejected messages", rows.Err())
}

// stallTimeout is how long a connection may wait for the server's next
// byte while a request is outstanding. It is longer than any query the
// service runs (a batch is given writeTimeout), and it is what finally
// frees a connection to a server that stopped answering without closing
// it, which no context can interrupt.
const stallTimeout = writeTimeout + 10*time.Second

// stallDialer dials connections that fail once the server stalls.
type stallDialer struct{}

func (stallDialer) Dial(network, address string) (net.Conn, error) {
	return stallDialer{}.DialContext(context.Background(), network, address)
}

func (stallDialer) DialTimeout(network, address string, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return stallDialer{}.DialContext(ctx, network, address)
}

func (stallDialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	var d net.Dialer
	c, err := d.DialContext(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return newStallConn(c), nil
}

// stallConn moves its deadline stallTimeout ahead on every write and on
// reads that return data. A request is always a write followed by reads,
// so an idle connection never trips it, and a slow but moving response
// (loading the whole table) does not either. Reads move the deadline only
// once it is half used, to keep the common small read cheap.
//
// It also buffers reads: lib/pq reads in pieces of 4 KiB, which would cost
// a system call every few rows while the whole table streams in.
type stallConn struct {
	net.Conn
	in       *bufio.Reader
	deadline time.Time
}

// readBuffer is the size of a connection's read buffer.
const readBuffer = 64 << 10

func newStallConn(c net.Conn) *stallConn {
	sc := &stallConn{Conn: c}
	sc.in = bufio.NewReaderSize(readerFunc(sc.read), readBuffer)
	return sc
}

func (c *stallConn) Write(b []byte) (int, error) {
	c.extend(time.Now())
	return c.Conn.Write(b)
}

func (c *stallConn) Read(b []byte) (int, error) {
	return c.in.Read(b)
}

func (c *stallConn) read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 {
		if now := time.Now(); c.deadline.Sub(now) < stallTimeout/2 {
			c.extend(now)
		}
	}
	return n, err
}

func (c *stallConn) extend(now time.Time) {
	c.deadline = now.Add(stallTimeout)
	c.Conn.SetDeadline(c.deadline)
}

// readerFunc turns a function into an io.Reader.
type readerFunc func([]byte) (int, error)

func (f readerFunc) Read(b []byte) (int, error) { return f(b) }

// wrap adds what was being done to err, and marks errors that mean the
// database cannot serve right now so callers can tell them from bad
// requests with errors.Is(err, ErrUnavailable).
func wrap(op string, err error) error {
	switch {
	case err == nil:
		return nil
	case isUnavailable(err):
		return fmt.Errorf("%s: %w: %w", op, ErrUnavailable, err)
	}
	return fmt.Errorf("%s: %w", op, err)
}

func isUnavailable(err error) bool {
	var netErr net.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, driver.ErrBadConn),
		errors.Is(err, sql.ErrConnDone),
		errors.Is(err, io.EOF),
		errors.Is(err, io.ErrUnexpectedEOF),
		errors.As(err, &netErr):
		return true
	}
	if e := pq.As(err); e != nil {
		switch e.Code.Class() {
		case "08", // connection exception
			"53", // insufficient resources, including too many connections
			"57": // operator intervention: shutdown, statement timeout
			return true
		}
	}
	return false
}
