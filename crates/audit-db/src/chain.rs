//! The hash chain: how each event commits to everything before it, how a
//! batch is given its places, and how a stretch of rows is checked.
//!
//! `hash(n) = SHA-256(hash(n-1) || canonical_encoding(event n))`, with
//! `hash(0)` all zeros. Each row stores both its own hash and the one before
//! it, so any stretch of the log can be checked on its own (verification runs
//! stretches in parallel) and a break can be told apart as a deletion, an
//! alteration or a re-linking.

use std::collections::HashMap;
use std::fmt;

use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::encoding::{self, BodyRef, EncodeError, Fields, Packed, Salt, CURRENT_FORMAT};
use crate::record::{Body, Hash, Receipt, StoredEvent};

/// The hash of an event with `fields`, following `prev`. `scratch` is reused
/// between calls so that planning a batch does not allocate per event.
pub fn link(
    prev: &Hash,
    format: i16,
    fields: &Fields<'_>,
    scratch: &mut Vec<u8>,
) -> Result<Hash, EncodeError> {
    scratch.clear();
    encoding::encode(format, fields, scratch)?;
    Ok(link_encoded(&prev.0, scratch))
}

/// The hash of an event whose canonical encoding is `encoding`, following `prev`.
pub fn link_encoded(prev: &[u8; 32], encoding: &[u8]) -> Hash {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(encoding);
    Hash(h.finalize().into())
}

/// An event ready to be given a place: validated, payload serialised.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Client-generated; appending it twice stores it once.
    pub id: Uuid,
    /// The support session, if any.
    pub session: Option<Uuid>,
    /// When it happened.
    pub occurred_at_us: i64,
    /// The time a console or applet claimed, if one reported it.
    pub reported_at_us: Option<i64>,
    /// Who reported it.
    pub source: String,
    /// Who did it.
    pub actor: String,
    /// The stored type name.
    pub kind: &'static str,
    /// The payload's JSON text, exactly as its digest is taken.
    pub payload: String,
    /// The payload's salt, taken at random for this event.
    pub salt: Salt,
}

impl Pending {
    /// The fields the hash covers, once the log records it at `seq` at `recorded_at_us`.
    pub fn fields(&self, seq: i64, recorded_at_us: i64) -> Fields<'_> {
        Fields {
            seq,
            id: &self.id,
            session: self.session.as_ref(),
            occurred_at_us: self.occurred_at_us,
            recorded_at_us,
            reported_at_us: self.reported_at_us,
            source: &self.source,
            actor: &self.actor,
            kind: self.kind,
            body: BodyRef::Kept {
                payload: &self.payload,
                salt: Some(&self.salt),
            },
        }
    }
}

/// The last event of the log: its seq (0 for an empty log) and hash.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Head {
    /// The last event's seq (0 for an empty log).
    pub seq: i64,
    /// The last event's hash (zeros for an empty log).
    pub hash: Hash,
}

impl Head {
    /// The head of an empty log.
    pub const EMPTY: Head = Head {
        seq: 0,
        hash: Hash::GENESIS,
    };
}

/// A new row's place: which event of the batch, at which seq, and its hashes.
/// The row's other fields are the event's own, so they are not copied here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placed {
    /// Index of the event in the batch.
    pub event: usize,
    /// Its place in the log.
    pub seq: i64,
    /// The hash of the row before it.
    pub prev_hash: Hash,
    /// Its own hash.
    pub hash: Hash,
    /// Its leaf hash in the Merkle tree (over the same encoding).
    pub leaf: Hash,
}

/// What a batch will write: the new rows, the answer for each submitted
/// event, and the head afterwards.
#[derive(Debug)]
pub struct Plan {
    /// The head once the rows are written.
    pub head: Head,
    /// The `recorded_at` of every row of the batch.
    pub recorded_at_us: i64,
    /// The new rows, in order.
    pub rows: Vec<Placed>,
    /// A receipt per event of the batch, duplicates included.
    pub receipts: Vec<Receipt>,
}

