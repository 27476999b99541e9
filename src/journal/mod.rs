//! The run journal (issue 13): what a run has done, as the server confirmed it, so that
//! `run --resume` redoes nothing and duplicates nothing. One JSON Lines file per pipeline
//! (default `.avala-pipe/<stem>.journal.jsonl`), mode 0600: a header line, then one line
//! per record, appended as work completes and made durable (`fdatasync`) at every step's
//! start and end and at most 200 ms after any other record. Each run starts a fresh file
//! (temporary file, fsync, rename: a resumed run's file begins with the steps it carries
//! over), and only appends after that: a `kill -9` at any instant leaves whole lines and at
//! most one torn last line, which reading skips. Appending (issue 14) keeps a run's memory
//! flat however many records it writes, and writes each record once: rewriting the whole
//! document at every step end made a 100k-iteration `for_each` quadratic in bytes written.
//!
//! What it holds: a format version, the pipeline's name, the API base URL, a fingerprint of
//! the pipeline file and of each var, and per step its status, its inputs' fingerprint, its
//! outputs (masked by the run's redactor), each `for_each` iteration, and the remote work
//! it did: each file stored (path, size, sha256, the server's answer), an export's id, a
//! `datasets.upload` session. A record is sent only after the server confirmed the work
//! (the upload's response, the export's creation), so the journal may lag behind the
//! server but never runs ahead of it.
//!
//! Nothing secret: fingerprints are HMAC-SHA256 with a random per-journal salt, of values in
//! which every secret (the key, `secrets:`; every encoding the redactor knows) was first
//! replaced by `<secret NAME>`. A fingerprint therefore never depends on a secret's value, so
//! it cannot confirm a guessed one (rotating a secret does not invalidate a journal either).
//! Outputs are masked before they are written; a step whose outputs needed masking is
//! recorded as not reusable (its recorded outputs would not be the real ones).
//!
//! Takes: records from the scheduler and the actions, over a channel. Gives: the file, and
//! the previous run's [`Doc`] for a resume (the lines folded into one document). Must not:
//! write a value the redactor has not masked, or record work before the server confirmed it.

pub mod preview;
pub mod resume;

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Why the journal could not be read or written, in words (it names the file).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct JournalError(pub String);

impl From<String> for JournalError {
    fn from(text: String) -> Self {
        JournalError(text)
    }
}

impl From<&str> for JournalError {
    fn from(text: &str) -> Self {
        JournalError(text.to_string())
    }
}

use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use tokio::sync::mpsc;

use crate::report::Redactor;

/// The journal format's version; another version is not resumed from.
pub const VERSION: u32 = 2;

/// Writes at most this often while work completes (and always at a step's end).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The whole journal file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Doc {
    pub format: String,
    pub version: u32,
    pub pipeline: String,
    /// The API base URL the work was done against.
    pub api: String,
    /// Hex salt of every fingerprint in this journal.
    pub salt: String,
    /// Fingerprint of the pipeline file's bytes.
    pub file: String,
    /// Fingerprint of each var's rendered value.
    pub vars: BTreeMap<String, String>,
    pub steps: BTreeMap<String, StepRec>,
}

/// One step, as far as it went.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct StepRec {
    /// `running` (started, not finished: the run was killed), `succeeded`, `failed`,
    /// `skipped`.
    pub status: String,
    /// Fingerprint of the step's definition and rendered inputs.
    #[serde(default)]
    pub inputs: Option<String>,
    /// Its outputs can be restored as they were (none needed masking).
    #[serde(default)]
    pub reusable: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Value>,
    /// Files the server confirmed stored, by path.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub files: BTreeMap<String, FileRec>,
    /// `datasets.upload`: its `dataset_upload_uid`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// `exports.create`: the export created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub export: Option<String>,
    /// `datasets.create`, `datasets.upload`: the dataset created (or finalized).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// `for_each`: each finished iteration, by index.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub iterations: BTreeMap<usize, IterRec>,
}

/// One stored file.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct FileRec {
    pub size: u64,
    pub sha256: String,
    /// The file's entry in the step's `files` output (with the server's answer and id).
    #[serde(default)]
    pub entry: Value,
}

/// One finished `for_each` iteration.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct IterRec {
    pub status: String,
    pub inputs: Option<String>,
    pub reusable: bool,
    #[serde(default)]
    pub output: Value,
}

