//! Archive bundles: events that left the live log, in a file that proves
//! itself.
//!
//! A bundle is two files in the archive directory: `NAME.vbundle`, the
//! events as JSON lines compressed with zstd (readable with `zstdcat` and
//! `jq` decades from now), and `NAME.manifest.json`, which says what is in
//! it (classes, counts, the stretches of seqs with the chain hashes at
//! their ends, the SHA-256 of the data file and of the events' leaf
//! hashes) and proves it: a checkpoint signed by the log's key, and a range
//! proof from the events' leaves to that checkpoint's root. A bundle is
//! written whole under a temporary name, fsynced, renamed, and then read
//! back and verified from the disk before anything it holds is deleted.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_db::checkpoint::{self, Checkpoint, LogKey};
use audit_db::encoding::{self, BodyRef, Fields, Salt};
use audit_db::record::Body;
use audit_db::{merkle, Hash, Store, StoredEvent};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::policy::RecordClass;

/// The manifest's format tag.
pub const MANIFEST_FORMAT: &str = "vigil-archive-bundle/1";
/// The data file's extension.
pub const DATA_EXT: &str = "vbundle";
/// The manifest's file name ending.
pub const MANIFEST_SUFFIX: &str = ".manifest.json";
/// zstd's level for bundles: the default. Level 9 made bundles of a
/// million events 10 % smaller (0.114 of their SQLite bytes, against the
/// target of 0.2) and the archive run a third slower.
const ZSTD_LEVEL: i32 = 3;

/// What retention knew of an event when it archived it: what its periods
/// are counted from and whose it is. Kept beside the event in the bundle
/// (outside what the leaf covers), so that a purge years later decides as
/// the archiving did, even after the session's other events are gone.
/// Names are shared (`Arc`): every event of a session has the same.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subject {
    /// Its record class.
    pub class: RecordClass,
    /// The technician group whose policy applies (`None`: the default).
    pub group: Option<Arc<str>>,
    /// The technician whose session it is, or who acted.
    pub technician: Option<Arc<str>>,
    /// When its periods start (microseconds): its session's creation, or
    /// its own time.
    pub age_from_us: i64,
}

/// A stretch of consecutive seqs in a bundle, with the chain hash before
/// its first event and of its last (the same a restored database keeps).
pub use audit_db::restored::Stretch;

/// The latest time the periods of a bundle's events of one class and group
/// start.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Newest {
    /// The class.
    pub class: RecordClass,
    /// The technician group (`None`: the default policy's).
    pub group: Option<String>,
    /// When (microseconds).
    pub at_us: i64,
}

/// Counts an event of `class` and `group` whose periods start `at_us`
/// into `list` (few entries: a scan, and no allocation but for a new one).
fn note_newest(list: &mut Vec<Newest>, class: RecordClass, group: Option<&str>, at_us: i64) {
    match list
        .iter_mut()
        .find(|n| n.class == class && n.group.as_deref() == group)
    {
        Some(n) => n.at_us = n.at_us.max(at_us),
        None => list.push(Newest {
            class,
            group: group.map(str::to_owned),
            at_us,
        }),
    }
}

/// The data file as the manifest names it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct DataFile {
    /// Its file name, beside the manifest.
    pub file: String,
    /// Its size.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of its bytes.
    pub sha256: String,
}

/// A bundle's manifest.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`MANIFEST_FORMAT`].
    pub format: String,
    /// The bundle's name (its files' stem).
    pub name: String,
    /// The log it came from (its checkpoints' origin).
    pub log: String,
    /// The log's public key, as the bundle's writer knew it; pass the key
    /// you trust to `retention verify --key` instead of believing this one.
    pub key: String,
    /// When it was written (RFC 3339).
    pub created_at: String,
    /// The retention run that wrote it.
    pub run: i64,
    /// The data file.
    pub data: DataFile,
    /// Events in it.
    pub events: u64,
    /// Events per record class.
    pub classes: BTreeMap<RecordClass, u64>,
    /// The earliest time any of its events' periods start (microseconds).
    pub oldest_at_us: i64,
    /// The latest time any of its events' periods start, per class and
    /// group: with no hold in force, a purge decides the whole bundle from
    /// these without reading it (absent from older bundles).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub newest: Vec<Newest>,
    /// Its stretches of seqs, in order.
    pub stretches: Vec<Stretch>,
    /// SHA-256 of the events' leaf hashes, concatenated in seq order.
    pub leaves_sha256: String,
    /// The size of the tree the proof is against (the checkpoint's).
    pub tree_size: u64,
    /// The hashes of the tree's subtrees holding none of these events,
    /// left to right: with the events' leaves they give the signed root.
    pub range_proof: Vec<Hash>,
    /// The signed checkpoint (C2SP tlog-checkpoint, signed note).
    pub checkpoint: String,
}

