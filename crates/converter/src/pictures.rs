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
    /// then) up to `to_us`.
    pub fn new(recording: &Recording, from_us: u64, to_us: u64) -> Result<Self, VrecError> {
        Ok(Self {
            path: recording.path().display().to_string(),
            entries: recording.entries(None)?,
            stash: None,
            decoder: Decoder::new(),
            cursor: None,
            shape: None,
            from_us,
            to_us,
            pending: false,
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
                Ok(Some(t)) => return Ok(Some(t)),
                Ok(None) => {}
            }
        }
        self.done = true;
        Ok(std::mem::take(&mut self.pending).then_some(self.from_us))
    }
}
