//! `vigil retention ...`, `vigil admin retention|hold|erase`: wires the
//! `retention` crate to the command line.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use audit_db::archive::{Archive, HoldScope};
use audit_db::{Accounts, Actor, AuditLog, DbUrl, OpenMode, Store};
use retention::admin::RetentionAdmin;
use retention::bundle;
use retention::policy::{ClassPolicy, Periods, Policy, RecordClass};
use retention::restore;
use retention::run::{Options, Progress, Runner};

use crate::cli::{HoldCommand, RetentionAdminCommand, RetentionSettings};

/// A counter per stage, drawn on a terminal only.
struct Bar(indicatif::ProgressBar);

impl Progress for Bar {
    fn update(&self, stage: &'static str, done: u64) {
        self.0.set_message(stage);
        self.0.set_position(done);
    }
}

/// `retention run`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    log: &AuditLog,
    key_path: &Path,
    archive_dir: PathBuf,
    as_of: Option<i64>,
    dry_run: bool,
    json: bool,
    bundle_events: usize,
    actor: Actor,
    source: audit_db::Source,
) -> Result<ExitCode> {
    let key = crate::audit::log_key(key_path)?;
    let options = Options {
        as_of_us: as_of.unwrap_or_else(audit_db::time_us::now),
        dry_run,
        archive_dir,
        bundle_events: bundle_events.max(1),
        record_idle: true,
    };
    let runner = Runner {
        log,
        key: &key,
        actor,
        source,
    };
    let bar = Bar(crate::progress::counter("{msg}", "events"));
    let summary = runner.run(&options, &bar).await;
    bar.0.finish_and_clear();
    let summary = summary?;
    if json {
        println!("{}", serde_json::to_string(&summary)?);
        return Ok(ExitCode::SUCCESS);
    }
    let verb = if dry_run { "would be" } else { "were" };
    if let Some(run) = summary.finished_interrupted {
        println!("retention run {run} had been interrupted: it was finished first");
    }
    let line = |what: &str, counts: &std::collections::BTreeMap<RecordClass, u64>| {
        let total: u64 = counts.values().sum();
        let parts: Vec<String> = counts.iter().map(|(c, n)| format!("{n} {c}")).collect();
        if total == 0 {
            format!("no events {verb} {what}")
        } else {
            format!("{total} events {verb} {what} ({})", parts.join(", "))
        }
    };
    println!(
        "as of {}: {}",
        audit_db::time_us::format(options.as_of_us),
        line("archived", &summary.archived)
    );
    println!("{}", line("purged", &summary.purged));
    if summary.held > 0 {
        println!(
            "{} events past their time are kept for legal holds",
            summary.held
        );
    }
    for b in &summary.bundles_written {
        println!("bundle written: {}", options.archive_dir.join(b).display());
    }
    for b in &summary.bundles_purged {
        println!("bundle purged: {b}");
    }
    if let Some(seq) = summary.event_seq {
        println!("recorded as retention.run, seq {seq}");
    }
    Ok(ExitCode::SUCCESS)
}

