//! `vigil retention` and `vigil admin retention|hold|erase` as a user runs
//! them: bad input refused in one line with nothing changed, and a run
//! killed with SIGKILL at twenty points that the next run finishes into
//! exactly what an uninterrupted run leaves. (What runs keep over years,
//! on both stores, is `crates/retention/tests/years.rs`.)

use std::collections::BTreeSet;
use std::path::Path;

use audit_db::{Actor, AuditLog, DbUrl, EventKind, NewEvent, OpenMode, Source};
use uuid::Uuid;

use crate::helpers::{assert_same_files, run_in, snapshot};

/// A day at noon UTC, in microseconds.
fn day(y: i32, m: u8, d: u8) -> i64 {
    let date = time::Date::from_calendar_date(y, time::Month::try_from(m).unwrap(), d).unwrap();
    audit_db::time_us::from_datetime(date.with_hms(12, 0, 0).unwrap().assume_utc())
}

/// A log in `data` of `sessions` sessions, one every `every_hours` hours
/// from 2021-01-01 (a creation, a chat message and an end each, and a
/// login before each); returns the sessions in order.
async fn fixture(data: &Path, sessions: usize, every_hours: i64) -> Vec<Uuid> {
    let url: DbUrl = format!("sqlite://{}", data.join("audit.db").display())
        .parse()
        .unwrap();
    let log = AuditLog::open(&url, OpenMode::Create).await.unwrap();
    let mut ids = Vec::new();
    let mut batch = Vec::new();
    for i in 0..sessions {
        let at = day(2021, 1, 1) + i as i64 * every_hours * 3_600_000_000;
        let session = Uuid::new_v4();
        ids.push(session);
        let tech = "ann@example.com";
        let make = |kind: &str, payload: serde_json::Value, session: Option<Uuid>, at: i64| {
            let mut e = NewEvent::now(
                Actor::technician(tech),
                Source::gateway(),
                EventKind::from_stored(kind, &payload.to_string())
                    .unwrap()
                    .unwrap(),
            );
            e.session = session;
            e.occurred_at_us = at;
            e
        };
        batch.push(make(
            "login.succeeded",
            serde_json::json!({"email": tech, "ip": "10.0.0.9"}),
            None,
            at,
        ));
        batch.push(make(
            "session.created",
            serde_json::json!({"technician": tech, "pin_issued": true}),
            Some(session),
            at,
        ));
        batch.push(make("chat.message", serde_json::json!({"from": "end_user", "text": format!("chat-{}", session.simple()), "chars": 37}), Some(session), at + 60_000_000));
        batch.push(make("session.ended", serde_json::json!({"reason": "console_left", "duration_ms": 1, "bytes_to_applet": 1, "bytes_to_console": 1}), Some(session), at + 120_000_000));
        if batch.len() >= 4_000 {
            log.append(std::mem::take(&mut batch)).await.unwrap();
        }
    }
    log.append(batch).await.unwrap();
    log.close().await;
    ids
}

/// Where a data directory's fixture events are: online seqs, archived
/// seqs (read from the bundles the database lists), and the log's size.
fn state(data: &Path, up_to: i64) -> (BTreeSet<i64>, BTreeSet<i64>) {
    let conn = rusqlite::Connection::open(data.join("audit.db")).unwrap();
    let online: BTreeSet<i64> = conn
        .prepare("SELECT seq FROM audit_events WHERE seq <= ?1")
        .unwrap()
        .query_map([up_to], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let bundles: Vec<String> = conn
        .prepare("SELECT name FROM retention_bundles WHERE state = 'archived'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    drop(conn);
    let mut archived = BTreeSet::new();
    for name in bundles {
        let (_, manifest) = retention::bundle::paths(&data.join("archive"), &name);
        retention::bundle::verify(&manifest, None).unwrap();
        for (e, _) in retention::bundle::read_events(&manifest).unwrap().1 {
            if e.seq <= up_to {
                assert!(archived.insert(e.seq), "seq {} in two bundles", e.seq);
            }
        }
    }
    assert!(online.is_disjoint(&archived));
    (online, archived)
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o700)).unwrap();
}

