//! The row shape both backends read, and its checked conversion to a [`StoredEvent`].

use std::collections::HashMap;

use uuid::Uuid;

use crate::chain::Head;
use crate::encoding::SALT_LEN;
use crate::error::Error;
use crate::record::{Body, Hash, StoredEvent};

/// The event columns, in the order every statement names them (a macro, so
/// that SQL built from it stays a `&'static str`).
macro_rules! columns {
    () => {
        "seq, event_id, session_id, occurred_at, recorded_at, \
         source, actor, kind, payload, format, prev_hash, hash, reported_at, \
         body_salt, body_digest"
    };
}
pub(crate) use columns;

/// The names in [`columns!`], by position, for errors about one of them.
pub(crate) const COLUMN_NAMES: [&str; 15] = [
    "seq",
    "event_id",
    "session_id",
    "occurred_at",
    "recorded_at",
    "source",
    "actor",
    "kind",
    "payload",
    "format",
    "prev_hash",
    "hash",
    "reported_at",
    "body_salt",
    "body_digest",
];

/// A row as the database hands it over, before its hashes are checked for length.
#[derive(sqlx::FromRow)]
pub(crate) struct RawRow {
    seq: i64,
    event_id: Uuid,
    session_id: Option<Uuid>,
    occurred_at: i64,
    recorded_at: i64,
    source: String,
    actor: String,
    kind: String,
    payload: Option<String>,
    format: i16,
    prev_hash: Vec<u8>,
    hash: Vec<u8>,
    reported_at: Option<i64>,
    body_salt: Option<Vec<u8>>,
    body_digest: Option<Vec<u8>>,
}

impl RawRow {
    /// Its seq.
    pub(crate) fn seq(&self) -> i64 {
        self.seq
    }
}

impl TryFrom<RawRow> for StoredEvent {
    type Error = Error;

    fn try_from(r: RawRow) -> Result<Self, Error> {
        let hash = |bytes: &[u8], column: &str| {
            Hash::from_slice(bytes).ok_or_else(|| Error::BadRow {
                seq: r.seq,
                reason: format!("{column} is {} bytes, not 32", bytes.len()),
            })
        };
        Ok(StoredEvent {
            body: body(
                r.seq,
                r.payload,
                r.body_salt.as_deref(),
                r.body_digest.as_deref(),
            )?,
            prev_hash: hash(&r.prev_hash, "prev_hash")?,
            hash: hash(&r.hash, "hash")?,
            seq: r.seq,
            id: r.event_id,
            session: r.session_id,
            occurred_at_us: r.occurred_at,
            recorded_at_us: r.recorded_at,
            reported_at_us: r.reported_at,
            source: r.source,
            actor: r.actor,
            kind: r.kind,
            format: r.format,
        })
    }
}

/// A row's body from its `payload`, `body_salt` and `body_digest` columns,
/// checked for sizes: kept (with a salt, or none in rows of formats 1 and
/// 2), or erased (no payload, a digest).
pub(crate) fn body(
    seq: i64,
    payload: Option<String>,
    salt: Option<&[u8]>,
    digest: Option<&[u8]>,
) -> Result<Body, Error> {
    let bad = |reason: String| Error::BadRow { seq, reason };
    match (payload, salt) {
        (Some(payload), salt) => Ok(Body::Kept {
            payload,
            salt: salt
                .map(|s| {
                    s.try_into()
                        .map_err(|_| bad(format!("body_salt is {} bytes, not {SALT_LEN}", s.len())))
                })
                .transpose()?,
        }),
        (None, _) => {
            let digest =
                digest.ok_or_else(|| bad("payload is NULL without a body_digest".into()))?;
            Hash::from_slice(digest)
                .map(|digest| Body::Erased { digest })
                .ok_or_else(|| bad(format!("body_digest is {} bytes, not 32", digest.len())))
        }
    }
}

/// The chain head row.
#[derive(sqlx::FromRow)]
pub(crate) struct HeadRow {
    seq: i64,
    hash: Vec<u8>,
}

impl TryFrom<HeadRow> for Head {
    type Error = Error;

    fn try_from(r: HeadRow) -> Result<Self, Error> {
        let hash = Hash::from_slice(&r.hash).ok_or(Error::NoHead)?;
        Ok(Head { seq: r.seq, hash })
    }
}

/// Where an already-stored event id sits, for answering a duplicate append.
#[derive(sqlx::FromRow)]
pub(crate) struct PlacedRow {
    event_id: Uuid,
    seq: i64,
    hash: Vec<u8>,
}

/// Collects looked-up rows into id → (seq, hash).
pub(crate) fn placed(rows: Vec<PlacedRow>) -> Result<HashMap<Uuid, (i64, Hash)>, Error> {
    rows.into_iter()
        .map(|r| {
            let hash = Hash::from_slice(&r.hash).ok_or_else(|| Error::BadRow {
                seq: r.seq,
                reason: format!("hash is {} bytes, not 32", r.hash.len()),
            })?;
            Ok((r.event_id, (r.seq, hash)))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_names_follow_the_statement_order() {
        let listed: String = columns!().split_whitespace().collect();
        assert_eq!(listed, COLUMN_NAMES.join(","));
    }
}
