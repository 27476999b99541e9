//! The second origin: object storage behind presigned-looking URLs. It serves export files
//! and item bytes, and receives today's uploads (the legacy POST form, v2 PUTs and parts).
//!
//! It takes an export record and gives its `download_url`, the streamed file (the export's
//! JSON document padded with spaces to the exact `--export-bytes`, so gigabytes cost no
//! memory) and that file's sha256; it takes upload bodies and streams them into files under
//! the emulator's temporary directory, hashing as they arrive. It must never ask for the API
//! key (`gate` refuses any request that carries one). Must not: hold a whole file in memory.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};

use super::manual::{self, Blob};
use super::state::{ExportRecord, ExportStage, Shared};

/// Bytes produced per body frame.
const CHUNK: u64 = 256 * 1024;
/// The "secret" behind the fake signatures: they only need to be checkable, not secure.
const SIGNING_SECRET: &str = "avala-emulator-storage";

/// The presigned-looking URL of an export's file on the storage origin.
pub(crate) fn download_url(shared: &Shared, export: &ExportRecord) -> String {
    let path = format!("/exports/{}", export.file_name());
    let date = super::catalog::iso8601(export.created_at).replace(['-', ':'], "");
    format!(
        "{origin}{path}?X-Amz-Algorithm=AWS4-HMAC-SHA256\
         &X-Amz-Credential=EMULATOR%2F{day}%2Flocal%2Fs3%2Faws4_request\
         &X-Amz-Date={date}&X-Amz-Expires=3600&X-Amz-SignedHeaders=host\
         &X-Amz-Signature={signature}",
        origin = shared.storage_origin,
        day = &date[..8],
        signature = signature(&path),
    )
}

fn signature(path: &str) -> String {
    hex::encode(Sha256::digest(format!("{SIGNING_SECRET}\n{path}")))
}

/// `GET /exports/{file}` on the storage listener: the export's bytes, streamed with an exact
/// Content-Length, when the signature matches and the export is done.
pub(crate) async fn download(
    State(shared): State<Arc<Shared>>,
    Path(file): Path<String>,
    uri: Uri,
) -> Response {
    let signed = uri.query().unwrap_or("").split('&').any(|piece| {
        piece.strip_prefix("X-Amz-Signature=") == Some(&signature(uri.path().trim_end_matches('/')))
    });
    if !signed {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let id = file.split('.').next().unwrap_or_default();
    let export = shared
        .export(id, false)
        .filter(|e| e.file_name() == file && shared.export_stage(e) == ExportStage::Ready);
    let Some(export) = export else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        );
    };
    let mut response = Body::new(export_body(&export)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

/// An S3-style XML error, as object storage sends it.
pub(crate) fn s3_error(status: StatusCode, code: &str, message: &str) -> Response {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n\
         <Error><Code>{code}</Code><Message>{message}</Message></Error>"
    );
    (status, [(header::CONTENT_TYPE, "application/xml")], body).into_response()
}

/// The sha256 (lowercase hex) of the bytes `download` serves for an export: the same
/// chunks, hashed.
pub(crate) fn sha256(export: &ExportRecord) -> String {
    let mut hasher = Sha256::new();
    let mut pos = 0;
    while pos < export.bytes {
        let n = CHUNK.min(export.bytes - pos);
        hasher.update(export_chunk(&export.document, pos, n));
        pos += n;
    }
    hex::encode(hasher.finalize())
}

/// The body of an export file: the JSON document, then spaces up to the exact
/// `--export-bytes` (JSON allows trailing whitespace).
fn export_body(export: &ExportRecord) -> Generated<impl FnMut(u64, u64) -> Bytes + Send> {
    let document = export.document.clone();
    Generated::new(export.bytes, move |pos, n| export_chunk(&document, pos, n))
}

