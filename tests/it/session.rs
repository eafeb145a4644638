//! The support session itself, console and applet engines talking end to
//! end through a real gateway process: permissions and consent, chat, files
//! both ways with their hashes, system information, and what is audited.

use std::path::Path;
use std::time::Duration;

use audit_db::event::Denial;
use audit_db::Permission;
use recorder::input::InputEvent;
use session_core::lines::{AppletLine, ConsoleLine};
use session_core::session::applet::{self, AppletCommand, AppletConfig, AppletEvent, ConsentMode};
use session_core::session::console::{Console, ConsoleEvent, Decision, Transfer};
use session_core::session::view::{InputSink, OpenInput, OpenScreen, ScreenSource};
use tokio::sync::mpsc;

use crate::helpers::{
    add_technician, applet_args, assert_verifies, connector, console_args, events, live_session,
    run_in, spawn, start_gateway, wait_line, PASSWORD,
};

/// A gateway whose group `tier1` has `permissions`, and a live session's two engines.
struct Running {
    console: Console<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>,
    console_events: mpsc::Receiver<ConsoleEvent>,
    applet_commands: mpsc::Sender<AppletCommand>,
    applet_events: mpsc::Receiver<AppletEvent>,
    applet: tokio::task::JoinHandle<Result<String, session_core::session::SessionError>>,
    guid: uuid::Uuid,
    gw: crate::helpers::GatewayProcess,
    _tech: session_core::client::Technician,
}

impl Running {
    /// Closes the console, lets the applet end, and stops the gateway cleanly.
    async fn close(self) {
        drop(self.console);
        let _ = self.applet.await;
        assert_eq!(self.gw.stop().0, 0);
    }
}

async fn running(data: &Path, permissions: &str, consent: ConsentMode) -> Running {
    running_with(
        data,
        &["--permissions", permissions],
        consent,
        &[],
        None,
        None,
    )
    .await
}

/// Like [`running`], with `group` as `vigil admin group set tier1` options.
async fn running_with(
    data: &Path,
    group: &[&str],
    consent: ConsentMode,
    gateway_args: &[&str],
    screen: Option<OpenScreen>,
    input: Option<OpenInput>,
) -> Running {
    add_technician(data);
    let mut set = vec!["admin", "group", "set", "tier1"];
    set.extend_from_slice(group);
    run_in(data, &set, "").ok();
    let gw = start_gateway(data, gateway_args);
    let connector = connector(&gw);
    let mut tech = connector
        .login("ann@example.com", PASSWORD, None)
        .await
        .unwrap();
    let live = live_session(&connector, &mut tech).await;
    let (commands_tx, commands) = mpsc::channel(16);
    let (events_tx, applet_events) = mpsc::channel(64);
    let config = AppletConfig {
        consent,
        download_dir: data.join("applet-downloads"),
        screen,
        fps: 10,
        input,
    };
    let applet = tokio::spawn(applet::run(
        live.applet,
        live.console_identity.clone(),
        config,
        live.applet_reporter,
        commands,
        events_tx,
    ));
    let spool = Some(std::sync::Arc::new(session_core::spool::Spool::new(
        &data.join("spool.jsonl"),
    )));
    let (console, console_events) = Console::start(
        live.console,
        &live.console_identity,
        live.console_reporter,
        spool,
        data.join("console-downloads"),
    );
    Running {
        console,
        console_events,
        applet_commands: commands_tx,
        applet_events,
        applet,
        guid: live.guid,
        gw,
        _tech: tech,
    }
}

