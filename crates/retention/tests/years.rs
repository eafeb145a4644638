//! Retention over simulated years, on both stores: the clock is injected
//! (`as_of`), never waited for. What each run should leave online, in the
//! archive and purged is worked out here from the fixtures alone, by date
//! arithmetic of this file's own, and compared with what the database and
//! the bundles hold.
#![allow(clippy::unwrap_used)]

mod cases {
    use std::collections::{BTreeMap, BTreeSet};

    use audit_db::archive::{Archive, HoldScope};
    use audit_db::checkpoint::{self, LogKey};
    use audit_db::{Accounts, Actor, AuditLog, DbUrl, EventKind, NewEvent, OpenMode, Source};
    use retention::bundle;
    use retention::policy::{ClassPolicy, Period, Periods, Policy, RecordClass};
    use retention::run::{Options, Runner, Summary};
    use testkit::TestDb;
    use time::{Date, Month, OffsetDateTime, Time};
    use uuid::Uuid;

    /// Where each fixture event should be.
    #[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
    enum Place {
        Online,
        Archived,
        Purged,
    }

    /// A fixture event and what its periods count from, as this test knows it.
    #[derive(Clone, Debug)]
    struct Fixture {
        seq: i64,
        session: Option<Uuid>,
        /// (online, archive) in years.
        years: (i32, i32),
        from: OffsetDateTime,
    }

    fn at(y: i32, m: u8, d: u8) -> OffsetDateTime {
        Date::from_calendar_date(y, Month::try_from(m).unwrap(), d)
            .unwrap()
            .with_time(Time::from_hms(12, 0, 0).unwrap())
            .assume_utc()
    }

    fn us(t: OffsetDateTime) -> i64 {
        audit_db::time_us::from_datetime(t)
    }

    fn plus_years(t: OffsetDateTime, y: i32) -> OffsetDateTime {
        // The fixtures avoid 29 February, so this is plain.
        t.replace_year(t.year() + y).unwrap()
    }

    fn event(
        kind: &str,
        payload: serde_json::Value,
        actor: Actor,
        when: OffsetDateTime,
        session: Option<Uuid>,
    ) -> NewEvent {
        let mut e = NewEvent::now(
            actor,
            Source::gateway(),
            EventKind::from_stored(kind, &payload.to_string())
                .unwrap()
                .unwrap(),
        );
        e.occurred_at_us = us(when);
        e.session = session;
        e
    }

    struct World {
        log: AuditLog,
        key: LogKey,
        dir: tempfile::TempDir,
        fixtures: Vec<Fixture>,
        /// Each session's recording file and day (policy: 2 + 2 years).
        recordings: BTreeMap<Uuid, (std::path::PathBuf, OffsetDateTime)>,
        _recording_dir: tempfile::TempDir,
        /// Each session's technician and day.
        sessions: BTreeMap<Uuid, (&'static str, OffsetDateTime)>,
        chat_of: BTreeMap<Uuid, String>,
        /// The seqs of the webhook delivery events.
        webhook_seqs: BTreeSet<i64>,
    }

