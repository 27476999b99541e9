//! `items.upload`: one multipart POST per file, each file streamed from disk with its
//! length, several at once. A POST is retried only when the server refused it (429) or
//! the connection failed before sending, so a file is never stored twice.
//!
//! Takes: rendered inputs. Gives: each file's path, size, sha256 and the server's answer.
//! Must not: read a whole file into memory (hashing reads it in 64 KiB chunks).

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::{Action, ActionError, ActionPlan, ActionResult, Inputs, RunCtx};
use crate::api::request::{Body, HttpRequest, Method, Part};
use crate::api::Endpoint;
use crate::pipeline::spec::{dflt, req, ActionSpec, Field, Ty};
use crate::template::Text;

const DATASET: Field = req("dataset", Ty::Str, "Dataset id.");
/// The files to upload (shared with `datasets.upload`).
pub const FILES: Field = req("files", Ty::StrOrList, "A path, a glob, or a list of them.");
const FIELD: Field = dflt(
    "field",
    Ty::Str,
    "file",
    "Name of the multipart file field.",
);
const CONCURRENCY: Field = dflt(
    "concurrency",
    Ty::Int { min: 1, max: 64 },
    "4",
    "Uploads in flight at once.",
);
/// Whether no matching file is fine (shared with `datasets.upload`).
pub const ALLOW_EMPTY: Field = dflt(
    "allow_empty",
    Ty::Bool,
    "false",
    "Succeed when no file matches.",
);

/// `items.upload`.
pub struct ItemsUpload;

/// `items.upload`'s inputs, typed.
struct UploadInputs {
    dataset: Text,
    files: Vec<Text>,
    field: String,
    concurrency: usize,
    allow_empty: bool,
}

impl UploadInputs {
    fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        let files = inputs.texts(&FILES)?;
        super::check_placements(inputs, &FILES, &files)?;
        Ok(UploadInputs {
            dataset: inputs.required_text(&DATASET)?,
            files,
            field: inputs
                .text(&FIELD)?
                .map_or_else(|| "file".to_string(), |t| t.shown()),
            concurrency: inputs.count(&CONCURRENCY)?.unwrap_or(4).max(1) as usize,
            allow_empty: inputs.flag(&ALLOW_EMPTY)?,
        })
    }

    /// The files the `files` input names, in order, without duplicates.
    fn resolve(&self) -> Result<Vec<PathBuf>, ActionError> {
        let patterns: Vec<String> = self.files.iter().map(Text::shown).collect();
        resolve_files(&patterns, self.allow_empty)
    }

    fn request_for(&self, endpoint: &Endpoint, path: &Path, size: Option<u64>) -> HttpRequest {
        let file_name = path
            .file_name()
            .map(|n| crate::api::request::part_file_name(n.as_encoded_bytes()))
            .unwrap_or_else(|| "file".into());
        HttpRequest::to(
            Method::Post,
            endpoint.at("/datasets/{}/items", &[&self.dataset]),
        )
        .with_body(Body::Multipart(vec![Part::File {
            field: self.field.clone(),
            path: path.to_path_buf(),
            content_type: content_type(&file_name).to_string(),
            file_name,
            size,
        }]))
    }
}

impl Action for ItemsUpload {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "items.upload",
        summary:
            "POST /datasets/{dataset}/items, multipart, one request per file, streamed from disk (documented API; today's API: datasets.upload).",
        inputs: &[DATASET, FILES, FIELD, CONCURRENCY, ALLOW_EMPTY],
        one_of: &[],
        outputs: &[
            ("files", "List of `{path, bytes, sha256, response}`."),
            ("count", "Files uploaded."),
            ("bytes", "Bytes uploaded."),
        ],
        changes_server: true,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        documented_only(endpoint)?;
        plan(&UploadInputs::read(inputs)?, endpoint)
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        documented_only(ctx.client.endpoint())?;
        run(&UploadInputs::read(inputs)?, ctx).await
    }
}

