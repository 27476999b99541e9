//! The Avala client: sends [`HttpRequest`]s with the key (to the API's own origin only),
//! `User-Agent` and `Accept`, follows redirects by hand (never carrying the key to
//! another origin), and retries per SPEC §4: GET/HEAD on 408, 429, 5xx and transport
//! errors; other methods only on 429 and on connections that failed before sending.
//! Backoff is exponential with full jitter; `Retry-After` is obeyed up to a cap.
//!
//! Must not: render templates or print; retry notices are `tracing` events.

pub mod endpoint;
pub mod pacer;
pub mod request;
pub mod retry;
pub mod shapes;

use std::fmt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{HeaderMap, HeaderValue, ACCEPT, CONTENT_TYPE, LOCATION, USER_AGENT};
use reqwest::Url;
use tokio_util::sync::CancellationToken;

pub use endpoint::{user_agent, Endpoint, Target, DEFAULT_BASE_URL, KEY_HEADER};
pub use request::{Body, HttpRequest, Method, Part};

use crate::pipeline::model::RetryPolicy;

/// The API key. Its `Debug` and `Display` never show it.
#[derive(Clone)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: String) -> Self {
        Secret(value)
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where the API is and how to talk to it.
#[derive(Clone, Debug)]
pub struct ApiConfig {
    pub endpoint: Endpoint,
    pub key: Option<Secret>,
    /// Total limit of one API call (downloads use an idle limit instead).
    pub request_timeout: Duration,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
}

impl ApiConfig {
    pub fn new(endpoint: Endpoint, key: Option<Secret>) -> Self {
        ApiConfig {
            endpoint,
            key,
            request_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            read_timeout: Duration::from_secs(60),
        }
    }
}

/// What kind of failure an [`ApiError`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// The server answered with a status that is not a success.
    Status,
    /// The connection failed, or the response could not be read.
    Transport,
    /// `Retry-After` asked for a wait longer than the cap.
    RetryAfterTooLong,
    /// The run was interrupted.
    Cancelled,
    /// The response was not what the action expected.
    Unexpected,
}

/// A failed API call: what was sent, what came back, how many attempts.
#[derive(Clone, Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub method: Method,
    /// Path of the URL (never its query: presigned URLs carry signatures there).
    pub path: String,
    pub status: Option<u16>,
    pub message: String,
    pub attempts: u32,
    /// A non-idempotent request whose body may have reached the server.
    pub maybe_applied: bool,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method.as_str(), self.path)?;
        if let Some(status) = self.status {
            let reason = reqwest::StatusCode::from_u16(status)
                .ok()
                .and_then(|s| s.canonical_reason())
                .unwrap_or("");
            write!(f, ": {status} {reason}")?;
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        write!(
            f,
            " ({} attempt{})",
            self.attempts,
            if self.attempts == 1 { "" } else { "s" }
        )?;
        if self.maybe_applied {
            write!(f, "; not retried: the server may already have acted on it")?;
        }
        if self.status == Some(401) {
            write!(
                f,
                "; check that AVALA_API_KEY holds a valid key for this API"
            )?;
        }
        if self.status == Some(403) {
            write!(
                f,
                "; the key in AVALA_API_KEY lacks access to this resource"
            )?;
        }
        Ok(())
    }
}

impl std::error::Error for ApiError {}

/// Per-call context: retry policy, cancellation, a counter of attempts made, and who
/// hears of each attempt and wait (the run report's timeline).
#[derive(Clone)]
pub struct CallCtx {
    pub retry: RetryPolicy,
    pub cancel: CancellationToken,
    pub attempts: Arc<AtomicU32>,
    pub step: String,
    /// The `for_each` iteration these calls belong to.
    pub iteration: Option<usize>,
    observer: Option<Observer>,
}

/// Hears every attempt and wait of the calls made with a [`CallCtx`].
pub type Observer = Arc<dyn Fn(&CallCtx, CallEvent) + Send + Sync>;