impl Manifest {
    /// The bundle's stretches as inclusive seq ranges.
    pub fn ranges(&self) -> Vec<(i64, i64)> {
        self.stretches.iter().map(|s| (s.first, s.last)).collect()
    }

    /// Its first seq.
    pub fn first_seq(&self) -> i64 {
        self.stretches.first().map_or(0, |s| s.first)
    }

    /// Its last seq.
    pub fn last_seq(&self) -> i64 {
        self.stretches.last().map_or(0, |s| s.last)
    }
}

/// One event in a data file.
#[derive(Serialize, Deserialize)]
struct Line<'a> {
    seq: i64,
    id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    session: Option<Uuid>,
    occurred: i64,
    recorded: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    reported: Option<i64>,
    #[serde(borrow)]
    source: Cow<'a, str>,
    #[serde(borrow)]
    actor: Cow<'a, str>,
    #[serde(borrow, rename = "type")]
    kind: Cow<'a, str>,
    format: i16,
    /// The payload's exact stored text (absent once erased).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    payload: Option<&'a RawValue>,
    /// Its salt, hex (absent once erased).
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    salt: Option<Cow<'a, str>>,
    /// The body digest, once erased.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    digest: Option<Hash>,
    class: RecordClass,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    group: Option<Cow<'a, str>>,
    #[serde(borrow, default, skip_serializing_if = "Option::is_none")]
    technician: Option<Cow<'a, str>>,
    age_from: i64,
}

impl<'a> Line<'a> {
    fn of(event: &'a StoredEvent, subject: &'a Subject) -> Result<Self, String> {
        let (payload, salt, digest) = match &event.body {
            Body::Kept { payload, salt } => {
                let raw: &RawValue = serde_json::from_str(payload)
                    .map_err(|e| format!("its payload is not JSON ({e})"))?;
                let salt = salt.ok_or("it has no salt (a log not yet converted)")?;
                (Some(raw), Some(Cow::Owned(hex::encode(salt))), None)
            }
            Body::Erased { digest } => (None, None, Some(*digest)),
        };
        Ok(Line {
            seq: event.seq,
            id: event.id,
            session: event.session,
            occurred: event.occurred_at_us,
            recorded: event.recorded_at_us,
            reported: event.reported_at_us,
            source: Cow::Borrowed(&event.source),
            actor: Cow::Borrowed(&event.actor),
            kind: Cow::Borrowed(&event.kind),
            format: event.format,
            payload,
            salt,
            digest,
            class: subject.class,
            group: subject.group.as_deref().map(Cow::Borrowed),
            technician: subject.technician.as_deref().map(Cow::Borrowed),
            age_from: subject.age_from_us,
        })
    }

    /// The canonical encoding of the event into `out`.
    /// Its salt, decoded (`None` once erased).
    fn salt(&self) -> Result<Option<Salt>, String> {
        let Some(text) = &self.salt else {
            return Ok(None);
        };
        let mut salt = [0u8; encoding::SALT_LEN];
        hex::decode_to_slice(text.as_bytes(), &mut salt)
            .map_err(|_| format!("its salt {text:?} is not {} hex bytes", encoding::SALT_LEN))?;
        Ok(Some(salt))
    }

    fn encode(&self, out: &mut Vec<u8>) -> Result<(), String> {
        let salt = self.salt()?;
        let body = match (&self.payload, &salt, &self.digest) {
            (Some(payload), Some(salt), None) => BodyRef::Kept {
                payload: payload.get(),
                salt: Some(salt),
            },
            (None, None, Some(digest)) => BodyRef::Erased { digest: &digest.0 },
            _ => {
                return Err(
                    "it has neither a payload with its salt nor an erased body's digest".into(),
                )
            }
        };
        let fields = Fields {
            seq: self.seq,
            id: &self.id,
            session: self.session.as_ref(),
            occurred_at_us: self.occurred,
            recorded_at_us: self.recorded,
            reported_at_us: self.reported,
            source: &self.source,
            actor: &self.actor,
            kind: &self.kind,
            body,
        };
        out.clear();
        encoding::encode(self.format, &fields, out).map_err(|e| e.to_string())
    }

    fn event(&self, prev_hash: Hash, hash: Hash) -> Result<StoredEvent, String> {
        let body = match (&self.payload, self.salt()?, &self.digest) {
            (Some(payload), Some(salt), None) => Body::Kept {
                payload: payload.get().to_owned(),
                salt: Some(salt),
            },
            (None, None, Some(digest)) => Body::Erased { digest: *digest },
            _ => return Err("it has neither a payload with its salt nor a digest".into()),
        };
        Ok(StoredEvent {
            seq: self.seq,
            id: self.id,
            session: self.session,
            occurred_at_us: self.occurred,
            recorded_at_us: self.recorded,
            reported_at_us: self.reported,
            source: self.source.to_string(),
            actor: self.actor.to_string(),
            kind: self.kind.to_string(),
            body,
            format: self.format,
            prev_hash,
            hash,
        })
    }