/// Gives each event of `batch` its place after `head`. Events whose id is in
/// `existing` (already stored) or earlier in the batch are not stored again;
/// their receipt names the place they already have.
pub fn plan(
    head: Head,
    recorded_at_us: i64,
    batch: &[&Pending],
    existing: &HashMap<Uuid, (i64, Hash)>,
) -> Plan {
    let mut plan = Plan {
        head,
        recorded_at_us,
        rows: Vec::with_capacity(batch.len()),
        receipts: Vec::with_capacity(batch.len()),
    };
    let mut placed: HashMap<Uuid, (i64, Hash)> = HashMap::with_capacity(batch.len());
    let mut scratch = Vec::with_capacity(512);
    for (index, ev) in batch.iter().enumerate() {
        if let Some(&(seq, hash)) = existing.get(&ev.id).or_else(|| placed.get(&ev.id)) {
            plan.receipts.push(Receipt {
                id: ev.id,
                seq,
                hash,
                duplicate: true,
            });
            continue;
        }
        let prev = plan.head;
        let hash = match link(
            &prev.hash,
            CURRENT_FORMAT,
            &ev.fields(prev.seq + 1, recorded_at_us),
            &mut scratch,
        ) {
            Ok(h) => h,
            Err(_) => unreachable!("a new event always has its payload and salt"),
        };
        plan.head = Head {
            seq: prev.seq + 1,
            hash,
        };
        placed.insert(ev.id, (plan.head.seq, hash));
        plan.receipts.push(Receipt {
            id: ev.id,
            seq: plan.head.seq,
            hash,
            duplicate: false,
        });
        plan.rows.push(Placed {
            event: index,
            seq: plan.head.seq,
            prev_hash: prev.hash,
            hash,
            leaf: crate::merkle::leaf_hash(&scratch),
        });
    }
    plan
}

impl Plan {
    /// The new rows as they will be stored.
    pub fn stored(&self, batch: &[&Pending]) -> Vec<StoredEvent> {
        self.rows
            .iter()
            .map(|r| {
                let ev = batch[r.event];
                StoredEvent {
                    seq: r.seq,
                    id: ev.id,
                    session: ev.session,
                    occurred_at_us: ev.occurred_at_us,
                    recorded_at_us: self.recorded_at_us,
                    reported_at_us: ev.reported_at_us,
                    source: ev.source.clone(),
                    actor: ev.actor.clone(),
                    kind: ev.kind.to_owned(),
                    body: Body::Kept {
                        payload: ev.payload.clone(),
                        salt: Some(ev.salt),
                    },
                    format: CURRENT_FORMAT,
                    prev_hash: r.prev_hash,
                    hash: r.hash,
                }
            })
            .collect()
    }
}

/// Where the log stops being intact, and how.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChainBreak {
    /// The first sequence number at which the log is not what was written.
    pub seq: i64,
    /// What is wrong there.
    pub kind: BreakKind,
}

/// How the log is broken at [`ChainBreak::seq`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum BreakKind {
    /// No row has this seq: an event was deleted (or later ones renumbered).
    Missing,
    /// The row's content no longer hashes to its stored hash: it was modified.
    Altered,
    /// The row is intact but does not follow the row before it: an event was
    /// inserted, removed or the rows were reordered.
    Relinked,
    /// The row claims an encoding format this version does not know.
    UnknownFormat(i16),
    /// The chain head recorded at the last append names a different last event.
    HeadMismatch {
        /// The head's seq.
        head_seq: i64,
    },
    /// Rows exist past the chain head: they were appended outside Vigil.
    BeyondHead {
        /// The head's seq.
        head_seq: i64,
    },
    /// The row's hash differs from the one the verifier was told to expect.
    AnchorMismatch {
        /// The hash the anchor gave.
        expected: Hash,
    },
    /// The Merkle tree's stored hashes for this seq are missing or differ
    /// from the ones its events give: the tree was altered, or rebuilt
    /// over other events.
    TreeMismatch,
    /// The Merkle tree has hashes past the last event.
    TreeBeyondLog {
        /// The last event's seq.
        last_seq: i64,
    },
    /// In a restored database: a row in none of the restored bundles.
    NotRestored,
    /// In a restored database: a bundle's events do not give the root of
    /// the checkpoint it was proven against.
    NotProven {
        /// The bundle.
        bundle: String,
        /// What failed.
        why: String,
    },
}

