//! When and how long the host waits before sending a request again: the server's own word
//! (`retry-after-ms`, `Retry-After` in seconds or as an HTTP date, `x-should-retry`) first, else
//! capped exponential backoff with full jitter.

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;

/// The first backoff step.
const BASE: Duration = Duration::from_millis(100);
/// The longest backoff step.
const CAP: Duration = Duration::from_secs(5);

/// Methods that may be repeated without changing the outcome (RFC 9110, 9.2.2).
pub(crate) fn is_idempotent(method: &reqwest::Method) -> bool {
    matches!(method.as_str(), "GET" | "HEAD" | "OPTIONS" | "PUT" | "DELETE" | "TRACE")
}

/// Statuses worth retrying when the plugin opted in.
pub(crate) fn is_retryable_status(status: u16) -> bool {
    matches!(status, 408 | 409 | 425 | 429 | 500 | 502 | 503 | 504 | 529)
}

/// The server's `x-should-retry` verdict, if it gave one (OpenAI and Anthropic send it).
pub(crate) fn should_retry(headers: &HeaderMap) -> Option<bool> {
    match headers.get("x-should-retry")?.to_str().ok()?.trim() {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// How long the server asked us to wait: `retry-after-ms`, then `Retry-After` as seconds or as
/// an HTTP date.
pub(crate) fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok()?.trim().parse::<f64>().ok())
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::try_from_secs_f64(ms / 1000.0).unwrap_or(Duration::MAX));
    }
    let value = headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    let at = SystemTime::UNIX_EPOCH + Duration::from_secs(u64::try_from(at.timestamp()).ok()?);
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

/// The wait before retry number `retry` (1 for the first): uniform in [0, min(cap, base·2^n)].
pub(crate) fn backoff(retry: u32) -> Duration {
    let ceiling = BASE.saturating_mul(1u32.checked_shl(retry.saturating_sub(1)).unwrap_or(u32::MAX)).min(CAP);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    #[test]
    fn retry_after_in_every_form() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(retry_after(&headers(&[("retry-after", "7")]), now), Some(Duration::from_secs(7)));
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "250")]), now),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:47 GMT")]), now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "Sun, 06 Nov 1994 08:49:00 GMT")]), now),
            Some(Duration::ZERO)
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")]), now), None);
        assert_eq!(
            retry_after(&headers(&[("retry-after-ms", "1e300")]), now),
            Some(Duration::MAX),
            "no panic"
        );
        assert_eq!(retry_after(&headers(&[]), now), None);
    }

    #[test]
    fn should_retry_and_backoff() {
        assert_eq!(should_retry(&headers(&[("x-should-retry", "false")])), Some(false));
        assert_eq!(should_retry(&headers(&[("x-should-retry", "true")])), Some(true));
        assert_eq!(should_retry(&headers(&[])), None);
        for retry in 1..40 {
            assert!(backoff(retry) <= CAP);
        }
        assert!(backoff(1) <= BASE);
    }
}
