//! The event model: what an audit event says, who said it, and the typed
//! payload of every kind of event Vigil records.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use uuid::Uuid;

use crate::time_us;

/// An event as a client submits it, before the log gives it a place.
#[derive(Clone, Debug, PartialEq)]
pub struct NewEvent {
    /// Client-generated; appending the same id twice stores the event once.
    pub id: Uuid,
    /// The support session the event belongs to, if any.
    pub session: Option<Uuid>,
    /// Who did it.
    pub actor: Actor,
    /// Which authenticated component reported it.
    pub source: Source,
    /// When it happened, in microseconds since the Unix epoch.
    pub occurred_at_us: i64,
    /// The time the reporting console or applet claimed, kept beside
    /// `occurred_at_us` (which the gateway bounds by the session's life).
    pub reported_at_us: Option<i64>,
    /// What happened.
    pub kind: EventKind,
}

impl NewEvent {
    /// An event that happened now, with a fresh time-ordered id (UUIDv7 keeps
    /// the id index append-mostly).
    pub fn now(actor: Actor, source: Source, kind: EventKind) -> Self {
        Self {
            id: Uuid::now_v7(),
            session: None,
            actor,
            source,
            occurred_at_us: time_us::from_datetime(OffsetDateTime::now_utc()),
            reported_at_us: None,
            kind,
        }
    }

    /// The same event, attached to a support session.
    pub fn in_session(mut self, session: Uuid) -> Self {
        self.session = Some(session);
        self
    }
}

/// Declares a text newtype stored as written, with its `as_str`,
/// `into_string`, `from_stored` and `Display`.
macro_rules! stored_text {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// A value read back from storage, taken as written.
            pub fn from_stored(text: String) -> Self {
                Self(text)
            }
            /// The stored text form.
            pub fn as_str(&self) -> &str {
                &self.0
            }
            /// The stored text form, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

stored_text! {
    /// Who did what an event records, as `role:name` (e.g. `technician:ann@example.com`).
    Actor
}

stored_text! {
    /// The authenticated component that reported an event, as `component[@where]`.
    Source
}

impl Actor {
    /// A technician, named by login email.
    pub fn technician(email: &str) -> Self {
        Self(format!("technician:{email}"))
    }
    /// An administrator, named by login email or local account.
    pub fn admin(name: &str) -> Self {
        Self(format!("admin:{name}"))
    }
    /// A compliance officer, named by login email.
    pub fn compliance(email: &str) -> Self {
        Self(format!("compliance:{email}"))
    }
    /// The end user on the applet side of a session.
    pub fn end_user() -> Self {
        Self("end-user".to_owned())
    }
    /// A Vigil component acting on its own (retention, webhook worker...).
    pub fn system(component: &str) -> Self {
        Self(format!("system:{component}"))
    }
}

impl Source {
    /// The gateway, reporting what it saw itself.
    pub fn gateway() -> Self {
        Self("gateway".to_owned())
    }
    /// A technician console, as authenticated by the gateway at `peer`.
    pub fn console(peer: &str) -> Self {
        Self(format!("console@{peer}"))
    }
    /// An end-user applet, as authenticated by the gateway at `peer`.
    pub fn applet(peer: &str) -> Self {
        Self(format!("applet@{peer}"))
    }
    /// The web portal running on `host`.
    pub fn web(host: &str) -> Self {
        Self(format!("web@{host}"))
    }
    /// The `vigil` command run locally on `host`.
    pub fn cli(host: &str) -> Self {
        Self(format!("cli@{host}"))
    }
}

/// Declares the event kinds once: the enum, each kind's stored type name,
/// and the conversions to and from the stored payload text.
macro_rules! event_kinds {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal, )*) => {
        /// What happened: one variant per kind of audit event, each with its typed payload.
        #[derive(Clone, Debug, PartialEq)]
        pub enum EventKind {
            $( $(#[$doc])* $variant($variant), )*
        }

        impl EventKind {
            /// Every stored type name, in declaration order.
            pub const TYPE_NAMES: &'static [&'static str] = &[$($name),*];

            /// The stored type name, e.g. `login.failed`.
            pub fn type_name(&self) -> &'static str {
                match self { $( Self::$variant(_) => $name, )* }
            }

            /// The payload as the JSON text that is stored and hashed.
            pub fn payload_json(&self) -> Result<String, serde_json::Error> {
                match self { $( Self::$variant(p) => serde_json::to_string(p), )* }
            }

            /// Rebuilds a typed event from its stored type name and payload;
            /// `Ok(None)` for a type this version does not know.
            pub fn from_stored(type_name: &str, payload: &str) -> Result<Option<Self>, serde_json::Error> {
                match type_name {
                    $( $name => serde_json::from_str(payload).map(|p| Some(Self::$variant(p))), )*
                    _ => Ok(None),
                }
            }
        }
    };
}

