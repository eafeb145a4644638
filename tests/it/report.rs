//! `vigil report` over a log written by real sessions (gateway, console and
//! applet processes) plus synthetic events, checked against counts made
//! with SQL on the same database; CSV read back with the csv crate; bad
//! input refused with nothing written; every run in the `access` report.

use std::path::Path;

use audit_db::event::{
    ChatMessage, Direction, EndReason, FileTransferred, LoginFailed, LoginFailure, Party,
    RecordingStopped, SessionCreated, SessionEnded,
};
use audit_db::{Actor, AuditLog, EventKind, NewEvent, OpenMode, Source};

use crate::helpers::{add_technician, applet_args, login_cmd, run_in, run_session, start_gateway};

/// The names in `dir`.
fn listing(dir: &Path) -> std::collections::BTreeSet<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// A count straight from the SQLite file.
fn sql_count(data: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(data.join("audit.db")).unwrap();
    conn.query_row(sql, [], |r| r.get(0)).unwrap()
}

fn csv_rows(text: &str) -> Vec<csv::StringRecord> {
    csv::Reader::from_reader(text.as_bytes())
        .records()
        .map(Result::unwrap)
        .collect()
}

/// Appends `events` to the SQLite log of `data` (no gateway running).
fn append(data: &Path, events: Vec<NewEvent>) {
    append_to(&sqlite_url(data), events);
}

fn sqlite_url(data: &Path) -> String {
    format!("sqlite://{}", data.join("audit.db").display())
}

/// Appends `events` to the log at `url`, from a thread that is not a runtime's.
fn append_to(url: &str, events: Vec<NewEvent>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let log = AuditLog::open(&url.parse().unwrap(), OpenMode::Create)
            .await
            .unwrap();
        log.append(events).await.unwrap();
        log.close().await;
    });
}

/// A session whose chat holds what spreadsheets and CSV parsers trip on,
/// with two files sent (one arrived intact, one did not: each end reports
/// its own digests) and a recording (of a file that is not there).
fn synthetic_session(url: &str, lines: &[&str]) {
    let s = uuid::Uuid::now_v7();
    let tech = Actor::technician("bob@example.com");
    let mut events = vec![NewEvent::now(
        tech.clone(),
        Source::gateway(),
        EventKind::SessionCreated(SessionCreated {
            technician: "bob@example.com".into(),
            pin_issued: true,
            gateway: None,
            group: Some("tier2".into()),
        }),
    )
    .in_session(s)];
    for text in lines {
        events.push(
            NewEvent::now(
                tech.clone(),
                Source::console("127.0.0.1:1"),
                EventKind::ChatMessage(ChatMessage {
                    from: Party::Technician,
                    text: Some((*text).to_owned()),
                    chars: text.chars().count() as u64,
                }),
            )
            .in_session(s),
        );
    }
    for (name, received) in [("intact.zip", "ab"), ("damaged.zip", "cd")] {
        for (source, sha) in [
            (Source::console("127.0.0.1:1"), "ab"),
            (Source::applet("127.0.0.1:2"), received),
        ] {
            events.push(
                NewEvent::now(
                    tech.clone(),
                    source,
                    EventKind::FileTransferred(FileTransferred {
                        direction: Direction::ToEndUser,
                        name: name.to_owned(),
                        size: 3,
                        md5: sha.repeat(16),
                        sha256: sha.repeat(32),
                    }),
                )
                .in_session(s),
            );
        }
    }
    events.push(
        NewEvent::now(
            tech.clone(),
            Source::console("127.0.0.1:1"),
            EventKind::RecordingStopped(RecordingStopped {
                recording: "rec-synthetic".into(),
                path: "/nonexistent/synthetic.vrec".into(),
                size: 1,
                sha256: "ef".repeat(32),
            }),
        )
        .in_session(s),
    );
    events.push(
        NewEvent::now(
            tech,
            Source::gateway(),
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::Ended,
                duration_ms: 1,
                bytes_to_applet: 0,
                bytes_to_console: 0,
            }),
        )
        .in_session(s),
    );
    append_to(url, events);
}

