//! Whose an event is and when its periods start: a session's events count
//! from its creation and follow its technician's group; other events count
//! from their own time and follow their actor's.

use std::collections::HashMap;
use std::sync::Arc;

use audit_db::{Accounts, EventKind, Filter, StoredEvent};
use uuid::Uuid;

use crate::bundle::Subject;
use crate::policy::RecordClass;
use crate::run::RunError;

/// Who sessions and technicians belong to, learned as the log is read.
pub(crate) struct People {
    groups: HashMap<String, Arc<str>>,
    sessions: HashMap<Uuid, SessionInfo>,
}

#[derive(Clone)]
struct SessionInfo {
    created_at_us: i64,
    technician: Option<Arc<str>>,
    group: Option<Arc<str>>,
}

impl People {
    pub(crate) async fn load(accounts: &Accounts) -> Result<Self, RunError> {
        Ok(People {
            groups: accounts
                .technicians()
                .await?
                .into_iter()
                .map(|t| (t.email.to_ascii_lowercase(), Arc::from(t.group)))
                .collect(),
            sessions: HashMap::new(),
        })
    }

    fn group_of(&self, technician: &str) -> Option<Arc<str>> {
        match self.groups.get(technician) {
            Some(group) => Some(group.clone()),
            None => self.groups.get(&technician.to_ascii_lowercase()).cloned(),
        }
    }

    /// What retention needs to know of `event`.
    pub(crate) async fn subject(
        &mut self,
        store: &audit_db::Store,
        event: &StoredEvent,
    ) -> Result<Subject, RunError> {
        let class = RecordClass::of_event(&event.kind, event.session.is_some());
        if let Some(session) = event.session {
            if !self.sessions.contains_key(&session) {
                let info = self.learn(store, session, event).await?;
                self.sessions.insert(session, info);
            }
            let subject = {
                let info = &self.sessions[&session];
                Subject {
                    class,
                    group: info.group.clone(),
                    technician: info.technician.clone(),
                    age_from_us: info.created_at_us,
                }
            };
            // Memory stays bounded by the sessions open at once: an event
            // after the end (rare) finds the creation again in the log.
            if event.kind == "session.ended" {
                self.sessions.remove(&session);
            }
            return Ok(subject);
        }
        let technician = event.actor.strip_prefix("technician:").map(Arc::from);
        Ok(Subject {
            class,
            group: technician.as_deref().and_then(|t| self.group_of(t)),
            technician,
            age_from_us: event.occurred_at_us,
        })
    }

    /// A session's creation, from its `session.created` event (the first of
    /// its events, normally the one in hand).
    async fn learn(
        &self,
        store: &audit_db::Store,
        session: Uuid,
        event: &StoredEvent,
    ) -> Result<SessionInfo, RunError> {
        let found;
        let created = if event.kind == "session.created" {
            Some(event)
        } else {
            let filter = Filter {
                session: Some(session),
                kind: Some("session.created".into()),
                ..Filter::default()
            };
            found = store.page(&filter, 0, 1).await?.into_iter().next();
            found.as_ref()
        };
        let Some(created) = created else {
            // Its creation was archived by an earlier run: this event counts
            // from its own time, which is no earlier.
            let technician = event.actor.strip_prefix("technician:").map(Arc::from);
            return Ok(SessionInfo {
                created_at_us: event.occurred_at_us,
                group: technician.as_deref().and_then(|t| self.group_of(t)),
                technician,
            });
        };
        let (technician, group) = match created.decode() {
            Ok(Some(EventKind::SessionCreated(c))) => {
                let group = c
                    .group
                    .map(Arc::from)
                    .or_else(|| self.group_of(&c.technician));
                (Some(Arc::from(c.technician)), group)
            }
            _ => (None, None),
        };
        Ok(SessionInfo {
            created_at_us: created.occurred_at_us,
            technician,
            group,
        })
    }
}