/// `n` bytes of an export file from `pos`.
fn export_chunk(document: &[u8], pos: u64, n: u64) -> Bytes {
    let doc = document.len() as u64;
    if pos < doc {
        let end = doc.min(pos + n);
        let mut buf = Vec::with_capacity(n as usize);
        buf.extend_from_slice(&document[pos as usize..end as usize]);
        buf.resize(n as usize, b' ');
        return Bytes::from(buf);
    }
    // The padding: one shared block of spaces, handed out without a copy (a fresh buffer
    // per chunk made the emulator, not the client, the busiest process of a big download
    // on a 2-CPU host).
    static SPACES: std::sync::OnceLock<Bytes> = std::sync::OnceLock::new();
    SPACES
        .get_or_init(|| Bytes::from(vec![b' '; CHUNK as usize]))
        .slice(..n as usize)
}

/// A streamed body of exactly `total` bytes, made [`CHUNK`] at a time by `make(pos, len)`,
/// with an exact size hint (export files, seeded items' bytes).
struct Generated<F> {
    make: F,
    total: u64,
    pos: u64,
}

impl<F: FnMut(u64, u64) -> Bytes> Generated<F> {
    fn new(total: u64, make: F) -> Self {
        Generated {
            make,
            total,
            pos: 0,
        }
    }
}

impl<F: FnMut(u64, u64) -> Bytes + Unpin> HttpBody for Generated<F> {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        if this.pos >= this.total {
            return Poll::Ready(None);
        }
        let n = CHUNK.min(this.total - this.pos);
        let chunk = (this.make)(this.pos, n);
        this.pos += n;
        Poll::Ready(Some(Ok(Frame::data(chunk))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.total - self.pos)
    }
}

// ---- uploads (current flavour) -----------------------------------------------------------

/// Why received bytes were refused.
enum Receive {
    Io(std::io::Error),
    TooLarge,
}

/// Streams a body into a new file, hashing it; refuses more than `limit` bytes.
async fn receive<S, E>(
    stream: S,
    path: &std::path::Path,
    limit: u64,
) -> Result<(u64, String), Receive>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    receive_into(stream, path, limit, true, |_| {}).await
}

/// [`receive`], hashing only when `hash` (the digest is empty otherwise); `tap` sees each
/// chunk before it is written.
async fn receive_into<S, E>(
    mut stream: S,
    path: &std::path::Path,
    limit: u64,
    hash: bool,
    mut tap: impl FnMut(&Bytes),
) -> Result<(u64, String), Receive>
where
    S: futures_util::Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt as _;
    use tokio::io::AsyncWriteExt as _;
    let mut file = tokio::fs::File::create(path).await.map_err(Receive::Io)?;
    let (mut hasher, mut size) = (Sha256::new(), 0u64);
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|e| Receive::Io(std::io::Error::other(e.to_string())))?;
        size += chunk.len() as u64;
        if size > limit {
            return Err(Receive::TooLarge);
        }
        if hash {
            hasher.update(&chunk);
        }
        tap(&chunk);
        file.write_all(&chunk).await.map_err(Receive::Io)?;
    }
    file.flush().await.map_err(Receive::Io)?;
    let digest = match hash {
        true => hex::encode(hasher.finalize()),
        false => String::new(),
    };
    Ok((size, digest))
}

/// Streams a request body into a new file, hashing it: size and sha256, or `None` when it
/// is longer than `limit` or cannot be read or written.
pub(crate) async fn receive_body(
    body: Body,
    path: &std::path::Path,
    limit: u64,
) -> Option<(u64, String)> {
    receive(body.into_data_stream(), path, limit).await.ok()
}

/// A new file for one receive of a part: a part sent again gets a file of its own, so bytes
/// being received never overwrite bytes a digest (or an item) reads.
fn blob_path(shared: &Shared, id: &str, part: u64) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.blob_dir.path().join(format!("{id}.{part}.{n}"))
}

/// A fresh file name for bytes that are not a presigned object (documented uploads).
pub(crate) fn new_blob_path(shared: &Shared) -> std::path::PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    shared.blob_dir.path().join(format!("item-{n}"))
}

fn size_error(declared: u64, got: u64) -> Response {
    let (code, message) = if got > declared {
        (
            "EntityTooLarge",
            "Your proposed upload exceeds the maximum allowed size",
        )
    } else {
        (
            "IncompleteBody",
            "You did not provide the number of bytes specified by the Content-Length HTTP header",
        )
    };
    s3_error(StatusCode::BAD_REQUEST, code, message)
}