/// What a call did, for the timeline: an HTTP attempt, or a wait and its cause.
#[derive(Clone, Debug)]
pub enum CallEvent {
    Attempt(AttemptRecord),
    Wait(WaitRecord),
}

/// One HTTP attempt: until the response's headers came (or the attempt failed).
#[derive(Clone, Debug)]
pub struct AttemptRecord {
    pub method: Method,
    /// Path of the URL, never its query (presigned URLs carry signatures there).
    pub path: String,
    /// 1 for the first attempt of a request.
    pub attempt: u32,
    pub status: Option<u16>,
    /// A transport failure, in words.
    pub error: Option<String>,
    pub started: Instant,
    pub duration: Duration,
    /// The body's size when it is known before sending.
    pub bytes_sent: Option<u64>,
    /// The response's `Content-Length`, when it gave one.
    pub bytes_received: Option<u64>,
    /// The file a multipart body streams (an upload).
    pub file: Option<String>,
}

/// Why a call waited.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum WaitCause {
    /// Exponential backoff before a retry.
    Backoff,
    /// The server's `Retry-After`.
    RetryAfter,
    /// The client's rate-limit pacer (the window was spent, or a 429 paused every request).
    RateLimit,
    /// The interval between two polls.
    Poll,
}

impl WaitCause {
    pub fn as_str(self) -> &'static str {
        match self {
            WaitCause::Backoff => "backoff",
            WaitCause::RetryAfter => "retry_after",
            WaitCause::RateLimit => "rate_limit",
            WaitCause::Poll => "poll",
        }
    }
}

#[derive(Clone, Debug)]
pub struct WaitRecord {
    pub cause: WaitCause,
    pub started: Instant,
    pub duration: Duration,
}

impl CallCtx {
    pub fn new(retry: RetryPolicy, cancel: CancellationToken, step: &str) -> Self {
        CallCtx {
            retry,
            cancel,
            attempts: Arc::new(AtomicU32::new(0)),
            step: step.to_string(),
            iteration: None,
            observer: None,
        }
    }

    /// Tells `observer` of every attempt and wait.
    pub fn observed(mut self, observer: Observer) -> Self {
        self.observer = Some(observer);
        self
    }

    /// The same context for one `for_each` iteration (attempts are still counted together).
    pub fn for_iteration(&self, index: usize) -> Self {
        CallCtx {
            iteration: Some(index),
            ..self.clone()
        }
    }

    fn tell(&self, event: CallEvent) {
        if let Some(observer) = &self.observer {
            observer(self, event);
        }
    }

    /// Records a wait that has just ended (begun at `started`).
    pub fn waited(&self, cause: WaitCause, started: Instant) {
        self.tell(CallEvent::Wait(WaitRecord {
            cause,
            started,
            duration: started.elapsed(),
        }));
    }
}

/// A response whose body has been read as JSON (or text).
#[derive(Clone, Debug)]
pub struct JsonResponse {
    pub status: u16,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub body: serde_json::Value,
    /// Why the body is not JSON (it is then kept as text): what was wrong, and where.
    pub not_json: Option<String>,
}

/// A successful response, its body not decoded yet.
#[derive(Clone, Debug)]
pub struct RawResponse {
    pub status: u16,
    pub headers: serde_json::Map<String, serde_json::Value>,
    pub bytes: bytes::Bytes,
}

impl RawResponse {
    /// The body decoded as JSON (or kept as text, with why it is not JSON), ids normalised.
    pub fn decoded(self) -> JsonResponse {
        let (mut body, not_json) = shapes::decode_body(&self.bytes);
        shapes::normalize_ids(&mut body);
        JsonResponse {
            status: self.status,
            headers: self.headers,
            body,
            not_json,
        }
    }
}

impl JsonResponse {
    /// The body, which must be JSON: else an error in words that says why it is not.
    pub fn json(self) -> Result<serde_json::Value, shapes::BadBody> {
        match self.not_json {
            Some(why) => Err(shapes::BadBody(format!("the response is not JSON: {why}"))),
            None => Ok(self.body),
        }
    }
}

