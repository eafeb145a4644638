//! What the benchmarks share: a data directory with a technician account, a
//! real `vigil gateway` process, and live sessions through it.

#![allow(dead_code)] // each bench uses its own part of this module

use std::path::Path;
use std::time::Instant;

use protocol::identity::SessionIdentity;
use protocol::tls::Trust;
use session_core::client::{Connector, SessionLink, SessionReporter, Technician};
use session_core::inner;
use testkit::GatewayProcess;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

pub const PASSWORD: &str = "violet tractor mango";
pub const USER: &str = "bench@example.com";

/// A data directory, a gateway on it, and a connector that trusts it.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub gw: GatewayProcess,
    pub trust: Trust,
    pub connector: Connector,
}

impl Setup {
    /// Group `bench` with `permissions`, its technician, and a gateway.
    pub fn start(permissions: &str) -> Self {
        Self::with_policy(permissions, &[])
    }

    /// Like [`Setup::start`], with `vigil admin policy set POLICY...` first.
    pub fn with_policy(permissions: &str, policy: &[&str]) -> Self {
        let bin = Path::new(env!("CARGO_BIN_EXE_vigil"));
        let dir = tempfile::tempdir().expect("a temporary directory");
        vigil(
            bin,
            dir.path(),
            &[
                "admin",
                "group",
                "add",
                "bench",
                "--permissions",
                permissions,
            ],
            "",
        );
        vigil(
            bin,
            dir.path(),
            &["admin", "user", "add", USER, "--group", "bench"],
            PASSWORD,
        );
        if !policy.is_empty() {
            let mut set = vec!["admin", "policy", "set"];
            set.extend_from_slice(policy);
            vigil(bin, dir.path(), &set, "");
        }
        let gw = GatewayProcess::start(bin, dir.path(), &[], &[]);
        let trust = Trust::ca_file(&gw.ca).expect("the gateway's CA");
        let connector = Connector::new(&gw.addr, &trust, "vigil bench").expect("a connector");
        Self {
            dir,
            gw,
            trust,
            connector,
        }
    }

    /// Stops the gateway (SIGTERM) and checks it exited cleanly.
    pub fn stop(self) {
        let (code, _) = self.gw.stop();
        assert_eq!(code, 0, "the gateway did not stop cleanly");
    }
}

/// Runs `vigil --data DATA ARGS...` with `stdin_line` as its input; it must succeed.
pub fn vigil(bin: &Path, data: &Path, args: &[&str], stdin_line: &str) {
    use std::io::Write;
    let mut child = std::process::Command::new(bin)
        .arg("--data")
        .arg(data)
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("running vigil");
    let mut stdin = child.stdin.take().expect("piped stdin");
    writeln!(stdin, "{stdin_line}").expect("writing stdin");
    drop(stdin);
    assert!(
        child.wait().expect("waiting for vigil").success(),
        "vigil {args:?} failed"
    );
}

/// Either end of an inner session.
pub trait Stream: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Stream for T {}
pub type Console = Box<dyn Stream>;
pub type Applet = Box<dyn Stream>;

/// Creates, joins, picks up and attaches one session.
pub async fn pair(connector: &Connector, tech: &mut Technician) -> (SessionLink, SessionLink) {
    let session = tech.create_session().await.expect("create");
    let waiting = connector.join(&session.pin).await.expect("join");
    let picked = tech.pick_up(session.guid).await.expect("pick up");
    let console = connector.attach(picked).await.expect("attach");
    let applet = waiting.paired().await.expect("paired");
    (console, applet)
}

/// A live session through the gateway, with its inner TLS established.
pub struct Live {
    pub console: tokio_rustls::client::TlsStream<tokio::io::DuplexStream>,
    pub applet: tokio_rustls::server::TlsStream<tokio::io::DuplexStream>,
    pub console_reporter: SessionReporter,
    pub applet_reporter: SessionReporter,
    /// The console as the applet verified it.
    pub console_identity: SessionIdentity,
    pub guid: uuid::Uuid,
}

/// Logs in, pairs a session and establishes its inner TLS.
pub async fn live(connector: &Connector) -> Live {
    let mut tech = connector.login(USER, PASSWORD, None).await.expect("login");
    let (console, applet) = pair(connector, &mut tech).await;
    let (c, a) = (console.into_stream(), applet.into_stream());
    let (ci, ai) = tokio::join!(
        inner::connect(c.stream, &c.credentials),
        inner::accept(a.stream, &a.credentials)
    );
    let (ci, ai) = (ci.expect("inner TLS"), ai.expect("inner TLS"));
    // The control link is not needed once the session is live.
    drop(tech);
    Live {
        guid: ai.peer.guid,
        console_identity: ai.peer,
        console: ci.stream,
        applet: ai.stream,
        console_reporter: c.reporter,
        applet_reporter: a.reporter,
    }
}

