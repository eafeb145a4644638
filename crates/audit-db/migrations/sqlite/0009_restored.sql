-- A database made by `vigil retention restore`: archive bundles put back
-- for an investigation, one row per bundle. Such a database holds
-- stretches of a log, not a log: it has no Merkle tree, takes no new
-- events, and verifies against the signed checkpoints its bundles were
-- proven against (stretches and range_proof are the bundle manifest's, as
-- JSON).
CREATE TABLE audit_restored (
    bundle       TEXT    PRIMARY KEY,
    log          TEXT    NOT NULL,
    log_key      TEXT    NOT NULL,
    checkpoint   TEXT    NOT NULL,
    stretches    TEXT    NOT NULL,
    range_proof  TEXT    NOT NULL,
    data_sha256  TEXT    NOT NULL,
    restored_at  INTEGER NOT NULL
);

-- Nothing is appended once a restoration is recorded (the restore inserts
-- its events first, in the same transaction).
CREATE TRIGGER audit_events_not_restored BEFORE INSERT ON audit_events
WHEN EXISTS (SELECT 1 FROM audit_restored)
BEGIN
    SELECT RAISE(ABORT, 'this database holds restored archive bundles: it takes no new events');
END;
