//! Endpoint administration: each change checked and audited as an
//! `admin.change` naming the administrator, as account changes are.

use std::time::Duration;

use audit_db::event::AdminChange;
use audit_db::webhooks::{DeliveryFilter, Endpoint, Webhooks};
use audit_db::{time_us, Accounts, Actor, AuditLog, EventKind, NewEvent, Source};

use crate::deliver::{self, Outcome, Target};
use crate::payload::{self, UnknownType};
use crate::sign::Secret;
use crate::ssrf::{self, UrlError};

/// A change to the endpoints could not be made.
#[derive(Debug, thiserror::Error)]
pub enum WebhookAdminError {
    /// The database refused it (unknown id, database error).
    #[error(transparent)]
    Store(#[from] audit_db::Error),
    /// The URL is malformed, not https, or private.
    #[error(transparent)]
    Url(#[from] UrlError),
    /// An event type that does not exist.
    #[error(transparent)]
    Type(#[from] UnknownType),
    /// A group that does not exist.
    #[error("no technician group is called {0:?}")]
    NoGroup(String),
    /// The `--ca` file is unusable.
    #[error(transparent)]
    Ca(#[from] deliver::ClientError),
    /// The OS gave no random bytes for the secret.
    #[error("no random bytes for the signing secret: {0}")]
    Random(getrandom::Error),
    /// The change was made but could not be audited.
    #[error("the change was made but could not be recorded in the audit log: {0}")]
    Unaudited(audit_db::Error),
}

/// What a new endpoint is to receive.
#[derive(Clone, Debug, Default)]
pub struct NewEndpoint {
    /// Where posts go.
    pub url: String,
    /// Groups whose sessions it receives; empty: all.
    pub groups: Vec<String>,
    /// Webhook types; empty: `session.started` and `session.ended`.
    pub events: Vec<String>,
    /// Leave chat transcripts out.
    pub exclude_chat: bool,
    /// PEM trust anchors for its TLS, beside the system's.
    pub ca_pem: Option<String>,
    /// It may be on a private address.
    pub allow_private: bool,
    /// It may be plain http.
    pub allow_http: bool,
    /// Free text.
    pub description: String,
}

/// An administrator acting on the endpoints of one database.
#[derive(Clone, Debug)]
pub struct EndpointAdmin {
    log: AuditLog,
    hooks: Webhooks,
    actor: Actor,
    source: Source,
}

impl EndpointAdmin {
    /// `admin` acting from `source` on the database of `log`.
    pub fn new(log: AuditLog, admin: &str, source: Source) -> Self {
        Self {
            hooks: Webhooks::new(log.store().clone()),
            actor: Actor::admin(admin),
            log,
            source,
        }
    }

    /// The stored endpoints.
    pub fn hooks(&self) -> &Webhooks {
        &self.hooks
    }

    async fn audit(&self, id: &str, change: String) -> Result<(), WebhookAdminError> {
        let event = NewEvent::now(
            self.actor.clone(),
            self.source.clone(),
            EventKind::AdminChange(AdminChange {
                target: format!("webhook:{id}"),
                change,
            }),
        );
        self.log
            .append_one(event)
            .await
            .map(|_| ())
            .map_err(WebhookAdminError::Unaudited)
    }

    /// Adds an endpoint that receives events from now on; returns it, with
    /// its secret (shown once).
    pub async fn add(&self, new: NewEndpoint) -> Result<Endpoint, WebhookAdminError> {
        let url = ssrf::parse(&new.url, new.allow_http, new.allow_private)?;
        let events: Vec<String> = if new.events.is_empty() {
            payload::DEFAULT_EVENTS
                .iter()
                .map(|s| (*s).to_owned())
                .collect()
        } else {
            new.events.clone()
        };
        payload::check_types(events.iter().map(String::as_str))?;
        let accounts = Accounts::new(self.log.store().clone());
        for g in &new.groups {
            if accounts.group(g).await?.is_none() {
                return Err(WebhookAdminError::NoGroup(g.clone()));
            }
        }
        if let Some(pem) = &new.ca_pem {
            deliver::check_ca(pem)?;
        }
        // Last: the one check that needs the network.
        ssrf::check_resolved(&url, new.allow_private).await?;
        let mut raw = [0u8; 8];
        getrandom::fill(&mut raw).map_err(WebhookAdminError::Random)?;
        let secret = Secret::generate().map_err(WebhookAdminError::Random)?;
        let now = time_us::now();
        let endpoint = Endpoint {
            id: format!("wh_{}", hex::encode(raw)),
            url: url.to_string(),
            groups: new.groups.join(","),
            events: events.join(","),
            exclude_chat: new.exclude_chat,
            ca_pem: new.ca_pem,
            allow_private: new.allow_private,
            allow_http: new.allow_http,
            description: new.description,
            secret: secret.to_text(),
            old_secret: None,
            old_secret_until: None,
            disabled: false,
            disabled_reason: None,
            // From now on: the head as it is when the endpoint is added.
            cursor_seq: self.log.store().head().await?.seq,
            failing_since: None,
            created_at: now,
        };
        self.hooks.add(&endpoint).await?;
        let groups = if new.groups.is_empty() {
            "every group".to_owned()
        } else {
            format!("groups {}", endpoint.groups)
        };
        self.audit(
            &endpoint.id,
            format!(
                "added: {} ({groups}; events {}; chat {}; private addresses {}; own CA {})",
                endpoint.url,
                endpoint.events,
                if endpoint.exclude_chat {
                    "excluded"
                } else {
                    "included"
                },
                if endpoint.allow_private {
                    "allowed"
                } else {
                    "refused"
                },
                if endpoint.ca_pem.is_some() {
                    "yes"
                } else {
                    "no"
                },
            ),
        )
        .await?;
        Ok(endpoint)
    }

    /// Disables or enables an endpoint (enabling forgets its failures;
    /// what piled up while disabled is delivered).
    pub async fn set_enabled(&self, id: &str, enabled: bool) -> Result<(), WebhookAdminError> {
        self.hooks
            .set_disabled(id, !enabled, None, time_us::now())
            .await?;
        self.audit(id, if enabled { "enabled" } else { "disabled" }.to_owned())
            .await
    }

    /// Removes an endpoint, its pending posts and its delivery log.
    pub async fn remove(&self, id: &str) -> Result<(), WebhookAdminError> {
        self.hooks.remove(id).await?;
        self.audit(id, "removed".to_owned()).await
    }

    /// A new secret; the old one also signs for `grace`. Returns the new one.
    pub async fn rotate(&self, id: &str, grace: Duration) -> Result<String, WebhookAdminError> {
        self.hooks.existing(id).await?;
        let secret = Secret::generate()
            .map_err(WebhookAdminError::Random)?
            .to_text();
        let now = time_us::now();
        let until = now.saturating_add(i64::try_from(grace.as_micros()).unwrap_or(i64::MAX));
        self.hooks.rotate(id, &secret, until, now).await?;
        self.audit(
            id,
            format!(
                "signing secret rotated; the old one signs until {}",
                time_us::format(until)
            ),
        )
        .await?;
        Ok(secret)
    }

    /// Makes the deliveries `filter` selects due again, with their ids and
    /// bodies (receivers deduplicate by id); audited; returns how many.
    pub async fn replay(&self, filter: &DeliveryFilter) -> Result<u64, WebhookAdminError> {
        let n = self.hooks.replay(filter, time_us::now()).await?;
        let mut which = Vec::new();
        for (name, value) in [
            ("delivery", &filter.message),
            ("session", &filter.session),
            ("status", &filter.status),
        ] {
            if let Some(v) = value {
                which.push(format!("{name} {v}"));
            }
        }
        for (name, value) in [("since", filter.since), ("until", filter.until)] {
            if let Some(t) = value {
                which.push(format!("{name} {}", time_us::format(t)));
            }
        }
        let which = if which.is_empty() {
            String::new()
        } else {
            format!(" ({})", which.join(", "))
        };
        let endpoint = filter.endpoint.as_deref().unwrap_or("*");
        self.audit(endpoint, format!("{n} deliveries replayed{which}"))
            .await?;
        Ok(n)
    }

    /// Posts a `vigil.test` message to the endpoint at once and says what came of it.
    pub async fn test(&self, id: &str) -> Result<Outcome, WebhookAdminError> {
        let e = self.hooks.existing(id).await?;
        let url = ssrf::parse(&e.url, e.allow_http, e.allow_private)?;
        let target = Target::new(url, e.ca_pem.as_deref(), e.allow_private, deliver::TIMEOUT)?;
        let now = time_us::now();
        let body = payload::test_body(&e.id, now);
        let message = uuid::Uuid::now_v7().to_string();
        let secrets = crate::worker::signing_secrets(&e, now);
        Ok(target
            .post(&message, now / 1_000_000, &body, &secrets)
            .await)
    }
}
