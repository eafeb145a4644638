//! The price of tamper evidence, on each backend:
//!
//! - sustained append throughput with durable acknowledgement (ours: the
//!   group-commit writer, hashing and chaining every event) against the
//!   reference, the same rows inserted with plain batched sqlx inserts and no
//!   hashing, into the same schema, with the same durability settings;
//! - p99 submit-to-durable latency at 1,000 events/s offered;
//! - `verify` of the whole log (1,000,000 events on SQLite);
//! - inclusion and consistency proofs read from the stored Merkle tree, once
//!   the log has grown to 10,000,000 events on SQLite (1,000,000 on
//!   PostgreSQL; `-- --pg-proof-events N` for more).
//!
//! Run: `cargo bench -p audit-db --bench audit`. PostgreSQL is the server in
//! `VIGIL_TEST_POSTGRES_URL` (default postgres://postgres@127.0.0.1:5432/test),
//! in a schema of its own that is dropped afterwards.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_db::event::{ChatMessage, Direction, FileTransferred, Party};
use audit_db::{Actor, AuditLog, DbUrl, EventKind, NewEvent, OpenMode, Source};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Connection, QueryBuilder};
use testkit::{Backend, TestDb};
use uuid::Uuid;

const SQLITE_EVENTS: usize = 1_000_000;
const POSTGRES_EVENTS: usize = 300_000;
/// Concurrent producers, and events each submits per call.
const PRODUCERS: usize = 256;
const PER_CALL: usize = 32;
/// Reference: rows per transaction (the writer's largest batch) and per statement.
const REF_BATCH: usize = 4_096;
const REF_STATEMENT: usize = 128;
/// Latency run: offered rate and duration.
const OFFERED_PER_SEC: u64 = 1_000;
const LATENCY_EVENTS: usize = 5_000;
/// The log size proofs are timed at, and how many of each are timed.
const SQLITE_PROOF_EVENTS: usize = 10_000_000;
const POSTGRES_PROOF_EVENTS: usize = 1_000_000;
const PROOFS: usize = 2_000;
/// Target for one proof, read from the database (issue 17).
const PROOF_TARGET_MS: f64 = 5.0;

struct Figures {
    backend: &'static str,
    events: usize,
    ours_per_sec: f64,
    reference_per_sec: f64,
    p50_ms: f64,
    p99_ms: f64,
    verify_secs: f64,
    proof_size: usize,
    /// p50, p99 and max of an inclusion proof, then of a consistency proof (ms).
    inclusion_ms: (f64, f64, f64),
    consistency_ms: (f64, f64, f64),
}

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let server = std::env::var(testkit::POSTGRES_ENV)
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned());
        let sample = realistic_event(0, Uuid::nil());
        println!(
            "audit append benchmark: payload ~{} bytes, {PRODUCERS} producers x {PER_CALL} events per call",
            sample.kind.payload_json().map_or(0, |p| p.len())
        );
        let pg_proof_events = std::env::args()
            .skip_while(|a| a != "--pg-proof-events")
            .nth(1)
            .map_or(POSTGRES_PROOF_EVENTS, |n| n.parse().expect("--pg-proof-events N"));
        let sqlite = run_backend(
            TestDb::sqlite(),
            TestDb::sqlite(),
            SQLITE_EVENTS,
            SQLITE_PROOF_EVENTS,
        )
        .await;
        let postgres = run_backend(
            TestDb::postgres_at(&server).await,
            TestDb::postgres_at(&server).await,
            POSTGRES_EVENTS,
            pg_proof_events,
        )
        .await;

        println!();
        println!(
            "{:<9} {:>9} {:>14} {:>14} {:>8} {:>8} {:>8} {:>10}",
            "backend", "events", "ours ev/s", "reference ev/s", "ratio", "p50 ms", "p99 ms", "verify s"
        );
        for f in [&sqlite, &postgres] {
            println!(
                "{:<9} {:>9} {:>14.0} {:>14.0} {:>8.2} {:>8.2} {:>8.2} {:>10.2}",
                f.backend,
                f.events,
                f.ours_per_sec,
                f.reference_per_sec,
                f.ours_per_sec / f.reference_per_sec,
                f.p50_ms,
                f.p99_ms,
                f.verify_secs
            );
        }
        println!();
        println!(
            "{:<9} {:>11} {:>28} {:>28}   (target {PROOF_TARGET_MS} ms each)",
            "backend", "log events", "inclusion p50/p99/max ms", "consistency p50/p99/max ms"
        );
        let ms = |(p50, p99, max): (f64, f64, f64)| format!("{p50:.3} / {p99:.3} / {max:.3}");
        for f in [&sqlite, &postgres] {
            println!(
                "{:<9} {:>11} {:>28} {:>28}",
                f.backend,
                f.proof_size,
                ms(f.inclusion_ms),
                ms(f.consistency_ms),
            );
        }
        println!(
            "ratio ours/reference (append throughput): sqlite {:.2}, postgres {:.2}",
            sqlite.ours_per_sec / sqlite.reference_per_sec,
            postgres.ours_per_sec / postgres.reference_per_sec
        );
    });
}