event_kinds! {
    /// A technician logged in.
    LoginSucceeded = "login.succeeded",
    /// A login attempt was refused.
    LoginFailed = "login.failed",
    /// An account was locked after failed logins.
    AccountLocked = "account.locked",
    /// A locked account was unlocked.
    AccountUnlocked = "account.unlocked",
    /// A technician's connection ended (logged off for inactivity, or by the technician).
    Logout = "logout",
    /// A technician changed their own password.
    PasswordChanged = "password.changed",
    /// A technician created a support session.
    SessionCreated = "session.created",
    /// An end user's applet joined a session.
    SessionJoined = "session.joined",
    /// An applet's attempt to join a session was refused.
    SessionJoinRefused = "session.join_refused",
    /// A technician picked a waiting session up from the queue.
    SessionPickedUp = "session.picked_up",
    /// A technician's pickup was refused.
    SessionPickupRefused = "session.pickup_refused",
    /// A console's attach to a picked-up session was refused.
    SessionAttachRefused = "session.attach_refused",
    /// A session's PIN was withdrawn before anyone joined with it.
    SessionPinWithdrawn = "session.pin_withdrawn",
    /// A session ended.
    SessionEnded = "session.ended",
    /// The end user's applet named the computer it runs on.
    SessionEndUser = "session.end_user",
    /// The technician asked for a permission.
    PermissionRequested = "permission.requested",
    /// A permission was granted.
    PermissionGranted = "permission.granted",
    /// A permission was denied.
    PermissionDenied = "permission.denied",
    /// A chat message was sent.
    ChatMessage = "chat.message",
    /// A file crossed the session.
    FileTransferred = "file.transferred",
    /// The technician began seeing the end user's screen.
    DesktopViewStarted = "desktop_view.started",
    /// The technician stopped seeing the end user's screen.
    DesktopViewEnded = "desktop_view.ended",
    /// Remote control began.
    RemoteControlStarted = "remote_control.started",
    /// Remote control ended.
    RemoteControlEnded = "remote_control.ended",
    /// A session recording began.
    RecordingStarted = "recording.started",
    /// A session recording was finished.
    RecordingStopped = "recording.stopped",
    /// An administrator changed configuration, an account or a group.
    AdminChange = "admin.change",
    /// An administrator annotated the log.
    AdminNote = "admin.note",
    /// A retention run archived or purged events.
    RetentionRun = "retention.run",
    /// Events' bodies were erased (their leaves, and so every proof, remain).
    BodiesErased = "audit.erased",
    /// Someone ran a report or export over the audit data.
    ReportGenerated = "report.generated",
    /// Someone looked at a session's records (timeline, transcript, files) or played a recording.
    RecordViewed = "record.viewed",
    /// Someone downloaded a recording or a session's records.
    RecordExported = "record.exported",
    /// A webhook delivery was attempted.
    WebhookDelivery = "webhook.delivery",
    /// The gateway saw something that looks like an attack.
    SecurityAlarm = "security.alarm",
}

/// A technician logged in.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginSucceeded {
    /// The account's email.
    pub email: String,
    /// The address the login came from.
    pub ip: IpAddr,
}

/// A login attempt was refused, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LoginFailed {
    /// The email tried (escaped and shortened if no account could have it).
    pub email: String,
    /// The address the attempt came from.
    pub ip: IpAddr,
    /// Why it was refused.
    pub reason: LoginFailure,
}

/// Why a login was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LoginFailure {
    /// The password was checked and is wrong.
    BadPassword,
    /// No account has the email (the password was checked against a dummy hash).
    UnknownAccount,
    /// The email is locked; the password was not checked.
    AccountLocked,
    /// The account is disabled (the password was right).
    AccountDisabled,
    /// The group's allow-list does not include the address.
    IpNotAllowed,
    /// The password expired or must be changed, and no new one came.
    PasswordExpired,
    /// Too many failures from the address; not checked.
    Throttled,
    /// The gateway had too many password checks waiting; this one was not made.
    Busy,
    /// The email is not one an account could have (control characters, too long).
    MalformedEmail,
}

