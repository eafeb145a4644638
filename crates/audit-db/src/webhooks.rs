//! CRM webhook endpoints, their messages and every delivery attempt,
//! stored beside the audit log. This module only stores and reads them;
//! what is posted, how it is signed and when it is retried is `webhook`'s.
//!
//! A message comes into being with the endpoint's cursor moving past its
//! event, in one transaction ([`Webhooks::advance`]); workers lease due
//! messages ([`Webhooks::claim`]) so that several of them, on PostgreSQL,
//! never hold the same message at once.

use serde::Serialize;
use uuid::Uuid;

use crate::error::{db, Error, Result};
use crate::store::{on_pool, Pools, Store};

/// A CRM endpoint and what it receives.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Endpoint {
    /// `wh_` and 16 hex digits.
    pub id: String,
    /// Where posts go.
    pub url: String,
    /// Comma-separated technician groups whose sessions it receives; empty: all.
    pub groups: String,
    /// Comma-separated webhook types it receives.
    pub events: String,
    /// Chat transcripts are left out of its posts.
    pub exclude_chat: bool,
    /// PEM certificates it trusts beside the system's roots.
    #[serde(skip)]
    pub ca_pem: Option<String>,
    /// It may be on a private, loopback or link-local address.
    pub allow_private: bool,
    /// It may be plain `http`.
    pub allow_http: bool,
    /// Free text for operators.
    pub description: String,
    /// The signing secret (`whsec_...`).
    #[serde(skip)]
    pub secret: String,
    /// The secret before the last rotation, still signing until `old_secret_until`.
    #[serde(skip)]
    pub old_secret: Option<String>,
    /// When the old secret stops signing (microseconds since the epoch).
    pub old_secret_until: Option<i64>,
    /// Posts are not made while disabled.
    pub disabled: bool,
    /// Why it was disabled, when the worker disabled it.
    pub disabled_reason: Option<String>,
    /// The last audit seq it has looked at.
    pub cursor_seq: i64,
    /// Since when every attempt has failed (none succeeded since).
    pub failing_since: Option<i64>,
    /// When it was added.
    pub created_at: i64,
}

impl Endpoint {
    /// The groups it receives (empty: every group).
    pub fn group_list(&self) -> Vec<String> {
        crate::accounts::split_list(&self.groups)
            .map(str::to_owned)
            .collect()
    }

    /// The webhook types it receives.
    pub fn event_list(&self) -> Vec<String> {
        crate::accounts::split_list(&self.events)
            .map(str::to_owned)
            .collect()
    }
}

/// A post to make, as the dispatcher builds it.
#[derive(Clone, Debug)]
pub struct NewMessage {
    /// The Standard Webhooks `webhook-id`.
    pub id: Uuid,
    /// The audit event it comes from (0 for a test post).
    pub event_seq: i64,
    /// Its webhook type (`session.ended`...).
    pub event_type: String,
    /// The session it is about, if any.
    pub session: Option<Uuid>,
    /// The JSON body, exactly as it will be sent.
    pub body: String,
}

/// A message as stored.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Message {
    /// The Standard Webhooks `webhook-id`.
    pub id: String,
    /// Its endpoint.
    pub endpoint_id: String,
    /// The audit event it comes from (0 for a test post).
    pub event_seq: i64,
    /// Its webhook type.
    pub event_type: String,
    /// The session it is about.
    pub session_id: Option<String>,
    /// The JSON body.
    #[serde(skip)]
    pub body: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    /// Attempts made so far.
    pub attempts: i32,
    /// When the next attempt is due (microseconds since the epoch).
    pub next_attempt_at: i64,
    /// The last attempt's error, if it failed.
    pub last_error: Option<String>,
    /// When it was made.
    pub created_at: i64,
    /// When it was delivered or given up.
    pub finished_at: Option<i64>,
}

/// One attempt, as the delivery log keeps it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, sqlx::FromRow)]
pub struct Attempt {
    /// The message tried.
    pub message_id: String,
    /// From 1.
    pub attempt: i32,
    /// When it was made (microseconds since the epoch).
    pub at: i64,
    /// The HTTP status, when an answer came.
    pub http_status: Option<i32>,
    /// From the request's start to the answer's end or the failure.
    pub latency_ms: i64,
    /// What went wrong, when something did.
    pub error: Option<String>,
    /// The first 1 KiB of the answer's body.
    pub response: Option<String>,
}

