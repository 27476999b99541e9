//! Scripted faults: the `--faults FILE` plan and `Emulator::add_fault`, their matching and
//! trigger counting, and the body wrapper that cuts a response short.
//!
//! It takes a request's method and path and gives the faults that fire for it; it counts
//! every fault actually delivered so tests can prove the fault path was reached. It must not
//! decide how a fault is turned into a response beyond the cut body (that is `gate`), and it
//! must not know about the random `--fail-rate`/`--rate-limit` options.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::task::{ready, Context, Poll};
use std::time::Duration;

use axum::body::{Body, Bytes, HttpBody};
use http_body::{Frame, SizeHint};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One scripted fault: which requests it matches, when it fires, what it does.
///
/// ```json
/// {"name": "throttle-once", "method": "GET", "path": "/api/v1/datasets",
///  "when": {"nth": 1}, "effect": {"status": {"code": 429, "retry_after": {"seconds": 1}}}}
/// ```
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Fault {
    /// Name reported by `faults_delivered` (default: `#` and the fault's 0-based position).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// HTTP method to match (case-insensitive); absent or `*` matches any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Path pattern: `*` matches one segment, `**` any number (also none); a trailing slash
    /// is ignored on both sides. Storage paths (`/exports/*`) match too.
    pub path: String,
    /// When it fires, counted over the requests it matches (default: the first one only).
    #[serde(default)]
    pub when: Trigger,
    pub effect: FaultEffect,
}

/// When a fault fires, counting the requests its method and path match (1-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    /// `{"nth": 3}`: only the 3rd matching request.
    Nth(u64),
    /// `{"first": 2}`: the first 2 matching requests.
    First(u64),
    /// `"always"`: every matching request.
    Always,
}

impl Default for Trigger {
    fn default() -> Self {
        Trigger::Nth(1)
    }
}

/// What a fault does to the request it fires on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FaultEffect {
    /// `{"status": {"code": 503, "body": ..., "retry_after": {"seconds": 1}}}`: answer with this
    /// status instead of the route. `body` is sent as JSON, or as plain text when it is a JSON
    /// string; without it the flavour's error body for the status is sent. With
    /// `"after_route": true` the route runs first (an upload is stored, an export created) and
    /// its response is replaced: the "failed after the body was sent" case.
    Status {
        code: u16,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<Value>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_after: Option<RetryAfter>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        after_route: bool,
    },
    /// `{"delay_ms": 1500}`: wait, then answer normally.
    DelayMs(u64),
    /// `{"cut_after_bytes": 100}`: answer normally, but drop the connection after this many
    /// body bytes while `Content-Length` promises the whole body. Counted as delivered only
    /// when the body is longer than that.
    CutAfterBytes(u64),
    /// `"redirect_other_origin"`: 302 to the same path and query on the other listener.
    RedirectOtherOrigin,
    /// `"repeat_cursor"`: a list page whose next cursor equals the current page's cursor.
    /// Counted as delivered only on a page that has a next page.
    RepeatCursor,
}

/// The value of a `Retry-After` header sent by a status fault.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryAfter {
    /// `{"seconds": 2}` → `Retry-After: 2`.
    Seconds(u64),
    /// `{"http_date_in": 2}` → an HTTP-date 2 seconds after the fault is delivered.
    HttpDateIn(u64),
    /// `{"raw": "0.5"}` → sent verbatim.
    Raw(String),
}

impl RetryAfter {
    pub(crate) fn header_value(&self) -> String {
        match self {
            RetryAfter::Seconds(s) => s.to_string(),
            RetryAfter::HttpDateIn(s) => {
                httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(*s))
            }
            RetryAfter::Raw(raw) => raw.clone(),
        }
    }
}

impl FaultEffect {
    /// Answer with `code` (the flavour's error body, no `Retry-After`) instead of the route.
    pub fn status(code: u16) -> Self {
        FaultEffect::Status {
            code,
            body: None,
            retry_after: None,
            after_route: false,
        }
    }

    /// A status effect with a `Retry-After` header (other effects are returned as they are).
    pub fn retry_after(self, value: RetryAfter) -> Self {
        match self {
            FaultEffect::Status {
                code,
                body,
                after_route,
                ..
            } => FaultEffect::Status {
                code,
                body,
                retry_after: Some(value),
                after_route,
            },
            other => other,
        }
    }
}

impl Fault {
    /// A fault on `method` and `path` that fires on the first matching request.
    pub fn new(method: &str, path: &str, effect: FaultEffect) -> Self {
        Fault {
            name: None,
            method: Some(method.to_owned()),
            path: path.to_owned(),
            when: Trigger::default(),
            effect,
        }
    }

    pub fn named(mut self, name: &str) -> Self {
        self.name = Some(name.to_owned());
        self
    }

    pub fn when(mut self, when: Trigger) -> Self {
        self.when = when;
        self
    }

    fn matches(&self, method: &str, path: &str) -> bool {
        let method_ok = match self.method.as_deref() {
            None | Some("*") => true,
            Some(m) => m.eq_ignore_ascii_case(method),
        };
        method_ok && path_matches(&self.path, path)
    }
}

/// The `--faults` file in its wrapped form: `{"faults": [...]}`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FaultFile {
    faults: Vec<Fault>,
}

/// Parses a fault plan file's text: `{"faults": [...]}` or just the list.
pub(crate) fn parse_plan(text: &str) -> Result<Vec<Fault>, serde_json::Error> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text)
    } else {
        serde_json::from_str::<FaultFile>(text).map(|file| file.faults)
    }
}

struct Slot {
    fault: Fault,
    seen: u64,
    delivered: u64,
}

