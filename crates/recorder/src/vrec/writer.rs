//! Appends a recording as a session runs. Every chunk goes to the file in
//! one write as soon as it is made, so a console killed at any moment
//! leaves a file that is whole up to its last chunk; key points are
//! flushed to disk, bounding what a power cut can take.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::chunk::{self, Kind};
use super::keypoint::Tracker;
use super::reader::{Index, SeekPoint};
use super::{io_error, Header, Marker, VrecError};
use crate::codec;
use crate::cursor::Cursor;

/// A key point follows an update once this much time has passed since the last…
pub const KEY_EVERY_US: u64 = 10_000_000;
/// …or this many updates, whichever comes first.
pub const KEY_EVERY_FRAMES: u64 = 50;

/// A recording being written.
#[derive(Debug)]
pub struct Writer {
    file: File,
    path: PathBuf,
    header: Header,
    pos: u64,
    sha: Sha256,
    tracker: Tracker,
    index: Index,
    /// Frames and time at the last seek point.
    key: (u64, u64),
    cursor_position: Option<u64>,
    cursor_shape: Option<u64>,
    /// An update failed to decode: the tracker no longer matches the file.
    poisoned: bool,
}

/// A recording finished cleanly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finished {
    /// The file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the whole file.
    pub sha256: String,
    /// Screen updates in it.
    pub frames: u64,
    /// From its first to its last update, in microseconds.
    pub duration_us: u64,
}

