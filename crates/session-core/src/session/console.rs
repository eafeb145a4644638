//! The console's engine: the technician's side of the inner session. Each
//! action waits for its answer from the applet; chat from the end user and
//! the session's end arrive as events. What the console witnesses is
//! reported to the audit log.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use recorder::input::InputEvent;
use recorder::vrec::Finished;

use audit_event::event::{ChatMessage, Denial, Direction, Party, PermissionRequested};
use audit_event::{EventKind, Permission};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite, ReadHalf};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::codec::FramedRead;
use uuid::Uuid;

use super::files::{Digests, Incoming};
use super::link::{self, report, transferred, Reporting, Sender, SessionError};
use super::proto::{Control, Inner};
use super::sysinfo::SystemInfo;
use super::tape::Tape;
use super::view::{Screen, Viewer};
use crate::client::SessionReporter;
use crate::spool::Spool;
use protocol::identity::SessionIdentity;
use protocol::wire::Codec;

/// What the console tells the technician without being asked.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsoleEvent {
    /// The end user wrote.
    Chat(String),
    /// Something went wrong that does not end the session.
    Warning(String),
    /// The end user's screen stream stopped, and why.
    ViewEnded(String),
    /// A key or mouse event could not be injected on the end user's display, and why.
    InputFailed(String),
    /// Remote control is over (asked for, or the session is ending), and audited.
    ControlEnded,
    /// The session is over.
    Ended(String),
}

/// The applet's answer to a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The end user consented.
    Granted,
    /// Refused, and why.
    Denied(Denial),
}

/// How a file transfer ended, as both ends saw it.
#[derive(Debug, Clone, PartialEq)]
pub enum Transfer {
    /// Both ends computed the same digests.
    Verified {
        /// The file's name.
        name: String,
        /// Where it was saved (the applet's file name, or our path).
        saved_as: String,
        /// Size, MD5 and SHA-256, equal on both ends.
        digests: Digests,
    },
    /// The applet refused or could not take part.
    Refused(String),
    /// The bytes did not arrive intact (both views are audited).
    Failed(String),
}

type Waiters = Arc<Mutex<HashMap<Uuid, mpsc::UnboundedSender<Control>>>>;

/// Sends the technician's mouse and keyboard input to the applet.
pub struct InputSender<S>(Sender<S>);

impl<S> Clone for InputSender<S> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<S: AsyncRead + AsyncWrite> InputSender<S> {
    /// Sends `events`, in order.
    pub async fn send(&self, events: Vec<InputEvent>) -> Result<(), SessionError> {
        Ok(self.0.control(&Control::Input { events }).await?)
    }
}

/// The technician's side of a live inner session.
pub struct Console<S> {
    send: Sender<S>,
    reporting: Reporting,
    waiters: Waiters,
    /// `None` once `end` has waited for it.
    reader: Option<JoinHandle<()>>,
    screen: watch::Receiver<Screen>,
    tape: Arc<Mutex<Tape>>,
    /// The technician's group records every session.
    recording_required: bool,
    /// What is on (view, control, recording), as the applet last said.
    status: Arc<watch::Sender<Status>>,
    /// Set once the technician ends the session: the applet's side closing
    /// after that is the end asked for, not a failure.
    closing: Arc<AtomicBool>,
}

/// The read loop's side of the screen: the stream's decoder, what is on,
/// and whether the technician is ending the session.
struct Screens {
    viewer: Viewer,
    status: Arc<watch::Sender<Status>>,
    closing: Arc<AtomicBool>,
}

/// The session as the console knows it, kept up to date as it changes (the
/// technician's page shows it).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Status {
    /// The end user's screen stream is on (it must end, audited, before the session closes).
    pub viewing: bool,
    /// The technician has the end user's mouse and keyboard (likewise).
    pub controlling: bool,
    /// The recording, while one is on or waiting for its first screen.
    pub recording: Option<RecordingStatus>,
    /// The permissions the end user granted in this session, in the order first granted.
    pub granted: Vec<Permission>,
    /// The end user's computer, as its applet names it.
    pub host: Option<String>,
}

