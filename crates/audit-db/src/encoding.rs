//! The canonical, versioned byte encoding of an event: what the hash chain hashes.
//!
//! Format 2, all integers big-endian:
//!
//! ```text
//! "vigil.audit\0"  12 bytes, domain separation
//! format           u8 = 2
//! event id         16 bytes
//! session          u8 0, or u8 1 + 16 bytes
//! occurred_at_us   i64
//! recorded_at_us   i64
//! reported_at_us   u8 0, or u8 1 + i64 (the time a console or applet claimed)
//! source, actor, type, payload: each u32 length + UTF-8 bytes
//! ```
//!
//! Format 1 (events written before reported times were kept) is the same
//! without `reported_at_us`. A format 1 row that has one anyway gets its
//! bytes appended all the same, so its hash no longer matches: a reported
//! time cannot be added to an old row unnoticed.
//!
//! Length prefixes make the encoding injective: no two different events
//! share an encoding, so no edit can keep the hash.

use uuid::Uuid;

/// The encoding version new events are written with.
pub const CURRENT_FORMAT: i16 = 2;

/// Every format this version can re-encode, so verify.
pub const FORMATS: [i16; 2] = [1, 2];

const DOMAIN: &[u8; 12] = b"vigil.audit\0";

/// The fields of an event that the hash covers (everything but its place in the log).
#[derive(Clone, Copy, Debug)]
pub struct Fields<'a> {
    /// The event's id.
    pub id: &'a Uuid,
    /// Its session, if any.
    pub session: Option<&'a Uuid>,
    /// When it happened (microseconds since the epoch).
    pub occurred_at_us: i64,
    /// When the log stored it.
    pub recorded_at_us: i64,
    /// The time the reporting console or applet claimed, where it differs
    /// from `occurred_at_us` or was checked (format 2).
    pub reported_at_us: Option<i64>,
    /// Who reported it.
    pub source: &'a str,
    /// Who did it.
    pub actor: &'a str,
    /// The stored type name.
    pub kind: &'a str,
    /// The payload's JSON text.
    pub payload: &'a str,
}

/// A stored format number this version cannot re-encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown canonical encoding format {0}")]
pub struct UnknownFormat(pub i16);

/// Appends the canonical encoding of `fields` in `format` to `out`.
pub fn encode(format: i16, fields: &Fields<'_>, out: &mut Vec<u8>) -> Result<(), UnknownFormat> {
    if !FORMATS.contains(&format) {
        return Err(UnknownFormat(format));
    }
    out.reserve(
        DOMAIN.len()
            + 1
            + 16
            + 17
            + 16
            + 9
            + 16
            + fields.source.len()
            + fields.actor.len()
            + fields.kind.len()
            + fields.payload.len(),
    );
    out.extend_from_slice(DOMAIN);
    out.push(format as u8);
    out.extend_from_slice(fields.id.as_bytes());
    match fields.session {
        None => out.push(0),
        Some(s) => {
            out.push(1);
            out.extend_from_slice(s.as_bytes());
        }
    }
    out.extend_from_slice(&fields.occurred_at_us.to_be_bytes());
    out.extend_from_slice(&fields.recorded_at_us.to_be_bytes());
    match (format, fields.reported_at_us) {
        (1, None) => {}
        (_, None) => out.push(0),
        (_, Some(t)) => {
            out.push(1);
            out.extend_from_slice(&t.to_be_bytes());
        }
    }
    for text in [fields.source, fields.actor, fields.kind, fields.payload] {
        // Texts over 4 GiB cannot reach here: payloads are bounded far below by the stores.
        out.extend_from_slice(&(text.len() as u32).to_be_bytes());
        out.extend_from_slice(text.as_bytes());
    }
    Ok(())
}

/// The form in which verification reads a row: the stored format (i16,
/// big-endian), the stored `prev_hash` and `hash`, then the canonical
/// encoding of the stored fields. The stores build it with [`pack`] as they
/// read, so the walker needs nothing else.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Packed<'a> {
    /// The stored encoding format.
    pub format: i16,
    /// The stored hash of the row before.
    pub prev_hash: &'a [u8; 32],
    /// The row's stored hash.
    pub hash: &'a [u8; 32],
    /// The canonical encoding of the row's fields.
    pub encoding: &'a [u8],
}

impl<'a> Packed<'a> {
    /// Splits a packed row; `None` if it is too short to hold the fixed part.
    pub fn parse(bytes: &'a [u8]) -> Option<Self> {
        let (format, rest) = bytes.split_first_chunk::<2>()?;
        let (prev_hash, rest) = rest.split_first_chunk::<32>()?;
        let (hash, encoding) = rest.split_first_chunk::<32>()?;
        Some(Packed {
            format: i16::from_be_bytes(*format),
            prev_hash,
            hash,
            encoding,
        })
    }
}

