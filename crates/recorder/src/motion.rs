//! Finding where moved content came from: a window dragged across the
//! screen, a page scrolled in a browser. Sample runs of pixels from tiles
//! nothing else explains are looked up, by a rolling hash, at every
//! position of the previous frame; the offsets that several samples agree
//! on become motion vectors for the codec to try on every such tile.

use std::collections::HashMap;

/// Pixels per sample run.
const RUN: usize = 32;
/// Samples taken at most per frame.
const MAX_SAMPLES: usize = 24;
/// Vectors returned at most.
const MAX_VECTORS: usize = 4;
const MUL: u64 = 0x9E37_79B9_7F4A_7C15;

/// A sample: a run of `RUN` pixels at (x, y) of the current frame.
struct Sample {
    x: usize,
    y: usize,
    hash: u64,
}

fn pixel(row: &[u8], x: usize) -> u64 {
    u64::from(u32::from_le_bytes([
        row[x * 4],
        row[x * 4 + 1],
        row[x * 4 + 2],
        row[x * 4 + 3],
    ]))
}

/// A pixel spread over 64 bits (a bijection: MUL is odd).
fn mix(pixel: u64) -> u64 {
    pixel.wrapping_mul(MUL)
}

/// A cyclic polynomial ("buzhash") of mixed pixels: rolling it one pixel
/// on is a rotation and two XORs, so the scan's dependency chain is two
/// cycles a position, not a multiply.
fn run_hash(mixed: impl Iterator<Item = u64>) -> u64 {
    mixed.fold(0u64, |h, m| h.rotate_left(1) ^ m)
}

/// Offsets (dx, dy) such that, for several samples, the current frame at
/// (x, y) equals the previous frame at (x - dx, y - dy); most agreed first.
/// `tiles` are (x, y, w, h) rectangles of the tiles to explain.
pub fn find_vectors(
    width: usize,
    height: usize,
    cur: &[u8],
    prev: &[u8],
    tiles: &[(usize, usize, usize, usize)],
) -> Vec<(i16, i16)> {
    let stride = width * 4;
    fn row_of(frame: &[u8], stride: usize, y: usize) -> &[u8] {
        &frame[y * stride..(y + 1) * stride]
    }
    let row = |frame, y| row_of(frame, stride, y);
    // Samples spread over the tiles; a run of one colour says nothing about where it came from.
    let step = (tiles.len() / MAX_SAMPLES).max(1);
    let mut samples = Vec::new();
    for &(x, y, w, h) in tiles.iter().step_by(step) {
        if w < RUN {
            continue;
        }
        let x = x + (w - RUN) / 2;
        let found = (0..h).map(|r| y + (r + h / 2) % h).find(|&yy| {
            let line = row(cur, yy);
            let first = pixel(line, x);
            (x..x + RUN).filter(|&i| pixel(line, i) != first).count() >= RUN / 4
        });
        if let Some(yy) = found {
            samples.push(Sample {
                x,
                y: yy,
                hash: run_hash((x..x + RUN).map(|i| mix(pixel(row(cur, yy), i)))),
            });
        }
    }
    if samples.len() < 2 || width < RUN {
        return Vec::new();
    }
    let mut wanted: HashMap<u64, Vec<usize>> = HashMap::new();
    let mut filter = [false; 4096];
    for (n, s) in samples.iter().enumerate() {
        wanted.entry(s.hash).or_default().push(n);
        filter[(s.hash >> 52) as usize] = true;
    }
    let mut votes: HashMap<(i16, i16), usize> = HashMap::new();
    // The scan below is most of the encoder's time on scrolling screens:
    // each row is read once as whole pixels, and rows of one colour (no
    // sample is one colour) are passed over.
    let mut mixed: Vec<u64> = Vec::with_capacity(width);
    let mut candidates: Vec<(usize, u64)> = Vec::new();
    for y in 0..height {
        let line = row(prev, y);
        mixed.clear();
        mixed.extend(
            line.chunks_exact(4)
                .map(|p| mix(u64::from(u32::from_le_bytes([p[0], p[1], p[2], p[3]])))),
        );
        if mixed.iter().all(|&p| p == mixed[0]) {
            continue;
        }
        // First the run hashes that pass the filter, in a tight loop; then
        // the few of them to look up.
        let mut h = run_hash(mixed[..RUN].iter().copied());
        candidates.clear();
        if filter[(h >> 52) as usize] {
            candidates.push((0, h));
        }
        for (x, (&out, &new)) in mixed.iter().zip(&mixed[RUN..]).enumerate() {
            h = h.rotate_left(1) ^ out.rotate_left(RUN as u32) ^ new;
            if filter[(h >> 52) as usize] {
                candidates.push((x + 1, h));
            }
        }
        for &(x, h) in &candidates {
            let Some(hits) = wanted.get(&h) else { continue };
            for &n in hits {
                let s = &samples[n];
                let (dx, dy) = (s.x as isize - x as isize, s.y as isize - y as isize);
                if (dx, dy) == (0, 0) {
                    continue;
                }
                let a = &row(cur, s.y)[s.x * 4..(s.x + RUN) * 4];
                let b = &line[x * 4..(x + RUN) * 4];
                if a == b {
                    if let (Ok(dx), Ok(dy)) = (i16::try_from(dx), i16::try_from(dy)) {
                        *votes.entry((dx, dy)).or_default() += 1;
                    }
                }
            }
        }
    }
    let mut ranked: Vec<((i16, i16), usize)> = votes.into_iter().filter(|&(_, n)| n >= 2).collect();
    ranked.sort_by_key(|&((dx, dy), n)| {
        (std::cmp::Reverse(n), dx.unsigned_abs() + dy.unsigned_abs())
    });
    ranked
        .into_iter()
        .take(MAX_VECTORS)
        .map(|(v, _)| v)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Frame;

    #[test]
    fn a_moved_window_is_found() {
        let mut prev = Frame::black(640, 480);
        // A "window" of distinct rows so that runs are unique.
        for r in 0..160u32 {
            prev.fill(100, 100 + r, 200, 1, [r as u8, (r * 7) as u8, 200, 255]);
            prev.fill(
                100 + (r * 13) % 150,
                100 + r,
                9,
                1,
                [9, 9, (r * 3) as u8, 255],
            );
        }
        let mut cur = Frame::black(640, 480);
        for y in 0..480usize {
            for x in 0..640usize {
                let (sx, sy) = (x as isize - 37, y as isize - 21);
                if sx >= 0 && sy >= 0 {
                    let s = (sy as usize * 640 + sx as usize) * 4;
                    let d = (y * 640 + x) * 4;
                    cur.pixels[d..d + 4].copy_from_slice(&prev.pixels[s..s + 4]);
                }
            }
        }
        let tiles: Vec<_> = (0..4)
            .flat_map(|r| (0..4).map(move |c| (128 + c * 64, 128 + r * 64, 64, 64)))
            .collect();
        let v = find_vectors(640, 480, &cur.pixels, &prev.pixels, &tiles);
        assert_eq!(v.first(), Some(&(37, 21)), "{v:?}");
    }
}