/// An account was locked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountLocked {
    /// The account's email.
    pub email: String,
    /// The address of the attempt that tripped the lock.
    pub ip: Option<IpAddr>,
    /// Failed logins counted when it locked.
    pub failed_attempts: u32,
    /// When the lock lifts by itself (microseconds since the epoch), if it does.
    pub until_us: Option<i64>,
}

/// A locked account was unlocked.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountUnlocked {
    /// The account's email.
    pub email: String,
    /// Who or what unlocked it.
    pub by: UnlockCause,
}

/// What unlocked an account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UnlockCause {
    /// An administrator (the event's actor) unlocked it.
    Admin,
    /// The configured lock time ran out.
    Timeout,
}

/// A technician's connection ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Logout {
    /// The technician's email.
    pub email: String,
    /// The address of the connection that ended.
    pub ip: IpAddr,
    /// Why it ended.
    pub reason: LogoutReason,
}

/// Why a technician's connection ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogoutReason {
    /// Nothing was done for longer than the idle limit.
    Idle,
    /// The technician logged out or closed the console.
    Client,
    /// The gateway shut down.
    Shutdown,
}

/// A technician changed their own password (at login, when it had to be changed).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PasswordChanged {
    /// The technician's email.
    pub email: String,
    /// The address the change came from.
    pub ip: IpAddr,
}

/// A technician created a support session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionCreated {
    /// The technician who created it.
    pub technician: String,
    /// Whether a PIN was issued for the end user to join with.
    pub pin_issued: bool,
    /// The gateway that holds it (its `--name`); absent in events written
    /// before gateways were named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gateway: Option<String>,
    /// The technician's group when it was created (webhooks and reports
    /// go by it); absent in events written before it was kept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
}

/// The end user's computer, as their applet names it (a claim of the
/// end user's side, like the hashes it reports).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEndUser {
    /// Its host name.
    pub host: String,
}

/// An end user's applet joined a session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionJoined {
    /// Whether the applet named the session by PIN or GUID.
    pub via: JoinMethod,
    /// The applet's address.
    pub ip: Option<IpAddr>,
}

/// How an applet named the session it joined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinMethod {
    /// By the six-digit PIN.
    Pin,
    /// By the session's GUID (a session link).
    Guid,
}

/// An applet's attempt to join was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionJoinRefused {
    /// The applet's address.
    pub ip: IpAddr,
    /// Whether it tried a PIN or a GUID.
    pub via: JoinMethod,
    /// Why it was refused.
    pub reason: JoinRefusal,
}

/// Why a join was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JoinRefusal {
    /// No session has this PIN or GUID (or it was already used).
    Unknown,
    /// The PIN or session expired before the applet joined.
    Expired,
    /// Too many wrong PINs from this address, or from all addresses.
    Throttled,
    /// The applet's certificate request was not valid (the PIN is not spent).
    Malformed,
}

/// A technician picked a waiting session up.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionPickedUp {
    /// The technician who picked it up.
    pub technician: String,
}

/// A technician's pickup was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionPickupRefused {
    /// The technician who tried.
    pub technician: String,
    /// Why it was refused.
    pub reason: PickupRefusal,
}

/// Why a pickup was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PickupRefusal {
    /// The session is not waiting in this technician's queue.
    NotWaiting,
    /// The console's certificate request was not valid.
    MalformedCsr,
}

/// A console's attach was refused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionAttachRefused {
    /// The session the console named.
    pub guid: Uuid,
    /// The console's address.
    pub ip: IpAddr,
    /// Why it was refused.
    pub reason: AttachRefusal,
}

/// Why an attach was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AttachRefusal {
    /// No picked-up session with this GUID and ticket.
    UnknownTicket,
    /// The group's allow-list does not include the console's address.
    IpNotAllowed,
}

/// A session's PIN was withdrawn.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionPinWithdrawn {
    /// Wrong PINs guessed at the gateway since this PIN was issued.
    pub wrong_pins: u64,
}