    /// Sessions every 9 days from 2020 through 2023, alternately of ann
    /// (group eu: the default, 2 + 2 years) and bob (group us: session
    /// events 1 + 1 years); each with a creation, a chat and an end a few
    /// hours later; a login (security events: 2 + 2) before each and a
    /// webhook delivery (2 + 2) after every third.
    async fn world(db: &TestDb) -> World {
        let url: DbUrl = db.url.parse().unwrap();
        let log = AuditLog::open(&url, OpenMode::Create).await.unwrap();
        let (key, _) = LogKey::generate("vigil/test/retention").unwrap();
        let mut policy = Policy::default();
        let mut us_policy = ClassPolicy::default();
        us_policy.0.insert(
            RecordClass::SessionEvents,
            Periods {
                online: Period::years(1),
                archive: Period::years(1),
            },
        );
        policy.groups.insert("us".into(), us_policy);
        policy
            .store(&Accounts::new(log.store().clone()))
            .await
            .unwrap();

        let mut events = Vec::new();
        let mut plan = Vec::new();
        let mut sessions = BTreeMap::new();
        let mut chat_of = BTreeMap::new();
        let mut recordings = BTreeMap::new();
        let mut webhooks = Vec::new();
        let recording_dir = tempfile::tempdir().unwrap();
        let mut day = at(2020, 1, 3);
        let mut n = 0;
        while day < at(2024, 1, 1) {
            if day.month() == Month::February && day.day() == 29 {
                day += time::Duration::days(1);
            }
            let (tech, group, years) = if n % 2 == 0 {
                ("ann@example.com", "eu", (2, 2))
            } else {
                ("bob@example.com", "us", (1, 1))
            };
            let session = Uuid::new_v4();
            sessions.insert(session, (tech, day));
            let text = format!("secret-chat-{n:04}-{}", session.simple());
            chat_of.insert(session, text.clone());
            let t = Actor::technician(tech);
            events.push(event(
                "login.succeeded",
                serde_json::json!({"email": tech, "ip": "10.0.0.1"}),
                t.clone(),
                day,
                None,
            ));
            plan.push((None, (2, 2), day));
            events.push(event(
                "session.created",
                serde_json::json!({"technician": tech, "pin_issued": true, "group": group}),
                t.clone(),
                day,
                Some(session),
            ));
            plan.push((Some(session), years, day));
            events.push(event(
                "chat.message",
                serde_json::json!({"from": "technician", "text": text, "chars": text.len()}),
                t.clone(),
                day + time::Duration::hours(1),
                Some(session),
            ));
            plan.push((Some(session), years, day));
            let file = recording_dir.path().join(format!("session-{n:04}.vrec"));
            let content = format!("a recording of session {session}");
            std::fs::write(&file, &content).unwrap();
            let sha = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(content.as_bytes()));
            recordings.insert(session, (file.clone(), day));
            events.push(event("recording.stopped", serde_json::json!({"recording": "", "path": file, "size": content.len(), "sha256": sha}), t.clone(), day + time::Duration::minutes(90), Some(session)));
            plan.push((Some(session), years, day));
            events.push(event("session.ended", serde_json::json!({"reason": "console_left", "duration_ms": 1000, "bytes_to_applet": 1, "bytes_to_console": 1}), t.clone(), day + time::Duration::hours(2), Some(session)));
            plan.push((Some(session), years, day));
            if n % 3 == 0 {
                let when = day + time::Duration::hours(3);
                events.push(event("webhook.delivery", serde_json::json!({"endpoint": "wh_1", "message": Uuid::new_v4(), "attempt": 1, "status": 200, "delivered": true, "error": null}), Actor::system("webhook"), when, None));
                plan.push((None, (2, 2), when));
                webhooks.push(events.len() - 1);
            }
            n += 1;
            day += time::Duration::days(9);
        }
        let receipts = log.append(events).await.unwrap();
        let webhook_seqs = webhooks.iter().map(|&i| receipts[i].seq).collect();
        let fixtures = receipts
            .iter()
            .zip(plan)
            .map(|(r, (session, years, from))| Fixture {
                seq: r.seq,
                session,
                years,
                from,
            })
            .collect();
        World {
            log,
            key,
            dir: tempfile::tempdir().unwrap(),
            fixtures,
            sessions,
            chat_of,
            recordings,
            _recording_dir: recording_dir,
            webhook_seqs,
        }
    }

    impl World {
        fn runner(&self) -> Runner<'_> {
            Runner {
                log: &self.log,
                key: &self.key,
                actor: Actor::admin("test"),
                source: Source::cli("test"),
            }
        }

        async fn run(&self, as_of: OffsetDateTime) -> Summary {
            let options = Options {
                as_of_us: us(as_of),
                dry_run: false,
                archive_dir: self.dir.path().to_owned(),
                bundle_events: 100,
                record_idle: true,
            };
            self.runner().run(&options, &()).await.unwrap()
        }

        /// Where each fixture should be at `as_of`, held sessions kept.
        fn expected(&self, as_of: OffsetDateTime, held: &BTreeSet<Uuid>) -> BTreeMap<i64, Place> {
            self.fixtures
                .iter()
                .map(|f| {
                    let place = if plus_years(f.from, f.years.0) > as_of {
                        Place::Online
                    } else if plus_years(f.from, f.years.0 + f.years.1) > as_of
                        || f.session.is_some_and(|s| held.contains(&s))
                    {
                        Place::Archived
                    } else {
                        Place::Purged
                    };
                    (f.seq, place)
                })
                .collect()
        }

