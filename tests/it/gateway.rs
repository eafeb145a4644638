//! The gateway as its own process, with real TLS on loopback: logins and
//! lockout, trust, PINs, sessions relayed end to end, bad input, shutdown.

use std::time::{Duration, Instant};

use protocol::wire::{ErrorCode, Message};
use session_core::client::ClientError;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{
    add_technician, assert_verifies, connector, events, live_session, login_cmd, refused_with,
    run_in, start_gateway, start_gateway_with_db, technician_and_gateway, PASSWORD,
};

const ANN: &str = "ann@example.com";

fn of_type<'a>(events: &'a [serde_json::Value], kind: &str) -> Vec<&'a serde_json::Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

#[track_caller]
fn refused(result: Result<impl std::fmt::Debug, ClientError>, code: ErrorCode) {
    match result {
        Err(e) => assert_eq!(e.code(), Some(code), "{e}"),
        Ok(v) => panic!("expected {code:?}, got {v:?}"),
    }
}

#[test]
fn login_prints_the_group_and_permissions_with_ca_or_fingerprint() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    let out = login_cmd(dir.path(), &gw, PASSWORD).ok().to_owned();
    assert!(out.contains("group: tier1"), "{out}");
    assert!(
        out.contains("permissions: desktop_view, remote_control"),
        "{out}"
    );
    let by_pin = run_in(
        dir.path(),
        &[
            "login",
            "--gateway",
            &gw.addr,
            "--fingerprint",
            &gw.fingerprint,
            "--user",
            ANN,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(by_pin.ok().contains("group: tier1"));
    let (code, _) = gw.stop();
    assert_eq!(code, 0);
    let events = events(dir.path());
    let logins = of_type(&events, "login.succeeded");
    assert_eq!(logins.len(), 2);
    assert_eq!(logins[0]["payload"]["ip"], "127.0.0.1");
    assert_verifies(dir.path());
}

#[test]
fn five_wrong_passwords_lock_the_account_until_an_admin_unlocks_it() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    for attempt in 1..=5 {
        let r = login_cmd(dir.path(), &gw, "not the password at all");
        let line = r.error_line();
        assert!(
            line.contains("wrong email or password"),
            "attempt {attempt}: {line}"
        );
    }
    let locked = login_cmd(dir.path(), &gw, PASSWORD);
    let line = locked.error_line();
    assert!(line.contains("locked"), "{line}");
    // A wrong password on a locked account gets the very same answer.
    let wrong = login_cmd(dir.path(), &gw, "still not the password");
    assert_eq!(wrong.error_line(), line);

    let list = run_in(dir.path(), &["admin", "user", "list"], "");
    assert!(list.ok().contains("locked"), "{}", list.stdout);
    run_in(
        dir.path(),
        &["admin", "user", "unlock", ANN, "--as", "root@example.com"],
        "",
    )
    .ok();
    login_cmd(dir.path(), &gw, PASSWORD).ok();

    assert_eq!(gw.stop().0, 0);
    let events = events(dir.path());
    assert_eq!(of_type(&events, "login.failed").len(), 7);
    let lock = of_type(&events, "account.locked");
    assert_eq!(lock.len(), 1);
    assert_eq!(lock[0]["payload"]["ip"], "127.0.0.1");
    assert_eq!(lock[0]["payload"]["failed_attempts"], 5);
    let unlock = of_type(&events, "account.unlocked");
    assert_eq!(unlock[0]["actor"], "admin:root@example.com");
    assert_verifies(dir.path());
}

#[test]
fn an_untrusted_ca_or_a_wrong_fingerprint_is_refused_by_the_client() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    // Another gateway's development CA.
    let other = tempfile::tempdir().unwrap();
    protocol::tls::DevCertificates::load_or_create(other.path(), &[]).unwrap();
    let other_ca = other.path().join("tls/ca.pem");
    let r = run_in(
        dir.path(),
        &[
            "login",
            "--gateway",
            &gw.addr,
            "--ca",
            other_ca.to_str().unwrap(),
            "--user",
            ANN,
        ],
        &format!("{PASSWORD}\n"),
    );
    assert!(r.error_line().contains("not trusted"), "{}", r.stderr);
    let wrong = "ab".repeat(32);
    let r = run_in(
        dir.path(),
        &[
            "login",
            "--gateway",
            &gw.addr,
            "--fingerprint",
            &wrong,
            "--user",
            ANN,
        ],
        &format!("{PASSWORD}\n"),
    );
    let line = r.error_line();
    assert!(
        line.contains("does not match the --fingerprint given"),
        "{line}"
    );
    assert_eq!(line.matches(&gw.addr).count(), 1, "said once: {line}");
    assert_eq!(gw.stop().0, 0);
    assert!(of_type(&events(dir.path()), "login.succeeded").is_empty());
}

