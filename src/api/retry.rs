//! When to retry and how long to wait: retryable statuses per method, exponential
//! backoff with full jitter, and `Retry-After` in seconds or as an HTTP-date.
//!
//! Must not: sleep or send; it only decides.

use std::time::{Duration, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::Method;
use crate::pipeline::model::RetryPolicy;

/// GET/HEAD retry on 408, 429 and 5xx; other methods only on 429 (the request was
/// refused, so nothing was applied).
pub fn retryable_status(method: Method, status: u16) -> bool {
    match status {
        429 => true,
        408 | 500..=599 => method.is_safe(),
        _ => false,
    }
}

/// The wait before attempt `attempt + 1`: a random duration between zero and
/// `initial * 2^(attempt-1)`, capped at `max_interval` (full jitter).
pub fn backoff(policy: &RetryPolicy, attempt: u32) -> Duration {
    let exp = policy
        .initial_interval
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(20));
    let ceiling = exp.min(policy.max_interval);
    ceiling.mul_f64(fastrand::f64())
}

/// `Retry-After` as a duration: delta-seconds (fractions allowed) or an HTTP-date.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let text = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    parse_retry_after(text, SystemTime::now())
}

pub fn parse_retry_after(text: &str, now: SystemTime) -> Option<Duration> {
    if let Ok(secs) = text.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            return Some(Duration::from_secs_f64(secs.min(1e9)));
        }
        return None;
    }
    let when = httpdate::parse_http_date(text).ok()?;
    // An HTTP-date has one-second resolution: round up so we never come back early.
    Some(
        when.duration_since(now)
            .map(|d| Duration::from_secs(d.as_secs() + u64::from(d.subsec_nanos() > 0)))
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert!(retryable_status(Method::Get, 503));
        assert!(retryable_status(Method::Get, 408));
        assert!(retryable_status(Method::Post, 429));
        assert!(!retryable_status(Method::Post, 503));
        assert!(!retryable_status(Method::Get, 404));
    }

    #[test]
    fn retry_after_forms() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after("0.5", now),
            Some(Duration::from_millis(500))
        );
        let later = httpdate::fmt_http_date(now + Duration::from_secs(30));
        assert_eq!(
            parse_retry_after(&later, now),
            Some(Duration::from_secs(30))
        );
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn backoff_is_bounded() {
        let p = RetryPolicy::default();
        for attempt in 1..30 {
            assert!(backoff(&p, attempt) <= p.max_interval);
        }
        assert!(backoff(&p, 1) <= Duration::from_millis(500));
    }
}
