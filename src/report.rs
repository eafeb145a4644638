//! `vigil report`: runs a report into stdout or a file made whole before it
//! is renamed into place, then audits the run (`report.generated`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use audit_db::event::ReportGenerated;
use audit_db::query::EventSource;
use audit_db::{AuditLog, EventKind, NewEvent};
use futures::StreamExt;
use reporter::bundle;
use reporter::reports::{self, ReportFilter, ReportKind, Run};
use reporter::table::RowFormat;
use sha2::{Digest, Sha256};

use crate::cli::{ReportArgs, ReportFormat, ReportType};

/// Checks what can be checked before anything is read or written.
pub fn check(args: &ReportArgs) -> Result<()> {
    if let (Some(since), Some(until)) = (args.since, args.until) {
        if since >= until {
            bail!("--since must be before --until");
        }
    }
    for out in [&args.output, &args.bundle].into_iter().flatten() {
        let dir = parent(out);
        if !dir.is_dir() {
            bail!(
                "cannot write {}: {} is not a directory",
                out.display(),
                dir.display()
            );
        }
        if out.exists() && !args.force {
            bail!("{} exists (--force replaces it)", out.display());
        }
    }
    if args.tz.is_some()
        && (args.bundle.is_some() || matches!(args.format, ReportFormat::Csv | ReportFormat::Jsonl))
    {
        bail!("--tz applies to table and html output; CSV, JSON lines and bundles are always UTC");
    }
    if let Some(bundle) = &args.bundle_to_check {
        if args.report != ReportType::Verify {
            bail!(
                "{} given, but only `vigil report verify` takes a bundle",
                bundle.display()
            );
        }
    }
    Ok(())
}

/// `vigil report verify BUNDLE`, with the log when there is one.
pub async fn verify_bundle(bundle: &Path, log: Option<&AuditLog>) -> Result<ExitCode> {
    let bytes = std::fs::read(bundle).with_context(|| format!("reading {}", bundle.display()))?;
    let mut findings = bundle::verify(std::io::Cursor::new(&bytes), log.map(AuditLog::store))
        .await
        .with_context(|| format!("{} cannot be checked", bundle.display()))?;
    if let Some(log) = log {
        // The whole file, manifest included, is the one the log says was
        // made: its SHA-256 is in a report.generated event.
        let sha = hex::encode(Sha256::digest(&bytes));
        let filter = audit_db::Filter {
            kind: Some("report.generated".to_owned()),
            ..audit_db::Filter::default()
        };
        let mut made = std::pin::pin!(log.query(filter));
        let mut recorded = false;
        while let Some(e) = made.next().await {
            if let Ok(Some(EventKind::ReportGenerated(r))) = e?.decode() {
                recorded |= r.sha256 == sha;
            }
        }
        if !recorded {
            findings.problems.push(format!(
                "the bundle as a whole (SHA-256 {sha}) is not one this log recorded making: \
                 {} or the zip around the files was changed, or it came from another log",
                bundle::MANIFEST
            ));
        }
    }
    if let Some(m) = &findings.manifest {
        println!(
            "bundle: {} report ({}), {} files, log seq {} hash {}",
            m.report,
            if m.filters.is_empty() {
                "no filters"
            } else {
                &m.filters
            },
            m.files.len(),
            m.chain.seq,
            m.chain.hash
        );
    }
    if log.is_some() {
        println!(
            "events checked against the log: {}",
            findings.events_checked
        );
    } else {
        println!("no log given (--data or --db): files checked against the manifest only");
    }
    if findings.problems.is_empty() {
        println!("intact");
        return Ok(ExitCode::SUCCESS);
    }
    for p in &findings.problems {
        println!("ALTERED: {p}");
    }
    Ok(ExitCode::from(1))
}

