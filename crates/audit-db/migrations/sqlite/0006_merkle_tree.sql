-- The Merkle tree over the log (RFC 6962, see src/merkle.rs): every hash
-- that became final as events were appended, by stored hash index (about
-- two per event), written in the same transaction as the events, so the
-- tree always covers exactly the events up to the head.
CREATE TABLE audit_tree (
    idx   INTEGER PRIMARY KEY,
    hash  BLOB    NOT NULL
);

CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'the audit tree is append-only');
END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'the audit tree is append-only');
END;
