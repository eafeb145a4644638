//! The cases of the store suite; each takes a fresh database of either kind.

use std::collections::HashSet;

use audit_db::chain::link;
use audit_db::event::{AdminNote, ChatMessage, Party};
use audit_db::{
    Actor, Anchor, AuditLog, BreakKind, ChainBreak, DbUrl, Error, EventKind, Filter, NewEvent,
    OpenMode, Source, VerifyReport,
};
use futures::{StreamExt, TryStreamExt};
use testkit::TestDb;
use uuid::Uuid;

async fn open(db: &TestDb) -> AuditLog {
    let url: DbUrl = db.url.parse().expect("test URL parses");
    AuditLog::open(&url, OpenMode::Create)
        .await
        .expect("opening the test log")
}

fn note(text: impl Into<String>) -> NewEvent {
    NewEvent::now(
        Actor::admin("ann@example.com"),
        Source::cli("test"),
        EventKind::AdminNote(AdminNote { text: text.into() }),
    )
}

/// A log of `n` notes, appended in one call.
async fn log_of(db: &TestDb, n: usize) -> AuditLog {
    let log = open(db).await;
    log.append((1..=n).map(|i| note(format!("note {i}"))).collect())
        .await
        .expect("appending");
    log
}

async fn verify(log: &AuditLog) -> VerifyReport {
    log.verify(None).await.expect("verify runs")
}

/// The outcome of verifying `log` split into `stretches` parts checked at once.
async fn outcome_in_stretches(log: &AuditLog, stretches: usize) -> Result<(), ChainBreak> {
    audit_db::verify::verify_in_stretches(log.store(), None, stretches, &Default::default())
        .await
        .unwrap()
        .outcome
}

async fn first_break(log: &AuditLog) -> ChainBreak {
    verify(log)
        .await
        .outcome
        .expect_err("the log should be broken")
}

pub async fn appends_get_contiguous_places_and_verify(db: &TestDb) {
    let log = open(db).await;
    let mut seqs = Vec::new();
    for i in 0..3 {
        seqs.push(
            log.append_one(note(format!("single {i}")))
                .await
                .unwrap()
                .seq,
        );
    }
    let batch = log
        .append((0..5).map(|i| note(format!("batch {i}"))).collect())
        .await
        .unwrap();
    seqs.extend(batch.iter().map(|r| r.seq));
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    let report = verify(&log).await;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.events, 8);
    assert_eq!(report.head.seq, 8);
    assert_eq!(report.head.hash, batch[4].hash);
    log.close().await;
}

pub async fn the_same_event_id_is_stored_once(db: &TestDb) {
    let log = open(db).await;
    let first = note("resent");
    let r1 = log.append_one(first.clone()).await.unwrap();
    // Resent alone, and resent inside a batch beside a new event and itself.
    let again = log.append_one(first.clone()).await.unwrap();
    let fresh = note("fresh");
    let batch = log
        .append(vec![first.clone(), fresh.clone(), fresh.clone()])
        .await
        .unwrap();
    assert!(!r1.duplicate);
    assert!(again.duplicate && again.seq == r1.seq && again.hash == r1.hash);
    assert!(batch[0].duplicate && batch[0].seq == r1.seq);
    assert!(!batch[1].duplicate && batch[1].seq == 2);
    assert!(batch[2].duplicate && batch[2].seq == 2);
    let stored: Vec<_> = log.query(Filter::default()).try_collect().await.unwrap();
    assert_eq!(
        stored.iter().map(|e| e.id).collect::<Vec<_>>(),
        [first.id, fresh.id]
    );
    assert_eq!(verify(&log).await.outcome, Ok(()));
    log.close().await;
}

pub async fn thirty_two_concurrent_writers_all_succeed(db: &TestDb) {
    let log = open(db).await;
    let writers: Vec<_> = (0..32)
        .map(|w| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                for i in 0..50 {
                    let r = if i % 5 == 0 {
                        let batch = (0..4).map(|j| note(format!("w{w} b{i}.{j}"))).collect();
                        log.append(batch)
                            .await
                            .map(|rs| rs.into_iter().map(|r| r.id).collect())
                    } else {
                        log.append_one(note(format!("w{w} e{i}")))
                            .await
                            .map(|r| vec![r.id])
                    };
                    ids.extend(r.unwrap_or_else(|e| panic!("writer {w} got an error: {e}")));
                }
                ids
            })
        })
        .collect();
    let mut acked = HashSet::new();
    for w in writers {
        acked.extend(w.await.unwrap());
    }
    assert_eq!(acked.len(), 32 * (40 + 10 * 4));
    let stored: HashSet<Uuid> = log
        .query(Filter::default())
        .map_ok(|e| e.id)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(stored, acked);
    let report = verify(&log).await;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!(report.events as usize, acked.len());
    log.close().await;
}

