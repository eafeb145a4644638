//! The gateway's session CA: at pickup it signs each side's CSR with a
//! short-lived certificate that binds what `protocol::identity` describes.
//! The private keys stay with console and applet; the gateway only ever
//! sees their CSRs.

use std::time::Duration;

use protocol::identity::SessionIdentity;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DnType,
    ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
};

/// A certificate could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// The CSR is not a valid, self-signed PKCS #10 request.
    #[error("invalid certificate signing request: {0}")]
    BadCsr(rcgen::Error),
    /// Signing failed.
    #[error("issuing a session certificate failed: {0}")]
    Issue(rcgen::Error),
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
    use audit_event::Permission;
    use protocol::identity::Role;
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::CertificateDer;
    use uuid::Uuid;

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
        assert!(SessionIdentity::from_cert(cert.der()).is_err());
    }
}