/// What [`reports_match_sql`] expects real processes to have logged: two
/// sessions, a wrong password and a wrong PIN (for the logins, summary and
/// missed reports).
fn real_traffic(data: &Path, gw: &testkit::GatewayProcess) {
    run_session(data, gw);
    run_session(data, gw);
    assert_eq!(login_cmd(data, gw, "not the password").code, 2);
    assert_ne!(run_in(data, &applet_args(gw, "000000", &[]), "").code, 0);
}

/// Every report type against counts the database makes of the same log
/// with SQL: `vigil` runs a report on the log, `count` asks the database.
/// The log holds two real sessions, a failed login, a refused join and
/// one synthetic session.
fn reports_match_sql(vigil: &dyn Fn(&[&str]) -> crate::helpers::Run, count: &dyn Fn(&str) -> i64) {
    let csv = |args: &[&str]| {
        let mut all = vec!["report"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--format", "csv"]);
        csv_rows(vigil(&all).ok())
    };
    let kinds = |list: &str| {
        count(&format!(
            "SELECT COUNT(*) FROM audit_events WHERE kind IN ({list})"
        ))
    };
    let created = kinds("'session.created'");
    assert_eq!(created, 3);
    assert_eq!(csv(&["sessions"]).len() as i64, created, "sessions");
    assert_eq!(csv(&["chat"]).len() as i64, kinds("'chat.message'"), "chat");

    // Files: a row per file with both ends' digests, whether they matched.
    let files = csv(&["files"]);
    assert_eq!(
        files.len() as i64,
        count(
            "SELECT COUNT(*) FROM audit_events WHERE kind = 'file.transferred' \
             AND source LIKE 'console@%'"
        ),
        "files"
    );
    let seen: Vec<(&str, &str, &str)> = files.iter().map(|r| (&r[3], &r[9][..2], &r[10])).collect();
    assert_eq!(
        seen,
        [("intact.zip", "ab", "yes"), ("damaged.zip", "cd", "no")]
    );
    assert!(
        files.iter().all(|r| r[7] == "ab".repeat(32)),
        "sender's SHA-256"
    );

    let logins = kinds(
        "'login.succeeded','login.failed','account.locked','account.unlocked','logout',\
         'password.changed'",
    );
    assert!(logins >= 4);
    assert_eq!(csv(&["logins"]).len() as i64, logins, "logins");
    assert_eq!(
        csv(&["admin"]).len() as i64,
        kinds("'admin.change','admin.note'"),
        "admin"
    );

    // The aggregates add up to what SQL counts.
    let sum = |rows: &[csv::StringRecord], col: usize| -> i64 {
        rows.iter().map(|r| r[col].parse::<i64>().unwrap()).sum()
    };
    let perms = csv(&["permissions"]);
    for (col, kind) in [
        (2, "'permission.requested'"),
        (3, "'permission.granted'"),
        (4, "'permission.denied'"),
    ] {
        assert_eq!(sum(&perms, col), kinds(kind), "{kind}");
    }
    let summary = csv(&["summary"]);
    assert_eq!(sum(&summary, 2), created, "sessions per day and technician");
    assert_eq!(kinds("'login.failed'"), 1);
    assert_eq!(sum(&summary, 5), 1, "failed logins");
    assert_eq!(sum(&summary, 6), kinds("'permission.denied'"));

    let missed = csv(&["missed"]);
    let refused = kinds("'session.join_refused'");
    assert_eq!(refused, 1);
    let never_picked = count(
        "SELECT COUNT(*) FROM audit_events c WHERE c.kind = 'session.created' AND NOT EXISTS \
         (SELECT 1 FROM audit_events p WHERE p.kind = 'session.picked_up' AND p.session_id = c.session_id)",
    );
    assert_eq!(never_picked, 1, "the synthetic session");
    assert_eq!(missed.len() as i64, refused + never_picked, "missed");
    assert!(missed
        .iter()
        .any(|r| &r[1] == "join_refused" && &r[4] == "127.0.0.1"));

    // Recordings: one row each; checked, a missing file says so.
    let recordings = csv(&["recordings", "--check"]);
    assert_eq!(recordings.len() as i64, kinds("'recording.stopped'"));
    assert!(
        recordings[0][8].starts_with("unreadable"),
        "{:?}",
        recordings[0]
    );

    // Every run so far is in the access report (and the access report's
    // own run is audited after it was made).
    let access = csv(&["access"]);
    assert_eq!(access.len() as i64, kinds("'report.generated'") - 1);
    assert_eq!(access.len(), 9, "every report run before this one");
}

#[test]
fn reports_say_what_the_log_holds_and_every_run_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_technician(data);
    let gw = start_gateway(data, &["--no-webhooks"]);
    real_traffic(data, &gw);
    assert_eq!(gw.stop().0, 0);
    let tricky = [
        "=HYPERLINK(\"http://evil\")",
        "+1",
        "-2+3",
        "@SUM(A1)",
        "\tTAB",
        "a, b and \"quotes\"",
        "two\nlines",
        "Grüße ✓ 日本語",
    ];
    synthetic_session(&sqlite_url(data), &tricky);
    reports_match_sql(&|args| run_in(data, args, ""), &|sql| sql_count(data, sql));

    // Sessions: the real ones as the gateway and both ends saw them.
    let rows = csv_rows(run_in(data, &["report", "sessions", "--format", "csv"], "").ok());
    let real: Vec<_> = rows.iter().filter(|r| &r[1] == "ann@example.com").collect();
    assert_eq!(real.len(), 2);
    for r in &real {
        assert_eq!(&r[2], "tier1");
        assert_eq!(&r[3], "127.0.0.1");
        // Said by the side that ended it, even when the applet's link
        // closed before the relay read the console's `End`.
        assert!(r[9].starts_with("ended_by_"), "{r:?}");
        assert_eq!(&r[14], "2", "two chat lines");
    }

    // Chat: every line, read back exactly, formulas neutralised.
    let chat = run_in(data, &["report", "chat", "--format", "csv"], "");
    let rows = csv_rows(chat.ok());
    let bob: Vec<String> = rows
        .iter()
        .filter(|r| &r[2] == "bob@example.com")
        .map(|r| r[4].to_owned())
        .collect();
    let expected: Vec<String> = tricky
        .iter()
        .map(|t| {
            if t.starts_with(['=', '+', '-', '@', '\t', '\r']) {
                format!("'{t}")
            } else {
                (*t).to_owned()
            }
        })
        .collect();
    assert_eq!(bob, expected);

    // Narrowed: by technician, group, network, time.
    let only = |args: &[&str]| {
        let mut all = vec!["report", "sessions", "--format", "jsonl"];
        all.extend_from_slice(args);
        crate::helpers::json_lines(run_in(data, &all, "").ok()).len()
    };
    assert_eq!(only(&["--technician", "ANN@example.com"]), 2);
    assert_eq!(only(&["--group", "tier2"]), 1);
    assert_eq!(only(&["--ip", "127.0.0.0/8"]), 2);
    assert_eq!(only(&["--ip", "10.0.0.0/8"]), 0);
    assert_eq!(only(&["--since", "2099-01-01"]), 0);

    // A file is made whole, and every run so far is in the access report.
    let out = data.join("sessions.csv");
    let r = run_in(
        data,
        &[
            "report",
            "sessions",
            "--format",
            "csv",
            "-o",
            out.to_str().unwrap(),
        ],
        "",
    );
    r.ok();
    let written = std::fs::read(&out).unwrap();
    let access = csv_rows(run_in(data, &["report", "access", "--format", "csv"], "").ok());
    let runs = sql_count(
        data,
        "SELECT COUNT(*) FROM audit_events WHERE kind = 'report.generated'",
    );
    // The access report's own run is audited after it was made.
    assert_eq!(access.len() as i64, runs - 1);
    assert_eq!(access.len(), 18, "every report run before this one");
    let last = access.last().unwrap();
    assert_eq!((&last[3], &last[4]), ("sessions", "csv"));
    use sha2::Digest;
    assert_eq!(
        &last[7],
        hex::encode(sha2::Sha256::digest(&written)),
        "the output's SHA-256"
    );
    assert!(
        // (In CSV a cell starting with a dash is neutralised like a formula.)
        access.iter().any(|r| &r[5] == "'--ip 10.0.0.0/8"),
        "filters are recorded"
    );
    // The stamp: the log position the report stands on, proven with --verify.
    let head = sql_count(data, "SELECT MAX(seq) FROM audit_events");
    let table = run_in(data, &["report", "admin", "--verify"], "");
    let stamp = table.ok().lines().last().unwrap().to_owned();
    assert!(
        stamp.starts_with(&format!("Built from the audit log up to seq {head} (hash ")),
        "{stamp}"
    );
    assert!(
        stamp.ends_with(&format!("the log verified intact up to seq {head}.")),
        "{stamp}"
    );
    let csv = run_in(data, &["report", "admin", "--format", "csv"], "");
    assert!(
        !csv.ok().contains("Built from"),
        "machine formats stay pure data"
    );
    assert!(csv.stderr.contains("the log was not verified"), "{csv:?}");
    // The empty range is a report with its header.
    let empty = run_in(
        data,
        &["report", "chat", "--format", "csv", "--since", "2099-01-01"],
        "",
    );
    assert_eq!(empty.ok(), "time,session,technician,from,text,chars\r\n");
}