/// Packs a row for verification (see [`Packed`]). A row of a format this
/// version cannot encode is packed without its encoding; the walker then
/// reports the format rather than a hash mismatch.
pub fn pack(format: i16, prev_hash: &[u8; 32], hash: &[u8; 32], fields: &Fields<'_>) -> Vec<u8> {
    let mut out = Vec::with_capacity(512);
    out.extend_from_slice(&format.to_be_bytes());
    out.extend_from_slice(prev_hash);
    out.extend_from_slice(hash);
    let fixed = out.len();
    if encode(format, fields, &mut out).is_err() {
        out.truncate(fixed);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample<'a>(id: &'a Uuid, source: &'a str, actor: &'a str) -> Fields<'a> {
        Fields {
            id,
            session: None,
            occurred_at_us: 1,
            recorded_at_us: 2,
            reported_at_us: None,
            source,
            actor,
            kind: "admin.note",
            payload: "{}",
        }
    }

    fn bytes(f: &Fields<'_>) -> Vec<u8> {
        let mut out = Vec::new();
        encode(CURRENT_FORMAT, f, &mut out).unwrap();
        out
    }

    #[test]
    fn encoding_is_the_documented_layout() {
        let id = Uuid::from_u128(7);
        let mut expected = b"vigil.audit\0".to_vec();
        expected.push(2);
        expected.extend_from_slice(&7u128.to_be_bytes());
        expected.push(0); // no session
        expected.extend_from_slice(&1i64.to_be_bytes());
        expected.extend_from_slice(&2i64.to_be_bytes());
        expected.push(0); // no reported time
        for text in ["cli", "x", "admin.note", "{}"] {
            expected.extend_from_slice(&(text.len() as u32).to_be_bytes());
            expected.extend_from_slice(text.as_bytes());
        }
        assert_eq!(bytes(&sample(&id, "cli", "x")), expected);
    }

    #[test]
    fn moving_bytes_between_fields_changes_the_encoding() {
        let id = Uuid::from_u128(7);
        assert_ne!(
            bytes(&sample(&id, "ab", "c")),
            bytes(&sample(&id, "a", "bc"))
        );
    }

    #[test]
    fn session_presence_is_encoded() {
        let id = Uuid::from_u128(7);
        let nil = Uuid::nil();
        let mut with = sample(&id, "s", "a");
        with.session = Some(&nil);
        assert_ne!(bytes(&with), bytes(&sample(&id, "s", "a")));
    }

    #[test]
    fn a_reported_time_is_encoded_and_changes_a_format_1_row() {
        let id = Uuid::from_u128(7);
        let mut with = sample(&id, "s", "a");
        with.reported_at_us = Some(5);
        assert_ne!(bytes(&with), bytes(&sample(&id, "s", "a")));
        let v1 = |f: &Fields<'_>| {
            let mut out = Vec::new();
            encode(1, f, &mut out).unwrap();
            out
        };
        assert_ne!(v1(&with), v1(&sample(&id, "s", "a")));
    }

    /// The encoding is what every stored hash was computed over: a change
    /// to it would make every existing log fail verification. Pinned here
    /// byte for byte, for both formats.
    #[test]
    fn known_answers() {
        let id = Uuid::from_u128(0x0123_4567_89ab_cdef_0123_4567_89ab_cdef);
        let session = Uuid::from_u128(1);
        let f = Fields {
            id: &id,
            session: Some(&session),
            occurred_at_us: 1_700_000_000_000_000,
            recorded_at_us: 1_700_000_000_000_123,
            reported_at_us: None,
            source: "gateway",
            actor: "technician:ann@example.com",
            kind: "chat.message",
            payload: r#"{"from":"technician","text":"hi","chars":2}"#,
        };
        let mut v1 = Vec::new();
        encode(1, &f, &mut v1).unwrap();
        assert_eq!(hex::encode(&v1), "766967696c2e617564697400010123456789abcdef0123456789abcdef01000000000000000000000000000000010006\
             0a24181e400000060a24181e407b00000007676174657761790000001a746563686e696369616e3a616e6e40\
             6578616d706c652e636f6d0000000c636861742e6d6573736167650000002b7b2266726f6d223a22746563686e\
             696369616e222c2274657874223a226869222c226368617273223a327d");
        let reported = Fields {
            reported_at_us: Some(1_699_999_999_000_000),
            ..f
        };
        let mut v2 = Vec::new();
        encode(2, &reported, &mut v2).unwrap();
        assert_eq!(
            sha256_hex(&v2),
            "2e9acbae5e0b556f86210e68bbe6eb99f41c84073dacea827a0b24230d0af4e5"
        );
    }

    fn sha256_hex(bytes: &[u8]) -> String {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(bytes))
    }

    #[test]
    fn unknown_format_is_refused() {
        let id = Uuid::from_u128(7);
        let mut out = Vec::new();
        assert_eq!(
            encode(9, &sample(&id, "s", "a"), &mut out),
            Err(UnknownFormat(9))
        );
    }
}
