//! The middleware in front of every route of both listeners: it reads small request bodies
//! up front (so no answer leaves unread bytes on a kept-alive connection), journals the
//! request, applies `--latency`, `--rate-limit` (and sends `X-RateLimit-*` on every API
//! response), scripted faults, `--fail-rate` and the API key check, in that order, then lets
//! the route answer; a body-less 405 gets the flavour's JSON error.
//!
//! It takes a request and gives the response actually sent (possibly a fault's). The
//! rate-limit, fail-rate, latency and key checks apply to the API listener only; scripted
//! faults, the journal and the count of uploads in flight (`--max-uploads`, see `limits`)
//! apply to both; on the storage listener any request carrying the
//! API key is refused with 400, counted and logged loudly (a leak). It must not log header
//! values (keys are secrets) and must not know what any route does.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, HttpBody};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use super::faults::{CutBody, FaultEffect};
use super::flavor::{json_response, Problem};
use super::state::{Origin, RecordedRequest, Shared};

/// The window reported in `X-RateLimit-*` when `--rate-limit` is not given.
pub(crate) const UNLIMITED: u32 = 1_000_000;

/// The header that carries the API key.
pub(crate) const KEY_HEADER: &str = "x-avala-api-key";

/// Request extension: a `repeat_cursor` fault fired (the fault's position in the plan).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RepeatCursor(pub usize);

/// The middleware's state: the shared world and which listener this is.
#[derive(Clone)]
pub(crate) struct Gate {
    shared: Arc<Shared>,
    origin: Origin,
}

impl Gate {
    pub(crate) fn new(shared: Arc<Shared>, origin: Origin) -> Self {
        Gate { shared, origin }
    }
}

/// Request bodies up to this size are read before anything answers, so a response that
/// ignores the body (a 404, a 405, a fault) never leaves unread bytes on a kept-alive
/// connection. Larger unread bodies close the connection (`Connection: close`).
const BUFFERED_BODY: u64 = 1024 * 1024;

pub(crate) async fn gate(State(gate): State<Gate>, request: Request, next: Next) -> Response {
    let method = request.method().as_str().to_owned();
    let path = request.uri().path().to_owned();
    if gate.origin == Origin::Storage && request.headers().contains_key(KEY_HEADER) {
        let leaks = gate.shared.count_key_leak();
        tracing::error!(
            %method,
            %path,
            leaks,
            "KEY LEAK: a request to the storage origin carried X-Avala-Api-Key; refused with 400"
        );
        eprintln!(
            "avala emulator: KEY LEAK: {method} {path} on the storage origin carried X-Avala-Api-Key (refused with 400; {leaks} so far)"
        );
    }
    // Counted from the first byte: an upload is in flight while its body arrives.
    let upload = super::limits::is_upload(gate.origin, &method, &path)
        .then(|| gate.shared.limits.begin_upload());
    let (request, body_pending, small) = read_small_body(request).await;
    let is_json = request
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    let json = small
        .filter(|_| is_json)
        .and_then(|b| serde_json::from_slice(&b).ok());
    let seq = gate.shared.record(RecordedRequest {
        origin: gate.origin,
        method: method.clone(),
        path: path.clone(),
        query: request.uri().query().unwrap_or("").to_owned(),
        headers: journal_headers(request.headers()),
        status: 0,
        json,
    });
    let mut response = match &upload {
        Some(slot) if !slot.allowed => too_many_uploads(&gate),
        _ => answer(&gate, &method, &path, request, next).await,
    };
    drop(upload);
    if body_pending && !response.status().is_success() {
        set_header(&mut response, header::CONNECTION, "close".into());
    }
    let status = response.status().as_u16();
    gate.shared.set_status(seq, status);
    tracing::debug!(origin = ?gate.origin, %method, %path, status, "emulator request");
    response
}

