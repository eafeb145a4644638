//! `vigil demo`: a whole support session on this machine. It starts a
//! gateway, a technician console and an end user's applet as child
//! processes on 127.0.0.1, with a CRM webhook receiver (`vigil webhook
//! receive`, a child process too) that the gateway posts the session to;
//! runs a short scripted session, prints a summary, and leaves the data
//! directory for `vigil audit query` and `verify`.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};

use anyhow::{bail, Context, Result};
use audit_db::accounts::{Group, Role};
use audit_db::{Accounts, AuditLog, Filter, Permission, Source};
use futures::TryStreamExt;
use gateway::admin::Admin;
use session_core::lines::{AppletLine, ConsoleLine};

const GROUP: &str = "demo";
const TECHNICIAN: &str = "demo.technician@example.com";
const ADMIN: &str = "demo.admin@example.com";

/// Runs the demo session against the audit log of `data`.
pub async fn run(log: &AuditLog, data: &Path) -> Result<ExitCode> {
    let work = data.join("demo");
    std::fs::create_dir_all(&work).with_context(|| format!("creating {}", work.display()))?;
    // With an X display (scripts/run starts one), the technician views and
    // records the end user's screen, and the recording is converted to MP4.
    let display = std::env::var("DISPLAY").ok().filter(|d| !d.is_empty());
    let (password, admin_password) = prepare_accounts(log, &work, display.is_some()).await?;
    let exe = std::env::current_exe().context("finding the vigil executable")?;

    println!("== starting a CRM webhook receiver (child process)");
    let mut receiver = spawn(
        &exe,
        None,
        &["webhook", "receive", "--listen", "127.0.0.1:0"],
    )?;
    let mut posts = BufReader::new(receiver.stdout.take().context("receiver stdout")?).lines();
    let receiver_addr = loop {
        let line = posts
            .next()
            .context("the receiver exited before listening")??;
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_owned();
        }
    };
    let secret = demo_endpoint(log, &format!("http://{receiver_addr}/crm")).await?;
    println!("   posts go to http://{receiver_addr}/crm");
    let (post_tx, post_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in posts.map_while(Result::ok) {
            if post_tx.send(line).is_err() {
                break;
            }
        }
    });

    println!("== starting the gateway (child process)");
    let mut gateway = spawn(
        &exe,
        Some(data),
        &[
            "gateway",
            "--listen",
            "127.0.0.1:0",
            "--drain-timeout",
            "5s",
        ],
    )?;
    let mut gateway_out = BufReader::new(gateway.stdout.take().context("gateway stdout")?).lines();
    let addr = loop {
        let line = gateway_out
            .next()
            .context("the gateway exited before listening")??;
        println!("   {line}");
        if let Some(addr) = line.strip_prefix("listening on ") {
            break addr.to_owned();
        }
    };
    let outcome = session(&exe, data, &work, &addr, &password, display.as_deref()).await;
    // The gateway posts the session's end within moments; wait for it
    // before stopping the gateway (it would be delivered at its next start).
    let post = outcome.as_ref().ok().and_then(|_| {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        std::iter::from_fn(|| {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            post_rx.recv_timeout(left).ok()
        })
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(&line).ok())
        .find(|p| p["type"] == "session.ended")
    });
    stop(&mut gateway)?;
    stop(&mut receiver)?;
    let (console, applet) = outcome?;
    let guid = summary(log, data, &console, &applet).await?;
    webhook_summary(post.as_ref(), &secret)?;
    sessions_report(&exe, data, &guid)?;
    recording_summary(log, &guid, &work).await?;
    println!("== web portal");
    println!("start it:           vigil --data {} web", data.display());
    println!(
        "open:               https://127.0.0.1:8443 (the certificate is the development CA's: {})",
        data.join("tls/ca.pem").display()
    );
    println!(
        "log in as:          {ADMIN} with the password in {} (new each run)",
        admin_password.display()
    );
    Ok(ExitCode::SUCCESS)
}