/// `retention restore`: the bundles are checked before the database is
/// touched; a new SQLite file is removed again if the restore fails.
pub async fn restore(url: &DbUrl, paths: &[PathBuf], key: Option<&str>) -> Result<ExitCode> {
    let key = key
        .map(audit_db::checkpoint::public_key)
        .transpose()
        .context("--key")?;
    let manifests = restore::manifests_of(paths)?;
    let bundles = restore::check(&manifests, key.as_deref())?;
    let new_file = match url {
        DbUrl::Sqlite(path) => (!path.exists()).then(|| path.clone()),
        DbUrl::Postgres(_) => None,
    };
    let outcome = async {
        let store = Store::open(url, OpenMode::Create).await?;
        let restored =
            restore::restore(&store, &bundles, key.as_deref(), audit_db::time_us::now()).await;
        let verified = match &restored {
            Ok(_) => Some(audit_db::verify::verify(&store, None, &Default::default()).await),
            Err(_) => None,
        };
        store.close().await;
        anyhow::Ok((restored?, verified.transpose()?))
    }
    .await;
    let (restored, verified) = match outcome {
        Ok(done) => done,
        Err(e) => {
            if let Some(path) = new_file {
                for end in ["", "-wal", "-shm"] {
                    let mut file = path.clone().into_os_string();
                    file.push(end);
                    let _ = std::fs::remove_file(file);
                }
            }
            return Err(e);
        }
    };
    println!(
        "restored {} events (seqs {}..{}) of log {} from {} bundle(s) into {url}",
        restored.events,
        restored.seqs.0,
        restored.seqs.1,
        restored.log,
        restored.bundles.len()
    );
    match verified.map(|v| v.outcome) {
        Some(Ok(())) => println!(
            "verified: every event chains and is proven by its bundle's signed checkpoint; \
             query and report on it with --db {url} (it takes no new events)"
        ),
        Some(Err(broken)) => bail!("the restored database does not verify: {broken}"),
        None => {}
    }
    Ok(ExitCode::SUCCESS)
}

/// `retention verify`: every bundle named or in a directory named.
pub fn verify(paths: &[PathBuf], key: Option<&str>, json: bool) -> Result<ExitCode> {
    let key = key
        .map(audit_db::checkpoint::public_key)
        .transpose()
        .context("--key")?;
    let manifests = restore::manifests_of(paths)?;
    let started = std::time::Instant::now();
    let results = bundle::verify_all(&manifests, key.as_deref());
    let mut events = 0;
    let mut failed = false;
    for (path, result) in manifests.iter().zip(results) {
        match result {
            Ok(v) => {
                events += v.manifest.events;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "bundle": path, "ok": true, "events": v.manifest.events,
                            "log": v.checkpoint.origin, "tree_size": v.checkpoint.size,
                            "sha256": v.manifest.data.sha256,
                        })
                    );
                } else {
                    println!(
                        "ok: {} ({} events, seqs {}..{}, proven in {}'s checkpoint of {} events)",
                        path.display(),
                        v.manifest.events,
                        v.manifest.first_seq(),
                        v.manifest.last_seq(),
                        v.checkpoint.origin,
                        v.checkpoint.size
                    );
                }
            }
            Err(e) => {
                failed = true;
                if json {
                    println!(
                        "{}",
                        serde_json::json!({"bundle": path, "ok": false, "error": e.to_string()})
                    );
                } else {
                    println!("FAILED: {e}");
                }
            }
        }
    }
    if !json {
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "{} bundles, {events} events checked in {secs:.2} s{}",
            manifests.len(),
            if key.is_none() {
                " (against the keys the manifests name: pass --key to pin the log's)"
            } else {
                ""
            }
        );
    }
    Ok(if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `admin retention show|set`.
pub async fn admin(log: &AuditLog, command: RetentionAdminCommand) -> Result<ExitCode> {
    let accounts = Accounts::new(log.store().clone());
    let mut policy = Policy::load(&accounts).await?;
    let json = match command {
        RetentionAdminCommand::Show { json } => json,
        RetentionAdminCommand::Set(set) => {
            apply(&mut policy, &set)?;
            let (name, source) = crate::admin::acting(&set.by);
            RetentionAdmin::new(log, &name, source)
                .set_policy(&policy)
                .await?;
            false
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&policy)?);
        return Ok(ExitCode::SUCCESS);
    }
    let show = |whose: &str, p: &ClassPolicy| {
        println!("{whose}:");
        for class in RecordClass::ALL {
            println!("  {:<20} {}", class.as_str(), p.periods(class));
        }
    };
    show("default", &policy.default);
    for (group, p) in &policy.groups {
        show(&format!("group {group}"), p);
    }
    Ok(ExitCode::SUCCESS)
}

