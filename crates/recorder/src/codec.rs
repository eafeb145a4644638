//! The lossless screen codec: a frame is cut into 64×64 tiles; an update
//! carries only the tiles that changed since the previous frame, each
//! either as pixels or as a reference to a tile sent before (a cache both
//! ends keep in step, as RDP's bitmap cache does), all compressed together
//! with zstd.
//!
//! An update, version 1 (little-endian):
//!
//! ```text
//! u8  version (1)
//! u8  flags            bit 0: key (the decoder starts from nothing: black frame, empty cache)
//! u64 timestamp_us
//! u16 width, u16 height
//! zstd frame of:
//!     u32 op count
//!     op*: u32 tile index (row-major), u8 kind, u16 argument:
//!          kind 0 pixels (argument: the cache slot it is stored in),
//!          kind 1 cached (argument: the slot to copy),
//!          kind 2 moved  (argument: a vector of the table below; the tile
//!          is the previous frame's pixels at (x - dx, y - dy), as when
//!          text scrolls or a window is dragged)
//!          kind 3 parts  (argument: a record of the parts table below; the
//!          tile's 16×16 parts each come from a move, from the same place
//!          in a cached tile, or from pixels: a dragged window's border)
//!     u16 vector count, then per vector: i16 dx, i16 dy
//!     u16 record count, then per record: 16 × (u8 code, u16 argument):
//!          code 0 pixels, 1 moved (argument: vector), 2 cached (argument: slot)
//!     the pixels of every `pixels` op and every pixels part, in op order,
//!     row by row (BGRA)
//! ```
//!
//! A `pixels` op also stores the tile in its cache slot; a `cached` op
//! copies the slot's tile; a `moved` op copies from the previous frame
//! (as it was before this update). Slots and vectors are chosen by the
//! encoder, so the decoder never decides anything.

use std::collections::HashMap;

use crate::frame::Frame;
use crate::parts;

/// Tile edge in pixels.
pub const TILE: usize = 64;
/// Tiles both ends remember (64×64 BGRA is 16 KiB: 32 MiB each).
pub const CACHE_SLOTS: usize = 2048;
/// The largest screen an update may describe, in pixels (two 8K screens side
/// by side fit): what a peer or a file can make a decoder allocate is
/// bounded by it (256 MiB for the picture).
pub const MAX_PIXELS: usize = 8192 * 8192;
/// zstd level of the update bodies. Measured on the corpus: 3 → 8 takes
/// 15 % off (text above all: terminal 4.98 → 3.76 MB/min) for about 0.2 ms
/// more per frame; 12 saves 2 % more but costs 0.7 ms.
const LEVEL: i32 = 8;
/// zstd level of key updates: rare and large (a whole screen), so worth
/// more effort; 9 costs ~0.2 s for a 1080p desktop and saves ~18% over 3
/// (19 would save 36% but takes over a second, too long for a first screen).
const KEY_LEVEL: i32 = 9;
const VERSION: u8 = 1;
const HEADER: usize = 1 + 1 + 8 + 2 + 2;

/// An update could not be decoded.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// Fewer bytes than a header, or a body shorter than its ops say.
    #[error("truncated update: {0}")]
    Truncated(&'static str),
    /// A version this build does not read.
    #[error("update version {0} is not supported")]
    Version(u8),
    /// The compressed body is damaged.
    #[error("update body is not valid zstd: {0}")]
    Compression(std::io::Error),
    /// An op names a tile or slot outside the frame or cache, or a slot never filled.
    #[error("invalid update: {0}")]
    Invalid(String),
    /// A delta update for another screen size than the decoder's.
    #[error("delta update for {0}x{1} while the screen is {2}x{3}")]
    SizeChange(u16, u16, u16, u16),
}

/// The tile grid of a screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Grid {
    width: usize,
    height: usize,
    cols: usize,
    rows: usize,
}

impl Grid {
    fn new(width: usize, height: usize) -> Self {
        Self {
            width,
            height,
            cols: width.div_ceil(TILE),
            rows: height.div_ceil(TILE),
        }
    }

    fn tiles(&self) -> usize {
        self.cols * self.rows
    }

    /// x, y, w, h of tile `i`.
    fn rect(&self, i: usize) -> (usize, usize, usize, usize) {
        let (x, y) = ((i % self.cols) * TILE, (i / self.cols) * TILE);
        (x, y, TILE.min(self.width - x), TILE.min(self.height - y))
    }

    fn tile_bytes(&self, frame: &[u8], i: usize, out: &mut Vec<u8>) {
        let (x, y, w, h) = self.rect(i);
        out.clear();
        for row in y..y + h {
            let start = (row * self.width + x) * 4;
            out.extend_from_slice(&frame[start..start + w * 4]);
        }
    }

    /// Which tiles differ between `a` and `b`. Read row by row, in memory
    /// order (faster than tile by tile), and a tile found changed is not
    /// compared further.
    fn changed_tiles(&self, a: &[u8], b: &[u8]) -> Vec<bool> {
        let mut changed = vec![false; self.tiles()];
        let stride = self.width * 4;
        for (y, (row_a, row_b)) in a
            .chunks_exact(stride)
            .zip(b.chunks_exact(stride))
            .enumerate()
        {
            if row_a == row_b {
                continue;
            }
            let first = (y / TILE) * self.cols;
            for (c, flag) in changed[first..first + self.cols].iter_mut().enumerate() {
                let (x, end) = (c * TILE * 4, ((c + 1) * TILE * 4).min(stride));
                if !*flag && row_a[x..end] != row_b[x..end] {
                    *flag = true;
                }
            }
        }
        changed
    }

