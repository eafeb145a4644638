//! The applet's engine: the end user's side of the inner session. It
//! enforces the grant the gateway signed into the console's certificate,
//! asks the end user's consent per action (or once per permission in
//! single-prompt groups), refuses what this build cannot do yet, and
//! reports what it witnesses to the audit log.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;

use audit_event::event::{
    ChatMessage, Consent, Denial, Direction, Party, PermissionDenied, PermissionGranted,
    RemoteControlEnded, RemoteControlStarted, SessionEndUser,
};
use audit_event::{EventKind, Permission};
use futures::StreamExt;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};
use tokio_util::codec::FramedRead;
use uuid::Uuid;

use super::files::{self, Incoming};
use super::link::{self, report, transferred, Reporting, Sender, SessionError};
use super::proto::{Control, Inner};
use super::sysinfo::SystemInfo;
use super::view::{InputSink, OpenInput, OpenScreen, Streaming};
use crate::client::SessionReporter;
use protocol::identity::SessionIdentity;
use protocol::wire::Codec;

/// Permissions this build can always act on; desktop view needs a screen
/// ([`AppletConfig::screen`]); every other one is refused as unavailable.
pub const AVAILABLE: [Permission; 3] = [
    Permission::SendFiles,
    Permission::ReceiveFiles,
    Permission::SystemInformation,
];

/// How the applet obtains the end user's consent.
#[derive(Debug)]
pub enum ConsentMode {
    /// Ask: each prompt goes to the user interface, which answers it.
    Ask(mpsc::Sender<Prompt>),
    /// Consent to everything the grant allows (scripted runs).
    GrantAll,
    /// Consent to nothing.
    DenyAll,
}

/// A consent question for the end user.
#[derive(Debug)]
pub struct Prompt {
    /// The permission asked for.
    pub permission: Permission,
    /// What the technician wants to do, in words.
    pub what: String,
    /// The end user's answer.
    pub answer: oneshot::Sender<bool>,
}

/// What the applet tells its user interface.
#[derive(Debug, Clone, PartialEq)]
pub enum AppletEvent {
    /// The technician wrote.
    Chat(String),
    /// A permission was granted or denied.
    Decided {
        /// The permission.
        permission: Permission,
        /// What it was for, in words.
        what: String,
        /// Whether it was granted.
        granted: bool,
    },
    /// A file from the technician was saved.
    Received {
        /// Where the file was saved.
        saved_as: PathBuf,
        /// Its size in bytes.
        size: u64,
        /// Its SHA-256, lower-case hex.
        sha256: String,
    },
    /// A file went to the technician; `ok` says whether it arrived intact.
    Sent {
        /// The file asked for.
        path: String,
        /// Bytes sent.
        size: u64,
        /// Whether the technician's end verified them.
        ok: bool,
    },
    /// A transfer failed.
    FileFailed {
        /// The file's name.
        name: String,
        /// What went wrong.
        error: String,
    },
    /// Something went wrong that does not end the session (e.g. an audit report).
    Warning(String),
}

/// What the end user does.
#[derive(Debug, Clone, PartialEq)]
pub enum AppletCommand {
    /// A line of chat from the end user.
    Chat(String),
    /// End the session now.
    End,
}

/// The applet's settings for one session.
pub struct AppletConfig {
    /// How consent prompts are answered.
    pub consent: ConsentMode,
    /// Where files from the technician are saved.
    pub download_dir: PathBuf,
    /// The screen the technician may view (none: desktop view is unavailable).
    pub screen: Option<OpenScreen>,
    /// Screen updates per second at most.
    pub fps: u32,
    /// Where the technician's mouse and keyboard go (none: remote control is unavailable).
    pub input: Option<OpenInput>,
}

impl std::fmt::Debug for AppletConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppletConfig")
            .field("consent", &self.consent)
            .field("download_dir", &self.download_dir)
            .field("screen", &self.screen.is_some())
            .field("fps", &self.fps)
            .field("input", &self.input.is_some())
            .finish()
    }
}

