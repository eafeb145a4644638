//! Reads recordings: a finished one through its index, a cut-off one by
//! scanning its chunks up to the last whole one. Seeks start from the
//! nearest key point, so finding a frame costs at most one key interval of
//! decoding whatever the recording's length.

use std::collections::{BTreeMap, HashSet};
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::chunk::{self, Bad, Chunk, Kind};
use super::keypoint::{self, Stored, TileSource};
use super::{io_error, Header, Marker, VrecError, FORMAT};
use crate::codec::{self, Decoder};
use crate::cursor::Cursor;
use crate::frame::Frame;

/// The most a recording's index may hold once decompressed (an hour's
/// index is a few MB).
const INDEX_LIMIT: usize = 1 << 30;

/// What the index at the end of a finished recording holds (and what a
/// scan rebuilds for a cut-off one).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Index {
    /// Screen updates (each a frame that differs from the one before).
    pub frames: u64,
    /// How long the recording lasts (the last frame shows until then).
    pub duration_us: u64,
    /// The last update's timestamp.
    pub last_update_us: u64,
    /// Cursor updates.
    pub cursor_updates: u64,
    /// Where decoding can start, in file order.
    pub seek: Vec<SeekPoint>,
    /// The audit markers, in order.
    pub markers: Vec<Marker>,
}

/// A place decoding can start: a key point, or a key update.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeekPoint {
    /// The screen's time once this chunk is read.
    pub timestamp_us: u64,
    /// Updates applied once this chunk is read.
    pub frames: u64,
    /// The chunk's file offset.
    pub offset: u64,
}

/// A reading begun at a key point ([`Recording::resume`]).
pub struct Resumed {
    /// The screen and tile cache as they were there.
    pub decoder: Decoder,
    /// The pointer's last position, and the last update that set its shape.
    pub cursor: Option<Cursor>,
    /// The pointer as it was, shape included.
    pub shape: Option<Cursor>,
    /// The timeline from the key point on.
    pub entries: Entries,
}

/// How a recording ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Ending {
    /// Finished: index and trailer are there and whole.
    Complete,
    /// Cut off (a crash, a full disk) or damaged: readable up to `valid_len`.
    Truncated {
        /// Bytes up to the end of the last whole chunk.
        valid_len: u64,
        /// Bytes in the file.
        file_len: u64,
        /// Why reading stopped there.
        reason: String,
    },
}

/// One chunk of the timeline, as [`Recording::entries`] yields them.
#[derive(Clone, Debug)]
pub enum Entry {
    /// A screen update, as encoded.
    Update {
        /// Where its chunk starts in the file.
        offset: u64,
        /// The encoded update.
        bytes: Vec<u8>,
    },
    /// The pointer moved or changed shape.
    Cursor(Cursor),
    /// An audit event's marker.
    Marker(Marker),
    /// A key point (a seek target).
    KeyPoint {
        /// Where its chunk starts in the file.
        offset: u64,
    },
}

/// Which frame to find.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Target {
    /// The `n`th update, from 0.
    Index(u64),
    /// The screen as it was at this time since the start.
    Time(u64),
}

/// A frame found by [`Recording::frame`].
#[derive(Clone, Debug)]
pub struct Located {
    /// The screen at that moment.
    pub frame: Frame,
    /// Its number, from 0.
    pub number: u64,
    /// Microseconds since the recording began.
    pub timestamp_us: u64,
}

/// An open recording.
#[derive(Debug)]
pub struct Recording {
    path: PathBuf,
    file: File,
    /// The file's header.
    pub header: Header,
    /// Its index (the one at the end, or rebuilt by scanning).
    pub index: Index,
    /// Whether it is finished or cut off, and where.
    pub ending: Ending,
    /// Where the first chunk after the header starts.
    first: u64,
    /// Where the timeline's chunks end (the index, or the cut).
    data_end: u64,
}

