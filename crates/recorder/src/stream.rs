//! The live screen stream's moving parts, independent of the transport:
//! updates cut into fragments that fit the session's frames and put back
//! together, and a window of unacknowledged updates. The sender captures
//! a new frame only when the window has room, so a slow link never builds
//! a queue: it skips straight to the screen as it is when room comes.

use crate::codec::Encoder;
use crate::{Source, SourceError};

/// Fragment header: u32 sequence number, u8 flags (bit 0 first, bit 1 last).
pub const FRAGMENT_HEADER: usize = 5;
/// Updates sent and not yet acknowledged, at most.
pub const WINDOW: u32 = 2;

/// A fragment could not be taken.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// Fewer bytes than a fragment's header.
    #[error("screen fragment shorter than its header")]
    Short,
    /// A fragment of another update before the current one was whole.
    #[error("screen fragment of update {got} while update {expected} is incomplete")]
    Interleaved {
        /// The update being reassembled.
        expected: u32,
        /// The update the fragment belongs to.
        got: u32,
    },
    /// A continuation without a first fragment.
    #[error("screen fragment continues an update that never began")]
    NoStart,
    /// The fragments add up to more than an update may be.
    #[error("screen update larger than {0} bytes")]
    TooLarge(usize),
}

/// `update`, numbered `seq`, cut into fragments of at most `max` bytes each (header included).
pub fn fragments(seq: u32, update: &[u8], max: usize) -> Vec<Vec<u8>> {
    let room = max.saturating_sub(FRAGMENT_HEADER).max(1);
    let pieces: Vec<&[u8]> = if update.is_empty() {
        vec![&[]]
    } else {
        update.chunks(room).collect()
    };
    let n = pieces.len();
    pieces
        .into_iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut out = Vec::with_capacity(FRAGMENT_HEADER + piece.len());
            out.extend_from_slice(&seq.to_le_bytes());
            out.push(u8::from(i == 0) | (u8::from(i + 1 == n) << 1));
            out.extend_from_slice(piece);
            out
        })
        .collect()
}

/// Puts fragments back together, one update at a time.
#[derive(Debug)]
pub struct Reassembler {
    current: Option<(u32, Vec<u8>)>,
    limit: usize,
}

impl Reassembler {
    /// Refuses updates larger than `limit` bytes.
    pub fn new(limit: usize) -> Self {
        Self {
            current: None,
            limit,
        }
    }

    /// Takes one fragment; returns the update it completes, with its number.
    pub fn push(&mut self, fragment: &[u8]) -> Result<Option<(u32, Vec<u8>)>, StreamError> {
        if fragment.len() < FRAGMENT_HEADER {
            return Err(StreamError::Short);
        }
        let seq = u32::from_le_bytes([fragment[0], fragment[1], fragment[2], fragment[3]]);
        let (first, last) = (fragment[4] & 1 != 0, fragment[4] & 2 != 0);
        let data = &fragment[FRAGMENT_HEADER..];
        match (&mut self.current, first) {
            (Some((expected, _)), true) => {
                let expected = *expected;
                self.current = None;
                return Err(StreamError::Interleaved { expected, got: seq });
            }
            (None, true) => self.current = Some((seq, Vec::new())),
            (Some((expected, _)), false) if *expected != seq => {
                let expected = *expected;
                self.current = None;
                return Err(StreamError::Interleaved { expected, got: seq });
            }
            (None, false) => return Err(StreamError::NoStart),
            (Some(_), false) => {}
        }
        let Some((_, buf)) = self.current.as_mut() else {
            return Err(StreamError::NoStart);
        };
        if buf.len() + data.len() > self.limit {
            self.current = None;
            return Err(StreamError::TooLarge(self.limit));
        }
        buf.extend_from_slice(data);
        Ok(if last { self.current.take() } else { None })
    }
}

/// A source encoded for the live stream, paced by acknowledgements.
pub struct ScreenStream<S> {
    source: S,
    encoder: Encoder,
    next_seq: u32,
    acked: u32,
    key_wanted: bool,
}

impl<S> std::fmt::Debug for ScreenStream<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ScreenStream")
            .field("next_seq", &self.next_seq)
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

impl<S: Source> ScreenStream<S> {
    /// A stream whose first update will be a key.
    pub fn new(source: S) -> Self {
        Self {
            source,
            encoder: Encoder::new(),
            next_seq: 0,
            acked: 0,
            key_wanted: true,
        }
    }

    /// The source, e.g. to inject input into the display it captures.
    pub fn source_mut(&mut self) -> &mut S {
        &mut self.source
    }

    /// Updates sent so far.
    pub fn sent(&self) -> u64 {
        u64::from(self.next_seq)
    }

    /// Whether another update may be sent now.
    pub fn has_room(&self) -> bool {
        self.next_seq - self.acked < WINDOW
    }

    /// The receiver has every update up to and including `seq`.
    pub fn acknowledge(&mut self, seq: u32) {
        if seq < self.next_seq {
            self.acked = self.acked.max(seq + 1);
        }
    }

    /// The next update resets the receiver (it lost track, or just joined).
    pub fn want_key(&mut self) {
        self.key_wanted = true;
    }