/// The two ends of a live session through the gateway, as plain streams.
pub async fn through_gateway(connector: &Connector) -> (Console, Applet) {
    let l = live(connector).await;
    (Box::new(l.console), Box::new(l.applet))
}

/// MB/s of `total` bytes from console to applet.
pub async fn throughput(mut console: Console, mut applet: Applet, total: usize) -> f64 {
    let chunk = vec![0x5au8; 64 * 1024];
    let start = Instant::now();
    let send = tokio::spawn(async move {
        let mut sent = 0;
        while sent < total {
            console.write_all(&chunk).await.expect("sending");
            sent += chunk.len();
        }
        console.flush().await.expect("flushing");
        console
    });
    let mut buf = vec![0u8; 256 * 1024];
    let mut got = 0;
    while got < total {
        let n = applet.read(&mut buf).await.expect("receiving");
        assert!(n > 0, "the stream ended early");
        got += n;
    }
    let secs = start.elapsed().as_secs_f64();
    let _console = send.await.expect("the sender");
    total as f64 / secs / 1e6
}

/// Waits for `child` to exit successfully, following its peak RSS
/// (`VmHWM`, a high-water mark, so the last reading is the peak); returns
/// it in KiB.
pub fn peak_rss_kb(child: &mut std::process::Child, what: &str) -> u64 {
    let status = format!("/proc/{}/status", child.id());
    let mut peak_kb = 0u64;
    loop {
        if let Some(kb) = std::fs::read_to_string(&status)
            .ok()
            .and_then(|s| vm_hwm_kb(&s))
        {
            peak_kb = peak_kb.max(kb);
        }
        match child.try_wait().expect("waiting") {
            Some(done) => {
                assert!(done.success(), "{what} failed");
                return peak_kb;
            }
            None => std::thread::sleep(std::time::Duration::from_millis(20)),
        }
    }
}

fn vm_hwm_kb(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Frames a second the corpus clips are recorded at.
pub const FPS: u64 = 10;

/// Records the clips in `inputs` at 1920×1080, one after the other, as
/// `vigil recording encode` does, into `out` with `header`.
pub fn record(
    inputs: &[std::path::PathBuf],
    out: &Path,
    dir: &Path,
    header: recorder::vrec::Header,
) {
    use std::process::Stdio;
    let mut ffmpeg = testkit::media::raw_bgra(inputs, dir)
        .stdout(Stdio::piped())
        .spawn()
        .expect("ffmpeg");
    let _ = std::fs::remove_file(out);
    let mut writer = recorder::vrec::Writer::create(out, header).expect("a new recording");
    let mut source =
        recorder::raw::RawFrames::new(ffmpeg.stdout.take().expect("piped"), 1920, 1080);
    let done =
        recorder::vrec::record(&mut source, &mut writer, FPS as f64, |_| {}).expect("recording");
    assert!(ffmpeg.wait().expect("ffmpeg").success());
    writer.finish(done.ended_us).expect("finishing");
}

/// `hours` of recording: the corpus clips fifteen times over for each.
pub fn long_recording(
    corpus: &Path,
    dir: &Path,
    hours: usize,
    header: recorder::vrec::Header,
) -> std::path::PathBuf {
    let path = dir.join(format!("{hours}h.vrec"));
    let list: Vec<std::path::PathBuf> = (0..15 * hours)
        .flat_map(|_| {
            testkit::media::CLIPS
                .iter()
                .map(|c| corpus.join(format!("{c}.mkv")))
        })
        .collect();
    record(&list, &path, dir, header);
    path
}

/// Group `bench` (no permissions) and `user`, its compliance officer, in `data`.
pub fn compliance_account(data: &Path, user: &str, password: &str) {
    let bin = Path::new(env!("CARGO_BIN_EXE_vigil"));
    vigil(
        bin,
        data,
        &["admin", "group", "add", "bench", "--permissions", "none"],
        "",
    );
    vigil(
        bin,
        data,
        &[
            "admin",
            "user",
            "add",
            user,
            "--group",
            "bench",
            "--role",
            "compliance",
        ],
        password,
    );
}

/// The SQLite audit log of `data`, open for appending.
pub async fn data_log(data: &Path) -> audit_db::AuditLog {
    let url: audit_db::DbUrl = format!("sqlite://{}", data.join("audit.db").display())
        .parse()
        .expect("a SQLite URL");
    audit_db::AuditLog::open(&url, audit_db::OpenMode::Create)
        .await
        .expect("the log")
}
