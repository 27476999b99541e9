//! The published limits besides the rate (`API.md`: 10 concurrent uploads, 5 concurrent
//! exports) and what the emulator saw of every limit: the most uploads in flight at once,
//! the most exports running at once, what was refused, and the requests and 429s of each
//! rate-limit window.
//!
//! It takes the start and end of each upload request, export creations and rate-limit slots,
//! and gives admission answers and [`LimitStats`] (served at `GET /_emulator/stats` on the
//! storage origin, printed when `avala-pipe emulator` stops, and `Emulator::limits()`). An
//! upload is in flight from the moment its request reaches the gate until its answer is
//! ready: bytes being received count. It must not build responses or know routes beyond
//! telling an upload request from another.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::state::Origin;

/// What the emulator saw of the limits since it started.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LimitStats {
    /// `--max-uploads` (0: none).
    pub upload_limit: u32,
    /// The most upload requests in flight at once (refused ones included).
    pub max_uploads_in_flight: u32,
    /// Upload requests answered 429 because too many were in flight.
    pub uploads_refused: u64,
    /// `--max-exports` (0: none).
    pub export_limit: u32,
    /// The most exports running (created, not yet done) at once, refused ones included.
    pub max_exports_running: u32,
    /// Export creations answered 429 because too many were running.
    pub exports_refused: u64,
    /// `--rate-limit`, if given.
    pub rate_limit: Option<u32>,
    /// API requests counted against the rate limit (429s included).
    pub api_requests: u64,
    /// One-second windows (Unix seconds) that saw API requests, and the first and last.
    pub windows: u64,
    pub first_window: Option<u64>,
    pub last_window: Option<u64>,
    /// Requests answered 429 by the rate limit, in all and in the worst window.
    pub throttled: u64,
    pub max_throttled_per_window: u32,
    /// Each window (Unix second) that answered any 429 for the rate limit, with how many.
    pub throttled_per_window: BTreeMap<u64, u32>,
}

#[derive(Default)]
struct Counts {
    uploads: u32,
    stats: LimitStats,
    /// API requests per window (Unix second).
    requests: BTreeMap<u64, u32>,
}

/// The counters, shared by both listeners.
#[derive(Default)]
pub(crate) struct Limits {
    counts: Mutex<Counts>,
}

/// An upload request in flight: counted until dropped.
pub(crate) struct UploadSlot {
    limits: Arc<Limits>,
    /// Within `--max-uploads` when it began.
    pub allowed: bool,
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        let mut counts = self.limits.lock();
        counts.uploads = counts.uploads.saturating_sub(1);
    }
}

impl Limits {
    pub(crate) fn new(upload_limit: u32, export_limit: u32, rate_limit: Option<u32>) -> Self {
        let stats = LimitStats {
            upload_limit,
            export_limit,
            rate_limit,
            ..LimitStats::default()
        };
        Limits {
            counts: Mutex::new(Counts {
                stats,
                ..Counts::default()
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().expect("limits lock")
    }

    /// Counts an upload request in flight until the slot is dropped; past `--max-uploads`
    /// it is not allowed (and counted as refused).
    pub(crate) fn begin_upload(self: &Arc<Self>) -> UploadSlot {
        let mut counts = self.lock();
        counts.uploads += 1;
        let now = counts.uploads;
        let stats = &mut counts.stats;
        stats.max_uploads_in_flight = stats.max_uploads_in_flight.max(now);
        let allowed = stats.upload_limit == 0 || now <= stats.upload_limit;
        if !allowed {
            stats.uploads_refused += 1;
        }
        UploadSlot {
            limits: self.clone(),
            allowed,
        }
    }

    /// An export is to be created while `running` others are: may it be?
    pub(crate) fn admit_export(&self, running: u32) -> bool {
        let mut counts = self.lock();
        let stats = &mut counts.stats;
        stats.max_exports_running = stats.max_exports_running.max(running + 1);
        let allowed = stats.export_limit == 0 || running < stats.export_limit;
        if !allowed {
            stats.exports_refused += 1;
        }
        allowed
    }

    /// One API request counted in the window of Unix second `window`; `throttled`: it got
    /// a 429 for the rate limit.
    pub(crate) fn count_request(&self, window: u64, throttled: bool) {
        let mut counts = self.lock();
        *counts.requests.entry(window).or_insert(0) += 1;
        let windows = counts.requests.len() as u64;
        let stats = &mut counts.stats;
        stats.api_requests += 1;
        stats.windows = windows;
        stats.first_window = Some(stats.first_window.map_or(window, |w| w.min(window)));
        stats.last_window = Some(stats.last_window.map_or(window, |w| w.max(window)));
        if throttled {
            stats.throttled += 1;
            let n = stats.throttled_per_window.entry(window).or_insert(0);
            *n += 1;
            let n = *n;
            stats.max_throttled_per_window = stats.max_throttled_per_window.max(n);
        }
    }

    pub(crate) fn stats(&self) -> LimitStats {
        self.lock().stats.clone()
    }
}

/// Is this request an upload (counted against `--max-uploads`)? On the storage origin, every
/// PUT and POST (presigned forms, v2 PUTs and parts, fleet objects); on the API, the
/// documented multipart item POST.
pub(crate) fn is_upload(origin: Origin, method: &str, path: &str) -> bool {
    match origin {
        Origin::Storage => method == "PUT" || method == "POST",
        Origin::Api => {
            method == "POST"
                && path.starts_with("/api/v1/datasets/")
                && path.trim_end_matches('/').ends_with("/items")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_past_the_limit_are_refused_and_the_most_in_flight_is_kept() {
        let limits = Arc::new(Limits::new(2, 5, None));
        let a = limits.begin_upload();
        let b = limits.begin_upload();
        let c = limits.begin_upload();
        assert!(a.allowed && b.allowed && !c.allowed);
        drop((a, c));
        assert!(limits.begin_upload().allowed);
        let stats = limits.stats();
        assert_eq!((stats.max_uploads_in_flight, stats.uploads_refused), (3, 1));
    }

    #[test]
    fn exports_past_the_limit_are_refused() {
        let limits = Limits::new(10, 5, None);
        assert!(limits.admit_export(4));
        assert!(!limits.admit_export(5));
        let stats = limits.stats();
        assert_eq!((stats.max_exports_running, stats.exports_refused), (6, 1));
    }

    #[test]
    fn throttles_are_counted_per_window() {
        let limits = Limits::new(10, 5, Some(1));
        limits.count_request(100, false);
        limits.count_request(100, true);
        limits.count_request(100, true);
        limits.count_request(102, true);
        let stats = limits.stats();
        assert_eq!(
            (stats.api_requests, stats.windows, stats.throttled),
            (4, 2, 3)
        );
        assert_eq!(stats.max_throttled_per_window, 2);
        assert_eq!(
            (stats.first_window, stats.last_window),
            (Some(100), Some(102))
        );
    }

    #[test]
    fn uploads_are_storage_writes_and_item_posts() {
        assert!(is_upload(Origin::Storage, "PUT", "/bucket/x"));
        assert!(is_upload(Origin::Storage, "POST", "/bucket/"));
        assert!(!is_upload(Origin::Storage, "GET", "/exports/e.json"));
        assert!(is_upload(
            Origin::Api,
            "POST",
            "/api/v1/datasets/ds_0001/items"
        ));
        assert!(!is_upload(
            Origin::Api,
            "GET",
            "/api/v1/datasets/ds_0001/items"
        ));
        assert!(!is_upload(
            Origin::Api,
            "POST",
            "/api/v1/datasets/manual-upload/file-upload-url/"
        ));
    }
}