    /// Where tile `i` comes from when moved by (dx, dy): its source's
    /// top-left corner, if the source lies inside the frame.
    fn source(&self, i: usize, (dx, dy): (i16, i16)) -> Option<(usize, usize)> {
        let (x, y, w, h) = self.rect(i);
        let sx = usize::try_from(x as isize - dx as isize).ok()?;
        let sy = usize::try_from(y as isize - dy as isize).ok()?;
        (sx + w <= self.width && sy + h <= self.height).then_some((sx, sy))
    }

    /// Whether tile `i` of `cur` equals `prev` at (x - dx, y - dy).
    fn moved_equal(&self, cur: &[u8], prev: &[u8], i: usize, v: (i16, i16)) -> bool {
        let (x, y, w, h) = self.rect(i);
        let Some((sx, sy)) = self.source(i, v) else {
            return false;
        };
        (0..h).all(|r| {
            let a = ((y + r) * self.width + x) * 4;
            let b = ((sy + r) * self.width + sx) * 4;
            cur[a..a + w * 4] == prev[b..b + w * 4]
        })
    }

    /// Copies tile `i` from `prev` at (x - dx, y - dy) into `frame`.
    fn copy_moved(&self, frame: &mut [u8], prev: &[u8], i: usize, v: (i16, i16)) -> bool {
        let (x, y, w, h) = self.rect(i);
        let Some((sx, sy)) = self.source(i, v) else {
            return false;
        };
        for r in 0..h {
            let a = ((y + r) * self.width + x) * 4;
            let b = ((sy + r) * self.width + sx) * 4;
            frame[a..a + w * 4].copy_from_slice(&prev[b..b + w * 4]);
        }
        true
    }

    fn put_tile(&self, frame: &mut [u8], i: usize, bytes: &[u8]) {
        let (x, y, w, h) = self.rect(i);
        for (r, row) in (y..y + h).enumerate() {
            let start = (row * self.width + x) * 4;
            frame[start..start + w * 4].copy_from_slice(&bytes[r * w * 4..(r + 1) * w * 4]);
        }
    }
}

/// Turns frames into updates.
pub struct Encoder {
    grid: Option<Grid>,
    previous: Vec<u8>,
    /// Slot contents, and where each content is (by hash; bytes are compared on a hit).
    slots: Vec<Option<(u64, Vec<u8>)>>,
    by_hash: HashMap<u64, u16>,
    next_slot: usize,
    /// Moves that explained tiles last time: windows keep moving the same way.
    last_vectors: Vec<(i16, i16)>,
    /// Per tile position, the slots last shown there (newest first; NONE when empty).
    history: Vec<[u16; HISTORY]>,
}