/// The files an upload step's `files` input names now (both upload actions name them
/// alike), for a resume to compare with those it uploaded.
pub fn files_of(inputs: &Inputs) -> Result<Vec<PathBuf>, ActionError> {
    let patterns: Vec<String> = inputs.texts(&FILES)?.iter().map(Text::shown).collect();
    resolve_files(&patterns, inputs.flag(&ALLOW_EMPTY)?)
}

/// Today's API takes no file bytes: it presigns uploads to storage (`datasets.upload`).
fn documented_only(endpoint: &Endpoint) -> Result<(), ActionError> {
    match endpoint.flavor {
        crate::pipeline::model::ApiFlavor::Documented => Ok(()),
        crate::pipeline::model::ApiFlavor::Current => Err(ActionError::Input(format!(
            "items.upload posts file bytes to the API, which only the documented API takes; today's API uploads through presigned storage URLs: use `datasets.upload` instead, or {}",
            endpoint.flavor_hint()
        ))),
    }
}

/// The files that `patterns` (paths or globs) name, in order, without duplicates.
pub fn resolve_files(patterns: &[String], allow_empty: bool) -> Result<Vec<PathBuf>, ActionError> {
    let mut out: Vec<PathBuf> = Vec::new();
    for pattern in patterns {
        if is_glob(pattern) {
            let paths = glob::glob(pattern).map_err(|e| {
                ActionError::Input(format!("`files`: invalid glob `{pattern}`: {e}"))
            })?;
            let mut matched: Vec<PathBuf> = paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
            matched.extend(not_utf8_matches(pattern));
            matched.sort();
            out.extend(matched);
        } else {
            let path = super::local_path(pattern);
            if !path.is_file() {
                return Err(ActionError::Input(format!(
                    "`files`: {} does not exist or is not a file",
                    path.display()
                )));
            }
            out.push(path);
        }
    }
    let mut seen = std::collections::HashSet::new();
    out.retain(|p| seen.insert(p.clone()));
    if out.is_empty() && !allow_empty {
        return Err(ActionError::Input(format!(
            "`files` matched no file ({}); set allow_empty: true if that is expected",
            patterns.join(", ")
        )));
    }
    Ok(out)
}

/// The files a glob matches whose names are not UTF-8, which `glob` skips: the last
/// component of the pattern is matched against the name with each invalid sequence
/// read as one U+FFFD (which `*` and `?` match), in every folder the rest matches.
fn not_utf8_matches(pattern: &str) -> Vec<PathBuf> {
    let path = Path::new(pattern);
    let (Some(name), dir) = (path.file_name().and_then(|n| n.to_str()), path.parent()) else {
        return Vec::new();
    };
    let Ok(name) = glob::Pattern::new(name) else {
        return Vec::new();
    };
    let dir = dir
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let dirs: Vec<PathBuf> = match dir.to_str() {
        Some(d) if is_glob(d) => glob::glob(d)
            .map(|g| g.filter_map(Result::ok).filter(|p| p.is_dir()).collect())
            .unwrap_or_default(),
        _ => vec![dir.to_path_buf()],
    };
    let mut out = Vec::new();
    for dir in dirs {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let file_name = entry.file_name();
            if file_name.to_str().is_some() {
                continue;
            }
            let lossy = file_name.to_string_lossy();
            if name.matches_with(&lossy, glob::MatchOptions::new()) {
                let found = if path.parent().is_some_and(|p| p.as_os_str().is_empty()) {
                    PathBuf::from(&file_name)
                } else {
                    dir.join(&file_name)
                };
                if found.is_file() {
                    out.push(found);
                }
            }
        }
    }
    out
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

/// A content type from the file extension (the server decides what it accepts).
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit('.').next().unwrap_or("").to_ascii_lowercase();
    match ext.as_str() {
        "json" => "application/json",
        "jsonl" | "ndjson" => "application/x-ndjson",
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "gif" => "image/gif",
        "webp" => "image/webp",
        "mp4" => "video/mp4",
        "txt" | "csv" => "text/plain",
        "zip" => "application/zip",
        "pcd" | "bin" | "mcap" => "application/octet-stream",
        _ => "application/octet-stream",
    }
}

