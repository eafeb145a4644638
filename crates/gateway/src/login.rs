//! The login rules, in one place for every door a technician comes in by
//! (the gateway's control link, the web portal): address throttling,
//! lockout, the hashing pool, disabled accounts, allow-lists and password
//! expiry, each refusal audited.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use audit_db::accounts::{Group, Technician};
use audit_db::event::{
    AccountLocked, AccountUnlocked, LoginFailed, LoginFailure, LoginSucceeded, PasswordChanged,
    UnlockCause,
};
use audit_db::{time_us, Accounts, Actor, AuditLog, EventKind, NewEvent, Source};
use protocol::wire::{self, ErrorCode};

use crate::auth::{self, Policy};
use crate::hasher::{Busy, HashFailed, Hasher};
use crate::throttle::Throttle;
use crate::GatewayError;

/// A refused login (or request): what the client is told.
#[derive(Debug)]
pub struct Refusal {
    /// The wire code (the web portal maps it to a status).
    pub code: ErrorCode,
    /// What the person is told.
    pub message: String,
    /// When trying again may succeed.
    pub retry_after: Option<Duration>,
}

impl Refusal {
    /// A refusal with `code` and `message`.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    /// A failure inside Vigil, logged; the client learns only that it failed.
    pub fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("login failed inside the gateway: {e}");
        Self::new(
            ErrorCode::Internal,
            "the gateway could not complete the login",
        )
    }
}

/// Checks logins against the accounts of one log, under one policy.
#[derive(Debug)]
pub struct Gatekeeper {
    policy: Policy,
    log: AuditLog,
    accounts: Accounts,
    /// Failed logins per address.
    throttle: Throttle,
    /// Password checks: a fixed pool of threads and a bounded queue.
    hasher: Hasher,
    /// Verified when an account does not exist, so the answer takes as long.
    dummy_hash: String,
    /// Who the login events name as their reporter.
    source: Source,
}

impl Gatekeeper {
    /// Starts the hashing pool (`workers` threads, `queue` waiting checks)
    /// for logins under `policy`, audited into `log` as reported by `source`.
    pub async fn start(
        log: AuditLog,
        policy: Policy,
        workers: usize,
        queue: usize,
        source: Source,
    ) -> Result<Self, GatewayError> {
        let hasher =
            Hasher::start(workers, queue).map_err(|e| GatewayError::Hash(e.to_string()))?;
        let dummy_hash = hasher
            .hash("vigil-no-such-account")
            .await
            .map_err(|e| GatewayError::Hash(e.to_string()))?;
        Ok(Self {
            throttle: Throttle::new(
                policy.ip_failure_limit,
                Duration::from_secs(policy.ip_window_s),
            ),
            accounts: Accounts::new(log.store().clone()),
            policy,
            log,
            hasher,
            dummy_hash,
            source,
        })
    }

    /// The policy logins are checked under.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The accounts logins are checked against.
    pub fn accounts(&self) -> &Accounts {
        &self.accounts
    }

    /// Appends a login event; returns once it is durable.
    async fn audit(&self, actor: Actor, kind: EventKind) -> Result<(), audit_db::Error> {
        let event = NewEvent::now(actor, self.source.clone(), kind);
        self.log.append_one(event).await.map(|_| ())
    }