/// What the scheduler and the actions tell the writer.
#[derive(Debug)]
pub enum Record {
    /// A step starts (it was not reused): `inputs` is its fingerprint. Remote work recorded
    /// under another fingerprint is forgotten (it was done for other inputs).
    /// `written` is told once the start is on disk: the step's requests wait for it, so a
    /// journal never lacks the start of a step whose work reached the server (a resume
    /// then knows to look for work the journal could not record).
    Started {
        step: String,
        inputs: String,
        written: Option<tokio::sync::oneshot::Sender<()>>,
    },
    FileStored {
        step: String,
        path: String,
        file: FileRec,
    },
    /// Remote work a resume must not redo (a session, an export, a dataset created),
    /// written as it is and at once.
    Remote(Line),
    Iteration {
        step: String,
        index: usize,
        inputs: String,
        status: &'static str,
        output: Value,
    },
    Finished {
        step: String,
        status: &'static str,
        inputs: Option<String>,
        /// A success's outputs, already masked and serialized ([`MaskedOutputs::of`]).
        outputs: Option<MaskedOutputs>,
    },
}

/// A step's outputs as the journal keeps them: compact JSON with every secret masked,
/// made where the outputs are (the scheduler), so a big list is never copied to be sent.
#[derive(Debug)]
pub struct MaskedOutputs {
    json: String,
    /// Something needed masking: the recorded outputs are not the real ones.
    masked: bool,
}

impl MaskedOutputs {
    pub fn of(redactor: &Redactor, outputs: &crate::outputs::Outputs) -> Self {
        let (json, masked) = redactor.json_text_masked(outputs.json_text());
        MaskedOutputs { json, masked }
    }
}

/// The first line of a journal file: what the run was (its steps follow, a line each).
#[derive(Serialize, Deserialize)]
struct Header {
    format: String,
    version: u32,
    pipeline: String,
    api: String,
    salt: String,
    file: String,
    vars: BTreeMap<String, String>,
}

/// Every line after the header: one record.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Line {
    Started {
        step: String,
        inputs: String,
    },
    FileStored {
        step: String,
        path: String,
        file: FileRec,
    },
    Session {
        step: String,
        uid: String,
    },
    ExportCreated {
        step: String,
        id: String,
    },
    DatasetCreated {
        step: String,
        id: String,
    },
    Iteration {
        step: String,
        index: usize,
        iteration: IterRec,
    },
    Finished {
        step: String,
        status: String,
        inputs: Option<String>,
        reusable: bool,
        #[serde(default)]
        outputs: Option<Value>,
    },
    /// A step carried over whole from the journal a run resumed from.
    Step {
        step: String,
        record: StepRec,
    },
}

/// Computes fingerprints: salted HMAC-SHA256 of canonical JSON with secrets named, not
/// valued.
#[derive(Clone, Debug)]
pub struct Fingerprinter {
    salt: Vec<u8>,
    /// (a form of a secret, `<secret NAME>`), longest form first.
    masks: Vec<(String, String)>,
    /// Every other form the run's masking knows (partly percent-encoded, escaped, …),
    /// masked after the named forms: nothing a secret's value could change is hashed.
    redactor: crate::secrets::Redactor,
}

impl Fingerprinter {
    /// `secrets`: (name, value) of the key and every `secrets:` entry.
    pub fn new(salt: Vec<u8>, secrets: &[(String, String)]) -> Self {
        let redactor =
            crate::secrets::Redactor::new(secrets.iter().map(|(_, value)| value.clone()));
        Self::with_redactor(salt, secrets, redactor)
    }

    /// As [`Fingerprinter::new`], masking the other forms with the run's own redactor (built
    /// from the same secrets; building a second one cost a few ms of every run's start).
    pub fn with_redactor(
        salt: Vec<u8>,
        secrets: &[(String, String)],
        redactor: crate::secrets::Redactor,
    ) -> Self {
        let mut masks = Vec::new();
        for (name, value) in secrets {
            if value.is_empty() {
                continue;
            }
            let named = format!("<secret {name}>");
            let mut forms = crate::secrets::forms(value);
            if value.len() >= 4 {
                forms.extend(crate::secrets::base64_forms(value));
            }
            // As it appears inside the JSON text a value is fingerprinted as.
            let json = serde_json::to_string(value).unwrap_or_default();
            forms.push(json.trim_matches('"').to_string());
            for f in forms.into_iter().filter(|f| !f.is_empty()) {
                masks.push((f, named.clone()));
            }
        }
        masks.sort_by_key(|(f, _)| std::cmp::Reverse(f.len()));
        masks.dedup_by(|a, b| a.0 == b.0);
        Fingerprinter {
            salt,
            masks,
            redactor,
        }
    }

