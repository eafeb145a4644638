//! Evidence that verifies with no database: one event, its inclusion proof
//! and the signed checkpoint it is proven against, in one JSON file
//! (`vigil audit prove`), and the check of such a file against the log's
//! public key (`vigil audit verify-proof`).
//!
//! The file carries every field the event's leaf commits to (its payload
//! and salt, or only the digest if its body was erased), so the verifier
//! encodes the leaf itself: what the file shows is what is proven.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::checkpoint::{self, Checkpoint, CheckpointError};
use crate::encoding::Salt;
use crate::error::{Error, Result};
use crate::merkle;
use crate::record::{Body, Hash, StoredEvent};
use crate::store::Store;

/// What the `format` field of a proof file says.
pub const PROOF_FORMAT: &str = "vigil-event-proof/1";

/// An event with its inclusion proof against a signed checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventProof {
    /// Always [`PROOF_FORMAT`].
    pub format: String,
    /// The event, as its leaf commits to it.
    pub event: ProvenEvent,
    /// The tree size the proof is for (the checkpoint's).
    pub tree_size: u64,
    /// The RFC 6962 audit path, bottom up, hex.
    pub inclusion: Vec<Hash>,
    /// The signed checkpoint note, as written.
    pub checkpoint: String,
}

/// Every field of an event that its leaf commits to.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEvent {
    /// Its place in the log.
    pub seq: i64,
    /// Its id.
    pub id: Uuid,
    /// Its session.
    pub session: Option<Uuid>,
    /// When it happened (microseconds since the epoch).
    pub occurred_at_us: i64,
    /// When the log stored it.
    pub recorded_at_us: i64,
    /// The time a console or applet claimed.
    pub reported_at_us: Option<i64>,
    /// Who reported it.
    pub source: String,
    /// Who did it.
    pub actor: String,
    /// Its type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The payload's JSON text, exactly as its digest was taken; `None` if erased.
    pub payload: Option<String>,
    /// The payload's salt, hex; `None` if erased.
    pub salt: Option<String>,
    /// The body digest, hex: only for an erased body.
    pub body_digest: Option<Hash>,
}

/// Why a proof file does not prove its event.
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    /// Not a proof file: truncated, not JSON, or fields missing or malformed.
    #[error("not a vigil event proof: {0}")]
    Malformed(String),
    /// Its checkpoint is not one the key signed for its log.
    #[error("its checkpoint: {0}")]
    Checkpoint(#[from] CheckpointError),
    /// The proof is for another tree size than its checkpoint's.
    #[error("the proof is for a tree of {proof} events, its checkpoint for {checkpoint}")]
    SizeMismatch {
        /// The proof's tree size.
        proof: u64,
        /// The checkpoint's.
        checkpoint: u64,
    },
    /// The event and the audit path do not lead to the checkpoint's root.
    #[error("the event at seq {seq} is not in the checkpoint's tree of {size} events: the event or its proof was altered")]
    DoesNotHold {
        /// The event's seq.
        seq: i64,
        /// The tree size.
        size: u64,
    },
}

impl ProvenEvent {
    fn of(e: &StoredEvent) -> Self {
        let (payload, salt, body_digest) = match &e.body {
            Body::Kept { payload, salt } => (Some(payload.clone()), salt.map(hex::encode), None),
            Body::Erased { digest } => (None, None, Some(*digest)),
        };
        ProvenEvent {
            seq: e.seq,
            id: e.id,
            session: e.session,
            occurred_at_us: e.occurred_at_us,
            recorded_at_us: e.recorded_at_us,
            reported_at_us: e.reported_at_us,
            source: e.source.clone(),
            actor: e.actor.clone(),
            kind: e.kind.clone(),
            payload,
            salt,
            body_digest,
        }
    }

