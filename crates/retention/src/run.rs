//! A retention run: events past their online period leave the live log
//! for archive bundles, archived events past their archive period are
//! purged, and the run is audited before anything is deleted.
//!
//! The order makes a run safe to kill at any instant:
//! 1. bundles are written, fsynced and verified from the disk (nothing in
//!    the database knows them yet);
//! 2. the `retention.run` event names every bundle written and purged; its
//!    id was chosen when the run was recorded as started, so appending it
//!    again stores it once;
//! 3. each bundle's move (its events deleted, its stretches recorded) and
//!    each purge is one transaction, idempotent;
//! 4. files of purged bundles are deleted, and the run marked finished.
//!
//! A run that finds the last one unfinished first finishes it from its
//! event (or, if the event never became durable, drops the files it left).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::{Path, PathBuf};

use audit_db::archive::{Archive, BundleRow, Departure, RunRow};
use audit_db::checkpoint::LogKey;
use audit_db::event::{ArchivedBundle, PurgedBundle, PurgedOnline, RetentionRun};
use audit_db::{Accounts, Actor, AuditLog, EventKind, Filter, NewEvent, Source, StoredEvent};
use futures::TryStreamExt;
use serde::Serialize;

use crate::bundle::{self, Background, BundleError, Checking, Manifest, Subject, Writer};
use crate::hold::{Holds, Record};
use crate::policy::{Deadlines, Policy, PolicyError, RecordClass};
use crate::recordings;
use crate::subject::People;
use crate::webhook_log;

/// Events per bundle: a bundle's leaves stay in memory while it is written
/// (32 bytes each) and its events when it is partly purged.
pub const BUNDLE_EVENTS: usize = 250_000;

/// How a run is asked for.
#[derive(Clone, Debug)]
pub struct Options {
    /// The clock to decide by (microseconds; `--as-of`, or now).
    pub as_of_us: i64,
    /// Decide and count, change nothing.
    pub dry_run: bool,
    /// Where bundles go.
    pub archive_dir: PathBuf,
    /// Events per bundle at most.
    pub bundle_events: usize,
    /// Record a run that found nothing to do (a person's run is always
    /// recorded; the gateway's daily one only when it moved something).
    pub record_idle: bool,
}

/// What a run did (or, dry, would do).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Summary {
    /// The run's number (0 for a dry run).
    pub run: i64,
    /// An interrupted run finished first.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finished_interrupted: Option<i64>,
    /// Events archived, per class.
    pub archived: BTreeMap<RecordClass, u64>,
    /// Events purged, per class.
    pub purged: BTreeMap<RecordClass, u64>,
    /// Events past their time kept for a legal hold.
    pub held: u64,
    /// Bundles written.
    pub bundles_written: Vec<String>,
    /// Bundles purged (whole, or rewritten without the purged events).
    pub bundles_purged: Vec<String>,
    /// The `retention.run` event's seq.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event_seq: Option<i64>,
}

/// How far a run is, for a progress bar.
pub trait Progress: Send + Sync {
    /// `done` events handled in `stage` so far.
    fn update(&self, stage: &'static str, done: u64);
}

impl Progress for () {
    fn update(&self, _: &'static str, _: u64) {}
}

/// A run could not be made; nothing it had not made durable is lost.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The archive directory cannot be used.
    #[error("archive directory {}: {why}", dir.display())]
    ArchiveDir {
        /// The directory.
        dir: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// Another run holds the archive directory.
    #[error("another retention run is using {}", dir.display())]
    Busy {
        /// The directory.
        dir: PathBuf,
    },
    /// The clock is before the last run's.
    #[error("--as-of {as_of} is before the last run's ({last}): runs only go forward")]
    BeforeLastRun {
        /// As given.
        as_of: String,
        /// The last run's.
        last: String,
    },
    /// A bundle in the archive directory is of another log.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The policy could not be read.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The log could not be read or written.
    #[error(transparent)]
    Log(#[from] audit_db::Error),
    /// An interrupted run's record cannot be read back.
    #[error(
        "retention run {run} was interrupted and its record (seq {seq}) cannot be read: {why}"
    )]
    Interrupted {
        /// The run.
        run: i64,
        /// Its event.
        seq: i64,
        /// Why.
        why: String,
    },
}

impl RunError {
    /// Whether it is the caller's input that is wrong (exit 2), not the system.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            RunError::ArchiveDir { .. }
                | RunError::BeforeLastRun { .. }
                | RunError::Policy(PolicyError::BelowMinimum { .. })
                | RunError::Bundle(BundleError::OtherLog { .. })
        )
    }
}

