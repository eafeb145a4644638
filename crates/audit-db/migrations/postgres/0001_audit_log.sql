-- The audit log: one row per event, chained by SHA-256 (see src/chain.rs).
-- Times are microseconds since the Unix epoch. The payload is TEXT, not
-- JSONB: it must come back byte for byte as it was hashed.
CREATE TABLE audit_events (
    seq          BIGINT   PRIMARY KEY,
    event_id     UUID     NOT NULL UNIQUE,
    session_id   UUID,
    occurred_at  BIGINT   NOT NULL,
    recorded_at  BIGINT   NOT NULL,
    source       TEXT     NOT NULL,
    actor        TEXT     NOT NULL,
    kind         TEXT     NOT NULL,
    payload      TEXT     NOT NULL,
    format       SMALLINT NOT NULL,
    prev_hash    BYTEA    NOT NULL,
    hash         BYTEA    NOT NULL
);

CREATE INDEX audit_events_session ON audit_events (session_id, seq) WHERE session_id IS NOT NULL;
CREATE INDEX audit_events_actor ON audit_events (actor, seq);
CREATE INDEX audit_events_kind ON audit_events (kind, seq);
CREATE INDEX audit_events_occurred ON audit_events (occurred_at, seq);

-- The last event's seq and hash, locked (FOR UPDATE) by every append so that
-- several gateways on one database extend a single chain.
CREATE TABLE audit_head (
    id    SMALLINT PRIMARY KEY CHECK (id = 1),
    seq   BIGINT   NOT NULL,
    hash  BYTEA    NOT NULL
);
INSERT INTO audit_head (id, seq, hash) VALUES (1, 0, decode(repeat('00', 32), 'hex'));

-- Append-only: a mistaken UPDATE, DELETE or TRUNCATE is refused outright.
-- Deliberate tampering (dropping these first) is what the hash chain is for.
CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit events are append-only';
END
$$;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
