//! `vigil admin ...`.

use std::io::Write;
use std::process::ExitCode;

use anyhow::{Context, Result};
use audit_db::accounts::Group;
use audit_db::event::AdminNote;
use audit_db::{Accounts, Actor, AuditLog, EventKind, NewEvent, Source};
use gateway::admin::Admin;
use gateway::auth::Policy;

use crate::cli::{
    AsAdmin, GroupCommand, GroupSettings, PasswordSource, PolicyCommand, PolicySettings,
    UserCommand,
};
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

/// The first `n` lines of stdin, without their line ends (missing lines are empty).
pub fn stdin_lines(n: usize) -> std::io::Result<Vec<String>> {
    use std::io::BufRead;
    let mut lines = Vec::with_capacity(n);
    let stdin = std::io::stdin();
    let mut stdin = stdin.lock();
    for _ in 0..n {
        let mut line = String::new();
        stdin.read_line(&mut line)?;
        lines.push(line.trim_end_matches(['\n', '\r']).to_owned());
    }
    Ok(lines)
}

/// The first line of a file (a password file), without its line end.
pub fn first_line(path: &std::path::Path) -> Result<String> {
    Ok(std::fs::read_to_string(path)
        .with_context(|| format!("reading {}", path.display()))?
        .lines()
        .next()
        .unwrap_or_default()
        .to_owned())
}

fn read_password(source: &PasswordSource) -> Result<String> {
    let password = match &source.password_file {
        Some(path) => first_line(path)?,
        None => stdin_lines(1)
            .context("reading the password from stdin")?
            .remove(0),
    };
    if password.is_empty() {
        anyhow::bail!("no password given (stdin or --password-file, first line)");
    }
    Ok(password)
}

/// The administrator a change is recorded under, and where it came from.
pub fn acting(by: &AsAdmin) -> (String, Source) {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let name = by.admin.clone().unwrap_or_else(|| local_user(&host));
    (name, Source::cli(&host))
}

fn admin_for(log: &AuditLog, by: &AsAdmin) -> Admin {
    let (name, source) = acting(by);
    Admin::new(log.clone(), &name, source)
}