/// The client. Cheap to clone.
#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    cfg: Arc<ApiConfig>,
    /// Shared by every request of the run: the API's rate limit is per key.
    pacer: Arc<pacer::Pacer>,
}

impl Client {
    pub fn new(cfg: ApiConfig) -> Result<Client, ApiError> {
        install_crypto();
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(cfg.connect_timeout)
            .read_timeout(cfg.read_timeout)
            .pool_max_idle_per_host(64);
        if crate::pipeline::check::is_loopback(&cfg.endpoint.base_url) {
            // Plain http is allowed to loopback only because the key stays on this
            // machine: a proxy from HTTP_PROXY would carry it off in cleartext.
            builder = builder.no_proxy();
        }
        let http = builder.build().map_err(|e| ApiError {
            kind: ErrorKind::Transport,
            method: Method::Get,
            path: String::new(),
            status: None,
            message: format!("cannot build the HTTP client: {e}"),
            attempts: 0,
            maybe_applied: false,
        })?;
        Ok(Client {
            http,
            cfg: Arc::new(cfg),
            pacer: Arc::new(pacer::Pacer::default()),
        })
    }

    pub fn config(&self) -> &ApiConfig {
        &self.cfg
    }

    pub fn endpoint(&self) -> &Endpoint {
        &self.cfg.endpoint
    }

    /// The run's places for exports running (the published limit of 5).
    pub fn exports(&self) -> &pacer::ExportPlaces {
        &self.pacer.exports
    }

    /// Is this URL on the API's own origin (scheme, host, port)?
    pub fn is_api_origin(&self, url: &str) -> bool {
        self.cfg.endpoint.is_api_origin(url)
    }

    /// Does this refusal look like a route of the other API flavour: a 405, a redirect
    /// of a request with a body (the other trailing-slash convention), or a 404 whose
    /// error body has the other flavour's shape?
    fn other_flavor_route(&self, req: &HttpRequest, status: u16, body: &[u8]) -> bool {
        if !self.is_api_origin(&req.url) {
            return false;
        }
        let other_shape = || {
            let parsed: Option<serde_json::Value> = serde_json::from_slice(body).ok();
            let has = |key: &str| parsed.as_ref().is_some_and(|v| v.get(key).is_some());
            match self.cfg.endpoint.flavor {
                crate::pipeline::model::ApiFlavor::Documented => has("detail"),
                crate::pipeline::model::ApiFlavor::Current => has("error"),
            }
        };
        match status {
            405 => true,
            300..=399 => !req.method.is_safe(),
            404 => other_shape(),
            _ => false,
        }
    }

    /// Sends a request with retries and returns the response (any status that is not
    /// retried). The body is not read: the caller streams or parses it.
    pub async fn send(
        &self,
        req: &HttpRequest,
        ctx: &CallCtx,
        api_call: bool,
    ) -> Result<reqwest::Response, ApiError> {
        self.send_from(req, ctx, api_call, 0, None)
            .await
            .map(|(resp, _)| resp)
    }

