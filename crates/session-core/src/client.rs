//! The client side of the gateway protocol, shared by `vigil login`, the
//! console and the applet: connect and verify the gateway, log in, create
//! and pick up sessions, join as an applet, and turn a paired session link
//! into a plain byte stream for the inner TLS session.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use audit_event::Permission;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::inner::{Credentials, InnerError, SessionKey};
use protocol::identity::Role;
use protocol::readahead::ReadAhead;
use protocol::tls::{self, TlsError, Trust};
use protocol::wire::{self, ErrorCode, Frame, Link, Message, Waiting, WireError};

/// How long connecting (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Bytes of inner-session data per `Data` frame at most.
const CHUNK: usize = wire::MAX_BODY;

/// A connection to the gateway.
pub type ClientLink = Link<tokio_rustls::client::TlsStream<ReadAhead<TcpStream>>>;

/// Talking to the gateway failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The TCP connection could not be made.
    #[error("cannot connect to the gateway at {addr}: {source}")]
    Connect {
        /// The gateway's address.
        addr: String,
        /// What the system said.
        source: std::io::Error,
    },
    /// The gateway's certificate was not trusted, or TLS failed otherwise.
    #[error("TLS with the gateway at {addr} failed: {cause}")]
    Tls {
        /// The gateway's address.
        addr: String,
        /// What failed.
        cause: String,
    },
    /// The trust settings could not be used.
    #[error(transparent)]
    Trust(#[from] TlsError),
    /// The gateway refused the request.
    #[error("{message}")]
    Refused {
        /// Why.
        code: ErrorCode,
        /// The gateway's words, for people.
        message: String,
        /// When to try again, if the gateway said.
        retry_after_s: Option<u64>,
    },
    /// The gateway sent something this client cannot read.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// The gateway answered out of turn.
    #[error("the gateway sent {got} where {expected} was expected")]
    Unexpected {
        /// The message that was due.
        expected: &'static str,
        /// The message that came.
        got: &'static str,
    },
    /// The gateway closed the connection.
    #[error("the gateway closed the connection")]
    Closed,
    /// The connection failed after it was made.
    #[error("connection to the gateway failed: {0}")]
    Io(#[from] std::io::Error),
    /// No answer in time.
    #[error("no answer from the gateway at {0} within {CONNECT_TIMEOUT:?}")]
    Timeout(String),
    /// The gateway did not record a reported event.
    #[error("the gateway refused the event: {0}")]
    EventRefused(String),
    /// The session ended before the gateway acknowledged a reported event.
    #[error("the session ended before the event was acknowledged")]
    NoAck,
    /// The session key, certificate or inner handshake failed.
    #[error(transparent)]
    Inner(#[from] InnerError),
}

impl ClientError {
    /// The gateway's refusal code, if this is a refusal.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// Opens verified connections to one gateway.
#[derive(Clone)]
pub struct Connector {
    addr: String,
    name: ServerName<'static>,
    config: Arc<ClientConfig>,
    client: String,
    /// The local address connections come from (the system's choice if none).
    source: Option<std::net::IpAddr>,
}

impl std::fmt::Debug for Connector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connector")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Connector {
    /// A connector for the gateway at `addr` (`host:port`), trusted as `trust` says.
    /// `client` names this program in `Hello` (for the gateway's logs).
    pub fn new(addr: &str, trust: &Trust, client: &str) -> Result<Self, ClientError> {
        let host = addr.rsplit_once(':').map_or(addr, |(host, _)| host);
        Ok(Self {
            addr: addr.to_owned(),
            name: tls::server_name(host)?,
            config: tls::client_config(trust)?,
            client: client.to_owned(),
            source: None,
        })
    }

    /// The same connector, connecting from local address `ip` (a host with
    /// several addresses; tests use 127.0.0.0/8).
    pub fn from_source(mut self, ip: std::net::IpAddr) -> Self {
        self.source = Some(ip);
        self
    }

    async fn connect_tcp(&self) -> std::io::Result<TcpStream> {
        let Some(source) = self.source else {
            return TcpStream::connect(&self.addr).await;
        };
        let remote = tokio::net::lookup_host(&self.addr)
            .await?
            .find(|a| a.is_ipv4() == source.is_ipv4())
            .ok_or_else(|| {
                std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    format!("no address of {} matches the source {source}", self.addr),
                )
            })?;
        let socket = if source.is_ipv4() {
            tokio::net::TcpSocket::new_v4()?
        } else {
            tokio::net::TcpSocket::new_v6()?
        };
        socket.bind(std::net::SocketAddr::new(source, 0))?;
        socket.connect(remote).await
    }

    /// Connects, verifies the gateway, and exchanges `Hello`/`Welcome`.
    async fn open(&self) -> Result<ClientLink, ClientError> {
        let timeout = |_| ClientError::Timeout(self.addr.clone());
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, self.connect_tcp())
            .await
            .map_err(timeout)?
            .map_err(|source| ClientError::Connect {
                addr: self.addr.clone(),
                source,
            })?;
        let _ = tcp.set_nodelay(true);
        let connector = tokio_rustls::TlsConnector::from(self.config.clone());
        let tls = tokio::time::timeout(
            CONNECT_TIMEOUT,
            connector.connect(self.name.clone(), ReadAhead::new(tcp)),
        )
        .await
        .map_err(timeout)?
        .map_err(|e| ClientError::Tls {
            addr: self.addr.clone(),
            cause: describe_tls_error(&e),
        })?;
        let mut link = Link::new(tls);
        link.send(&Message::Hello {
            version: wire::VERSION,
            client: self.client.clone(),
        })
        .await?;
        match answer(&mut link).await? {
            Message::Welcome { .. } => Ok(link),
            other => Err(unexpected("Welcome", &other)),
        }
    }

    /// Logs a technician in. With `new_password`, an expired password is replaced.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        new_password: Option<&str>,
    ) -> Result<Technician, ClientError> {
        let mut link = self.open().await?;
        link.send(&Message::Login {
            email: email.to_owned(),
            password: password.to_owned(),
            new_password: new_password.map(str::to_owned),
        })
        .await?;
        match answer(&mut link).await? {
            Message::LoginOk {
                email,
                group,
                role,
                permissions,
                idle_timeout_s,
                password_expires_us,
                force_recording,
            } => Ok(Technician {
                link,
                info: LoginInfo {
                    email,
                    group,
                    role,
                    permissions,
                    idle_timeout_s,
                    password_expires_us,
                    force_recording,
                },
            }),
            other => Err(unexpected("LoginOk", &other)),
        }
    }

    /// Joins a session as the end user's applet, by PIN or GUID.
    pub async fn join(&self, code: &str) -> Result<WaitingApplet, ClientError> {
        let key = SessionKey::generate()?;
        let mut link = self.open().await?;
        link.send(&Message::Join {
            code: code.to_owned(),
            csr: key.csr_pem()?,
        })
        .await?;
        match answer(&mut link).await? {
            Message::Joined { guid, technician } => Ok(WaitingApplet {
                link,
                key,
                guid,
                technician,
            }),
            other => Err(unexpected("Joined", &other)),
        }
    }

    /// Opens the console's session link for a picked-up session.
    pub async fn attach(&self, session: PickedUp) -> Result<SessionLink, ClientError> {
        let mut link = self.open().await?;
        link.send(&Message::Attach {
            guid: session.guid,
            ticket: session.ticket,
        })
        .await?;
        match answer(&mut link).await? {
            Message::Attached { .. } => Ok(SessionLink {
                link,
                credentials: session.credentials,
            }),
            other => Err(unexpected("Attached", &other)),
        }
    }

    /// A raw connection to the gateway after `Hello`, for tests of what
    /// the gateway does with arbitrary frames.
    pub async fn raw(&self) -> Result<ClientLink, ClientError> {
        self.open().await
    }
}