#[tokio::test]
async fn a_full_session_chats_moves_files_both_ways_and_audits_every_step() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = running(
        dir.path(),
        "send_files,receive_files,system_information,desktop_view",
        ConsentMode::GrantAll,
    )
    .await;

    s.console.chat("hello from the technician").await.unwrap();
    assert_eq!(
        s.applet_events.recv().await,
        Some(AppletEvent::Chat("hello from the technician".into()))
    );
    s.applet_commands
        .send(AppletCommand::Chat("hi, it broke".into()))
        .await
        .unwrap();
    assert_eq!(
        s.console_events.recv().await,
        Some(ConsoleEvent::Chat("hi, it broke".into()))
    );

    // Not granted, and (no display given to this applet) none shared: refused, never silently allowed.
    let remote = s.console.ask(Permission::RemoteControl).await.unwrap();
    assert_eq!(remote, Decision::Denied(Denial::NotGranted));
    let view = s.console.ask(Permission::DesktopView).await.unwrap();
    assert_eq!(view, Decision::Denied(Denial::NoDisplay));

    // A file to the end user, 1 MiB and a bit.
    let outgoing = dir.path().join("patch.bin");
    let bytes: Vec<u8> = (0..(1 << 20) + 12_345)
        .map(|i: u32| (i * 7 % 256) as u8)
        .collect();
    std::fs::write(&outgoing, &bytes).unwrap();
    let sent = s.console.send_file(&outgoing).await.unwrap();
    let Transfer::Verified {
        digests, saved_as, ..
    } = sent
    else {
        panic!("not verified: {sent:?}");
    };
    assert_eq!(saved_as, "patch.bin");
    assert_eq!(
        std::fs::read(dir.path().join("applet-downloads/patch.bin")).unwrap(),
        bytes
    );

    // A file from the end user.
    let theirs = dir.path().join("error.log");
    std::fs::write(&theirs, "line 1\nline 2\n").unwrap();
    let got = s.console.get_file(theirs.to_str().unwrap()).await.unwrap();
    let Transfer::Verified { saved_as: ours, .. } = got else {
        panic!("not verified: {got:?}");
    };
    assert_eq!(std::fs::read(&ours).unwrap(), b"line 1\nline 2\n");

    let info = s.console.sysinfo().await.unwrap().unwrap();
    assert!(info.cpus >= 1);

    s.applet_commands.send(AppletCommand::End).await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(10), s.applet)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(ended, "ended by the end user");
    loop {
        match tokio::time::timeout(Duration::from_secs(10), s.console_events.recv())
            .await
            .unwrap()
        {
            Some(ConsoleEvent::Ended(_)) | None => break,
            Some(_) => continue,
        }
    }
    drop(s.console);
    assert_eq!(s.gw.stop().0, 0);

    let events = events(dir.path());
    let session = s.guid.to_string();
    let kinds: Vec<(String, String)> = events
        .iter()
        .filter(|e| e["session"] == session)
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["source"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    let count = |kind: &str| kinds.iter().filter(|(k, _)| k == kind).count();
    assert_eq!(count("chat.message"), 2, "{kinds:?}");
    assert_eq!(count("permission.requested"), 5, "{kinds:?}");
    assert_eq!(count("permission.denied"), 2, "{kinds:?}");
    let reasons: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "permission.denied")
        .map(|e| {
            e["payload"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned()
        })
        .collect();
    assert_eq!(
        reasons,
        ["not_granted", "no_display"],
        "said truly in the log"
    );
    assert_eq!(count("permission.granted"), 3, "{kinds:?}");
    assert_eq!(
        count("file.transferred"),
        4,
        "both ends' views of both files: {kinds:?}"
    );
    let file_events: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "file.transferred" && e["payload"]["name"] == "patch.bin")
        .collect();
    assert_eq!(file_events.len(), 2);
    for e in &file_events {
        assert_eq!(e["payload"]["sha256"], digests.sha256);
        assert_eq!(e["payload"]["md5"], digests.md5);
    }
    assert_eq!(kinds.last().unwrap().0, "session.ended");
    assert_verifies(dir.path());
}

#[tokio::test]
async fn a_denied_consent_reaches_the_technician_and_nothing_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = running(dir.path(), "send_files,receive_files", ConsentMode::DenyAll).await;
    let outgoing = dir.path().join("x.txt");
    std::fs::write(&outgoing, "x").unwrap();
    let sent = s.console.send_file(&outgoing).await.unwrap();
    assert!(
        matches!(&sent, Transfer::Refused(r) if r.contains("said no")),
        "{sent:?}"
    );
    assert!(!dir.path().join("applet-downloads/x.txt").exists());
    let got = s.console.get_file("/etc/hostname").await.unwrap();
    assert!(matches!(got, Transfer::Refused(_)));
    let decided: Vec<_> = std::iter::from_fn(|| s.applet_events.try_recv().ok()).collect();
    assert_eq!(
        decided
            .iter()
            .filter(|e| matches!(e, AppletEvent::Decided { granted: false, .. }))
            .count(),
        2
    );
    s.close().await;
    let events = events(dir.path());
    let denied: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "permission.denied")
        .collect();
    assert_eq!(denied.len(), 2);
    assert!(denied.iter().all(|e| e["payload"]["reason"] == "end_user"
        && e["source"].as_str().unwrap().starts_with("applet@")));
    assert_verifies(dir.path());
}

#[tokio::test]
async fn path_traversal_names_are_saved_inside_the_download_directory() {
    let dir = tempfile::tempdir().unwrap();
    let s = running(dir.path(), "send_files", ConsentMode::GrantAll).await;
    // A file whose own name is harmless, offered under a hostile one by a raw
    // offer is covered in the files unit tests; here the real path: a name
    // with traversal in the applet's answer must stay inside its directory.
    let sneaky = dir.path().join("..evil");
    std::fs::write(&sneaky, "payload").unwrap();
    let sent = s.console.send_file(&sneaky).await.unwrap();
    let Transfer::Verified { saved_as, .. } = sent else {
        panic!("{sent:?}")
    };
    assert_eq!(saved_as, "..evil");
    assert!(dir.path().join("applet-downloads/..evil").is_file());
    // Twice: no silent overwrite.
    let again = s.console.send_file(&sneaky).await.unwrap();
    assert!(
        matches!(&again, Transfer::Verified { saved_as, .. } if saved_as == "..evil (1)"),
        "{again:?}"
    );
    s.close().await;
}

/// Waits (at most 60 s) for `child` to exit 0 and returns its lines, read as `T`.
fn output_lines<T: serde::de::DeserializeOwned>(child: std::process::Child) -> Vec<T> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the program did not finish within 60 s")
        .expect("waiting for the program");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