#[test]
fn bad_report_input_is_one_line_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_technician(data);
    let existing = data.join("existing.csv");
    std::fs::write(&existing, "keep me").unwrap();
    let missing = data.join("no-such-dir/out.csv");
    let events_before = sql_count(data, "SELECT COUNT(*) FROM audit_events");
    let files_before = listing(data);
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (
            vec![
                "report",
                "sessions",
                "--since",
                "2026-02-01",
                "--until",
                "2026-01-01",
            ],
            "--since must be before --until",
        ),
        (
            vec!["report", "sessions", "-o", missing.to_str().unwrap()],
            "is not a directory",
        ),
        (
            vec!["report", "sessions", "-o", existing.to_str().unwrap()],
            "exists (--force replaces it)",
        ),
        (
            vec!["report", "sessions", "--format", "csv", "--tz", "UTC"],
            "--tz applies to table and html output",
        ),
    ];
    for (args, says) in cases {
        let r = run_in(data, &args, "");
        let line = r.error_line();
        assert!(line.contains(says), "{args:?}: {line}");
    }
    // Refused by the argument parser: exit 2, the reason on the first line.
    for (args, says) in [
        (vec!["report", "nonsense"], "invalid value 'nonsense'"),
        (
            vec!["report", "sessions", "--format", "pdf"],
            "invalid value 'pdf'",
        ),
        (
            vec!["report", "sessions", "--since", "yesterday-ish"],
            "is not a time",
        ),
        (
            vec!["report", "sessions", "--ip", "10.0.0.0/33"],
            "is not an IP network",
        ),
        (
            vec!["report", "sessions", "--tz", "Mars/Olympus"],
            "unknown time zone \"Mars/Olympus\"",
        ),
    ] {
        let r = run_in(data, &args, "");
        assert_eq!(r.code, 2, "{args:?}: {r:?}");
        assert!(r.stdout.is_empty());
        let first = r.stderr.lines().next().unwrap();
        assert!(
            first.starts_with("error: ") && first.contains(says),
            "{args:?}: {first}"
        );
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "keep me");
    assert!(!missing.parent().unwrap().exists());
    assert_eq!(
        sql_count(data, "SELECT COUNT(*) FROM audit_events"),
        events_before,
        "nothing audited"
    );
    assert_eq!(
        listing(data),
        files_before,
        "no file made, none left behind"
    );
}