/// Who a run acts as in the log.
#[derive(Clone, Debug)]
pub struct Runner<'a> {
    /// The log.
    pub log: &'a AuditLog,
    /// Its signing key, for the bundles' checkpoints.
    pub key: &'a LogKey,
    /// Who runs it (`system:retention` for the gateway's daily run).
    pub actor: Actor,
    /// From where.
    pub source: Source,
}

impl Runner<'_> {
    /// Runs retention as `options` say.
    pub async fn run(
        &self,
        options: &Options,
        progress: &dyn Progress,
    ) -> Result<Summary, RunError> {
        check_dir(&options.archive_dir)?;
        // Absolute: the run's record names it, for whoever finishes the run.
        let dir =
            &std::fs::canonicalize(&options.archive_dir).map_err(|e| RunError::ArchiveDir {
                dir: options.archive_dir.clone(),
                why: e.to_string(),
            })?;
        // An archive directory holding another log's bundles is refused.
        bundle::manifests_of_one_log(dir, Some(self.key.origin()))?;
        let _lock = lock(dir)?;
        let archive = Archive::new(self.log.store().clone());
        let mut summary = Summary::default();
        if let Some(last) = archive.last_run().await? {
            if last.as_of_us > options.as_of_us {
                return Err(RunError::BeforeLastRun {
                    as_of: audit_db::time_us::format(options.as_of_us),
                    last: audit_db::time_us::format(last.as_of_us),
                });
            }
            if last.finished_at_us.is_none() && !options.dry_run {
                self.finish_interrupted(&archive, &last).await?;
                summary.finished_interrupted = Some(last.id);
            }
        }
        if !options.dry_run {
            clean_up(dir, &archive).await?;
        }
        let accounts = Accounts::new(self.log.store().clone());
        let policy = Policy::load(&accounts).await?;
        let holds = Holds::in_force(archive.holds().await?);
        let run = if options.dry_run {
            None
        } else {
            Some(
                archive
                    .start_run(options.as_of_us, audit_db::time_us::now())
                    .await?,
            )
        };
        let run_id = run.as_ref().map_or(0, |r| r.id);
        summary.run = run_id;
        let ctx = Context {
            runner: self,
            options,
            policy: &policy,
            deadlines: Deadlines::new(&policy, options.as_of_us),
            holds: &holds,
            run_id,
        };
        let mut people = People::load(&accounts).await?;
        let (written, purged_online) = ctx.archive(&mut people, &mut summary, progress).await?;
        let purges = ctx.purge(&archive, &mut summary, progress).await?;
        let head = self.log.store().head().await?;
        let tracked = recordings::learn(
            self.log.store(),
            &archive,
            &mut people,
            head.seq,
            options.dry_run,
        )
        .await?;
        let recording_moves = recordings::plan(
            &tracked,
            &policy,
            &holds,
            options.as_of_us,
            dir,
            options.dry_run,
            &mut summary.held,
        )?;
        let webhook_cutoff = webhook_log::cutoff(&policy, options.as_of_us);
        let webhook_due = webhook_log::due(self.log.store(), &holds, webhook_cutoff)
            .await?
            .len() as u64;
        if webhook_due > 0 {
            *summary
                .purged
                .entry(RecordClass::WebhookDeliveries)
                .or_default() += webhook_due;
        }
        for m in &recording_moves {
            let counts = if m.to.is_some() {
                &mut summary.archived
            } else {
                &mut summary.purged
            };
            *counts.entry(RecordClass::Recordings).or_default() += 1;
        }
        let Some(run) = run else {
            return Ok(summary);
        };
        if written.is_empty()
            && purges.is_empty()
            && purged_online.is_none()
            && recording_moves.is_empty()
            && webhook_due == 0
            && !options.record_idle
        {
            archive.finish_run(run.id, audit_db::time_us::now()).await?;
            return Ok(summary);
        }
        let record = RetentionRun {
            archived: summary.archived.values().sum(),
            purged: summary.purged.values().sum(),
            held: summary.held,
            run: run.id,
            as_of: audit_db::time_us::format(options.as_of_us),
            archive_dir: dir.display().to_string(),
            policy: serde_json::to_value(&policy).unwrap_or_default(),
            bundles: written.iter().map(archived_bundle).collect(),
            purges,
            purged_online,
            recordings: recording_moves,
            webhook_log_before: (webhook_due > 0)
                .then(|| audit_db::time_us::format(webhook_cutoff)),
            webhook_log_purged: webhook_due,
        };
        let mut event = NewEvent::now(
            self.actor.clone(),
            self.source.clone(),
            EventKind::RetentionRun(record.clone()),
        );
        event.id = run.event_id;
        summary.event_seq = Some(self.log.append_one(event).await?.seq);
        commit(&archive, dir, &record, &holds).await?;
        archive.finish_run(run.id, audit_db::time_us::now()).await?;
        Ok(summary)
    }

    /// Finishes run `last`, interrupted: from its event if that became
    /// durable (everything it names was), else it did nothing that stays.
    async fn finish_interrupted(&self, archive: &Archive, last: &RunRow) -> Result<(), RunError> {
        let store = self.log.store();
        if let Some(event) = store.event_by_id(&last.event_id).await? {
            let bad = |why: String| RunError::Interrupted {
                run: last.id,
                seq: event.seq,
                why,
            };
            let record = match event.decode() {
                Ok(Some(EventKind::RetentionRun(r))) => r,
                Ok(_) => return Err(bad(format!("it is a {} event", event.kind))),
                Err(e) => return Err(bad(e.to_string())),
            };
            tracing::info!(run = last.id, "finishing an interrupted retention run");
            let holds = Holds::in_force(archive.holds().await?);
            commit(archive, Path::new(&record.archive_dir), &record, &holds).await?;
        }
        archive
            .finish_run(last.id, audit_db::time_us::now())
            .await?;
        Ok(())
    }
}

