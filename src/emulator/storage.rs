//! The second origin: object storage serving export files behind presigned-looking URLs.
//!
//! It takes an export record and gives its `download_url`, the streamed file (generated on the
//! fly: JSON Lines records padded to the exact `--export-bytes`, so gigabytes cost no memory)
//! and that file's sha256. It must never ask for the API key, and never hold a whole file.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::body::{Body, Bytes, HttpBody};
use axum::extract::{Path, State};
use axum::http::{header, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body::{Frame, SizeHint};
use sha2::{Digest, Sha256};

use super::state::{ExportRecord, ExportStage, Shared};

/// Width of one generated record (the last one absorbs the remainder).
const RECORD: u64 = 1024;
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
    let mut response = Body::new(ExportBody::new(&export)).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-ndjson"),
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

/// The sha256 (lowercase hex) of the bytes `download` serves for an export.
pub(crate) fn sha256(export: &ExportRecord) -> String {
    let mut generator = Generator::new(&export.id, export.bytes);
    let mut hasher = Sha256::new();
    let mut buf = Vec::with_capacity(CHUNK as usize);
    let mut pos = 0;
    while pos < export.bytes {
        buf.clear();
        let n = CHUNK.min(export.bytes - pos);
        generator.fill(pos, n, &mut buf);
        hasher.update(&buf);
        pos += n;
    }
    hex::encode(hasher.finalize())
}

/// Deterministic export content: record k (1-based) is
/// `{"export":"exp_0001","record":"000000000042","data":"xxxx…"}\n`, 1024 bytes wide; the last
/// record is wider to reach the exact size. A file smaller than one record is `{}`, spaces and
/// a newline, cut to size.
struct Generator {
    total: u64,
    records: u64,
    /// A normal record, with the digits of the record last written into it.
    scratch: Vec<u8>,
    scratch_record: u64,
    digits_at: usize,
    /// The last record, complete.
    last: Vec<u8>,
}

impl Generator {
    fn new(export_id: &str, total: u64) -> Self {
        let records = (total / RECORD).max(1);
        let last_width = total - (records - 1) * RECORD;
        let (scratch, digits_at) = record(export_id, 0, RECORD as usize);
        let (last, _) = record(export_id, records, last_width as usize);
        Generator {
            total,
            records,
            scratch,
            scratch_record: 0,
            digits_at,
            last,
        }
    }

    /// Appends the `len` bytes starting at `pos` to `out`.
    fn fill(&mut self, pos: u64, len: u64, out: &mut Vec<u8>) {
        let end = (pos + len).min(self.total);
        let mut p = pos;
        while p < end {
            let k = (p / RECORD).min(self.records - 1);
            let start = k * RECORD;
            let bytes: &[u8] = if k == self.records - 1 {
                &self.last
            } else {
                if self.scratch_record != k + 1 {
                    write_digits(
                        &mut self.scratch[self.digits_at..self.digits_at + 12],
                        k + 1,
                    );
                    self.scratch_record = k + 1;
                }
                &self.scratch
            };
            let from = (p - start) as usize;
            let to = bytes.len().min(from + (end - p) as usize);
            out.extend_from_slice(&bytes[from..to]);
            p += (to - from) as u64;
        }
    }
}

/// Builds record `number` of `width` bytes; gives it and where its 12 digits start.
fn record(export_id: &str, number: u64, width: usize) -> (Vec<u8>, usize) {
    let head = format!("{{\"export\":\"{export_id}\",\"record\":\"");
    let middle = "\",\"data\":\"";
    let tail = "\"}\n";
    let fixed = head.len() + 12 + middle.len() + tail.len();
    if width < fixed {
        let mut filler = b"{}".to_vec();
        filler.resize(width.max(2), b' ');
        filler.truncate(width);
        if let Some(last) = filler.last_mut().filter(|_| width >= 3) {
            *last = b'\n';
        }
        return (filler, 0);
    }
    let mut bytes = Vec::with_capacity(width);
    bytes.extend_from_slice(head.as_bytes());
    bytes.extend_from_slice(&[b'0'; 12]);
    bytes.extend_from_slice(middle.as_bytes());
    bytes.resize(width - tail.len(), b'x');
    bytes.extend_from_slice(tail.as_bytes());
    write_digits(&mut bytes[head.len()..head.len() + 12], number);
    (bytes, head.len())
}

fn write_digits(slot: &mut [u8], mut n: u64) {
    for byte in slot.iter_mut().rev() {
        *byte = b'0' + (n % 10) as u8;
        n /= 10;
    }
}

/// The streamed body of an export file, with an exact size hint (so an exact Content-Length).
struct ExportBody {
    generator: Generator,
    pos: u64,
}

impl ExportBody {
    fn new(export: &ExportRecord) -> Self {
        ExportBody {
            generator: Generator::new(&export.id, export.bytes),
            pos: 0,
        }
    }
}

impl HttpBody for ExportBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = self.get_mut();
        let total = this.generator.total;
        if this.pos >= total {
            return Poll::Ready(None);
        }
        let n = CHUNK.min(total - this.pos);
        let mut buf = Vec::with_capacity(n as usize);
        this.generator.fill(this.pos, n, &mut buf);
        this.pos += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(buf)))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.generator.total
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.generator.total - self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn generate(total: u64, chunk: u64) -> Vec<u8> {
        let mut g = Generator::new("exp_0001", total);
        let mut out = Vec::new();
        let mut pos = 0;
        while pos < total {
            let n = chunk.min(total - pos);
            g.fill(pos, n, &mut out);
            pos += n;
        }
        out
    }

    #[test]
    fn content_has_the_exact_size_and_is_json_lines() {
        for total in [0, 1, 2, 3, 40, 1023, 1024, 1025, 5000, 65536] {
            let bytes = generate(total, 777);
            assert_eq!(bytes.len() as u64, total, "size {total}");
            assert_eq!(bytes, generate(total, 100_000), "chunking changes content");
            if total >= 100 {
                for line in bytes.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
                    serde_json::from_slice::<serde_json::Value>(line).expect("a JSON line");
                }
            }
        }
        let text = String::from_utf8(generate(3000, 3000)).unwrap();
        assert!(text.starts_with("{\"export\":\"exp_0001\",\"record\":\"000000000001\""));
        assert_eq!(text.lines().count(), 2);
    }
}