impl fmt::Display for ChainBreak {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seq = self.seq;
        match &self.kind {
            BreakKind::Missing => write!(f, "seq {seq} is missing: an event was deleted"),
            BreakKind::Altered => write!(
                f,
                "seq {seq} was modified: its content does not match its hash"
            ),
            BreakKind::Relinked => write!(
                f,
                "seq {seq} does not follow seq {}: an event was inserted, removed or reordered",
                seq - 1
            ),
            BreakKind::UnknownFormat(v) => write!(
                f,
                "seq {seq} uses encoding format {v}, unknown to this vigil"
            ),
            BreakKind::HeadMismatch { head_seq } => write!(
                f,
                "seq {seq} does not match the chain head recorded for seq {head_seq}: the end of the log was rewritten"
            ),
            BreakKind::BeyondHead { head_seq } => write!(
                f,
                "seq {seq} lies past the chain head (seq {head_seq}): events were added outside vigil"
            ),
            BreakKind::AnchorMismatch { expected } => write!(
                f,
                "seq {seq} does not have the expected hash {expected}: the log was rewritten"
            ),
            BreakKind::TreeMismatch => write!(
                f,
                "the Merkle tree's hashes at seq {seq} do not match the events: the tree was altered"
            ),
            BreakKind::TreeBeyondLog { last_seq } => write!(
                f,
                "the Merkle tree has hashes for seq {seq}, past the last event (seq {last_seq}): it was altered"
            ),
            BreakKind::NotRestored => write!(
                f,
                "seq {seq} is in none of the restored bundles: it was added after the restore"
            ),
            BreakKind::NotProven { bundle, why } => write!(
                f,
                "restored bundle {bundle} (from seq {seq}) is not proven by its signed checkpoint: {why}"
            ),
        }
    }
}

/// A hash the verifier must find at a given seq (e.g. a head published earlier).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The seq of the event published.
    pub seq: i64,
    /// Its hash, as published.
    pub hash: Hash,
}

/// Checks the rows of one stretch `[from, to]` of the log, fed in seq order.
#[derive(Debug)]
pub struct Walker {
    expected: i64,
    to: i64,
    prev: Option<Hash>,
    anchor: Option<Anchor>,
    /// The first row's (seq, prev_hash), for joining with the stretch before.
    pub first: Option<(i64, Hash)>,
    /// The last row's (seq, hash).
    pub last: Option<(i64, Hash)>,
    /// Rows checked so far.
    pub rows: u64,
    /// Rows checked whose body was erased.
    pub erased: u64,
    /// Seqs passed over because their events are archived.
    pub archived: u64,
    /// The leaf hashes of the rows checked since the caller last took them.
    pub leaves: Vec<Hash>,
}

impl Walker {
    /// A walker for seqs `from..=to`. `prev` is the hash before `from`, when
    /// known (the genesis for the stretch starting at 1).
    pub fn new(from: i64, to: i64, prev: Option<Hash>, anchor: Option<Anchor>) -> Self {
        Self {
            expected: from,
            to,
            prev,
            anchor,
            first: None,
            last: None,
            rows: 0,
            erased: 0,
            archived: 0,
            leaves: Vec::new(),
        }
    }