/// The result of reading every chunk from the start.
#[derive(Debug)]
pub struct Scan {
    /// What the chunks hold.
    pub index: Index,
    /// The end of the last whole timeline chunk.
    pub data_end: u64,
    /// Whether an index and trailer follow, whole.
    pub finished: bool,
    /// Why the scan stopped before the end of the file, if it did.
    pub stopped: Option<String>,
    /// Whether what stopped it looks like damage rather than a cut.
    pub damaged: bool,
    /// Bytes in the file.
    pub file_len: u64,
}

impl Recording {
    /// Opens `path`, using its index if it is finished and scanning it if not.
    pub fn open(path: &Path) -> Result<Self, VrecError> {
        let (mut file, header, first) = open_header(path)?;
        let file_len = file.metadata().map_err(io_error(path))?.len();
        let (index, data_end, ending) = match read_index(&mut file, first, file_len) {
            Some((index, at)) => (index, at, Ending::Complete),
            None => {
                let scan = scan_from(&mut file, path, first, file_len)?;
                let reason = scan
                    .stopped
                    .clone()
                    .unwrap_or_else(|| "no index: the recording was not finished".into());
                (
                    scan.index,
                    scan.data_end,
                    Ending::Truncated {
                        valid_len: scan.data_end,
                        file_len,
                        reason,
                    },
                )
            }
        };
        Ok(Self {
            path: path.to_owned(),
            file,
            header,
            index,
            ending,
            first,
            data_end,
        })
    }

    /// The file this was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The timeline's chunks from the start (or from a seek point's offset), in order.
    pub fn entries(&self, from: Option<u64>) -> Result<Entries, VrecError> {
        // A file of its own: a shared offset would move under `chunk_at`.
        let mut file = File::open(&self.path).map_err(io_error(&self.path))?;
        let at = from.unwrap_or(self.first);
        file.seek(SeekFrom::Start(at))
            .map_err(io_error(&self.path))?;
        Ok(Entries {
            reader: BufReader::with_capacity(1 << 20, file),
            path: self.path.clone(),
            at,
            end: self.data_end,
        })
    }

    /// Finds one frame, bit-exact, starting from the nearest seek point.
    pub fn frame(&self, target: Target) -> Result<Located, VrecError> {
        let no_frame = |what: String| VrecError::NoSuchFrame {
            path: self.path.display().to_string(),
            what,
        };
        let start = match target {
            Target::Index(n) if n >= self.index.frames => {
                return Err(no_frame(format!(
                    "{n}: the recording has {} frames",
                    self.index.frames
                )))
            }
            Target::Time(t) if t > self.index.duration_us => {
                return Err(no_frame(format!(
                    "at {t} µs: the recording's last frame is at {} µs",
                    self.index.duration_us
                )))
            }
            Target::Index(n) => self.index.seek.iter().rev().find(|p| p.frames <= n + 1),
            Target::Time(t) => self.index.seek.iter().rev().find(|p| p.timestamp_us <= t),
        }
        .copied();
        // Is the update numbered `number`, at `ts`, still at or before the target?
        let wanted = |number: u64, ts: u64| match target {
            Target::Index(n) => number <= n,
            Target::Time(t) => ts <= t || number == 0,
        };
        let mut entries = self.entries(start.map(|p| p.offset))?;
        let mut pending: Vec<(u64, Vec<u8>)> = Vec::new();
        let mut base = None;
        let mut number = 0u64;
        if let Some(point) = start {
            let first = entries
                .next()
                .ok_or_else(|| self.corrupt(point.offset, "seek point past the end".into()))??;
            match first {
                Entry::KeyPoint { offset } => base = Some(offset),
                Entry::Update { offset, bytes } => pending.push((offset, bytes)),
                _ => {
                    return Err(self.corrupt(
                        point.offset,
                        "seek point is not a key point or update".into(),
                    ))
                }
            }
            number = point.frames - pending.len() as u64;
        }
        for entry in entries {
            if let Entry::Update { offset, bytes } = entry? {
                let ts = codec::info(&bytes).map(|h| h.timestamp_us).unwrap_or(0);
                if !wanted(number + pending.len() as u64, ts) {
                    break;
                }
                pending.push((offset, bytes));
            }
        }
        let mut decoder = match base {
            Some(offset) => self.restore(offset, Some(&pending))?,
            None => Decoder::new(),
        };
        let mut timestamp_us = start.map(|p| p.timestamp_us).unwrap_or(0);
        for (offset, bytes) in &pending {
            decoder.decode(bytes).map_err(|source| VrecError::Codec {
                path: self.path.display().to_string(),
                what: format!("update at byte {offset}"),
                source,
            })?;
            timestamp_us = codec::info(bytes)
                .map(|h| h.timestamp_us)
                .unwrap_or(timestamp_us);
            number += 1;
        }
        let frame = decoder
            .frame()
            .cloned()
            .ok_or_else(|| no_frame(": the recording holds no frame".into()))?;
        Ok(Located {
            frame,
            number: number.saturating_sub(1),
            timestamp_us,
        })
    }