/// The gateway saw something that looks like an attack.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SecurityAlarm {
    /// Which alarm.
    pub alarm: Alarm,
    /// How many of it were seen...
    pub count: u64,
    /// ...within this many seconds.
    pub window_s: u64,
}

/// Which alarm.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Alarm {
    /// Wrong PINs from many addresses: PIN joins pause gateway-wide.
    PinGuessing,
}

/// A session ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionEnded {
    /// Why it ended.
    pub reason: EndReason,
    /// How long it lasted, in milliseconds (0 where the gateway cannot know).
    pub duration_ms: u64,
    /// Bytes relayed towards the applet.
    pub bytes_to_applet: u64,
    /// Bytes relayed towards the console.
    pub bytes_to_console: u64,
}

/// Why a session ended. Stored as the text the gateway has always written
/// (`applet_left`, `ended_by_console: done`, `console_protocol_error:
/// Oversize`, ...), so logs of every version read the same; the text of
/// each variant is spelled out here, never derived from a Rust name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EndReason {
    /// The applet's connection closed.
    AppletLeft,
    /// The console's connection closed.
    ConsoleLeft,
    /// The applet sent `End`, with its reason.
    EndedByApplet(String),
    /// The console sent `End`, with its reason.
    EndedByConsole(String),
    /// The applet broke the protocol (the error's name).
    AppletProtocolError(String),
    /// The console broke the protocol (the error's name).
    ConsoleProtocolError(String),
    /// The gateway shut down.
    GatewayShutdown,
    /// A later start of the gateway found the session still open.
    GatewayRestarted,
    /// Nobody joined before the PIN expired.
    Expired,
    /// The console did not attach in time after the pickup.
    ConsoleDidNotAttach,
    /// The pickup failed half way (a certificate could not be issued).
    PickupFailed,
    /// Ended with no other reason known.
    Ended,
    /// A reason this version does not know (written by a later one), kept as written.
    Other(String),
}

impl EndReason {
    /// The stored text.
    pub fn as_text(&self) -> std::borrow::Cow<'_, str> {
        use std::borrow::Cow::{Borrowed, Owned};
        match self {
            Self::AppletLeft => Borrowed("applet_left"),
            Self::ConsoleLeft => Borrowed("console_left"),
            Self::EndedByApplet(why) => Owned(format!("ended_by_applet: {why}")),
            Self::EndedByConsole(why) => Owned(format!("ended_by_console: {why}")),
            Self::AppletProtocolError(code) => Owned(format!("applet_protocol_error: {code}")),
            Self::ConsoleProtocolError(code) => Owned(format!("console_protocol_error: {code}")),
            Self::GatewayShutdown => Borrowed("gateway_shutdown"),
            Self::GatewayRestarted => Borrowed("gateway_restarted"),
            Self::Expired => Borrowed("expired"),
            Self::ConsoleDidNotAttach => Borrowed("console_did_not_attach"),
            Self::PickupFailed => Borrowed("pickup_failed"),
            Self::Ended => Borrowed("ended"),
            Self::Other(text) => Borrowed(text),
        }
    }

    /// The reason a stored text names.
    pub fn from_text(text: &str) -> Self {
        let with = |prefix: &str| text.strip_prefix(prefix).map(str::to_owned);
        match text {
            "applet_left" => Self::AppletLeft,
            "console_left" => Self::ConsoleLeft,
            "gateway_shutdown" => Self::GatewayShutdown,
            "gateway_restarted" => Self::GatewayRestarted,
            "expired" => Self::Expired,
            "console_did_not_attach" => Self::ConsoleDidNotAttach,
            "pickup_failed" => Self::PickupFailed,
            "ended" => Self::Ended,
            _ => with("ended_by_applet: ")
                .map(Self::EndedByApplet)
                .or_else(|| with("ended_by_console: ").map(Self::EndedByConsole))
                .or_else(|| with("applet_protocol_error: ").map(Self::AppletProtocolError))
                .or_else(|| with("console_protocol_error: ").map(Self::ConsoleProtocolError))
                .unwrap_or_else(|| Self::Other(text.to_owned())),
        }
    }
}

impl fmt::Display for EndReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.as_text())
    }
}

impl Serialize for EndReason {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.as_text())
    }
}

impl<'de> Deserialize<'de> for EndReason {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|text| Self::from_text(&text))
    }
}

