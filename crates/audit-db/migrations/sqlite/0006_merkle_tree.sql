-- The Merkle tree over the log (RFC 6962, see src/merkle.rs): for each
-- event, the hashes its append made final (its leaf hash, then one per
-- subtree it completed: two on average), written in the same transaction
-- as the event, so the tree always covers exactly the events up to the head.
CREATE TABLE audit_tree (
    seq     INTEGER PRIMARY KEY,
    hashes  BLOB    NOT NULL
);

CREATE TRIGGER audit_tree_no_update BEFORE UPDATE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'the audit tree is append-only');
END;
CREATE TRIGGER audit_tree_no_delete BEFORE DELETE ON audit_tree
BEGIN
    SELECT RAISE(ABORT, 'the audit tree is append-only');
END;
