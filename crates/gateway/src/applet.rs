//! An applet's link: join by PIN or GUID, wait in the technician's queue,
//! receive the session certificate at pickup, then carry the relay.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_db::event::{
    Alarm, EndReason, JoinMethod, JoinRefusal, SecurityAlarm, SessionJoinRefused, SessionJoined,
    SessionPinWithdrawn,
};
use audit_db::{time_us, Actor, EventKind};

use super::{end_unpaired, refuse, registry, relay, say, wire_failure, ServerLink, Shared};
use protocol::wire::{self, ErrorCode, Message};

/// Serves a link whose first request was `Join`.
pub(super) async fn run(
    shared: &Arc<Shared>,
    mut link: ServerLink,
    ip: IpAddr,
    code: String,
    csr: String,
) {
    let via = if uuid::Uuid::parse_str(&code).is_ok() {
        JoinMethod::Guid
    } else {
        JoinMethod::Pin
    };
    // Counted before the PIN is looked at, so guesses arriving at once
    // cannot all be tried; only a join that succeeds gives them back.
    let address = match shared.pin_throttle.reserve(ip, Instant::now()) {
        Ok(reserved) => reserved,
        Err(wait) => {
            let why = format!(
                "too many wrong PINs from {ip}; retry in {} s",
                wait.as_secs().max(1)
            );
            return throttled(shared, &mut link, ip, via, wait, why).await;
        }
    };
    let gateway_wide = match via {
        JoinMethod::Guid => None,
        JoinMethod::Pin => match shared.pin_gateway.reserve((), Instant::now()) {
            Ok(reserved) => Some(reserved),
            Err(wait) => {
                shared.pin_throttle.release(address);
                alarm(shared).await;
                let why = format!(
                    "too many wrong PINs at this gateway; PIN joins resume in {} s (a session link still works)",
                    wait.as_secs().max(1)
                );
                return throttled(shared, &mut link, ip, via, wait, why).await;
            }
        },
    };
    let give_back = || {
        shared.pin_throttle.release(address);
        if let Some(reserved) = gateway_wide {
            shared.pin_gateway.release(reserved);
        }
    };
    // Checked before the PIN is spent: a broken applet does not burn its PIN.
    if let Err(e) = crate::session_ca::SessionCa::check_csr(&csr) {
        give_back();
        audit_refusal(shared, ip, via, JoinRefusal::Malformed).await;
        refuse(&mut link, ip, ErrorCode::Malformed, &e.to_string()).await;
        return;
    }
    let joined = shared
        .registry()
        .join(&code, csr, ip, time_us::now(), Instant::now());
    let joined = match joined {
        Ok(j) => {
            give_back();
            j
        }
        Err(refused) => {
            audit_refusal(shared, ip, refused.via, refused.why).await;
            for guid in refused.withdrawn {
                shared
                    .audit_or_log(
                        Actor::system("gateway"),
                        Some(guid),
                        EventKind::SessionPinWithdrawn(SessionPinWithdrawn {
                            wrong_pins: u64::from(shared.policy.pin_guess_budget),
                        }),
                    )
                    .await;
                tracing::warn!(
                    "the PIN of session {guid} was withdrawn: its guess budget is spent"
                );
            }
            if let Some(dropped) = refused.dropped {
                end_unpaired(shared, dropped, EndReason::Expired).await;
            }
            let (code, message) = match refused.why {
                JoinRefusal::Expired => (ErrorCode::Expired, "this PIN or session has expired"),
                _ => (
                    ErrorCode::UnknownSession,
                    "no session is waiting for this PIN or GUID",
                ),
            };
            say(&mut link, wire::error(code, message)).await;
            return;
        }
    };
    let guid = joined.guid;
    let audited = shared
        .audit(
            Actor::end_user(),
            Some(guid),
            EventKind::SessionJoined(SessionJoined { via, ip: Some(ip) }),
        )
        .await;
    let sent = match audited {
        Ok(()) => link
            .send(&Message::Joined {
                guid,
                technician: joined.technician.clone(),
            })
            .await
            .is_ok(),
        Err(e) => {
            tracing::error!("could not audit a join: {e}");
            say(
                &mut link,
                wire::error(ErrorCode::Internal, "the gateway could not record the join"),
            )
            .await;
            false
        }
    };
    if !sent {
        end(shared, guid, &joined.technician, EndReason::AppletLeft).await;
        return;
    }

    // Waiting in the queue: the applet may only leave; anything it sends is a violation.
    let pickup = tokio::select! {
        p = joined.pickup => p,
        m = link.next_frame() => {
            match m {
                Ok(None) => {}
                Ok(Some(f)) => {
                    let kind = wire::Kind::from_byte(f.kind()).map_or("an unknown message", |k| k.name());
                    refuse(&mut link, ip, ErrorCode::UnexpectedMessage, &format!("{kind} before the session was picked up")).await;
                }
                Err(e) => wire_failure(&mut link, ip, &e).await,
            }
            end(shared, guid, &joined.technician, EndReason::AppletLeft).await;
            return;
        }
        _ = shared.stopping.cancelled() => {
            say(&mut link, wire::error(ErrorCode::ShuttingDown, "the gateway is shutting down")).await;
            end(shared, guid, &joined.technician, EndReason::GatewayShutdown).await;
            return;
        }
    };
    let Ok(pickup) = pickup else {
        // The pickup failed half way (certificate issue): the session cannot go on.
        say(
            &mut link,
            wire::error(ErrorCode::Internal, "the session could not be set up"),
        )
        .await;
        end(shared, guid, &joined.technician, EndReason::PickupFailed).await;
        return;
    };
    let paired = Message::Paired {
        certificate: pickup.certificate,
        session_ca: shared.ca.certificate_pem().to_owned(),
    };
    if link.send(&paired).await.is_err() {
        end(shared, guid, &joined.technician, EndReason::AppletLeft).await;
        return;
    }
    let console = tokio::select! {
        c = tokio::time::timeout(shared.config.attach_timeout, pickup.console) => c,
        // No new connection is accepted once shutdown begins: the console cannot attach.
        _ = shared.stopping.cancelled() => {
            say(&mut link, Message::End { reason: EndReason::GatewayShutdown.to_string() }).await;
            end(shared, guid, &joined.technician, EndReason::GatewayShutdown).await;
            return;
        }
    };
    let Ok(Ok(console)) = console else {
        say(
            &mut link,
            Message::End {
                reason: EndReason::ConsoleDidNotAttach.to_string(),
            },
        )
        .await;
        end(
            shared,
            guid,
            &joined.technician,
            EndReason::ConsoleDidNotAttach,
        )
        .await;
        return;
    };
    relay::run(shared, guid, &joined.technician, (link, ip), console).await;
}