/// Says why a TLS handshake failed, plainly for the common case.
fn describe_tls_error(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>()) {
        Some(rustls::Error::InvalidCertificate(rustls::CertificateError::Other(why))) => {
            format!("the gateway's certificate is not trusted: {why}")
        }
        Some(rustls::Error::InvalidCertificate(why)) => {
            format!("the gateway's certificate is not trusted ({why:?})")
        }
        Some(other) => other.to_string(),
        None => e.to_string(),
    }
}

/// The next message; an `Error` becomes [`ClientError::Refused`].
async fn answer(link: &mut ClientLink) -> Result<Message, ClientError> {
    match link.recv().await? {
        Some(Message::Error {
            code,
            message,
            retry_after_s,
        }) => Err(ClientError::Refused {
            code,
            message,
            retry_after_s,
        }),
        Some(m) => Ok(m),
        None => Err(ClientError::Closed),
    }
}

fn unexpected(expected: &'static str, got: &Message) -> ClientError {
    ClientError::Unexpected {
        expected,
        got: got.kind().name(),
    }
}

/// An audit event to report to the gateway. Its id is fixed when it is
/// made, so a resent event is recognised and stored once.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    /// Chosen by the reporter; a resend is stored once.
    pub id: Uuid,
    /// When it happened (microseconds since the epoch).
    pub occurred_us: i64,
    /// The session it belongs to (on a session link, the link's own).
    pub session: Option<Uuid>,
    /// The audit event type, e.g. `chat.message`.
    pub kind: String,
    /// That type's payload.
    pub payload: serde_json::Value,
}

