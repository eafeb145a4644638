//! `vigil admin ...`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use audit_db::event::AdminNote;
use audit_db::{Actor, AuditLog, EventKind, NewEvent, Source};
use futures::{StreamExt, TryStreamExt};
use tokio::io::AsyncBufReadExt;

/// Notes from stdin that may be in flight at once; the writer batches them.
const NOTES_IN_FLIGHT: usize = 256;

/// Appends one note, or one per stdin line with a JSON receipt each.
pub async fn note(log: &AuditLog, text: Option<String>, admin: Option<String>) -> Result<ExitCode> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let actor = Actor::admin(&admin.unwrap_or_else(|| local_user(&host)));
    let source = Source::cli(&host);
    let event = |text: String| {
        NewEvent::now(
            actor.clone(),
            source.clone(),
            EventKind::AdminNote(AdminNote { text }),
        )
    };

    if let Some(text) = text {
        let r = log.append_one(event(text)).await?;
        println!("note appended: seq {} id {} hash {}", r.seq, r.id, r.hash);
        return Ok(ExitCode::SUCCESS);
    }

    let lines = tokio::io::BufReader::new(tokio::io::stdin()).lines();
    let lines = futures::stream::try_unfold(lines, |mut lines| async move {
        Ok::<_, std::io::Error>(lines.next_line().await?.map(|l| (l, lines)))
    });
    let mut receipts = std::pin::pin!(lines
        .map_err(anyhow::Error::from)
        .try_filter(|l| futures::future::ready(!l.trim().is_empty()))
        .map_ok(|l| async { log.append_one(event(l)).await.map_err(anyhow::Error::from) })
        .try_buffered(NOTES_IN_FLIGHT));
    let mut out = std::io::stdout().lock();
    while let Some(r) = receipts.next().await {
        let r = r.context("appending a note from stdin")?;
        writeln!(out, "{}", serde_json::to_string(&r)?)?;
        out.flush()?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `user@host` for the account running the command: from the environment,
/// else the numeric uid (which /proc reports without asking libc).
fn local_user(host: &str) -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .or_else(|| {
            use std::os::unix::fs::MetadataExt;
            std::fs::metadata("/proc/self")
                .ok()
                .map(|m| format!("uid{}", m.uid()))
        })
        .unwrap_or_else(|| "unknown".to_owned());
    format!("{user}@{host}")
}