    /// Reading from the last key point at or before `t` (from the start if
    /// there is none): a long recording's later part without decoding what
    /// comes before. Every cached tile is restored, since what follows is
    /// not known in advance.
    pub fn resume(&self, t: u64) -> Result<Resumed, VrecError> {
        for point in self.index.seek.iter().rev().filter(|p| p.timestamp_us <= t) {
            // Key updates are seek points too, but carry no pointer state.
            if Kind::from_byte(self.chunk_at(point.offset)?.kind) != Some(Kind::KeyPoint) {
                continue;
            }
            let (cursor, shape) = self.cursor_at(point)?;
            return Ok(Resumed {
                decoder: self.restore(point.offset, None)?,
                cursor,
                shape,
                entries: self.entries(Some(point.offset))?,
            });
        }
        Ok(Resumed {
            decoder: Decoder::new(),
            cursor: None,
            shape: None,
            entries: self.entries(None)?,
        })
    }

    /// A decoder in the state of the key point at `offset`, with the cache
    /// slots that `following` reads before overwriting them (all of them
    /// without `following`).
    fn restore(
        &self,
        offset: u64,
        following: Option<&[(u64, Vec<u8>)]>,
    ) -> Result<Decoder, VrecError> {
        let chunk = self.chunk_at(offset)?;
        let kp = keypoint::parse(&chunk.body).map_err(|what| self.corrupt(offset, what))?;
        let mut needed: HashSet<usize> = HashSet::new();
        let mut written: HashSet<usize> = HashSet::new();
        if following.is_none() {
            needed.extend(kp.slots.iter().map(|(slot, _)| *slot));
        }
        for (at, bytes) in following.unwrap_or_default() {
            let uses = codec::slot_uses(bytes).map_err(|source| VrecError::Codec {
                path: self.path.display().to_string(),
                what: format!("update at byte {at}"),
                source,
            })?;
            for slot_use in uses {
                match slot_use {
                    codec::SlotUse::Write(slot) => {
                        written.insert(slot);
                    }
                    codec::SlotUse::Read(slot) if !written.contains(&slot) => {
                        needed.insert(slot);
                    }
                    codec::SlotUse::Read(_) => {}
                }
            }
        }
        // Every chunk the restore reads, decompressed once.
        let mut wanted: BTreeMap<u64, Option<Vec<u8>>> = BTreeMap::new();
        let stored = kp
            .tiles
            .iter()
            .filter_map(|t| match t {
                TileSource::Stored(s) => Some(*s),
                TileSource::Inline(_) => None,
            })
            .chain(
                kp.slots
                    .iter()
                    .filter(|(slot, _)| needed.contains(slot))
                    .map(|(_, s)| *s),
            );
        for s in stored {
            wanted.insert(s.chunk, None);
        }
        for (at, body) in wanted.iter_mut() {
            let chunk = self.chunk_at(*at)?;
            if Kind::from_byte(chunk.kind) != Some(Kind::Update) {
                return Err(self.corrupt(
                    *at,
                    "a key point refers to a chunk that is not an update".into(),
                ));
            }
            *body = Some(codec::body(&chunk.body).map_err(|source| VrecError::Codec {
                path: self.path.display().to_string(),
                what: format!("update at byte {at}"),
                source,
            })?);
        }
        let pixels = |s: &Stored| -> Result<&[u8], VrecError> {
            wanted
                .get(&s.chunk)
                .and_then(|b| b.as_deref())
                .and_then(|b| b.get(s.offset as usize..(s.offset + s.len) as usize))
                .ok_or_else(|| {
                    self.corrupt(offset, "a key point refers past an update's pixels".into())
                })
        };
        let mut frame = Frame::black(kp.width.into(), kp.height.into());
        for (i, tile) in kp.tiles.iter().enumerate() {
            let (_, _, w, h) = codec::tile_rect(frame.width, frame.height, i);
            let bytes = match tile {
                TileSource::Stored(s) => pixels(s)?,
                TileSource::Inline(b) => b.as_slice(),
            };
            if bytes.len() != w * h * 4 {
                return Err(self.corrupt(offset, format!("key point tile {i} has the wrong size")));
            }
            codec::put_tile(&mut frame, i, bytes);
        }
        let mut slots = Vec::new();
        for (slot, s) in kp.slots.iter().filter(|(slot, _)| needed.contains(slot)) {
            slots.push((*slot, pixels(s)?.to_vec()));
        }
        Ok(Decoder::restore(frame, slots))
    }

