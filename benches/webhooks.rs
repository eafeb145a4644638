//! The webhook delivery benchmark, against receivers on 127.0.0.1 that
//! answer 200 at once (testkit's, one thread per connection), all on the
//! same two cores.
//!
//! 1. Throughput: posts to 4 endpoints delivered by a `vigil webhook run`
//!    process from a SQLite log, against the same posts made by the same
//!    HTTP client and signing with no database (`webhook::deliver::Target`
//!    in a loop, same concurrency): target ≥ 2,000/s.
//! 2. Latency: a session's end appended to the log → its post received, with
//!    the worker in the same process as the log's writer (as in the gateway):
//!    target p99 ≤ 250 ms.
//! 3. A dead endpoint (connection refused) with 100,000 posts pending beside
//!    the 4 live ones: the worker process's peak RSS (target ≤ 64 MiB) and
//!    the live endpoints' rate against part 1's (target ≥ 0.9).
//!
//! Run: `cargo bench --bench webhooks`. The last line is the summary.

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_db::event::{AdminNote, Alarm, EndReason, SecurityAlarm, SessionCreated, SessionEnded};
use audit_db::webhooks::Webhooks;
use audit_db::{Actor, AuditLog, DbUrl, EventKind, NewEvent, OpenMode, Source};
use futures::StreamExt;
use testkit::Receiver;
use webhook::admin::{EndpointAdmin, NewEndpoint};
use webhook::deliver::Target;
use webhook::schedule::SystemClock;
use webhook::sign::Secret;
use webhook::worker::{Config, Worker};