#[test]
fn the_console_and_applet_programs_run_a_scripted_session() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_technician(data);
    run_in(
        data,
        &[
            "admin",
            "group",
            "set",
            "tier1",
            "--permissions",
            "send_files,receive_files",
        ],
        "",
    )
    .ok();
    let gw = start_gateway(data, &[]);
    std::fs::write(data.join("to-user.txt"), "canary file for the end user").unwrap();
    std::fs::write(data.join("from-user.txt"), "the end user's log").unwrap();
    let script = data.join("script");
    std::fs::write(
        &script,
        format!(
            "/new\n/pick\nhello from support\n/ask remote_control\n/send {}\n/get {}\n/end\n",
            data.join("to-user.txt").display(),
            data.join("from-user.txt").display()
        ),
    )
    .unwrap();
    let mut console = spawn(
        data,
        &console_args(
            &gw,
            &[
                "--script",
                script.to_str().unwrap(),
                "--download-dir",
                data.join("console-dl").to_str().unwrap(),
            ],
        ),
    );
    writeln!(console.stdin.take().unwrap(), "{PASSWORD}").unwrap();
    // Read the console's output until the PIN appears; keep the rest.
    let mut lines = std::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let mut seen = Vec::new();
    let pin = loop {
        let line = lines
            .next()
            .expect("the console ended before creating a session")
            .unwrap();
        let v: ConsoleLine = serde_json::from_str(&line).unwrap();
        seen.push(v.clone());
        if let ConsoleLine::SessionCreated { pin, .. } = v {
            break pin;
        }
    };
    let rest = std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>());
    let applet_dl = data.join("applet-dl");
    let mut applet = spawn(
        data,
        &applet_args(&gw, &pin, &["--download-dir", applet_dl.to_str().unwrap()]),
    );
    writeln!(applet.stdin.take().unwrap(), "my printer is on fire").unwrap();
    let applet_out: Vec<AppletLine> = output_lines(applet);
    assert!(console.wait().unwrap().success());
    seen.extend(
        rest.join()
            .unwrap()
            .iter()
            .map(|l| serde_json::from_str(l).unwrap()),
    );
    let console_out = seen;

    let console_out: Vec<ConsoleLine> = console_out;
    let ended = console_out.iter().find_map(|l| match l {
        ConsoleLine::Ended { reason, .. } => Some(reason.as_str()),
        _ => None,
    });
    assert_eq!(
        ended,
        Some("the session ended"),
        "a normal /end is not a failure"
    );
    let sas_c = console_out.iter().find_map(|l| match l {
        ConsoleLine::Paired { sas, .. } => Some(sas),
        _ => None,
    });
    let sas_a = applet_out.iter().find_map(|l| match l {
        AppletLine::Paired { sas, .. } => Some(sas),
        _ => None,
    });
    assert!(sas_c.is_some());
    assert_eq!(sas_c, sas_a, "both sides show the same verification code");
    let chat = applet_out.iter().find_map(|l| match l {
        AppletLine::Chat { text, .. } => Some(text.as_str()),
        _ => None,
    });
    assert_eq!(chat, Some("hello from support"));
    let denied = console_out.iter().find_map(|l| match l {
        ConsoleLine::Permission { granted, .. } => Some(*granted),
        _ => None,
    });
    assert_eq!(denied, Some(false));
    let files: Vec<bool> = console_out
        .iter()
        .filter_map(|l| match l {
            ConsoleLine::File { ok, .. } => Some(*ok),
            _ => None,
        })
        .collect();
    assert_eq!(files, [true, true], "{console_out:?}");
    assert_eq!(
        std::fs::read_to_string(data.join("applet-dl/to-user.txt")).unwrap(),
        "canary file for the end user"
    );
    assert_eq!(
        std::fs::read_to_string(data.join("console-dl/from-user.txt")).unwrap(),
        "the end user's log"
    );
    assert_eq!(gw.stop().0, 0);
    let events = events(data);
    let kinds: Vec<_> = events
        .iter()
        .map(|e| e["type"].as_str().unwrap().to_owned())
        .collect();
    for kind in [
        "session.created",
        "session.joined",
        "session.picked_up",
        "chat.message",
        "permission.denied",
        "permission.granted",
        "file.transferred",
        "session.ended",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert_verifies(data);
}

/// The end user's applet exits when the session ends, though its input (a
/// terminal nobody types into) stays open.
#[test]
fn the_applet_exits_when_the_session_ends_with_its_input_still_open() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path();
    add_technician(data);
    let gw = start_gateway(data, &[]);
    let spool = data.join("spool.jsonl");
    let mut console = spawn(
        data,
        &console_args(&gw, &["--spool", spool.to_str().unwrap()]),
    );
    let mut to_console = console.stdin.take().unwrap();
    writeln!(to_console, "{PASSWORD}\n/new").unwrap();
    let mut lines = std::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let pin = wait_line(&mut lines, |l| match l {
        ConsoleLine::SessionCreated { pin, .. } => Some(pin),
        _ => None,
    });
    let mut applet = spawn(
        data,
        &applet_args(&gw, &pin, &["--download-dir", data.to_str().unwrap()]),
    );
    let _input_open = applet.stdin.take().unwrap();
    writeln!(to_console, "/pick\n/end").unwrap();
    drop(to_console);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = applet.try_wait().unwrap() {
            break status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the applet did not exit within 30 s of the session's end"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status:?}");
    assert!(console.wait().unwrap().success());
    assert_eq!(gw.stop().0, 0);
}

