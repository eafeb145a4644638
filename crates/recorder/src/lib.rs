//! Screen capture sources, the lossless tile codec, the cursor stream,
//! and `.vrec` recordings (writer, reader, seeking, checks and repair).
#![forbid(unsafe_code)]

pub mod codec;
pub mod cursor;
pub mod frame;
pub mod synthetic;
pub mod vrec;

pub use frame::Frame;

/// Where frames come from: a display, a file, a test pattern.
pub trait Source {
    /// Width and height of the frames.
    fn size(&self) -> (u32, u32);
    /// The next frame, or `None` when the source has ended.
    fn next_frame(&mut self) -> Option<Frame>;
}