/// `events` with their times set to `at` (RFC 3339), in order.
fn at_times(events: Vec<(&str, NewEvent)>) -> Vec<NewEvent> {
    events
        .into_iter()
        .map(|(at, mut e)| {
            e.occurred_at_us = audit_db::time_us::parse(at).unwrap();
            e
        })
        .collect()
}

#[test]
fn times_and_days_follow_the_zone_in_tables_and_html() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let tech = Actor::technician("bob@example.com");
    let mut events = Vec::new();
    // Two sessions a UTC day apart that fall on one day in Tokyo (+09:00),
    // and a failed login between them.
    for (created, ended) in [
        ("2026-03-10T23:30:00Z", "2026-03-10T23:40:00Z"),
        ("2026-03-11T10:00:00Z", "2026-03-11T10:05:00Z"),
    ] {
        let s = uuid::Uuid::now_v7();
        events.push((
            created,
            NewEvent::now(
                tech.clone(),
                Source::gateway(),
                EventKind::SessionCreated(SessionCreated {
                    technician: "bob@example.com".into(),
                    pin_issued: true,
                    gateway: None,
                    group: None,
                }),
            )
            .in_session(s),
        ));
        events.push((
            ended,
            NewEvent::now(
                tech.clone(),
                Source::gateway(),
                EventKind::SessionEnded(SessionEnded {
                    reason: EndReason::Ended,
                    duration_ms: 600_000,
                    bytes_to_applet: 0,
                    bytes_to_console: 0,
                }),
            )
            .in_session(s),
        ));
    }
    events.insert(
        2,
        (
            "2026-03-10T23:50:00Z",
            NewEvent::now(
                Actor::system("gateway"),
                Source::gateway(),
                EventKind::LoginFailed(LoginFailed {
                    email: "bob@example.com".into(),
                    ip: "192.0.2.7".parse().unwrap(),
                    reason: LoginFailure::BadPassword,
                }),
            ),
        ),
    );
    append(data, at_times(events));

    // Machine formats: UTC days and times.
    let csv = run_in(data, &["report", "summary", "--format", "csv"], "");
    assert_eq!(csv.code, 0, "{csv:?}");
    let days: Vec<(String, String, String)> = csv_rows(&csv.stdout)
        .iter()
        .map(|r| (r[0].to_owned(), r[2].to_owned(), r[5].to_owned()))
        .collect();
    assert_eq!(
        days,
        [
            ("2026-03-10".into(), "1".into(), "1".into()),
            ("2026-03-11".into(), "1".into(), "0".into())
        ]
    );

    // Tokyo: one day holds both sessions and the failure.
    let table = run_in(
        data,
        &[
            "report",
            "summary",
            "--format",
            "table",
            "--tz",
            "Asia/Tokyo",
        ],
        "",
    );
    assert_eq!(table.code, 0, "{table:?}");
    let rows: Vec<Vec<&str>> = table
        .stdout
        .lines()
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 1, "{}", table.stdout);
    assert_eq!(
        (rows[0][0], rows[0][2], rows[0][5]),
        ("2026-03-11", "2", "1"),
        "{}",
        table.stdout
    );

    let sessions = run_in(
        data,
        &[
            "report",
            "sessions",
            "--format",
            "table",
            "--tz",
            "Asia/Tokyo",
        ],
        "",
    );
    assert!(
        sessions.stdout.contains("2026-03-11T08:30:00.000000+09:00")
            && sessions.stdout.contains("2026-03-11T19:00:00.000000+09:00"),
        "{}",
        sessions.stdout
    );
    assert!(!sessions.stdout.contains("23:30:00"), "{}", sessions.stdout);

    // HTML in Berlin, winter time: says its zone, writes its offsets.
    let html_path = data.join("berlin.html");
    let html = run_in(
        data,
        &[
            "report",
            "sessions",
            "--format",
            "html",
            "--tz",
            "Europe/Berlin",
            "-o",
            html_path.to_str().unwrap(),
        ],
        "",
    );
    assert_eq!(html.code, 0, "{html:?}");
    let page = std::fs::read_to_string(&html_path).unwrap();
    assert!(page.contains("Times are in Europe/Berlin"), "{page}");
    assert!(page.contains("2026-03-11T00:30:00.000000+01:00"), "{page}");

    // The zone is part of what the access report records of each run.
    let access = run_in(data, &["report", "access", "--format", "csv"], "");
    assert!(
        access.stdout.contains("--tz Asia/Tokyo"),
        "{}",
        access.stdout
    );
}