    /// The cursor state a seek point's key point names, if any.
    pub fn cursor_at(
        &self,
        point: &SeekPoint,
    ) -> Result<(Option<Cursor>, Option<Cursor>), VrecError> {
        let chunk = self.chunk_at(point.offset)?;
        if Kind::from_byte(chunk.kind) != Some(Kind::KeyPoint) {
            return Ok((None, None));
        }
        let kp = keypoint::parse(&chunk.body).map_err(|what| self.corrupt(point.offset, what))?;
        let read = |at: Option<u64>| -> Result<Option<Cursor>, VrecError> {
            let Some(at) = at else { return Ok(None) };
            let chunk = self.chunk_at(at)?;
            Cursor::decode(&chunk.body)
                .map(Some)
                .map_err(|source| VrecError::Codec {
                    path: self.path.display().to_string(),
                    what: format!("cursor at byte {at}"),
                    source,
                })
        };
        Ok((read(kp.cursor_position)?, read(kp.cursor_shape)?))
    }

    fn chunk_at(&self, offset: u64) -> Result<Chunk, VrecError> {
        if offset < self.first || offset >= self.data_end {
            return Err(self.corrupt(offset, "reference outside the recording".into()));
        }
        let mut file = &self.file;
        file.seek(SeekFrom::Start(offset))
            .map_err(io_error(&self.path))?;
        chunk::read(&mut BufReader::new(file)).map_err(|bad| self.corrupt(offset, describe(bad)))
    }

    fn corrupt(&self, offset: u64, what: String) -> VrecError {
        VrecError::Corrupt {
            path: self.path.display().to_string(),
            offset,
            what,
        }
    }
}

/// The timeline's chunks in file order.
#[derive(Debug)]
pub struct Entries {
    reader: BufReader<File>,
    path: PathBuf,
    at: u64,
    end: u64,
}

impl Iterator for Entries {
    type Item = Result<Entry, VrecError>;