pub async fn queries_filter_and_page_in_log_order(db: &TestDb) {
    let log = open(db).await;
    let session = Uuid::new_v4();
    let t0 = audit_db::time_us::parse("2026-01-01T00:00:00Z").unwrap();
    // More than two pages, so paging is exercised.
    let n = 2 * audit_db::query::READ_PAGE as usize + 7;
    let events: Vec<NewEvent> = (0..n)
        .map(|i| {
            let mut e = if i % 3 == 0 {
                NewEvent::now(
                    Actor::technician("tom@example.com"),
                    Source::console("127.0.0.1:4000"),
                    EventKind::ChatMessage(ChatMessage {
                        from: Party::Technician,
                        text: Some(format!("hello {i}")),
                        chars: 7,
                    }),
                )
                .in_session(session)
            } else {
                note(format!("n{i}"))
            };
            e.occurred_at_us = t0 + i as i64 * 1_000_000;
            e
        })
        .collect();
    log.append(events).await.unwrap();

    let all: Vec<_> = log.query(Filter::default()).try_collect().await.unwrap();
    assert_eq!(all.len(), n);
    assert!(all.windows(2).all(|w| w[0].seq + 1 == w[1].seq));

    let in_session: Vec<_> = log
        .query(Filter {
            session: Some(session),
            ..Filter::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(in_session.len(), n.div_ceil(3));
    assert!(in_session
        .iter()
        .all(|e| e.kind == "chat.message" && e.session == Some(session)));

    let by_actor: Vec<_> = log
        .query(Filter {
            actor: Some("technician:tom@example.com".into()),
            kind: Some("chat.message".into()),
            ..Filter::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(by_actor.len(), in_session.len());

    // [t0+10s, t0+20s) holds events 10..=19.
    let window: Vec<_> = log
        .query(Filter {
            since_us: Some(t0 + 10_000_000),
            until_us: Some(t0 + 20_000_000),
            ..Filter::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert_eq!(
        window.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (11..=20).collect::<Vec<_>>()
    );
    assert!(matches!(
        window[0].decode().unwrap(),
        Some(EventKind::AdminNote(AdminNote { text })) if text == "n10"
    ));

    let none: Vec<_> = log
        .query(Filter {
            kind: Some("login.failed".into()),
            ..Filter::default()
        })
        .try_collect()
        .await
        .unwrap();
    assert!(none.is_empty());

    // A list of types and a time range (scanned by seq, not through an
    // index), past a page boundary; and a list of one type (indexed).
    let kinds = |kinds: &[&str], since_us| Filter {
        kinds: kinds.iter().map(|k| (*k).to_owned()).collect(),
        since_us,
        ..Filter::default()
    };
    let late = t0 + 1_500 * 1_000_000;
    let listed: Vec<_> = log
        .query(kinds(&["chat.message", "login.failed"], Some(late)))
        .try_collect()
        .await
        .unwrap();
    let expected: Vec<i64> = (1_500..n)
        .filter(|i| i % 3 == 0)
        .map(|i| i as i64 + 1)
        .collect();
    assert_eq!(listed.iter().map(|e| e.seq).collect::<Vec<_>>(), expected);
    let one: Vec<_> = log
        .query(kinds(&["chat.message"], None))
        .try_collect()
        .await
        .unwrap();
    assert_eq!(one, in_session);

    // A reader that stops early lets go: the log goes on being read and written.
    let first: Vec<_> = log
        .query(Filter::default())
        .take(3)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(first.iter().map(|e| e.seq).collect::<Vec<_>>(), [1, 2, 3]);
    log.append_one(note("after")).await.unwrap();
    let count = log
        .query(Filter::default())
        .try_collect::<Vec<_>>()
        .await
        .unwrap()
        .len();
    assert_eq!(count, n + 1);
    log.close().await;
}

pub async fn a_malformed_row_stops_a_query_at_its_seq(db: &TestDb) {
    let log = log_of(db, 5).await;
    db.allow_tampering().await;
    db.exec(&format!(
        "UPDATE audit_events SET hash = {} WHERE seq = 3",
        db.bytes_sql(&[7; 31])
    ))
    .await;
    let mut events = std::pin::pin!(log.query(Filter::default()));
    let mut read = Vec::new();
    let err = loop {
        match events.next().await {
            Some(Ok(e)) => read.push(e.seq),
            Some(Err(e)) => break e,
            None => panic!("the malformed row was read as an event"),
        }
    };
    assert_eq!(read, [1, 2], "the events before it are read");
    assert!(
        matches!(err, audit_db::Error::BadRow { seq: 3, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("hash"), "{err}");
    assert!(events.next().await.is_none(), "nothing after the error");
    log.close().await;
}

pub async fn a_modified_event_is_named(db: &TestDb) {
    let log = log_of(db, 5).await;
    db.allow_tampering().await;
    db.exec(r#"UPDATE audit_events SET payload = '{"text":"nothing happened"}' WHERE seq = 3"#)
        .await;
    assert_eq!(
        first_break(&log).await,
        ChainBreak {
            seq: 3,
            kind: BreakKind::Altered
        }
    );
    log.close().await;
}

pub async fn a_deleted_event_is_named(db: &TestDb) {
    let log = log_of(db, 5).await;
    db.allow_tampering().await;
    db.exec("DELETE FROM audit_events WHERE seq = 2").await;
    assert_eq!(
        first_break(&log).await,
        ChainBreak {
            seq: 2,
            kind: BreakKind::Missing
        }
    );
    log.close().await;
}

pub async fn an_inserted_event_is_named(db: &TestDb) {
    let log = log_of(db, 5).await;
    db.allow_tampering().await;
    db.insert_copy(1, 3).await;
    let b = first_break(&log).await;
    assert_eq!(b.seq, 3, "{b}");
    log.close().await;
}

pub async fn swapped_events_are_named(db: &TestDb) {
    let log = log_of(db, 5).await;
    db.allow_tampering().await;
    db.swap_events(2, 4).await;
    assert_eq!(
        first_break(&log).await,
        ChainBreak {
            seq: 2,
            kind: BreakKind::Relinked
        }
    );
    log.close().await;
}

pub async fn a_deleted_tail_is_named(db: &TestDb) {
    let log = log_of(db, 5).await;
    db.allow_tampering().await;
    db.exec("DELETE FROM audit_events WHERE seq >= 4").await;
    assert_eq!(
        first_break(&log).await,
        ChainBreak {
            seq: 4,
            kind: BreakKind::Missing
        }
    );
    log.close().await;
}

pub async fn rows_added_past_the_head_are_named(db: &TestDb) {
    let log = log_of(db, 3).await;
    // A forger who extends the chain correctly but cannot (or forgets to) move the head.
    let last = log.store().range_page(3, 3, 1).await.unwrap().remove(0);
    let mut forged = last.clone();
    forged.seq = 4;
    forged.id = Uuid::new_v4();
    forged.prev_hash = last.hash;
    forged.hash = link(&last.hash, forged.format, &forged.fields(), &mut Vec::new()).unwrap();
    db.exec(&format!(
        "INSERT INTO audit_events (seq, event_id, session_id, occurred_at, recorded_at, source, actor, kind, payload, body_salt, format, prev_hash, hash) \
         SELECT 4, {}, session_id, occurred_at, recorded_at, source, actor, kind, payload, body_salt, format, {}, {} FROM audit_events WHERE seq = 3",
        db.uuid_sql(&forged.id),
        db.bytes_sql(&forged.prev_hash.0),
        db.bytes_sql(&forged.hash.0),
    ))
    .await;
    let b = first_break(&log).await;
    assert_eq!(
        b,
        ChainBreak {
            seq: 4,
            kind: BreakKind::BeyondHead { head_seq: 3 }
        }
    );
    log.close().await;
}

pub async fn stretches_are_joined_when_verifying_in_parallel(db: &TestDb) {
    let log = log_of(db, 1_000).await;
    let progress = audit_db::verify::Progress::default();
    let intact = audit_db::verify::verify_in_stretches(log.store(), None, 4, &progress)
        .await
        .unwrap();
    assert_eq!((intact.events, intact.outcome), (1_000, Ok(())));
    assert_eq!((progress.checked(), progress.total()), (1_000, 1_000));

    // Re-link the first event of the second stretch (seq 251) so that it is
    // consistent on its own; only the join between stretches can catch it.
    let mut row = log.store().range_page(251, 251, 1).await.unwrap().remove(0);
    row.prev_hash = audit_db::Hash([9; 32]);
    row.hash = link(&row.prev_hash, row.format, &row.fields(), &mut Vec::new()).unwrap();
    db.allow_tampering().await;
    db.exec(&format!(
        "UPDATE audit_events SET prev_hash = {}, hash = {} WHERE seq = 251",
        db.bytes_sql(&row.prev_hash.0),
        db.bytes_sql(&row.hash.0)
    ))
    .await;
    for stretches in [1, 4] {
        assert_eq!(
            outcome_in_stretches(&log, stretches).await,
            Err(ChainBreak {
                seq: 251,
                kind: BreakKind::Relinked
            }),
            "with {stretches} stretches"
        );
    }
    log.close().await;
}

pub async fn an_anchor_from_before_catches_a_rewrite(db: &TestDb) {
    let log = log_of(db, 4).await;
    let published = verify(&log).await.head;
    let anchor = Anchor {
        seq: published.seq,
        hash: published.hash,
    };
    assert_eq!(log.verify(Some(anchor)).await.unwrap().outcome, Ok(()));
    let wrong = Anchor {
        seq: 2,
        hash: audit_db::Hash([1; 32]),
    };
    let b = log.verify(Some(wrong)).await.unwrap().outcome.unwrap_err();
    assert_eq!(b.seq, 2);
    assert!(matches!(b.kind, BreakKind::AnchorMismatch { .. }));
    let beyond = Anchor {
        seq: 10,
        hash: published.hash,
    };
    let b = log.verify(Some(beyond)).await.unwrap().outcome.unwrap_err();
    assert_eq!((b.seq, b.kind), (5, BreakKind::Missing));
    log.close().await;
}

pub async fn reopening_continues_the_chain(db: &TestDb) {
    let log = log_of(db, 3).await;
    log.close().await;
    let log = open(db).await;
    let r = log.append_one(note("after reopening")).await.unwrap();
    assert_eq!(r.seq, 4);
    assert_eq!(verify(&log).await.outcome, Ok(()));
    log.close().await;
}

pub async fn a_newer_schema_is_refused(db: &TestDb) {
    log_of(db, 1).await.close().await;
    db.stamp_newer_schema().await;
    let url: DbUrl = db.url.parse().unwrap();
    for mode in [OpenMode::Create, OpenMode::ReadOnly] {
        let err = AuditLog::open(&url, mode).await.unwrap_err();
        assert!(
            matches!(
                err,
                Error::SchemaTooNew {
                    found: 99990101000000,
                    ..
                }
            ),
            "{err}"
        );
    }
}

pub async fn bad_events_are_refused_and_nothing_is_stored(db: &TestDb) {
    let log = open(db).await;
    let good = note("fine");
    let mut bad_actor = note("x");
    bad_actor.actor = Actor::from_stored("admin:\u{0}evil".into());
    let mut empty_source = note("x");
    empty_source.source = Source::from_stored(String::new());
    let huge = note("x".repeat(audit_db::MAX_PAYLOAD + 1));
    for bad in [bad_actor, empty_source, huge] {
        let err = log
            .append(vec![good.clone(), bad.clone()])
            .await
            .unwrap_err();
        assert!(
            matches!(&err, Error::BadEvent { id, .. } if *id == bad.id),
            "{err}"
        );
    }
    assert_eq!(log.store().max_seq().await.unwrap(), 0);
    log.close().await;
}

pub async fn appends_after_close_fail_cleanly(db: &TestDb) {
    let log = log_of(db, 1).await;
    let other = log.clone();
    log.close().await;
    assert!(matches!(
        other.append_one(note("late")).await,
        Err(Error::WriterGone)
    ));
}

fn group(name: &str) -> audit_db::accounts::Group {
    audit_db::accounts::Group {
        name: name.to_owned(),
        permissions: vec![
            audit_db::Permission::DesktopView,
            audit_db::Permission::SendFiles,
        ],
        ip_allow: vec!["10.0.0.0/8".to_owned()],
        single_prompt: false,
        force_recording: true,
        store_chat: false,
    }
}

fn technician(email: &str, group: &str) -> audit_db::accounts::Technician {
    audit_db::accounts::Technician {
        email: email.to_owned(),
        group: group.to_owned(),
        role: audit_db::accounts::Role::Technician,
        password_hash: "$argon2id$stand-in".to_owned(),
        password_set_us: 1_000,
        must_change: true,
        disabled: false,
        failed_logins: 0,
        locked_until_us: None,
    }
}

pub async fn accounts_and_groups_round_trip(db: &TestDb) {
    let log = open(db).await;
    let accounts = audit_db::Accounts::new(log.store().clone());
    let g = group("tier1");
    accounts.add_group(&g).await.unwrap();
    assert!(matches!(
        accounts.add_group(&g).await,
        Err(Error::Exists { .. })
    ));
    assert_eq!(accounts.group("tier1").await.unwrap(), Some(g.clone()));

    // Emails are keys in lower case; a missing group is refused.
    accounts
        .add_technician(&technician("Ann@Example.com", "tier1"))
        .await
        .unwrap();
    assert!(matches!(
        accounts
            .add_technician(&technician("ann@example.com", "tier1"))
            .await,
        Err(Error::Exists { .. })
    ));
    assert!(matches!(
        accounts
            .add_technician(&technician("bob@example.com", "nope"))
            .await,
        Err(Error::NoSuch { what: "group", .. })
    ));
    let ann = accounts
        .technician("ANN@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann, technician("ann@example.com", "tier1"));

    accounts
        .set_password("ann@example.com", "$argon2id$new", false)
        .await
        .unwrap();
    assert!(accounts
        .reserve_login("ann@example.com", 1, 10)
        .await
        .unwrap());
    assert_eq!(
        accounts
            .login_failed("ann@example.com", 1, 42, 10)
            .await
            .unwrap(),
        Some(1)
    );
    accounts
        .set_disabled("ann@example.com", true)
        .await
        .unwrap();
    let ann = accounts
        .technician("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (ann.password_hash.as_str(), ann.must_change),
        ("$argon2id$new", false)
    );
    assert_eq!((ann.locked_until_us, ann.disabled), (Some(42), true));
    assert!(
        accounts.clear_failures("ann@example.com").await.unwrap(),
        "it was locked"
    );
    assert_eq!(
        accounts
            .technician("ann@example.com")
            .await
            .unwrap()
            .unwrap()
            .locked_until_us,
        None
    );

    let mut g2 = g.clone();
    g2.permissions.clear();
    g2.ip_allow.clear();
    accounts.update_group(&g2).await.unwrap();
    assert_eq!(accounts.groups().await.unwrap(), vec![g2]);
    assert!(matches!(
        accounts.set_disabled("nobody@example.com", true).await,
        Err(Error::NoSuch {
            what: "account",
            ..
        })
    ));
    assert_eq!(accounts.technicians().await.unwrap().len(), 1);
    log.close().await;
}

pub async fn concurrent_login_attempts_never_check_more_than_the_threshold(db: &TestDb) {
    let log = open(db).await;
    let accounts = audit_db::Accounts::new(log.store().clone());
    accounts.add_group(&group("g")).await.unwrap();
    accounts
        .add_technician(&technician("ann@example.com", "g"))
        .await
        .unwrap();
    let reserve = |email: &'static str, n: usize, now: i64| {
        let accounts = accounts.clone();
        async move {
            futures::future::join_all((0..n).map(|_| accounts.reserve_login(email, 5, now)))
                .await
                .into_iter()
                .map(Result::unwrap)
                .filter(|granted| *granted)
                .count()
        }
    };
    // 32 attempts at once, for an account and for an email without one:
    // exactly 5 may be checked, the rest are refused unchecked.
    assert_eq!(reserve("ann@example.com", 32, 100).await, 5);
    assert_eq!(reserve("nobody@example.com", 32, 100).await, 5);
    // Of ann's five, two are wrong, then one right: the failures are forgotten.
    for _ in 0..2 {
        let locked = accounts.login_failed("ann@example.com", 5, 500, 101);
        assert_eq!(locked.await.unwrap(), None);
    }
    assert!(!accounts
        .login_succeeded("ann@example.com", 101)
        .await
        .unwrap());
    let ann = accounts
        .technician("ann@example.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(ann.failed_logins, 0);
    // The two still under way and three more may run; no sixth.
    assert_eq!(reserve("ann@example.com", 4, 102).await, 3);
    // All five of the other email's are wrong: the fifth locks it, once.
    let locks = futures::future::join_all(
        (0..5).map(|_| accounts.login_failed("nobody@example.com", 5, 500, 102)),
    )
    .await;
    let locked: Vec<_> = locks.into_iter().filter_map(Result::unwrap).collect();
    assert_eq!(locked, vec![5], "one caller locks it");
    assert_eq!(reserve("nobody@example.com", 1, 103).await, 0, "locked");
    // A right password checked while the lock came does not get in.
    assert!(accounts
        .login_succeeded("nobody@example.com", 103)
        .await
        .unwrap());
    assert!(!accounts
        .lift_expired_lock("nobody@example.com", 499)
        .await
        .unwrap());
    assert!(accounts
        .lift_expired_lock("nobody@example.com", 500)
        .await
        .unwrap());
    assert_eq!(
        reserve("nobody@example.com", 1, 501).await,
        1,
        "a lifted lock starts from nothing"
    );
    // Checks a stopped gateway left under way are forgotten at the next start.
    accounts.forget_pending_logins().await.unwrap();
    assert_eq!(reserve("ann@example.com", 6, 502).await, 5);
    // Emails without an account are forgotten once idle; accounts never are.
    assert_eq!(
        accounts.prune_login_attempts(10_000, 10_000).await.unwrap(),
        1
    );
    assert!(accounts
        .technician("ann@example.com")
        .await
        .unwrap()
        .is_some());
    log.close().await;
}

pub async fn settings_are_stored_as_json(db: &TestDb) {
    let log = open(db).await;
    let accounts = audit_db::Accounts::new(log.store().clone());
    assert_eq!(accounts.setting::<Vec<u32>>("k").await.unwrap(), None);
    accounts.put_setting("k", &vec![1u32, 2]).await.unwrap();
    accounts.put_setting("k", &vec![3u32]).await.unwrap();
    assert_eq!(
        accounts.setting::<Vec<u32>>("k").await.unwrap(),
        Some(vec![3])
    );
    assert!(matches!(
        accounts.setting::<String>("k").await,
        Err(Error::BadSetting { .. })
    ));
    log.close().await;
}

/// The canonical encodings of every stored event, in seq order: the leaves.
async fn leaves(log: &AuditLog) -> Vec<Vec<u8>> {
    let events: Vec<_> = log.query(Filter::default()).try_collect().await.unwrap();
    events
        .iter()
        .map(|e| {
            let mut bytes = Vec::new();
            audit_db::encoding::encode(e.format, &e.fields(), &mut bytes).unwrap();
            bytes
        })
        .collect()
}

type Reference = ct_merkle::mem_backed_tree::MemoryBackedTree<sha2_011::Sha256, Vec<u8>>;

pub async fn the_merkle_tree_is_kept_with_every_append(db: &TestDb) {
    let log = open(db).await;
    // Batches of many sizes, and concurrent callers the writer batches.
    for (round, size) in [1usize, 7, 300, 2, 64, 129, 490].into_iter().enumerate() {
        log.append((0..size).map(|i| note(format!("r{round} n{i}"))).collect())
            .await
            .unwrap();
    }
    let calls: Vec<_> = (0..16)
        .map(|c| {
            let log = log.clone();
            tokio::spawn(async move { log.append(vec![note(format!("c{c}"))]).await.unwrap() })
        })
        .collect();
    for c in calls {
        c.await.unwrap();
    }
    // Another writer on the same database (another process, as far as
    // this one knows) in between: the tree's edge this one kept is stale.
    let other = open(db).await;
    for round in 0..3 {
        other
            .append(vec![note(format!("other {round}"))])
            .await
            .unwrap();
        log.append(vec![note(format!("this {round}"))])
            .await
            .unwrap();
    }
    other.close().await;
    let store = log.store().clone();
    let head = store.head().await.unwrap();
    assert_eq!(store.tree_size().await.unwrap() as i64, head.seq);

    let leaves = leaves(&log).await;
    let mut reference = Reference::new();
    let mut roots = vec![audit_db::Hash::default()];
    for (i, leaf) in leaves.iter().enumerate() {
        reference.push(leaf.clone());
        let n = i as u64 + 1;
        let root = store.root(n).await.unwrap();
        assert_eq!(&root.0[..], &reference.root().as_bytes()[..], "root of {n}");
        roots.push(root);
    }
    let n = leaves.len() as u64;
    let root = roots[n as usize];
    for seq in [1, 2, n as i64 / 2, n as i64] {
        let proof = store.inclusion_proof(n, seq).await.unwrap();
        let theirs = reference.prove_inclusion(seq as usize - 1);
        let ours: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
        assert_eq!(ours, theirs.as_bytes(), "inclusion of seq {seq}");
        let leaf = audit_db::merkle::leaf_hash(&leaves[seq as usize - 1]);
        audit_db::merkle::check_inclusion(&proof, n, root, seq as u64 - 1, leaf).unwrap();
    }
    for old in [1, 8, n / 2, n - 1] {
        let proof = store.consistency_proof(n, old).await.unwrap();
        let theirs = reference.prove_consistency((n - old) as usize);
        let ours: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
        assert_eq!(ours, theirs.as_bytes(), "consistency {old} → {n}");
        audit_db::merkle::check_consistency(&proof, n, root, old, roots[old as usize]).unwrap();
    }
    assert!(n >= 1_000, "every size from 1 to 1,000 was compared");

    // A few random large sizes: the log grown to 20,000-30,000 events.
    let grow = 19_000 + (Uuid::new_v4().as_u128() % 10_000) as usize;
    for chunk in (0..grow).collect::<Vec<_>>().chunks(5_000) {
        log.append(chunk.iter().map(|i| note(format!("big {i}"))).collect())
            .await
            .unwrap();
    }
    let all = self::leaves(&log).await;
    let big = all.len() as u64;
    let mut reference = Reference::new();
    let mut sizes = [
        big,
        16_384,
        16_385,
        1 + Uuid::new_v4().as_u128() as u64 % (big - 1),
    ];
    sizes.sort_unstable();
    let mut at = sizes.iter().peekable();
    let mut roots = std::collections::HashMap::new();
    for (i, leaf) in all.iter().enumerate() {
        reference.push(leaf.clone());
        let size = i as u64 + 1;
        while at.peek() == Some(&&size) {
            at.next();
            let root = store.root(size).await.unwrap();
            assert_eq!(
                &root.0[..],
                &reference.root().as_bytes()[..],
                "root of {size}"
            );
            roots.insert(size, root);
        }
    }
    for seq in [1, big / 3, big] {
        let proof = store.inclusion_proof(big, seq as i64).await.unwrap();
        let theirs = reference.prove_inclusion(seq as usize - 1);
        let ours: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
        assert_eq!(ours, theirs.as_bytes(), "inclusion of seq {seq} in {big}");
    }
    for &old in &sizes[..3] {
        let proof = store.consistency_proof(big, old).await.unwrap();
        let theirs = reference.prove_consistency((big - old) as usize);
        let ours: Vec<u8> = proof.iter().flat_map(|h| h.0).collect();
        assert_eq!(ours, theirs.as_bytes(), "consistency {old} → {big}");
        audit_db::merkle::check_consistency(&proof, big, roots[&big], old, roots[&old]).unwrap();
    }
    log.close().await;
}

pub async fn a_log_from_before_the_tree_gets_it_on_open(db: &TestDb) {
    let log = log_of(db, 250).await;
    let root = log.store().root(250).await.unwrap();
    log.close().await;
    // As a log written before the tree existed: no tree, or a tree cut
    // back to an earlier size.
    db.allow_tampering().await;
    for keep in [0, 100] {
        db.exec(&format!("DELETE FROM audit_tree WHERE seq > {keep}"))
            .await;
        let log = open(db).await;
        assert_eq!(log.store().tree_size().await.unwrap(), 250, "kept {keep}");
        assert_eq!(log.store().root(250).await.unwrap(), root, "kept {keep}");
        log.close().await;
    }
}

/// Whether the database's files hold `text`: for SQLite the file and its
/// WAL; for PostgreSQL the table's heap file once a checkpoint has written it.
pub async fn an_erased_body_leaves_the_proofs_valid_and_the_files(db: &TestDb) {
    let log = log_of(db, 20).await;
    let store = log.store().clone();
    // A short text, as a "yes" in chat would be, made unique to find it in the files.
    let secret = format!("yes-{}", Uuid::new_v4().simple());
    let target = log.append_one(note(secret.clone())).await.unwrap().seq;
    log.append((1..=10).map(|i| note(format!("after {i}"))).collect())
        .await
        .unwrap();
    let size = store.head().await.unwrap().seq as u64;
    let root = store.root(size).await.unwrap();
    let proof = store.inclusion_proof(size, target).await.unwrap();
    let leaf = audit_db::merkle::leaf_hash(&leaves(&log).await[target as usize - 1]);
    assert!(
        db.files_hold(secret.as_bytes()).await,
        "the text is in the files before"
    );

    let by = Actor::admin("dpo@example.com");
    let (record, erased) = log
        .erase(
            &[target],
            by.clone(),
            Source::cli("test"),
            "privacy request 42",
        )
        .await
        .unwrap();
    assert_eq!(erased, 1);
    let gone = db.text_gone(secret.as_bytes()).await;
    assert!(gone, "the text left the files");

    // Reads say erased; the record names what, by whom and why.
    let row = store.range_page(target, target, 1).await.unwrap().remove(0);
    assert!(row.is_erased());
    assert_eq!((row.payload(), row.decode().unwrap()), (None, None));
    let json = row.to_json();
    assert_eq!(
        (&json["erased"], &json["payload"]),
        (&true.into(), &serde_json::Value::Null)
    );
    let recorded = store
        .range_page(record.seq, record.seq, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(recorded.actor, by.as_str());
    assert_eq!(
        recorded.decode().unwrap(),
        Some(EventKind::BodiesErased(audit_db::event::BodiesErased {
            ranges: vec![[target, target]],
            reason: "privacy request 42".into(),
        }))
    );

    // The leaf, the old root and the proof are what they were.
    assert_eq!(row.leaf_hash().unwrap(), leaf);
    assert_eq!(store.root(size).await.unwrap(), root);
    assert_eq!(store.inclusion_proof(size, target).await.unwrap(), proof);
    audit_db::merkle::check_inclusion(&proof, size, root, target as u64 - 1, leaf).unwrap();
    let now = store.head().await.unwrap().seq as u64;
    let consistency = store.consistency_proof(now, size).await.unwrap();
    audit_db::merkle::check_consistency(
        &consistency,
        now,
        store.root(now).await.unwrap(),
        size,
        root,
    )
    .unwrap();
    let report = verify(&log).await;
    assert_eq!((report.outcome, report.erased), (Ok(()), 1));

    // Erasing again records the request and erases nothing more; a seq
    // past the log is refused before anything is recorded.
    let (_, again) = log
        .erase(&[target], by.clone(), Source::cli("test"), "again")
        .await
        .unwrap();
    assert_eq!(again, 0);
    let last = store.head().await.unwrap().seq;
    assert!(matches!(
        log.erase(&[last + 1], by, Source::cli("test"), "x").await,
        Err(Error::NoSuchEvent { seq, last: l }) if seq == last + 1 && l == last
    ));
    assert_eq!(store.head().await.unwrap().seq, last);
    log.close().await;
}

pub async fn an_altered_tree_is_named(db: &TestDb) {
    let log = log_of(db, 300).await;
    assert_eq!(verify(&log).await.outcome, Ok(()));
    db.allow_tampering().await;
    let expect = |report: VerifyReport, seq, kind| {
        assert_eq!(report.outcome, Err(ChainBreak { seq, kind }));
    };
    // Each tampering lies before the last, so each is the first break.
    let zeros = db.bytes_sql(&[0; 32]);
    db.exec(&format!(
        "INSERT INTO audit_tree (seq, hashes) VALUES (301, {zeros})"
    ))
    .await;
    expect(
        verify(&log).await,
        301,
        BreakKind::TreeBeyondLog { last_seq: 300 },
    );
    db.exec("DELETE FROM audit_tree WHERE seq > 200").await;
    expect(verify(&log).await, 201, BreakKind::TreeMismatch);
    db.exec("UPDATE audit_tree SET hashes = (SELECT hashes FROM audit_tree WHERE seq = 79) WHERE seq = 77")
        .await;
    for stretches in [1, 4] {
        assert_eq!(
            outcome_in_stretches(&log, stretches).await,
            Err(ChainBreak {
                seq: 77,
                kind: BreakKind::TreeMismatch
            }),
            "with {stretches} stretches"
        );
    }
    log.close().await;
}

fn bundle_row(
    name: &str,
    first_seq: i64,
    last_seq: i64,
    events: i64,
) -> audit_db::archive::BundleRow {
    audit_db::archive::BundleRow {
        name: name.into(),
        sha256: "00".repeat(32),
        events,
        first_seq,
        last_seq,
        oldest_at_us: 0,
        run_id: 1,
        purged: false,
    }
}

/// Events leave only inside a stretch recorded as archived; the log still
/// verifies (every seq in 1 and 3 stretches, the tree still checked), and a
/// row missing outside such a stretch is still named.
pub async fn archived_stretches_leave_the_log_verifiable(db: &TestDb) {
    let log = log_of(db, 120).await;
    let root = log.store().root(120).await.unwrap();
    let archive = audit_db::archive::Archive::new(log.store().clone());
    // The triggers refuse a deletion outside an archived stretch.
    let refused = db.try_exec("DELETE FROM audit_events WHERE seq = 7").await;
    assert!(
        refused.is_err(),
        "a deletion outside an archived stretch was allowed"
    );

    let runs = [(1, 10), (40, 41), (90, 119)];
    let bundle = bundle_row("b1", 1, 119, 42);
    let departure = audit_db::archive::Departure {
        bundle: Some(&bundle),
        runs: &runs,
    };
    archive.commit_archive(&[departure]).await.unwrap();
    // Again: nothing changes.
    archive.commit_archive(&[departure]).await.unwrap();
    let left: Vec<i64> = log
        .store()
        .range_page(1, 200, 200)
        .await
        .unwrap()
        .iter()
        .map(|e| e.seq)
        .collect();
    assert_eq!(left.len(), 120 - 42);
    assert!(!left.contains(&1) && !left.contains(&41) && left.contains(&120) && left.contains(&11));
    let report = verify(&log).await;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!((report.events, report.archived), (120 - 42, 42));
    for stretches in [2, 3, 7] {
        assert_eq!(
            outcome_in_stretches(&log, stretches).await,
            Ok(()),
            "{stretches} stretches"
        );
    }
    assert_eq!(log.store().root(120).await.unwrap(), root);
    assert_eq!(archive.ranges().await.unwrap().len(), 3);

    // A purge keeps the stretches (now without a bundle), and a replacement.
    archive
        .commit_purge(
            "b1",
            &[(1, 10), (90, 119)],
            Some((&bundle_row("b2", 40, 41, 2), &[(40, 41)])),
        )
        .await
        .unwrap();
    let ranges = archive.ranges().await.unwrap();
    assert_eq!(
        ranges
            .iter()
            .map(|r| (r.first_seq, r.bundle.clone()))
            .collect::<Vec<_>>(),
        vec![(1, None), (40, Some("b2".into())), (90, None)]
    );
    let bundles = archive.bundles().await.unwrap();
    assert_eq!(
        bundles
            .iter()
            .map(|b| (b.name.as_str(), b.purged))
            .collect::<Vec<_>>(),
        [("b1", true), ("b2", false)]
    );
    assert_eq!(verify(&log).await.outcome, Ok(()));

    // A tree leaf of an archived seq altered is named at that seq.
    db.allow_tampering().await;
    db.exec("UPDATE audit_tree SET hashes = hashes || hashes WHERE seq = 5")
        .await;
    db.exec("DELETE FROM audit_events WHERE seq = 60").await;
    assert_eq!(
        first_break(&log).await,
        ChainBreak {
            seq: 5,
            kind: BreakKind::TreeMismatch
        }
    );
    db.exec("DELETE FROM audit_archived WHERE first_seq = 1")
        .await;
    assert_eq!(
        first_break(&log).await,
        ChainBreak {
            seq: 1,
            kind: BreakKind::Missing
        }
    );
    log.close().await;
}

/// An archive of most of the live log (on SQLite, the bulk path: what
/// stays moves to a new table, the old one is dropped, a VACUUM follows)
/// leaves the same indexes and guard, a log that verifies and reads by
/// index, and (SQLite) none of the departed text in the files.
pub async fn a_bulk_archive_keeps_the_indexes_and_the_guard(db: &TestDb) {
    let log = log_of(db, 12_000).await;
    let indexes = match db.backend {
        testkit::Backend::Sqlite => {
            "SELECT COUNT(*) FROM sqlite_master WHERE tbl_name = 'audit_events' \
             AND type IN ('index', 'trigger')"
        }
        testkit::Backend::Postgres => {
            "SELECT (SELECT COUNT(*) FROM pg_indexes WHERE tablename = 'audit_events' \
             AND schemaname = current_schema()) + (SELECT COUNT(*) FROM pg_trigger t \
             JOIN pg_class c ON c.oid = t.tgrelid WHERE c.relname = 'audit_events' \
             AND c.relnamespace = current_schema()::regnamespace)"
        }
    };
    let before = db.query_i64(indexes).await;
    let kind = audit_db::Filter {
        kind: Some("admin.note".into()),
        ..audit_db::Filter::default()
    };
    let bundle = bundle_row("bulk", 1, 11_000, 11_000);
    audit_db::archive::Archive::new(log.store().clone())
        .commit_archive(&[audit_db::archive::Departure {
            bundle: Some(&bundle),
            runs: &[(1, 11_000)],
        }])
        .await
        .unwrap();
    assert_eq!(db.query_i64(indexes).await, before);
    if db.backend == testkit::Backend::Sqlite {
        assert!(
            !db.files_hold(b"note 10999").await,
            "departed text in the files"
        );
        assert!(
            db.files_hold(b"note 11999").await,
            "staying text not in the files"
        );
        assert_eq!(db.query_i64("PRAGMA freelist_count").await, 0);
        assert_eq!(db.query_i64("SELECT COUNT(*) FROM settings").await, 0);
    }
    assert!(
        db.try_exec("DELETE FROM audit_events WHERE seq = 11500")
            .await
            .is_err(),
        "the delete guard is gone"
    );
    let by_kind = log.store().page(&kind, 0, 5_000).await.unwrap();
    assert_eq!(by_kind.len(), 1_000);
    assert_eq!(by_kind[0].seq, 11_001);
    let report = verify(&log).await;
    assert_eq!(report.outcome, Ok(()));
    assert_eq!((report.events, report.archived), (1_000, 11_000));
    log.close().await;
}

/// A SQLite bulk archive stopped after its commit, before its VACUUM
/// (its mark still set, free pages holding what left): the next opening
/// for writing finishes the VACUUM and clears the mark.
pub async fn an_unfinished_vacuum_is_finished_on_opening(db: &TestDb) {
    let log = log_of(db, 3_000).await;
    log.close().await;
    // What a stopped bulk archive leaves: rows gone without secure delete
    // (text in free pages) and the mark committed with them.
    db.exec(
        "PRAGMA secure_delete = OFF; DROP TRIGGER audit_events_no_delete; \
         DELETE FROM audit_events WHERE seq <= 2500; \
         INSERT INTO settings (key, value) VALUES ('sqlite.vacuum_pending', 'true'); \
         PRAGMA wal_checkpoint(TRUNCATE)",
    )
    .await;
    assert!(
        db.files_hold(b"note 1000").await,
        "the stopped state was not made"
    );
    assert!(db.query_i64("PRAGMA freelist_count").await > 0);
    let log = open(db).await;
    log.close().await;
    assert_eq!(db.query_i64("SELECT COUNT(*) FROM settings").await, 0);
    assert_eq!(db.query_i64("PRAGMA freelist_count").await, 0);
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)").await;
    assert!(
        !db.files_hold(b"note 1000").await,
        "freed text still in the files"
    );
}

/// The sessions index: built from the log, found by technician, group,
/// address, time and chat words, paged newest first; an erasure empties it
/// (and the erased words leave the files), and catching up again rebuilds
/// it without them.
pub async fn the_sessions_index_finds_sessions_and_forgets_erased_chat(db: &TestDb) {
    use audit_db::event::{JoinMethod, SessionCreated, SessionJoined};
    use audit_db::session_index::{SessionIndex, SessionQuery};
    let log = open(db).await;
    let secret = format!("secret{}", Uuid::new_v4().simple());
    let sessions: Vec<Uuid> = (0..3).map(|_| Uuid::new_v4()).collect();
    let mut events = Vec::new();
    for (i, s) in sessions.iter().enumerate() {
        let tech = if i == 2 {
            "bob@example.com"
        } else {
            "ann@example.com"
        };
        events.push(
            NewEvent::now(
                Actor::technician(tech),
                Source::gateway(),
                EventKind::SessionCreated(SessionCreated {
                    technician: tech.into(),
                    pin_issued: true,
                    gateway: None,
                    group: Some(if i == 0 { "desk" } else { "field" }.into()),
                }),
            )
            .in_session(*s),
        );
        events.push(
            NewEvent::now(
                Actor::end_user(),
                Source::gateway(),
                EventKind::SessionJoined(SessionJoined {
                    via: JoinMethod::Pin,
                    ip: Some(format!("192.0.2.{}", i + 1).parse().unwrap()),
                }),
            )
            .in_session(*s),
        );
        let text = match i {
            0 => format!("the printer jams {secret}"),
            _ => format!("printer number {i} is fine"),
        };
        events.push(
            NewEvent::now(
                Actor::end_user(),
                Source::applet("192.0.2.1"),
                EventKind::ChatMessage(ChatMessage {
                    from: Party::EndUser,
                    chars: text.chars().count() as u64,
                    text: Some(text),
                }),
            )
            .in_session(*s),
        );
    }
    log.append(events).await.unwrap();
    let index = SessionIndex::new(log.store().clone());
    assert_eq!(index.catch_up().await.unwrap(), 9);
    assert_eq!(index.catch_up().await.unwrap(), 0, "nothing new");
    let found = |q: SessionQuery| {
        let index = index.clone();
        async move {
            index
                .search(&SessionQuery { limit: 50, ..q })
                .await
                .unwrap()
                .into_iter()
                .map(|s| s.session)
                .collect::<Vec<_>>()
        }
    };
    // Newest first: they were appended in one batch, so by id.
    assert_eq!(
        found(SessionQuery::default()).await,
        [sessions[2], sessions[1], sessions[0]]
    );
    let ann = SessionQuery {
        technician: Some("ann@example.com".into()),
        ..SessionQuery::default()
    };
    assert_eq!(found(ann.clone()).await, [sessions[1], sessions[0]]);
    let words = |w: &str| SessionQuery {
        words: Some(w.into()),
        ..SessionQuery::default()
    };
    assert_eq!(found(words("printer")).await.len(), 3);
    assert_eq!(found(words("printer jams")).await, [sessions[0]]);
    assert_eq!(found(words(&secret)).await, [sessions[0]]);
    assert_eq!(
        found(words("\"OR* (")).await,
        Vec::<Uuid>::new(),
        "typed syntax is only words"
    );
    let address = SessionQuery {
        address: Some("192.0.2.2".into()),
        ..SessionQuery::default()
    };
    assert_eq!(found(address).await, [sessions[1]]);
    let group = SessionQuery {
        group: Some("field".into()),
        technician: Some("ann@example.com".into()),
        ..SessionQuery::default()
    };
    assert_eq!(found(group).await, [sessions[1]]);
    // The next page starts after the last one shown.
    let first = index
        .search(&SessionQuery {
            limit: 2,
            ..SessionQuery::default()
        })
        .await
        .unwrap();
    let last = first.last().unwrap();
    let next = SessionQuery {
        before: Some((last.created_at_us, last.id)),
        ..SessionQuery::default()
    };
    assert_eq!(found(next).await, [sessions[0]]);
    let row = index.get(sessions[0]).await.unwrap().unwrap();
    assert_eq!(row.technician.as_deref(), Some("ann@example.com"));
    assert_eq!(row.address.as_deref(), Some("192.0.2.1"));
    assert_eq!((row.events, row.chat_lines), (3, 1));

    // Erasing the chat line empties the index in the same transaction.
    let chat_seq = 3;
    log.erase(
        &[chat_seq],
        Actor::admin("dpo@example.com"),
        Source::cli("test"),
        "request",
    )
    .await
    .unwrap();
    assert_eq!(index.seq().await.unwrap(), 0);
    assert!(
        db.text_gone(secret.as_bytes()).await,
        "the erased words left the files"
    );
    assert_eq!(index.catch_up().await.unwrap(), 10);
    assert_eq!(found(words(&secret)).await, Vec::<Uuid>::new());
    assert_eq!(found(words("printer")).await, [sessions[2], sessions[1]]);
    log.close().await;
}
