//! `.vrec` session recordings: the codec's updates stored unchanged in
//! checksummed chunks, with key points for seeking, audit markers on the
//! timeline, and an index at the end. docs/vrec.md is the format's reference.
//!
//! - [`chunk`]: the framing every part of the file shares.
//! - [`keypoint`]: what a seek needs, by reference to tiles already stored.
//! - [`writer`]: appends as a session runs; a kill at any byte leaves a
//!   readable prefix.
//! - [`reader`]: opens finished and cut-off files alike, seeks, streams.
//! - [`integrity`]: checks a file through and through; cuts a damaged
//!   tail and rewrites the index.

pub mod chunk;
pub mod integrity;
pub mod keypoint;
pub mod reader;
pub mod writer;

use serde::{Deserialize, Serialize};

pub use reader::{Ending, Entry, Recording};
pub use writer::{record, Finished, RecordError, Recorded, Writer};

/// The format version this build writes and reads.
pub const FORMAT: u32 = 1;
/// The screen codec the updates are in.
pub const CODEC: &str = "vigil-tiles/1";

/// What a recording is of; the first chunk.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// The file format's version.
    pub format: u32,
    /// The screen codec's name and version.
    pub codec: String,
    /// Screen width in pixels.
    pub width: u32,
    /// Screen height in pixels.
    pub height: u32,
    /// This recording's own id, named by its audit events.
    pub recording: String,
    /// The session GUID (empty for a recording made from a file).
    pub session: String,
    /// The technician's account (empty for a recording made from a file).
    pub technician: String,
    /// Wall-clock start, microseconds since the Unix epoch; update
    /// timestamps count from here.
    pub started_us: i64,
}

impl Header {
    /// A new recording's header, in this build's format and codec, for no
    /// session (a session's recording sets `session` and `technician`).
    pub fn new(width: u32, height: u32, recording: impl Into<String>, started_us: i64) -> Self {
        Self {
            format: FORMAT,
            codec: CODEC.into(),
            width,
            height,
            recording: recording.into(),
            session: String::new(),
            technician: String::new(),
            started_us,
        }
    }
}

/// An audit event on the recording's timeline.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Marker {
    /// Microseconds since the recording started.
    pub timestamp_us: u64,
    /// The audit event's type name, e.g. `chat.message`.
    pub kind: String,
    /// A line a person can read.
    pub text: String,
}

/// A recording could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum VrecError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The file does not start like a recording.
    #[error("{0}: not a .vrec recording (no VREC magic at the start)")]
    NotARecording(String),
    /// A format version this build cannot read.
    #[error("{path}: format {found} is not supported (this build reads {FORMAT})")]
    Format {
        /// The file.
        path: String,
        /// The version it says.
        found: u32,
    },
    /// Bytes that are not what the format allows.
    #[error("{path}: corrupt at byte {offset}: {what}")]
    Corrupt {
        /// The file.
        path: String,
        /// Where.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A screen update that does not decode.
    #[error("{path}: {what}")]
    Codec {
        /// The file.
        path: String,
        /// Which update.
        what: String,
        /// Why it does not decode.
        source: crate::codec::CodecError,
    },
    /// A recording is never written over.
    #[error("{path}: already exists")]
    Exists {
        /// The file.
        path: String,
    },
    /// The frame asked for is not in the recording.
    #[error("{path}: no frame {what}")]
    NoSuchFrame {
        /// The file.
        path: String,
        /// The frame asked for.
        what: String,
    },
    /// An update of another screen size than the recording's
    /// (recording width and height, update width and height).
    #[error("recording is {0}x{1}, the update is {2}x{3}")]
    SizeMismatch(u32, u32, u16, u16),
}

