//! The wire protocol between clients and the gateway: length-prefixed,
//! typed frames with a maximum size (docs/protocol.md is the reference).
//!
//! A frame is a 4-byte big-endian length `L`, then `L` bytes: one type byte
//! and the body. Control bodies are JSON objects; a `Data` body is opaque
//! bytes of the inner end-to-end session, which the gateway forwards unread.

use std::net::IpAddr;

use audit_event::event::JoinMethod;
use audit_event::Permission;
use bytes::{BufMut, Bytes, BytesMut};
use futures::StreamExt;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio_util::codec::{Decoder, FramedRead};
use uuid::Uuid;

/// The protocol version this build speaks.
pub const VERSION: u16 = 1;
/// Largest frame body (type byte excluded) either side may send.
pub const MAX_BODY: usize = 64 * 1024;
/// Bytes before the body: length (4) and type (1).
pub const HEADER: usize = 5;

/// A frame could not be read or understood.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The connection failed.
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    /// The peer closed the connection in the middle of a frame.
    #[error("connection closed in the middle of a frame")]
    Truncated,
    /// The length prefix announced more than the protocol allows.
    #[error("frame of {0} bytes exceeds the maximum of {max}", max = MAX_BODY + 1)]
    Oversize(u32),
    /// A frame with a zero length prefix (no type byte).
    #[error("empty frame")]
    Empty,
    /// A type byte this version does not define.
    #[error("unknown message type 0x{0:02x}")]
    UnknownType(u8),
    /// A body that is not what its type requires.
    #[error("malformed {kind} message: {reason}")]
    Malformed {
        /// The message's name.
        kind: &'static str,
        /// What is wrong with its body.
        reason: String,
    },
}

impl WireError {
    /// Whether the connection was lost (reset, closed without a TLS
    /// close_notify, cut mid-frame) rather than fed bad input: there is
    /// nobody left to answer, and nothing to warn about.
    pub fn is_disconnect(&self) -> bool {
        matches!(self, WireError::Io(_) | WireError::Truncated)
    }

    /// The code sent to the peer before the connection is closed for this error.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::Io(_) | WireError::Truncated => ErrorCode::Malformed,
            WireError::Oversize(_) => ErrorCode::Oversize,
            WireError::Empty | WireError::Malformed { .. } => ErrorCode::Malformed,
            WireError::UnknownType(_) => ErrorCode::UnknownType,
        }
    }
}

/// One frame as read: header and body in one buffer, so the gateway can
/// forward it with a single write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    bytes: Bytes,
}

impl Frame {
    /// The type byte.
    pub fn kind(&self) -> u8 {
        self.bytes[4]
    }

    /// The body (after the type byte).
    pub fn body(&self) -> &[u8] {
        &self.bytes[HEADER..]
    }

    /// The whole frame as sent on the wire.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether this is a `Data` frame.
    pub fn is_data(&self) -> bool {
        self.kind() == Kind::Data as u8
    }

    /// A `Data` frame carrying `payload` (at most [`MAX_BODY`] bytes).
    pub fn data(payload: &[u8]) -> Self {
        debug_assert!(payload.len() <= MAX_BODY);
        Self::build(Kind::Data, payload)
    }

    fn build(kind: Kind, body: &[u8]) -> Self {
        Self::with_type(kind as u8, body)
    }

    /// A frame of any type byte (the inner session has types of its own).
    /// `body` is at most [`MAX_BODY`] bytes.
    pub fn with_type(kind: u8, body: &[u8]) -> Self {
        debug_assert!(body.len() <= MAX_BODY);
        let mut bytes = BytesMut::with_capacity(HEADER + body.len());
        // The body is bounded by MAX_BODY, so the length fits in u32.
        bytes.put_u32((body.len() + 1) as u32);
        bytes.put_u8(kind);
        bytes.put_slice(body);
        Self {
            bytes: bytes.freeze(),
        }
    }
}

/// Splits a byte stream into frames. The length is checked before anything
/// is buffered for the body, and the buffer grows only to the frame at hand,
/// so an idle link holds almost nothing.
#[derive(Debug, Default)]
pub struct Codec;

