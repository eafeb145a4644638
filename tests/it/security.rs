//! The gateway under attack, as a separate process on loopback: concurrent
//! password guesses, bursts of logins, PIN guessing from many addresses,
//! out-of-range settings, and answers that could tell which accounts exist.

use std::net::{IpAddr, Ipv4Addr};

use protocol::wire::ErrorCode;
use session_core::client::ClientError;

use crate::helpers::{
    add_technician, assert_verifies, connector, events, refused_with, run_in, start_gateway,
    technician_and_gateway, GatewayProcess, PASSWORD,
};

const ANN: &str = "ann@example.com";

fn reason(event: &serde_json::Value) -> &str {
    event["payload"]["reason"].as_str().unwrap_or_default()
}

/// `attempts` logins at once, each with its own connection.
async fn at_once(
    connector: &session_core::client::Connector,
    attempts: &[(String, String)],
) -> Vec<Result<(), ClientError>> {
    let logins = attempts.iter().map(|(email, password)| async move {
        connector.login(email, password, None).await.map(drop)
    });
    futures::future::join_all(logins).await
}

#[tokio::test]
async fn a_hundred_guesses_at_once_check_at_most_the_lockout_threshold() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    let connector = connector(&gw);
    // 99 wrong passwords, then the right one, all in flight together.
    let mut attempts: Vec<_> = (0..99)
        .map(|i| (ANN.to_owned(), format!("wrong guess number {i}")))
        .collect();
    attempts.push((ANN.to_owned(), PASSWORD.to_owned()));
    let results = at_once(&connector, &attempts).await;
    let right = results.last().unwrap();
    assert_eq!(gw.stop().0, 0);

    // Walk ann's login events in log order: between successes, at most 5
    // passwords are checked and found wrong (checks that were under way
    // when the lock came may be logged after it), and nobody logs in once
    // the account is locked.
    let events = events(dir.path());
    let mut checked_wrong = 0;
    let mut locked = false;
    let mut successes = 0;
    for e in events.iter().filter(|e| e["payload"]["email"] == ANN) {
        match e["type"].as_str().unwrap() {
            "login.failed" if reason(e) == "bad_password" => {
                checked_wrong += 1;
                assert!(
                    checked_wrong <= 5,
                    "{checked_wrong} wrong passwords checked"
                );
            }
            "account.locked" => locked = true,
            "login.succeeded" => {
                assert!(!locked, "a login succeeded on a locked account: {e}");
                successes += 1;
                checked_wrong = 0;
            }
            _ => {}
        }
    }
    assert_eq!(
        successes,
        usize::from(right.is_ok()),
        "the right password succeeded only if it came before the lock"
    );
    if let Err(e) = right {
        assert!(
            matches!(
                e.code(),
                Some(ErrorCode::AccountLocked | ErrorCode::Throttled)
            ),
            "{e}"
        );
    }
    let checked = events
        .iter()
        .filter(|e| e["type"] == "login.failed" && reason(e) == "bad_password")
        .count();
    assert!(checked <= 5 + 5 * successes, "{checked} passwords checked");
    assert_verifies(dir.path());
}

#[tokio::test]
async fn a_hundred_logins_at_once_from_one_address_check_at_most_its_limit() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    let connector = connector(&gw);
    let attempts: Vec<_> = (0..100)
        .map(|i| (format!("nobody{i}@example.com"), "some password".to_owned()))
        .collect();
    let results = at_once(&connector, &attempts).await;
    assert_eq!(gw.stop().0, 0);
    let throttled = results
        .iter()
        .filter(|r| matches!(r, Err(e) if e.code() == Some(ErrorCode::Throttled)))
        .count();
    assert!(throttled >= 80, "{throttled} throttled");
    let failures: Vec<_> = events(dir.path())
        .into_iter()
        .filter(|e| e["type"] == "login.failed")
        .collect();
    let checked = failures
        .iter()
        .filter(|e| reason(e) == "unknown_account")
        .count();
    assert!(
        checked <= 20,
        "{checked} passwords checked from one address"
    );
    assert_eq!(failures.len(), 100, "every refusal is audited");
}

