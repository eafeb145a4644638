//! The cases; each takes a fresh database of either kind.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use audit_db::accounts::Group;
use audit_db::event::{
    ChatMessage, Consent, Denial, Direction, EndReason, FileTransferred, JoinMethod, Party,
    Permission, PermissionDenied, PermissionGranted, PermissionRequested, RecordingStopped,
    SessionCreated, SessionEnded, SessionJoined, SessionPickedUp,
};
use audit_db::webhooks::{DeliveryFilter, Endpoint, Webhooks};
use audit_db::{Accounts, Actor, AuditLog, DbUrl, EventKind, Filter, NewEvent, OpenMode, Source};
use futures::TryStreamExt;
use testkit::{Receiver, Reply, TestDb};
use uuid::Uuid;
use webhook::admin::{EndpointAdmin, NewEndpoint};
use webhook::schedule::{Clock, RETRY_AFTER};
use webhook::worker::{Config, Worker};

/// A clock the test moves; no jitter, so times are exact.
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_us(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
    fn jitter(&self) -> f64 {
        0.0
    }
}

struct Env {
    log: AuditLog,
    admin: EndpointAdmin,
    hooks: Webhooks,
    clock: Arc<TestClock>,
    worker: Worker,
}

impl Env {
    async fn new(db: &TestDb) -> Self {
        let url: DbUrl = db.url.parse().unwrap();
        let log = AuditLog::open(&url, OpenMode::Create).await.unwrap();
        let accounts = Accounts::new(log.store().clone());
        for name in ["tier1", "tier2"] {
            accounts
                .add_group(&Group {
                    name: name.into(),
                    permissions: vec![Permission::SendFiles],
                    ip_allow: vec![],
                    single_prompt: false,
                    force_recording: false,
                    store_chat: true,
                })
                .await
                .unwrap();
        }
        let clock = Arc::new(TestClock(AtomicI64::new(audit_db::time_us::now())));
        let worker = Self::worker_on(&log, &clock);
        Self {
            admin: EndpointAdmin::new(log.clone(), "root@test", Source::cli("test")),
            hooks: Webhooks::new(log.store().clone()),
            log,
            clock,
            worker,
        }
    }

    fn worker_on(log: &AuditLog, clock: &Arc<TestClock>) -> Worker {
        let config = Config {
            timeout: Duration::from_secs(2),
            ..Config::default()
        };
        Worker::new(
            log.clone(),
            clock.clone(),
            config,
            Source::from_stored("webhooks@test".to_owned()),
        )
    }

    /// An endpoint at `url` on loopback over http, changed by `f`.
    async fn endpoint(&self, url: &str, f: impl FnOnce(&mut NewEndpoint)) -> Endpoint {
        let mut new = NewEndpoint {
            url: url.to_owned(),
            allow_private: true,
            allow_http: true,
            ..NewEndpoint::default()
        };
        f(&mut new);
        self.admin.add(new).await.unwrap()
    }

    fn advance(&self, by: Duration) {
        self.clock
            .0
            .fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }

    async fn step(&self) -> webhook::worker::Step {
        self.worker.step().await.unwrap()
    }

    async fn events_of(&self, kind: &str) -> Vec<serde_json::Value> {
        let filter = Filter {
            kind: Some(kind.into()),
            ..Filter::default()
        };
        self.log
            .query(filter)
            .map_ok(|e| e.to_json())
            .try_collect()
            .await
            .unwrap()
    }