    /// The text with every secret replaced by its name (or, in a form only the run's
    /// masking recognises, by `***`).
    pub fn mask(&self, text: &str) -> String {
        let mut out = text.to_string();
        for (form, named) in &self.masks {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), named);
            }
        }
        self.redactor.text(&out)
    }

    pub fn of_bytes(&self, bytes: &[u8]) -> String {
        hex::encode(hmac_sha256(&self.salt, bytes))
    }

    pub fn of_value(&self, value: &Value) -> String {
        let text = serde_json::to_string(value).unwrap_or_default();
        self.of_bytes(self.mask(&text).as_bytes())
    }

    /// A fingerprint made of pieces given one at a time (each masked as [`Self::of_value`]
    /// masks a whole value, and length-prefixed): a long list is never held whole.
    pub fn of_pieces(&self, pieces: impl IntoIterator<Item = Value>) -> String {
        let mut mac = Hmac::new(&self.salt);
        for piece in pieces {
            let text = serde_json::to_string(&piece).unwrap_or_default();
            let masked = self.mask(&text);
            mac.update(&(masked.len() as u64).to_le_bytes());
            mac.update(masked.as_bytes());
        }
        hex::encode(mac.finish())
    }
}

/// HMAC-SHA256 (RFC 2104), fed piece by piece.
pub struct Hmac {
    inner: Sha256,
    outer_key: [u8; 64],
}

impl Hmac {
    pub fn new(key: &[u8]) -> Self {
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let ipad = block.map(|b| b ^ 0x36);
        Hmac {
            inner: Sha256::new().chain_update(ipad),
            outer_key: block.map(|b| b ^ 0x5c),
        }
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.inner.update(bytes);
    }

    pub fn finish(self) -> [u8; 32] {
        Sha256::new()
            .chain_update(self.outer_key)
            .chain_update(self.inner.finalize())
            .finalize()
            .into()
    }
}

/// HMAC-SHA256 (RFC 2104) of one message.
pub fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut mac = Hmac::new(key);
    mac.update(message);
    mac.finish()
}

/// 32 random bytes for a new journal's salt.
pub fn new_salt() -> Vec<u8> {
    let mut salt = vec![0u8; 32];
    let read = std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut salt));
    if read.is_err() {
        salt.iter_mut().for_each(|b| *b = fastrand::u8(..));
    }
    salt
}

/// The default journal of a pipeline file: `.avala-pipe/<file stem>.journal.jsonl` in the
/// working directory.
pub fn default_path(pipeline: &Path) -> PathBuf {
    let stem = pipeline
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "pipeline".into());
    PathBuf::from(".avala-pipe").join(format!("{stem}.journal.jsonl"))
}

/// Reads a journal (its lines folded into one document); `Ok(None)` when there is none.
/// A torn last line (the run was killed while appending it) is skipped.
pub fn load(path: &Path) -> Result<Option<Doc>, JournalError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read the journal {}: {e}", path.display()).into()),
    };
    let whole = &text[..text.rfind('\n').map_or(0, |end| end + 1)];
    let mut lines = whole.lines();
    let header: Header = lines
        .next()
        .and_then(|first| serde_json::from_str(first).ok())
        .ok_or_else(|| {
            format!(
                "the journal {} is not a journal this version reads; remove it or run without --resume",
                path.display()
            )
        })?;
    if header.version != VERSION {
        return Err(format!(
            "the journal {} has format version {} (this avala-pipe writes {VERSION}); remove it or run without --resume",
            path.display(),
            header.version
        ).into());
    }
    let mut doc = Doc {
        format: header.format,
        version: header.version,
        pipeline: header.pipeline,
        api: header.api,
        salt: header.salt,
        file: header.file,
        vars: header.vars,
        steps: BTreeMap::new(),
    };
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.is_empty()) {
        let line: Line = serde_json::from_str(line).map_err(|e| {
            format!(
                "the journal {} is damaged at line {} ({e}); remove it or run without --resume",
                path.display(),
                n + 2
            )
        })?;
        fold(&mut doc, line);
    }
    Ok(Some(doc))
}

