//! Login rate limiting: failed logins are counted per client address and per user name
//! over a sliding window; past either limit, logins (right or wrong) are refused until
//! the window has room again. Time is passed in. The tables are bounded.

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Mutex;

use crate::time::Timestamp;

/// Most keys (addresses or names) remembered per table.
const MAX_KEYS: usize = 50_000;

#[derive(Debug)]
struct Window<K> {
    failures: Mutex<HashMap<K, VecDeque<Timestamp>>>,
    max: usize,
    window_secs: f64,
}

impl<K: Eq + Hash + Clone> Window<K> {
    fn new(max: u32, window_secs: u64) -> Window<K> {
        Window {
            failures: Mutex::new(HashMap::new()),
            max: usize::try_from(max).unwrap_or(usize::MAX).max(1),
            window_secs: std::time::Duration::from_secs(window_secs).as_secs_f64(),
        }
    }

    /// Seconds until a new attempt is allowed (0: allowed now).
    fn wait_secs(&self, key: &K, now: Timestamp) -> f64 {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let Some(q) = map.get_mut(key) else {
            return 0.0;
        };
        while q
            .front()
            .is_some_and(|t| now.secs_since(*t) >= self.window_secs)
        {
            q.pop_front();
        }
        if q.is_empty() {
            map.remove(key);
            return 0.0;
        }
        if q.len() < self.max {
            return 0.0;
        }
        // The oldest failure leaves the window first.
        q.front()
            .map_or(0.0, |t| (self.window_secs - now.secs_since(*t)).max(1.0))
    }

    fn fail(&self, key: K, now: Timestamp) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= MAX_KEYS && !map.contains_key(&key) {
            let w = self.window_secs;
            map.retain(|_, q| q.back().is_some_and(|t| now.secs_since(*t) < w));
            if map.len() >= MAX_KEYS {
                if let Some(k) = map.keys().next().cloned() {
                    map.remove(&k);
                }
            }
        }
        let q = map.entry(key).or_default();
        q.push_back(now);
        while q.len() > self.max {
            q.pop_front();
        }
    }

    fn clear(&self, key: &K) {
        self.failures
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(key);
    }
}

/// The login limiter: per client address and per user name.
#[derive(Debug)]
pub(crate) struct LoginLimiter {
    per_client: Window<IpAddr>,
    per_user: Window<String>,
}

impl LoginLimiter {
    pub(crate) fn new(per_client: u32, per_user: u32, window_secs: u64) -> LoginLimiter {
        LoginLimiter {
            per_client: Window::new(per_client, window_secs),
            per_user: Window::new(per_user, window_secs),
        }
    }

    /// `Err(seconds to wait)` when this client or this user is over its limit.
    pub(crate) fn check(&self, client: IpAddr, user: &str, now: Timestamp) -> Result<(), u64> {
        let wait = self
            .per_client
            .wait_secs(&client, now)
            .max(self.per_user.wait_secs(&user.to_string(), now));
        if wait > 0.0 {
            // Whole seconds for Retry-After, rounded up.
            Err(wait.ceil().min(1e9) as u64)
        } else {
            Ok(())
        }
    }

    /// Counts a failed login (wrong password, unknown user, bad token).
    pub(crate) fn failure(&self, client: IpAddr, user: &str, now: Timestamp) {
        self.per_client.fail(client, now);
        if !user.is_empty() {
            self.per_user.fail(user.to_string(), now);
        }
    }

    /// A successful login clears the user's count (not the address's).
    pub(crate) fn success(&self, user: &str) {
        self.per_user.clear(&user.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: i64) -> Timestamp {
        Timestamp::from_secs(s)
    }

    #[test]
    fn per_user_and_per_client_limits() {
        let l = LoginLimiter::new(5, 3, 60);
        let a: IpAddr = [10, 0, 0, 1].into();
        let b: IpAddr = [10, 0, 0, 2].into();
        for i in 0..3 {
            assert!(l.check(a, "alice", t(i)).is_ok());
            l.failure(a, "alice", t(i));
        }
        // alice is locked from every address; others are not.
        assert_eq!(l.check(b, "alice", t(10)), Err(50));
        assert!(l.check(a, "bob", t(10)).is_ok());
        // After the window, alice may try again.
        assert!(l.check(b, "alice", t(61)).is_ok());
        // The address limit: 5 failures over several names.
        for (i, n) in ["c", "d"].iter().enumerate() {
            l.failure(a, n, t(20 + i64::try_from(i).unwrap()));
        }
        assert!(l.check(a, "zed", t(30)).is_err(), "5 failures from a");
        assert!(l.check(b, "zed", t(30)).is_ok());
    }
}