/// `POST /bucket/` on the storage origin: the legacy presigned form (every field, then the
/// `file` part). Checks the policy's signature, its key and its exact size; answers 204.
pub(crate) async fn form_upload(
    State(shared): State<Arc<Shared>>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Response {
    let bad = |message: String| s3_error(StatusCode::BAD_REQUEST, "MalformedPOSTRequest", &message);
    let mut multipart = match multipart {
        Ok(m) => m,
        Err(e) => return bad(e.body_text()),
    };
    let mut fields = std::collections::HashMap::new();
    loop {
        let field = match multipart.next_field().await {
            Ok(Some(field)) => field,
            Ok(None) => return bad("The body has no part named \"file\".".into()),
            Err(e) => return bad(e.body_text()),
        };
        let name = field.name().unwrap_or_default().to_owned();
        if name != "file" {
            match field.text().await {
                Ok(text) => {
                    fields.insert(name.to_ascii_lowercase(), text);
                }
                Err(e) => return bad(e.body_text()),
            }
            continue;
        }
        let field_of = |key: &str| fields.get(key).map(String::as_str).unwrap_or_default();
        let Some(policy) = manual::read_policy(field_of("policy"), field_of("x-amz-signature"))
        else {
            return s3_error(
                StatusCode::FORBIDDEN,
                "SignatureDoesNotMatch",
                "The request signature we calculated does not match the signature you provided.",
            );
        };
        if field_of("key") != policy.key {
            return s3_error(
                StatusCode::FORBIDDEN,
                "AccessDenied",
                "Invalid according to Policy: Policy Condition failed: [\"eq\", \"$key\"]",
            );
        }
        let known = shared
            .manual
            .lock()
            .expect("manual lock")
            .objects
            .contains_key(&policy.object);
        if !known {
            return s3_error(StatusCode::FORBIDDEN, "AccessDenied", "Policy expired.");
        }
        let path = blob_path(&shared, &policy.object, 1);
        use futures_util::StreamExt as _;
        let received = receive(
            field.map(|c| c.map_err(|e| e.body_text())),
            &path,
            policy.size,
        )
        .await;
        return match received {
            Ok((size, sha256)) if size == policy.size => {
                store_part(
                    &shared,
                    &policy.object,
                    1,
                    Blob { path, size, sha256 },
                    true,
                );
                StatusCode::NO_CONTENT.into_response()
            }
            Ok((size, _)) => size_error(policy.size, size),
            Err(Receive::TooLarge) => size_error(policy.size, policy.size + 1),
            Err(Receive::Io(e)) => bad(e.to_string()),
        };
    }
}

/// Records a received part; `whole` marks a form or PUT object complete at once (a PUT still
/// needs its `complete` call to be part of a batch, as today's API wants).
fn store_part(shared: &Shared, id: &str, number: u64, blob: Blob, whole: bool) {
    let mut manual = shared.manual.lock().expect("manual lock");
    let Some(object) = manual.objects.get_mut(id) else {
        return;
    };
    if whole && object.method == manual::Method::Form {
        object.sha256 = Some(blob.sha256.clone());
    }
    let replaced = object.parts.insert(number, blob);
    if !matches!(object.method, manual::Method::Multipart { .. }) {
        return;
    }
    if replaced.is_none() {
        // A first arrival: the digest has not read this part (it only reads stored parts).
        return;
    }
    // A part sent again: each receive has a file of its own (an item made of the old one
    // keeps serving it), so a digest reading the old bytes reads them whole. The running digest starts over if it has read the old bytes or may be reading
    // them now (an advance in progress stops at its next part: the digest is no longer the
    // object's). Only a re-send does this: a busy digest is the usual state while parts
    // arrive, and restarting it for each would hash the object again and again.
    let stale = manual.digests.get(id).is_some_and(|d| match d.try_lock() {
        Ok(d) => d.next > number || (d.next == number && (d.at > 0 || d.owner.is_some())),
        Err(_) => true,
    });
    if stale {
        manual.digests.remove(id);
    }
}

/// Hashes the parts of a multipart object that follow the ones already hashed, in order,
/// as far as they have arrived (blocking: run it on a blocking thread). Gives the digest
/// of the whole object once every part is in.
pub(crate) fn advance_digest(shared: &Shared, id: &str) -> std::io::Result<Option<String>> {
    let shared_digest = {
        let mut manual = shared.manual.lock().expect("manual lock");
        manual.digests.entry(id.to_owned()).or_default().clone()
    };
    // One thread hashes an object at a time; the others wait and then find less to do.
    let mut digest = shared_digest.lock().expect("digest lock");
    loop {
        let (path, count) = {
            let manual = shared.manual.lock().expect("manual lock");
            // Started over (a part was sent again): this digest is no longer the object's.
            let current = manual
                .digests
                .get(id)
                .is_some_and(|d| Arc::ptr_eq(d, &shared_digest));
            let Some(object) = manual.objects.get(id).filter(|_| current) else {
                return Ok(None);
            };
            let number = digest.next;
            // A part being hashed as it arrives is that receive's to finish.
            let ready = object
                .parts
                .get(&number)
                .filter(|b| Some(b.size) == object.part_len(number) && digest.owner.is_none());
            (ready.map(|b| b.path.clone()), object.part_count())
        };
        let Some(path) = path else {
            let done = digest.next > count;
            return Ok(done.then(|| hex::encode(digest.hasher.clone().finalize())));
        };
        let from = digest.at;
        hash_into(&mut digest.hasher, &path, from)?;
        digest.next += 1;
        digest.at = 0;
    }
}

/// Hashes a file from byte `from` on.
fn hash_into(hasher: &mut Sha256, path: &std::path::Path, from: u64) -> std::io::Result<()> {
    use std::io::{Read as _, Seek as _};
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(from))?;
    let mut buf = vec![0u8; 1024 * 1024];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            return Ok(());
        }
        hasher.update(&buf[..n]);
    }
}