/// A recording in progress.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct RecordingStatus {
    /// The file it writes.
    pub path: String,
    /// When it began (µs since the epoch); `None` until the first screen arrives.
    pub started_us: Option<i64>,
}

impl<S> Drop for Console<S> {
    fn drop(&mut self) {
        if let Some(reader) = &self.reader {
            reader.abort();
        }
    }
}

impl<S> std::fmt::Debug for Console<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console").finish_non_exhaustive()
    }
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Console<S> {
    /// Starts the console of the session its certificate binds (`identity`)
    /// over `stream`; files the technician asks for are saved in
    /// `download_dir`; events the gateway does not acknowledge go to
    /// `spool`. Unasked-for news arrives on the receiver.
    pub fn start(
        stream: S,
        identity: &SessionIdentity,
        reporter: SessionReporter,
        spool: Option<Arc<Spool>>,
        download_dir: PathBuf,
    ) -> (Self, mpsc::Receiver<ConsoleEvent>) {
        let tape: Arc<Mutex<Tape>> = Arc::default();
        let reporting = Reporting {
            reporter,
            spool,
            session: identity.guid,
            tape: Some(tape.clone()),
            store_chat: identity.store_chat,
        };
        let (read, write) = tokio::io::split(stream);
        let send = Sender::new(write);
        let waiters: Waiters = Arc::default();
        let (events_tx, events) = mpsc::channel(256);
        let (viewer, screen) = Viewer::new();
        let status = Arc::new(watch::Sender::new(Status::default()));
        let closing = Arc::new(AtomicBool::new(false));
        let reader = tokio::spawn(read_loop(
            FramedRead::new(read, Codec),
            send.clone(),
            reporting.clone(),
            waiters.clone(),
            download_dir,
            events_tx,
            Screens {
                viewer,
                status: status.clone(),
                closing: closing.clone(),
            },
        ));
        let console = Self {
            send,
            reporting,
            waiters,
            reader: Some(reader),
            screen,
            tape,
            recording_required: false,
            status,
            closing,
        };
        (console, events)
    }

    fn wait_for(&self, id: Uuid) -> mpsc::UnboundedReceiver<Control> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id, tx);
        rx
    }

    fn done_with(&self, id: Uuid) {
        self.waiters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&id);
    }

    /// Sends a chat line.
    pub async fn chat(&self, text: &str) -> Result<Option<String>, SessionError> {
        self.send
            .control(&Control::Chat {
                text: text.to_owned(),
            })
            .await?;
        Ok(report(
            &self.reporting,
            EventKind::ChatMessage(ChatMessage {
                from: Party::Technician,
                text: Some(text.to_owned()),
                chars: text.chars().count() as u64,
            }),
        )
        .await)
    }

    /// Asks the end user for `permission` and waits for the answer.
    pub async fn ask(&self, permission: Permission) -> Result<Decision, SessionError> {
        self.request(permission, |request| Control::Ask {
            request,
            permission,
        })
        .await
    }

    /// From now on, the screen may be viewed only while recording (the
    /// technician's group forces recording).
    pub fn require_recording(&mut self) {
        self.recording_required = true;
    }

    /// Asks to see the end user's screen; once granted, [`Console::screen`] follows it.
    pub async fn view(&self) -> Result<Decision, SessionError> {
        self.begin(
            Permission::DesktopView,
            |request| Control::ViewStart { request },
            |s| s.viewing = true,
        )
        .await
    }

    /// Asks to control the end user's mouse and keyboard; once granted,
    /// [`Console::input`] reaches their display.
    pub async fn control(&self) -> Result<Decision, SessionError> {
        self.begin(
            Permission::RemoteControl,
            |request| Control::ControlStart { request },
            |s| s.controlling = true,
        )
        .await
    }

    /// Requests something that runs on the applet until stopped (view,
    /// control): only while recording if the group forces it, and noted as
    /// on (`mark`) once granted, so that ending the session waits for it.
    async fn begin(
        &self,
        permission: Permission,
        message: impl FnOnce(Uuid) -> Control,
        mark: impl FnOnce(&mut Status),
    ) -> Result<Decision, SessionError> {
        if self.recording_required && !self.recording() {
            return Err(SessionError::RecordingRequired);
        }
        let decision = self.request(permission, message).await?;
        if decision == Decision::Granted {
            self.status.send_modify(mark);
            // The applet audits the start; the recording marks it as the
            // console learns it, like every event of the session.
            let started = match permission {
                Permission::DesktopView => "desktop_view.started",
                _ => "remote_control.started",
            };
            note(&self.tape, started, format!("{permission} started"));
        }
        Ok(decision)
    }

    /// Sends the request `message` makes for `permission` (audited as
    /// requested), waits for the applet's answer, and marks it in the recording.
    async fn request(
        &self,
        permission: Permission,
        message: impl FnOnce(Uuid) -> Control,
    ) -> Result<Decision, SessionError> {
        let request = Uuid::now_v7();
        let mut answers = self.wait_for(request);
        self.requested(permission).await;
        self.send.control(&message(request)).await?;
        let answer = answers.recv().await;
        self.done_with(request);
        let decided = match answer {
            Some(Control::Answer {
                granted, denial, ..
            }) => decision(granted, denial),
            Some(other) => return Err(SessionError::Peer(format!("answered {}", other.name()))),
            None => return Err(SessionError::Ended),
        };
        if decided == Decision::Granted {
            self.status.send_if_modified(|s| {
                let new = !s.granted.contains(&permission);
                if new {
                    s.granted.push(permission);
                }
                new
            });
        }
        let (kind, text) = match decided {
            Decision::Granted => ("permission.granted", format!("{permission} granted")),
            Decision::Denied(why) => ("permission.denied", format!("{permission} denied: {why:?}")),
        };
        note(&self.tape, kind, text);
        Ok(decided)
    }

    /// Sends mouse and keyboard input (dropped by the applet unless control was granted).
    pub async fn input(&self, events: Vec<InputEvent>) -> Result<(), SessionError> {
        self.input_sender().send(events).await
    }

    /// A handle that sends input from elsewhere (a viewer window) while the console runs.
    pub fn input_sender(&self) -> InputSender<S> {
        InputSender(self.send.clone())
    }

    /// Hands mouse and keyboard back to the end user.
    pub async fn stop_control(&self) -> Result<(), SessionError> {
        Ok(self.send.control(&Control::ControlStop).await?)
    }

    /// Stops the screen stream (the applet confirms with [`ConsoleEvent::ViewEnded`]).
    pub async fn stop_view(&self) -> Result<(), SessionError> {
        Ok(self.send.control(&Control::ViewStop).await?)
    }

    /// Records the screen into `path` (which must not exist), with the
    /// session's audit events as markers; starts at the next key update,
    /// which it asks the applet for.
    pub async fn record(&self, path: PathBuf, technician: &str) -> Result<(), SessionError> {
        self.tape.lock().unwrap_or_else(|e| e.into_inner()).arm(
            path,
            technician,
            self.reporting.session,
        )?;
        show_tape(&self.tape, &self.status);
        Ok(self.send.control(&Control::ViewKey).await?)
    }

    /// Like [`Console::record`], into a new file in `dir` (made if missing)
    /// named by the session and the time: `GUID-YYYY-MM-DDTHH-MM-SS-ffffffZ.vrec`.
    /// Returns its path.
    pub async fn record_in(&self, dir: &Path, technician: &str) -> Result<PathBuf, SessionError> {
        std::fs::create_dir_all(dir).map_err(|source| super::files::FileError::Io {
            doing: "creating",
            path: dir.to_owned(),
            source,
        })?;
        let stamp =
            audit_event::time_us::format(audit_event::time_us::now()).replace([':', '.'], "-");
        let path = dir.join(format!("{}-{stamp}.vrec", self.reporting.session));
        self.record(path.clone(), technician).await?;
        Ok(path)
    }

    /// Whether a recording is on (or waiting for its first screen).
    pub fn recording(&self) -> bool {
        self.tape.lock().unwrap_or_else(|e| e.into_inner()).active()
    }

    /// Finishes the recording, if one is on, and reports its size and hash.
    pub async fn stop_recording(&self) -> Result<Option<Finished>, SessionError> {
        finish_tape(&self.tape, &self.reporting, &self.status).await
    }

    /// The session's state (view, control, recording, grants), and its changes.
    pub fn status(&self) -> watch::Receiver<Status> {
        self.status.subscribe()
    }

    /// The end user's screen as last received, and its changes.
    pub fn screen(&self) -> watch::Receiver<Screen> {
        self.screen.clone()
    }

    async fn requested(&self, permission: Permission) {
        report(
            &self.reporting,
            EventKind::PermissionRequested(PermissionRequested { permission }),
        )
        .await;
    }

    /// Sends a file to the end user, streamed and hashed, once they consent.
    pub async fn send_file(&self, path: &Path) -> Result<Transfer, SessionError> {
        let transfer = Uuid::now_v7();
        let name = super::files::display_name(path);
        let size = tokio::fs::metadata(path)
            .await
            .map_err(|source| super::files::FileError::Io {
                doing: "reading",
                path: path.to_owned(),
                source,
            })?
            .len();
        let mut answers = self.wait_for(transfer);
        self.requested(Permission::SendFiles).await;
        self.send
            .control(&Control::FileOffer {
                transfer,
                name: name.clone(),
                size,
            })
            .await?;
        let outcome = async {
            match answers.recv().await {
                Some(Control::FileAccept { .. }) => {}
                Some(Control::FileRefused { reason, .. }) => return Ok(Transfer::Refused(reason)),
                Some(other) => {
                    return Err(SessionError::Peer(format!("answered {}", other.name())))
                }
                None => return Err(SessionError::Ended),
            }
            let ours = self.send.file(transfer, path).await?;
            report(
                &self.reporting,
                transferred(Direction::ToEndUser, &name, &ours),
            )
            .await;
            match answers.recv().await {
                Some(Control::FileResult {
                    ok: true,
                    saved_as,
                    size,
                    md5,
                    sha256,
                    ..
                }) if size == ours.size && *md5 == ours.md5 && *sha256 == ours.sha256 => {
                    Ok(Transfer::Verified {
                        name,
                        saved_as: saved_as.unwrap_or_default(),
                        digests: ours,
                    })
                }
                Some(Control::FileResult { error, .. }) => Ok(Transfer::Failed(
                    error.unwrap_or_else(|| "the digests differ".to_owned()),
                )),
                Some(other) => Err(SessionError::Peer(format!("answered {}", other.name()))),
                None => Err(SessionError::Ended),
            }
        }
        .await;
        self.done_with(transfer);
        outcome
    }

    /// Asks for a file from the end user's machine; it is saved in the
    /// download directory once they consent.
    pub async fn get_file(&self, path: &str) -> Result<Transfer, SessionError> {
        let transfer = Uuid::now_v7();
        let mut answers = self.wait_for(transfer);
        self.requested(Permission::ReceiveFiles).await;
        self.send
            .control(&Control::FileGet {
                transfer,
                path: path.to_owned(),
            })
            .await?;
        // The reader saves the file and forwards the outcome as our own FileResult.
        let outcome = match answers.recv().await {
            Some(Control::FileRefused { reason, .. }) => Ok(Transfer::Refused(reason)),
            Some(Control::FileResult {
                ok: true,
                saved_as,
                size,
                md5,
                sha256,
                ..
            }) => Ok(Transfer::Verified {
                name: path.to_owned(),
                saved_as: saved_as.unwrap_or_default(),
                digests: link::digests(size, md5, sha256),
            }),
            Some(Control::FileResult { error, .. }) => {
                Ok(Transfer::Failed(error.unwrap_or_default()))
            }
            Some(other) => Err(SessionError::Peer(format!("answered {}", other.name()))),
            None => Err(SessionError::Ended),
        };
        self.done_with(transfer);
        outcome
    }

    /// The end user's system information.
    pub async fn sysinfo(&self) -> Result<Result<SystemInfo, Denial>, SessionError> {
        let request = Uuid::now_v7();
        let mut answers = self.wait_for(request);
        self.requested(Permission::SystemInformation).await;
        self.send.control(&Control::SysInfoGet { request }).await?;
        let answer = answers.recv().await;
        self.done_with(request);
        match answer {
            Some(Control::SysInfo { info, .. }) => Ok(Ok(info)),
            Some(Control::Answer {
                granted: false,
                denial,
                ..
            }) => Ok(Err(denial.unwrap_or(Denial::EndUser))),
            Some(other) => Err(SessionError::Peer(format!("answered {}", other.name()))),
            None => Err(SessionError::Ended),
        }
    }

    /// Ends the session: closes our side, then lets the reader see the
    /// applet's side close (bounded), so the end's reason is reported.
    pub async fn end(mut self) {
        // View and control end first, and are audited by the applet, before
        // the session closes under them (bounded: a gone applet cannot hold us).
        let (viewing, controlling) = {
            let on = self.status.borrow();
            (on.viewing, on.controlling)
        };
        if viewing {
            let _ = self.send.control(&Control::ViewStop).await;
        }
        if controlling {
            let _ = self.send.control(&Control::ControlStop).await;
        }
        if viewing || controlling {
            let mut status = self.status.subscribe();
            let ended = status.wait_for(|s| !s.viewing && !s.controlling);
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), ended).await;
        }
        self.closing.store(true, Ordering::Release);
        self.send.shutdown().await;
        if let Some(reader) = self.reader.take() {
            let _ = tokio::time::timeout(std::time::Duration::from_secs(10), reader).await;
        }
    }
}