/// The recording the console made (with a display), converted to MP4.
async fn recording_summary(log: &AuditLog, guid: &str, work: &Path) -> Result<()> {
    println!("== recording");
    let filter = Filter {
        session: guid.parse().ok(),
        kind: Some("recording.stopped".into()),
        ..Filter::default()
    };
    let stopped: Vec<_> = log.query(filter).try_collect().await?;
    let Some(Ok(Some(audit_db::EventKind::RecordingStopped(r)))) =
        stopped.first().map(|e| e.decode())
    else {
        println!("none:               no X display (DISPLAY unset); scripts/run provides one");
        return Ok(());
    };
    let (path, size, sha256) = (r.path, r.size, r.sha256);
    let mp4 = work.join("recording.mp4");
    let options = converter::Options {
        force: true,
        ..converter::Options::default()
    };
    let converted = converter::convert(Path::new(&path), &mp4, &options, |_, _| true)
        .with_context(|| format!("converting {path}"))?;
    println!("recording:          {path} ({size} bytes, sha256 {sha256})");
    println!(
        "as MP4:             {} ({:.1} s of video)",
        mp4.display(),
        converted.duration_us as f64 / 1e6
    );
    Ok(())
}

/// The demo session's `sessions` report as HTML in the data directory,
/// made by `vigil report` like any other (and so audited like any other).
fn sessions_report(exe: &Path, data: &Path, guid: &str) -> Result<()> {
    let out = data.join("demo").join("sessions-report.html");
    let status = Command::new(exe)
        .arg("--data")
        .arg(data)
        .args([
            "report",
            "sessions",
            "--session",
            guid,
            "--format",
            "html",
            "--force",
            "-o",
        ])
        .arg(&out)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .context("running vigil report")?;
    if !status.success() {
        bail!("vigil report sessions failed ({status})");
    }
    println!("== compliance report");
    println!("sessions report:    {}", out.display());
    Ok(())
}

/// Description of the demo's endpoint: each run replaces the last one's.
const DEMO_ENDPOINT: &str = "vigil demo receiver";

/// The demo's webhook endpoint (any earlier demo's removed); its secret.
async fn demo_endpoint(log: &AuditLog, url: &str) -> Result<webhook::sign::Secret> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let admin = webhook::admin::EndpointAdmin::new(
        log.clone(),
        &format!("vigil-demo@{host}"),
        Source::cli(&host),
    );
    for old in admin.hooks().endpoints().await? {
        if old.description == DEMO_ENDPOINT {
            admin.remove(&old.id).await?;
        }
    }
    let endpoint = admin
        .add(webhook::admin::NewEndpoint {
            url: url.to_owned(),
            groups: vec![GROUP.to_owned()],
            allow_private: true,
            allow_http: true,
            description: DEMO_ENDPOINT.to_owned(),
            ..Default::default()
        })
        .await?;
    webhook::sign::Secret::parse(&endpoint.secret).context("the endpoint's secret")
}

/// What the receiver got, and whether its signature verifies.
fn webhook_summary(post: Option<&serde_json::Value>, secret: &webhook::sign::Secret) -> Result<()> {
    let Some(post) = post else {
        bail!("the webhook receiver got no session.ended post within 30 s");
    };
    let text = |k: &str| post[k].as_str().unwrap_or_default().to_owned();
    let body = text("body");
    let timestamp: i64 = text("timestamp").parse().unwrap_or_default();
    let verified = webhook::sign::verify(
        secret,
        &text("webhook_id"),
        timestamp,
        body.as_bytes(),
        &text("signature"),
    );
    let parsed: serde_json::Value = serde_json::from_str(&body).unwrap_or_default();
    let data = &parsed["data"];
    println!("== CRM webhook");
    println!(
        "received:           session.ended, webhook-id {}, {} chat lines, {} files, audit seq {}..{}",
        text("webhook_id"),
        data["chat"].as_array().map_or(0, Vec::len),
        data["files"].as_array().map_or(0, Vec::len),
        data["audit"]["first_seq"],
        data["audit"]["last_seq"],
    );
    if !verified {
        bail!("the session.ended post's signature does not verify");
    }
    println!("signature:          verified (Standard Webhooks v1, HMAC-SHA256)");
    Ok(())
}

/// The demo group, its technician and the portal's administrator, each with
/// a new random password each run; returns their password files.
async fn prepare_accounts(log: &AuditLog, work: &Path, record: bool) -> Result<(PathBuf, PathBuf)> {
    let host = gethostname::gethostname().to_string_lossy().into_owned();
    let admin = Admin::new(
        log.clone(),
        &format!("vigil-demo@{host}"),
        Source::cli(&host),
    );
    let accounts = Accounts::new(log.store().clone());
    let mut permissions = vec![
        Permission::SendFiles,
        Permission::ReceiveFiles,
        Permission::SystemInformation,
    ];
    if record {
        permissions.push(Permission::DesktopView);
    }
    let group = Group {
        name: GROUP.into(),
        permissions,
        ip_allow: vec!["127.0.0.0/8".into()],
        single_prompt: false,
        force_recording: false,
        store_chat: true,
    };
    match accounts.group(GROUP).await? {
        None => admin.add_group(&group).await?,
        Some(old) if old != group => admin.update_group(&group).await?,
        Some(_) => {}
    }
    let technician = account(&admin, &accounts, TECHNICIAN, Role::Technician, work).await?;
    let administrator = account(&admin, &accounts, ADMIN, Role::Admin, work).await?;
    Ok((technician, administrator))
}

