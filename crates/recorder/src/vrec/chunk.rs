//! The chunk layer: self-delimiting, checksummed records after a magic.
//!
//! ```text
//! file  = magic chunk*
//! magic = 89 'V' 'R' 'E' 'C' 0D 0A 1A 0A
//! chunk = u32 length, u8 type, body[length], u32 CRC-32 of (length, type, body)
//! ```
//!
//! A reader that meets a chunk whose length runs past the end of the file,
//! or whose CRC does not match, stops there: everything before it is whole.

use std::io::{self, Read};

/// The first bytes of every `.vrec` file (PNG-style: catches 7-bit and
/// line-ending mangling).
pub const MAGIC: [u8; 9] = *b"\x89VREC\r\n\x1a\n";
/// Length prefix and type.
pub const HEAD: usize = 5;
/// The CRC after the body.
pub const TAIL: usize = 4;
/// No chunk body is larger (a 4K key update compresses far below this).
pub const MAX_BODY: u32 = 256 << 20;

/// What a chunk holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// JSON [`super::Header`]; always the first chunk.
    Header = 1,
    /// One screen update, exactly as the codec produced it.
    Update = 2,
    /// One cursor update.
    Cursor = 3,
    /// JSON [`super::Marker`]: an audit event on the timeline.
    Marker = 4,
    /// A key point: what seeking needs to start decoding here.
    KeyPoint = 5,
    /// The index, written when the recording is finished or repaired.
    Index = 6,
    /// The trailer: where the index is. Always the last chunk of a finished file.
    End = 7,
}

impl Kind {
    /// The kind for a type byte, if known.
    pub fn from_byte(b: u8) -> Option<Self> {
        Some(match b {
            1 => Self::Header,
            2 => Self::Update,
            3 => Self::Cursor,
            4 => Self::Marker,
            5 => Self::KeyPoint,
            6 => Self::Index,
            7 => Self::End,
            _ => return None,
        })
    }
}

/// The size of an `End` chunk, which a reader looks for at the end of a file.
pub const END_CHUNK: usize = HEAD + 8 + TAIL;

/// A chunk as bytes ready to write.
pub fn encode(kind: Kind, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(HEAD + body.len() + TAIL);
    out.extend_from_slice(&(body.len() as u32).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(body);
    let crc = crc32fast::hash(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Why a chunk could not be read whole.
#[derive(Debug)]
pub enum Bad {
    /// The file ends inside the chunk (or exactly before it, if `at_boundary`).
    Eof {
        /// The file ends exactly where the chunk would begin.
        at_boundary: bool,
    },
    /// The length is beyond [`MAX_BODY`].
    Length(u32),
    /// The CRC does not match (the chunk claimed `len` body bytes).
    Checksum {
        /// The body length the chunk claimed.
        len: u32,
    },
    /// Reading failed.
    Io(io::Error),
}

/// One chunk read back.
#[derive(Debug)]
pub struct Chunk {
    /// The type byte (known kinds via [`Kind::from_byte`]).
    pub kind: u8,
    /// The chunk's body, after the CRC was checked.
    pub body: Vec<u8>,
}

impl Chunk {
    /// Bytes this chunk takes in the file.
    pub fn size(&self) -> u64 {
        (HEAD + self.body.len() + TAIL) as u64
    }
}

/// Reads one chunk, checking its CRC.
pub fn read(r: &mut impl Read) -> Result<Chunk, Bad> {
    let mut head = [0u8; HEAD];
    let got = read_full(r, &mut head)?;
    if got < HEAD {
        return Err(Bad::Eof {
            at_boundary: got == 0,
        });
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]);
    if len > MAX_BODY {
        return Err(Bad::Length(len));
    }
    let mut rest = vec![0u8; len as usize + TAIL];
    if read_full(r, &mut rest)? < rest.len() {
        return Err(Bad::Eof { at_boundary: false });
    }
    let crc_at = len as usize;
    let stored = u32::from_le_bytes([
        rest[crc_at],
        rest[crc_at + 1],
        rest[crc_at + 2],
        rest[crc_at + 3],
    ]);
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&head);
    hasher.update(&rest[..crc_at]);
    if hasher.finalize() != stored {
        return Err(Bad::Checksum { len });
    }
    rest.truncate(crc_at);
    Ok(Chunk {
        kind: head[4],
        body: rest,
    })
}

/// Like `read_exact`, but says how much it got at end of file.
fn read_full(r: &mut impl Read, buf: &mut [u8]) -> Result<usize, Bad> {
    let mut got = 0;
    while got < buf.len() {
        match r.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(Bad::Io(e)),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_round_trip_and_damage_is_seen() {
        let bytes = encode(Kind::Marker, b"hello");
        let chunk = read(&mut &bytes[..]).unwrap();
        assert_eq!((chunk.kind, chunk.body.as_slice()), (4, &b"hello"[..]));
        assert_eq!(chunk.size(), bytes.len() as u64);
        for cut in 0..bytes.len() {
            assert!(
                matches!(read(&mut &bytes[..cut]), Err(Bad::Eof { at_boundary }) if at_boundary == (cut == 0))
            );
        }
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 0x40;
            assert!(read(&mut &bad[..]).is_err(), "flipped byte {i} unnoticed");
        }
    }
}
