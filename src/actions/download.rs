//! `download`: GET a URL and stream the body to a temporary file beside the
//! destination, renamed into place only when complete (and matching `sha256` when
//! given). A cut-off body is retried from the start; a failure leaves any existing file
//! untouched and no temporary file behind (the temporary file is removed on drop, also
//! when the run is interrupted). The key goes only to the API's own origin.
//!
//! Takes: rendered inputs. Gives: the file's path, size and sha256.
//! Must not: hold the body in memory, or leave a partial file under the final name.

use std::path::{Path, PathBuf};

use futures_util::StreamExt;
use serde_json::json;

use super::sink::FileSink;
use super::{Action, ActionError, ActionPlan, ActionResult, Inputs, RunCtx};
use crate::api::request::{display_path, HttpRequest, Method};
use crate::api::{retry, Endpoint, ErrorKind};
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty};
use crate::template::Text;

const URL: Field = req(
    "url",
    Ty::Str,
    "Absolute URL, or a path under the base URL.",
);
const TO: Field = req("to", Ty::Str, "Destination file.");
const SHA256: Field = opt(
    "sha256",
    Ty::Str,
    "Expected hex digest; a mismatch fails and keeps the old file.",
);
const OVERWRITE: Field = dflt("overwrite", Ty::Bool, "true", "Replace an existing file.");

/// `download`.
pub struct Download;

/// `download`'s inputs, typed.
struct DownloadInputs {
    url: Text,
    to: Text,
    sha256: Option<Text>,
    overwrite: bool,
}

impl DownloadInputs {
    fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        Ok(DownloadInputs {
            url: inputs.required_text(&URL)?,
            to: inputs.required_text(&TO)?,
            sha256: inputs.text(&SHA256)?,
            overwrite: inputs.flag(&OVERWRITE)?,
        })
    }

    fn request(&self, endpoint: &Endpoint) -> HttpRequest {
        HttpRequest::to(Method::Get, endpoint.resolve(&self.url))
    }
}