#[test]
fn a_disallowed_address_an_expired_password_and_a_disabled_account_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    add_technician(dir.path());
    run_in(
        dir.path(),
        &[
            "admin",
            "group",
            "add",
            "remote",
            "--allow-ip",
            "10.0.0.0/8",
        ],
        "",
    )
    .ok();
    run_in(
        dir.path(),
        &[
            "admin",
            "user",
            "add",
            "bob@example.com",
            "--group",
            "remote",
        ],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    run_in(
        dir.path(),
        &["admin", "user", "passwd", ANN, "--must-change"],
        "another fine passphrase\n",
    )
    .ok();
    let gw = start_gateway(dir.path(), &[]);
    let ca = gw.ca.to_str().unwrap().to_owned();
    let login = |user: &str, input: &str, extra: &[&str]| {
        let mut args = vec!["login", "--gateway", &gw.addr, "--ca", &ca, "--user", user];
        args.extend_from_slice(extra);
        run_in(dir.path(), &args, input)
    };
    let bob = login("bob@example.com", &format!("{PASSWORD}\n"), &[]);
    assert!(
        bob.error_line().contains("not allowed from 127.0.0.1"),
        "{}",
        bob.stderr
    );

    let ann = login(ANN, "another fine passphrase\n", &[]);
    assert!(
        ann.error_line().contains("must be changed"),
        "{}",
        ann.stderr
    );
    let weak = login(
        ANN,
        "another fine passphrase\npassword1234\n",
        &["--new-password"],
    );
    assert!(weak.error_line().contains("common"), "{}", weak.stderr);
    login(
        ANN,
        "another fine passphrase\nbrand new passphrase\n",
        &["--new-password"],
    )
    .ok();
    login(ANN, "brand new passphrase\n", &[]).ok();

    run_in(dir.path(), &["admin", "user", "disable", ANN], "").ok();
    let disabled = login(ANN, "brand new passphrase\n", &[]);
    assert!(
        disabled.error_line().contains("disabled"),
        "{}",
        disabled.stderr
    );

    assert_eq!(gw.stop().0, 0);
    let events = events(dir.path());
    let reasons: Vec<_> = of_type(&events, "login.failed")
        .iter()
        .map(|e| e["payload"]["reason"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        reasons,
        ["ip_not_allowed", "password_expired", "account_disabled"]
    );
    assert_eq!(of_type(&events, "password.changed").len(), 1);
    assert_verifies(dir.path());
}

#[tokio::test]
async fn failed_logins_are_throttled_per_address_across_accounts() {
    let (dir, gw) = technician_and_gateway(&["--ip-failure-limit", "3"], &[]);
    let connector = connector(&gw);
    for user in ["x@example.com", "y@example.com", "z@example.com"] {
        refused(
            connector.login(user, "whatever it is", None).await,
            ErrorCode::BadCredentials,
        );
    }
    // Even the right password of an unlocked account waits now.
    let throttled = connector.login(ANN, PASSWORD, None).await;
    match &throttled {
        Err(ClientError::Refused { retry_after_s, .. }) => {
            assert!(retry_after_s.is_some_and(|s| s > 0))
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    refused(throttled, ErrorCode::Throttled);
    assert_eq!(gw.stop().0, 0);
    let accounts = run_in(dir.path(), &["admin", "user", "list", "--json"], "");
    let ann = &crate::helpers::json_lines(accounts.ok())[0];
    assert_eq!(
        ann["failed_logins"], 0,
        "the throttled attempt never reached the account"
    );
}

#[tokio::test]
async fn pins_are_single_use_expire_and_cannot_be_walked() {
    let (dir, gw) = technician_and_gateway(&["--pin-ttl", "2s", "--pin-failure-limit", "4"], &[]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();

    let used = tech.create_session().await.unwrap();
    let _waiting = connector.join(&used.pin).await.unwrap();
    refused(connector.join(&used.pin).await, ErrorCode::UnknownSession);

    let expiring = tech.create_session().await.unwrap();
    // Wait out the PIN's announced lifetime, then try it.
    let expiry = audit_db::time_us::to_datetime(expiring.expires_us).unwrap();
    let left = expiry - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(100);
    tokio::time::sleep(left.try_into().unwrap_or_default()).await;
    // The sweeper may have removed it first (then it is unknown); either way it cannot be joined.
    let expired = connector.join(&expiring.pin).await;
    assert!(
        matches!(
            expired.as_ref().map_err(|e| e.code()),
            Err(Some(ErrorCode::Expired | ErrorCode::UnknownSession))
        ),
        "{expired:?}"
    );

    // Wrong PINs from this address (two refusals so far): two more, then
    // even the right PIN is throttled.
    let fresh = tech.create_session().await.unwrap();
    for wrong in ["000000", "000001", "000002"]
        .into_iter()
        .filter(|p| *p != fresh.pin)
        .take(2)
    {
        refused(connector.join(wrong).await, ErrorCode::UnknownSession);
    }
    refused(connector.join(&fresh.pin).await, ErrorCode::Throttled);

    drop(tech);
    assert_eq!(gw.stop().0, 0);
    let events = events(dir.path());
    let refusals: Vec<_> = of_type(&events, "session.join_refused")
        .iter()
        .map(|e| e["payload"]["reason"].as_str().unwrap().to_owned())
        .collect();
    assert!(refusals.contains(&"throttled".to_owned()), "{refusals:?}");
    assert!(refusals.contains(&"unknown".to_owned()), "{refusals:?}");
    let ends = of_type(&events, "session.ended");
    assert!(
        ends.iter()
            .any(|e| e["session"] == expiring.guid.to_string()
                && e["payload"]["reason"] == "expired"),
        "{ends:?}"
    );
    assert_verifies(dir.path());
}

#[tokio::test]
async fn a_session_is_relayed_end_to_end_and_its_end_audited() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let mut live = live_session(&connector, &mut tech).await;
    live.ping().await;
    // 1 MiB console → applet.
    let payload: Vec<u8> = (0..1 << 20).map(|i: u32| (i % 251) as u8).collect();
    let (console, applet) = (&mut live.console, &mut live.applet);
    let send = async {
        console.write_all(&payload).await.unwrap();
        console.flush().await.unwrap();
    };
    let mut got = vec![0u8; payload.len()];
    let recv = applet.read_exact(&mut got);
    let ((), r) = tokio::join!(send, recv);
    r.unwrap();
    assert!(got == payload, "the bytes arrived changed");

    // The console leaves: the applet's side ends too, with the reason.
    live.console.shutdown().await.unwrap();
    drop(live.console);
    let applet_reason = tokio::time::timeout(Duration::from_secs(10), live.applet_end)
        .await
        .unwrap()
        .unwrap();
    assert!(
        applet_reason.starts_with("ended_by_console"),
        "{applet_reason}"
    );
    let _ = live.console_end.await;
    tech.logout().await.unwrap();
    assert_eq!(gw.stop().0, 0);

    let events = events(dir.path());
    let session = live.guid.to_string();
    let kinds: Vec<_> = events
        .iter()
        .filter(|e| e["session"] == session)
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        kinds,
        [
            "session.created",
            "session.joined",
            "session.picked_up",
            "session.ended"
        ]
    );
    let end = of_type(&events, "session.ended")[0];
    assert!(end["payload"]["bytes_to_applet"].as_u64().unwrap() > 1 << 20);
    assert!(end["payload"]["bytes_to_console"].as_u64().unwrap() > 0);
    assert!(end["payload"]["reason"]
        .as_str()
        .unwrap()
        .starts_with("ended_by_console"));
    assert_verifies(dir.path());
}

/// Reads until the gateway closes the connection; returns how long it took.
async fn closed_within(tcp: &mut tokio::net::TcpStream, limit: Duration) -> Duration {
    let start = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match tokio::time::timeout_at((start + limit).into(), tcp.read(&mut buf)).await {
            Err(_) => panic!("the gateway kept the connection open for {limit:?}"),
            Ok(Ok(0)) | Ok(Err(_)) => return start.elapsed(),
            Ok(Ok(_)) => continue,
        }
    }
}

#[tokio::test]
async fn bad_input_closes_only_its_own_connection() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let mut live = live_session(&connector, &mut tech).await;

    // Not TLS at all.
    let mut garbage = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    garbage
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    closed_within(&mut garbage, Duration::from_secs(5)).await;
    live.ping().await;

    // A real TLS ClientHello, then silence: dropped by the handshake deadline (10 s).
    let config =
        protocol::tls::client_config(&protocol::tls::Trust::ca_file(&gw.ca).unwrap()).unwrap();
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut hello = Vec::new();
    rustls::ClientConnection::new(config, name)
        .unwrap()
        .write_tls(&mut hello)
        .unwrap();
    let mut silent = tokio::net::TcpStream::connect(&gw.addr).await.unwrap();
    silent.write_all(&hello).await.unwrap();
    let took = closed_within(&mut silent, Duration::from_secs(12)).await;
    assert!(
        took >= Duration::from_secs(5),
        "dropped too early to be the deadline: {took:?}"
    );
    live.ping().await;

    // After Hello: an oversize length prefix, an unknown type, a malformed
    // body, a message out of turn. Each gets its error code, then the close.
    let cases: [(&[u8], ErrorCode); 3] = [
        (&[0xff, 0xff, 0xff, 0xff, 0x10], ErrorCode::Oversize),
        (&[0, 0, 0, 1, 0x7f], ErrorCode::UnknownType),
        (&[0, 0, 0, 3, 0x10, b'{', b'x'], ErrorCode::Malformed),
    ];
    for (bytes, code) in cases {
        let mut raw = connector.raw().await.unwrap();
        raw.write_raw(bytes).await.unwrap();
        match raw.recv().await.unwrap() {
            Some(Message::Error {
                code: got, message, ..
            }) => assert_eq!(got, code, "{message}"),
            other => panic!("expected {code:?}, got {other:?}"),
        }
        assert_eq!(raw.recv().await.unwrap(), None, "closed after the error");
        live.ping().await;
    }
    let mut raw = connector.raw().await.unwrap();
    raw.send(&Message::Attached { guid: live.guid })
        .await
        .unwrap();
    refused_with(&mut raw, ErrorCode::UnexpectedMessage).await;
    // A forged attach to the live session with a wrong ticket.
    let mut raw = connector.raw().await.unwrap();
    let forged = Message::Attach {
        guid: live.guid,
        ticket: "00".repeat(16),
    };
    raw.send(&forged).await.unwrap();
    refused_with(&mut raw, ErrorCode::UnknownSession).await;
    live.ping().await;

    live.console.shutdown().await.unwrap();
    let _ = live.applet_end.await;
    tech.logout().await.unwrap();
    assert_eq!(gw.stop().0, 0);
    assert_verifies(dir.path());
}

