//! Running `vigil` as a child process and reading what it left behind.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// A `vigil` command with `args` after `--db URL`, quiet logging.
pub fn vigil(db: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.env_remove("RUST_LOG").arg("--db").arg(db).args(args);
    cmd
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

/// The JSON objects of a `--json` listing.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The password every test account gets.
pub const PASSWORD: &str = "violet tractor mango";

/// Runs `vigil --data DIR args...` with `stdin` as its standard input.
pub fn run_in(data: &Path, args: &[&str], stdin: &str) -> Run {
    use std::io::Write;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .env_remove("RUST_LOG")
        .arg("--data")
        .arg(data)
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

/// A client connector trusting `gw`'s CA file.
pub fn connector(gw: &GatewayProcess) -> session_core::client::Connector {
    let trust = session_core::tls::Trust::ca_file(&gw.ca).expect("reading the CA file");
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
