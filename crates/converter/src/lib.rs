//! `.vrec` recordings (read through `recorder`) converted to MP4 and AVI
//! with ffmpeg-next, for people with ordinary video players.
//!
//! - [`pictures`]: what a viewer saw, one picture per change, timed.
//! - [`output`]: the video file (encoder, scaler, muxer).
//! - [`burnin`]: the session and wall-clock time stamped on every frame.
//! - [`batch`]: every recording under a directory, several at once.
//!
//! A conversion writes to a temporary file beside the output and renames
//! it only once complete, so an interrupted or failed one leaves nothing
//! behind, and an existing output is replaced only when asked.
#![forbid(unsafe_code)]

pub mod batch;
pub mod burnin;
pub mod output;
pub mod pictures;

use std::path::{Path, PathBuf};

use recorder::vrec::{Ending, Recording, VrecError};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;

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
    /// The recording could not be read.
    Recording(#[from] VrecError),
    #[error("{0}: already exists")]
    /// The output exists and replacing it was not asked for.
    Exists(PathBuf),
    #[error("{0}: already exists, and was not converted from this recording with these options")]
    /// The output exists, made from another recording or with other options.
    Different(PathBuf),
    #[error("{0}: the output must end in .mp4 or .avi")]
    /// The output's name says neither MP4 nor AVI.
    Container(PathBuf),
    #[error("{path}: {what}")]
    /// A file could not be read or written.
    Io {
        /// The file.
        path: PathBuf,
        /// What was being done.
        what: &'static str,
        /// What the system said.
        source: std::io::Error,
    },
    #[error("encoding {path}: {source}")]
    /// FFmpeg failed.
    Encode {
        /// The output.
        path: PathBuf,
        /// What FFmpeg said.
        source: ffmpeg_next::Error,
    },
    #[error("the excerpt would start at {from_us} µs, not before its end ({to_us} µs)")]
    /// The excerpt asked for is empty.
    EmptyRange {
        /// Where the excerpt starts (µs into the recording).
        from_us: u64,
        /// Where it ends.
        to_us: u64,
    },
    #[error("{0}: the recording holds no picture to convert (cut off inside its first screen?)")]
    /// The recording holds no picture.
    Empty(PathBuf),
    #[error("stopped")]
    /// Stopped before the end (Ctrl-C).
    Stopped,
}

/// What a conversion did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Converted {
    /// The video written.
    pub output: PathBuf,
    /// Pictures in it.
    pub pictures: u64,
    /// From its first picture to its end, in microseconds.
    pub duration_us: u64,
    /// Its size in bytes.
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
    progress: impl FnMut(u64, u64) -> bool,
) -> Result<Converted, ConvertError> {
    let container =
        Container::for_path(output).ok_or_else(|| ConvertError::Container(output.to_owned()))?;
    if output.exists() && !options.force {
        return Err(ConvertError::Exists(output.to_owned()));
    }
    let source = Provenance::of(input, options)?;
    convert_from(
        input,
        output,
        container,
        options,
        &source,
        options.force,
        progress,
    )
}

/// What an output was converted from: the input's SHA-256 and the options
/// that shape the picture, kept in the output's `comment` tag so a batch
/// can tell an output it would make again from one it must not touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Provenance {
    source: String,
    /// The input was cut off (a recording still being written, or a
    /// crashed one) when converted.
    pub cut_off: bool,
}

/// How a cut-off input is marked in the tag.
const CUT_OFF: &str = " (cut off)";

impl Provenance {
    /// Hashes `input` (as it is now) and describes `options`.
    pub fn of(input: &Path, options: &Options) -> Result<Self, ConvertError> {
        let (_, sha256) = recorder::vrec::integrity::digest(input)?;
        let Options {
            from_us,
            to_us,
            scale,
            quality,
            force: _,
            burn_in,
        } = options;
        let to = to_us.map_or("end".to_owned(), |t| t.to_string());
        let scale = scale.map_or("source".to_owned(), |(w, h)| format!("{w}:{h}"));
        let quality = quality.map_or("default".to_owned(), |q| q.to_string());
        Ok(Self {
            source: format!(
                "vigil convert of sha256:{sha256} from={from_us}us to={to} scale={scale} \
                 quality={quality} burn-in={burn_in}"
            ),
            cut_off: false,
        })
    }

