//! `vigil recording ...`: wires stdin, files and the audit log to the
//! `recorder` crate's `.vrec` reader, writer, checks and repair.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use audit_db::AuditLog;
use recorder::raw::RawFrames;
use recorder::vrec::integrity::{self, Verdict};
use recorder::vrec::reader::Target;
use recorder::vrec::{Header, Recording, Writer};

use crate::cli::format_clock;

/// Records raw BGRA frames from stdin into `output`.
pub async fn encode(size: (u32, u32), fps: f64, output: PathBuf) -> Result<ExitCode> {
    tokio::task::spawn_blocking(move || encode_blocking(size, fps, &output)).await?
}

fn encode_blocking((width, height): (u32, u32), fps: f64, output: &Path) -> Result<ExitCode> {
    let header = Header::new(
        width,
        height,
        uuid::Uuid::new_v4().to_string(),
        audit_db::time_us::now(),
    );
    let mut writer = Writer::create(output, header)?;
    let mut source = RawFrames::new(std::io::stdin().lock(), width, height);
    let spinner = crate::progress::counter("encoding", "frames");
    let started = std::time::Instant::now();
    let result = recorder::vrec::record(&mut source, &mut writer, fps, |n| spinner.set_position(n));
    spinner.finish_and_clear();
    // Whatever the input did, the frames already written are kept and indexed.
    let (recorded, source_error) = match result {
        Ok(r) => (Some(r), None),
        Err(e) => (None, Some(e)),
    };
    let ended_us = recorded.map(|r| r.ended_us).unwrap_or(0);
    let finished = writer.finish(ended_us)?;
    if let Some(e) = source_error {
        bail!(
            "{e}; the {} frames before it are kept in {}",
            finished.frames,
            output.display()
        );
    }
    let recorded = recorded.unwrap_or(recorder::vrec::Recorded {
        frames_in: 0,
        updates: 0,
        ended_us: 0,
    });
    let minutes = recorded.ended_us as f64 / 60e6;
    println!(
        "{}: {} frames in, {} updates, {} bytes ({:.2} MB/min), sha256 {} ({:.1} s)",
        output.display(),
        recorded.frames_in,
        recorded.updates,
        finished.size,
        if minutes > 0.0 {
            finished.size as f64 / 1e6 / minutes
        } else {
            0.0
        },
        finished.sha256,
        started.elapsed().as_secs_f64()
    );
    Ok(ExitCode::SUCCESS)
}

/// Prints what a recording holds.
pub fn info(file: &Path, json: bool) -> Result<ExitCode> {
    let rec = Recording::open(file)?;
    let size = std::fs::metadata(file)
        .with_context(|| file.display().to_string())?
        .len();
    let (state, reason) = match &rec.ending {
        recorder::vrec::Ending::Complete => ("complete", None),
        recorder::vrec::Ending::Truncated { reason, .. } => ("truncated", Some(reason.clone())),
    };
    let h = &rec.header;
    let ix = &rec.index;
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({
            "file": file.display().to_string(),
            "state": state,
            "reason": reason,
            "recording": h.recording,
            "session": h.session,
            "technician": h.technician,
            "started_us": h.started_us,
            "width": h.width,
            "height": h.height,
            "duration_us": ix.duration_us,
            "frames": ix.frames,
            "cursor_updates": ix.cursor_updates,
            "key_points": ix.seek.len(),
            "size": size,
            "markers": ix.markers,
        });
        writeln!(out, "{v}")?;
        return Ok(ExitCode::SUCCESS);
    }
    let minutes = ix.duration_us as f64 / 60e6;
    writeln!(
        out,
        "{}: {state}{}",
        file.display(),
        reason.map(|r| format!(" ({r})")).unwrap_or_default()
    )?;
    writeln!(out, "  recording   {}", h.recording)?;
    if !h.session.is_empty() {
        writeln!(out, "  session     {} by {}", h.session, h.technician)?;
    }
    writeln!(
        out,
        "  started     {}",
        audit_db::time_us::format(h.started_us)
    )?;
    writeln!(out, "  screen      {}x{}", h.width, h.height)?;
    writeln!(out, "  duration    {}", format_clock(ix.duration_us))?;
    writeln!(
        out,
        "  frames      {} ({} cursor updates, {} seek points)",
        ix.frames,
        ix.cursor_updates,
        ix.seek.len()
    )?;
    writeln!(
        out,
        "  size        {size} bytes{}",
        if minutes > 0.0 {
            format!(" ({:.2} MB/min)", size as f64 / 1e6 / minutes)
        } else {
            String::new()
        }
    )?;
    writeln!(out, "  markers     {}", ix.markers.len())?;
    for m in &ix.markers {
        writeln!(
            out,
            "    {}  {:<22} {}",
            format_clock(m.timestamp_us),
            m.kind,
            m.text
        )?;
    }
    Ok(ExitCode::SUCCESS)
}