/// Slots remembered per tile position, for tiles made of parts.
const HISTORY: usize = 4;
const NONE: u16 = u16::MAX;

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("grid", &self.grid)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    /// An encoder whose first update will be a key.
    pub fn new() -> Self {
        Self {
            grid: None,
            previous: Vec::new(),
            slots: vec![None; CACHE_SLOTS],
            by_hash: HashMap::new(),
            next_slot: 0,
            last_vectors: Vec::new(),
            history: Vec::new(),
        }
    }

    /// The update for `frame` at `timestamp_us`, or `None` if nothing
    /// changed. `key` forces a self-contained update (also forced by a new
    /// screen size and by the first frame).
    pub fn encode(&mut self, frame: &Frame, timestamp_us: u64, key: bool) -> Option<Vec<u8>> {
        let grid = Grid::new(frame.width as usize, frame.height as usize);
        let key = key || self.grid != Some(grid);
        if key {
            self.grid = Some(grid);
            self.slots.iter_mut().for_each(|s| *s = None);
            self.by_hash.clear();
            self.next_slot = 0;
            self.last_vectors.clear();
            self.history = vec![[NONE; HISTORY]; grid.tiles()];
        }
        let previous = std::mem::take(&mut self.previous);
        let (cur, prev) = (&frame.pixels, &previous);
        let changed: Vec<bool> = if key {
            vec![true; grid.tiles()]
        } else {
            grid.changed_tiles(cur, prev)
        };
        let shifts: Vec<Option<i16>> = if key {
            Vec::new()
        } else {
            (0..grid.cols)
                .map(|c| column_shift(&grid, c, &changed, cur, prev))
                .collect()
        };
        let mut out = Ops::default();
        // Pass 1: moves already known, and tiles already cached. Their ops
        // come first, so a cached op reads its slot before pass 2 reuses it.
        let mut unexplained: Vec<(usize, Vec<u8>, u64)> = Vec::new();
        for (i, _) in changed.iter().enumerate().filter(|(_, c)| **c) {
            let column = shifts
                .get(i % grid.cols)
                .copied()
                .flatten()
                .map(|dy| (0, dy));
            let tried = column.into_iter().chain(self.last_vectors.iter().copied());
            if let Some(v) = tried
                .clone()
                .find(|&v| !key && grid.moved_equal(cur, prev, i, v))
            {
                out.moved(i, v);
                continue;
            }
            let mut tile = Vec::new();
            grid.tile_bytes(cur, i, &mut tile);
            let hash = xxhash_rust::xxh3::xxh3_64(&tile) ^ (tile.len() as u64).rotate_left(32);
            match self.cached(hash, &tile) {
                Some(slot) => {
                    out.op(i, OpKind::Cached, slot);
                    self.shown(i, slot);
                }
                None => unexplained.push((i, tile, hash)),
            }
        }
        // Pass 2: look for where the rest moved from, if there is enough of it.
        let found = if !key && unexplained.len() >= MOTION_MIN_TILES {
            let rects: Vec<_> = unexplained.iter().map(|(i, _, _)| grid.rect(*i)).collect();
            crate::motion::find_vectors(grid.width, grid.height, cur, prev, &rects)
        } else {
            Vec::new()
        };
        for (i, tile, hash) in unexplained {
            if let Some(&v) = found.iter().find(|&&v| grid.moved_equal(cur, prev, i, v)) {
                out.moved(i, v);
            } else if let Some(slot) = self.cached(hash, &tile) {
                out.op(i, OpKind::Cached, slot);
                self.shown(i, slot);
            } else if let Some(parts) = (!key)
                .then(|| self.parts(&grid, cur, prev, i, &found, &mut out))
                .flatten()
            {
                let record = out.records.len() / parts::RECORD;
                parts::encode(&parts, &mut out.records);
                out.op(i, OpKind::Parts, record as u16);
                let (_, _, w, _) = grid.rect(i);
                for (p, from) in parts.iter().enumerate() {
                    let (px, py, pw, ph) = parts::rect(w, grid.rect(i).3, p);
                    if *from == parts::From::Pixels && pw > 0 && ph > 0 {
                        for r in py..py + ph {
                            out.pixels
                                .extend_from_slice(&tile[(r * w + px) * 4..(r * w + px + pw) * 4]);
                        }
                    }
                }
            } else {
                let slot = self.store(hash, &tile);
                out.op(i, OpKind::Pixels, slot);
                out.pixels.extend_from_slice(&tile);
                self.shown(i, slot);
            }
        }
        self.last_vectors = out.vectors.iter().copied().filter(|v| v.0 != 0).collect();
        self.previous = previous;
        if key || self.previous.len() != frame.pixels.len() {
            self.previous.clear();
            self.previous.extend_from_slice(&frame.pixels);
        } else {
            // Only the tiles that changed: a still screen costs one
            // comparison, not a comparison and an 8 MB copy.
            for (i, _) in changed.iter().enumerate().filter(|(_, c)| **c) {
                grid.copy_moved(&mut self.previous, cur, i, (0, 0));
            }
        }
        if out.count == 0 && !key {
            return None;
        }
        let body = out.body();
        let mut update = Vec::with_capacity(HEADER + body.len() / 4);
        update.push(VERSION);
        update.push(u8::from(key));
        update.extend_from_slice(&timestamp_us.to_le_bytes());
        update.extend_from_slice(&(frame.width as u16).to_le_bytes());
        update.extend_from_slice(&(frame.height as u16).to_le_bytes());
        // Compressing bytes in memory cannot fail.
        let level = if key { KEY_LEVEL } else { LEVEL };
        let compressed = zstd::bulk::compress(&body, level).expect("zstd compresses any input at a valid level; only running out of memory fails, which aborts first");
        update.extend_from_slice(&compressed);
        Some(update)
    }

    /// Remembers that tile position `i` now shows the tile in `slot`.
    fn shown(&mut self, i: usize, slot: u16) {
        if let Some(h) = self.history.get_mut(i) {
            if h[0] != slot {
                h.rotate_right(1);
                h[0] = slot;
            }
        }
    }

    /// Tile `i` as parts, if a move explains some of it and moves and the
    /// tiles once shown here explain at least a quarter of it.
    fn parts(
        &self,
        grid: &Grid,
        cur: &[u8],
        prev: &[u8],
        i: usize,
        found: &[(i16, i16)],
        out: &mut Ops,
    ) -> Option<[parts::From; parts::PARTS]> {
        let (x, y, w, h) = grid.rect(i);
        let vectors: Vec<(i16, i16)> = found
            .iter()
            .chain(&self.last_vectors)
            .chain(&out.vectors)
            .copied()
            .filter(|&v| v != (0, 0))
            .collect();
        let slots: Vec<(u16, &[u8])> = self
            .history
            .get(i)?
            .iter()
            .filter(|&&s| s != NONE)
            .filter_map(|&s| {
                let (_, bytes) = self.slots[usize::from(s)].as_ref()?;
                (bytes.len() == w * h * 4).then_some((s, bytes.as_slice()))
            })
            .collect();
        if vectors.is_empty() && slots.is_empty() {
            return None;
        }
        let mut result = [parts::From::Pixels; parts::PARTS];
        let (mut explained, mut total) = (0, 0);
        for (p, from) in result.iter_mut().enumerate() {
            let (px, py, pw, ph) = parts::rect(w, h, p);
            if pw == 0 || ph == 0 {
                continue;
            }
            total += 1;
            let here = |r: usize| &cur[((y + py + r) * grid.width + x + px) * 4..][..pw * 4];
            let moved = vectors.iter().copied().find(|&(dx, dy)| {
                let (sx, sy) = (
                    (x + px) as isize - dx as isize,
                    (y + py) as isize - dy as isize,
                );
                sx >= 0
                    && sy >= 0
                    && sx as usize + pw <= grid.width
                    && sy as usize + ph <= grid.height
                    && (0..ph).all(|r| {
                        here(r)
                            == &prev[((sy as usize + r) * grid.width + sx as usize) * 4..][..pw * 4]
                    })
            });
            if let Some(v) = moved {
                *from = parts::From::Moved(out.vector(v));
                explained += 1;
                continue;
            }
            if let Some(&(slot, _)) = slots.iter().find(|(_, bytes)| {
                (0..ph).all(|r| here(r) == &bytes[((py + r) * w + px) * 4..][..pw * 4])
            }) {
                *from = parts::From::Slot(slot);
                explained += 1;
            }
        }
        // Only where something moved: a tile made of parts enters no cache
        // slot, so a tile that merely changes back and forth (a blinking
        // caret) is cheaper sent whole once and then referenced.
        let moved = result.iter().any(|p| matches!(p, parts::From::Moved(_)));
        (moved && explained * 4 >= total).then_some(result)
    }

    /// The slot holding exactly `tile`, if any.
    fn cached(&self, hash: u64, tile: &[u8]) -> Option<u16> {
        self.by_hash.get(&hash).copied().filter(|&slot| {
            self.slots[slot as usize]
                .as_ref()
                .is_some_and(|(_, bytes)| bytes == tile)
        })
    }

    /// Stores `tile` in the next slot (round-robin), forgetting what was there.
    fn store(&mut self, hash: u64, tile: &[u8]) -> u16 {
        let slot = self.next_slot as u16;
        self.next_slot = (self.next_slot + 1) % CACHE_SLOTS;
        if let Some((old, _)) = self.slots[slot as usize].take() {
            if self.by_hash.get(&old) == Some(&slot) {
                self.by_hash.remove(&old);
            }
        }
        self.by_hash.insert(hash, slot);
        self.slots[slot as usize] = Some((hash, tile.to_vec()));
        slot
    }
}