impl Action for Download {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "download",
        summary: "GET url, streamed to a temporary file and renamed into place when complete.",
        inputs: &[URL, TO, SHA256, OVERWRITE],
        one_of: &[],
        outputs: &[
            ("path", "The file written."),
            ("bytes", "Its size."),
            ("sha256", "Its hex digest."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let inputs = DownloadInputs::read(inputs)?;
        let req = inputs.request(endpoint);
        let to = inputs.to.shown();
        let mut notes = vec![format!(
            "streams to a temporary file beside {to}, renamed into place when complete; a cut-off transfer is retried from the start"
        )];
        if !req.url_later && !endpoint.is_api_origin(&req.url) {
            notes.push("another origin than the API: sent without the API key".into());
        }
        if let Some(sum) = &inputs.sha256 {
            notes.push(format!("the file must have sha256 {}", sum.shown()));
        }
        if !inputs.overwrite {
            notes.push(format!("fails if {to} already exists"));
        }
        Ok(ActionPlan {
            requests: vec![req],
            repeats: None,
            notes,
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let typed = DownloadInputs::read(inputs)?;
        super::check_placement(inputs, &TO, &typed.to.shown())?;
        run(typed, ctx).await
    }
}

async fn run(inputs: DownloadInputs, ctx: &RunCtx<'_>) -> ActionResult {
    let req = inputs.request(ctx.client.endpoint());
    let dest = super::local_path(&inputs.to.shown());
    // The file replaced: `dest` itself, or the target of the link `dest` is.
    let real = super::destination(&dest)?;
    let expected = inputs
        .sha256
        .as_ref()
        .map(|s| s.shown().trim().to_ascii_lowercase());
    if !inputs.overwrite && std::fs::symlink_metadata(&real).is_ok() {
        return Err(ActionError::Other(format!(
            "{} already exists and overwrite is false",
            dest.display()
        )));
    }
    let dir = real
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    tokio::fs::create_dir_all(&dir)
        .await
        .map_err(|e| ActionError::Other(format!("cannot create {}: {e}", dir.display())))?;

    let max_attempts = ctx.call.retry.max_attempts.max(1);
    let mut attempt = 0;
    loop {
        attempt += 1;
        match fetch_once(ctx, &req, &dir).await {
            Ok(Fetched {
                tmp,
                bytes,
                digest,
                scratch: _scratch,
            }) => {
                if let Some(want) = &expected {
                    if *want != digest {
                        return Err(ActionError::Other(format!(
                            "GET {}: sha256 mismatch: expected {want}, got {digest}; {} was left untouched",
                            display_path(&req.url),
                            dest.display()
                        )));
                    }
                }
                place(tmp, &real, &dest, inputs.overwrite)?;
                return Ok(json!({
                    "path": dest.display().to_string(),
                    "bytes": bytes,
                    "sha256": digest,
                })
                .into());
            }
            Err(FetchError::Body(message))
                if attempt < max_attempts && !ctx.call.cancel.is_cancelled() =>
            {
                let wait = retry::backoff(&ctx.call.retry, attempt);
                tracing::warn!(
                    step = %ctx.call.step,
                    "GET {}: {message}; restarting the download in {:.1}s (attempt {} of {max_attempts})",
                    display_path(&req.url),
                    wait.as_secs_f64(),
                    attempt + 1
                );
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctx.call.cancel.cancelled() => return Err(ActionError::Interrupted("during a download".into())),
                }
            }
            Err(FetchError::Body(message)) => {
                return Err(ActionError::Other(format!(
                    "GET {}: {message} ({attempt} attempt{}); {} was left untouched",
                    display_path(&req.url),
                    if attempt == 1 { "" } else { "s" },
                    dest.display()
                )))
            }
            Err(FetchError::Fatal(e)) => return Err(e),
        }
    }
}

/// Renames the whole download into place (over `real`, the file `dest` names). Without
/// overwrite, it goes in place only if none is there even now (link or rename without
/// replace): of several iterations writing one file, exactly one wins.
fn place(
    tmp: tempfile::NamedTempFile,
    real: &Path,
    dest: &Path,
    overwrite: bool,
) -> Result<(), ActionError> {
    super::keep_permissions(&tmp, real);
    let placed = match overwrite {
        true => tmp.persist(real),
        false => tmp.persist_noclobber(real),
    };
    let placed = placed.map(|_| {
        // The rename itself durable too: the folder's entry is on disk before the step
        // says the file is there.
        let dir = real.parent().filter(|d| !d.as_os_str().is_empty());
        if let Ok(d) = std::fs::File::open(dir.unwrap_or(Path::new("."))) {
            let _ = d.sync_all();
        }
    });
    placed.map_err(|e| match e.error.kind() {
        std::io::ErrorKind::AlreadyExists if !overwrite => ActionError::Other(format!(
            "{} already exists and overwrite is false: it appeared during the download (another step or iteration wrote it first); this download was discarded",
            dest.display()
        )),
        _ => ActionError::Other(format!(
            "cannot move the download into {}: {}",
            dest.display(),
            e.error
        )),
    })
}

/// A failure to write the temporary file: not worth another attempt.
fn write_failed(e: impl std::fmt::Display) -> FetchError {
    FetchError::Fatal(ActionError::Other(format!(
        "writing the download failed: {e}"
    )))
}

enum FetchError {
    /// The body was cut short or could not be written: worth a fresh attempt.
    Body(String),
    Fatal(ActionError),
}

/// A whole body in its temporary file, not yet in place.
struct Fetched {
    tmp: tempfile::NamedTempFile,
    bytes: u64,
    digest: String,
    /// Keeps the temporary file's name known until it is renamed or removed.
    scratch: super::scratch::Registered,
}

/// The response to the download's GET, when it is a success (2xx).
async fn answered(ctx: &RunCtx<'_>, req: &HttpRequest) -> Result<reqwest::Response, FetchError> {
    let resp = ctx
        .client
        .send(req, &ctx.call, false)
        .await
        .map_err(|e| FetchError::Fatal(e.into()))?;
    let status = resp.status().as_u16();
    if (200..300).contains(&status) {
        return Ok(resp);
    }
    let message = crate::api::error_body_message(resp).await;
    let attempts = ctx.call.attempts.load(std::sync::atomic::Ordering::Relaxed);
    Err(FetchError::Fatal(ActionError::Api(crate::api::call_error(
        req,
        ErrorKind::Status,
        Some(status),
        message,
        attempts,
        false,
    ))))
}

async fn fetch_once(
    ctx: &RunCtx<'_>,
    req: &HttpRequest,
    dir: &Path,
) -> Result<Fetched, FetchError> {
    let resp = answered(ctx, req).await?;
    let expected_len = resp.content_length();
    let tmp = super::temp_beside(dir).map_err(|e| {
        FetchError::Fatal(ActionError::Other(format!(
            "cannot write in {}: {e}",
            dir.display()
        )))
    })?;
    let scratch = super::scratch::register(tmp.path());
    let file = tmp.reopen().map_err(write_failed)?;
    let mut sink = FileSink::start(file, expected_len);
    let mut bytes = 0u64;
    let label = format!("download {}", dest_name(req));
    let mut throttle = super::Throttle::new();
    let mut stream = resp.bytes_stream();
    loop {
        let chunk = tokio::select! {
            c = stream.next() => c,
            _ = ctx.call.cancel.cancelled() => return Err(FetchError::Fatal(ActionError::Interrupted("during a download".into()))),
        };
        let Some(chunk) = chunk else { break };
        let chunk = chunk.map_err(|e| FetchError::Body(crate::api::transport_message(&e)))?;
        bytes += chunk.len() as u64;
        if throttle.ready(Some(bytes) == expected_len) {
            (ctx.progress)(&label, bytes, expected_len);
        }
        // A disk that stalls must not hold up Ctrl-C either.
        let taken = tokio::select! {
            taken = sink.push(chunk) => taken,
            _ = ctx.call.cancel.cancelled() => return Err(FetchError::Fatal(ActionError::Interrupted("during a download".into()))),
        };
        if !taken {
            break; // the writer stopped: `finish` says why
        }
    }
    // Every byte in the file and on disk (or the write's error) before anything else; a
    // disk that is slow to catch up does not hold up Ctrl-C (the dropped sink syncs nothing).
    let sunk = tokio::select! {
        sunk = sink.finish() => sunk.map_err(write_failed)?,
        _ = ctx.call.cancel.cancelled() => return Err(FetchError::Fatal(ActionError::Interrupted("during a download".into()))),
    };
    if let Some(len) = expected_len {
        if len != bytes {
            return Err(FetchError::Body(format!(
                "the body ended after {bytes} of {len} bytes"
            )));
        }
    }
    tracing::debug!(
        step = %ctx.call.step,
        "GET {}: {bytes} bytes on disk, {} of them written with O_DIRECT",
        display_path(&req.url),
        sunk.direct
    );
    Ok(Fetched {
        tmp,
        bytes,
        digest: sunk.sha256,
        scratch,
    })
}

/// The last path segment of a URL, for progress labels (never its query).
fn dest_name(req: &HttpRequest) -> String {
    let path = display_path(&req.url);
    path.rsplit('/')
        .find(|s| !s.is_empty())
        .unwrap_or("file")
        .to_string()
}