    /// The event as a stored row (hashes unknown: zeros), for encoding its leaf.
    fn stored(&self) -> std::result::Result<StoredEvent, ProofError> {
        let body = match (&self.payload, &self.salt, self.body_digest) {
            (Some(payload), Some(salt), None) => {
                let mut bytes: Salt = Default::default();
                hex::decode_to_slice(salt, &mut bytes).map_err(|_| {
                    ProofError::Malformed(format!("salt {salt:?} is not 32 hex digits"))
                })?;
                Body::Kept {
                    payload: payload.clone(),
                    salt: Some(bytes),
                }
            }
            (None, None, Some(digest)) => Body::Erased { digest },
            _ => {
                return Err(ProofError::Malformed(
                    "an event has a payload and a salt, or (erased) only a body_digest".into(),
                ))
            }
        };
        Ok(StoredEvent {
            seq: self.seq,
            id: self.id,
            session: self.session,
            occurred_at_us: self.occurred_at_us,
            recorded_at_us: self.recorded_at_us,
            reported_at_us: self.reported_at_us,
            source: self.source.clone(),
            actor: self.actor.clone(),
            kind: self.kind.clone(),
            body,
            format: crate::encoding::CURRENT_FORMAT,
            prev_hash: Hash::GENESIS,
            hash: Hash::GENESIS,
        })
    }
}

impl EventProof {
    /// Proves the event at `seq` against the checkpoint `note` (which
    /// `checkpoint` is the opened form of): refuses a seq outside it, and a
    /// checkpoint this log's tree does not match.
    pub async fn build(
        store: &Store,
        seq: i64,
        note: &[u8],
        checkpoint: &Checkpoint,
    ) -> Result<Self> {
        let size = checkpoint.size;
        let tree = store.tree_size().await?;
        if size > tree {
            return Err(Error::CheckpointAhead { size, log: tree });
        }
        if seq < 1 || seq as u64 > size {
            return Err(Error::NoSuchEvent {
                seq,
                last: size as i64,
            });
        }
        if store.root(size).await? != checkpoint.root {
            return Err(Error::CheckpointMismatch { size });
        }
        let event = store
            .range_page(seq, seq, 1)
            .await?
            .pop()
            .ok_or(Error::NoSuchEvent {
                seq,
                last: size as i64,
            })?;
        let proof = EventProof {
            format: PROOF_FORMAT.into(),
            event: ProvenEvent::of(&event),
            tree_size: size,
            inclusion: store.inclusion_proof(size, seq).await?,
            checkpoint: String::from_utf8_lossy(note).into_owned(),
        };
        // The stored event must be the one the tree holds: a row altered
        // since would give a proof that fails wherever it is checked.
        proof
            .check_against(checkpoint)
            .map_err(|_| Error::CheckpointMismatch { size })?;
        Ok(proof)
    }

    /// Reads a proof file's text.
    pub fn parse(text: &[u8]) -> std::result::Result<Self, ProofError> {
        let proof: EventProof =
            serde_json::from_slice(text).map_err(|e| ProofError::Malformed(e.to_string()))?;
        if proof.format != PROOF_FORMAT {
            return Err(ProofError::Malformed(format!(
                "format {:?}, not {PROOF_FORMAT:?}",
                proof.format
            )));
        }
        Ok(proof)
    }

    /// Checks the proof with the log's public key (a note verifier key):
    /// the checkpoint is signed by it for its log, and the event is in the
    /// checkpoint's tree. Returns the checkpoint.
    pub fn verify(&self, public: &str) -> std::result::Result<Checkpoint, ProofError> {
        let checkpoint = checkpoint::open(self.checkpoint.as_bytes(), public)?;
        self.check_against(&checkpoint)?;
        Ok(checkpoint)
    }

    fn check_against(&self, checkpoint: &Checkpoint) -> std::result::Result<(), ProofError> {
        if self.tree_size != checkpoint.size {
            return Err(ProofError::SizeMismatch {
                proof: self.tree_size,
                checkpoint: checkpoint.size,
            });
        }
        let seq = self.event.seq;
        let fails = || ProofError::DoesNotHold {
            seq,
            size: checkpoint.size,
        };
        if seq < 1 {
            return Err(fails());
        }
        let leaf = self
            .event
            .stored()?
            .leaf_hash()
            .map_err(|e| ProofError::Malformed(e.to_string()))?;
        merkle::check_inclusion(
            &self.inclusion,
            checkpoint.size,
            checkpoint.root,
            seq as u64 - 1,
            leaf,
        )
        .map_err(|_| fails())
    }
}