/// Changed tiles nothing cheaper explains before a motion search is worth its cost.
const MOTION_MIN_TILES: usize = 8;

/// An update's ops, vector table and pixels as they are built.
#[derive(Default)]
struct Ops {
    ops: Vec<u8>,
    count: u32,
    vectors: Vec<(i16, i16)>,
    /// Parts records, [`parts::RECORD`] bytes each.
    records: Vec<u8>,
    pixels: Vec<u8>,
}

impl Ops {
    fn op(&mut self, tile: usize, kind: OpKind, argument: u16) {
        self.ops.extend_from_slice(&(tile as u32).to_le_bytes());
        self.ops.push(kind as u8);
        self.ops.extend_from_slice(&argument.to_le_bytes());
        self.count += 1;
    }

    fn moved(&mut self, tile: usize, v: (i16, i16)) {
        let n = self.vector(v);
        self.op(tile, OpKind::Moved, n);
    }

    /// The number of vector `v` in this update's table.
    fn vector(&mut self, v: (i16, i16)) -> u16 {
        let n = match self.vectors.iter().position(|&w| w == v) {
            Some(n) => n,
            None => {
                self.vectors.push(v);
                self.vectors.len() - 1
            }
        };
        n as u16
    }

    fn body(&self) -> Vec<u8> {
        let mut body =
            Vec::with_capacity(6 + self.ops.len() + self.vectors.len() * 4 + self.pixels.len());
        body.extend_from_slice(&self.count.to_le_bytes());
        body.extend_from_slice(&self.ops);
        body.extend_from_slice(&(self.vectors.len() as u16).to_le_bytes());
        for (dx, dy) in &self.vectors {
            body.extend_from_slice(&dx.to_le_bytes());
            body.extend_from_slice(&dy.to_le_bytes());
        }
        body.extend_from_slice(&((self.records.len() / parts::RECORD) as u16).to_le_bytes());
        body.extend_from_slice(&self.records);
        body.extend_from_slice(&self.pixels);
        body
    }
}

/// The vertical shift that best explains the changed tiles of tile column
/// `c` (text scrolling in a window), if one is clear: rows of the column's
/// strip that changed are looked up, by hash, among the previous frame's
/// rows of the same strip; the most common offset wins if enough rows agree.
fn column_shift(grid: &Grid, c: usize, changed: &[bool], cur: &[u8], prev: &[u8]) -> Option<i16> {
    const MIN_VOTES: usize = 16;
    if (0..grid.rows)
        .filter(|r| changed[r * grid.cols + c])
        .count()
        < 2
    {
        return None;
    }
    let x = c * TILE;
    let w = TILE.min(grid.width - x);
    let row_hash = |frame: &[u8], y: usize| {
        let start = (y * grid.width + x) * 4;
        xxhash_rust::xxh3::xxh3_64(&frame[start..start + w * 4])
    };
    // Previous rows by content; a content seen twice (blank lines) says nothing.
    let prev_rows: Vec<u64> = (0..grid.height).map(|y| row_hash(prev, y)).collect();
    let mut where_prev: HashMap<u64, Option<usize>> = HashMap::new();
    for (y, &h) in prev_rows.iter().enumerate() {
        where_prev
            .entry(h)
            .and_modify(|e| *e = None)
            .or_insert(Some(y));
    }
    let mut votes: HashMap<isize, usize> = HashMap::new();
    for (y, &before) in prev_rows.iter().enumerate() {
        if !changed[(y / TILE) * grid.cols + c] {
            continue;
        }
        let h = row_hash(cur, y);
        if h == before {
            continue;
        }
        if let Some(Some(p)) = where_prev.get(&h) {
            *votes.entry(y as isize - *p as isize).or_default() += 1;
        }
    }
    votes
        .into_iter()
        .filter(|&(dy, n)| dy != 0 && n >= MIN_VOTES)
        .max_by_key(|&(dy, n)| (n, -dy.abs()))
        .and_then(|(dy, _)| i16::try_from(dy).ok())
}

/// The header of an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UpdateInfo {
    /// A key update: it repaints the whole screen and reads no cache slot.
    pub key: bool,
    /// Microseconds since the stream began.
    pub timestamp_us: u64,
    /// Screen width in pixels.
    pub width: u16,
    /// Screen height in pixels.
    pub height: u16,
}

/// Reads an update's header without decoding it.
pub fn info(update: &[u8]) -> Result<UpdateInfo, CodecError> {
    if update.len() < HEADER {
        return Err(CodecError::Truncated("shorter than a header"));
    }
    if update[0] != VERSION {
        return Err(CodecError::Version(update[0]));
    }
    let u16_at = |i: usize| u16::from_le_bytes([update[i], update[i + 1]]);
    let mut ts = [0u8; 8];
    ts.copy_from_slice(&update[2..10]);
    let (width, height) = (u16_at(10), u16_at(12));
    if width == 0 || height == 0 || usize::from(width) * usize::from(height) > MAX_PIXELS {
        return Err(CodecError::Invalid(format!(
            "a {width}x{height} screen is empty or larger than {MAX_PIXELS} pixels"
        )));
    }
    Ok(UpdateInfo {
        key: update[1] & 1 == 1,
        timestamp_us: u64::from_le_bytes(ts),
        width,
        height,
    })
}

