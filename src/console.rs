//! `vigil console`: the technician's side. Reads line commands (typed, from
//! stdin, or from a script) and drives the gateway and the inner session.

use std::net::IpAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use session_core::client::{Connector, Technician};
use session_core::inner;
use session_core::lines::{denial_text, ConsoleLine};
use session_core::session::commands::{self, Command, PickTarget};
use session_core::session::console::{Console, ConsoleEvent, Decision, Transfer};
use session_core::spool::Spool;
use std::sync::Arc;
use tokio::sync::mpsc;
use uuid::Uuid;

use crate::cli::ConsoleArgs;
use crate::output::{stdin_lines, Out};
use crate::page::{self, Link, Page, Request};

/// The inner session's stream, as the console holds it.
pub(crate) type Inner = tokio_rustls::client::TlsStream<tokio::io::DuplexStream>;

/// How long `/pick` without an argument waits for an end user to join.
const PICK_WAIT: Duration = Duration::from_secs(600);

/// A session being worked on.
struct Active {
    guid: Uuid,
    console: Console<Inner>,
    /// Prints what the end user says; ends with the session's end reason.
    watcher: tokio::task::JoinHandle<String>,
}

/// Logs in and runs commands until the input ends.
pub async fn run(args: ConsoleArgs) -> Result<ExitCode> {
    let mut out = Out {
        json: args.json,
        tee: None,
    };
    let connector = crate::login::connector(&args.connect, "vigil console")?;
    let mut stdin = stdin_lines();
    let password = match &args.password_file {
        Some(path) => crate::admin::first_line(path)?,
        None => stdin.recv().await.context("no password on stdin")?,
    };
    let mut tech = connector
        .login(&args.user, &password, None)
        .await
        .context("cannot log in")?;
    let spool = Arc::new(Spool::new(&args.spool));
    let technician = page::Technician {
        email: tech.info.email.clone(),
        group: tech.info.group.clone(),
    };
    let (page, mut requests) = page::serve(args.viewer_port, technician).await?;
    out.tee = Some(page.lines());
    out.emit(
        &ConsoleLine::LoggedIn {
            user: tech.info.email.clone(),
            group: tech.info.group.clone(),
            permissions: tech.info.permissions.clone(),
        },
        format!(
            "Logged in as {} (group {}). /help lists the commands.",
            tech.info.email, tech.info.group
        ),
    );
    let mut script = match &args.script {
        Some(path) => Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?
                .lines()
                .map(str::to_owned)
                .collect::<Vec<_>>()
                .into_iter(),
        ),
        None => None,
    };
    out.emit(
        &ConsoleLine::Viewer {
            url: page.url.clone(),
        },
        format!("The console page (screen, chat, files) is at {}", page.url),
    );
    let ctx = Ctx {
        out,
        connector,
        args,
        password,
        spool,
        page,
    };
    let out = &ctx.out;
    deliver_spool(&ctx, &mut tech).await;
    let mut active: Option<Active> = None;
    loop {
        // Typed (or scripted) lines and the page's requests, as they come.
        let request = match &mut script {
            Some(lines) => match requests.try_recv() {
                Ok(request) => Some(request),
                Err(_) => lines.next().map(Request::Line),
            },
            None => tokio::select! {
                line = stdin.recv() => line.map(Request::Line),
                Some(request) = requests.recv() => Some(request),
            },
        };
        let Some(request) = request else { break };
        let parsed = match request {
            Request::Line(line) => commands::parse(&line),
            Request::Chat(text) => Ok(Some(Command::Chat(text))),
        };
        let command = match parsed {
            Ok(Some(c)) => c,
            Ok(None) => continue,
            Err(e) => {
                out.emit(
                    &ConsoleLine::Error {
                        message: e.to_string(),
                    },
                    format!("error: {e}"),
                );
                continue;
            }
        };
        if let Err(e) = execute(&ctx, &mut tech, &mut active, command).await {
            out.emit(
                &ConsoleLine::Error {
                    message: format!("{e:#}"),
                },
                format!("error: {e:#}"),
            );
        }
        deliver_spool(&ctx, &mut tech).await;
    }
    if let Some(session) = active.take() {
        finish(&ctx, session).await;
    }
    deliver_spool(&ctx, &mut tech).await;
    tech.logout().await.ok();
    Ok(ExitCode::SUCCESS)
}

