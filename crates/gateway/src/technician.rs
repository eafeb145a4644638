//! A technician's control link: login (password, lockout, throttling,
//! allow-list, expiry), then session creation, the queue and pickups until
//! logout, inactivity or shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_db::accounts::{Group, Technician};
use audit_db::event::{
    AccountLocked, AccountUnlocked, LoginFailed, LoginFailure, LoginSucceeded, Logout,
    LogoutReason, PasswordChanged, PickupRefusal, SessionCreated, SessionPickedUp,
    SessionPickupRefused, UnlockCause,
};
use audit_db::{time_us, Actor, EventKind};
use uuid::Uuid;

use super::events::{self, Reported, Reporter};
use super::registry::Pickup;
use super::{refuse, say, ServerLink, Shared};
use crate::auth;
use crate::hasher::{Busy, HashFailed};
use protocol::identity::{Role, SessionIdentity};
use protocol::wire::{self, ErrorCode, Message};

/// A refusal: what the client is told.
struct Refusal {
    code: ErrorCode,
    message: String,
    retry_after: Option<Duration>,
}

impl Refusal {
    fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            retry_after: None,
        }
    }

    fn internal(e: impl std::fmt::Display) -> Self {
        tracing::error!("login failed inside the gateway: {e}");
        Self::new(
            ErrorCode::Internal,
            "the gateway could not complete the login",
        )
    }
}

/// Serves a control link whose first request was `Login`.
pub(super) async fn run(
    shared: &Arc<Shared>,
    mut link: ServerLink,
    ip: IpAddr,
    email: String,
    password: String,
    new_password: Option<String>,
) {
    let (tech, group) = match login(shared, ip, &email, &password, new_password).await {
        Ok(t) => t,
        Err(r) => {
            tracing::info!(
                "login of {} from {ip} refused: {:?}",
                wire::printable(&email, auth::MAX_EMAIL),
                r.code
            );
            say(
                &mut link,
                Message::Error {
                    code: r.code,
                    message: r.message,
                    retry_after_s: r.retry_after.map(|d| d.as_secs().max(1)),
                },
            )
            .await;
            return;
        }
    };
    let policy = &shared.policy;
    let ok = Message::LoginOk {
        email: tech.email.clone(),
        group: group.name.clone(),
        role: tech.role.as_str().to_owned(),
        permissions: group.permissions.clone(),
        idle_timeout_s: policy.idle_timeout_s,
        password_expires_us: policy.password_expires_us(tech.password_set_us),
        force_recording: group.force_recording,
    };
    if link.send(&ok).await.is_err() {
        return;
    }
    tracing::info!("{} logged in from {ip}", tech.email);
    let reason = control_loop(shared, &mut link, ip, &tech, &group).await;
    let actor = Actor::technician(&tech.email);
    shared
        .audit_or_log(
            actor,
            None,
            EventKind::Logout(Logout {
                email: tech.email.clone(),
                ip,
                reason,
            }),
        )
        .await;
}

