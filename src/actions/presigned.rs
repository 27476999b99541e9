//! `datasets.upload`: today's upload flow, as Avala's SDKs do it. Each file is presigned
//! (`POST /datasets/manual-upload/file-upload-url/`), sent to object storage as the
//! answer says — the legacy POST form, a v2 PUT, or a v2 multipart session with signed
//! parts — and completed; then the upload is finalized into a dataset
//! (`POST /datasets/manual-upload/`) and waited for until `created`.
//!
//! Takes: rendered inputs. Gives: the dataset and each file's path, key, size and sha256.
//! Must not: read a whole file (or part) into memory, send the API key to storage, or
//! have more than 10 uploads in flight (the API's published limit).

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};

use super::datasets::{needs_current, wait_created, NewDataset};
use super::sent_hash::SentHash;
use super::upload::{content_type, hash_file, resolve_files, ALLOW_EMPTY, FILES};
use super::{Action, ActionError, ActionPlan, ActionResult, Inputs, RunCtx};
use crate::api::request::{Body, HttpRequest, Method, Part, Seen};
use crate::api::{ApiError, Endpoint, ErrorKind};
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty};
use crate::template::{Later, Text};

/// The API's published limit of concurrent uploads.
const MAX_CONCURRENT: u64 = 10;

const NAME: Field = req("name", Ty::Str, "Name of the dataset the files become.");
const SLUG: Field = opt(
    "slug",
    Ty::Str,
    "Its URL name (default: the name in lower case, runs of other characters as `-`).",
);
const CONCURRENCY: Field = dflt(
    "concurrency",
    Ty::Int { min: 1, max: 10 },
    "8",
    "Uploads in flight at once (the API allows 10).",
);
const PROTOCOL: Field = dflt(
    "protocol",
    Ty::Enum(&["2", "legacy"]),
    "2",
    "Upload protocol: `2` (PUT, multipart sessions for large files) or `legacy` (POST form).",
);

/// `datasets.upload`.
pub struct DatasetsUpload;

/// `datasets.upload`'s inputs, typed.
struct UploadInputs {
    dataset: NewDataset,
    files: Vec<Text>,
    concurrency: usize,
    v2: bool,
    allow_empty: bool,
}

impl UploadInputs {
    fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        let protocol = inputs.text(&PROTOCOL)?.map(|t| t.shown());
        let files = inputs.texts(&FILES)?;
        super::check_placements(inputs, &FILES, &files)?;
        Ok(UploadInputs {
            dataset: NewDataset::read(inputs, &NAME, &SLUG)?,
            files,
            concurrency: inputs
                .count(&CONCURRENCY)?
                .unwrap_or(8)
                .clamp(1, MAX_CONCURRENT) as usize,
            v2: protocol.as_deref() != Some("legacy"),
            allow_empty: inputs.flag(&ALLOW_EMPTY)?,
        })
    }

    fn resolve(&self) -> Result<Vec<(PathBuf, String)>, ActionError> {
        let patterns: Vec<String> = self.files.iter().map(Text::shown).collect();
        let files = resolve_files(&patterns, self.allow_empty)?;
        Ok(with_keys(files))
    }

    fn presign(
        &self,
        endpoint: &Endpoint,
        key: &str,
        size: Option<u64>,
        session: &str,
    ) -> HttpRequest {
        let mut body = json!({
            "dataset_name": self.dataset.name.shown(),
            "file_path_in_dataset": key,
            "content_length": size,
        });
        if self.v2 {
            body["upload_protocol_version"] = json!(2);
            body["dataset_upload_uid"] = json!(session);
        }
        HttpRequest::to(
            Method::Post,
            endpoint.at("/datasets/manual-upload/file-upload-url", &[]),
        )
        .with_body(Body::Json(body))
    }

    fn finalize(&self, endpoint: &Endpoint, session: &str) -> HttpRequest {
        let mut body = self.dataset.body();
        if self.v2 {
            body.insert("dataset_upload_uid".into(), json!(session));
        }
        HttpRequest::to(Method::Post, endpoint.at("/datasets/manual-upload", &[]))
            .with_body(Body::Json(Value::Object(body)))
    }
}