/// What becomes of a message after an attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Next {
    /// Delivered: done.
    Delivered,
    /// Try again at this time (microseconds since the epoch).
    RetryAt(i64),
    /// Given up (retries exhausted or the endpoint gone).
    Failed,
}

/// Which messages `deliveries` lists.
#[derive(Clone, Debug, Default)]
pub struct DeliveryFilter {
    /// Only this endpoint's.
    pub endpoint: Option<String>,
    /// Only `pending`, `delivered` or `failed` ones.
    pub status: Option<String>,
    /// Made at or after (microseconds since the epoch).
    pub since: Option<i64>,
    /// Made before.
    pub until: Option<i64>,
    /// Only this one.
    pub message: Option<String>,
    /// Only those about this session.
    pub session: Option<String>,
}

/// The columns of [`Endpoint`], in its order.
const ENDPOINT_COLUMNS: &str = "id, url, groups, events, exclude_chat, ca_pem, allow_private, \
     allow_http, description, secret, old_secret, old_secret_until, disabled, disabled_reason, \
     cursor_seq, failing_since, created_at";
/// The columns of [`Message`], in its order.
const MESSAGE_COLUMNS: &str = "id, endpoint_id, event_seq, event_type, session_id, body, status, \
     attempts, next_attempt_at, last_error, created_at, finished_at";

/// Webhook endpoints and deliveries of one database. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Webhooks {
    store: Store,
}

impl Webhooks {
    /// The webhooks kept in `store`.
    pub fn new(store: Store) -> Self {
        Self { store }
    }

    /// Adds an endpoint; fails with [`Error::Exists`] if its id is taken.
    pub async fn add(&self, e: &Endpoint) -> Result<()> {
        let sql = format!(
            "INSERT INTO webhook_endpoints ({ENDPOINT_COLUMNS}, updated_at) VALUES \
             ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $17)"
        );
        let result = on_pool!(self, pool => sqlx::query(&sql)
            .bind(&e.id)
            .bind(&e.url)
            .bind(&e.groups)
            .bind(&e.events)
            .bind(e.exclude_chat)
            .bind(&e.ca_pem)
            .bind(e.allow_private)
            .bind(e.allow_http)
            .bind(&e.description)
            .bind(&e.secret)
            .bind(&e.old_secret)
            .bind(e.old_secret_until)
            .bind(e.disabled)
            .bind(&e.disabled_reason)
            .bind(e.cursor_seq)
            .bind(e.failing_since)
            .bind(e.created_at)
            .execute(pool)
            .await
            .map(|_| ()));
        crate::accounts::exists_or(
            result,
            "webhook endpoint",
            &e.id,
            "adding a webhook endpoint",
        )
    }

