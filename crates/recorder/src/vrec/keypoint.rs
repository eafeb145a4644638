//! Key points: the decoder's whole state at one moment (screen and tile
//! cache), described by reference to pixels already in the file, so a
//! seek can start there without the file storing whole frames again.
//!
//! A [`Tracker`] follows the updates as they are written and knows, for
//! every screen tile and cache slot, which update chunk holds its pixels.
//! Only tiles that exist in no chunk (the result of a move or scroll) are
//! stored inline. The body, zstd-compressed (varints are LEB128; offsets
//! are delta-coded so a run of tiles from one chunk costs almost nothing):
//!
//! ```text
//! u8  version (1)
//! u64 timestamp_us      of the last update applied
//! u64 frames            updates applied so far
//! u16 width, u16 height
//! u64 cursor_position   file offset of the last cursor chunk (0: none)
//! u64 cursor_shape      file offset of the last cursor chunk with a shape (0: none)
//! varint chunks, then each chunk's file offset as a varint delta (ascending)
//! per screen tile: varint 0 (inline) or chunk number + 1, then zigzag-varint
//!                  offset delta into that chunk's decompressed update body
//! varint slots, then per filled cache slot: varint slot delta, varint chunk
//!                  number, zigzag-varint offset delta, varint length
//! the inline tiles' pixels, in tile order
//! ```

use std::collections::BTreeMap;

use crate::codec::{self, Applied, CodecError, Decoder, CACHE_SLOTS};

const VERSION: u8 = 1;

/// Where a tile's pixels are: `len` bytes at `offset` of the decompressed
/// body of the update chunk at file offset `chunk`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stored {
    /// The update chunk's number.
    pub chunk: u64,
    /// Where the tile's bytes start in its decompressed body.
    pub offset: u32,
    /// How many bytes.
    pub len: u32,
}

/// Where one screen tile of a key point comes from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TileSource {
    /// Bytes stored in an earlier update chunk.
    Stored(Stored),
    /// Its pixels are in the key point itself.
    Inline(Vec<u8>),
}

/// A key point, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyPoint {
    /// Microseconds since the recording began.
    pub timestamp_us: u64,
    /// Screen updates before it.
    pub frames: u64,
    /// Screen width in pixels.
    pub width: u16,
    /// Screen height in pixels.
    pub height: u16,
    /// The cursor chunk that last moved the pointer, if any.
    pub cursor_position: Option<u64>,
    /// The cursor chunk that last set its shape, if any.
    pub cursor_shape: Option<u64>,
    /// Where each tile's pixels are, row by row.
    pub tiles: Vec<TileSource>,
    /// Where each cache slot's pixels are, for the slots in use.
    pub slots: Vec<(usize, Stored)>,
}

/// Follows a recording's updates to know where every tile is stored.
#[derive(Debug, Default)]
pub struct Tracker {
    decoder: Decoder,
    tiles: Vec<Option<Stored>>,
    slots: Vec<Option<Stored>>,
    frames: u64,
    last_us: u64,
}

impl Tracker {
    /// A tracker before any update.
    pub fn new() -> Self {
        Self {
            slots: vec![None; CACHE_SLOTS],
            ..Self::default()
        }
    }

    /// Updates applied so far.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// The timestamp of the last update applied.
    pub fn last_us(&self) -> u64 {
        self.last_us
    }

    /// Applies `update`, stored in the chunk at file offset `chunk`.
    pub fn apply(&mut self, update: &[u8], chunk: u64) -> Result<(), CodecError> {
        let head = codec::info(update)?;
        let tiles_n = codec::tile_count(head.width.into(), head.height.into());
        if head.key || self.tiles.len() != tiles_n {
            self.tiles = vec![None; tiles_n];
            self.slots.iter_mut().for_each(|s| *s = None);
        }
        let (tiles, slots) = (&mut self.tiles, &mut self.slots);
        self.decoder.decode_traced(update, |op| match op {
            Applied::Pixels {
                tile,
                slot,
                offset,
                len,
            } => {
                let at = Some(Stored {
                    chunk,
                    offset: offset as u32,
                    len: len as u32,
                });
                tiles[tile] = at;
                slots[slot] = at;
            }
            Applied::Cached { tile, slot } => tiles[tile] = slots[slot],
            Applied::Moved { tile } => tiles[tile] = None,
        })?;
        self.frames += 1;
        self.last_us = head.timestamp_us;
        Ok(())
    }