    /// A whole session of `group`'s technician: chat both ways, a file
    /// each end reported, a permission granted and one denied, a recording.
    async fn session(&self, group: &str) -> Uuid {
        let s = Uuid::now_v7();
        let tech = Actor::technician("ann@example.com");
        let gw = Source::gateway();
        let console = Source::console("127.0.0.1:5000");
        let applet = Source::applet("127.0.0.1:6000");
        let ev = |actor: &Actor, source: &Source, kind| {
            NewEvent::now(actor.clone(), source.clone(), kind).in_session(s)
        };
        let file = |direction| FileTransferred {
            direction,
            name: "report.txt".into(),
            size: 12,
            md5: "d41d8cd98f00b204e9800998ecf8427e".into(),
            sha256: "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855".into(),
        };
        let events = vec![
            ev(
                &tech,
                &gw,
                EventKind::SessionCreated(SessionCreated {
                    technician: "ann@example.com".into(),
                    pin_issued: true,
                    gateway: Some("gw1".into()),
                    group: Some(group.into()),
                }),
            ),
            ev(
                &Actor::end_user(),
                &gw,
                EventKind::SessionJoined(SessionJoined {
                    via: JoinMethod::Pin,
                    ip: Some("192.0.2.7".parse().unwrap()),
                }),
            ),
            ev(
                &tech,
                &gw,
                EventKind::SessionPickedUp(SessionPickedUp {
                    technician: "ann@example.com".into(),
                }),
            ),
            ev(
                &tech,
                &console,
                EventKind::ChatMessage(ChatMessage {
                    from: Party::Technician,
                    text: Some("hello, how can I help?".into()),
                    chars: 22,
                }),
            ),
            ev(
                &Actor::end_user(),
                &applet,
                EventKind::ChatMessage(ChatMessage {
                    from: Party::EndUser,
                    text: Some("my printer is on fire".into()),
                    chars: 21,
                }),
            ),
            ev(
                &tech,
                &console,
                EventKind::PermissionRequested(PermissionRequested {
                    permission: Permission::SendFiles,
                }),
            ),
            ev(
                &Actor::end_user(),
                &applet,
                EventKind::PermissionGranted(PermissionGranted {
                    permission: Permission::SendFiles,
                    consent: Consent::EndUser,
                }),
            ),
            ev(
                &Actor::end_user(),
                &applet,
                EventKind::PermissionDenied(PermissionDenied {
                    permission: Permission::SystemInformation,
                    reason: Denial::NotGranted,
                }),
            ),
            ev(
                &tech,
                &console,
                EventKind::FileTransferred(file(Direction::ToEndUser)),
            ),
            ev(
                &Actor::end_user(),
                &applet,
                EventKind::FileTransferred(file(Direction::ToEndUser)),
            ),
            ev(
                &tech,
                &console,
                EventKind::RecordingStopped(RecordingStopped {
                    recording: "rec-1".into(),
                    path: "/rec/1.vrec".into(),
                    size: 1000,
                    sha256: "ab".repeat(32),
                }),
            ),
            ev(
                &tech,
                &gw,
                EventKind::SessionEnded(SessionEnded {
                    reason: EndReason::EndedByConsole("done".into()),
                    duration_ms: 61_000,
                    bytes_to_applet: 5,
                    bytes_to_console: 6,
                }),
            ),
        ];
        self.log.append(events).await.unwrap();
        s
    }

    async fn close(self) {
        self.log.close().await;
    }
}

const WAIT: Duration = Duration::from_secs(20);

