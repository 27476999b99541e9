//! Fleet recording uploads (current flavour), as the SDK's `fleet.uploads` speaks them: a
//! session per recording (`…/upload/init/`), presigned PUT URLs per file (`…/upload/urls/`),
//! the storage origin receiving the files, confirmation of what arrived (`…/upload/confirm/`),
//! finalization (`…/upload/finalize/`) and the session's status (`…/upload/status/`).
//!
//! It takes those requests and the storage origin's PUTs and gives the SDK's shapes: the
//! counters are exact, a file counts as confirmed only when storage holds it with its declared
//! size, and the status moves `initiated` → `uploading` → `completing` → `completed` (the
//! first status read after finalization completes it). It must not hold file bytes in memory.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::flavor::{json_response, Problem, Rejection};
use super::manual;
use super::options::Flavor;
use super::routes::Reply;
use super::state::Shared;

/// Where a recording's files go on storage: `fleet/demo/{recording}/`.
fn prefix(recording: &str) -> String {
    format!("fleet/demo/{recording}/")
}

#[derive(Default)]
pub(crate) struct FleetUploads {
    next: u64,
    sessions: HashMap<String, Session>,
}

struct Session {
    uid: String,
    status: &'static str,
    /// Declared files: path → size.
    files: BTreeMap<String, u64>,
    /// What storage received: path → (size, ETag).
    stored: HashMap<String, (u64, String)>,
    confirmed: BTreeSet<String>,
}

impl Session {
    fn counts(&self) -> Map<String, Value> {
        let total_bytes: u64 = self.files.values().sum();
        let confirmed_bytes: u64 = self
            .confirmed
            .iter()
            .filter_map(|p| self.files.get(p))
            .sum();
        let mut map = Map::new();
        map.insert("session_uid".into(), json!(self.uid));
        map.insert("status".into(), json!(self.status));
        map.insert("total_files".into(), json!(self.files.len()));
        map.insert("total_bytes".into(), json!(total_bytes));
        map.insert("confirmed_files".into(), json!(self.confirmed.len()));
        map.insert("confirmed_bytes".into(), json!(confirmed_bytes));
        map
    }
}

fn reject(problem: Problem) -> Rejection {
    Rejection(Flavor::Current, problem)
}

fn body_object(body: &Bytes) -> Result<Map<String, Value>, Rejection> {
    serde_json::from_slice(body).map_err(|e| {
        reject(Problem::BadRequest {
            message: format!("JSON parse error - {e}"),
        })
    })
}

fn no_session() -> Response {
    json_response(
        StatusCode::NOT_FOUND,
        &json!({"detail": "No upload session found for this recording."}),
    )
}

fn wrong_session() -> Rejection {
    reject(Problem::Validation {
        field: "session_uid",
        message: "This is not the recording's upload session.".into(),
    })
}

/// `POST /fleet/recordings/{recording}/upload/init/` `{files: [{path, size_bytes}]}`.
pub(crate) async fn init(
    State(shared): State<Arc<Shared>>,
    Path(recording): Path<String>,
    body: Bytes,
) -> Reply {
    let body = body_object(&body)?;
    let mut files = BTreeMap::new();
    for file in body
        .get("files")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let path = file["path"].as_str().filter(|p| {
            !p.is_empty() && !p.starts_with('/') && !p.split('/').any(|s| s.is_empty() || s == "..")
        });
        match (path, file["size_bytes"].as_u64()) {
            (Some(path), Some(size)) => {
                files.insert(path.to_owned(), size);
            }
            _ => {
                return Err(reject(Problem::Validation {
                    field: "files",
                    message: "Each file needs a relative path and a size_bytes.".into(),
                }))
            }
        }
    }
    let mut fleet = shared.fleet.lock().expect("fleet lock");
    if fleet.sessions.contains_key(&recording) {
        return Err(reject(Problem::BadRequest {
            message: "This recording already has an upload session.".into(),
        }));
    }
    fleet.next += 1;
    let session = Session {
        uid: format!("fus_{:04}", fleet.next),
        status: "initiated",
        files,
        stored: HashMap::new(),
        confirmed: BTreeSet::new(),
    };
    let mut answer = session.counts();
    answer.remove("session_uid");
    answer.insert("uid".into(), json!(session.uid));
    answer.insert("s3_prefix".into(), json!(prefix(&recording)));
    fleet.sessions.insert(recording, session);
    Ok(json_response(StatusCode::CREATED, &Value::Object(answer)))
}