/// `vigil admin user ...`
pub async fn user(log: &AuditLog, command: UserCommand) -> Result<ExitCode> {
    match command {
        UserCommand::Add {
            email,
            group,
            role,
            must_change,
            password,
            by,
        } => {
            let password = read_password(&password)?;
            admin_for(log, &by)
                .add_user(&email, &group, role, &password, must_change)
                .await?;
            println!(
                "user {} added to group {group}",
                email.trim().to_lowercase()
            );
        }
        UserCommand::Passwd {
            email,
            must_change,
            password,
            by,
        } => {
            let password = read_password(&password)?;
            admin_for(log, &by)
                .set_password(&email, &password, must_change)
                .await?;
            println!("password of {email} set");
        }
        UserCommand::Unlock { email, by } => {
            let was_locked = admin_for(log, &by).unlock(&email).await?;
            println!(
                "{email} {}",
                if was_locked {
                    "unlocked"
                } else {
                    "was not locked; failure count cleared"
                }
            );
        }
        UserCommand::Disable { email, by } => {
            admin_for(log, &by).set_disabled(&email, true).await?;
            println!("{email} disabled");
        }
        UserCommand::Enable { email, by } => {
            admin_for(log, &by).set_disabled(&email, false).await?;
            println!("{email} enabled");
        }
        UserCommand::Move {
            email,
            group,
            role,
            by,
        } => {
            admin_for(log, &by).set_group(&email, &group, role).await?;
            println!("{email} moved to group {group}");
        }
        UserCommand::List { json } => {
            let users = Accounts::new(log.store().clone()).technicians().await?;
            let now = audit_db::time_us::now();
            let mut out = std::io::stdout().lock();
            for u in users {
                let locked = u.locked_until_us.is_some_and(|t| t > now);
                if json {
                    let mut v = serde_json::to_value(&u)?;
                    v["locked"] = locked.into();
                    writeln!(out, "{v}")?;
                } else {
                    let state = if u.disabled {
                        "disabled"
                    } else if locked {
                        "locked"
                    } else {
                        "active"
                    };
                    writeln!(
                        out,
                        "{:<32} {:<16} {:<10} {:<8} failed={}{}",
                        u.email,
                        u.group,
                        u.role.as_str(),
                        state,
                        u.failed_logins,
                        if u.must_change { " must-change" } else { "" }
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// `vigil admin group ...`
pub async fn group(log: &AuditLog, command: GroupCommand) -> Result<ExitCode> {
    match command {
        GroupCommand::Add { name, settings, by } => {
            let mut group = Group {
                name: name.clone(),
                permissions: Vec::new(),
                ip_allow: Vec::new(),
                single_prompt: false,
                force_recording: false,
                store_chat: true,
            };
            apply(&mut group, settings);
            admin_for(log, &by).add_group(&group).await?;
            println!("group {name} added");
        }
        GroupCommand::Set { name, settings, by } => {
            let accounts = Accounts::new(log.store().clone());
            let mut group = accounts
                .group(&name)
                .await?
                .with_context(|| format!("no group {name:?}"))?;
            apply(&mut group, settings);
            admin_for(log, &by).update_group(&group).await?;
            println!("group {name} updated");
        }
        GroupCommand::List { json } => {
            let groups = Accounts::new(log.store().clone()).groups().await?;
            let mut out = std::io::stdout().lock();
            for g in groups {
                if json {
                    writeln!(out, "{}", serde_json::to_string(&g)?)?;
                } else {
                    let permissions: Vec<_> = g.permissions.iter().map(|p| p.as_str()).collect();
                    writeln!(
                        out,
                        "{:<16} permissions={} allow={} single_prompt={} force_recording={} store_chat={}",
                        g.name,
                        if permissions.is_empty() {
                            "none".to_owned()
                        } else {
                            permissions.join(",")
                        },
                        if g.ip_allow.is_empty() {
                            "any".to_owned()
                        } else {
                            g.ip_allow.join(",")
                        },
                        g.single_prompt,
                        g.force_recording,
                        g.store_chat
                    )?;
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn apply(group: &mut Group, s: GroupSettings) {
    if let Some(p) = s.permissions {
        group.permissions = p.0;
    }
    if let Some(n) = s.allow_ip {
        group.ip_allow = n.0;
    }
    if let Some(b) = s.single_prompt {
        group.single_prompt = b;
    }
    if let Some(b) = s.force_recording {
        group.force_recording = b;
    }
    if let Some(b) = s.store_chat {
        group.store_chat = b;
    }
}

/// Copies the given options into `policy`. Durations are whole seconds;
/// ranges are checked by [`Policy::check`] when it is stored.
fn apply_policy(policy: &mut Policy, set: &PolicySettings) {
    let secs = |d: std::time::Duration| d.as_secs();
    let PolicySettings {
        min_password_length,
        password_max_age,
        lockout_threshold,
        lockout,
        ip_failure_limit,
        ip_window,
        idle_timeout,
        pin_ttl,
        pin_failure_limit,
        pin_window,
        pin_guess_budget,
        pin_gateway_limit,
        by: _,
    } = set;
    let set_if = |target: &mut u64, value: &Option<std::time::Duration>| {
        if let Some(d) = value {
            *target = secs(*d);
        }
    };
    if let Some(v) = min_password_length {
        policy.min_password_length = *v;
    }
    if let Some(v) = password_max_age {
        policy.password_max_age_days = v.0;
    }
    if let Some(v) = lockout_threshold {
        policy.lockout_threshold = *v;
    }
    if let Some(v) = lockout {
        policy.lockout_s = v.0.map(secs);
    }
    if let Some(v) = ip_failure_limit {
        policy.ip_failure_limit = *v;
    }
    set_if(&mut policy.ip_window_s, ip_window);
    set_if(&mut policy.idle_timeout_s, idle_timeout);
    set_if(&mut policy.pin_ttl_s, pin_ttl);
    if let Some(v) = pin_failure_limit {
        policy.pin_failure_limit = *v;
    }
    set_if(&mut policy.pin_window_s, pin_window);
    if let Some(v) = pin_guess_budget {
        policy.pin_guess_budget = *v;
    }
    if let Some(v) = pin_gateway_limit {
        policy.pin_gateway_limit = *v;
    }
}

/// `vigil admin policy ...`
pub async fn policy(log: &AuditLog, command: PolicyCommand) -> Result<ExitCode> {
    let accounts = Accounts::new(log.store().clone());
    let mut policy = Policy::load(&accounts).await?;
    match command {
        PolicyCommand::Show => {}
        PolicyCommand::Set(set) => {
            apply_policy(&mut policy, &set);
            admin_for(log, &set.by).set_policy(&policy).await?;
        }
    }
    println!("{}", serde_json::to_string_pretty(&policy)?);
    Ok(ExitCode::SUCCESS)
}