    /// [`Client::send`] when `used` attempts of the policy are already spent (a GET whose
    /// body was cut short goes again with what is left). Gives the attempt that answered.
    /// A status the caller `expect`s is an answer, never retried.
    async fn send_from(
        &self,
        req: &HttpRequest,
        ctx: &CallCtx,
        api_call: bool,
        used: u32,
        expect: Option<&[u16]>,
    ) -> Result<(reqwest::Response, u32), ApiError> {
        let path = request::display_path(&req.url);
        let fail = |kind, status, message: String, attempts, maybe_applied| {
            call_error(req, kind, status, message, attempts, maybe_applied)
        };
        let mut attempt = used;
        loop {
            attempt += 1;
            ctx.attempts.fetch_add(1, Ordering::Relaxed);
            if ctx.cancel.is_cancelled() {
                return Err(fail(
                    ErrorKind::Cancelled,
                    None,
                    "interrupted".into(),
                    attempt - 1,
                    false,
                ));
            }
            let to_api = self.is_api_origin(&req.url);
            let upload = matches!(req.body, Body::Multipart(_) | Body::File { .. });
            let (slot, ticket, outcome, sent_at) = tokio::select! {
                r = async {
                    // The published limit of uploads in flight, for the whole run.
                    let slot = match upload {
                        true => Some(self.pacer.upload_slot().await),
                        false => None,
                    };
                    let ticket = match to_api {
                        true => Some(self.paced(ctx).await),
                        false => None,
                    };
                    let sent_at = Instant::now();
                    (slot, ticket, self.send_once(req, api_call).await, sent_at)
                } => r,
                _ = ctx.cancel.cancelled() => {
                    return Err(fail(ErrorKind::Cancelled, None, "interrupted".into(), attempt, !req.method.is_safe()));
                }
            };
            if ctx.observer.is_some() {
                ctx.tell(CallEvent::Attempt(attempt_record(
                    req, &path, attempt, sent_at, &outcome,
                )));
            }
            let (wait, cause) = match outcome {
                Ok(resp) => match self
                    .on_answer(req, ctx, resp, attempt, ticket, expect)
                    .await
                {
                    // The server has answered: the upload is no longer in flight.
                    Next::Done(resp) => return Ok((resp, attempt)),
                    Next::Fail(e) => return Err(e),
                    Next::Wait(wait, cause) => (wait, cause),
                },
                Err(e) => match on_transport_error(req, ctx, &e, attempt) {
                    Next::Wait(wait, cause) => (wait, cause),
                    Next::Fail(e) => return Err(e),
                    Next::Done(resp) => return Ok((resp, attempt)),
                },
            };
            drop(slot);
            let waiting = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.cancel.cancelled() => {
                    return Err(fail(ErrorKind::Cancelled, None, "interrupted".into(), attempt, false));
                }
            }
            ctx.waited(cause, waiting);
        }
    }

    /// What to do after an answer: hand it over, fail, or wait and try again.
    async fn on_answer(
        &self,
        req: &HttpRequest,
        ctx: &CallCtx,
        resp: reqwest::Response,
        attempt: u32,
        ticket: Option<pacer::Ticket>,
        expect: Option<&[u16]>,
    ) -> Next {
        let status = resp.status().as_u16();
        if let Some(ticket) = ticket {
            self.pacer.observe(resp.headers(), ticket);
        }
        if !retry::retryable_status(req.method, status)
            || expect.is_some_and(|e| e.contains(&status))
        {
            return Next::Done(resp);
        }
        let fail = |kind, message| {
            Next::Fail(call_error(req, kind, Some(status), message, attempt, false))
        };
        let retry_after = retry::retry_after(resp.headers());
        let message = read_error_message(resp).await;
        let cap = self.cfg.endpoint.retry_after_cap;
        // Checked before pausing the pacer: a wait this step will not make must not hold
        // up every other request of the run either.
        if let Some(wait) = retry_after.filter(|w| *w > cap) {
            return fail(
                ErrorKind::RetryAfterTooLong,
                format!(
                    "the server asked to retry after {}s, more than the {}s this run waits; giving up",
                    wait.as_secs(),
                    cap.as_secs()
                ),
            );
        }
        if attempt >= ctx.retry.max_attempts {
            return fail(ErrorKind::Status, message);
        }
        if let (429, Some(wait), true) = (status, retry_after, self.is_api_origin(&req.url)) {
            self.pacer.pause(wait);
        }
        let cause = match retry_after {
            Some(_) => WaitCause::RetryAfter,
            None => WaitCause::Backoff,
        };
        let wait = retry_after.unwrap_or_else(|| retry::backoff(&ctx.retry, attempt));
        log_retry(ctx, req, &format!("answered {status}"), wait, attempt);
        Next::Wait(wait, cause)
    }

    /// Waits for the rate-limit pacer, telling the timeline when that took a while.
    async fn paced(&self, ctx: &CallCtx) -> pacer::Ticket {
        let waiting = Instant::now();
        let ticket = self.pacer.acquire().await;
        if waiting.elapsed() >= PACED {
            ctx.waited(WaitCause::RateLimit, waiting);
        }
        ticket
    }

    /// One attempt, following same-method redirects by hand (GET/HEAD only); the key
    /// goes only to the API's origin.
    async fn send_once(
        &self,
        req: &HttpRequest,
        api_call: bool,
    ) -> Result<reqwest::Response, reqwest::Error> {
        let mut url = req.url.clone();
        for _hop in 0..5 {
            let resp = self.build(req, &url, api_call).await?.send().await?;
            let status = resp.status();
            if !(status.is_redirection() && req.method.is_safe()) {
                return Ok(resp);
            }
            let Some(next) = resp
                .headers()
                .get(LOCATION)
                .and_then(|l| l.to_str().ok())
                .and_then(|l| Url::parse(&url).ok()?.join(l).ok())
            else {
                return Ok(resp);
            };
            tracing::debug!(
                "following redirect to {}{}",
                request::display_url(next.as_str()),
                if self.is_api_origin(next.as_str()) {
                    ""
                } else {
                    " (another origin: without the API key)"
                }
            );
            url = next.to_string();
        }
        self.build(req, &url, api_call).await?.send().await
    }

    async fn build(
        &self,
        req: &HttpRequest,
        url: &str,
        api_call: bool,
    ) -> Result<reqwest::RequestBuilder, reqwest::Error> {
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Ok(ua) = HeaderValue::from_str(&user_agent()) {
            headers.insert(USER_AGENT, ua);
        }
        for (name, value) in &req.headers {
            if let (Ok(n), Ok(v)) = (
                reqwest::header::HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        if let (Some(key), false, true) = (&self.cfg.key, req.storage, self.is_api_origin(url)) {
            if let Ok(mut v) = HeaderValue::from_str(key.expose()) {
                v.set_sensitive(true);
                headers.insert(KEY_HEADER, v);
            }
        }
        let mut builder = self
            .http
            .request(req.method.to_reqwest(), url)
            .headers(headers);
        if api_call {
            builder = builder.timeout(self.cfg.request_timeout);
        }
        builder = match &req.body {
            Body::None => builder,
            Body::Json(v) => builder
                .header(CONTENT_TYPE, "application/json")
                .body(serde_json::to_vec(v).unwrap_or_default()),
            Body::Multipart(parts) => builder.multipart(multipart_form(parts).await?),
            Body::File {
                path,
                offset,
                len,
                seen,
            } => {
                let len = len.unwrap_or(0);
                builder
                    .header(reqwest::header::CONTENT_LENGTH, len)
                    .body(file_range(path, *offset, len, seen.0.clone()).await)
            }
        };
        Ok(builder)
    }

    /// Sends and reads a JSON (or text) body; a status outside `expect` (default 2xx)
    /// is an error carrying the server's message.
    pub async fn send_json(
        &self,
        req: &HttpRequest,
        ctx: &CallCtx,
        expect: Option<&[u16]>,
    ) -> Result<JsonResponse, ApiError> {
        Ok(self.send_raw(req, ctx, expect).await?.decoded())
    }

    /// As [`Client::send_json`], with the body left as bytes (a list page is read in two
    /// passes: its cursor first, so the next page can be asked for, then its items).
    pub async fn send_raw(
        &self,
        req: &HttpRequest,
        ctx: &CallCtx,
        expect: Option<&[u16]>,
    ) -> Result<RawResponse, ApiError> {
        let error = |kind, status, message: String, attempts| {
            call_error(req, kind, status, message, attempts, !req.method.is_safe())
        };
        let mut used = 0;
        let (status, headers, bytes, attempts) = loop {
            // An upload may take longer than any fixed limit: it gets the idle limit
            // and the step's timeout, not the per-call total.
            let api_call = !matches!(req.body, Body::Multipart(_) | Body::File { .. });
            let (resp, attempt) = self.send_from(req, ctx, api_call, used, expect).await?;
            let status = resp.status().as_u16();
            let headers = header_map(resp.headers());
            let read = tokio::select! {
                b = read_capped(resp, MAX_JSON_BODY) => b,
                _ = ctx.cancel.cancelled() => {
                    return Err(error(ErrorKind::Cancelled, Some(status), "interrupted".into(), attempt));
                }
            };
            let e = match read {
                Ok(bytes) => break (status, headers, bytes, attempt),
                Err(BodyError::TooLarge(limit)) => {
                    return Err(error(
                        ErrorKind::Unexpected,
                        Some(status),
                        format!("the response is larger than {} MiB; not read", limit >> 20),
                        attempt,
                    ));
                }
                Err(BodyError::Transport(e)) => e,
            };
            let message = format!("reading the response failed: {}", transport_message(&e));
            // A body cut short is a transport error like any other: a GET goes again,
            // a POST does not (the server may have acted on it).
            if !req.method.is_safe() || attempt >= ctx.retry.max_attempts {
                return Err(error(ErrorKind::Transport, Some(status), message, attempt));
            }
            let wait = retry::backoff(&ctx.retry, attempt);
            log_retry(ctx, req, &message, wait, attempt);
            let waiting = Instant::now();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = ctx.cancel.cancelled() => {
                    return Err(error(ErrorKind::Cancelled, None, "interrupted".into(), attempt));
                }
            }
            ctx.waited(WaitCause::Backoff, waiting);
            used = attempt;
        };
        let ok = match expect {
            Some(list) => list.contains(&status),
            None => (200..300).contains(&status),
        };
        if !ok {
            let mut message = shapes::error_message(&bytes);
            if !req.storage && self.other_flavor_route(req, status, &bytes) {
                message = format!("{message}; {}", self.cfg.endpoint.flavor_hint());
            }
            // A 5xx after the body went out: the server may have applied it.
            let maybe_applied = !req.method.is_safe() && status >= 500;
            return Err(call_error(
                req,
                ErrorKind::Status,
                Some(status),
                message,
                attempts,
                maybe_applied,
            ));
        }
        Ok(RawResponse {
            status,
            headers,
            bytes,
        })
    }
}