impl Writer {
    /// Starts a recording at `path`, which must not exist.
    pub fn create(path: &Path, header: Header) -> Result<Self, VrecError> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => VrecError::Exists {
                    path: path.display().to_string(),
                },
                _ => io_error(path)(e),
            })?;
        let mut writer = Self {
            file,
            path: path.to_owned(),
            header: header.clone(),
            pos: 0,
            sha: Sha256::new(),
            tracker: Tracker::new(),
            index: Index::default(),
            key: (0, 0),
            cursor_position: None,
            cursor_shape: None,
            poisoned: false,
        };
        writer.put(&chunk::MAGIC)?;
        // Serialising a struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(&header).expect("the header: serialising this plain struct (no maps with non-string keys, no custom impls) cannot fail");
        writer.put(&chunk::encode(Kind::Header, &json))?;
        Ok(writer)
    }

    /// The header this recording was started with.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Bytes written so far.
    pub fn size(&self) -> u64 {
        self.pos
    }

    /// Appends a screen update exactly as the codec made it.
    pub fn update(&mut self, update: &[u8]) -> Result<(), VrecError> {
        let path = self.path.display().to_string();
        if self.poisoned {
            return Err(VrecError::Corrupt {
                path,
                offset: self.pos,
                what: "an earlier update could not be decoded; the recording stopped there".into(),
            });
        }
        let head = codec::info(update).map_err(|source| VrecError::Codec {
            path: path.clone(),
            what: "update refused".into(),
            source,
        })?;
        if (u32::from(head.width), u32::from(head.height))
            != (self.header.width, self.header.height)
        {
            return Err(VrecError::SizeMismatch(
                self.header.width,
                self.header.height,
                head.width,
                head.height,
            ));
        }
        let at = self.pos;
        if let Err(source) = self.tracker.apply(update, at) {
            self.poisoned = true;
            return Err(VrecError::Codec {
                path,
                what: "update refused".into(),
                source,
            });
        }
        self.put(&chunk::encode(Kind::Update, update))?;
        let frames = self.tracker.frames();
        self.index.frames = frames;
        self.index.duration_us = self.index.duration_us.max(head.timestamp_us);
        self.index.last_update_us = head.timestamp_us;
        if head.key {
            self.seek_point(head.timestamp_us, frames, at);
        } else if frames - self.key.0 >= KEY_EVERY_FRAMES
            || head.timestamp_us.saturating_sub(self.key.1) >= KEY_EVERY_US
        {
            self.key_point()?;
        }
        Ok(())
    }

    /// Appends a cursor update.
    pub fn cursor(&mut self, cursor: &Cursor) -> Result<(), VrecError> {
        let at = self.pos;
        self.put(&chunk::encode(Kind::Cursor, &cursor.encode()))?;
        self.cursor_position = Some(at);
        if cursor.shape.is_some() {
            self.cursor_shape = Some(at);
        }
        self.index.cursor_updates += 1;
        self.index.duration_us = self.index.duration_us.max(cursor.timestamp_us);
        Ok(())
    }

    /// Puts an audit event on the timeline.
    pub fn marker(&mut self, marker: &Marker) -> Result<(), VrecError> {
        // Serialising a struct of strings and numbers cannot fail.
        let json = serde_json::to_vec(marker).expect("a marker: serialising this plain struct (no maps with non-string keys, no custom impls) cannot fail");
        self.put(&chunk::encode(Kind::Marker, &json))?;
        self.index.markers.push(marker.clone());
        self.index.duration_us = self.index.duration_us.max(marker.timestamp_us);
        Ok(())
    }

    /// Writes the index and trailer and flushes the file to disk;
    /// `ended_us` is when the recording stopped (the last frame lasts until then).
    pub fn finish(mut self, ended_us: u64) -> Result<Finished, VrecError> {
        self.index.duration_us = self.index.duration_us.max(ended_us);
        write_index(
            &mut self.file,
            &self.path,
            self.pos,
            &self.index,
            &mut self.sha,
        )?;
        self.file.sync_all().map_err(io_error(&self.path))?;
        let size = self.file.metadata().map_err(io_error(&self.path))?.len();
        Ok(Finished {
            path: self.path,
            size,
            sha256: hex::encode(self.sha.finalize()),
            frames: self.index.frames,
            duration_us: self.index.duration_us,
        })
    }

    fn key_point(&mut self) -> Result<(), VrecError> {
        let Some(body) = self
            .tracker
            .key_point(self.cursor_position, self.cursor_shape)
        else {
            return Ok(());
        };
        let at = self.pos;
        self.put(&chunk::encode(Kind::KeyPoint, &body))?;
        self.seek_point(self.tracker.last_us(), self.tracker.frames(), at);
        // A power cut loses at most what came after the last key point.
        self.file.sync_data().map_err(io_error(&self.path))
    }

    fn seek_point(&mut self, timestamp_us: u64, frames: u64, offset: u64) {
        self.key = (frames, timestamp_us);
        self.index.seek.push(SeekPoint {
            timestamp_us,
            frames,
            offset,
        });
    }

    fn put(&mut self, bytes: &[u8]) -> Result<(), VrecError> {
        self.file.write_all(bytes).map_err(io_error(&self.path))?;
        self.sha.update(bytes);
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

/// Appends the index and the trailer at `pos`, hashing what it writes.
pub(crate) fn write_index(
    file: &mut File,
    path: &Path,
    pos: u64,
    index: &Index,
    sha: &mut Sha256,
) -> Result<(), VrecError> {
    // Serialising numbers and strings cannot fail; nor can compressing in memory.
    let json = serde_json::to_vec(index).expect("the index: serialising this plain struct (no maps with non-string keys, no custom impls) cannot fail");
    let body = zstd::bulk::compress(&json, 3).expect("zstd compresses any input at a valid level; only running out of memory fails, which aborts first");
    let index_chunk = chunk::encode(Kind::Index, &body);
    let end = chunk::encode(Kind::End, &pos.to_le_bytes());
    for bytes in [&index_chunk, &end] {
        file.write_all(bytes).map_err(io_error(path))?;
        sha.update(bytes);
    }
    Ok(())
}

/// A source or the file failed while recording.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(transparent)]
    /// The source failed.
    Source(#[from] crate::SourceError),
    #[error(transparent)]
    /// The file could not be written.
    Vrec(#[from] VrecError),
}

/// What [`record`] wrote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Recorded {
    /// Frames read from the source.
    pub frames_in: u64,
    /// Updates written (frames that differed from the one before).
    pub updates: u64,
    /// When the last frame's interval ends.
    pub ended_us: u64,
}

/// Records every frame of `source`, `fps` per second, through the same
/// codec path as a live session (one [`codec::Encoder`], updates written
/// unchanged); `progress` hears the number of frames read so far.
pub fn record(
    source: &mut dyn crate::Source,
    writer: &mut Writer,
    fps: f64,
    mut progress: impl FnMut(u64),
) -> Result<Recorded, RecordError> {
    let mut encoder = codec::Encoder::new();
    let mut done = Recorded {
        frames_in: 0,
        updates: 0,
        ended_us: 0,
    };
    let at = |n: u64| (n as f64 * 1_000_000.0 / fps).round() as u64;
    while let Some(frame) = source.next_frame()? {
        if let Some(update) = encoder.encode(&frame, at(done.frames_in), false) {
            writer.update(&update)?;
            done.updates += 1;
        }
        done.frames_in += 1;
        progress(done.frames_in);
    }
    done.ended_us = at(done.frames_in);
    Ok(done)
}
