//! Failure counting in a sliding window: after `limit` failures within
//! `window`, a key (an address, or `()` for the whole gateway) is refused
//! until the oldest of them ages out. Used for logins per address, and for
//! PIN guesses per address and gateway-wide.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Addresses tracked at most; beyond this, addresses whose failures have all
/// aged out are dropped first, so a flood of addresses cannot grow memory
/// without bound.
const MAX_ADDRESSES: usize = 100_000;

/// An attempt counted by [`Throttle::reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserved<K = IpAddr> {
    key: K,
    at: Instant,
}

/// Failure counts per key (per address by default).
#[derive(Debug)]
pub struct Throttle<K = IpAddr> {
    limit: u32,
    window: Duration,
    failures: Mutex<HashMap<K, VecDeque<Instant>>>,
}

impl<K: Hash + Eq + Copy> Throttle<K> {
    /// A throttle of `limit` failures per `window` per key.
    pub fn new(limit: u32, window: Duration) -> Self {
        Self {
            limit: limit.max(1),
            window,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts an attempt from `ip` before it is checked, so that attempts
    /// arriving at once cannot all pass: `Err` with the time to wait when
    /// `limit` attempts are already counted in the window. The attempt stays
    /// counted as a failure unless it is [released](Throttle::release).
    pub fn reserve(&self, key: K, now: Instant) -> Result<Reserved<K>, Duration> {
        let mut map = self.lock();
        if map.len() >= MAX_ADDRESSES && !map.contains_key(&key) {
            map.retain(|_, times| {
                prune(times, now, self.window);
                !times.is_empty()
            });
        }
        let times = map.entry(key).or_default();
        prune(times, now, self.window);
        if times.len() >= self.limit as usize {
            let oldest = times.front().copied().unwrap_or(now);
            return Err((oldest + self.window).saturating_duration_since(now));
        }
        times.push_back(now);
        Ok(Reserved { key, at: now })
    }

    /// The attempt succeeded: it no longer counts against its address.
    pub fn release(&self, reserved: Reserved<K>) {
        let mut map = self.lock();
        if let Some(times) = map.get_mut(&reserved.key) {
            if let Some(i) = times.iter().rposition(|t| *t == reserved.at) {
                times.remove(i);
            }
            if times.is_empty() {
                map.remove(&reserved.key);
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, VecDeque<Instant>>> {
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
        let t: Throttle = Throttle::new(3, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let other: IpAddr = "192.0.2.2".parse().unwrap();
        let start = Instant::now();
        for i in 0..3 {
            assert!(t.reserve(ip, start + Duration::from_secs(i)).is_ok(), "{i}");
        }
        let wait = t.reserve(ip, start + Duration::from_secs(10)).unwrap_err();
        assert_eq!(wait, Duration::from_secs(50));
        assert!(
            t.reserve(other, start).is_ok(),
            "other addresses unaffected"
        );
        assert!(t.reserve(ip, start + Duration::from_secs(60)).is_ok());
    }

    #[test]
    fn a_released_attempt_frees_its_place() {
        let t: Throttle = Throttle::new(2, Duration::from_secs(60));
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let now = Instant::now();
        let first = t.reserve(ip, now).unwrap();
        t.reserve(ip, now).unwrap();
        assert!(t.reserve(ip, now).is_err());
        t.release(first);
        assert!(t.reserve(ip, now).is_ok());
        assert!(t.reserve(ip, now).is_err());
    }
}