#[test]
fn the_html_report_is_self_contained_and_says_what_the_csv_says() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_technician(data);
    let gw = start_gateway(data, &["--no-webhooks"]);
    run_session(data, &gw);
    assert_eq!(login_cmd(data, &gw, "wrong").code, 2);
    assert_eq!(gw.stop().0, 0);
    synthetic_session(&sqlite_url(data), &["<script>alert('x')</script>", "plain"]);
    let shots = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("report-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let browser = testkit::Browser::start();
    for report in ["sessions", "summary", "chat"] {
        let html = data.join(format!("{report}.html"));
        run_in(
            data,
            &[
                "report",
                report,
                "--format",
                "html",
                "-o",
                html.to_str().unwrap(),
            ],
            "",
        )
        .ok();
        let text = std::fs::read_to_string(&html).unwrap();
        assert!(text.starts_with("<!DOCTYPE html>") && text.trim_end().ends_with("</html>"));
        // Nothing fetched, nothing run.
        for banned in ["<script", "http://", "https://", "src=", "<link"] {
            let found = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!found.contains(banned), "{report}: {banned} in the HTML");
        }
        assert!(
            text.contains("the log verified intact up to seq"),
            "{report}"
        );
        let csv = csv_rows(run_in(data, &["report", report, "--format", "csv"], "").ok());
        let Some(browser) = &browser else { continue };
        browser.goto(&format!("file://{}", html.display()));
        let rows = browser.js("return document.querySelectorAll('tbody tr').length");
        assert_eq!(
            rows.as_u64().unwrap() as usize,
            csv.len(),
            "{report}: the same rows"
        );
        let first = browser.js("return [...document.querySelectorAll('tbody tr:first-child td')].map(td => td.textContent)");
        let first: Vec<String> = serde_json::from_value(first).unwrap();
        let expected: Vec<String> = csv[0]
            .iter()
            .map(|c| c.strip_prefix('\'').unwrap_or(c).to_owned())
            .collect();
        assert_eq!(first, expected, "{report}: the same cells");
        if report != "chat" {
            let bars = browser.js("return document.querySelectorAll('.charts svg rect').length");
            assert!(bars.as_u64().unwrap() > 0, "{report}: charts drawn");
            let captions = browser.js(
                "return [...document.querySelectorAll('.charts figcaption')].map(c => c.textContent)",
            );
            let captions: Vec<String> = serde_json::from_value(captions).unwrap();
            let mut expected = vec!["Sessions per day, by technician", "Session durations"];
            if report == "summary" {
                expected.push("Failed logins per day");
            }
            assert_eq!(captions, expected, "{report}: the charts it should have");
        } else {
            let injected = browser.js("return document.querySelectorAll('tbody script').length");
            assert_eq!(injected.as_u64(), Some(0), "chat text is text, not markup");
        }
        browser.screenshot(&shots.join(format!("{report}.png")));
    }
}

