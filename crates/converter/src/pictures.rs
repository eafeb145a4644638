//! What a viewer would have seen: the recording's screens with the pointer
//! drawn in, one picture each time either changes, with its time. Idle
//! stretches produce nothing, so a screen that changes once a minute is one
//! picture a minute.

use recorder::codec::Decoder;
use recorder::cursor::{Cursor, Shape};
use recorder::vrec::reader::Entries;
use recorder::vrec::{Entry, Recording, VrecError};
use recorder::Frame;

/// One picture and when it appears, in µs from the start of the excerpt.
#[derive(Debug)]
pub struct Picture {
    pub timestamp_us: u64,
    pub frame: Frame,
}

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
        })
    }

    fn picture(&self, timestamp_us: u64) -> Option<Picture> {
        let mut frame = self.decoder.frame()?.clone();
        if let (Some(c), Some(shape)) = (&self.cursor, &self.shape) {
            if c.visible {
                shape.draw(&mut frame, c.x, c.y);
            }
        }
        Some(Picture {
            timestamp_us: timestamp_us.saturating_sub(self.from_us),
            frame,
        })
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

impl Iterator for Pictures {
    type Item = Result<Picture, VrecError>;

    fn next(&mut self) -> Option<Self::Item> {
        while !self.done {
            let entry = match self.stash.take().map(Ok).or_else(|| self.entries.next()) {
                Some(Ok(entry)) => entry,
                Some(Err(e)) => {
                    self.done = true;
                    return Some(Err(e));
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
                    if let Some(p) = self.picture(self.from_us) {
                        return Some(Ok(p));
                    }
                    continue;
                }
            }
            match self.apply(entry) {
                Err(e) => {
                    self.done = true;
                    return Some(Err(e));
                }
                Ok(Some(t)) if t < self.from_us => self.pending = true,
                Ok(Some(t)) => {
                    if let Some(p) = self.picture(t) {
                        return Some(Ok(p));
                    }
                }
                Ok(None) => {}
            }
        }
        self.done = true;
        if std::mem::take(&mut self.pending) {
            return self.picture(self.from_us).map(Ok);
        }
        None
    }
}
