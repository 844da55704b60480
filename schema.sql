-- The service applies this file at every start; each statement must be
-- safe to run again on a database that already has it.

-- One row per order. The body is the order's canonical JSON exactly as the
-- API serves it, so reads return it without decoding. It is text, not
-- json: the service validated and encoded it, and PostgreSQL checking it
-- again would cost a quarter of the database's work per order. Query it
-- as JSON with a cast: body::json->>'customer_id'. The "C" collation makes
-- the primary key sort by bytes, the order the list routes promise.
CREATE TABLE IF NOT EXISTS orders (
    order_uid text COLLATE "C" PRIMARY KEY,
    body      text        NOT NULL,
    stored_at timestamptz NOT NULL DEFAULT now()
);

-- Orders deleted through the API. A message of one, redelivered or
-- replayed from the stream, is acknowledged without storing it again;
-- creating it through the API removes its row here. digest is the SHA-256
-- of the deleted body: a message with the same id but another body is a
-- different order, recorded as rejected rather than dropped unseen.
CREATE TABLE IF NOT EXISTS deleted_orders (
    order_uid  text COLLATE "C" PRIMARY KEY,
    deleted_at timestamptz NOT NULL DEFAULT now()
);
ALTER TABLE deleted_orders ADD COLUMN IF NOT EXISTS digest bytea;

-- Stream messages that can never become orders: not JSON, failing
-- validation, or clashing with a stored order of the same id. Kept with
-- their raw bytes so an operator can inspect and replay them.
CREATE TABLE IF NOT EXISTS rejected (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    channel     text        NOT NULL,
    sequence    bigint      NOT NULL,
    payload     bytea       NOT NULL,
    reason      text        NOT NULL,
    rejected_at timestamptz NOT NULL DEFAULT now()
);

-- A message redelivered after its rejection was stored but before it was
-- acknowledged must not be recorded twice. The payload is part of the key
-- because sequences start again if the streaming server loses its store.
CREATE UNIQUE INDEX IF NOT EXISTS rejected_message
    ON rejected (channel, sequence, md5(payload));

-- The change log: one row per order created or deleted, written in the
-- same transaction as the change, when several instances share the
-- database. Every instance reads it to bring its cache up to date with
-- what the others did (see follower.go). xid is the writing transaction,
-- which tells a reader whether it has ended; origin is the writing
-- process, which skips its own changes. Rows every follower has read are
-- pruned.
CREATE TABLE IF NOT EXISTS changes (
    xid       xid8   NOT NULL DEFAULT pg_current_xact_id(),
    origin    bigint NOT NULL,
    order_uid text COLLATE "C" NOT NULL
);
CREATE INDEX IF NOT EXISTS changes_xid ON changes (xid);

-- The instances that read the change log, and the oldest transaction
-- whose changes each still needs. A follower that has not written here for
-- a while no longer holds back pruning.
CREATE TABLE IF NOT EXISTS followers (
    origin  bigint PRIMARY KEY,
    low     xid8        NOT NULL,
    seen_at timestamptz NOT NULL
);

-- Wake the instances listening when a transaction logs changes. PostgreSQL
-- sends one notification per transaction however many rows it logged.
CREATE OR REPLACE FUNCTION notify_order_changes() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('order_changes', '');
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER order_changes_notify
    AFTER INSERT ON changes
    FOR EACH STATEMENT EXECUTE FUNCTION notify_order_changes();
