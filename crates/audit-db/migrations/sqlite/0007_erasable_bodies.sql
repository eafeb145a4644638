-- Erasable bodies (encoding format 3, see src/encoding.rs): an event's leaf
-- commits to a salted digest of its payload, so the payload and its salt
-- may be erased (set to NULL, leaving the digest in body_digest) while the
-- chain and every Merkle proof stay valid. SQLite cannot drop NOT NULL from
-- payload in place: the table is rebuilt, with the same rows.
CREATE TABLE audit_events_v3 (
    seq          INTEGER PRIMARY KEY,
    event_id     BLOB    NOT NULL UNIQUE,
    session_id   BLOB,
    occurred_at  INTEGER NOT NULL,
    recorded_at  INTEGER NOT NULL,
    reported_at  INTEGER,
    source       TEXT    NOT NULL,
    actor        TEXT    NOT NULL,
    kind         TEXT    NOT NULL,
    payload      TEXT,               -- NULL once erased
    body_salt    BLOB,               -- 16 bytes; NULL once erased
    body_digest  BLOB,               -- 32 bytes, kept when the body is erased
    format       INTEGER NOT NULL,
    prev_hash    BLOB    NOT NULL,
    hash         BLOB    NOT NULL
);
INSERT INTO audit_events_v3 (seq, event_id, session_id, occurred_at, recorded_at,
        reported_at, source, actor, kind, payload, format, prev_hash, hash)
    SELECT seq, event_id, session_id, occurred_at, recorded_at,
        reported_at, source, actor, kind, payload, format, prev_hash, hash
    FROM audit_events;
DROP TABLE audit_events;
ALTER TABLE audit_events_v3 RENAME TO audit_events;

CREATE INDEX audit_events_session ON audit_events (session_id) WHERE session_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor);
CREATE INDEX audit_events_kind ON audit_events (kind);
-- No index on occurred_at any more: SQLite queries never use it (a time
-- range is written `+occurred_at`, see src/query.rs: scanning seq is one
-- pass, the index would make every page sort the rest of the log), and
-- every append paid a B-tree insert into it.

-- Append-only, but for two updates that leave every header field as it was:
-- an erasure (payload and salt go, the digest stays, the hashes do not
-- change) and the one conversion of a row of format 1 or 2 to format 3
-- when a log from before this migration is first opened for writing.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
WHEN NOT (
    NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id
    AND NEW.session_id IS OLD.session_id AND NEW.occurred_at = OLD.occurred_at
    AND NEW.recorded_at = OLD.recorded_at AND NEW.reported_at IS OLD.reported_at
    AND NEW.source = OLD.source AND NEW.actor = OLD.actor AND NEW.kind = OLD.kind
    AND (
        (OLD.format = 3 AND NEW.format = 3 AND OLD.payload IS NOT NULL
            AND NEW.payload IS NULL AND NEW.body_salt IS NULL
            AND NEW.body_digest IS NOT NULL
            AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash)
        OR (OLD.format < 3 AND NEW.format = 3 AND NEW.payload = OLD.payload)
    )
)
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;

-- The tree's leaves change with the encoding: it is built again, from
-- the converted rows, when the log is next opened for writing.
DROP TRIGGER audit_tree_no_delete;
DELETE FROM audit_tree;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'the audit tree is append-only');
END;