/// `PUT /bucket/{id}?…` on the storage origin: a v2 object or one part of it. The
/// Content-Length must equal the presigned size; a finished object answers 412.
pub(crate) async fn put_upload(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: axum::http::HeaderMap,
    body: Body,
) -> Response {
    let query = uri.query().unwrap_or("");
    let value_of = |key: &str| {
        query
            .split('&')
            .find_map(|p| p.strip_prefix(key).and_then(|v| v.strip_prefix('=')))
    };
    let part: Option<u64> = value_of("partNumber").and_then(|n| n.parse().ok());
    if value_of("X-Amz-Signature") != Some(manual::sign(&manual::put_target(&id, part)).as_str()) {
        return s3_error(
            StatusCode::FORBIDDEN,
            "SignatureDoesNotMatch",
            "The request signature we calculated does not match the signature you provided.",
        );
    }
    let object = shared
        .manual
        .lock()
        .expect("manual lock")
        .objects
        .get(&id)
        .cloned();
    let Some(object) = object else {
        return s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchUpload",
            "The specified upload does not exist.",
        );
    };
    let number = part.unwrap_or(1);
    let Some(expected) = object.part_len(number) else {
        return s3_error(
            StatusCode::BAD_REQUEST,
            "InvalidPart",
            "No such part in this upload.",
        );
    };
    let stored = object.parts.get(&1).is_some_and(|b| b.size == object.size);
    if part.is_none() && (object.complete() || stored) {
        return s3_error(
            StatusCode::PRECONDITION_FAILED,
            "PreconditionFailed",
            "At least one of the pre-conditions you specified did not hold",
        );
    }
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        None => {
            return s3_error(
                StatusCode::LENGTH_REQUIRED,
                "MissingContentLength",
                "You must provide the Content-Length HTTP header.",
            )
        }
        Some(n) if n != expected => return size_error(expected, n),
        Some(_) => {}
    }
    let (path, received) = receive_put(&shared, &object, number, expected, body).await;
    match received {
        Ok((size, sha256)) if size == expected => {
            stored_part(&shared, &id, part, Blob { path, size, sha256 })
        }
        Ok((size, _)) => size_error(expected, size),
        Err(Receive::TooLarge) => size_error(expected, expected + 1),
        Err(Receive::Io(e)) => s3_error(StatusCode::BAD_REQUEST, "IncompleteBody", &e.to_string()),
    }
}

