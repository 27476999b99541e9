//! Client-side pacing from the API's rate-limit headers (`X-RateLimit-Limit`,
//! `X-RateLimit-Remaining`, `X-RateLimit-Reset`): when the server says the window is
//! spent, requests wait for the reset instead of bouncing off 429s; a 429's
//! `Retry-After` pauses every request, not only the one that got it. The published limit
//! (100 requests/min) is what bounds real pipelines, so this is where their time goes.
//!
//! It also holds the run's places for uploads in flight (the published limit of 10
//! concurrent uploads): every upload request waits for one; and for exports running (5):
//! see [`ExportPlaces`].
//!
//! Must not: delay anything when the server sends no such headers.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use reqwest::header::HeaderMap;

/// A reset at or after this is a Unix time, before it a number of seconds.
const UNIX_TIME_THRESHOLD: u64 = 1_000_000_000;
/// How long a new window whose end is not known yet may stay spent.
const BLIND_WAIT: Duration = Duration::from_secs(1);
/// Never wait longer than this on the strength of a header alone.
const MAX_WAIT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct State {
    /// The window's size (`X-RateLimit-Limit`), once the server has given it.
    limit: Option<u64>,
    /// When the current window ends (unknown for a new window until its first answer).
    reset_at: Option<Instant>,
    /// The most requests the server has said it counted in the current window.
    counted: u64,
    /// Our requests sent since the current window began, and when it began.
    sent_in_window: u64,
    window_began: Option<Instant>,
    /// Without a limit: requests left in the current window, counting those sent since.
    remaining: Option<u64>,
    /// Nothing may be sent before this (a 429's Retry-After).
    paused_until: Option<Instant>,
    /// Requests let through so far: the next one's [`Ticket`].
    sent: u64,
}

/// A request let through by [`Pacer::acquire`]: its place in the order of sending, so
/// that its response's count can be corrected for the requests sent after it.
#[derive(Clone, Copy, Debug)]
pub struct Ticket(u64);

/// The API's published limit of concurrent uploads, for the whole run.
pub const MAX_UPLOADS: usize = 10;

/// The API's published limit of exports running at once, for the whole run.
pub const MAX_EXPORTS: usize = 5;

/// The exports this run created and has not seen end, and the places left for more
/// ([`MAX_EXPORTS`] in all): a sixth is not asked for while five run (the server would
/// answer 429 until one ends). `exports.create` takes a place and keeps it for the export
/// it made; whatever sees the export end (`exports.wait`, or the create step asking how
/// the running ones stand when no place is free) gives it back.
#[derive(Debug)]
pub struct ExportPlaces {
    free: tokio::sync::Semaphore,
    running: Mutex<Vec<String>>,
}

impl Default for ExportPlaces {
    fn default() -> Self {
        ExportPlaces {
            free: tokio::sync::Semaphore::new(MAX_EXPORTS),
            running: Mutex::default(),
        }
    }
}

impl ExportPlaces {
    pub fn try_take(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.free.try_acquire().ok()
    }

    /// Waits for a place given back.
    pub async fn take(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.free
            .acquire()
            .await
            .expect("the export semaphore is never closed")
    }

    /// The export `id` was created in `place`: it holds it until seen ended.
    pub fn started(&self, place: tokio::sync::SemaphorePermit<'_>, id: &str) {
        place.forget();
        self.running
            .lock()
            .expect("exports lock")
            .push(id.to_string());
    }

    /// The export `id` is done, failed or gone: its place is free (if this run made it).
    pub fn ended(&self, id: &str) {
        let mut running = self.running.lock().expect("exports lock");
        if let Some(at) = running.iter().position(|r| r == id) {
            running.swap_remove(at);
            self.free.add_permits(1);
        }
    }

    /// The exports believed running.
    pub fn running(&self) -> Vec<String> {
        self.running.lock().expect("exports lock").clone()
    }
}

#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    /// Places for uploads in flight (storage PUTs and POSTs, multipart item POSTs): every
    /// step of the run shares them, as the published limit is per account.
    uploads: tokio::sync::Semaphore,
    /// Places for exports running.
    pub exports: ExportPlaces,
}

impl Default for Pacer {
    fn default() -> Self {
        Pacer {
            state: Mutex::default(),
            uploads: tokio::sync::Semaphore::new(MAX_UPLOADS),
            exports: ExportPlaces::default(),
        }
    }
}

impl State {
    /// When the window is over, a new one begins; its end is known from its first answer.
    fn roll(&mut self, now: Instant) {
        if self.reset_at.is_some_and(|reset| reset <= now) {
            self.reset_at = None;
            self.counted = 0;
            self.sent_in_window = 0;
            self.window_began = Some(now);
            self.remaining = None;
        }
    }

    /// How long to wait before the next request may go, or `None`: it may go now.
    fn wait(&mut self, now: Instant) -> Option<Duration> {
        if let Some(until) = self.paused_until.filter(|u| *u > now) {
            return Some(until - now);
        }
        self.roll(now);
        let spent = match self.limit {
            // Requests answered out of order make any one count stale; what the server
            // has counted and what we have sent are each a floor of the window's use.
            Some(limit) => self.counted.max(self.sent_in_window) >= limit,
            None => self.remaining == Some(0),
        };
        match (spent, self.reset_at) {
            (false, _) => None,
            (true, Some(reset)) => Some(reset - now),
            // Spent before the window's end is known: wait a while for an answer to tell
            // it (if none comes, say every request failed, start counting afresh).
            (true, None) => match self.window_began {
                Some(began) if now < began + BLIND_WAIT => Some(Duration::from_millis(20)),
                _ => {
                    self.sent_in_window = 0;
                    self.window_began = Some(now);
                    None
                }
            },
        }
    }
}