/// A pacer wait shorter than this is the lock, not the rate limit (its sleeps are longer).
const PACED: Duration = Duration::from_millis(2);

/// The timeline's record of one attempt.
fn attempt_record(
    req: &HttpRequest,
    path: &str,
    attempt: u32,
    started: Instant,
    outcome: &Result<reqwest::Response, reqwest::Error>,
) -> AttemptRecord {
    let (bytes_sent, file) = match &req.body {
        Body::None => (None, None),
        Body::Json(v) => (serde_json::to_vec(v).ok().map(|b| b.len() as u64), None),
        Body::Multipart(parts) => {
            let mut total = Some(0u64);
            let mut file = None;
            for part in parts {
                match part {
                    Part::Text { value, .. } => total = total.map(|t| t + value.len() as u64),
                    Part::File { path, size, .. } => {
                        total = total.zip(*size).map(|(t, s)| t + s);
                        file.get_or_insert_with(|| path.display().to_string());
                    }
                }
            }
            (total, file)
        }
        Body::File { path, len, .. } => (*len, Some(path.display().to_string())),
    };
    let (status, error, bytes_received) = match outcome {
        Ok(resp) => (Some(resp.status().as_u16()), None, resp.content_length()),
        Err(e) => (None, Some(transport_message(e)), None),
    };
    AttemptRecord {
        method: req.method,
        path: path.to_string(),
        attempt,
        status,
        error,
        started,
        duration: started.elapsed(),
        bytes_sent,
        bytes_received,
        file,
    }
}