    fn next(&mut self) -> Option<Self::Item> {
        while self.at < self.end {
            let offset = self.at;
            let chunk = match chunk::read(&mut self.reader) {
                Ok(c) => c,
                Err(bad) => {
                    self.at = self.end;
                    return Some(Err(VrecError::Corrupt {
                        path: self.path.display().to_string(),
                        offset,
                        what: describe(bad),
                    }));
                }
            };
            self.at += chunk.size();
            let path = || self.path.display().to_string();
            let entry = match Kind::from_byte(chunk.kind) {
                Some(Kind::Update) => Entry::Update {
                    offset,
                    bytes: chunk.body,
                },
                Some(Kind::Cursor) => match Cursor::decode(&chunk.body) {
                    Ok(c) => Entry::Cursor(c),
                    Err(source) => {
                        return Some(Err(VrecError::Codec {
                            path: path(),
                            what: format!("cursor at byte {offset}"),
                            source,
                        }))
                    }
                },
                Some(Kind::Marker) => match serde_json::from_slice(&chunk.body) {
                    Ok(m) => Entry::Marker(m),
                    Err(e) => {
                        return Some(Err(VrecError::Corrupt {
                            path: path(),
                            offset,
                            what: format!("marker: {e}"),
                        }))
                    }
                },
                Some(Kind::KeyPoint) => Entry::KeyPoint { offset },
                // Unknown kinds are skipped: later versions may add some.
                _ => continue,
            };
            return Some(Ok(entry));
        }
        None
    }
}

/// Opens `path`, checks the magic and reads the header; returns where the timeline starts.
fn open_header(path: &Path) -> Result<(File, Header, u64), VrecError> {
    let file = File::open(path).map_err(io_error(path))?;
    let mut r = BufReader::new(&file);
    let mut magic = [0u8; chunk::MAGIC.len()];
    if r.read_exact(&mut magic).is_err() || magic != chunk::MAGIC {
        return Err(VrecError::NotARecording(path.display().to_string()));
    }
    let corrupt = |what: String| VrecError::Corrupt {
        path: path.display().to_string(),
        offset: chunk::MAGIC.len() as u64,
        what,
    };
    let head = chunk::read(&mut r).map_err(|bad| corrupt(format!("header: {}", describe(bad))))?;
    if Kind::from_byte(head.kind) != Some(Kind::Header) {
        return Err(corrupt("the first chunk is not a header".into()));
    }
    let header: Header =
        serde_json::from_slice(&head.body).map_err(|e| corrupt(format!("header: {e}")))?;
    if header.format != FORMAT {
        return Err(VrecError::Format {
            path: path.display().to_string(),
            found: header.format,
        });
    }
    if header.width == 0 || header.height == 0 || header.width > 16384 || header.height > 16384 {
        return Err(corrupt(format!(
            "header: screen size {}x{}",
            header.width, header.height
        )));
    }
    let first = chunk::MAGIC.len() as u64 + head.size();
    Ok((file, header, first))
}

/// The index of a finished file and its offset, if trailer and index are whole.
fn read_index(file: &mut File, first: u64, file_len: u64) -> Option<(Index, u64)> {
    let end_at = file_len.checked_sub(chunk::END_CHUNK as u64)?;
    file.seek(SeekFrom::Start(end_at)).ok()?;
    let end = chunk::read(&mut BufReader::new(&*file)).ok()?;
    if Kind::from_byte(end.kind) != Some(Kind::End) || end.body.len() != 8 {
        return None;
    }
    let mut at = [0u8; 8];
    at.copy_from_slice(&end.body);
    let at = u64::from_le_bytes(at);
    if at < first || at >= end_at {
        return None;
    }
    file.seek(SeekFrom::Start(at)).ok()?;
    let index = chunk::read(&mut BufReader::new(&*file)).ok()?;
    if Kind::from_byte(index.kind) != Some(Kind::Index) || at + index.size() != end_at {
        return None;
    }
    let json = crate::codec::decompress(&index.body, INDEX_LIMIT).ok()?;
    Some((serde_json::from_slice(&json).ok()?, at))
}

/// Reads every chunk of `path` from the start, rebuilding the index.
pub fn scan(path: &Path) -> Result<(Header, Scan), VrecError> {
    let (mut file, header, first) = open_header(path)?;
    let file_len = file.metadata().map_err(io_error(path))?.len();
    Ok((header, scan_from(&mut file, path, first, file_len)?))
}