/// Alternating chat messages and file transfers in one session, as a busy
/// gateway would record them.
fn realistic_event(i: usize, session: Uuid) -> NewEvent {
    let kind = if i.is_multiple_of(2) {
        EventKind::ChatMessage(ChatMessage {
            from: Party::Technician,
            text: Some(format!(
                "Message {i}: could you open the printer settings and read me the model number \
                 on the second tab? It should start with HP LaserJet and then a few digits, \
                 after that we will reinstall the driver and check the queue again."
            )),
            chars: 220,
        })
    } else {
        EventKind::FileTransferred(FileTransferred {
            direction: Direction::ToEndUser,
            name: format!("printer-driver-installer-v{i}-x86_64-signed-release-build.exe"),
            size: 48_213_504 + i as u64,
            md5: format!("{:032x}", i as u128 * 0x9e37_79b9),
            sha256: format!("{:064x}", i as u128 * 0x9e37_79b9_7f4a_7c15),
        })
    };
    NewEvent::now(
        Actor::technician("tom.technician@support.example.com"),
        Source::console("203.0.113.17:50412"),
        kind,
    )
    .in_session(session)
}

async fn run_backend(
    ours_db: TestDb,
    reference_db: TestDb,
    events: usize,
    proof_size: usize,
) -> Figures {
    let backend = match ours_db.backend {
        Backend::Sqlite => "sqlite",
        Backend::Postgres => "postgres",
    };
    let url: DbUrl = ours_db.url.parse().expect("bench URL");
    let log = AuditLog::open(&url, OpenMode::Create)
        .await
        .expect("opening the log");

    println!("[{backend}] appending {events} events through the writer...");
    // Built before the clock starts, as the reference's rows are: only the
    // log's own work (validation, serialisation, chaining, writing) is timed.
    let mut shares: Vec<Vec<Vec<NewEvent>>> = (0..PRODUCERS).map(|_| Vec::new()).collect();
    let session = Uuid::new_v4();
    let all: Vec<NewEvent> = (0..events).map(|i| realistic_event(i, session)).collect();
    for (c, call) in all.chunks(PER_CALL).enumerate() {
        shares[c % PRODUCERS].push(call.to_vec());
    }
    drop(all);
    let started = Instant::now();
    let producers: Vec<_> = shares
        .into_iter()
        .map(|calls| {
            let log = log.clone();
            tokio::spawn(async move {
                for call in calls {
                    log.append(call).await.expect("append");
                }
            })
        })
        .collect();
    for p in producers {
        p.await.expect("producer");
    }
    let ours_per_sec = events as f64 / started.elapsed().as_secs_f64();
    println!("[{backend}] ours: {ours_per_sec:.0} events/s");

    let reference_per_sec = reference(&reference_db, events).await;
    println!("[{backend}] reference: {reference_per_sec:.0} events/s");

    let (p50_ms, p99_ms) = latency(&log).await;
    println!("[{backend}] latency at {OFFERED_PER_SEC}/s: p50 {p50_ms:.2} ms, p99 {p99_ms:.2} ms");

    let started = Instant::now();
    let report = log.verify(None).await.expect("verify");
    let verify_secs = started.elapsed().as_secs_f64();
    assert_eq!(report.outcome, Ok(()), "the benchmarked log must verify");
    println!(
        "[{backend}] verify of {} events: {verify_secs:.2} s",
        report.events
    );

    let (inclusion_ms, consistency_ms) = proofs(&log, proof_size).await;
    println!(
        "[{backend}] proofs at {proof_size} events: inclusion p50 {:.3} ms p99 {:.3} ms, \
         consistency p50 {:.3} ms p99 {:.3} ms",
        inclusion_ms.0, inclusion_ms.1, consistency_ms.0, consistency_ms.1
    );

    log.close().await;
    ours_db.cleanup().await;
    reference_db.cleanup().await;
    Figures {
        backend,
        events,
        ours_per_sec,
        reference_per_sec,
        p50_ms,
        p99_ms,
        verify_secs,
        proof_size,
        inclusion_ms,
        consistency_ms,
    }
}