/// `bundle` with one byte of member `name` flipped, written to `out`.
fn with_flipped_byte(bundle: &Path, name: &str, out: &Path) {
    use std::io::{Read, Write};
    let mut zip = zip::ZipArchive::new(std::fs::File::open(bundle).unwrap()).unwrap();
    let mut writer = zip::ZipWriter::new(std::fs::File::create(out).unwrap());
    for i in 0..zip.len() {
        let mut file = zip.by_index(i).unwrap();
        let member = file.name().unwrap().into_owned();
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes).unwrap();
        if member == name {
            let middle = bytes.len() / 2;
            bytes[middle] ^= 0x01;
        }
        writer
            .start_file(member, zip::write::SimpleFileOptions::default())
            .unwrap();
        writer.write_all(&bytes).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn an_evidence_bundle_verifies_and_any_changed_byte_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_technician(data);
    let gw = start_gateway(data, &["--no-webhooks"]);
    run_session(data, &gw);
    assert_eq!(gw.stop().0, 0);
    let bundle = data.join("evidence.zip");
    run_in(
        data,
        &["report", "sessions", "--bundle", bundle.to_str().unwrap()],
        "",
    )
    .ok();
    let check = |path: &Path, with_log: bool| {
        if with_log {
            run_in(data, &["report", "verify", path.to_str().unwrap()], "")
        } else {
            // Elsewhere, with no log: the files against the manifest only.
            let alone = tempfile::tempdir().unwrap();
            run_in(
                alone.path(),
                &["report", "verify", path.to_str().unwrap()],
                "",
            )
        }
    };
    let good = check(&bundle, true);
    assert!(good.ok().ends_with("intact\n"), "{good:?}");
    let events = sql_count(
        data,
        "SELECT COUNT(*) FROM audit_events WHERE session_id IS NOT NULL",
    );
    assert!(
        good.stdout
            .contains(&format!("events checked against the log: {events}")),
        "{good:?}"
    );
    assert!(check(&bundle, false).ok().ends_with("intact\n"));
    // A byte changed in any file is caught, and the file named.
    for member in [
        "sessions.csv",
        "sessions.html",
        "events.jsonl",
        "manifest.json",
    ] {
        let bad = data.join(format!("bad-{member}.zip"));
        with_flipped_byte(&bundle, member, &bad);
        let r = check(&bad, true);
        assert_ne!(r.code, 0, "{member}: {r:?}");
        let said = format!("{}{}", r.stdout, r.stderr);
        assert!(
            said.contains(member) || member == "manifest.json",
            "{member}: {said}"
        );
        if member == "manifest.json" {
            // Its own hash is in the log's report.generated event.
            assert!(
                said.contains("not one this log recorded making") || said.contains("manifest"),
                "{said}"
            );
        }
    }
    // A byte flipped in the zip itself (inside a compressed member).
    let mut raw = std::fs::read(&bundle).unwrap();
    let at = raw.len() / 3;
    raw[at] ^= 0xff;
    let raw_path = data.join("raw-flip.zip");
    std::fs::write(&raw_path, &raw).unwrap();
    let r = check(&raw_path, true);
    assert_ne!(r.code, 0, "{r:?}");
    // Not a bundle at all: one line, exit 2.
    let junk = data.join("junk.zip");
    std::fs::write(&junk, b"not a zip").unwrap();
    assert!(check(&junk, true)
        .error_line()
        .contains("not an evidence bundle"));
    // The bundle's making is in the access report.
    let access = csv_rows(run_in(data, &["report", "access", "--format", "csv"], "").ok());
    assert!(access.iter().any(|r| &r[4] == "bundle"));
}