/// Each file with its path in the dataset: relative to the folder all of them share.
fn with_keys(files: Vec<PathBuf>) -> Vec<(PathBuf, String)> {
    let common: Option<PathBuf> = files
        .iter()
        .map(|p| p.parent().unwrap_or(Path::new("")).to_path_buf())
        .reduce(|a, b| {
            a.ancestors()
                .find(|anc| b.starts_with(anc))
                .unwrap_or(Path::new(""))
                .to_path_buf()
        });
    files
        .into_iter()
        .map(|p| {
            let relative = common
                .as_deref()
                .and_then(|c| p.strip_prefix(c).ok())
                .unwrap_or(&p);
            let key = key_text(relative).replace('\\', "/");
            (p, key)
        })
        .collect()
}

/// A path as a key in the dataset: its text, with bytes that are not UTF-8 (names are
/// bytes on Unix) percent-encoded, so two such names never become the same key.
fn key_text(path: &Path) -> String {
    #[cfg(unix)]
    {
        use std::os::unix::ffi::OsStrExt as _;
        let mut out = String::new();
        for chunk in path.as_os_str().as_bytes().utf8_chunks() {
            out.push_str(chunk.valid());
            for b in chunk.invalid() {
                out.push_str(&format!("%{b:02X}"));
            }
        }
        out
    }
    #[cfg(not(unix))]
    {
        path.to_string_lossy().into_owned()
    }
}

impl Action for DatasetsUpload {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "datasets.upload",
        summary: "Today's upload: presign each file, send it to storage, finalize into a new dataset, wait until created.",
        inputs: &[
            NAME,
            SLUG,
            FILES,
            super::datasets::DATA_TYPE,
            super::datasets::VISIBILITY,
            CONCURRENCY,
            PROTOCOL,
            ALLOW_EMPTY,
            super::datasets::WAIT,
            super::datasets::WAIT_TIMEOUT,
        ],
        one_of: &[],
        outputs: &[
            ("dataset", "The dataset, as the server describes it."),
            ("id", "Its id."),
            ("files", "List of `{path, key, bytes, sha256, stored}` (`stored: false`: it was already there)."),
            ("count", "Files."),
            ("bytes", "Bytes sent."),
        ],
        changes_server: true,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        needs_current(endpoint, "datasets.upload", "the presigned upload flow")?;
        plan(&UploadInputs::read(inputs)?, endpoint)
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        needs_current(
            ctx.client.endpoint(),
            "datasets.upload",
            "the presigned upload flow",
        )?;
        run(UploadInputs::read(inputs)?, ctx).await
    }
}

fn plan(inputs: &UploadInputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
    let session = "<a new upload id>";
    let mut requests = vec![HttpRequest::to(
        Method::Get,
        endpoint.at("/datasets/manual-upload/quota", &[]),
    )];
    let unknown = inputs.files.iter().any(|f| f.known().is_none());
    let mut notes = vec![format!(
        "each file: presign, then send it to the storage URL of the answer (without the API key), {} at a time",
        inputs.concurrency
    )];
    if unknown {
        let shown: Vec<String> = inputs.files.iter().map(Text::shown).collect();
        requests.push(inputs.presign(endpoint, &shown.join(", "), None, session));
        notes.push("the files are known after run: the presign is shown once".into());
    } else {
        for (path, key) in inputs.resolve()? {
            let size = std::fs::metadata(&path).map(|m| m.len()).ok();
            requests.push(inputs.presign(endpoint, &key, size, session));
        }
    }
    requests.push(inputs.finalize(endpoint, session));
    if inputs.dataset.wait {
        let uid = Text::Later(Later::whole("the new dataset's uid"));
        requests.push(HttpRequest::to(
            Method::Get,
            endpoint.at("/datasets/{}", &[&uid]),
        ));
    }
    Ok(ActionPlan {
        requests,
        repeats: inputs.dataset.repeats(),
        notes,
    })
}

/// A client-chosen id for a v2 upload session.
fn new_session() -> String {
    format!(
        "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
        fastrand::u32(..),
        fastrand::u16(..),
        fastrand::u16(..0x1000),
        fastrand::u16(0x8000..0xc000),
        fastrand::u64(..1 << 48)
    )
}