/// `update` with its timestamp counted from `base_us` of its stream
/// instead of the stream's start (never below 0): the same update, on a
/// recording's own timeline. Bytes too short to be an update are returned
/// as they are (the writer refuses them).
pub fn retimed(update: &[u8], base_us: u64) -> std::borrow::Cow<'_, [u8]> {
    match info(update) {
        Ok(head) if base_us > 0 => {
            let mut copy = update.to_vec();
            copy[2..10].copy_from_slice(&head.timestamp_us.saturating_sub(base_us).to_le_bytes());
            std::borrow::Cow::Owned(copy)
        }
        _ => std::borrow::Cow::Borrowed(update),
    }
}

/// Decompresses a zstd frame of at most `limit` bytes, allocating only what
/// it holds: a frame that declares more, or turns out longer, is refused
/// without the allocation (the data may come from a peer or a file).
pub fn decompress(src: &[u8], limit: usize) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let too_large = || {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("compressed data holds more than {limit} bytes"),
        )
    };
    match zstd::zstd_safe::get_frame_content_size(src) {
        Ok(Some(n)) if n > limit as u64 => Err(too_large()),
        Ok(Some(n)) => zstd::bulk::decompress(src, n as usize),
        // Size not declared: read it, stopping one byte past the limit.
        _ => {
            let mut out = Vec::new();
            zstd::stream::read::Decoder::new(src)?
                .take(limit as u64 + 1)
                .read_to_end(&mut out)?;
            if out.len() > limit {
                return Err(too_large());
            }
            Ok(out)
        }
    }
}

/// Turns updates back into frames, bit-exact.
pub struct Decoder {
    frame: Option<Frame>,
    slots: Vec<Option<Vec<u8>>>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder").finish_non_exhaustive()
    }
}

impl Decoder {
    /// A decoder that needs a key update first.
    pub fn new() -> Self {
        Self {
            frame: None,
            slots: vec![None; CACHE_SLOTS],
        }
    }

    /// A decoder in the state a recording's key point describes: `frame` on
    /// screen and the given cache slots filled.
    pub fn restore(frame: Frame, slots: impl IntoIterator<Item = (usize, Vec<u8>)>) -> Self {
        let mut decoder = Self::new();
        for (slot, bytes) in slots {
            if let Some(s) = decoder.slots.get_mut(slot) {
                *s = Some(bytes);
            }
        }
        decoder.frame = Some(frame);
        decoder
    }

    /// The screen as the last update left it.
    pub fn frame(&self) -> Option<&Frame> {
        self.frame.as_ref()
    }

    /// Applies `update`; returns the screen as it now is.
    pub fn decode(&mut self, update: &[u8]) -> Result<&Frame, CodecError> {
        self.decode_traced(update, |_| {})
    }

    /// Applies `update` like [`Decoder::decode`], telling `seen` what each op
    /// did (so a recording can note where every tile's pixels are stored).
    pub fn decode_traced(
        &mut self,
        update: &[u8],
        mut seen: impl FnMut(Applied),
    ) -> Result<&Frame, CodecError> {
        let head = info(update)?;
        let grid = Grid::new(head.width as usize, head.height as usize);
        if head.key {
            self.frame = Some(Frame::black(head.width.into(), head.height.into()));
            self.slots.iter_mut().for_each(|s| *s = None);
        }
        let Some(frame) = self.frame.as_mut() else {
            return Err(CodecError::Invalid("a delta update before any key".into()));
        };
        if (frame.width, frame.height) != (head.width.into(), head.height.into()) {
            return Err(CodecError::SizeChange(
                head.width,
                head.height,
                frame.width as u16,
                frame.height as u16,
            ));
        }
        let body = body(update)?;
        let (count, ops_end) = op_count(&body, &grid)?;
        let (vectors, records_at) = vector_table(&body, ops_end)?;
        let (records, mut offset) = record_table(&body, records_at)?;
        let shifts = body[4..ops_end]
            .chunks_exact(7)
            .take(count)
            .any(|op| OpKind::from_byte(op[4]).is_some_and(OpKind::reads_the_previous_frame));
        let before = if shifts {
            frame.pixels.clone()
        } else {
            Vec::new()
        };
        for op in body[4..ops_end].chunks_exact(7).take(count) {
            let tile = u32::from_le_bytes([op[0], op[1], op[2], op[3]]) as usize;
            let slot = u16::from_le_bytes([op[5], op[6]]) as usize;
            let kind = op_kind(op[4])?;
            if tile >= grid.tiles() || (kind.names_a_slot() && slot >= CACHE_SLOTS) {
                return Err(CodecError::Invalid(format!(
                    "tile {tile} or slot {slot} out of range"
                )));
            }
            let (_, _, w, h) = grid.rect(tile);
            match kind {
                OpKind::Pixels => {
                    let len = w * h * 4;
                    let bytes = body
                        .get(offset..offset + len)
                        .ok_or(CodecError::Truncated("fewer pixels than the ops need"))?;
                    grid.put_tile(&mut frame.pixels, tile, bytes);
                    self.slots[slot] = Some(bytes.to_vec());
                    seen(Applied::Pixels {
                        tile,
                        slot,
                        offset,
                        len,
                    });
                    offset += len;
                }
                OpKind::Cached => {
                    let cached = self.slots[slot]
                        .as_ref()
                        .filter(|b| b.len() == w * h * 4)
                        .ok_or_else(|| {
                            CodecError::Invalid(format!("slot {slot} is empty or of another size"))
                        })?;
                    grid.put_tile(&mut frame.pixels, tile, cached);
                    seen(Applied::Cached { tile, slot });
                }
                OpKind::Moved => {
                    let v = *vectors.get(slot).ok_or_else(|| {
                        CodecError::Invalid(format!(
                            "tile {tile} names vector {slot} of {}",
                            vectors.len()
                        ))
                    })?;
                    if !grid.copy_moved(&mut frame.pixels, &before, tile, v) {
                        return Err(CodecError::Invalid(format!(
                            "move {v:?} of tile {tile} leaves the frame"
                        )));
                    }
                    seen(Applied::Moved { tile });
                }
                OpKind::Parts => {
                    let record = records.get(slot).ok_or_else(|| {
                        CodecError::Invalid(format!(
                            "tile {tile} names parts record {slot} of {}",
                            records.len()
                        ))
                    })?;
                    let (x, y, _, _) = grid.rect(tile);
                    for (p, from) in record.iter().enumerate() {
                        let (px, py, pw, ph) = parts::rect(w, h, p);
                        if pw == 0 || ph == 0 {
                            continue;
                        }
                        for r in 0..ph {
                            let dst = ((y + py + r) * grid.width + x + px) * 4;
                            let src: &[u8] = match *from {
                                parts::From::Pixels => {
                                    let row = body.get(offset..offset + pw * 4).ok_or(
                                        CodecError::Truncated("fewer pixels than the parts need"),
                                    )?;
                                    offset += pw * 4;
                                    row
                                }
                                parts::From::Moved(n) => {
                                    let (dx, dy) =
                                        *vectors.get(usize::from(n)).ok_or_else(|| {
                                            CodecError::Invalid(format!(
                                                "a part names vector {n} of {}",
                                                vectors.len()
                                            ))
                                        })?;
                                    let sx = (x + px) as isize - dx as isize;
                                    let sy = (y + py + r) as isize - dy as isize;
                                    if sx < 0
                                        || sy < 0
                                        || sx as usize + pw > grid.width
                                        || sy as usize >= grid.height
                                    {
                                        return Err(CodecError::Invalid(format!(
                                            "a part of tile {tile} moves from outside the frame"
                                        )));
                                    }
                                    &before[(sy as usize * grid.width + sx as usize) * 4..]
                                        [..pw * 4]
                                }
                                parts::From::Slot(s) => {
                                    let bytes = self
                                        .slots
                                        .get(usize::from(s))
                                        .and_then(Option::as_ref)
                                        .filter(|b| b.len() == w * h * 4)
                                        .ok_or_else(|| {
                                            CodecError::Invalid(format!(
                                                "a part names slot {s}, empty or of another size"
                                            ))
                                        })?;
                                    &bytes[((py + r) * w + px) * 4..][..pw * 4]
                                }
                            };
                            frame.pixels[dst..dst + pw * 4].copy_from_slice(src);
                        }
                    }
                    seen(Applied::Moved { tile });
                }
            }
        }
        Ok(frame)
    }
}