async fn control_loop(
    shared: &Arc<Shared>,
    link: &mut ServerLink,
    ip: IpAddr,
    tech: &Technician,
    group: &Group,
) -> LogoutReason {
    let idle = shared.policy.idle_timeout();
    let mut last_active = tokio::time::Instant::now();
    loop {
        let message = tokio::select! {
            m = link.recv() => m,
            _ = tokio::time::sleep_until(last_active + idle) => {
                // A session being relayed is activity: the technician is working in it.
                if shared.registry().has_live(&tech.email) {
                    last_active = tokio::time::Instant::now();
                    continue;
                }
                tracing::info!("{} logged off after {idle:?} idle", tech.email);
                say(link, wire::error(ErrorCode::IdleTimeout, format!("logged off after {} s without activity", idle.as_secs()))).await;
                return LogoutReason::Idle;
            }
            _ = shared.stopping.cancelled() => {
                say(link, wire::error(ErrorCode::ShuttingDown, "the gateway is shutting down")).await;
                return LogoutReason::Shutdown;
            }
        };
        last_active = tokio::time::Instant::now();
        let message = match message {
            Ok(Some(m)) => m,
            Ok(None) => return LogoutReason::Client,
            Err(e) => {
                super::wire_failure(link, ip, &e).await;
                return LogoutReason::Client;
            }
        };
        let message = match Reported::from_message(message) {
            Ok(reported) => {
                let reporter = Reporter::Console {
                    email: tech.email.clone(),
                    store_chat: group.store_chat,
                };
                let answer = events::record(shared, &reporter, ip, None, reported).await;
                if link.send(&answer).await.is_err() {
                    return LogoutReason::Client;
                }
                continue;
            }
            Err(other) => *other,
        };
        let answer = match message {
            Message::CreateSession {} => create(shared, tech, group).await,
            Message::ListQueue {} => Ok(Message::Queue {
                waiting: shared.registry().queue(&tech.email),
            }),
            Message::PickUp { guid, csr } => pick_up(shared, tech, group, guid, &csr).await,
            Message::Logout {} => {
                let _ = link.shutdown().await;
                return LogoutReason::Client;
            }
            other => {
                let why = format!(
                    "{} is not allowed on a technician link",
                    other.kind().name()
                );
                refuse(link, ip, ErrorCode::UnexpectedMessage, &why).await;
                return LogoutReason::Client;
            }
        };
        let answer = answer.unwrap_or_else(|r| wire::error(r.code, r.message));
        if link.send(&answer).await.is_err() {
            return LogoutReason::Client;
        }
    }
}

async fn create(shared: &Shared, tech: &Technician, group: &Group) -> Result<Message, Refusal> {
    let ttl = shared.policy.pin_ttl();
    let (guid, pin) = shared
        .registry()
        .create(&tech.email, group.clone(), Instant::now() + ttl)
        .map_err(Refusal::internal)?;
    let audited = shared
        .audit(
            Actor::technician(&tech.email),
            Some(guid),
            EventKind::SessionCreated(SessionCreated {
                technician: tech.email.clone(),
                pin_issued: true,
                gateway: Some(shared.config.name.clone()),
                group: Some(group.name.clone()),
            }),
        )
        .await;
    if let Err(e) = audited {
        // Nothing unaudited may start: the session is withdrawn.
        shared.registry().remove(guid);
        return Err(Refusal::internal(e));
    }
    Ok(Message::SessionCreated {
        guid,
        pin,
        expires_us: time_us::now() + ttl.as_micros() as i64,
    })
}