    /// Checks everything a login must pass, auditing each refusal.
    ///
    /// Every attempt is counted before its password is checked, against its
    /// address (in memory) and its email (in the database, whether or not an
    /// account has it), so attempts that arrive at once cannot all be checked:
    /// at most `lockout_threshold` wrong passwords per email between successes,
    /// and `ip_failure_limit` attempts per address in its window. Only a right
    /// password gives its units back. Known and unknown emails run the same
    /// statements and the same argon2 work, and both lock, so neither the
    /// answer nor its timing tells which accounts exist (docs/protocol.md).
    pub async fn login(
        &self,
        ip: IpAddr,
        claimed: &str,
        password: &str,
        new_password: Option<String>,
    ) -> Result<(Technician, Group), Refusal> {
        let policy = &self.policy;
        let email = auth::account_email(claimed);
        // What the log says was tried: the email, or an escaped, shortened copy of the claim.
        let named = email
            .clone()
            .unwrap_or_else(|| wire::printable(claimed.trim(), auth::MAX_EMAIL));
        let actor = Actor::technician(&named);
        let fail = |reason: LoginFailure| {
            let actor = actor.clone();
            let email = named.clone();
            async move {
                self.audit(
                    actor,
                    EventKind::LoginFailed(LoginFailed { email, ip, reason }),
                )
                .await
                .map_err(Refusal::internal)
            }
        };
        let bad_credentials = || Refusal::new(ErrorCode::BadCredentials, "wrong email or password");
        let locked = || {
            Refusal::new(
                ErrorCode::AccountLocked,
                "the account is locked after too many failed logins; an administrator can unlock it",
            )
        };

        let address = match self.throttle.reserve(ip, Instant::now()) {
            Ok(reserved) => reserved,
            Err(wait) => {
                fail(LoginFailure::Throttled).await?;
                return Err(Refusal {
                    retry_after: Some(wait),
                    ..Refusal::new(
                        ErrorCode::Throttled,
                        format!(
                            "too many failed logins from {ip}; retry in {} s",
                            wait.as_secs().max(1)
                        ),
                    )
                });
            }
        };
        let Some(email) = email else {
            fail(LoginFailure::MalformedEmail).await?;
            return Err(bad_credentials());
        };

        let account = self
            .accounts
            .technician(&email)
            .await
            .map_err(Refusal::internal)?;
        let known = account.is_some();
        let now = time_us::now();
        let lifted = self
            .accounts
            .lift_expired_lock(&email, now)
            .await
            .map_err(Refusal::internal)?;
        if lifted && known {
            self.audit(
                Actor::system("gateway"),
                EventKind::AccountUnlocked(AccountUnlocked {
                    email: email.clone(),
                    by: UnlockCause::Timeout,
                }),
            )
            .await
            .map_err(Refusal::internal)?;
        }
        let reserved = self
            .accounts
            .reserve_login(&email, policy.lockout_threshold, now)
            .await
            .map_err(Refusal::internal)?;
        if !reserved {
            // Locked (or about to be): the password is not checked, so the
            // answer reveals nothing about it.
            fail(if known {
                LoginFailure::AccountLocked
            } else {
                LoginFailure::UnknownAccount
            })
            .await?;
            return Err(locked());
        }

        let hash = account
            .as_ref()
            .map_or(self.dummy_hash.as_str(), |t| t.password_hash.as_str());
        let right = match self.hasher.verify(hash, password).await {
            Ok(right) => right && known,
            Err(Busy) => {
                // Not checked: the email's unit is given back (the address's is not).
                self.accounts
                    .release_login(&email, time_us::now())
                    .await
                    .map_err(Refusal::internal)?;
                fail(LoginFailure::Busy).await?;
                return Err(Refusal {
                    retry_after: Some(Duration::from_secs(1)),
                    ..Refusal::new(ErrorCode::Busy, Busy.to_string())
                });
            }
        };
        let Some(mut tech) = account.filter(|_| right) else {
            let until = policy
                .lockout()
                .map_or(i64::MAX, |d| now.saturating_add(d.as_micros() as i64));
            let locked_now = self
                .accounts
                .login_failed(&email, policy.lockout_threshold, until, time_us::now())
                .await
                .map_err(Refusal::internal)?;
            fail(if known {
                LoginFailure::BadPassword
            } else {
                LoginFailure::UnknownAccount
            })
            .await?;
            if let (Some(failures), true) = (locked_now, known) {
                self.audit(
                    Actor::system("gateway"),
                    EventKind::AccountLocked(AccountLocked {
                        email: email.clone(),
                        ip: Some(ip),
                        failed_attempts: failures,
                        until_us: (until != i64::MAX).then_some(until),
                    }),
                )
                .await
                .map_err(Refusal::internal)?;
                tracing::warn!("{email} locked after {failures} failed logins (last from {ip})");
            }
            return Err(bad_credentials());
        };
        // The right password forgives the failures, unless checks under way
        // meanwhile locked the account: the lock wins.
        let still_locked = self
            .accounts
            .login_succeeded(&email, time_us::now())
            .await
            .map_err(Refusal::internal)?;
        if still_locked {
            fail(LoginFailure::AccountLocked).await?;
            return Err(locked());
        }
        self.throttle.release(address);
        tech.failed_logins = 0;

        // Only someone who knows the password learns that the account is disabled.
        if tech.disabled {
            fail(LoginFailure::AccountDisabled).await?;
            return Err(Refusal::new(
                ErrorCode::AccountDisabled,
                "the account is disabled",
            ));
        }

        let group = self
            .accounts
            .group(&tech.group)
            .await
            .map_err(Refusal::internal)?
            .ok_or_else(|| {
                Refusal::internal(format!("group {:?} of {email} is missing", tech.group))
            })?;
        if !ip_allowed(&group, ip) {
            fail(LoginFailure::IpNotAllowed).await?;
            return Err(Refusal::new(
                ErrorCode::IpNotAllowed,
                format!(
                    "logins for group {:?} are not allowed from {ip}",
                    group.name
                ),
            ));
        }

        if tech.must_change || policy.password_expired(tech.password_set_us, now) {
            let Some(new_password) = new_password else {
                fail(LoginFailure::PasswordExpired).await?;
                return Err(Refusal::new(
                    ErrorCode::PasswordExpired,
                    "the password has expired or must be changed: log in again with a new password",
                ));
            };
            self.change_password(ip, &email, password, &new_password)
                .await?;
        }

        self.audit(
            actor.clone(),
            EventKind::LoginSucceeded(LoginSucceeded {
                email: email.clone(),
                ip,
            }),
        )
        .await
        .map_err(Refusal::internal)?;
        Ok((tech, group))
    }