const ENDPOINTS: usize = 4;
const NOTES: usize = 5_000;
const DEAD_PENDING: usize = 100_000;
const LATENCY_ROUNDS: usize = 200;

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}", dir.path().join("audit.db").display());
    let log = AuditLog::open(&url.parse::<DbUrl>().expect("a URL"), OpenMode::Create)
        .await
        .expect("the log");
    let admin = EndpointAdmin::new(log.clone(), "bench", Source::cli("bench"));
    let receivers: Vec<Receiver> = (0..ENDPOINTS).map(|_| Receiver::start()).collect();
    let mut secrets = Vec::new();
    for r in &receivers {
        let e = admin
            .add(endpoint(&r.url, &["admin.note"]))
            .await
            .expect("an endpoint");
        secrets.push(e.secret);
    }

    // 1. Throughput.
    println!("== 1. {NOTES} events x {ENDPOINTS} endpoints, delivered by `vigil webhook run`");
    let reference = bare_posts(&receivers, &secrets[0]).await;
    let before = received(&receivers);
    append_notes(&log, NOTES).await;
    let mut worker = worker_process(&url);
    let (ours, plain_mb) = wait_all(&receivers, &before, NOTES, worker.id());
    stop(&mut worker);
    println!(
        "ours: {ours:.0} posts/s (worker peak RSS {plain_mb:.1} MiB); reference (same client and signing, no database, same concurrency): {reference:.0} posts/s; target 2,000/s; ratio {:.2}",
        ours / reference
    );

    // 2. Latency, session end to post, worker in process.
    println!("== 2. session end -> post received, {LATENCY_ROUNDS} sessions, worker in the log's process");
    let latency = Receiver::start();
    admin
        .add(endpoint(&latency.url, &["session.ended"]))
        .await
        .expect("an endpoint");
    let stop_worker = tokio_util::sync::CancellationToken::new();
    let in_process = Worker::new(
        log.clone(),
        Arc::new(SystemClock),
        Config::default(),
        Source::from_stored("webhooks@bench".to_owned()),
    );
    let running = tokio::spawn(in_process.run(stop_worker.clone()));
    let mut times = Vec::new();
    for i in 0..LATENCY_ROUNDS {
        let started = Instant::now();
        append_session(&log).await;
        let rx = &latency;
        tokio::task::block_in_place(|| rx.wait_for(i + 1, Duration::from_secs(30)));
        times.push(latency.received()[i].at.duration_since(started));
    }
    stop_worker.cancel();
    running.await.expect("the worker");
    times.sort();
    let p50 = ms(times[times.len() / 2]);
    let p99 = ms(times[times.len() * 99 / 100]);
    println!(
        "ours: p50 {p50:.1} ms, p99 {p99:.1} ms; target p99 250 ms; ratio {:.2}",
        p99 / 250.0
    );

    // 3. A dead endpoint with 100,000 posts pending.
    println!(
        "== 3. a dead endpoint with {DEAD_PENDING} posts pending beside the {ENDPOINTS} live ones"
    );
    let dead_port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a port");
        l.local_addr().expect("its address").port()
    };
    let dead = admin
        .add(endpoint(
            &format!("http://127.0.0.1:{dead_port}/gone"),
            &["security.alarm"],
        ))
        .await
        .expect("the dead endpoint");
    append_alarms(&log, DEAD_PENDING).await;
    let mut worker = worker_process(&url);
    let hooks = Webhooks::new(log.store().clone());
    // Every one of its posts made (and failing) before the live ones start.
    loop {
        let filter = audit_db::webhooks::DeliveryFilter {
            endpoint: Some(dead.id.clone()),
            ..Default::default()
        };
        let made = hooks
            .messages(&filter, DEAD_PENDING as i64)
            .await
            .expect("messages")
            .len();
        // ...and every endpoint has looked at the whole log.
        let head = log.store().head().await.expect("the head").seq;
        let caught_up = hooks
            .endpoints()
            .await
            .expect("endpoints")
            .iter()
            .all(|e| e.cursor_seq == head);
        if made == DEAD_PENDING && caught_up {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let before = received(&receivers);
    append_notes(&log, NOTES).await;
    let (with_dead, peak_mb) = wait_all(&receivers, &before, NOTES, worker.id());
    stop(&mut worker);
    let pending = hooks
        .messages(
            &audit_db::webhooks::DeliveryFilter {
                endpoint: Some(dead.id.clone()),
                status: Some("pending".into()),
                ..Default::default()
            },
            DEAD_PENDING as i64,
        )
        .await
        .expect("messages")
        .len();
    println!(
        "ours: live endpoints {with_dead:.0} posts/s beside the dead one ({pending} of its posts still pending) against {ours:.0} posts/s without it (ratio {:.2}, target 0.9); worker peak RSS {peak_mb:.1} MiB (target 64)",
        with_dead / ours
    );
    log.close().await;
    println!(
        "ratio ours/reference: throughput {ours:.0} posts/s ({:.2} of the bare client's {reference:.0}, {:.2} of the 2,000 target); end->post p99 {p99:.1} ms ({:.2} of 250); with a dead endpoint {:.2} of the rate (target 0.9), peak RSS {peak_mb:.1} MiB ({:.2} of 64)",
        ours / reference,
        ours / 2000.0,
        p99 / 250.0,
        with_dead / ours,
        peak_mb / 64.0
    );
}

fn endpoint(url: &str, events: &[&str]) -> NewEndpoint {
    NewEndpoint {
        url: url.to_owned(),
        events: events.iter().map(|e| (*e).to_owned()).collect(),
        allow_private: true,
        allow_http: true,
        ..NewEndpoint::default()
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

async fn append_notes(log: &AuditLog, n: usize) {
    let notes = (0..n).map(|i| {
        NewEvent::now(
            Actor::admin("bench"),
            Source::cli("bench"),
            EventKind::AdminNote(AdminNote {
                text: format!("customer record {i} updated"),
            }),
        )
    });
    for chunk in notes.collect::<Vec<_>>().chunks(4096) {
        log.append(chunk.to_vec()).await.expect("appending");
    }
}

async fn append_alarms(log: &AuditLog, n: usize) {
    let alarms: Vec<NewEvent> = (0..n)
        .map(|i| {
            NewEvent::now(
                Actor::system("gateway"),
                Source::gateway(),
                EventKind::SecurityAlarm(SecurityAlarm {
                    alarm: Alarm::PinGuessing,
                    count: i as u64,
                    window_s: 600,
                }),
            )
        })
        .collect();
    for chunk in alarms.chunks(8192) {
        log.append(chunk.to_vec()).await.expect("appending");
    }
}

async fn append_session(log: &AuditLog) {
    let s = uuid::Uuid::now_v7();
    let tech = Actor::technician("ann@example.com");
    log.append(vec![
        NewEvent::now(
            tech.clone(),
            Source::gateway(),
            EventKind::SessionCreated(SessionCreated {
                technician: "ann@example.com".into(),
                pin_issued: true,
                gateway: None,
                group: Some("tier1".into()),
            }),
        )
        .in_session(s),
        NewEvent::now(
            tech,
            Source::gateway(),
            EventKind::SessionEnded(SessionEnded {
                reason: EndReason::EndedByConsole("done".into()),
                duration_ms: 1,
                bytes_to_applet: 0,
                bytes_to_console: 0,
            }),
        )
        .in_session(s),
    ])
    .await
    .expect("appending a session");
}

/// The same number of posts, made by the delivery client alone with the
/// worker's concurrency per endpoint; posts per second.
async fn bare_posts(receivers: &[Receiver], secret: &str) -> f64 {
    let secret = Secret::parse(secret).expect("a secret");
    let body =
        r#"{"type":"admin.note","timestamp":"2026-12-01T00:00:00.000000Z","data":{"version":1}}"#;
    let before = received(receivers);
    let started = Instant::now();
    let tasks = receivers.iter().map(|r| {
        let target = Target::new(
            r.url.parse().expect("a URL"),
            None,
            true,
            webhook::deliver::TIMEOUT,
        )
        .expect("a client");
        let secret = std::slice::from_ref(&secret);
        async move {
            futures::stream::iter(0..NOTES)
                .map(|i| {
                    let target = target.clone();
                    async move {
                        let o = target
                            .post(&format!("ref-{i}"), 1_764_547_200, body, secret)
                            .await;
                        assert!(o.delivered(), "{o:?}");
                    }
                })
                .buffer_unordered(Config::default().concurrency)
                .collect::<Vec<_>>()
                .await
        }
    });
    futures::future::join_all(tasks).await;
    let elapsed = started.elapsed().as_secs_f64();
    assert_eq!(received(receivers) - before, NOTES * receivers.len());
    (NOTES * receivers.len()) as f64 / elapsed
}

fn received(receivers: &[Receiver]) -> usize {
    receivers.iter().map(Receiver::count).sum()
}

/// Waits until every receiver has `n` more posts; posts per second from
/// the first to the last, and the worker's peak RSS (MiB).
fn wait_all(receivers: &[Receiver], before: &usize, n: usize, pid: u32) -> (f64, f64) {
    let want = before + n * receivers.len();
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut first = None;
    while received(receivers) < want {
        assert!(
            Instant::now() < deadline,
            "posts did not all arrive within 10 min"
        );
        if first.is_none() && received(receivers) > *before {
            first = Some(Instant::now());
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    let elapsed = first.map_or(1e-9, |f| f.elapsed().as_secs_f64());
    (
        n as f64 * receivers.len() as f64 / elapsed,
        peak_rss_mib(pid),
    )
}

fn peak_rss_mib(pid: u32) -> f64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the worker is alive");
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .expect("VmHWM");
    kb / 1024.0
}

fn worker_process(url: &str) -> Child {
    use std::io::BufRead;
    let mut child = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["--db", url, "webhook", "run"])
        .env_remove("RUST_LOG")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting vigil webhook run");
    let mut line = String::new();
    std::io::BufReader::new(child.stdout.as_mut().expect("piped"))
        .read_line(&mut line)
        .expect("its first line");
    assert_eq!(line.trim(), "delivering webhooks");
    child
}

fn stop(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let status = child.wait().expect("waiting for the worker");
    assert!(status.success(), "the worker exited with {status}");
}