    fn subject(&self) -> Subject {
        Subject {
            class: self.class,
            group: self.group.as_deref().map(Arc::from),
            technician: self.technician.as_deref().map(Arc::from),
            age_from_us: self.age_from,
        }
    }
}

/// A bundle could not be written, read or verified.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    /// A file could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
    /// The manifest is not one.
    #[error("{}: not a bundle manifest: {why}", path.display())]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// Why.
        why: String,
    },
    /// The data file is not what the manifest says.
    #[error("{}: its SHA-256 is {found}, the manifest says {expected}: the file was altered", path.display())]
    DataAltered {
        /// The data file.
        path: PathBuf,
        /// What it hashes to.
        found: String,
        /// What the manifest says.
        expected: String,
    },
    /// The data file cannot be read as a bundle's events.
    #[error("{}: {why}", path.display())]
    Corrupt {
        /// The data file.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
    /// An event does not fit the manifest or does not hash.
    #[error("{}: seq {seq}: {why}", path.display())]
    Event {
        /// The bundle's manifest.
        path: PathBuf,
        /// The event.
        seq: i64,
        /// What is wrong.
        why: String,
    },
    /// The checkpoint is not signed by the key, or not a checkpoint.
    #[error("{}: {source}", path.display())]
    Checkpoint {
        /// The manifest.
        path: PathBuf,
        /// Why.
        #[source]
        source: checkpoint::CheckpointError,
    },
    /// A bundle of another log than expected.
    #[error("{}: the bundle is of log {found:?}, not of this log ({expected:?})", path.display())]
    OtherLog {
        /// The manifest.
        path: PathBuf,
        /// The log it names.
        found: String,
        /// The log expected.
        expected: String,
    },
    /// The events do not give the signed root.
    #[error("{}: its events do not hash to the root of the signed checkpoint ({why})", path.display())]
    NotProven {
        /// The manifest.
        path: PathBuf,
        /// What failed.
        why: String,
    },
    /// The log could not be read for the proof.
    #[error("reading the log for a bundle's proof: {0}")]
    Log(#[from] audit_db::Error),
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> BundleError + '_ {
    move |source| BundleError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Writes (or reads) what passes through it to (from) `inner` and hashes it.
pub(crate) struct Hashing<W> {
    pub(crate) inner: W,
    pub(crate) hash: Sha256,
    pub(crate) bytes: u64,
}

impl<W: Write> Write for Hashing<W> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

impl<R: Read> Read for Hashing<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.hash.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
}

/// The paths of bundle `name`'s two files in `dir`.
pub fn paths(dir: &Path, name: &str) -> (PathBuf, PathBuf) {
    (
        dir.join(format!("{name}.{DATA_EXT}")),
        dir.join(format!("{name}{MANIFEST_SUFFIX}")),
    )
}

/// A bundle being written.
pub struct Writer {
    dir: PathBuf,
    name: String,
    tmp: PathBuf,
    encoder: zstd::Encoder<'static, Hashing<BufWriter<File>>>,
    stretches: Vec<Stretch>,
    leaves: Sha256,
    events: usize,
    classes: BTreeMap<RecordClass, u64>,
    oldest_at_us: i64,
    newest: Vec<Newest>,
    line: Vec<u8>,
    scratch: Vec<u8>,
}

impl Writer {
    /// Starts bundle `name` in `dir`.
    pub fn create(dir: &Path, name: &str) -> Result<Self, BundleError> {
        let tmp = dir.join(format!(".{name}.{DATA_EXT}.tmp"));
        let file = File::create(&tmp).map_err(io(&tmp))?;
        let sink = Hashing {
            inner: BufWriter::with_capacity(1 << 20, file),
            hash: Sha256::new(),
            bytes: 0,
        };
        let encoder = zstd::Encoder::new(sink, ZSTD_LEVEL).map_err(io(&tmp))?;
        Ok(Self {
            dir: dir.to_owned(),
            name: name.to_owned(),
            tmp,
            encoder,
            stretches: Vec::new(),
            leaves: Sha256::new(),
            events: 0,
            classes: BTreeMap::new(),
            oldest_at_us: i64::MAX,
            newest: Vec::new(),
            line: Vec::with_capacity(1024),
            scratch: Vec::with_capacity(512),
        })
    }

    /// Events written so far.
    pub fn len(&self) -> usize {
        self.events
    }

    /// Whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.events == 0
    }

    /// Adds `event` (after every event added before it, by seq).
    pub fn push(&mut self, event: &StoredEvent, subject: &Subject) -> Result<(), BundleError> {
        let bad = |why: String| BundleError::Event {
            path: self.tmp.clone(),
            seq: event.seq,
            why,
        };
        let line = Line::of(event, subject).map_err(bad)?;
        line.encode(&mut self.scratch).map_err(bad)?;
        if audit_db::chain::link_encoded(&event.prev_hash.0, &self.scratch) != event.hash {
            return Err(bad(
                "it does not hash as stored: run `vigil audit verify`".into()
            ));
        }
        let leaf = merkle::leaf_hash(&self.scratch);
        self.line.clear();
        serde_json::to_writer(&mut self.line, &line).map_err(|e| bad(e.to_string()))?;
        self.line.push(b'\n');
        self.encoder.write_all(&self.line).map_err(io(&self.tmp))?;
        match self.stretches.last_mut() {
            Some(s) if s.last + 1 == event.seq => {
                s.last = event.seq;
                s.hash = event.hash;
            }
            Some(s) if s.last >= event.seq => {
                return Err(bad(format!("added after seq {}", s.last)));
            }
            _ => self.stretches.push(Stretch {
                first: event.seq,
                last: event.seq,
                prev_hash: event.prev_hash,
                hash: event.hash,
            }),
        }
        self.leaves.update(leaf.0);
        self.events += 1;
        *self.classes.entry(subject.class).or_default() += 1;
        self.oldest_at_us = self.oldest_at_us.min(subject.age_from_us);
        note_newest(
            &mut self.newest,
            subject.class,
            subject.group.as_deref(),
            subject.age_from_us,
        );
        Ok(())
    }

    /// Finishes the bundle: the data file is completed, fsynced and given
    /// its name; the range proof is read from `store` against a checkpoint
    /// signed now with `key`; the manifest is written the same way; then
    /// both are read back from the disk and verified on a blocking thread,
    /// which the returned [`Checking`] waits for.
    pub async fn finish_in_background(
        self,
        store: &Store,
        key: &LogKey,
        run: i64,
    ) -> Result<Checking, BundleError> {
        let Writer {
            dir,
            name,
            tmp,
            encoder,
            stretches,
            leaves,
            events,
            classes,
            oldest_at_us,
            newest,
            ..
        } = self;
        let sink = encoder.finish().map_err(io(&tmp))?;
        let (sha256, bytes) = (hex::encode(sink.hash.finalize()), sink.bytes);
        let file = sink
            .inner
            .into_inner()
            .map_err(|e| io(&tmp)(e.into_error()))?;
        file.sync_all().map_err(io(&tmp))?;
        drop(file);
        let (data_path, manifest_path) = paths(&dir, &name);
        std::fs::rename(&tmp, &data_path).map_err(io(&data_path))?;

        let size = store.tree_size().await?;
        let runs: Vec<(u64, u64)> = stretches
            .iter()
            .map(|s| (s.first as u64 - 1, s.last as u64))
            .collect();
        let indexes =
            merkle::range_proof_indexes(size, &runs).map_err(|e| BundleError::NotProven {
                path: manifest_path.clone(),
                why: e.to_string(),
            })?;
        let stored = store.tree_hashes(&indexes).await?;
        let range_proof =
            merkle::range_proof(size, &runs, &stored).map_err(|e| BundleError::NotProven {
                path: manifest_path.clone(),
                why: e.to_string(),
            })?;
        // Whether the leaves with this proof give the root the checkpoint
        // signs is what the read-back below checks, before anything that
        // depends on the bundle is done.
        let (_, note) = checkpoint::of_log_at(store, key, size).await?;
        let manifest = Manifest {
            format: MANIFEST_FORMAT.to_owned(),
            name: name.clone(),
            log: key.origin().to_owned(),
            key: key.public().to_owned(),
            created_at: audit_db::time_us::format(audit_db::time_us::now()),
            run,
            data: DataFile {
                file: data_path
                    .file_name()
                    .map(|f| f.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                bytes,
                sha256,
            },
            events: events as u64,
            classes,
            oldest_at_us,
            newest: {
                let mut newest = newest;
                newest.sort();
                newest
            },
            stretches,
            leaves_sha256: hex::encode(leaves.finalize()),
            tree_size: size,
            range_proof,
            checkpoint: String::from_utf8_lossy(&note).into_owned(),
        };
        write_durably(
            &manifest_path,
            &serde_json::to_vec_pretty(&manifest).unwrap_or_default(),
        )?;
        sync_dir(&dir)?;
        // Read back from the disk, as a verifier would.
        Ok(Checking {
            handle: tokio::task::spawn_blocking(move || {
                verify(&manifest_path, Some(&manifest.key))
            }),
            path: data_path,
        })
    }

    /// [`Writer::finish_in_background`], then waits for the check.
    pub async fn finish(
        self,
        store: &Store,
        key: &LogKey,
        run: i64,
    ) -> Result<Manifest, BundleError> {
        self.finish_in_background(store, key, run)
            .await?
            .done()
            .await
    }

    /// Abandons the bundle, removing its temporary file.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.tmp);
    }
}

