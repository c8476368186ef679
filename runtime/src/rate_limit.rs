//! Token buckets, shared by the webhook endpoint's per-instance rate limits and the outbound
//! per-destination limits.

use std::sync::Mutex;
use std::time::{Duration, Instant};

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
            Err(Duration::from_secs_f64(wait))
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
}