impl Report {
    /// An event that happens now.
    pub fn now(kind: &audit_event::EventKind) -> Self {
        let payload = kind
            .payload_json()
            .ok()
            .and_then(|json| serde_json::from_str(&json).ok())
            .expect("an event payload is a plain struct, serialised and read back as JSON");
        Self {
            id: Uuid::now_v7(),
            occurred_us: audit_event::time_us::now(),
            session: None,
            kind: kind.type_name().to_owned(),
            payload,
        }
    }

    /// The same event, in session `guid`.
    pub fn in_session(mut self, guid: Uuid) -> Self {
        self.session = Some(guid);
        self
    }

    fn message(&self) -> Message {
        Message::Event {
            id: self.id,
            occurred_us: self.occurred_us,
            session: self.session,
            kind: self.kind.clone(),
            payload: self.payload.clone(),
        }
    }
}

/// The gateway's acknowledgement: the event is durable at `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ack {
    /// Its place in the log.
    pub seq: i64,
    /// It had been recorded before (a resend).
    pub duplicate: bool,
}

fn ack_of(id: Uuid, answer: Message) -> Result<Ack, ClientError> {
    match answer {
        Message::EventAck {
            id: acked,
            seq,
            duplicate,
        } if acked == id => Ok(Ack { seq, duplicate }),
        Message::EventRefused { message, .. } => Err(ClientError::EventRefused(message)),
        other => Err(unexpected("EventAck", &other)),
    }
}

/// What the gateway said about a logged-in technician.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginInfo {
    /// The technician's email.
    pub email: String,
    /// Their group.
    pub group: String,
    /// Their role.
    pub role: String,
    /// What their group may do in a session.
    pub permissions: Vec<Permission>,
    /// Idle time after which they are logged off.
    pub idle_timeout_s: u64,
    /// When their password expires, if it does.
    pub password_expires_us: Option<i64>,
    /// The group records every session: no view or control without a recording.
    pub force_recording: bool,
}

/// A logged-in technician's control link.
#[derive(Debug)]
pub struct Technician {
    link: ClientLink,
    /// Who the gateway says we are.
    pub info: LoginInfo,
}

/// A session just created.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// The session's GUID.
    pub guid: Uuid,
    /// The six-digit PIN to give the end user.
    pub pin: String,
    /// When the PIN expires (microseconds since the epoch).
    pub expires_us: i64,
}

/// A session picked up, ready for [`Connector::attach`].
#[derive(Debug)]
pub struct PickedUp {
    /// The session's GUID.
    pub guid: Uuid,
    ticket: String,
    credentials: Credentials,
    /// What the group may do in this session.
    pub grant: Vec<Permission>,
}

impl Technician {
    async fn request(&mut self, m: Message) -> Result<Message, ClientError> {
        self.link.send(&m).await?;
        answer(&mut self.link).await
    }

