//! The gateway benchmark, against a real `vigil gateway` process on loopback:
//!
//! 1. relay throughput: console → applet bulk bytes inside the inner
//!    end-to-end TLS, through the gateway vs. the same endpoints connected
//!    directly (target ratio ≥ 0.3, and ≥ 500 MB/s);
//! 2. added round-trip latency of a 64-byte message, gateway vs. direct
//!    (target p99 ≤ 300 µs);
//! 3. full TLS 1.3 handshakes the gateway accepts per second of its own CPU
//!    time (target ≥ 2,500 per core);
//! 4. gateway RSS per paired idle session, for up to 10,000 sessions
//!    (target ≤ 48 KiB).
//!
//! Run: `cargo bench --bench gateway`. The last line is the summary.
//! `cargo bench --bench gateway -- throughput` runs the first part only.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{pair, through_gateway, throughput, Applet, Console, Setup, PASSWORD, USER};
use futures::StreamExt;
use gateway::session_ca::SessionCa;
use protocol::identity::{Role, SessionIdentity};
use protocol::tls::{self, Trust};
use protocol::wire::{self, Link, Message};
use session_core::client::Connector;
use session_core::inner::{self, Credentials, SessionKey};
use testkit::GatewayProcess;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const BULK: usize = 512 << 20;
const ROUND_TRIPS: usize = 20_000;
const HANDSHAKES: usize = 4_000;
const MAX_SESSIONS: usize = 10_000;

fn main() {
    // Each idle session holds two sockets in the gateway and two here.
    let (soft, hard) = rlimit::getrlimit(rlimit::Resource::NOFILE).expect("reading RLIMIT_NOFILE");
    let limit = rlimit::increase_nofile_limit(hard).unwrap_or(soft);
    let sessions = MAX_SESSIONS.min((limit as usize).saturating_sub(300) / 2);

    let setup = Setup::start("desktop_view");
    let (gw, trust, connector) = (&setup.gw, &setup.trust, &setup.connector);

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let only_throughput = std::env::args().any(|a| a == "throughput");
    rt.block_on(async {
        println!("== 1. relay throughput, {} MiB console -> applet inside the inner TLS", BULK >> 20);
        let (mut ours, mut reference) = (0f64, 0f64);
        for _ in 0..3 {
            let (c, a) = through_gateway(connector).await;
            ours = ours.max(throughput(c, a, BULK).await);
            let (c, a) = direct().await;
            reference = reference.max(throughput(c, a, BULK).await);
        }
        let tp_ratio = ours / reference;
        println!("ours (through the gateway): {ours:.0} MB/s; reference (direct over loopback): {reference:.0} MB/s; ratio {tp_ratio:.2} (target >= 0.30 and >= 500 MB/s)");
        if only_throughput {
            return;
        }

        println!("== 2. round trip of a 64-byte message");
        let (c, a) = through_gateway(connector).await;
        let gw_lat = latencies(c, a).await;
        let (c, a) = direct().await;
        let direct_lat = latencies(c, a).await;
        let added_p99 = gw_lat.p99.saturating_sub(direct_lat.p99);
        println!(
            "ours: p50 {} µs, p99 {} µs; reference (direct): p50 {} µs, p99 {} µs; added p99 {} µs (target <= 300)",
            gw_lat.p50.as_micros(), gw_lat.p99.as_micros(), direct_lat.p50.as_micros(), direct_lat.p99.as_micros(), added_p99.as_micros()
        );

        println!("== 3. full TLS 1.3 handshakes (no resumption), {HANDSHAKES} connections, 32 at a time");
        let (per_core, wall) = handshakes(gw, trust).await;
        let hs_ratio = per_core / 2_500.0;
        println!("ours: {per_core:.0} per second of gateway CPU ({wall:.0}/s wall clock, client on the same 2 cores); reference (target): 2500 per core; ratio {hs_ratio:.2}");

        println!("== 4. gateway memory per paired idle session ({sessions} sessions, {} TLS connections)", 2 * sessions);
        if sessions < MAX_SESSIONS {
            println!("   (the open-file hard limit here is {hard}; {MAX_SESSIONS} sessions need more than {} descriptors per process)", 2 * MAX_SESSIONS);
        }
        let kib = idle_sessions(connector, gw.pid(), sessions).await;
        let rss_ratio = kib / 48.0;
        println!("ours: {kib:.1} KiB per session; reference (target): 48 KiB; ratio {rss_ratio:.2} (<= 1 meets it)");

        println!(
            "ratio ours/reference: throughput {tp_ratio:.2} ({ours:.0} MB/s), added p99 latency {} µs (target 300), RSS per session {kib:.1} KiB ({rss_ratio:.2} of 48), handshakes {per_core:.0}/core/s ({hs_ratio:.2} of 2500)",
            added_p99.as_micros()
        );
    });
    setup.stop();
}

