//! Tiles that are part moved, part seen before: a dragged window's border,
//! where the window's edge (moved) meets the wallpaper it uncovers (still
//! in the tile cache). Such a tile is cut into 16×16 parts, each copied
//! from a move of the previous frame, copied from a cached tile at the
//! same place, or sent as pixels.

/// Edge of a part in pixels.
pub const PART: usize = 16;
/// Parts per tile (4 × 4).
pub const PARTS: usize = 16;
/// Bytes of one record: per part, a code and an argument.
pub const RECORD: usize = PARTS * 3;

/// Where one part of a tile comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum From {
    /// Its pixels follow in the update.
    Pixels,
    /// The previous frame, moved by the update's vector of this number.
    Moved(u16),
    /// The same place in the tile cached in this slot.
    Slot(u16),
}

/// Appends a record.
pub fn encode(parts: &[From; PARTS], out: &mut Vec<u8>) {
    for part in parts {
        let (code, argument) = match *part {
            From::Pixels => (0u8, 0u16),
            From::Moved(n) => (1, n),
            From::Slot(s) => (2, s),
        };
        out.push(code);
        out.extend_from_slice(&argument.to_le_bytes());
    }
}

/// Reads a record.
pub fn decode(bytes: &[u8]) -> Result<[From; PARTS], String> {
    let mut parts = [From::Pixels; PARTS];
    if bytes.len() != RECORD {
        return Err(format!(
            "a parts record is {RECORD} bytes, not {}",
            bytes.len()
        ));
    }
    for (part, b) in parts.iter_mut().zip(bytes.chunks_exact(3)) {
        let argument = u16::from_le_bytes([b[1], b[2]]);
        *part = match b[0] {
            0 => From::Pixels,
            1 => From::Moved(argument),
            2 => From::Slot(argument),
            other => return Err(format!("unknown part code {other}")),
        };
    }
    Ok(parts)
}

/// Part `p` of a `w`×`h` tile, relative to the tile: x, y, w, h (zero-sized
/// beyond the edge of a small edge tile).
pub fn rect(w: usize, h: usize, p: usize) -> (usize, usize, usize, usize) {
    let (x, y) = ((p % 4) * PART, (p / 4) * PART);
    (
        x,
        y,
        PART.min(w.saturating_sub(x)),
        PART.min(h.saturating_sub(y)),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let mut parts = [From::Pixels; PARTS];
        parts[3] = From::Moved(2);
        parts[9] = From::Slot(2047);
        let mut bytes = Vec::new();
        encode(&parts, &mut bytes);
        assert_eq!(decode(&bytes).unwrap(), parts);
        bytes[0] = 7;
        assert!(decode(&bytes).is_err());
        assert!(decode(&bytes[..10]).is_err());
    }

    #[test]
    fn parts_cover_edge_tiles() {
        assert_eq!(rect(64, 64, 5), (16, 16, 16, 16));
        assert_eq!(rect(40, 8, 2), (32, 0, 8, 8));
        assert_eq!(rect(40, 8, 3).2, 0, "beyond a 40-pixel-wide tile");
        assert_eq!(rect(40, 8, 4).3, 0, "below an 8-pixel-high tile");
    }
}
