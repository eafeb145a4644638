//! Audit events reported by consoles and applets. The gateway decides what
//! the reporter may say: the event's actor, source and (on a session link)
//! session come from the authenticated link, never from the message; only
//! the kinds a console or applet witnesses are accepted, about the
//! reporter's own side; times are bounded by the session's life (the
//! claimed time is kept beside); counts are taken from the content; and
//! chat text is dropped when the group does not store it.

use std::net::IpAddr;

use audit_db::event::{ChatMessage, Party};
use audit_db::query::Filter;
use audit_db::{time_us, Actor, EventKind, NewEvent, Source};
use futures::TryStreamExt;
use uuid::Uuid;

use super::Shared;
use protocol::wire::Message;

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
                Reporter::Applet { .. } => matches!(
                    kind,
                    K::PermissionGranted(_) | K::PermissionDenied(_) | K::SessionEndUser(_)
                ),
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

    fn party(&self) -> Party {
        match self {
            Reporter::Console { .. } => Party::Technician,
            Reporter::Applet { .. } => Party::EndUser,
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
    pub fn from_message(message: Message) -> Result<Self, Box<Message>> {
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
            other => Err(Box::new(other)),
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
            tracing::warn!(
                "event {id} from {ip} refused: {}",
                protocol::wire::printable(&message, 500)
            );
            Message::EventRefused { id, message }
        }
    }
}

/// How far outside the session's life a reported time may lie (clock skew
/// between the reporter and the gateway).
const SKEW_US: i64 = 2 * 60 * 1_000_000;

/// Checks a reported event against what the gateway knows, and derives
/// what it can itself: the actor, source and session from the link; the
/// time bounded by the session's life (the claimed time kept beside it);
/// chat's author from the reporter's side and its length from its text.
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
    let (session, life) = match (link_session, event.session) {
        (Some(link), Some(named)) if link != named => {
            return Err(format!("this link belongs to session {link}, not {named}"))
        }
        (Some(link), _) => {
            // Live on this link: it began when it was created, and has not ended.
            let created = shared
                .registry()
                .created_us(link)
                .ok_or_else(|| format!("session {link} is no longer open at this gateway"))?;
            (
                link,
                Life {
                    created,
                    ended: None,
                },
            )
        }
        (None, Some(named)) => {
            // On a control link: a session this technician created (it may
            // have ended: spooled events arrive late).
            let Reporter::Console { email, .. } = reporter else {
                return Err("an applet reports only on its session link".to_owned());
            };
            let life = life_of(shared, named, email)
                .await?
                .ok_or_else(|| format!("session {named} is not one of yours"))?;
            (named, life)
        }
        (None, None) => return Err("a reported event must name its session".to_owned()),
    };
    let now = time_us::now();
    if let Some(ended) = life.ended {
        if event.occurred_us > ended.saturating_add(SKEW_US) {
            return Err(format!(
                "session {session} ended at {}; nothing can happen in it after that",
                time_us::format(ended)
            ));
        }
    }
    let latest = life.ended.unwrap_or(now).min(now).saturating_add(SKEW_US);
    let earliest = life.created.saturating_sub(SKEW_US).min(latest);
    let occurred_at_us = event.occurred_us.clamp(earliest, latest);
    Ok(NewEvent {
        id: event.id,
        session: Some(session),
        actor: reporter.actor(),
        source: reporter.source(ip),
        occurred_at_us,
        reported_at_us: Some(event.occurred_us),
        kind: derive(reporter, kind)?,
    })
}

/// What the gateway derives itself rather than believe: chat's author is
/// the reporter's own side, its length is counted from its text, and the
/// text is dropped where the group does not store it.
fn derive(reporter: &Reporter, kind: EventKind) -> Result<EventKind, String> {
    let EventKind::ChatMessage(chat) = kind else {
        return Ok(kind);
    };
    if chat.from != reporter.party() {
        return Err(format!(
            "a {} reports only its own side's chat",
            reporter_name(reporter)
        ));
    }
    let chars = chat
        .text
        .as_ref()
        .map_or(chat.chars, |t| t.chars().count() as u64);
    let text = chat.text.filter(|_| reporter.store_chat());
    Ok(EventKind::ChatMessage(ChatMessage {
        text,
        chars,
        ..chat
    }))
}

/// When a session began and (if it did) ended, as the log says.
#[derive(Clone, Copy, Debug)]
struct Life {
    created: i64,
    ended: Option<i64>,
}

fn reporter_name(r: &Reporter) -> &'static str {
    match r {
        Reporter::Console { .. } => "console",
        Reporter::Applet { .. } => "applet",
    }
}

/// The life of `session` if `email` created it.
async fn life_of(shared: &Shared, session: Uuid, email: &str) -> Result<Option<Life>, String> {
    let first = |kind: &str, actor: Option<String>| {
        let filter = Filter {
            session: Some(session),
            kind: Some(kind.to_owned()),
            actor,
            ..Filter::default()
        };
        async move {
            std::pin::pin!(shared.log.query(filter))
                .try_next()
                .await
                .map_err(|e| format!("looking the session up failed: {e}"))
        }
    };
    let created = first(
        "session.created",
        Some(Actor::technician(email).into_string()),
    )
    .await?;
    let Some(created) = created else {
        return Ok(None);
    };
    let ended = first("session.ended", None).await?;
    Ok(Some(Life {
        created: created.occurred_at_us,
        ended: ended.map(|e| e.occurred_at_us),
    }))
}