    async fn change_password(
        &self,
        ip: IpAddr,
        email: &str,
        old: &str,
        new: &str,
    ) -> Result<(), Refusal> {
        if old == new {
            return Err(Refusal::new(
                ErrorCode::PasswordRejected,
                "the new password must differ from the old one",
            ));
        }
        self.policy
            .check_password(email, new)
            .map_err(|e| Refusal::new(ErrorCode::PasswordRejected, e.to_string()))?;
        let hash = self.hasher.hash(new).await.map_err(|e| match e {
            HashFailed::Busy(busy) => Refusal::new(ErrorCode::Busy, busy.to_string()),
            other => Refusal::internal(other),
        })?;
        self.accounts
            .set_password(email, &hash, false)
            .await
            .map_err(Refusal::internal)?;
        self.audit(
            Actor::technician(email),
            EventKind::PasswordChanged(PasswordChanged {
                email: email.to_owned(),
                ip,
            }),
        )
        .await
        .map_err(Refusal::internal)
    }
}

/// Whether `ip` may act for `group`: its allow-list is empty or has a
/// network (CIDR) or address containing it. Entries are validated when an
/// administrator sets them; one that does not parse matches nothing.
pub fn ip_allowed(group: &Group, ip: IpAddr) -> bool {
    let ip = ip.to_canonical();
    group.ip_allow.is_empty()
        || group
            .ip_allow
            .iter()
            .any(|entry| match entry.parse::<ipnet::IpNet>() {
                Ok(net) => net.contains(&ip),
                Err(_) => entry.parse::<IpAddr>().is_ok_and(|a| a == ip),
            })
}
