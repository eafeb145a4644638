//! An event as stored: its place in the log, its fields as text, and its hashes.

use std::fmt;

use serde::Serialize;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::encoding::{BodyRef, Fields, Salt};
use crate::event::EventKind;
use crate::time_us;

/// A SHA-256 value of the hash chain.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Hash(pub [u8; 32]);

impl Hash {
    /// The `prev_hash` of the first event.
    pub const GENESIS: Hash = Hash([0; 32]);

    /// Reads a hash from a stored 32-byte value.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Hash)
    }

    /// Parses 64 hex digits.
    pub fn from_hex(text: &str) -> Option<Self> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(text, &mut out).ok()?;
        Some(Hash(out))
    }
}

impl fmt::Display for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash({self})")
    }
}

impl Serialize for Hash {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        // On the stack: listings write one or two per event.
        let mut text = [0u8; 64];
        hex::encode_to_slice(self.0, &mut text).map_err(serde::ser::Error::custom)?;
        s.serialize_str(std::str::from_utf8(&text).map_err(serde::ser::Error::custom)?)
    }
}

impl<'de> serde::Deserialize<'de> for Hash {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        Hash::from_hex(&text)
            .ok_or_else(|| serde::de::Error::custom(format!("{text:?} is not 64 hex digits")))
    }
}

/// One row of the log, exactly as stored.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredEvent {
    /// Position in the log, from 1, without gaps.
    pub seq: i64,
    /// Client-generated, unique in the log.
    pub id: Uuid,
    /// The support session, if any.
    pub session: Option<Uuid>,
    /// When it happened (microseconds since the epoch).
    pub occurred_at_us: i64,
    /// When the log made the event durable.
    pub recorded_at_us: i64,
    /// The time the reporting console or applet claimed (format 2; `None`
    /// for events the gateway or a local command saw itself).
    pub reported_at_us: Option<i64>,
    /// Who reported it.
    pub source: String,
    /// Who did it.
    pub actor: String,
    /// The type name, e.g. `admin.note`.
    pub kind: String,
    /// Its payload, or the digest left of it once erased.
    pub body: Body,
    /// Version of the canonical encoding the hash was computed over.
    pub format: i16,
    /// The hash of the row before it.
    pub prev_hash: Hash,
    /// Its own hash: SHA-256 of `prev_hash` and its canonical encoding.
    pub hash: Hash,
}

/// An event's payload as stored: kept with its salt, or erased.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Body {
    /// The payload is stored.
    Kept {
        /// The payload JSON text, exactly as its digest was taken.
        payload: String,
        /// Its salt; `None` only in rows of formats 1 and 2, which hashed the payload itself.
        salt: Option<Salt>,
    },
    /// The payload and its salt were erased; what the leaf committed to remains.
    Erased {
        /// The body digest ([`crate::encoding::body_digest`]).
        digest: Hash,
    },
}

impl StoredEvent {
    /// The payload's JSON text; `None` once it was erased.
    pub fn payload(&self) -> Option<&str> {
        match &self.body {
            Body::Kept { payload, .. } => Some(payload),
            Body::Erased { .. } => None,
        }
    }

    /// Whether the event's body was erased.
    pub fn is_erased(&self) -> bool {
        matches!(self.body, Body::Erased { .. })
    }

    /// The fields the hash covers.
    pub fn fields(&self) -> Fields<'_> {
        Fields {
            seq: self.seq,
            id: &self.id,
            session: self.session.as_ref(),
            occurred_at_us: self.occurred_at_us,
            recorded_at_us: self.recorded_at_us,
            reported_at_us: self.reported_at_us,
            source: &self.source,
            actor: &self.actor,
            kind: &self.kind,
            body: match &self.body {
                Body::Kept { payload, salt } => BodyRef::Kept {
                    payload,
                    salt: salt.as_ref(),
                },
                Body::Erased { digest } => BodyRef::Erased { digest: &digest.0 },
            },
        }
    }

    /// Its leaf hash in the Merkle tree: over the canonical encoding in
    /// its stored format.
    pub fn leaf_hash(&self) -> Result<Hash, crate::encoding::EncodeError> {
        let mut encoding = Vec::with_capacity(256);
        crate::encoding::encode(self.format, &self.fields(), &mut encoding)?;
        Ok(crate::merkle::leaf_hash(&encoding))
    }

    /// The row in the form verification reads ([`crate::encoding::Packed`]).
    pub fn packed(&self) -> Vec<u8> {
        crate::encoding::pack(self.format, &self.prev_hash.0, &self.hash.0, &self.fields())
    }

    /// The typed event; `Ok(None)` for a type this version does not know,
    /// or once its body was erased.
    pub fn decode(&self) -> Result<Option<EventKind>, serde_json::Error> {
        match self.payload() {
            Some(payload) => EventKind::from_stored(&self.kind, payload),
            None => Ok(None),
        }
    }

    /// The row as one JSON object, for `audit query --json` and reports.
    pub fn to_json(&self) -> serde_json::Value {
        // Serialising our own struct into a Value cannot fail.
        serde_json::to_value(self.json()).unwrap_or_default()
    }

    /// The row in the shape of [`StoredEvent::to_json`], serialisable
    /// straight to a writer: the payload goes out as the stored JSON text
    /// (checked, not parsed into a tree), which is what makes a streamed
    /// listing cheap per row.
    pub fn json(&self) -> EventJson<'_> {
        let payload = match self.payload() {
            None => Payload::Erased,
            Some(text) => match serde_json::from_str::<&RawValue>(text) {
                Ok(raw) => Payload::Json(raw),
                // Stored text that is not JSON is shown as the string it is.
                Err(_) => Payload::Text(text),
            },
        };
        EventJson {
            seq: self.seq,
            id: &self.id,
            session: self.session.as_ref(),
            occurred_at: JsonTime(self.occurred_at_us),
            recorded_at: JsonTime(self.recorded_at_us),
            reported_at: self.reported_at_us.map(JsonTime),
            source: &self.source,
            actor: &self.actor,
            kind: &self.kind,
            erased: self.is_erased(),
            payload,
            hash: &self.hash,
        }
    }
}

/// A stored event as JSON (see [`StoredEvent::json`]).
#[derive(Debug, Serialize)]
pub struct EventJson<'a> {
    seq: i64,
    id: &'a Uuid,
    session: Option<&'a Uuid>,
    occurred_at: JsonTime,
    recorded_at: JsonTime,
    #[serde(skip_serializing_if = "Option::is_none")]
    reported_at: Option<JsonTime>,
    source: &'a str,
    actor: &'a str,
    #[serde(rename = "type")]
    kind: &'a str,
    /// Only there (as `true`) once the body was erased; `payload` is then null.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    erased: bool,
    payload: Payload<'a>,
    hash: &'a Hash,
}

/// A time as [`time_us::format`] writes it.
#[derive(Debug)]
struct JsonTime(i64);

impl Serialize for JsonTime {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match time_us::TimeText::new(self.0) {
            Some(text) => s.serialize_str(text.as_str()),
            None => s.serialize_str(&time_us::format(self.0)),
        }
    }
}

#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Payload<'a> {
    Json(&'a RawValue),
    Text(&'a str),
    /// Serialised as `null`.
    Erased,
}

/// What the log answers for each appended event once it is durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct Receipt {
    /// The event's id.
    pub id: Uuid,
    /// Its place in the log.
    pub seq: i64,
    /// Its hash.
    pub hash: Hash,
    /// True when the id was already in the log and nothing new was stored.
    pub duplicate: bool,
}