/// What one op of an update did to the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Applied {
    /// Tile `tile` got new pixels, `len` bytes at `offset` of the update's
    /// decompressed [`body`], also stored in cache `slot`.
    Pixels {
        /// The tile's index.
        tile: usize,
        /// The cache slot the pixels were also stored in.
        slot: usize,
        /// Where they start in the decompressed body.
        offset: usize,
        /// How many bytes they are.
        len: usize,
    },
    /// Tile `tile` got the pixels of cache `slot`.
    Cached {
        /// The tile's index.
        tile: usize,
        /// The cache slot read.
        slot: usize,
    },
    /// Tile `tile` got pixels of the previous frame, moved.
    Moved {
        /// The tile's index.
        tile: usize,
    },
}

/// The decompressed body of an update (bounded by its screen size).
pub fn body(update: &[u8]) -> Result<Vec<u8>, CodecError> {
    let head = info(update)?;
    let grid = Grid::new(head.width as usize, head.height as usize);
    // Per tile at most an op, a vector, a parts record and a full tile of pixels.
    let limit = 4 + 2 + 2 + grid.tiles() * (7 + 4 + parts::RECORD + TILE * TILE * 4);
    decompress(&update[HEADER..], limit).map_err(CodecError::Compression)
}

/// The op count of a body and where its ops end.
fn op_count(body: &[u8], grid: &Grid) -> Result<(usize, usize), CodecError> {
    let count_bytes = body.get(..4).ok_or(CodecError::Truncated("no op count"))?;
    let count = u32::from_le_bytes([
        count_bytes[0],
        count_bytes[1],
        count_bytes[2],
        count_bytes[3],
    ]) as usize;
    let ops_end = 4 + count * 7;
    if count > grid.tiles() || body.len() < ops_end {
        return Err(CodecError::Truncated("fewer ops than counted"));
    }
    Ok((count, ops_end))
}

/// What an op does to its tile; the byte it is stored as in an update.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpKind {
    /// New pixels, stored in a cache slot too (the op's argument).
    Pixels = 0,
    /// The pixels of a cache slot (the argument).
    Cached = 1,
    /// Pixels of the previous frame, moved by a vector (the argument is its number).
    Moved = 2,
    /// Made of 16×16 parts (the argument is the parts record's number).
    Parts = 3,
}

impl OpKind {
    /// The kind stored as `byte`, if it is one.
    pub fn from_byte(byte: u8) -> Option<Self> {
        [Self::Pixels, Self::Cached, Self::Moved, Self::Parts]
            .into_iter()
            .find(|k| *k as u8 == byte)
    }

    /// Whether the argument names a cache slot.
    fn names_a_slot(self) -> bool {
        matches!(self, Self::Pixels | Self::Cached)
    }

    /// Whether the op reads the previous frame.
    fn reads_the_previous_frame(self) -> bool {
        matches!(self, Self::Moved | Self::Parts)
    }
}

