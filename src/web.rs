//! `vigil web`: the portal on its own (or, through `bind`, beside the
//! gateway in `vigil gateway --web`), with the gateway's certificate
//! machinery, accounts and login rules.

use std::net::SocketAddr;
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use audit_db::{Accounts, AuditLog, Source};
use gateway::auth::Policy;
use gateway::login::Gatekeeper;
use protocol::tls;
use web::{Portal, PortalConfig};

use crate::cli::{PortalArgs, WebArgs};

/// This machine's name, as events' sources name it.
pub fn host() -> String {
    gethostname::gethostname().to_string_lossy().into_owned()
}

/// Binds the portal on `listen` with `tls`, its logins under the stored policy.
pub async fn bind(
    log: &AuditLog,
    data_dir: &Path,
    listen: SocketAddr,
    args: &PortalArgs,
    tls: Arc<tokio_rustls::rustls::ServerConfig>,
) -> Result<Portal> {
    let host = host();
    let policy = Policy::load(&Accounts::new(log.store().clone())).await?;
    policy.check()?;
    let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
    let gate = Gatekeeper::start(log.clone(), policy, cores, 32 * cores, Source::web(&host))
        .await
        .context("starting the password checks")?;
    let config = PortalConfig {
        listen,
        host,
        recordings: args.recordings.clone(),
        checkpoints: Some(data_dir.join(audit_db::checkpoint::CHECKPOINT_DIR)),
    };
    Ok(Portal::bind(config, tls, log.clone(), gate).await?)
}

/// Runs the portal until SIGINT or SIGTERM.
pub async fn run(log: &AuditLog, data_dir: &Path, args: WebArgs) -> Result<ExitCode> {
    let identity = crate::gateway::identity(data_dir, &args.identity, &host())?;
    let portal = bind(
        log,
        data_dir,
        args.listen,
        &args.portal,
        tls::server_config(identity)?,
    )
    .await?;
    let signal = crate::gateway::shutdown_signal()?;
    // Tests and scripts wait for this line: the socket is bound when it appears.
    println!("portal on https://{}", portal.local_addr());
    let stop = tokio_util::sync::CancellationToken::new();
    let stopper = stop.clone();
    tokio::spawn(async move {
        signal.await;
        stopper.cancel();
    });
    portal.run(stop).await;
    println!("portal stopped");
    Ok(ExitCode::SUCCESS)
}