/// Grows the log to `size` events (untimed), then times `PROOFS` inclusion
/// proofs of random events and `PROOFS` consistency proofs from random
/// older sizes, each read from the database and checked against the root;
/// returns (p50, p99, max) of each in ms.
async fn proofs(log: &AuditLog, size: usize) -> ((f64, f64, f64), (f64, f64, f64)) {
    let store = log.store();
    let have = store.head().await.expect("head").seq as usize;
    if size > have {
        println!("growing the log to {size} events for the proof timings (untimed)...");
        let session = Uuid::new_v4();
        let mut next = have;
        while next < size {
            let n = (size - next).min(8 * 8_192);
            let calls: Vec<_> = (next..next + n)
                .collect::<Vec<_>>()
                .chunks(8_192)
                .map(|chunk| {
                    let events: Vec<NewEvent> =
                        chunk.iter().map(|&i| realistic_event(i, session)).collect();
                    let log = log.clone();
                    tokio::spawn(async move { log.append(events).await.expect("append") })
                })
                .collect();
            for c in calls {
                c.await.expect("appender");
            }
            next += n;
        }
    }
    let size = store.head().await.expect("head").seq as u64;
    let root = store.root(size).await.expect("root");
    let mut random = {
        let mut state = 0x9e37_79b9_7f4a_7c15u64;
        move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            1 + state % below
        }
    };
    let mut inclusion = Vec::with_capacity(PROOFS);
    let mut consistency = Vec::with_capacity(PROOFS);
    for _ in 0..PROOFS {
        let seq = random(size);
        let started = Instant::now();
        let proof = store
            .inclusion_proof(size, seq as i64)
            .await
            .expect("inclusion proof");
        inclusion.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(proof.len() as f64 <= (size as f64).log2().ceil());
        let old = random(size - 1);
        let started = Instant::now();
        let proof = store
            .consistency_proof(size, old)
            .await
            .expect("consistency proof");
        consistency.push(started.elapsed().as_secs_f64() * 1e3);
        let old_root = store.root(old).await.expect("old root");
        audit_db::merkle::check_consistency(&proof, size, root, old, old_root)
            .expect("the proof holds");
    }
    let spread = |mut ms: Vec<f64>| {
        ms.sort_by(f64::total_cmp);
        (ms[ms.len() / 2], ms[ms.len() * 99 / 100], ms[ms.len() - 1])
    };
    (spread(inclusion), spread(consistency))
}

/// Submit-to-durable latency of single events offered at a steady rate.
async fn latency(log: &AuditLog) -> (f64, f64) {
    let samples = Arc::new(std::sync::Mutex::new(Vec::with_capacity(LATENCY_EVENTS)));
    let mut tick = tokio::time::interval(Duration::from_micros(1_000_000 / OFFERED_PER_SEC));
    let session = Uuid::new_v4();
    let mut tasks = Vec::with_capacity(LATENCY_EVENTS);
    for i in 0..LATENCY_EVENTS {
        tick.tick().await;
        let log = log.clone();
        let samples = samples.clone();
        tasks.push(tokio::spawn(async move {
            let event = realistic_event(i, session);
            let t0 = Instant::now();
            log.append_one(event).await.expect("append");
            let ms = t0.elapsed().as_secs_f64() * 1e3;
            samples.lock().expect("samples").push(ms);
        }));
    }
    for t in tasks {
        t.await.expect("latency task");
    }
    let mut s = std::mem::take(&mut *samples.lock().expect("samples"));
    s.sort_by(f64::total_cmp);
    let pct = |p: f64| s[((s.len() as f64 * p) as usize).min(s.len() - 1)];
    (pct(0.50), pct(0.99))
}

