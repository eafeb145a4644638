//! The inner, end-to-end TLS 1.3 session between console and applet, run
//! over the relayed byte stream. Each side generates its key here, sends
//! only a CSR to the gateway, and accepts a peer only if its certificate
//! chains to the session CA and binds the same session GUID and the other role.
//! The console is the TLS client; the applet is the server.

use std::sync::Arc;

use rcgen::{CertificateParams, KeyPair};
use rustls::server::WebPkiClientVerifier;
use rustls::{ClientConfig, RootCertStore, ServerConfig};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use uuid::Uuid;

use protocol::identity::{Role, SessionIdentity};
use protocol::tls::provider;

/// The inner session could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum InnerError {
    /// Generating the session key or CSR failed.
    #[error("generating the session key failed: {0}")]
    Key(rcgen::Error),
    /// A certificate from the gateway could not be parsed.
    #[error("the gateway sent an unusable {what}")]
    BadCertificate {
        /// Which certificate.
        what: &'static str,
    },
    /// The certificate does not bind what this side expected.
    #[error("session certificate mismatch: {0}")]
    Mismatch(String),
    /// rustls refused the configuration.
    #[error("inner TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// The handshake over the relay failed (including a peer that could not prove its identity).
    #[error("inner TLS handshake failed: {0}")]
    Handshake(std::io::Error),
}

/// A freshly generated key for one session; it never leaves this process.
pub struct SessionKey {
    key: KeyPair,
}

impl std::fmt::Debug for SessionKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionKey").finish_non_exhaustive()
    }
}

impl SessionKey {
    /// A new ECDSA P-256 key.
    pub fn generate() -> Result<Self, InnerError> {
        Ok(Self {
            key: KeyPair::generate().map_err(InnerError::Key)?,
        })
    }

    /// The PKCS #10 request the gateway signs (it proves possession of the key).
    pub fn csr_pem(&self) -> Result<String, InnerError> {
        CertificateParams::default()
            .serialize_request(&self.key)
            .and_then(|csr| csr.pem())
            .map_err(InnerError::Key)
    }
}

/// One side's key, its session certificate and the session CA.
#[derive(Debug)]
pub struct Credentials {
    key: SessionKey,
    cert: CertificateDer<'static>,
    ca: CertificateDer<'static>,
    /// What this side's certificate binds.
    pub identity: SessionIdentity,
}

impl Credentials {
    /// Checks that `cert_pem` binds session `guid` and `role` before using it.
    pub fn new(
        key: SessionKey,
        cert_pem: &str,
        ca_pem: &str,
        guid: Uuid,
        role: Role,
    ) -> Result<Self, InnerError> {
        let cert = CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|_| {
            InnerError::BadCertificate {
                what: "session certificate",
            }
        })?;
        let ca = CertificateDer::from_pem_slice(ca_pem.as_bytes())
            .map_err(|_| InnerError::BadCertificate { what: "session CA" })?;
        let identity =
            SessionIdentity::from_cert(&cert).map_err(|e| InnerError::Mismatch(e.to_string()))?;
        if identity.guid != guid || identity.role != role {
            return Err(InnerError::Mismatch(format!(
                "issued for {:?} of session {}, expected {role:?} of {guid}",
                identity.role, identity.guid
            )));
        }
        Ok(Self {
            key,
            cert,
            ca,
            identity,
        })
    }

    fn roots(&self) -> Result<Arc<RootCertStore>, InnerError> {
        let mut roots = RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(Arc::new(roots))
    }

    fn private_key(&self) -> Result<PrivateKeyDer<'static>, InnerError> {
        PrivateKeyDer::try_from(self.key.key.serialize_der())
            .map_err(|e| InnerError::Mismatch(e.to_string()))
    }
}

/// An established inner session.
#[derive(Debug)]
pub struct Inner<T> {
    /// The encrypted stream.
    pub stream: T,
    /// The peer's verified identity (for the applet: with the signed grant).
    pub peer: SessionIdentity,
    /// The short authentication string both ends show (6 digits): equal on
    /// both ends only if nobody sits between them.
    pub sas: String,
}

