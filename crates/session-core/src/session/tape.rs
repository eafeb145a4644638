//! The console's recording of a session: the screen updates exactly as
//! received, the pointer, and a marker for every audit event the console
//! witnesses, written into a `.vrec` file as they come. A recording has its
//! own timeline: it starts at 0 at its first screen, whenever in the
//! session that is (the updates keep every byte but their timestamp, which
//! is counted from the recording's start instead of the stream's).

use std::path::PathBuf;

use audit_event::event::{RecordingStarted, RecordingStopped};
use audit_event::EventKind;
use recorder::codec;
use recorder::cursor::Cursor;
use recorder::vrec::{Finished, Header, Marker, VrecError, Writer};
use uuid::Uuid;

/// Whether and where the console records.
#[derive(Debug, Default)]
pub(crate) enum Tape {
    #[default]
    Off,
    /// Asked for; starts with the next key update (the screen size is known then).
    Armed {
        path: PathBuf,
        technician: String,
        session: Uuid,
        /// Events noted before the first screen: marked at the recording's start.
        early: Vec<(String, String)>,
    },
    On {
        writer: Box<Writer>,
        recording: String,
        path: PathBuf,
        /// Wall-clock µs at which the recording began (its time 0).
        origin_us: i64,
        /// The stream's timestamp of the recording's first update: stream
        /// timestamps are recorded less this.
        base_us: u64,
    },
}

impl Tape {
    /// Records into `path` from the next key update on.
    pub fn arm(
        &mut self,
        path: PathBuf,
        technician: &str,
        session: Uuid,
    ) -> Result<(), super::SessionError> {
        match self {
            Tape::Off => {
                *self = Tape::Armed {
                    path,
                    technician: technician.to_owned(),
                    session,
                    early: Vec::new(),
                };
                Ok(())
            }
            _ => Err(super::SessionError::AlreadyRecording),
        }
    }

    /// Whether a recording is on or waiting for its first key update.
    pub fn active(&self) -> bool {
        !matches!(self, Tape::Off)
    }

    /// The recording's file and start, while one is on or armed.
    pub fn status(&self) -> Option<super::console::RecordingStatus> {
        match self {
            Tape::Off => None,
            Tape::Armed { path, .. } => Some(super::console::RecordingStatus {
                path: path.display().to_string(),
                started_us: None,
            }),
            Tape::On {
                path, origin_us, ..
            } => Some(super::console::RecordingStatus {
                path: path.display().to_string(),
                started_us: Some(*origin_us),
            }),
        }
    }

    /// Writes an update as received; returns `recording.started` when this
    /// update began the recording.
    pub fn update(&mut self, update: &[u8]) -> Result<Option<EventKind>, VrecError> {
        let started = match std::mem::take(self) {
            Tape::Armed {
                path,
                technician,
                session,
                early,
            } => match codec::info(update) {
                Ok(head) if head.key => {
                    let recording = Uuid::new_v4().to_string();
                    let origin_us = audit_event::time_us::now();
                    let header = Header {
                        session: session.to_string(),
                        technician,
                        ..Header::new(
                            head.width.into(),
                            head.height.into(),
                            recording.clone(),
                            origin_us,
                        )
                    };
                    let mut writer = Writer::create(&path, header)?;
                    for (kind, text) in early {
                        writer.marker(&Marker {
                            timestamp_us: 0,
                            kind,
                            text,
                        })?;
                    }
                    let event = EventKind::RecordingStarted(RecordingStarted {
                        recording: recording.clone(),
                        path: path.display().to_string(),
                    });
                    *self = Tape::On {
                        writer: Box::new(writer),
                        recording,
                        path,
                        origin_us,
                        base_us: head.timestamp_us,
                    };
                    Some(event)
                }
                _ => {
                    *self = Tape::Armed {
                        path,
                        technician,
                        session,
                        early,
                    };
                    return Ok(None);
                }
            },
            other => {
                *self = other;
                None
            }
        };
        if let Tape::On {
            writer, base_us, ..
        } = self
        {
            writer.update(&codec::retimed(update, *base_us))?;
        }
        Ok(started)
    }

    /// Writes a cursor update as received.
    pub fn cursor(&mut self, cursor: &Cursor) -> Result<(), VrecError> {
        match self {
            Tape::On {
                writer, base_us, ..
            } => writer.cursor(&Cursor {
                timestamp_us: cursor.timestamp_us.saturating_sub(*base_us),
                ..cursor.clone()
            }),
            _ => Ok(()),
        }
    }

    /// Puts an audit event on the timeline.
    pub fn mark(&mut self, kind: &EventKind) -> Result<(), VrecError> {
        let payload = kind
            .payload_json()
            .expect("an event payload: serialising this plain struct (no maps with non-string keys, no custom impls) cannot fail");
        self.note(kind.type_name(), payload)
    }

    /// Puts an event another party audits (e.g. the applet's consent) on the timeline.
    pub fn note(&mut self, kind: &str, text: String) -> Result<(), VrecError> {
        if let Tape::Armed { early, .. } = self {
            early.push((kind.to_owned(), text));
            return Ok(());
        }
        let Tape::On {
            writer, origin_us, ..
        } = self
        else {
            return Ok(());
        };
        let marker = Marker {
            timestamp_us: (audit_event::time_us::now() - *origin_us).max(0) as u64,
            kind: kind.to_owned(),
            text,
        };
        writer.marker(&marker)
    }

    /// Finishes the recording; returns it and its `recording.stopped` event.
    pub fn stop(&mut self) -> Result<Option<(Finished, EventKind)>, VrecError> {
        let Tape::On {
            writer,
            recording,
            path,
            origin_us,
            ..
        } = std::mem::take(self)
        else {
            return Ok(None);
        };
        let ended = (audit_event::time_us::now() - origin_us).max(0) as u64;
        let finished = writer.finish(ended)?;
        let event = EventKind::RecordingStopped(RecordingStopped {
            recording,
            path: path.display().to_string(),
            size: finished.size,
            sha256: finished.sha256.clone(),
        });
        Ok(Some((finished, event)))
    }
}
