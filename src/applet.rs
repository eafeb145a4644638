//! `vigil applet`: the end user's side. Joins by PIN or GUID, shows the
//! verification code, answers consent prompts, and chats on the terminal.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use session_core::inner;
use session_core::lines::AppletLine;
use session_core::session::applet::{
    self, AppletCommand, AppletConfig, AppletEvent, ConsentMode, Prompt,
};
use session_core::session::view::{InputSink, OpenInput, OpenScreen, ScreenSource};
use tokio::sync::mpsc;

use crate::cli::{AppletArgs, ConsentArg};
use crate::output::{stdin_lines, Out};

/// Runs one session as the end user.
pub async fn run(args: AppletArgs) -> Result<ExitCode> {
    let out = Out {
        json: args.json,
        tee: None,
    };
    let connector = crate::login::connector(&args.connect, "vigil applet")?;
    let code = match (&args.pin, args.session) {
        (Some(pin), _) => pin.clone(),
        (None, Some(guid)) => guid.to_string(),
        (None, None) => anyhow::bail!("give --pin N or --session GUID"),
    };
    let waiting = connector
        .join(&code)
        .await
        .context("cannot join the session")?;
    out.emit(
        &AppletLine::Joined {
            session: waiting.guid,
            technician: waiting.technician.clone(),
        },
        format!(
            "Joined. Waiting for {} to start the session...",
            waiting.technician
        ),
    );
    let session = waiting
        .paired()
        .await
        .context("the session did not start")?
        .into_stream();
    let inner = inner::accept(session.stream, &session.credentials)
        .await
        .context("the end-to-end connection to the technician failed")?;
    out.emit(
        &AppletLine::Paired {
            sas: inner.sas.clone(),
            grant: inner.peer.grant.clone(),
        },
        format!(
            "Connected, end to end encrypted. Verification code: {} (the technician sees the same code)\nType to chat; /end ends the session.",
            inner.sas
        ),
    );

    let (prompts_tx, mut prompts) = mpsc::channel::<Prompt>(4);
    let consent = match args.consent {
        ConsentArg::Ask => ConsentMode::Ask(prompts_tx),
        ConsentArg::GrantAll => ConsentMode::GrantAll,
        ConsentArg::DenyAll => ConsentMode::DenyAll,
    };
    let (commands, commands_rx) = mpsc::channel(16);
    let (events_tx, mut events) = mpsc::channel(64);
    let screen = args.display.clone().map(|display| -> OpenScreen {
        Arc::new(move || {
            recorder::x11::X11::open(Some(&display)).map(|x| Box::new(x) as ScreenSource)
        })
    });
    // Input goes to the same display, over a connection of its own.
    let input = args.display.clone().map(|display| -> OpenInput {
        Arc::new(move || {
            recorder::x11::X11Input::open(Some(&display)).map(|x| Box::new(x) as InputSink)
        })
    });
    let config = AppletConfig {
        consent,
        download_dir: args.download_dir.clone(),
        screen,
        fps: args.fps,
        input,
    };
    let mut engine = tokio::spawn(applet::run(
        inner.stream,
        inner.peer,
        config,
        session.reporter,
        commands_rx,
        events_tx,
    ));
    let mut lines = stdin_lines();
    let mut input_open = true;
    let mut pending: Option<Prompt> = None;
    let ended = loop {
        tokio::select! {
            line = lines.recv(), if input_open => match line {
                None => {
                    input_open = false;
                    // Nobody is left to answer: a pending question is a no.
                    if let Some(p) = pending.take() {
                        let _ = p.answer.send(false);
                    }
                }
                Some(line) => {
                    if let Some(p) = pending.take() {
                        let yes = matches!(line.trim().to_lowercase().as_str(), "y" | "yes");
                        let _ = p.answer.send(yes);
                    } else if line.trim() == "/end" {
                        let _ = commands.send(AppletCommand::End).await;
                    } else if !line.trim().is_empty() {
                        let _ = commands.send(AppletCommand::Chat(line)).await;
                    }
                }
            },
            Some(prompt) = prompts.recv() => {
                if input_open {
                    out.emit(
                        &AppletLine::ConsentAsked { permission: prompt.permission, what: prompt.what.clone() },
                        format!("The technician wants to {}. Allow? [y/N]", prompt.what),
                    );
                    pending = Some(prompt);
                } else {
                    let _ = prompt.answer.send(false);
                }
            }
            Some(event) = events.recv() => show(&out, event),
            result = &mut engine => break result,
        }
    };
    let reason = ended.context("the session task failed")??;
    // Show what was still queued (e.g. a file received just before the end).
    while let Ok(event) = events.try_recv() {
        show(&out, event);
    }
    out.emit(
        &AppletLine::Ended {
            reason: reason.clone(),
        },
        format!("Session ended: {reason}"),
    );
    Ok(ExitCode::SUCCESS)
}

fn show(out: &Out, event: AppletEvent) {
    match event {
        AppletEvent::Chat(text) => out.emit(
            &AppletLine::Chat {
                from: "technician".to_owned(),
                text: text.clone(),
            },
            format!("technician: {text}"),
        ),
        AppletEvent::Decided {
            permission,
            what,
            granted,
        } => out.emit(
            &AppletLine::Consent {
                permission,
                what: what.clone(),
                granted,
            },
            format!(
                "{} the technician to {what}",
                if granted { "Allowed" } else { "Did not allow" }
            ),
        ),
        AppletEvent::Received {
            saved_as,
            size,
            sha256,
        } => out.emit(
            &AppletLine::FileReceived {
                saved_as: saved_as.display().to_string(),
                size,
                sha256: sha256.clone(),
            },
            format!(
                "Received {} ({size} bytes, SHA-256 {sha256})",
                saved_as.display()
            ),
        ),
        AppletEvent::Sent { path, size, ok } => out.emit(
            &AppletLine::FileSent {
                path: path.clone(),
                size,
                ok,
            },
            format!("Sent {path} ({size} bytes)"),
        ),
        AppletEvent::FileFailed { name, error } => out.emit(
            &AppletLine::FileFailed {
                name: name.clone(),
                error: error.clone(),
            },
            format!("File {name} failed: {error}"),
        ),
        AppletEvent::Warning(w) => out.emit(
            &AppletLine::Warning { message: w.clone() },
            format!("warning: {w}"),
        ),
    }
}