/// Resident and peak memory of process `pid`, in KiB.
fn memory_kib(pid: u32) -> (u64, u64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Memory the gateway may grow by under a burst of logins: its password
/// workers' working areas (19 MiB each, one per core) and the burst's
/// connections, with room to spare; unbounded checks grew it by 1.1 GB.
const BURST_GROWTH_KIB: u64 = 160 * 1024;

#[tokio::test]
async fn a_burst_of_failed_logins_stays_within_its_memory_bound() {
    let (dir, gw) = technician_and_gateway(&["--ip-failure-limit", "100000"], &[]);
    let connector = connector(&gw);
    let (before, _) = memory_kib(gw.pid());
    let mut busy = 0;
    for round in 0..3 {
        let attempts: Vec<_> = (0..300)
            .map(|i| (format!("n{round}x{i}@example.com"), "guess".to_owned()))
            .collect();
        busy += at_once(&connector, &attempts)
            .await
            .iter()
            .filter(|r| matches!(r, Err(e) if e.code() == Some(ErrorCode::Busy)))
            .count();
    }
    let (_, peak) = memory_kib(gw.pid());
    eprintln!("gateway RSS {before} KiB before 900 logins, peak {peak} KiB; {busy} busy");
    assert_eq!(gw.stop().0, 0);
    assert!(
        peak.saturating_sub(before) <= BURST_GROWTH_KIB,
        "the gateway grew from {before} KiB to a peak of {peak} KiB"
    );
    assert!(busy > 0, "900 checks at once never filled the queue");
    let refused_busy = events(dir.path())
        .iter()
        .filter(|e| e["type"] == "login.failed" && reason(e) == "busy")
        .count();
    assert_eq!(refused_busy, busy, "every busy refusal is audited");
}

#[tokio::test]
async fn unknown_accounts_lock_like_real_ones_and_only_the_password_holder_learns_disabled() {
    let (dir, gw) = technician_and_gateway(
        &["--lockout-threshold", "3", "--ip-failure-limit", "1000"],
        &[],
    );
    let connector = connector(&gw);
    for email in [ANN, "nobody@example.com"] {
        for _ in 0..3 {
            let r = connector.login(email, "a wrong password", None).await;
            assert_eq!(r.unwrap_err().code(), Some(ErrorCode::BadCredentials));
        }
        let r = connector.login(email, "a wrong password", None).await;
        assert_eq!(
            r.unwrap_err().code(),
            Some(ErrorCode::AccountLocked),
            "{email} answers as locked"
        );
    }
    run_in(dir.path(), &["admin", "user", "unlock", ANN], "").ok();
    run_in(dir.path(), &["admin", "user", "disable", ANN], "").ok();
    let wrong = connector.login(ANN, "a wrong password", None).await;
    assert_eq!(wrong.unwrap_err().code(), Some(ErrorCode::BadCredentials));
    let right = connector.login(ANN, PASSWORD, None).await;
    assert_eq!(right.unwrap_err().code(), Some(ErrorCode::AccountDisabled));
    assert_eq!(gw.stop().0, 0);
    let events = events(dir.path());
    let locks: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "account.locked")
        .collect();
    assert_eq!(locks.len(), 1, "only the real account's lock is an event");
    assert_eq!(locks[0]["payload"]["email"], ANN);
    assert_verifies(dir.path());
}

#[tokio::test]
async fn pins_guessed_from_many_addresses_are_withdrawn_and_raise_an_alarm() {
    let (dir, gw) = technician_and_gateway(
        &["--pin-guess-budget", "6", "--pin-gateway-limit", "12"],
        &[],
    );
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let session = tech.create_session().await.unwrap();
    // Three wrong PINs from each of four addresses: under the per-address
    // limit of 5, over the session's budget of 6 and the gateway's 12.
    let wrong: Vec<String> = (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .filter(|p| *p != session.pin)
        .take(12)
        .collect();
    for (i, pin) in wrong.iter().enumerate() {
        let from = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2 + (i / 3) as u8));
        let r = connector.clone().from_source(from).join(pin).await;
        assert_eq!(
            r.unwrap_err().code(),
            Some(ErrorCode::UnknownSession),
            "{i}"
        );
    }
    // The budget is spent: the right PIN no longer joins, from a fresh address.
    let fresh = connector
        .clone()
        .from_source(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 40)));
    let late = fresh.join(&session.pin).await;
    assert_eq!(late.unwrap_err().code(), Some(ErrorCode::Throttled));
    // A session link (its GUID) still joins.
    let by_guid = fresh.join(&session.guid.to_string()).await;
    assert!(by_guid.is_ok(), "{by_guid:?}");
    drop(by_guid);
    drop(tech);
    assert_eq!(gw.stop().0, 0);
    let events = events(dir.path());
    let withdrawn: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "session.pin_withdrawn")
        .collect();
    assert_eq!(withdrawn.len(), 1);
    assert_eq!(withdrawn[0]["session"], session.guid.to_string());
    let alarms: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "security.alarm")
        .collect();
    assert_eq!(alarms.len(), 1, "one alarm per window");
    assert_eq!(alarms[0]["payload"]["alarm"], "pin_guessing");
    assert_verifies(dir.path());
}

