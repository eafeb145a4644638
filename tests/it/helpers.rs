//! Running `vigil` as a child process and reading what it left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A `vigil` command with `args` after `--db URL`, quiet logging.
pub fn vigil(db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.env_remove("RUST_LOG").arg("--db").arg(db).args(args);
    cmd
}

/// `vigil ARGS` in `dir` (so relative defaults such as `./vigil-recordings`
/// stay inside it), stdin and stdout piped.
pub fn spawn(dir: &Path, args: &[&str]) -> std::process::Child {
    Command::new(env!("CARGO_BIN_EXE_vigil"))
        .env_remove("RUST_LOG")
        .current_dir(dir)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting vigil")
}

/// The arguments of an applet joining by `pin` that grants everything and
/// prints JSON, followed by `extra`.
pub fn applet_args<'a>(gw: &'a GatewayProcess, pin: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let ca = gw.ca.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "applet",
        "--gateway",
        &gw.addr,
        "--ca",
        ca,
        "--pin",
        pin,
        "--consent",
        "grant-all",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// The arguments of ann's console on `gw` printing JSON, followed by `extra`.
pub fn console_args<'a>(gw: &'a GatewayProcess, extra: &[&'a str]) -> Vec<&'a str> {
    let ca = gw.ca.to_str().expect("a UTF-8 path");
    let mut args = vec![
        "console",
        "--gateway",
        &gw.addr,
        "--ca",
        ca,
        "--user",
        "ann@example.com",
        "--json",
    ];
    args.extend_from_slice(extra);
    args
}

/// `vigil login` as ann on `gw` with `password`.
pub fn login_cmd(data: &Path, gw: &GatewayProcess, password: &str) -> Run {
    let ca = gw.ca.to_str().expect("a UTF-8 path");
    run_in(
        data,
        &[
            "login",
            "--gateway",
            &gw.addr,
            "--ca",
            ca,
            "--user",
            "ann@example.com",
        ],
        &format!("{password}\n"),
    )
}

/// Reads a console's `--json` lines until `pick` takes one; an error line
/// fails the test.
pub fn wait_line<T>(
    lines: &mut impl Iterator<Item = std::io::Result<String>>,
    mut pick: impl FnMut(session_core::lines::ConsoleLine) -> Option<T>,
) -> T {
    for line in lines {
        let line = line.expect("reading the console");
        let parsed: session_core::lines::ConsoleLine =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if let session_core::lines::ConsoleLine::Error { message } = &parsed {
            panic!("the console failed: {message}");
        }
        if let Some(found) = pick(parsed) {
            return found;
        }
    }
    panic!("the console ended before printing what was awaited");
}

/// What a finished `vigil` run said.
#[derive(Debug)]
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    /// Asserts exit 0 and returns stdout.
    #[track_caller]
    pub fn ok(&self) -> &str {
        assert_eq!(self.code, 0, "vigil failed: {self:#?}");
        &self.stdout
    }

    /// Asserts an operational error (exit 2) reported as one line on stderr; returns it.
    #[track_caller]
    pub fn error_line(&self) -> &str {
        assert_eq!(self.code, 2, "expected an error exit: {self:#?}");
        let line = self.stderr.trim_end();
        assert_eq!(line.lines().count(), 1, "error is not one line: {line:?}");
        assert!(line.starts_with("vigil: error: "), "{line:?}");
        line
    }
}

impl From<Output> for Run {
    fn from(o: Output) -> Self {
        Run {
            code: o.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&o.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&o.stderr).into_owned(),
        }
    }
}

/// Runs `vigil --db URL args...` to completion, with stdin closed.
pub fn run(db: &str, args: &[&str]) -> Run {
    vigil(db, args)
        .stdin(Stdio::null())
        .output()
        .expect("starting vigil")
        .into()
}

/// Every file under `dir` with its bytes, to prove a failed command changed nothing.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut files = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).expect("reading a test directory") {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                todo.push(path);
            } else {
                let bytes = std::fs::read(&path).expect("reading a test file");
                files.insert(path, bytes);
            }
        }
    }
    files
}

/// Asserts that two [`snapshot`]s are the same, naming the files that differ.
#[track_caller]
pub fn assert_same_files(
    before: &BTreeMap<PathBuf, Vec<u8>>,
    after: &BTreeMap<PathBuf, Vec<u8>>,
    what: &str,
) {
    let changed: Vec<&PathBuf> = before
        .keys()
        .chain(after.keys())
        .filter(|p| before.get(*p) != after.get(*p))
        .collect();
    assert!(changed.is_empty(), "{what} changed {changed:?}");
}