    /// Whether both name the same input bytes and options (cut off or not).
    pub fn same_source(&self, other: &Self) -> bool {
        self.source == other.source
    }

    /// The provenance an earlier conversion left in `output`, if it is a
    /// video this converter wrote.
    pub fn read(output: &Path) -> Option<Self> {
        ffmpeg_next::init().ok()?;
        let file = ffmpeg_next::format::input(&output).ok()?;
        let comment = file.metadata().get("comment")?.to_owned();
        if !comment.starts_with("vigil convert of sha256:") {
            return None;
        }
        Some(match comment.strip_suffix(CUT_OFF) {
            Some(source) => Self {
                source: source.to_owned(),
                cut_off: true,
            },
            None => Self {
                source: comment.to_owned(),
                cut_off: false,
            },
        })
    }

    fn tag(&self) -> String {
        let mark = if self.cut_off { CUT_OFF } else { "" };
        format!("{}{mark}", self.source)
    }
}

/// [`convert`] once the container is known and the input hashed; an
/// existing output is replaced only if `replace`.
fn convert_from(
    input: &Path,
    output: &Path,
    container: Container,
    options: &Options,
    source: &Provenance,
    replace: bool,
    mut progress: impl FnMut(u64, u64) -> bool,
) -> Result<Converted, ConvertError> {
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
    let header = &recording.header;
    let title = match header.session.as_str() {
        "" => format!("Vigil recording {}", header.recording),
        session => format!("Vigil session {session}"),
    };
    let started = OffsetDateTime::from_unix_timestamp_nanos(
        i128::from(header.started_us + options.from_us as i64) * 1000,
    )
    .ok()
    .and_then(|t| t.format(&Rfc3339).ok())
    .unwrap_or_default();
    let comment = Provenance {
        cut_off: truncated.is_some(),
        ..source.clone()
    }
    .tag();
    let mut tags = vec![("title", title.as_str()), ("comment", comment.as_str())];
    if !started.is_empty() {
        tags.push(("creation_time", started.as_str()));
    }
    let mut video = output::Output::create(
        temp.path(),
        container,
        (width, height),
        out_size,
        quality,
        &tags,
    )
    .map_err(encode_error)?;
    let duration_us = to_us - options.from_us;
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
    // Each audit marker in the excerpt opens a chapter that lasts until the
    // next. Chapters cover the whole timeline (MP4 chapter tracks have no
    // gaps), so one stands for the stretch before the first marker.
    let mut chapters: Vec<(u64, String)> = recording
        .index
        .markers
        .iter()
        .filter(|m| (options.from_us..to_us).contains(&m.timestamp_us))
        .map(|m| {
            (
                m.timestamp_us - options.from_us,
                chapter_title(&m.kind, &m.text),
            )
        })
        .collect();
    if chapters.first().is_some_and(|(start, _)| *start > 0) {
        chapters.insert(0, (0, "start".to_owned()));
    }
    for (n, (start, title)) in chapters.iter().enumerate() {
        let end = chapters.get(n + 1).map_or(duration_us, |next| next.0);
        video.chapter(*start, end, title).map_err(encode_error)?;
    }
    let pictures = video.finish(duration_us).map_err(encode_error)?;
    temp.as_file().sync_all().map_err(io("flushing"))?;
    let persisted = if replace {
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

/// A chapter's title: the audit event and its line, short enough for a
/// player's menu (the Nero list keeps 255 bytes).
fn chapter_title(kind: &str, text: &str) -> String {
    let mut title = format!("{kind}: {text}");
    if title.len() > 200 {
        let mut cut = 197;
        while !title.is_char_boundary(cut) {
            cut -= 1;
        }
        title.truncate(cut);
        title.push_str("...");
    }
    title
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder::codec::Encoder;
    use recorder::synthetic::Synthetic;
    use recorder::vrec::{Header, Marker, Writer};

    /// A 10 s recording of a synthetic screen changing twice a second,
    /// with an audit marker at each of `markers` (µs).
    fn recording(path: &Path, markers: &[u64]) {
        let header = Header {
            session: "s-1".into(),
            technician: "ann@example.com".into(),
            ..Header::new(160, 100, "r-1", 1_700_000_000_000_000)
        };
        let mut writer = Writer::create(path, header).unwrap();
        let (mut source, mut encoder) = (Synthetic::new(160, 100, 3), Encoder::new());
        for i in 0..20 {
            let t = i * SECOND / 2;
            if let Some(update) = encoder.encode(&source.frame(), t, false) {
                writer.update(&update).unwrap();
            }
            for (n, _) in markers.iter().enumerate().filter(|(_, &m)| m == t) {
                let marker = Marker {
                    timestamp_us: t,
                    kind: "chat.message".into(),
                    text: format!("message {n}"),
                };
                writer.marker(&marker).unwrap();
            }
        }
        writer.finish(10 * SECOND).unwrap();
    }

    /// The chapters of `video`: start and end (ms) and title.
    fn chapters(video: &Path) -> Vec<(i64, i64, String)> {
        let file = ffmpeg_next::format::input(&video).unwrap();
        file.chapters()
            .map(|c| {
                let ms = |t: i64| {
                    let ffmpeg_next::Rational(num, den) = c.time_base();
                    t * 1000 * i64::from(num) / i64::from(den)
                };
                let title = c.metadata().get("title").unwrap_or("").to_owned();
                (ms(c.start()), ms(c.end()), title)
            })
            .collect()
    }

    #[test]
    fn markers_in_the_excerpt_become_chapters() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("a.vrec");
        recording(&input, &[SECOND, 4 * SECOND, 8 * SECOND]);
        let whole = dir.path().join("whole.mp4");
        convert(&input, &whole, &Options::default(), |_, _| true).unwrap();
        let found = chapters(&whole);
        let spans: Vec<_> = found.iter().map(|(s, e, _)| (*s, *e)).collect();
        assert_eq!(
            spans,
            [(0, 1000), (1000, 4000), (4000, 8000), (8000, 10_000)]
        );
        assert_eq!(found[0].2, "start");
        assert_eq!(found[2].2, "chat.message: message 1");
        // An excerpt keeps the markers inside it, counted from its start.
        let part = dir.path().join("part.mp4");
        let excerpt = Options {
            from_us: 3 * SECOND,
            to_us: Some(9 * SECOND),
            ..Options::default()
        };
        convert(&input, &part, &excerpt, |_, _| true).unwrap();
        let spans: Vec<_> = chapters(&part).iter().map(|(s, e, _)| (*s, *e)).collect();
        assert_eq!(spans, [(0, 1000), (1000, 5000), (5000, 6000)]);
        // AVI has no chapters: the markers are left out, the video is made.
        let avi = dir.path().join("a.avi");
        convert(&input, &avi, &Options::default(), |_, _| true).unwrap();
        assert!(chapters(&avi).is_empty());
    }

    #[test]
    fn the_output_names_its_source_and_options() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a.vrec"), dir.path().join("b.vrec"));
        recording(&a, &[]);
        recording(&b, &[SECOND]);
        let video = dir.path().join("a.avi");
        let options = Options::default();
        convert(&a, &video, &options, |_, _| true).unwrap();
        let left = Provenance::read(&video).expect("a provenance tag");
        assert_eq!(left, Provenance::of(&a, &options).unwrap());
        // Another recording, or other options, would make another video.
        assert_ne!(left, Provenance::of(&b, &options).unwrap());
        let scaled = Options {
            scale: Some((80, 50)),
            ..Options::default()
        };
        assert_ne!(left, Provenance::of(&a, &scaled).unwrap());
        // Forcing a rewrite does not change what the output is.
        let forced = Options {
            force: true,
            ..Options::default()
        };
        assert_eq!(left, Provenance::of(&a, &forced).unwrap());
        // A file this converter did not write has no provenance.
        assert_eq!(Provenance::read(&a), None);
    }
}