async fn run(inputs: UploadInputs, ctx: &RunCtx<'_>) -> ActionResult {
    let files = inputs.resolve()?;
    // A resumed attempt continues the earlier attempt's session: the server answers
    // `complete: true` for the files it already holds, and the finalize covers them all.
    let resumed = ctx.journal.session();
    let session = resumed.clone().unwrap_or_else(new_session);
    ctx.journal.session_started(&session);
    let sizes: Vec<u64> = files
        .iter()
        .map(|(p, _)| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0))
        .collect();
    check_quota(ctx, sizes.iter().sum()).await?;
    let label = format!(
        "upload {} file{}",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    let planned: u64 = sizes.iter().sum();
    let mut uploads = Vec::with_capacity(files.len());
    for (path, key) in &files {
        uploads.push(upload_one(
            &inputs,
            ctx,
            path,
            key,
            &session,
            resumed.is_some(),
        ));
    }
    let mut results = stream::iter(uploads).buffered(inputs.concurrency);
    let (mut out, mut total, mut throttle) = (
        Vec::with_capacity(files.len()),
        0u64,
        super::Throttle::new(),
    );
    while let Some(r) = results.next().await {
        let v = r?;
        total += v["bytes"].as_u64().unwrap_or(0);
        out.push(v);
        if throttle.ready(out.len() == files.len()) {
            (ctx.progress)(&label, total, Some(planned.max(total)));
        }
    }
    let endpoint = ctx.client.endpoint();
    // An earlier attempt finalized this session and was cut short: re-attach to its dataset.
    let created = match ctx.journal.dataset().filter(|_| resumed.is_some()) {
        Some(uid) => super::datasets::get_dataset(&uid, ctx).await?,
        None => {
            let created = super::fetch_json(ctx, &inputs.finalize(endpoint, &session)).await?;
            if let Some(uid) = super::datasets::dataset_uid(&created) {
                ctx.journal.dataset_created(uid);
            }
            created
        }
    };
    let dataset = if inputs.dataset.wait {
        wait_created(&created, inputs.dataset.timeout.unwrap_or_default(), ctx).await?
    } else {
        created
    };
    Ok(json!({
        "id": dataset.get("id").cloned().unwrap_or(Value::Null),
        "dataset": dataset,
        "files": out,
        "count": files.len(),
        "bytes": total,
    })
    .into())
}

/// Refuses before sending anything when the files would exceed the upload quota.
async fn check_quota(ctx: &RunCtx<'_>, bytes: u64) -> Result<(), ActionError> {
    let req = HttpRequest::to(
        Method::Get,
        ctx.client
            .endpoint()
            .at("/datasets/manual-upload/quota", &[]),
    );
    let quota = super::fetch_json(ctx, &req).await?;
    let (used, limit) = (quota["used"].as_u64(), quota["limit"].as_u64());
    if let (Some(used), Some(limit)) = (used, limit) {
        if used.saturating_add(bytes) > limit {
            return Err(ActionError::Other(format!(
                "the upload quota would be exceeded: {bytes} bytes to upload, {used} of {limit} bytes used"
            )));
        }
    }
    Ok(())
}

/// One file: presign, store, complete; a fresh presign for each attempt.
async fn upload_one(
    inputs: &UploadInputs,
    ctx: &RunCtx<'_>,
    path: &Path,
    key: &str,
    session: &str,
    resumed: bool,
) -> Result<Value, ActionError> {
    let shown = path.display().to_string();
    // A resumed session needs the digest first (to skip what is stored); a new one hashes
    // the chunks it sends as they are read (the file is read once), and at the end reads
    // whatever was not sent (parts already stored, a legacy form body).
    let (size, known) = if resumed {
        let (size, sha256) = hash_file(path, &ctx.call.cancel).await?;
        if let Some(entry) = ctx.journal.stored(&shown, &sha256) {
            return Ok(entry);
        }
        (size, Some(sha256))
    } else {
        let size = std::fs::metadata(path)
            .map_err(|e| ActionError::Other(format!("cannot read {}: {e}", path.display())))?
            .len();
        (size, None)
    };
    let sent = SentHash::new();
    let seen = match known {
        Some(_) => Seen::default(),
        None => sent.seen(),
    };
    let source = Source {
        path,
        size,
        seen,
        hash: &sent,
    };
    // If this upload is dropped before `storing` ends (a step's timeout, another file's
    // failure), the hash must stop waiting for chunks, or its blocking thread waits for ever
    // and the process cannot exit. (After success the digest is done: a no-op.)
    let _stop = StopTapping(&sent);
    let storing = async {
        let stored = store_retrying(inputs, ctx, &source, key, session).await;
        sent.stop_tapping(stored.is_err());
        stored
    };
    let hashing = async {
        match &known {
            Some(sha256) => Ok(sha256.clone()),
            None => sent.digest(path, size, &ctx.call.cancel).await,
        }
    };
    let (stored, sha256) = tokio::join!(storing, hashing);
    let (stored, sha256) = (stored?, sha256?);
    let entry =
        json!({"path": shown, "key": key, "bytes": size, "sha256": sha256, "stored": stored});
    ctx.journal.file_stored(&shown, size, &sha256, &entry);
    Ok(entry)
}

