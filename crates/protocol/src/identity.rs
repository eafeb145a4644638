//! What a session certificate binds, and reading it back: the session
//! GUID, the side's role and, for the console, the permissions its group
//! grants, its consent mode and its chat setting. The gateway's session CA
//! (in the `gateway` crate) writes these; console and applet read them.
//!
//! The binding is carried in subjectAltName entries:
//! `urn:vigil:session:<guid>`, `urn:vigil:role:<console|applet>`,
//! `urn:vigil:grant:<permission,...>`,
//! `urn:vigil:consent:<single-prompt|per-action>` and
//! `urn:vigil:chat:<stored|private>` (console only), and the DNS name
//! `<role>.<guid>.session.vigil` that the console verifies the applet by.

use audit_event::Permission;
use rcgen::SanType;
use rustls_pki_types::CertificateDer;
use uuid::Uuid;

/// A certificate that is not a Vigil session certificate, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a Vigil session certificate: {0}")]
pub struct NotSession(pub String);

/// Which end of a session a certificate is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// The technician's side (the inner TLS client).
    Console,
    /// The end user's side (the inner TLS server).
    Applet,
}

impl Role {
    /// The name in the certificate.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Console => "console",
            Role::Applet => "applet",
        }
    }
}

/// What a session certificate binds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionIdentity {
    /// The session the certificate is for.
    pub guid: Uuid,
    /// Which side of it.
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

    /// The subjectAltName entries that carry this binding.
    pub fn sans(&self) -> Result<Vec<SanType>, rcgen::Error> {
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
    pub fn from_cert(der: &CertificateDer<'_>) -> Result<Self, NotSession> {
        let bad = |why: &str| NotSession(why.to_owned());
        let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref())
            .map_err(|e| NotSession(format!("unparsable certificate: {e}")))?;
        let san = cert
            .subject_alternative_name()
            .map_err(|e| NotSession(e.to_string()))?
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
