//! Screen capture sources, the lossless tile codec, the cursor stream,
//! and `.vrec` recordings (writer, reader, seeking, checks and repair).
#![forbid(unsafe_code)]

pub mod codec;
pub mod cursor;
pub mod frame;
pub mod input;
mod motion;
mod parts;
pub mod raw;
pub mod stream;
pub mod synthetic;
pub mod vrec;
pub mod x11;

pub use frame::Frame;

/// Where frames come from: a display, a file, a test pattern.
pub trait Source {
    /// Width and height of the frames.
    fn size(&self) -> (u32, u32);
    /// The next frame, or `None` when the source has ended.
    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError>;
    /// The pointer, if this source knows it apart from the frames (with
    /// its shape when that changed since the last call).
    fn cursor(&mut self, _timestamp_us: u64) -> Result<Option<cursor::Cursor>, SourceError> {
        Ok(None)
    }
    /// Whether the screen is known to be as the last frame showed it (a
    /// display that reports damage), so capturing it again can be skipped.
    fn unchanged(&mut self) -> Result<bool, SourceError> {
        Ok(false)
    }
    /// Takes back a frame it gave, once used, to fill the next one in
    /// place of a new allocation (a 1080p frame is 8 MB).
    fn recycle(&mut self, _frame: Frame) {}
}

/// A source could not give a frame.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// Reading the input failed.
    #[error("reading frames: {0}")]
    Io(#[from] std::io::Error),
    /// The input ended inside a frame.
    #[error("the input ends inside a frame ({got} of {want} bytes): is the frame size right?")]
    PartialFrame {
        /// Bytes of the last frame that came.
        got: usize,
        /// Bytes a frame has.
        want: usize,
    },
    /// The display could not be captured.
    #[error("screen capture: {0}")]
    Capture(String),
}

impl<S: Source + ?Sized> Source for Box<S> {
    fn size(&self) -> (u32, u32) {
        (**self).size()
    }

    fn next_frame(&mut self) -> Result<Option<Frame>, SourceError> {
        (**self).next_frame()
    }

    fn cursor(&mut self, timestamp_us: u64) -> Result<Option<cursor::Cursor>, SourceError> {
        (**self).cursor(timestamp_us)
    }

    fn unchanged(&mut self) -> Result<bool, SourceError> {
        (**self).unchanged()
    }

    fn recycle(&mut self, frame: Frame) {
        (**self).recycle(frame)
    }
}
