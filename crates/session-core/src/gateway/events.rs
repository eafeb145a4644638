//! Audit events reported by consoles and applets. The gateway decides what
//! the reporter may say: the event's actor, source and (on a session link)
//! session come from the authenticated link, never from the message; only
//! the kinds a console or applet witnesses are accepted; and chat text is
//! dropped when the group does not store it.

use std::net::IpAddr;

use audit_db::event::ChatMessage;
use audit_db::query::Filter;
use audit_db::{time_us, Actor, EventKind, NewEvent, Source};
use futures::TryStreamExt;
use uuid::Uuid;

use super::Shared;
use crate::wire::Message;

/// How far ahead of the gateway's clock a reported time may be (clock skew).
const MAX_FUTURE_US: i64 = 5 * 60 * 1_000_000;

/// Who reports, as the gateway authenticated them.
#[derive(Clone, Debug)]
pub(crate) enum Reporter {
    /// A technician's console: on the control link or a session link.
    Console { email: String, store_chat: bool },
    /// An end user's applet on its session link.
    Applet { store_chat: bool },
}

impl Reporter {
    fn may_report(&self, kind: &EventKind) -> bool {
        use EventKind as K;
        let witnessed_by_both = matches!(
            kind,
            K::ChatMessage(_)
                | K::FileTransferred(_)
                | K::RemoteControlStarted(_)
                | K::RemoteControlEnded(_)
                | K::DesktopViewStarted(_)
                | K::DesktopViewEnded(_)
        );
        witnessed_by_both
            || match self {
                Reporter::Console { .. } => matches!(
                    kind,
                    K::PermissionRequested(_) | K::RecordingStarted(_) | K::RecordingStopped(_)
                ),
                Reporter::Applet { .. } => {
                    matches!(kind, K::PermissionGranted(_) | K::PermissionDenied(_))
                }
            }
    }

    fn actor(&self) -> Actor {
        match self {
            Reporter::Console { email, .. } => Actor::technician(email),
            Reporter::Applet { .. } => Actor::end_user(),
        }
    }

    fn source(&self, ip: IpAddr) -> Source {
        match self {
            Reporter::Console { .. } => Source::console(&ip.to_string()),
            Reporter::Applet { .. } => Source::applet(&ip.to_string()),
        }
    }

    fn store_chat(&self) -> bool {
        match self {
            Reporter::Console { store_chat, .. } | Reporter::Applet { store_chat } => *store_chat,
        }
    }
}

/// The fields of an `Event` message.
#[derive(Debug)]
pub(crate) struct Reported {
    pub id: Uuid,
    pub occurred_us: i64,
    pub session: Option<Uuid>,
    pub kind: String,
    pub payload: serde_json::Value,
}

impl Reported {
    /// The fields of `message` if it is an `Event`; any other message back.
    pub fn from_message(message: Message) -> Result<Self, Message> {
        match message {
            Message::Event {
                id,
                occurred_us,
                session,
                kind,
                payload,
            } => Ok(Self {
                id,
                occurred_us,
                session,
                kind,
                payload,
            }),
            other => Err(other),
        }
    }
}

/// Records `event` from `reporter` at `ip`; `link_session` is the session of
/// the link it came on (none on a control link). Answers `EventAck` once the
/// event is durable, or `EventRefused`.
pub(crate) async fn record(
    shared: &Shared,
    reporter: &Reporter,
    ip: IpAddr,
    link_session: Option<Uuid>,
    event: Reported,
) -> Message {
    let id = event.id;
    match check(shared, reporter, ip, link_session, event).await {
        Ok(new) => match shared.log.append_one(new).await {
            Ok(r) => Message::EventAck {
                id,
                seq: r.seq,
                duplicate: r.duplicate,
            },
            Err(e) => {
                tracing::error!("could not record a reported event: {e}");
                Message::EventRefused {
                    id,
                    message: format!("the audit log could not record it: {e}"),
                }
            }
        },
        Err(message) => {
            tracing::warn!("event {id} from {ip} refused: {message}");
            Message::EventRefused { id, message }
        }
    }
}

async fn check(
    shared: &Shared,
    reporter: &Reporter,
    ip: IpAddr,
    link_session: Option<Uuid>,
    event: Reported,
) -> Result<NewEvent, String> {
    let payload = serde_json::to_string(&event.payload).map_err(|e| e.to_string())?;
    let kind = EventKind::from_stored(&event.kind, &payload)
        .map_err(|e| format!("payload is not a valid {}: {e}", event.kind))?
        .ok_or_else(|| format!("unknown event type {:?}", event.kind))?;
    if !reporter.may_report(&kind) {
        return Err(format!(
            "a {} may not report {}",
            reporter_name(reporter),
            event.kind
        ));
    }
    if event.occurred_us > time_us::now() + MAX_FUTURE_US {
        return Err("the event's time is in the future".to_owned());
    }
    let session = match (link_session, event.session) {
        (Some(link), Some(named)) if link != named => {
            return Err(format!("this link belongs to session {link}, not {named}"))
        }
        (Some(link), _) => Some(link),
        (None, Some(named)) => {
            // On a control link: only a session this technician created
            // (it may have ended: spooled events arrive late).
            let Reporter::Console { email, .. } = reporter else {
                return Err("an applet reports only on its session link".to_owned());
            };
            if !created_by(shared, named, email).await? {
                return Err(format!("session {named} is not one of yours"));
            }
            Some(named)
        }
        (None, None) => None,
    };
    let kind = match kind {
        EventKind::ChatMessage(chat) if !reporter.store_chat() => {
            EventKind::ChatMessage(ChatMessage { text: None, ..chat })
        }
        other => other,
    };
    Ok(NewEvent {
        id: event.id,
        session,
        actor: reporter.actor(),
        source: reporter.source(ip),
        occurred_at_us: event.occurred_us,
        kind,
    })
}

fn reporter_name(r: &Reporter) -> &'static str {
    match r {
        Reporter::Console { .. } => "console",
        Reporter::Applet { .. } => "applet",
    }
}

async fn created_by(shared: &Shared, session: Uuid, email: &str) -> Result<bool, String> {
    let filter = Filter {
        session: Some(session),
        kind: Some("session.created".to_owned()),
        actor: Some(Actor::technician(email).into_string()),
        ..Filter::default()
    };
    let found = std::pin::pin!(shared.log.query(filter))
        .try_next()
        .await
        .map_err(|e| format!("looking the session up failed: {e}"))?;
    Ok(found.is_some())
}
