//! `items.upload`: one multipart POST per file, each file streamed from disk with its
//! length, several at once. A POST is retried only when the server refused it (429) or
//! the connection failed before sending, so a file is never stored twice.
//!
//! Must not: read a whole file into memory (hashing reads it in 64 KiB chunks).

use std::path::{Path, PathBuf};

use futures_util::stream::{self, StreamExt};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncReadExt;

use super::{is_placeholder, ActionError, ActionPlan, ActionResult, Inputs, RunCtx};
use crate::api::request::{segment, Body, HttpRequest, Method, Part};
use crate::api::Client;

/// The files the `files` input names, in order, without duplicates.
pub fn resolve_files(inputs: &Inputs) -> Result<Vec<PathBuf>, ActionError> {
    let patterns = inputs.str_list("files")?;
    let mut out: Vec<PathBuf> = Vec::new();
    for pattern in &patterns {
        if is_glob(pattern) {
            let paths = glob::glob(pattern).map_err(|e| {
                ActionError::Input(format!("`files`: invalid glob `{pattern}`: {e}"))
            })?;
            let mut matched: Vec<PathBuf> = paths
                .filter_map(Result::ok)
                .filter(|p| p.is_file())
                .collect();
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
    if out.is_empty() && !inputs.bool("allow_empty")? {
        return Err(ActionError::Input(format!(
            "`files` matched no file ({}); set allow_empty: true if that is expected",
            patterns.join(", ")
        )));
    }
    Ok(out)
}

fn is_glob(text: &str) -> bool {
    text.contains(['*', '?', '['])
}

fn request_for(
    inputs: &Inputs,
    client: &Client,
    path: &Path,
    size: u64,
) -> Result<HttpRequest, ActionError> {
    let dataset = inputs.required_str("dataset")?;
    let field = inputs.str("field")?.unwrap_or_else(|| "file".into());
    let file_name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "file".into());
    Ok(HttpRequest {
        method: Method::Post,
        url: client.api_url(&format!("/datasets/{}/items", segment(&dataset))),
        body: Body::Multipart(vec![Part::File {
            field,
            path: path.to_path_buf(),
            content_type: content_type(&file_name).to_string(),
            file_name,
            size,
        }]),
    })
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

pub fn plan(inputs: &Inputs, client: &Client) -> Result<ActionPlan, ActionError> {
    let unknown = inputs.get("files").is_some_and(|v| match v {
        Value::Array(items) => items.iter().any(is_placeholder),
        other => is_placeholder(other),
    });
    let mut requests = Vec::new();
    if unknown {
        let shown = inputs.str_list("files")?.join(", ");
        requests.push(request_for(inputs, client, Path::new(&shown), 0)?);
    } else {
        for path in resolve_files(inputs)? {
            let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
            requests.push(request_for(inputs, client, &path, size)?);
        }
    }
    let concurrency = inputs.u64("concurrency")?.unwrap_or(4);
    let mut notes = vec![format!(
        "one request per file, {concurrency} at a time, each file streamed from disk"
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

pub async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
    let files = resolve_files(inputs)?;
    let concurrency = inputs.u64("concurrency")?.unwrap_or(4).max(1) as usize;
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
    let mut uploads = Vec::with_capacity(files.len());
    for path in &files {
        uploads.push(upload_one(inputs, ctx, path));
    }
    // In file order, `concurrency` at a time; the first failure stops new uploads.
    let mut results = stream::iter(uploads).buffered(concurrency);
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
    Ok(json!({"files": out, "count": out.len(), "bytes": total}))
}

async fn upload_one(inputs: &Inputs, ctx: &RunCtx<'_>, path: &Path) -> Result<Value, ActionError> {
    let (size, sha256) = hash_file(path, &ctx.call.cancel).await?;
    let req = request_for(inputs, ctx.client, path, size)?;
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
    Ok(json!({
        "path": path.display().to_string(),
        "bytes": size,
        "sha256": sha256,
        "response": resp.body,
    }))
}

/// Size and sha256 of a file, read in chunks; an interrupt stops it between chunks.
pub async fn hash_file(
    path: &Path,
    cancel: &tokio_util::sync::CancellationToken,
) -> Result<(u64, String), ActionError> {
    let mut file = tokio::fs::File::open(path)
        .await
        .map_err(|e| ActionError::Other(format!("cannot open {}: {e}", path.display())))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(ActionError::Other(format!(
                "interrupted while reading {}",
                path.display()
            )));
        }
        let n = file
            .read(&mut buf)
            .await
            .map_err(|e| ActionError::Other(format!("cannot read {}: {e}", path.display())))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        size += n as u64;
    }
    Ok((size, hex::encode(hasher.finalize())))
}