        /// Where each fixture is: in the live table (by SQL), in a bundle
        /// the database lists as archived (read from its file), or neither.
        async fn actual(&self, db: &TestDb) -> BTreeMap<i64, Place> {
            let online: BTreeSet<i64> = db
                .query_i64s("SELECT seq FROM audit_events")
                .await
                .into_iter()
                .collect();
            let mut archived = BTreeSet::new();
            for b in Archive::new(self.log.store().clone())
                .bundles()
                .await
                .unwrap()
            {
                if b.purged {
                    continue;
                }
                let (_, path) = bundle::paths(self.dir.path(), &b.name);
                let verified = bundle::verify(&path, Some(self.key.public())).unwrap();
                assert_eq!(verified.manifest.events as i64, b.events);
                let (_, events) = bundle::read_events(&path).unwrap();
                for (e, _) in events {
                    assert!(archived.insert(e.seq), "seq {} is in two bundles", e.seq);
                }
            }
            self.fixtures
                .iter()
                .map(|f| {
                    let on = online.contains(&f.seq);
                    let arch = archived.contains(&f.seq);
                    assert!(!(on && arch), "seq {} is both online and archived", f.seq);
                    (
                        f.seq,
                        if on {
                            Place::Online
                        } else if arch {
                            Place::Archived
                        } else {
                            Place::Purged
                        },
                    )
                })
                .collect()
        }
    }

    impl World {
        /// Where each recording should be at `as_of` (2 + 2 years from its
        /// session's day), held ones kept, erased ones gone.
        fn expected_recordings(
            &self,
            as_of: OffsetDateTime,
            held: &BTreeSet<Uuid>,
            erased: &BTreeSet<Uuid>,
        ) -> BTreeMap<Uuid, Place> {
            self.recordings
                .iter()
                .map(|(s, (_, day))| {
                    let place = if erased.contains(s) {
                        Place::Purged
                    } else if plus_years(*day, 2) > as_of {
                        Place::Online
                    } else if plus_years(*day, 4) > as_of || held.contains(s) {
                        Place::Archived
                    } else {
                        Place::Purged
                    };
                    (*s, place)
                })
                .collect()
        }

        /// Where each recording is: where it was written, in the archive, or gone.
        fn actual_recordings(&self) -> BTreeMap<Uuid, Place> {
            self.recordings
                .iter()
                .map(|(s, (path, _))| {
                    let archived = self
                        .dir
                        .path()
                        .join("recordings")
                        .join(s.to_string())
                        .join(path.file_name().unwrap());
                    let place = match (path.exists(), archived.exists()) {
                        (true, false) => Place::Online,
                        (false, true) => Place::Archived,
                        (false, false) => Place::Purged,
                        (true, true) => panic!("recording of {s} is in both places"),
                    };
                    (*s, place)
                })
                .collect()
        }
    }

    fn counts(places: &BTreeMap<i64, Place>) -> BTreeMap<Place, usize> {
        let mut c = BTreeMap::new();
        for p in places.values() {
            *c.entry(*p).or_default() += 1;
        }
        c
    }

    /// Whether `text` is in the database's files or the archive's; with
    /// `settled`, after PostgreSQL has been given the chance to rewrite its
    /// table (see `TestDb::text_gone`).
    async fn files_hold(db: &TestDb, dir: &std::path::Path, text: &str, settled: bool) -> bool {
        let mut found = if settled {
            !db.text_gone(text.as_bytes()).await
        } else {
            db.files_hold(text.as_bytes()).await
        };
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if !path.is_file() {
                continue;
            }
            let bytes = std::fs::read(&path).unwrap();
            let plain = if path.extension().is_some_and(|e| e == "vbundle") {
                zstd::decode_all(&bytes[..]).unwrap()
            } else {
                bytes.clone()
            };
            found |= [bytes, plain]
                .iter()
                .any(|b| b.windows(text.len()).any(|w| w == text.as_bytes()));
        }
        found
    }

    /// Four years of sessions, a run at the start of each year after:
    /// exactly the right events online, archived and purged each time; the
    /// log verifies and extends every checkpoint signed before; a held
    /// session outlives its purge date and goes after its release; an
    /// erased chat leaves the database and the archive while the proofs
    /// stay valid.
    pub async fn four_years_of_runs_keep_exactly_what_policy_says(db: &TestDb) {
        let w = world(db).await;
        let archive = Archive::new(w.log.store().clone());
        let mut checkpoints = Vec::new();
        let mut held = BTreeSet::new();
        let mut erased = BTreeSet::new();
        // An ann session of early 2020 (purge date early 2024) is held.
        let pick = |tech: &str, from: OffsetDateTime| {
            *w.sessions
                .iter()
                .filter(|(_, (t, day))| *t == tech && *day >= from)
                .min_by_key(|(_, (_, day))| *day)
                .unwrap()
                .0
        };
        let held_session = pick("ann@example.com", at(2020, 1, 1));
        let hold = archive
            .add_hold(
                &HoldScope::Session(held_session),
                "litigation 2023-17",
                "admin:test",
                0,
            )
            .await
            .unwrap();
        held.insert(held_session);
        // A bob session of mid 2022: archived by the 2024 run, to be erased then.
        let erased_session = pick("bob@example.com", at(2022, 6, 1));

        for year in 2024..=2028 {
            let as_of = at(year, 1, 1);
            if year == 2027 {
                // Released: it goes at the next run after its purge date.
                assert!(archive
                    .release_hold(hold, "admin:test", "case closed", 1)
                    .await
                    .unwrap());
                held.clear();
            }
            checkpoints.push(checkpoint::of_log(w.log.store(), &w.key).await.unwrap().0);
            let summary = w.run(as_of).await;
            let expected = w.expected(as_of, &held);
            let actual = w.actual(db).await;
            assert_eq!(
                counts(&actual),
                counts(&expected),
                "as of {year}: {summary:?}"
            );
            assert_eq!(actual, expected, "as of {year}");
            assert_eq!(
                w.actual_recordings(),
                w.expected_recordings(as_of, &held, &erased),
                "recordings as of {year}"
            );
            let report = w.log.verify(None).await.unwrap();
            assert_eq!(report.outcome, Ok(()), "verify after the {year} run");
            for c in &checkpoints {
                checkpoint::extended_by(w.log.store(), c)
                    .await
                    .unwrap()
                    .unwrap();
            }
            // Runs are idempotent: the same clock again changes nothing.
            let again = w.run(as_of).await;
            assert_eq!(
                (again.archived.len(), again.purged.len()),
                (0, 0),
                "{again:?}"
            );
            assert_eq!(w.actual(db).await, expected);

            if year == 2024 {
                // The held session is archived (it may be) but not purged later.
                assert_eq!(
                    expected[&w
                        .fixtures
                        .iter()
                        .find(|f| f.session == Some(held_session))
                        .unwrap()
                        .seq],
                    Place::Archived
                );
                // Erasure of an archived session's chat.
                let text = w.chat_of[&erased_session].clone();
                assert!(
                    files_hold(db, w.dir.path(), &text, false).await,
                    "positive control"
                );
                let done = retention::erase::erase(
                    &w.log,
                    &w.key,
                    w.dir.path(),
                    Actor::admin("test"),
                    Source::cli("test"),
                    &retention::erase::Request {
                        session: erased_session,
                        chat: true,
                        files: true,
                        recording: true,
                        reason: "GDPR request 42".into(),
                    },
                )
                .await
                .unwrap();
                assert_eq!(done.bodies, 1, "{done:?}");
                assert_eq!(done.recordings_deleted.len(), 1, "{done:?}");
                erased.insert(erased_session);
                assert_eq!(w.actual_recordings()[&erased_session], Place::Purged);
                assert!(
                    !files_hold(db, w.dir.path(), &text, true).await,
                    "the chat text is still in a file"
                );
                assert_eq!(w.log.verify(None).await.unwrap().outcome, Ok(()));
                // The held session cannot be erased.
                let refused = retention::erase::erase(
                    &w.log,
                    &w.key,
                    w.dir.path(),
                    Actor::admin("test"),
                    Source::cli("test"),
                    &retention::erase::Request {
                        session: held_session,
                        chat: true,
                        files: false,
                        recording: false,
                        reason: "x".into(),
                    },
                )
                .await
                .unwrap_err();
                assert!(refused.to_string().contains("legal hold"), "{refused}");
                assert!(files_hold(db, w.dir.path(), &w.chat_of[&held_session], false).await);
            }
        }
        // Everything from 2020-2023 is past 4 years by 2028, the released session too.
        let last = w.actual(db).await;
        assert!(
            last.values().all(|p| *p == Place::Purged),
            "{:?}",
            counts(&last)
        );
        w.log.close().await;
    }

    /// Bad input changes nothing: a clock before the last run, an archive
    /// directory missing or of another log; a bundle with a flipped byte is
    /// named.
    pub async fn bad_input_is_refused_and_altered_bundles_are_named(db: &TestDb) {
        let w = world(db).await;
        let first = w.run(at(2024, 1, 1)).await;
        assert!(!first.bundles_written.is_empty());
        let options = |dir: &std::path::Path, as_of| Options {
            as_of_us: us(as_of),
            dry_run: false,
            archive_dir: dir.to_owned(),
            bundle_events: 100,
            record_idle: true,
        };
        let before = w.actual(db).await;
        let e = w
            .runner()
            .run(&options(w.dir.path(), at(2023, 6, 1)), &())
            .await
            .unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("before the last run"),
            "{e}"
        );
        let e = w
            .runner()
            .run(&options(&w.dir.path().join("missing"), at(2025, 1, 1)), &())
            .await
            .unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("cannot be used"),
            "{e}"
        );
        let (other, _) = LogKey::generate("vigil/test/other").unwrap();
        let e = Runner {
            key: &other,
            ..w.runner()
        }
        .run(&options(w.dir.path(), at(2025, 1, 1)), &())
        .await
        .unwrap_err();
        assert!(
            e.is_bad_input() && e.to_string().contains("another")
                || e.to_string().contains("not of this log"),
            "{e}"
        );
        assert_eq!(w.actual(db).await, before);

        // A flipped byte in a data file, then in a manifest.
        let name = &first.bundles_written[0];
        let (data, manifest) = bundle::paths(w.dir.path(), name);
        let good = std::fs::read(&data).unwrap();
        let mut bad = good.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&data, &bad).unwrap();
        let e = bundle::verify(&data, None).unwrap_err();
        assert!(matches!(e, bundle::BundleError::DataAltered { .. }), "{e}");
        assert!(e.to_string().contains(&format!("{name}.vbundle")), "{e}");
        std::fs::write(&data, &good).unwrap();
        bundle::verify(&data, None).unwrap();
        let text = std::fs::read_to_string(&manifest).unwrap();
        let seq = format!("\"first\": {}", first_seq(&text));
        let altered = text.replacen(&seq, &format!("\"first\": {}", first_seq(&text) + 1), 1);
        assert_ne!(altered, text);
        std::fs::write(&manifest, altered).unwrap();
        let e = bundle::verify(&manifest, None).unwrap_err();
        assert!(
            e.to_string().contains(&format!("{name}.manifest.json")),
            "{e}"
        );
        std::fs::write(&manifest, &text).unwrap();
        // Newest times moved back (a purge trusts them without reading).
        let mut m: serde_json::Value = serde_json::from_str(&text).unwrap();
        let at = m["newest"][0]["at_us"].as_i64().expect("newest times");
        m["newest"][0]["at_us"] = (at - 1).into();
        std::fs::write(&manifest, m.to_string()).unwrap();
        let e = bundle::verify(&manifest, None).unwrap_err();
        assert!(e.to_string().contains("newest times"), "{e}");
        std::fs::write(&manifest, &text).unwrap();
        // Another key than the log's.
        let e = bundle::verify(&manifest, Some(other.public())).unwrap_err();
        assert!(e.to_string().contains("not signed by"), "{e}");
        w.log.close().await;
    }

    /// A period hold keeps a record of every class past its purge date, by
    /// each deletion path (events online and archived, recordings, the
    /// webhook delivery log), and only those in its period. The match below
    /// has no catch-all: a class added to `RecordClass` does not compile
    /// here until its deletion path is shown to honour holds.
    pub async fn every_class_is_held_by_every_deletion_path(db: &TestDb) {
        let w = world(db).await;
        let archive = Archive::new(w.log.store().clone());
        // The webhook delivery log: a finished message every month.
        let mut month = at(2020, 1, 15);
        let mut messages = Vec::new();
        while month < at(2024, 1, 1) {
            let id = Uuid::new_v4().to_string();
            db.exec(&format!(
                "INSERT INTO webhook_messages (id, endpoint_id, event_seq, event_type, body, status, \
                 attempts, next_attempt_at, created_at, finished_at) VALUES \
                 ('{id}', 'wh_1', 0, 'session.ended', '{{}}', 'delivered', 1, 0, {t}, {t})",
                t = us(month)
            ))
            .await;
            db.exec(&format!(
                "INSERT INTO webhook_attempts (message_id, attempt, at, http_status, latency_ms) \
                 VALUES ('{id}', 1, {}, 200, 5)",
                us(month)
            ))
            .await;
            messages.push((id, month));
            month = month
                .replace_month(if month.month() == Month::December {
                    Month::January
                } else {
                    month.month().next()
                })
                .unwrap();
            if month.month() == Month::January {
                month = month.replace_year(month.year() + 1).unwrap();
            }
        }
        let (since, until) = (at(2020, 3, 1), at(2020, 5, 1));
        archive
            .add_hold(
                &HoldScope::Period {
                    since_us: us(since),
                    until_us: us(until),
                },
                "audit of spring 2020",
                "admin:test",
                0,
            )
            .await
            .unwrap();
        let held = |t: OffsetDateTime| (since..until).contains(&t);
        w.run(at(2030, 1, 1)).await;
        let places = w.actual(db).await;
        let left: BTreeSet<String> = db
            .query_i64s("SELECT created_at FROM webhook_messages")
            .await
            .into_iter()
            .map(|t| t.to_string())
            .collect();
        for class in RecordClass::ALL {
            match class {
                RecordClass::SessionEvents
                | RecordClass::SecurityEvents
                | RecordClass::WebhookDeliveries => {
                    let of_class: Vec<&Fixture> = w
                        .fixtures
                        .iter()
                        .filter(|f| {
                            let kind = class_of_fixture(f, &w);
                            kind == class
                        })
                        .collect();
                    assert!(
                        of_class.iter().any(|f| held(f.from)),
                        "no {class} fixture in the held period"
                    );
                    for f in of_class {
                        let want = if held(f.from) {
                            Place::Archived
                        } else {
                            Place::Purged
                        };
                        assert_eq!(places[&f.seq], want, "{class} seq {} of {}", f.seq, f.from);
                    }
                    if class == RecordClass::WebhookDeliveries {
                        for (_, t) in &messages {
                            assert_eq!(
                                left.contains(&us(*t).to_string()),
                                held(*t),
                                "webhook log entry of {t}"
                            );
                        }
                    }
                }
                RecordClass::Recordings => {
                    let actual = w.actual_recordings();
                    for (s, (_, day)) in &w.recordings {
                        let want = if held(*day) {
                            Place::Archived
                        } else {
                            Place::Purged
                        };
                        assert_eq!(actual[s], want, "recording of {day}");
                    }
                }
            }
        }
        w.log.close().await;
    }

    /// A fixture's class, from what this file made it as.
    fn class_of_fixture(f: &Fixture, w: &World) -> RecordClass {
        if f.session.is_some() {
            RecordClass::SessionEvents
        } else if w.webhook_seqs.contains(&f.seq) {
            RecordClass::WebhookDeliveries
        } else {
            RecordClass::SecurityEvents
        }
    }

    fn first_seq(manifest: &str) -> i64 {
        let v: serde_json::Value = serde_json::from_str(manifest).unwrap();
        v["stretches"][0]["first"].as_i64().unwrap()
    }
}

testkit::both_backends! {
    mod cases;
    four_years_of_runs_keep_exactly_what_policy_says,
    bad_input_is_refused_and_altered_bundles_are_named,
    every_class_is_held_by_every_deletion_path,
}