struct Applet<S> {
    send: Sender<S>,
    reporting: Reporting,
    grant: Vec<Permission>,
    single_prompt: bool,
    consented: HashSet<Permission>,
    config: AppletConfig,
    events: mpsc::Sender<AppletEvent>,
    incoming: HashMap<Uuid, Incoming>,
    view: Option<Streaming>,
    control: Option<InputSink>,
}

/// Runs the applet's side of an inner session over `stream`, whose peer is
/// the console `console`, until either side ends it. Returns how it ended.
pub async fn run<S>(
    stream: S,
    console: SessionIdentity,
    config: AppletConfig,
    reporter: SessionReporter,
    mut commands: mpsc::Receiver<AppletCommand>,
    events: mpsc::Sender<AppletEvent>,
) -> Result<String, SessionError>
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (read, write) = tokio::io::split(stream);
    let mut frames = FramedRead::new(read, Codec);
    let mut applet = Applet {
        send: Sender::new(write),
        reporting: Reporting {
            reporter,
            spool: None,
            session: console.guid,
            tape: None,
            store_chat: console.store_chat,
        },
        grant: console.grant,
        single_prompt: console.single_prompt,
        consented: HashSet::new(),
        config,
        events,
        incoming: HashMap::new(),
        view: None,
        control: None,
    };
    // The technician sees which computer they reached (its name only:
    // anything more is system information, asked for with consent).
    let host = sysinfo::System::host_name().unwrap_or_default();
    if !host.is_empty() {
        // In the audit log too: reports and CRM posts name the end user's computer.
        applet
            .report(EventKind::SessionEndUser(SessionEndUser {
                host: host.clone(),
            }))
            .await;
    }
    // A session closed already fails this send; the read below says how it ended.
    let _ = applet.send.control(&Control::Hello { host }).await;
    let ended = loop {
        tokio::select! {
            command = commands.recv() => match command {
                Some(AppletCommand::Chat(text)) => {
                    if let Err(e) = applet.chat(text).await {
                        break Err(e);
                    }
                }
                Some(AppletCommand::End) | None => {
                    applet.send.shutdown().await;
                    break Ok("ended by the end user".to_owned());
                }
            },
            frame = frames.next() => match frame {
                None => break Ok("the technician left".to_owned()),
                Some(frame) => {
                    let handled = match frame.map_err(SessionError::from).and_then(|f| Ok(Inner::decode(&f)?)) {
                        Ok(message) => applet.handle(message).await,
                        Err(e) => Err(e),
                    };
                    if let Err(e) = handled {
                        break Err(e);
                    }
                }
            },
        }
    };
    // However the session ends, control is handed back and that is audited.
    applet.release_control().await;
    ended
}