    /// Captures the screen as it is now and encodes it: the update and its
    /// number, or `None` if the window is full or nothing changed (not even
    /// captured when the source knows it did not).
    pub fn capture(&mut self, timestamp_us: u64) -> Result<Option<(u32, Vec<u8>)>, SourceError> {
        if !self.has_room() {
            return Ok(None);
        }
        // A key re-sends the screen even if it stood still.
        if !self.key_wanted && self.source.unchanged()? {
            return Ok(None);
        }
        let Some(frame) = self.source.next_frame()? else {
            return Ok(None);
        };
        let key = std::mem::take(&mut self.key_wanted);
        let update = self.encoder.encode(&frame, timestamp_us, key);
        self.source.recycle(frame);
        Ok(update.map(|update| {
            let seq = self.next_seq;
            self.next_seq += 1;
            (seq, update)
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::Decoder;

    #[test]
    fn fragments_reassemble_and_bad_ones_are_refused() {
        let update: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let parts = fragments(7, &update, 300);
        assert_eq!(parts.len(), 4);
        let mut r = Reassembler::new(1 << 20);
        let mut done = None;
        for p in &parts {
            done = r.push(p).unwrap();
        }
        assert_eq!(done, Some((7, update.clone())));
        assert_eq!(r.push(&parts[1]), Err(StreamError::NoStart));
        r.push(&parts[0]).unwrap();
        assert_eq!(
            r.push(&fragments(8, &update, 300)[0]),
            Err(StreamError::Interleaved {
                expected: 7,
                got: 8
            })
        );
        assert_eq!(r.push(&[1, 2]), Err(StreamError::Short));
        let mut small = Reassembler::new(500);
        small.push(&parts[0]).unwrap();
        assert_eq!(small.push(&parts[1]), Err(StreamError::TooLarge(500)));
        assert_eq!(fragments(1, &[], 300).len(), 1);
    }

    /// A screen whose picture depends on the time the test sets, as a real one does.
    struct Clock(std::rc::Rc<std::cell::Cell<u32>>);

    fn screen_at(t: u32) -> crate::Frame {
        let mut f = crate::Frame::black(200, 120);
        f.fill(t % 150, (t * 3) % 100, 40, 20, [t as u8, 200, 100, 255]);
        f
    }

    impl Source for Clock {
        fn size(&self) -> (u32, u32) {
            (200, 120)
        }
        fn next_frame(&mut self) -> Result<Option<crate::Frame>, SourceError> {
            Ok(Some(screen_at(self.0.get())))
        }
    }

    #[test]
    fn a_slow_receiver_gets_the_latest_screen_not_a_queue() {
        let now = std::rc::Rc::new(std::cell::Cell::new(0u32));
        let mut stream = ScreenStream::new(Clock(now.clone()));
        let mut receiver = Decoder::new();
        let mut sent = 0;
        for t in 0..100u32 {
            now.set(t);
            if let Some((seq, update)) = stream.capture(u64::from(t)).unwrap() {
                assert_eq!(
                    receiver.decode(&update).unwrap(),
                    &screen_at(t),
                    "an update shows the screen as it is"
                );
                sent += 1;
                // The receiver acknowledges only every tenth tick: a slow link.
                if t % 10 == 0 {
                    stream.acknowledge(seq);
                }
            }
            assert!(stream.next_seq - stream.acked <= WINDOW);
        }
        assert!(
            sent <= 10 + WINDOW as usize,
            "{sent} updates for 10 acknowledgements"
        );
        assert!(
            stream.capture(100).unwrap().is_none(),
            "a full window captures nothing"
        );
        stream.acknowledge(stream.next_seq - 1);
        now.set(150);
        let (_, update) = stream.capture(150).unwrap().expect("room again");
        assert_eq!(
            receiver.decode(&update).unwrap(),
            &screen_at(150),
            "straight to the latest screen"
        );
    }

    /// A still screen that says so, and counts how often it is read.
    struct Still {
        reads: u32,
    }

    impl Source for Still {
        fn size(&self) -> (u32, u32) {
            (200, 120)
        }
        fn next_frame(&mut self) -> Result<Option<crate::Frame>, SourceError> {
            self.reads += 1;
            Ok(Some(screen_at(7)))
        }
        fn unchanged(&mut self) -> Result<bool, SourceError> {
            Ok(self.reads > 0)
        }
    }

    #[test]
    fn a_still_screen_is_not_read_again_unless_a_key_is_wanted() {
        let mut stream = ScreenStream::new(Still { reads: 0 });
        let (seq, _) = stream.capture(0).unwrap().expect("the first key");
        stream.acknowledge(seq);
        assert!(stream.capture(1).unwrap().is_none());
        assert_eq!(stream.source_mut().reads, 1, "not captured again");
        stream.want_key();
        let (_, key) = stream.capture(2).unwrap().expect("a key, though still");
        assert_eq!(stream.source_mut().reads, 2);
        assert!(crate::codec::info(&key).unwrap().key);
        assert_eq!(Decoder::new().decode(&key).unwrap(), &screen_at(7));
    }
}