fn decision(granted: bool, denial: Option<Denial>) -> Decision {
    if granted {
        Decision::Granted
    } else {
        Decision::Denied(denial.unwrap_or(Denial::EndUser))
    }
}

/// The id an answer belongs to.
fn answer_id(message: &Control) -> Option<Uuid> {
    match message {
        Control::Answer { request, .. }
        | Control::SysInfo { request, .. }
        | Control::SysInfoGet { request } => Some(*request),
        Control::FileAccept { transfer }
        | Control::FileRefused { transfer, .. }
        | Control::FileResult { transfer, .. }
        | Control::FileOffer { transfer, .. }
        | Control::FileDone { transfer, .. }
        | Control::FileGet { transfer, .. } => Some(*transfer),
        Control::Ask { request, .. }
        | Control::ViewStart { request }
        | Control::ControlStart { request } => Some(*request),
        Control::Chat { .. }
        | Control::Hello { .. }
        | Control::ViewAck { .. }
        | Control::ViewStop
        | Control::ViewKey
        | Control::ViewEnded { .. }
        | Control::Input { .. }
        | Control::InputFailed { .. }
        | Control::ControlStop
        | Control::ControlEnded => None,
    }
}

async fn read_loop<S: AsyncRead + AsyncWrite + Send + 'static>(
    mut frames: FramedRead<ReadHalf<S>, Codec>,
    send: Sender<S>,
    reporting: Reporting,
    waiters: Waiters,
    download_dir: PathBuf,
    events: mpsc::Sender<ConsoleEvent>,
    screens: Screens,
) {
    let Screens {
        mut viewer,
        status,
        closing,
    } = screens;
    let tape = reporting.tape.clone().unwrap_or_default();
    let mut incoming: HashMap<Uuid, Incoming> = HashMap::new();
    let route = |message: Control| {
        let id = answer_id(&message);
        let waiter = id.and_then(|id| {
            waiters
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .get(&id)
                .cloned()
        });
        if let Some(waiter) = waiter {
            let _ = waiter.send(message);
        }
    };
    let ended = loop {
        let message = match frames.next().await {
            None if closing.load(Ordering::Acquire) => break "the session ended".to_owned(),
            None => break "the end user's applet closed the session".to_owned(),
            // Once the technician has ended it, the relay may close the link
            // before the applet's own close reaches us: that is the end asked for.
            Some(Err(_)) if closing.load(Ordering::Acquire) => {
                break "the session ended".to_owned()
            }
            Some(Err(e)) => break format!("the session failed: {e}"),
            Some(Ok(frame)) => match Inner::decode(&frame) {
                Ok(m) => m,
                Err(e) => break format!("the applet broke the protocol: {e}"),
            },
        };
        match message {
            Inner::Control(Control::Chat { text }) => {
                let chat = EventKind::ChatMessage(ChatMessage {
                    from: Party::EndUser,
                    chars: text.chars().count() as u64,
                    text: Some(text.clone()),
                });
                let marked = lock(&tape).mark(&chat);
                if let Err(e) = marked {
                    let _ = events
                        .send(ConsoleEvent::Warning(format!("recording: {e}")))
                        .await;
                }
                let _ = events.send(ConsoleEvent::Chat(text)).await;
            }
            Inner::Control(Control::FileOffer { transfer, name, .. }) => {
                match Incoming::create(&download_dir, &name).await {
                    Ok(file) => {
                        incoming.insert(transfer, file);
                    }
                    Err(e) => route(Control::file_result(
                        transfer,
                        super::files::Hashes::default().finish(),
                        Err(e.to_string()),
                    )),
                }
            }
            Inner::Chunk { transfer, data } => {
                if let Some(file) = incoming.get_mut(&transfer) {
                    if let Err(e) = file.write(&data).await {
                        incoming.remove(&transfer);
                        let _ = events.send(ConsoleEvent::Warning(e.to_string())).await;
                    }
                }
            }
            Inner::Control(Control::FileDone {
                transfer,
                size,
                md5,
                sha256,
            }) => {
                let Some(file) = incoming.remove(&transfer) else {
                    continue;
                };
                let name = file.name().to_owned();
                let sent = link::digests(size, md5, sha256);
                let (saved, ours) = match file.finish(&sent).await {
                    Ok((path, ours)) => (Ok(path.display().to_string()), ours),
                    Err((e, ours)) => (Err(e.to_string()), ours),
                };
                if let Some(w) = report(
                    &reporting,
                    transferred(Direction::FromEndUser, &name, &ours),
                )
                .await
                {
                    let _ = events.send(ConsoleEvent::Warning(w)).await;
                }
                let result = Control::file_result(transfer, ours, saved);
                if send.control(&result).await.is_err() {
                    break "the session failed while answering a file".to_owned();
                }
                route(result);
            }
            Inner::Control(Control::ViewEnded { reason }) => {
                status.send_modify(|s| s.viewing = false);
                note(
                    &tape,
                    "desktop_view.ended",
                    format!("desktop view ended: {reason}"),
                );
                let _ = events.send(ConsoleEvent::ViewEnded(reason)).await;
            }
            Inner::Control(Control::Hello { host }) => {
                status.send_modify(|s| s.host = Some(protocol::wire::printable(&host, 255)));
            }
            Inner::Control(Control::InputFailed { reason }) => {
                let _ = events.send(ConsoleEvent::InputFailed(reason)).await;
            }
            Inner::Control(Control::ControlEnded) => {
                status.send_modify(|s| s.controlling = false);
                note(
                    &tape,
                    "remote_control.ended",
                    "remote control ended".to_owned(),
                );
                let _ = events.send(ConsoleEvent::ControlEnded).await;
            }
            Inner::Screen(fragment) => {
                let reply = match viewer.fragment(&fragment) {
                    Ok(Some(received)) => {
                        if let Some(update) = &received.bytes {
                            let taped = lock(&tape).update(update);
                            show_tape(&tape, &status);
                            match taped {
                                Ok(Some(started)) => {
                                    if let Some(w) = report(&reporting, started).await {
                                        let _ = events.send(ConsoleEvent::Warning(w)).await;
                                    }
                                }
                                Ok(None) => {}
                                Err(e) => {
                                    stop_tape_after(&tape, &reporting, &status, &events, e).await
                                }
                            }
                        }
                        Control::ViewAck { seq: received.seq }
                    }
                    Ok(None) => continue,
                    Err(why) => {
                        let _ = events.send(ConsoleEvent::Warning(why)).await;
                        Control::ViewKey
                    }
                };
                if send.control(&reply).await.is_err() {
                    break "the session failed while acknowledging the screen".to_owned();
                }
            }
            Inner::Pointer(bytes) => match viewer.pointer(&bytes) {
                Ok(_) => {
                    // Recorded as sent: the shape only when it changed.
                    if let Ok(cursor) = recorder::cursor::Cursor::decode(&bytes) {
                        let taped = lock(&tape).cursor(&cursor);
                        if let Err(e) = taped {
                            stop_tape_after(&tape, &reporting, &status, &events, e).await;
                        }
                    }
                }
                Err(why) => {
                    let _ = events
                        .send(ConsoleEvent::Warning(format!("cursor update: {why}")))
                        .await;
                }
            },
            Inner::Control(other) => route(other),
        }
    };
    // The recording ends with the session, finished and reported.
    if let Err(e) = finish_tape(&tape, &reporting, &status).await {
        let _ = events
            .send(ConsoleEvent::Warning(format!("recording: {e}")))
            .await;
    }
    // Whoever still waits learns the session is over.
    waiters.lock().unwrap_or_else(|e| e.into_inner()).clear();
    status.send_modify(|s| {
        s.viewing = false;
        s.controlling = false;
        s.recording = None;
    });
    let _ = events.send(ConsoleEvent::Ended(ended)).await;
}

