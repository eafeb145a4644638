//! The session CA: at pickup the gateway signs each side's CSR with a
//! short-lived certificate that binds the session GUID, the side's role and,
//! for the console, the permissions its group grants. The private keys stay
//! with console and applet; the gateway only ever sees their CSRs.
//!
//! The binding is carried in subjectAltName entries:
//! `urn:vigil:session:<guid>`, `urn:vigil:role:<console|applet>`,
//! `urn:vigil:grant:<permission,...>`,
//! `urn:vigil:consent:<single-prompt|per-action>` and
//! `urn:vigil:chat:<stored|private>` (console only), and the DNS name
//! `<role>.<guid>.session.vigil` that the console verifies the applet by.

use std::time::Duration;

use audit_db::Permission;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls_pki_types::CertificateDer;
use uuid::Uuid;

/// A certificate could not be issued or its binding read.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CSR is not a valid, self-signed PKCS #10 request.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(rcgen::Error),
    /// Signing failed.
    #[error("issuing a session certificate failed: {0}")]
    Issue(rcgen::Error),
    /// A certificate that is not a Vigil session certificate.
    #[error("not a Vigil session certificate: {0}")]
    NotSession(String),
}

/// Which end of a session a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Console,
    Applet,
}

impl Role {
    fn as_str(self) -> &'static str {
        match self {
            Role::Console => "console",
            Role::Applet => "applet",
        }
    }
}

/// What a session certificate binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIdentity {
    pub guid: Uuid,
    pub role: Role,
    /// The permissions granted for this session (the console's certificate only).
    pub grant: Vec<Permission>,
    /// One consent for the whole session instead of one per action (the
    /// console's certificate only; the group's setting).
    pub single_prompt: bool,
    /// Chat text may go to the audit log (the console's certificate only;
    /// the group's setting). Otherwise neither side sends it outside the
    /// inner session: the log gets only each line's length.
    pub store_chat: bool,
}

impl SessionIdentity {
    /// The DNS name in the certificate of `role` for session `guid`.
    pub fn dns_name(guid: Uuid, role: Role) -> String {
        format!("{}.{}.session.vigil", role.as_str(), guid.simple())
    }

    fn sans(&self) -> Result<Vec<SanType>, rcgen::Error> {
        let mut uris = vec![
            format!("urn:vigil:session:{}", self.guid),
            format!("urn:vigil:role:{}", self.role.as_str()),
        ];
        if self.role == Role::Console {
            let grant: Vec<_> = self.grant.iter().map(|p| p.as_str()).collect();
            uris.push(format!("urn:vigil:grant:{}", grant.join(",")));
            let consent = if self.single_prompt {
                "single-prompt"
            } else {
                "per-action"
            };
            uris.push(format!("urn:vigil:consent:{consent}"));
            let chat = if self.store_chat { "stored" } else { "private" };
            uris.push(format!("urn:vigil:chat:{chat}"));
        }
        let mut sans = vec![SanType::DnsName(
            Self::dns_name(self.guid, self.role).try_into()?,
        )];
        for uri in uris {
            sans.push(SanType::URI(uri.try_into()?));
        }
        Ok(sans)
    }

    /// Reads the binding out of a session certificate.
    pub fn from_cert(der: &CertificateDer<'_>) -> Result<Self, CaError> {
        let bad = |why: &str| CaError::NotSession(why.to_owned());
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| CaError::NotSession(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| CaError::NotSession(e.to_string()))?
            .ok_or_else(|| bad("no subjectAltName"))?;
        let (mut guid, mut role, mut grant, mut single_prompt) = (None, None, None, false);
        // Without the entry, chat is private: text never leaves by mistake.
        let mut store_chat = false;
        for name in &san.value.general_names {
            let x509_parser::extensions::GeneralName::URI(uri) = name else {
                continue;
            };
            if let Some(g) = uri.strip_prefix("urn:vigil:session:") {
                guid = Some(Uuid::parse_str(g).map_err(|_| bad("malformed session GUID"))?);
            } else if let Some(r) = uri.strip_prefix("urn:vigil:role:") {
                role = Some(match r {
                    "console" => Role::Console,
                    "applet" => Role::Applet,
                    _ => return Err(bad("unknown role")),
                });
            } else if let Some(mode) = uri.strip_prefix("urn:vigil:consent:") {
                single_prompt = mode == "single-prompt";
            } else if let Some(chat) = uri.strip_prefix("urn:vigil:chat:") {
                store_chat = chat == "stored";
            } else if let Some(list) = uri.strip_prefix("urn:vigil:grant:") {
                grant = Some(
                    list.split(',')
                        .filter(|p| !p.is_empty())
                        .map(|p| p.parse().map_err(|_| bad("unknown permission in grant")))
                        .collect::<Result<Vec<Permission>, _>>()?,
                );
            }
        }
        Ok(SessionIdentity {
            guid: guid.ok_or_else(|| bad("no session GUID"))?,
            role: role.ok_or_else(|| bad("no role"))?,
            grant: grant.unwrap_or_default(),
            single_prompt,
            store_chat,
        })
    }
}

