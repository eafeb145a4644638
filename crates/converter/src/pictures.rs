//! What a viewer would have seen: the recording's screens with the pointer
//! drawn in, one picture each time either changes, with its time. Idle
//! stretches produce nothing, so a screen that changes once a minute is one
//! picture a minute.

use recorder::codec::Decoder;
use recorder::cursor::{Cursor, Shape};
use recorder::vrec::reader::Entries;
use recorder::vrec::{Entry, Recording, VrecError};
use recorder::Frame;

/// The pictures of a recording between two times.
pub struct Pictures {
    path: String,
    entries: Entries,
    stash: Option<Entry>,
    decoder: Decoder,
    cursor: Option<Cursor>,
    shape: Option<Shape>,
    from_us: u64,
    to_us: u64,
    /// The screen changed before `from_us`: it is shown at `from_us`.
    pending: bool,
    done: bool,
    /// The screen with the pointer drawn in (reused: a 1080p frame is 8 MB).
    composite: Frame,
}

impl std::fmt::Debug for Pictures {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pictures")
            .field("from_us", &self.from_us)
            .field("to_us", &self.to_us)
            .finish_non_exhaustive()
    }
}

impl Pictures {
    /// The pictures of `recording` from `from_us` (the screen as it was
    /// then) up to `to_us`. Reading starts at the last key point before
    /// `from_us`, so an excerpt from late in a long recording starts at once.
    pub fn new(recording: &Recording, from_us: u64, to_us: u64) -> Result<Self, VrecError> {
        let start = recording.resume(from_us)?;
        Ok(Self {
            path: recording.path().display().to_string(),
            entries: start.entries,
            stash: None,
            // A key point's screen is before `from_us`: shown then, unless
            // it changes first.
            pending: start.decoder.frame().is_some(),
            decoder: start.decoder,
            cursor: start.cursor,
            shape: start.shape.and_then(|c| c.shape),
            from_us,
            to_us,
            done: false,
            composite: Frame::black(1, 1),
        })
    }

    /// The picture now, with the time it appears (from the excerpt's start).
    fn picture(&mut self, timestamp_us: u64) -> Option<(u64, &Frame)> {
        let screen = self.decoder.frame()?;
        let t = timestamp_us.saturating_sub(self.from_us);
        match (&self.cursor, &self.shape) {
            (Some(c), Some(shape)) if c.visible => {
                if self.composite.pixels.len() == screen.pixels.len() {
                    self.composite.pixels.copy_from_slice(&screen.pixels);
                    (self.composite.width, self.composite.height) = (screen.width, screen.height);
                } else {
                    self.composite = screen.clone();
                }
                shape.draw(&mut self.composite, c.x, c.y);
                Some((t, &self.composite))
            }
            _ => Some((t, screen)),
        }
    }

    /// Applies an entry; returns its time if it changed the picture.
    fn apply(&mut self, entry: Entry) -> Result<Option<u64>, VrecError> {
        match entry {
            Entry::Update { offset, bytes } => {
                let at = |source| VrecError::Codec {
                    path: self.path.clone(),
                    what: format!("update at byte {offset}"),
                    source,
                };
                let t = recorder::codec::info(&bytes).map_err(at)?.timestamp_us;
                self.decoder.decode(&bytes).map_err(at)?;
                Ok(Some(t))
            }
            Entry::Cursor(c) => {
                let t = c.timestamp_us;
                if let Some(shape) = &c.shape {
                    self.shape = Some(shape.clone());
                }
                self.cursor = Some(c);
                Ok(self.shape.is_some().then_some(t))
            }
            Entry::Marker(_) | Entry::KeyPoint { .. } => Ok(None),
        }
    }
}

fn entry_time(entry: &Entry) -> Option<u64> {
    match entry {
        Entry::Update { bytes, .. } => recorder::codec::info(bytes).ok().map(|h| h.timestamp_us),
        Entry::Cursor(c) => Some(c.timestamp_us),
        _ => None,
    }
}

impl Pictures {
    /// The next picture and its time, until the excerpt ends. The frame is
    /// lent, not copied: it is valid until the next call.
    pub fn next_picture(&mut self) -> Option<Result<(u64, &Frame), VrecError>> {
        match self.advance() {
            Ok(Some(t)) => self.picture(t).map(Ok),
            Ok(None) => None,
            Err(e) => Some(Err(e)),
        }
    }

