//! A support session's story as its audit events tell it: who, when,
//! from where, what was asked and granted, said, sent and recorded. One
//! reading of the events, shared by the sessions report and the CRM
//! webhook posts, so that both always say the same.

use audit_db::event::{
    ChatMessage, Consent, Denial, Direction, EventKind, FileTransferred, Party, Permission,
    PermissionDenied, PermissionGranted, PermissionRequested, RecordingStopped, SessionEndUser,
    SessionJoined,
};
use audit_db::{Hash, StoredEvent};
use serde::Serialize;
use uuid::Uuid;

/// How the session ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ended {
    /// When (microseconds since the epoch).
    pub at_us: i64,
    /// The stored reason text (`ended_by_console: done`, ...).
    pub reason: String,
    /// How long it lasted, as the gateway measured it.
    pub duration_ms: u64,
    /// Bytes relayed towards the applet.
    pub bytes_to_applet: u64,
    /// Bytes relayed towards the console.
    pub bytes_to_console: u64,
}

/// A permission the end user granted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Granted {
    /// Which.
    pub permission: Permission,
    /// On what ground.
    pub consent: Consent,
    /// When.
    pub at_us: i64,
}

/// A permission refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// Which.
    pub permission: Permission,
    /// Why.
    pub reason: Denial,
    /// When.
    pub at_us: i64,
}

/// A chat line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChatLine {
    /// When.
    pub at_us: i64,
    /// Whose words.
    pub from: Party,
    /// The text; `None` where the group keeps no chat text.
    pub text: Option<String>,
    /// Its length in characters.
    pub chars: u64,
}

/// One end's account of a file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Digests {
    /// Bytes, as this end counted them.
    pub size: u64,
    /// Lower-case hex.
    pub md5: String,
    /// Lower-case hex.
    pub sha256: String,
}

/// A file, as both ends reported it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileEntry {
    /// Its name as the sender gave it.
    pub name: String,
    /// `to_end_user` or `from_end_user`.
    pub direction: &'static str,
    /// Its size (the first report's).
    pub size: u64,
    /// What the sending end reported.
    pub sender: Option<Digests>,
    /// What the receiving end reported.
    pub receiver: Option<Digests>,
    /// Both ends reported the same size and digests.
    pub matched: bool,
    /// When the first end reported it (microseconds since the epoch).
    #[serde(skip)]
    pub at_us: i64,
}

/// A session's story, gathered event by event in log order.
#[derive(Clone, Debug)]
pub struct SessionStory {
    /// The session.
    pub session: Uuid,
    /// The technician who created or picked it up.
    pub technician: Option<String>,
    /// The technician's group when it was created.
    pub group: Option<String>,
    /// The gateway that held it.
    pub gateway: Option<String>,
    /// The end user's address, as the gateway saw it.
    pub address: Option<String>,
    /// The end user's computer, as their applet named it.
    pub host: Option<String>,
    /// When it was created.
    pub created_at_us: Option<i64>,
    /// When the end user joined.
    pub joined_at_us: Option<i64>,
    /// When a technician picked it up.
    pub picked_up_at_us: Option<i64>,
    /// How it ended, once it has.
    pub ended: Option<Ended>,
    /// Permissions asked for, in order.
    pub requested: Vec<Permission>,
    /// Permissions granted.
    pub granted: Vec<Granted>,
    /// Permissions denied.
    pub denied: Vec<Denied>,
    /// The chat, in order.
    pub chat: Vec<ChatLine>,
    /// Files, each end's report paired.
    pub files: Vec<FileEntry>,
    /// Recordings finished.
    pub recordings: Vec<RecordingStopped>,
    /// The seq of its first event.
    pub first_seq: Option<i64>,
    /// The seq and chain hash of the last event added.
    pub last: Option<(i64, Hash)>,
    /// Events added.
    pub events: u64,
}

