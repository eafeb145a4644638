//! The messages of the inner session, exchanged end to end inside the inner
//! TLS, never seen by the gateway. Framed like the outer protocol (u32
//! length, type byte, body; 64 KiB at most): type 0x01 is a JSON control
//! message, type 0x02 a file chunk (16-byte transfer id, then bytes), type
//! 0x03 a fragment of a screen update (`recorder::stream`), type 0x04 a
//! cursor update (`recorder::cursor`).

use audit_event::event::Denial;
use audit_event::Permission;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use recorder::input::InputEvent;

use super::files::Digests;
use super::sysinfo::SystemInfo;
use protocol::wire::{Frame, WireError, MAX_BODY};

/// Type byte of a control message.
pub const CONTROL: u8 = 0x01;
/// Type byte of a file chunk.
pub const CHUNK: u8 = 0x02;
/// Type byte of a screen update fragment.
pub const SCREEN: u8 = 0x03;
/// Type byte of a cursor update.
pub const POINTER: u8 = 0x04;
/// File bytes per chunk frame.
pub const CHUNK_DATA: usize = MAX_BODY - 16;

/// A control message of the inner session.
// Each message and its fields are described in docs/protocol.md ("Inside
// the session"), the reference for this protocol.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Control {
    /// Applet → console, first: the name of the end user's computer.
    Hello { host: String },
    /// A chat line.
    Chat { text: String },
    /// Console → applet: may the technician do this now?
    Ask {
        request: Uuid,
        permission: Permission,
    },
    /// Applet → console: the answer to `Ask` (or to an action's implicit ask).
    Answer {
        request: Uuid,
        permission: Permission,
        granted: bool,
        denial: Option<Denial>,
    },
    /// A file is offered: console → applet for a send (chunks follow after
    /// `FileAccept`); applet → console for a requested file, with the
    /// request's transfer id (chunks follow at once).
    FileOffer {
        transfer: Uuid,
        name: String,
        size: u64,
    },
    /// Applet → console: the offered file may come (the end user consented).
    FileAccept { transfer: Uuid },
    /// Console → applet: send me this file.
    FileGet { transfer: Uuid, path: String },
    /// The sender's view after the last chunk.
    FileDone {
        transfer: Uuid,
        size: u64,
        md5: String,
        sha256: String,
    },
    /// The receiver's view: saved (under `saved_as`) or not, and why.
    FileResult {
        transfer: Uuid,
        ok: bool,
        size: u64,
        md5: String,
        sha256: String,
        saved_as: Option<String>,
        error: Option<String>,
    },
    /// The file will not be sent (denied, unreadable...).
    FileRefused { transfer: Uuid, reason: String },
    /// Console → applet: the end user's system information, please.
    SysInfoGet { request: Uuid },
    /// Applet → console: here it is.
    SysInfo { request: Uuid, info: SystemInfo },
    /// Console → applet: show me your screen (answered like `Ask`).
    ViewStart { request: Uuid },
    /// Console → applet: every screen update up to `seq` has arrived.
    ViewAck { seq: u32 },
    /// Console → applet: stop showing the screen.
    ViewStop,
    /// Console → applet: make the next screen update a key (to start a
    /// recording, or after an update that did not decode).
    ViewKey,
    /// Applet → console: the screen stream has stopped, and why.
    ViewEnded { reason: String },
    /// Console → applet: let me control your mouse and keyboard (answered like `Ask`).
    ControlStart { request: Uuid },
    /// Console → applet: mouse and keyboard input, to be injected in order.
    Input { events: Vec<InputEvent> },
    /// Applet → console: an input event could not be injected (the others were).
    InputFailed { reason: String },
    /// Console → applet: remote control is over.
    ControlStop,
    /// Applet → console: remote control is over, and that is in the audit log.
    ControlEnded,
}

impl Control {
    /// The receiver's `FileResult`: its digests, and where the file was
    /// saved or why it was not.
    pub fn file_result(transfer: Uuid, ours: Digests, saved: Result<String, String>) -> Self {
        let (ok, saved_as, error) = match saved {
            Ok(name) => (true, Some(name), None),
            Err(why) => (false, None, Some(why)),
        };
        Control::FileResult {
            transfer,
            ok,
            size: ours.size,
            md5: ours.md5,
            sha256: ours.sha256,
            saved_as,
            error,
        }
    }
}

/// One inner-session frame, decoded.
#[derive(Debug, PartialEq)]
pub enum Inner {
    /// A control message.
    Control(Control),
    /// File bytes of a transfer.
    Chunk {
        /// The transfer.
        transfer: Uuid,
        /// The bytes.
        data: Vec<u8>,
    },
    /// A fragment of a screen update.
    Screen(Vec<u8>),
    /// A cursor update.
    Pointer(Vec<u8>),
}

impl Control {
    /// The message's `type`, as sent (for saying which one came out of turn).
    pub fn name(&self) -> String {
        serde_json::to_value(self)
            .ok()
            .and_then(|v| v.get("type")?.as_str().map(str::to_owned))
            .unwrap_or_else(|| "a control message".to_owned())
    }
}

impl Inner {
    /// Decodes a frame of the inner session.
    pub fn decode(frame: &Frame) -> Result<Self, WireError> {
        match frame.kind() {
            CONTROL => serde_json::from_slice(frame.body())
                .map(Inner::Control)
                .map_err(|e| WireError::Malformed {
                    kind: "inner control",
                    reason: e.to_string(),
                }),
            CHUNK if frame.body().len() >= 16 => {
                let (id, data) = frame.body().split_at(16);
                let transfer = Uuid::from_slice(id).map_err(|e| WireError::Malformed {
                    kind: "inner chunk",
                    reason: e.to_string(),
                })?;
                Ok(Inner::Chunk {
                    transfer,
                    data: data.to_vec(),
                })
            }
            CHUNK => Err(WireError::Malformed {
                kind: "inner chunk",
                reason: "shorter than its transfer id".into(),
            }),
            SCREEN => Ok(Inner::Screen(frame.body().to_vec())),
            POINTER => Ok(Inner::Pointer(frame.body().to_vec())),
            other => Err(WireError::UnknownType(other)),
        }
    }
}

/// The frame of a control message.
pub fn control(message: &Control) -> Frame {
    let body = serde_json::to_vec(message).expect("a control message: serialising this plain struct (no maps with non-string keys, no custom impls) cannot fail");
    Frame::with_type(CONTROL, &body)
}

/// The frame of a file chunk (`data` at most [`CHUNK_DATA`] bytes).
pub fn chunk(transfer: Uuid, data: &[u8]) -> Frame {
    let mut body = Vec::with_capacity(16 + data.len());
    body.extend_from_slice(transfer.as_bytes());
    body.extend_from_slice(data);
    Frame::with_type(CHUNK, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip() {
        let m = Control::Ask {
            request: Uuid::nil(),
            permission: Permission::SendFiles,
        };
        assert_eq!(Inner::decode(&control(&m)).unwrap(), Inner::Control(m));
        let id = Uuid::new_v4();
        assert_eq!(
            Inner::decode(&chunk(id, b"abc")).unwrap(),
            Inner::Chunk {
                transfer: id,
                data: b"abc".to_vec()
            }
        );
        assert!(Inner::decode(&Frame::with_type(CHUNK, b"short")).is_err());
        assert!(Inner::decode(&Frame::with_type(0x09, b"")).is_err());
        assert!(Inner::decode(&Frame::with_type(CONTROL, b"{\"type\":\"nope\"}")).is_err());
    }
}