async fn pick_up(
    shared: &Shared,
    tech: &Technician,
    group: &Group,
    guid: Uuid,
    console_csr: &str,
) -> Result<Message, Refusal> {
    let unknown = || {
        Refusal::new(
            ErrorCode::UnknownSession,
            format!("no session {guid} is waiting in your queue"),
        )
    };
    let refused = |reason| {
        shared.audit_or_log(
            Actor::technician(&tech.email),
            None,
            EventKind::SessionPickupRefused(SessionPickupRefused {
                technician: tech.email.clone(),
                reason,
            }),
        )
    };
    if !shared.registry().is_waiting_for(&tech.email, guid) {
        refused(PickupRefusal::NotWaiting).await;
        return Err(unknown());
    }
    // The console's certificate first: a bad CSR is refused while the
    // session still waits, so the end user is not dropped for it.
    let ttl = shared.config.session_cert_ttl;
    let console_id = SessionIdentity {
        guid,
        role: Role::Console,
        grant: group.permissions.clone(),
        single_prompt: group.single_prompt,
        store_chat: group.store_chat,
    };
    let console_cert = match shared.ca.issue(console_csr, &console_id, ttl) {
        Ok(cert) => cert,
        Err(e) => {
            refused(PickupRefusal::MalformedCsr).await;
            return Err(Refusal::new(ErrorCode::Malformed, e.to_string()));
        }
    };
    let Some(picking) = shared.registry().pick_up(&tech.email, guid) else {
        refused(PickupRefusal::NotWaiting).await;
        return Err(unknown());
    };
    let applet_id = SessionIdentity {
        guid,
        role: Role::Applet,
        grant: Vec::new(),
        single_prompt: false,
        store_chat: false,
    };
    // The applet's CSR was checked when it joined. Should signing fail
    // anyway, dropping `picking` tells the applet's task, which ends the session.
    let applet_cert = shared
        .ca
        .issue(&picking.applet_csr, &applet_id, ttl)
        .map_err(|e| Refusal::new(ErrorCode::Internal, format!("the applet's {e}")))?;
    shared
        .audit(
            Actor::technician(&tech.email),
            Some(guid),
            EventKind::SessionPickedUp(SessionPickedUp {
                technician: tech.email.clone(),
            }),
        )
        .await
        .map_err(Refusal::internal)?;
    picking
        .notify
        .send(Pickup {
            certificate: applet_cert,
            console: picking.console,
        })
        .map_err(|_| unknown())?;
    Ok(Message::PickedUp {
        guid,
        ticket: picking.ticket,
        certificate: console_cert,
        session_ca: shared.ca.certificate_pem().to_owned(),
        grant: group.permissions.clone(),
    })
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
async fn login(
    shared: &Shared,
    ip: IpAddr,
    claimed: &str,
    password: &str,
    new_password: Option<String>,
) -> Result<(Technician, Group), Refusal> {
    let policy = &shared.policy;
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
            shared
                .audit(
                    actor,
                    None,
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

    let address = match shared.login_throttle.reserve(ip, Instant::now()) {
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

    let account = shared
        .accounts
        .technician(&email)
        .await
        .map_err(Refusal::internal)?;
    let known = account.is_some();
    let now = time_us::now();
    let lifted = shared
        .accounts
        .lift_expired_lock(&email, now)
        .await
        .map_err(Refusal::internal)?;
    if lifted && known {
        shared
            .audit(
                Actor::system("gateway"),
                None,
                EventKind::AccountUnlocked(AccountUnlocked {
                    email: email.clone(),
                    by: UnlockCause::Timeout,
                }),
            )
            .await
            .map_err(Refusal::internal)?;
    }
    let reserved = shared
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
        .map_or(shared.dummy_hash.as_str(), |t| t.password_hash.as_str());
    let right = match shared.hasher.verify(hash, password).await {
        Ok(right) => right && known,
        Err(Busy) => {
            // Not checked: the email's unit is given back (the address's is not).
            shared
                .accounts
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
        let locked_now = shared
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
            shared
                .audit(
                    Actor::system("gateway"),
                    None,
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
    let still_locked = shared
        .accounts
        .login_succeeded(&email, time_us::now())
        .await
        .map_err(Refusal::internal)?;
    if still_locked {
        fail(LoginFailure::AccountLocked).await?;
        return Err(locked());
    }
    shared.login_throttle.release(address);
    tech.failed_logins = 0;

    // Only someone who knows the password learns that the account is disabled.
    if tech.disabled {
        fail(LoginFailure::AccountDisabled).await?;
        return Err(Refusal::new(
            ErrorCode::AccountDisabled,
            "the account is disabled",
        ));
    }

    let group = shared
        .accounts
        .group(&tech.group)
        .await
        .map_err(Refusal::internal)?
        .ok_or_else(|| {
            Refusal::internal(format!("group {:?} of {email} is missing", tech.group))
        })?;
    if !super::ip_allowed(&group, ip) {
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
        change_password(shared, ip, &email, password, &new_password).await?;
    }

    shared
        .audit(
            actor.clone(),
            None,
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
    shared: &Shared,
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
    shared
        .policy
        .check_password(email, new)
        .map_err(|e| Refusal::new(ErrorCode::PasswordRejected, e.to_string()))?;
    let hash = shared.hasher.hash(new).await.map_err(|e| match e {
        HashFailed::Busy(busy) => Refusal::new(ErrorCode::Busy, busy.to_string()),
        other => Refusal::internal(other),
    })?;
    shared
        .accounts
        .set_password(email, &hash, false)
        .await
        .map_err(Refusal::internal)?;
    shared
        .audit(
            Actor::technician(email),
            None,
            EventKind::PasswordChanged(PasswordChanged {
                email: email.to_owned(),
                ip,
            }),
        )
        .await
        .map_err(Refusal::internal)
}