impl<S: AsyncRead + AsyncWrite + Send + 'static> Applet<S> {
    async fn tell(&self, event: AppletEvent) {
        let _ = self.events.send(event).await;
    }

    async fn report(&self, kind: EventKind) {
        if let Some(warning) = report(&self.reporting, kind).await {
            self.tell(AppletEvent::Warning(warning)).await;
        }
    }

    async fn chat(&mut self, text: String) -> Result<(), SessionError> {
        self.send
            .control(&Control::Chat { text: text.clone() })
            .await?;
        let chars = text.chars().count() as u64;
        self.report(EventKind::ChatMessage(ChatMessage {
            from: Party::EndUser,
            text: Some(text),
            chars,
        }))
        .await;
        Ok(())
    }

    /// Inside the grant, available, and consented to now (or once, in
    /// single-prompt groups)? The decision is audited and shown.
    async fn authorize(&mut self, permission: Permission, what: &str) -> Result<Consent, Denial> {
        let decision = if !self.grant.contains(&permission) {
            Err(Denial::NotGranted)
        } else if let Err(why) = self.available(permission) {
            Err(why)
        } else if self.single_prompt && self.consented.contains(&permission) {
            Ok(Consent::SinglePrompt)
        } else if self.ask(permission, what).await {
            if self.single_prompt {
                self.consented.insert(permission);
                Ok(Consent::SinglePrompt)
            } else {
                Ok(Consent::EndUser)
            }
        } else {
            Err(Denial::EndUser)
        };
        let kind = match decision {
            Ok(consent) => EventKind::PermissionGranted(PermissionGranted {
                permission,
                consent,
            }),
            Err(reason) => EventKind::PermissionDenied(PermissionDenied { permission, reason }),
        };
        self.report(kind).await;
        self.tell(AppletEvent::Decided {
            permission,
            what: what.to_owned(),
            granted: decision.is_ok(),
        })
        .await;
        decision
    }

    /// Whether this applet can do `permission`: `Unavailable` for what this
    /// build does not offer, `NoDisplay` for the screen and input when the
    /// end user shared no display.
    fn available(&self, permission: Permission) -> Result<(), Denial> {
        let shared = match permission {
            Permission::DesktopView => self.config.screen.is_some(),
            Permission::RemoteControl => self.config.input.is_some(),
            other if AVAILABLE.contains(&other) => return Ok(()),
            _ => return Err(Denial::Unavailable),
        };
        if shared {
            Ok(())
        } else {
            Err(Denial::NoDisplay)
        }
    }

    /// Shows the screen to the technician, with the end user's consent.
    async fn view(&mut self, request: Uuid) -> Result<(), SessionError> {
        let permission = Permission::DesktopView;
        let mut decision = self.authorize(permission, "see your screen").await;
        let running = self.view.as_ref().is_some_and(Streaming::running);
        if let (Ok(_), false, Some(open)) = (&decision, running, self.config.screen.clone()) {
            match self.open("the screen could not be opened", open).await {
                Some(screen) => {
                    let (send, reporting) = (self.send.clone(), self.reporting.clone());
                    self.view = Some(Streaming::start(screen, send, reporting, self.config.fps));
                }
                None => decision = Err(Denial::Unavailable),
            }
        }
        self.answer(request, permission, decision).await
    }

    /// Hands mouse and keyboard to the technician, with the end user's consent.
    async fn control(&mut self, request: Uuid) -> Result<(), SessionError> {
        let permission = Permission::RemoteControl;
        let mut decision = self
            .authorize(permission, "control your mouse and keyboard")
            .await;
        if let (Ok(_), None, Some(open)) = (&decision, &self.control, self.config.input.clone()) {
            match self
                .open("the display could not be opened for input", open)
                .await
            {
                Some(sink) => {
                    self.control = Some(sink);
                    self.report(EventKind::RemoteControlStarted(RemoteControlStarted {}))
                        .await;
                }
                None => decision = Err(Denial::Unavailable),
            }
        }
        self.answer(request, permission, decision).await
    }

    /// Opens the display for view or control on a blocking thread (X11
    /// connects synchronously); a failure is shown to the end user.
    async fn open<T: Send + 'static, E: std::fmt::Display + Send + 'static>(
        &self,
        failed: &str,
        open: std::sync::Arc<dyn Fn() -> Result<T, E> + Send + Sync>,
    ) -> Option<T> {
        let why = match tokio::task::spawn_blocking(move || open()).await {
            Ok(Ok(opened)) => return Some(opened),
            Ok(Err(e)) => e.to_string(),
            Err(_) => failed.to_owned(),
        };
        self.tell(AppletEvent::Warning(why)).await;
        None
    }

    /// Ends remote control, if it was on, and reports it.
    async fn release_control(&mut self) {
        if self.control.take().is_some() {
            self.report(EventKind::RemoteControlEnded(RemoteControlEnded {}))
                .await;
            // The console may wait for this before closing the session.
            let _ = self.send.control(&Control::ControlEnded).await;
        }
    }

    async fn ask(&self, permission: Permission, what: &str) -> bool {
        match &self.config.consent {
            ConsentMode::GrantAll => true,
            ConsentMode::DenyAll => false,
            ConsentMode::Ask(prompts) => {
                let (answer, answered) = oneshot::channel();
                let prompt = Prompt {
                    permission,
                    what: what.to_owned(),
                    answer,
                };
                prompts.send(prompt).await.is_ok() && answered.await.unwrap_or(false)
            }
        }
    }

    async fn answer(
        &self,
        request: Uuid,
        permission: Permission,
        decision: Result<Consent, Denial>,
    ) -> Result<(), SessionError> {
        let answer = Control::Answer {
            request,
            permission,
            granted: decision.is_ok(),
            denial: decision.err(),
        };
        Ok(self.send.control(&answer).await?)
    }

    async fn handle(&mut self, message: Inner) -> Result<(), SessionError> {
        match message {
            Inner::Control(Control::Chat { text }) => self.tell(AppletEvent::Chat(text)).await,
            Inner::Control(Control::Ask {
                request,
                permission,
            }) => {
                let what = format!("use {permission}");
                let decision = self.authorize(permission, &what).await;
                self.answer(request, permission, decision).await?;
            }
            Inner::Control(Control::SysInfoGet { request }) => {
                let permission = Permission::SystemInformation;
                let decision = self
                    .authorize(permission, "read this computer's system information")
                    .await;
                if decision.is_ok() {
                    let info = tokio::task::spawn_blocking(SystemInfo::gather)
                        .await
                        .map_err(|e| SessionError::Task(e.to_string()))?;
                    self.send
                        .control(&Control::SysInfo { request, info })
                        .await?;
                } else {
                    self.answer(request, permission, decision).await?;
                }
            }
            Inner::Control(Control::FileOffer {
                transfer,
                name,
                size,
            }) => self.offered(transfer, name, size).await?,
            Inner::Control(Control::ViewStart { request }) => self.view(request).await?,
            Inner::Control(message @ (Control::ViewAck { .. } | Control::ViewKey)) => {
                if let Some(view) = &self.view {
                    view.tell(message);
                }
            }
            // Dropping the stream stops it; it says so and reports the end itself.
            Inner::Control(Control::ViewStop) => self.view = None,
            Inner::Control(Control::ControlStart { request }) => self.control(request).await?,
            Inner::Control(Control::ControlStop) => self.release_control().await,
            Inner::Control(Control::Input { events }) => {
                // Input without consent is dropped: the grant alone is not enough.
                let Some(mut sink) = self.control.take() else {
                    return Ok(());
                };
                // X requests wait on the server: off the async threads. Each
                // event stands alone: one that fails does not drop the rest.
                let injected = tokio::task::spawn_blocking(move || {
                    let mut failures: Vec<String> = Vec::new();
                    for event in &events {
                        if let Err(e) = sink.inject(event) {
                            let why = e.to_string();
                            if failures.last() != Some(&why) {
                                failures.push(why);
                            }
                        }
                    }
                    (sink, failures)
                })
                .await;
                let (sink, failures) = injected.map_err(|e| SessionError::Task(e.to_string()))?;
                self.control = Some(sink);
                for reason in failures {
                    self.tell(AppletEvent::Warning(format!("remote input: {reason}")))
                        .await;
                    self.send.control(&Control::InputFailed { reason }).await?;
                }
            }
            Inner::Chunk { transfer, data } => {
                if let Some(incoming) = self.incoming.get_mut(&transfer) {
                    if let Err(e) = incoming.write(&data).await {
                        let name = incoming.name().to_owned();
                        self.incoming.remove(&transfer);
                        self.tell(AppletEvent::FileFailed {
                            name,
                            error: e.to_string(),
                        })
                        .await;
                    }
                }
            }
            Inner::Control(Control::FileDone {
                transfer,
                size,
                md5,
                sha256,
            }) => {
                if let Some(incoming) = self.incoming.remove(&transfer) {
                    self.received(transfer, incoming, link::digests(size, md5, sha256))
                        .await?;
                }
            }
            Inner::Control(Control::FileGet { transfer, path }) => {
                self.requested(transfer, path).await?
            }
            Inner::Control(Control::FileResult {
                ok,
                error,
                transfer,
                ..
            }) => {
                if !ok {
                    self.tell(AppletEvent::FileFailed {
                        name: transfer.to_string(),
                        error: error.unwrap_or_default(),
                    })
                    .await;
                }
            }
            Inner::Control(other) => {
                return Err(SessionError::Peer(format!(
                    "the console sent {}",
                    other.name()
                )))
            }
            Inner::Screen(_) | Inner::Pointer(_) => {
                return Err(SessionError::Peer(
                    "the console sent screen data".to_owned(),
                ))
            }
        }
        Ok(())
    }

    async fn offered(
        &mut self,
        transfer: Uuid,
        name: String,
        size: u64,
    ) -> Result<(), SessionError> {
        let what = format!("send you the file {name:?} ({size} bytes)");
        let refuse = |reason: String| Control::FileRefused { transfer, reason };
        if let Err(denial) = self.authorize(Permission::SendFiles, &what).await {
            let reason = format!("denied: {}", denial_text(denial));
            return Ok(self.send.control(&refuse(reason)).await?);
        }
        match Incoming::create(&self.config.download_dir, &name).await {
            Ok(incoming) => {
                self.incoming.insert(transfer, incoming);
                self.send.control(&Control::FileAccept { transfer }).await?;
            }
            Err(e) => {
                self.tell(AppletEvent::FileFailed {
                    name,
                    error: e.to_string(),
                })
                .await;
                self.send.control(&refuse(e.to_string())).await?;
            }
        }
        Ok(())
    }

    async fn received(
        &mut self,
        transfer: Uuid,
        incoming: Incoming,
        sent: super::files::Digests,
    ) -> Result<(), SessionError> {
        let name = incoming.name().to_owned();
        let (result, ours) = match incoming.finish(&sent).await {
            Ok((path, ours)) => {
                self.tell(AppletEvent::Received {
                    saved_as: path.clone(),
                    size: ours.size,
                    sha256: ours.sha256.clone(),
                })
                .await;
                let saved = path.file_name().map(|n| n.to_string_lossy().into_owned());
                (Ok(saved.unwrap_or_default()), ours)
            }
            Err((e, ours)) => {
                self.tell(AppletEvent::FileFailed {
                    name: name.clone(),
                    error: e.to_string(),
                })
                .await;
                (Err(e.to_string()), ours)
            }
        };
        self.report(transferred(Direction::ToEndUser, &name, &ours))
            .await;
        self.send
            .control(&Control::file_result(transfer, ours, result))
            .await?;
        Ok(())
    }

    async fn requested(&mut self, transfer: Uuid, path: String) -> Result<(), SessionError> {
        let what = format!("copy your file {path:?} to the technician");
        let file = std::path::PathBuf::from(&path);
        let size = match self.authorize(Permission::ReceiveFiles, &what).await {
            Err(denial) => Err(format!("denied: {}", denial_text(denial))),
            Ok(_) => match tokio::fs::metadata(&file).await {
                Ok(m) if m.is_file() => Ok(m.len()),
                Ok(_) => Err(format!("{path} is not a file")),
                Err(e) => Err(format!("{path}: {e}")),
            },
        };
        let size = match size {
            Ok(size) => size,
            Err(reason) => {
                let refused = Control::FileRefused { transfer, reason };
                return Ok(self.send.control(&refused).await?);
            }
        };
        let name = files::display_name(&file);
        self.send
            .control(&Control::FileOffer {
                transfer,
                name: name.clone(),
                size,
            })
            .await?;
        match self.send.file(transfer, &file).await {
            Ok(digests) => {
                self.report(transferred(Direction::FromEndUser, &name, &digests))
                    .await;
                self.tell(AppletEvent::Sent {
                    path,
                    size: digests.size,
                    ok: true,
                })
                .await;
            }
            Err(SessionError::File(e)) => {
                // The offer is out: end it for the console with the reason.
                let reason = e.to_string();
                self.send
                    .control(&Control::FileRefused { transfer, reason })
                    .await?;
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }
}

fn denial_text(denial: Denial) -> &'static str {
    match denial {
        Denial::EndUser => "the end user said no",
        Denial::NotGranted => "the technician's group is not granted this",
        Denial::Unavailable => "this version of Vigil cannot do this yet",
        Denial::NoDisplay => "no display of yours is shared in this session",
    }
}
