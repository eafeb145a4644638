-- The Merkle tree over the log (RFC 6962, see src/merkle.rs): for each
-- event, the hashes its append made final (its leaf hash, then one per
-- subtree it completed: two on average), written in the same transaction
-- as the event, so the tree always covers exactly the events up to the head.
CREATE TABLE audit_tree (
    seq     BIGINT PRIMARY KEY,
    hashes  BYTEA  NOT NULL
);

CREATE FUNCTION audit_tree_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the audit tree is append-only';
END
$$;
CREATE TRIGGER audit_tree_no_change BEFORE UPDATE OR DELETE ON audit_tree
    FOR EACH ROW EXECUTE FUNCTION audit_tree_append_only();
CREATE TRIGGER audit_tree_no_truncate BEFORE TRUNCATE ON audit_tree
    FOR EACH STATEMENT EXECUTE FUNCTION audit_tree_append_only();