impl Decoder for Codec {
    type Item = Frame;
    type Error = WireError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if src.len() < 4 {
            src.reserve(4 - src.len());
            return Ok(None);
        }
        let n = u32::from_be_bytes([src[0], src[1], src[2], src[3]]);
        if n == 0 {
            return Err(WireError::Empty);
        }
        if n as usize > MAX_BODY + 1 {
            return Err(WireError::Oversize(n));
        }
        let total = 4 + n as usize;
        if src.len() < total {
            src.reserve(total - src.len());
            return Ok(None);
        }
        Ok(Some(Frame {
            bytes: src.split_to(total).freeze(),
        }))
    }

    fn decode_eof(&mut self, src: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        match self.decode(src)? {
            Some(frame) => Ok(Some(frame)),
            None if src.is_empty() => Ok(None),
            None => Err(WireError::Truncated),
        }
    }
}

/// One end of a framed connection: frames in, frames out.
pub struct Link<S> {
    reader: FramedRead<ReadHalf<S>, Codec>,
    writer: WriteHalf<S>,
}

impl<S> std::fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite> Link<S> {
    /// Frames over `stream`.
    pub fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self {
            // Start empty: the buffer grows to the largest frame seen.
            reader: FramedRead::with_capacity(r, Codec, 0),
            writer: w,
        }
    }

    /// The next frame; `Ok(None)` when the peer closed cleanly between
    /// frames. Cancel-safe: a frame half read stays buffered.
    pub async fn next_frame(&mut self) -> Result<Option<Frame>, WireError> {
        self.reader.next().await.transpose()
    }

    /// The next message; `Ok(None)` on a clean close. Cancel-safe.
    pub async fn recv(&mut self) -> Result<Option<Message>, WireError> {
        match self.next_frame().await? {
            Some(frame) => Message::decode(&frame).map(Some),
            None => Ok(None),
        }
    }

    /// Writes one whole frame and flushes it. Not cancel-safe: a frame
    /// interrupted half way leaves the link unusable.
    pub async fn write_frame(&mut self, frame: &Frame) -> std::io::Result<()> {
        self.writer.write_all(frame.as_bytes()).await?;
        self.writer.flush().await
    }

    /// Writes bytes as they are, framed or not: for tests of what a peer
    /// does with malformed input.
    pub async fn write_raw(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        self.writer.write_all(bytes).await?;
        self.writer.flush().await
    }

    /// Encodes and writes one message.
    pub async fn send(&mut self, message: &Message) -> std::io::Result<()> {
        self.write_frame(&message.encode()).await
    }

    /// Closes the sending side (a TLS close_notify, then FIN).
    pub async fn shutdown(&mut self) -> std::io::Result<()> {
        self.writer.shutdown().await
    }

    /// Both halves, for forwarding in two directions at once.
    pub fn split(&mut self) -> (&mut FramedRead<ReadHalf<S>, Codec>, &mut WriteHalf<S>) {
        (&mut self.reader, &mut self.writer)
    }

    /// The underlying stream's halves, once the link is done with.
    pub fn into_inner(self) -> S
    where
        S: Unpin,
    {
        self.reader.into_inner().unsplit(self.writer)
    }
}

/// Why the gateway refused something or closed a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// A frame or body that could not be parsed.
    Malformed,
    /// A length prefix over the maximum.
    Oversize,
    /// A type byte the gateway does not know.
    UnknownType,
    /// A known message at a point of the conversation where it is not allowed.
    UnexpectedMessage,
    /// The client speaks a protocol version the gateway does not.
    UnsupportedVersion,
    /// The client took too long to say who it is.
    HandshakeTimeout,
    /// Wrong email or password (never says which).
    BadCredentials,
    /// The account is locked after failed logins.
    AccountLocked,
    /// The account was disabled by an administrator.
    AccountDisabled,
    /// The client's address is not in the group's allow-list.
    IpNotAllowed,
    /// The password is too old or must be changed: log in again with a new one.
    PasswordExpired,
    /// A new password does not meet the policy.
    PasswordRejected,
    /// Too many failures from this address; retry later.
    Throttled,
    /// Too many logins are being checked at once; retry shortly.
    Busy,
    /// No activity for longer than the idle limit.
    IdleTimeout,
    /// No waiting session with this PIN or GUID (or it was used already).
    UnknownSession,
    /// The PIN or session expired.
    Expired,
    /// The gateway is shutting down.
    ShuttingDown,
    /// Something failed inside the gateway; the client did nothing wrong.
    Internal,
}

