//! Retention at scale, against the targets:
//! - 10,000,000 events past their online period: archive, then purge
//!   (`vigil retention run` twice, a year apart), SQLite ≤ 60 s and
//!   PostgreSQL ≤ 120 s in all, peak RSS ≤ 200 MiB;
//! - archive size ≤ 0.2 of the SQLite bytes of the same events (the file
//!   before the run minus the file after the run and a VACUUM);
//! - `vigil retention verify` of those bundles ≥ 1,000,000 events/s.
//!
//! Run: `cargo bench --bench retention` (needs `sqlite3` for the VACUUM).
//! `-- --quick` uses 1,000,000 events; `-- --pg-events N` sets PostgreSQL's
//! count (default: as SQLite's). `--keep DIR` builds in DIR and leaves it;
//! `--fill-only` stops once the SQLite log is built; `--postgres-only`
//! skips SQLite (with `--keep DIR --fill-only`, it leaves the filled
//! PostgreSQL schema and prints its URL, to time runs by hand).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use audit_db::{Actor, AuditLog, DbUrl, EventKind, NewEvent, OpenMode, Source};

mod common;

const TARGET_SQLITE_S: f64 = 60.0;
const TARGET_POSTGRES_S: f64 = 120.0;
const TARGET_RSS_MIB: f64 = 200.0;
const TARGET_SIZE_RATIO: f64 = 0.2;
const TARGET_VERIFY_RATE: f64 = 1_000_000.0;

/// Events per append call, and concurrent producers.
const PER_CALL: usize = 4_096;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let events = if quick { 1_000_000 } else { 10_000_000 };
    let pg_events = args
        .iter()
        .position(|a| a == "--pg-events")
        .and_then(|i| args.get(i + 1))
        .map_or(events, |n| n.parse().expect("--pg-events N"));
    assert!(
        Command::new("sqlite3").arg("--version").output().is_ok(),
        "sqlite3 is needed to measure the events' bytes (apt-get install sqlite3)"
    );
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");

    // `--keep DIR`: build in DIR and leave it (with `--archive-only`, the
    // SQLite archive stays there unpurged, for profiling `retention verify`).
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let archive_only = args.iter().any(|a| a == "--archive-only");
    // `--fill-only`: only build the SQLite log (with `--keep`, to time runs
    // on copies of it by hand).
    let fill_only = args.iter().any(|a| a == "--fill-only");
    // `--postgres-only`: skip SQLite (with `--keep DIR --fill-only`, the
    // filled PostgreSQL schema is left, and its URL printed).
    let postgres_only = args.iter().any(|a| a == "--postgres-only");
    let mut lines = Vec::new();
    let temp = tempfile::tempdir().expect("a temporary directory");
    let root = keep.clone().unwrap_or_else(|| temp.path().to_owned());
    let dir = &root;
    let mut sqlite_total = None;
    if !postgres_only {
        let data = dir.join("sqlite");
        std::fs::create_dir_all(&data).expect("data directory");
        let file = data.join("audit.db");
        let url = format!("sqlite://{}", file.display());
        runtime.block_on(fill(&url, events));
        checkpoint_sqlite(&file);
        let bytes_before = file_bytes(&file);
        if fill_only {
            return;
        }
        println!(
            "SQLite, {events} events ({:.0} MiB):",
            bytes_before as f64 / 1048576.0
        );
        let sqlite = runs(&data, &url, events, archive_only);
        if archive_only {
            return;
        }
        vacuum_sqlite(&file);
        let event_bytes = bytes_before.saturating_sub(file_bytes(&file));
        let ratio = sqlite.archive_bytes as f64 / event_bytes as f64;
        println!(
            "  archive {:.1} MiB for {:.1} MiB of SQLite events: {ratio:.3} (target ≤ {TARGET_SIZE_RATIO})",
            sqlite.archive_bytes as f64 / 1048576.0,
            event_bytes as f64 / 1048576.0
        );
        lines.push(sqlite.verdict("sqlite", TARGET_SQLITE_S));
        lines.push(format!(
            "sqlite archive size: {ratio:.3} of the events' bytes (target ≤ {TARGET_SIZE_RATIO}): {}",
            if ratio <= TARGET_SIZE_RATIO {
                "met"
            } else {
                "NOT met"
            }
        ));
        let rate = sqlite.verified as f64 / sqlite.verify_s;
        lines.push(format!(
            "retention verify: {rate:.0} events/s vs target {TARGET_VERIFY_RATE:.0}: ratio {:.2}",
            rate / TARGET_VERIFY_RATE
        ));
        sqlite_total = Some(sqlite.total_s());
    }

    let server = std::env::var(testkit::POSTGRES_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
    let db = runtime.block_on(testkit::TestDb::postgres_at(&server));
    let pg_data = dir.join("postgres");
    std::fs::create_dir_all(&pg_data).expect("data directory");
    runtime.block_on(fill(&db.url, pg_events));
    if fill_only && keep.is_some() {
        println!("PostgreSQL log kept: {}", db.url);
        return;
    }
    println!("PostgreSQL, {pg_events} events:");
    let pg = runs(&pg_data, &db.url, pg_events, false);
    lines.push(pg.verdict("postgres", TARGET_POSTGRES_S));
    runtime.block_on(db.cleanup());

    println!();
    for line in &lines {
        println!("{line}");
    }
    match sqlite_total {
        Some(total) => println!(
            "ours vs target, SQLite archive + purge of {events} events: {total:.1} s vs {TARGET_SQLITE_S} s: ratio {:.2}",
            total / TARGET_SQLITE_S
        ),
        None => println!(
            "ours vs target, PostgreSQL archive + purge of {pg_events} events: {:.1} s vs {TARGET_POSTGRES_S} s: ratio {:.2}",
            pg.total_s(),
            pg.total_s() / TARGET_POSTGRES_S
        ),
    }
}

