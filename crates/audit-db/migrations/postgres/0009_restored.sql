-- A database made by `vigil retention restore` (the SQLite migration of
-- the same number says what it is).
CREATE TABLE audit_restored (
    bundle       TEXT    PRIMARY KEY,
    log          TEXT    NOT NULL,
    log_key      TEXT    NOT NULL,
    checkpoint   TEXT    NOT NULL,
    stretches    TEXT    NOT NULL,
    range_proof  TEXT    NOT NULL,
    data_sha256  TEXT    NOT NULL,
    restored_at  BIGINT  NOT NULL
);

CREATE FUNCTION audit_events_not_restored() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM audit_restored) THEN
        RAISE EXCEPTION 'this database holds restored archive bundles: it takes no new events';
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER audit_events_not_restored BEFORE INSERT ON audit_events
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_not_restored();
