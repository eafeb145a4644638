//! A deterministic capture source for tests: a desktop-like picture (a
//! gradient wallpaper) with a "window" of noisy text that moves, scrolls
//! and changes, so every kind of update occurs. The same seed gives the
//! same frames on every machine.

use crate::frame::Frame;
use crate::{Source, SourceError};

/// Deterministic frames of `width`×`height`.
#[derive(Debug)]
pub struct Synthetic {
    width: u32,
    height: u32,
    state: u64,
    n: u32,
}

impl Synthetic {
    /// A source whose frames depend only on the arguments.
    pub fn new(width: u32, height: u32, seed: u64) -> Self {
        Self {
            width,
            height,
            state: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1,
            n: 0,
        }
    }

    fn random(&mut self) -> u64 {
        // xorshift64*: small, deterministic, good enough for test pictures.
        self.state ^= self.state >> 12;
        self.state ^= self.state << 25;
        self.state ^= self.state >> 27;
        self.state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

impl Source for Synthetic {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        Ok(Some(self.frame()))
    }
}

impl Synthetic {
    /// The next frame (a synthetic source never ends).
    pub fn frame(&mut self) -> Frame {
        let (w, h) = (self.width, self.height);
        let mut f = Frame::black(w, h);
        for y in 0..h {
            let shade = (y * 255 / h.max(1)) as u8;
            f.fill(0, y, w, 1, [shade, 64, 255 - shade, 255]);
        }
        // Every third frame nothing moves: idle periods are common on screens.
        let step = self.n - self.n % 3;
        let (wx, wy) = ((step * 7) % (w / 2).max(1), (step * 3) % (h / 2).max(1));
        f.fill(wx, wy, w / 2, h / 2, [240, 240, 240, 255]);
        let mut rng = Self::new(w, h, u64::from(step / 6) + self.state % 2);
        for line in 0..(h / 2) / 8 {
            let len = (rng.random() % u64::from((w / 2).max(1))) as u32;
            f.fill(wx + 4, wy + 4 + line * 8, len, 5, [20, 20, 20, 255]);
        }
        self.n += 1;
        f
    }
}