/// What follows one attempt.
enum Next {
    Done(reqwest::Response),
    Fail(ApiError),
    Wait(Duration, WaitCause),
}

/// A failed call of `req`.
pub fn call_error(
    req: &HttpRequest,
    kind: ErrorKind,
    status: Option<u16>,
    message: String,
    attempts: u32,
    maybe_applied: bool,
) -> ApiError {
    ApiError {
        kind,
        method: req.method,
        path: request::display_path(&req.url),
        status,
        message,
        attempts,
        maybe_applied,
    }
}

/// What to do after a transport error: a GET goes again, another method only when the
/// connection failed before anything was sent (it is never applied twice).
fn on_transport_error(req: &HttpRequest, ctx: &CallCtx, e: &reqwest::Error, attempt: u32) -> Next {
    let retryable = e.is_connect() || req.method.is_safe();
    let message = transport_message(e);
    if !retryable {
        return Next::Fail(call_error(
            req,
            ErrorKind::Transport,
            None,
            message,
            attempt,
            true,
        ));
    }
    if attempt >= ctx.retry.max_attempts {
        return Next::Fail(call_error(
            req,
            ErrorKind::Transport,
            None,
            message,
            attempt,
            false,
        ));
    }
    let wait = retry::backoff(&ctx.retry, attempt);
    log_retry(ctx, req, &format!("failed: {message}"), wait, attempt);
    Next::Wait(wait, WaitCause::Backoff)
}