#[test]
fn the_demo_runs_a_whole_session_and_leaves_a_verifiable_trail() {
    let dir = tempfile::tempdir().unwrap();
    for run in 1..=2 {
        let r = run_in(dir.path(), &["demo"], "");
        let out = r.ok();
        let codes: Vec<&str> = out
            .lines()
            .find_map(|l| l.strip_prefix("verification code:"))
            .expect("the summary shows the verification codes")
            .split(',')
            .map(|part| part.rsplit(' ').next().unwrap())
            .collect();
        assert_eq!(codes.len(), 2);
        assert_eq!(codes[0], codes[1], "run {run}: {out}");
        assert!(
            out.contains("permission:         remote_control denied"),
            "{out}"
        );
        assert_eq!(out.matches("file (").count(), 2, "{out}");
        assert!(out.contains("session.ended"), "{out}");
        // The CRM receiver got the session, signed.
        assert!(
            out.contains("received:           session.ended, webhook-id "),
            "{out}"
        );
        assert!(out.contains("signature:          verified"), "{out}");
        // And its compliance report, as HTML in the data directory.
        let report = dir.path().join("demo/sessions-report.html");
        assert!(
            out.contains(&format!("sessions report:    {}", report.display())),
            "{out}"
        );
        let html = std::fs::read_to_string(&report).unwrap();
        assert_eq!(html.matches("<tr><td>").count(), 1, "one session");
    }
    assert_verifies(dir.path());
    // Each run's endpoint replaced the one before.
    let list = run_in(dir.path(), &["admin", "webhook", "list"], "");
    assert_eq!(list.ok().lines().count(), 1, "{list:?}");
}

