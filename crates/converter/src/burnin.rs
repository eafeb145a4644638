//! Evidence burned into the picture: the session GUID and the wall-clock
//! time, in a corner of every frame, in a public-domain 8×8 bitmap font.

use recorder::Frame;
use time::OffsetDateTime;

/// The line stamped on a picture shown at `wall_us` (µs since the epoch).
pub fn caption(session: &str, recording: &str, wall_us: i64) -> String {
    let when = OffsetDateTime::from_unix_timestamp_nanos(i128::from(wall_us) * 1000)
        .map(|t| {
            format!(
                "{:04}-{:02}-{:02} {:02}:{:02}:{:02} UTC",
                t.year(),
                u8::from(t.month()),
                t.day(),
                t.hour(),
                t.minute(),
                t.second()
            )
        })
        .unwrap_or_else(|_| "time unknown".to_owned());
    if session.is_empty() {
        format!("recording {recording}  {when}")
    } else {
        format!("session {session}  {when}")
    }
}

/// Draws `text` (ASCII) white on a dark box in the bottom-left corner.
pub fn stamp(frame: &mut Frame, text: &str) {
    let scale = if frame.height >= 720 { 2 } else { 1 } as usize;
    let (glyph, pad) = (8 * scale, 4 * scale);
    let (w, h) = (frame.width as usize, frame.height as usize);
    let box_w = (text.chars().count() * glyph + 2 * pad).min(w);
    let box_h = (glyph + 2 * pad).min(h);
    let top = h - box_h;
    for y in top..h {
        for x in 0..box_w {
            let p = (y * w + x) * 4;
            // A quarter of what is under it shows through: legible on any screen.
            for c in 0..3 {
                frame.pixels[p + c] /= 4;
            }
        }
    }
    for (i, ch) in text.chars().enumerate() {
        let rows = font8x8::legacy::BASIC_LEGACY
            .get(ch as usize)
            .copied()
            .unwrap_or([0; 8]);
        for (gy, bits) in rows.iter().enumerate() {
            for gx in 0..8 {
                if bits & (1 << gx) == 0 {
                    continue;
                }
                for dy in 0..scale {
                    for dx in 0..scale {
                        let x = pad + i * glyph + gx * scale + dx;
                        let y = top + pad + gy * scale + dy;
                        if x < w && y < h {
                            let p = (y * w + x) * 4;
                            frame.pixels[p..p + 3].copy_from_slice(&[255, 255, 255]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn captions_name_the_session_and_the_time() {
        let c = caption("6f1c", "r", 1_763_750_884_885_799);
        assert_eq!(c, "session 6f1c  2025-11-21 18:48:04 UTC");
        assert!(caption("", "r-9", 0).starts_with("recording r-9  1970-01-01 00:00:00"));
    }

    #[test]
    fn a_stamp_darkens_its_corner_and_draws_white_glyphs() {
        let mut f = Frame::black(200, 100);
        f.fill(0, 0, 200, 100, [200, 200, 200, 255]);
        stamp(&mut f, "A1");
        let at = |x: usize, y: usize| f.pixels[(y * 200 + x) * 4];
        assert_eq!(at(199, 0), 200, "outside the box");
        assert_eq!(at(1, 99), 50, "the box");
        let glyph_pixels = (84..96)
            .flat_map(|y| (4..20).map(move |x| (x, y)))
            .filter(|&(x, y)| at(x, y) == 255)
            .count();
        assert!(glyph_pixels > 10, "{glyph_pixels} white pixels");
    }
}