const RUN_2024: &[&str] = &[
    "retention",
    "run",
    "--as-of",
    "2024-07-01",
    "--bundle-events",
    "1500",
];

/// SIGKILL at twenty points spread over a run (its length measured on a
/// clean copy first), then a run to completion: the events online, archived
/// and purged are exactly the clean run's, the log verifies, and no file is
/// left behind that the database does not know.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_killed_anywhere_is_finished_by_the_next() {
    let root = tempfile::tempdir().unwrap();
    let base = root.path().join("base");
    std::fs::create_dir_all(&base).unwrap();
    // Sessions every 6 hours over 2021-2023: at mid 2024 with 1y+1y, the
    // first half year is purged straight, the rest up to mid 2023 archived.
    fixture(&base, 4 * 365 * 3, 6).await;
    run_in(&base, &["admin", "retention", "set", "--all", "1y+1y"], "").ok();
    run_in(&base, &["audit", "key"], "").ok();
    let up_to = 4 * 365 * 3 * 4 + 2;

    let clean = root.path().join("clean");
    copy_dir(&base, &clean);
    let started = std::time::Instant::now();
    run_in(&clean, RUN_2024, "").ok();
    let took = started.elapsed();
    let expected = state(&clean, up_to);
    assert!(
        !expected.0.is_empty() && !expected.1.is_empty(),
        "the run neither archived nor kept"
    );
    assert!(
        expected.0.len() + expected.1.len() < up_to as usize,
        "nothing was purged"
    );

    let mut killed_mid_run = 0;
    for point in 0..20u32 {
        let data = root.path().join(format!("kill-{point}"));
        copy_dir(&base, &data);
        // Spread over the run, a little past its measured length too.
        let after = took.mul_f64(f64::from(point) / 18.0);
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_vigil"))
            .env_remove("RUST_LOG")
            .arg("--data")
            .arg(&data)
            .args(RUN_2024)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        // The kill instant is the point of the test: it is not waiting for anything.
        std::thread::sleep(after);
        if child.try_wait().unwrap().is_none() {
            killed_mid_run += 1;
        }
        child.kill().ok();
        child.wait().unwrap();
        let again = run_in(&data, RUN_2024, "");
        again.ok();
        assert_eq!(state(&data, up_to), expected, "killed after {after:?}");
        let verify = run_in(&data, &["audit", "verify"], "");
        assert_eq!(verify.code, 0, "killed after {after:?}: {verify:#?}");
        // Every file in the archive is a bundle the database lists.
        let listed = run_in(
            &data,
            &[
                "retention",
                "verify",
                data.join("archive").to_str().unwrap(),
            ],
            "",
        );
        assert_eq!(listed.code, 0, "{listed:#?}");
        let names: BTreeSet<String> = std::fs::read_dir(data.join("archive"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with('.'))
            .collect();
        let clean_names = std::fs::read_dir(clean.join("archive")).unwrap().count() - 1;
        assert_eq!(
            names.len(),
            clean_names,
            "killed after {after:?}: {names:?}"
        );
        std::fs::remove_dir_all(&data).unwrap();
    }
    assert!(
        killed_mid_run >= 10,
        "only {killed_mid_run} kills landed during a run"
    );
}

