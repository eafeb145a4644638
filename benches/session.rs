//! The support-session benchmark, against a real `vigil gateway` process on
//! loopback, with the console and applet engines in this process:
//!
//! 1. file transfer console → applet through the gateway, streamed, with MD5
//!    and SHA-256 on both ends and the file written to disk, vs. the relay's
//!    raw throughput in the same run (target ratio ≥ 0.8);
//! 2. a chat message sent → its audit event durable in the database, p99
//!    (target ≤ 100 ms).
//!
//! Run: `cargo bench --bench session`. The last line is the summary.

mod common;

use std::time::{Duration, Instant};

use common::{live, through_gateway, throughput, Setup};
use session_core::session::applet::{self, AppletConfig, ConsentMode};
use session_core::session::console::{Console, Transfer};
use tokio::sync::mpsc;

const FILE: usize = 256 << 20;
const CHATS: usize = 2_000;

fn main() {
    let setup = Setup::start("send_files");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    rt.block_on(async {
        let work = setup.dir.path().join("bench-files");
        std::fs::create_dir_all(&work).expect("a work directory");
        let source = work.join("payload.bin");
        let bytes: Vec<u8> = (0..FILE).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        std::fs::write(&source, &bytes).expect("writing the payload");
        drop(bytes);

        println!("== 1. file transfer, {} MiB console -> applet, MD5 + SHA-256 on both ends", FILE >> 20);
        let (mut file_rate, mut raw_rate) = (0f64, 0f64);
        for round in 0..2 {
            let (c, a) = through_gateway(&setup.connector).await;
            raw_rate = raw_rate.max(throughput(c, a, FILE).await);
            file_rate = file_rate.max(transfer(&setup, &source, &work.join(format!("in-{round}"))).await);
        }
        let file_ratio = file_rate / raw_rate;
        println!("ours (file transfer): {file_rate:.0} MB/s; reference (raw relay, same run): {raw_rate:.0} MB/s; ratio {file_ratio:.2} (target >= 0.80)");

        println!("== 2. chat message sent -> its audit event durable, {CHATS} messages");
        let (p50, p99) = chat_latency(&setup, &work).await;
        println!("ours: p50 {:.1} ms, p99 {:.1} ms; reference (target): p99 100 ms; ratio {:.2}", ms(p50), ms(p99), ms(p99) / 100.0);
        println!(
            "ratio ours/reference: file transfer {file_ratio:.2} of the raw relay ({file_rate:.0} / {raw_rate:.0} MB/s, target 0.80), chat to durable p99 {:.1} ms ({:.2} of 100 ms)",
            ms(p99),
            ms(p99) / 100.0
        );
    });
    setup.stop();
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Engines on both ends of a fresh live session.
async fn engines(
    setup: &Setup,
    downloads: &std::path::Path,
) -> (
    Console<tokio_rustls::client::TlsStream<tokio::io::DuplexStream>>,
    tokio::task::JoinHandle<()>,
) {
    let l = live(&setup.connector).await;
    let identity = l.console_identity.clone();
    let (_commands, commands_rx) = mpsc::channel(1);
    let (events_tx, mut events) = mpsc::channel(64);
    let config = AppletConfig {
        consent: ConsentMode::GrantAll,
        download_dir: downloads.to_owned(),
        screen: None,
        fps: 10,
        input: None,
    };
    let applet = tokio::spawn(async move {
        let run = applet::run(
            l.applet,
            l.console_identity,
            config,
            l.applet_reporter,
            commands_rx,
            events_tx,
        );
        let drain = async { while events.recv().await.is_some() {} };
        let _commands = _commands;
        let (_ended, ()) = tokio::join!(run, drain);
    });
    let (console, _events) = Console::start(
        l.console,
        &identity,
        l.console_reporter,
        None,
        downloads.join("console"),
    );
    (console, applet)
}

/// MB/s of one verified file transfer.
async fn transfer(setup: &Setup, source: &std::path::Path, downloads: &std::path::Path) -> f64 {
    let (console, applet) = engines(setup, downloads).await;
    let start = Instant::now();
    let result = console.send_file(source).await.expect("the transfer");
    let secs = start.elapsed().as_secs_f64();
    let Transfer::Verified { digests, .. } = result else {
        panic!("the transfer did not verify: {result:?}");
    };
    console.end().await;
    let _ = applet.await;
    digests.size as f64 / secs / 1e6
}

/// p50 and p99 of chat → durable (the console waits for the gateway's ack).
async fn chat_latency(setup: &Setup, work: &std::path::Path) -> (Duration, Duration) {
    let (console, applet) = engines(setup, &work.join("chat")).await;
    let mut times = Vec::with_capacity(CHATS);
    for i in 0..CHATS {
        let start = Instant::now();
        let warning = console.chat(&format!("message {i}")).await.expect("chat");
        assert!(warning.is_none(), "not acknowledged: {warning:?}");
        times.push(start.elapsed());
    }
    console.end().await;
    let _ = applet.await;
    times.sort();
    (times[times.len() / 2], times[times.len() * 99 / 100])
}