fn scan_from(file: &mut File, path: &Path, first: u64, file_len: u64) -> Result<Scan, VrecError> {
    file.seek(SeekFrom::Start(first)).map_err(io_error(path))?;
    let mut r = BufReader::with_capacity(1 << 20, &*file);
    let mut index = Index::default();
    let mut at = first;
    let mut finished = false;
    let mut damaged = true;
    let stopped = loop {
        let chunk = match chunk::read(&mut r) {
            Ok(c) => c,
            Err(Bad::Eof { at_boundary: true }) => break None,
            Err(Bad::Io(e)) => return Err(io_error(path)(e)),
            Err(bad) => {
                // A kill leaves a partial chunk; a power cut can leave
                // blocks of zeros. Anything else is damage.
                // A power cut can leave the rest of the last chunk, and
                // all after it, as zeros: a cut, not damage.
                let zeros_after = match bad {
                    Bad::Checksum { len } => Some(at + (chunk::HEAD as u64) + u64::from(len)),
                    Bad::Length(_) => Some(at),
                    _ => None,
                };
                damaged = match zeros_after {
                    Some(from) => !zeros_from(file, from.min(file_len)).map_err(io_error(path))?,
                    None => false,
                };
                break Some(format!("at byte {at}: {}", describe(bad)));
            }
        };
        let offset = at;
        match Kind::from_byte(chunk.kind) {
            Some(Kind::Update) => match codec::info(&chunk.body) {
                Ok(head) => {
                    index.frames += 1;
                    index.last_update_us = head.timestamp_us;
                    index.duration_us = index.duration_us.max(head.timestamp_us);
                    if head.key {
                        index.seek.push(SeekPoint {
                            timestamp_us: head.timestamp_us,
                            frames: index.frames,
                            offset,
                        });
                    }
                }
                Err(e) => break Some(format!("at byte {offset}: update: {e}")),
            },
            Some(Kind::KeyPoint) => index.seek.push(SeekPoint {
                timestamp_us: index.last_update_us,
                frames: index.frames,
                offset,
            }),
            Some(Kind::Marker) => match serde_json::from_slice::<Marker>(&chunk.body) {
                Ok(m) => {
                    index.duration_us = index.duration_us.max(m.timestamp_us);
                    index.markers.push(m);
                }
                Err(e) => break Some(format!("at byte {offset}: marker: {e}")),
            },
            Some(Kind::Cursor) => {
                index.cursor_updates += 1;
                if let Ok(c) = Cursor::decode(&chunk.body) {
                    index.duration_us = index.duration_us.max(c.timestamp_us);
                }
            }
            Some(Kind::Index) => {
                // The timeline ends here; a whole trailer must follow and end the file.
                let end = chunk::read(&mut r);
                finished = matches!(&end, Ok(c) if Kind::from_byte(c.kind) == Some(Kind::End))
                    && offset + chunk.size() + chunk::END_CHUNK as u64 == file_len;
                break (!finished).then(|| {
                    format!("at byte {offset}: the index is not followed by a whole trailer")
                });
            }
            Some(Kind::Header) | Some(Kind::End) => {
                break Some(format!(
                    "at byte {offset}: a {:?} chunk inside the timeline",
                    chunk.kind
                ))
            }
            None => {}
        }
        at += chunk.size();
    };
    Ok(Scan {
        index,
        data_end: at,
        finished,
        damaged: damaged && stopped.is_some(),
        stopped,
        file_len,
    })
}

/// Whether every byte from `at` to the end of the file is zero.
fn zeros_from(file: &File, at: u64) -> std::io::Result<bool> {
    let mut file = file;
    file.seek(SeekFrom::Start(at))?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(true);
        }
        if buf[..n].iter().any(|&b| b != 0) {
            return Ok(false);
        }
    }
}

/// A line that says what is wrong with a chunk.
pub(crate) fn describe(bad: Bad) -> String {
    match bad {
        Bad::Eof { .. } => "the file ends inside a chunk".into(),
        Bad::Length(n) => format!("a chunk claims {n} bytes, more than any chunk may hold"),
        Bad::Checksum { .. } => "a chunk's checksum does not match its contents".into(),
        Bad::Io(e) => format!("read failed: {e}"),
    }
}
