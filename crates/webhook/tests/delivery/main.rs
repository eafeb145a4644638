//! The delivery worker against a real HTTP receiver on 127.0.0.1 and a
//! real database of either kind, driven step by step on a clock the test
//! moves (the retry schedule is tested without waiting for it).
// A test crate: unwrap() says "this must hold" as well as expect() here.
#![allow(clippy::unwrap_used)]

mod cases;

testkit::both_backends! {
    mod cases;
    a_sessions_posts_carry_its_details_signed_and_are_audited,
    chat_is_left_out_where_asked_and_groups_filter,
    retries_follow_the_schedule_until_exhausted,
    retry_after_is_honoured_and_410_disables_the_endpoint,
    an_endpoint_failing_for_five_days_is_disabled,
    both_secrets_sign_during_the_grace_then_only_the_new_one,
    a_replay_sends_the_same_ids_and_bodies,
    a_receiver_down_then_up_gets_everything_once,
    a_bad_receiver_is_a_failed_attempt_with_its_reason,
    two_workers_never_post_the_same_message_at_once,
    a_dead_endpoint_does_not_hold_up_the_others,
    a_worker_killed_mid_post_leaves_it_to_another_after_its_lease,
}