/// Stops the sent-bytes hash waiting for chunks when dropped.
struct StopTapping<'a>(&'a SentHash);

impl Drop for StopTapping<'_> {
    fn drop(&mut self) {
        self.0.stop_tapping(true);
    }
}

/// The file an upload sends: its size when the upload began, and what sees the chunks of
/// its bodies as they are read (its running sha256).
struct Source<'a> {
    path: &'a Path,
    size: u64,
    seen: Seen,
    /// The running sha256 behind `seen`.
    hash: &'a SentHash,
}

impl Source<'_> {
    /// No chunk of this file will be seen: the hash reads the file itself from now on.
    fn untapped(&self) {
        self.hash.stop_tapping(false);
    }

    /// A body of bytes `offset..offset+len` of the file.
    fn body(&self, offset: u64, len: u64) -> Body {
        Body::File {
            path: self.path.to_path_buf(),
            offset,
            len: Some(len),
            seen: self.seen.clone(),
        }
    }
}

/// Presign, store and complete one file, with a fresh presign for each attempt.
async fn store_retrying(
    inputs: &UploadInputs,
    ctx: &RunCtx<'_>,
    source: &Source<'_>,
    key: &str,
    session: &str,
) -> Result<bool, ActionError> {
    let path = source.path;
    let max_attempts = ctx.call.retry.max_attempts.max(1);
    let mut attempt = 0;
    let stored = loop {
        attempt += 1;
        match store(inputs, ctx, source, key, session).await {
            Ok(stored) => break stored,
            Err(e) if attempt < max_attempts && retry_with_fresh_presign(&e) => {
                let wait = crate::api::retry::backoff(&ctx.call.retry, attempt);
                tracing::warn!(step = %ctx.call.step, "uploading {}: {e}; presigning again in {:.1}s (attempt {} of {max_attempts})", path.display(), wait.as_secs_f64(), attempt + 1);
                let waiting = std::time::Instant::now();
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.call.cancel.cancelled() => return Err(ActionError::Interrupted(format!("while uploading {}", path.display()))),
                }
                ctx.call.waited(crate::api::WaitCause::Backoff, waiting);
            }
            Err(e) => return Err(quota_or(e, path)),
        }
    };
    Ok(stored)
}

/// 408 and 5xx (from the API or from storage) are worth a fresh presign. A 429 is not:
/// the client has already waited and retried it as often as the step allows.
fn retry_with_fresh_presign(e: &ActionError) -> bool {
    matches!(e, ActionError::Api(ApiError { kind: ErrorKind::Status, status: Some(s), .. }) if *s == 408 || *s >= 500)
}

/// A 413 from the presign is the quota: say so.
fn quota_or(e: ActionError, path: &Path) -> ActionError {
    match e {
        ActionError::Api(mut api) if api.status == Some(413) => {
            api.message = format!(
                "the upload quota is exceeded ({}); {} was not stored",
                api.message,
                path.display()
            );
            ActionError::Api(api)
        }
        other => other,
    }
}