/// A finished bundle being read back from the disk and verified.
pub struct Checking {
    handle: tokio::task::JoinHandle<Result<Verified, BundleError>>,
    path: PathBuf,
}

impl Checking {
    /// Waits for the check; the manifest as read back.
    pub async fn done(self) -> Result<Manifest, BundleError> {
        let read = self.handle.await.map_err(|e| BundleError::Corrupt {
            path: self.path,
            why: format!("verifying what was written: {e}"),
        })??;
        Ok(read.manifest)
    }
}

/// Events a [`Background`] writer takes at a time.
const BACKGROUND_BATCH: usize = 4_096;

/// A [`Writer`] fed in batches on a blocking thread, so that encoding,
/// hashing and compressing one batch overlaps the caller reading the next.
pub struct Background {
    state: Option<State>,
    batch: Vec<(StoredEvent, Subject)>,
    len: usize,
}

enum State {
    Idle(Box<Writer>),
    Busy(tokio::task::JoinHandle<(Writer, Result<(), BundleError>)>),
}

impl Background {
    /// Feeds `writer`.
    pub fn new(writer: Writer) -> Self {
        Self {
            state: Some(State::Idle(Box::new(writer))),
            batch: Vec::with_capacity(BACKGROUND_BATCH),
            len: 0,
        }
    }

