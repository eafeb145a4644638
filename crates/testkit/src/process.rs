//! A `vigil gateway` (or `vigil web`) running as a child process, for end-to-end tests and
//! benchmarks: started on a free loopback port, stopped with SIGTERM.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A `vigil gateway` child process on a loopback port of its own.
pub struct GatewayProcess {
    child: std::process::Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The development CA file clients trust.
    pub ca: PathBuf,
    /// The CA's SHA-256 fingerprint as printed.
    pub fingerprint: String,
    /// A gateway's web portal (`--web`), `127.0.0.1:PORT`.
    pub portal: Option<String>,
    output: std::thread::JoinHandle<String>,
}

impl GatewayProcess {
    /// Starts `BIN --data DIR GLOBAL... gateway --listen 127.0.0.1:0 ARGS...`
    /// and waits until it listens.
    pub fn start(bin: &Path, data: &Path, global: &[&str], args: &[&str]) -> Self {
        Self::start_logging(bin, data, global, args, Stdio::inherit())
    }

    /// Like [`GatewayProcess::start`], with the gateway's log (stderr) sent to `log`.
    pub fn start_logging(
        bin: &Path,
        data: &Path,
        global: &[&str],
        args: &[&str],
        log: Stdio,
    ) -> Self {
        Self::serve(bin, data, global, "gateway", args, log, "listening on ")
    }

    /// Starts `BIN --data DIR GLOBAL... web --listen 127.0.0.1:0 ARGS...`
    /// (the portal: `addr` is its `127.0.0.1:PORT`) and waits until it listens.
    pub fn start_portal(bin: &Path, data: &Path, global: &[&str], args: &[&str]) -> Self {
        Self::serve(
            bin,
            data,
            global,
            "web",
            args,
            Stdio::inherit(),
            "portal on https://",
        )
    }

    fn serve(
        bin: &Path,
        data: &Path,
        global: &[&str],
        command: &str,
        args: &[&str],
        log: Stdio,
        ready: &str,
    ) -> Self {
        use std::io::BufRead;
        let mut child = Command::new(bin)
            .env_remove("RUST_LOG")
            .arg("--data")
            .arg(data)
            .args(global)
            .args([command, "--listen", "127.0.0.1:0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("starting vigil {command}: {e}"));
        let mut lines =
            std::io::BufReader::new(child.stdout.take().expect("stdout is piped")).lines();
        let (mut ca, mut fingerprint, mut portal) = (None, None, None);
        let addr = loop {
            let line = match lines.next() {
                Some(Ok(line)) => line,
                other => panic!(
                    "vigil {command} ended before listening: {other:?} (status {:?})",
                    child.wait()
                ),
            };
            if let Some(v) = line.strip_prefix("CA certificate: ") {
                ca = Some(PathBuf::from(v));
            } else if let Some(v) = line.strip_prefix("CA fingerprint (SHA-256): ") {
                fingerprint = Some(v.to_owned());
            } else if let Some(v) = line
                .strip_prefix("portal on https://")
                .filter(|_| command != "web")
            {
                portal = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix(ready) {
                break v.to_owned();
            }
        };
        // Keep reading so the gateway never blocks on a full pipe; hand the rest back at stop.
        let output =
            std::thread::spawn(move || lines.map_while(Result::ok).collect::<Vec<_>>().join("\n"));
        GatewayProcess {
            child,
            addr,
            ca: ca.expect("vigil printed its CA file"),
            fingerprint: fingerprint.expect("vigil printed its CA fingerprint"),
            portal,
            output,
        }
    }

    /// The gateway's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
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