/// Starts a journal file afresh, atomically: a temporary file (0600) beside it holding the
/// header and the steps carried over, fsync, rename. Gives the file, open for appending.
pub fn write_fresh(path: &Path, doc: &Doc) -> std::io::Result<std::fs::File> {
    commit(begin(path, doc)?, path)
}

/// The first half of [`write_fresh`]: the temporary file, written (errors such as a folder
/// that cannot be written show here, before the run starts).
fn begin(path: &Path, doc: &Doc) -> std::io::Result<tempfile::NamedTempFile> {
    let dir = folder(path);
    std::fs::create_dir_all(dir)?;
    // tempfile creates it 0600; the rename keeps that mode.
    let tmp = tempfile::Builder::new()
        .prefix(".journal-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut out = std::io::BufWriter::new(tmp);
    let header = Header {
        format: doc.format.clone(),
        version: doc.version,
        pipeline: doc.pipeline.clone(),
        api: doc.api.clone(),
        salt: doc.salt.clone(),
        file: doc.file.clone(),
        vars: doc.vars.clone(),
    };
    serde_json::to_writer(&mut out, &header).map_err(std::io::Error::other)?;
    out.write_all(b"\n")?;
    for (step, record) in &doc.steps {
        let line = Line::Step {
            step: step.clone(),
            record: record.clone(),
        };
        serde_json::to_writer(&mut out, &line).map_err(std::io::Error::other)?;
        out.write_all(b"\n")?;
    }
    out.into_inner().map_err(|e| e.into_error())
}

/// The second half of [`write_fresh`]: durable, then in place (the waits on the disk).
fn commit(tmp: tempfile::NamedTempFile, path: &Path) -> std::io::Result<std::fs::File> {
    tmp.as_file().sync_all()?;
    let file = tmp.persist(path).map_err(|e| e.error)?;
    if let Ok(d) = std::fs::File::open(folder(path)) {
        let _ = d.sync_all();
    }
    Ok(file)
}

fn folder(path: &Path) -> &Path {
    path.parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
}

/// The writer: appends each record as a line (durable at once for a step's start and end,
/// within [`DEBOUNCE`] for the rest). Holds no document: its memory does not grow.
pub struct Writer {
    tx: mpsc::UnboundedSender<Record>,
    task: tokio::task::JoinHandle<Result<(), JournalError>>,
}

impl Writer {
    /// Starts the file with `doc` (so a run killed at its first request leaves a journal),
    /// then appends records as they come. The file is written here; its fsync and rename
    /// are the writer's first work, before any record, so the run's first requests do
    /// not wait for the disk (a step that changes the server waits for its start record,
    /// which is written after them).
    pub fn start(path: PathBuf, doc: Doc, redactor: Redactor) -> Result<Writer, JournalError> {
        let tmp = begin(&path, &doc)
            .map_err(|e| format!("cannot write the journal {}: {e}", path.display()))?;
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let file = blocking(|| commit(tmp, &path))
                .map_err(|e| format!("cannot write the journal {}: {e}", path.display()))?;
            write_loop(path, file, redactor, rx).await
        });
        Ok(Writer { tx, task })
    }

    pub fn sender(&self) -> Sink {
        Sink(Some(self.tx.clone()))
    }

    /// Writes what is left and stops.
    pub async fn close(self) -> Result<(), JournalError> {
        drop(self.tx);
        self.task.await.map_err(|e| e.to_string())?
    }
}

/// Where records go (nowhere without a journal).
#[derive(Clone, Debug, Default)]
pub struct Sink(Option<mpsc::UnboundedSender<Record>>);

impl Sink {
    pub fn send(&self, r: Record) {
        if let Some(tx) = &self.0 {
            let _ = tx.send(r);
        }
    }
}

