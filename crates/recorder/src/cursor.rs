//! The pointer, sent apart from the screen: its position changes far more
//! often than its shape, and neither should cost screen tiles.
//!
//! A cursor update, version 1 (little-endian):
//!
//! ```text
//! u8  version (1)
//! u64 timestamp_us
//! i32 x, i32 y          pointer position on the screen
//! u8  flags             bit 0: visible; bit 1: a shape follows
//! shape (if bit 1):
//!     u64 serial        changes whenever the shape does
//!     u16 width, u16 height, u16 hot_x, u16 hot_y
//!     zstd frame of width*height BGRA pixels, alpha premultiplied
//! ```
//!
//! The shape is sent only when it changes; until then, the last one holds.

use crate::codec::CodecError;
use crate::frame::Frame;

const VERSION: u8 = 1;
const FIXED: usize = 1 + 8 + 4 + 4 + 1;
const SHAPE_FIXED: usize = 8 + 2 * 4;
/// The largest cursor shape accepted (X servers cap cursors far below this).
pub const MAX_SHAPE: u16 = 256;

/// A pointer image and its hot spot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Shape {
    /// Changes whenever the shape does; a cursor update without a shape keeps the last one.
    pub serial: u64,
    /// Width in pixels.
    pub width: u16,
    /// Height in pixels.
    pub height: u16,
    /// The hot spot's column.
    pub hot_x: u16,
    /// The hot spot's row.
    pub hot_y: u16,
    /// BGRA, premultiplied alpha, row by row.
    pub pixels: Vec<u8>,
}

/// Where the pointer is, and its shape if that changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cursor {
    /// Microseconds since the stream began.
    pub timestamp_us: u64,
    /// Screen column of the hot spot.
    pub x: i32,
    /// Screen row of the hot spot.
    pub y: i32,
    /// Whether the pointer is shown.
    pub visible: bool,
    /// The new shape, only when it changed.
    pub shape: Option<Shape>,
}

impl Cursor {
    /// The wire form of this update.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FIXED);
        out.push(VERSION);
        out.extend_from_slice(&self.timestamp_us.to_le_bytes());
        out.extend_from_slice(&self.x.to_le_bytes());
        out.extend_from_slice(&self.y.to_le_bytes());
        out.push(u8::from(self.visible) | (u8::from(self.shape.is_some()) << 1));
        if let Some(shape) = &self.shape {
            out.extend_from_slice(&shape.serial.to_le_bytes());
            for v in [shape.width, shape.height, shape.hot_x, shape.hot_y] {
                out.extend_from_slice(&v.to_le_bytes());
            }
            // Compressing bytes in memory cannot fail.
            out.extend_from_slice(&zstd::bulk::compress(&shape.pixels, 3).expect("zstd compresses any input at a valid level; only running out of memory fails, which aborts first"));
        }
        out
    }

    /// Parses a cursor update.
    pub fn decode(bytes: &[u8]) -> Result<Self, CodecError> {
        if bytes.len() < FIXED {
            return Err(CodecError::Truncated(
                "cursor update shorter than its header",
            ));
        }
        if bytes[0] != VERSION {
            return Err(CodecError::Version(bytes[0]));
        }
        let u64_at = |i: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[i..i + 8]);
            u64::from_le_bytes(b)
        };
        let i32_at =
            |i: usize| i32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]);
        let flags = bytes[17];
        let shape = if flags & 2 != 0 {
            let rest = &bytes[FIXED..];
            if rest.len() < SHAPE_FIXED {
                return Err(CodecError::Truncated(
                    "cursor shape shorter than its header",
                ));
            }
            let u16_at = |i: usize| u16::from_le_bytes([rest[i], rest[i + 1]]);
            let (width, height) = (u16_at(8), u16_at(10));
            if width > MAX_SHAPE || height > MAX_SHAPE {
                return Err(CodecError::Invalid(format!(
                    "cursor shape {width}x{height} is larger than {MAX_SHAPE}x{MAX_SHAPE}"
                )));
            }
            let n = width as usize * height as usize * 4;
            let pixels = crate::codec::decompress(&rest[SHAPE_FIXED..], n)
                .map_err(CodecError::Compression)?;
            if pixels.len() != n {
                return Err(CodecError::Truncated(
                    "cursor shape has fewer pixels than its size",
                ));
            }
            let mut serial = [0u8; 8];
            serial.copy_from_slice(&rest[..8]);
            Some(Shape {
                serial: u64::from_le_bytes(serial),
                width,
                height,
                hot_x: u16_at(12),
                hot_y: u16_at(14),
                pixels,
            })
        } else {
            None
        };
        Ok(Self {
            timestamp_us: u64_at(1),
            x: i32_at(9),
            y: i32_at(13),
            visible: flags & 1 != 0,
            shape,
        })
    }
}