#[test]
fn every_policy_flag_is_stored_and_values_out_of_range_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let set = |args: &[&str]| {
        let mut all = vec!["admin", "policy", "set"];
        all.extend_from_slice(args);
        run_in(dir.path(), &all, "")
    };
    let all = [
        "--min-password-length",
        "14",
        "--password-max-age",
        "90",
        "--lockout-threshold",
        "4",
        "--lockout",
        "20m",
        "--ip-failure-limit",
        "30",
        "--ip-window",
        "5m",
        "--idle-timeout",
        "10m",
        "--pin-ttl",
        "5m",
        "--pin-failure-limit",
        "6",
        "--pin-window",
        "7m",
        "--pin-guess-budget",
        "50",
        "--pin-gateway-limit",
        "300",
    ];
    let shown: serde_json::Value = serde_json::from_str(set(&all).ok()).unwrap();
    let expected = serde_json::json!({
        "min_password_length": 14, "password_max_age_days": 90, "lockout_threshold": 4,
        "lockout_s": 1200, "ip_failure_limit": 30, "ip_window_s": 300, "idle_timeout_s": 600,
        "pin_ttl_s": 300, "pin_failure_limit": 6, "pin_window_s": 420,
        "pin_guess_budget": 50, "pin_gateway_limit": 300,
    });
    assert_eq!(shown, expected);
    let nevers: serde_json::Value =
        serde_json::from_str(set(&["--lockout", "never", "--password-max-age", "never"]).ok())
            .unwrap();
    assert_eq!(nevers["lockout_s"], serde_json::Value::Null);
    assert_eq!(nevers["password_max_age_days"], serde_json::Value::Null);

    for bad in [
        &["--min-password-length", "0"][..],
        &["--lockout-threshold", "0"],
        &["--lockout", "18446744073709551615s"],
        &["--pin-ttl", "18446744073709551615s"],
        &["--ip-window", "18446744073709551615s"],
        &["--pin-guess-budget", "100"],
        &["--idle-timeout", "0s"],
    ] {
        let line = set(bad).error_line().to_owned();
        assert!(line.contains(bad[0]) && line.contains("must be"), "{line}");
    }
    let after: serde_json::Value =
        serde_json::from_str(run_in(dir.path(), &["admin", "policy", "show"], "").ok()).unwrap();
    assert_eq!(after, nevers, "a refused change stores nothing");
}

#[test]
fn gateway_durations_out_of_range_are_refused_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--handshake-timeout", "18446744073709551615s"),
        ("--handshake-timeout", "0s"),
        ("--drain-timeout", "2h"),
    ] {
        let r = run_in(dir.path(), &["gateway", flag, value], "");
        assert_eq!(r.code, 2, "{r:#?}");
        assert!(r.stderr.contains("out of range"), "{}", r.stderr);
    }
}