/// Writes one frame as PNG.
pub fn frame(
    file: &Path,
    at: Option<u64>,
    index: Option<u64>,
    output: &Path,
    force: bool,
) -> Result<ExitCode> {
    if output.exists() && !force {
        bail!("{}: already exists (--force replaces it)", output.display());
    }
    let rec = Recording::open(file)?;
    let target = match (at, index) {
        (_, Some(n)) => Target::Index(n),
        (Some(t), None) => Target::Time(t),
        (None, None) => bail!("give --at or --index"),
    };
    let found = rec.frame(target)?;
    // Written whole under a temporary name, then renamed: never a half PNG.
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp =
        tempfile::NamedTempFile::new_in(dir).with_context(|| dir.display().to_string())?;
    found
        .frame
        .write_png(std::io::BufWriter::new(tmp.as_file_mut()))
        .with_context(|| output.display().to_string())?;
    tmp.persist(output)
        .with_context(|| output.display().to_string())?;
    println!(
        "{}: frame {} at {} ({}x{})",
        output.display(),
        found.number,
        format_clock(found.timestamp_us),
        found.frame.width,
        found.frame.height
    );
    Ok(ExitCode::SUCCESS)
}

/// Repairs a cut-off recording in place.
pub fn repair(file: &Path) -> Result<ExitCode> {
    let r = integrity::repair(file)?;
    if r.already_complete {
        println!(
            "{}: already complete ({} frames); nothing changed",
            file.display(),
            r.frames
        );
        return Ok(ExitCode::SUCCESS);
    }
    println!(
        "{}: repaired: kept {} bytes ({} frames){}{}",
        file.display(),
        r.kept,
        r.frames,
        r.tail
            .map(|t| format!(
                ", the {} bytes after them saved to {}",
                r.dropped,
                t.display()
            ))
            .unwrap_or_default(),
        r.reason
            .map(|why| format!("; it had stopped {why}"))
            .unwrap_or_default(),
    );
    Ok(ExitCode::SUCCESS)
}

/// Checks a recording through, and against the audit log if there is one.
pub async fn verify(file: &Path, log: Option<&AuditLog>, json: bool) -> Result<ExitCode> {
    let verdict = reporter::recordings::verify(file, log).await?;
    report(file, &verdict, json)?;
    Ok(match verdict {
        Verdict::Complete | Verdict::Intact => ExitCode::SUCCESS,
        _ => ExitCode::FAILURE,
    })
}

fn report(file: &Path, verdict: &Verdict, json: bool) -> Result<()> {
    let detail = match verdict {
        Verdict::Complete => {
            "matches the size and SHA-256 the audit log recorded at stop".to_string()
        }
        Verdict::Intact => "whole and decodable (no audit log to compare against)".to_string(),
        Verdict::Truncated(why) | Verdict::Altered(why) | Verdict::Unlogged(why) => why.clone(),
    };
    let mut out = std::io::stdout().lock();
    if json {
        let v = serde_json::json!({"file": file.display().to_string(), "verdict": verdict.word(), "detail": detail});
        writeln!(out, "{v}")?;
    } else {
        writeln!(out, "{}: {}: {detail}", file.display(), verdict.word())?;
    }
    Ok(())
}
