//! Files crossing a session: received names made safe, partial files that
//! never appear under their final name, no silent overwrite, and MD5 and
//! SHA-256 computed while the bytes stream through, in constant memory.

use std::path::{Path, PathBuf};

use md5::Md5;
use sha2::{Digest, Sha256};
use tokio::fs::File;
use tokio::io::AsyncWriteExt;

/// Bytes gathered before each write of a received file: each write of a
/// tokio file is a trip to the blocking pool.
const WRITE_BLOCK: usize = 1 << 20;

/// Longest file name kept, in bytes (common file systems' limit).
const MAX_NAME: usize = 255;

/// A file could not be received or sent.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The offered name has nothing usable left once made safe.
    #[error("the file name {0:?} is not usable")]
    BadName(String),
    /// Reading or writing failed.
    #[error("{doing} {}: {source}", path.display())]
    Io {
        /// What was being done.
        doing: &'static str,
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// What arrived does not match what the sender says it sent.
    #[error("the received file does not match the sender's: {0}")]
    Mismatch(String),
}

fn io<'a>(doing: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> FileError + 'a {
    move |source| FileError::Io {
        doing,
        path: path.to_owned(),
        source,
    }
}

/// A received name reduced to one safe path component: the last component
/// of any path (either separator), without control characters, never `.`
/// or `..`, at most 255 bytes.
pub fn sanitize(name: &str) -> Result<String, FileError> {
    let last = name.rsplit(['/', '\\']).next().unwrap_or_default();
    let mut clean: String = last.chars().filter(|c| !c.is_control()).collect();
    clean = clean.trim().to_owned();
    while clean.len() > MAX_NAME {
        clean.pop();
    }
    if clean.is_empty() || clean.chars().all(|c| c == '.') {
        return Err(FileError::BadName(name.to_owned()));
    }
    Ok(clean)
}

/// The name a file is offered under: its last path component (the whole
/// path if it has none).
pub fn display_name(path: &Path) -> String {
    path.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| path.display().to_string())
}

/// MD5 and SHA-256 of a stream, updated chunk by chunk.
#[derive(Clone, Default)]
pub struct Hashes {
    md5: Md5,
    sha256: Sha256,
    size: u64,
}

/// The finished digests, lower-case hex.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Digests {
    /// Bytes.
    pub size: u64,
    /// MD5, lower-case hex.
    pub md5: String,
    /// SHA-256, lower-case hex.
    pub sha256: String,
}

impl Hashes {
    /// Adds a chunk.
    pub fn update(&mut self, bytes: &[u8]) {
        self.md5.update(bytes);
        self.sha256.update(bytes);
        self.size += bytes.len() as u64;
    }

    /// The digests of everything added.
    pub fn finish(self) -> Digests {
        Digests {
            size: self.size,
            md5: hex::encode(self.md5.finalize()),
            sha256: hex::encode(self.sha256.finalize()),
        }
    }
}

/// A file being received: written to a hidden partial file, which is
/// removed if the transfer does not finish and verify.
pub struct Incoming {
    dir: PathBuf,
    name: String,
    part: PathBuf,
    file: Option<File>,
    hashes: Hashes,
    pending: Vec<u8>,
}

