//! `.vrec` recordings (read through `recorder`) converted to MP4 and AVI
//! with ffmpeg-next, for people with ordinary video players.
//!
//! - [`pictures`]: what a viewer saw, one picture per change, timed.
//! - [`output`]: the video file (encoder, scaler, muxer).
//! - [`burnin`]: the session and wall-clock time stamped on every frame.
//!
//! A conversion writes to a temporary file beside the output and renames
//! it only once complete, so an interrupted or failed one leaves nothing
//! behind, and an existing output is replaced only when asked.
#![forbid(unsafe_code)]

pub mod burnin;
pub mod output;
pub mod pictures;

use std::path::{Path, PathBuf};

use recorder::vrec::{Ending, Recording, VrecError};

pub use output::Container;

/// How to convert.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Options {
    /// Start here (µs since the recording started).
    pub from_us: u64,
    /// End here (µs), or at the recording's end.
    pub to_us: Option<u64>,
    /// Output size (made even); the recording's own size by default.
    pub scale: Option<(u32, u32)>,
    /// x264 CRF for MP4 (default 20), MJPEG q for AVI (default 4); lower is better.
    pub quality: Option<u32>,
    /// Replace an existing output.
    pub force: bool,
    /// Stamp the session GUID and the wall-clock time on every frame (and
    /// show at least one frame a second, so the clock runs).
    pub burn_in: bool,
}

const SECOND: u64 = 1_000_000;

/// The default x264 CRF: visually lossless for screen text at 1080p.
pub const DEFAULT_CRF: u32 = 20;
/// The default MJPEG q.
pub const DEFAULT_MJPEG_Q: u32 = 4;

/// A conversion could not be done.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error(transparent)]
    Recording(#[from] VrecError),
    #[error("{0}: already exists (--force replaces it)")]
    Exists(PathBuf),
    #[error("{0}: the output must end in .mp4 or .avi")]
    Container(PathBuf),
    #[error("{path}: {what}")]
    Io {
        path: PathBuf,
        what: &'static str,
        source: std::io::Error,
    },
    #[error("encoding {path}: {source}")]
    Encode {
        path: PathBuf,
        source: ffmpeg_next::Error,
    },
    #[error("--from {from_us} µs is not before the end of the excerpt ({to_us} µs)")]
    EmptyRange { from_us: u64, to_us: u64 },
    #[error("{0}: the recording holds no picture to convert (cut off inside its first screen?)")]
    Empty(PathBuf),
    #[error("stopped")]
    Stopped,
}

/// What a conversion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    pub output: PathBuf,
    pub pictures: u64,
    pub duration_us: u64,
    pub size: u64,
    /// Set when the recording was cut off: converted up to its last whole chunk.
    pub truncated: Option<String>,
}

/// Converts `input` into `output` (MP4 or AVI, by extension). `progress`
/// hears the time converted and the excerpt's length, in µs, and may
/// return `false` to stop (nothing is left behind then).
pub fn convert(
    input: &Path,
    output: &Path,
    options: &Options,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<Converted, ConvertError> {
    let container =
        Container::for_path(output).ok_or_else(|| ConvertError::Container(output.to_owned()))?;
    if output.exists() && !options.force {
        return Err(ConvertError::Exists(output.to_owned()));
    }
    let recording = Recording::open(input)?;
    if recording.index.frames == 0 {
        return Err(ConvertError::Empty(input.to_owned()));
    }
    let truncated = match &recording.ending {
        Ending::Complete => None,
        Ending::Truncated { reason, .. } => Some(reason.clone()),
    };
    let to_us = options
        .to_us
        .unwrap_or(recording.index.duration_us)
        .min(recording.index.duration_us);
    if options.from_us >= to_us {
        return Err(ConvertError::EmptyRange {
            from_us: options.from_us,
            to_us,
        });
    }
    let (width, height) = (recording.header.width, recording.header.height);
    let (out_width, out_height) = options.scale.unwrap_or((width, height));
    // yuv420p halves the chroma: both sides must be even.
    let out_size = ((out_width & !1).max(2), (out_height & !1).max(2));
    let quality = options.quality.unwrap_or(match container {
        Container::Mp4 => DEFAULT_CRF,
        Container::Avi => DEFAULT_MJPEG_Q,
    });
    let dir = output
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let io = |what| {
        let path = output.to_owned();
        move |source| ConvertError::Io { path, what, source }
    };
    let temp = tempfile::Builder::new()
        .prefix(".vigil-convert-")
        .suffix(&format!(
            ".{}",
            output.extension().and_then(|e| e.to_str()).unwrap_or("tmp")
        ))
        .tempfile_in(dir)
        .map_err(io("creating a temporary file beside it"))?;
    let encode_error = |source| ConvertError::Encode {
        path: output.to_owned(),
        source,
    };
    let mut video =
        output::Output::create(temp.path(), container, (width, height), out_size, quality)
            .map_err(encode_error)?;
    let duration_us = to_us - options.from_us;
    let header = &recording.header;
    let wall = |t: u64| header.started_us + (options.from_us + t) as i64;
    let mut push = |frame: &recorder::Frame, t: u64| {
        if options.burn_in {
            let mut stamped = frame.clone();
            let text = burnin::caption(&header.session, &header.recording, wall(t));
            burnin::stamp(&mut stamped, &text);
            video.push(&stamped, t)
        } else {
            video.push(frame, t)
        }
    };
    // With burn-in, the last picture and its time, so the clock keeps
    // running (a frame a second) while the screen stands still.
    let mut shown: Option<(u64, recorder::Frame)> = None;
    let mut pictures = pictures::Pictures::new(&recording, options.from_us, to_us)?;
    while let Some(picture) = pictures.next_picture() {
        let (t, frame) = picture?;
        if let Some((last_t, last)) = &shown {
            for second in (last_t / SECOND + 1)..=(t.saturating_sub(1) / SECOND) {
                push(last, second * SECOND).map_err(encode_error)?;
            }
        }
        push(frame, t).map_err(encode_error)?;
        if !progress(t, duration_us) {
            return Err(ConvertError::Stopped);
        }
        if options.burn_in {
            shown = Some((t, frame.clone()));
        }
    }
    if let Some((last_t, last)) = &shown {
        for second in (last_t / SECOND + 1)..=(duration_us.saturating_sub(1) / SECOND) {
            push(last, second * SECOND).map_err(encode_error)?;
        }
    }
    let pictures = video.finish(duration_us).map_err(encode_error)?;
    temp.as_file().sync_all().map_err(io("flushing"))?;
    let persisted = if options.force {
        temp.persist(output).map(|_| ())
    } else {
        temp.persist_noclobber(output).map(|_| ())
    };
    persisted.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists => ConvertError::Exists(output.to_owned()),
        _ => ConvertError::Io {
            path: output.to_owned(),
            what: "renaming the finished file into place",
            source: e.error,
        },
    })?;
    let size = std::fs::metadata(output).map_err(io("reading back"))?.len();
    progress(duration_us, duration_us);
    Ok(Converted {
        output: output.to_owned(),
        pictures,
        duration_us,
        size,
        truncated,
    })
}
