//! Reading the audit log for compliance staff, through the `vigil` command
//! as they run it:
//!
//! - `vigil audit query --json` and `vigil report logins --format csv` (a
//!   report with one row per event) over logs of 1,000,000 and 10,000,000
//!   events on SQLite and 1,000,000 on PostgreSQL: rows per second and peak
//!   RSS, against the database's own export of the same rows in the same
//!   run (`sqlite3 -json` / `sqlite3 -csv`, `psql` with `COPY ... TO
//!   STDOUT`), which reads the table and formats it with no log semantics;
//! - `vigil report sessions` over 200,000 sessions (about 4,000,000 events,
//!   sessions interleaved as on a busy gateway).
//!
//! Targets (issue 16): ≥ 500,000 rows/s on SQLite, ≥ 200,000 on
//! PostgreSQL, `report sessions` over 200,000 sessions ≤ 15 s, peak RSS ≤
//! 100 MiB at every size.
//!
//! Run: `cargo bench --bench reports` (needs `sqlite3` and `psql`, from
//! Debian's sqlite3 and postgresql-client). `-- --quick` uses 1,000,000
//! events and 20,000 sessions only; `-- --keep DIR` keeps the SQLite
//! logs in DIR and reuses them on the next run with `--keep DIR`;
//! `-- --pg-events N` sizes the PostgreSQL log (default 1,000,000). PostgreSQL is the server in
//! `VIGIL_TEST_POSTGRES_URL` (default postgres://postgres@127.0.0.1:5432/test),
//! in a schema of its own that is dropped afterwards. The logs are built
//! through the real append path (the group-commit writer) first, untimed.

mod common;

use std::io::Read;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Instant;

use audit_db::event::{
    ChatMessage, Consent, Denial, Direction, EndReason, FileTransferred, JoinMethod, LoginFailed,
    LoginFailure, LoginSucceeded, Logout, LogoutReason, Party, PermissionDenied, PermissionGranted,
    PermissionRequested, SessionCreated, SessionEndUser, SessionEnded, SessionJoined,
    SessionPickedUp,
};
use audit_db::{Actor, AuditLog, DbUrl, EventKind, NewEvent, OpenMode, Permission, Source};
use testkit::TestDb;
use uuid::Uuid;

const RSS_TARGET_MIB: f64 = 100.0;
const SQLITE_TARGET: f64 = 500_000.0;
const POSTGRES_TARGET: f64 = 200_000.0;
const SESSIONS_TARGET_S: f64 = 15.0;
/// Concurrent producers filling a log, and events each submits per call.
const PRODUCERS: usize = 32;
const PER_CALL: usize = 256;
/// Sessions each producer has open at once (so a log's sessions interleave).
const OPEN_PER_PRODUCER: usize = 4;

/// One command's run: rows out, seconds, peak RSS.
struct Run {
    what: String,
    rows: u64,
    seconds: f64,
    peak_mib: f64,
}

impl Run {
    fn rate(&self) -> f64 {
        self.rows as f64 / self.seconds
    }

