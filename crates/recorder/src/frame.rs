//! A screen image: BGRA pixels, row by row, no padding.

/// One screen image.
#[derive(Clone, PartialEq, Eq)]
pub struct Frame {
    pub width: u32,
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