/// Runs `act` on the upload session a request names (its body's `session_uid` must be the
/// recording's session): the preamble of `urls`, `confirm` and `finalize`.
fn in_session(
    shared: &Shared,
    recording: &str,
    body: &Bytes,
    act: impl FnOnce(&mut Session, &Map<String, Value>) -> Reply,
) -> Reply {
    let body = body_object(body)?;
    let mut fleet = shared.fleet.lock().expect("fleet lock");
    let Some(session) = fleet.sessions.get_mut(recording) else {
        return Ok(no_session());
    };
    if body["session_uid"].as_str() != Some(session.uid.as_str()) {
        return Err(wrong_session());
    }
    act(session, &body)
}

/// `POST …/upload/urls/` `{session_uid, file_paths, ttl_seconds}`: one presigned PUT each.
pub(crate) async fn urls(
    State(shared): State<Arc<Shared>>,
    Path(recording): Path<String>,
    body: Bytes,
) -> Reply {
    in_session(&shared, &recording, &body, |session, body| {
        let mut urls = Vec::new();
        for path in body
            .get("file_paths")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let Some(path) = path.as_str().filter(|p| session.files.contains_key(*p)) else {
                return Err(reject(Problem::Validation {
                    field: "file_paths",
                    message: format!("{path} is not a file of this session."),
                }));
            };
            let key = format!("{}{path}", prefix(&recording));
            let url_path = format!("/{}", quote(&key));
            urls.push(json!({
                "path": path,
                "s3_key": key,
                "put_url": format!(
                    "{}{url_path}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Expires=3600&X-Amz-Signature={}",
                    shared.storage_origin,
                    manual::sign(&format!("FLEET PUT {url_path}"))
                ),
                "headers": {"Content-Type": "application/octet-stream"},
            }));
        }
        Ok(json_response(StatusCode::OK, &json!({ "urls": urls })))
    })
}

/// `POST …/upload/confirm/` `{session_uid, files: [{path, etag, size_bytes}]}`: a file is
/// confirmed when storage holds it with that size and ETag.
pub(crate) async fn confirm(
    State(shared): State<Arc<Shared>>,
    Path(recording): Path<String>,
    body: Bytes,
) -> Reply {
    in_session(&shared, &recording, &body, |session, body| {
        let mut confirmed = 0;
        for file in body
            .get("files")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let path = file["path"].as_str().unwrap_or_default();
            let held = session.stored.get(path).is_some_and(|(size, etag)| {
                Some(*size) == file["size_bytes"].as_u64()
                    && Some(etag.as_str()) == file["etag"].as_str()
            });
            if !held {
                return Err(reject(Problem::Validation {
                    field: "files",
                    message: format!("{path} is not on storage with that size and ETag."),
                }));
            }
            confirmed += usize::from(session.confirmed.insert(path.to_owned()));
        }
        if session.status == "initiated" {
            session.status = "uploading";
        }
        let mut answer = session.counts();
        answer.insert("confirmed".into(), json!(confirmed));
        answer.insert("total_confirmed".into(), json!(session.confirmed.len()));
        Ok(json_response(StatusCode::OK, &Value::Object(answer)))
    })
}

/// `POST …/upload/finalize/` `{session_uid}`: every file must be confirmed.
pub(crate) async fn finalize(
    State(shared): State<Arc<Shared>>,
    Path(recording): Path<String>,
    body: Bytes,
) -> Reply {
    in_session(&shared, &recording, &body, |session, _body| {
        if session.confirmed.len() != session.files.len() {
            return Err(reject(Problem::BadRequest {
                message: "Some files are not confirmed yet.".into(),
            }));
        }
        session.status = "completing";
        Ok(json_response(
            StatusCode::ACCEPTED,
            &json!({"detail": "Upload finalization queued.", "session_uid": session.uid}),
        ))
    })
}