fn plan(inputs: &UploadInputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
    let unknown = inputs.files.iter().any(|f| f.known().is_none());
    let mut requests = Vec::new();
    if unknown {
        let shown: Vec<String> = inputs.files.iter().map(Text::shown).collect();
        requests.push(inputs.request_for(endpoint, Path::new(&shown.join(", ")), None));
    } else {
        for path in inputs.resolve()? {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            requests.push(inputs.request_for(endpoint, &path, Some(size)));
        }
    }
    let mut notes = vec![format!(
        "one request per file, {} at a time, each file streamed from disk",
        inputs.concurrency
    )];
    if unknown {
        notes.push("the files are known after run: the request is shown once".into());
    }
    Ok(ActionPlan {
        requests,
        repeats: None,
        notes,
    })
}

async fn run(inputs: &UploadInputs, ctx: &RunCtx<'_>) -> ActionResult {
    let files = inputs.resolve()?;
    let planned: u64 = files
        .iter()
        .filter_map(|p| std::fs::metadata(p).ok())
        .map(|m| m.len())
        .sum();
    let label = format!(
        "upload {} file{}",
        files.len(),
        if files.len() == 1 { "" } else { "s" }
    );
    // A resumed attempt after one that was cut short: the server may hold files whose
    // answer never reached the journal. Its items (by name and sha256) say which.
    let on_server = if ctx.journal.interrupted_before() {
        items_on_server(inputs, ctx).await?
    } else {
        Vec::new()
    };
    // A server item is recognised by the exact name a file is sent under; a name two of
    // this upload's files share recognises neither (only the digest could tell them apart).
    let mut names: std::collections::HashMap<String, usize> = Default::default();
    for path in &files {
        *names.entry(sent_name(path)).or_default() += 1;
    }
    let mut uploads = Vec::with_capacity(files.len());
    for path in &files {
        let recognisable = names.get(&sent_name(path)) == Some(&1);
        let on_server: &[Value] = if recognisable { &on_server } else { &[] };
        uploads.push(upload_one(inputs, ctx, path, on_server));
    }
    // In file order, `concurrency` at a time; the first failure stops new uploads.
    let mut results = stream::iter(uploads).buffered(inputs.concurrency);
    let mut out = Vec::with_capacity(files.len());
    let mut total = 0u64;
    let mut throttle = super::Throttle::new();
    while let Some(r) = results.next().await {
        let v = r?;
        total += v["bytes"].as_u64().unwrap_or(0);
        out.push(v);
        if throttle.ready(out.len() == files.len()) {
            (ctx.progress)(&label, total, Some(planned.max(total)));
        }
    }
    Ok(json!({"files": out, "count": out.len(), "bytes": total}).into())
}

/// The dataset's items as (key, sha256 or size), to recognise files stored by an attempt
/// that was killed before the journal learnt of them.
async fn items_on_server(
    inputs: &UploadInputs,
    ctx: &RunCtx<'_>,
) -> Result<Vec<Value>, ActionError> {
    let first = HttpRequest::to(
        Method::Get,
        ctx.client
            .endpoint()
            .at("/datasets/{}/items", &[&inputs.dataset]),
    );
    let mut items = Vec::new();
    super::list::paginate(ctx.client, &ctx.call, &first, None, &mut |item| {
        items.push(item.value())
    })
    .await?;
    Ok(items)
}

/// The name a file is sent under (the multipart part's file name), byte-exact.
fn sent_name(path: &Path) -> String {
    #[cfg(unix)]
    let bytes = {
        use std::os::unix::ffi::OsStrExt as _;
        path.file_name()
            .map(|n| n.as_bytes().to_vec())
            .unwrap_or_default()
    };
    #[cfg(not(unix))]
    let bytes = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned().into_bytes())
        .unwrap_or_default();
    crate::api::request::part_file_name(&bytes)
}

