//! The outer TLS links: the gateway's certificate (given, or a development
//! CA made once in the data directory), its TLS 1.3-only server
//! configuration, and the client side that trusts a CA file or a pinned
//! SHA-256 fingerprint.

use std::fmt;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, ServerConfig, SignatureScheme};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use sha2::{Digest, Sha256};

/// A certificate or key could not be read, made or used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file could not be written.
    #[error("cannot write {}: {source}", path.display())]
    Write {
        /// The file.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// A file holds no usable PEM certificate or key.
    #[error("{} holds no {what} in PEM form", path.display())]
    Pem {
        /// The file.
        path: PathBuf,
        /// What it should hold.
        what: &'static str,
    },
    /// Generating a key or certificate failed.
    #[error("generating {what} failed: {source}")]
    Generate {
        /// What was being made.
        what: &'static str,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// rustls refused the configuration (e.g. a key that does not match the certificate).
    #[error("TLS configuration refused: {0}")]
    Config(#[from] rustls::Error),
    /// A fingerprint that is not 64 hex digits.
    #[error("fingerprint {0:?} is not a SHA-256 fingerprint (64 hex digits, colons allowed)")]
    BadFingerprint(String),
}

/// The cryptography every Vigil TLS link uses: ring's TLS 1.3 AEAD suites
/// only, AES-128-GCM first. It is as standard as AES-256-GCM (the one suite
/// every TLS 1.3 peer must offer) and takes 10 AES rounds instead of 14,
/// which matters when the relay encrypts everything three times.
pub fn provider() -> Arc<CryptoProvider> {
    use rustls::crypto::ring::cipher_suite;
    Arc::new(CryptoProvider {
        cipher_suites: vec![
            cipher_suite::TLS13_AES_128_GCM_SHA256,
            cipher_suite::TLS13_AES_256_GCM_SHA384,
            cipher_suite::TLS13_CHACHA20_POLY1305_SHA256,
        ],
        ..rustls::crypto::ring::default_provider()
    })
}

/// The lower-case hex SHA-256 of a DER certificate.
pub fn fingerprint(der: &[u8]) -> String {
    hex::encode(Sha256::digest(der))
}

/// A certificate chain and its private key.
pub struct Identity {
    /// The certificate chain, the gateway's own first.
    pub chain: Vec<CertificateDer<'static>>,
    /// The chain's private key.
    pub key: PrivateKeyDer<'static>,
}

impl fmt::Debug for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Identity")
            .field("chain", &self.chain.len())
            .finish_non_exhaustive()
    }
}

impl Identity {
    /// Reads a PEM chain (leaf first) and a PEM private key.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        let chain = read_certs(cert)?;
        let key_pem = std::fs::read(key).map_err(|source| read_err(key, source))?;
        let key = PrivateKeyDer::from_pem_slice(&key_pem).map_err(|_| TlsError::Pem {
            path: key.to_owned(),
            what: "private key",
        })?;
        Ok(Self { chain, key })
    }
}

fn read_err(path: &Path, source: std::io::Error) -> TlsError {
    TlsError::Read {
        path: path.to_owned(),
        source,
    }
}

/// Every certificate in a PEM file; at least one.
pub fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| read_err(path, source))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|_| TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
        })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            path: path.to_owned(),
            what: "certificate",
        });
    }
    Ok(certs)
}

/// The development certificates a gateway makes for itself when given none.
#[derive(Debug)]
pub struct DevCertificates {
    /// The CA file clients pass with `--ca`.
    pub ca_path: PathBuf,
    /// The CA certificate's SHA-256, for clients' `--fingerprint`.
    pub ca_fingerprint: String,
    /// The gateway's chain (server certificate, then the CA) and key.
    pub identity: Identity,
}