    /// Checks the next row, `packed` as [`Packed`] describes (`None` when the
    /// database could not build it, e.g. a column was set to NULL). The first
    /// break found ends the walk.
    pub fn push(&mut self, seq: i64, packed: Option<&[u8]>) -> Result<(), ChainBreak> {
        let at = |kind| ChainBreak { seq, kind };
        if seq != self.expected {
            return Err(ChainBreak {
                seq: self.expected,
                kind: BreakKind::Missing,
            });
        }
        let row = packed
            .and_then(Packed::parse)
            .ok_or(at(BreakKind::Altered))?;
        if !encoding::FORMATS.contains(&row.format) {
            return Err(at(BreakKind::UnknownFormat(row.format)));
        }
        let hash = Hash(*row.hash);
        let prev_hash = Hash(*row.prev_hash);
        // The link first: a row moved to another place no longer hashes
        // either (its seq is hashed), but what happened is the move.
        if self.prev.is_some_and(|p| p != prev_hash) {
            return Err(at(BreakKind::Relinked));
        }
        if link_encoded(row.prev_hash, row.encoding) != hash {
            return Err(at(BreakKind::Altered));
        }
        if let Some(a) = self.anchor.filter(|a| a.seq == seq && a.hash != hash) {
            return Err(at(BreakKind::AnchorMismatch { expected: a.hash }));
        }
        self.first.get_or_insert((seq, prev_hash));
        self.last = Some((seq, hash));
        self.prev = Some(hash);
        self.expected += 1;
        self.rows += 1;
        self.erased += u64::from(row.erased);
        self.leaves.push(crate::merkle::leaf_hash(row.encoding));
        Ok(())
    }

    /// The seq the walker expects next.
    pub fn next_seq(&self) -> i64 {
        self.expected
    }

    /// Passes over an event that left the live log for an archive: its
    /// chain link cannot be checked (the next row's link is taken as it
    /// is), its leaf, from the tree (`None` if the tree has none), goes on
    /// to the tree check like any other.
    pub fn push_archived(&mut self, seq: i64, leaf: Option<Hash>) -> Result<(), ChainBreak> {
        if seq != self.expected {
            return Err(ChainBreak {
                seq: self.expected,
                kind: BreakKind::Missing,
            });
        }
        self.prev = None;
        self.expected += 1;
        self.archived += 1;
        // A missing leaf cannot match the stored tree: the tree check names it.
        self.leaves.push(leaf.unwrap_or_default());
        Ok(())
    }

    /// Checks a row already read as a [`StoredEvent`].
    pub fn push_event(&mut self, row: &StoredEvent) -> Result<(), ChainBreak> {
        self.push(row.seq, Some(&row.packed()))
    }

    /// Ends the walk: every seq up to `to` must have been seen.
    pub fn finish(&self) -> Result<(), ChainBreak> {
        if self.expected <= self.to {
            return Err(ChainBreak {
                seq: self.expected,
                kind: BreakKind::Missing,
            });
        }
        Ok(())
    }
}

/// Checks that the log ends where its chain head says: no row lies past
/// the head (`max_seq` is the highest stored seq), and the last row walked
/// (`last`: seq and hash), if it is the head's, has the head's hash.
pub fn check_end(head: Head, max_seq: i64, last: Option<(i64, Hash)>) -> Result<(), ChainBreak> {
    if max_seq > head.seq {
        return Err(ChainBreak {
            seq: head.seq + 1,
            kind: BreakKind::BeyondHead { head_seq: head.seq },
        });
    }
    if last.is_some_and(|(seq, hash)| seq == head.seq && hash != head.hash) {
        return Err(ChainBreak {
            seq: head.seq,
            kind: BreakKind::HeadMismatch { head_seq: head.seq },
        });
    }
    Ok(())
}

/// A stored row's new place once its log is converted to format 3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Converted {
    /// Its seq (unchanged).
    pub seq: i64,
    /// Its salt: new for a row of format 1 or 2.
    pub salt: Salt,
    /// The new hash of the row before it.
    pub prev_hash: Hash,
    /// Its new hash.
    pub hash: Hash,
}