/// The same rows, pre-built, inserted with plain batched sqlx inserts: no
/// hashing, no chain head, no duplicate check. Each transaction is as durable
/// as ours (SQLite: WAL, synchronous=FULL; PostgreSQL: synchronous_commit on).
async fn reference(db: &TestDb, events: usize) -> f64 {
    // Same schema as ours: let the store create it, then write around it.
    let url: DbUrl = db.url.parse().expect("bench URL");
    audit_db::Store::open(&url, OpenMode::Create)
        .await
        .expect("schema")
        .close()
        .await;
    let session = Uuid::new_v4();
    let rows: Vec<(NewEvent, String)> = (0..events)
        .map(|i| {
            let e = realistic_event(i, session);
            let payload = e.kind.payload_json().expect("payload");
            (e, payload)
        })
        .collect();
    let zero = [0u8; 32];
    let started = Instant::now();
    match db.backend {
        Backend::Sqlite => {
            let options = SqliteConnectOptions::from_str(&db.url)
                .expect("sqlite URL")
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Full);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("pool");
            let mut conn = pool.acquire().await.expect("connection");
            for (b, batch) in rows.chunks(REF_BATCH).enumerate() {
                let mut tx = conn.begin().await.expect("begin");
                for (s, chunk) in batch.chunks(REF_STATEMENT).enumerate() {
                    let base = (b * REF_BATCH + s * REF_STATEMENT) as i64;
                    let mut q = QueryBuilder::new(
                        "INSERT INTO audit_events (seq, event_id, session_id, occurred_at, recorded_at, \
                         source, actor, kind, payload, format, prev_hash, hash) ",
                    );
                    q.push_values(chunk.iter().enumerate(), |mut v, (k, (e, payload))| {
                        v.push_bind(base + k as i64 + 1)
                            .push_bind(e.id)
                            .push_bind(e.session)
                            .push_bind(e.occurred_at_us)
                            .push_bind(e.occurred_at_us)
                            .push_bind(e.source.as_str())
                            .push_bind(e.actor.as_str())
                            .push_bind(e.kind.type_name())
                            .push_bind(payload.as_str())
                            .push_bind(1i16)
                            .push_bind(&zero[..])
                            .push_bind(&zero[..]);
                    });
                    q.build().execute(&mut *tx).await.expect("insert");
                }
                tx.commit().await.expect("commit");
            }
            drop(conn);
            pool.close().await;
        }
        Backend::Postgres => {
            let options = PgConnectOptions::from_str(&db.url).expect("postgres URL");
            let pool = PgPoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .expect("pool");
            let mut conn = pool.acquire().await.expect("connection");
            for (b, batch) in rows.chunks(REF_BATCH).enumerate() {
                let base = (b * REF_BATCH) as i64;
                let mut tx = conn.begin().await.expect("begin");
                sqlx::query(
                    "INSERT INTO audit_events (seq, event_id, session_id, occurred_at, recorded_at, \
                     source, actor, kind, payload, format, prev_hash, hash) \
                     SELECT * FROM UNNEST($1::int8[], $2::uuid[], $3::uuid[], $4::int8[], $5::int8[], \
                     $6::text[], $7::text[], $8::text[], $9::text[], $10::int2[], $11::bytea[], $12::bytea[])",
                )
                .bind((0..batch.len()).map(|k| base + k as i64 + 1).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.id).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.session).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.occurred_at_us).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.occurred_at_us).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.source.as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.actor.as_str()).collect::<Vec<_>>())
                .bind(batch.iter().map(|(e, _)| e.kind.type_name()).collect::<Vec<_>>())
                .bind(batch.iter().map(|(_, p)| p.as_str()).collect::<Vec<_>>())
                .bind(vec![1i16; batch.len()])
                .bind(vec![&zero[..]; batch.len()])
                .bind(vec![&zero[..]; batch.len()])
                .execute(&mut *tx)
                .await
                .expect("insert");
                tx.commit().await.expect("commit");
            }
            drop(conn);
            pool.close().await;
        }
    }
    events as f64 / started.elapsed().as_secs_f64()
}