impl SessionStory {
    /// A story with nothing in it yet.
    pub fn new(session: Uuid) -> Self {
        Self {
            session,
            technician: None,
            group: None,
            gateway: None,
            address: None,
            host: None,
            created_at_us: None,
            joined_at_us: None,
            picked_up_at_us: None,
            ended: None,
            requested: Vec::new(),
            granted: Vec::new(),
            denied: Vec::new(),
            chat: Vec::new(),
            files: Vec::new(),
            recordings: Vec::new(),
            first_seq: None,
            last: None,
            events: 0,
        }
    }

    /// Whether some chat line's text is not kept (the group stores no chat).
    pub fn chat_withheld(&self) -> bool {
        self.chat.iter().any(|c| c.text.is_none())
    }

    /// Adds the session's next event (in log order).
    pub fn add(&mut self, e: &StoredEvent) {
        self.first_seq.get_or_insert(e.seq);
        self.last = Some((e.seq, e.hash));
        self.events += 1;
        let at_us = e.occurred_at_us;
        let from_applet = e.source.starts_with("applet");
        // A type this version does not know, or a payload it cannot read,
        // adds nothing to the story (it still counts as an event).
        match e.decode().ok().flatten() {
            Some(EventKind::SessionCreated(c)) => {
                self.technician = Some(c.technician);
                self.group = c.group;
                self.gateway = c.gateway;
                self.created_at_us = Some(at_us);
            }
            Some(EventKind::SessionJoined(SessionJoined { ip, .. })) => {
                self.address = ip.map(|ip| ip.to_string());
                self.joined_at_us = Some(at_us);
            }
            Some(EventKind::SessionEndUser(SessionEndUser { host })) => self.host = Some(host),
            Some(EventKind::SessionPickedUp(p)) => {
                self.technician = Some(p.technician);
                self.picked_up_at_us = Some(at_us);
            }
            Some(EventKind::SessionEnded(end)) => {
                self.ended = Some(Ended {
                    at_us,
                    reason: end.reason.to_string(),
                    duration_ms: end.duration_ms,
                    bytes_to_applet: end.bytes_to_applet,
                    bytes_to_console: end.bytes_to_console,
                })
            }
            Some(EventKind::PermissionRequested(PermissionRequested { permission })) => {
                self.requested.push(permission)
            }
            Some(EventKind::PermissionGranted(PermissionGranted {
                permission,
                consent,
            })) => self.granted.push(Granted {
                permission,
                consent,
                at_us,
            }),
            Some(EventKind::PermissionDenied(PermissionDenied { permission, reason })) => {
                self.denied.push(Denied {
                    permission,
                    reason,
                    at_us,
                })
            }
            Some(EventKind::ChatMessage(ChatMessage { from, text, chars })) => {
                self.chat.push(ChatLine {
                    at_us,
                    from,
                    text,
                    chars,
                })
            }
            Some(EventKind::FileTransferred(f)) => self.add_file(f, from_applet, at_us),
            Some(EventKind::RecordingStopped(r)) => self.recordings.push(r),
            _ => {}
        }
    }

    /// Pairs each end's report of one file: the sender's and the receiver's
    /// digests side by side.
    fn add_file(&mut self, f: FileTransferred, from_applet: bool, at_us: i64) {
        let sender_side = matches!(
            (f.direction, from_applet),
            (Direction::ToEndUser, false) | (Direction::FromEndUser, true)
        );
        let direction = match f.direction {
            Direction::ToEndUser => "to_end_user",
            Direction::FromEndUser => "from_end_user",
        };
        let digests = Digests {
            size: f.size,
            md5: f.md5,
            sha256: f.sha256,
        };
        let open = self.files.iter().position(|x| {
            x.name == f.name
                && x.direction == direction
                && if sender_side {
                    x.sender.is_none()
                } else {
                    x.receiver.is_none()
                }
        });
        let index = open.unwrap_or_else(|| {
            self.files.push(FileEntry {
                name: f.name,
                direction,
                size: digests.size,
                sender: None,
                receiver: None,
                matched: false,
                at_us,
            });
            self.files.len() - 1
        });
        let entry = &mut self.files[index];
        if sender_side {
            entry.sender = Some(digests);
        } else {
            entry.receiver = Some(digests);
        }
        entry.matched = entry.sender.is_some() && entry.sender == entry.receiver;
    }
}