/// Converts a log written in formats 1 and 2 to format 3, row by row in
/// seq order: each row is first checked as it was written, so that the new
/// chain is never laid over a broken one (which would launder the break).
#[derive(Debug)]
pub struct Conversion {
    check: Walker,
    head: Head,
    scratch: Vec<u8>,
}

impl Conversion {
    /// A conversion of seqs `1..=to`.
    pub fn new(to: i64) -> Self {
        Self {
            check: Walker::new(1, to, Some(Hash::GENESIS), None),
            head: Head::EMPTY,
            scratch: Vec::with_capacity(512),
        }
    }

    /// Checks the next stored row and gives its place in the new chain.
    pub fn push(&mut self, row: &StoredEvent) -> Result<Converted, ChainBreak> {
        self.check.push_event(row)?;
        self.check.leaves.clear();
        let Body::Kept { payload, salt } = &row.body else {
            // An erased row is of format 3, and a log is converted whole.
            return Err(ChainBreak {
                seq: row.seq,
                kind: BreakKind::Altered,
            });
        };
        let salt = salt.unwrap_or_else(encoding::new_salt);
        let fields = Fields {
            body: BodyRef::Kept {
                payload,
                salt: Some(&salt),
            },
            ..row.fields()
        };
        let prev = self.head;
        let hash = link(&prev.hash, CURRENT_FORMAT, &fields, &mut self.scratch).map_err(|_| {
            ChainBreak {
                seq: row.seq,
                kind: BreakKind::Altered,
            }
        })?;
        self.head = Head { seq: row.seq, hash };
        Ok(Converted {
            seq: row.seq,
            salt,
            prev_hash: prev.hash,
            hash,
        })
    }

