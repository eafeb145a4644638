//! The `vigil` command: parses arguments and wires the crates together.
#![forbid(unsafe_code)]

mod admin;
mod applet;
mod audit;
mod cli;
mod console;
mod convert;
mod demo;
mod gateway;
mod logging;
mod login;
mod output;
mod page;
mod progress;
mod recording;
mod report;
mod retention;
mod web;
mod webhooks;

use std::process::ExitCode;

/// mimalloc rather than the system allocator: listings and reports make
/// and drop a few small strings per event, millions of times, and glibc's
/// malloc and free were a fifth of a report's time (measured).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

use anyhow::{Context, Result};
use audit_db::{AuditLog, OpenMode};
use cli::{
    AdminCommand, AuditCommand, Cli, Command, RecordingCommand, RetentionCommand, WebhookCommand,
};

/// Exit status for an operational failure (as opposed to 1, a broken chain).
const EXIT_ERROR: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::from_env();
    logging::init(cli.verbose);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(&anyhow::Error::from(e)),
    };
    let outcome = runtime.block_on(run(cli));
    // A blocking read of stdin (the applet's, the console's) never returns
    // while the terminal stays open; dropping the runtime would wait for it
    // for ever. The command's work is done: what is left is let go.
    runtime.shutdown_timeout(std::time::Duration::from_millis(200));
    match outcome {
        Ok(code) => code,
        Err(e) => fail(&e),
    }
}