/// The gateway's session CA. Made fresh at every gateway start and kept
/// only in memory: session certificates live no longer than a session.
pub struct SessionCa {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

impl std::fmt::Debug for SessionCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionCa").finish_non_exhaustive()
    }
}

impl SessionCa {
    /// A new CA with a new key.
    pub fn new(gateway: &str) -> Result<Self, CaError> {
        let key = KeyPair::generate().map_err(CaError::Issue)?;
        let mut params = CertificateParams::default();
        params
            .distinguished_name
            .push(DnType::CommonName, format!("Vigil session CA ({gateway})"));
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign];
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::hours(1);
        params.not_after = now + time::Duration::days(400);
        let cert = params.self_signed(&key).map_err(CaError::Issue)?;
        Ok(Self {
            issuer: Issuer::new(params, key),
            pem: cert.pem(),
        })
    }

    /// The CA certificate both sides trust for the inner session, in PEM.
    pub fn certificate_pem(&self) -> &str {
        &self.pem
    }

    /// Checks that `csr_pem` is a valid, self-signed request, before it is
    /// kept for signing later.
    pub fn check_csr(csr_pem: &str) -> Result<(), CaError> {
        CertificateSigningRequestParams::from_pem(csr_pem)
            .map(drop)
            .map_err(CaError::BadCsr)
    }

    /// Signs `csr_pem` for `identity`, valid from a minute ago for `ttl`.
    /// Everything but the public key is taken from `identity`, never from the CSR.
    pub fn issue(
        &self,
        csr_pem: &str,
        identity: &SessionIdentity,
        ttl: Duration,
    ) -> Result<String, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::BadCsr)?;
        let mut params = CertificateParams::default();
        params.distinguished_name.push(
            DnType::CommonName,
            format!("vigil {} {}", identity.role.as_str(), identity.guid),
        );
        params.subject_alt_names = identity.sans().map_err(CaError::Issue)?;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let now = time::OffsetDateTime::now_utc();
        params.not_before = now - time::Duration::minutes(1);
        params.not_after = now + ttl;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(CaError::Issue)?;
        Ok(cert.pem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls_pki_types::pem::PemObject;

    fn csr() -> String {
        let key = KeyPair::generate().unwrap();
        CertificateParams::default()
            .serialize_request(&key)
            .unwrap()
            .pem()
            .unwrap()
    }

    #[test]
    fn the_binding_survives_issue_and_parse() {
        let ca = SessionCa::new("test").unwrap();
        let id = SessionIdentity {
            guid: Uuid::new_v4(),
            role: Role::Console,
            grant: vec![Permission::DesktopView, Permission::SendFiles],
            single_prompt: true,
            store_chat: true,
        };
        let pem = ca.issue(&csr(), &id, Duration::from_secs(60)).unwrap();
        let der = CertificateDer::from_pem_slice(pem.as_bytes()).unwrap();
        assert_eq!(SessionIdentity::from_cert(&der).unwrap(), id);
    }

    #[test]
    fn a_garbage_csr_is_refused() {
        let ca = SessionCa::new("test").unwrap();
        let id = SessionIdentity {
            guid: Uuid::new_v4(),
            role: Role::Applet,
            grant: vec![],
            single_prompt: false,
            store_chat: false,
        };
        assert!(matches!(
            ca.issue(
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n",
                &id,
                Duration::from_secs(60)
            ),
            Err(CaError::BadCsr(_))
        ));
    }

    #[test]
    fn a_foreign_certificate_has_no_identity() {
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["example.com".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        assert!(matches!(
            SessionIdentity::from_cert(cert.der()),
            Err(CaError::NotSession(_))
        ));
    }
}
