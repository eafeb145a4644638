//! The webhook delivery log (messages and their attempts, outside the
//! hash chain) under the webhook deliveries class: entries leave the live
//! database after the class's online period; what each post achieved stays
//! in its `webhook.delivery` audit event, which is archived and purged
//! with the class's periods like every event.

use audit_db::{Store, Webhooks};
use uuid::Uuid;

use crate::hold::{Holds, Record};
use crate::policy::{Policy, RecordClass};
use crate::run::RunError;

/// The time before which finished entries are due as of `as_of_us`.
pub(crate) fn cutoff(policy: &Policy, as_of_us: i64) -> i64 {
    // Messages name their session, not its group: the default policy.
    policy
        .default
        .periods(RecordClass::WebhookDeliveries)
        .online
        .before(as_of_us)
}

/// The finished messages created before `before_us` that no hold covers.
pub(crate) async fn due(
    store: &Store,
    holds: &Holds,
    before_us: i64,
) -> Result<Vec<String>, RunError> {
    let rows = Webhooks::new(store.clone())
        .finished_before(before_us)
        .await?;
    Ok(rows
        .into_iter()
        .filter(|(_, session, created_at_us)| {
            let record = Record {
                class: RecordClass::WebhookDeliveries,
                session: session.as_deref().and_then(|s| Uuid::parse_str(s).ok()),
                technician: None,
                occurred_at_us: *created_at_us,
            };
            holds.covering(&record).is_none()
        })
        .map(|(id, _, _)| id)
        .collect())
}

/// Deletes what is due before `before_us`, as the holds in force now
/// allow; idempotent.
pub(crate) async fn commit(store: &Store, holds: &Holds, before_us: i64) -> Result<u64, RunError> {
    let ids = due(store, holds, before_us).await?;
    Ok(Webhooks::new(store.clone()).delete_messages(&ids).await?)
}