    /// Events taken so far.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether nothing was taken.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Adds `event` (after every event added before it, by seq); an error
    /// of an earlier batch may surface here.
    pub async fn push(&mut self, event: StoredEvent, subject: Subject) -> Result<(), BundleError> {
        self.batch.push((event, subject));
        self.len += 1;
        if self.batch.len() >= BACKGROUND_BATCH {
            self.send().await?;
        }
        Ok(())
    }

    /// The writer, every event written to it.
    pub async fn into_writer(mut self) -> Result<Writer, BundleError> {
        self.send().await?;
        self.wait().await
    }

    async fn send(&mut self) -> Result<(), BundleError> {
        let mut writer = self.wait().await?;
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(BACKGROUND_BATCH));
        self.state = Some(State::Busy(tokio::task::spawn_blocking(move || {
            let written = batch.iter().try_for_each(|(e, s)| writer.push(e, s));
            (writer, written)
        })));
        Ok(())
    }

    async fn wait(&mut self) -> Result<Writer, BundleError> {
        match self.state.take() {
            Some(State::Idle(writer)) => Ok(*writer),
            Some(State::Busy(handle)) => {
                let (writer, written) = handle.await.map_err(|e| BundleError::Corrupt {
                    path: PathBuf::new(),
                    why: format!("writing a bundle: {e}"),
                })?;
                match written {
                    Ok(()) => Ok(writer),
                    Err(e) => {
                        writer.abandon();
                        Err(e)
                    }
                }
            }
            None => Err(BundleError::Corrupt {
                path: PathBuf::new(),
                why: "a bundle writer failed before".into(),
            }),
        }
    }
}

/// Writes `bytes` to `path` through a temporary file that is fsynced and
/// then renamed, so `path` is whole or absent.
pub fn write_durably(path: &Path, bytes: &[u8]) -> Result<(), BundleError> {
    let tmp = path.with_file_name(format!(
        ".{}.tmp",
        path.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    ));
    let mut file = File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(bytes).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    std::fs::rename(&tmp, path).map_err(io(path))
}

/// Makes the names in `dir` durable (renames and removals in it).
pub fn sync_dir(dir: &Path) -> Result<(), BundleError> {
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))
}

/// Deletes `path` if it is there.
pub(crate) fn remove_file(path: &Path) -> Result<(), BundleError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(BundleError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Deletes bundle `name`'s files from `dir`, where they are.
pub(crate) fn remove(dir: &Path, name: &str) -> Result<(), BundleError> {
    let (data, manifest) = paths(dir, name);
    remove_file(&data)?;
    remove_file(&manifest)
}

/// Reads a manifest.
pub fn read_manifest(path: &Path) -> Result<Manifest, BundleError> {
    let text = std::fs::read(path).map_err(io(path))?;
    let manifest: Manifest = serde_json::from_slice(&text).map_err(|e| BundleError::Manifest {
        path: path.to_owned(),
        why: e.to_string(),
    })?;
    if manifest.format != MANIFEST_FORMAT {
        return Err(BundleError::Manifest {
            path: path.to_owned(),
            why: format!("format {:?}, not {MANIFEST_FORMAT:?}", manifest.format),
        });
    }
    Ok(manifest)
}

/// The manifest path for `path`, a bundle's manifest or data file.
pub fn manifest_path(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|f| f.to_string_lossy())
        .unwrap_or_default();
    match name.strip_suffix(&format!(".{DATA_EXT}")) {
        Some(stem) => path.with_file_name(format!("{stem}{MANIFEST_SUFFIX}")),
        None => path.to_owned(),
    }
}