    /// Creates a session; the gateway answers with its GUID and PIN.
    pub async fn create_session(&mut self) -> Result<NewSession, ClientError> {
        match self.request(Message::CreateSession {}).await? {
            Message::SessionCreated {
                guid,
                pin,
                expires_us,
            } => Ok(NewSession {
                guid,
                pin,
                expires_us,
            }),
            other => Err(unexpected("SessionCreated", &other)),
        }
    }

    /// The applets waiting for this technician.
    pub async fn queue(&mut self) -> Result<Vec<Waiting>, ClientError> {
        match self.request(Message::ListQueue {}).await? {
            Message::Queue { waiting } => Ok(waiting),
            other => Err(unexpected("Queue", &other)),
        }
    }

    /// Picks a waiting session up; the console's key is made here and only its CSR is sent.
    pub async fn pick_up(&mut self, guid: Uuid) -> Result<PickedUp, ClientError> {
        let key = SessionKey::generate()?;
        let csr = key.csr_pem()?;
        match self.request(Message::PickUp { guid, csr }).await? {
            Message::PickedUp {
                guid: picked,
                ticket,
                certificate,
                session_ca,
                grant,
            } if picked == guid => Ok(PickedUp {
                guid,
                ticket,
                credentials: Credentials::new(key, &certificate, &session_ca, guid, Role::Console)?,
                grant,
            }),
            other => Err(unexpected("PickedUp", &other)),
        }
    }

    /// Reports an audit event on the control link; returns once it is durable.
    pub async fn report(&mut self, report: &Report) -> Result<Ack, ClientError> {
        let answer = self.request(report.message()).await?;
        ack_of(report.id, answer)
    }

    /// Waits for the next message the gateway sends unasked (e.g. an idle logoff).
    pub async fn next_notice(&mut self) -> Result<Message, ClientError> {
        answer(&mut self.link).await
    }

    /// Logs out and closes the link.
    pub async fn logout(mut self) -> Result<(), ClientError> {
        self.link.send(&Message::Logout {}).await?;
        self.link.shutdown().await?;
        Ok(())
    }
}

/// An applet waiting in a technician's queue.
#[derive(Debug)]
pub struct WaitingApplet {
    link: ClientLink,
    key: SessionKey,
    /// The session joined.
    pub guid: Uuid,
    /// The technician whose queue it waits in.
    pub technician: String,
}

impl WaitingApplet {
    /// Waits until the technician picks the session up.
    pub async fn paired(mut self) -> Result<SessionLink, ClientError> {
        match answer(&mut self.link).await? {
            Message::Paired {
                certificate,
                session_ca,
            } => Ok(SessionLink {
                credentials: Credentials::new(
                    self.key,
                    &certificate,
                    &session_ca,
                    self.guid,
                    Role::Applet,
                )?,
                link: self.link,
            }),
            other => Err(unexpected("Paired", &other)),
        }
    }
}

/// A paired session link, before the inner session starts.
#[derive(Debug)]
pub struct SessionLink {
    link: ClientLink,
    /// This side's session key and certificate.
    pub credentials: Credentials,
}

impl SessionLink {
    /// The session as a byte stream for the inner TLS session, a handle to
    /// report audit events on the same link, and a task that ends with the
    /// reason the session ended. Closing the stream ends the session for both sides.
    pub fn into_stream(self) -> Session {
        let (ours, theirs) = tokio::io::duplex(4 * CHUNK);
        let (tx, rx) = mpsc::channel(REPORTS_IN_FLIGHT);
        let ended = tokio::spawn(pump(self.link, theirs, rx));
        Session {
            stream: ours,
            credentials: self.credentials,
            reporter: SessionReporter { tx },
            ended,
        }
    }
}

/// Events that may await their acknowledgement at once on a session link.
const REPORTS_IN_FLIGHT: usize = 256;

/// A paired session, ready for the inner TLS session.
#[derive(Debug)]
pub struct Session {
    /// The relayed byte stream.
    pub stream: DuplexStream,
    /// This side's session key and certificate.
    pub credentials: Credentials,
    /// Reports audit events on this session's link.
    pub reporter: SessionReporter,
    /// Ends with the reason the session ended.
    pub ended: JoinHandle<String>,
}