/// Sends one file as the presign answer says. `Ok(false)`: it was already stored.
async fn store(
    inputs: &UploadInputs,
    ctx: &RunCtx<'_>,
    source: &Source<'_>,
    key: &str,
    session: &str,
) -> Result<bool, ActionError> {
    let (path, size) = (source.path, source.size);
    let presign = inputs.presign(ctx.client.endpoint(), key, Some(size), session);
    let answer = super::fetch_json(ctx, &presign).await?;
    if answer["complete"] == json!(true) {
        return Ok(false);
    }
    let upload_uid = answer["upload_uid"].as_str().map(str::to_string);
    let stored = match answer["method"].as_str() {
        Some("POST") => {
            // The form's body is not read in chunks: the hash reads the file beside it.
            source.untapped();
            post_form(ctx, &answer, path).await?
        }
        Some("PUT") => put_file(ctx, &answer, source).await?,
        Some("MULTIPART") => put_parts(inputs, ctx, &answer, source).await?,
        other => {
            return Err(ActionError::Other(format!(
                "POST /datasets/manual-upload/file-upload-url/: unknown upload method {}",
                other.map_or("(none)".to_string(), |m| format!("`{m}`"))
            )))
        }
    };
    if let Some(uid) = upload_uid {
        complete(ctx, &uid).await?;
    }
    Ok(stored)
}

/// The URL and headers of a storage request, from the server's answer.
fn storage_request(method: Method, answer: &Value) -> Result<HttpRequest, ActionError> {
    let url = answer["url"]
        .as_str()
        .ok_or_else(|| ActionError::Other("the presign answer has no storage `url`".into()))?;
    let headers = answer["headers"]
        .as_object()
        .into_iter()
        .flatten()
        .filter(|(k, _)| {
            !k.eq_ignore_ascii_case("content-length")
                && !k.eq_ignore_ascii_case(crate::api::KEY_HEADER)
        })
        .map(|(k, v)| (k.clone(), crate::api::request::query_text(v)))
        .collect();
    Ok(HttpRequest::new(method, url.to_string()).to_storage(headers))
}

/// The legacy POST form: every field, then the file as the part `file`.
async fn post_form(ctx: &RunCtx<'_>, answer: &Value, path: &Path) -> Result<bool, ActionError> {
    let mut parts: Vec<Part> = answer["fields"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| Part::Text {
            field: k.clone(),
            value: crate::api::request::query_text(v),
        })
        .collect();
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    let size = std::fs::metadata(path).map(|m| m.len()).ok();
    parts.push(Part::File {
        field: "file".into(),
        path: path.to_path_buf(),
        content_type: answer["fields"]["Content-Type"]
            .as_str()
            .unwrap_or(content_type(&file_name))
            .to_string(),
        file_name,
        size,
    });
    let req = HttpRequest {
        body: Body::Multipart(parts),
        ..storage_request(Method::Post, answer)?
    };
    ctx.client.send_json(&req, &ctx.call, None).await?;
    Ok(true)
}

/// A v2 PUT of the whole file; 412 means storage already has it.
async fn put_file(
    ctx: &RunCtx<'_>,
    answer: &Value,
    source: &Source<'_>,
) -> Result<bool, ActionError> {
    let req = storage_request(Method::Put, answer)?.with_body(source.body(0, source.size));
    let resp = ctx.client.send_json(&req, &ctx.call, Some(&STORED)).await?;
    Ok(resp.status != 412)
}

/// Statuses of a storage PUT that are answers: stored, or already there (412).
const STORED: [u16; 5] = [200, 201, 202, 204, 412];

/// Parts signed by one request: a few rounds of `concurrency` ahead, and well within the
/// signatures' life (an hour).
const SIGN_BATCH: usize = 32;

