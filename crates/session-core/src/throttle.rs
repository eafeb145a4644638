//! Per-address failure counting in a sliding window: after `limit` failures
//! within `window`, an address is refused until the oldest of them ages out.
//! Used for logins (across accounts) and for PIN guesses.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond this, addresses whose failures have all
/// aged out are dropped first, so a flood of addresses cannot grow memory
/// without bound.
const MAX_ADDRESSES: usize = 100_000;

/// Failure counts per address.
#[derive(Debug)]
pub struct Throttle {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<IpAddr, VecDeque<Instant>>>,
}

impl Throttle {
    /// A throttle of `limit` failures per `window` per address.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// How long `ip` must wait before its next attempt, if it is throttled now.
    pub fn retry_after(&self, ip: IpAddr, now: Instant) -> Option<Duration> {
        let mut map = self.lock();
        let times = map.get_mut(&ip)?;
        prune(times, now, self.window);
        if times.len() >= self.limit as usize {
            times
                .front()
                .map(|oldest| (*oldest + self.window).saturating_duration_since(now))
        } else {
            None
        }
    }

    /// Counts a failure from `ip`.
    pub fn fail(&self, ip: IpAddr, now: Instant) {
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&ip) {
            map.retain(|_, times| {
                prune(times, now, self.window);
                !times.is_empty()
            });
        }
        let times = map.entry(ip).or_default();
        prune(times, now, self.window);
        times.push_back(now);
        // Only the newest `limit` failures matter for the decision.
        while times.len() > self.limit as usize {
            times.pop_front();
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<IpAddr, VecDeque<Instant>>> {
        // A panic while holding the lock cannot leave the map inconsistent
        // (every update is a single push or pop), so a poisoned lock is still usable.
        self.failures.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn prune(times: &mut VecDeque<Instant>, now: Instant, window: Duration) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= window)
    {
        times.pop_front();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttles_after_the_limit_and_recovers_after_the_window() {
        let t = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for i in 0..3 {
            assert_eq!(t.retry_after(ip, start), None, "attempt {i}");
            t.fail(ip, start + Duration::from_secs(i));
        }
        let wait = t.retry_after(ip, start + Duration::from_secs(10)).unwrap();
        assert_eq!(wait, Duration::from_secs(50));
        assert_eq!(
            t.retry_after(other, start),
            None,
            "other addresses unaffected"
        );
        assert_eq!(t.retry_after(ip, start + Duration::from_secs(60)), None);
    }
}
