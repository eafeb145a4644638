//! The relay: a console's session link attaches with its pickup ticket, and
//! the gateway forwards `Data` frames between the two links unread, counting
//! bytes. Either side leaving, an `End`, a protocol violation or shutdown
//! ends the session for both, and the end is audited.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_db::event::{AttachRefusal, EndReason, SessionAttachRefused, SessionEnded};
use audit_db::{Actor, EventKind};
use futures::StreamExt;
use tokio::io::{AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::sync::mpsc;
use tokio_util::codec::FramedRead;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use super::events::{self, Reported, Reporter};
use super::{refuse, say, ServerLink, ServerTls as Tls, Shared};
use protocol::wire::{Codec, ErrorCode, Frame, Kind, Message};

/// Serves a link whose first request was `Attach`: hands it to the
/// applet's task, which runs the relay.
pub(super) async fn attach(
    shared: &Arc<Shared>,
    mut link: ServerLink,
    ip: IpAddr,
    guid: Uuid,
    ticket: String,
) {
    let attached = shared.registry().attach(guid, &ticket);
    let refused = |reason| {
        shared.audit_or_log(
            Actor::system("gateway"),
            None,
            EventKind::SessionAttachRefused(SessionAttachRefused { guid, ip, reason }),
        )
    };
    let Some((handoff, end, group)) = attached else {
        refused(AttachRefusal::UnknownTicket).await;
        refuse(
            &mut link,
            ip,
            ErrorCode::UnknownSession,
            &format!("no picked-up session {guid} with this ticket"),
        )
        .await;
        return;
    };
    if !crate::login::ip_allowed(&group, ip) {
        shared.registry().remove(guid);
        refused(AttachRefusal::IpNotAllowed).await;
        refuse(
            &mut link,
            ip,
            ErrorCode::IpNotAllowed,
            &format!("group {:?} may not attach from {ip}", group.name),
        )
        .await;
        return;
    }
    if link.send(&Message::Attached { guid }).await.is_err() {
        return;
    }
    // If the applet's task is gone, the link is dropped and the console sees it close.
    let _ = handoff.send(super::Attaching {
        link,
        ip,
        end,
        group,
    });
}

/// How one direction of the relay stopped.
#[derive(Debug)]
enum Stop {
    /// The sending side closed its link.
    Closed,
    /// The sending side sent `End`.
    Ended(String),
    /// The sending side broke the protocol.
    Violation(ErrorCode, String),
    /// The receiving side could not be written to.
    PeerGone,
    /// The other direction stopped first (or the gateway ended the session).
    Cancelled,
}

/// One side of the relay as one direction sees it: where its frames come
/// from, who it is, and where the gateway's answers to it (event acks) go.
struct Side<'a> {
    read: &'a mut FramedRead<ReadHalf<Tls>, Codec>,
    reporter: Reporter,
    ip: IpAddr,
    answers: mpsc::Sender<Frame>,
}

/// The other side of one direction: where frames go, the gateway's own
/// answers for it, its byte count and (diagnostic) capture file.
struct Toward<'a> {
    write: &'a mut WriteHalf<Tls>,
    answers: &'a mut mpsc::Receiver<Frame>,
    bytes: &'a mut u64,
    capture: Option<tokio::fs::File>,
}

/// Answers for one side that may wait before its writer takes them.
const ANSWERS: usize = 64;

/// One direction: frames from `from` to `to`, plus the gateway's own answers
/// for `to`'s side (from `answers_to`). Returns why it stopped and whether
/// `to` was left between frames (safe to send `End` on).
async fn forward(
    shared: &Shared,
    guid: Uuid,
    from: Side<'_>,
    toward: Toward<'_>,
    end: &CancellationToken,
) -> (Stop, bool) {
    let Toward {
        write: to,
        answers: answers_to,
        bytes,
        mut capture,
    } = toward;
    loop {
        let frame = tokio::select! {
            biased;
            _ = end.cancelled() => return (Stop::Cancelled, true),
            Some(answer) = answers_to.recv() => {
                let written = tokio::select! {
                    w = write(to, &answer) => w,
                    _ = end.cancelled() => return (Stop::Cancelled, false),
                };
                if written.is_err() {
                    return (Stop::PeerGone, false);
                }
                continue;
            }
            f = from.read.next() => f,
        };
        let frame = match frame {
            None => return (Stop::Closed, true),
            Some(Err(e)) if e.is_disconnect() => return (Stop::Closed, true),
            Some(Err(e)) => return (Stop::Violation(e.code(), e.to_string()), true),
            Some(Ok(f)) => f,
        };
        match Kind::from_byte(frame.kind()) {
            Some(Kind::Data) => {
                let len = frame.body().len() as u64;
                let written = tokio::select! {
                    w = write(to, &frame) => w,
                    // The peer stopped reading and the session is over: give up mid-frame.
                    _ = end.cancelled() => return (Stop::Cancelled, false),
                };
                if written.is_err() {
                    return (Stop::PeerGone, false);
                }
                *bytes += len;
                if let Some(file) = &mut capture {
                    // A diagnostic: a failed write is logged, never stops the session.
                    if let Err(e) = file.write_all(frame.body()).await {
                        tracing::warn!("relay capture of session {guid} stopped: {e}");
                        capture = None;
                    }
                }
            }
            Some(Kind::Event) => {
                let reported = Message::decode(&frame)
                    .ok()
                    .and_then(|m| Reported::from_message(m).ok());
                let Some(reported) = reported else {
                    return (
                        Stop::Violation(ErrorCode::Malformed, "malformed Event".to_owned()),
                        true,
                    );
                };
                let answer =
                    events::record(shared, &from.reporter, from.ip, Some(guid), reported).await;
                if from.answers.send(answer.encode()).await.is_err() {
                    return (Stop::Cancelled, true);
                }
            }
            Some(Kind::End) => {
                let reason = match Message::decode(&frame) {
                    Ok(Message::End { reason }) => reason,
                    _ => String::from("ended"),
                };
                return (Stop::Ended(reason), true);
            }
            Some(other) => {
                return (
                    Stop::Violation(
                        ErrorCode::UnexpectedMessage,
                        format!("{} is not allowed on a session link", other.name()),
                    ),
                    true,
                )
            }
            None => {
                return (
                    Stop::Violation(
                        ErrorCode::UnknownType,
                        format!("unknown message type 0x{:02x}", frame.kind()),
                    ),
                    true,
                )
            }
        }
    }
}