/// The demo account `email` in group `demo` with `role`, and a new random
/// password each run, written to a 0600 file in `work`; returns the file.
async fn account(
    admin: &Admin,
    accounts: &Accounts,
    email: &str,
    role: Role,
    work: &Path,
) -> Result<PathBuf> {
    let mut random = [0u8; 12];
    getrandom::fill(&mut random).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let password = format!("{} {}", role.as_str(), hex::encode(random));
    if accounts.technician(email).await?.is_none() {
        admin.add_user(email, GROUP, role, &password, false).await?;
    } else {
        admin.set_password(email, &password, false).await?;
        admin.unlock(email).await?;
    }
    let file = work.join(format!("{}-password", role.as_str()));
    write_private(&file, &password)?;
    Ok(file)
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    writeln!(f, "{text}")?;
    Ok(())
}

/// `vigil [--data DATA] ARGS` (clients keep no data directory).
fn spawn(exe: &Path, data: Option<&Path>, args: &[&str]) -> Result<Child> {
    let mut command = Command::new(exe);
    if let Some(data) = data {
        command.arg("--data").arg(data);
    }
    command
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .with_context(|| format!("starting vigil {}", args[0]))
}

/// Runs the console and the applet; returns their JSON lines.
async fn session(
    exe: &Path,
    data: &Path,
    work: &Path,
    addr: &str,
    password: &Path,
    display: Option<&str>,
) -> Result<(Vec<ConsoleLine>, Vec<AppletLine>)> {
    let ca = data.join("tls/ca.pem");
    let to_user = work.join("printer-fix.txt");
    std::fs::write(
        &to_user,
        "Printer driver settings: port=USB001, duplex=off\n",
    )?;
    let from_user = work.join("end-user-spool.log");
    std::fs::write(&from_user, "spooler: job 42 stuck (offline)\n")?;
    let script = work.join("console-script");
    // With a display: the screen is viewed and recorded for a few seconds,
    // the chat, files and permissions falling in between (markers on its timeline).
    let (view, pause) = match display {
        Some(_) => ("/view\n/record on\n/wait 2\n", "/wait 2\n"),
        None => ("", ""),
    };
    std::fs::write(
        &script,
        format!(
            "/new\n/pick\n{view}Hello, this is Vigil support. I will send you a settings file.\n{pause}/ask remote_control\n/send {}\n{pause}/get {}\n{pause}/end\n",
            to_user.display(),
            from_user.display()
        ),
    )?;
    let (ca, script, password) = (path_str(&ca)?, path_str(&script)?, path_str(password)?);
    let console_dl = work.join("console-downloads");
    let applet_dl = work.join("applet-downloads");

    println!("== technician console (child process): logging in, creating a session");
    let spool = work.join("console-spool.jsonl");
    let recordings = work.join("recordings");
    let mut console_args = vec![
        "console",
        "--gateway",
        addr,
        "--ca",
        ca,
        "--user",
        TECHNICIAN,
        "--password-file",
        password,
        "--script",
        script,
        "--json",
        "--download-dir",
        path_str(&console_dl)?,
        "--spool",
        path_str(&spool)?,
    ];
    if display.is_some() {
        console_args.extend(["--record", path_str(&recordings)?]);
    }
    let mut console = spawn(exe, None, &console_args)?;
    drop(console.stdin.take());
    let mut console_lines =
        BufReader::new(console.stdout.take().context("console stdout")?).lines();
    let mut console_out = Vec::new();
    let pin = loop {
        let line = console_lines
            .next()
            .context("the console exited before creating a session")??;
        let v: ConsoleLine =
            serde_json::from_str(&line).with_context(|| format!("console said {line:?}"))?;
        console_out.push(v.clone());
        match v {
            ConsoleLine::SessionCreated { pin, .. } => break pin,
            ConsoleLine::Error { message } => bail!("the console failed: {message}"),
            _ => {}
        }
    };
    println!("   session created; PIN {pin}");
    let rest = std::thread::spawn(move || console_lines.map_while(Result::ok).collect::<Vec<_>>());

    println!(
        "== end user's applet (child process): joining with the PIN, consenting to what is asked"
    );
    let mut applet_args = vec![
        "applet",
        "--gateway",
        addr,
        "--ca",
        ca,
        "--pin",
        &pin,
        "--consent",
        "grant-all",
        "--json",
        "--download-dir",
        path_str(&applet_dl)?,
    ];
    if let Some(display) = display {
        applet_args.extend(["--display", display]);
    }
    let mut applet = spawn(exe, None, &applet_args)?;
    if let Some(mut stdin) = applet.stdin.take() {
        writeln!(stdin, "Thanks! My printer says it is offline.")?;
    }
    let applet_output = tokio::task::spawn_blocking(move || applet.wait_with_output()).await??;
    let console_status = tokio::task::spawn_blocking(move || console.wait()).await??;
    console_out.extend(
        rest.join()
            .unwrap_or_default()
            .iter()
            .filter_map(|l| serde_json::from_str(l).ok()),
    );
    let applet_out: Vec<AppletLine> = String::from_utf8_lossy(&applet_output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    if !console_status.success() || !applet_output.status.success() {
        bail!(
            "the console or the applet failed (console {console_status}, applet {})",
            applet_output.status
        );
    }
    Ok((console_out, applet_out))
}

fn path_str(p: &Path) -> Result<&str> {
    p.to_str()
        .with_context(|| format!("{} is not valid UTF-8", p.display()))
}

/// SIGTERM, then wait: the gateway ends what is left and flushes the log.
fn stop(gateway: &mut Child) -> Result<()> {
    let pid = gateway.id().to_string();
    let sent = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .context("running kill")?;
    if !sent.success() {
        gateway.kill().ok();
    }
    let status = gateway.wait()?;
    if !status.success() {
        bail!("the gateway exited with {status}");
    }
    Ok(())
}

/// Prints the session's summary; returns its GUID.
async fn summary(
    log: &AuditLog,
    data: &Path,
    console: &[ConsoleLine],
    applet: &[AppletLine],
) -> Result<String> {
    let (guid, console_sas) = console
        .iter()
        .find_map(|l| match l {
            ConsoleLine::Paired { session, sas } => Some((session.to_string(), sas.as_str())),
            _ => None,
        })
        .unwrap_or_default();
    let applet_sas = applet
        .iter()
        .find_map(|l| match l {
            AppletLine::Paired { sas, .. } => Some(sas.as_str()),
            _ => None,
        })
        .unwrap_or("?");
    println!("== summary");
    println!("session:            {guid}");
    println!("verification code:  technician {console_sas}, end user {applet_sas}");
    let chats = console
        .iter()
        .filter_map(|l| match l {
            // Each side's received lines: its own are echoed too.
            ConsoleLine::Chat { from, text } if from == "end_user" => Some((from, text)),
            _ => None,
        })
        .chain(applet.iter().filter_map(|l| match l {
            AppletLine::Chat { from, text } => Some((from, text)),
            _ => None,
        }));
    for (from, text) in chats {
        println!("chat ({from}):  {text}");
    }
    for line in console {
        match line {
            ConsoleLine::Permission {
                permission,
                granted,
                ..
            } => println!(
                "permission:         {permission} {}",
                if *granted { "granted" } else { "denied" }
            ),
            ConsoleLine::File {
                action,
                name,
                size,
                md5,
                sha256,
                ..
            } => println!(
                "file ({action}):         {name} {} bytes, MD5 {}, SHA-256 {}",
                size.unwrap_or_default(),
                md5.as_deref().unwrap_or("-"),
                sha256.as_deref().unwrap_or("-")
            ),
            _ => {}
        }
    }
    let session = uuid::Uuid::parse_str(&guid).ok();
    let events: Vec<_> = log
        .query(Filter {
            session,
            ..Filter::default()
        })
        .try_collect()
        .await?;
    println!("audit events of the session: {}", events.len());
    for e in &events {
        println!("  seq {:>5}  {:<22} {}", e.seq, e.kind, e.actor);
    }
    println!(
        "inspect: vigil --data {} audit query --session {guid}",
        data.display()
    );
    println!("verify:  vigil --data {} audit verify", data.display());
    Ok(guid)
}