/// Ends a session that never reached the relay.
async fn end(shared: &Shared, guid: uuid::Uuid, technician: &str, reason: EndReason) {
    shared.registry().remove(guid);
    end_unpaired(
        shared,
        registry::Dropped {
            guid,
            technician: technician.to_owned(),
        },
        reason,
    )
    .await;
}

/// Refuses a join for too many wrong PINs, and audits it.
async fn throttled(
    shared: &Shared,
    link: &mut ServerLink,
    ip: IpAddr,
    via: JoinMethod,
    wait: Duration,
    why: String,
) {
    audit_refusal(shared, ip, via, JoinRefusal::Throttled).await;
    say(
        link,
        Message::Error {
            code: ErrorCode::Throttled,
            message: why,
            retry_after_s: Some(wait.as_secs().max(1)),
        },
    )
    .await;
}

/// Audits the PIN-guessing alarm, once per window while it lasts.
async fn alarm(shared: &Shared) {
    let window = Duration::from_secs(shared.policy.pin_window_s);
    let raise = {
        let mut last = shared.pin_alarm.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let due = last.is_none_or(|at| now.duration_since(at) >= window);
        if due {
            *last = Some(now);
        }
        due
    };
    if raise {
        tracing::warn!(
            "PIN guessing: {} wrong PINs within {} s from all addresses; PIN joins paused",
            shared.policy.pin_gateway_limit,
            window.as_secs()
        );
        shared
            .audit_or_log(
                Actor::system("gateway"),
                None,
                EventKind::SecurityAlarm(SecurityAlarm {
                    alarm: Alarm::PinGuessing,
                    count: u64::from(shared.policy.pin_gateway_limit),
                    window_s: window.as_secs(),
                }),
            )
            .await;
    }
}

async fn audit_refusal(shared: &Shared, ip: IpAddr, via: JoinMethod, reason: JoinRefusal) {
    shared
        .audit_or_log(
            Actor::end_user(),
            None,
            EventKind::SessionJoinRefused(SessionJoinRefused { ip, via, reason }),
        )
        .await;
}