impl Incoming {
    /// Starts receiving `offered` into `dir`.
    pub async fn create(dir: &Path, offered: &str) -> Result<Self, FileError> {
        let name = sanitize(offered)?;
        tokio::fs::create_dir_all(dir)
            .await
            .map_err(io("creating", dir))?;
        let part = dir.join(format!(".{name}.{}.part", uuid::Uuid::new_v4().simple()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&part)
            .await
            .map_err(io("creating", &part))?;
        Ok(Self {
            dir: dir.to_owned(),
            name,
            part,
            file: Some(file),
            hashes: Hashes::default(),
            pending: Vec::new(),
        })
    }

    /// The name the file will get (before any " (n)" to avoid an existing one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Bytes received so far.
    pub fn received(&self) -> u64 {
        self.hashes.size
    }

    /// Appends a chunk.
    pub async fn write(&mut self, bytes: &[u8]) -> Result<(), FileError> {
        self.hashes.update(bytes);
        self.pending.extend_from_slice(bytes);
        if self.pending.len() >= WRITE_BLOCK {
            self.write_pending().await?;
        }
        Ok(())
    }

    async fn write_pending(&mut self) -> Result<(), FileError> {
        if let Some(file) = &mut self.file {
            file.write_all(&self.pending)
                .await
                .map_err(io("writing", &self.part))?;
        }
        self.pending.clear();
        Ok(())
    }

    /// Checks the sender's digests, makes the file durable, and gives it its
    /// final name: the offered one, or "name (n)" if that exists. Returns
    /// the path and our digests. On a mismatch the partial file is removed.
    pub async fn finish(
        mut self,
        sent: &Digests,
    ) -> Result<(PathBuf, Digests), (FileError, Digests)> {
        let ours = std::mem::take(&mut self.hashes).finish();
        if &ours != sent {
            let why = format!(
                "sent {} bytes md5 {} sha256 {}, received {} bytes md5 {} sha256 {}",
                sent.size, sent.md5, sent.sha256, ours.size, ours.md5, ours.sha256
            );
            return Err((FileError::Mismatch(why), ours));
        }
        match self.place().await {
            Ok(path) => Ok((path, ours)),
            Err(e) => Err((e, ours)),
        }
    }

    async fn place(&mut self) -> Result<PathBuf, FileError> {
        self.write_pending().await?;
        if let Some(mut file) = self.file.take() {
            file.flush().await.map_err(io("writing", &self.part))?;
            file.sync_all().await.map_err(io("syncing", &self.part))?;
        }
        // "a.txt" becomes "a (1).txt"; ".profile" and "..x" have no extension.
        let (stem, ext) = match self.name.rsplit_once('.') {
            Some((s, e)) if s.chars().any(|c| c != '.') => (s.to_owned(), format!(".{e}")),
            _ => (self.name.clone(), String::new()),
        };
        for n in 0..10_000u32 {
            let candidate = if n == 0 {
                self.dir.join(&self.name)
            } else {
                self.dir.join(format!("{stem} ({n}){ext}"))
            };
            // A hard link fails if the name exists: nothing is ever overwritten,
            // even by a file that appears between a check and a rename.
            match tokio::fs::hard_link(&self.part, &candidate).await {
                Ok(()) => {
                    tokio::fs::remove_file(&self.part)
                        .await
                        .map_err(io("removing", &self.part))?;
                    return Ok(candidate);
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(io("naming", &candidate)(e)),
            }
        }
        Err(FileError::BadName(self.name.clone()))
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        // Unfinished or refused: the partial file goes. After `place` it is
        // already gone, and this fails harmlessly.
        let _ = std::fs::remove_file(&self.part);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_made_safe() {
        assert_eq!(sanitize("report.pdf").unwrap(), "report.pdf");
        assert_eq!(sanitize("../../etc/passwd").unwrap(), "passwd");
        assert_eq!(sanitize("..\\..\\windows\\win.ini").unwrap(), "win.ini");
        assert_eq!(sanitize("/abs/path/x.txt").unwrap(), "x.txt");
        assert_eq!(sanitize("bad\nname\u{7}.txt").unwrap(), "badname.txt");
        for bad in ["", "..", ".", "a/..", "dir/", "\u{1}"] {
            assert!(sanitize(bad).is_err(), "{bad:?}");
        }
        assert_eq!(sanitize(&"x".repeat(400)).unwrap().len(), 255);
    }

    #[tokio::test]
    async fn a_received_file_verifies_and_never_overwrites() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), "existing").unwrap();
        let mut sent = Hashes::default();
        sent.update(b"hello ");
        sent.update(b"world");
        let sent = sent.finish();
        let mut incoming = Incoming::create(dir.path(), "../a.txt").await.unwrap();
        incoming.write(b"hello ").await.unwrap();
        incoming.write(b"world").await.unwrap();
        let (path, ours) = incoming.finish(&sent).await.unwrap();
        assert_eq!(path, dir.path().join("a (1).txt"));
        assert_eq!(ours, sent);
        assert_eq!(
            std::fs::read(dir.path().join("a.txt")).unwrap(),
            b"existing"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"hello world");
        assert_eq!(ours.md5, "5eb63bbbe01eeed093cb22bb8f5acdc3");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 2, "no partial file left: {names:?}");
    }

    #[tokio::test]
    async fn a_mismatch_or_an_abandoned_transfer_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut incoming = Incoming::create(dir.path(), "b.bin").await.unwrap();
        incoming.write(b"abc").await.unwrap();
        let mut other = Hashes::default();
        other.update(b"abd");
        let (err, _) = incoming.finish(&other.finish()).await.unwrap_err();
        assert!(matches!(err, FileError::Mismatch(_)));
        let mut abandoned = Incoming::create(dir.path(), "c.bin").await.unwrap();
        abandoned.write(b"partial").await.unwrap();
        drop(abandoned);
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