/// The item the server already holds for this file: the name it is sent under, and the
/// same sha256 (or, when the server keeps no sha256, the same size: an edited file of the
/// same size is then taken as stored, which the log says).
fn already_on_server<'a>(
    items: &'a [Value],
    path: &Path,
    size: u64,
    sha256: &str,
) -> Option<&'a Value> {
    let name = sent_name(path);
    let found = items.iter().find(|item| {
        let meta = &item["metadata"];
        item["key"].as_str() == Some(name.as_str())
            && match meta["sha256"].as_str() {
                Some(sum) => sum == sha256,
                None => meta["size"].as_u64() == Some(size),
            }
    })?;
    if found["metadata"]["sha256"].as_str().is_none() {
        tracing::info!(
            "{} is taken as already stored: the server holds `{name}` with the same size (it keeps no sha256 to compare)",
            path.display()
        );
    }
    Some(found)
}

async fn upload_one(
    inputs: &UploadInputs,
    ctx: &RunCtx<'_>,
    path: &Path,
    on_server: &[Value],
) -> Result<Value, ActionError> {
    let (size, sha256) = hash_file(path, &ctx.call.cancel).await?;
    let shown = path.display().to_string();
    if let Some(entry) = ctx.journal.stored(&shown, &sha256) {
        return Ok(entry);
    }
    if let Some(item) = already_on_server(on_server, path, size, &sha256) {
        let entry = json!({"path": shown, "bytes": size, "sha256": sha256, "response": item});
        ctx.journal.file_stored(&shown, size, &sha256, &entry);
        return Ok(entry);
    }
    let req = inputs.request_for(ctx.client.endpoint(), path, Some(size));
    let resp = ctx
        .client
        .send_json(&req, &ctx.call, None)
        .await
        .map_err(|mut e| {
            // The error itself says it was not retried when the server may have acted on it.
            e.message = if e.maybe_applied {
                format!(
                    "{} (uploading {}, which may already be stored)",
                    e.message,
                    path.display()
                )
            } else {
                format!("{} (uploading {})", e.message, path.display())
            };
            ActionError::Api(e)
        })?;
    let entry = json!({
        "path": shown,
        "bytes": size,
        "sha256": sha256,
        "response": resp.body,
    });
    ctx.journal.file_stored(&shown, size, &sha256, &entry);
    Ok(entry)
}

/// Size and sha256 of a file, read in chunks; an interrupt stops it between chunks.
///
/// One blocking task reads and hashes the whole file (1 MiB at a time): a task per chunk
/// through `tokio::fs` cost a thread hand-off and a copy through tokio's own buffer per
/// chunk (see bench/NOTES-up14.md).
pub async fn hash_file(
    path: &Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(u64, String), ActionError> {
    let (owned, cancel) = (path.to_path_buf(), cancel.clone());
    let hashed = tokio::task::spawn_blocking(move || hash_blocking(&owned, &cancel)).await;
    match hashed {
        Ok(result) => result,
        Err(e) => Err(ActionError::Other(format!(
            "hashing {} failed: {e}",
            path.display()
        ))),
    }
}

/// A file's size and sha256, read on the calling thread (a blocking one).
pub(crate) fn hash_blocking(
    path: &Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(u64, String), ActionError> {
    use std::io::Read as _;
    let mut file = std::fs::File::open(path)
        .map_err(|e| ActionError::Other(format!("cannot open {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; HASH_CHUNK];
    let mut size = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(ActionError::Interrupted(format!(
                "while reading {}",
                path.display()
            )));
        }
        let n = match file.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(ActionError::Other(format!(
                    "cannot read {}: {e}",
                    path.display()
                )))
            }
        };
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}

/// Bytes read per chunk when hashing a file.
const HASH_CHUNK: usize = 1024 * 1024;
