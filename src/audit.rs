//! `vigil audit ...`: verify, query, and the log's key, checkpoints and proofs.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use audit_db::checkpoint::{self, Checkpoint, LogKey};
use audit_db::proof::EventProof;
use audit_db::query::EventSource;
use audit_db::{Anchor, AuditLog, Filter};
use reporter::events::Format;

use crate::cli::QueryArgs;

/// What `audit verify` checks beyond the log itself.
pub struct VerifyArgs {
    /// The event and hash an earlier head named.
    pub anchor: Option<Anchor>,
    /// Checkpoint files the log must extend.
    pub checkpoints: Vec<PathBuf>,
    /// The public key they must be signed with (`None`: the log key's).
    pub key: Option<String>,
    /// The log key file.
    pub key_path: PathBuf,
    /// One JSON object out.
    pub json: bool,
}

/// Verifies the chain, the tree and the log against checkpoints; exit 0
/// when intact, 1 with the first break. Every checkpoint is read and its
/// signature checked before the walk: one that cannot be used is an error.
pub async fn verify(log: &AuditLog, args: VerifyArgs) -> Result<ExitCode> {
    let checkpoints = open_checkpoints(&args)?;
    let progress = audit_db::verify::Progress::default();
    let bar = crate::progress::verification(progress.clone());
    let report = log.verify_with_progress(args.anchor, &progress).await;
    bar.finish().await;
    let report = report?;
    let mut outcome = report
        .outcome
        .as_ref()
        .map_err(|b| (Some(b.seq), b.to_string()));
    let mut extended = Vec::new();
    for (path, cp) in &checkpoints {
        if outcome.is_err() {
            break;
        }
        match checkpoint::extended_by(log.store(), cp).await? {
            Ok(()) => extended.push((path, cp.size)),
            Err(e) => outcome = Err((None, format!("checkpoint {}: {e}", path.display()))),
        }
    }
    let head = report.head;
    let mut out = std::io::stdout().lock();
    if args.json {
        let broken = outcome.as_ref().err().map(|(seq, message)| {
            let kind = report.outcome.as_ref().err().map(|b| format!("{:?}", b.kind));
            serde_json::json!({ "seq": seq, "kind": kind.unwrap_or_else(|| "Checkpoint".into()), "message": message })
        });
        let checked: Vec<_> = extended
            .iter()
            .map(|(path, size)| serde_json::json!({ "file": path, "size": size }))
            .collect();
        let v = serde_json::json!({
            "intact": outcome.is_ok(),
            "events": report.events,
            "erased": report.erased,
            "restored": report.restored,
            "head": { "seq": head.seq, "hash": head.hash.to_string() },
            "checkpoints": checked,
            "break": broken,
        });
        writeln!(out, "{v}")?;
    } else {
        match &outcome {
            Ok(()) if !report.restored.is_empty() => writeln!(
                out,
                "restored database intact: {} events of bundle(s) {}, each proven by its signed checkpoint",
                report.events,
                report.restored.join(", ")
            )?,
            Ok(()) => {
                write!(
                    out,
                    "audit log intact: {} events, head seq {} hash {}",
                    report.events, head.seq, head.hash
                )?;
                if report.erased > 0 {
                    write!(out, " ({} bodies erased)", report.erased)?;
                }
                writeln!(out)?;
                for (path, size) in &extended {
                    writeln!(out, "extends checkpoint {} ({size} events)", path.display())?;
                }
            }
            Err((Some(seq), message)) => writeln!(out, "audit log BROKEN at seq {seq}: {message}")?,
            Err((None, message)) => writeln!(out, "audit log BROKEN: {message}")?,
        }
    }
    Ok(if outcome.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Reads every checkpoint file of `args` and checks its signature.
fn open_checkpoints(args: &VerifyArgs) -> Result<Vec<(PathBuf, Checkpoint)>> {
    if args.checkpoints.is_empty() {
        return Ok(Vec::new());
    }
    let public = match &args.key {
        Some(given) => checkpoint::public_key(given)?,
        None => LogKey::load(&args.key_path)
            .context("the log key checks the checkpoints (or give --key PUBKEY)")?
            .public()
            .to_owned(),
    };
    args.checkpoints
        .iter()
        .map(|path| Ok((path.clone(), read_checkpoint(path, &public)?.1)))
        .collect()
}

/// Reads the checkpoint file at `path` and checks it is signed with `public`:
/// the note as written, and what it says.
fn read_checkpoint(path: &Path, public: &str) -> Result<(Vec<u8>, Checkpoint)> {
    let note = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let cp = checkpoint::open(&note, public).with_context(|| path.display().to_string())?;
    Ok((note, cp))
}

/// The log's signing key at `path`, made there if there is none: named
/// after this host, with a random part so that two logs never share a name.
pub fn log_key(path: &Path) -> Result<LogKey> {
    use std::os::unix::fs::DirBuilderExt;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let host: String = gethostname::gethostname()
        .to_string_lossy()
        .chars()
        .map(|c| {
            if c.is_whitespace() || c == '+' {
                '-'
            } else {
                c
            }
        })
        .collect();
    let unique = uuid::Uuid::new_v4().simple().to_string();
    let origin = format!("vigil/{host}/{}", &unique[..8]);
    Ok(LogKey::load_or_create(path, &origin)?)
}

/// `audit key`: prints the public key.
pub fn key(path: &Path) -> Result<ExitCode> {
    println!("{}", log_key(path)?.public());
    Ok(ExitCode::SUCCESS)
}

/// `audit checkpoint`: signs one of the log as it is, to stdout or `output`.
pub async fn checkpoint(
    log: &AuditLog,
    key_path: &Path,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let key = log_key(key_path)?;
    let (cp, note) = checkpoint::of_log(log.store(), &key).await?;
    match output {
        Some(path) => {
            write_file(path, &note)?;
            println!(
                "checkpoint of {} events (root {}) written to {}",
                cp.size,
                cp.root,
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(&note)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit prove`: an event with its inclusion proof, against a checkpoint
/// given or signed now.
pub async fn prove(
    log: &AuditLog,
    key_path: &Path,
    seq: i64,
    size: Option<u64>,
    checkpoint_file: Option<&Path>,
    output: Option<&Path>,
) -> Result<ExitCode> {
    let store = log.store();
    let (note, cp) = match checkpoint_file {
        Some(path) => {
            let key = LogKey::load(key_path).context("the log key checks the checkpoint")?;
            read_checkpoint(path, key.public())?
        }
        None => {
            let key = log_key(key_path)?;
            let tree = store.tree_size().await?;
            let size = size.unwrap_or(tree);
            if size > tree {
                anyhow::bail!("--size {size} is more than the log's {tree} events");
            }
            let (cp, note) = checkpoint::of_log_at(store, &key, size).await?;
            (note, cp)
        }
    };
    let proof = EventProof::build(store, seq, &note, &cp).await?;
    let mut text = serde_json::to_vec_pretty(&proof)?;
    text.push(b'\n');
    match output {
        Some(path) => {
            write_file(path, &text)?;
            println!(
                "proof of seq {seq} in the log's first {} events written to {}",
                cp.size,
                path.display()
            );
        }
        None => std::io::stdout().lock().write_all(&text)?,
    }
    Ok(ExitCode::SUCCESS)
}

/// `audit verify-proof`: checks a proof file with the public key alone.
pub fn verify_proof(file: &Path, key: &str) -> Result<ExitCode> {
    let public = checkpoint::public_key(key)?;
    let text = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    let proof = EventProof::parse(&text).with_context(|| file.display().to_string())?;
    let cp = proof
        .verify(&public)
        .with_context(|| file.display().to_string())?;
    let e = &proof.event;
    println!(
        "proof holds: seq {} ({}, {}, {}) is in log {} of {} events, root {}",
        e.seq,
        e.kind,
        audit_db::time_us::format(e.occurred_at_us),
        e.actor,
        cp.origin,
        cp.size,
        cp.root
    );
    println!("payload: {}", e.payload.as_deref().unwrap_or("erased"));
    Ok(ExitCode::SUCCESS)
}

/// Writes `bytes` to `path`, refusing to replace a file that is there.
fn write_file(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .with_context(|| format!("writing {}", path.display()))
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
    let events = match &args.archive {
        Some(dir) => {
            let archive = retention::archived::WithArchive::open(log.store().clone(), dir)
                .with_context(|| format!("reading the archive in {}", dir.display()))?;
            archive.events(filter)
        }
        None => Box::pin(log.query(filter)),
    };
    reporter::events::write(events, format, &mut out)
        .await
        .context("listing events")?;
    Ok(ExitCode::SUCCESS)
}