#[test]
fn the_recordings_report_checks_each_file_against_the_log() {
    use sha2::Digest;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    let file = data.join("session.vrec");
    crate::recording::encode(data, "terminal", &file).ok();
    let bytes = std::fs::read(&file).unwrap();
    let stopped = audit_db::event::RecordingStopped {
        recording: "rec-1".into(),
        path: file.to_str().unwrap().to_owned(),
        size: bytes.len() as u64,
        sha256: hex::encode(sha2::Sha256::digest(&bytes)),
    };
    append(
        data,
        vec![NewEvent::now(
            Actor::technician("ann@example.com"),
            Source::console("127.0.0.1:1"),
            EventKind::RecordingStopped(stopped),
        )
        .in_session(uuid::Uuid::now_v7())],
    );
    let report = |check: bool| {
        let mut args = vec!["report", "recordings", "--format", "csv"];
        if check {
            args.push("--check");
        }
        csv_rows(run_in(data, &args, "").ok())
    };
    let unchecked = report(false);
    assert_eq!(unchecked.len(), 1);
    assert_eq!(&unchecked[0][8], "not checked (--check)");
    let checked = report(true);
    assert_eq!(&checked[0][8], "complete", "{:?}", checked[0]);
    // Its duration, as `vigil recording info` reads it too.
    let info = run_in(
        data,
        &["recording", "info", file.to_str().unwrap(), "--json"],
        "",
    );
    let info: serde_json::Value = serde_json::from_str(info.ok()).unwrap();
    let info_ms = info["duration_us"].as_i64().unwrap() / 1000;
    assert!(info_ms > 0);
    assert_eq!(checked[0][7].parse::<i64>().unwrap(), info_ms);
    // One byte changed in the file: no longer the recording the log holds.
    let mut changed = bytes.clone();
    let middle = changed.len() / 2;
    changed[middle] ^= 0x01;
    std::fs::write(&file, &changed).unwrap();
    assert_eq!(&report(true)[0][8], "altered");
    std::fs::remove_file(&file).unwrap();
    assert!(report(true)[0][8].starts_with("unreadable"));
}