type PendingReport = (Message, Uuid, oneshot::Sender<Result<Ack, ClientError>>);

/// Reports audit events on a session link. Cheap to clone.
#[derive(Clone, Debug)]
pub struct SessionReporter {
    tx: mpsc::Sender<PendingReport>,
}

impl SessionReporter {
    /// Reports `report`; returns once the gateway says it is durable.
    pub async fn report(&self, report: &Report) -> Result<Ack, ClientError> {
        let (ack, acked) = oneshot::channel();
        self.tx
            .send((report.message(), report.id, ack))
            .await
            .map_err(|_| ClientError::NoAck)?;
        acked.await.map_err(|_| ClientError::NoAck)?
    }
}

/// Moves bytes between the local stream and `Data` frames on the link,
/// until either side ends. Returns why the session ended.
async fn pump(
    mut link: ClientLink,
    local: DuplexStream,
    mut reports: mpsc::Receiver<PendingReport>,
) -> String {
    let (mut local_read, mut local_write) = tokio::io::split(local);
    let done = CancellationToken::new();
    // Reports sent and not yet answered, by event id.
    let waiting: std::sync::Mutex<HashMap<Uuid, oneshot::Sender<Result<Ack, ClientError>>>> =
        std::sync::Mutex::default();
    let (reader, writer) = link.split();
    let down = async {
        let reason = loop {
            let frame = tokio::select! {
                f = futures::StreamExt::next(reader) => f,
                _ = done.cancelled() => break String::from("closed locally"),
            };
            match frame.map(|f| f.map(|f| (wire::Kind::from_byte(f.kind()), f))) {
                Some(Ok((Some(wire::Kind::Data), f))) => {
                    if local_write.write_all(f.body()).await.is_err() {
                        break String::from("closed locally");
                    }
                }
                Some(Ok((_, f))) => match Message::decode(&f) {
                    Ok(answer @ (Message::EventAck { .. } | Message::EventRefused { .. })) => {
                        let id = match &answer {
                            Message::EventAck { id, .. } | Message::EventRefused { id, .. } => *id,
                            _ => continue,
                        };
                        let waiter = waiting
                            .lock()
                            .unwrap_or_else(|e| e.into_inner())
                            .remove(&id);
                        if let Some(waiter) = waiter {
                            let _ = waiter.send(ack_of(id, answer));
                        }
                    }
                    Ok(Message::End { reason }) => break reason,
                    Ok(Message::Error { message, .. }) => break message,
                    Ok(other) => break format!("unexpected {}", other.kind().name()),
                    Err(e) => break e.to_string(),
                },
                Some(Err(e)) => break e.to_string(),
                None => break String::from("the gateway closed the connection"),
            }
        };
        let _ = local_write.shutdown().await;
        done.cancel();
        reason
    };
    let up = async {
        let mut buf = vec![0u8; CHUNK];
        loop {
            let n = tokio::select! {
                n = local_read.read(&mut buf) => n.unwrap_or(0),
                Some((message, id, ack)) = reports.recv() => {
                    waiting.lock().unwrap_or_else(|e| e.into_inner()).insert(id, ack);
                    if writer.write_all(message.encode().as_bytes()).await.is_err() || writer.flush().await.is_err() {
                        done.cancel();
                        return;
                    }
                    continue;
                }
                _ = done.cancelled() => return,
            };
            if n == 0 {
                let _ = writer
                    .write_all(
                        Message::End {
                            reason: "closed".into(),
                        }
                        .encode()
                        .as_bytes(),
                    )
                    .await;
                let _ = writer.flush().await;
                return;
            }
            let frame = Frame::data(&buf[..n]);
            let sent = async {
                writer.write_all(frame.as_bytes()).await?;
                writer.flush().await
            };
            if sent.await.is_err() {
                done.cancel();
                return;
            }
        }
    };
    let (reason, ()) = tokio::join!(down, up);
    reason
}
