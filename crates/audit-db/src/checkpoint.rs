//! Signed checkpoints: the log's size and Merkle root at a moment, as a
//! C2SP tlog-checkpoint in a signed note (Ed25519), so that whoever keeps
//! one elsewhere can later prove that the log still extends it.
//!
//! The formats are `tlog_tiles`' (checkpoint body) and `signed_note`'s
//! (note, keys, signatures), ports of the Go code behind Go's checksum
//! database and Sunlight; a checkpoint this module writes is one those
//! tools read.

use std::path::{Path, PathBuf};

use signed_note::{Note, Signer, StandardSigner, StandardVerifier, Verifier, VerifierList};
use tlog_tiles::checkpoint::Checkpoint as Body;

use crate::record::Hash;
use crate::store::Store;

/// What a checkpoint states: the log's name, its size and its root then.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Checkpoint {
    /// The log's name (the checkpoint's origin line), also its key's name.
    pub origin: String,
    /// Events in the log.
    pub size: u64,
    /// The Merkle root over them.
    pub root: Hash,
}

/// Why a checkpoint or a key could not be used.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// The text is not a signed note holding a checkpoint.
    #[error("not a checkpoint: {0}")]
    Malformed(String),
    /// No signature by the given key: another log's checkpoint, or unsigned.
    #[error("the checkpoint is not signed by key {key}")]
    NotSignedBy {
        /// The key's name and id.
        key: String,
    },
    /// The key's signature does not match the text: it was changed.
    #[error("the checkpoint's signature by {key} does not match its text: it was altered")]
    BadSignature {
        /// The key's name and id.
        key: String,
    },
    /// Signed by the right key but naming another log.
    #[error("the checkpoint is for log {found:?}, not {expected:?}")]
    OtherLog {
        /// The origin the key belongs to.
        expected: String,
        /// The origin the checkpoint names.
        found: String,
    },
    /// A key file or key text that cannot be read as a key.
    #[error("{what} is not a usable key: {reason}")]
    BadKey {
        /// The file or text.
        what: String,
        /// Why.
        reason: String,
    },
    /// The signing key file could be read by other users.
    #[error("{} is readable by other users (mode {mode:04o}): it signs the log's checkpoints; run chmod 600 on it", path.display())]
    KeyExposed {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Reading or writing a key file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the system said.
        #[source]
        source: std::io::Error,
    },
}

/// The log's signing key: Ed25519, named by the log's origin.
pub struct LogKey {
    signer: StandardSigner,
    /// The public half, as a note verifier key (`name+id+base64`).
    verifier: String,
    origin: String,
}

impl std::fmt::Debug for LogKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the private half.
        write!(f, "LogKey({})", self.verifier)
    }
}

impl LogKey {
    /// A new key for the log named `origin`.
    pub fn generate(origin: &str) -> Result<(Self, String), CheckpointError> {
        if !signed_note::is_key_name_valid(origin) {
            return Err(CheckpointError::BadKey {
                what: format!("log name {origin:?}"),
                reason: "a log's name may not be empty or hold spaces or '+'".into(),
            });
        }
        let (skey, _) = signed_note::generate_key(&mut rand_core::OsRng, origin);
        let key = Self::from_text(&skey, "the new key")?;
        Ok((key, skey))
    }

    /// Reads the key in `path` (a note signer key, `PRIVATE+KEY+…`), which
    /// only its owner may read; makes one for `origin` there (mode 0600)
    /// if there is none.
    pub fn load_or_create(path: &Path, origin: &str) -> Result<Self, CheckpointError> {
        use std::os::unix::fs::OpenOptionsExt;
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        match Self::load(path) {
            Err(CheckpointError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                let (key, skey) = Self::generate(origin)?;
                use std::io::Write;
                let mut file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(io)?;
                writeln!(file, "{skey}").map_err(io)?;
                file.sync_all().map_err(io)?;
                Ok(key)
            }
            loaded => loaded,
        }
    }