/// Reads a small request body up front (see [`BUFFERED_BODY`]); the flag says a body is
/// left to stream (large or of unknown length).
/// The request with a small body read in (and its bytes), and whether a body is still
/// unread.
async fn read_small_body(request: Request) -> (Request, bool, Option<axum::body::Bytes>) {
    let length = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let chunked = request.headers().contains_key(header::TRANSFER_ENCODING);
    match length {
        Some(0) => (request, false, None),
        Some(n) if n <= BUFFERED_BODY && !chunked => {
            let (parts, body) = request.into_parts();
            match axum::body::to_bytes(body, n as usize).await {
                Ok(bytes) => (
                    Request::from_parts(parts, Body::from(bytes.clone())),
                    false,
                    Some(bytes),
                ),
                // A body shorter or longer than announced: let the route see the failure.
                Err(_) => (Request::from_parts(parts, Body::empty()), true, None),
            }
        }
        None if !chunked => (request, false, None),
        _ => (request, true, None),
    }
}

async fn answer(gate: &Gate, method: &str, path: &str, request: Request, next: Next) -> Response {
    let shared = &gate.shared;
    let options = &shared.options;
    let api = gate.origin == Origin::Api;
    if let Some(ms) = options.latency.filter(|_| api) {
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    // Without --rate-limit the headers still come, describing a window the emulator never
    // exhausts (UNLIMITED requests per second), so clients that pace themselves never wait.
    let rate = api.then(|| shared.take_rate_slot(options.rate_limit.unwrap_or(UNLIMITED)));
    let mut response = match rate {
        Some(slot) if !slot.allowed && options.rate_limit.is_some() => {
            let mut response = options
                .flavor
                .problem(Problem::RateLimited { retry_after: 1 });
            set_header(&mut response, header::RETRY_AFTER, "1".into());
            response
        }
        _ => faulted(gate, method, path, request, next).await,
    };
    if let Some(slot) = rate {
        let headers = [
            ("x-ratelimit-limit", slot.limit.to_string()),
            ("x-ratelimit-remaining", slot.remaining.to_string()),
            ("x-ratelimit-reset", slot.reset.to_string()),
        ];
        for (name, value) in headers {
            set_header(&mut response, HeaderName::from_static(name), value);
        }
    }
    response
}

/// The 429 for an upload past `--max-uploads` (the API's or object storage's shape).
fn too_many_uploads(gate: &Gate) -> Response {
    let options = &gate.shared.options;
    let mut response = match gate.origin {
        Origin::Api => options
            .flavor
            .problem(Problem::RateLimited { retry_after: 1 }),
        Origin::Storage => super::storage::s3_error(
            StatusCode::TOO_MANY_REQUESTS,
            "SlowDown",
            &format!(
                "Reduce your request rate: more than {} uploads in flight.",
                options.max_uploads
            ),
        ),
    };
    set_header(&mut response, header::RETRY_AFTER, "1".into());
    response
}

/// Applies the scripted faults that fire for this request around the checks and the route.
async fn faulted(
    gate: &Gate,
    method: &str,
    path: &str,
    mut request: Request,
    next: Next,
) -> Response {
    let shared = &gate.shared;
    let (mut instead, mut after, mut cut) = (None, None, None);
    for (position, effect) in shared.faults.fire(method, path) {
        match effect {
            FaultEffect::DelayMs(ms) => {
                shared.faults.delivered(position);
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            FaultEffect::Status {
                after_route: true, ..
            } => {
                after.get_or_insert((position, effect));
            }
            FaultEffect::Status { .. } | FaultEffect::RedirectOtherOrigin => {
                instead.get_or_insert((position, effect));
            }
            FaultEffect::CutAfterBytes(bytes) => {
                cut.get_or_insert((position, bytes));
            }
            FaultEffect::RepeatCursor => {
                if request.extensions().get::<RepeatCursor>().is_none() {
                    request.extensions_mut().insert(RepeatCursor(position));
                }
            }
        }
    }
    let mut response = match instead {
        Some((position, FaultEffect::RedirectOtherOrigin)) => {
            shared.faults.delivered(position);
            redirect(gate, &request)
        }
        Some((position, effect)) => {
            shared.faults.delivered(position);
            status_response(gate, &effect)
        }
        None => checked(gate, request, next).await,
    };
    if let Some((position, effect)) = after {
        shared.faults.delivered(position);
        response = status_response(gate, &effect);
    }
    if let Some((position, bytes)) = cut {
        if response
            .body()
            .size_hint()
            .exact()
            .is_some_and(|len| len > bytes)
        {
            shared.faults.delivered(position);
            response = response.map(|body| Body::new(CutBody::new(body, bytes)));
        }
    }
    response
}

/// `--fail-rate` and the key check (API listener only), then the route.
async fn checked(gate: &Gate, request: Request, next: Next) -> Response {
    let options = &gate.shared.options;
    if gate.origin == Origin::Storage && request.headers().contains_key(KEY_HEADER) {
        return super::storage::s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "This is object storage: never send X-Avala-Api-Key here (the key leaked).",
        );
    }
    if gate.origin == Origin::Api {
        if options.fail_rate > 0.0 && fastrand::f64() < options.fail_rate {
            return options
                .flavor
                .problem(Problem::Status(StatusCode::SERVICE_UNAVAILABLE));
        }
        let key = request.headers().get(KEY_HEADER).map(HeaderValue::as_bytes);
        let problem = match (key, options.key.as_deref()) {
            (None | Some(b""), _) => Some(Problem::Unauthorized { missing: true }),
            (Some(k), Some(expected)) if k != expected.as_bytes() => {
                Some(Problem::Unauthorized { missing: false })
            }
            _ => None,
        };
        if let Some(problem) = problem {
            return options.flavor.problem(problem);
        }
    }
    let method = request.method().as_str().to_owned();
    let response = next.run(request).await;
    // The router's own 405 has no body: give it the flavour's JSON error, keeping `Allow`.
    if response.status() == StatusCode::METHOD_NOT_ALLOWED
        && response.body().size_hint().exact() == Some(0)
    {
        let allow = response.headers().get(header::ALLOW).cloned();
        let mut json = options.flavor.problem(Problem::MethodNotAllowed { method });
        if let Some(allow) = allow {
            json.headers_mut().insert(header::ALLOW, allow);
        }
        return json;
    }
    response
}

/// The response of a `status` fault (other effects give a 500 here; they never get here).
fn status_response(gate: &Gate, effect: &FaultEffect) -> Response {
    let FaultEffect::Status {
        code,
        body,
        retry_after,
        ..
    } = effect
    else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let status = StatusCode::from_u16(*code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = match body {
        None => gate.shared.options.flavor.problem(Problem::Status(status)),
        Some(Value::String(text)) => (status, text.clone()).into_response(),
        Some(json) => json_response(status, json),
    };
    if let Some(retry_after) = retry_after {
        set_header(
            &mut response,
            header::RETRY_AFTER,
            retry_after.header_value(),
        );
    }
    response
}

/// A 302 to the same path and query on the other listener.
fn redirect(gate: &Gate, request: &Request) -> Response {
    let other = match gate.origin {
        Origin::Api => &gate.shared.storage_origin,
        Origin::Storage => &gate.shared.api_origin,
    };
    let target = request.uri().path_and_query().map_or("/", |pq| pq.as_str());
    let mut response = StatusCode::FOUND.into_response();
    set_header(&mut response, header::LOCATION, format!("{other}{target}"));
    response
}

fn set_header(response: &mut Response, name: HeaderName, value: String) {
    if let Ok(value) = HeaderValue::try_from(value) {
        response.headers_mut().insert(name, value);
    }
}

/// Header names (already lowercase) to values; repeated headers joined with `", "`.
fn journal_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    let mut map = BTreeMap::<String, String>::new();
    for (name, value) in headers {
        let value = String::from_utf8_lossy(value.as_bytes());
        map.entry(name.as_str().to_owned())
            .and_modify(|v| {
                v.push_str(", ");
                v.push_str(&value);
            })
            .or_insert_with(|| value.into_owned());
    }
    map
}