pub async fn a_sessions_posts_carry_its_details_signed_and_are_audited(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    let e = env.endpoint(&rx.url, |_| {}).await;
    let session = env.session("tier1").await;
    let step = env.step().await;
    assert_eq!((step.dispatched, step.delivered), (2, 2));
    let posts = rx.wait_for(2, WAIT);
    for p in &posts {
        assert!(
            p.verifies(&e.secret),
            "the standardwebhooks crate verifies it"
        );
        assert_eq!(p.header("content-type"), "application/json");
    }
    // Posts go out side by side: they may arrive in either order.
    let of_type = |t: &str| posts.iter().find(|p| p.json()["type"] == t).unwrap();
    let started = of_type("session.started").json();
    assert_eq!(
        started["data"]["picked_up_at"].as_str().map(str::len),
        Some(27)
    );
    let ended_post = of_type("session.ended");
    let ended = ended_post.json();
    let d = &ended["data"];
    assert_eq!(d["version"], 1);
    assert_eq!(d["session"], session.to_string());
    assert_eq!(d["technician"], "ann@example.com");
    assert_eq!(d["group"], "tier1");
    assert_eq!(d["end_user"]["address"], "192.0.2.7");
    assert_eq!(d["duration_ms"], 61_000);
    assert_eq!(d["end_reason"], "ended_by_console: done");
    assert_eq!(d["chat"][0]["text"], "hello, how can I help?");
    assert_eq!(d["chat"][1]["from"], "end_user");
    assert_eq!(d["chat_omitted"], serde_json::Value::Null);
    assert_eq!(d["permissions"]["requested"][0], "send_files");
    assert_eq!(d["permissions"]["granted"][0]["permission"], "send_files");
    assert_eq!(d["permissions"]["denied"][0]["reason"], "not_granted");
    assert_eq!(d["files"][0]["matched"], true);
    assert_eq!(
        d["files"][0]["sender"]["md5"],
        "d41d8cd98f00b204e9800998ecf8427e"
    );
    assert_eq!(d["recordings"][0]["sha256"], "ab".repeat(32));
    // The post cites the log: its last event's seq and hash are the stored ones.
    let ended_event = &env.events_of("session.ended").await[0];
    assert_eq!(d["audit"]["last_seq"], ended_event["seq"]);
    assert_eq!(d["audit"]["last_hash"], ended_event["hash"]);
    assert_eq!(d["audit"]["events"], 12);
    // Stored as delivered, with the id that was sent, and audited.
    let stored = env
        .hooks
        .messages(&DeliveryFilter::default(), 10)
        .await
        .unwrap();
    assert!(stored.iter().all(|m| m.status == "delivered"));
    assert!(stored
        .iter()
        .any(|m| m.id == ended_post.header("webhook-id")));
    let audited = env.events_of("webhook.delivery").await;
    assert_eq!(audited.len(), 2);
    assert!(audited
        .iter()
        .all(|a| a["payload"]["outcome"] == "delivered"));
    // Nothing more to send.
    assert_eq!(env.step().await.attempted, 0);
    assert_eq!(rx.count(), 2);
    env.close().await;
}

pub async fn chat_is_left_out_where_asked_and_groups_filter(db: &TestDb) {
    let env = Env::new(db).await;
    let (a, b) = (Receiver::start(), Receiver::start());
    env.endpoint(&a.url, |n| {
        n.exclude_chat = true;
        n.events = vec!["session.ended".into(), "chat.message".into()];
    })
    .await;
    env.endpoint(&b.url, |n| n.groups = vec!["tier2".into()])
        .await;
    env.session("tier1").await;
    env.step().await;
    let posts = a.wait_for(3, WAIT);
    for p in &posts {
        let text = String::from_utf8_lossy(&p.body);
        assert!(
            !text.contains("printer") && !text.contains("help?"),
            "{text}"
        );
    }
    let ended = posts
        .iter()
        .find(|p| p.json()["type"] == "session.ended")
        .unwrap()
        .json();
    assert_eq!(ended["data"]["chat"], serde_json::Value::Null);
    assert_eq!(ended["data"]["chat_omitted"], "excluded");
    assert_eq!(b.count(), 0, "tier2's endpoint gets no tier1 session");
    env.session("tier2").await;
    env.step().await;
    b.wait_for(2, WAIT);
    env.close().await;
}

