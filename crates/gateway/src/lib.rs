//! The gateway: accepts TLS connections from consoles and applets,
//! authenticates technicians, brokers sessions (GUID, PIN, queue, pickup),
//! issues session certificates, and relays the paired links' inner bytes.
//! Beside the engine: the access policy and password rules (`auth`), the
//! login checks every door shares (`login`), the password-checking pool
//! (`hasher`), attempt counting (`throttle`), the
//! session CA (`session_ca`) and account administration (`admin`).
//!
//! Every connection is one task. Its first frames say what it is: `Hello`,
//! then `Login` (a technician's control link), `Join` (an applet) or
//! `Attach` (a console's session link). Anything else closes it.
#![forbid(unsafe_code)]

pub mod admin;
pub mod auth;
pub mod hasher;
pub mod login;
pub mod session_ca;
pub mod throttle;

mod applet;
mod events;
mod registry;
mod relay;
mod technician;

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_db::{Accounts, Actor, AuditLog, EventKind, NewEvent, Source};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_rustls::TlsAcceptor;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use crate::auth::Policy;
use crate::login::Gatekeeper;
use crate::session_ca::SessionCa;
use crate::throttle::Throttle;
use audit_db::event::EndReason;
use protocol::readahead::ReadAhead;
use protocol::wire::{self, ErrorCode, Link, Message};
use registry::Registry;

/// A client link as the gateway holds it.
pub(crate) type ServerLink = Link<ServerTls>;

/// A client connection as the gateway holds it.
pub(crate) type ServerTls = tokio_rustls::server::TlsStream<ReadAhead<TcpStream>>;

/// A console's session link on its way to the applet's task, with what the
/// relay needs from the attach: the address, the token that ends the
/// session, and the group.
pub(crate) struct Attaching {
    pub link: ServerLink,
    pub ip: IpAddr,
    pub end: CancellationToken,
    pub group: audit_db::accounts::Group,
}

impl std::fmt::Debug for Attaching {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Attaching")
            .field("ip", &self.ip)
            .finish_non_exhaustive()
    }
}

/// How the gateway runs (its access policy comes from the database).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The gateway's name, sent to clients and put in the session CA's name.
    pub name: String,
    /// Time a client has from TCP accept to its first request (TLS handshake included).
    pub handshake_timeout: Duration,
    /// Time live sessions get to end by themselves at shutdown.
    pub drain_timeout: Duration,
    /// Time a console has after pickup to attach its session link.
    pub attach_timeout: Duration,
    /// Lifetime of session certificates.
    pub session_cert_ttl: Duration,
    /// Connections served at once; more are closed at accept.
    pub max_connections: usize,
    /// Password checks run at once (each holds 19 MiB while it runs).
    pub hash_workers: usize,
    /// Password checks that may wait for a worker; more are refused as busy.
    pub hash_queue: usize,
    /// Diagnostic: append every relayed `Data` body to
    /// `DIR/<session>.to-applet` / `.to-console`, to show what the relay
    /// sees (the inner TLS records, never plaintext).
    pub relay_capture: Option<std::path::PathBuf>,
}

impl GatewayConfig {
    /// The defaults, listening on `listen`.
    pub fn new(listen: SocketAddr, name: &str) -> Self {
        let cores = std::thread::available_parallelism().map_or(2, |n| n.get());
        Self {
            listen,
            name: name.to_owned(),
            handshake_timeout: Duration::from_secs(10),
            drain_timeout: Duration::from_secs(30),
            attach_timeout: Duration::from_secs(30),
            session_cert_ttl: Duration::from_secs(12 * 3600),
            max_connections: 100_000,
            hash_workers: cores,
            hash_queue: 32 * cores,
            relay_capture: None,
        }
    }
}

