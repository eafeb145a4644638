//! Raw BGRA frames from a byte stream (e.g. `ffmpeg … -f rawvideo -pix_fmt bgra -`):
//! any capture becomes a [`Source`].

use std::io::{ErrorKind, Read};

use crate::{Frame, Source, SourceError};

/// Frames of a fixed size, back to back, from `R`.
#[derive(Debug)]
pub struct RawFrames<R> {
    input: R,
    width: u32,
    height: u32,
}

impl<R: Read> RawFrames<R> {
    /// Frames of `width`×`height` from `input`.
    pub fn new(input: R, width: u32, height: u32) -> Self {
        Self {
            input,
            width,
            height,
        }
    }
}

impl<R: Read> Source for RawFrames<R> {
    fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        let want = self.width as usize * self.height as usize * 4;
        let mut pixels = vec![0u8; want];
        let mut got = 0;
        while got < want {
            match self.input.read(&mut pixels[got..]) {
                Ok(0) => break,
                Ok(n) => got += n,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e.into()),
            }
        }
        match got {
            0 => Ok(None),
            _ if got < want => Err(SourceError::PartialFrame { got, want }),
            _ => Ok(Some(Frame {
                width: self.width,
                height: self.height,
                pixels,
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn whole_frames_then_end_and_partial_frames_are_refused() {
        let bytes: Vec<u8> = (0..2 * 3 * 2 * 4).map(|i| i as u8).collect();
        let mut src = RawFrames::new(&bytes[..], 3, 2);
        let first = src.next_frame().unwrap().unwrap();
        assert_eq!(first.pixels, bytes[..24]);
        assert_eq!(src.next_frame().unwrap().unwrap().pixels, bytes[24..]);
        assert!(src.next_frame().unwrap().is_none());
        let mut cut = RawFrames::new(&bytes[..30], 3, 2);
        cut.next_frame().unwrap();
        assert!(matches!(
            cut.next_frame(),
            Err(SourceError::PartialFrame { got: 6, want: 24 })
        ));
    }
}