/// The faults of a running emulator with their counters.
#[derive(Default)]
pub(crate) struct FaultBook {
    slots: Mutex<Vec<Slot>>,
    /// Number of slots, read without the lock so requests skip it when there are no faults.
    len: AtomicUsize,
}

impl FaultBook {
    pub(crate) fn add(&self, fault: Fault) {
        let mut slots = self.slots.lock().expect("faults lock");
        slots.push(Slot {
            fault,
            seen: 0,
            delivered: 0,
        });
        self.len.store(slots.len(), Ordering::Release);
    }

    /// Counts the request against every fault it matches; gives the ones that fire, in plan
    /// order, as (position, effect). Nothing is counted as delivered here.
    pub(crate) fn fire(&self, method: &str, path: &str) -> Vec<(usize, FaultEffect)> {
        if self.len.load(Ordering::Acquire) == 0 {
            return Vec::new();
        }
        let mut slots = self.slots.lock().expect("faults lock");
        let mut fired = Vec::new();
        for (position, slot) in slots.iter_mut().enumerate() {
            if !slot.fault.matches(method, path) {
                continue;
            }
            slot.seen += 1;
            let fires = match slot.fault.when {
                Trigger::Nth(n) => slot.seen == n,
                Trigger::First(n) => slot.seen <= n,
                Trigger::Always => true,
            };
            if fires {
                fired.push((position, slot.fault.effect.clone()));
            }
        }
        fired
    }

    pub(crate) fn delivered(&self, position: usize) {
        let mut slots = self.slots.lock().expect("faults lock");
        if let Some(slot) = slots.get_mut(position) {
            slot.delivered += 1;
        }
    }

    pub(crate) fn report(&self) -> Vec<(String, u64)> {
        let slots = self.slots.lock().expect("faults lock");
        slots
            .iter()
            .enumerate()
            .map(|(position, slot)| {
                let name = slot.fault.name.clone();
                (
                    name.unwrap_or_else(|| format!("#{position}")),
                    slot.delivered,
                )
            })
            .collect()
    }
}

/// Whether `path` matches `pattern` segment by segment (see `Fault::path`).
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    fn segments(s: &str) -> Vec<&str> {
        s.trim_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect()
    }
    fn go(pattern: &[&str], path: &[&str]) -> bool {
        match pattern.split_first() {
            None => path.is_empty(),
            Some((&"**", rest)) => (0..=path.len()).any(|skip| go(rest, &path[skip..])),
            Some((&first, rest)) => match path.split_first() {
                Some((&segment, tail)) => (first == "*" || first == segment) && go(rest, tail),
                None => false,
            },
        }
    }
    go(&segments(pattern), &segments(path))
}

/// A response body that stops after `limit` bytes with an error, which makes hyper drop the
/// connection; the size hint stays the whole body's, so `Content-Length` promises more.
pub(crate) struct CutBody {
    inner: Body,
    remaining: u64,
    size: SizeHint,
    /// Once the limit is reached, a short pause lets hyper flush what was sent before the
    /// error tears the connection down.
    pause: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl CutBody {
    pub(crate) fn new(inner: Body, limit: u64) -> Self {
        let size = inner.size_hint();
        CutBody {
            inner,
            remaining: limit,
            size,
            pause: None,
        }
    }
}

impl HttpBody for CutBody {
    type Data = Bytes;
    type Error = axum::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, axum::Error>>> {
        let this = self.get_mut();
        if this.remaining == 0 {
            let pause = this
                .pause
                .get_or_insert_with(|| Box::pin(tokio::time::sleep(Duration::from_millis(20))));
            ready!(pause.as_mut().poll(cx));
            return Poll::Ready(Some(Err(axum::Error::new(
                "response cut by a scripted fault",
            ))));
        }
        match ready!(Pin::new(&mut this.inner).poll_frame(cx)) {
            Some(Ok(frame)) => match frame.into_data() {
                Ok(mut data) => {
                    if data.len() as u64 > this.remaining {
                        data.truncate(this.remaining as usize);
                    }
                    this.remaining -= data.len() as u64;
                    Poll::Ready(Some(Ok(Frame::data(data))))
                }
                Err(frame) => Poll::Ready(Some(Ok(frame))),
            },
            other => Poll::Ready(other),
        }
    }

    fn size_hint(&self) -> SizeHint {
        self.size
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_segments_and_ignore_trailing_slashes() {
        assert!(path_matches("/api/v1/datasets", "/api/v1/datasets/"));
        assert!(path_matches("/api/v1/datasets/", "/api/v1/datasets"));
        assert!(path_matches(
            "/api/v1/datasets/*/items",
            "/api/v1/datasets/ds_0001/items"
        ));
        assert!(!path_matches("/api/v1/datasets/*", "/api/v1/datasets"));
        assert!(!path_matches(
            "/api/v1/datasets/*",
            "/api/v1/datasets/a/items"
        ));
        assert!(path_matches("/api/v1/**", "/api/v1/datasets/a/items"));
        assert!(path_matches("/exports/*", "/exports/exp_0001.json"));
    }

    #[test]
    fn plan_files_parse_in_both_forms() {
        let list = r#"[{"path": "/exports/*", "effect": {"cut_after_bytes": 10}}]"#;
        let wrapped = r#"{"faults": [{"method": "GET", "path": "/api/v1/datasets",
            "when": "always", "effect": {"status": {"code": 429,
            "retry_after": {"http_date_in": 2}}}}]}"#;
        assert_eq!(parse_plan(list).unwrap()[0].when, Trigger::Nth(1));
        assert_eq!(parse_plan(wrapped).unwrap()[0].when, Trigger::Always);
        let err = parse_plan(r#"[{"path": "/x", "effect": "explode"}]"#).unwrap_err();
        assert!(err.to_string().contains("explode"), "{err}");
    }
}