    /// The key point for the state now, or `None` before the first update.
    pub fn key_point(
        &self,
        cursor_position: Option<u64>,
        cursor_shape: Option<u64>,
    ) -> Option<Vec<u8>> {
        let frame = self.decoder.frame()?;
        let mut chunks: BTreeMap<u64, usize> = BTreeMap::new();
        for s in self.tiles.iter().chain(&self.slots).flatten() {
            chunks.insert(s.chunk, 0);
        }
        for (n, number) in chunks.values_mut().enumerate() {
            *number = n;
        }
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.last_us.to_le_bytes());
        out.extend_from_slice(&self.frames.to_le_bytes());
        out.extend_from_slice(&(frame.width as u16).to_le_bytes());
        out.extend_from_slice(&(frame.height as u16).to_le_bytes());
        out.extend_from_slice(&cursor_position.unwrap_or(0).to_le_bytes());
        out.extend_from_slice(&cursor_shape.unwrap_or(0).to_le_bytes());
        put_varint(&mut out, chunks.len() as u64);
        let mut prev = 0;
        for &offset in chunks.keys() {
            put_varint(&mut out, offset - prev);
            prev = offset;
        }
        let mut inline = Vec::new();
        let mut last_offset = 0i64;
        for (i, tile) in self.tiles.iter().enumerate() {
            match tile {
                Some(s) => {
                    put_varint(&mut out, chunks[&s.chunk] as u64 + 1);
                    put_varint(&mut out, zigzag(s.offset as i64 - last_offset));
                    last_offset = s.offset as i64;
                }
                None => {
                    put_varint(&mut out, 0);
                    inline.extend_from_slice(&codec::tile_pixels(frame, i));
                }
            }
        }
        let filled: Vec<(usize, &Stored)> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, s)))
            .collect();
        put_varint(&mut out, filled.len() as u64);
        let (mut next_slot, mut last_offset) = (0usize, 0i64);
        for (slot, s) in filled {
            put_varint(&mut out, (slot - next_slot) as u64);
            next_slot = slot + 1;
            put_varint(&mut out, chunks[&s.chunk] as u64);
            put_varint(&mut out, zigzag(s.offset as i64 - last_offset));
            last_offset = s.offset as i64;
            put_varint(&mut out, u64::from(s.len));
        }
        out.extend_from_slice(&inline);
        // Level 9, not 3: a key point comes once in 10 s, and its inline
        // tiles (scrolled text) shrink by a quarter (measured on the corpus).
        // Compressing bytes in memory cannot fail.
        Some(zstd::bulk::compress(&out, 9).expect("zstd compresses any input at a valid level; only running out of memory fails, which aborts first"))
    }
}