/// What a console reports is believed only as far as the gateway can check
/// it: not the end user's words, not a time outside the session, not its
/// own count of a text it sends, and nothing after the session ended.
#[tokio::test]
async fn a_console_cannot_forge_backdate_or_miscount_what_it_reports() {
    use audit_db::event::{ChatMessage, Party};
    use audit_db::EventKind;
    use session_core::client::Report;

    let (dir, gw) = technician_and_gateway(&[], &[]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let mut live = crate::helpers::live_session(&connector, &mut tech).await;
    let chat = |from, text: &str, chars| {
        Report::now(&EventKind::ChatMessage(ChatMessage {
            from,
            text: Some(text.to_owned()),
            chars,
        }))
    };
    let forged = live
        .console_reporter
        .report(&chat(Party::EndUser, "I agree to everything", 21))
        .await;
    assert!(
        matches!(&forged, Err(ClientError::EventRefused(why)) if why.contains("own side")),
        "{forged:?}"
    );
    let long = "x".repeat(60_000);
    let miscounted = chat(Party::Technician, &long, 1);
    live.console_reporter.report(&miscounted).await.unwrap();
    let backdated = Report {
        occurred_us: i64::MIN,
        ..chat(Party::Technician, "from the dawn of time", 21)
    };
    live.console_reporter.report(&backdated).await.unwrap();
    live.ping().await;

    tokio::io::AsyncWriteExt::shutdown(&mut live.console)
        .await
        .unwrap();
    let _ = live.applet_end.await;
    // After the end: something that happened later is refused; a spooled
    // event from before the end is still taken on the control link.
    let later = Report {
        occurred_us: audit_db::time_us::now() + 10 * 60 * 1_000_000,
        ..chat(Party::Technician, "after the end", 13)
    }
    .in_session(live.guid);
    // The end is audited once the relay stops; wait until it is durable.
    for _ in 0..200 {
        if events(dir.path())
            .iter()
            .any(|e| e["type"] == "session.ended")
        {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let ended = tech.report(&later).await;
    assert!(
        matches!(&ended, Err(ClientError::EventRefused(why)) if why.contains("ended at")),
        "{ended:?}"
    );
    let spooled = chat(Party::Technician, "spooled during the session", 26).in_session(live.guid);
    tech.report(&spooled).await.unwrap();
    tech.logout().await.unwrap();
    assert_eq!(gw.stop().0, 0);

    let events = events(dir.path());
    let created = events
        .iter()
        .find(|e| e["type"] == "session.created")
        .unwrap();
    let stored = |id: uuid::Uuid| {
        events
            .iter()
            .find(|e| e["id"] == id.to_string())
            .unwrap_or_else(|| panic!("event {id} was not stored"))
    };
    assert_eq!(stored(miscounted.id)["payload"]["chars"], 60_000);
    let old = stored(backdated.id);
    let at = |e: &serde_json::Value, field: &str| {
        audit_db::time_us::parse(e[field].as_str().unwrap()).unwrap()
    };
    // Bounded by the session's start, less the 2 minutes allowed for clock
    // skew (the gateway notes the start a moment before it audits it).
    let earliest = at(created, "occurred_at") - 2 * 60 * 1_000_000 - 1_000_000;
    assert!(at(old, "occurred_at") >= earliest, "{old}");
    assert_eq!(
        old["reported_at"],
        audit_db::time_us::format(i64::MIN),
        "the claimed time is kept"
    );
    assert!(events
        .iter()
        .all(|e| e["payload"]["text"] != "I agree to everything"));
    assert!(events.iter().all(|e| e["id"] != later.id.to_string()));
    assert_eq!(stored(spooled.id)["session"], live.guid.to_string());
    assert_verifies(dir.path());
}

/// The data directory and every database file are its owner's alone
/// (SQLite gives `-wal` and `-shm` the database's mode); a database others
/// can read is refused.
#[test]
fn private_data_is_created_private_and_exposed_data_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("vigil-data");
    add_technician(&data);
    let gw = start_gateway(&data, &[]);
    let mode = |name: &str| {
        std::fs::metadata(data.join(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"))
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(""), 0o700, "the data directory");
    for file in [
        "audit.db",
        "audit.db-wal",
        "audit.db-shm",
        "tls/gateway.key",
    ] {
        assert_eq!(mode(file), 0o600, "{file}");
    }
    assert_eq!(gw.stop().0, 0);
    std::fs::set_permissions(
        data.join("audit.db"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let refused = start_gateway_refused(&data);
    assert!(
        refused.contains("readable by other users (mode 0644)"),
        "{refused}"
    );
}

/// Runs `vigil gateway` expecting it to refuse to start; returns its error line.
fn start_gateway_refused(data: &std::path::Path) -> String {
    let r = run_in(data, &["gateway", "--listen", "127.0.0.1:0"], "");
    r.error_line().to_owned()
}

/// Refusals that used to leave no trace are audited with their reason, and
/// nothing a client sends can forge a line of the gateway's log.
#[tokio::test]
async fn every_refusal_is_audited_and_no_client_text_forges_a_log_line() {
    use protocol::wire::{Frame, Kind, Message};

    let dir = tempfile::tempdir().unwrap();
    add_technician(dir.path());
    let log = dir.path().join("gateway.log");
    let gw = GatewayProcess::start_logging(
        std::path::Path::new(env!("CARGO_BIN_EXE_vigil")),
        dir.path(),
        &[],
        &[],
        std::fs::File::create(&log).unwrap().into(),
    );
    let connector = connector(&gw);
    let long = format!("{}@example.com", "a".repeat(600));
    for email in ["ann\n@example.com", long.as_str()] {
        let r = connector.login(email, "whatever it is", None).await;
        assert_eq!(r.unwrap_err().code(), Some(ErrorCode::BadCredentials));
    }
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let stranger = uuid::Uuid::new_v4();
    let picked = tech.pick_up(stranger).await;
    assert_eq!(picked.unwrap_err().code(), Some(ErrorCode::UnknownSession));
    let mut raw = connector.raw().await.unwrap();
    raw.send(&Message::Attach {
        guid: stranger,
        ticket: "00".repeat(16),
    })
    .await
    .unwrap();
    assert!(matches!(
        raw.recv().await.unwrap(),
        Some(Message::Error { .. })
    ));
    // An unknown key in the first message, carrying a line of its own.
    let forged = br#"{"email":"x@example.com","password":"y","new_password":null,"k\nINFO gateway::technician: admin@x.test logged in from 10.0.0.1":1}"#;
    let mut raw = connector.raw().await.unwrap();
    raw.write_frame(&Frame::with_type(Kind::Login as u8, forged))
        .await
        .unwrap();
    refused_with(&mut raw, ErrorCode::Malformed).await;
    drop(tech);
    assert_eq!(gw.stop().0, 0);

    let text = std::fs::read_to_string(&log).unwrap();
    let quoting: Vec<_> = text
        .lines()
        .filter(|l| l.contains("admin@x.test"))
        .collect();
    assert_eq!(quoting.len(), 1, "{text}");
    assert!(
        quoting[0].contains("closing connection from 127.0.0.1"),
        "{text}"
    );
    assert!(
        !text.contains('\u{1b}'),
        "no colour codes off a terminal: {text:?}"
    );

    let events = events(dir.path());
    let reasons: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "login.failed")
        .map(|e| (reason(e).to_owned(), e["payload"]["email"].clone()))
        .collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons.iter().all(|(r, _)| r == "malformed_email"));
    assert_eq!(reasons[0].1, "ann\\n@example.com", "escaped, not raw");
    assert!(reasons[1].1.as_str().unwrap().ends_with('…'), "shortened");
    let pickup = events
        .iter()
        .find(|e| e["type"] == "session.pickup_refused")
        .expect("the failed pickup is audited");
    assert_eq!(pickup["payload"]["reason"], "not_waiting");
    let attach = events
        .iter()
        .find(|e| e["type"] == "session.attach_refused")
        .expect("the failed attach is audited");
    assert_eq!(attach["payload"]["guid"], stranger.to_string());
    assert_verifies(dir.path());
}

/// Options a command has no use for are refused rather than ignored, and
/// every option of the end user's applet says what it is for.
#[test]
fn options_mean_something_to_every_command_that_takes_them() {
    let dir = tempfile::tempdir().unwrap();
    let r = crate::helpers::vigil(
        "sqlite:///nowhere/audit.db",
        &[
            "applet",
            "--gateway",
            "127.0.0.1:1",
            "--fingerprint",
            "00",
            "--pin",
            "1",
        ],
    )
    .output()
    .unwrap();
    let r: crate::helpers::Run = r.into();
    let line = r.error_line();
    assert!(
        line.contains("--data and --db mean nothing to `vigil applet`"),
        "{line}"
    );
    let help = run_in(dir.path(), &["applet", "--help"], "")
        .ok()
        .to_owned();
    assert!(!help.contains("--db"), "{help}");
    let described = |option: &str| {
        let at = help
            .find(option)
            .unwrap_or_else(|| panic!("{option} missing: {help}"));
        help[at..]
            .lines()
            .nth(1)
            .unwrap_or_default()
            .trim()
            .to_owned()
    };
    assert_eq!(
        described("--download-dir <DIR>"),
        "Where files from the technician are saved"
    );
    assert!(described("--display <:N>").starts_with("The X display the technician may view"));
}