    /// Reads the key in `path`, which must exist and be readable by its
    /// owner only.
    pub fn load(path: &Path) -> Result<Self, CheckpointError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| CheckpointError::Io {
            path: path.to_owned(),
            source,
        };
        let meta = std::fs::metadata(path).map_err(io)?;
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CheckpointError::KeyExposed {
                path: path.to_owned(),
                mode,
            });
        }
        let text = std::fs::read_to_string(path).map_err(io)?;
        Self::from_text(text.trim(), &path.display().to_string())
    }

    fn from_text(skey: &str, what: &str) -> Result<Self, CheckpointError> {
        let signer = StandardSigner::new(skey).map_err(|e| CheckpointError::BadKey {
            what: what.to_owned(),
            reason: e.to_string(),
        })?;
        let origin = signer.name().to_owned();
        let public = ed25519_public(skey).ok_or_else(|| CheckpointError::BadKey {
            what: what.to_owned(),
            reason: "not an Ed25519 key".into(),
        })?;
        Ok(LogKey {
            verifier: signed_note::new_ed25519_verifier_key(&origin, &public),
            signer,
            origin,
        })
    }

    /// The log's name, which its checkpoints carry.
    pub fn origin(&self) -> &str {
        &self.origin
    }

    /// The public key as a note verifier key (`origin+id+base64`): what
    /// `vigil audit key` prints and what checks a checkpoint.
    pub fn public(&self) -> &str {
        &self.verifier
    }

    /// A signed checkpoint of the log at `size` with `root`.
    pub fn sign(&self, size: u64, root: Hash) -> Result<Vec<u8>, CheckpointError> {
        let body = Body::new(&self.origin, size, tlog_tiles::tlog::Hash(root.0), "")
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        let mut note = Note::new(&body.to_bytes(), &[])
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        note.add_sigs(&[&self.signer as &dyn Signer])
            .map_err(|e| CheckpointError::Malformed(e.to_string()))?;
        Ok(note.to_bytes())
    }
}

/// The Ed25519 public key of a note signer key.
fn ed25519_public(skey: &str) -> Option<ed25519_dalek::VerifyingKey> {
    use base64::Engine;
    // PRIVATE+KEY+name+id+base64: the base64 may hold '+' too.
    let encoded = skey.splitn(5, '+').nth(4)?;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let (&alg, secret) = bytes.split_first()?;
    // 1 is the note format's algorithm number for Ed25519.
    if alg != 1 {
        return None;
    }
    let secret: [u8; 32] = secret.try_into().ok()?;
    Some(ed25519_dalek::SigningKey::from_bytes(&secret).verifying_key())
}

/// Reads `note` as a checkpoint signed by `public` (a note verifier key)
/// for the log that key is named after.
pub fn open(note: &[u8], public: &str) -> Result<Checkpoint, CheckpointError> {
    let verifier = StandardVerifier::new(public).map_err(|e| CheckpointError::BadKey {
        what: format!("public key {public:?}"),
        reason: e.to_string(),
    })?;
    // name+id+base64, the base64 may hold '+' too: the key is named by the first two.
    let key = public.splitn(3, '+').take(2).collect::<Vec<_>>().join("+");
    let expected = verifier.name().to_owned();
    let parsed = Note::from_bytes(note).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    match parsed.verify(&VerifierList::new(vec![Box::new(verifier)])) {
        Ok(_) => {}
        Err(signed_note::NoteError::UnverifiedNote) => {
            return Err(CheckpointError::NotSignedBy { key })
        }
        Err(signed_note::NoteError::InvalidSignature { .. }) => {
            return Err(CheckpointError::BadSignature { key })
        }
        Err(e) => return Err(CheckpointError::Malformed(e.to_string())),
    }
    let body =
        Body::from_bytes(parsed.text()).map_err(|e| CheckpointError::Malformed(e.to_string()))?;
    if body.origin() != expected {
        return Err(CheckpointError::OtherLog {
            expected,
            found: body.origin().to_owned(),
        });
    }
    Ok(Checkpoint {
        origin: body.origin().to_owned(),
        size: body.size(),
        root: Hash(body.hash().0),
    })
}

/// The key file's name in a data directory.
pub const KEY_FILE: &str = "audit-key";

/// The directory of a data directory where the gateway keeps checkpoints.
pub const CHECKPOINT_DIR: &str = "checkpoints";

/// Signs a checkpoint of the log as it is now: its tree's size and root.
pub async fn of_log(store: &Store, key: &LogKey) -> crate::Result<(Checkpoint, Vec<u8>)> {
    of_log_at(store, key, store.tree_size().await?).await
}

