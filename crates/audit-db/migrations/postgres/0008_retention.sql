-- Retention (see crates/retention): archive bundles, the stretches of the
-- log that left for them, legal holds and the runs that did it. The
-- SQLite migration of the same number says what each table is for.
CREATE TABLE retention_bundles (
    name        TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    events      BIGINT  NOT NULL,
    first_seq   BIGINT  NOT NULL,
    last_seq    BIGINT  NOT NULL,
    oldest_at   BIGINT  NOT NULL,
    run_id      BIGINT  NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('archived', 'purged'))
);

CREATE TABLE audit_archived (
    first_seq   BIGINT  PRIMARY KEY,
    last_seq    BIGINT  NOT NULL,
    bundle      TEXT
);

CREATE TABLE retention_runs (
    id          BIGSERIAL PRIMARY KEY,
    as_of       BIGINT  NOT NULL,
    started_at  BIGINT  NOT NULL,
    event_id    BYTEA   NOT NULL,
    finished_at BIGINT
);

-- Session recordings retention knows of (from their recording.stopped
-- events): where each was written, and where it went.
CREATE TABLE retention_recordings (
    path        TEXT    PRIMARY KEY,
    session_id  BYTEA    NOT NULL,
    sha256      TEXT    NOT NULL,
    age_from    BIGINT NOT NULL,
    grp         TEXT,
    technician  TEXT,
    archived_to TEXT,               -- its copy in the archive directory
    gone_at     BIGINT                -- deleted (purged or erased)
);

CREATE TABLE retention_holds (
    id              BIGSERIAL PRIMARY KEY,
    session_id      BYTEA,
    technician      TEXT,
    since_at        BIGINT,
    until_at        BIGINT,
    reason          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      BIGINT  NOT NULL,
    released_by     TEXT,
    released_at     BIGINT,
    release_reason  TEXT
);

-- Events may now leave, but only for an archive: a row is deleted only
-- inside a stretch recorded in audit_archived. Updates are as before.
CREATE OR REPLACE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM (
            SELECT last_seq FROM audit_archived WHERE first_seq <= OLD.seq
            ORDER BY first_seq DESC LIMIT 1
        ) a WHERE a.last_seq >= OLD.seq
    ) THEN
        RETURN OLD;
    END IF;
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
