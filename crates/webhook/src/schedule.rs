//! When a failed post is tried again, and when an endpoint is given up on.

use std::time::Duration;

/// Waits before the attempts after the first, which is made at once: 5 s,
/// 5 min, 30 min, 2 h, 5 h, 10 h, 10 h (Standard Webhooks' reference
/// schedule). After the last, the message has failed.
pub const RETRY_AFTER: [Duration; 7] = [
    Duration::from_secs(5),
    Duration::from_secs(5 * 60),
    Duration::from_secs(30 * 60),
    Duration::from_secs(2 * 3600),
    Duration::from_secs(5 * 3600),
    Duration::from_secs(10 * 3600),
    Duration::from_secs(10 * 3600),
];

/// Attempts a message gets in all.
pub const MAX_ATTEMPTS: u32 = RETRY_AFTER.len() as u32 + 1;

/// An endpoint that has failed every attempt for this long is disabled.
pub const GIVE_UP_AFTER: Duration = Duration::from_secs(5 * 24 * 3600);

/// The longest `Retry-After` honoured; a longer one waits this long.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(10 * 3600);

/// The source of "now" and of jitter, so the schedule can be tested without
/// waiting for it.
pub trait Clock: Send + Sync + 'static {
    /// Microseconds since the Unix epoch.
    fn now_us(&self) -> i64;
    /// A number in [-1, 1] (jitter's direction and size).
    fn jitter(&self) -> f64;
}

/// The wall clock and the OS's random source.
#[derive(Clone, Copy, Debug, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_us(&self) -> i64 {
        audit_db::time_us::now()
    }

    fn jitter(&self) -> f64 {
        let mut b = [0u8; 4];
        if getrandom::fill(&mut b).is_err() {
            return 0.0;
        }
        f64::from(u32::from_le_bytes(b)) / f64::from(u32::MAX) * 2.0 - 1.0
    }
}

/// When the attempt after attempt number `attempt` (from 1) is due, given
/// the receiver's `Retry-After` if it sent one with a 429 or 503; `None`
/// once every attempt has been made. The wait is jittered by ±10 %;
/// `Retry-After` is taken as given (it is the receiver's own schedule),
/// but never sooner than the schedule and never later than
/// [`MAX_RETRY_AFTER`].
pub fn next_attempt(
    attempt: u32,
    now_us: i64,
    retry_after: Option<Duration>,
    clock: &dyn Clock,
) -> Option<i64> {
    let scheduled = *RETRY_AFTER.get(usize::try_from(attempt).ok()?.checked_sub(1)?)?;
    let jittered = scheduled.as_secs_f64() * (1.0 + 0.1 * clock.jitter().clamp(-1.0, 1.0));
    let wait = match retry_after {
        Some(asked) => asked.min(MAX_RETRY_AFTER).as_secs_f64().max(jittered),
        None => jittered,
    };
    Some(now_us + (wait * 1e6) as i64)
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Fixed(f64);
    impl Clock for Fixed {
        fn now_us(&self) -> i64 {
            0
        }
        fn jitter(&self) -> f64 {
            self.0
        }
    }

    #[test]
    fn the_schedule_with_its_jitter_bounds() {
        let expected = [5, 300, 1800, 7200, 18000, 36000, 36000];
        for (i, secs) in expected.iter().enumerate() {
            let attempt = i as u32 + 1;
            let us = secs * 1_000_000;
            assert_eq!(next_attempt(attempt, 0, None, &Fixed(0.0)), Some(us));
            assert_eq!(
                next_attempt(attempt, 0, None, &Fixed(1.0)),
                Some(us + us / 10)
            );
            assert_eq!(
                next_attempt(attempt, 0, None, &Fixed(-1.0)),
                Some(us - us / 10)
            );
        }
        assert_eq!(next_attempt(MAX_ATTEMPTS, 0, None, &Fixed(0.0)), None);
        assert_eq!(next_attempt(0, 0, None, &Fixed(0.0)), None);
        assert_eq!(MAX_ATTEMPTS, 8);
    }

    #[test]
    fn retry_after_is_honoured_within_bounds() {
        let later = next_attempt(1, 0, Some(Duration::from_secs(120)), &Fixed(0.0));
        assert_eq!(later, Some(120_000_000));
        // Never sooner than the schedule...
        let sooner = next_attempt(2, 0, Some(Duration::from_secs(1)), &Fixed(0.0));
        assert_eq!(sooner, Some(300_000_000));
        // ...nor later than the cap.
        let huge = next_attempt(1, 0, Some(Duration::from_secs(10 * 86400)), &Fixed(0.0));
        assert_eq!(huge, Some(MAX_RETRY_AFTER.as_micros() as i64));
    }

    #[test]
    fn system_jitter_stays_in_range() {
        for _ in 0..1000 {
            let j = SystemClock.jitter();
            assert!((-1.0..=1.0).contains(&j));
        }
    }
}
