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
pub struct GatewayProcess {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The development CA file clients trust.
    pub ca: PathBuf,
    /// The CA's SHA-256 fingerprint as printed.
    pub fingerprint: String,
    output: std::thread::JoinHandle<String>,
}

impl GatewayProcess {
    /// Starts `vigil --data DIR gateway` (plus `args`) and waits until it listens.
    pub fn start(data: &Path, args: &[&str]) -> Self {
        Self::spawn(data, &[], args)
    }

    /// Starts a gateway whose audit database is `db` (certificates stay in `data`).
    pub fn start_with_db(data: &Path, db: &str) -> Self {
        Self::spawn(data, &["--db", db], &[])
    }

    fn spawn(data: &Path, global: &[&str], args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
            .env_remove("RUST_LOG")
            .arg("--data")
            .arg(data)
            .args(global)
            .args(["gateway", "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("starting vigil gateway");
        let mut lines =
            std::io::BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let (mut ca, mut fingerprint) = (None, None);
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                other => panic!(
                    "vigil gateway ended before listening: {other:?} (status {:?})",
                    child.wait()
                ),
            };
            if let Some(v) = line.strip_prefix("CA certificate: ") {
                ca = Some(PathBuf::from(v));
            } else if let Some(v) = line.strip_prefix("CA fingerprint (SHA-256): ") {
                fingerprint = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("listening on ") {
                break v.to_owned();
            }
        };
        // Keep reading so the gateway never blocks on a full pipe; hand the rest back at stop.
        let output =
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        GatewayProcess {
            child,
            addr,
            ca: ca.expect("the gateway printed its CA file"),
            fingerprint: fingerprint.expect("the gateway printed its CA fingerprint"),
            output,
        }
    }

    /// A client connector trusting the gateway's CA file.
    pub fn connector(&self) -> session_core::client::Connector {
        let trust = session_core::tls::Trust::ca_file(&self.ca).expect("reading the CA file");
        session_core::client::Connector::new(&self.addr, &trust, "vigil tests")
            .expect("a connector")
    }

    /// Sends SIGTERM and waits (at most 60 s) for the exit; returns the exit
    /// code and what it printed after starting.
    pub fn stop(mut self) -> (i32, String) {
        let pid = self.child.id().to_string();
        let killed = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("running kill");
        assert!(killed.success(), "kill -TERM {pid} failed");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("waiting for the gateway") {
                break status;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the gateway did not stop within 60 s of SIGTERM"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        };
        // Replace the handle so Drop has nothing left to join.
        let output = std::mem::replace(&mut self.output, std::thread::spawn(String::new));
        (
            status.code().unwrap_or(-1),
            output.join().unwrap_or_default(),
        )
    }
}

impl Drop for GatewayProcess {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
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