/// Each bad input: one line on stderr, exit 2, and the data directory as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_in_one_line_and_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let data = root.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let sessions = fixture(&data, 40, 24 * 30).await;
    run_in(&data, &["admin", "retention", "set", "--all", "1y+1y"], "").ok();
    run_in(&data, &["retention", "run", "--as-of", "2023-06-01"], "").ok();
    let held = sessions[35];
    run_in(
        &data,
        &[
            "admin",
            "hold",
            "add",
            "--session",
            &held.to_string(),
            "--reason",
            "matter 1",
        ],
        "",
    )
    .ok();
    // Another log's bundle, in a directory of its own.
    let other = root.path().join("other");
    std::fs::create_dir_all(&other).unwrap();
    fixture(&other, 5, 24).await;
    run_in(&other, &["retention", "run", "--as-of", "2024-01-01"], "").ok();
    let foreign = root.path().join("foreign");
    copy_dir(&other.join("archive"), &foreign);
    std::fs::remove_file(foreign.join(".retention.lock")).ok();
    let not_a_dir = root.path().join("file");
    std::fs::write(&not_a_dir, b"x").unwrap();

    let foreign_dir = foreign.to_str().unwrap().to_owned();
    let missing = root.path().join("missing").to_str().unwrap().to_owned();
    // Restores: into a file that must not come to exist, or into the log.
    let archive = data.join("archive").to_str().unwrap().to_owned();
    let a_bundle = retention::bundle::manifests_in(&data.join("archive")).unwrap()[0]
        .to_str()
        .unwrap()
        .to_owned();
    let target = root.path().join("restored.db");
    let target_url = format!("sqlite://{}", target.display());
    let live_url = format!("sqlite://{}", data.join("audit.db").display());
    let file = not_a_dir.to_str().unwrap().to_owned();
    let held_id = held.to_string();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec!["admin", "retention", "set", "--all", "-1y+1y"],
            "cannot be negative",
        ),
        (
            vec!["admin", "retention", "set", "--session-events", "2y"],
            "not ONLINE+ARCHIVED",
        ),
        (
            vec!["admin", "retention", "set", "--security-events", "6m+5m"],
            "must be kept",
        ),
        (
            vec![
                "admin",
                "retention",
                "set",
                "--group",
                "eu",
                "--security-events",
                "3m+0",
            ],
            "must be kept",
        ),
        (
            vec!["admin", "retention", "set", "--preset", "forever"],
            "not a retention preset",
        ),
        (
            vec!["retention", "run", "--archive-dir", &missing],
            "cannot be used",
        ),
        (
            vec!["retention", "run", "--archive-dir", &file],
            "not a directory",
        ),
        (
            vec![
                "retention",
                "run",
                "--archive-dir",
                &foreign_dir,
                "--as-of",
                "2024-01-01",
            ],
            "not of this log",
        ),
        (
            vec!["retention", "run", "--as-of", "2023-01-01"],
            "before the last run",
        ),
        (
            vec!["admin", "hold", "release", "99", "--reason", "done"],
            "no legal hold 99",
        ),
        (
            vec![
                "admin",
                "hold",
                "add",
                "--since",
                "2023-01-02",
                "--until",
                "2023-01-01",
                "--reason",
                "x",
            ],
            "is not before",
        ),
        (
            vec![
                "admin",
                "erase",
                "--session",
                &held_id,
                "--chat",
                "--reason",
                "request 9",
            ],
            "legal hold",
        ),
        (
            vec![
                "admin",
                "erase",
                "--session",
                "6a0f2a5c-0000-4000-8000-000000000000",
                "--reason",
                "x",
            ],
            "no session",
        ),
        (vec!["retention", "restore", &archive], "--db URL"),
        (
            vec!["retention", "restore", &archive, "--db", &live_url],
            "restore into a new, empty database",
        ),
        (
            vec![
                "retention",
                "restore",
                &archive,
                &a_bundle,
                "--db",
                &target_url,
            ],
            "both hold seq",
        ),
        (
            vec![
                "retention",
                "restore",
                &archive,
                &foreign_dir,
                "--db",
                &target_url,
            ],
            "not of this log",
        ),
        (
            vec!["retention", "restore", &missing, "--db", &target_url],
            "no such file",
        ),
    ];
    for (args, says) in cases {
        // A read settles SQLite's housekeeping (a WAL left by the command
        // before, checkpointed by whoever closes last), which is not a change.
        crate::helpers::assert_verifies(&data);
        let before = snapshot(&data);
        let foreign_before = snapshot(&foreign);
        let r = run_in(&data, &args, "");
        let line = r.error_line();
        assert!(line.contains(says), "{args:?}: {line}");
        // Settled the same way after as before: what differs is a change.
        crate::helpers::assert_verifies(&data);
        assert_same_files(&before, &snapshot(&data), &format!("{args:?}"));
        assert_same_files(&foreign_before, &snapshot(&foreign), &format!("{args:?}"));
        assert!(!target.exists(), "{args:?} made {}", target.display());
    }
    // A bundle with a flipped byte is not restored, and named.
    let flipped = root.path().join("flipped");
    copy_dir(&data.join("archive"), &flipped);
    let manifest = retention::bundle::read_manifest(
        &flipped.join(std::path::Path::new(&a_bundle).file_name().unwrap()),
    )
    .unwrap();
    let file = flipped.join(&manifest.data.file);
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x20;
    std::fs::write(&file, bytes).unwrap();
    let r = run_in(
        &data,
        &[
            "retention",
            "restore",
            flipped.to_str().unwrap(),
            "--db",
            &target_url,
        ],
        "",
    );
    let line = r.error_line();
    assert!(
        line.contains(&manifest.data.file) && line.contains("altered"),
        "{line}"
    );
    assert!(!target.exists());
    // A bundle of another log, checked against this log's key: named, exit 1.
    let key = run_in(&data, &["audit", "key"], "").ok().trim().to_owned();
    let r = run_in(
        &data,
        &["retention", "verify", &foreign_dir, "--key", &key],
        "",
    );
    assert_eq!(r.code, 1, "{r:#?}");
    assert!(
        r.stdout.contains("FAILED") && r.stdout.contains("not signed by"),
        "{r:#?}"
    );
}