/// `GET …/upload/status/`: counters and the paths not confirmed yet.
pub(crate) async fn status(
    State(shared): State<Arc<Shared>>,
    Path(recording): Path<String>,
) -> Reply {
    let mut fleet = shared.fleet.lock().expect("fleet lock");
    let Some(session) = fleet.sessions.get_mut(&recording) else {
        return Ok(no_session());
    };
    let mut answer = session.counts();
    let pending: Vec<&String> = session
        .files
        .keys()
        .filter(|p| !session.confirmed.contains(*p))
        .collect();
    answer.insert("pending_paths".into(), json!(pending));
    if session.status == "completing" {
        session.status = "completed";
    }
    Ok(json_response(StatusCode::OK, &Value::Object(answer)))
}

/// `PUT /fleet/demo/{recording}/{path…}?…&X-Amz-Signature=…` on the storage origin.
pub(crate) async fn put(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let s3 = super::storage::s3_error;
    let raw_path = uri.path().to_owned();
    let signed = uri.query().unwrap_or("").split('&').any(|piece| {
        piece.strip_prefix("X-Amz-Signature=")
            == Some(manual::sign(&format!("FLEET PUT {raw_path}")).as_str())
    });
    if !signed {
        return s3(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let key = unquote(&raw_path);
    let mut segments = key.trim_start_matches('/').splitn(4, '/');
    let (recording, path) = match (
        segments.next(),
        segments.next(),
        segments.next(),
        segments.next(),
    ) {
        (Some("fleet"), Some(_), Some(recording), Some(path)) => {
            (recording.to_owned(), path.to_owned())
        }
        _ => {
            return s3(
                StatusCode::NOT_FOUND,
                "NoSuchKey",
                "The specified key does not exist.",
            )
        }
    };
    let expected = {
        let fleet = shared.fleet.lock().expect("fleet lock");
        fleet
            .sessions
            .get(&recording)
            .and_then(|s| s.files.get(&path).copied())
    };
    let Some(expected) = expected else {
        return s3(
            StatusCode::FORBIDDEN,
            "AccessDenied",
            "No upload grant for this key.",
        );
    };
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared != Some(expected) {
        return s3(
            StatusCode::BAD_REQUEST,
            "InvalidArgument",
            "Content-Length must be the size declared at initialization.",
        );
    }
    let file = super::storage::new_blob_path(&shared);
    match super::storage::receive_body(body, &file, expected).await {
        Some((size, sha256)) if size == expected => {
            let etag = sha256[..32].to_owned();
            let mut fleet = shared.fleet.lock().expect("fleet lock");
            if let Some(session) = fleet.sessions.get_mut(&recording) {
                session.stored.insert(path, (size, etag.clone()));
            }
            let mut response = StatusCode::OK.into_response();
            if let Ok(value) = format!("\"{etag}\"").parse() {
                response.headers_mut().insert(header::ETAG, value);
            }
            response
        }
        _ => s3(
            StatusCode::BAD_REQUEST,
            "IncompleteBody",
            "The body does not have the declared size.",
        ),
    }
}

/// Percent-encodes like Python's `urllib.parse.quote(s, safe="/")`.
fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~/".contains(&byte) {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn unquote(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
            if let Ok(value) = u8::from_str_radix(hex, 16) {
                out.push(value);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_quoted_as_python_does_and_back() {
        assert_eq!(
            quote("fleet/demo/r1/a b/ü.mcap"),
            "fleet/demo/r1/a%20b/%C3%BC.mcap"
        );
        assert_eq!(
            unquote("/fleet/demo/r1/a%20b/%C3%BC.mcap"),
            "/fleet/demo/r1/a b/ü.mcap"
        );
        assert_eq!(unquote("%2"), "%2");
    }
}