    /// Reads on to the next change; returns the time of the picture to show.
    fn advance(&mut self) -> Result<Option<u64>, VrecError> {
        while !self.done {
            let entry = match self.stash.take().map(Ok).or_else(|| self.entries.next()) {
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => break,
            };
            if let Some(t) = entry_time(&entry) {
                if t > self.to_us {
                    break;
                }
                // The screen as it was at `from`, before this later change.
                if self.pending && t > self.from_us {
                    self.pending = false;
                    self.stash = Some(entry);
                    return Ok(Some(self.from_us));
                }
            }
            match self.apply(entry) {
                Err(e) => {
                    self.done = true;
                    return Err(e);
                }
                Ok(Some(t)) if t < self.from_us => self.pending = true,
                Ok(Some(t)) => {
                    self.pending = false;
                    return Ok(Some(t));
                }
                Ok(None) => {}
            }
        }
        self.done = true;
        Ok(std::mem::take(&mut self.pending).then_some(self.from_us))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use recorder::codec::Encoder;
    use recorder::synthetic::Synthetic;
    use recorder::vrec::{Header, Writer};

    const SECOND: u64 = 1_000_000;

    /// 15 s of a synthetic screen changing up to twice a second (a key
    /// point falls after 10 s), the pointer set at 1.5 s and moved each 2 s.
    fn recording(path: &std::path::Path) {
        let header = Header::new(96, 64, "r", 0);
        let mut writer = Writer::create(path, header).unwrap();
        let (mut source, mut encoder) = (Synthetic::new(96, 64, 5), Encoder::new());
        let shape = Shape {
            serial: 1,
            width: 4,
            height: 4,
            hot_x: 0,
            hot_y: 0,
            pixels: [255, 0, 255, 255].repeat(16),
        };
        for i in 0..30 {
            let t = i * SECOND / 2;
            if let Some(update) = encoder.encode(&source.frame(), t, false) {
                writer.update(&update).unwrap();
            }
            if i % 4 == 3 {
                let cursor = Cursor {
                    timestamp_us: t,
                    x: 3 * i as i32,
                    y: 20,
                    visible: true,
                    shape: (i == 3).then(|| shape.clone()),
                };
                writer.cursor(&cursor).unwrap();
            }
        }
        writer.finish(15 * SECOND).unwrap();
    }

    fn all(recording: &Recording, from_us: u64, to_us: u64) -> Vec<(u64, Vec<u8>)> {
        let mut pictures = Pictures::new(recording, from_us, to_us).unwrap();
        let mut out = Vec::new();
        while let Some(picture) = pictures.next_picture() {
            let (t, frame) = picture.unwrap();
            out.push((t, frame.pixels.clone()));
        }
        out
    }

    #[test]
    fn an_excerpt_from_a_key_point_shows_what_the_whole_shows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.vrec");
        recording(&path);
        let recording = Recording::open(&path).unwrap();
        let whole = all(&recording, 0, 15 * SECOND);
        assert!(whole.len() > 10, "{} pictures", whole.len());
        // Just after the key point; the pointer last moved before it.
        let key = recording
            .index
            .seek
            .iter()
            .map(|p| p.timestamp_us)
            .max()
            .unwrap();
        assert!(
            (10 * SECOND..11 * SECOND).contains(&key),
            "key point at {key} µs"
        );
        let from = key + SECOND / 4;
        // The excerpt starts from a restored key point, not the beginning.
        assert!(recording.resume(from).unwrap().decoder.frame().is_some());
        let excerpt = all(&recording, from, 15 * SECOND);
        // The screen (and pointer) as they were at `from`, shown at once...
        let then = whole.iter().rev().find(|(t, _)| *t <= from).unwrap();
        assert_eq!(excerpt[0], (0, then.1.clone()));
        // ...then every later change, at the same moment.
        let later: Vec<_> = whole
            .iter()
            .filter(|(t, _)| *t > from)
            .map(|(t, p)| (t - from, p.clone()))
            .collect();
        assert_eq!(excerpt[1..], later[..]);
    }
}
