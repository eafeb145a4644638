//! Standard Webhooks v1 signatures: `whsec_` secrets and the
//! `webhook-signature` header, HMAC-SHA256 over `id.timestamp.body`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The prefix Standard Webhooks gives a secret's text form.
const PREFIX: &str = "whsec_";

/// A signing secret: the key behind a `whsec_...` text.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Vec<u8>);

/// A secret's text is not `whsec_` and base64.
#[derive(Debug, thiserror::Error)]
#[error("not a webhook secret (whsec_ and base64 expected)")]
pub struct BadSecret;

impl Secret {
    /// 32 bytes from the OS's random source.
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = vec![0; 32];
        getrandom::fill(&mut key)?;
        Ok(Self(key))
    }

    /// The secret of a `whsec_...` text (the prefix may be left off, as
    /// Standard Webhooks libraries accept).
    pub fn parse(text: &str) -> Result<Self, BadSecret> {
        let b64 = text.strip_prefix(PREFIX).unwrap_or(text);
        match BASE64.decode(b64) {
            Ok(key) if !key.is_empty() => Ok(Self(key)),
            _ => Err(BadSecret),
        }
    }

    /// `whsec_` and the key in base64.
    pub fn to_text(&self) -> String {
        format!("{PREFIX}{}", BASE64.encode(&self.0))
    }

    /// `v1,` and the base64 HMAC-SHA256 of `id.timestamp.body`.
    pub fn sign(&self, id: &str, timestamp: i64, body: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes keys of any size");
        mac.update(id.as_bytes());
        mac.update(b".");
        mac.update(timestamp.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// The `webhook-signature` header: one signature per secret, space-separated
/// (during a rotation's grace both the new and the old secret sign).
pub fn header(secrets: &[Secret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets
        .iter()
        .map(|s| s.sign(id, timestamp, body))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Whether `header` (a `webhook-signature` value) holds a signature of
/// `secret` over `id`, `timestamp` and `body`.
pub fn verify(secret: &Secret, id: &str, timestamp: i64, body: &[u8], header: &str) -> bool {
    let expected = secret.sign(id, timestamp, body);
    header
        .split(' ')
        .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The example in the Standard Webhooks specification and its libraries' tests.
    #[test]
    fn the_specifications_test_vector() {
        let secret = Secret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        assert_eq!(
            secret.sign(
                "msg_p5jXN8AQM9LWM0D4loKWxJek",
                1614265330,
                br#"{"test": 2432232314}"#
            ),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
    }

    #[test]
    fn secrets_round_trip_and_bad_ones_are_refused() {
        let s = Secret::generate().unwrap();
        let text = s.to_text();
        assert!(text.starts_with("whsec_"));
        assert_eq!(BASE64.decode(&text[6..]).unwrap().len(), 32);
        assert_eq!(Secret::parse(&text).unwrap(), s);
        assert!(Secret::parse("whsec_not base64!").is_err());
        assert!(Secret::parse("whsec_").is_err());
    }

    #[test]
    fn every_secret_signs_in_the_header() {
        let (a, b) = (Secret::generate().unwrap(), Secret::generate().unwrap());
        let h = header(&[a.clone(), b.clone()], "id", 5, b"{}");
        assert_eq!(
            h,
            format!("{} {}", a.sign("id", 5, b"{}"), b.sign("id", 5, b"{}"))
        );
        assert_ne!(a.sign("id", 5, b"{}"), a.sign("id", 6, b"{}"));
        assert!(verify(&a, "id", 5, b"{}", &h) && verify(&b, "id", 5, b"{}", &h));
        assert!(!verify(&a, "id", 5, b"{ }", &h));
        assert!(!verify(&Secret::generate().unwrap(), "id", 5, b"{}", &h));
    }
}