async fn write_loop(
    path: PathBuf,
    mut file: std::fs::File,
    redactor: Redactor,
    mut rx: mpsc::UnboundedReceiver<Record>,
) -> Result<(), JournalError> {
    // Lines not on disk yet.
    let mut pending: Vec<u8> = Vec::new();
    let mut last = Instant::now();
    let mut flush = |pending: &mut Vec<u8>| {
        let written = file.write_all(pending).and_then(|()| file.sync_data());
        pending.clear();
        written.map_err(|e| format!("cannot write the journal {}: {e}", path.display()))
    };
    loop {
        let next = if pending.is_empty() {
            rx.recv().await
        } else {
            let wait = DEBOUNCE.saturating_sub(last.elapsed());
            match tokio::time::timeout(wait, rx.recv()).await {
                Ok(r) => r,
                Err(_) => {
                    blocking(|| flush(&mut pending))?;
                    last = Instant::now();
                    continue;
                }
            }
        };
        let Some(mut record) = next else { break };
        let ack = match &mut record {
            Record::Started { written, .. } => written.take(),
            _ => None,
        };
        let urgent = encode(&mut pending, record, &redactor);
        if urgent || last.elapsed() >= DEBOUNCE {
            blocking(|| flush(&mut pending))?;
            last = Instant::now();
        }
        if let Some(ack) = ack {
            let _ = ack.send(());
        }
    }
    if !pending.is_empty() {
        flush(&mut pending)?;
    }
    Ok(())
}

/// Runs a short blocking write without stalling the other tasks of a multi-threaded
/// runtime (a current-thread runtime just runs it).
fn blocking<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(f),
        _ => f(),
    }
}

/// Masks a value for the journal; true when something needed masking. In place: a copy to
/// compare with cost a 20k-item list a quarter of its instructions.
fn masked(redactor: &Redactor, mut v: Value) -> (Value, bool) {
    let changed = redactor.json_masked(&mut v);
    (v, changed)
}

/// Appends a record's line to `out`; true when it should be on disk at once (a step's
/// start or end, or remote work a resume must not redo).
fn encode(out: &mut Vec<u8>, record: Record, redactor: &Redactor) -> bool {
    let (line, urgent) = match record {
        Record::Started { step, inputs, .. } => (Line::Started { step, inputs }, true),
        Record::FileStored {
            step,
            path,
            mut file,
        } => {
            file.entry = masked(redactor, file.entry).0;
            // A path holding a secret is kept masked (that file is then sent again).
            let path = redactor.text(&path);
            (Line::FileStored { step, path, file }, false)
        }
        Record::Remote(line) => (line, true),
        Record::Iteration {
            step,
            index,
            inputs,
            status,
            output,
        } => {
            let (output, changed) = masked(redactor, output);
            let iteration = IterRec {
                status: status.into(),
                inputs: Some(inputs),
                reusable: !changed,
                output,
            };
            (
                Line::Iteration {
                    step,
                    index,
                    iteration,
                },
                false,
            )
        }
        Record::Finished {
            step,
            status,
            inputs,
            outputs,
        } => {
            // The outputs are already JSON: the line is put together around them.
            let succeeded = status == "succeeded";
            let outputs = outputs.filter(|_| succeeded);
            let reusable = succeeded && outputs.as_ref().is_some_and(|o| !o.masked);
            let head = serde_json::json!({
                "step": step,
                "status": status,
                "inputs": inputs,
                "reusable": reusable,
            })
            .to_string();
            out.extend_from_slice(b"{\"finished\":");
            out.extend_from_slice(&head.as_bytes()[..head.len() - 1]);
            out.extend_from_slice(b",\"outputs\":");
            match &outputs {
                Some(o) => out.extend_from_slice(o.json.as_bytes()),
                None => out.extend_from_slice(b"null"),
            }
            out.extend_from_slice(b"}}\n");
            return true;
        }
    };
    // Serializing a record of plain fields and JSON values cannot fail.
    let _ = serde_json::to_writer(&mut *out, &line);
    out.push(b'\n');
    urgent
}

/// Applies a line to the document it is read into.
fn fold(doc: &mut Doc, line: Line) {
    match line {
        Line::Started { step, inputs } => {
            let rec = doc.steps.entry(step).or_default();
            if rec.inputs.as_deref() != Some(inputs.as_str()) {
                *rec = StepRec::default();
            }
            rec.status = "running".into();
            rec.inputs = Some(inputs);
            rec.reusable = false;
            rec.outputs = None;
        }
        Line::FileStored { step, path, file } => {
            doc.steps.entry(step).or_default().files.insert(path, file);
        }
        Line::Session { step, uid } => doc.steps.entry(step).or_default().session = Some(uid),
        Line::ExportCreated { step, id } => doc.steps.entry(step).or_default().export = Some(id),
        Line::DatasetCreated { step, id } => {
            doc.steps.entry(step).or_default().dataset = Some(id);
        }
        Line::Iteration {
            step,
            index,
            iteration,
        } => {
            doc.steps
                .entry(step)
                .or_default()
                .iterations
                .insert(index, iteration);
        }
        Line::Finished {
            step,
            status,
            inputs,
            reusable,
            outputs,
        } => {
            let rec = doc.steps.entry(step).or_default();
            rec.status = status;
            if inputs.is_some() {
                rec.inputs = inputs;
            }
            rec.reusable = reusable;
            rec.outputs = outputs;
        }
        Line::Step { step, record } => {
            doc.steps.insert(step, record);
        }
    }
}