/// Signs a checkpoint of the log's first `size` events (at most its tree's size).
pub async fn of_log_at(
    store: &Store,
    key: &LogKey,
    size: u64,
) -> crate::Result<(Checkpoint, Vec<u8>)> {
    let root = store.root(size).await?;
    let note = key.sign(size, root)?;
    Ok((
        Checkpoint {
            origin: key.origin().to_owned(),
            size,
            root,
        },
        note,
    ))
}

/// Whether today's log still extends `checkpoint`: it holds at least as
/// many events, and its first `checkpoint.size` have the signed root.
/// (`Err` for a log that could not be read; the verdict is in the `Ok`.)
pub async fn extended_by(
    store: &Store,
    checkpoint: &Checkpoint,
) -> crate::Result<crate::Result<()>> {
    let size = store.tree_size().await?;
    if checkpoint.size > size {
        return Ok(Err(crate::Error::CheckpointAhead {
            size: checkpoint.size,
            log: size,
        }));
    }
    if store.root(checkpoint.size).await? != checkpoint.root {
        return Ok(Err(crate::Error::CheckpointMismatch {
            size: checkpoint.size,
        }));
    }
    Ok(Ok(()))
}

/// Writes `note`, a checkpoint of `size` events, into `dir` as
/// `SIZE.checkpoint` (made whole in a temporary file, synced, then renamed,
/// so a crash never leaves half of one); returns its path. A checkpoint of
/// that size already there is kept as it is.
pub fn save(dir: &Path, size: u64, note: &[u8]) -> Result<PathBuf, CheckpointError> {
    use std::io::Write;
    let io = |path: &Path| {
        let path = path.to_owned();
        move |source| CheckpointError::Io { path, source }
    };
    std::fs::create_dir_all(dir).map_err(io(dir))?;
    let path = dir.join(format!("{size}.checkpoint"));
    if path.exists() {
        return Ok(path);
    }
    let partial = dir.join(format!(".{size}.checkpoint.partial"));
    let mut file = std::fs::File::create(&partial).map_err(io(&partial))?;
    file.write_all(note).map_err(io(&partial))?;
    file.sync_all().map_err(io(&partial))?;
    std::fs::rename(&partial, &path).map_err(io(&path))?;
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io(dir))?;
    Ok(path)
}

/// Writes a checkpoint into `dir` (see [`save`]) now and every `every`
/// after, whenever the log has grown since the last, and once more when
/// `stop` resolves. A failure is logged and tried again at the next tick:
/// the gateway keeps serving.
pub async fn keep_writing(
    store: Store,
    key: LogKey,
    dir: PathBuf,
    every: std::time::Duration,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut ticks = tokio::time::interval(every);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut written = None;
    tokio::pin!(stop);
    loop {
        let last = tokio::select! {
            _ = ticks.tick() => false,
            _ = &mut stop => true,
        };
        match of_log(&store, &key).await {
            Ok((checkpoint, _)) if written == Some(checkpoint.size) => {}
            Ok((checkpoint, note)) => match save(&dir, checkpoint.size, &note) {
                Ok(path) => {
                    tracing::info!(path = %path.display(), size = checkpoint.size, "checkpoint written");
                    written = Some(checkpoint.size);
                }
                Err(e) => tracing::warn!("writing a checkpoint: {e}"),
            },
            Err(e) => tracing::warn!("signing a checkpoint: {e}"),
        }
        if last {
            return;
        }
    }
}