/// A permission the technician's group can grant for a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Permission {
    /// Move and click the end user's mouse and type on their keyboard.
    RemoteControl,
    /// See the end user's screen.
    DesktopView,
    /// Send files to the end user.
    SendFiles,
    /// Receive files from the end user.
    ReceiveFiles,
    /// Browse the end user's files.
    FileManager,
    /// Open web addresses on the end user's machine.
    SendUrls,
    /// Read the end user's system information.
    SystemInformation,
    /// Restart the end user's machine.
    Reboot,
    /// Record the session.
    RecordSessions,
    /// Run sessions hidden from other technicians.
    PrivateSessions,
    /// Ask the end user for credentials.
    RequestCredentials,
    /// Share the clipboard both ways.
    ClipboardSync,
    /// Run scripts on the end user's machine.
    DeployScripts,
}

impl Permission {
    /// Every permission, in a stable order.
    pub const ALL: [Permission; 13] = [
        Self::RemoteControl,
        Self::DesktopView,
        Self::SendFiles,
        Self::ReceiveFiles,
        Self::FileManager,
        Self::SendUrls,
        Self::SystemInformation,
        Self::Reboot,
        Self::RecordSessions,
        Self::PrivateSessions,
        Self::RequestCredentials,
        Self::ClipboardSync,
        Self::DeployScripts,
    ];

    /// The name used in configuration, payloads and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RemoteControl => "remote_control",
            Self::DesktopView => "desktop_view",
            Self::SendFiles => "send_files",
            Self::ReceiveFiles => "receive_files",
            Self::FileManager => "file_manager",
            Self::SendUrls => "send_urls",
            Self::SystemInformation => "system_information",
            Self::Reboot => "reboot",
            Self::RecordSessions => "record_sessions",
            Self::PrivateSessions => "private_sessions",
            Self::RequestCredentials => "request_credentials",
            Self::ClipboardSync => "clipboard_sync",
            Self::DeployScripts => "deploy_scripts",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`Permission::ALL`].
#[derive(Debug, thiserror::Error)]
#[error("unknown permission {0:?}")]
pub struct UnknownPermission(pub String);

impl FromStr for Permission {
    type Err = UnknownPermission;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownPermission(s.to_owned()))
    }
}

/// The technician asked for a permission.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermissionRequested {
    /// The permission asked for.
    pub permission: Permission,
}

/// A permission was granted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermissionGranted {
    /// The permission granted.
    pub permission: Permission,
    /// The ground it was granted on.
    pub consent: Consent,
}

/// On what ground a permission was granted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Consent {
    /// The end user consented to this action at this moment.
    EndUser,
    /// The end user consented once for the session (single-prompt groups).
    SinglePrompt,
}

/// A permission was denied.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PermissionDenied {
    /// The permission denied.
    pub permission: Permission,
    /// Why.
    pub reason: Denial,
}

/// Why a permission was denied.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Denial {
    /// The end user said no.
    EndUser,
    /// The signed grant for this session does not include it.
    NotGranted,
    /// This build of Vigil does not offer it yet.
    Unavailable,
    /// The end user's applet was started without a display to share
    /// (desktop view and remote control need one).
    NoDisplay,
}

/// Which side of a session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// The technician's side.
    Technician,
    /// The end user's side.
    EndUser,
}

/// A chat message was sent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Whose words they are (the reporting side's own).
    pub from: Party,
    /// The text, or `None` where the group does not store chat text.
    pub text: Option<String>,
    /// Length of the text in characters, kept even when the text is not.
    pub chars: u64,
}

/// Which way a file went.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    /// From the technician to the end user.
    ToEndUser,
    /// From the end user to the technician.
    FromEndUser,
}

/// A file crossed the session, as one end saw it (the event's source says which).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FileTransferred {
    /// Which way it went.
    pub direction: Direction,
    /// The file's name as the sender gave it.
    pub name: String,
    /// Its size in bytes, as this end counted them.
    pub size: u64,
    /// Lower-case hex.
    pub md5: String,
    /// Lower-case hex.
    pub sha256: String,
}

/// The technician began seeing the end user's screen.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesktopViewStarted {
    /// Screen width in pixels.
    pub width: u32,
    /// Screen height in pixels.
    pub height: u32,
}

/// The technician stopped seeing the end user's screen, and why.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DesktopViewEnded {
    /// Why it stopped.
    pub reason: String,
    /// Screen updates sent while it lasted.
    pub updates: u64,
}