/// A v2 multipart session: sign the parts not yet uploaded (a batch per request, the
/// request body being a list of part numbers) and PUT them, `concurrency` at a time (within
/// the run's limit of uploads in flight, which every storage PUT takes a place of).
async fn put_parts(
    inputs: &UploadInputs,
    ctx: &RunCtx<'_>,
    answer: &Value,
    source: &Source<'_>,
) -> Result<bool, ActionError> {
    let (path, size) = (source.path, source.size);
    let uid = answer["upload_uid"]
        .as_str()
        .ok_or_else(|| ActionError::Other("a multipart upload without `upload_uid`".into()))?;
    let part_size = answer["part_size"]
        .as_u64()
        .filter(|&n| n > 0)
        .ok_or_else(|| ActionError::Other("a multipart upload without `part_size`".into()))?;
    let count = answer["part_count"]
        .as_u64()
        .unwrap_or(size.div_ceil(part_size));
    let done: Vec<u64> = answer["uploaded_parts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["part_number"].as_u64())
        .collect();
    let todo: Vec<u64> = (1..=count).filter(|n| !done.contains(n)).collect();
    let mut batches = todo.chunks(SIGN_BATCH);
    let mut signed = std::collections::VecDeque::new();
    let mut puts = stream::FuturesUnordered::new();
    loop {
        while puts.len() < inputs.concurrency {
            if signed.is_empty() {
                match batches.next() {
                    Some(numbers) => signed.extend(sign_parts(ctx, uid, numbers, path).await?),
                    None => break,
                }
            }
            let Some((n, part)) = signed.pop_front() else {
                break;
            };
            let offset = (n - 1) * part_size;
            let len = part_size.min(size.saturating_sub(offset));
            puts.push(put_part(ctx, part, source, offset, len));
        }
        match puts.next().await {
            Some(put) => put?,
            None => break,
        }
    }
    let sent_any = !todo.is_empty();
    Ok(sent_any || done.is_empty())
}

/// PUTs bytes `offset..offset+len` of the file to a signed part's URL.
async fn put_part(
    ctx: &RunCtx<'_>,
    part: Value,
    source: &Source<'_>,
    offset: u64,
    len: u64,
) -> Result<(), ActionError> {
    let req = storage_request(Method::Put, &part)?.with_body(source.body(offset, len));
    ctx.client.send_json(&req, &ctx.call, None).await?;
    Ok(())
}

/// Signs some parts of a multipart session: each number with its signed part.
async fn sign_parts(
    ctx: &RunCtx<'_>,
    uid: &str,
    numbers: &[u64],
    path: &Path,
) -> Result<Vec<(u64, Value)>, ActionError> {
    let sign = HttpRequest::to(
        Method::Post,
        ctx.client.endpoint().at(
            "/datasets/manual-upload/uploads/{}/parts",
            &[&Text::Known(uid.to_string())],
        ),
    )
    .with_body(Body::Json(json!({ "part_numbers": numbers })));
    let mut signed = super::fetch_json(ctx, &sign).await?;
    let mut parts = match signed["parts"].take() {
        Value::Array(parts) => parts,
        _ => Vec::new(),
    };
    numbers
        .iter()
        .map(|&n| {
            let at = parts
                .iter()
                .position(|p| p["part_number"].as_u64() == Some(n))
                .ok_or_else(|| {
                    ActionError::Other(format!("part {n} of {} was not signed", path.display()))
                })?;
            Ok((n, parts.swap_remove(at)))
        })
        .collect()
}

/// `POST /datasets/manual-upload/uploads/{upload_uid}/complete/`.
async fn complete(ctx: &RunCtx<'_>, upload_uid: &str) -> Result<(), ActionError> {
    let req = HttpRequest::to(
        Method::Post,
        ctx.client.endpoint().at(
            "/datasets/manual-upload/uploads/{}/complete",
            &[&Text::Known(upload_uid.to_string())],
        ),
    )
    .with_body(Body::Json(json!({})));
    ctx.client.send_json(&req, &ctx.call, None).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_paths_under_the_shared_folder() {
        let keys = with_keys(vec![
            PathBuf::from("data/a/1.jpg"),
            PathBuf::from("data/b/2.jpg"),
        ]);
        assert_eq!(keys[0].1, "a/1.jpg");
        assert_eq!(keys[1].1, "b/2.jpg");
        let one = with_keys(vec![PathBuf::from("data/a/1.jpg")]);
        assert_eq!(one[0].1, "1.jpg");
        #[cfg(unix)]
        {
            use std::os::unix::ffi::OsStrExt as _;
            let odd = |b: &[u8]| PathBuf::from(std::ffi::OsStr::from_bytes(b));
            let keys = with_keys(vec![odd(b"d/x\xff.bin"), odd(b"d/x\xfe.bin")]);
            assert_eq!(keys[0].1, "x%FF.bin");
            assert_ne!(keys[0].1, keys[1].1);
        }
    }
}