/// The same two endpoints, inner TLS over a direct loopback connection.
async fn direct() -> (Console, Applet) {
    let ca = SessionCa::new("bench").expect("a session CA");
    let guid = uuid::Uuid::new_v4();
    let creds = |role| {
        let key = SessionKey::generate().expect("a key");
        let id = SessionIdentity {
            guid,
            role,
            grant: vec![],
            single_prompt: false,
            store_chat: false,
        };
        let cert = ca
            .issue(
                &key.csr_pem().expect("a CSR"),
                &id,
                Duration::from_secs(600),
            )
            .expect("a certificate");
        Credentials::new(key, &cert, ca.certificate_pem(), guid, role).expect("credentials")
    };
    let (c_creds, a_creds) = (creds(Role::Console), creds(Role::Applet));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("address");
    let (tcp_c, tcp_a) = tokio::join!(TcpStream::connect(addr), listener.accept());
    let (tcp_c, (tcp_a, _)) = (tcp_c.expect("connect"), tcp_a.expect("accept"));
    tcp_c.set_nodelay(true).expect("nodelay");
    tcp_a.set_nodelay(true).expect("nodelay");
    let (c, a) = tokio::join!(
        inner::connect(tcp_c, &c_creds),
        inner::accept(tcp_a, &a_creds)
    );
    (
        Box::new(c.expect("inner TLS").stream),
        Box::new(a.expect("inner TLS").stream),
    )
}

struct Latency {
    p50: Duration,
    p99: Duration,
}

/// Round trips of a 64-byte message, console → applet → console.
async fn latencies(mut console: Console, mut applet: Applet) -> Latency {
    let echo = tokio::spawn(async move {
        let mut buf = [0u8; 64];
        while applet.read_exact(&mut buf).await.is_ok() {
            if applet.write_all(&buf).await.is_err() || applet.flush().await.is_err() {
                break;
            }
        }
    });
    let msg = [7u8; 64];
    let mut buf = [0u8; 64];
    let mut times = Vec::with_capacity(ROUND_TRIPS);
    for i in 0..ROUND_TRIPS + 1_000 {
        let start = Instant::now();
        console.write_all(&msg).await.expect("sending");
        console.flush().await.expect("flushing");
        console.read_exact(&mut buf).await.expect("receiving");
        if i >= 1_000 {
            times.push(start.elapsed());
        }
    }
    drop(console);
    echo.abort();
    times.sort();
    Latency {
        p50: times[times.len() / 2],
        p99: times[times.len() * 99 / 100],
    }
}

/// CPU seconds (user + system) the process has used so far.
fn cpu_seconds(pid: u32) -> f64 {
    let stat =
        std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc/PID/stat");
    // Fields after the command name (which may hold spaces) start after the last ')'.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map_or("", |(_, rest)| rest)
        .split_whitespace()
        .collect();
    let ticks: f64 =
        fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
    let hz = std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .trim()
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(100.0);
    ticks / hz
}

/// Resident memory of the process in KiB.
fn rss_kib(pid: u32) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("reading /proc/PID/status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/PID/status")
}

/// Full handshakes per second of gateway CPU time, and per wall-clock second.
async fn handshakes(gw: &GatewayProcess, trust: &Trust) -> (f64, f64) {
    let mut config = (*tls::client_config(trust).expect("client config")).clone();
    config.resumption = rustls::client::Resumption::disabled();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let name = rustls_pki_types::ServerName::try_from("127.0.0.1").expect("a name");
    let addr = gw.addr.clone();
    let one = || {
        let (connector, name, addr) = (connector.clone(), name.clone(), addr.clone());
        async move {
            let tcp = TcpStream::connect(&addr).await.expect("connect");
            tcp.set_nodelay(true).expect("nodelay");
            let tls = connector.connect(name, tcp).await.expect("TLS handshake");
            let mut link = Link::new(tls);
            link.send(&Message::Hello {
                version: wire::VERSION,
                client: "bench".into(),
            })
            .await
            .expect("hello");
            assert!(matches!(
                link.recv().await,
                Ok(Some(Message::Welcome { .. }))
            ));
        }
    };
    let cpu_before = cpu_seconds(gw.pid());
    let start = Instant::now();
    futures::stream::iter(0..HANDSHAKES)
        .for_each_concurrent(32, |_| one())
        .await;
    let wall = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds(gw.pid()) - cpu_before;
    (HANDSHAKES as f64 / cpu.max(0.01), HANDSHAKES as f64 / wall)
}

/// Pairs `n` idle sessions and returns the gateway's RSS growth per session, in KiB.
async fn idle_sessions(connector: &Connector, pid: u32, n: usize) -> f64 {
    const WORKERS: usize = 32;
    let mut techs = Vec::new();
    for _ in 0..WORKERS {
        techs.push(connector.login(USER, PASSWORD, None).await.expect("login"));
    }
    let before = rss_kib(pid);
    let start = Instant::now();
    let per_worker = n.div_ceil(WORKERS);
    let mut held = Vec::with_capacity(n);
    let results =
        futures::future::join_all(techs.iter_mut().enumerate().map(|(w, tech)| async move {
            let count = per_worker.min(n.saturating_sub(w * per_worker));
            let mut pairs = Vec::with_capacity(count);
            for _ in 0..count {
                pairs.push(pair(connector, tech).await);
            }
            pairs
        }))
        .await;
    for pairs in results {
        held.extend(pairs);
    }
    let setup = start.elapsed();
    let after = rss_kib(pid);
    println!(
        "   {} sessions paired in {:.1} s; gateway RSS {:.0} MiB before, {:.0} MiB after",
        held.len(),
        setup.as_secs_f64(),
        before / 1024.0,
        after / 1024.0
    );
    let per_session = (after - before) / held.len() as f64;
    drop(held);
    drop(techs);
    per_session
}
