//! One suite, run against both stores: every case below runs once on SQLite
//! and once on PostgreSQL (when `VIGIL_TEST_POSTGRES_URL` is set).
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

mod cases;

testkit::both_backends! {
    mod cases;
    appends_get_contiguous_places_and_verify,
    the_same_event_id_is_stored_once,
    thirty_two_concurrent_writers_all_succeed,
    queries_filter_and_page_in_log_order,
    a_malformed_row_stops_a_query_at_its_seq,
    the_merkle_tree_is_kept_with_every_append,
    a_log_from_before_the_tree_gets_it_on_open,
    an_erased_body_leaves_the_proofs_valid_and_the_files,
    an_altered_tree_is_named,
    a_modified_event_is_named,
    a_deleted_event_is_named,
    an_inserted_event_is_named,
    swapped_events_are_named,
    a_deleted_tail_is_named,
    rows_added_past_the_head_are_named,
    stretches_are_joined_when_verifying_in_parallel,
    an_anchor_from_before_catches_a_rewrite,
    reopening_continues_the_chain,
    a_newer_schema_is_refused,
    bad_events_are_refused_and_nothing_is_stored,
    appends_after_close_fail_cleanly,
    accounts_and_groups_round_trip,
    concurrent_login_attempts_never_check_more_than_the_threshold,
    settings_are_stored_as_json,
    archived_stretches_leave_the_log_verifiable,
    a_bulk_archive_keeps_the_indexes_and_the_guard,
    the_sessions_index_finds_sessions_and_forgets_erased_chat,
}

/// SQLite only: PostgreSQL has no bulk path and no VACUUM mark.
#[tokio::test]
async fn sqlite_an_unfinished_vacuum_is_finished_on_opening() {
    cases::an_unfinished_vacuum_is_finished_on_opening(&testkit::TestDb::sqlite()).await;
}
