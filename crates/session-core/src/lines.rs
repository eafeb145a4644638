//! What `vigil console --json` and `vigil applet --json` print: one JSON
//! object per line, `{"event": NAME, ...}`. The types are the contract with
//! the scripts that read them (and `vigil demo`, and the tests): a line is
//! written from a value of these types and read back into one.

use audit_event::event::Denial;
use audit_event::Permission;
use protocol::wire::Waiting;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::session::sysinfo::SystemInfo;

/// A line of `vigil console --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum ConsoleLine {
    /// Logged in.
    LoggedIn {
        /// The technician's email.
        user: String,
        /// Their group.
        group: String,
        /// What the group may do.
        permissions: Vec<Permission>,
    },
    /// A command failed.
    Error {
        /// Why, for people.
        message: String,
    },
    /// Something went wrong that did not stop anything.
    Warning {
        /// What, for people.
        message: String,
    },
    /// Spooled audit events reached the gateway.
    SpoolDelivered {
        /// How many.
        events: usize,
    },
    /// The command list was shown.
    Help {},
    /// A session was created.
    SessionCreated {
        /// Its GUID.
        session: Uuid,
        /// The PIN for the end user.
        pin: String,
        /// When the PIN expires (RFC 3339).
        expires: String,
    },
    /// The waiting end users.
    Queue {
        /// Oldest first.
        waiting: Vec<Waiting>,
    },
    /// A session was picked up and is end-to-end encrypted.
    Paired {
        /// Its GUID.
        session: Uuid,
        /// The verification code both sides show.
        sas: String,
    },
    /// A permission's answer.
    Permission {
        /// The permission asked for.
        permission: Permission,
        /// Whether it was granted.
        granted: bool,
        /// Why not, for people.
        denial: Option<String>,
    },
    /// The end user's system information.
    Sysinfo {
        /// What the applet reported.
        info: SystemInfo,
    },
    /// The page showing the end user's screen.
    Viewer {
        /// Its address on 127.0.0.1, with its token.
        url: String,
    },
    /// The answer to `/view`.
    View {
        /// Whether the screen is shown.
        granted: bool,
        /// Why not, for people.
        denial: Option<String>,
    },
    /// The answer to `/control`.
    Control {
        /// Whether the technician controls the end user's mouse and keyboard.
        granted: bool,
        /// Why not, for people.
        denial: Option<String>,
    },
    /// A recording was armed (it starts with the next screen).
    Recording {
        /// The file it writes.
        path: String,
    },
    /// A recording was finished.
    RecordingStopped {
        /// The file.
        path: String,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256, lower-case hex.
        sha256: String,
        /// Screen updates in it.
        frames: u64,
    },
    /// A file transfer ended.
    File {
        /// `send` or `get`.
        action: String,
        /// The file's name.
        name: String,
        /// Whether both ends hold the same bytes.
        ok: bool,
        /// Where it was saved (when `ok`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        saved_as: Option<String>,
        /// Its size in bytes (when `ok`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        size: Option<u64>,
        /// Its MD5 (when `ok`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        md5: Option<String>,
        /// Its SHA-256 (when `ok`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sha256: Option<String>,
        /// Why the end user's side refused it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        refused: Option<String>,
        /// What went wrong.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// A chat line was sent or received.
    Chat {
        /// `end_user`, or `technician` for the console's own lines.
        from: String,
        /// The line.
        text: String,
    },
    /// The end user's screen stream stopped.
    ViewEnded {
        /// Why.
        reason: String,
    },
    /// Remote control ended: the end user has their mouse and keyboard back.
    ControlEnded {},
    /// A key or mouse event could not be injected on the end user's display.
    InputFailed {
        /// Why, for people.
        message: String,
    },
    /// The session ended.
    Ended {
        /// Its GUID.
        session: Uuid,
        /// Why, for people.
        reason: String,
    },
}

/// A line of `vigil applet --json`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum AppletLine {
    /// Joined; waiting for the technician.
    Joined {
        /// The session's GUID.
        session: Uuid,
        /// The technician's email.
        technician: String,
    },
    /// Picked up and end-to-end encrypted.
    Paired {
        /// The verification code both sides show.
        sas: String,
        /// What the technician's group may ask for.
        grant: Vec<Permission>,
    },
    /// The end user is asked to consent.
    ConsentAsked {
        /// The permission.
        permission: Permission,
        /// What it is for, in words.
        what: String,
    },
    /// A consent was answered.
    Consent {
        /// The permission.
        permission: Permission,
        /// What it was for.
        what: String,
        /// The answer.
        granted: bool,
    },
    /// The technician wrote.
    Chat {
        /// Always `technician` on the applet.
        from: String,
        /// The line.
        text: String,
    },
    /// A file from the technician was saved.
    FileReceived {
        /// Where.
        saved_as: String,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256, lower-case hex.
        sha256: String,
    },
    /// A file the technician asked for was sent.
    FileSent {
        /// The file.
        path: String,
        /// Bytes sent.
        size: u64,
        /// Whether the technician's end verified them.
        ok: bool,
    },
    /// A file could not be received.
    FileFailed {
        /// Its name.
        name: String,
        /// What went wrong.
        error: String,
    },
    /// Something went wrong that did not stop the session.
    Warning {
        /// What, for people.
        message: String,
    },
    /// The session ended.
    Ended {
        /// Why, for people.
        reason: String,
    },
}

/// What a denial means, for people.
pub fn denial_text(denial: Denial) -> &'static str {
    match denial {
        Denial::EndUser => "the end user said no",
        Denial::NotGranted => "your group is not granted this",
        Denial::Unavailable => "not available in this version",
        Denial::NoDisplay => "the end user shared no display",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_tagged_objects_and_read_back() {
        let line = ConsoleLine::SessionCreated {
            session: Uuid::nil(),
            pin: "042137".into(),
            expires: "2026-11-30T20:00:00.000000Z".into(),
        };
        let text = serde_json::to_string(&line).unwrap();
        assert!(text.starts_with(r#"{"event":"session_created","#), "{text}");
        assert_eq!(serde_json::from_str::<ConsoleLine>(&text).unwrap(), line);
        let applet = AppletLine::Ended {
            reason: "the technician left".into(),
        };
        let text = serde_json::to_string(&applet).unwrap();
        assert_eq!(text, r#"{"event":"ended","reason":"the technician left"}"#);
    }
}