/// Most bytes of a part kept in memory while they wait for their turn in the digest.
const INLINE_AHEAD: usize = 8 * 1024 * 1024;

/// A part hashed into its object's digest as it arrives, when its turn comes (the parts
/// before it hashed): the bytes that come before then are kept (up to [`INLINE_AHEAD`]),
/// so that a part need not be read back from its file; past that, or when the receive
/// fails, it gives up and `advance_digest` reads the rest of the part from the file.
struct Inline {
    digest: Arc<std::sync::Mutex<manual::OrderedDigest>>,
    shared: Arc<Shared>,
    id: String,
    number: u64,
    len: u64,
    receive: u64,
    /// Bytes of the part hashed by this receive.
    hashed: u64,
    waiting: Vec<Bytes>,
    waiting_bytes: usize,
    live: bool,
}

impl Inline {
    fn new(shared: &Arc<Shared>, id: &str, number: u64, len: u64) -> Self {
        static RECEIVES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let digest = {
            let mut manual = shared.manual.lock().expect("manual lock");
            manual.digests.entry(id.to_owned()).or_default().clone()
        };
        Inline {
            digest,
            shared: shared.clone(),
            id: id.to_owned(),
            number,
            len,
            receive: RECEIVES.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
            hashed: 0,
            waiting: Vec::new(),
            waiting_bytes: 0,
            live: true,
        }
    }

    /// A chunk (or, with `None`, nothing new: try the waiting ones again).
    fn feed(&mut self, chunk: Option<&Bytes>) {
        if !self.live {
            return;
        }
        if let Some(chunk) = chunk {
            self.waiting_bytes += chunk.len();
            self.waiting.push(chunk.clone());
        }
        // The digest is busy (reading earlier parts back): try again with the next chunk.
        let Ok(mut d) = self.digest.try_lock() else {
            return self.check_room();
        };
        let turn = d.next == self.number
            && d.at == self.hashed
            && d.owner.is_none_or(|o| o == self.receive);
        if !turn {
            drop(d);
            return self.check_room();
        }
        d.owner = Some(self.receive);
        for chunk in self.waiting.drain(..) {
            d.hasher.update(&chunk);
            self.hashed += chunk.len() as u64;
        }
        self.waiting_bytes = 0;
        d.at = self.hashed;
        if self.hashed == self.len {
            (d.next, d.at, d.owner) = (d.next + 1, 0, None);
        }
    }

    fn check_room(&mut self) {
        if self.waiting_bytes > INLINE_AHEAD {
            self.give_up();
        }
    }

    /// Stops hashing; the digest reads the rest of the part back (from `at`).
    fn give_up(&mut self) {
        self.live = false;
        self.waiting = Vec::new();
        let mut d = self.digest.lock().expect("digest lock");
        if d.owner == Some(self.receive) {
            d.owner = None;
        }
    }

    /// The body ended (`whole`: every byte came). A failed receive that hashed some bytes
    /// leaves the digest with bytes that were not stored: it starts over — also when this
    /// receive had given up before it failed (the digest would read the rest of the part
    /// from another receive's file, after bytes of this one).
    fn end(&mut self, whole: bool) {
        if whole {
            self.feed(None);
        }
        if !whole && self.hashed > 0 {
            let mut manual = self.shared.manual.lock().expect("manual lock");
            let current = manual
                .digests
                .get(&self.id)
                .is_some_and(|d| Arc::ptr_eq(d, &self.digest));
            if current {
                manual.digests.remove(&self.id);
            }
        }
        if self.live {
            self.give_up();
        }
    }
}

/// Receives a PUT's body into a new file: a whole object is hashed as it comes; a part of a
/// multipart object goes into the object's digest, as it comes when its turn comes (see
/// [`Inline`]), else from its file by `advance_digest`.
async fn receive_put(
    shared: &Arc<Shared>,
    object: &manual::Object,
    number: u64,
    expected: u64,
    body: Body,
) -> (std::path::PathBuf, Result<(u64, String), Receive>) {
    let path = blob_path(shared, &object.id, number);
    let whole = !matches!(object.method, manual::Method::Multipart { .. });
    // Only a part's first arrival: a part sent again restarts the digest (`store_part`).
    let mut inline = (!whole && !object.parts.contains_key(&number))
        .then(|| Inline::new(shared, &object.id, number, expected));
    let tap = |chunk: &Bytes| {
        if let Some(inline) = inline.as_mut() {
            inline.feed(Some(chunk));
        }
    };
    let received = receive_into(body.into_data_stream(), &path, expected, whole, tap).await;
    if let Some(inline) = inline.as_mut() {
        inline.end(matches!(received, Ok((size, _)) if size == expected));
    }
    (path, received)
}