/// The journal as one step's action sees it: what an earlier attempt of this step (with
/// the same inputs) already got done, and where to record what this one does.
#[derive(Clone, Debug, Default)]
pub struct StepLog {
    pub step: String,
    /// The earlier attempt's record, when its inputs were the same.
    pub prior: Option<Arc<StepRec>>,
    pub sink: Sink,
}

impl StepLog {
    /// A file this step already stored with this content (its output entry).
    pub fn stored(&self, path: &str, sha256: &str) -> Option<Value> {
        let f = self.prior.as_ref()?.files.get(path)?;
        (f.sha256 == sha256).then(|| f.entry.clone())
    }

    /// An earlier attempt started and did not finish: some work may be on the server
    /// that the journal does not know of (confirmed after the last write).
    pub fn interrupted_before(&self) -> bool {
        self.prior.as_ref().is_some_and(|p| p.status != "succeeded")
    }

    /// The upload session of an earlier attempt that did not finish (a finished one was
    /// finalized: running the step again makes a new dataset, in a new session).
    pub fn session(&self) -> Option<String> {
        let prior = self.prior.as_ref().filter(|_| self.interrupted_before())?;
        prior.session.clone()
    }

    /// The export an earlier attempt created before it was cut short (one that finished
    /// is not re-attached to: running the step again asks for a new export).
    pub fn export(&self) -> Option<String> {
        let prior = self.prior.as_ref().filter(|_| self.interrupted_before())?;
        prior.export.clone()
    }

    /// The dataset an earlier attempt created (or finalized) before it was cut short.
    pub fn dataset(&self) -> Option<String> {
        let prior = self.prior.as_ref().filter(|_| self.interrupted_before())?;
        prior.dataset.clone()
    }

    pub fn dataset_created(&self, id: &str) {
        self.sink.send(Record::Remote(Line::DatasetCreated {
            step: self.step.clone(),
            id: id.to_string(),
        }));
    }

    pub fn file_stored(&self, path: &str, size: u64, sha256: &str, entry: &Value) {
        self.sink.send(Record::FileStored {
            step: self.step.clone(),
            path: path.to_string(),
            file: FileRec {
                size,
                sha256: sha256.to_string(),
                entry: entry.clone(),
            },
        });
    }

    pub fn session_started(&self, uid: &str) {
        self.sink.send(Record::Remote(Line::Session {
            step: self.step.clone(),
            uid: uid.to_string(),
        }));
    }