/// The gateway could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The listening socket could not be opened.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// The address.
        addr: SocketAddr,
        /// What the system said.
        source: std::io::Error,
    },
    /// The session CA could not be created.
    #[error(transparent)]
    Ca(#[from] crate::session_ca::CaError),
    /// The access policy or accounts could not be read.
    #[error(transparent)]
    Audit(#[from] audit_db::Error),
    /// The stored access policy has a value out of its range.
    #[error("the access policy cannot be used: {0}; fix it with `vigil admin policy set`")]
    Policy(#[from] crate::auth::OutOfRange),
    /// The password hashing threads could not be started, or hashing failed at start-up.
    #[error("password hashing could not start: {0}")]
    Hash(String),
}

/// What the gateway shares between its connection tasks.
#[derive(Debug)]
pub(crate) struct Shared {
    config: GatewayConfig,
    policy: Policy,
    log: AuditLog,
    accounts: Accounts,
    ca: SessionCa,
    registry: Mutex<Registry>,
    /// The login rules (throttle, lockout, hashing pool).
    gate: Gatekeeper,
    pin_throttle: Throttle,
    /// Wrong PINs from all addresses.
    pin_gateway: Throttle<()>,
    /// When the PIN-guessing alarm was last audited.
    pin_alarm: Mutex<Option<Instant>>,
    /// Cancelled when shutdown begins: control links close, nothing new starts.
    stopping: CancellationToken,
}

impl Shared {
    fn registry(&self) -> std::sync::MutexGuard<'_, Registry> {
        // Every registry update is completed before the lock is released
        // (no await inside), so a poisoned lock still holds consistent state.
        self.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends an event seen by the gateway; returns once it is durable.
    async fn audit(
        &self,
        actor: Actor,
        session: Option<Uuid>,
        kind: EventKind,
    ) -> Result<(), audit_db::Error> {
        let mut event = NewEvent::now(actor, Source::gateway(), kind);
        if let Some(guid) = session {
            event = event.in_session(guid);
        }
        self.log.append_one(event).await.map(|_| ())
    }

    /// Like [`Shared::audit`] where nobody is waiting on the outcome: a failure is logged.
    async fn audit_or_log(&self, actor: Actor, session: Option<Uuid>, kind: EventKind) {
        let name = kind.type_name();
        if let Err(e) = self.audit(actor, session, kind).await {
            tracing::error!("could not audit {name}: {e}");
        }
    }
}

/// A bound, not yet running gateway.
pub struct Gateway {
    listener: TcpListener,
    acceptor: TlsAcceptor,
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.local_addr())
            .finish_non_exhaustive()
    }
}

/// Counts from a gateway run, reported at exit.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct RunReport {
    /// Connections accepted.
    pub connections: u64,
    /// Live sessions ended by the gateway because the drain time ran out.
    pub sessions_cut: bool,
}

impl Gateway {
    /// Binds the listening socket and prepares the session CA.
    pub async fn bind(
        config: GatewayConfig,
        tls: Arc<rustls::ServerConfig>,
        log: AuditLog,
    ) -> Result<Self, GatewayError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| GatewayError::Listen {
                    addr: config.listen,
                    source,
                })?;
        let accounts = Accounts::new(log.store().clone());
        let policy = Policy::load(&accounts).await?;
        policy.check()?;
        accounts.forget_pending_logins().await?;
        close_orphans(&log, &config.name).await?;
        let gate = Gatekeeper::start(
            log.clone(),
            policy.clone(),
            config.hash_workers,
            config.hash_queue,
            Source::gateway(),
        )
        .await?;
        let shared = Shared {
            ca: SessionCa::new(&config.name)?,
            gate,
            pin_throttle: Throttle::new(
                policy.pin_failure_limit,
                Duration::from_secs(policy.pin_window_s),
            ),
            pin_gateway: Throttle::new(
                policy.pin_gateway_limit,
                Duration::from_secs(policy.pin_window_s),
            ),
            pin_alarm: Mutex::new(None),
            registry: Mutex::new(Registry::new(policy.pin_guess_budget)),
            stopping: CancellationToken::new(),
            policy,
            accounts,
            log,
            config,
        };
        Ok(Self {
            listener,
            acceptor: TlsAcceptor::from(tls),
            shared: Arc::new(shared),
        })
    }

    /// The address actually bound (with port 0, the port chosen).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .unwrap_or(self.shared.config.listen)
    }

    /// Serves until `shutdown` resolves, then stops accepting, lets live
    /// sessions end within the drain time, ends the rest, and returns.
    /// The caller closes the audit log afterwards.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> RunReport {
        let Gateway {
            listener,
            acceptor,
            shared,
        } = self;
        let tracker = TaskTracker::new();
        let slots = Arc::new(Semaphore::new(shared.config.max_connections));
        let mut report = RunReport::default();
        let sweeper = tracker.spawn(sweep(shared.clone()));
        tokio::pin!(shutdown);
        loop {
            let (tcp, peer) = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok(a) => a,
                    Err(e) => {
                        // Out of file descriptors and the like: wait a little instead of spinning.
                        tracing::warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                },
            };
            report.connections += 1;
            let Ok(permit) = slots.clone().try_acquire_owned() else {
                tracing::warn!(
                    "connection from {peer} refused: {} connections already",
                    shared.config.max_connections
                );
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let (shared, acceptor) = (shared.clone(), acceptor.clone());
            tracker.spawn(async move {
                serve(&shared, &acceptor, tcp, peer.ip()).await;
                drop(permit);
            });
        }
        drop(listener);
        tracing::info!(
            "shutting down: no new connections; waiting up to {:?} for sessions to end",
            shared.config.drain_timeout
        );
        shared.stopping.cancel();
        sweeper.abort();
        tracker.close();
        if tokio::time::timeout(shared.config.drain_timeout, tracker.wait())
            .await
            .is_err()
        {
            report.sessions_cut = true;
            shared.registry().end_all();
            tracker.wait().await;
        }
        let open = shared.registry().drain_open();
        for dropped in open {
            end_unpaired(&shared, dropped, EndReason::GatewayShutdown).await;
        }
        report
    }
}