fn apply(policy: &mut Policy, set: &RetentionSettings) -> Result<()> {
    if set.inherit {
        let Some(group) = &set.group else {
            bail!("--inherit needs --group");
        };
        if policy.groups.remove(group).is_none() {
            bail!("group {group} has no retention policy of its own");
        }
        return Ok(());
    }
    let target = match &set.group {
        Some(group) => {
            let default = policy.default.clone();
            policy.groups.entry(group.clone()).or_insert(default)
        }
        None => &mut policy.default,
    };
    if let Some(preset) = &set.preset {
        *target = ClassPolicy::preset(preset)?;
    }
    if let Some(all) = &set.all {
        *target = ClassPolicy::uniform(all.parse::<Periods>().context("--all")?);
    }
    for (class, periods) in [
        (RecordClass::SessionEvents, &set.session_events),
        (RecordClass::Recordings, &set.recordings),
        (RecordClass::SecurityEvents, &set.security_events),
        (RecordClass::WebhookDeliveries, &set.webhook_deliveries),
    ] {
        if let Some(p) = periods {
            target.0.insert(
                class,
                p.parse::<Periods>()
                    .with_context(|| format!("--{}", class.as_str().replace('_', "-")))?,
            );
        }
    }
    policy.check()?;
    Ok(())
}

/// `admin hold add|list|release`.
pub async fn hold(log: &AuditLog, command: HoldCommand) -> Result<ExitCode> {
    match command {
        HoldCommand::Add {
            session,
            technician,
            since,
            until,
            reason,
            by,
        } => {
            let scope = match (session, technician, since, until) {
                (Some(id), None, None, None) => HoldScope::Session(id),
                (None, Some(email), None, None) => HoldScope::Technician(email),
                (None, None, Some(since_us), Some(until_us)) => HoldScope::Period {
                    since_us,
                    until_us,
                },
                _ => bail!("a hold covers one of: --session GUID, --technician EMAIL, or --since T --until T"),
            };
            let (name, source) = crate::admin::acting(&by);
            let hold = RetentionAdmin::new(log, &name, source)
                .add_hold(scope, &reason)
                .await?;
            println!(
                "legal hold {} placed on {}",
                hold.id,
                retention::admin::describe(&hold.scope)
            );
        }
        HoldCommand::List { all, json } => {
            let holds = Archive::new(log.store().clone()).holds().await?;
            for h in holds.iter().filter(|h| all || h.released.is_none()) {
                if json {
                    println!("{}", serde_json::to_string(h)?);
                    continue;
                }
                let state = match &h.released {
                    None => "in force".to_owned(),
                    Some(r) => format!(
                        "released {} by {}: {}",
                        audit_db::time_us::format(r.at_us),
                        r.by,
                        r.reason
                    ),
                };
                println!(
                    "{:>4}  {}  placed {} by {}: {}  [{state}]",
                    h.id,
                    retention::admin::describe(&h.scope),
                    audit_db::time_us::format(h.created_at_us),
                    h.created_by,
                    h.reason
                );
            }
        }
        HoldCommand::Release { id, reason, by } => {
            let (name, source) = crate::admin::acting(&by);
            RetentionAdmin::new(log, &name, source)
                .release_hold(id, &reason)
                .await?;
            println!("legal hold {id} released");
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `admin erase`.
#[allow(clippy::too_many_arguments)]
pub async fn erase(
    log: &AuditLog,
    key_path: &Path,
    archive_dir: &Path,
    request: retention::erase::Request,
    actor: Actor,
    source: audit_db::Source,
) -> Result<ExitCode> {
    let key = crate::audit::log_key(key_path)?;
    let done = retention::erase::erase(log, &key, archive_dir, actor, source, &request).await?;
    println!(
        "session {}: {} bodies erased (recorded as audit.erased, seq {}); {} archive bundles rewritten; {} recordings deleted",
        request.session,
        done.bodies,
        done.record_seq,
        done.bundles_rewritten.len(),
        done.recordings_deleted.len()
    );
    if log.store().backend_name() == "postgres" {
        println!(
            "PostgreSQL keeps old row versions until `VACUUM FULL audit_events` rewrites the table: run it to have the text leave the database's files"
        );
    }
    Ok(ExitCode::SUCCESS)
}