/// Remote control began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteControlStarted {}

/// Remote control ended.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RemoteControlEnded {}

/// A session recording began.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingStarted {
    /// The recording's id, as its `.vrec` header names it.
    #[serde(default)]
    pub recording: String,
    /// Where the console writes it.
    pub path: String,
}

/// A session recording was finished.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingStopped {
    /// The recording's id, as its `.vrec` header names it.
    #[serde(default)]
    pub recording: String,
    /// Where the console wrote it.
    pub path: String,
    /// Its size in bytes.
    pub size: u64,
    /// Lower-case hex SHA-256 of the finished file.
    pub sha256: String,
}

/// An administrator changed something (`target` is e.g. `user:ann@example.com`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminChange {
    /// What changed, e.g. `user:ann@example.com` or `group:tier1`.
    pub target: String,
    /// The change, in words.
    pub change: String,
}

/// An administrator's annotation, e.g. "investigation opened".
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AdminNote {
    /// The note.
    pub text: String,
}

/// A report or export was made from the audit data: who looked at what
/// (HIPAA's audit of access to records).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReportGenerated {
    /// The report type (`sessions`, `chat`, ...).
    pub report: String,
    /// The filters it was run with, as given (`--since 2026-01-01` ...).
    pub filters: String,
    /// The output format.
    pub format: String,
    /// Rows it held.
    pub rows: u64,
    /// Lower-case hex SHA-256 of the output.
    pub sha256: String,
    /// The log position it was built from: the last seq it could see.
    pub up_to_seq: i64,
}

/// Someone looked at records in the web portal: who is the event's actor,
/// the session (if any) the event's session.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordViewed {
    /// What was shown: `session` (its timeline, transcript and files),
    /// `recording`, `events`.
    pub what: String,
    /// Which one: a recording's id, an event's seq; empty for the session itself.
    #[serde(default)]
    pub target: String,
}

/// Someone took a copy of records out of the portal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordExported {
    /// What was exported: `recording`, `report`.
    pub what: String,
    /// Which one: a recording's id, a report's name and filters.
    pub target: String,
    /// Its format (`mp4`, `vrec`, `csv`...).
    pub format: String,
    /// Bytes sent.
    pub bytes: u64,
    /// Lower-case hex SHA-256 of what was sent.
    pub sha256: String,
}

/// Events' bodies (payloads and their salts) were erased: by whom is the
/// event's actor.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct BodiesErased {
    /// The seqs whose bodies were erased, as inclusive `[first, last]` ranges.
    pub ranges: Vec<[i64; 2]>,
    /// Why (a privacy request's reference, the retention policy).
    pub reason: String,
}

/// A retention run: recorded before it deletes anything, naming every
/// bundle it wrote and every one it purged, so an interrupted run can be
/// finished from this event alone.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RetentionRun {
    /// Events moved to archives.
    pub archived: u64,
    /// Events purged (deleted from the archive for good).
    pub purged: u64,
    /// Events past their time kept for a legal hold.
    pub held: u64,
    /// The run's number.
    #[serde(default)]
    pub run: i64,
    /// The clock it ran at (RFC 3339; `--as-of`, or now).
    #[serde(default)]
    pub as_of: String,
    /// The archive directory.
    #[serde(default)]
    pub archive_dir: String,
    /// The policy that decided (as `vigil admin retention show --json` prints it).
    #[serde(default)]
    pub policy: serde_json::Value,
    /// Bundles written, whose events leave the live log.
    #[serde(default)]
    pub bundles: Vec<ArchivedBundle>,
    /// Bundles whose events' archive period is over.
    #[serde(default)]
    pub purges: Vec<PurgedBundle>,
    /// Events past both periods purged straight from the live log.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purged_online: Option<PurgedOnline>,
    /// Recordings moved to the archive, or deleted.
    #[serde(default)]
    pub recordings: Vec<RecordingMove>,
    /// Webhook delivery log entries (messages with their attempts) created
    /// before this time (RFC 3339) leave the live database; their outcomes
    /// stay in the `webhook.delivery` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub webhook_log_before: Option<String>,
    /// How many of them (held ones stay).
    #[serde(default)]
    pub webhook_log_purged: u64,
}

