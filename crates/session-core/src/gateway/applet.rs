//! An applet's link: join by PIN or GUID, wait in the technician's queue,
//! receive the session certificate at pickup, then carry the relay.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use audit_db::event::{JoinMethod, JoinRefusal, SessionJoinRefused, SessionJoined};
use audit_db::{time_us, Actor, EventKind};

use super::{end_unpaired, refuse, registry, relay, say, wire_failure, ServerLink, Shared};
use crate::wire::{self, ErrorCode, Message};

/// Serves a link whose first request was `Join`.
pub(super) async fn run(
    shared: &Arc<Shared>,
    mut link: ServerLink,
    ip: IpAddr,
    code: String,
    csr: String,
) {
    if let Some(wait) = shared.pin_throttle.retry_after(ip, Instant::now()) {
        let via = if uuid::Uuid::parse_str(&code).is_ok() {
            JoinMethod::Guid
        } else {
            JoinMethod::Pin
        };
        audit_refusal(shared, ip, via, JoinRefusal::Throttled).await;
        say(
            &mut link,
            Message::Error {
                code: ErrorCode::Throttled,
                message: format!(
                    "too many wrong PINs from {ip}; retry in {} s",
                    wait.as_secs().max(1)
                ),
                retry_after_s: Some(wait.as_secs().max(1)),
            },
        )
        .await;
        return;
    }
    // Checked before the PIN is spent: a broken applet does not burn its PIN.
    if let Err(e) = crate::session_ca::SessionCa::check_csr(&csr) {
        refuse(&mut link, ip, ErrorCode::Malformed, &e.to_string()).await;
        return;
    }
    let joined = shared
        .registry()
        .join(&code, csr, ip, time_us::now(), Instant::now());
    let joined = match joined {
        Ok(j) => j,
        Err((via, why, dropped)) => {
            shared.pin_throttle.fail(ip, Instant::now());
            audit_refusal(shared, ip, via, why).await;
            if let Some(dropped) = dropped {
                end_unpaired(shared, dropped, "expired").await;
            }
            let (code, message) = match why {
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
    let via = joined.via;
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
        end(shared, guid, &joined.technician, "applet_left").await;
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
            end(shared, guid, &joined.technician, "applet_left").await;
            return;
        }
        _ = shared.stopping.cancelled() => {
            say(&mut link, wire::error(ErrorCode::ShuttingDown, "the gateway is shutting down")).await;
            end(shared, guid, &joined.technician, "gateway_shutdown").await;
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
        end(shared, guid, &joined.technician, "pickup_failed").await;
        return;
    };
    let paired = Message::Paired {
        certificate: pickup.certificate,
        session_ca: shared.ca.certificate_pem().to_owned(),
    };
    if link.send(&paired).await.is_err() {
        end(shared, guid, &joined.technician, "applet_left").await;
        return;
    }
    let console = tokio::select! {
        c = tokio::time::timeout(shared.config.attach_timeout, pickup.console) => c,
        // No new connection is accepted once shutdown begins: the console cannot attach.
        _ = shared.stopping.cancelled() => {
            say(&mut link, Message::End { reason: "gateway_shutdown".into() }).await;
            end(shared, guid, &joined.technician, "gateway_shutdown").await;
            return;
        }
    };
    let Ok(Ok(console)) = console else {
        say(
            &mut link,
            Message::End {
                reason: "console_did_not_attach".into(),
            },
        )
        .await;
        end(shared, guid, &joined.technician, "console_did_not_attach").await;
        return;
    };
    relay::run(shared, guid, &joined.technician, (link, ip), console).await;
}

/// Ends a session that never reached the relay.
async fn end(shared: &Shared, guid: uuid::Uuid, technician: &str, reason: &str) {
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

async fn audit_refusal(shared: &Shared, ip: IpAddr, via: JoinMethod, reason: JoinRefusal) {
    shared
        .audit_or_log(
            Actor::end_user(),
            None,
            EventKind::SessionJoinRefused(SessionJoinRefused { ip, via, reason }),
        )
        .await;
}