impl ErrorCode {
    /// The name the audit log records a protocol error under (e.g.
    /// `console_protocol_error: Oversize`). Spelled out, never taken from
    /// the Rust name, so renaming a variant cannot change the log's words.
    pub fn name(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "Malformed",
            ErrorCode::Oversize => "Oversize",
            ErrorCode::UnknownType => "UnknownType",
            ErrorCode::UnexpectedMessage => "UnexpectedMessage",
            ErrorCode::UnsupportedVersion => "UnsupportedVersion",
            ErrorCode::HandshakeTimeout => "HandshakeTimeout",
            ErrorCode::BadCredentials => "BadCredentials",
            ErrorCode::AccountLocked => "AccountLocked",
            ErrorCode::AccountDisabled => "AccountDisabled",
            ErrorCode::IpNotAllowed => "IpNotAllowed",
            ErrorCode::PasswordExpired => "PasswordExpired",
            ErrorCode::PasswordRejected => "PasswordRejected",
            ErrorCode::Throttled => "Throttled",
            ErrorCode::Busy => "Busy",
            ErrorCode::IdleTimeout => "IdleTimeout",
            ErrorCode::UnknownSession => "UnknownSession",
            ErrorCode::Expired => "Expired",
            ErrorCode::ShuttingDown => "ShuttingDown",
            ErrorCode::Internal => "Internal",
        }
    }
}

/// A waiting session in a technician's queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    /// The session.
    pub guid: Uuid,
    /// When the applet joined (microseconds since the epoch).
    pub joined_us: i64,
    /// The applet's address.
    pub ip: IpAddr,
    /// Whether it joined by PIN or GUID.
    pub via: JoinMethod,
}