/// A verified bundle.
#[derive(Debug)]
pub struct Verified {
    /// Its manifest.
    pub manifest: Manifest,
    /// The checkpoint it is proven against.
    pub checkpoint: Checkpoint,
}

/// What [`walk`] keeps between lines.
struct Walk<'m> {
    /// The manifest's path.
    path: &'m Path,
    /// The data file's.
    data: &'m Path,
    manifest: &'m Manifest,
    leaves: Vec<Hash>,
    leaves_hash: Sha256,
    classes: BTreeMap<RecordClass, u64>,
    newest: Vec<Newest>,
    stretches: std::slice::Iter<'m, Stretch>,
    /// The stretch being read, with the chain hash so far.
    current: Option<(Stretch, Hash)>,
    /// The next seq.
    expected: i64,
    /// The event's canonical encoding.
    scratch: Vec<u8>,
}

/// What is wrong with the event at `seq` of the bundle whose manifest is
/// at `path`.
fn event_error(path: &Path, seq: i64, why: String) -> BundleError {
    BundleError::Event {
        path: path.to_owned(),
        seq,
        why,
    }
}

impl Walk<'_> {
    /// Checks one line of the data file and hands it to `each`.
    fn line(
        &mut self,
        text: &[u8],
        each: &mut impl FnMut(&Line<'_>, Hash, Hash) -> Result<(), String>,
    ) -> Result<(), BundleError> {
        let path = self.path;
        let event_error = |seq, why| event_error(path, seq, why);
        // One UTF-8 check of the whole line, not one per string in it.
        let line: Line<'_> = match std::str::from_utf8(text)
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(text).map_err(|e| e.to_string()))
        {
            Ok(line) => line,
            Err(e) => {
                let after = if self.expected == 0 {
                    "at its start".to_owned()
                } else {
                    format!("after seq {}", self.expected - 1)
                };
                return Err(BundleError::Corrupt {
                    path: self.data.to_owned(),
                    why: format!("an event {after} is not readable: {e}"),
                });
            }
        };
        let seq = line.seq;
        if self.current.is_none_or(|(s, _)| s.last < self.expected) {
            // The last stretch is done: it must end with the stored hash.
            if let Some((s, hash)) = self.current {
                if hash != s.hash {
                    return Err(event_error(
                        s.last,
                        "the chain through its stretch does not end at the manifest's hash".into(),
                    ));
                }
            }
            let Some(s) = self.stretches.next() else {
                return Err(event_error(
                    seq,
                    "is not in any of the manifest's stretches".into(),
                ));
            };
            self.current = Some((*s, s.prev_hash));
            self.expected = s.first;
        }
        if seq != self.expected {
            return Err(event_error(
                seq,
                format!("came where seq {} was expected", self.expected),
            ));
        }
        line.encode(&mut self.scratch)
            .map_err(|why| event_error(seq, why))?;
        if RecordClass::of_event(&line.kind, line.session.is_some()) != line.class {
            return Err(event_error(seq, format!("is not of class {}", line.class)));
        }
        let Some((_, prev)) = self.current.as_mut() else {
            return Err(event_error(seq, "no stretch".into()));
        };
        let hash = audit_db::chain::link_encoded(&prev.0, &self.scratch);
        each(&line, *prev, hash).map_err(|why| event_error(seq, why))?;
        *prev = hash;
        let leaf = merkle::leaf_hash(&self.scratch);
        self.leaves_hash.update(leaf.0);
        self.leaves.push(leaf);
        *self.classes.entry(line.class).or_default() += 1;
        if !self.manifest.newest.is_empty() {
            note_newest(
                &mut self.newest,
                line.class,
                line.group.as_deref(),
                line.age_from,
            );
        }
        self.expected += 1;
        Ok(())
    }

    /// After the last line: what the manifest says of the data file as a
    /// whole holds; the events' leaves, in order.
    fn finish(self) -> Result<Vec<Hash>, BundleError> {
        let Walk {
            path,
            manifest,
            leaves,
            leaves_hash,
            classes,
            mut newest,
            mut stretches,
            current,
            expected,
            ..
        } = self;
        if let Some((s, hash)) = current {
            if hash != s.hash || expected != s.last + 1 {
                return Err(event_error(path, s.last, "its stretch ends early or the chain through it does not end at the manifest's hash".into()));
            }
        }
        if let Some(s) = stretches.next() {
            return Err(event_error(
                path,
                s.first,
                "is named by the manifest but not in the data file".into(),
            ));
        }
        if leaves.len() as u64 != manifest.events || classes != manifest.classes {
            return Err(BundleError::Manifest {
                path: path.to_owned(),
                why: format!(
                    "it counts {} events by class as {:?}; the data file holds {} as {:?}",
                    manifest.events,
                    manifest.classes,
                    leaves.len(),
                    classes
                ),
            });
        }
        // A purge trusts these without reading the events: they must be theirs.
        newest.sort();
        if !manifest.newest.is_empty() && newest != manifest.newest {
            return Err(BundleError::Manifest {
                path: path.to_owned(),
                why: "its newest times per class and group are not its events'".into(),
            });
        }
        if hex::encode(leaves_hash.finalize()) != manifest.leaves_sha256 {
            return Err(BundleError::Manifest {
                path: path.to_owned(),
                why: "leaves_sha256 is not the digest of the events' leaves".into(),
            });
        }
        Ok(leaves)
    }
}