#[tokio::test]
async fn a_canary_chat_line_and_file_never_cross_the_gateway_in_clear() {
    let dir = tempfile::tempdir().unwrap();
    let capture = dir.path().join("relay-capture");
    std::fs::create_dir(&capture).unwrap();
    let mut s = running_with(
        dir.path(),
        &["--permissions", "send_files"],
        ConsentMode::GrantAll,
        &["--relay-capture", capture.to_str().unwrap()],
        None,
        None,
    )
    .await;
    s.console.chat("CANARY-CHAT-7f3a9c").await.unwrap();
    assert_eq!(
        s.applet_events.recv().await,
        Some(AppletEvent::Chat("CANARY-CHAT-7f3a9c".into()))
    );
    let file = dir.path().join("canary.txt");
    std::fs::write(&file, "CANARY-FILE-2b8e41 ".repeat(5_000)).unwrap();
    let sent = s.console.send_file(&file).await.unwrap();
    assert!(matches!(sent, Transfer::Verified { .. }), "{sent:?}");
    s.close().await;

    let mut relayed = Vec::new();
    for entry in std::fs::read_dir(&capture).unwrap() {
        relayed.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(
        relayed.len() > 95_000,
        "the capture holds what was relayed: {} bytes",
        relayed.len()
    );
    let contains = |needle: &[u8]| relayed.windows(needle.len()).any(|w| w == needle);
    assert!(!contains(b"CANARY-CHAT"), "chat crossed the relay in clear");
    assert!(
        !contains(b"CANARY-FILE"),
        "the file crossed the relay in clear"
    );
}

/// With chat storage off, the text stays inside the end-to-end session: a
/// core dump of the gateway, taken after both sides' chat events were
/// acknowledged, holds neither line (and does hold the session's GUID, so
/// the dump is the gateway's memory). The log keeps each line's length.
#[tokio::test]
async fn with_chat_storage_off_the_text_never_reaches_the_gateway() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = running_with(
        dir.path(),
        &["--permissions", "none", "--store-chat", "false"],
        ConsentMode::GrantAll,
        &[],
        None,
        None,
    )
    .await;
    // Made at run time, so no binary can contain them.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let (technician_line, end_user_line) = (format!("TECH-{tag}"), format!("USER-{tag}"));
    let warning = s.console.chat(&technician_line).await.unwrap();
    assert_eq!(warning, None, "acknowledged by the gateway");
    s.applet_commands
        .send(AppletCommand::Chat(end_user_line.clone()))
        .await
        .unwrap();
    assert_eq!(
        s.console_events.recv().await,
        Some(ConsoleEvent::Chat(end_user_line.clone()))
    );
    // The applet reports after sending; wait until its event is in the log.
    let reported = || {
        events(dir.path())
            .iter()
            .filter(|e| e["type"] == "chat.message")
            .count()
    };
    for _ in 0..200 {
        if reported() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(reported(), 2);

    let core = dir.path().join("gateway.core");
    let dumped = std::process::Command::new("gcore")
        .arg("-o")
        .arg(&core)
        .arg(s.gw.pid().to_string())
        .output()
        .expect("running gcore (the test scripts install gdb)");
    assert!(
        dumped.status.success(),
        "{}",
        String::from_utf8_lossy(&dumped.stderr)
    );
    let core = std::fs::read(dir.path().join(format!("gateway.core.{}", s.gw.pid()))).unwrap();
    let holds = |needle: &str| memchr::memmem::find(&core, needle.as_bytes()).is_some();
    assert!(
        holds(&s.guid.to_string()),
        "the dump is not the gateway's memory"
    );
    assert!(!holds(&tag), "a chat line reached the gateway");
    s.close().await;

    let chats: Vec<_> = events(dir.path())
        .into_iter()
        .filter(|e| e["type"] == "chat.message")
        .collect();
    for (chat, line) in chats.iter().zip([&technician_line, &end_user_line]) {
        assert_eq!(chat["payload"]["text"], serde_json::Value::Null);
        assert_eq!(chat["payload"]["chars"], line.chars().count());
    }
}

#[tokio::test]
async fn a_file_that_grows_while_being_sent_arrives_as_it_was_read() {
    let dir = tempfile::tempdir().unwrap();
    let s = running(dir.path(), "send_files", ConsentMode::GrantAll).await;
    let path = dir.path().join("growing.log");
    std::fs::write(&path, vec![b'a'; 4 << 20]).unwrap();
    let grower = {
        let path = path.clone();
        std::thread::spawn(move || {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .open(&path)
                .unwrap();
            for _ in 0..200 {
                f.write_all(&[b'b'; 16 * 1024]).unwrap();
                f.flush().unwrap();
                std::thread::yield_now();
            }
        })
    };
    let sent = s.console.send_file(&path).await.unwrap();
    grower.join().unwrap();
    let Transfer::Verified {
        digests, saved_as, ..
    } = sent
    else {
        panic!("{sent:?}")
    };
    let saved = std::fs::read(dir.path().join("applet-downloads").join(saved_as)).unwrap();
    assert_eq!(saved.len() as u64, digests.size);
    assert_eq!(
        {
            let mut h = session_core::session::files::Hashes::default();
            h.update(&saved);
            h.finish().sha256
        },
        digests.sha256,
        "the digests describe exactly the bytes sent"
    );
    assert!(digests.size >= 4 << 20);
    s.close().await;
    assert_verifies(dir.path());
}

#[tokio::test]
async fn a_peer_that_vanishes_mid_transfer_leaves_no_partial_file() {
    let dir = tempfile::tempdir().unwrap();
    let s = running(dir.path(), "send_files", ConsentMode::GrantAll).await;
    let path = dir.path().join("big.bin");
    std::fs::write(&path, vec![7u8; 64 << 20]).unwrap();
    let downloads = dir.path().join("applet-downloads");
    let applet = &s.applet;
    let vanish = async {
        // Once the first bytes are on disk at the applet, the applet vanishes.
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let started = std::fs::read_dir(&downloads)
                .map(|d| {
                    d.filter_map(Result::ok)
                        .any(|e| e.metadata().is_ok_and(|m| m.len() > 0))
                })
                .unwrap_or(false);
            if started {
                applet.abort();
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the transfer never started"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    };
    let (result, ()) = tokio::join!(
        async {
            tokio::time::timeout(Duration::from_secs(30), s.console.send_file(&path))
                .await
                .expect("the console noticed the applet was gone")
        },
        vanish
    );
    assert!(
        !matches!(result, Ok(Transfer::Verified { .. })),
        "a transfer to a vanished applet cannot verify: {result:?}"
    );
    // The applet's partial file went with it.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while std::fs::read_dir(&downloads).unwrap().count() > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "a partial file was left behind"
        );
        tokio::task::yield_now().await;
    }
    drop(s.console);
    assert_eq!(s.gw.stop().0, 0);
    assert_verifies(dir.path());
}

#[tokio::test]
async fn a_gateway_restarted_mid_session_loses_no_audit_event() {
    use audit_db::event::{ChatMessage, Party};
    use audit_db::EventKind;
    use session_core::client::Report;
    use session_core::spool::Spool;

    let dir = tempfile::tempdir().unwrap();
    add_technician(dir.path());
    let gw = start_gateway(dir.path(), &[]);
    let mut tech = connector(&gw)
        .login("ann@example.com", PASSWORD, None)
        .await
        .unwrap();
    let live = live_session(&connector(&gw), &mut tech).await;
    let chat = |text: &str| {
        Report::now(&EventKind::ChatMessage(ChatMessage {
            from: Party::Technician,
            text: Some(text.into()),
            chars: text.len() as u64,
        }))
        .in_session(live.guid)
    };
    let acked = chat("acknowledged before the crash");
    live.console_reporter.report(&acked).await.unwrap();
    // The gateway dies (SIGKILL): the ack of this one never arrives, so it is spooled...
    drop(gw);
    let lost_ack = chat("sent as the gateway died");
    assert!(live.console_reporter.report(&lost_ack).await.is_err());
    let spool = Spool::new(&dir.path().join("spool.jsonl"));
    spool.add(&lost_ack).unwrap();
    // ...and so is one whose ack was lost although it had been stored.
    spool.add(&acked).unwrap();

    // The console's control link died with the gateway: delivering logs in again.
    let gw = start_gateway(dir.path(), &[]);
    let delivered = spool
        .deliver_again(&mut tech, &connector(&gw), "ann@example.com", PASSWORD)
        .await;
    assert_eq!(delivered.unwrap(), 2);
    assert!(spool.pending().unwrap().is_empty());
    tech.logout().await.unwrap();
    assert_eq!(gw.stop().0, 0);

    let events = events(dir.path());
    for report in [&acked, &lost_ack] {
        let stored: Vec<_> = events
            .iter()
            .filter(|e| e["id"] == report.id.to_string())
            .collect();
        assert_eq!(stored.len(), 1, "event {} stored exactly once", report.id);
        assert_eq!(stored[0]["session"], live.guid.to_string());
    }
    // The killed gateway's live session is ended by its next start.
    let ends: Vec<_> = events
        .iter()
        .filter(|e| e["type"] == "session.ended" && e["session"] == live.guid.to_string())
        .collect();
    assert_eq!(ends.len(), 1, "{ends:?}");
    assert_eq!(ends[0]["payload"]["reason"], "gateway_restarted");
    assert_verifies(dir.path());
}

/// A screen that always shows the same picture, so what the console shows can be checked exactly.
struct Still(recorder::Frame);

impl recorder::Source for Still {
    fn size(&self) -> (u32, u32) {
        (self.0.width, self.0.height)
    }
    fn next_frame(&mut self) -> Result<Option<recorder::Frame>, recorder::SourceError> {
        Ok(Some(self.0.clone()))
    }
}

/// A session whose group may view, and whose applet shows [`still_picture`].
async fn showing_a_still(data: &Path, consent: ConsentMode) -> Running {
    let screen: OpenScreen =
        std::sync::Arc::new(|| Ok(Box::new(Still(still_picture())) as ScreenSource));
    running_with(
        data,
        &["--permissions", "desktop_view"],
        consent,
        &[],
        Some(screen),
        None,
    )
    .await
}

fn still_picture() -> recorder::Frame {
    let mut f = recorder::synthetic::Synthetic::new(400, 300, 9).frame();
    f.fill(10, 10, 50, 30, [1, 2, 3, 255]);
    f
}

#[tokio::test]
async fn the_technician_sees_the_end_users_screen_with_consent_and_it_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = showing_a_still(dir.path(), ConsentMode::GrantAll).await;
    assert_eq!(s.console.view().await.unwrap(), Decision::Granted);
    let mut screen = s.console.screen();
    let shown = tokio::time::timeout(
        Duration::from_secs(20),
        screen.wait_for(|s| s.frame.is_some()),
    )
    .await
    .expect("a screen within 20 s")
    .unwrap()
    .clone();
    assert!(
        *shown.frame.unwrap() == still_picture(),
        "the console shows the end user's screen exactly"
    );
    s.console.stop_view().await.unwrap();
    let ended = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match s.console_events.recv().await {
                Some(ConsoleEvent::ViewEnded(reason)) => return reason,
                Some(_) => continue,
                None => panic!("the session ended first"),
            }
        }
    })
    .await
    .expect("the view ends within 20 s");
    assert_eq!(ended, "stopped by the technician");
    let guid = s.guid;
    s.close().await;
    let kinds: Vec<String> = events(dir.path())
        .into_iter()
        .filter(|e| e["session"] == guid.to_string())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in [
        "permission.requested",
        "permission.granted",
        "desktop_view.started",
        "desktop_view.ended",
    ] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
    assert_verifies(dir.path());
}