/// Records a PUT's bytes and answers 200 with an ETag; a multipart object's digest moves on
/// in the background, off this request's path.
fn stored_part(shared: &Arc<Shared>, id: &str, part: Option<u64>, blob: Blob) -> Response {
    let number = part.unwrap_or(1);
    // Parts of a multipart object are received without a digest (see `put_upload`).
    let multipart = blob.sha256.is_empty();
    let etag = match multipart {
        false => format!("\"{}\"", &blob.sha256[..32]),
        true => format!(
            "\"{}\"",
            &manual::sign(&format!("{id} {number} {}", blob.size))[..32]
        ),
    };
    store_part(shared, id, number, blob, false);
    if multipart {
        let (shared, id) = (shared.clone(), id.to_owned());
        tokio::task::spawn_blocking(move || advance_digest(&shared, &id));
    }
    let mut response = StatusCode::OK.into_response();
    if let Ok(value) = HeaderValue::try_from(etag) {
        response.headers_mut().insert(header::ETAG, value);
    }
    response
}

/// The sha256 of the concatenation of some files.
pub(crate) fn sha256_of_files(paths: &[std::path::PathBuf]) -> std::io::Result<String> {
    use std::io::Read as _;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK as usize];
    for path in paths {
        let mut file = std::fs::File::open(path)?;
        loop {
            let n = file.read(&mut buf)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A body streaming files one after the other.
fn files_body(paths: Vec<std::path::PathBuf>) -> Body {
    use tokio::io::AsyncReadExt as _;
    let stream = futures_util::stream::unfold(
        (paths.into_iter(), None::<tokio::fs::File>),
        |(mut rest, mut file)| async move {
            loop {
                if file.is_none() {
                    let path = rest.next()?;
                    match tokio::fs::File::open(&path).await {
                        Ok(f) => file = Some(f),
                        Err(e) => return Some((Err(e), (rest, None))),
                    }
                }
                let mut buf = vec![0u8; CHUNK as usize];
                match file.as_mut()?.read(&mut buf).await {
                    Ok(0) => file = None,
                    Ok(n) => {
                        buf.truncate(n);
                        return Some((Ok(Bytes::from(buf)), (rest, file)));
                    }
                    Err(e) => return Some((Err(e), (rest, None))),
                }
            }
        },
    );
    Body::from_stream(stream)
}

/// The bytes of a seeded item: its id and a newline, repeated to `size`.
fn seeded_item_body(id: &str, size: u64) -> Generated<impl FnMut(u64, u64) -> Bytes + Send> {
    let pattern = format!("{id}\n").into_bytes();
    let width = pattern.len() as u64;
    Generated::new(size, move |pos, n| {
        (pos..pos + n)
            .map(|i| pattern[(i % width) as usize])
            .collect()
    })
}

/// `GET /items/{dataset}/{item}` on the storage origin: the bytes behind an item's `url`
/// (what was uploaded, or generated bytes of the seeded size).
pub(crate) async fn item_bytes(
    State(shared): State<Arc<Shared>>,
    Path((dataset, item)): Path<(String, String)>,
) -> Response {
    let missing = || {
        s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    };
    let Some(dataset) = shared.find_dataset(&dataset) else {
        return missing();
    };
    let Some(record) = shared.find_item(&dataset, &item) else {
        return missing();
    };
    let stored = shared
        .manual
        .lock()
        .expect("manual lock")
        .item_files
        .get(&record.id)
        .cloned();
    let mut response = match stored {
        Some((size, paths)) => {
            let mut response = files_body(paths).into_response();
            response
                .headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from(size));
            response
        }
        None => {
            let size = record.metadata["size"].as_u64().unwrap_or(0);
            if record.metadata.get("sha256").is_some() {
                return missing();
            }
            Body::new(seeded_item_body(&record.id, size)).into_response()
        }
    };
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/octet-stream"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    fn export(document: &str, bytes: u64) -> ExportRecord {
        ExportRecord {
            id: "exp_0001".into(),
            spec: crate::emulator::state::ExportSpec {
                name: None,
                format: "json".into(),
                projects: vec![],
                datasets: vec![],
                slices: vec![],
            },
            created_at: 0,
            updated_at: 0,
            polls: 0,
            bytes,
            document: Arc::new(document.as_bytes().to_vec()),
        }
    }

    fn shared_with_multipart(id: &str, size: u64) -> Arc<Shared> {
        let shared = Arc::new(Shared::new(
            crate::emulator::EmulatorOptions::default(),
            crate::emulator::catalog::Catalog::generated(0, 1, 0),
            "http://127.0.0.1:1".into(),
            "http://127.0.0.1:2".into(),
            crate::emulator::faults::FaultBook::default(),
        ));
        let object = manual::Object {
            id: id.into(),
            batch: "b".into(),
            path: "big.bin".into(),
            size,
            method: manual::Method::Multipart {
                part_size: size / 2,
                part_count: 2,
            },
            parts: Default::default(),
            sha256: None,
            finalized: false,
        };
        shared
            .manual
            .lock()
            .unwrap()
            .objects
            .insert(id.into(), object);
        shared
    }

    /// A receive that hashed part of its part, gave up (its bytes came faster than the
    /// digest could take them), then failed: the digest holds bytes that were never stored,
    /// so it is dropped and starts over, whether or not the receive still owned it.
    #[test]
    fn a_failed_receive_that_hashed_bytes_restarts_the_digest_even_after_giving_up() {
        for gave_up in [false, true] {
            let shared = shared_with_multipart("obj", 8);
            let mut inline = Inline::new(&shared, "obj", 1, 4);
            inline.feed(Some(&Bytes::from_static(b"ab")));
            assert_eq!(inline.hashed, 2, "part 1's turn: hashed as it came");
            if gave_up {
                inline.give_up();
            }
            inline.end(false);
            let manual = shared.manual.lock().unwrap();
            assert!(
                !manual.digests.contains_key("obj"),
                "gave up first: {gave_up}: the digest of bytes not stored was kept"
            );
        }
        // A receive that hashed nothing leaves the digest alone.
        let shared = shared_with_multipart("obj", 8);
        let mut inline = Inline::new(&shared, "obj", 2, 4);
        inline.feed(Some(&Bytes::from_static(b"cd")));
        inline.end(false);
        assert!(shared.manual.lock().unwrap().digests.contains_key("obj"));
    }

    #[test]
    fn a_seeded_item_is_its_id_repeated_to_its_size_across_chunks() {
        use futures_util::FutureExt as _;
        for size in [0, 5, CHUNK + 3, 2 * CHUNK] {
            let body = Body::new(seeded_item_body("it_7", size));
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .now_or_never()
                .expect("ready")
                .expect("infallible");
            let want: Vec<u8> = b"it_7\n"
                .iter()
                .copied()
                .cycle()
                .take(size as usize)
                .collect();
            assert_eq!(bytes.as_ref(), want.as_slice(), "size {size}");
        }
    }

    #[test]
    fn export_files_are_the_document_padded_to_the_exact_size() {
        use futures_util::FutureExt as _;
        for total in [2, 3, 1000, CHUNK + 17, 3 * CHUNK] {
            let record = export("{\"a\": 1}\n", total.max(9));
            let body = Body::new(export_body(&record));
            let bytes = axum::body::to_bytes(body, usize::MAX)
                .now_or_never()
                .expect("ready")
                .expect("infallible");
            assert_eq!(bytes.len() as u64, record.bytes);
            assert_eq!(hex::encode(Sha256::digest(&bytes)), sha256(&record));
            let value: serde_json::Value = serde_json::from_slice(&bytes).expect("valid JSON");
            assert_eq!(value["a"], 1);
        }
    }
}
