//! `vigil audit verify` and `vigil audit query`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use audit_db::{Anchor, AuditLog, Filter};
use reporter::events::Format;

use crate::cli::QueryArgs;

/// Verifies the chain; exit 0 when intact, 1 with the first break.
pub async fn verify(log: &AuditLog, anchor: Option<Anchor>, json: bool) -> Result<ExitCode> {
    let progress = audit_db::verify::Progress::default();
    let bar = crate::progress::verification(progress.clone());
    let report = log.verify_with_progress(anchor, &progress).await;
    bar.finish().await;
    let report = report?;
    let head = report.head;
    let mut out = std::io::stdout().lock();
    match (&report.outcome, json) {
        (Ok(()), false) => writeln!(
            out,
            "audit log intact: {} events, head seq {} hash {}",
            report.events, head.seq, head.hash
        )?,
        (Err(b), false) => writeln!(out, "audit log BROKEN at seq {}: {b}", b.seq)?,
        (outcome, true) => {
            let broken = outcome.as_ref().err().map(|b| {
                serde_json::json!({ "seq": b.seq, "kind": format!("{:?}", b.kind), "message": b.to_string() })
            });
            let v = serde_json::json!({
                "intact": outcome.is_ok(),
                "events": report.events,
                "head": { "seq": head.seq, "hash": head.hash.to_string() },
                "break": broken,
            });
            writeln!(out, "{v}")?;
        }
    }
    Ok(if report.outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Streams matching events to stdout.
pub async fn query(log: &AuditLog, args: QueryArgs) -> Result<ExitCode> {
    let filter = Filter {
        session: args.session,
        actor: args.actor,
        kind: args.kind,
        since_us: args.since,
        until_us: args.until,
        ..Filter::default()
    };
    let format = if args.json {
        Format::JsonLines
    } else {
        Format::Table
    };
    // Large writes: a listing is hundreds of bytes an event, and a system
    // call per 8 KiB shows in its speed.
    let mut out = std::io::BufWriter::with_capacity(1 << 16, std::io::stdout().lock());
    reporter::events::write(log.query(filter), format, &mut out)
        .await
        .context("listing events")?;
    Ok(ExitCode::SUCCESS)
}
