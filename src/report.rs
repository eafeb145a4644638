//! `vigil report`: runs a report into stdout or a file made whole before it
//! is renamed into place, then audits the run (`report.generated`).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use audit_db::event::ReportGenerated;
use audit_db::{AuditLog, EventKind, NewEvent};
use reporter::reports::{self, ReportFilter, ReportKind};
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
    if let Some(out) = &args.output {
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
    Ok(())
}

/// Runs the report and audits it.
pub async fn run(log: &AuditLog, args: ReportArgs) -> Result<ExitCode> {
    // Whether the log is intact, checked before the report reads it
    // (always for HTML, the form handed to people).
    let proof = if args.verify || args.format == ReportFormat::Html {
        let report = log.verify(None).await?;
        if let Err(broken) = &report.outcome {
            bail!("the audit log does not verify, so no report is made from it: {broken}");
        }
        format!("the log verified intact up to seq {}", report.head.seq)
    } else {
        "the log was not verified (--verify)".to_owned()
    };
    let kind = match args.report {
        ReportType::Sessions => ReportKind::Sessions,
        ReportType::Chat => ReportKind::Chat,
        ReportType::Files => ReportKind::Files,
        ReportType::Logins => ReportKind::Logins,
        ReportType::Admin => ReportKind::Admin,
        ReportType::Access => ReportKind::Access,
        ReportType::Permissions => ReportKind::Permissions,
        ReportType::Missed => ReportKind::Missed,
        ReportType::Summary => ReportKind::Summary,
    };
    let (format, format_name) = match args.format {
        ReportFormat::Table => (RowFormat::Table, "table"),
        ReportFormat::Csv => (RowFormat::Csv, "csv"),
        ReportFormat::Jsonl => (RowFormat::JsonLines, "jsonl"),
        ReportFormat::Html => (RowFormat::Html, "html"),
    };
    let filter = ReportFilter {
        since_us: args.since,
        until_us: args.until,
        technician: args.technician.clone(),
        group: args.group.clone(),
        session: args.session,
        ip: args.ip,
    };
    let (written, sha256) = match &args.output {
        None => {
            let mut out = Hashing::new(std::io::BufWriter::new(std::io::stdout().lock()));
            let written =
                reports::run(log.store(), kind, &filter, format, &mut out, &proof).await?;
            out.flush()?;
            (written, out.hex())
        }
        Some(path) => {
            let temp = temp_path(path);
            let file = std::fs::File::create(&temp)
                .with_context(|| format!("creating {}", temp.display()))?;
            let mut out = Hashing::new(std::io::BufWriter::new(file));
            let result = reports::run(log.store(), kind, &filter, format, &mut out, &proof).await;
            let finished = result.map_err(anyhow::Error::from).and_then(|w| {
                out.flush()?;
                Ok(w)
            });
            let written = match finished {
                Ok(w) => w,
                Err(e) => {
                    let _ = std::fs::remove_file(&temp);
                    return Err(e);
                }
            };
            std::fs::rename(&temp, path)
                .with_context(|| format!("renaming {} to {}", temp.display(), path.display()))?;
            eprintln!("{} rows written to {}", written.rows, path.display());
            (written, out.hex())
        }
    };
    // The stamp: where in the log the report stands, and whether the log
    // was proven intact up to there. In the table and the HTML themselves;
    // beside the machine formats (on stderr), so that they stay pure data.
    let stamp = reports::stamp(&written.head, &proof);
    match (&args.output, args.format) {
        (_, ReportFormat::Html) => {}
        (None, ReportFormat::Table) => println!("\n{stamp}"),
        _ => eprintln!("{stamp}"),
    }
    let (admin, source) = crate::admin::acting(&args.by);
    let event = NewEvent::now(
        audit_db::Actor::admin(&admin),
        source,
        EventKind::ReportGenerated(ReportGenerated {
            report: kind.name().to_owned(),
            filters: describe(&args),
            format: format_name.to_owned(),
            rows: written.rows,
            sha256,
            up_to_seq: written.head.seq,
        }),
    );
    log.append_one(event)
        .await
        .context("the report was made but its run could not be recorded in the audit log")?;
    Ok(ExitCode::SUCCESS)
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
    parts.join(" ")
}

fn parent(path: &Path) -> PathBuf {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    }
}

fn temp_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent(path).join(format!(".{name}.partial-{}", std::process::id()))
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
