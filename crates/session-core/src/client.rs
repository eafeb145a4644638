//! The client side of the gateway protocol, shared by `vigil login`, the
//! console and the applet: connect and verify the gateway, log in, create
//! and pick up sessions, join as an applet, and turn a paired session link
//! into a plain byte stream for the inner TLS session.

use std::sync::Arc;
use std::time::Duration;

use audit_db::Permission;
use rustls::ClientConfig;
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};
use tokio::net::TcpStream;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::inner::{Credentials, InnerError, SessionKey};
use crate::readahead::ReadAhead;
use crate::session_ca::Role;
use crate::tls::{self, TlsError, Trust};
use crate::wire::{self, ErrorCode, Frame, Link, Message, Waiting, WireError};

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
        addr: String,
        source: std::io::Error,
    },
    /// The gateway's certificate was not trusted, or TLS failed otherwise.
    #[error("TLS with the gateway at {addr} failed: {cause}")]
    Tls { addr: String, cause: String },
    /// The trust settings could not be used.
    #[error(transparent)]
    Trust(#[from] TlsError),
    /// The gateway refused the request.
    #[error("{message}")]
    Refused {
        code: ErrorCode,
        message: String,
        retry_after_s: Option<u64>,
    },
    /// The gateway sent something this client cannot read.
    #[error("protocol error: {0}")]
    Wire(#[from] WireError),
    /// The gateway answered out of turn.
    #[error("the gateway sent {got} where {expected} was expected")]
    Unexpected {
        expected: &'static str,
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
        })
    }

    /// Connects, verifies the gateway, and exchanges `Hello`/`Welcome`.
    async fn open(&self) -> Result<ClientLink, ClientError> {
        let timeout = |_| ClientError::Timeout(self.addr.clone());
        let tcp = tokio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(&self.addr))
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
            } => Ok(Technician {
                link,
                info: LoginInfo {
                    email,
                    group,
                    role,
                    permissions,
                    idle_timeout_s,
                    password_expires_us,
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

/// What the gateway said about a logged-in technician.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoginInfo {
    pub email: String,
    pub group: String,
    pub role: String,
    pub permissions: Vec<Permission>,
    pub idle_timeout_s: u64,
    pub password_expires_us: Option<i64>,
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
    pub guid: Uuid,
    /// The six-digit PIN to give the end user.
    pub pin: String,
    pub expires_us: i64,
}

/// A session picked up, ready for [`Connector::attach`].
#[derive(Debug)]
pub struct PickedUp {
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
    /// The session as a byte stream (for the inner TLS session), and a task
    /// that ends with the reason the session ended. Closing the stream ends
    /// the session for both sides.
    pub fn into_stream(self) -> (DuplexStream, Credentials, JoinHandle<String>) {
        let (ours, theirs) = tokio::io::duplex(4 * CHUNK);
        let pump = tokio::spawn(pump(self.link, theirs));
        (ours, self.credentials, pump)
    }
}

/// Moves bytes between the local stream and `Data` frames on the link,
/// until either side ends. Returns why the session ended.
async fn pump(mut link: ClientLink, local: DuplexStream) -> String {
    let (mut local_read, mut local_write) = tokio::io::split(local);
    let done = CancellationToken::new();
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
