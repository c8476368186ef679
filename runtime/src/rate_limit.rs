//! Rate limits. Token buckets, in this process, for the webhook endpoint's per-instance limits
//! and the outbound per-destination ones; and outbound limits counted in the key-value store,
//! which every node of a cluster shares (`scope = "cluster"`).

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::keyvalue::{KvError, KvQuota, KvStore, counter_value};

pub use plugboard_manifest::RateLimit;

/// A token bucket.
#[derive(Debug)]
pub struct Bucket {
    limit: RateLimit,
    state: Mutex<(f64, Instant)>,
}

impl Bucket {
    /// A full bucket.
    pub fn new(limit: RateLimit) -> Self {
        Bucket { limit, state: Mutex::new((limit.burst, Instant::now())) }
    }

    /// Takes a token, or says how long until one is available.
    pub fn take(&self) -> Result<(), Duration> {
        let Ok(mut state) = self.state.lock() else { return Ok(()) };
        let now = Instant::now();
        let (tokens, last) = *state;
        let tokens =
            (tokens + now.duration_since(last).as_secs_f64() * self.limit.per_second).min(self.limit.burst);
        if tokens >= 1.0 {
            *state = (tokens - 1.0, now);
            Ok(())
        } else {
            *state = (tokens, now);
            let wait =
                if self.limit.per_second > 0.0 { (1.0 - tokens) / self.limit.per_second } else { 3600.0 };
            // A rate of "almost never" makes a wait past what a Duration holds: the longest
            // one, not a panic with the lock held.
            Err(Duration::try_from_secs_f64(wait).unwrap_or(Duration::MAX))
        }
    }
}

/// Where cluster-scoped limits keep their counters: a namespace per instance (instance ids
/// have no `:`), so that forgetting old windows lists only that instance's counters.
fn namespace(instance: &str) -> String {
    format!("plugboard:rate-limits:{instance}")
}

/// A rate limit counted in a key-value store that every node shares: requests are counted in
/// windows of `max(burst / per_second, 1 s)` (at most a day), each allowed `per_second` times
/// its length (at least one), and a request is let through while the previous window's count
/// (weighted by how much of it still overlaps the last window's length) plus the current one's
/// stays within that: the sliding-window estimate, which needs only the store's atomic
/// increments.
#[derive(Debug)]
pub struct SharedLimit {
    namespace: String,
    /// `{destination}/`: each window's counter is this and its number.
    prefix: String,
    window_ms: u64,
    allowance: f64,
}

impl SharedLimit {
    /// The limit of `instance`'s requests to `destination` (a sound limit: see
    /// [`RateLimit::is_sound`]).
    pub fn new(instance: &str, destination: &str, limit: RateLimit) -> Self {
        let window = (limit.burst / limit.per_second * 1000.0).clamp(1000.0, 86_400_000.0);
        // A limit that is not a number gets the shortest window, not a division by zero.
        let window_ms = if window.is_nan() { 1000 } else { (window as u64).max(1) };
        SharedLimit {
            namespace: namespace(instance),
            prefix: format!("{destination}/"),
            window_ms,
            allowance: (limit.per_second * window_ms as f64 / 1000.0).max(1.0),
        }
    }

    /// Takes room for one request at `now_ms`, or says how long until there is some (a
    /// refused request is not counted); an error when the store cannot be reached.
    pub async fn take(&self, kv: &dyn KvStore, now_ms: u64) -> Result<Result<(), Duration>, KvError> {
        let window = now_ms / self.window_ms;
        let into = now_ms % self.window_ms;
        let key = |w: u64| format!("{}{w}", self.prefix);
        let current = kv.increment(&self.namespace, &key(window), 1, KvQuota::UNLIMITED).await?;
        if current == 1 {
            // The window's first request: counters of earlier windows are no longer read.
            self.forget_before(kv, window.saturating_sub(1)).await;
        }
        let previous = match window.checked_sub(1) {
            Some(w) => kv.get(&self.namespace, &key(w)).await?.and_then(|v| counter_value(&v)).unwrap_or(0),
            None => 0,
        };
        let overlap = 1.0 - into as f64 / self.window_ms as f64;
        let estimate = previous as f64 * overlap + current as f64;
        if estimate <= self.allowance {
            return Ok(Ok(()));
        }
        // Best effort: a refusal that stays counted only makes the limit stricter for a moment.
        let _ = kv.increment(&self.namespace, &key(window), -1, KvQuota::UNLIMITED).await;
        let until_next_window = self.window_ms - into;
        // The previous window's weight falls by `previous / window_ms` each ms.
        let wait_ms = if previous > 0 {
            let excess = estimate - self.allowance;
            ((excess * self.window_ms as f64 / previous as f64).ceil() as u64).min(until_next_window)
        } else {
            until_next_window
        };
        // Not sooner than one request's share of the window: each try costs the store round
        // trips, and a caller waiting for room would otherwise ask every millisecond.
        let spacing = (self.window_ms as f64 / self.allowance).ceil() as u64;
        Ok(Err(Duration::from_millis(wait_ms.max(spacing).max(1))))
    }