#[tokio::test]
async fn a_refused_view_sends_no_screen() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = showing_a_still(dir.path(), ConsentMode::DenyAll).await;
    assert_eq!(
        s.console.view().await.unwrap(),
        Decision::Denied(Denial::EndUser)
    );
    // A round trip after the refusal: had any screen been sent, it would have arrived first.
    s.console.chat("still there?").await.unwrap();
    assert_eq!(
        s.applet_events.recv().await,
        Some(AppletEvent::Decided {
            permission: Permission::DesktopView,
            what: "see your screen".into(),
            granted: false
        })
    );
    assert!(s.console.screen().borrow().frame.is_none());
    s.close().await;
}

#[tokio::test]
async fn a_viewed_session_is_recorded_with_markers_and_verified_against_the_audit_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut s = showing_a_still(dir.path(), ConsentMode::GrantAll).await;
    let path = dir.path().join("session.vrec");
    s.console
        .record(path.clone(), "ann@example.com")
        .await
        .unwrap();
    assert_eq!(s.console.view().await.unwrap(), Decision::Granted);
    let mut screen = s.console.screen();
    tokio::time::timeout(
        Duration::from_secs(20),
        screen.wait_for(|s| s.frame.is_some()),
    )
    .await
    .expect("a screen within 20 s")
    .unwrap();
    s.console.chat("recorded line").await.unwrap();
    assert_eq!(s.applet_events.recv().await.map(|_| ()), Some(()));
    // Asked while recording: the request and the end user's answer are on the timeline.
    assert_eq!(
        s.console.ask(Permission::DesktopView).await.unwrap(),
        Decision::Granted
    );
    // The view ends while recording: its end is on the timeline too.
    s.console.stop_view().await.unwrap();
    loop {
        match s.console_events.recv().await {
            Some(ConsoleEvent::ViewEnded(_)) => break,
            Some(_) => continue,
            None => panic!("the session ended first"),
        }
    }
    let finished = s
        .console
        .stop_recording()
        .await
        .unwrap()
        .expect("a recording was on");
    assert!(!s.console.recording());
    let guid = s.guid;
    s.close().await;

    let rec = recorder::vrec::Recording::open(&path).unwrap();
    assert_eq!(rec.ending, recorder::vrec::Ending::Complete);
    assert_eq!(rec.header.session, guid.to_string());
    assert_eq!(rec.header.technician, "ann@example.com");
    let first = rec.frame(recorder::vrec::reader::Target::Index(0)).unwrap();
    assert!(
        first.frame == still_picture(),
        "the recording holds the screen as sent"
    );
    assert!(
        rec.index
            .markers
            .iter()
            .any(|m| m.kind == "chat.message" && m.text.contains("recorded line")),
        "{:?}",
        rec.index.markers
    );
    // The applet's own events are on the timeline as the console saw them.
    let kinds: Vec<&str> = rec.index.markers.iter().map(|m| m.kind.as_str()).collect();
    for kind in [
        "desktop_view.started",
        "desktop_view.ended",
        "permission.granted",
    ] {
        assert!(kinds.contains(&kind), "{kind} missing from {kinds:?}");
    }
    let stopped: Vec<serde_json::Value> = events(dir.path())
        .into_iter()
        .filter(|e| e["type"] == "recording.stopped")
        .collect();
    assert_eq!(stopped.len(), 1);
    assert_eq!(stopped[0]["payload"]["sha256"], finished.sha256);
    assert_eq!(stopped[0]["payload"]["recording"], rec.header.recording);

    let p = path.to_str().unwrap();
    let verify = run_in(dir.path(), &["recording", "verify", p, "--json"], "");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(verify.ok()).unwrap()["verdict"],
        "complete"
    );
    let mut bytes = std::fs::read(&path).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&path, &bytes).unwrap();
    let altered = run_in(dir.path(), &["recording", "verify", p], "");
    assert_eq!(altered.code, 1, "{altered:?}");
    assert!(altered.stdout.contains("altered"), "{altered:?}");
}