/// The same reports on PostgreSQL, from a gateway writing there, counted
/// with SQL on the same schema.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_on_postgresql_say_what_the_log_holds() {
    let Some(db) = testkit::TestDb::postgres().await else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().to_owned();
    let url = db.url.clone();
    let vigil = move |args: &[&str], stdin: &str| {
        let mut all = vec!["--db", url.as_str()];
        all.extend_from_slice(args);
        run_in(&data, &all, stdin)
    };
    vigil(
        &[
            "admin",
            "group",
            "add",
            "tier1",
            "--permissions",
            "desktop_view",
        ],
        "",
    )
    .ok();
    vigil(
        &[
            "admin",
            "user",
            "add",
            "ann@example.com",
            "--group",
            "tier1",
        ],
        &format!("{}\n", crate::helpers::PASSWORD),
    )
    .ok();
    let gw = crate::helpers::start_gateway_with_db(dir.path(), &db.url);
    // The console and applet processes are driven by blocking reads.
    let gw = tokio::task::spawn_blocking({
        let path = dir.path().to_owned();
        move || {
            real_traffic(&path, &gw);
            gw
        }
    })
    .await
    .unwrap();
    assert_eq!(gw.stop().0, 0);
    let db = std::sync::Arc::new(db);
    let runtime = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking({
        let db = db.clone();
        let data = dir.path().to_owned();
        move || {
            synthetic_session(&db.url, &["plain", "=1+1"]);
            reports_match_sql(&|args| vigil(args, ""), &|sql| {
                runtime.block_on(db.query_i64(sql))
            });

            // The forms handed to people: HTML (verified first) and a
            // bundle that checks out against the PostgreSQL log.
            let html = data.join("summary.html");
            let html_arg = html.to_str().unwrap();
            vigil(
                &["report", "summary", "--format", "html", "-o", html_arg],
                "",
            )
            .ok();
            let page = std::fs::read_to_string(&html).unwrap();
            assert!(page.contains("the log verified intact"), "{page}");
            let bundle = data.join("sessions.zip");
            let bundle_arg = bundle.to_str().unwrap();
            vigil(&["report", "sessions", "--bundle", bundle_arg], "").ok();
            let check = vigil(&["report", "verify", bundle_arg], "");
            let said = check.ok();
            assert!(said.lines().any(|l| l == "intact"), "{said}");
            assert!(
                !said.contains("events checked against the log: 0"),
                "{said}"
            );
        }
    })
    .await
    .unwrap();
    let Ok(db) = std::sync::Arc::try_unwrap(db) else {
        panic!("the database is still shared");
    };
    db.cleanup().await;
}