/// One op of an update, as [`ops`] lists it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Op {
    /// The tile's index, row by row.
    pub tile: usize,
    /// What it does.
    pub kind: OpKind,
    /// The slot (pixels, cached), the vector's number (moved) or the parts record's (parts).
    pub argument: u16,
}

/// The ops of an update, without applying them.
pub fn ops(update: &[u8]) -> Result<Vec<Op>, CodecError> {
    let head = info(update)?;
    let grid = Grid::new(head.width as usize, head.height as usize);
    let body = body(update)?;
    let (count, ops_end) = op_count(&body, &grid)?;
    body[4..ops_end]
        .chunks_exact(7)
        .take(count)
        .map(|op| {
            Ok(Op {
                tile: u32::from_le_bytes([op[0], op[1], op[2], op[3]]) as usize,
                kind: op_kind(op[4])?,
                argument: u16::from_le_bytes([op[5], op[6]]),
            })
        })
        .collect()
}

/// The kind of an op's byte, or why not.
fn op_kind(byte: u8) -> Result<OpKind, CodecError> {
    OpKind::from_byte(byte).ok_or_else(|| CodecError::Invalid(format!("unknown op kind {byte}")))
}

/// How an op uses the tile cache, in op order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotUse {
    /// The op reads this slot.
    Read(usize),
    /// The op writes this slot.
    Write(usize),
}

/// The cache slots an update reads and writes, in the order it does.
pub fn slot_uses(update: &[u8]) -> Result<Vec<SlotUse>, CodecError> {
    let head = info(update)?;
    let grid = Grid::new(head.width as usize, head.height as usize);
    let body = body(update)?;
    let (count, ops_end) = op_count(&body, &grid)?;
    let (_, records_at) = vector_table(&body, ops_end)?;
    let (records, _) = record_table(&body, records_at)?;
    let mut uses = Vec::new();
    for op in body[4..ops_end].chunks_exact(7).take(count) {
        let argument = usize::from(u16::from_le_bytes([op[5], op[6]]));
        match op_kind(op[4])? {
            OpKind::Pixels => uses.push(SlotUse::Write(argument)),
            OpKind::Cached => uses.push(SlotUse::Read(argument)),
            OpKind::Parts => uses.extend(records.get(argument).into_iter().flatten().filter_map(
                |p| match p {
                    parts::From::Slot(s) => Some(SlotUse::Read(usize::from(*s))),
                    _ => None,
                },
            )),
            OpKind::Moved => {}
        }
    }
    Ok(uses)
}

/// The vector table after the ops, and where the pixels start.
fn vector_table(body: &[u8], ops_end: usize) -> Result<(Vec<(i16, i16)>, usize), CodecError> {
    let n = body
        .get(ops_end..ops_end + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or(CodecError::Truncated("no vector count"))?;
    let table = body
        .get(ops_end + 2..ops_end + 2 + n * 4)
        .ok_or(CodecError::Truncated("fewer vectors than counted"))?;
    let vectors = table
        .chunks_exact(4)
        .map(|v| {
            (
                i16::from_le_bytes([v[0], v[1]]),
                i16::from_le_bytes([v[2], v[3]]),
            )
        })
        .collect();
    Ok((vectors, ops_end + 2 + n * 4))
}

/// The parts records after the vector table, and where the pixels start.
fn record_table(
    body: &[u8],
    at: usize,
) -> Result<(Vec<[parts::From; parts::PARTS]>, usize), CodecError> {
    let n = body
        .get(at..at + 2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]) as usize)
        .ok_or(CodecError::Truncated("no parts record count"))?;
    let table = body
        .get(at + 2..at + 2 + n * parts::RECORD)
        .ok_or(CodecError::Truncated("fewer parts records than counted"))?;
    let records = table
        .chunks_exact(parts::RECORD)
        .map(parts::decode)
        .collect::<Result<_, _>>()
        .map_err(CodecError::Invalid)?;
    Ok((records, at + 2 + n * parts::RECORD))
}

/// Where tile `tile` of a `width`×`height` screen lies: x, y, w, h.
pub fn tile_rect(width: u32, height: u32, tile: usize) -> (usize, usize, usize, usize) {
    Grid::new(width as usize, height as usize).rect(tile)
}

/// How many tiles a `width`×`height` screen has.
pub fn tile_count(width: u32, height: u32) -> usize {
    Grid::new(width as usize, height as usize).tiles()
}

/// Copies `bytes` (a tile's pixels, row by row) into tile `tile` of `frame`.
pub fn put_tile(frame: &mut Frame, tile: usize, bytes: &[u8]) {
    Grid::new(frame.width as usize, frame.height as usize).put_tile(&mut frame.pixels, tile, bytes)
}