    /// Deletes the counters of windows before `window` (best effort).
    async fn forget_before(&self, kv: &dyn KvStore, window: u64) {
        for (key, _) in kv.entries(&self.namespace, &self.prefix).await.unwrap_or_default() {
            let old = key[self.prefix.len()..].parse::<u64>().is_ok_and(|w| w < window);
            if old {
                let _ = kv.delete(&self.namespace, &key).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_a_burst_then_paces() {
        let b = Bucket::new(RateLimit { per_second: 1.0, burst: 3.0 });
        assert!((0..3).all(|_| b.take().is_ok()));
        let wait = b.take().unwrap_err();
        assert!(wait > Duration::from_millis(900) && wait <= Duration::from_secs(1), "{wait:?}");
    }

    /// An operator's "almost never" is a rate, not a panic with the bucket's lock held (which
    /// would have poisoned it and let every later request through): the wait is the longest
    /// there is, and the bucket goes on limiting.
    #[test]
    fn a_tiny_rate_waits_long_instead_of_panicking() {
        let b = Bucket::new(RateLimit { per_second: 1e-300, burst: 1.0 });
        assert!(b.take().is_ok());
        assert_eq!(b.take().unwrap_err(), Duration::MAX);
        assert!(b.take().is_err(), "the bucket stopped limiting");
    }

    /// Two nodes sharing one store: together they get the limit's rate, not twice it; a
    /// refused request says how long to wait and is not counted; a later window has room again.
    #[tokio::test]
    async fn a_shared_limit_holds_across_nodes() {
        let kv = crate::keyvalue::MemoryKv::default();
        let limit = RateLimit { per_second: 5.0, burst: 5.0 };
        let (first, second) = (
            SharedLimit::new("p", "https://api.example", limit),
            SharedLimit::new("p", "https://api.example", limit),
        );
        let start = 1_000_000_000;
        let mut allowed = 0;
        for i in 0..20 {
            let node = if i % 2 == 0 { &first } else { &second };
            match node.take(&kv, start + i).await.unwrap() {
                Ok(()) => allowed += 1,
                // Not sooner than one request's share (200 ms at 5 per second).
                Err(wait) => {
                    assert!(wait >= Duration::from_millis(200) && wait <= Duration::from_secs(1), "{wait:?}")
                }
            }
        }
        assert_eq!(allowed, 5, "one window allows per_second x its length");
        // Half a window later the previous window still weighs half: 2 more.
        let later: Vec<bool> = take_n(&first, &kv, start + 1_500, 5).await;
        assert_eq!(later.iter().filter(|ok| **ok).count(), 2, "{later:?}");
        // Room comes back as the previous window slides out (half a request's worth is 100 ms
        // away), but a caller is not told to ask again sooner than one request's share.
        let wait = first.take(&kv, start + 1_500).await.unwrap().unwrap_err();
        assert_eq!(wait, Duration::from_millis(200));
        // Another instance's limit, or another destination's, is counted apart.
        let other = SharedLimit::new("q", "https://api.example", limit);
        assert!(other.take(&kv, start + 20).await.unwrap().is_ok());
        // Two windows later, all of it again, and the old counters are gone.
        let fresh: Vec<bool> = take_n(&second, &kv, start + 3_000, 6).await;
        assert_eq!(fresh.iter().filter(|ok| **ok).count(), 5, "{fresh:?}");
        let kept = kv.entries(&namespace("p"), "https://api.example/").await.unwrap();
        assert!(kept.len() <= 2, "{kept:?}");
    }

    async fn take_n(limit: &SharedLimit, kv: &dyn KvStore, now_ms: u64, n: usize) -> Vec<bool> {
        let mut taken = Vec::new();
        for _ in 0..n {
            taken.push(limit.take(kv, now_ms).await.unwrap().is_ok());
        }
        taken
    }
}