/// The largest JSON (or text) response read into memory; larger is an error, not an
/// out-of-memory (a gzip-compressed page can expand a thousandfold).
const MAX_JSON_BODY: usize = 256 << 20;
/// How much of an error response is read for its message.
const MAX_ERROR_BODY: usize = 64 << 10;

/// Reads a body up to `limit` bytes (after decompression).
async fn read_capped(mut resp: reqwest::Response, limit: usize) -> Result<bytes::Bytes, BodyError> {
    let mut buf = bytes::BytesMut::new();
    while let Some(chunk) = resp.chunk().await.map_err(BodyError::Transport)? {
        if buf.len() + chunk.len() > limit {
            return Err(BodyError::TooLarge(limit));
        }
        buf.extend_from_slice(&chunk);
    }
    Ok(buf.freeze())
}

/// Why a body could not be read.
#[derive(Debug)]
enum BodyError {
    Transport(reqwest::Error),
    TooLarge(usize),
}

/// The warning every retry leaves in the log: what happened, when the next attempt is.
fn log_retry(ctx: &CallCtx, req: &HttpRequest, what: &str, wait: Duration, attempt: u32) {
    tracing::warn!(
        step = %ctx.step,
        "{} {} {what}; retrying in {:.1}s (attempt {} of {})",
        req.method.as_str(),
        request::display_path(&req.url),
        wait.as_secs_f64(),
        attempt + 1,
        ctx.retry.max_attempts
    );
}

/// Installs the rustls crypto provider once (reqwest is built without one).
fn install_crypto() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Response headers as a JSON map (lower-case names).
pub fn header_map(headers: &HeaderMap) -> serde_json::Map<String, serde_json::Value> {
    headers
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into_owned()),
            )
        })
        .collect()
}

async fn read_error_message(resp: reqwest::Response) -> String {
    error_body_message(resp).await
}

/// The server's message from an error response, reading at most a little of it.
pub async fn error_body_message(mut resp: reqwest::Response) -> String {
    let mut buf = Vec::new();
    while let Ok(Some(chunk)) = resp.chunk().await {
        let room = MAX_ERROR_BODY.saturating_sub(buf.len());
        buf.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if buf.len() >= MAX_ERROR_BODY {
            break;
        }
    }
    shapes::error_message(&buf)
}

