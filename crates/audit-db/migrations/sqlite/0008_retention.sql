-- Retention (see crates/retention): archive bundles, the stretches of the
-- log that left for them, legal holds and the runs that did it.

-- A bundle of archived events in the archive directory: `archived` once
-- its run's retention.run event is durable (its events are deleted from
-- audit_events in the same transaction that records it), `purged` once its
-- events' archive period is over (the file is deleted after the commit
-- that says so, and again by any later run that finds it).
CREATE TABLE retention_bundles (
    name        TEXT    PRIMARY KEY,
    sha256      TEXT    NOT NULL,
    events      INTEGER NOT NULL,
    first_seq   INTEGER NOT NULL,
    last_seq    INTEGER NOT NULL,
    oldest_at   INTEGER NOT NULL,   -- the earliest occurred_at among its events
    run_id      INTEGER NOT NULL,
    state       TEXT    NOT NULL CHECK (state IN ('archived', 'purged'))
);

-- Seqs [first_seq, last_seq] whose events are in `bundle` (or, NULL, were
-- purged). Verification accepts a missing event only inside one of these;
-- the tree keeps every leaf whatever happens here.
CREATE TABLE audit_archived (
    first_seq   INTEGER PRIMARY KEY,
    last_seq    INTEGER NOT NULL,
    bundle      TEXT
);

-- One row per `vigil retention run` (and the gateway's daily one): as_of is
-- the clock it ran at; a run that did not finish is resumed by the next.
CREATE TABLE retention_runs (
    id          INTEGER PRIMARY KEY,
    as_of       INTEGER NOT NULL,
    started_at  INTEGER NOT NULL,
    event_id    BLOB    NOT NULL,   -- the id its retention.run event gets
    finished_at INTEGER
);

-- Session recordings retention knows of (from their recording.stopped
-- events): where each was written, and where it went.
CREATE TABLE retention_recordings (
    path        TEXT    PRIMARY KEY,
    session_id  BLOB    NOT NULL,
    sha256      TEXT    NOT NULL,
    age_from    INTEGER NOT NULL,
    grp         TEXT,
    technician  TEXT,
    archived_to TEXT,               -- its copy in the archive directory
    gone_at     INTEGER                -- deleted (purged or erased)
);

-- Legal holds: what they cover is one session, one technician's sessions,
-- or a time range; released holds are kept, with who and why.
CREATE TABLE retention_holds (
    id              INTEGER PRIMARY KEY,
    session_id      BLOB,
    technician      TEXT,
    since_at        INTEGER,
    until_at        INTEGER,
    reason          TEXT    NOT NULL,
    created_by      TEXT    NOT NULL,
    created_at      INTEGER NOT NULL,
    released_by     TEXT,
    released_at     INTEGER,
    release_reason  TEXT
);

-- Events may now leave, but only for an archive: a row is deleted only
-- inside a stretch recorded in audit_archived.
DROP TRIGGER audit_events_no_delete;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
WHEN NOT EXISTS (
    SELECT 1 FROM audit_archived a
    WHERE a.first_seq = (SELECT MAX(first_seq) FROM audit_archived WHERE first_seq <= OLD.seq)
      AND a.last_seq >= OLD.seq
)
BEGIN
    SELECT RAISE(ABORT, 'audit events are append-only');
END;
