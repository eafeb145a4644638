//! Technician authentication rules: the access policy (kept in the database
//! so `vigil admin` and every gateway agree), password rules, and argon2id
//! hashing with OWASP's parameters.

use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use audit_db::Accounts;
use serde::{Deserialize, Serialize};

/// The settings key the policy is stored under.
const POLICY_KEY: &str = "access_policy";

/// OWASP's argon2id recommendation: 19 MiB, 2 passes, 1 lane.
const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
const ARGON2_PASSES: u32 = 2;
const ARGON2_LANES: u32 = 1;

/// How technicians authenticate, and how long things last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Policy {
    /// Shortest password accepted, in characters.
    pub min_password_length: usize,
    /// A password older than this must be changed at the next login; `None`: never.
    pub password_max_age_days: Option<u32>,
    /// Consecutive failed logins that lock an account.
    pub lockout_threshold: u32,
    /// How long a lock lasts, in seconds; `None`: until an administrator unlocks it.
    pub lockout_s: Option<u64>,
    /// Failed logins from one address (across accounts) that throttle it...
    pub ip_failure_limit: u32,
    /// ...within this many seconds.
    pub ip_window_s: u64,
    /// A technician connection idle this long (seconds) is logged off.
    pub idle_timeout_s: u64,
    /// A session's PIN (and an unjoined session) expires after this many seconds.
    pub pin_ttl_s: u64,
    /// Wrong PINs from one address that throttle it...
    pub pin_failure_limit: u32,
    /// ...within this many seconds.
    pub pin_window_s: u64,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            min_password_length: 12,
            password_max_age_days: None,
            lockout_threshold: 5,
            lockout_s: Some(30 * 60),
            ip_failure_limit: 20,
            ip_window_s: 15 * 60,
            idle_timeout_s: 15 * 60,
            pin_ttl_s: 10 * 60,
            pin_failure_limit: 5,
            pin_window_s: 10 * 60,
        }
    }
}

impl Policy {
    /// The stored policy, or the defaults if none was ever set.
    pub async fn load(accounts: &Accounts) -> Result<Self, audit_db::Error> {
        Ok(accounts.setting(POLICY_KEY).await?.unwrap_or_default())
    }

    /// Stores this policy.
    pub async fn store(&self, accounts: &Accounts) -> Result<(), audit_db::Error> {
        accounts.put_setting(POLICY_KEY, self).await
    }

    /// How long a lock lasts (`None`: until an administrator unlocks it).
    pub fn lockout(&self) -> Option<Duration> {
        self.lockout_s.map(Duration::from_secs)
    }

    /// The idle limit of a technician connection.
    pub fn idle_timeout(&self) -> Duration {
        Duration::from_secs(self.idle_timeout_s)
    }

    /// How long a PIN stays valid.
    pub fn pin_ttl(&self) -> Duration {
        Duration::from_secs(self.pin_ttl_s)
    }

    /// Whether a password set at `set_us` is past the maximum age at `now_us`.
    pub fn password_expired(&self, set_us: i64, now_us: i64) -> bool {
        self.password_expires_us(set_us)
            .is_some_and(|expires| now_us >= expires)
    }

    /// When a password set at `set_us` expires, if passwords expire.
    pub fn password_expires_us(&self, set_us: i64) -> Option<i64> {
        self.password_max_age_days
            .map(|d| set_us.saturating_add(i64::from(d) * 86_400_000_000))
    }

    /// Checks a new password against the rules; `email` is the account's.
    pub fn check_password(&self, email: &str, password: &str) -> Result<(), PasswordRejected> {
        let chars = password.chars().count();
        if chars < self.min_password_length {
            return Err(PasswordRejected::TooShort {
                min: self.min_password_length,
            });
        }
        let lower = password.to_lowercase();
        let mut distinct: Vec<char> = lower.chars().collect();
        distinct.sort_unstable();
        distinct.dedup();
        if distinct.len() < 4 {
            return Err(PasswordRejected::TooRepetitive);
        }
        let local = email.split('@').next().unwrap_or_default().to_lowercase();
        if local.len() >= 4 && lower.contains(&local) {
            return Err(PasswordRejected::ContainsEmail);
        }
        let stem = lower.trim_end_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation());
        if is_common(&lower) || is_common(stem) {
            return Err(PasswordRejected::Common);
        }
        Ok(())
    }
}

fn is_common(candidate: &str) -> bool {
    include_str!("../data/common-passwords.txt")
        .lines()
        .filter(|l| !l.starts_with('#'))
        .any(|l| l == candidate)
}

/// Why a new password was refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejected {
    #[error("the password must be at least {min} characters long")]
    TooShort { min: usize },
    #[error("the password is one of the most common passwords")]
    Common,
    #[error("the password must not contain the account's name")]
    ContainsEmail,
    #[error("the password must use at least 4 different characters")]
    TooRepetitive,
}

/// Hashing failed (out of memory, or no system randomness).
#[derive(Debug, thiserror::Error)]
#[error("password hashing failed: {0}")]
pub struct HashError(String);

impl HashError {
    pub(crate) fn new(message: String) -> Self {
        Self(message)
    }
}

fn argon2() -> Argon2<'static> {
    // These constants are within argon2's limits, so `Params::new` cannot fail.
    let params =
        Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None).unwrap_or_default();
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// The argon2id PHC string of `password`, with a fresh random salt. CPU-heavy:
/// call it off the async threads.
pub fn hash_password(password: &str) -> Result<String, HashError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| HashError(e.to_string()))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| HashError(e.to_string()))?;
    argon2()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| HashError(e.to_string()))
}

/// Whether `password` matches the PHC string `hash` (with the parameters
/// stored in it). A malformed hash matches nothing. CPU-heavy.
pub fn verify_password(hash: &str, password: &str) -> bool {
    PasswordHash::new(hash).is_ok_and(|parsed| {
        argon2()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hashes_are_argon2id_with_owasp_parameters_and_verify() {
        let hash = hash_password("a long enough passphrase").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password(&hash, "a long enough passphrase"));
        assert!(!verify_password(&hash, "a long enough passphrasf"));
        assert!(!verify_password("not a hash", "x"));
        assert_ne!(hash, hash_password("a long enough passphrase").unwrap());
    }

    #[test]
    fn password_rules() {
        let p = Policy::default();
        let check = |pw| p.check_password("ann.smith@example.com", pw);
        assert_eq!(check("short"), Err(PasswordRejected::TooShort { min: 12 }));
        assert_eq!(check("password1234"), Err(PasswordRejected::Common));
        assert_eq!(
            check("Passw0rd"),
            Err(PasswordRejected::TooShort { min: 12 })
        );
        assert_eq!(check("Password2024!!"), Err(PasswordRejected::Common));
        assert_eq!(check("QwertyUiop123"), Err(PasswordRejected::Common));
        assert_eq!(
            check("aaaaaaaaaaaaaaa"),
            Err(PasswordRejected::TooRepetitive)
        );
        assert_eq!(
            check("my ann.smith key"),
            Err(PasswordRejected::ContainsEmail)
        );
        assert_eq!(check("violet tractor mango"), Ok(()));
    }

    #[test]
    fn expiry() {
        let p = Policy {
            password_max_age_days: Some(1),
            ..Policy::default()
        };
        assert!(!p.password_expired(0, 86_400_000_000 - 1));
        assert!(p.password_expired(0, 86_400_000_000));
        assert!(!Policy::default().password_expired(0, i64::MAX));
    }
}
