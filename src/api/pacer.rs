//! Client-side pacing from the API's rate-limit headers (`X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset`): when the server says the window is
//! spent, requests wait for the reset instead of bouncing off 429s; a 429's
//! `Retry-After` pauses every request, not only the one that got it. The published limit
//! (100 requests/min) is what bounds real pipelines, so this is where their time goes.
//!
//! Must not: delay anything when the server sends no such headers.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// A reset at or after this is a Unix time, before it a number of seconds.
const UNIX_TIME_THRESHOLD: u64 = 1_000_000_000;
/// Never wait longer than this on the strength of a header alone.
const MAX_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct State {
    /// Requests left in the current window, counting those we have sent since.
    remaining: Option<u64>,
    /// When the current window ends.
    reset_at: Option<Instant>,
    /// Nothing may be sent before this (a 429's Retry-After).
    paused_until: Option<Instant>,
}

#[derive(Debug, Default)]
pub struct Pacer {
    state: Mutex<State>,
}

impl Pacer {
    /// Waits until a request may be sent, and counts it against the window.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("pacer lock");
                let now = Instant::now();
                if let Some(until) = s.paused_until.filter(|u| *u > now) {
                    Some(until - now)
                } else {
                    match (s.remaining, s.reset_at) {
                        (Some(0), Some(reset)) if reset > now => Some(reset - now),
                        (Some(0), _) => {
                            // The window has reset: forget it until the next response.
                            s.remaining = None;
                            s.reset_at = None;
                            None
                        }
                        (Some(r), _) => {
                            s.remaining = Some(r - 1);
                            None
                        }
                        (None, _) => None,
                    }
                }
            };
            match wait {
                None => return,
                Some(d) => {
                    tracing::debug!(
                        "pacing: waiting {:.2}s for the rate-limit window",
                        d.as_secs_f64()
                    );
                    tokio::time::sleep(d.min(MAX_WAIT) + Duration::from_millis(5)).await;
                }
            }
        }
    }

    /// Learns the window from a response's headers.
    pub fn observe(&self, headers: &HeaderMap) {
        let number = |name: &str| -> Option<u64> {
            headers
                .get(name)?
                .to_str()
                .ok()?
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite() && *v >= 0.0)
                .map(|v| v as u64)
        };
        let Some(remaining) = number("x-ratelimit-remaining") else {
            return;
        };
        let reset_at = number("x-ratelimit-reset").map(|reset| {
            let delta = if reset >= UNIX_TIME_THRESHOLD {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Duration::from_secs(reset).saturating_sub(now)
            } else {
                Duration::from_secs(reset)
            };
            Instant::now() + delta.min(MAX_WAIT)
        });
        let mut s = self.state.lock().expect("pacer lock");
        let same_window = match (s.reset_at, reset_at) {
            (Some(a), Some(b)) => a.max(b) - a.min(b) < Duration::from_millis(500),
            _ => false,
        };
        s.remaining = Some(match (same_window, s.remaining) {
            // Responses arrive out of order: within a window the lowest count wins.
            (true, Some(local)) => local.min(remaining),
            _ => remaining,
        });
        if reset_at.is_some() {
            s.reset_at = reset_at;
        }
    }

    /// A 429 asked everyone to wait.
    pub fn pause(&self, wait: Duration) {
        let until = Instant::now() + wait.min(MAX_WAIT);
        let mut s = self.state.lock().expect("pacer lock");
        if s.paused_until.is_none_or(|u| u < until) {
            s.paused_until = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(remaining: u64, reset_in: u64) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
        h.insert("x-ratelimit-reset", HeaderValue::from(reset_in));
        h
    }

    #[tokio::test]
    async fn waits_for_the_reset_when_the_window_is_spent() {
        let p = Pacer::default();
        p.acquire().await; // nothing known: no wait
        p.observe(&headers(1, 1));
        let started = Instant::now();
        p.acquire().await; // the last one in this window
        assert!(started.elapsed() < Duration::from_millis(100));
        p.acquire().await; // spent: waits for the reset
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn no_headers_no_pacing() {
        let p = Pacer::default();
        p.observe(&HeaderMap::new());
        let started = Instant::now();
        for _ in 0..100 {
            p.acquire().await;
        }
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