/// The gateway runs retention at start and every `--retention-every`: old
/// events leave for the archive while it serves, recorded as the system's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_retention_on_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    fixture(data, 12, 24 * 30).await;
    // 2021's events: past 3 years online, within 3 more archived.
    run_in(data, &["admin", "retention", "set", "--all", "3y+3y"], "").ok();
    let _gw = crate::helpers::start_gateway(data, &["--retention-every", "1s"]);
    let mut recorded = Vec::new();
    for _ in 0..300 {
        recorded = crate::helpers::json_lines(
            run_in(
                data,
                &["audit", "query", "--type", "retention.run", "--json"],
                "",
            )
            .ok(),
        );
        if !recorded.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let [run] = &recorded[..] else {
        panic!("expected one recorded run: {recorded:?}");
    };
    assert_eq!(run["actor"], "system:retention");
    assert_eq!(run["payload"]["archived"], 12 * 4);
    // What it wrote verifies, and so does the log.
    let archive = data.join("archive");
    let r = run_in(
        data,
        &["retention", "verify", archive.to_str().unwrap()],
        "",
    );
    assert_eq!(r.code, 0, "{r:#?}");
    crate::helpers::assert_verifies(data);
}

/// `audit query --archive` and `report --archive` read archived events as
/// if they were online: the same events, in the same order, as before the
/// run moved them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_archive_reads_as_if_online() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sessions = fixture(data, 30, 24 * 30).await;
    let before = run_in(data, &["audit", "query", "--json"], "")
        .ok()
        .to_owned();
    let chat_before = run_in(data, &["report", "chat", "--format", "csv"], "")
        .ok()
        .to_owned();
    archive_what_is_a_year_old(data);
    let archive = data.join("archive");
    let archive = archive.to_str().unwrap();
    // Without the archive, the old events are gone from listings.
    let online = crate::helpers::json_lines(run_in(data, &["audit", "query", "--json"], "").ok());
    let all = crate::helpers::json_lines(
        run_in(
            data,
            &["audit", "query", "--json", "--archive", archive],
            "",
        )
        .ok(),
    );
    let expected = crate::helpers::json_lines(&before);
    assert!(
        online.len() + 40 < expected.len(),
        "{} online of {}",
        online.len(),
        expected.len()
    );
    // The log gained the run's events after those read before.
    assert_eq!(&all[..expected.len()], &expected[..]);
    assert!(all[expected.len()..]
        .iter()
        .all(|e| e["seq"].as_i64() > expected.last().unwrap()["seq"].as_i64()));
    // Filters apply to archived events too.
    let one = crate::helpers::json_lines(
        run_in(
            data,
            &[
                "audit",
                "query",
                "--json",
                "--archive",
                archive,
                "--session",
                &sessions[2].to_string(),
            ],
            "",
        )
        .ok(),
    );
    assert_eq!(one.len(), 3);
    assert!(one.iter().all(|e| e["session"] == sessions[2].to_string()));
    // A report over the archive has the rows it had before the run.
    let chat = run_in(
        data,
        &["report", "chat", "--format", "csv", "--archive", archive],
        "",
    )
    .ok()
    .to_owned();
    assert_eq!(chat, chat_before);
    let chat_online = run_in(data, &["report", "chat", "--format", "csv"], "")
        .ok()
        .to_owned();
    assert!(chat_online.lines().count() < chat.lines().count());
}