pub async fn retries_follow_the_schedule_until_exhausted(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    rx.set_default(Reply::Status(500));
    env.endpoint(&rx.url, |n| n.events = vec!["session.ended".into()])
        .await;
    env.session("tier1").await;
    let mut at = env.clock.now_us();
    assert_eq!(
        env.step().await.attempted,
        1,
        "the first attempt is made at once"
    );
    for (i, wait) in RETRY_AFTER.iter().enumerate() {
        let m = &env
            .hooks
            .messages(&DeliveryFilter::default(), 1)
            .await
            .unwrap()[0];
        assert_eq!(m.status, "pending");
        assert_eq!(
            m.next_attempt_at,
            at + wait.as_micros() as i64,
            "retry {}",
            i + 1
        );
        env.advance(*wait - Duration::from_secs(1));
        assert_eq!(env.step().await.attempted, 0, "not before it is due");
        env.advance(Duration::from_secs(1));
        at = env.clock.now_us();
        assert_eq!(env.step().await.attempted, 1);
    }
    rx.wait_for(8, WAIT);
    let m = &env
        .hooks
        .messages(&DeliveryFilter::default(), 1)
        .await
        .unwrap()[0];
    assert_eq!((m.status.as_str(), m.attempts), ("failed", 8));
    let attempts = env.hooks.attempts(&m.id).await.unwrap();
    assert_eq!(attempts.len(), 8);
    assert!(attempts.iter().all(|a| a.http_status == Some(500)));
    let audited = env.events_of("webhook.delivery").await;
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0]["payload"]["outcome"], "exhausted");
    let ids: std::collections::HashSet<String> = rx
        .received()
        .iter()
        .map(|p| p.header("webhook-id").to_owned())
        .collect();
    assert_eq!(ids.len(), 1, "every retry has the same webhook-id");
    env.advance(Duration::from_secs(86400));
    assert_eq!(env.step().await.attempted, 0);
    env.close().await;
}