#[test]
fn only_tls_1_3_is_offered() {
    let (_dir, gw) = technician_and_gateway(&[], &[]);
    let s_client = |version: &str| {
        std::process::Command::new("openssl")
            .args(["s_client", "-connect", &gw.addr, version, "-CAfile"])
            .arg(&gw.ca)
            .stdin(std::process::Stdio::null())
            .output()
            .expect("running openssl (the test scripts install it)")
    };
    let old = s_client("-tls1_1");
    assert!(!old.status.success(), "TLS 1.1 was accepted");
    let new = s_client("-tls1_3");
    assert!(
        new.status.success(),
        "{}",
        String::from_utf8_lossy(&new.stderr)
    );
    let text = String::from_utf8_lossy(&new.stdout);
    assert!(text.contains("TLSv1.3"), "{text}");
    assert!(text.contains("Verify return code: 0 (ok)"), "{text}");
    let tls12 = s_client("-tls1_2");
    assert!(!tls12.status.success(), "TLS 1.2 was accepted");
    assert_eq!(gw.stop().0, 0);
}

#[tokio::test]
async fn an_idle_technician_is_logged_off() {
    let (dir, gw) = technician_and_gateway(&["--idle-timeout", "1s"], &[]);
    let mut tech = connector(&gw).login(ANN, PASSWORD, None).await.unwrap();
    assert_eq!(tech.info.idle_timeout_s, 1);
    let notice = tokio::time::timeout(Duration::from_secs(10), tech.next_notice())
        .await
        .unwrap();
    refused(notice, ErrorCode::IdleTimeout);
    assert_eq!(gw.stop().0, 0);
    let events = events(dir.path());
    let logouts = of_type(&events, "logout");
    assert_eq!(logouts.len(), 1);
    assert_eq!(logouts[0]["payload"]["reason"], "idle");
}