/// Declares every message once: its type byte, its name and its JSON body.
macro_rules! messages {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal { $($field:ident : $ty:ty),* $(,)? } )*) => {
        /// Every control message, with its body.
        // The fields of each message are described in docs/protocol.md's
        // message table, the protocol's reference; the macro has no place
        // for a line per field.
        #[allow(missing_docs)]
        #[derive(Clone, Debug, PartialEq)]
        pub enum Message {
            $( $(#[$doc])* $variant { $($field: $ty),* }, )*
            /// Opaque bytes of the inner session.
            Data(Vec<u8>),
        }

        /// The type byte of each message.
        #[derive(Clone, Copy, Debug, PartialEq, Eq)]
        #[repr(u8)]
        pub enum Kind {
            $( $(#[$doc])* $variant = $code, )*
            /// Opaque bytes of the inner session.
            Data = 0x50,
        }

        impl Kind {
            /// The kind of a type byte, if this version defines it.
            pub fn from_byte(b: u8) -> Option<Self> {
                match b {
                    $( $code => Some(Kind::$variant), )*
                    0x50 => Some(Kind::Data),
                    _ => None,
                }
            }

            /// The message's name, as in docs/protocol.md.
            pub fn name(self) -> &'static str {
                match self {
                    $( Kind::$variant => stringify!($variant), )*
                    Kind::Data => "Data",
                }
            }
        }

        impl Message {
            /// This message's type.
            pub fn kind(&self) -> Kind {
                match self {
                    $( Message::$variant { .. } => Kind::$variant, )*
                    Message::Data(_) => Kind::Data,
                }
            }

            /// The whole frame for this message.
            pub fn encode(&self) -> Frame {
                match self {
                    $( Message::$variant { $($field),* } => {
                        #[allow(unused_mut)]
                        let mut body = serde_json::Map::new();
                        $( body.insert(stringify!($field).to_owned(), to_value($field)); )*
                        Frame::build(Kind::$variant, &to_json(&body))
                    } )*
                    Message::Data(bytes) => Frame::data(bytes),
                }
            }

            /// Parses a frame's body according to its type byte.
            pub fn decode(frame: &Frame) -> Result<Self, WireError> {
                let kind = Kind::from_byte(frame.kind()).ok_or(WireError::UnknownType(frame.kind()))?;
                match kind {
                    $( Kind::$variant => {
                        #[derive(Deserialize)]
                        #[serde(deny_unknown_fields)]
                        struct Body { $($field: $ty),* }
                        let Body { $($field),* } = from_json::<Body>(kind, frame.body())?;
                        Ok(Message::$variant { $($field),* })
                    } )*
                    Kind::Data => Ok(Message::Data(frame.body().to_vec())),
                }
            }
        }
    };
}

messages! {
    /// Client → gateway, first on every connection: the protocol version and the client's name.
    Hello = 0x01 { version: u16, client: String }
    /// Gateway → client: the version both will speak.
    Welcome = 0x02 { version: u16, gateway: String }
    /// Gateway → client: a refusal; after a protocol violation the connection closes.
    Error = 0x03 { code: ErrorCode, message: String, retry_after_s: Option<u64> }
    /// Technician → gateway: log in (with `new_password` when the old one must be changed).
    Login = 0x10 { email: String, password: String, new_password: Option<String> }
    /// Gateway → technician: logged in.
    LoginOk = 0x11 {
        email: String,
        group: String,
        role: String,
        permissions: Vec<Permission>,
        idle_timeout_s: u64,
        password_expires_us: Option<i64>,
        force_recording: bool,
    }
    /// Technician → gateway: log out and close.
    Logout = 0x12 {}
    /// Technician → gateway: create a support session.
    CreateSession = 0x20 {}
    /// Gateway → technician: the new session, and the PIN for the end user.
    SessionCreated = 0x21 { guid: Uuid, pin: String, expires_us: i64 }
    /// Technician → gateway: list the applets waiting for this technician.
    ListQueue = 0x22 {}
    /// Gateway → technician: the waiting applets, oldest first.
    Queue = 0x23 { waiting: Vec<Waiting> }
    /// Technician → gateway: pick a waiting session up, with a CSR for the console's session certificate.
    PickUp = 0x24 { guid: Uuid, csr: String }
    /// Gateway → technician: the console's session certificate, the session CA and the ticket to attach with.
    PickedUp = 0x25 { guid: Uuid, ticket: String, certificate: String, session_ca: String, grant: Vec<Permission> }
    /// Applet → gateway: join a session by PIN or GUID, with a CSR for the applet's session certificate.
    Join = 0x30 { code: String, csr: String }
    /// Gateway → applet: joined; waiting in the technician's queue.
    Joined = 0x31 { guid: Uuid, technician: String }
    /// Gateway → applet: picked up; the applet's session certificate and the session CA. Data may flow.
    Paired = 0x32 { certificate: String, session_ca: String }
    /// Console → gateway, on a new connection: attach to a picked-up session.
    Attach = 0x40 { guid: Uuid, ticket: String }
    /// Gateway → console: attached. Data may flow.
    Attached = 0x41 { guid: Uuid }
    /// Either way, on a session link: the session ended (or: end it).
    End = 0x51 { reason: String }
    /// Console or applet → gateway, on its control or session link: an audit
    /// event it saw. `kind` and `payload` are an audit event type and its
    /// payload; the gateway stamps actor, source and (on a session link) session.
    Event = 0x60 { id: Uuid, occurred_us: i64, session: Option<Uuid>, kind: String, payload: serde_json::Value }
    /// Gateway → reporter: the event is durable at `seq` (`duplicate`: it already was).
    EventAck = 0x61 { id: Uuid, seq: i64, duplicate: bool }
    /// Gateway → reporter: the event was not recorded, and why. The link stays open.
    EventRefused = 0x62 { id: Uuid, message: String }
}

fn to_value<T: Serialize>(field: &T) -> serde_json::Value {
    serde_json::to_value(field)
        .expect("message fields are plain types (no maps with non-string keys, no custom impls)")
}

fn to_json(body: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(body).expect("a JSON object of JSON values always serialises")
}

fn from_json<T: DeserializeOwned>(kind: Kind, body: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Malformed {
        kind: kind.name(),
        reason: e.to_string(),
    })
}

/// Text a client sent, made safe for a log line or an audit field: control
/// characters escaped (a newline becomes `\n`, so it cannot start a forged
/// line), at most `max` characters kept, then `…`.
pub fn printable(text: &str, max: usize) -> String {
    let mut out = String::with_capacity(text.len().min(max * 2));
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// An `Error` message.
pub fn error(code: ErrorCode, message: impl Into<String>) -> Message {
    Message::Error {
        code,
        message: message.into(),
        retry_after_s: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(bytes: &[u8]) -> Result<Vec<Frame>, WireError> {
        let mut buf = BytesMut::from(bytes);
        let mut frames = Vec::new();
        while let Some(f) = Codec.decode_eof(&mut buf)? {
            frames.push(f);
        }
        Ok(frames)
    }

    #[test]
    fn messages_round_trip() {
        let msgs = [
            Message::Hello {
                version: VERSION,
                client: "t".into(),
            },
            Message::Logout {},
            Message::Queue {
                waiting: vec![Waiting {
                    guid: Uuid::nil(),
                    joined_us: 5,
                    ip: "127.0.0.1".parse().unwrap(),
                    via: JoinMethod::Pin,
                }],
            },
            Message::Data(vec![1, 2, 3]),
            error(ErrorCode::Throttled, "slow down"),
        ];
        let mut wire = Vec::new();
        for m in &msgs {
            wire.extend_from_slice(m.encode().as_bytes());
        }
        let frames = decode_all(&wire).unwrap();
        let back: Vec<_> = frames.iter().map(|f| Message::decode(f).unwrap()).collect();
        assert_eq!(back, msgs);
    }

    #[test]
    fn oversize_is_refused_before_buffering() {
        let err = decode_all(&[0xff, 0xff, 0xff, 0xff, 0x01]).unwrap_err();
        assert!(matches!(err, WireError::Oversize(0xffff_ffff)), "{err}");
        assert_eq!(err.code(), ErrorCode::Oversize);
    }

    #[test]
    fn bad_frames_are_named() {
        assert!(matches!(decode_all(&[0, 0, 0, 0]), Err(WireError::Empty)));
        assert!(matches!(
            decode_all(&[0, 0, 0, 9, 0x01, b'{']),
            Err(WireError::Truncated)
        ));
        let frames = decode_all(&[0, 0, 0, 1, 0x7f]).unwrap();
        assert!(matches!(
            Message::decode(&frames[0]),
            Err(WireError::UnknownType(0x7f))
        ));
        let bad_json = Frame::build(Kind::Login, b"{\"email\": 5}");
        assert!(matches!(
            Message::decode(&bad_json),
            Err(WireError::Malformed { kind: "Login", .. })
        ));
        let extra = Frame::build(Kind::Logout, b"{\"x\": 1}");
        assert!(Message::decode(&extra).is_err());
        assert!(decode_all(&[]).unwrap().is_empty());
    }

    #[test]
    fn client_text_is_printable_and_bounded() {
        assert_eq!(
            printable("a\nINFO x\u{1b}[31m", 100),
            "a\\nINFO x\\u{1b}[31m"
        );
        assert_eq!(printable("abcdef", 3), "abc…");
        assert_eq!(printable("abc", 3), "abc");
    }

    #[tokio::test]
    async fn a_link_carries_messages_both_ways() {
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (mut a, mut b) = (Link::new(a), Link::new(b));
        a.send(&Message::Logout {}).await.unwrap();
        assert_eq!(b.recv().await.unwrap(), Some(Message::Logout {}));
        b.send(&Message::Data(vec![7; 3000])).await.unwrap();
        assert_eq!(a.recv().await.unwrap(), Some(Message::Data(vec![7; 3000])));
        a.shutdown().await.unwrap();
        assert_eq!(b.recv().await.unwrap(), None);
    }
}
