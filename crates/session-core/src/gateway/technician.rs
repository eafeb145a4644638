//! A technician's control link: login (password, lockout, throttling,
//! allow-list, expiry), then session creation, the queue and pickups until
//! logout, inactivity or shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_db::accounts::{Group, Technician};
use audit_db::event::{
    AccountLocked, AccountUnlocked, LoginFailed, LoginFailure, LoginSucceeded, Logout,
    LogoutReason, PasswordChanged, SessionCreated, SessionPickedUp, UnlockCause,
};
use audit_db::{time_us, Actor, EventKind};
use uuid::Uuid;

use super::events::{self, Reported, Reporter};
use super::registry::Pickup;
use super::{refuse, say, ServerLink, Shared};
use crate::auth;
use crate::session_ca::{Role, SessionIdentity};
use crate::wire::{self, ErrorCode, Message};

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
            tracing::info!("login of {email:?} from {ip} refused: {:?}", r.code);
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
            Err(other) => other,
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
    if !shared.registry().is_waiting_for(&tech.email, guid) {
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
    };
    let console_cert = shared
        .ca
        .issue(console_csr, &console_id, ttl)
        .map_err(|e| Refusal::new(ErrorCode::Malformed, e.to_string()))?;
    let picking = shared
        .registry()
        .pick_up(&tech.email, guid)
        .ok_or_else(unknown)?;
    let applet_id = SessionIdentity {
        guid,
        role: Role::Applet,
        grant: Vec::new(),
        single_prompt: false,
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
async fn login(
    shared: &Shared,
    ip: IpAddr,
    email: &str,
    password: &str,
    new_password: Option<String>,
) -> Result<(Technician, Group), Refusal> {
    let email = email.trim().to_lowercase();
    let actor = Actor::technician(&email);
    let fail = |reason: LoginFailure| {
        let actor = actor.clone();
        let email = email.clone();
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
    let policy = &shared.policy;

    if let Some(wait) = shared.login_throttle.retry_after(ip, Instant::now()) {
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
    let bad_credentials = || Refusal::new(ErrorCode::BadCredentials, "wrong email or password");

    let account = shared
        .accounts
        .technician(&email)
        .await
        .map_err(Refusal::internal)?;
    let Some(mut tech) = account else {
        // Same work as a real check, so timing does not reveal which accounts exist.
        verify(shared, &shared.dummy_hash, password).await?;
        shared.login_throttle.fail(ip, Instant::now());
        fail(LoginFailure::UnknownAccount).await?;
        return Err(bad_credentials());
    };

    let now = time_us::now();
    if let Some(until) = tech.locked_until_us {
        if now < until {
            // The password is not even checked: the answer reveals nothing about it.
            shared.login_throttle.fail(ip, Instant::now());
            fail(LoginFailure::AccountLocked).await?;
            return Err(Refusal::new(
                ErrorCode::AccountLocked,
                "the account is locked after too many failed logins; an administrator can unlock it",
            ));
        }
        shared
            .accounts
            .clear_failures(&email)
            .await
            .map_err(Refusal::internal)?;
        tech.failed_logins = 0;
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

    if tech.disabled {
        shared.login_throttle.fail(ip, Instant::now());
        fail(LoginFailure::AccountDisabled).await?;
        return Err(Refusal::new(
            ErrorCode::AccountDisabled,
            "the account is disabled",
        ));
    }

    if !verify(shared, &tech.password_hash, password).await? {
        shared.login_throttle.fail(ip, Instant::now());
        let failures = shared
            .accounts
            .count_failure(&email)
            .await
            .map_err(Refusal::internal)?;
        fail(LoginFailure::BadPassword).await?;
        if failures >= policy.lockout_threshold {
            let until = policy
                .lockout()
                .map_or(i64::MAX, |d| now.saturating_add(d.as_micros() as i64));
            shared
                .accounts
                .lock(&email, until)
                .await
                .map_err(Refusal::internal)?;
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

    if tech.failed_logins > 0 {
        shared
            .accounts
            .clear_failures(&email)
            .await
            .map_err(Refusal::internal)?;
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
    let new = new.to_owned();
    let hash = {
        let _permit = shared.hashing.acquire().await.map_err(Refusal::internal)?;
        tokio::task::spawn_blocking(move || auth::hash_password(&new))
            .await
            .map_err(Refusal::internal)?
            .map_err(Refusal::internal)?
    };
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

/// Verifies a password on the blocking pool, a bounded number at a time.
async fn verify(shared: &Shared, hash: &str, password: &str) -> Result<bool, Refusal> {
    let _permit = shared.hashing.acquire().await.map_err(Refusal::internal)?;
    let (hash, password) = (hash.to_owned(), password.to_owned());
    tokio::task::spawn_blocking(move || auth::verify_password(&hash, &password))
        .await
        .map_err(Refusal::internal)
}