impl DevCertificates {
    /// Loads `DIR/tls/{ca.pem,gateway.pem,gateway.key}`, creating them the
    /// first time. The server certificate names `localhost`, the loopback
    /// addresses and `names`. The CA key is not kept: nothing else is ever
    /// signed with it.
    pub fn load_or_create(dir: &Path, names: &[String]) -> Result<Self, TlsError> {
        let tls = dir.join("tls");
        let (ca_path, cert_path, key_path) = (
            tls.join("ca.pem"),
            tls.join("gateway.pem"),
            tls.join("gateway.key"),
        );
        if !(ca_path.exists() && cert_path.exists() && key_path.exists()) {
            create_dev_certificates(&tls, &ca_path, &cert_path, &key_path, names)?;
        }
        let ca = read_certs(&ca_path)?;
        Ok(Self {
            ca_fingerprint: fingerprint(&ca[0]),
            identity: Identity::load(&cert_path, &key_path)?,
            ca_path,
        })
    }
}

fn create_dev_certificates(
    dir: &Path,
    ca_path: &Path,
    cert_path: &Path,
    key_path: &Path,
    names: &[String],
) -> Result<(), TlsError> {
    let generate = |what| move |source| TlsError::Generate { what, source };
    {
        use std::os::unix::fs::DirBuilderExt;
        // Only the gateway's user may enter: the key is in it.
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| TlsError::Write {
                path: dir.to_owned(),
                source,
            })?;
    }
    let ca_key = KeyPair::generate().map_err(generate("the development CA key"))?;
    let mut ca_params = CertificateParams::default();
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "Vigil development gateway CA");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    ca_params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    ca_params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(3650);
    let ca_cert = ca_params
        .self_signed(&ca_key)
        .map_err(generate("the development CA"))?;
    let issuer = rcgen::Issuer::new(ca_params, ca_key);

    let mut sans = vec!["localhost".to_owned(), "127.0.0.1".into(), "::1".into()];
    sans.extend(names.iter().filter(|n| !n.is_empty()).cloned());
    sans.dedup();
    let key = KeyPair::generate().map_err(generate("the gateway key"))?;
    let mut params = CertificateParams::new(sans).map_err(generate("the gateway certificate"))?;
    params
        .distinguished_name
        .push(DnType::CommonName, "Vigil gateway (development)");
    params.not_before = time::OffsetDateTime::now_utc() - time::Duration::days(1);
    params.not_after = time::OffsetDateTime::now_utc() + time::Duration::days(825);
    params.use_authority_key_identifier_extension = true;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(generate("the gateway certificate"))?;

    // Key first, CA last: a crash in between leaves no CA file, so the set is made again.
    write_file(key_path, key.serialize_pem().as_bytes(), true)?;
    write_file(
        cert_path,
        format!("{}{}", cert.pem(), ca_cert.pem()).as_bytes(),
        false,
    )?;
    write_file(ca_path, ca_cert.pem().as_bytes(), false)
}

/// Writes through a temporary file and a rename, so a reader never sees half a file.
fn write_file(path: &Path, bytes: &[u8], secret: bool) -> Result<(), TlsError> {
    use std::os::unix::fs::OpenOptionsExt;
    let err = |source| TlsError::Write {
        path: path.to_owned(),
        source,
    };
    let tmp = path.with_extension("tmp");
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(if secret { 0o600 } else { 0o644 })
        .open(&tmp)
        .map_err(err)?;
    file.write_all(bytes).map_err(err)?;
    file.sync_all().map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

/// The gateway's server configuration: TLS 1.3 only, no client certificates
/// (technicians authenticate with a password inside the link).
pub fn server_config(identity: Identity) -> Result<Arc<ServerConfig>, TlsError> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_no_client_auth()
        .with_single_cert(identity.chain, identity.key)?;
    Ok(Arc::new(config))
}

/// How a client decides to trust the gateway.
#[derive(Clone, Debug)]
pub enum Trust {
    /// The gateway's chain must lead to one of these CA certificates.
    Ca(Vec<CertificateDer<'static>>),
    /// The SHA-256 of the gateway's certificate, or of a CA certificate in the chain it presents.
    Fingerprint([u8; 32]),
}

impl Trust {
    /// Trust the CA certificates in a PEM file.
    pub fn ca_file(path: &Path) -> Result<Self, TlsError> {
        Ok(Trust::Ca(read_certs(path)?))
    }

