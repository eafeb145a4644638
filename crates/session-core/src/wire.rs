//! The wire protocol between clients and the gateway: length-prefixed,
//! typed frames with a maximum size (docs/protocol.md is the reference).
//!
//! A frame is a 4-byte big-endian length `L`, then `L` bytes: one type byte
//! and the body. Control bodies are JSON objects; a `Data` body is opaque
//! bytes of the inner end-to-end session, which the gateway forwards unread.

use std::net::IpAddr;

use audit_db::event::JoinMethod;
use audit_db::Permission;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
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
    Malformed { kind: &'static str, reason: String },
}

impl WireError {
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
    bytes: Vec<u8>,
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
        let mut bytes = Vec::with_capacity(HEADER + body.len());
        // The body is bounded by MAX_BODY, so the length fits in u32.
        bytes.extend_from_slice(&((body.len() + 1) as u32).to_be_bytes());
        bytes.push(kind as u8);
        bytes.extend_from_slice(body);
        Self { bytes }
    }
}

/// Reads one frame; `Ok(None)` when the peer closed cleanly between frames.
/// The length is checked before anything is allocated.
pub async fn read_frame<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Frame>, WireError> {
    let mut len = [0u8; 4];
    let mut got = 0;
    while got < len.len() {
        let n = r.read(&mut len[got..]).await?;
        if n == 0 {
            return if got == 0 {
                Ok(None)
            } else {
                Err(WireError::Truncated)
            };
        }
        got += n;
    }
    let n = u32::from_be_bytes(len);
    if n == 0 {
        return Err(WireError::Empty);
    }
    if n as usize > MAX_BODY + 1 {
        return Err(WireError::Oversize(n));
    }
    let mut bytes = vec![0u8; 4 + n as usize];
    bytes[..4].copy_from_slice(&len);
    r.read_exact(&mut bytes[4..]).await.map_err(|e| {
        if e.kind() == std::io::ErrorKind::UnexpectedEof {
            WireError::Truncated
        } else {
            WireError::Io(e)
        }
    })?;
    Ok(Some(Frame { bytes }))
}

/// Writes one whole frame and flushes it.
pub async fn write_frame<W: AsyncWrite + Unpin>(w: &mut W, frame: &Frame) -> std::io::Result<()> {
    w.write_all(frame.as_bytes()).await?;
    w.flush().await
}

/// Encodes and writes one control message.
pub async fn send<W: AsyncWrite + Unpin>(w: &mut W, message: &Message) -> std::io::Result<()> {
    write_frame(w, &message.encode()).await
}

/// Reads one control message; `Ok(None)` on a clean close.
pub async fn recv<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Message>, WireError> {
    match read_frame(r).await? {
        Some(frame) => Message::decode(&frame).map(Some),
        None => Ok(None),
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
    /// No activity for longer than the idle limit.
    IdleTimeout,
    /// No waiting session with this PIN or GUID (or it was used already).
    UnknownSession,
    /// The PIN or session expired.
    Expired,
    /// The technician may not do this.
    NotPermitted,
    /// The gateway is shutting down.
    ShuttingDown,
    /// Something failed inside the gateway; the client did nothing wrong.
    Internal,
}

/// A waiting session in a technician's queue.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Waiting {
    pub guid: Uuid,
    /// When the applet joined (microseconds since the epoch).
    pub joined_us: i64,
    pub ip: IpAddr,
    pub via: JoinMethod,
}

/// Declares every message once: its type byte, its name and its JSON body.
macro_rules! messages {
    ($( $(#[$doc:meta])* $variant:ident = $code:literal { $($field:ident : $ty:ty),* $(,)? } )*) => {
        /// Every control message, with its body.
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
}

// Serialising these plain types cannot fail: no maps with non-string keys,
// no custom impls.
fn to_value<T: Serialize>(field: &T) -> serde_json::Value {
    serde_json::to_value(field).unwrap_or(serde_json::Value::Null)
}

fn to_json(body: &serde_json::Map<String, serde_json::Value>) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

fn from_json<T: DeserializeOwned>(kind: Kind, body: &[u8]) -> Result<T, WireError> {
    serde_json::from_slice(body).map_err(|e| WireError::Malformed {
        kind: kind.name(),
        reason: e.to_string(),
    })
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

    async fn round_trip(m: Message) -> Message {
        let bytes = m.encode().as_bytes().to_vec();
        let frame = read_frame(&mut &bytes[..]).await.unwrap().unwrap();
        Message::decode(&frame).unwrap()
    }

    #[tokio::test]
    async fn messages_round_trip() {
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
        for m in msgs {
            assert_eq!(round_trip(m.clone()).await, m);
        }
    }

    #[tokio::test]
    async fn oversize_is_refused_before_allocating() {
        let bytes = [0xff, 0xff, 0xff, 0xff, 0x01];
        let err = read_frame(&mut &bytes[..]).await.unwrap_err();
        assert!(matches!(err, WireError::Oversize(0xffff_ffff)), "{err}");
        assert_eq!(err.code(), ErrorCode::Oversize);
    }

    #[tokio::test]
    async fn bad_frames_are_named() {
        let empty = [0, 0, 0, 0];
        assert!(matches!(
            read_frame(&mut &empty[..]).await,
            Err(WireError::Empty)
        ));
        let truncated = [0, 0, 0, 9, 0x01, b'{'];
        assert!(matches!(
            read_frame(&mut &truncated[..]).await,
            Err(WireError::Truncated)
        ));
        let unknown = [0, 0, 0, 1, 0x7f];
        let frame = read_frame(&mut &unknown[..]).await.unwrap().unwrap();
        assert!(matches!(
            Message::decode(&frame),
            Err(WireError::UnknownType(0x7f))
        ));
        let bad_json = Frame::build(Kind::Login, b"{\"email\": 5}");
        assert!(matches!(
            Message::decode(&bad_json),
            Err(WireError::Malformed { kind: "Login", .. })
        ));
        let extra = Frame::build(Kind::Logout, b"{\"x\": 1}");
        assert!(Message::decode(&extra).is_err());
        assert!(read_frame(&mut &[][..]).await.unwrap().is_none());
    }
}