struct Context<'a> {
    runner: &'a Runner<'a>,
    options: &'a Options,
    policy: &'a Policy,
    deadlines: Deadlines,
    holds: &'a Holds,
    run_id: i64,
}

impl Context<'_> {
    /// Moves events past their online period into new bundles, and finds
    /// those past their archive period too (purged without archiving);
    /// returns the manifests written and what is to be purged.
    async fn archive(
        &self,
        people: &mut People,
        summary: &mut Summary,
        progress: &dyn Progress,
    ) -> Result<(Vec<Manifest>, Option<PurgedOnline>), RunError> {
        let store = self.runner.log.store();
        let as_of = self.options.as_of_us;
        let head = store.head().await?;
        // Nothing that happened after this can be due; a session's events
        // count from its creation, a little before them.
        let bound = self.policy.shortest_online().before(as_of);
        let filter = Filter {
            until_seq: Some(head.seq),
            until_us: Some(bound.saturating_add(SESSION_MARGIN_US)),
            ..Filter::default()
        };
        let mut events = std::pin::pin!(audit_db::query::stream(store.clone(), filter));
        let mut writer: Option<Background> = None;
        // Bundles being read back; at most two at once, for memory.
        let mut checking: VecDeque<Checking> = VecDeque::new();
        let mut written = Vec::new();
        let mut purged = Vec::new();
        let mut purged_classes = BTreeMap::new();
        let mut seen = 0u64;
        while let Some(event) = events.try_next().await? {
            seen += 1;
            if seen.is_multiple_of(10_000) {
                progress.update("archiving", seen);
            }
            let subject = people.subject(store, &event).await?;
            let periods = self
                .policy
                .for_group(subject.group.as_deref())
                .periods(subject.class);
            if !self.deadlines.passed(periods.online, subject.age_from_us) {
                continue;
            }
            // Past its archive period too: it goes now, unless held.
            match self.fate(&event, &subject) {
                Fate::Purge => {
                    *summary.purged.entry(subject.class).or_default() += 1;
                    purged.push(event.seq);
                    *purged_classes.entry(subject.class.to_string()).or_default() += 1;
                    continue;
                }
                Fate::Held => summary.held += 1,
                Fate::Stay => {}
            }
            *summary.archived.entry(subject.class).or_default() += 1;
            if self.options.dry_run {
                continue;
            }
            let w = match writer.as_mut() {
                Some(w) => w,
                None => writer.insert(Background::new(Writer::create(
                    &self.options.archive_dir,
                    &self.bundle_name(written.len() + checking.len()),
                )?)),
            };
            w.push(event, subject).await?;
            if w.len() >= self.options.bundle_events {
                if let Some(full) = writer.take() {
                    if checking.len() >= 2 {
                        if let Some(oldest) = checking.pop_front() {
                            written.push(oldest.done().await?);
                        }
                    }
                    checking.push_back(self.finish_in_background(full).await?);
                }
            }
        }
        progress.update("archiving", seen);
        if let Some(last) = writer.take() {
            checking.push_back(self.finish_in_background(last).await?);
        }
        for c in checking {
            written.push(c.done().await?);
        }
        summary.bundles_written = written.iter().map(|m| m.name.clone()).collect();
        let purged = (!purged.is_empty()).then(|| PurgedOnline {
            events: purged.len() as u64,
            classes: purged_classes,
            ranges: audit_db::ranges(&purged),
        });
        Ok((written, purged))
    }

    async fn finish_in_background(&self, writer: Background) -> Result<Checking, RunError> {
        Ok(writer
            .into_writer()
            .await?
            .finish_in_background(self.runner.log.store(), self.runner.key, self.run_id)
            .await?)
    }

    async fn finish(&self, writer: Writer) -> Result<Manifest, RunError> {
        Ok(writer
            .finish(self.runner.log.store(), self.runner.key, self.run_id)
            .await?)
    }

    /// `DAY-runN`: what the names of this run's bundles start with.
    fn name_stem(&self) -> String {
        let day = audit_db::time_us::format(self.options.as_of_us);
        format!("{}-run{}", &day[..10.min(day.len())], self.run_id)
    }

    fn bundle_name(&self, n: usize) -> String {
        format!("{}-{:03}", self.name_stem(), n + 1)
    }

    /// Decides, for every archived bundle old enough to hold anything due,
    /// which of its events are past their archive period and not held;
    /// writes a bundle of the rest where some stay.
    async fn purge(
        &self,
        archive: &Archive,
        summary: &mut Summary,
        progress: &dyn Progress,
    ) -> Result<Vec<PurgedBundle>, RunError> {
        let shortest = self.policy.shortest_total();
        let mut purges = Vec::new();
        let mut done = 0u64;
        let mut replaced = 0usize;
        for row in archive.bundles().await? {
            if row.purged || !self.deadlines.passed(shortest, row.oldest_at_us) {
                continue;
            }
            let (_, path) = bundle::paths(&self.options.archive_dir, &row.name);
            let mut gone: Vec<i64> = Vec::new();
            let mut classes: BTreeMap<String, u64> = BTreeMap::new();
            let mut held = 0u64;
            let manifest = bundle::read_manifest(&path)?;
            let manifest = match self.all_due(&manifest) {
                // Every event is past its archive period and nothing is held:
                // the manifest says all that is needed (`verify` checks it).
                true => {
                    gone.extend(manifest.stretches.iter().flat_map(|s| s.first..=s.last));
                    classes.extend(manifest.classes.iter().map(|(c, n)| (c.to_string(), *n)));
                    manifest
                }
                // Read once to decide, so that a bundle with nothing due
                // costs no write; a second time to copy what stays.
                false => bundle::for_each_event(&path, |event, subject| {
                    match self.fate(&event, &subject) {
                        Fate::Purge => {
                            gone.push(event.seq);
                            *classes.entry(subject.class.to_string()).or_default() += 1;
                        }
                        Fate::Held => held += 1,
                        Fate::Stay => {}
                    }
                    Ok(())
                })?,
            };
            done += manifest.events;
            progress.update("purging", done);
            summary.held += held;
            if gone.is_empty() {
                continue;
            }
            for (class, n) in &classes {
                if let Ok(class) = class.parse::<RecordClass>() {
                    *summary.purged.entry(class).or_default() += n;
                }
            }
            summary.bundles_purged.push(row.name.clone());
            if self.options.dry_run {
                continue;
            }
            let kept_in = if gone.len() as u64 == manifest.events {
                None
            } else {
                replaced += 1;
                let name = format!("{}-kept{replaced:03}", self.name_stem());
                let mut writer = Writer::create(&self.options.archive_dir, &name)?;
                let gone_set: std::collections::HashSet<i64> = gone.iter().copied().collect();
                let mut failed = None;
                bundle::for_each_event(&path, |event, subject| {
                    if !gone_set.contains(&event.seq) {
                        if let Err(e) = writer.push(&event, &subject) {
                            failed = Some(e);
                            return Err("could not be copied".into());
                        }
                    }
                    Ok(())
                })
                .map_err(|e| failed.take().unwrap_or(e))?;
                let kept = self.finish(writer).await?;
                summary.bundles_written.push(kept.name.clone());
                Some(archived_bundle(&kept))
            };
            purges.push(PurgedBundle {
                bundle: row.name.clone(),
                sha256: row.sha256.clone(),
                events: gone.len() as u64,
                classes,
                ranges: audit_db::ranges(&gone),
                kept_in,
            });
        }
        Ok(purges)
    }

    /// Whether every event of `manifest`'s bundle is to be purged now, as
    /// its newest times say, with no hold in force (a hold may cover any
    /// event: then each is decided on its own).
    fn all_due(&self, manifest: &Manifest) -> bool {
        self.holds.is_empty()
            && !manifest.newest.is_empty()
            && manifest.newest.iter().all(|n| {
                let periods = self.policy.for_group(n.group.as_deref()).periods(n.class);
                self.deadlines.passed(periods.total(), n.at_us)
            })
    }

    /// What happens to an archived event now.
    fn fate(&self, event: &StoredEvent, subject: &Subject) -> Fate {
        let periods = self
            .policy
            .for_group(subject.group.as_deref())
            .periods(subject.class);
        if !self.deadlines.passed(periods.total(), subject.age_from_us) {
            return Fate::Stay;
        }
        let record = Record {
            class: subject.class,
            session: event.session,
            technician: subject.technician.as_deref(),
            occurred_at_us: event.occurred_at_us,
        };
        if self.holds.covering(&record).is_some() {
            Fate::Held
        } else {
            Fate::Purge
        }
    }
}

