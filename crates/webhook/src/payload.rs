//! What is posted: `{type, timestamp, data}` bodies built from audit
//! events, and which endpoint receives which event.
//!
//! Webhook types are the audit types, except `session.started` (the
//! session's `session.picked_up`) and `vigil.test`. The session types
//! carry the session's details assembled from its events up to the one
//! posted, with the seq range and hash they were built from, so a CRM
//! record can cite the tamper-evident log. docs/webhooks.md has the schema.

use std::collections::HashMap;

use audit_db::event::{EventKind, SessionCreated};
use audit_db::{Accounts, Filter, Store, StoredEvent};
use futures::TryStreamExt;
use reporter::session::SessionStory;
use serde_json::{json, Value};
use uuid::Uuid;

/// The payload version in every body's `data.version`.
pub const VERSION: u32 = 1;

/// The webhook type of a session being picked up.
pub const SESSION_STARTED: &str = "session.started";
/// The webhook type of a session's end.
pub const SESSION_ENDED: &str = "session.ended";
/// The webhook type of `vigil admin webhook test`.
pub const TEST: &str = "vigil.test";

/// An endpoint's default subscription.
pub const DEFAULT_EVENTS: [&str; 2] = [SESSION_STARTED, SESSION_ENDED];

/// A `--events` name that is no webhook type.
#[derive(Debug, thiserror::Error)]
#[error("unknown event type {0:?} (session.started, session.ended, or an audit type such as chat.message)")]
pub struct UnknownType(pub String);

/// Checks that every name is a type an endpoint can subscribe to.
pub fn check_types<'a>(names: impl IntoIterator<Item = &'a str>) -> Result<(), UnknownType> {
    for name in names {
        let known = name == SESSION_STARTED
            || name == SESSION_ENDED
            || EventKind::TYPE_NAMES.contains(&name);
        if !known {
            return Err(UnknownType(name.to_owned()));
        }
    }
    Ok(())
}

/// The audit types whose events are posted as the webhook types `types`.
pub fn audit_types(types: &[String]) -> Vec<String> {
    types
        .iter()
        .filter(|t| *t != TEST)
        .map(|t| match t.as_str() {
            SESSION_STARTED => "session.picked_up".to_owned(),
            other => other.to_owned(),
        })
        .collect()
}

/// The webhook type an audit event is posted as.
pub fn webhook_type(audit_type: &str) -> &str {
    match audit_type {
        "session.picked_up" => SESSION_STARTED,
        other => other,
    }
}

/// What one endpoint receives.
#[derive(Clone, Debug)]
pub struct Subscription {
    /// Webhook types.
    pub types: Vec<String>,
    /// Groups whose events it receives; empty: all.
    pub groups: Vec<String>,
    /// Chat text is left out.
    pub exclude_chat: bool,
}

/// A body, ready to sign and post.
#[derive(Clone, Debug)]
pub struct Built {
    /// The webhook type.
    pub kind: String,
    /// The session it is about.
    pub session: Option<Uuid>,
    /// The JSON text.
    pub body: String,
}

/// Builds bodies from the log; remembers each session's group and chat
/// setting while it lives.
pub struct Builder {
    store: Store,
    accounts: Accounts,
    groups: HashMap<Uuid, SessionInfo>,
}

#[derive(Clone, Debug)]
struct SessionInfo {
    group: Option<String>,
}

