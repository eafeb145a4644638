//! A technician's control link: login (password, lockout, throttling,
//! allow-list, expiry), then session creation, the queue and pickups until
//! logout, inactivity or shutdown.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use audit_db::accounts::{Group, Technician};
use audit_db::event::{
    Logout, LogoutReason, PickupRefusal, SessionCreated, SessionPickedUp, SessionPickupRefused,
};
use audit_db::{time_us, Actor, EventKind};
use uuid::Uuid;

use super::events::{self, Reported, Reporter};
use super::registry::Pickup;
use super::{refuse, say, ServerLink, Shared};
use crate::auth;
use crate::login::Refusal;
use protocol::identity::{Role, SessionIdentity};
use protocol::wire::{self, ErrorCode, Message};

/// Serves a control link whose first request was `Login`.
pub(super) async fn run(
    shared: &Arc<Shared>,
    mut link: ServerLink,
    ip: IpAddr,
    email: String,
    password: String,
    new_password: Option<String>,
) {
    let (tech, group) = match shared.gate.login(ip, &email, &password, new_password).await {
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