impl Shape {
    /// Writes this shape as a PNG with straight (not premultiplied) alpha,
    /// as a browser draws it over the screen.
    pub fn write_png(&self, out: impl std::io::Write) -> Result<(), png::EncodingError> {
        let mut encoder = png::Encoder::new(out, u32::from(self.width), u32::from(self.height));
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let rgba: Vec<u8> = self
            .pixels
            .chunks_exact(4)
            .flat_map(|p| {
                let (b, g, r, a) = (p[0], p[1], p[2], p[3]);
                let straight = |c: u8| match a {
                    0 => 0,
                    a => ((u16::from(c) * 255 + u16::from(a) / 2) / u16::from(a)).min(255) as u8,
                };
                [straight(r), straight(g), straight(b), a]
            })
            .collect();
        let mut writer = encoder.write_header()?;
        writer.write_image_data(&rgba)?;
        writer.finish()
    }

    /// Draws this shape over `frame` with its hot spot at (`x`, `y`)
    /// (premultiplied "over"; parts outside the frame are clipped).
    pub fn draw(&self, frame: &mut Frame, x: i32, y: i32) {
        let (left, top) = (x - i32::from(self.hot_x), y - i32::from(self.hot_y));
        for row in 0..i32::from(self.height) {
            let fy = top + row;
            if fy < 0 || fy >= frame.height as i32 {
                continue;
            }
            for col in 0..i32::from(self.width) {
                let fx = left + col;
                if fx < 0 || fx >= frame.width as i32 {
                    continue;
                }
                let s = (row as usize * self.width as usize + col as usize) * 4;
                let d = (fy as usize * frame.width as usize + fx as usize) * 4;
                let alpha = u16::from(self.pixels[s + 3]);
                for c in 0..3 {
                    let under = u16::from(frame.pixels[d + c]);
                    let over = u16::from(self.pixels[s + c]);
                    frame.pixels[d + c] = (over + under * (255 - alpha) / 255).min(255) as u8;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arrow() -> Shape {
        let mut pixels = vec![0u8; 8 * 8 * 4];
        for (i, p) in pixels.chunks_exact_mut(4).enumerate() {
            if i % 8 <= i / 8 {
                p.copy_from_slice(&[255, 255, 255, 255]);
            }
        }
        Shape {
            serial: 7,
            width: 8,
            height: 8,
            hot_x: 0,
            hot_y: 0,
            pixels,
        }
    }

    #[test]
    fn a_shape_png_has_straight_alpha() {
        let mut shape = arrow();
        // Half-transparent pure red, premultiplied: B G R A = 0 0 128 128.
        shape.pixels[4..8].copy_from_slice(&[0, 0, 128, 128]);
        let mut bytes = Vec::new();
        shape.write_png(&mut bytes).unwrap();
        let mut reader = png::Decoder::new(&bytes[..]).read_info().unwrap();
        let mut rgba = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut rgba).unwrap();
        assert_eq!(&rgba[..4], &[255, 255, 255, 255], "white, opaque");
        assert_eq!(&rgba[4..8], &[255, 0, 0, 128], "red, half transparent");
        assert_eq!(&rgba[8..12], &[0, 0, 0, 0], "transparent");
    }

    #[test]
    fn updates_round_trip_with_and_without_shape() {
        for shape in [None, Some(arrow())] {
            let c = Cursor {
                timestamp_us: 123,
                x: -3,
                y: 900,
                visible: true,
                shape,
            };
            assert_eq!(Cursor::decode(&c.encode()).unwrap(), c);
        }
    }

    #[test]
    fn damaged_cursor_updates_are_refused() {
        let bytes = Cursor {
            timestamp_us: 1,
            x: 0,
            y: 0,
            visible: true,
            shape: Some(arrow()),
        }
        .encode();
        assert!(matches!(
            Cursor::decode(&bytes[..10]),
            Err(CodecError::Truncated(_))
        ));
        assert!(Cursor::decode(&bytes[..bytes.len() - 2]).is_err());
        let mut huge = bytes.clone();
        huge[FIXED + 8..FIXED + 10].copy_from_slice(&4000u16.to_le_bytes());
        assert!(matches!(Cursor::decode(&huge), Err(CodecError::Invalid(_))));
    }

    #[test]
    fn drawing_is_clipped_and_blends() {
        let mut f = Frame::black(16, 16);
        arrow().draw(&mut f, 12, 12);
        assert_eq!(&f.pixels[(12 * 16 + 12) * 4..][..3], &[255, 255, 255]);
        assert_eq!(
            &f.pixels[(12 * 16 + 13) * 4..][..3],
            &[0, 0, 0],
            "outside the arrow"
        );
    }
}
