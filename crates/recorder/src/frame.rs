//! A screen image: BGRA pixels, row by row, no padding.

/// One screen image.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// `width * height * 4` bytes, B G R A per pixel.
    pub pixels: Vec<u8>,
}

impl std::fmt::Debug for Frame {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Frame({}x{})", self.width, self.height)
    }
}

impl Frame {
    /// An all-black, opaque frame.
    pub fn black(width: u32, height: u32) -> Self {
        let mut pixels = vec![0u8; width as usize * height as usize * 4];
        pixels.chunks_exact_mut(4).for_each(|p| p[3] = 255);
        Self {
            width,
            height,
            pixels,
        }
    }

    /// Paints a rectangle (clipped to the frame) in one BGRA colour.
    pub fn fill(&mut self, x: u32, y: u32, w: u32, h: u32, bgra: [u8; 4]) {
        let (x1, y1) = ((x + w).min(self.width), (y + h).min(self.height));
        for row in y.min(self.height)..y1 {
            for col in x.min(self.width)..x1 {
                let i = (row as usize * self.width as usize + col as usize) * 4;
                self.pixels[i..i + 4].copy_from_slice(&bgra);
            }
        }
    }
}

impl Frame {
    /// Writes this frame as an 8-bit RGBA PNG, pixel for pixel.
    pub fn write_png(&self, out: impl std::io::Write) -> Result<(), png::EncodingError> {
        let mut encoder = png::Encoder::new(out, self.width, self.height);
        encoder.set_color(png::ColorType::Rgba);
        encoder.set_depth(png::BitDepth::Eight);
        let mut writer = encoder.write_header()?;
        let mut rgba = self.pixels.clone();
        rgba.chunks_exact_mut(4).for_each(|p| p.swap(0, 2));
        writer.write_image_data(&rgba)?;
        writer.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_holds_the_exact_pixels() {
        let mut f = Frame::black(5, 3);
        f.fill(1, 1, 2, 1, [10, 20, 30, 255]);
        let mut bytes = Vec::new();
        f.write_png(&mut bytes).unwrap();
        let mut reader = png::Decoder::new(&bytes[..]).read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size()];
        reader.next_frame(&mut buf).unwrap();
        assert_eq!(&buf[(5 + 1) * 4..(5 + 1) * 4 + 4], &[30, 20, 10, 255]);
        assert_eq!(buf.len(), f.pixels.len());
    }
}