/// Events a retention run found past their online and archive periods
/// while still online, and purged without archiving them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurgedOnline {
    /// Events purged.
    pub events: u64,
    /// Events purged per record class.
    pub classes: std::collections::BTreeMap<String, u64>,
    /// Their seqs, as inclusive `[first, last]` ranges.
    pub ranges: Vec<[i64; 2]>,
}

/// A bundle a retention run wrote.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ArchivedBundle {
    /// Its name in the archive directory.
    pub bundle: String,
    /// SHA-256 of its data file.
    pub sha256: String,
    /// Its first and last seq.
    pub first_seq: i64,
    /// Its last seq.
    pub last_seq: i64,
    /// Events in it.
    pub events: u64,
    /// Events per record class.
    pub classes: std::collections::BTreeMap<String, u64>,
}

/// A bundle a retention run purged, whole or in part.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PurgedBundle {
    /// Its name.
    pub bundle: String,
    /// SHA-256 of its data file.
    pub sha256: String,
    /// Events purged.
    pub events: u64,
    /// Events purged per record class.
    pub classes: std::collections::BTreeMap<String, u64>,
    /// The seqs purged, as inclusive `[first, last]` ranges.
    pub ranges: Vec<[i64; 2]>,
    /// The bundle holding the events it kept (held, or not yet due).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept_in: Option<ArchivedBundle>,
}

/// A recording a retention run moved to the archive or deleted.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RecordingMove {
    /// Its session.
    pub session: Uuid,
    /// Where it was.
    pub from: String,
    /// Where it went; absent when it was deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    /// Its SHA-256 (as its `recording.stopped` event has it).
    pub sha256: String,
}

/// A webhook post's final outcome, or an endpoint disabled by the worker.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct WebhookDelivery {
    /// The endpoint's id.
    pub endpoint: String,
    /// The webhook message id (the Standard Webhooks `webhook-id`).
    pub message: Uuid,
    /// The attempt's number, from 1.
    pub attempt: u32,
    /// The HTTP status, when an answer came.
    pub status: Option<u16>,
    /// Whether the endpoint accepted it.
    pub delivered: bool,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// The final outcome this event records: `delivered`, `exhausted`
    /// (every retry failed), `endpoint_gone` (410) or `endpoint_disabled`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<String>,
    /// The webhook type of the post (`session.ended`...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_type: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_names_are_unique() {
        let mut names = EventKind::TYPE_NAMES.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), EventKind::TYPE_NAMES.len());
    }

    #[test]
    fn payload_round_trips_through_stored_form() {
        let kind = EventKind::FileTransferred(FileTransferred {
            direction: Direction::ToEndUser,
            name: "report.pdf".into(),
            size: 1234,
            md5: "0".repeat(32),
            sha256: "f".repeat(64),
        });
        let json = kind.payload_json().unwrap();
        let back = EventKind::from_stored(kind.type_name(), &json).unwrap();
        assert_eq!(back, Some(kind));
    }

    #[test]
    fn end_reasons_keep_the_text_old_logs_hold() {
        for text in [
            "applet_left",
            "console_left",
            "ended_by_applet: ended by the end user",
            "ended_by_console: done",
            "applet_protocol_error: Oversize",
            "console_protocol_error: UnexpectedMessage",
            "gateway_shutdown",
            "gateway_restarted",
            "expired",
            "console_did_not_attach",
            "pickup_failed",
            "ended",
            "something_a_later_version_writes",
        ] {
            let json = format!("\"{text}\"");
            let reason: EndReason = serde_json::from_str(&json).unwrap();
            assert_eq!(serde_json::to_string(&reason).unwrap(), json);
        }
        assert_eq!(
            EndReason::from_text("ended_by_console: done"),
            EndReason::EndedByConsole("done".into())
        );
    }

    #[test]
    fn unknown_type_is_not_an_error() {
        assert_eq!(EventKind::from_stored("future.kind", "{}").unwrap(), None);
    }

    #[test]
    fn wrong_payload_shape_is_an_error() {
        assert!(EventKind::from_stored("admin.note", r#"{"txt":1}"#).is_err());
    }

    #[test]
    fn permissions_parse_their_own_names() {
        for p in Permission::ALL {
            assert_eq!(p.as_str().parse::<Permission>().unwrap(), p);
            assert_eq!(serde_json::to_string(&p).unwrap(), format!("\"{p}\""));
        }
        assert!("root_shell".parse::<Permission>().is_err());
    }
}