/// What the runs of one backend measured.
struct Measured {
    archive_s: f64,
    archive_rss: f64,
    purge_s: f64,
    purge_rss: f64,
    archive_bytes: u64,
    verify_s: f64,
    verified: u64,
}

impl Measured {
    fn total_s(&self) -> f64 {
        self.archive_s + self.purge_s
    }

    fn verdict(&self, what: &str, target_s: f64) -> String {
        let rss = self.archive_rss.max(self.purge_rss);
        let ok = self.total_s() <= target_s && rss <= TARGET_RSS_MIB;
        format!(
            "{what}: archive {:.1} s + purge {:.1} s = {:.1} s (target ≤ {target_s} s), peak RSS {rss:.1} MiB (target ≤ {TARGET_RSS_MIB}): {}",
            self.archive_s,
            self.purge_s,
            self.total_s(),
            if ok { "met" } else { "NOT met" }
        )
    }
}

/// Sets a 1 + 1 year policy, archives everything (a run a year and a half
/// after the events), verifies the bundles, then purges them (a run a
/// year later).
fn runs(data: &Path, url: &str, events: usize, archive_only: bool) -> Measured {
    let ok = |args: &[&str]| {
        let out = vigil(data, url, args).output().expect("running vigil");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    ok(&["admin", "retention", "set", "--all", "1y+1y"]);
    ok(&["audit", "key"]);
    let (archive_s, archive_rss) = timed(data, url, &["retention", "run", "--as-of", "2021-07-01"]);
    let archive = data.join("archive");
    let archive_bytes: u64 = std::fs::read_dir(&archive)
        .expect("the archive")
        .map(|e| e.expect("entry").metadata().expect("metadata").len())
        .sum();
    println!(
        "  archive run: {archive_s:.1} s, peak RSS {archive_rss:.1} MiB, {:.1} MiB of bundles",
        archive_bytes as f64 / 1048576.0
    );
    settle();
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vigil"))
        .args(["retention", "verify"])
        .arg(&archive)
        .stdout(Stdio::null())
        .output()
        .expect("running retention verify");
    assert!(out.status.success(), "retention verify failed");
    let verify_s = started.elapsed().as_secs_f64();
    println!(
        "  retention verify: {verify_s:.2} s, {:.0} events/s",
        events as f64 / verify_s
    );
    let (purge_s, purge_rss) = if archive_only {
        (0.0, 0.0)
    } else {
        timed(data, url, &["retention", "run", "--as-of", "2022-07-01"])
    };
    println!("  purge run: {purge_s:.1} s, peak RSS {purge_rss:.1} MiB");
    Measured {
        archive_s,
        archive_rss,
        purge_s,
        purge_rss,
        archive_bytes,
        verify_s,
        verified: events as u64,
    }
}

fn vigil(data: &Path, url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.env_remove("RUST_LOG")
        .arg("--data")
        .arg(data)
        .arg("--db")
        .arg(url)
        .args(args);
    cmd
}

/// Seconds and peak RSS (MiB) of `vigil ARGS`.
/// Writes every dirty page to disk first, so that a step is not timed
/// while the kernel writes back the gigabytes the one before left.
fn settle() {
    let status = Command::new("sync").status().expect("running sync");
    assert!(status.success(), "sync failed");
}

fn timed(data: &Path, url: &str, args: &[&str]) -> (f64, f64) {
    settle();
    let started = Instant::now();
    let mut child = vigil(data, url, args)
        .stdout(Stdio::null())
        .spawn()
        .expect("starting vigil");
    let kb = common::peak_rss_kb(&mut child, &format!("{args:?}"));
    (started.elapsed().as_secs_f64(), kb as f64 / 1024.0)
}

fn file_bytes(file: &Path) -> u64 {
    std::fs::metadata(file).map_or(0, |m| m.len())
}

fn checkpoint_sqlite(file: &Path) {
    sqlite3(file, "PRAGMA wal_checkpoint(TRUNCATE);");
}

fn vacuum_sqlite(file: &Path) {
    sqlite3(file, "VACUUM;");
}

fn sqlite3(file: &Path, sql: &str) {
    // The log's last connection may still be closing (its own checkpoint).
    let out = Command::new("sqlite3")
        .args(["-cmd", ".timeout 60000"])
        .arg(file)
        .arg(sql)
        .output()
        .expect("running sqlite3");
    assert!(
        out.status.success(),
        "sqlite3 {sql}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `n` events of the first half of 2020: sessions of six events (created,
/// joined, two chat messages, a file, ended) and a login before each.
async fn fill(url: &str, n: usize) {
    let url: DbUrl = url.parse().expect("bench URL");
    let log = AuditLog::open(&url, OpenMode::Create)
        .await
        .expect("opening the log");
    let started = Instant::now();
    let start_us = audit_db::time_us::parse("2020-01-01").expect("a date");
    let span_us = 180 * 86_400 * 1_000_000i64;
    let sessions = n / 7;
    let mut call = Vec::with_capacity(PER_CALL);
    let mut made = 0;
    for s in 0..=sessions {
        let at = start_us + span_us * s as i64 / sessions.max(1) as i64;
        for e in session_events(s, at) {
            if made == n {
                break;
            }
            call.push(e);
            made += 1;
        }
        if call.len() >= PER_CALL {
            log.append(std::mem::take(&mut call)).await.expect("append");
        }
    }
    if !call.is_empty() {
        log.append(call).await.expect("append");
    }
    log.close().await;
    println!(
        "(built {n} events in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

fn session_events(i: usize, at: i64) -> Vec<NewEvent> {
    let tech = ["ann", "bob", "cho", "dee"][i % 4];
    let email = format!("{tech}@support.example.com");
    let session = uuid::Uuid::new_v4();
    let steps = [
        (
            "login.succeeded",
            serde_json::json!({"email": email, "ip": format!("10.1.{}.{}", i % 250, i % 200)}),
            None,
        ),
        (
            "session.created",
            serde_json::json!({"technician": email, "pin_issued": true, "gateway": "gw1", "group": "tier1"}),
            Some(session),
        ),
        (
            "session.joined",
            serde_json::json!({"via": "pin", "ip": format!("192.0.2.{}", i % 250)}),
            Some(session),
        ),
        (
            "chat.message",
            serde_json::json!({"from": "end_user", "text": format!("Hello, my printer {} is not printing since this morning", i % 97), "chars": 52}),
            Some(session),
        ),
        (
            "chat.message",
            serde_json::json!({"from": "technician", "text": "Let me have a look, please accept the desktop view request.", "chars": 60}),
            Some(session),
        ),
        (
            "file.transferred",
            serde_json::json!({"direction": "to_end_user", "name": format!("driver-{}.msi", i % 13), "size": 1_048_576 + i % 1000, "sha256": format!("{:064x}", i), "md5": format!("{:032x}", i)}),
            Some(session),
        ),
        (
            "session.ended",
            serde_json::json!({"reason": "console_left", "duration_ms": 600_000 + i % 1000, "bytes_to_applet": 123_456, "bytes_to_console": 7_654_321}),
            Some(session),
        ),
    ];
    steps
        .into_iter()
        .enumerate()
        .map(|(k, (kind, payload, session))| {
            let kind = EventKind::from_stored(kind, &payload.to_string())
                .unwrap_or_else(|e| panic!("{kind}: {e}"))
                .unwrap_or_else(|| panic!("{kind} is an event type"));
            let mut e = NewEvent::now(Actor::technician(&email), Source::gateway(), kind);
            e.session = session;
            e.occurred_at_us = at + k as i64 * 30_000_000;
            e
        })
        .collect()
}