    /// The endpoint `id`, if there is one.
    pub async fn endpoint(&self, id: &str) -> Result<Option<Endpoint>> {
        let sql = format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints WHERE id = $1");
        Ok(on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(id)
            .fetch_optional(pool)
            .await
            .map_err(db("reading a webhook endpoint"))?))
    }

    /// The endpoint `id`, or [`Error::NoSuch`].
    pub async fn existing(&self, id: &str) -> Result<Endpoint> {
        self.endpoint(id).await?.ok_or_else(|| Error::NoSuch {
            what: "webhook endpoint",
            name: id.to_owned(),
        })
    }

    /// Every endpoint, oldest first.
    pub async fn endpoints(&self) -> Result<Vec<Endpoint>> {
        let sql =
            format!("SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints ORDER BY created_at, id");
        Ok(on_pool!(self, pool => sqlx::query_as(&sql)
            .fetch_all(pool)
            .await
            .map_err(db("reading webhook endpoints"))?))
    }

    /// Disables or enables an endpoint (`reason`: why the worker disabled it).
    /// Enabling forgets its failures.
    pub async fn set_disabled(
        &self,
        id: &str,
        disabled: bool,
        reason: Option<&str>,
        now_us: i64,
    ) -> Result<()> {
        let sql = "UPDATE webhook_endpoints SET disabled = $2, disabled_reason = $3, \
                   failing_since = CASE WHEN $2 THEN failing_since ELSE NULL END, \
                   updated_at = $4 WHERE id = $1";
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(id).bind(disabled).bind(reason).bind(now_us)
            .execute(pool).await.map_err(db("disabling a webhook endpoint"))?.rows_affected());
        crate::accounts::found(n, "webhook endpoint", id)
    }

    /// A new signing secret; the current one keeps signing until `old_until_us`.
    pub async fn rotate(
        &self,
        id: &str,
        secret: &str,
        old_until_us: i64,
        now_us: i64,
    ) -> Result<()> {
        let sql = "UPDATE webhook_endpoints SET old_secret = secret, secret = $2, \
                   old_secret_until = $3, updated_at = $4 WHERE id = $1";
        let n = on_pool!(self, pool => sqlx::query(sql)
            .bind(id).bind(secret).bind(old_until_us).bind(now_us)
            .execute(pool).await.map_err(db("rotating a webhook secret"))?.rows_affected());
        crate::accounts::found(n, "webhook endpoint", id)
    }

    /// Removes an endpoint with its messages and their delivery log.
    pub async fn remove(&self, id: &str) -> Result<()> {
        let n = on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db("removing a webhook endpoint"))?;
            sqlx::query("DELETE FROM webhook_attempts WHERE message_id IN \
                         (SELECT id FROM webhook_messages WHERE endpoint_id = $1)")
                .bind(id).execute(&mut *tx).await.map_err(db("removing a webhook endpoint"))?;
            sqlx::query("DELETE FROM webhook_messages WHERE endpoint_id = $1")
                .bind(id).execute(&mut *tx).await.map_err(db("removing a webhook endpoint"))?;
            let n = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1")
                .bind(id).execute(&mut *tx).await.map_err(db("removing a webhook endpoint"))?
                .rows_affected();
            tx.commit().await.map_err(db("removing a webhook endpoint"))?;
            n
        });
        crate::accounts::found(n, "webhook endpoint", id)
    }

    /// Stores `messages` and moves the endpoint's cursor from `from` to `to`,
    /// in one transaction. `false` (and nothing stored) if the cursor was no
    /// longer at `from`: another dispatcher got there first. A message whose
    /// event already has one for this endpoint is not stored twice.
    pub async fn advance(
        &self,
        endpoint: &str,
        from: i64,
        to: i64,
        messages: &[NewMessage],
        now_us: i64,
    ) -> Result<bool> {
        const DOING: &str = "storing webhook messages";
        let insert = "INSERT INTO webhook_messages (id, endpoint_id, event_seq, event_type, \
                      session_id, body, status, attempts, next_attempt_at, created_at) \
                      VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7) ON CONFLICT DO NOTHING";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db(DOING))?;
            // The cursor moves first: a second dispatcher waits on this row
            // (or, on SQLite, on the database) and then finds it moved.
            let moved = sqlx::query(
                "UPDATE webhook_endpoints SET cursor_seq = $3 WHERE id = $1 AND cursor_seq = $2",
            )
            .bind(endpoint).bind(from).bind(to)
            .execute(&mut *tx).await.map_err(db(DOING))?
            .rows_affected();
            if moved == 0 {
                return Ok(false);
            }
            for m in messages {
                sqlx::query(insert)
                    .bind(m.id.to_string())
                    .bind(endpoint)
                    .bind(m.event_seq)
                    .bind(&m.event_type)
                    .bind(m.session.map(|s| s.to_string()))
                    .bind(&m.body)
                    .bind(now_us)
                    .execute(&mut *tx).await.map_err(db(DOING))?;
            }
            tx.commit().await.map_err(db(DOING))?;
            Ok(true)
        })
    }

    /// Stores one message outside any cursor (a test post).
    pub async fn enqueue(&self, endpoint: &str, m: &NewMessage, now_us: i64) -> Result<()> {
        let sql = "INSERT INTO webhook_messages (id, endpoint_id, event_seq, event_type, \
                   session_id, body, status, attempts, next_attempt_at, created_at) \
                   VALUES ($1, $2, $3, $4, $5, $6, 'pending', 0, $7, $7)";
        on_pool!(self, pool => sqlx::query(sql)
            .bind(m.id.to_string())
            .bind(endpoint)
            .bind(m.event_seq)
            .bind(&m.event_type)
            .bind(m.session.map(|s| s.to_string()))
            .bind(&m.body)
            .bind(now_us)
            .execute(pool).await.map(|_| ()).map_err(db("storing a webhook message")))
    }

    /// Leases up to `limit` of `endpoint`'s due messages to `owner` until
    /// `lease_until_us`, oldest due first. A message leased to another
    /// worker whose lease has not run out is never returned; on PostgreSQL
    /// workers skip each other's locked rows instead of waiting.
    pub async fn claim(
        &self,
        endpoint: &str,
        owner: &str,
        now_us: i64,
        lease_until_us: i64,
        limit: i64,
    ) -> Result<Vec<Message>> {
        let lock = match self.store.pools() {
            Pools::Sqlite(_) => "",
            Pools::Postgres(_) => "FOR UPDATE SKIP LOCKED",
        };
        let sql = format!(
            "UPDATE webhook_messages SET lease_owner = $2, lease_until = $4 WHERE id IN \
             (SELECT id FROM webhook_messages WHERE endpoint_id = $1 AND status = 'pending' \
             AND next_attempt_at <= $3 AND (lease_until IS NULL OR lease_until < $3) \
             ORDER BY next_attempt_at, created_at LIMIT $5 {lock}) \
             RETURNING {MESSAGE_COLUMNS}"
        );
        let mut claimed: Vec<Message> = on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(endpoint).bind(owner).bind(now_us).bind(lease_until_us).bind(limit)
            .fetch_all(pool).await.map_err(db("leasing webhook messages"))?);
        claimed.sort_by_key(|m| (m.next_attempt_at, m.created_at));
        Ok(claimed)
    }

    /// When `endpoint`'s next pending message is due, if it has one.
    pub async fn next_due(&self, endpoint: &str) -> Result<Option<i64>> {
        let sql = "SELECT MIN(next_attempt_at) FROM webhook_messages \
                   WHERE endpoint_id = $1 AND status = 'pending'";
        Ok(on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(endpoint)
            .fetch_one(pool).await.map_err(db("reading webhook messages"))?))
    }

    /// Records attempts and what becomes of each message, in one
    /// transaction; only messages still leased to `owner` are changed.
    /// Returns the ids whose outcome was recorded.
    pub async fn record(&self, owner: &str, results: &[(Attempt, Next)]) -> Result<Vec<String>> {
        const DOING: &str = "recording webhook attempts";
        let update = "UPDATE webhook_messages SET status = $3, attempts = $4, \
                      next_attempt_at = $5, last_error = $6, finished_at = $7, \
                      lease_owner = NULL, lease_until = NULL \
                      WHERE id = $1 AND lease_owner = $2";
        let insert = "INSERT INTO webhook_attempts (message_id, attempt, at, http_status, \
                      latency_ms, error, response) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                      ON CONFLICT DO NOTHING";
        on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db(DOING))?;
            let mut recorded = Vec::with_capacity(results.len());
            for (a, next) in results {
                let (status, due, finished) = match next {
                    Next::Delivered => ("delivered", a.at, Some(a.at)),
                    Next::RetryAt(at) => ("pending", *at, None),
                    Next::Failed => ("failed", a.at, Some(a.at)),
                };
                let n = sqlx::query(update)
                    .bind(&a.message_id).bind(owner).bind(status).bind(a.attempt)
                    .bind(due).bind(&a.error).bind(finished)
                    .execute(&mut *tx).await.map_err(db(DOING))?
                    .rows_affected();
                if n == 0 {
                    continue;
                }
                sqlx::query(insert)
                    .bind(&a.message_id).bind(a.attempt).bind(a.at).bind(a.http_status)
                    .bind(a.latency_ms).bind(&a.error).bind(&a.response)
                    .execute(&mut *tx).await.map_err(db(DOING))?;
                recorded.push(a.message_id.clone());
            }
            tx.commit().await.map_err(db(DOING))?;
            Ok(recorded)
        })
    }

    /// Notes a success (`failing_since` cleared) or a failure (set, if it
    /// was not) of `endpoint`; returns `failing_since` after the change.
    pub async fn note_health(&self, endpoint: &str, ok: bool, now_us: i64) -> Result<Option<i64>> {
        let sql = if ok {
            "UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 RETURNING failing_since"
        } else {
            "UPDATE webhook_endpoints SET failing_since = COALESCE(failing_since, $2) \
             WHERE id = $1 RETURNING failing_since"
        };
        let found: Option<Option<i64>> = on_pool!(self, pool => sqlx::query_scalar(sql)
            .bind(endpoint).bind(now_us)
            .fetch_optional(pool).await.map_err(db("noting a webhook endpoint's health"))?);
        Ok(found.flatten())
    }

    /// Messages as `filter` selects them, newest first, at most `limit`.
    pub async fn messages(&self, filter: &DeliveryFilter, limit: i64) -> Result<Vec<Message>> {
        let sql = format!(
            "SELECT {MESSAGE_COLUMNS} FROM webhook_messages WHERE \
             ($1 IS NULL OR endpoint_id = $1) AND ($2 IS NULL OR status = $2) AND \
             ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) AND \
             ($5 IS NULL OR id = $5) AND ($6 IS NULL OR session_id = $6) \
             ORDER BY created_at DESC, id LIMIT $7"
        );
        Ok(on_pool!(self, pool => sqlx::query_as(&sql)
            .bind(&filter.endpoint).bind(&filter.status).bind(filter.since)
            .bind(filter.until).bind(&filter.message).bind(&filter.session).bind(limit)
            .fetch_all(pool).await.map_err(db("reading webhook deliveries"))?))
    }

    /// The attempts made for `message`, in order.
    pub async fn attempts(&self, message: &str) -> Result<Vec<Attempt>> {
        let sql = "SELECT message_id, attempt, at, http_status, latency_ms, error, response \
                   FROM webhook_attempts WHERE message_id = $1 ORDER BY attempt";
        Ok(on_pool!(self, pool => sqlx::query_as(sql)
            .bind(message)
            .fetch_all(pool).await.map_err(db("reading webhook attempts"))?))
    }

    /// Finished messages (delivered or failed) created before `before_us`:
    /// (id, session id, created at), oldest first.
    pub async fn finished_before(
        &self,
        before_us: i64,
    ) -> Result<Vec<(String, Option<String>, i64)>> {
        let sql = "SELECT id, session_id, created_at FROM webhook_messages \
                   WHERE created_at < $1 AND status IN ('delivered', 'failed') ORDER BY created_at";
        Ok(on_pool!(self, pool => sqlx::query_as(sql)
            .bind(before_us)
            .fetch_all(pool).await.map_err(db("reading finished webhook messages"))?))
    }

    /// Deletes the messages `ids` with their delivery log, in one
    /// transaction; returns how many messages went.
    pub async fn delete_messages(&self, ids: &[String]) -> Result<u64> {
        const DOING: &str = "deleting webhook messages";
        Ok(on_pool!(self, pool => {
            let mut tx = pool.begin().await.map_err(db(DOING))?;
            let mut n = 0;
            for id in ids {
                sqlx::query("DELETE FROM webhook_attempts WHERE message_id = $1")
                    .bind(id).execute(&mut *tx).await.map_err(db(DOING))?;
                n += sqlx::query("DELETE FROM webhook_messages WHERE id = $1")
                    .bind(id).execute(&mut *tx).await.map_err(db(DOING))?.rows_affected();
            }
            tx.commit().await.map_err(db(DOING))?;
            n
        }))
    }

    /// Makes the messages `filter` selects due again at `now_us`, keeping
    /// their ids and bodies (a replay); returns how many.
    pub async fn replay(&self, filter: &DeliveryFilter, now_us: i64) -> Result<u64> {
        let sql = "UPDATE webhook_messages SET status = 'pending', next_attempt_at = $6, \
                   finished_at = NULL, lease_owner = NULL, lease_until = NULL WHERE \
                   ($1 IS NULL OR endpoint_id = $1) AND ($2 IS NULL OR status = $2) AND \
                   ($3 IS NULL OR created_at >= $3) AND ($4 IS NULL OR created_at < $4) AND \
                   ($5 IS NULL OR id = $5) AND ($7 IS NULL OR session_id = $7)";
        Ok(on_pool!(self, pool => sqlx::query(sql)
            .bind(&filter.endpoint).bind(&filter.status).bind(filter.since)
            .bind(filter.until).bind(&filter.message).bind(now_us).bind(&filter.session)
            .execute(pool).await.map_err(db("replaying webhook messages"))?
            .rows_affected()))
    }
}