/// Reads every event of the bundle whose manifest is at `path`, checking
/// each against the manifest as it goes; `each` gets the event with its
/// chain hashes and what retention knew of it. Verifies everything
/// [`verify`] does but the checkpoint's signature and the range proof,
/// which the caller does with the leaves returned.
fn walk(
    path: &Path,
    manifest: &Manifest,
    mut each: impl FnMut(&Line<'_>, Hash, Hash) -> Result<(), String>,
) -> Result<Vec<Hash>, BundleError> {
    let data = path.with_file_name(&manifest.data.file);
    if manifest.data.file.contains('/') || manifest.data.file.starts_with('.') {
        return Err(BundleError::Manifest {
            path: path.to_owned(),
            why: format!(
                "data file {:?} is not a name beside the manifest",
                manifest.data.file
            ),
        });
    }
    let file = File::open(&data).map_err(io(&data))?;
    let mut source = Hashing {
        inner: BufReader::with_capacity(1 << 20, file),
        hash: Sha256::new(),
        bytes: 0,
    };
    let mut walk = Walk {
        path,
        data: &data,
        manifest,
        leaves: Vec::with_capacity(manifest.events.min(1 << 24) as usize),
        leaves_hash: Sha256::new(),
        classes: BTreeMap::new(),
        newest: Vec::new(),
        stretches: manifest.stretches.iter(),
        current: None,
        expected: 0,
        scratch: Vec::with_capacity(512),
    };
    let decoded = (|| -> Result<(), BundleError> {
        let decoder = zstd::Decoder::new(&mut source).map_err(io(&data))?;
        let mut lines = BufReader::with_capacity(1 << 20, decoder);
        // A line cut by the buffer's end is gathered here; every other line
        // is read where the decompressor put it.
        let mut cut = Vec::new();
        loop {
            let chunk = lines.fill_buf().map_err(|e| BundleError::Corrupt {
                path: data.clone(),
                why: format!("cannot be decompressed: {e}"),
            })?;
            if chunk.is_empty() {
                if !cut.is_empty() {
                    walk.line(&cut, &mut each)?;
                }
                return Ok(());
            }
            let Some(end) = memchr::memrchr(b'\n', chunk) else {
                cut.extend_from_slice(chunk);
                let n = chunk.len();
                lines.consume(n);
                continue;
            };
            let mut from = 0;
            for at in memchr::memchr_iter(b'\n', &chunk[..=end]) {
                if cut.is_empty() {
                    walk.line(&chunk[from..at], &mut each)?;
                } else {
                    cut.extend_from_slice(&chunk[..at]);
                    walk.line(&cut, &mut each)?;
                    cut.clear();
                }
                from = at + 1;
            }
            lines.consume(end + 1);
        }
    })();
    // The hash of the whole file, read to its end even after an error, so
    // an altered file is named as such before what it breaks.
    let _ = std::io::copy(&mut source, &mut std::io::sink());
    let found = hex::encode(source.hash.clone().finalize());
    if found != manifest.data.sha256 || source.bytes != manifest.data.bytes {
        return Err(BundleError::DataAltered {
            path: data,
            found,
            expected: manifest.data.sha256.clone(),
        });
    }
    decoded?;
    walk.finish()
}

/// Verifies the bundle whose manifest (or data file) is at `path` on its
/// own: the data file's SHA-256, every event against the manifest (order,
/// stretches, chain, counts, classes), the checkpoint's signature by `key`
/// (or, without one, by the key the manifest names), and that the events'
/// leaves with the range proof give the checkpoint's root.
pub fn verify(path: &Path, key: Option<&str>) -> Result<Verified, BundleError> {
    let path = manifest_path(path);
    let manifest = read_manifest(&path)?;
    let key = key.unwrap_or(&manifest.key);
    let checkpoint = checkpoint::open(manifest.checkpoint.as_bytes(), key).map_err(|source| {
        BundleError::Checkpoint {
            path: path.clone(),
            source,
        }
    })?;
    if checkpoint.origin != manifest.log {
        return Err(BundleError::OtherLog {
            path,
            found: manifest.log.clone(),
            expected: checkpoint.origin,
        });
    }
    let leaves = walk(&path, &manifest, |_, _, _| Ok(()))?;
    let runs: Vec<(u64, u64)> = manifest
        .stretches
        .iter()
        .map(|s| (s.first.max(1) as u64 - 1, s.last.max(0) as u64))
        .collect();
    let not_proven = |why: String| BundleError::NotProven {
        path: path.clone(),
        why,
    };
    if manifest.tree_size != checkpoint.size {
        return Err(not_proven(format!(
            "the manifest's tree size {} is not the checkpoint's {}",
            manifest.tree_size, checkpoint.size
        )));
    }
    let root = merkle::range_root(checkpoint.size, &runs, &leaves, &manifest.range_proof)
        .map_err(|e| not_proven(e.to_string()))?;
    if root != checkpoint.root {
        return Err(not_proven("another root".into()));
    }
    Ok(Verified {
        manifest,
        checkpoint,
    })
}

/// Every event of a bundle, in seq order, with what retention knew of it,
/// checked as [`verify`] checks them (without the signature and proof:
/// call [`verify`] first where those matter).
pub fn read_events(path: &Path) -> Result<(Manifest, Vec<(StoredEvent, Subject)>), BundleError> {
    let mut events = Vec::new();
    let manifest = for_each_event(path, |event, subject| {
        events.push((event, subject));
        Ok(())
    })?;
    Ok((manifest, events))
}

/// Calls `each` with every event of a bundle in seq order, checked as
/// [`read_events`] checks them, without holding them all.
pub fn for_each_event(
    path: &Path,
    mut each: impl FnMut(StoredEvent, Subject) -> Result<(), String>,
) -> Result<Manifest, BundleError> {
    let path = manifest_path(path);
    let manifest = read_manifest(&path)?;
    walk(&path, &manifest, |line, prev, hash| {
        each(line.event(prev, hash)?, line.subject())
    })?;
    Ok(manifest)
}

/// Every manifest in `dir` (sorted by name), read; all must be of log
/// `log`, or (without one) of the same log as the first.
pub fn manifests_of_one_log(
    dir: &Path,
    log: Option<&str>,
) -> Result<Vec<(PathBuf, Manifest)>, BundleError> {
    let mut expected = log.map(str::to_owned);
    let mut found = Vec::new();
    for path in manifests_in(dir)? {
        let manifest = read_manifest(&path)?;
        match &expected {
            Some(log) if *log != manifest.log => {
                return Err(BundleError::OtherLog {
                    path,
                    found: manifest.log,
                    expected: log.clone(),
                })
            }
            Some(_) => {}
            None => expected = Some(manifest.log.clone()),
        }
        found.push((path, manifest));
    }
    Ok(found)
}

/// The manifests in `dir` (sorted by name).
pub fn manifests_in(dir: &Path) -> Result<Vec<PathBuf>, BundleError> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io(dir))? {
        let entry = entry.map_err(io(dir))?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(MANIFEST_SUFFIX) && !name.starts_with('.') {
            found.push(entry.path());
        }
    }
    found.sort();
    Ok(found)
}

/// [`verify`] of each manifest in `paths`, on every core, results in order.
pub fn verify_all(paths: &[PathBuf], key: Option<&str>) -> Vec<Result<Verified, BundleError>> {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Mutex;
    let next = AtomicUsize::new(0);
    let results: Vec<Mutex<Option<Result<Verified, BundleError>>>> =
        paths.iter().map(|_| Mutex::new(None)).collect();
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(paths.len().max(1));
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(path) = paths.get(i) else { break };
                let result = verify(path, key);
                if let Ok(mut slot) = results[i].lock() {
                    *slot = Some(result);
                }
            });
        }
    });
    results
        .into_iter()
        .zip(paths)
        .map(|(slot, path)| {
            slot.into_inner().ok().flatten().unwrap_or_else(|| {
                Err(BundleError::Corrupt {
                    path: path.clone(),
                    why: "its check did not finish".into(),
                })
            })
        })
        .collect()
}