/// Runs the report (or makes the bundle) and audits it.
pub async fn run(log: &AuditLog, args: ReportArgs) -> Result<ExitCode> {
    let Some(kind) = kind_of(args.report) else {
        let bundle = args
            .bundle_to_check
            .as_deref()
            .context("no bundle to check")?;
        return verify_bundle(bundle, Some(log)).await;
    };
    // Whether the log is intact, checked before the report reads it
    // (always for HTML and bundles, the forms handed to people).
    let verify = args.verify || args.format == ReportFormat::Html || args.bundle.is_some();
    let proof = if verify {
        match reports::verified(log).await? {
            Ok(proof) => proof,
            Err(broken) => {
                bail!("the audit log does not verify, so no report is made from it: {broken}")
            }
        }
    } else {
        "the log was not verified (--verify)".to_owned()
    };
    let filter = ReportFilter {
        since_us: args.since,
        until_us: args.until,
        technician: args.technician.clone(),
        group: args.group.clone(),
        session: args.session,
        ip: args.ip,
        check_recordings: args.check,
    };
    let head = log.store().head().await?;
    let zone = args.tz.clone().unwrap_or_default();
    let run_as = |format| Run {
        kind,
        filter: &filter,
        format,
        zone: &zone,
        head,
        proof: &proof,
    };
    let with_archive = match &args.archive {
        Some(dir) => Some(
            retention::archived::WithArchive::open(log.store().clone(), dir)
                .with_context(|| format!("reading the archive in {}", dir.display()))?,
        ),
        None => None,
    };
    let source: &dyn EventSource = match &with_archive {
        Some(a) => a,
        None => log.store(),
    };
    let (rows, sha256, format_name) = if let Some(path) = &args.bundle {
        let rows = make_bundle(
            log,
            source,
            &args,
            &run_as(RowFormat::Csv),
            &run_as(RowFormat::Html),
            path,
        )
        .await?;
        let sha = hex::encode(Sha256::digest(std::fs::read(path)?));
        eprintln!(
            "evidence bundle of {rows} rows written to {}",
            path.display()
        );
        (rows, sha, "bundle")
    } else {
        let (format, name) = match args.format {
            ReportFormat::Table => (RowFormat::Table, "table"),
            ReportFormat::Csv => (RowFormat::Csv, "csv"),
            ReportFormat::Jsonl => (RowFormat::JsonLines, "jsonl"),
            ReportFormat::Html => (RowFormat::Html, "html"),
        };
        let (rows, sha) = write_report(source, &run_as(format), args.output.as_deref()).await?;
        // The stamp: in the table and the HTML themselves; beside the
        // machine formats (on stderr), so that they stay pure data.
        let stamp = reports::stamp(&head, &proof);
        match (&args.output, args.format) {
            (_, ReportFormat::Html) => {}
            (None, ReportFormat::Table) => println!("\n{stamp}"),
            _ => eprintln!("{stamp}"),
        }
        (rows, sha, name)
    };
    if audit_db::restored::is_restored(log.store()).await? {
        eprintln!(
            "this database holds restored archive bundles and takes no new events: \
             this run of the report is not recorded in it"
        );
        return Ok(ExitCode::SUCCESS);
    }
    let (admin, source) = crate::admin::acting(&args.by);
    let event = NewEvent::now(
        audit_db::Actor::admin(&admin),
        source,
        EventKind::ReportGenerated(ReportGenerated {
            report: kind.name().to_owned(),
            filters: describe(&args),
            format: format_name.to_owned(),
            rows,
            sha256,
            up_to_seq: head.seq,
        }),
    );
    log.append_one(event)
        .await
        .context("the report was made but its run could not be recorded in the audit log")?;
    Ok(ExitCode::SUCCESS)
}