/// A recording started 10 s into a view has its own timeline: it starts at
/// 0 at its own start time, not at the view's.
#[tokio::test]
async fn a_recording_started_part_way_has_its_own_timeline() {
    let dir = tempfile::tempdir().unwrap();
    let s = showing_a_still(dir.path(), ConsentMode::GrantAll).await;
    assert_eq!(s.console.view().await.unwrap(), Decision::Granted);
    let mut screen = s.console.screen();
    tokio::time::timeout(
        Duration::from_secs(20),
        screen.wait_for(|s| s.frame.is_some()),
    )
    .await
    .expect("a screen within 20 s")
    .unwrap();
    // The scenario: the technician starts recording 10 s into the view.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let asked = audit_db::time_us::now();
    let path = dir.path().join("late.vrec");
    s.console
        .record(path.clone(), "ann@example.com")
        .await
        .unwrap();
    let written = async {
        while !recorder::vrec::Recording::open(&path).is_ok_and(|r| r.index.frames > 0) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(20), written)
        .await
        .expect("the first screen recorded within 20 s");
    s.console.stop_recording().await.unwrap();
    s.close().await;

    let rec = recorder::vrec::Recording::open(&path).unwrap();
    let started = rec.header.started_us;
    assert!(
        started >= asked && started - asked < 5_000_000,
        "the recording started at {}, asked for at {}",
        audit_db::time_us::format(started),
        audit_db::time_us::format(asked)
    );
    let first = rec.frame(recorder::vrec::reader::Target::Index(0)).unwrap();
    assert_eq!(first.timestamp_us, 0, "its first screen is at 0");
    assert!(
        rec.index.duration_us < 5_000_000,
        "it lasted {} µs, not the view's 10 s",
        rec.index.duration_us
    );
    let info: serde_json::Value = serde_json::from_str(
        run_in(
            dir.path(),
            &["recording", "info", path.to_str().unwrap(), "--json"],
            "",
        )
        .ok(),
    )
    .unwrap();
    assert_eq!(info["started_us"], started);
    assert!(info["duration_us"].as_u64().unwrap() < 5_000_000, "{info}");
}

/// The applet's screen and input both on the real display `display`.
fn x11_applet(display: &str) -> (OpenScreen, OpenInput) {
    let (a, b) = (display.to_owned(), display.to_owned());
    (
        std::sync::Arc::new(move || {
            recorder::x11::X11::open(Some(&a)).map(|x| Box::new(x) as ScreenSource)
        }),
        std::sync::Arc::new(move || {
            recorder::x11::X11Input::open(Some(&b)).map(|x| Box::new(x) as InputSink)
        }),
    )
}

/// Where the pointer of `display` is.
fn pointer(display: &str) -> (i32, i32) {
    let c = recorder::x11::X11::open(Some(display))
        .unwrap()
        .pointer(0)
        .unwrap()
        .unwrap();
    (c.x, c.y)
}