async fn write(to: &mut WriteHalf<Tls>, frame: &Frame) -> std::io::Result<()> {
    to.write_all(frame.as_bytes()).await?;
    to.flush().await
}

/// Relays between the applet's and the console's links until the session
/// ends, then tells both why and audits the end.
pub(super) async fn run(
    shared: &Arc<Shared>,
    guid: Uuid,
    technician: &str,
    (mut applet, applet_ip): (ServerLink, IpAddr),
    console: super::Attaching,
) {
    let started = Instant::now();
    let super::Attaching {
        link: mut console,
        ip: console_ip,
        end,
        group,
    } = console;
    tracing::info!("session {guid} of {technician}: relaying");
    let (mut to_console, mut to_applet) = (0u64, 0u64);
    let (to_applet_tx, mut to_applet_rx) = mpsc::channel(ANSWERS);
    let (to_console_tx, mut to_console_rx) = mpsc::channel(ANSWERS);
    let ((from_applet, applet_clean), (from_console, console_clean)) = {
        let (a_read, a_write) = applet.split();
        let (c_read, c_write) = console.split();
        let applet_side = Side {
            read: a_read,
            reporter: Reporter::Applet {
                store_chat: group.store_chat,
            },
            ip: applet_ip,
            answers: to_applet_tx,
        };
        let console_side = Side {
            read: c_read,
            reporter: Reporter::Console {
                email: technician.to_owned(),
                store_chat: group.store_chat,
            },
            ip: console_ip,
            answers: to_console_tx,
        };
        tokio::join!(
            async {
                let toward = Toward {
                    write: c_write,
                    answers: &mut to_console_rx,
                    bytes: &mut to_console,
                    capture: capture(shared, guid, "to-console").await,
                };
                let r = forward(shared, guid, applet_side, toward, &end).await;
                settle(&r.0, &end).await;
                end.cancel();
                r
            },
            async {
                let toward = Toward {
                    write: a_write,
                    answers: &mut to_applet_rx,
                    bytes: &mut to_applet,
                    capture: capture(shared, guid, "to-applet").await,
                };
                let r = forward(shared, guid, console_side, toward, &end).await;
                settle(&r.0, &end).await;
                end.cancel();
                r
            },
        )
    };
    // `*_clean` says whether the writer *towards* that side stopped between frames.
    let (console_writable, applet_writable) = (applet_clean, console_clean);
    let reason = reason(&from_applet, &from_console, shared.stopping.is_cancelled());
    for (link, ip, side_stop, writable) in [
        (&mut applet, applet_ip, &from_applet, applet_writable),
        (&mut console, console_ip, &from_console, console_writable),
    ] {
        if let Stop::Violation(code, why) = side_stop {
            refuse(link, ip, *code, why).await;
        } else if writable {
            say(
                link,
                Message::End {
                    reason: reason.to_string(),
                },
            )
            .await;
        } else {
            let _ = link.shutdown().await;
        }
    }
    shared.registry().remove(guid);
    let duration = started.elapsed();
    tracing::info!(
        "session {guid} of {technician} ended ({reason}) after {duration:?}: {to_applet} bytes to the applet, {to_console} to the console"
    );
    shared
        .audit_or_log(
            Actor::system("gateway"),
            Some(guid),
            EventKind::SessionEnded(SessionEnded {
                reason,
                duration_ms: duration.as_millis() as u64,
                bytes_to_applet: to_applet,
                bytes_to_console: to_console,
            }),
        )
        .await;
}