impl Pacer {
    /// Waits for a place among the uploads in flight ([`MAX_UPLOADS`]); the upload is in
    /// flight until the permit is dropped (once its answer has come).
    pub async fn upload_slot(&self) -> tokio::sync::SemaphorePermit<'_> {
        self.uploads
            .acquire()
            .await
            .expect("the upload semaphore is never closed")
    }

    /// Waits until a request may be sent, and counts it against the window.
    pub async fn acquire(&self) -> Ticket {
        loop {
            let wait = {
                let mut s = self.state.lock().expect("pacer lock");
                match s.wait(Instant::now()) {
                    None => {
                        s.remaining = s.remaining.map(|r| r.saturating_sub(1));
                        s.sent_in_window += 1;
                        s.sent += 1;
                        return Ticket(s.sent - 1);
                    }
                    Some(wait) => wait,
                }
            };
            tracing::debug!(
                "pacing: waiting {:.2}s for the rate-limit window",
                wait.as_secs_f64()
            );
            tokio::time::sleep(wait.min(MAX_WAIT) + Duration::from_millis(5)).await;
        }
    }

    /// Learns the window from the headers of the response to `ticket`'s request.
    ///
    /// With `X-RateLimit-Limit`, the window's use is the larger of what the server says
    /// it has counted and what we have sent since the window began: requests are answered
    /// out of order, so a response's own count soon lags behind. Without it, the count
    /// left is corrected for the requests sent after this one, which will count too.
    pub fn observe(&self, headers: &HeaderMap, ticket: Ticket) {
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
        let limit = number("x-ratelimit-limit");
        let now = Instant::now();
        let reset_at = number("x-ratelimit-reset").map(|reset| {
            let delta = if reset >= UNIX_TIME_THRESHOLD {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .unwrap_or_default();
                Duration::from_secs(reset).saturating_sub(now)
            } else {
                Duration::from_secs(reset)
            };
            now + delta.min(MAX_WAIT)
        });
        let mut s = self.state.lock().expect("pacer lock");
        s.roll(now);
        let same_window = match (s.reset_at, reset_at) {
            // An answer from a window that is already over says nothing about this one.
            (_, Some(reset)) if reset <= now => return,
            (Some(a), Some(b)) if b + Duration::from_millis(500) < a => return,
            (Some(a), Some(b)) => b < a + Duration::from_millis(500),
            // The first answer of a window whose end we did not know yet.
            (None, Some(_)) => true,
            (_, None) => false,
        };
        if !same_window {
            // A newer window than ours: what the server counts in it is what it says.
            s.counted = 0;
            s.sent_in_window = 0;
            s.window_began = Some(now);
        }
        // The limit counts only with the window it applies to.
        s.limit = limit.filter(|_| reset_at.is_some());
        if let Some(limit) = s.limit {
            s.counted = s.counted.max(limit.saturating_sub(remaining));
        }
        let remaining = remaining.saturating_sub(s.sent.saturating_sub(ticket.0 + 1));
        s.remaining = Some(match (same_window, s.remaining) {
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
        let first = p.acquire().await; // nothing known: no wait
        p.observe(&headers(1, 1), first);
        let started = Instant::now();
        p.acquire().await; // the last one in this window
        assert!(started.elapsed() < Duration::from_millis(100));
        p.acquire().await; // spent: waits for the reset
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn requests_in_flight_count_against_the_window() {
        let p = Pacer::default();
        // Three requests go out before any answer; the first answer says 3 remain.
        let first = p.acquire().await;
        p.acquire().await;
        p.acquire().await;
        p.observe(&headers(3, 1), first);
        // The two sent after it will count too: one more may go now, then none.
        let started = Instant::now();
        p.acquire().await;
        assert!(started.elapsed() < Duration::from_millis(100));
        p.acquire().await;
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    fn limited(limit: u64, remaining: u64, reset_in: u64) -> HeaderMap {
        let mut h = headers(remaining, reset_in);
        h.insert("x-ratelimit-limit", HeaderValue::from(limit));
        h
    }

    #[tokio::test]
    async fn answers_out_of_order_do_not_waste_the_window() {
        let p = Pacer::default();
        let mut tickets = Vec::new();
        for _ in 0..4 {
            tickets.push(p.acquire().await);
        }
        // The last one sent was counted first, the first one sent last.
        p.observe(&limited(6, 5, 1), tickets[3]);
        p.observe(&limited(6, 2, 1), tickets[0]);
        // Four of six counted: two more may go at once, then the window is spent.
        let started = Instant::now();
        p.acquire().await;
        p.acquire().await;
        assert!(started.elapsed() < Duration::from_millis(100));
        p.acquire().await;
        assert!(started.elapsed() >= Duration::from_millis(900));
    }

    #[tokio::test]
    async fn no_headers_no_pacing() {
        let p = Pacer::default();
        let t = p.acquire().await;
        p.observe(&HeaderMap::new(), t);
        let started = Instant::now();
        for _ in 0..100 {
            p.acquire().await;
        }
        assert!(started.elapsed() < Duration::from_millis(100));
    }
}
