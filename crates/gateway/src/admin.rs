//! Account administration: technician accounts, groups and the access
//! policy, each change checked against the rules and audited with the
//! administrator's name.
//!
//! The change is stored first and audited right after; if the audit append
//! fails the caller gets the error (and the change stands, unaudited, which
//! the error says). Accounts live outside the hash chain, so one
//! transaction for both would need the writer task to run foreign statements.

use audit_db::accounts::{Group, Role, Technician};
use audit_db::event::{AccountUnlocked, AdminChange, UnlockCause};
use audit_db::{time_us, Accounts, Actor, AuditLog, EventKind, NewEvent, Source};

use crate::auth::{self, PasswordRejected, Policy};

/// An administrative change could not be made.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The store refused it (duplicate, missing account or group, database error).
    #[error(transparent)]
    Store(#[from] audit_db::Error),
    /// The password does not meet the policy.
    #[error("password refused: {0}")]
    Password(#[from] PasswordRejected),
    /// An allow-list entry is not a network or address.
    #[error("{0:?} is not an IP network (CIDR) or address")]
    BadNetwork(String),
    /// An email that cannot be an account name.
    #[error("{0:?} is not an email address")]
    BadEmail(String),
    /// A group name that is empty or has characters other than letters, digits, `-`, `_` and `.`.
    #[error("{0:?} is not a valid group name (letters, digits, '-', '_', '.')")]
    BadGroupName(String),
    /// A policy value is out of its range.
    #[error(transparent)]
    Policy(#[from] auth::OutOfRange),
    /// Hashing the password failed.
    #[error(transparent)]
    Hash(#[from] auth::HashError),
    /// The change was made but could not be audited.
    #[error("the change was made but could not be recorded in the audit log: {0}")]
    Unaudited(audit_db::Error),
}

/// An administrator acting on one database.
#[derive(Debug, Clone)]
pub struct Admin {
    log: AuditLog,
    accounts: Accounts,
    actor: Actor,
    source: Source,
}

impl Admin {
    /// `admin` acting from `source` (e.g. `cli@host`) on the database of `log`.
    pub fn new(log: AuditLog, admin: &str, source: Source) -> Self {
        Self {
            accounts: Accounts::new(log.store().clone()),
            actor: Actor::admin(admin),
            log,
            source,
        }
    }

    /// The accounts, for listing.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    async fn audit(&self, kind: EventKind) -> Result<(), AdminError> {
        self.log
            .append_one(NewEvent::now(self.actor.clone(), self.source.clone(), kind))
            .await
            .map(|_| ())
            .map_err(AdminError::Unaudited)
    }

    async fn audit_change(&self, target: String, change: String) -> Result<(), AdminError> {
        self.audit(EventKind::AdminChange(AdminChange { target, change }))
            .await
    }

    /// Adds a technician account.
    pub async fn add_user(
        &self,
        email: &str,
        group: &str,
        role: Role,
        password: &str,
        must_change: bool,
    ) -> Result<(), AdminError> {
        let email = check_email(email)?;
        let policy = Policy::load(&self.accounts).await?;
        policy.check_password(&email, password)?;
        let hash = hash(password).await?;
        self.accounts
            .add_technician(&Technician {
                email: email.clone(),
                group: group.to_owned(),
                role,
                password_hash: hash,
                password_set_us: time_us::now(),
                must_change,
                disabled: false,
                failed_logins: 0,
                locked_until_us: None,
            })
            .await?;
        self.audit_change(
            format!("user:{email}"),
            format!(
                "added to group {group} as {}{}",
                role.as_str(),
                if must_change {
                    ", must change password"
                } else {
                    ""
                }
            ),
        )
        .await
    }

    /// Sets a technician's password.
    pub async fn set_password(
        &self,
        email: &str,
        password: &str,
        must_change: bool,
    ) -> Result<(), AdminError> {
        let email = email.to_lowercase();
        let policy = Policy::load(&self.accounts).await?;
        policy.check_password(&email, password)?;
        let hash = hash(password).await?;
        self.accounts
            .set_password(&email, &hash, must_change)
            .await?;
        self.audit_change(
            format!("user:{email}"),
            format!(
                "password set{}",
                if must_change {
                    ", must change at next login"
                } else {
                    ""
                }
            ),
        )
        .await
    }

    /// Unlocks an account and clears its failure count. Returns whether it was locked.
    pub async fn unlock(&self, email: &str) -> Result<bool, AdminError> {
        let email = email.to_lowercase();
        let was_locked = self.accounts.clear_failures(&email).await?;
        self.audit(EventKind::AccountUnlocked(AccountUnlocked {
            email,
            by: UnlockCause::Admin,
        }))
        .await?;
        Ok(was_locked)
    }

    /// Disables or re-enables an account.
    pub async fn set_disabled(&self, email: &str, disabled: bool) -> Result<(), AdminError> {
        let email = email.to_lowercase();
        self.accounts.set_disabled(&email, disabled).await?;
        self.audit_change(
            format!("user:{email}"),
            if disabled { "disabled" } else { "enabled" }.to_owned(),
        )
        .await
    }

    /// Moves an account to another group and role.
    pub async fn set_group(&self, email: &str, group: &str, role: Role) -> Result<(), AdminError> {
        let email = email.to_lowercase();
        self.accounts.set_group(&email, group, role).await?;
        self.audit_change(
            format!("user:{email}"),
            format!("moved to group {group} as {}", role.as_str()),
        )
        .await
    }

    /// Adds a group.
    pub async fn add_group(&self, group: &Group) -> Result<(), AdminError> {
        check_group(group)?;
        self.accounts.add_group(group).await?;
        self.audit_change(
            format!("group:{}", group.name),
            describe_group("added", group),
        )
        .await
    }

    /// Replaces a group's settings.
    pub async fn update_group(&self, group: &Group) -> Result<(), AdminError> {
        check_group(group)?;
        self.accounts.update_group(group).await?;
        self.audit_change(
            format!("group:{}", group.name),
            describe_group("set", group),
        )
        .await
    }

    /// Stores a new access policy.
    pub async fn set_policy(&self, policy: &Policy) -> Result<(), AdminError> {
        policy.check()?;
        policy.store(&self.accounts).await?;
        let json = serde_json::to_string(policy).expect("the policy: serialising this plain struct (no maps with non-string keys, no custom impls) cannot fail");
        self.audit_change("policy:access".to_owned(), format!("set to {json}"))
            .await
    }
}

async fn hash(password: &str) -> Result<String, AdminError> {
    let password = password.to_owned();
    tokio::task::spawn_blocking(move || auth::hash_password(&password))
        .await
        .map_err(|e| auth::HashError::new(format!("hashing task failed: {e}")))?
        .map_err(AdminError::from)
}

fn check_email(email: &str) -> Result<String, AdminError> {
    auth::account_email(email).ok_or_else(|| AdminError::BadEmail(email.trim().to_owned()))
}

fn check_group(group: &Group) -> Result<(), AdminError> {
    let name_ok = !group.name.is_empty()
        && group.name.len() <= 64
        && group
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c));
    if !name_ok {
        return Err(AdminError::BadGroupName(group.name.clone()));
    }
    for entry in &group.ip_allow {
        if entry.parse::<ipnet::IpNet>().is_err() && entry.parse::<std::net::IpAddr>().is_err() {
            return Err(AdminError::BadNetwork(entry.clone()));
        }
    }
    Ok(())
}

fn describe_group(verb: &str, g: &Group) -> String {
    let permissions: Vec<_> = g.permissions.iter().map(|p| p.as_str()).collect();
    format!(
        "{verb}: permissions [{}], allow [{}], single_prompt {}, force_recording {}, store_chat {}",
        permissions.join(","),
        g.ip_allow.join(","),
        g.single_prompt,
        g.force_recording,
        g.store_chat
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_and_group_names_are_checked() {
        assert!(check_email("a b@example.com").is_err());
        let mut g = Group {
            name: "tier-1".into(),
            permissions: vec![],
            ip_allow: vec!["10.0.0.0/8".into(), "192.0.2.7".into()],
            single_prompt: false,
            force_recording: false,
            store_chat: true,
        };
        assert!(check_group(&g).is_ok());
        g.ip_allow.push("10.0.0.0/33".into());
        assert!(matches!(check_group(&g), Err(AdminError::BadNetwork(_))));
        g.ip_allow.pop();
        g.name = "bad name".into();
        assert!(matches!(check_group(&g), Err(AdminError::BadGroupName(_))));
    }
}