/// Reading the log or the accounts failed.
#[derive(Debug, thiserror::Error)]
#[error("reading the audit log for a webhook: {0}")]
pub struct BuildError(#[from] pub audit_db::Error);

impl Builder {
    /// A builder over `store`.
    pub fn new(store: Store) -> Self {
        Self {
            accounts: Accounts::new(store.clone()),
            store,
            groups: HashMap::new(),
        }
    }

    /// The body `sub` receives for `event`, if it receives it.
    pub async fn build(
        &mut self,
        sub: &Subscription,
        event: &StoredEvent,
    ) -> Result<Option<Built>, BuildError> {
        let kind = webhook_type(&event.kind);
        if !sub.types.iter().any(|t| t == kind) {
            return Ok(None);
        }
        if !sub.groups.is_empty() {
            let group = self.group_of(event).await?;
            if !group.is_some_and(|g| sub.groups.contains(&g)) {
                return Ok(None);
            }
        }
        let data = match kind {
            SESSION_STARTED | SESSION_ENDED => match event.session {
                Some(session) => self.session_details(session, event, sub, kind).await?,
                None => return Ok(None),
            },
            _ => event_data(event, sub.exclude_chat),
        };
        let body = json!({
            "type": kind,
            "timestamp": audit_db::time_us::format(event.occurred_at_us),
            "data": data,
        });
        Ok(Some(Built {
            kind: kind.to_owned(),
            session: event.session,
            body: body.to_string(),
        }))
    }

    /// The group of the session (as it was created) or of the technician
    /// acting, if either is known.
    async fn group_of(&mut self, event: &StoredEvent) -> Result<Option<String>, BuildError> {
        if let Some(session) = event.session {
            if let Some(info) = self.groups.get(&session) {
                return Ok(info.group.clone());
            }
            let created = self.created(session).await?;
            let group = match created {
                Some(c) => match c.group {
                    Some(g) => Some(g),
                    None => self.account_group(&c.technician).await?,
                },
                None => None,
            };
            if self.groups.len() > 10_000 {
                self.groups.clear();
            }
            self.groups.insert(
                session,
                SessionInfo {
                    group: group.clone(),
                },
            );
            return Ok(group);
        }
        match event.actor.strip_prefix("technician:") {
            Some(email) => self.account_group(email).await,
            None => Ok(None),
        }
    }

    async fn account_group(&self, email: &str) -> Result<Option<String>, BuildError> {
        Ok(self.accounts.technician(email).await?.map(|t| t.group))
    }

    async fn created(&self, session: Uuid) -> Result<Option<SessionCreated>, BuildError> {
        let filter = Filter {
            session: Some(session),
            kind: Some("session.created".to_owned()),
            ..Filter::default()
        };
        let page = self.store.page(&filter, 0, 1).await?;
        Ok(page.first().and_then(|e| match e.decode().ok().flatten() {
            Some(EventKind::SessionCreated(c)) => Some(c),
            _ => None,
        }))
    }

    /// The session's details from its events up to and including `upto`.
    async fn session_details(
        &mut self,
        session: Uuid,
        upto: &StoredEvent,
        sub: &Subscription,
        kind: &str,
    ) -> Result<Value, BuildError> {
        let filter = Filter {
            session: Some(session),
            ..Filter::default()
        };
        let events: Vec<StoredEvent> = audit_db::query::stream(self.store.clone(), filter)
            .try_take_while(|e| std::future::ready(Ok(e.seq <= upto.seq)))
            .try_collect()
            .await?;
        let mut story = SessionStory::new(session);
        for e in &events {
            story.add(e);
        }
        if story.group.is_none() {
            if let Some(tech) = story.technician.clone() {
                story.group = self.account_group(&tech).await?;
            }
        }
        Ok(story_json(
            story,
            kind == SESSION_ENDED,
            sub.exclude_chat,
            upto,
        ))
    }
}

/// A single event's body: the event as stored (chat text left out for
/// endpoints that exclude chat) and where it sits in the log.
fn event_data(event: &StoredEvent, exclude_chat: bool) -> Value {
    // An erased body goes out as null.
    let mut payload: Value = event
        .payload()
        .and_then(|p| serde_json::from_str(p).ok())
        .unwrap_or(Value::Null);
    if exclude_chat && event.kind == "chat.message" {
        if let Some(obj) = payload.as_object_mut() {
            obj.remove("text");
        }
    }
    json!({
        "version": VERSION,
        "event": {
            "seq": event.seq,
            "id": event.id,
            "type": event.kind,
            "occurred_at": audit_db::time_us::format(event.occurred_at_us),
            "actor": event.actor,
            "source": event.source,
            "session": event.session,
            "payload": payload,
        },
        "audit": { "seq": event.seq, "hash": event.hash },
    })
}

/// The body of a `vigil.test` post.
pub fn test_body(endpoint: &str, now_us: i64) -> String {
    json!({
        "type": TEST,
        "timestamp": audit_db::time_us::format(now_us),
        "data": {
            "version": VERSION,
            "endpoint": endpoint,
            "message": "a test post from vigil admin webhook test",
        },
    })
    .to_string()
}

/// A session's story as a post's `data` (docs/webhooks.schema.json).
fn story_json(story: SessionStory, ended: bool, exclude_chat: bool, upto: &StoredEvent) -> Value {
    let mut data = json!({
        "version": VERSION,
        "session": story.session,
        "technician": story.technician,
        "group": story.group,
        "gateway": story.gateway,
        "end_user": { "address": story.address, "host": story.host },
        "created_at": story.created_at_us.map(rfc3339),
        "picked_up_at": story.picked_up_at_us.map(rfc3339),
        "audit": {
            "first_seq": story.first_seq,
            "last_seq": upto.seq,
            "last_hash": upto.hash,
            "events": story.events,
        },
    });
    if !ended {
        return data;
    }
    let withheld = story.chat_withheld();
    let obj = data.as_object_mut().expect("an object");
    let end = story.ended.as_ref();
    obj.insert("ended_at".into(), json!(end.map(|e| rfc3339(e.at_us))));
    obj.insert("duration_ms".into(), json!(end.map(|e| e.duration_ms)));
    obj.insert("end_reason".into(), json!(end.map(|e| &e.reason)));
    obj.insert(
        "bytes_to_applet".into(),
        json!(end.map(|e| e.bytes_to_applet)),
    );
    obj.insert(
        "bytes_to_console".into(),
        json!(end.map(|e| e.bytes_to_console)),
    );
    let granted: Vec<Value> = story
        .granted
        .iter()
        .map(
            |g| json!({ "permission": g.permission, "consent": g.consent, "at": rfc3339(g.at_us) }),
        )
        .collect();
    let denied: Vec<Value> = story
        .denied
        .iter()
        .map(|d| json!({ "permission": d.permission, "reason": d.reason, "at": rfc3339(d.at_us) }))
        .collect();
    obj.insert(
        "permissions".into(),
        json!({ "requested": story.requested, "granted": granted, "denied": denied }),
    );
    let (chat, omitted) = if exclude_chat {
        (Value::Null, json!("excluded"))
    } else if withheld {
        // The group keeps no chat text: the transcript is omitted whole.
        (Value::Null, json!("not_stored"))
    } else {
        let lines: Vec<Value> = story
            .chat
            .iter()
            .map(|c| json!({ "at": rfc3339(c.at_us), "from": c.from, "text": c.text }))
            .collect();
        (json!(lines), Value::Null)
    };
    obj.insert("chat".into(), chat);
    obj.insert("chat_omitted".into(), omitted);
    obj.insert("files".into(), json!(story.files));
    let recordings: Vec<Value> = story
        .recordings
        .iter()
        .map(|r| json!({ "recording": r.recording, "path": r.path, "size": r.size, "sha256": r.sha256 }))
        .collect();
    obj.insert("recordings".into(), json!(recordings));
    data
}

fn rfc3339(us: i64) -> String {
    audit_db::time_us::format(us)
}