/// Parses a key point's body.
pub fn parse(body: &[u8]) -> Result<KeyPoint, String> {
    // Inline pixels are bounded by the screen; 65535² × 4 is the format's ceiling.
    let raw = crate::codec::decompress(body, 1 << 30).map_err(|e| format!("key point: {e}"))?;
    let mut r = Bytes(&raw);
    if r.u8()? != VERSION {
        return Err("key point version is not 1".into());
    }
    let timestamp_us = r.u64()?;
    let frames = r.u64()?;
    let (width, height) = (r.u16()?, r.u16()?);
    let nonzero = |v: u64| (v != 0).then_some(v);
    let cursor_position = nonzero(r.u64()?);
    let cursor_shape = nonzero(r.u64()?);
    let n_chunks = r.varint()? as usize;
    if n_chunks > raw.len() {
        return Err("key point names more chunks than it has bytes".into());
    }
    let mut chunks = Vec::with_capacity(n_chunks);
    let mut prev = 0u64;
    for _ in 0..n_chunks {
        prev = prev
            .checked_add(r.varint()?)
            .ok_or("key point chunk offset overflows")?;
        chunks.push(prev);
    }
    let chunk = |n: u64| {
        chunks
            .get(n as usize)
            .copied()
            .ok_or("key point names an unknown chunk")
    };
    let n_tiles = codec::tile_count(width.into(), height.into());
    let mut refs = Vec::with_capacity(n_tiles);
    let mut last_offset = 0i64;
    for i in 0..n_tiles {
        let code = r.varint()?;
        if code == 0 {
            refs.push(None);
        } else {
            last_offset += unzigzag(r.varint()?);
            let (_, _, w, h) = codec::tile_rect(width.into(), height.into(), i);
            refs.push(Some(Stored {
                chunk: chunk(code - 1)?,
                offset: u32::try_from(last_offset)
                    .map_err(|_| "key point tile offset out of range")?,
                len: (w * h * 4) as u32,
            }));
        }
    }
    let n_slots = r.varint()? as usize;
    if n_slots > CACHE_SLOTS {
        return Err(format!(
            "key point fills {n_slots} cache slots of {CACHE_SLOTS}"
        ));
    }
    let mut slots = Vec::with_capacity(n_slots);
    let (mut next_slot, mut last_offset) = (0usize, 0i64);
    for _ in 0..n_slots {
        let slot = next_slot + r.varint()? as usize;
        if slot >= CACHE_SLOTS {
            return Err(format!("key point names cache slot {slot}"));
        }
        next_slot = slot + 1;
        let chunk = chunk(r.varint()?)?;
        last_offset += unzigzag(r.varint()?);
        let len = u32::try_from(r.varint()?).map_err(|_| "key point slot length out of range")?;
        slots.push((
            slot,
            Stored {
                chunk,
                offset: u32::try_from(last_offset)
                    .map_err(|_| "key point slot offset out of range")?,
                len,
            },
        ));
    }
    let mut tiles = Vec::with_capacity(n_tiles);
    for (i, stored) in refs.into_iter().enumerate() {
        tiles.push(match stored {
            Some(s) => TileSource::Stored(s),
            None => {
                let (_, _, w, h) = codec::tile_rect(width.into(), height.into(), i);
                TileSource::Inline(r.take(w * h * 4)?.to_vec())
            }
        });
    }
    Ok(KeyPoint {
        timestamp_us,
        frames,
        width,
        height,
        cursor_position,
        cursor_shape,
        tiles,
        slots,
    })
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

fn unzigzag(v: u64) -> i64 {
    (v >> 1) as i64 ^ -((v & 1) as i64)
}

/// A cursor over a key point's bytes; every read is bounds-checked.
struct Bytes<'a>(&'a [u8]);

impl<'a> Bytes<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        if self.0.len() < n {
            return Err("key point is shorter than its contents".into());
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, String> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, String> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, String> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn varint(&mut self) -> Result<u64, String> {
        let mut v = 0u64;
        for shift in (0..64).step_by(7) {
            let b = self.u8()?;
            v |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
        Err("key point varint is too long".into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Encoder;
    use crate::synthetic::Synthetic;

    #[test]
    fn varints_and_zigzag_round_trip() {
        for v in [0i64, 1, -1, 63, -64, 1 << 40, i64::MIN / 2] {
            let mut out = Vec::new();
            put_varint(&mut out, zigzag(v));
            assert_eq!(unzigzag(Bytes(&out).varint().unwrap()), v);
        }
    }

    #[test]
    fn a_key_point_names_every_tile() {
        let mut source = Synthetic::new(200, 130, 3);
        let mut enc = Encoder::new();
        let mut tracker = Tracker::new();
        for n in 0..10u64 {
            if let Some(u) = enc.encode(&source.frame(), n, false) {
                tracker.apply(&u, 100 + n).unwrap();
            }
        }
        let kp = parse(&tracker.key_point(Some(5), None).unwrap()).unwrap();
        assert_eq!(
            (kp.width, kp.height, kp.cursor_position, kp.cursor_shape),
            (200, 130, Some(5), None)
        );
        assert_eq!(kp.frames, tracker.frames());
        assert_eq!(kp.tiles.len(), codec::tile_count(200, 130));
        assert!(kp.tiles.iter().any(|t| matches!(t, TileSource::Stored(_))));
        assert!(parse(&[1, 2, 3]).is_err());
    }
}