/// The JSON objects of a `--json` listing.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The password every test account gets.
pub const PASSWORD: &str = "violet tractor mango";

/// Whether `vigil ARGS` keeps data (takes `--data`); clients and the
/// recording tools refuse it.
fn keeps_data(args: &[&str]) -> bool {
    match args.first().copied() {
        Some("login" | "console" | "applet" | "convert") => false,
        Some("recording") => args.get(1) == Some(&"verify"),
        Some("audit") => args.get(1) != Some(&"verify-proof"),
        Some("retention") => args.get(1) != Some(&"verify"),
        _ => true,
    }
}

/// Runs `vigil --data DIR args...` (or, for a command that keeps no data,
/// `vigil args...` in DIR) with `stdin` as its standard input.
pub fn run_in(data: &Path, args: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut command = Command::new(env!("CARGO_BIN_EXE_vigil"));
    if keeps_data(args) {
        command.arg("--data").arg(data);
    } else {
        command.current_dir(data);
    }
    let mut child = command
        .env_remove("RUST_LOG")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting vigil");
    let mut input = child.stdin.take().expect("stdin is piped");
    input.write_all(stdin.as_bytes()).expect("writing stdin");
    drop(input);
    child.wait_with_output().expect("waiting for vigil").into()
}

/// A group `tier1` (desktop view and remote control) and its technician
/// `ann@example.com` with [`PASSWORD`], in the database of `data`.
pub fn add_technician(data: &Path) {
    run_in(
        data,
        &[
            "admin",
            "group",
            "add",
            "tier1",
            "--permissions",
            "desktop_view,remote_control",
        ],
        "",
    )
    .ok();
    run_in(
        data,
        &[
            "admin",
            "user",
            "add",
            "ann@example.com",
            "--group",
            "tier1",
        ],
        &format!("{PASSWORD}\n"),
    )
    .ok();
}

/// A data directory with ann's account, the access policy changed by
/// `policy` (`vigil admin policy set` options), and a gateway started with `args`.
pub fn technician_and_gateway(
    policy: &[&str],
    args: &[&str],
) -> (tempfile::TempDir, GatewayProcess) {
    let dir = tempfile::tempdir().expect("a temporary directory");
    add_technician(dir.path());
    if !policy.is_empty() {
        let mut set = vec!["admin", "policy", "set"];
        set.extend_from_slice(policy);
        run_in(dir.path(), &set, "").ok();
    }
    let gw = start_gateway(dir.path(), args);
    (dir, gw)
}

/// A `vigil gateway` child process on a loopback port of its own.
pub type GatewayProcess = testkit::GatewayProcess;

/// Starts `vigil --data DIR gateway` (plus `args`) and waits until it listens.
pub fn start_gateway(data: &Path, args: &[&str]) -> GatewayProcess {
    GatewayProcess::start(Path::new(env!("CARGO_BIN_EXE_vigil")), data, &[], args)
}

/// Starts a gateway whose audit database is `db` (certificates stay in `data`).
pub fn start_gateway_with_db(data: &Path, db: &str) -> GatewayProcess {
    GatewayProcess::start(
        Path::new(env!("CARGO_BIN_EXE_vigil")),
        data,
        &["--db", db],
        &[],
    )
}

/// Reads the next message on `raw`, which must be an `Error` with `code`.
pub async fn refused_with(
    raw: &mut session_core::client::ClientLink,
    code: protocol::wire::ErrorCode,
) {
    match raw.recv().await.expect("reading the gateway's answer") {
        Some(protocol::wire::Message::Error {
            code: got, message, ..
        }) => {
            assert_eq!(got, code, "{message}")
        }
        other => panic!("expected the error {code:?}, got {other:?}"),
    }
}

/// A client connector trusting `gw`'s CA file.
pub fn connector(gw: &GatewayProcess) -> session_core::client::Connector {
    let trust = protocol::tls::Trust::ca_file(&gw.ca).expect("reading the CA file");
    session_core::client::Connector::new(&gw.addr, &trust, "vigil tests").expect("a connector")
}

/// The audit events of `data`'s log, as JSON objects.
pub fn events(data: &Path) -> Vec<serde_json::Value> {
    json_lines(run_in(data, &["audit", "query", "--json"], "").ok())
}