/// Marks an event another party audits (the applet's) on the recording.
fn note(tape: &Mutex<Tape>, kind: &str, text: String) {
    if let Err(e) = lock(tape).note(kind, text) {
        tracing::warn!("could not mark {kind} in the recording: {e}");
    }
}

/// Publishes the recording's state, if it changed.
fn show_tape(tape: &Mutex<Tape>, status: &watch::Sender<Status>) {
    let now = lock(tape).status();
    status.send_if_modified(|s| {
        let changed = s.recording != now;
        s.recording = now;
        changed
    });
}

fn lock(tape: &Mutex<Tape>) -> std::sync::MutexGuard<'_, Tape> {
    tape.lock().unwrap_or_else(|e| e.into_inner())
}

/// Finishes the recording, if one is on, and reports `recording.stopped`.
async fn finish_tape(
    tape: &Mutex<Tape>,
    reporting: &Reporting,
    status: &watch::Sender<Status>,
) -> Result<Option<Finished>, SessionError> {
    let stopped = lock(tape).stop();
    show_tape(tape, status);
    match stopped {
        Ok(Some((finished, event))) => {
            report(reporting, event).await;
            Ok(Some(finished))
        }
        Ok(None) => Ok(None),
        Err(e) => Err(SessionError::Recording(e)),
    }
}

/// A write to the recording failed (a full disk): what is written stays
/// readable, the recording stops, and the technician is told.
async fn stop_tape_after(
    tape: &Mutex<Tape>,
    reporting: &Reporting,
    status: &watch::Sender<Status>,
    events: &mpsc::Sender<ConsoleEvent>,
    error: recorder::vrec::VrecError,
) {
    let finished = finish_tape(tape, reporting, status).await;
    let detail = match finished {
        Ok(_) => "it was finished up to there".to_owned(),
        Err(e) => e.to_string(),
    };
    let _ = events
        .send(ConsoleEvent::Warning(format!(
            "recording stopped: {error}; {detail}"
        )))
        .await;
}