async fn run(cli: Cli) -> Result<ExitCode> {
    if let Some(client) = cli.keeps_no_data() {
        if cli.data.is_some() || cli.db.is_some() {
            anyhow::bail!(
                "--data and --db mean nothing to `vigil {client}`: it keeps no audit log"
            );
        }
    }
    let url = cli.db_url()?;
    let data_dir = cli.data_dir();
    let cli_db = cli.db.clone();
    match cli.command {
        // A client: no database of its own.
        Command::Login(args) => login::run(args).await,
        Command::Console(args) => console::run(args).await,
        Command::Applet(args) => applet::run(args).await,
        Command::Demo => {
            with_log(&url, OpenMode::Create, |log| async move {
                demo::run(&log, &data_dir).await
            })
            .await
        }
        Command::Web(args) => {
            with_log(&url, OpenMode::Create, |log| async move {
                web::run(&log, &data_dir, args).await
            })
            .await
        }
        Command::Gateway(args) => {
            with_log(&url, OpenMode::Create, |log| async move {
                gateway::run(&log, &data_dir, args).await
            })
            .await
        }
        // Neither needs the log: the key is a file, a proof checks itself.
        Command::Audit(AuditCommand::Key { log_key }) => audit::key(&log_key.path(&data_dir)),
        Command::Audit(AuditCommand::VerifyProof { file, key }) => audit::verify_proof(&file, &key),
        Command::Audit(command) => {
            with_log(&url, OpenMode::ReadOnly, |log| async move {
                match command {
                    AuditCommand::Verify {
                        anchor,
                        checkpoint,
                        key,
                        log_key,
                        json,
                    } => {
                        let args = audit::VerifyArgs {
                            anchor,
                            checkpoints: checkpoint,
                            key,
                            key_path: log_key.path(&data_dir),
                            json,
                        };
                        audit::verify(&log, args).await
                    }
                    AuditCommand::Query(args) => audit::query(&log, args).await,
                    AuditCommand::Checkpoint { output, log_key } => {
                        audit::checkpoint(&log, &log_key.path(&data_dir), output.as_deref()).await
                    }
                    AuditCommand::Prove {
                        seq,
                        size,
                        checkpoint,
                        output,
                        log_key,
                    } => {
                        let key = log_key.path(&data_dir);
                        audit::prove(
                            &log,
                            &key,
                            seq,
                            size,
                            checkpoint.as_deref(),
                            output.as_deref(),
                        )
                        .await
                    }
                    AuditCommand::Key { .. } | AuditCommand::VerifyProof { .. } => {
                        unreachable!("handled without the log above")
                    }
                }
            })
            .await
        }
        Command::Recording(command) => match command {
            RecordingCommand::Encode { size, fps, output } => {
                recording::encode(size, fps, output).await
            }
            RecordingCommand::Info { file, json } => recording::info(&file, json),
            RecordingCommand::Frame {
                file,
                at,
                index,
                output,
                force,
            } => recording::frame(&file, at, index, &output, force),
            RecordingCommand::Repair { file } => recording::repair(&file),
            RecordingCommand::Verify { file, json } => {
                // The audit log is consulted when one is named or the data directory has one.
                if cli.db.is_some() || data_dir.join("audit.db").exists() {
                    with_log(&url, OpenMode::ReadOnly, |log| async move {
                        recording::verify(&file, Some(&log), json).await
                    })
                    .await
                } else {
                    recording::verify(&file, None, json).await
                }
            }
        },
        Command::Convert(args) => convert::run(args).await,
        // Checking a bundle needs no log; with one (named, or the data
        // directory's), its events are checked against it too.
        Command::Report(args)
            if args.report == cli::ReportType::Verify
                && cli.db.is_none()
                && !data_dir.join("audit.db").exists() =>
        {
            report::check(&args)?;
            let bundle = args
                .bundle_to_check
                .as_deref()
                .context("no bundle to check")?;
            report::verify_bundle(bundle, None).await
        }
        Command::Report(args) => {
            report::check(&args)?;
            with_log(&url, OpenMode::Create, |log| async move {
                report::run(&log, args).await
            })
            .await
        }
        // A tool for trying webhooks out: no database of its own.
        Command::Webhook(WebhookCommand::Receive { listen, secret }) => {
            webhooks::receive(listen, secret).await
        }
        Command::Webhook(command) => {
            with_log(&url, OpenMode::Create, |log| async move {
                webhooks::run(&log, command).await
            })
            .await
        }
        Command::Retention(RetentionCommand::Verify { paths, key, json }) => {
            retention::verify(&paths, key.as_deref(), json)
        }
        Command::Retention(RetentionCommand::Restore { paths, key }) => {
            if cli_db.is_none() {
                anyhow::bail!(
                    "name the database to restore into with --db URL: a new one, never the live log"
                );
            }
            retention::restore(&url, &paths, key.as_deref()).await
        }
        Command::Retention(RetentionCommand::Run {
            dry_run,
            as_of,
            archive,
            log_key,
            json,
            bundle_events,
            by,
        }) => {
            let archive_dir = archive.dir(&data_dir)?;
            with_log(&url, OpenMode::Create, |log| async move {
                let (name, source) = admin::acting(&by);
                retention::run(
                    &log,
                    &log_key.path(&data_dir),
                    archive_dir,
                    as_of,
                    dry_run,
                    json,
                    bundle_events,
                    audit_db::Actor::admin(&name),
                    source,
                )
                .await
            })
            .await
        }
        Command::Admin(command) => {
            with_log(&url, OpenMode::Create, |log| async move {
                match command {
                    AdminCommand::Note { text, admin, .. } => admin::note(&log, text, admin).await,
                    AdminCommand::User(c) => admin::user(&log, c).await,
                    AdminCommand::Group(c) => admin::group(&log, c).await,
                    AdminCommand::Policy(c) => admin::policy(&log, c).await,
                    AdminCommand::Webhook(c) => webhooks::admin(&log, c).await,
                    AdminCommand::Retention(c) => retention::admin(&log, c).await,
                    AdminCommand::Hold(c) => retention::hold(&log, c).await,
                    AdminCommand::Erase {
                        session,
                        chat,
                        files,
                        recording,
                        reason,
                        archive,
                        log_key,
                        by,
                    } => {
                        // Nothing named: everything the command can erase.
                        let all = !(chat || files || recording);
                        let request = ::retention::erase::Request {
                            session,
                            chat: chat || all,
                            files: files || all,
                            recording: recording || all,
                            reason,
                        };
                        let (name, source) = admin::acting(&by);
                        retention::erase(
                            &log,
                            &log_key.path(&data_dir),
                            &archive.dir(&data_dir)?,
                            request,
                            audit_db::Actor::admin(&name),
                            source,
                        )
                        .await
                    }
                }
            })
            .await
        }
    }
}

/// Opens the audit database, runs `work` with it, and closes it (flushing
/// every append) whatever the outcome.
async fn with_log<F, Fut>(url: &audit_db::DbUrl, mode: OpenMode, work: F) -> Result<ExitCode>
where
    F: FnOnce(AuditLog) -> Fut,
    Fut: std::future::Future<Output = Result<ExitCode>>,
{
    let log = AuditLog::open(url, mode).await?;
    let result = work(log.clone()).await;
    log.close().await;
    result
}

/// One line on stderr naming the cause, and the error exit status.
fn fail(e: &anyhow::Error) -> ExitCode {
    let message = format!("{e:#}").replace('\n', " ");
    eprintln!("vigil: error: {message}");
    ExitCode::from(EXIT_ERROR)
}