/// Asserts that `data`'s audit log verifies.
#[track_caller]
pub fn assert_verifies(data: &Path) {
    let r = run_in(data, &["audit", "verify"], "");
    assert_eq!(r.code, 0, "the audit log does not verify: {r:#?}");
}

/// A live session: both inner TLS ends, connected through the gateway.
pub struct Live {
    pub console: tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
    pub applet: tokio_rustls::server::TlsStream<tokio::io::DuplexStream>,
    pub console_end: tokio::task::JoinHandle<String>,
    pub applet_end: tokio::task::JoinHandle<String>,
    pub console_reporter: session_core::client::SessionReporter,
    pub applet_reporter: session_core::client::SessionReporter,
    pub guid: uuid::Uuid,
    /// The console as the applet verified it (with the signed grant).
    pub console_identity: protocol::identity::SessionIdentity,
}

pub async fn live_session(
    connector: &session_core::client::Connector,
    tech: &mut session_core::client::Technician,
) -> Live {
    let session = tech.create_session().await.expect("creating a session");
    let waiting = connector.join(&session.pin).await.expect("joining by PIN");
    assert_eq!(waiting.guid, session.guid);
    assert_eq!(waiting.technician, "ann@example.com");
    let queue = tech.queue().await.expect("listing the queue");
    assert!(queue.iter().any(|w| w.guid == session.guid), "{queue:?}");
    let picked = tech.pick_up(session.guid).await.expect("picking up");
    let picked_grant = picked.grant.clone();
    let console_link = connector.attach(picked).await.expect("attaching");
    let applet_link = waiting.paired().await.expect("paired");
    let c = console_link.into_stream();
    let a = applet_link.into_stream();
    let (console_end, applet_end) = (c.ended, a.ended);
    let (console_reporter, applet_reporter) = (c.reporter, a.reporter);
    let (c, a) = tokio::join!(
        session_core::inner::connect(c.stream, &c.credentials),
        session_core::inner::accept(a.stream, &a.credentials)
    );
    let (c, a) = (
        c.expect("inner TLS, console side"),
        a.expect("inner TLS, applet side"),
    );
    assert_eq!(c.peer.guid, session.guid);
    assert_eq!(
        a.peer.grant, picked_grant,
        "the applet sees the signed grant"
    );
    assert_eq!(
        c.sas, a.sas,
        "both ends show the same short authentication string"
    );
    let console_identity = a.peer.clone();
    let (console, applet) = (c.stream, a.stream);
    Live {
        console,
        applet,
        console_end,
        applet_end,
        console_reporter,
        applet_reporter,
        guid: session.guid,
        console_identity,
    }
}

impl Live {
    /// A round trip through the gateway, both ways.
    pub async fn ping(&mut self) {
        self.console.write_all(b"ping").await.unwrap();
        self.console.flush().await.unwrap();
        let mut buf = [0u8; 4];
        self.applet.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");
        self.applet.write_all(b"pong").await.unwrap();
        self.applet.flush().await.unwrap();
        self.console.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
    }
}

/// A session run by `vigil console` and `vigil applet` processes: picked
/// up, a chat line each way, ended by the technician.
pub fn run_session(data: &Path, gw: &testkit::GatewayProcess) {
    use std::io::{BufRead, Write};
    let mut console = spawn(data, &console_args(gw, &[]));
    let mut to_console = console.stdin.take().unwrap();
    writeln!(to_console, "{PASSWORD}\n/new").unwrap();
    let mut lines = std::io::BufReader::new(console.stdout.take().unwrap()).lines();
    let pin = wait_line(&mut lines, |l| match l {
        session_core::lines::ConsoleLine::SessionCreated { pin, .. } => Some(pin),
        _ => None,
    });
    let mut applet = spawn(data, &applet_args(gw, &pin, &[]));
    writeln!(to_console, "/pick").unwrap();
    wait_line(&mut lines, |l| {
        matches!(l, session_core::lines::ConsoleLine::Paired { .. }).then_some(())
    });
    writeln!(applet.stdin.as_mut().unwrap(), "my printer is on fire").unwrap();
    wait_line(&mut lines, |l| match l {
        session_core::lines::ConsoleLine::Chat { text, .. } if text == "my printer is on fire" => {
            Some(())
        }
        _ => None,
    });
    writeln!(to_console, "hello from support\n/end").unwrap();
    drop(to_console);
    assert!(console.wait().unwrap().success());
    let _ = applet.wait();
}
