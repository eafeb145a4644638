-- The audit log: one row per event, chained by SHA-256 (see src/chain.rs).
-- Times are microseconds since the Unix epoch; ids and hashes are raw bytes.
CREATE TABLE audit_events (
    seq          INTEGER PRIMARY KEY,
    event_id     BLOB    NOT NULL UNIQUE,
    session_id   BLOB,
    occurred_at  INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    source       TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    payload      TEXT    NOT NULL,
    format       INTEGER NOT NULL,
    prev_hash    BLOB    NOT NULL,
    hash         BLOB    NOT NULL
);

-- Every SQLite index entry ends with the rowid, which is seq: (actor) is
-- already ordered by (actor, seq) for keyset paging, without storing seq twice.
CREATE INDEX audit_events_session ON audit_events (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_kind ON audit_events (kind);
CREATE INDEX audit_events_occurred ON audit_events (occurred_at);

-- The last event's seq and hash, updated in the same transaction as every
-- append, so a deleted or rewritten tail is caught.
CREATE TABLE audit_head (
    id    INTEGER PRIMARY KEY CHECK (id = 1),
    seq   INTEGER NOT NULL,
    hash  BLOB    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, zeroblob(32));

-- Append-only: a mistaken UPDATE or DELETE is refused outright. Deliberate
-- tampering (dropping these first) is what the hash chain is for.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