    /// Trust a pinned fingerprint (64 hex digits; colons and spaces ignored).
    pub fn fingerprint(text: &str) -> Result<Self, TlsError> {
        let digits: String = text
            .chars()
            .filter(|c| *c != ':' && !c.is_whitespace())
            .collect();
        let mut pin = [0u8; 32];
        hex::decode_to_slice(&digits, &mut pin)
            .map_err(|_| TlsError::BadFingerprint(text.to_owned()))?;
        Ok(Trust::Fingerprint(pin))
    }
}

/// A client configuration (TLS 1.3 only) that trusts the gateway as `trust` says.
pub fn client_config(trust: &Trust) -> Result<Arc<ClientConfig>, TlsError> {
    let builder = ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?;
    let config = match trust {
        Trust::Ca(certs) => {
            let mut roots = RootCertStore::empty();
            for cert in certs {
                roots.add(cert.clone())?;
            }
            builder.with_root_certificates(roots).with_no_client_auth()
        }
        Trust::Fingerprint(pin) => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(PinnedVerifier {
                pin: *pin,
                provider: provider(),
            }))
            .with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// The name to check the gateway's certificate against: the host part of `host:port`.
pub fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    ServerName::try_from(host.to_owned()).map_err(|_| {
        TlsError::Config(rustls::Error::General(format!(
            "{host:?} is not a host name or address"
        )))
    })
}

/// Verifies a gateway by a pinned SHA-256: of its own certificate (then only
/// the handshake signature is checked, as for a self-signed server), or of a
/// CA certificate it presents (then the chain and name are checked against
/// that CA as usual).
#[derive(Debug)]
struct PinnedVerifier {
    pin: [u8; 32],
    provider: Arc<CryptoProvider>,
}

#[derive(Debug)]
struct PinMismatch;

impl fmt::Display for PinMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            "its certificate does not match the --fingerprint given (neither it nor its CA \
             has that SHA-256): this is another gateway, or its certificate changed",
        )
    }
}

impl std::error::Error for PinMismatch {}

impl ServerCertVerifier for PinnedVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let matches = |der: &CertificateDer<'_>| Sha256::digest(der.as_ref())[..] == self.pin[..];
        if matches(end_entity) {
            return Ok(ServerCertVerified::assertion());
        }
        let Some(ca) = intermediates.iter().find(|c| matches(c)) else {
            return Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::Other(rustls::OtherError(Arc::new(PinMismatch))),
            ));
        };
        let mut roots = RootCertStore::empty();
        roots.add(ca.clone().into_owned())?;
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(roots), self.provider.clone())
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
        verifier.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dev_certificates_are_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = DevCertificates::load_or_create(dir.path(), &["gw.test".into()]).unwrap();
        let again = DevCertificates::load_or_create(dir.path(), &[]).unwrap();
        assert_eq!(first.ca_fingerprint, again.ca_fingerprint);
        assert_eq!(first.identity.chain.len(), 2);
        server_config(again.identity).unwrap();
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(dir.path().join("tls/gateway.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "the key must be private");
    }

    #[test]
    fn fingerprints_parse_with_or_without_colons() {
        let hex64 = "ab".repeat(32);
        let colons = vec!["AB"; 32].join(":");
        assert!(matches!(Trust::fingerprint(&hex64), Ok(Trust::Fingerprint(p)) if p == [0xab; 32]));
        assert!(
            matches!(Trust::fingerprint(&colons), Ok(Trust::Fingerprint(p)) if p == [0xab; 32])
        );
        assert!(matches!(
            Trust::fingerprint("abc"),
            Err(TlsError::BadFingerprint(_))
        ));
    }

    #[test]
    fn a_file_without_certificates_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("empty.pem");
        std::fs::write(&path, "not a certificate").unwrap();
        assert!(matches!(Trust::ca_file(&path), Err(TlsError::Pem { .. })));
    }
}