fn io_error(path: &std::path::Path) -> impl FnOnce(std::io::Error) -> VrecError + '_ {
    move |source| VrecError::Io {
        path: path.display().to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::reader::Target;
    use super::*;
    use crate::codec::Encoder;
    use crate::cursor::Cursor;
    use crate::synthetic::Synthetic;
    use crate::Frame;

    fn header(width: u32, height: u32) -> Header {
        Header {
            session: "s-1".into(),
            technician: "ann@example.com".into(),
            ..Header::new(width, height, "r-1", 1_700_000_000_000_000)
        }
    }

    /// Records `n` synthetic frames 1 s apart (so key points occur) and
    /// returns the frames each update showed.
    fn record(path: &std::path::Path, n: u64) -> (Writer, Vec<(u64, Frame)>) {
        let mut source = Synthetic::new(160, 100, 11);
        let mut writer = Writer::create(path, header(160, 100)).unwrap();
        let mut enc = Encoder::new();
        let mut shown = Vec::new();
        for i in 0..n {
            let frame = source.frame();
            let t = i * 1_000_000;
            if let Some(u) = enc.encode(&frame, t, false) {
                writer.update(&u).unwrap();
                shown.push((t, frame));
            }
            if i % 4 == 0 {
                writer
                    .cursor(&Cursor {
                        timestamp_us: t,
                        x: i as i32,
                        y: 5,
                        visible: true,
                        shape: None,
                    })
                    .unwrap();
            }
            if i == 7 {
                writer
                    .marker(&Marker {
                        timestamp_us: t,
                        kind: "chat.message".into(),
                        text: "hi".into(),
                    })
                    .unwrap();
            }
        }
        (writer, shown)
    }

    #[test]
    fn every_frame_is_found_by_index_and_time() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vrec");
        let (writer, shown) = record(&path, 40);
        let done = writer.finish(40_000_000).unwrap();
        let rec = Recording::open(&path).unwrap();
        assert_eq!(rec.ending, Ending::Complete);
        assert_eq!(rec.index.frames, shown.len() as u64);
        assert_eq!(rec.index.frames, done.frames);
        assert!(rec.index.seek.len() > 2, "key points were written");
        assert_eq!(rec.index.markers.len(), 1);
        for (n, (t, frame)) in shown.iter().enumerate() {
            let by_index = rec.frame(Target::Index(n as u64)).unwrap();
            assert_eq!(
                (&by_index.frame, by_index.number, by_index.timestamp_us),
                (frame, n as u64, *t)
            );
            let by_time = rec.frame(Target::Time(t + 500_000)).unwrap();
            assert_eq!(&by_time.frame, frame, "at {t} µs");
        }
        assert!(rec.frame(Target::Index(shown.len() as u64)).is_err());
        assert!(integrity::check(&path).unwrap().intact());
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(done.size, bytes.len() as u64);
        assert_eq!(done.sha256, integrity::check(&path).unwrap().sha256);
    }

    #[test]
    fn a_recording_cut_at_any_byte_reads_up_to_its_last_whole_chunk() {
        let dir = tempfile::tempdir().unwrap();
        let full = dir.path().join("full.vrec");
        let (writer, shown) = record(&full, 30);
        // Unfinished, as a killed console leaves it: no index.
        let data_end = writer.size();
        drop(writer);
        let bytes = std::fs::read(&full).unwrap();
        let mut state = 0x1234_5678u64;
        let mut cuts: Vec<u64> = (0..40)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                (state >> 33) % data_end
            })
            .collect();
        cuts.extend([data_end, data_end - 1, 60]);
        // Each cut once: a second repair of the same name would find the
        // first one's `.tail` and (rightly) refuse to overwrite it.
        cuts.sort_unstable();
        cuts.dedup();
        for cut in cuts {
            let path = dir.path().join(format!("cut-{cut}.vrec"));
            std::fs::write(&path, &bytes[..cut as usize]).unwrap();
            let rec = match Recording::open(&path) {
                Ok(rec) => rec,
                // Cut inside the magic or header: nothing to read, and said so.
                Err(VrecError::NotARecording(_) | VrecError::Corrupt { .. }) if cut < 200 => {
                    continue
                }
                Err(e) => panic!("cut at {cut}: {e}"),
            };
            assert!(
                matches!(rec.ending, Ending::Truncated { .. }),
                "cut at {cut}"
            );
            let frames = rec.index.frames as usize;
            for n in [0, frames / 2, frames.saturating_sub(1)] {
                if n < frames {
                    assert_eq!(
                        rec.frame(Target::Index(n as u64)).unwrap().frame,
                        shown[n].1,
                        "cut {cut} frame {n}"
                    );
                }
            }
            let repaired = integrity::repair(&path).unwrap();
            assert_eq!(repaired.frames as usize, frames);
            assert_eq!(repaired.tail.is_some(), repaired.dropped > 0);
            let again = Recording::open(&path).unwrap();
            assert_eq!(again.ending, Ending::Complete, "cut at {cut} after repair");
            assert_eq!(again.index.frames as usize, frames);
            assert!(integrity::repair(&path).unwrap().already_complete);
        }
    }

    #[test]
    fn an_altered_byte_is_found() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vrec");
        let (writer, _) = record(&path, 20);
        writer.finish(20_000_000).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        let good = integrity::check(&path).unwrap();
        let logged = integrity::Logged {
            started: true,
            stopped: Some((good.size, good.sha256.clone())),
        };
        assert_eq!(
            integrity::judge(&good, Some(&logged)),
            integrity::Verdict::Complete
        );
        for at in [100, bytes.len() / 2, bytes.len() - 30] {
            let mut bad = bytes.clone();
            bad[at] ^= 1;
            std::fs::write(&path, &bad).unwrap();
            let check = integrity::check(&path);
            let intact = check.as_ref().is_ok_and(|c| c.intact());
            assert!(!intact, "flipped byte {at} unnoticed");
            if let Ok(check) = check {
                let verdict = integrity::judge(&check, Some(&logged));
                assert!(
                    matches!(verdict, integrity::Verdict::Altered(_)),
                    "{verdict:?}"
                );
            }
        }
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        let cut = integrity::check(&path).unwrap();
        assert!(matches!(
            integrity::judge(&cut, Some(&logged)),
            integrity::Verdict::Truncated(_)
        ));
        let never_stopped = integrity::Logged {
            started: true,
            stopped: None,
        };
        assert!(matches!(
            integrity::judge(&cut, Some(&never_stopped)),
            integrity::Verdict::Truncated(_)
        ));
        assert!(matches!(
            integrity::judge(&cut, Some(&integrity::Logged::default())),
            integrity::Verdict::Unlogged(_)
        ));
        let mut zeroed = bytes[..bytes.len() / 2].to_vec();
        zeroed.extend(std::iter::repeat_n(0u8, 4096));
        std::fs::write(&path, &zeroed).unwrap();
        let power_cut = integrity::check(&path).unwrap();
        assert!(
            !power_cut.scan.damaged,
            "zeros after a power cut are a cut, not damage"
        );
    }

    #[test]
    fn bad_files_get_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("notes.txt");
        std::fs::write(&text, "not a recording at all").unwrap();
        assert!(matches!(
            Recording::open(&text),
            Err(VrecError::NotARecording(_))
        ));
        let empty = dir.path().join("empty.vrec");
        std::fs::write(&empty, "").unwrap();
        assert!(matches!(
            Recording::open(&empty),
            Err(VrecError::NotARecording(_))
        ));
        let path = dir.path().join("a.vrec");
        record(&path, 3).0.finish(3_000_000).unwrap();
        assert!(matches!(
            Writer::create(&path, header(160, 100)),
            Err(VrecError::Exists { .. })
        ));
        let mut w = Writer::create(&dir.path().join("b.vrec"), header(160, 100)).unwrap();
        let wrong = Encoder::new()
            .encode(&Frame::black(64, 64), 0, true)
            .unwrap();
        assert!(matches!(w.update(&wrong), Err(VrecError::SizeMismatch(..))));
        let delta_first = {
            let mut enc = Encoder::new();
            enc.encode(&Frame::black(160, 100), 0, true);
            let mut f = Frame::black(160, 100);
            f.fill(0, 0, 10, 10, [1, 2, 3, 255]);
            enc.encode(&f, 1, false).unwrap()
        };
        assert!(matches!(
            w.update(&delta_first),
            Err(VrecError::Codec { .. })
        ));
    }
}