    pub fn export_created(&self, id: &str) {
        self.sink.send(Record::Remote(Line::ExportCreated {
            step: self.step.clone(),
            id: id.to_string(),
        }));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231_case_2() {
        let mac = hmac_sha256(b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_fingerprint_does_not_depend_on_a_secret_value() {
        let salt = vec![7u8; 32];
        let a = Fingerprinter::new(salt.clone(), &[("T".into(), "hunter2-secret".into())]);
        let b = Fingerprinter::new(salt, &[("T".into(), "other-secret-9".into())]);
        let va = serde_json::json!({"h": "Bearer hunter2-secret"});
        let vb = serde_json::json!({"h": "Bearer other-secret-9"});
        assert_eq!(a.of_value(&va), b.of_value(&vb));
        assert_ne!(a.of_value(&va), a.of_value(&serde_json::json!({"h": "x"})));
        // Partly percent-encoded (minijinja's `urlencode` keeps `/`, encodes `+`): a form
        // the plain list of forms does not hold.
        let a = Fingerprinter::new(vec![7u8; 32], &[("K".into(), "ab/cd+ef12".into())]);
        let b = Fingerprinter::new(vec![7u8; 32], &[("K".into(), "zz/yy+xx34".into())]);
        assert_eq!(
            a.of_value(&serde_json::json!({"q": "k=ab/cd%2Bef12"})),
            b.of_value(&serde_json::json!({"q": "k=zz/yy%2Bxx34"}))
        );
    }

    #[tokio::test]
    async fn outputs_that_needed_masking_are_kept_masked_and_not_reusable() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.json");
        let redactor = Redactor::new(["s3cret-value".to_string(), r#""qu\ote""#.to_string()]);
        let doc = Doc {
            version: VERSION,
            ..Doc::default()
        };
        let writer = Writer::start(path.clone(), doc, redactor.clone()).unwrap();
        let sink = writer.sender();
        let cases = [
            ("masked", serde_json::json!({ "v": "token s3cret-value" })),
            ("plain", serde_json::json!({ "v": "nothing" })),
            // As a key, and inside a list.
            ("key", serde_json::json!({ "s3cret-value": 1 })),
            (
                "deep",
                serde_json::json!({ "l": [1, {"x": "a s3cret-value b"}] }),
            ),
            // A secret with a quote and a backslash: JSON-escaped in the text that the
            // one-scan fast path reads.
            ("escaped", serde_json::json!({ "q": r#"say "qu\ote" now"# })),
        ];
        for (step, out) in &cases {
            sink.send(Record::Started {
                step: (*step).into(),
                inputs: "fp".into(),
                written: None,
            });
            sink.send(Record::Finished {
                step: (*step).into(),
                status: "succeeded",
                inputs: None,
                outputs: Some(MaskedOutputs::of(&redactor, &out.clone().into())),
            });
        }
        drop(sink);
        writer.close().await.unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("s3cret-value"), "{text}");
        let doc = load(&path).unwrap().unwrap();
        assert!(!doc.steps["masked"].reusable);
        assert!(!doc.steps["key"].reusable);
        assert!(!doc.steps["deep"].reusable);
        assert!(!doc.steps["escaped"].reusable);
        assert_eq!(
            doc.steps["escaped"].outputs,
            Some(serde_json::json!({"q": "say *** now"}))
        );
        assert!(doc.steps["plain"].reusable);
        assert_eq!(
            doc.steps["deep"].outputs,
            Some(serde_json::json!({"l": [1, {"x": "a *** b"}]}))
        );
        assert_eq!(
            doc.steps["plain"].outputs,
            Some(serde_json::json!({"v": "nothing"}))
        );
    }

    #[test]
    fn a_written_journal_is_private_and_whole() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/p.journal.json");
        let doc = Doc {
            version: VERSION,
            pipeline: "p".into(),
            ..Doc::default()
        };
        write_fresh(&path, &doc).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(load(&path).unwrap().unwrap().pipeline, "p");
    }

    /// A run killed while appending leaves a torn last line: the lines before it are read,
    /// the torn one is skipped; a damaged line before the last is an error naming it.
    #[tokio::test]
    async fn a_torn_last_line_is_skipped_and_a_damaged_one_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("j.jsonl");
        let doc = Doc {
            version: VERSION,
            ..Doc::default()
        };
        let redactor = Redactor::default();
        let writer = Writer::start(path.clone(), doc, redactor.clone()).unwrap();
        let sink = writer.sender();
        for step in ["a", "b"] {
            sink.send(Record::Started {
                step: step.into(),
                inputs: "fp".into(),
                written: None,
            });
            sink.send(Record::Finished {
                step: step.into(),
                status: "succeeded",
                inputs: None,
                outputs: Some(MaskedOutputs::of(
                    &redactor,
                    &serde_json::json!({"n": 1}).into(),
                )),
            });
        }
        drop(sink);
        writer.close().await.unwrap();
        let whole = std::fs::read_to_string(&path).unwrap();
        assert_eq!(whole.lines().count(), 5, "{whole}");
        // Cut inside the last line.
        std::fs::write(&path, &whole[..whole.len() - 7]).unwrap();
        let doc = load(&path).unwrap().unwrap();
        assert_eq!(doc.steps["a"].status, "succeeded");
        assert_eq!(doc.steps["b"].status, "running");
        // A line in the middle that is not a record.
        let mut lines: Vec<&str> = whole.lines().collect();
        lines[2] = "{not json";
        std::fs::write(&path, lines.join("\n") + "\n").unwrap();
        let err = load(&path).unwrap_err().to_string();
        assert!(err.contains("damaged at line 3"), "{err}");
    }
}