enum Fate {
    Stay,
    Held,
    Purge,
}

/// How long a session may last, at most, for the archive's first read:
/// its events count from its creation.
const SESSION_MARGIN_US: i64 = 2 * 86_400 * 1_000_000;

/// Makes durable in the database what `record` says a run did, and
/// deletes the files of the bundles it purged. Idempotent.
async fn commit(
    archive: &Archive,
    dir: &Path,
    record: &RetentionRun,
    holds: &Holds,
) -> Result<(), RunError> {
    // Every bundle's events leave in one transaction.
    let mut rows = Vec::new();
    for b in &record.bundles {
        let (_, path) = bundle::paths(dir, &b.bundle);
        let manifest = bundle::read_manifest(&path)?;
        rows.push((row_of(&manifest, record.run), manifest.ranges()));
    }
    let purged: Vec<(i64, i64)> = record
        .purged_online
        .iter()
        .flat_map(|p| p.ranges.iter().map(|r| (r[0], r[1])))
        .collect();
    let mut departures: Vec<Departure<'_>> = rows
        .iter()
        .map(|(row, runs)| Departure {
            bundle: Some(row),
            runs,
        })
        .collect();
    if !purged.is_empty() {
        departures.push(Departure {
            bundle: None,
            runs: &purged,
        });
    }
    archive.commit_archive(&departures).await?;
    for p in &record.purges {
        let ranges: Vec<(i64, i64)> = p.ranges.iter().map(|r| (r[0], r[1])).collect();
        let kept = match &p.kept_in {
            Some(k) => {
                let (_, path) = bundle::paths(dir, &k.bundle);
                let m = bundle::read_manifest(&path)?;
                Some((row_of(&m, record.run), m.ranges()))
            }
            None => None,
        };
        archive
            .commit_purge(
                &p.bundle,
                &ranges,
                kept.as_ref().map(|(row, r)| (row, r.as_slice())),
            )
            .await?;
        bundle::remove(dir, &p.bundle)?;
    }
    bundle::sync_dir(dir)?;
    recordings::commit(archive, &record.recordings).await?;
    if let Some(before) = &record.webhook_log_before {
        if let Ok(before_us) = audit_db::time_us::parse(before) {
            webhook_log::commit(archive.store(), holds, before_us).await?;
        }
    }
    Ok(())
}