/// A transport error in words, without the URL (it may carry a signature).
pub fn transport_message(e: &reqwest::Error) -> String {
    let mut msg = if e.is_timeout() {
        "timed out".to_string()
    } else if e.is_connect() {
        "could not connect".to_string()
    } else if e.is_body() || e.is_decode() {
        "the response body was cut short or malformed".to_string()
    } else {
        "the connection failed".to_string()
    };
    let mut source = std::error::Error::source(e);
    let mut seen = Vec::new();
    while let Some(inner) = source {
        let text = inner.to_string();
        if !seen.contains(&text) {
            msg.push_str(&format!(": {text}"));
            seen.push(text);
        }
        source = inner.source();
    }
    // hyper's words for a response head over its limits (header bytes or count) name
    // neither the server nor the headers.
    if seen.iter().any(|t| t.contains("message head is too large")) {
        msg = format!(
            "the server sent oversized response headers (more header lines, or longer ones, than this client reads: at most 100 headers in about 400 KiB); {msg}"
        );
    }
    msg
}

/// `len` bytes of a file from `offset`, streamed; a failure to open or read surfaces as a
/// body error when the request is sent.
///
/// One blocking task reads the range straight into the chunks the body sends (no zeroing,
/// no copy through `tokio::fs`'s buffer, no thread hand-off per chunk), a few chunks ahead;
/// `seen` sees each chunk (with its offset in the file) before it is sent.
async fn file_range(
    path: &std::path::Path,
    offset: u64,
    len: u64,
    seen: Option<request::ChunkSink>,
) -> reqwest::Body {
    const CHUNK: u64 = 256 * 1024;
    let (tx, rx) = tokio::sync::mpsc::channel::<std::io::Result<bytes::Bytes>>(4);
    let path = path.to_path_buf();
    tokio::task::spawn_blocking(move || {
        use std::io::{Read as _, Seek as _};
        let opened = std::fs::File::open(&path).and_then(|mut file| {
            file.seek(std::io::SeekFrom::Start(offset))?;
            Ok(file)
        });
        let mut file = match opened {
            Ok(file) => file,
            Err(e) => {
                let _ = tx.blocking_send(Err(e));
                return;
            }
        };
        let mut left = len;
        while left > 0 {
            let want = left.min(CHUNK);
            let mut chunk = Vec::with_capacity(want as usize);
            let read = (&mut file).take(want).read_to_end(&mut chunk);
            let item = match read {
                Ok(0) => Err(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    format!("{} ended {left} bytes early", path.display()),
                )),
                Ok(n) => {
                    let chunk = bytes::Bytes::from(chunk);
                    if let Some(seen) = &seen {
                        seen(offset + (len - left), &chunk);
                    }
                    left -= n as u64;
                    Ok(chunk)
                }
                Err(e) => Err(e),
            };
            let failed = item.is_err();
            // The receiver is gone when the request was dropped: stop reading.
            if tx.blocking_send(item).is_err() || failed {
                return;
            }
        }
    });
    reqwest::Body::wrap_stream(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|item| (item, rx))
    }))
}

async fn multipart_form(parts: &[Part]) -> Result<reqwest::multipart::Form, reqwest::Error> {
    let mut form = reqwest::multipart::Form::new();
    for part in parts {
        form = match part {
            Part::Text { field, value } => form.text(field.clone(), value.clone()),
            Part::File {
                field,
                path,
                file_name,
                size,
                content_type,
            } => {
                let body = match tokio::fs::File::open(path).await {
                    Ok(file) => reqwest::Body::wrap_stream(
                        tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024),
                    ),
                    // Surfaces as a body error when the request is sent.
                    Err(e) => reqwest::Body::wrap_stream(futures_util::stream::once(async move {
                        Err::<bytes::Bytes, std::io::Error>(e)
                    })),
                };
                let p = reqwest::multipart::Part::stream_with_length(body, size.unwrap_or(0))
                    .file_name(request::part_file_name(file_name.as_bytes()));
                let p = match p.mime_str(content_type) {
                    Ok(p) => p,
                    Err(e) => return Err(e),
                };
                form.part(field.clone(), p)
            }
        };
    }
    Ok(form)
}