/// Reads a public key given as its text (`name+id+base64`) or as a file
/// holding it.
pub fn public_key(given: &str) -> Result<String, CheckpointError> {
    if StandardVerifier::new(given).is_ok() {
        return Ok(given.to_owned());
    }
    let path = Path::new(given);
    let text = std::fs::read_to_string(path).map_err(|e| CheckpointError::BadKey {
        what: format!("{given:?}"),
        reason: format!("neither a public key (NAME+ID+BASE64) nor a file holding one ({e})"),
    })?;
    let text = text.trim();
    StandardVerifier::new(text).map_err(|e| CheckpointError::BadKey {
        what: path.display().to_string(),
        reason: e.to_string(),
    })?;
    Ok(text.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root(byte: u8) -> Hash {
        Hash([byte; 32])
    }

    #[test]
    fn a_signed_checkpoint_opens_with_the_public_key() {
        let (key, _) = LogKey::generate("vigil.example/audit").unwrap();
        let note = key.sign(42, root(7)).unwrap();
        let text = String::from_utf8(note.clone()).unwrap();
        // The C2SP layout: origin, size, base64 root, blank line, signature.
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "vigil.example/audit");
        assert_eq!(lines[1], "42");
        assert_eq!(lines[3], "");
        assert!(lines[4].starts_with("— vigil.example/audit "), "{text}");
        assert_eq!(
            open(&note, key.public()).unwrap(),
            Checkpoint {
                origin: "vigil.example/audit".into(),
                size: 42,
                root: root(7)
            }
        );
    }

    #[test]
    fn every_key_reads_back_whatever_its_base64_holds() {
        // About half of all keys have a '+' in their base64; 64 of them
        // make sure such keys are read right.
        for _ in 0..64 {
            let (key, skey) = LogKey::generate("vigil.example/audit").unwrap();
            let again = LogKey::from_text(&skey, "the key").unwrap();
            assert_eq!(again.public(), key.public());
            open(&again.sign(1, root(1)).unwrap(), key.public()).unwrap();
        }
    }

    #[test]
    fn an_altered_checkpoint_is_refused() {
        let (key, _) = LogKey::generate("vigil.example/audit").unwrap();
        let text = String::from_utf8(key.sign(42, root(7)).unwrap()).unwrap();
        let altered = text.replacen("\n42\n", "\n41\n", 1);
        assert!(matches!(
            open(altered.as_bytes(), key.public()),
            Err(CheckpointError::BadSignature { .. })
        ));
    }

    #[test]
    fn another_logs_checkpoint_is_refused() {
        let (ours, _) = LogKey::generate("vigil.example/audit").unwrap();
        let (theirs, _) = LogKey::generate("vigil.example/audit").unwrap();
        let note = theirs.sign(42, root(7)).unwrap();
        assert!(matches!(
            open(&note, ours.public()),
            Err(CheckpointError::NotSignedBy { .. })
        ));
        let (other, _) = LogKey::generate("elsewhere.example/log").unwrap();
        assert!(matches!(
            open(&other.sign(1, root(1)).unwrap(), ours.public()),
            Err(CheckpointError::NotSignedBy { .. })
        ));
    }

    /// Signed by the log's own key, but naming another log in its body.
    #[test]
    fn a_checkpoint_naming_another_log_is_refused() {
        let (key, _) = LogKey::generate("vigil.example/audit").unwrap();
        let body = Body::new(
            "elsewhere.example/log",
            3,
            tlog_tiles::tlog::Hash([1; 32]),
            "",
        )
        .unwrap();
        let mut note = Note::new(&body.to_bytes(), &[]).unwrap();
        note.add_sigs(&[&key.signer as &dyn Signer]).unwrap();
        match open(&note.to_bytes(), key.public()) {
            Err(CheckpointError::OtherLog { expected, found }) => {
                assert_eq!(
                    (expected.as_str(), found.as_str()),
                    ("vigil.example/audit", "elsewhere.example/log")
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn junk_is_not_a_checkpoint() {
        let (key, _) = LogKey::generate("vigil.example/audit").unwrap();
        for junk in [&b""[..], b"hello", b"vigil.example/audit\n42\n\n"] {
            assert!(
                matches!(open(junk, key.public()), Err(CheckpointError::Malformed(_))),
                "{junk:?}"
            );
        }
    }

    #[test]
    fn the_key_file_is_made_private_and_read_back() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log.key");
        let made = LogKey::load_or_create(&path, "vigil.example/audit").unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = LogKey::load_or_create(&path, "ignored-when-present").unwrap();
        assert_eq!(made.public(), again.public());
        assert_eq!(again.origin(), "vigil.example/audit");
        let note = again.sign(3, root(3)).unwrap();
        assert_eq!(open(&note, made.public()).unwrap().size, 3);

        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            LogKey::load_or_create(&path, "x"),
            Err(CheckpointError::KeyExposed { mode: 0o644, .. })
        ));
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(&path, "PRIVATE+KEY+not+a+key\n").unwrap();
        assert!(matches!(
            LogKey::load_or_create(&path, "x"),
            Err(CheckpointError::BadKey { .. })
        ));
    }
}
