//! `vigil gateway`: wires the TLS identity, the audit log and the gateway
//! engine together, and turns SIGINT/SIGTERM into a graceful stop.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, Result};
use audit_db::AuditLog;
use gateway::{Gateway, GatewayConfig};
use protocol::tls::{self, DevCertificates, Identity};

use crate::cli::{GatewayArgs, IdentityArgs};

/// Runs the gateway until SIGINT or SIGTERM.
pub async fn run(log: &AuditLog, data_dir: &Path, args: GatewayArgs) -> Result<ExitCode> {
    let host = crate::web::host();
    let identity = identity(data_dir, &args.identity, &host)?;
    let tls_config = tls::server_config(identity)?;
    // Read (or made) before anything is served: a key that cannot sign stops the start.
    let key = crate::audit::log_key(&args.log_key.path(data_dir))?;
    let name = args.name.as_deref().unwrap_or(&host);
    let mut config = GatewayConfig::new(args.listen, name);
    config.handshake_timeout = args.handshake_timeout;
    config.drain_timeout = args.drain_timeout;
    config.relay_capture = args.relay_capture;
    let gateway = Gateway::bind(config, tls_config.clone(), log.clone()).await?;
    let portal = match args.web {
        Some(listen) => {
            Some(crate::web::bind(log, data_dir, listen, &args.portal, tls_config).await?)
        }
        None => None,
    };
    // Before the line below: a SIGTERM sent as soon as it appears must
    // stop the gateway cleanly, not kill it.
    let stop = shutdown_signal()?;
    if let Some(p) = &portal {
        println!("portal on https://{}", p.local_addr());
    }
    // Tests and scripts wait for this line: the socket is bound when it
    // appears (and the portal's, printed before it).
    println!("listening on {}", gateway.local_addr());
    // Cancelled once the gateway has stopped: the background tasks finish.
    let stopping = tokio_util::sync::CancellationToken::new();
    let portal = portal.map(|p| tokio::spawn(p.run(stopping.clone())));
    let worker = (!args.no_webhooks).then(|| crate::webhooks::start_worker(log, stopping.clone()));
    let checkpoints = tokio::spawn(audit_db::checkpoint::keep_writing(
        log.store().clone(),
        key,
        data_dir.join(audit_db::checkpoint::CHECKPOINT_DIR),
        args.checkpoint_every,
        stopping.clone().cancelled_owned(),
    ));
    let retention = match args.retention_every.0 {
        Some(every) => {
            let log = log.clone();
            let key = crate::audit::log_key(&args.log_key.path(data_dir))?;
            let archive_dir = args.archive.dir(data_dir)?;
            let stop = stopping.clone().cancelled_owned();
            Some(tokio::spawn(async move {
                let runner = retention::run::Runner {
                    log: &log,
                    key: &key,
                    actor: audit_db::Actor::system("retention"),
                    source: audit_db::Source::gateway(),
                };
                retention::run::keep_running(runner, archive_dir, every, stop).await;
            }))
        }
        None => None,
    };
    let report = gateway.run(stop).await;
    stopping.cancel();
    if let Some(portal) = portal {
        let _ = portal.await;
    }
    if let Some(retention) = retention {
        let _ = retention.await;
    }
    if let Some(worker) = worker {
        let _ = worker.await;
    }
    // The last checkpoint covers every event this run appended.
    let _ = checkpoints.await;
    if report.sessions_cut {
        eprintln!("vigil: sessions still live after the drain time were ended");
    }
    println!("gateway stopped after {} connections", report.connections);
    Ok(ExitCode::SUCCESS)
}

/// The server certificate: the given one, or the development CA's (made
/// once in the data directory, its fingerprint printed for clients to pin).
pub fn identity(data_dir: &Path, args: &IdentityArgs, host: &str) -> Result<Identity> {
    Ok(match (&args.cert, &args.key) {
        (Some(cert), Some(key)) => Identity::load(cert, key)?,
        _ => {
            let mut names = args.dev_names.clone();
            names.push(host.to_owned());
            let dev = DevCertificates::load_or_create(data_dir, &names)
                .context("preparing the development certificates")?;
            println!("CA certificate: {}", dev.ca_path.display());
            println!("CA fingerprint (SHA-256): {}", dev.ca_fingerprint);
            dev.identity
        }
    })
}

/// Resolves on the first SIGINT or SIGTERM.
pub fn shutdown_signal() -> Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}