fn kind_of(report: ReportType) -> Option<ReportKind> {
    Some(match report {
        ReportType::Sessions => ReportKind::Sessions,
        ReportType::Chat => ReportKind::Chat,
        ReportType::Files => ReportKind::Files,
        ReportType::Logins => ReportKind::Logins,
        ReportType::Admin => ReportKind::Admin,
        ReportType::Access => ReportKind::Access,
        ReportType::Permissions => ReportKind::Permissions,
        ReportType::Missed => ReportKind::Missed,
        ReportType::Summary => ReportKind::Summary,
        ReportType::Recordings => ReportKind::Recordings,
        ReportType::Verify => return None,
    })
}

/// Writes one report to stdout or `output`; rows and the output's SHA-256.
async fn write_report(
    source: &dyn EventSource,
    run: &Run<'_>,
    output: Option<&Path>,
) -> Result<(u64, String)> {
    match output {
        None => {
            let mut out = Hashing::new(std::io::BufWriter::with_capacity(
                1 << 16,
                std::io::stdout().lock(),
            ));
            let written = reports::run(source, run, &mut out, None).await?;
            out.flush()?;
            Ok((written.rows, out.hex()))
        }
        Some(path) => {
            let (rows, sha) = write_whole(path, |file| async move {
                let mut out = Hashing::new(std::io::BufWriter::with_capacity(1 << 16, file));
                let rows = reports::run(source, run, &mut out, None).await?.rows;
                out.flush()?;
                Ok((rows, out.hex()))
            })
            .await?;
            eprintln!("{rows} rows written to {}", path.display());
            Ok((rows, sha))
        }
    }
}

/// The report as CSV and HTML, the events behind its rows and the
/// manifest, zipped into `path`; returns its rows.
async fn make_bundle(
    log: &AuditLog,
    source: &dyn EventSource,
    args: &ReportArgs,
    csv: &Run<'_>,
    html: &Run<'_>,
    path: &Path,
) -> Result<u64> {
    let filters = describe(args);
    write_whole(path, |file| async move {
        let out = std::io::BufWriter::new(file);
        Ok(bundle::make(log.store(), source, csv, html, &filters, out).await?)
    })
    .await
}

/// Makes `path` from what `make` writes into a temporary file beside it,
/// renamed into place only when whole (as `recording frame` and `convert`
/// do); the temporary file is removed if `make` fails.
async fn write_whole<F, Fut, T>(path: &Path, make: F) -> Result<T>
where
    F: FnOnce(std::fs::File) -> Fut,
    Fut: std::future::Future<Output = Result<T>>,
{
    let dir = parent(path);
    let temp = tempfile::NamedTempFile::new_in(&dir)
        .with_context(|| format!("creating a file in {}", dir.display()))?;
    let file = temp
        .reopen()
        .with_context(|| format!("opening {}", temp.path().display()))?;
    let value = make(file).await?;
    temp.persist(path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(value)
}

/// The filters as given, for the audit trail.
fn describe(args: &ReportArgs) -> String {
    let mut parts = Vec::new();
    let time = audit_db::time_us::format;
    if let Some(t) = args.since {
        parts.push(format!("--since {}", time(t)));
    }
    if let Some(t) = args.until {
        parts.push(format!("--until {}", time(t)));
    }
    if let Some(t) = &args.technician {
        parts.push(format!("--technician {t}"));
    }
    if let Some(g) = &args.group {
        parts.push(format!("--group {g}"));
    }
    if let Some(s) = &args.session {
        parts.push(format!("--session {s}"));
    }
    if let Some(ip) = &args.ip {
        parts.push(format!("--ip {ip}"));
    }
    if args.check {
        parts.push("--check".to_owned());
    }
    if let Some(zone) = &args.tz {
        parts.push(format!("--tz {}", zone.name()));
    }
    parts.join(" ")
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// A writer that hashes what passes through it.
struct Hashing<W: Write> {
    inner: W,
    hash: Sha256,
}

impl<W: Write> Hashing<W> {
    fn new(inner: W) -> Self {
        Self {
            inner,
            hash: Sha256::new(),
        }
    }

    fn hex(&self) -> String {
        hex::encode(self.hash.clone().finalize())
    }
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        Ok(n)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}