    fn print(&self) {
        println!(
            "  {:<44} {:>10} rows {:>7.2} s {:>10.0} rows/s  peak RSS {:>6.1} MiB",
            self.what,
            self.rows,
            self.seconds,
            self.rate(),
            self.peak_mib
        );
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let keep = args
        .iter()
        .position(|a| a == "--keep")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    let raw_sizes: &[usize] = if quick {
        &[1_000_000]
    } else {
        &[1_000_000, 10_000_000]
    };
    let sessions = if quick { 20_000 } else { 200_000 };
    let pg_events = args
        .iter()
        .position(|a| a == "--pg-events")
        .and_then(|i| args.get(i + 1))
        .map_or(1_000_000, |n| n.parse().expect("--pg-events N"));
    for tool in ["sqlite3", "psql"] {
        assert!(
            Command::new(tool).arg("--version").output().is_ok(),
            "{tool} is needed as the reference (apt-get install sqlite3 postgresql-client)"
        );
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let server = std::env::var(testkit::POSTGRES_ENV)
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());

    let mut verdicts = Vec::new();
    for &n in raw_sizes {
        let (_db, file) = sqlite_log(keep.as_deref(), &format!("logins-{n}"));
        let url = format!("sqlite://{}", file.display());
        if !file.exists() {
            runtime.block_on(fill(&url, n, login_event));
        }
        println!("SQLite, {n} login events:");
        let runs = raw_runs(&url, n, Reference::Sqlite(&file));
        verdicts.push(judge(&format!("sqlite {n}"), &runs, SQLITE_TARGET));
    }

    let db = runtime.block_on(TestDb::postgres_at(&server));
    runtime.block_on(fill(&db.url, pg_events, login_event));
    println!("PostgreSQL, {pg_events} login events:");
    let runs = raw_runs(&db.url, pg_events, Reference::Postgres(&db.url));
    verdicts.push(judge("postgres", &runs, POSTGRES_TARGET));
    runtime.block_on(db.cleanup());

    let per_producer = sessions / PRODUCERS;
    let (_db, file) = sqlite_log(keep.as_deref(), &format!("sessions-{sessions}"));
    let url = format!("sqlite://{}", file.display());
    if !file.exists() {
        runtime.block_on(fill_sessions(&url, per_producer));
    }
    println!("SQLite, {} sessions:", per_producer * PRODUCERS);
    let run = measure(
        "vigil report sessions --format csv",
        vigil(&url, &["report", "sessions", "--format", "csv"]),
    );
    run.print();
    assert!(
        run.rows >= (per_producer * PRODUCERS) as u64,
        "a row per session"
    );
    let ok = run.seconds <= SESSIONS_TARGET_S && run.peak_mib <= RSS_TARGET_MIB;
    verdicts.push(format!(
        "sessions {:.1} s (target {SESSIONS_TARGET_S}) {:.0} MiB: {}",
        run.seconds,
        run.peak_mib,
        if ok { "met" } else { "MISSED" }
    ));

    println!();
    println!("verdicts:");
    for v in &verdicts {
        println!("  {v}");
    }
    println!("ratio ours/reference and targets: {}", verdicts.join("; "));
}

/// The file of a SQLite log named `name`: in `keep` if given (where it may
/// already be), else in a temporary directory that lives as long as the
/// returned guard.
fn sqlite_log(keep: Option<&Path>, name: &str) -> (Option<TestDb>, std::path::PathBuf) {
    match keep {
        Some(dir) => {
            std::fs::create_dir_all(dir).expect("the --keep directory");
            (None, dir.join(format!("{name}.db")))
        }
        None => {
            let db = TestDb::sqlite();
            let file = db.dir().join(testkit::SQLITE_FILE);
            (Some(db), file)
        }
    }
}

/// Where the reference export reads the same log.
enum Reference<'a> {
    Sqlite(&'a Path),
    Postgres(&'a str),
}

/// The columns the reference exports: what `audit query --json` shows.
const REFERENCE_COLUMNS: &str = "seq, event_id, session_id, occurred_at, recorded_at, source, \
     actor, kind, payload, hash";

/// Ours (query as JSON, a one-row-per-event report as CSV) and the
/// database's own export of the same rows, each as JSON and CSV.
fn raw_runs(url: &str, n: usize, reference: Reference<'_>) -> Vec<(Run, Run)> {
    let json = measure(
        "vigil audit query --json",
        vigil(url, &["audit", "query", "--json"]),
    );
    let csv = measure(
        "vigil report logins --format csv",
        vigil(url, &["report", "logins", "--format", "csv"]),
    );
    // At least: each report run appends its `report.generated` event.
    assert!(json.rows >= n as u64, "a JSON line per event");
    assert!(csv.rows >= n as u64, "a CSV row per event");
    let (ref_json, ref_csv) = match reference {
        Reference::Sqlite(file) => {
            let select = format!("SELECT {REFERENCE_COLUMNS} FROM audit_events ORDER BY seq");
            let mut json = Command::new("sqlite3");
            json.arg("-json").arg(file).arg(&select);
            let mut csv = Command::new("sqlite3");
            csv.arg("-csv").arg(file).arg(&select);
            (
                measure("reference: sqlite3 -json", json),
                measure("reference: sqlite3 -csv", csv),
            )
        }
        Reference::Postgres(url) => {
            let select = format!(
                "SELECT {REFERENCE_COLUMNS} FROM audit_events WHERE kind <> 'report.generated' ORDER BY seq"
            );
            let mut json = Command::new("psql");
            json.arg(url).arg("-c").arg(format!(
                "COPY (SELECT row_to_json(t) FROM ({select}) t) TO STDOUT"
            ));
            let mut csv = Command::new("psql");
            csv.arg(url)
                .arg("-c")
                .arg(format!("COPY ({select}) TO STDOUT WITH CSV"));
            (
                measure("reference: psql COPY row_to_json", json),
                measure("reference: psql COPY CSV", csv),
            )
        }
    };
    // The exports' line counts differ from their rows (a JSON array's
    // brackets, CSV cells with line breaks): they read every row.
    let (mut ref_json, mut ref_csv) = (ref_json, ref_csv);
    ref_json.rows = n as u64;
    ref_csv.rows = n as u64;
    for r in [&json, &ref_json, &csv, &ref_csv] {
        r.print();
    }
    vec![(json, ref_json), (csv, ref_csv)]
}

/// One line per pair and target: ratio to the reference, whether the
/// target rate and memory are met.
fn judge(label: &str, runs: &[(Run, Run)], target: f64) -> String {
    runs.iter()
        .map(|(ours, reference)| {
            let ok = ours.rate() >= target && ours.peak_mib <= RSS_TARGET_MIB;
            format!(
                "{label} {}: {:.0} rows/s = {:.2} of reference, {:.0} MiB: {}",
                ours.what.trim_start_matches("vigil "),
                ours.rate(),
                ours.rate() / reference.rate(),
                ours.peak_mib,
                if ok { "met" } else { "MISSED" }
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

/// `vigil --db URL ARGS...`.
fn vigil(url: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_vigil"));
    cmd.arg("--db").arg(url).args(args);
    cmd
}

/// Runs `cmd` with its output read through a pipe, as `| jq` would read
/// it: wall time, peak RSS and the lines that came out. Not into a file: at
/// 10M events a listing is 4 GB, and the kernel then throttles the writer
/// to the disk's speed, which is not what is measured here. Lines are
/// counted with memchr, so the reader takes little of the second core.
fn measure(what: &str, mut cmd: Command) -> Run {
    let started = Instant::now();
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the command");
    let mut stdout = child.stdout.take().expect("piped stdout");
    let counter = std::thread::spawn(move || {
        let mut buf = vec![0u8; 1 << 20];
        let mut lines = 0u64;
        loop {
            let n = stdout.read(&mut buf).expect("reading the output");
            if n == 0 {
                return lines;
            }
            lines += memchr::memchr_iter(b'\n', &buf[..n]).count() as u64;
        }
    });
    let peak_kb = common::peak_rss_kb(&mut child, what);
    let rows = counter.join().expect("the counter");
    Run {
        what: what.to_owned(),
        rows,
        seconds: started.elapsed().as_secs_f64(),
        peak_mib: peak_kb as f64 / 1024.0,
    }
}

/// Appends events `make(0..n)` through the log's writer, from
/// [`PRODUCERS`] concurrent producers.
async fn fill(url: &str, n: usize, make: fn(usize) -> NewEvent) {
    let log = open(url).await;
    let started = Instant::now();
    let share = n / PRODUCERS;
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let log = log.clone();
            let first = p * share;
            let end = if p + 1 == PRODUCERS { n } else { first + share };
            tokio::spawn(async move {
                let mut i = first;
                while i < end {
                    let call: Vec<NewEvent> = (i..end.min(i + PER_CALL)).map(make).collect();
                    i += call.len();
                    log.append(call).await.expect("append");
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("producer");
    }
    log.close().await;
    println!(
        "(built {n} events in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

async fn open(url: &str) -> AuditLog {
    let url: DbUrl = url.parse().expect("bench URL");
    AuditLog::open(&url, OpenMode::Create)
        .await
        .expect("opening the log")
}

const TECHNICIANS: [&str; 8] = [
    "ann@support.example.com",
    "bob@support.example.com",
    "cho@support.example.com",
    "dee@support.example.com",
    "eve@support.example.com",
    "fay@support.example.com",
    "gus@support.example.com",
    "hal@support.example.com",
];

/// The login traffic of a busy gateway: successes, failures for every
/// reason, logouts.
fn login_event(i: usize) -> NewEvent {
    let email = TECHNICIANS[i % TECHNICIANS.len()].to_owned();
    let ip = std::net::IpAddr::from([10, (i >> 16) as u8, (i >> 8) as u8, i as u8]);
    let kind = match i % 10 {
        0..=3 => EventKind::LoginSucceeded(LoginSucceeded { email, ip }),
        4..=7 => EventKind::LoginFailed(LoginFailed {
            email,
            ip,
            reason: [
                LoginFailure::BadPassword,
                LoginFailure::UnknownAccount,
                LoginFailure::AccountLocked,
                LoginFailure::IpNotAllowed,
            ][i % 4],
        }),
        _ => EventKind::Logout(Logout {
            email,
            ip,
            reason: LogoutReason::Idle,
        }),
    };
    NewEvent::now(
        Actor::system("gateway"),
        Source::console(&format!("{ip}:{}", 40_000 + i % 20_000)),
        kind,
    )
}

/// Fills a log with `per_producer` whole sessions from each producer, each
/// producer keeping [`OPEN_PER_PRODUCER`] sessions open and taking their
/// steps in turn.
async fn fill_sessions(url: &str, per_producer: usize) {
    let log = open(url).await;
    let started = Instant::now();
    let tasks: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let log = log.clone();
            tokio::spawn(async move {
                let mut written = 0;
                let mut started = 0;
                let mut open: Vec<Vec<NewEvent>> = Vec::new();
                let mut call = Vec::with_capacity(PER_CALL);
                while started < per_producer || !open.is_empty() {
                    while open.len() < OPEN_PER_PRODUCER && started < per_producer {
                        let mut steps = session_events(p * per_producer + started);
                        steps.reverse();
                        open.push(steps);
                        started += 1;
                    }
                    for steps in &mut open {
                        if let Some(e) = steps.pop() {
                            call.push(e);
                        }
                    }
                    open.retain(|steps| !steps.is_empty());
                    if call.len() >= PER_CALL || (open.is_empty() && !call.is_empty()) {
                        written += call.len();
                        log.append(std::mem::take(&mut call)).await.expect("append");
                    }
                }
                written
            })
        })
        .collect();
    let mut events = 0;
    for t in tasks {
        events += t.await.expect("producer");
    }
    log.close().await;
    println!(
        "(built {events} events in {:.0} s)",
        started.elapsed().as_secs_f64()
    );
}

/// One session's events, in order: about twenty, as a short support call
/// with chat, a file each way, and a permission granted and one denied.
fn session_events(n: usize) -> Vec<NewEvent> {
    let session = Uuid::from_u128(0x5e55_0000_0000_0000_0000_0000_0000_0000 | n as u128);
    let tech = TECHNICIANS[n % TECHNICIANS.len()];
    let ip = std::net::IpAddr::from([198, 51, (n >> 8) as u8, n as u8]);
    let applet = Source::applet(&format!("{ip}:51000"));
    let console = Source::console("203.0.113.7:40000");
    let gateway = Source::gateway();
    let technician = || Actor::technician(tech);
    let mut events = vec![
        (
            technician(),
            gateway.clone(),
            EventKind::SessionCreated(SessionCreated {
                technician: tech.to_owned(),
                pin_issued: true,
                gateway: None,
                group: Some(format!("tier{}", n % 3 + 1)),
            }),
        ),
        (
            Actor::end_user(),
            gateway.clone(),
            EventKind::SessionJoined(SessionJoined {
                via: JoinMethod::Pin,
                ip: Some(ip),
            }),
        ),
        (
            Actor::end_user(),
            applet.clone(),
            EventKind::SessionEndUser(SessionEndUser {
                host: format!("LAPTOP-{n:06}"),
            }),
        ),
        (
            technician(),
            gateway.clone(),
            EventKind::SessionPickedUp(SessionPickedUp {
                technician: tech.to_owned(),
            }),
        ),
    ];
    for (permission, granted) in [
        (Permission::DesktopView, true),
        (Permission::RemoteControl, !n.is_multiple_of(4)),
        (Permission::SendFiles, true),
    ] {
        events.push((
            technician(),
            console.clone(),
            EventKind::PermissionRequested(PermissionRequested { permission }),
        ));
        events.push((
            Actor::end_user(),
            applet.clone(),
            if granted {
                EventKind::PermissionGranted(PermissionGranted {
                    permission,
                    consent: Consent::EndUser,
                })
            } else {
                EventKind::PermissionDenied(PermissionDenied {
                    permission,
                    reason: Denial::EndUser,
                })
            },
        ));
    }
    for line in 0..6 {
        let from = if line % 2 == 0 {
            Party::Technician
        } else {
            Party::EndUser
        };
        let text = format!("line {line} of session {n}: the printer on the second floor, \"HP\", shows error 0x{n:x}");
        events.push((
            technician(),
            console.clone(),
            EventKind::ChatMessage(ChatMessage {
                from,
                chars: text.chars().count() as u64,
                text: Some(text),
            }),
        ));
    }
    for direction in [Direction::ToEndUser, Direction::FromEndUser] {
        events.push((
            technician(),
            console.clone(),
            EventKind::FileTransferred(FileTransferred {
                direction,
                name: format!("driver-{n}.zip"),
                size: 1_048_576 + n as u64,
                md5: format!("{:032x}", n as u128 * 0x9e37_79b9),
                sha256: format!("{:064x}", n as u128 * 0x9e37_79b9_7f4a_7c15),
            }),
        ));
    }
    events.push((
        technician(),
        gateway.clone(),
        EventKind::SessionEnded(SessionEnded {
            reason: EndReason::EndedByConsole("done".into()),
            duration_ms: 60_000 + (n as u64 % 3_600) * 1_000,
            bytes_to_applet: 10_000_000 + n as u64,
            bytes_to_console: 50_000_000 + n as u64,
        }),
    ));
    events
        .into_iter()
        .map(|(actor, source, kind)| NewEvent::now(actor, source, kind).in_session(session))
        .collect()
}