pub async fn retry_after_is_honoured_and_410_disables_the_endpoint(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    rx.script([Reply::RetryAfter(429, 120), Reply::Status(410)]);
    let e = env
        .endpoint(&rx.url, |n| n.events = vec!["session.ended".into()])
        .await;
    env.session("tier1").await;
    let t0 = env.clock.now_us();
    env.step().await;
    let m = &env
        .hooks
        .messages(&DeliveryFilter::default(), 1)
        .await
        .unwrap()[0];
    assert_eq!(
        m.next_attempt_at,
        t0 + 120_000_000,
        "Retry-After: 120 beats the 5 s step"
    );
    env.advance(Duration::from_secs(120));
    env.step().await;
    let e = env.hooks.existing(&e.id).await.unwrap();
    assert!(e.disabled);
    assert_eq!(
        e.disabled_reason.as_deref(),
        Some("the endpoint answered 410 Gone")
    );
    let outcomes: Vec<String> = env
        .events_of("webhook.delivery")
        .await
        .iter()
        .map(|a| a["payload"]["outcome"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(outcomes, ["endpoint_gone", "endpoint_disabled"]);
    // Disabled: new sessions are not posted.
    env.session("tier1").await;
    env.step().await;
    assert_eq!(rx.count(), 2);
    env.close().await;
}

pub async fn an_endpoint_failing_for_five_days_is_disabled(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    rx.set_default(Reply::Status(503));
    let e = env
        .endpoint(&rx.url, |n| n.events = vec!["session.ended".into()])
        .await;
    for _ in 0..3 {
        env.session("tier1").await;
        env.step().await;
        env.advance(Duration::from_secs(2 * 86400));
    }
    // Day 6: the retries due now fail too, and the endpoint is given up.
    env.session("tier1").await;
    env.step().await;
    let e = env.hooks.existing(&e.id).await.unwrap();
    assert!(e.disabled, "{e:?}");
    assert_eq!(
        e.disabled_reason.as_deref(),
        Some("every attempt failed for 5 days")
    );
    env.close().await;
}

pub async fn both_secrets_sign_during_the_grace_then_only_the_new_one(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    let e = env
        .endpoint(&rx.url, |n| n.events = vec!["session.ended".into()])
        .await;
    let new = env
        .admin
        .rotate(&e.id, Duration::from_secs(3600))
        .await
        .unwrap();
    env.session("tier1").await;
    env.step().await;
    let during = rx.wait_for(1, WAIT).remove(0);
    assert!(
        during.verifies(&e.secret) && during.verifies(&new),
        "both verify in the grace"
    );
    assert_eq!(during.header("webhook-signature").split(' ').count(), 2);
    env.advance(Duration::from_secs(3601));
    env.session("tier1").await;
    env.step().await;
    let after = rx.wait_for(2, WAIT).remove(1);
    assert!(after.signed_by(&new));
    assert!(
        !after.signed_by(&e.secret),
        "the old secret no longer signs"
    );
    assert_eq!(after.header("webhook-signature").split(' ').count(), 1);
    let changes = env.events_of("admin.change").await;
    assert!(changes.iter().any(|c| c["payload"]["change"]
        .as_str()
        .unwrap()
        .starts_with("signing secret rotated")));
    env.close().await;
}

pub async fn a_replay_sends_the_same_ids_and_bodies(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    let e = env.endpoint(&rx.url, |_| {}).await;
    env.session("tier1").await;
    env.step().await;
    let first = rx.wait_for(2, WAIT);
    let since = env.clock.now_us() - 60_000_000;
    let filter = DeliveryFilter {
        endpoint: Some(e.id.clone()),
        since: Some(since),
        ..DeliveryFilter::default()
    };
    assert_eq!(
        env.hooks.replay(&filter, env.clock.now_us()).await.unwrap(),
        2
    );
    env.step().await;
    let all = rx.wait_for(4, WAIT);
    for (a, b) in first.iter().zip(&all[2..]) {
        let again = all[2..]
            .iter()
            .find(|p| p.header("webhook-id") == a.header("webhook-id"));
        let again = again.unwrap_or(b);
        assert_eq!(again.header("webhook-id"), a.header("webhook-id"));
        assert_eq!(again.body, a.body);
        assert!(again.verifies(&e.secret));
    }
    env.close().await;
}

pub async fn a_receiver_down_then_up_gets_everything_once(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    let port = rx.port();
    env.endpoint(&rx.url, |_| {}).await;
    drop(rx);
    for _ in 0..5 {
        env.session("tier1").await;
    }
    let step = env.step().await;
    assert_eq!((step.attempted, step.delivered), (10, 0));
    let failed = env
        .hooks
        .messages(&DeliveryFilter::default(), 100)
        .await
        .unwrap();
    let first = env.hooks.attempts(&failed[0].id).await.unwrap();
    assert!(
        first[0]
            .error
            .as_deref()
            .unwrap()
            .contains("could not connect"),
        "{first:?}"
    );
    let rx = Receiver::on_port(port);
    env.advance(Duration::from_secs(5));
    assert_eq!(env.step().await.delivered, 10);
    let posts = rx.wait_for(10, WAIT);
    let ids: std::collections::HashSet<&str> =
        posts.iter().map(|p| p.header("webhook-id")).collect();
    assert_eq!(ids.len(), 10, "each post once");
    env.advance(Duration::from_secs(3600));
    env.step().await;
    assert_eq!(rx.count(), 10);
    env.close().await;
}

pub async fn a_bad_receiver_is_a_failed_attempt_with_its_reason(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    rx.script([
        Reply::Hang,
        Reply::Close,
        Reply::Big(10 << 20),
        Reply::Redirect("http://169.254.169.254/latest/meta-data/".into()),
    ]);
    let e = env
        .endpoint(&rx.url, |n| n.events = vec!["session.ended".into()])
        .await;
    env.session("tier1").await;
    let mut reasons = Vec::new();
    for _ in 0..4 {
        env.step().await;
        let m = &env
            .hooks
            .messages(&DeliveryFilter::default(), 1)
            .await
            .unwrap()[0];
        reasons.push(m.last_error.clone().unwrap());
        env.advance(Duration::from_secs(3600));
    }
    assert!(reasons[0].contains("timed out"), "{reasons:?}");
    assert!(
        reasons[1].starts_with("failed") || reasons[1].contains("closed"),
        "{reasons:?}"
    );
    assert!(reasons[2].contains("body over 64 KiB"), "{reasons:?}");
    assert!(reasons[3].contains("redirected (302 Found)"), "{reasons:?}");
    assert_eq!(rx.count(), 4, "the redirect was not followed");
    // And then a good answer delivers it (the fifth attempt is 2 h after the fourth).
    env.advance(Duration::from_secs(2 * 3600));
    env.step().await;
    let m = &env
        .hooks
        .messages(
            &DeliveryFilter {
                endpoint: Some(e.id),
                ..Default::default()
            },
            1,
        )
        .await
        .unwrap()[0];
    assert_eq!(m.status, "delivered");
    env.close().await;
}

pub async fn two_workers_never_post_the_same_message_at_once(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    env.endpoint(&rx.url, |_| {}).await;
    for _ in 0..40 {
        env.session("tier1").await;
    }
    let other = Env::worker_on(&env.log, &env.clock);
    let (a, b) = tokio::join!(
        async {
            let mut n = 0;
            for _ in 0..10 {
                n += env.worker.step().await.unwrap().attempted;
            }
            n
        },
        async {
            let mut n = 0;
            for _ in 0..10 {
                n += other.step().await.unwrap().attempted;
            }
            n
        }
    );
    assert_eq!(a + b, 80, "every post attempted once ({a} + {b})");
    let posts = rx.wait_for(80, WAIT);
    let ids: std::collections::HashSet<&str> =
        posts.iter().map(|p| p.header("webhook-id")).collect();
    assert_eq!(ids.len(), 80, "no post sent twice");
    env.close().await;
}

pub async fn a_dead_endpoint_does_not_hold_up_the_others(db: &TestDb) {
    let env = Env::new(db).await;
    let (dead, live) = (Receiver::start(), Receiver::start());
    dead.set_default(Reply::Hang);
    let dead_endpoint = env.endpoint(&dead.url, |_| {}).await;
    env.endpoint(&live.url, |_| {}).await;
    env.session("tier1").await;
    // A long timeout: the dead endpoint's first attempt lasts the whole test.
    let config = Config {
        timeout: Duration::from_secs(60),
        ..Config::default()
    };
    let source = Source::from_stored("webhooks@test".to_owned());
    let worker = Worker::new(env.log.clone(), env.clock.clone(), config, source);
    let stop = tokio_util::sync::CancellationToken::new();
    let run = tokio::spawn(worker.run(stop.clone()));
    // The dead endpoint's posts are out and hanging...
    let dead = tokio::task::spawn_blocking(move || {
        dead.wait_for(2, WAIT);
        dead
    })
    .await
    .unwrap();
    // ...and the live endpoint's posts arrive all the same, while the dead
    // one's first attempt is not yet over.
    let live = tokio::task::spawn_blocking(move || {
        live.wait_for(2, WAIT);
        live
    })
    .await
    .unwrap();
    assert_eq!(live.count(), 2);
    let dead_messages = DeliveryFilter {
        endpoint: Some(dead_endpoint.id.clone()),
        ..DeliveryFilter::default()
    };
    let pending = env.hooks.messages(&dead_messages, 10).await.unwrap();
    assert_eq!(pending.len(), 2);
    assert!(
        pending
            .iter()
            .all(|m| m.attempts == 0 && m.status == "pending"),
        "{pending:?}"
    );
    assert_eq!(dead.count(), 2);
    stop.cancel();
    run.await.unwrap();
    env.close().await;
}

pub async fn a_worker_killed_mid_post_leaves_it_to_another_after_its_lease(db: &TestDb) {
    let env = Env::new(db).await;
    let rx = Receiver::start();
    rx.script([Reply::Hang]);
    env.endpoint(&rx.url, |n| n.events = vec!["session.ended".into()])
        .await;
    env.session("tier1").await;
    // A worker posts, and dies before the answer (its task is dropped, as a
    // killed process's would be).
    let doomed = Env::worker_on(&env.log, &env.clock);
    let posting = tokio::spawn(async move { doomed.step().await });
    let first = tokio::task::block_in_place(|| rx.wait_for(1, WAIT)).remove(0);
    posting.abort();
    let _ = posting.await;
    // Its lease keeps the post from anyone else until it runs out...
    let other = Env::worker_on(&env.log, &env.clock);
    assert_eq!(other.step().await.unwrap().attempted, 0);
    env.advance(Config::default().lease + Duration::from_secs(1));
    // ...then it is sent again, with the same id.
    let step = other.step().await.unwrap();
    assert_eq!((step.attempted, step.delivered), (1, 1));
    let again = tokio::task::block_in_place(|| rx.wait_for(2, WAIT)).remove(1);
    assert_eq!(again.header("webhook-id"), first.header("webhook-id"));
    assert_eq!(again.body, first.body);
    env.close().await;
}