/// Ends, in the log, every session this gateway created that has no end: a
/// gateway killed (or a machine lost) leaves its live sessions open there,
/// and they cannot still be running once it starts again. Sessions created
/// before gateways were named count as this gateway's.
async fn close_orphans(log: &AuditLog, name: &str) -> Result<(), audit_db::Error> {
    let orphans: Vec<NewEvent> = log
        .store()
        .unended_sessions()
        .await?
        .into_iter()
        .filter(|created| match created.decode() {
            Ok(Some(EventKind::SessionCreated(c))) => {
                c.gateway.as_deref().is_none_or(|g| g == name)
            }
            _ => false,
        })
        .filter_map(|created| created.session)
        .map(|guid| {
            NewEvent::now(
                Actor::system("gateway"),
                Source::gateway(),
                EventKind::SessionEnded(audit_db::event::SessionEnded {
                    reason: EndReason::GatewayRestarted,
                    duration_ms: 0,
                    bytes_to_applet: 0,
                    bytes_to_console: 0,
                }),
            )
            .in_session(guid)
        })
        .collect();
    if !orphans.is_empty() {
        tracing::warn!(
            "{} sessions left open by an earlier run of this gateway are ended (gateway_restarted)",
            orphans.len()
        );
        log.append(orphans).await?;
    }
    Ok(())
}

/// Removes sessions whose PIN expired unjoined, once a second, and once a
/// minute forgets failed-login counts of emails without an account that
/// have been quiet for a lock's length (or the address window, if longer).
async fn sweep(shared: Arc<Shared>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let quiet_us = i64::try_from(
        shared
            .policy
            .lockout_s
            .unwrap_or(0)
            .max(shared.policy.ip_window_s)
            .saturating_mul(1_000_000),
    )
    .unwrap_or(i64::MAX);
    for second in 0u64.. {
        tick.tick().await;
        let expired = shared.registry().expire(Instant::now());
        for dropped in expired {
            end_unpaired(&shared, dropped, EndReason::Expired).await;
        }
        if second % 60 == 0 {
            let now = audit_db::time_us::now();
            if let Err(e) = shared
                .accounts
                .prune_login_attempts(now.saturating_sub(quiet_us), now)
                .await
            {
                tracing::warn!("could not prune failed-login counts: {e}");
            }
        }
    }
}

/// Audits the end of a session that never got to the relay.
async fn end_unpaired(shared: &Shared, dropped: registry::Dropped, reason: EndReason) {
    shared
        .audit_or_log(
            Actor::system("gateway"),
            Some(dropped.guid),
            EventKind::SessionEnded(audit_db::event::SessionEnded {
                reason: reason.clone(),
                duration_ms: 0,
                bytes_to_applet: 0,
                bytes_to_console: 0,
            }),
        )
        .await;
    tracing::info!(
        "session {} of {} ended unpaired: {reason}",
        dropped.guid,
        dropped.technician
    );
}