/// The label of the keying material the SAS is derived from (RFC 5705 / 8446 exporter).
const SAS_LABEL: &[u8] = b"EXPORTER-vigil-short-authentication-string";

/// Six digits from the session's exported keying material, bound to the GUID.
fn sas<D>(conn: &rustls::ConnectionCommon<D>, guid: Uuid) -> Result<String, InnerError> {
    let mut out = [0u8; 8];
    conn.export_keying_material(&mut out, SAS_LABEL, Some(guid.as_bytes()))?;
    Ok(format!("{:06}", u64::from_be_bytes(out) % 1_000_000))
}

/// The console's end: connects to the applet over `stream`.
pub async fn connect<S>(
    stream: S,
    creds: &Credentials,
) -> Result<Inner<tokio_rustls::client::TlsStream<S>>, InnerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let config = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(creds.roots()?)
        .with_client_auth_cert(vec![creds.cert.clone()], creds.private_key()?)?;
    let guid = creds.identity.guid;
    let name = ServerName::try_from(SessionIdentity::dns_name(guid, Role::Applet))
        .map_err(|e| InnerError::Mismatch(e.to_string()))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await
        .map_err(InnerError::Handshake)?;
    let (peer, sas) = established(tls.get_ref().1, guid, Role::Applet)?;
    Ok(Inner {
        stream: tls,
        peer,
        sas,
    })
}

/// The applet's end: accepts the console over `stream`.
pub async fn accept<S>(
    stream: S,
    creds: &Credentials,
) -> Result<Inner<tokio_rustls::server::TlsStream<S>>, InnerError>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let verifier = WebPkiClientVerifier::builder_with_provider(creds.roots()?, provider())
        .build()
        .map_err(|e| InnerError::Mismatch(e.to_string()))?;
    let mut config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(vec![creds.cert.clone()], creds.private_key()?)?;
    // A session is never resumed (its certificates are its own), and
    // tickets would be written after the console's last handshake message:
    // a console that leaves at once would fail the end user's handshake.
    config.send_tls13_tickets = 0;
    let tls = tokio_rustls::TlsAcceptor::from(Arc::new(config))
        .accept(stream)
        .await
        .map_err(InnerError::Handshake)?;
    let guid = creds.identity.guid;
    let (peer, sas) = established(tls.get_ref().1, guid, Role::Console)?;
    Ok(Inner {
        stream: tls,
        peer,
        sas,
    })
}

/// After the handshake: the peer must be `role` of session `guid`; then
/// the SAS both ends show.
fn established<D>(
    conn: &rustls::ConnectionCommon<D>,
    guid: Uuid,
    role: Role,
) -> Result<(SessionIdentity, String), InnerError> {
    let peer = peer_identity(conn.peer_certificates(), guid, role)?;
    Ok((peer, sas(conn, guid)?))
}