/// The capture file of one direction, when capturing is configured.
async fn capture(shared: &Shared, guid: Uuid, direction: &str) -> Option<tokio::fs::File> {
    let dir = shared.config.relay_capture.as_ref()?;
    let path = dir.join(format!("{guid}.{direction}"));
    match tokio::fs::File::create(&path).await {
        Ok(f) => Some(f),
        Err(e) => {
            tracing::warn!("cannot capture the relay to {}: {e}", path.display());
            None
        }
    }
}

/// How long the other direction may still finish on its own after a side's
/// link closed without a word. Ending a session, a console closes its inner
/// session (which the applet answers by closing its link) and then sends
/// `End`: both are on their way at once, and the `End` is what says why.
const GRACE: Duration = Duration::from_millis(250);

/// After a direction stopped because its side closed, waits (at most
/// [`GRACE`]) for the other direction to stop by itself.
async fn settle(stop: &Stop, end: &CancellationToken) {
    if matches!(stop, Stop::Closed) {
        let _ = tokio::time::timeout(GRACE, end.cancelled()).await;
    }
}

/// What one side's stop says of the end, ranked: 0 it broke the protocol,
/// 1 it said why (`End`), 2 its link closed; `None` when it says nothing.
fn account(stop: &Stop, applet: bool) -> Option<(u8, EndReason)> {
    Some(match (stop, applet) {
        (Stop::Violation(code, _), true) => (0, EndReason::AppletProtocolError(code.name().into())),
        (Stop::Violation(code, _), false) => {
            (0, EndReason::ConsoleProtocolError(code.name().into()))
        }
        (Stop::Ended(why), true) => (1, EndReason::EndedByApplet(why.clone())),
        (Stop::Ended(why), false) => (1, EndReason::EndedByConsole(why.clone())),
        (Stop::Closed, true) => (2, EndReason::AppletLeft),
        (Stop::Closed, false) => (2, EndReason::ConsoleLeft),
        (Stop::PeerGone | Stop::Cancelled, _) => return None,
    })
}

/// The audited reason: the side whose stop says most (the applet's on a
/// tie), then which side could no longer be written to.
fn reason(from_applet: &Stop, from_console: &Stop, shutting_down: bool) -> EndReason {
    // `min_by_key` keeps the first of equals: the applet's.
    [account(from_applet, true), account(from_console, false)]
        .into_iter()
        .flatten()
        .min_by_key(|(rank, _)| *rank)
        .map(|(_, reason)| reason)
        .or_else(|| matches!(from_applet, Stop::PeerGone).then_some(EndReason::ConsoleLeft))
        .or_else(|| matches!(from_console, Stop::PeerGone).then_some(EndReason::AppletLeft))
        .unwrap_or(if shutting_down {
            EndReason::GatewayShutdown
        } else {
            EndReason::Ended
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_side_that_said_why_outranks_one_that_only_left() {
        // On a tie, the applet's account is taken.
        assert_eq!(
            reason(&Stop::Closed, &Stop::Closed, false).to_string(),
            "applet_left"
        );
        assert_eq!(
            reason(&Stop::Closed, &Stop::Ended("closed".into()), false).to_string(),
            "ended_by_console: closed"
        );
        assert_eq!(
            reason(&Stop::Ended("done".into()), &Stop::Closed, false).to_string(),
            "ended_by_applet: done"
        );
        assert_eq!(
            reason(
                &Stop::Ended("done".into()),
                &Stop::Violation(ErrorCode::Oversize, "x".into()),
                false
            )
            .to_string(),
            "console_protocol_error: Oversize"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_closed_side_waits_a_moment_for_the_other_to_say_why() {
        use tokio::time::Instant;
        // The other direction ends 20 ms later: waited for, no longer.
        let end = CancellationToken::new();
        let other = end.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(20)).await;
            other.cancel();
        });
        let started = Instant::now();
        settle(&Stop::Closed, &end).await;
        assert!(end.is_cancelled());
        assert_eq!(started.elapsed(), Duration::from_millis(20));
        // It never ends by itself: the grace, then the relay cancels it.
        let started = Instant::now();
        settle(&Stop::Closed, &CancellationToken::new()).await;
        assert_eq!(started.elapsed(), GRACE);
        // A side that said why does not wait.
        let started = Instant::now();
        settle(&Stop::Ended("done".into()), &CancellationToken::new()).await;
        assert_eq!(started.elapsed(), Duration::ZERO);
    }

    #[test]
    fn the_reason_names_the_side_that_stopped() {
        assert_eq!(
            reason(&Stop::Closed, &Stop::Cancelled, false).to_string(),
            "applet_left"
        );
        assert_eq!(
            reason(&Stop::Cancelled, &Stop::Ended("done".into()), false).to_string(),
            "ended_by_console: done"
        );
        assert_eq!(
            reason(&Stop::PeerGone, &Stop::Cancelled, false).to_string(),
            "console_left"
        );
        assert_eq!(
            reason(&Stop::Cancelled, &Stop::Cancelled, true).to_string(),
            "gateway_shutdown"
        );
        assert_eq!(
            reason(
                &Stop::Cancelled,
                &Stop::Violation(ErrorCode::Oversize, "x".into()),
                false
            )
            .to_string(),
            "console_protocol_error: Oversize"
        );
    }
}