#[tokio::test]
async fn remote_control_moves_the_end_users_pointer_only_with_consent() {
    for consent in [ConsentMode::DenyAll, ConsentMode::GrantAll] {
        let granted = matches!(consent, ConsentMode::GrantAll);
        let dir = tempfile::tempdir().unwrap();
        let display = testkit::Xvfb::start(320, 200);
        let (screen, input) = x11_applet(&display.display);
        let mut s = running_with(
            dir.path(),
            &["--permissions", "desktop_view,remote_control"],
            consent,
            &[],
            Some(screen),
            Some(input),
        )
        .await;
        let decision = s.console.control().await.unwrap();
        assert_eq!(decision == Decision::Granted, granted);
        s.console
            .input(vec![InputEvent::Move { x: 123, y: 77 }])
            .await
            .unwrap();
        // A round trip: the input, sent first, has been handled once the chat arrives.
        s.console.chat("done?").await.unwrap();
        loop {
            if let Some(AppletEvent::Chat(_)) = s.applet_events.recv().await {
                break;
            }
        }
        assert_eq!(
            pointer(&display.display) == (123, 77),
            granted,
            "consent {granted}"
        );
        s.console.stop_control().await.unwrap();
        // Another round trip: the applet handles messages in order, so the
        // end of control has been reported once this chat arrives.
        s.console.chat("bye").await.unwrap();
        loop {
            if let Some(AppletEvent::Chat(_)) = s.applet_events.recv().await {
                break;
            }
        }
        let guid = s.guid;
        s.close().await;
        let kinds: Vec<String> = events(dir.path())
            .into_iter()
            .filter(|e| e["session"] == guid.to_string())
            .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
            .collect();
        for kind in ["remote_control.started", "remote_control.ended"] {
            assert_eq!(
                kinds.iter().any(|k| k == kind),
                granted,
                "{kind} in {kinds:?}"
            );
        }
    }
}

#[tokio::test]
async fn an_input_event_that_fails_is_skipped_alone_lets_go_of_everything_and_is_reported() {
    let dir = tempfile::tempdir().unwrap();
    let display = testkit::Xvfb::start(640, 200);
    let terminal = display.terminal(&dir.path().join("line"));
    let (screen, input) = x11_applet(&display.display);
    let mut s = running_with(
        dir.path(),
        &["--permissions", "desktop_view,remote_control"],
        ConsentMode::GrantAll,
        &[],
        Some(screen),
        Some(input),
    )
    .await;
    assert_eq!(s.console.control().await.unwrap(), Decision::Granted);
    let key = |keysym: u32| [true, false].map(|press| InputEvent::Key { keysym, press });
    let mut batch = vec![InputEvent::Move { x: 100, y: 30 }];
    batch.extend(key(0x61));
    // Shift held, then an event no device makes: it fails alone, and Shift is let go.
    batch.push(InputEvent::Key {
        keysym: 0xffe1,
        press: true,
    });
    batch.push(InputEvent::Button {
        button: 0,
        press: true,
    });
    batch.extend(key(0x62));
    batch.extend(key(0xff0d));
    s.console.input(batch).await.unwrap();
    let failure = loop {
        match s.console_events.recv().await {
            Some(ConsoleEvent::InputFailed(why)) => break why,
            Some(_) => continue,
            None => panic!("the session ended without the failure reported"),
        }
    };
    assert!(failure.contains("button 0"), "{failure}");
    assert_eq!(
        terminal.line(),
        "ab",
        "the rest of the batch, without Shift"
    );
    assert_eq!(display.keys_down(), Vec::<u8>::new());
    // Control ends with a key held: it is let go.
    s.console
        .input(vec![InputEvent::Key {
            keysym: 0xffe3,
            press: true,
        }])
        .await
        .unwrap();
    s.console.chat("held?").await.unwrap();
    while !matches!(s.applet_events.recv().await, Some(AppletEvent::Chat(_))) {}
    assert_eq!(display.keys_down().len(), 1, "Control held");
    s.console.stop_control().await.unwrap();
    s.console.chat("released?").await.unwrap();
    while !matches!(s.applet_events.recv().await, Some(AppletEvent::Chat(_))) {}
    assert_eq!(display.keys_down(), Vec::<u8>::new(), "let go with control");
    s.close().await;
}

#[tokio::test]
async fn ending_a_session_under_view_and_control_still_audits_their_ends() {
    let dir = tempfile::tempdir().unwrap();
    let display = testkit::Xvfb::start(320, 200);
    let (screen, input) = x11_applet(&display.display);
    let s = running_with(
        dir.path(),
        &["--permissions", "desktop_view,remote_control"],
        ConsentMode::GrantAll,
        &[],
        Some(screen),
        Some(input),
    )
    .await;
    assert_eq!(s.console.view().await.unwrap(), Decision::Granted);
    assert_eq!(s.console.control().await.unwrap(), Decision::Granted);
    let Running {
        console,
        applet,
        gw,
        guid,
        _tech,
        ..
    } = s;
    // The technician ends the session while both are on.
    console.end().await;
    let _ = applet.await;
    assert_eq!(gw.stop().0, 0);
    let kinds: Vec<String> = events(dir.path())
        .into_iter()
        .filter(|e| e["session"] == guid.to_string())
        .map(|e| e["type"].as_str().unwrap_or_default().to_owned())
        .collect();
    for kind in ["desktop_view.ended", "remote_control.ended"] {
        assert!(
            kinds.iter().any(|k| k == kind),
            "{kind} missing from {kinds:?}"
        );
    }
}