    /// Ends the conversion of a log whose head was `head` and whose highest
    /// stored seq is `max_seq`: every row was seen, none lies past the head,
    /// and the head named the last row. Returns the new head.
    pub fn finish(self, head: Head, max_seq: i64) -> Result<Head, ChainBreak> {
        self.check.finish()?;
        check_end(head, max_seq, self.check.last)?;
        Ok(self.head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending(n: u128) -> Pending {
        Pending {
            id: Uuid::from_u128(n),
            session: None,
            occurred_at_us: n as i64,
            reported_at_us: None,
            source: "cli@test".into(),
            actor: "admin:test".into(),
            kind: "admin.note",
            payload: format!(r#"{{"text":"note {n}"}}"#),
            salt: [n as u8; 16],
        }
    }

    fn log(n: u128) -> Vec<StoredEvent> {
        let events: Vec<Pending> = (1..=n).map(pending).collect();
        let refs: Vec<&Pending> = events.iter().collect();
        plan(Head::EMPTY, 99, &refs, &HashMap::new()).stored(&refs)
    }

    fn walk(rows: &[StoredEvent], to: i64) -> Result<u64, ChainBreak> {
        let mut w = Walker::new(1, to, Some(Hash::GENESIS), None);
        for r in rows {
            w.push_event(r)?;
        }
        w.finish()?;
        Ok(w.rows)
    }

    #[test]
    fn planned_rows_verify() {
        let rows = log(5);
        assert_eq!(
            rows.iter().map(|r| r.seq).collect::<Vec<_>>(),
            [1, 2, 3, 4, 5]
        );
        assert_eq!(walk(&rows, 5), Ok(5));
    }

    #[test]
    fn duplicates_in_batch_and_store_are_not_placed_again() {
        let a = pending(1);
        let b = pending(2);
        let existing = HashMap::from([(Uuid::from_u128(2), (7, Hash([7; 32])))]);
        let head = Head {
            seq: 10,
            hash: Hash([1; 32]),
        };
        let p = plan(head, 0, &[&a, &b, &a], &existing);
        assert_eq!(p.rows.len(), 1);
        assert_eq!((p.rows[0].event, p.rows[0].seq), (0, 11));
        assert_eq!(p.rows[0].prev_hash, Hash([1; 32]));
        let seqs: Vec<_> = p.receipts.iter().map(|r| (r.seq, r.duplicate)).collect();
        assert_eq!(seqs, [(11, false), (7, true), (11, true)]);
        assert_eq!(p.head.seq, 11);
    }

    #[test]
    fn modified_row_is_named() {
        let mut rows = log(5);
        rows[2].body = Body::Kept {
            payload: r#"{"text":"forged"}"#.into(),
            salt: Some([3; 16]),
        };
        assert_eq!(
            walk(&rows, 5),
            Err(ChainBreak {
                seq: 3,
                kind: BreakKind::Altered
            })
        );
    }

    #[test]
    fn deleted_row_is_named() {
        let mut rows = log(5);
        rows.remove(1);
        assert_eq!(walk(&rows, 5).unwrap_err().seq, 2);
        assert_eq!(walk(&rows, 5).unwrap_err().kind, BreakKind::Missing);
    }

    #[test]
    fn deleted_tail_is_named() {
        let rows = log(5);
        let err = walk(&rows[..3], 5).unwrap_err();
        assert_eq!((err.seq, err.kind), (4, BreakKind::Missing));
    }

    #[test]
    fn swapped_rows_are_named_as_relinked() {
        let mut rows = log(5);
        // Swap everything but the position, as an UPDATE of two rows would.
        let (a, b) = (rows[1].clone(), rows[3].clone());
        rows[1] = StoredEvent { seq: 2, ..b };
        rows[3] = StoredEvent { seq: 4, ..a };
        assert_eq!(
            walk(&rows, 5),
            Err(ChainBreak {
                seq: 2,
                kind: BreakKind::Relinked
            })
        );
    }

    #[test]
    fn inserted_row_with_valid_hash_is_caught_at_the_next_row() {
        let rows = log(4);
        // A forger who hashes correctly after seq 2 and renumbers the rest.
        let forged_event = pending(50);
        let forged = plan(
            Head {
                seq: 2,
                hash: rows[1].hash,
            },
            99,
            &[&forged_event],
            &HashMap::new(),
        )
        .stored(&[&forged_event])
        .remove(0);
        let mut tampered = rows[..2].to_vec();
        tampered.push(forged);
        for r in &rows[2..] {
            tampered.push(StoredEvent {
                seq: r.seq + 1,
                ..r.clone()
            });
        }
        assert_eq!(
            walk(&tampered, 5),
            Err(ChainBreak {
                seq: 4,
                kind: BreakKind::Relinked
            })
        );
    }

    #[test]
    fn anchor_catches_a_fully_rehashed_log() {
        let honest = log(3);
        let mut forged_events: Vec<Pending> = (1..=3).map(pending).collect();
        forged_events[1].payload = r#"{"text":"rewritten"}"#.into();
        let refs: Vec<&Pending> = forged_events.iter().collect();
        let forged = plan(Head::EMPTY, 99, &refs, &HashMap::new()).stored(&refs);
        assert_eq!(walk(&forged, 3), Ok(3), "a full rewrite is self-consistent");
        let anchor = Anchor {
            seq: 3,
            hash: honest[2].hash,
        };
        let mut w = Walker::new(1, 3, Some(Hash::GENESIS), Some(anchor));
        let err = forged.iter().try_for_each(|r| w.push_event(r)).unwrap_err();
        assert_eq!(err.seq, 3);
        assert!(matches!(err.kind, BreakKind::AnchorMismatch { .. }));
    }

    #[test]
    fn unknown_format_is_named() {
        let mut rows = log(2);
        rows[1].format = 7;
        assert_eq!(
            walk(&rows, 2).unwrap_err().kind,
            BreakKind::UnknownFormat(7)
        );
    }

    #[test]
    fn break_messages_say_what_happened() {
        let b = ChainBreak {
            seq: 12,
            kind: BreakKind::Relinked,
        };
        assert_eq!(
            b.to_string(),
            "seq 12 does not follow seq 11: an event was inserted, removed or reordered"
        );
    }
}
