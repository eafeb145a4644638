//! Whole-file checks and repair. A check reads every chunk and decodes
//! every update, so "intact" means every frame can be shown; repair keeps
//! every whole chunk, sets aside what follows, and writes a fresh index.

use std::fs::OpenOptions;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::keypoint::Tracker;
use super::reader::{scan, Scan};
use super::writer::write_index;
use super::{io_error, Header, VrecError};

/// What a full check of a file found.
#[derive(Debug)]
pub struct Check {
    /// The file's header.
    pub header: Header,
    /// What reading every chunk found.
    pub scan: Scan,
    /// The whole file's size and lower-case hex SHA-256.
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    /// The first update that does not decode, if any.
    pub undecodable: Option<String>,
}

impl Check {
    /// Whether the file is finished, whole and every update decodes.
    pub fn intact(&self) -> bool {
        self.scan.finished && self.scan.stopped.is_none() && self.undecodable.is_none()
    }
}

/// Reads `path` through: chunk checksums, every update decoded, the file hashed.
pub fn check(path: &Path) -> Result<Check, VrecError> {
    let (header, scan) = scan(path)?;
    let (size, sha256) = digest(path)?;
    let mut undecodable = None;
    let recording = super::Recording::open(path)?;
    let mut tracker = Tracker::new();
    for entry in recording.entries(None)? {
        match entry {
            Ok(super::Entry::Update { offset, bytes }) => {
                if let Err(e) = tracker.apply(&bytes, offset) {
                    undecodable = Some(format!("update at byte {offset}: {e}"));
                    break;
                }
            }
            Ok(_) => {}
            // The scan already says where the readable part ends.
            Err(_) => break,
        }
    }
    Ok(Check {
        header,
        scan,
        size,
        sha256,
        undecodable,
    })
}

/// The size and lower-case hex SHA-256 of the file at `path`, as it is now.
pub fn digest(path: &Path) -> Result<(u64, String), VrecError> {
    let mut file = std::fs::File::open(path).map_err(io_error(path))?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(io_error(path))?;
        if n == 0 {
            break;
        }
        sha.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(sha.finalize())))
}

/// What the audit log says of a recording.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Logged {
    /// A `recording.started` event names it.
    pub started: bool,
    /// The size and SHA-256 its `recording.stopped` event carries.
    pub stopped: Option<(u64, String)>,
}

/// A recording judged against the audit log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Exactly the file the audit log recorded at stop.
    Complete,
    /// A cut-off prefix, or never finished.
    Truncated(String),
    /// Not what was recorded.
    Altered(String),
    /// The audit log does not know this recording.
    Unlogged(String),
    /// No audit log was consulted; the file is whole as far as it can tell.
    Intact,
}

impl Verdict {
    /// One word for scripts.
    pub fn word(&self) -> &'static str {
        match self {
            Self::Complete => "complete",
            Self::Truncated(_) => "truncated",
            Self::Altered(_) => "altered",
            Self::Unlogged(_) => "unlogged",
            Self::Intact => "intact",
        }
    }
}

/// Judges a checked file against what the audit log holds (`None`: no log consulted).
pub fn judge(check: &Check, logged: Option<&Logged>) -> Verdict {
    let readable = format!(
        "readable up to byte {} of {} ({} frames)",
        check.scan.data_end, check.size, check.scan.index.frames
    );
    let damage = check.scan.damaged.then(|| {
        format!(
            "damaged {}",
            check.scan.stopped.as_deref().unwrap_or("inside the file")
        )
    });
    let damage = damage.or_else(|| check.undecodable.clone());
    match logged.and_then(|l| l.stopped.as_ref()) {
        Some((size, sha)) if *size == check.size && *sha == check.sha256 => Verdict::Complete,
        Some((size, _)) if check.size < *size && damage.is_none() => Verdict::Truncated(format!(
            "the file has {} of the {size} bytes the audit log recorded at stop; {readable}",
            check.size
        )),
        Some((size, _)) => Verdict::Altered(damage.unwrap_or_else(|| {
            format!(
                "its SHA-256 differs from the one the audit log recorded at stop ({size} bytes)"
            )
        })),
        None => match (damage, logged) {
            (Some(d), _) => Verdict::Altered(d),
            (None, Some(l)) if l.started => Verdict::Truncated(format!(
                "the recording never finished (no stop event in the audit log); {readable}"
            )),
            (None, Some(_)) => Verdict::Unlogged(format!(
                "the audit log has no record of recording {}",
                check.header.recording
            )),
            (None, None) if check.intact() => Verdict::Intact,
            (None, None) => Verdict::Truncated(format!(
                "{}; {readable}",
                check
                    .scan
                    .stopped
                    .as_deref()
                    .unwrap_or("no index: the recording was not finished")
            )),
        },
    }
}

/// What [`repair`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Repaired {
    /// The file was finished and whole; nothing was changed.
    pub already_complete: bool,
    /// Bytes of whole chunks kept.
    pub kept: u64,
    /// Bytes after the last whole chunk, moved to `tail`.
    pub dropped: u64,
    /// Where the bytes after the last whole chunk were saved, if there were any.
    pub tail: Option<PathBuf>,
    /// Screen updates kept.
    pub frames: u64,
    /// Why the readable part ends where it does.
    pub reason: Option<String>,
}

/// Makes a cut-off or damaged recording finished again: whole chunks are
/// kept, the bytes after them are saved to `FILE.tail` (never thrown
/// away), and a new index and trailer are written.
pub fn repair(path: &Path) -> Result<Repaired, VrecError> {
    let (_, scan) = scan(path)?;
    if scan.finished && scan.stopped.is_none() {
        return Ok(Repaired {
            already_complete: true,
            kept: scan.file_len,
            dropped: 0,
            tail: None,
            frames: scan.index.frames,
            reason: None,
        });
    }
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io_error(path))?;
    let dropped = scan.file_len - scan.data_end;
    let tail = if dropped > 0 {
        let mut name = path.as_os_str().to_owned();
        name.push(".tail");
        let tail_path = PathBuf::from(name);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&tail_path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => VrecError::Exists {
                    path: tail_path.display().to_string(),
                },
                _ => io_error(&tail_path)(e),
            })?;
        file.seek(SeekFrom::Start(scan.data_end))
            .map_err(io_error(path))?;
        std::io::copy(&mut (&mut file).take(dropped), &mut out).map_err(io_error(&tail_path))?;
        out.sync_all().map_err(io_error(&tail_path))?;
        Some(tail_path)
    } else {
        None
    };
    file.set_len(scan.data_end).map_err(io_error(path))?;
    file.seek(SeekFrom::End(0)).map_err(io_error(path))?;
    write_index(
        &mut file,
        path,
        scan.data_end,
        &scan.index,
        &mut Sha256::new(),
    )?;
    file.flush().map_err(io_error(path))?;
    file.sync_all().map_err(io_error(path))?;
    Ok(Repaired {
        already_complete: false,
        kept: scan.data_end,
        dropped,
        tail,
        frames: scan.index.frames,
        reason: scan.stopped,
    })
}
