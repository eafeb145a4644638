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
pub(crate) const ARGON2_MEMORY_KIB: u32 = 19 * 1024;
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
    /// Wrong PINs, from any address, after which a session's PIN is
    /// withdrawn: at most 99, so a PIN's chance of being guessed stays
    /// below 1 in 10,000 (docs/protocol.md).
    pub pin_guess_budget: u32,
    /// Wrong PINs from all addresses within `pin_window_s` after which PIN
    /// joins pause gateway-wide and an alarm is audited.
    pub pin_gateway_limit: u32,
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
            pin_guess_budget: MAX_PIN_GUESS_BUDGET,
            pin_gateway_limit: 200,
        }
    }
}

/// The most wrong PINs a session's PIN survives: with 10^6 PINs, 99
/// guesses find a given one with probability at most 99 / 10^6 < 10^-4.
pub const MAX_PIN_GUESS_BUDGET: u32 = 99;

const DAY_S: u64 = 86_400;

/// A policy value outside the range it may take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{setting} must be {range}, not {value}")]
pub struct OutOfRange {
    /// The setting, as `vigil admin policy set` names it.
    pub setting: &'static str,
    /// What it may be.
    pub range: String,
    /// What it was.
    pub value: String,
}

fn within<T: PartialOrd + std::fmt::Display>(
    setting: &'static str,
    value: T,
    range: std::ops::RangeInclusive<T>,
    unit: &str,
) -> Result<(), OutOfRange> {
    if range.contains(&value) {
        Ok(())
    } else {
        Err(OutOfRange {
            setting,
            range: format!("{} to {}{unit}", range.start(), range.end()),
            value: format!("{value}{unit}"),
        })
    }
}

impl Policy {
    /// The stored policy, or the defaults if none was ever set.
    pub async fn load(accounts: &Accounts) -> Result<Self, audit_db::Error> {
        Ok(accounts.setting(POLICY_KEY).await?.unwrap_or_default())
    }

    /// Checks every value against its range: a policy that could lock
    /// nobody out, or overflow a clock, is refused rather than stored or run.
    pub fn check(&self) -> Result<(), OutOfRange> {
        within(
            "--min-password-length",
            self.min_password_length,
            8..=256,
            " characters",
        )?;
        if let Some(days) = self.password_max_age_days {
            within("--password-max-age", days, 1..=3650, " days")?;
        }
        within("--lockout-threshold", self.lockout_threshold, 1..=100, "")?;
        if let Some(s) = self.lockout_s {
            within("--lockout", s, 1..=365 * DAY_S, " s")?;
        }
        within("--ip-failure-limit", self.ip_failure_limit, 1..=100_000, "")?;
        within("--ip-window", self.ip_window_s, 1..=7 * DAY_S, " s")?;
        within("--idle-timeout", self.idle_timeout_s, 1..=DAY_S, " s")?;
        within("--pin-ttl", self.pin_ttl_s, 1..=DAY_S, " s")?;
        within("--pin-failure-limit", self.pin_failure_limit, 1..=1000, "")?;
        within("--pin-window", self.pin_window_s, 1..=DAY_S, " s")?;
        within(
            "--pin-guess-budget",
            self.pin_guess_budget,
            1..=MAX_PIN_GUESS_BUDGET,
            "",
        )?;
        within(
            "--pin-gateway-limit",
            self.pin_gateway_limit,
            1..=1_000_000,
            "",
        )
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

/// Longest account email, in bytes (RFC 5321's limit on a path).
pub const MAX_EMAIL: usize = 254;

/// `raw` as an account's email: trimmed and lower case, with one `@` and
/// text on both sides, no whitespace or control characters, at most
/// [`MAX_EMAIL`] bytes; `None` if it cannot be one.
pub fn account_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    let valid = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty() && !domain.is_empty() && !domain.contains('@')
    }) && !email.chars().any(|c| c.is_whitespace() || c.is_control())
        && email.len() <= MAX_EMAIL;
    valid.then_some(email)
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
    /// Shorter than the policy allows.
    TooShort {
        /// The shortest allowed, in characters.
        min: usize,
    },
    /// One of the most common passwords.
    #[error("the password is one of the most common passwords")]
    Common,
    #[error("the password must not contain the account's name")]
    /// It contains the account's name.
    ContainsEmail,
    #[error("the password must use at least 4 different characters")]
    /// Fewer than 4 different characters.
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
    let params = Params::new(ARGON2_MEMORY_KIB, ARGON2_PASSES, ARGON2_LANES, None)
        .expect("OWASP's argon2id parameters are within argon2's limits");
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
    fn account_emails_are_checked() {
        assert_eq!(
            account_email(" Ann@Example.com ").as_deref(),
            Some("ann@example.com")
        );
        let long = format!("{}@example.com", "a".repeat(250));
        for bad in [
            "ann",
            "@example.com",
            "ann@",
            "a b@example.com",
            "a@b@c",
            "a\n@b.c",
            &long,
        ] {
            assert_eq!(account_email(bad), None, "{bad}");
        }
    }

    #[test]
    fn every_value_has_a_range() {
        assert_eq!(Policy::default().check(), Ok(()));
        let bad = [
            Policy {
                min_password_length: 0,
                ..Policy::default()
            },
            Policy {
                lockout_threshold: 0,
                ..Policy::default()
            },
            Policy {
                lockout_s: Some(u64::MAX),
                ..Policy::default()
            },
            Policy {
                pin_ttl_s: u64::MAX,
                ..Policy::default()
            },
            Policy {
                ip_window_s: u64::MAX,
                ..Policy::default()
            },
            Policy {
                pin_guess_budget: 100,
                ..Policy::default()
            },
            Policy {
                password_max_age_days: Some(0),
                ..Policy::default()
            },
        ];
        for p in bad {
            assert!(p.check().is_err(), "{p:?}");
        }
        let e = Policy {
            lockout_threshold: 0,
            ..Policy::default()
        }
        .check()
        .unwrap_err();
        assert_eq!(e.to_string(), "--lockout-threshold must be 1 to 100, not 0");
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