#[tokio::test]
async fn sigterm_ends_live_sessions_after_the_drain_time_and_exits_cleanly() {
    let (dir, gw) = technician_and_gateway(&[], &["--drain-timeout", "1s"]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let mut live = live_session(&connector, &mut tech).await;
    live.ping().await;
    let unjoined = tech.create_session().await.unwrap();
    let stopping = tokio::task::spawn_blocking(move || gw.stop());
    let reason = tokio::time::timeout(Duration::from_secs(30), live.applet_end)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(reason, "gateway_shutdown");
    let (code, output) = stopping.await.unwrap();
    assert_eq!(code, 0, "{output}");
    let events = events(dir.path());
    let ends = of_type(&events, "session.ended");
    for guid in [live.guid, unjoined.guid] {
        let end = ends.iter().find(|e| e["session"] == guid.to_string());
        assert_eq!(
            end.expect("every session's end is audited")["payload"]["reason"],
            "gateway_shutdown"
        );
    }
    assert_eq!(
        of_type(&events, "logout")[0]["payload"]["reason"],
        "shutdown"
    );
    assert_verifies(dir.path());
}

#[tokio::test]
async fn the_gateway_runs_on_postgresql() {
    let Some(db) = testkit::TestDb::postgres().await else {
        return;
    };
    let url = db.url.clone();
    let dir = tempfile::tempdir().unwrap();
    let run = |args: &[&str], stdin: &str| {
        let mut all = vec!["--db", url.as_str()];
        all.extend_from_slice(args);
        run_in(dir.path(), &all, stdin)
    };
    run(
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
    run(
        &["admin", "user", "add", ANN, "--group", "tier1"],
        &format!("{PASSWORD}\n"),
    )
    .ok();
    run(&["admin", "policy", "set", "--lockout-threshold", "2"], "").ok();
    let gw = start_gateway_with_db(dir.path(), &url);
    for _ in 0..2 {
        assert!(login_cmd(dir.path(), &gw, "not the password at all")
            .error_line()
            .contains("wrong"));
    }
    assert!(login_cmd(dir.path(), &gw, PASSWORD)
        .error_line()
        .contains("locked"));
    run(&["admin", "user", "unlock", ANN], "").ok();
    assert!(login_cmd(dir.path(), &gw, PASSWORD)
        .ok()
        .contains("desktop_view"));
    assert_eq!(gw.stop().0, 0);
    let verify = run(&["audit", "verify"], "");
    assert_eq!(verify.code, 0, "{verify:#?}");
}

#[tokio::test]
async fn a_malformed_csr_is_refused_without_losing_the_pin_or_the_session() {
    let (dir, gw) = technician_and_gateway(&[], &[]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let session = tech.create_session().await.unwrap();

    let mut raw = connector.raw().await.unwrap();
    raw.send(&Message::Join {
        code: session.pin.clone(),
        csr: "not a CSR".into(),
    })
    .await
    .unwrap();
    refused_with(&mut raw, ErrorCode::Malformed).await;
    // The PIN still works for the real applet.
    let waiting = connector.join(&session.pin).await.unwrap();

    // A console CSR that is garbage: refused, and the session still waits.
    let mut raw_tech = connector.raw().await.unwrap();
    raw_tech
        .send(&Message::Login {
            email: ANN.into(),
            password: PASSWORD.into(),
            new_password: None,
        })
        .await
        .unwrap();
    assert!(matches!(
        raw_tech.recv().await.unwrap(),
        Some(Message::LoginOk { .. })
    ));
    raw_tech
        .send(&Message::PickUp {
            guid: session.guid,
            csr: "garbage".into(),
        })
        .await
        .unwrap();
    refused_with(&mut raw_tech, ErrorCode::Malformed).await;
    assert_eq!(tech.queue().await.unwrap().len(), 1, "still waiting");
    let picked = tech.pick_up(session.guid).await.unwrap();
    let _console = connector.attach(picked).await.unwrap();
    waiting.paired().await.unwrap();
    drop(raw_tech);
    assert_eq!(gw.stop().0, 0);
    assert_verifies(dir.path());
}

#[tokio::test]
async fn reported_events_are_stamped_by_the_gateway_and_acknowledged_once_durable() {
    use audit_db::event::{ChatMessage, Consent, LoginSucceeded, Party, PermissionGranted};
    use audit_db::{EventKind, Permission};
    use session_core::client::Report;

    let dir = tempfile::tempdir().unwrap();
    add_technician(dir.path());
    run_in(
        dir.path(),
        &["admin", "group", "set", "tier1", "--store-chat", "false"],
        "",
    )
    .ok();
    let gw = start_gateway(dir.path(), &[]);
    let connector = connector(&gw);
    let mut tech = connector.login(ANN, PASSWORD, None).await.unwrap();
    let mut live = live_session(&connector, &mut tech).await;

    let chat = Report::now(&EventKind::ChatMessage(ChatMessage {
        from: Party::Technician,
        text: Some("canary text".into()),
        chars: 11,
    }));
    let first = live.console_reporter.report(&chat).await.unwrap();
    let again = live.console_reporter.report(&chat).await.unwrap();
    assert_eq!(
        (again.seq, again.duplicate),
        (first.seq, true),
        "a resend is stored once"
    );
    let granted = Report::now(&EventKind::PermissionGranted(PermissionGranted {
        permission: Permission::DesktopView,
        consent: Consent::EndUser,
    }));
    live.applet_reporter.report(&granted).await.unwrap();

    // Not what an applet witnesses; not this link's session.
    let forged = Report::now(&EventKind::LoginSucceeded(LoginSucceeded {
        email: ANN.into(),
        ip: "127.0.0.1".parse().unwrap(),
    }));
    let err = live.applet_reporter.report(&forged).await.unwrap_err();
    assert!(matches!(err, ClientError::EventRefused(_)), "{err}");
    let elsewhere = Report::now(&EventKind::ChatMessage(ChatMessage {
        from: Party::EndUser,
        text: None,
        chars: 1,
    }))
    .in_session(uuid::Uuid::new_v4());
    assert!(live.applet_reporter.report(&elsewhere).await.is_err());
    live.ping().await;

    // After the session: the console's control link may still report for
    // its own session (spooled events), never for someone else's.
    live.console.shutdown().await.unwrap();
    let _ = live.applet_end.await;
    let late = Report::now(&EventKind::ChatMessage(ChatMessage {
        from: Party::Technician,
        text: Some("late".into()),
        chars: 4,
    }))
    .in_session(live.guid);
    tech.report(&late).await.unwrap();
    let foreign = late.clone().in_session(uuid::Uuid::new_v4());
    let foreign = Report {
        id: uuid::Uuid::now_v7(),
        ..foreign
    };
    assert!(matches!(
        tech.report(&foreign).await,
        Err(ClientError::EventRefused(_))
    ));
    tech.logout().await.unwrap();
    assert_eq!(gw.stop().0, 0);

    let events = events(dir.path());
    let chats = of_type(&events, "chat.message");
    assert_eq!(chats.len(), 2);
    for chat in &chats {
        assert_eq!(chat["session"], live.guid.to_string());
        assert_eq!(
            chat["payload"]["text"],
            serde_json::Value::Null,
            "chat storage is off"
        );
    }
    assert_eq!(chats[0]["actor"], "technician:ann@example.com");
    assert_eq!(chats[0]["source"], "console@127.0.0.1");
    let grant = of_type(&events, "permission.granted")[0];
    assert_eq!(grant["actor"], "end-user");
    assert_eq!(grant["source"], "applet@127.0.0.1");
    assert_eq!(
        of_type(&events, "login.succeeded").len(),
        1,
        "the forged login was not stored"
    );
    assert_verifies(dir.path());
}