/// Copies tile `tile` of `frame` out, row by row.
pub fn tile_pixels(frame: &Frame, tile: usize) -> Vec<u8> {
    let mut out = Vec::new();
    Grid::new(frame.width as usize, frame.height as usize).tile_bytes(
        &frame.pixels,
        tile,
        &mut out,
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::synthetic::Synthetic;

    #[test]
    fn every_frame_round_trips_bit_exact() {
        let mut source = Synthetic::new(300, 200, 7);
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let mut last = None;
        for n in 0..60u64 {
            let frame = source.frame();
            if let Some(update) = enc.encode(&frame, n * 100_000, n % 25 == 0) {
                assert_eq!(info(&update).unwrap().timestamp_us, n * 100_000);
                assert_eq!(dec.decode(&update).unwrap(), &frame, "frame {n}");
            } else {
                assert_eq!(last.as_ref(), Some(&frame), "nothing changed at {n}");
            }
            last = Some(frame);
        }
    }

    #[test]
    fn a_tile_seen_before_is_sent_as_a_reference() {
        let mut a = Frame::black(256, 128);
        a.fill(0, 0, 64, 64, [1, 2, 3, 255]);
        a.fill(64, 0, 64, 64, [9, 9, 9, 255]);
        let b = Frame::black(256, 128);
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        let first = enc.encode(&a, 0, false).unwrap();
        let away = enc.encode(&b, 1, false).unwrap();
        let back = enc.encode(&a, 2, false).unwrap();
        dec.decode(&first).unwrap();
        dec.decode(&away).unwrap();
        assert_eq!(dec.decode(&back).unwrap(), &a);
        let body = zstd::bulk::decompress(&back[HEADER..], 1 << 20).unwrap();
        assert_eq!(
            body.len(),
            4 + 2 * 7 + 2 + 2,
            "two cached references, no vectors or parts records, no pixels"
        );
    }

    /// A window of distinct "text" lines, scrolled up by `scroll` rows.
    fn text(scroll: u32) -> Frame {
        let mut f = Frame::black(256, 512);
        for line in 0..120u32 {
            let y = (line * 12).wrapping_sub(scroll);
            if y < 500 {
                let len = 20 + (line * 37) % 200;
                // Rows of a glyph differ, as real text does.
                for r in 0..7 {
                    f.fill(
                        8 + r,
                        y + r,
                        len,
                        1,
                        [
                            (line * 3) as u8,
                            (200 - r * 10) as u8,
                            (line * 7 + r) as u8,
                            255,
                        ],
                    );
                }
            }
        }
        f
    }

    #[test]
    fn scrolled_text_is_sent_as_shifts() {
        let (a, b) = (text(0), text(24));
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        dec.decode(&enc.encode(&a, 0, false).unwrap()).unwrap();
        let scrolled = enc.encode(&b, 1, false).unwrap();
        assert_eq!(dec.decode(&scrolled).unwrap(), &b);
        let body = zstd::bulk::decompress(&scrolled[HEADER..], 1 << 24).unwrap();
        let count = u32::from_le_bytes([body[0], body[1], body[2], body[3]]) as usize;
        let shifted = body[4..4 + count * 7]
            .chunks_exact(7)
            .filter(|op| op[4] == OpKind::Moved as u8)
            .count();
        assert!(
            shifted * 2 > count,
            "{shifted} of {count} changed tiles sent as shifts"
        );
    }

    #[test]
    fn a_dragged_window_is_sent_as_moves() {
        let window = |x: u32, y: u32| {
            let mut f = Frame::black(640, 480);
            for r in 0..200u32 {
                f.fill(x, y + r, 300, 1, [r as u8, (r * 7) as u8, 200, 255]);
                f.fill(x + (r * 13) % 250, y + r, 11, 1, [9, 9, (r * 3) as u8, 255]);
            }
            f
        };
        let (a, b) = (window(40, 30), window(77, 51));
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        dec.decode(&enc.encode(&a, 0, false).unwrap()).unwrap();
        let moved = enc.encode(&b, 1, false).unwrap();
        assert_eq!(dec.decode(&moved).unwrap(), &b);
        let ops = ops(&moved).unwrap();
        let n = ops.iter().filter(|o| o.kind == OpKind::Moved).count();
        assert!(n >= 6, "{n} of {} changed tiles sent as moves", ops.len());
    }

    #[test]
    fn a_window_dragged_over_wallpaper_sends_its_border_as_parts() {
        // A wallpaper whose every pixel differs, so no tile repeats by chance.
        let mut wallpaper = Frame::black(640, 480);
        for (n, p) in wallpaper.pixels.chunks_exact_mut(4).enumerate() {
            let v = (n as u32).wrapping_mul(2_654_435_761);
            p.copy_from_slice(&[v as u8, (v >> 8) as u8, (v >> 16) as u8, 255]);
        }
        let window = |x: u32, y: u32| {
            let mut f = wallpaper.clone();
            for r in 0..200u32 {
                f.fill(x, y + r, 300, 1, [r as u8, (r * 7) as u8, 200, 255]);
                f.fill(x + (r * 13) % 250, y + r, 11, 1, [9, 9, (r * 3) as u8, 255]);
            }
            f
        };
        let (mut enc, mut dec) = (Encoder::new(), Decoder::new());
        for (t, frame) in [wallpaper.clone(), window(40, 30), window(77, 51)]
            .iter()
            .enumerate()
        {
            let update = enc.encode(frame, t as u64, false).unwrap();
            assert_eq!(dec.decode(&update).unwrap(), frame, "frame {t}");
            if t == 2 {
                let ops = ops(&update).unwrap();
                let parts = ops.iter().filter(|o| o.kind == OpKind::Parts).count();
                assert!(
                    parts >= 4,
                    "{parts} of {} changed tiles sent as parts",
                    ops.len()
                );
                assert!(slot_uses(&update)
                    .unwrap()
                    .iter()
                    .any(|u| matches!(u, SlotUse::Read(_))));
            }
        }
    }

    #[test]
    fn damaged_updates_are_refused() {
        let mut source = Synthetic::new(128, 128, 1);
        let mut enc = Encoder::new();
        let key = enc.encode(&source.frame(), 0, true).unwrap();
        assert!(matches!(
            Decoder::new().decode(&key[..5]),
            Err(CodecError::Truncated(_))
        ));
        let mut wrong = key.clone();
        wrong[0] = 9;
        assert!(matches!(
            Decoder::new().decode(&wrong),
            Err(CodecError::Version(9))
        ));
        let mut cut = key.clone();
        cut.truncate(key.len() - 3);
        assert!(Decoder::new().decode(&cut).is_err());
        let delta = (1..)
            .find_map(|t| enc.encode(&source.frame(), t, false))
            .unwrap();
        assert!(matches!(
            Decoder::new().decode(&delta),
            Err(CodecError::Invalid(_))
        ));
    }
}