fn peer_identity(
    certs: Option<&[CertificateDer<'static>]>,
    guid: Uuid,
    role: Role,
) -> Result<SessionIdentity, InnerError> {
    let cert = certs
        .and_then(|c| c.first())
        .ok_or_else(|| InnerError::Mismatch("the peer presented no certificate".into()))?;
    let id = SessionIdentity::from_cert(cert).map_err(|e| InnerError::Mismatch(e.to_string()))?;
    if id.guid != guid || id.role != role {
        return Err(InnerError::Mismatch(format!(
            "peer is {:?} of session {}, expected {role:?} of {guid}",
            id.role, id.guid
        )));
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use audit_event::Permission;
    use gateway::session_ca::SessionCa;
    use std::time::Duration;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn creds(ca: &SessionCa, guid: Uuid, role: Role, grant: Vec<Permission>) -> Credentials {
        let key = SessionKey::generate().unwrap();
        let id = SessionIdentity {
            guid,
            role,
            grant,
            single_prompt: false,
            store_chat: false,
        };
        let cert = ca
            .issue(&key.csr_pem().unwrap(), &id, Duration::from_secs(600))
            .unwrap();
        Credentials::new(key, &cert, ca.certificate_pem(), guid, role).unwrap()
    }

    #[tokio::test]
    async fn console_and_applet_of_one_session_connect() {
        let ca = SessionCa::new("t").unwrap();
        let guid = Uuid::new_v4();
        let console = creds(&ca, guid, Role::Console, vec![Permission::DesktopView]);
        let applet = creds(&ca, guid, Role::Applet, vec![]);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (c, s) = tokio::join!(connect(a, &console), accept(b, &applet));
        let (c, s) = (c.unwrap(), s.unwrap());
        assert_eq!(c.peer.role, Role::Applet);
        assert_eq!(s.peer.grant, vec![Permission::DesktopView]);
        assert_eq!(c.sas, s.sas, "both ends show the same SAS");
        assert!(c.sas.len() == 6 && c.sas.bytes().all(|b| b.is_ascii_digit()));
        let (mut c, mut s) = (c.stream, s.stream);
        c.write_all(b"hello").await.unwrap();
        c.flush().await.unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"hello");
    }

    #[tokio::test]
    async fn a_certificate_of_another_session_is_refused() {
        let ca = SessionCa::new("t").unwrap();
        let console = creds(&ca, Uuid::new_v4(), Role::Console, vec![]);
        let applet = creds(&ca, Uuid::new_v4(), Role::Applet, vec![]);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (c, s) = tokio::join!(connect(a, &console), accept(b, &applet));
        assert!(c.is_err() || s.is_err());
        assert!(
            c.is_err(),
            "the console must refuse an applet of another session"
        );
    }

    #[tokio::test]
    async fn the_applet_refuses_a_console_certificate_of_another_session() {
        let ca = SessionCa::new("t").unwrap();
        let guid = Uuid::new_v4();
        let applet = creds(&ca, guid, Role::Applet, vec![]);
        let other = creds(&ca, Uuid::new_v4(), Role::Console, vec![]);
        // A console that aims at this applet (right name, same CA) but
        // holds a certificate of another session.
        let config = ClientConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .unwrap()
            .with_root_certificates(applet.roots().unwrap())
            .with_client_auth_cert(vec![other.cert.clone()], other.private_key().unwrap())
            .unwrap();
        let name = ServerName::try_from(SessionIdentity::dns_name(guid, Role::Applet)).unwrap();
        let (a, b) = tokio::io::duplex(64 * 1024);
        let connecting = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, a);
        let (_c, s) = tokio::join!(connecting, accept(b, &applet));
        assert!(
            matches!(&s, Err(InnerError::Mismatch(why)) if why.contains("expected Console")),
            "{s:?}"
        );
    }

    #[tokio::test]
    async fn a_certificate_from_another_ca_is_refused() {
        let guid = Uuid::new_v4();
        let console = creds(&SessionCa::new("a").unwrap(), guid, Role::Console, vec![]);
        let applet = creds(&SessionCa::new("b").unwrap(), guid, Role::Applet, vec![]);
        let (a, b) = tokio::io::duplex(64 * 1024);
        let (c, _s) = tokio::join!(connect(a, &console), accept(b, &applet));
        assert!(matches!(c, Err(InnerError::Handshake(_))));
    }

    #[test]
    fn credentials_for_the_wrong_role_are_refused() {
        let ca = SessionCa::new("t").unwrap();
        let guid = Uuid::new_v4();
        let key = SessionKey::generate().unwrap();
        let id = SessionIdentity {
            guid,
            role: Role::Applet,
            grant: vec![],
            single_prompt: false,
            store_chat: false,
        };
        let cert = ca
            .issue(&key.csr_pem().unwrap(), &id, Duration::from_secs(60))
            .unwrap();
        assert!(matches!(
            Credentials::new(key, &cert, ca.certificate_pem(), guid, Role::Console),
            Err(InnerError::Mismatch(_))
        ));
    }
}