/// One connection: TLS, `Hello`, then the first request decides its role.
async fn serve(shared: &Arc<Shared>, acceptor: &TlsAcceptor, tcp: TcpStream, ip: IpAddr) {
    let deadline = tokio::time::Instant::now() + shared.config.handshake_timeout;
    let tls = match tokio::time::timeout_at(deadline, acceptor.accept(ReadAhead::new(tcp))).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::info!("TLS handshake with {ip} failed: {e}");
            return;
        }
        Err(_) => {
            tracing::info!("TLS handshake with {ip} timed out; closed");
            return;
        }
    };
    let mut link = Link::new(tls);
    let first = tokio::select! {
        first = tokio::time::timeout_at(deadline, opening(&mut link, &shared.config.name)) => first,
        _ = shared.stopping.cancelled() => {
            refuse(&mut link, ip, ErrorCode::ShuttingDown, "the gateway is shutting down").await;
            return;
        }
    };
    let request = match first {
        Err(_) => {
            let why = "no request within the handshake time";
            return refuse(&mut link, ip, ErrorCode::HandshakeTimeout, why).await;
        }
        Ok(Opening::Closed) => {
            tracing::info!("{ip} left before sending a request");
            return;
        }
        Ok(Opening::Refused(code, why)) => return refuse(&mut link, ip, code, &why).await,
        Ok(Opening::Request(request)) => request,
    };
    match request {
        Message::Login {
            email,
            password,
            new_password,
        } => technician::run(shared, link, ip, email, password, new_password).await,
        Message::Join { code, csr } => applet::run(shared, link, ip, code, csr).await,
        Message::Attach { guid, ticket } => relay::attach(shared, link, ip, guid, ticket).await,
        other => {
            let why = format!("{} cannot open a conversation", other.kind().name());
            refuse(&mut link, ip, ErrorCode::UnexpectedMessage, &why).await
        }
    }
}

/// How the opening of a connection went.
enum Opening {
    /// The first request after `Hello`.
    Request(Message),
    /// The client closed the connection cleanly before a request (a probe, a port check).
    Closed,
    /// The client broke the protocol.
    Refused(ErrorCode, String),
}

/// `Hello` → `Welcome`, then the first request.
async fn opening(link: &mut ServerLink, name: &str) -> Opening {
    let hello = match next(link).await {
        Ok(m) => m,
        Err(o) => return o,
    };
    match hello {
        Message::Hello { version, .. } if version == wire::VERSION => {}
        Message::Hello { version, .. } => {
            return Opening::Refused(
                ErrorCode::UnsupportedVersion,
                format!(
                    "protocol version {version} is not supported (this gateway speaks {})",
                    wire::VERSION
                ),
            )
        }
        other => {
            return Opening::Refused(
                ErrorCode::UnexpectedMessage,
                format!("expected Hello, got {}", other.kind().name()),
            )
        }
    }
    let welcome = Message::Welcome {
        version: wire::VERSION,
        gateway: name.to_owned(),
    };
    if link.send(&welcome).await.is_err() {
        return Opening::Closed;
    }
    match next(link).await {
        Ok(m) => Opening::Request(m),
        Err(o) => o,
    }
}

/// The next message, or how the opening ends instead.
async fn next(link: &mut ServerLink) -> Result<Message, Opening> {
    match link.recv().await {
        Ok(Some(m)) => Ok(m),
        Ok(None) => Err(Opening::Closed),
        Err(e) if e.is_disconnect() => Err(Opening::Closed),
        Err(e) => Err(Opening::Refused(e.code(), e.to_string())),
    }
}

/// Closes after a bad frame: answers a protocol violation with its code, and
/// only logs a lost connection.
async fn wire_failure(link: &mut ServerLink, ip: IpAddr, e: &wire::WireError) {
    if e.is_disconnect() {
        tracing::info!("connection from {ip} lost: {e}");
    } else {
        refuse(link, ip, e.code(), &e.to_string()).await;
    }
}

/// Tells the client why, logs it, and closes. Bounded: a client that does
/// not read cannot hold the task.
async fn refuse(link: &mut ServerLink, ip: IpAddr, code: ErrorCode, why: &str) {
    // `why` may quote what the client sent.
    tracing::warn!(
        "closing connection from {ip}: {code:?}: {}",
        wire::printable(why, 500)
    );
    say(link, wire::error(code, why)).await;
}

/// Sends `message` and closes, within a short bound.
async fn say(link: &mut ServerLink, message: Message) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        link.send(&message).await?;
        link.shutdown().await
    })
    .await;
}
