//! Administrative changes to retention: the policy and legal holds, each
//! stored and then audited as an `admin.change` naming the administrator
//! (as `gateway::admin` does for accounts).

use audit_db::archive::{Archive, Hold, HoldScope};
use audit_db::event::AdminChange;
use audit_db::{time_us, Accounts, Actor, AuditLog, EventKind, NewEvent, Source};

use crate::policy::{Policy, PolicyError};

/// A change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The policy is not acceptable.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// A hold that does not say what it covers, or why.
    #[error("{0}")]
    BadHold(String),
    /// No hold in force has this id.
    #[error("no legal hold {0} is in force (see `vigil admin hold list --all`)")]
    NoSuchHold(i64),
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] audit_db::Error),
    /// The change was made but could not be audited.
    #[error("the change was made but could not be recorded in the audit log: {0}")]
    Unaudited(audit_db::Error),
}

impl AdminError {
    /// Whether it is the caller's input that is wrong (exit 2, nothing changed).
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            AdminError::Policy(_) | AdminError::BadHold(_) | AdminError::NoSuchHold(_)
        )
    }
}

/// An administrator acting on retention in one database.
#[derive(Clone, Debug)]
pub struct RetentionAdmin<'a> {
    log: &'a AuditLog,
    actor: Actor,
    source: Source,
}

impl<'a> RetentionAdmin<'a> {
    /// `admin` acting from `source` on the database of `log`.
    pub fn new(log: &'a AuditLog, admin: &str, source: Source) -> Self {
        Self {
            log,
            actor: Actor::admin(admin),
            source,
        }
    }

    /// `actor` (an administrator or, for holds, a compliance officer)
    /// acting from `source` on the database of `log`.
    pub fn with_actor(log: &'a AuditLog, actor: Actor, source: Source) -> Self {
        Self { log, actor, source }
    }

    async fn audit(&self, target: String, change: String) -> Result<(), AdminError> {
        self.log
            .append_one(NewEvent::now(
                self.actor.clone(),
                self.source.clone(),
                EventKind::AdminChange(AdminChange { target, change }),
            ))
            .await
            .map(drop)
            .map_err(AdminError::Unaudited)
    }

    /// Stores `policy` (checked first) and audits the change from the one
    /// in force, as JSON before and after.
    pub async fn set_policy(&self, policy: &Policy) -> Result<(), AdminError> {
        policy.check()?;
        let accounts = Accounts::new(self.log.store().clone());
        let before = Policy::load(&accounts).await?;
        policy.store(&accounts).await?;
        let json = |p: &Policy| serde_json::to_string(p).unwrap_or_default();
        self.audit(
            "retention:policy".into(),
            format!("from {} to {}", json(&before), json(policy)),
        )
        .await
    }

    /// Places a hold; returns it.
    pub async fn add_hold(&self, scope: HoldScope, reason: &str) -> Result<Hold, AdminError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AdminError::BadHold(
                "a hold needs a reason (--reason)".into(),
            ));
        }
        if let HoldScope::Period { since_us, until_us } = scope {
            if since_us >= until_us {
                return Err(AdminError::BadHold(format!(
                    "--since {} is not before --until {}",
                    time_us::format(since_us),
                    time_us::format(until_us)
                )));
            }
        }
        let archive = Archive::new(self.log.store().clone());
        let id = archive
            .add_hold(&scope, reason, self.actor.as_str(), time_us::now())
            .await?;
        self.audit(
            format!("hold:{id}"),
            format!("legal hold placed on {}: {reason}", describe(&scope)),
        )
        .await?;
        let hold = archive.holds().await?.into_iter().find(|h| h.id == id);
        hold.ok_or(AdminError::NoSuchHold(id))
    }

    /// Releases hold `id`.
    pub async fn release_hold(&self, id: i64, reason: &str) -> Result<(), AdminError> {
        let reason = reason.trim();
        if reason.is_empty() {
            return Err(AdminError::BadHold(
                "releasing a hold needs a reason (--reason)".into(),
            ));
        }
        let archive = Archive::new(self.log.store().clone());
        if !archive
            .release_hold(id, self.actor.as_str(), reason, time_us::now())
            .await?
        {
            return Err(AdminError::NoSuchHold(id));
        }
        self.audit(
            format!("hold:{id}"),
            format!("legal hold released: {reason}"),
        )
        .await
    }
}

/// What a hold covers, in words.
pub fn describe(scope: &HoldScope) -> String {
    match scope {
        HoldScope::Session(id) => format!("session {id}"),
        HoldScope::Technician(email) => format!("technician {email}'s sessions and actions"),
        HoldScope::Period { since_us, until_us } => format!(
            "everything from {} until {}",
            time_us::format(*since_us),
            time_us::format(*until_us)
        ),
    }
}
