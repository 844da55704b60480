package main

import (
	"context"
	"crypto/rand"
	"database/sql"
	"database/sql/driver"
	_ "embed"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
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
	// Positive and never 0, which Changes uses for "no origin".
	return &Store{origin: int64(binary.LittleEndian.Uint64(origin[:])>>1) | 1, dsn: dsn, db: db}, nil
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
// particular order, and returns the change-log cursor of what it read
// (see follower): the changes the cursor has passed are in what fn saw.
// The slices passed to fn are valid only until it returns.
func (s *Store) Load(ctx context.Context, fn func(uid, body []byte)) (cursor, error) {
	tx, err := s.db.BeginTx(ctx, &sql.TxOptions{Isolation: sql.LevelRepeatableRead, ReadOnly: true})
	if err != nil {
		return cursor{}, wrap("loading orders", err)
	}
	defer tx.Rollback()

	// In one snapshot: where the change log stands, then the rows.
	snap, err := currentSnapshot(ctx, tx)
	if err != nil {
		return cursor{}, wrap("loading orders", err)
	}
	rows, err := tx.QueryContext(ctx, `SELECT order_uid, body FROM orders`)
	if err != nil {
		return cursor{}, wrap("loading orders", err)
	}
	defer rows.Close()

	var uid, body sql.RawBytes
	for rows.Next() {
		if err := rows.Scan(&uid, &body); err != nil {
			return cursor{}, wrap("loading orders", err)
		}
		fn(uid, body)
	}
	return cursorAt(snap), wrap("loading orders", rows.Err())
}

// A Conn is one connection of the store's pool, held until Close.
type Conn struct {
	c *sql.Conn
}

// Conn takes a connection from the pool. A caller that must hold locks
// while it reads takes the connection first: writers hold a connection
// while they wait for those locks, and the pool could otherwise run dry
// with each side waiting for the other.
func (s *Store) Conn(ctx context.Context) (*Conn, error) {
	c, err := s.db.Conn(ctx)
	if err != nil {
		return nil, wrap("taking a connection", err)
	}
	return &Conn{c}, nil
}

// GetMany is Store.GetMany on this connection.
func (c *Conn) GetMany(ctx context.Context, uids []string) (map[string][]byte, error) {
	rows, err := c.c.QueryContext(ctx, `SELECT order_uid, body FROM orders WHERE order_uid = ANY($1)`, pq.StringArray(uids))
	if err != nil {
		return nil, wrap("getting orders", err)
	}
	found := make(map[string][]byte, len(uids))
	if err := collect(rows, func(uid string, body []byte) { found[uid] = body }); err != nil {
		return nil, wrap("getting orders", err)
	}
	return found, nil
}

// Close returns the connection to the pool.
func (c *Conn) Close() error {
	return c.c.Close()
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

// A RejectedMessage is a stored Rejection.
type RejectedMessage struct {
	ID         int64
	RejectedAt time.Time
	Rejection
}

// Rejected returns up to n rejected messages whose ids are greater than
// after, oldest first, and whether more follow. It stops early, after at
// least one, once the messages' payloads and reasons pass maxBytes, so
// that a page of large messages does not have to be held in memory.
func (s *Store) Rejected(ctx context.Context, after int64, n int, maxBytes int64) ([]RejectedMessage, bool, error) {
	// Messages past the byte budget come without their bytes; the first
	// of them, or the one past n, says that more follow.
	rows, err := s.db.QueryContext(ctx, `
		SELECT id, channel, sequence, rejected_at, before < $3,
		       CASE WHEN before < $3 THEN payload END,
		       CASE WHEN before < $3 THEN reason END
		FROM (
			SELECT id, channel, sequence, rejected_at, payload, reason,
			       coalesce(sum(octet_length(payload) + octet_length(reason))
			           OVER (ORDER BY id ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
			FROM rejected WHERE id > $1 ORDER BY id LIMIT $2
		) page ORDER BY id`, after, n+1, maxBytes)
	if err != nil {
		return nil, false, wrap("listing rejected messages", err)
	}
	defer rows.Close()

	var out []RejectedMessage
	for rows.Next() {
		var m RejectedMessage
		var seq int64
		var within bool
		var reason sql.NullString
		if err := rows.Scan(&m.ID, &m.Channel, &seq, &m.RejectedAt, &within, &m.Payload, &reason); err != nil {
			return nil, false, wrap("listing rejected messages", err)
		}
		if !within || len(out) == n {
			return out, true, wrap("listing rejected messages", rows.Close())
		}
		m.Sequence, m.Reason = uint64(seq), reason.String
		out = append(out, m)
	}
	return out, false, wrap("listing rejected messages", rows.Err())
}

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
	var pathErr *fs.PathError
	switch {
	case errors.As(err, &pathErr):
		// A file the connection needs, such as sslrootcert, is missing:
		// waiting will not bring it.
		return false
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
