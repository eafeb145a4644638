//! The web portal: compliance staff, administrators and technicians find
//! sessions, read their timelines and transcripts, and play recordings in
//! the browser, over HTTPS with the gateway's certificates.
//!
//! Pages are rendered on the server (`pages`); the browser runs two small
//! scripts from `assets/` (the page's controls, and the player, which draws
//! the pictures the server decodes from a `.vrec` file: `player`). Who may
//! see what is decided in one place (`visit`: logins through the gateway's
//! own rules, web sessions, roles, CSRF tokens), and everything a person
//! looks at or takes away is audited first (`access`).
#![forbid(unsafe_code)]

mod access;
mod assets;
mod error;
mod pages;
mod player;
mod serve;
mod visit;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use audit_db::session_index::SessionIndex;
use audit_db::AuditLog;
use gateway::login::Gatekeeper;
use tokio::net::TcpListener;

pub use error::WebError;

/// How the portal runs.
#[derive(Clone, Debug)]
pub struct PortalConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The host name the portal's events name as their source.
    pub host: String,
    /// Directories where recordings may have been moved to (looked up by
    /// file name when the path the log holds has no file).
    pub recordings: Vec<PathBuf>,
    /// The directory of signed checkpoints shown on the integrity page.
    pub checkpoints: Option<PathBuf>,
}

/// What every request handler shares.
pub(crate) struct App {
    config: PortalConfig,
    log: AuditLog,
    gate: Gatekeeper,
    index: SessionIndex,
    /// One catch-up of the sessions index at a time.
    indexing: tokio::sync::Mutex<()>,
    visits: visit::Visits,
    /// Recordings' digests, by path, size and modification time.
    digests: player::Digests,
}

/// A bound, not yet running portal.
pub struct Portal {
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    app: Arc<App>,
}

impl std::fmt::Debug for Portal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Portal")
            .field("listen", &self.local_addr())
            .finish_non_exhaustive()
    }
}

impl Portal {
    /// Binds the socket; logins are checked by `gate`, events go to `log`.
    pub async fn bind(
        config: PortalConfig,
        tls: Arc<rustls::ServerConfig>,
        log: AuditLog,
        gate: Gatekeeper,
    ) -> Result<Self, WebError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| WebError::Listen {
                    addr: config.listen,
                    source,
                })?;
        // Browsers speak HTTP/1.1 over it; the gateway's config offers no ALPN.
        let mut tls = (*tls).clone();
        tls.alpn_protocols = vec![b"http/1.1".to_vec()];
        let idle = gate.policy().idle_timeout();
        let app = App {
            index: SessionIndex::new(log.store().clone()),
            indexing: tokio::sync::Mutex::new(()),
            visits: visit::Visits::new(idle),
            digests: player::Digests::default(),
            config,
            log,
            gate,
        };
        Ok(Self {
            listener,
            tls: Arc::new(tls),
            app: Arc::new(app),
        })
    }

    /// The address actually bound.
    pub fn local_addr(&self) -> SocketAddr {
        self.listener.local_addr().unwrap_or(self.app.config.listen)
    }

    /// Serves until `stop` is cancelled; web sessions left open are
    /// audited as ended by the shutdown.
    pub async fn run(self, stop: tokio_util::sync::CancellationToken) {
        let app = self.app.clone();
        let sweeper = tokio::spawn(visit::sweep(app.clone(), stop.clone()));
        let indexer = tokio::spawn(keep_indexing(app.clone(), stop.clone()));
        serve::serve(self.listener, self.tls, pages::router(app.clone()), stop).await;
        sweeper.abort();
        indexer.abort();
        app.visits.end_all(&app).await;
    }
}

/// Brings the sessions index up to the log, now and every few seconds, so
/// that a page seldom waits for it.
async fn keep_indexing(app: Arc<App>, stop: tokio_util::sync::CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(2));
    loop {
        tokio::select! {
            _ = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        if let Err(e) = app.catch_up().await {
            tracing::warn!("the sessions index could not catch up: {e}");
        }
    }
}

impl App {
    /// Takes the log's new events into the sessions index.
    async fn catch_up(&self) -> Result<u64, audit_db::Error> {
        let _one = self.indexing.lock().await;
        let started = std::time::Instant::now();
        let n = self.index.catch_up().await?;
        if n > 0 {
            tracing::info!(
                "sessions index: {n} events taken in ({:.1} s)",
                started.elapsed().as_secs_f64()
            );
        }
        Ok(n)
    }
}