/// Deletes what runs left behind: files of purged bundles, temporary
/// files, and bundles the database does not know (written by a run
/// interrupted before its record was durable; their events are online).
async fn clean_up(dir: &Path, archive: &Archive) -> Result<(), RunError> {
    let known: HashMap<String, bool> = archive
        .bundles()
        .await?
        .into_iter()
        .map(|b| (b.name, b.purged))
        .collect();
    let entries = std::fs::read_dir(dir).map_err(|e| RunError::ArchiveDir {
        dir: dir.to_owned(),
        why: e.to_string(),
    })?;
    for entry in entries.flatten() {
        let file = entry.file_name().to_string_lossy().into_owned();
        if file.starts_with('.') && file.ends_with(".tmp") {
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        let Some(name) = file
            .strip_suffix(bundle::MANIFEST_SUFFIX)
            .or_else(|| file.strip_suffix(&format!(".{}", bundle::DATA_EXT)))
        else {
            continue;
        };
        if known.get(name).is_none_or(|&purged| purged) {
            tracing::info!(bundle = name, "removing a bundle no archive holds");
            bundle::remove(dir, name)?;
        }
    }
    Ok(())
}

/// The database's row for the bundle `m` describes, written by run `run`.
pub(crate) fn row_of(m: &Manifest, run: i64) -> BundleRow {
    BundleRow {
        name: m.name.clone(),
        sha256: m.data.sha256.clone(),
        events: m.events as i64,
        first_seq: m.first_seq(),
        last_seq: m.last_seq(),
        oldest_at_us: m.oldest_at_us,
        run_id: run,
        purged: false,
    }
}

fn archived_bundle(m: &Manifest) -> ArchivedBundle {
    ArchivedBundle {
        bundle: m.name.clone(),
        sha256: m.data.sha256.clone(),
        first_seq: m.first_seq(),
        last_seq: m.last_seq(),
        events: m.events,
        classes: m.classes.iter().map(|(c, n)| (c.to_string(), *n)).collect(),
    }
}

/// Checks that `dir` is a directory this process can write to.
pub fn check_dir(dir: &Path) -> Result<(), RunError> {
    let bad = |why: String| RunError::ArchiveDir {
        dir: dir.to_owned(),
        why,
    };
    let meta = std::fs::metadata(dir).map_err(|e| bad(format!("cannot be used ({e})")))?;
    if !meta.is_dir() {
        return Err(bad("is not a directory".into()));
    }
    let probe = dir.join(format!(".write-probe-{}.tmp", std::process::id()));
    std::fs::write(&probe, b"").map_err(|e| bad(format!("is not writable ({e})")))?;
    let _ = std::fs::remove_file(&probe);
    Ok(())
}

/// Holds the archive directory for this run (released when dropped).
fn lock(dir: &Path) -> Result<std::fs::File, RunError> {
    let path = dir.join(".retention.lock");
    let file = std::fs::File::create(&path).map_err(|e| RunError::ArchiveDir {
        dir: dir.to_owned(),
        why: e.to_string(),
    })?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(RunError::Busy {
            dir: dir.to_owned(),
        }),
        Err(std::fs::TryLockError::Error(e)) => Err(RunError::ArchiveDir {
            dir: dir.to_owned(),
            why: e.to_string(),
        }),
    }
}

/// Runs retention now and every `every` after, as of the wall clock, until
/// `stop` resolves (the gateway's daily run). A run that fails is logged
/// and tried again at the next tick: the gateway keeps serving.
pub async fn keep_running(
    runner: Runner<'_>,
    archive_dir: PathBuf,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = &mut stop => return,
        }
        let options = Options {
            as_of_us: audit_db::time_us::now(),
            dry_run: false,
            archive_dir: archive_dir.clone(),
            bundle_events: BUNDLE_EVENTS,
            record_idle: false,
        };
        // A run is not cut short by the stop: it is safe to kill, but one
        // that finishes leaves less for the next.
        match runner.run(&options, &()).await {
            Ok(s) => tracing::info!(
                archived = s.archived.values().sum::<u64>(),
                purged = s.purged.values().sum::<u64>(),
                held = s.held,
                "retention run"
            ),
            Err(e) => tracing::warn!("retention run: {e}"),
        }
    }
}