/// Archives (into bundles of 25 events) what is a year old at 2023-01-01,
/// kept ten years more.
fn archive_what_is_a_year_old(data: &Path) {
    run_in(data, &["admin", "retention", "set", "--all", "1y+10y"], "").ok();
    let run = [
        "retention",
        "run",
        "--as-of",
        "2023-01-01",
        "--bundle-events",
        "25",
    ];
    run_in(data, &run, "").ok();
}

/// The events `query --json` printed, by seq.
fn by_seq(text: &str) -> std::collections::BTreeMap<i64, serde_json::Value> {
    crate::helpers::json_lines(text)
        .into_iter()
        .map(|e| (e["seq"].as_i64().unwrap(), e))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_bundles_restore_into_a_database_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let sessions = fixture(data, 30, 24 * 30).await;
    let before = by_seq(run_in(data, &["audit", "query", "--json"], "").ok());
    archive_what_is_a_year_old(data);
    let key = run_in(data, &["audit", "key"], "").ok().trim().to_owned();
    let archive = data.join("archive");
    let online = by_seq(run_in(data, &["audit", "query", "--json"], "").ok());
    let archived: Vec<i64> = before
        .keys()
        .copied()
        .filter(|s| !online.contains_key(s))
        .collect();
    assert!(archived.len() > 40, "{} archived", archived.len());

    let mut targets = vec![testkit::TestDb::sqlite()];
    targets.extend(testkit::TestDb::postgres().await);
    for target in &targets {
        let db = target.url.as_str();
        let restored = run_in(
            data,
            &[
                "retention",
                "restore",
                archive.to_str().unwrap(),
                "--key",
                &key,
                "--db",
                db,
            ],
            "",
        );
        assert!(
            restored
                .ok()
                .contains(&format!("restored {} events", archived.len())),
            "{restored:?}"
        );
        let verified = run_in(data, &["audit", "verify", "--db", db], "");
        assert!(
            verified.ok().starts_with("restored database intact"),
            "{verified:?}"
        );
        // Every archived event, exactly as it was online, and nothing else.
        let back = by_seq(run_in(data, &["audit", "query", "--json", "--db", db], "").ok());
        assert_eq!(back.keys().copied().collect::<Vec<_>>(), archived);
        for (seq, event) in &back {
            assert_eq!(event, &before[seq], "seq {seq}");
        }
        // Reports read it; their runs are not recorded in it.
        let report = run_in(
            data,
            &["report", "chat", "--format", "csv", "--verify", "--db", db],
            "",
        );
        assert!(report
            .ok()
            .contains(&format!("chat-{}", sessions[0].simple())));
        assert!(report.stderr.contains("not recorded"), "{report:?}");
        // It takes no new events.
        let note = run_in(data, &["admin", "note", "x", "--db", db], "");
        assert!(note.error_line().contains("not a live log"), "{note:?}");
        let again = run_in(data, &["audit", "query", "--json", "--db", db], "");
        assert_eq!(by_seq(again.ok()), back);
        // A row altered in it is found, by seq.
        let seq = archived[archived.len() / 2];
        target.allow_tampering().await;
        target
            .exec(&format!(
                "UPDATE audit_events SET actor = 'technician:mallory@example.com' WHERE seq = {seq}"
            ))
            .await;
        let broken = run_in(data, &["audit", "verify", "--db", db], "");
        assert_eq!(broken.code, 1, "{broken:?}");
        assert!(
            broken.stdout.contains(&format!("seq {seq} was modified")),
            "{broken:?}"
        );
    }
}