/// Resends spooled events over the control link; if that link is gone (the
/// gateway restarted), logs in again once and retries.
async fn deliver_spool(ctx: &Ctx, tech: &mut Technician) {
    match ctx.spool.pending() {
        Ok(p) if p.is_empty() => return,
        Ok(_) => {}
        Err(e) => {
            ctx.out.emit(
                &ConsoleLine::Warning {
                    message: e.to_string(),
                },
                format!("warning: {e}"),
            );
            return;
        }
    }
    let delivered = ctx
        .spool
        .deliver_again(tech, &ctx.connector, &ctx.args.user, &ctx.password)
        .await;
    match delivered {
        Ok(n) => ctx.out.emit(
            &ConsoleLine::SpoolDelivered { events: n },
            format!("{n} spooled audit events delivered"),
        ),
        Err(e) => ctx.out.emit(
            &ConsoleLine::Warning {
                message: e.to_string(),
            },
            format!("warning: spooled events wait for the gateway: {e}"),
        ),
    }
}

/// What the commands work with that does not change.
struct Ctx {
    out: Out,
    connector: Connector,
    args: ConsoleArgs,
    password: String,
    spool: Arc<Spool>,
    page: Page,
}

async fn execute(
    ctx: &Ctx,
    tech: &mut Technician,
    active: &mut Option<Active>,
    command: Command,
) -> Result<()> {
    let (out, connector) = (&ctx.out, &ctx.connector);
    // A session that ended by itself (the end user left) is let go first.
    if active.as_ref().is_some_and(|a| a.watcher.is_finished()) {
        if let Some(session) = active.take() {
            finish(ctx, session).await;
        }
    }
    match command {
        Command::Help => out.emit(&ConsoleLine::Help {}, commands::HELP),
        Command::Wait(pause) => tokio::time::sleep(pause).await,
        Command::New => {
            let s = tech.create_session().await?;
            out.emit(
                &ConsoleLine::SessionCreated {
                    session: s.guid,
                    pin: s.pin.clone(),
                    expires: audit_db::time_us::format(s.expires_us),
                },
                format!(
                    "Session {} created. PIN for the end user: {} (valid until {})",
                    s.guid,
                    s.pin,
                    audit_db::time_us::format(s.expires_us)
                ),
            );
        }
        Command::Queue => {
            let waiting = tech.queue().await?;
            let text = if waiting.is_empty() {
                "Nobody is waiting.".to_owned()
            } else {
                waiting
                    .iter()
                    .enumerate()
                    .map(|(i, w)| {
                        format!(
                            "{}. {} from {} since {}",
                            i + 1,
                            w.guid,
                            w.ip,
                            audit_db::time_us::format(w.joined_us)
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            };
            out.emit(&ConsoleLine::Queue { waiting }, text);
        }
        Command::Pick(target) => {
            if active.is_some() {
                bail!("a session is already active: /end it first");
            }
            let (guid, address) = pick_target(tech, target).await?;
            let picked = tech.pick_up(guid).await?;
            let session = connector.attach(picked).await?.into_stream();
            let inner = inner::connect(session.stream, &session.credentials).await?;
            out.emit(
                &ConsoleLine::Paired {
                    session: guid,
                    sas: inner.sas.clone(),
                },
                format!("Connected to session {guid}, end to end encrypted. Verification code: {} (ask the end user to read theirs)", inner.sas),
            );
            let (mut console, events) = Console::start(
                inner.stream,
                &session.credentials.identity,
                session.reporter,
                Some(ctx.spool.clone()),
                ctx.args.download_dir.clone(),
            );
            if tech.info.force_recording {
                console.require_recording();
            }
            if ctx.args.record.is_some() {
                start_recording(ctx, &console, &tech.info.email).await?;
            }
            ctx.page.attach(Some(Link {
                guid,
                address,
                sas: inner.sas.clone(),
                status: console.status(),
                screen: console.screen(),
                input: console.input_sender(),
            }));
            let watcher = tokio::spawn(watch(out.clone(), events));
            *active = Some(Active {
                guid,
                console,
                watcher,
            });
        }
        Command::Chat(text) => {
            let stored = session(active)?.chat(&text).await?;
            out.emit(
                &ConsoleLine::Chat {
                    from: "technician".to_owned(),
                    text: text.clone(),
                },
                format!("you: {text}"),
            );
            if let Some(warning) = stored {
                out.emit(
                    &ConsoleLine::Warning {
                        message: warning.clone(),
                    },
                    format!("warning: {warning}"),
                );
            }
        }
        Command::Ask(permission) => {
            let decision = session(active)?.ask(permission).await?;
            let granted = decision == Decision::Granted;
            out.emit(
                &ConsoleLine::Permission {
                    permission,
                    granted,
                    denial: denial(&decision).map(str::to_owned),
                },
                match decision {
                    Decision::Granted => format!("{permission}: granted"),
                    Decision::Denied(d) => format!(
                        "{permission}: denied ({})",
                        denial(&Decision::Denied(d)).unwrap_or_default()
                    ),
                },
            );
        }
        Command::Send(path) => {
            let result = session(active)?.send_file(&path).await?;
            transfer(out, "send", &path.display().to_string(), result);
        }
        Command::Get(path) => {
            let result = session(active)?.get_file(&path).await?;
            if let Transfer::Verified { saved_as, .. } = &result {
                ctx.page.downloaded(saved_as.into());
            }
            transfer(out, "get", &path, result);
        }
        Command::SysInfo => match session(active)?.sysinfo().await? {
            Ok(info) => {
                let text = format!(
                    "{} ({}), kernel {}, {} x {}, {} of {} MiB memory free, up {} s, {} file systems",
                    info.hostname, info.os, info.kernel, info.cpus, info.cpu,
                    info.memory_available_bytes >> 20, info.memory_total_bytes >> 20, info.uptime_s, info.disks.len()
                );
                out.emit(&ConsoleLine::Sysinfo { info }, text);
            }
            Err(d) => out.emit(
                &ConsoleLine::Permission {
                    permission: audit_db::Permission::SystemInformation,
                    granted: false,
                    denial: Some(denial_text(d).to_owned()),
                },
                format!("system_information: denied ({})", denial_text(d)),
            ),
        },
        Command::View(true) => {
            let decision = session(active)?.view().await?;
            out.emit(
                &ConsoleLine::View {
                    granted: decision == Decision::Granted,
                    denial: denial(&decision).map(str::to_owned),
                },
                match decision {
                    Decision::Granted => {
                        format!("viewing the end user's screen on {}", ctx.page.url)
                    }
                    Decision::Denied(_) => format!(
                        "desktop_view: denied ({})",
                        denial(&decision).unwrap_or_default()
                    ),
                },
            );
        }
        Command::View(false) => session(active)?.stop_view().await?,
        Command::Control(true) => {
            let decision = session(active)?.control().await?;
            out.emit(
                &ConsoleLine::Control {
                    granted: decision == Decision::Granted,
                    denial: denial(&decision).map(str::to_owned),
                },
                match decision {
                    Decision::Granted => format!(
                        "you have the end user's mouse and keyboard (on {})",
                        ctx.page.url
                    ),
                    Decision::Denied(_) => format!(
                        "remote_control: denied ({})",
                        denial(&decision).unwrap_or_default()
                    ),
                },
            );
        }
        Command::Control(false) => session(active)?.stop_control().await?,
        Command::Record(true) => {
            let a = active
                .as_ref()
                .context("no session is active: /pick one first")?;
            start_recording(ctx, &a.console, &tech.info.email).await?;
        }
        Command::Record(false) => match session(active)?.stop_recording().await? {
            Some(done) => out.emit(
                &ConsoleLine::RecordingStopped {
                    path: done.path.display().to_string(),
                    size: done.size,
                    sha256: done.sha256.clone(),
                    frames: done.frames,
                },
                format!(
                    "recording saved: {} ({} bytes, {} frames, SHA-256 {})",
                    done.path.display(),
                    done.size,
                    done.frames,
                    done.sha256
                ),
            ),
            None => bail!("no recording is on"),
        },
        Command::End => {
            let session = active.take().context("no session is active")?;
            finish(ctx, session).await;
        }
    }
    Ok(())
}

/// Starts recording session `guid` into a new file of the recordings directory.
async fn start_recording(ctx: &Ctx, console: &Console<Inner>, email: &str) -> Result<()> {
    let dir = ctx
        .args
        .record
        .clone()
        .unwrap_or_else(|| std::path::PathBuf::from("./vigil-recordings"));
    let path = console.record_in(&dir, email).await?;
    ctx.out.emit(
        &ConsoleLine::Recording {
            path: path.display().to_string(),
        },
        format!(
            "recording to {} (starts with the first screen)",
            path.display()
        ),
    );
    Ok(())
}

/// The console of the active session.
fn session(active: &Option<Active>) -> Result<&Console<Inner>> {
    active
        .as_ref()
        .map(|a| &a.console)
        .context("no session is active: /pick one first")
}

/// The GUID `/pick` names, and the end user's address as the queue shows
/// it; without an argument, waits for the first end user.
async fn pick_target(
    tech: &mut Technician,
    target: Option<PickTarget>,
) -> Result<(Uuid, Option<IpAddr>)> {
    match target {
        Some(PickTarget::Guid(guid)) => {
            let waiting = tech.queue().await?;
            Ok((guid, waiting.iter().find(|w| w.guid == guid).map(|w| w.ip)))
        }
        Some(PickTarget::Index(n)) => {
            let waiting = tech.queue().await?;
            waiting
                .get(n - 1)
                .map(|w| (w.guid, Some(w.ip)))
                .with_context(|| format!("only {} waiting", waiting.len()))
        }
        None => {
            let deadline = tokio::time::Instant::now() + PICK_WAIT;
            loop {
                if let Some(first) = tech.queue().await?.first() {
                    return Ok((first.guid, Some(first.ip)));
                }
                if tokio::time::Instant::now() >= deadline {
                    bail!("nobody joined within {} s", PICK_WAIT.as_secs());
                }
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
}

fn denial(decision: &Decision) -> Option<&'static str> {
    match decision {
        Decision::Granted => None,
        Decision::Denied(d) => Some(denial_text(*d)),
    }
}

fn transfer(out: &Out, action: &str, what: &str, result: Transfer) {
    let refused = matches!(result, Transfer::Refused(_));
    match result {
        Transfer::Verified {
            name,
            saved_as,
            digests,
        } => out.emit(
            &ConsoleLine::File {
                action: action.to_owned(),
                name,
                ok: true,
                saved_as: Some(saved_as.clone()),
                size: Some(digests.size),
                md5: Some(digests.md5.clone()),
                sha256: Some(digests.sha256.clone()),
                refused: None,
                error: None,
            },
            format!(
                "{what}: {} bytes, verified on both ends (MD5 {}, SHA-256 {}), saved as {saved_as}",
                digests.size, digests.md5, digests.sha256
            ),
        ),
        Transfer::Refused(reason) | Transfer::Failed(reason) => {
            let text = if refused {
                format!("{what}: refused: {reason}")
            } else {
                format!("{what}: FAILED: {reason}")
            };
            out.emit(
                &ConsoleLine::File {
                    action: action.to_owned(),
                    name: what.to_owned(),
                    ok: false,
                    saved_as: None,
                    size: None,
                    md5: None,
                    sha256: None,
                    refused: refused.then(|| reason.clone()),
                    error: (!refused).then_some(reason),
                },
                text,
            );
        }
    }
}

/// Prints what the end user sends until the session ends; returns why it ended.
async fn watch(out: Out, mut events: mpsc::Receiver<ConsoleEvent>) -> String {
    while let Some(event) = events.recv().await {
        match event {
            ConsoleEvent::Chat(text) => out.emit(
                &ConsoleLine::Chat {
                    from: "end_user".to_owned(),
                    text: text.clone(),
                },
                format!("end user: {text}"),
            ),
            ConsoleEvent::Warning(w) => out.emit(
                &ConsoleLine::Warning { message: w.clone() },
                format!("warning: {w}"),
            ),
            ConsoleEvent::ViewEnded(reason) => out.emit(
                &ConsoleLine::ViewEnded {
                    reason: reason.clone(),
                },
                format!("screen view ended: {reason}"),
            ),
            ConsoleEvent::ControlEnded => out.emit(
                &ConsoleLine::ControlEnded {},
                "remote control ended: the end user has their mouse and keyboard back",
            ),
            ConsoleEvent::InputFailed(message) => out.emit(
                &ConsoleLine::InputFailed {
                    message: message.clone(),
                },
                format!("remote input: {message}"),
            ),
            ConsoleEvent::Ended(reason) => return reason,
        }
    }
    "ended".to_owned()
}

/// Ends a session and reports how it ended.
async fn finish(ctx: &Ctx, session: Active) {
    let Active {
        guid,
        console,
        watcher,
    } = session;
    console.end().await;
    let reason = tokio::time::timeout(Duration::from_secs(10), watcher)
        .await
        .ok()
        .and_then(Result::ok)
        .unwrap_or_else(|| "ended".to_owned());
    ctx.out.emit(
        &ConsoleLine::Ended {
            session: guid,
            reason: reason.clone(),
        },
        format!("Session {guid} ended: {reason}"),
    );
    ctx.page.attach(None);
}
