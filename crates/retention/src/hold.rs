//! Legal holds, and the one function every deletion path asks before it
//! deletes anything: [`Holds::covering`].

use audit_db::archive::{Hold, HoldScope};
use uuid::Uuid;

use crate::policy::RecordClass;

/// A record about to be purged or erased, as much as a hold can match.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Its class.
    pub class: RecordClass,
    /// The session it belongs to, if any.
    pub session: Option<Uuid>,
    /// The technician whose session it is, or who acted (by email).
    pub technician: Option<&'a str>,
    /// When it happened (microseconds).
    pub occurred_at_us: i64,
}

/// The holds in force.
#[derive(Clone, Debug, Default)]
pub struct Holds(Vec<Hold>);

impl Holds {
    /// The holds of `all` that are not released.
    pub fn in_force(all: Vec<Hold>) -> Self {
        Holds(all.into_iter().filter(|h| h.released.is_none()).collect())
    }

    /// The first hold covering `record`, if any. Every class is held the
    /// same way: by its session, by its technician, or by when it happened.
    pub fn covering(&self, record: &Record<'_>) -> Option<&Hold> {
        // The class does not change what a hold covers; it is taken so that
        // a class with other rules must be handled here.
        match record.class {
            RecordClass::SessionEvents
            | RecordClass::Recordings
            | RecordClass::SecurityEvents
            | RecordClass::WebhookDeliveries => {}
        }
        self.0.iter().find(|h| match &h.scope {
            HoldScope::Session(id) => record.session == Some(*id),
            HoldScope::Technician(email) => record
                .technician
                .is_some_and(|t| t.eq_ignore_ascii_case(email)),
            HoldScope::Period { since_us, until_us } => {
                (*since_us..*until_us).contains(&record.occurred_at_us)
            }
        })
    }

    /// Whether any hold is in force.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}
