-- Erasable bodies (encoding format 3, see src/encoding.rs): an event's leaf
-- commits to a salted digest of its payload, so the payload and its salt
-- may be erased (set to NULL, leaving the digest in body_digest) while the
-- chain and every Merkle proof stay valid.
ALTER TABLE audit_events
    ALTER COLUMN payload DROP NOT NULL,
    ADD COLUMN body_salt BYTEA,      -- 16 bytes; NULL once erased
    ADD COLUMN body_digest BYTEA;    -- 32 bytes, kept when the body is erased

-- Append-only, but for two updates that leave every header field as it was:
-- an erasure (payload and salt go, the digest stays, the hashes do not
-- change) and the one conversion of a row of format 1 or 2 to format 3
-- when a log from before this migration is first opened for writing.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'UPDATE'
        AND NEW.seq = OLD.seq AND NEW.event_id = OLD.event_id
        AND NEW.session_id IS NOT DISTINCT FROM OLD.session_id
        AND NEW.occurred_at = OLD.occurred_at AND NEW.recorded_at = OLD.recorded_at
        AND NEW.reported_at IS NOT DISTINCT FROM OLD.reported_at
        AND NEW.source = OLD.source AND NEW.actor = OLD.actor AND NEW.kind = OLD.kind
        AND (
            (OLD.format = 3 AND NEW.format = 3 AND OLD.payload IS NOT NULL
                AND NEW.payload IS NULL AND NEW.body_salt IS NULL
                AND NEW.body_digest IS NOT NULL
                AND NEW.prev_hash = OLD.prev_hash AND NEW.hash = OLD.hash)
            OR (OLD.format < 3 AND NEW.format = 3 AND NEW.payload = OLD.payload)
        )
    THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only';
END
$$;

-- The tree's leaves change with the encoding: it is built again, from
-- the converted rows, when the log is next opened for writing.
ALTER TABLE audit_tree DISABLE TRIGGER audit_tree_no_truncate;
TRUNCATE audit_tree;
ALTER TABLE audit_tree ENABLE TRIGGER audit_tree_no_truncate;
