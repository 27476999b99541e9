//! The reliability and security suite (issue 6): the real binary against the in-process
//! emulator with scripted faults, one test per case of the issue (`caseNN_...`), plus the
//! cases the suite found on the way (`case15` on). This file is the harness; the cases live
//! in `faults/`: `retries` (1-5, 15, 16), `transfers` (6-9), `signals` (10), `security`
//! (11, 13, 14) and `input` (12); `hostile_b` holds issue 16's group B (hostile servers,
//! files and names: `hostile_bNN_...`, NN the item of the issue). Run them alone with
//! `cargo nextest run -E 'test(/faults::/)'`.
//!
//! Every test checks both sides: the server (the emulator's journal of requests, what it
//! stored, and that each scripted fault was actually delivered, so no test passes by never
//! reaching its fault path) and the client (exit code, messages, the report, files on disk).
//!
//! Every run goes through [`Run::checked`], which is case 11 for all of them: the key is a
//! canary (`avk_CANARY_…`), runs use `-vv --log-format json --report FILE --html FILE`, and the
//! canary must not appear, in plain or base64 form, in stdout, stderr, the reports or any file
//! under the test's directory; no temporary `.part` file may be left behind either.
//! Each test prints a `FIGURES` line (`--no-capture` shows them) with the faults it
//! delivered, the canary hits and the partial files it found.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use avala_pipe::emulator::{
    Emulator, EmulatorOptions, Fault, FaultEffect, Flavor, Origin, RecordedRequest, RetryAfter,
    Trigger,
};
use base64::Engine as _;
use serde_json::{json, Value};
use tokio::io::AsyncReadExt;

use crate::support::{sha256_file, start_emulator, write};

mod hostile;
mod hostile_b;
mod input;
mod retries;
mod security;
mod signals;
mod transfers;

/// The canary API key: it must never be seen again once given to the binary.
const CANARY: &str = "avk_CANARY_7Qm3xZ9tLp2Vw8Rk4Jd6";

/// Fast retries, so the bounded-attempt cases take milliseconds.
const FAST_RETRY: &str =
    "defaults:\n  retry: { max_attempts: 3, initial_interval: 10ms, max_interval: 50ms }\n";

// ---------------------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------------------

fn fault(name: &str, method: &str, path: &str, when: Trigger, effect: FaultEffect) -> Fault {
    Fault::new(method, path, effect).named(name).when(when)
}

fn status(code: u16, retry_after: Option<RetryAfter>) -> FaultEffect {
    match retry_after {
        Some(value) => FaultEffect::status(code).retry_after(value),
        None => FaultEffect::status(code),
    }
}

fn status_body(code: u16, body: Value) -> FaultEffect {
    FaultEffect::Status {
        code,
        body: Some(body),
        retry_after: None,
        after_route: false,
    }
}

/// The journal entries of one method on paths ending with `suffix` (trailing `/` ignored).
fn journal(emu: &Emulator, origin: Origin, method: &str, suffix: &str) -> Vec<RecordedRequest> {
    emu.requests()
        .into_iter()
        .filter(|r| {
            r.origin == origin
                && r.method == method
                && r.path.trim_end_matches('/').ends_with(suffix)
        })
        .collect()
}

fn statuses(requests: &[RecordedRequest]) -> Vec<u16> {
    requests.iter().map(|r| r.status).collect()
}

/// Prints the case's figures and checks every named fault was delivered `expected` times.
#[track_caller]
fn delivered(emu: &Emulator, case: u32, expected: &[(&str, u64)]) {
    for (name, count) in expected {
        assert_eq!(
            emu.fault_delivered(name),
            *count,
            "fault {name} delivered {} times, expected {count}; all: {:?}",
            emu.fault_delivered(name),
            emu.faults_delivered()
        );
    }
    let total: u64 = emu.faults_delivered().iter().map(|(_, n)| n).sum();
    println!("FIGURES case={case:02} faults_delivered={total}");
}

/// The binary, set up as every run in this suite is: the canary key, `-vv`, JSON logs, a
/// report file, no proxy or colour from the outer environment.
fn command(file: &Path, cwd: &Path, base_url: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_avala-pipe"));
    cmd.arg("run").arg(file).args([
        "--format",
        "json",
        "--color",
        "never",
        "-vv",
        "--log-format",
        "json",
        "--report",
    ]);
    cmd.arg(cwd.join("report.json"));
    // The HTML report is scanned for the canary with every other file under `cwd`.
    cmd.arg("--html").arg(cwd.join("report.html"));
    if let Some(url) = base_url {
        cmd.args(["--base-url", url]);
    }
    cmd.current_dir(cwd)
        .env("AVALA_API_KEY", CANARY)
        .env("NO_COLOR", "1")
        .env("AVALA_API_FLAVOR", "documented")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    for var in [
        "AVALA_BASE_URL",
        "RUST_LOG",
        "CI",
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_OUTPUT",
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ] {
        cmd.env_remove(var);
    }
    cmd
}

/// What a run of the binary produced.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    elapsed: Duration,
}

impl Run {
    /// Runs `cmd` to the end (at most a minute), then checks it left no trace of the key
    /// and no partial file under `dir`.
    async fn checked(mut cmd: tokio::process::Command, dir: &Path) -> Run {
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let started = Instant::now();
        let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
            .await
            .expect("the run finishes within a minute")
            .expect("the binary runs");
        let run = Run {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
            elapsed: started.elapsed(),
        };
        run.assert_clean(dir);
        run
    }

    #[track_caller]
    fn assert_clean(&self, dir: &Path) {
        let hits = canary_hits(&[&self.stdout, &self.stderr], dir);
        assert!(
            hits.is_empty(),
            "the key leaked into {hits:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        let partial = partial_files(dir);
        assert!(partial.is_empty(), "partial files left: {partial:?}");
        println!("FIGURES canary_hits=0 partial_files=0");
    }

    #[track_caller]
    fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout,
            self.stderr
        );
        self
    }

    fn report(&self) -> Value {
        serde_json::from_str(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}):\n{}\n--- stderr\n{}",
                self.stdout, self.stderr
            )
        })
    }

    fn step(&self, id: &str) -> Value {
        let report = self.report();
        report["steps"]
            .as_array()
            .and_then(|s| s.iter().find(|s| s["id"] == id))
            .cloned()
            .unwrap_or_else(|| panic!("no step {id} in {report:#}"))
    }

    fn error(&self, id: &str) -> String {
        self.step(id)["error"]
            .as_str()
            .unwrap_or_else(|| panic!("step {id} has no error: {:#}", self.report()))
            .to_string()
    }
}

/// Runs `file` against `emu` with the suite's flags and checks what it left behind.
async fn run(emu: &Emulator, file: &Path, dir: &Path, extra: &[&str]) -> Run {
    let mut cmd = command(file, dir, Some(&emu.base_url()));
    cmd.args(extra);
    Run::checked(cmd, dir).await
}

/// The forms of the canary to look for: as is, and base64 (standard and URL-safe) at each
/// of the three byte alignments it can have inside a longer encoded text.
fn canary_needles() -> Vec<Vec<u8>> {
    let mut needles = vec![CANARY.as_bytes().to_vec()];
    for engine in [
        &base64::engine::general_purpose::STANDARD_NO_PAD,
        &base64::engine::general_purpose::URL_SAFE_NO_PAD,
    ] {
        for offset in 0..3 {
            let mut bytes = vec![b'x'; offset];
            bytes.extend_from_slice(CANARY.as_bytes());
            let encoded = engine.encode(&bytes);
            // Skip the characters that mix in the prefix and the last, partial group.
            let start = if offset == 0 { 0 } else { 4 };
            let end = encoded.len() - 4;
            needles.push(encoded.as_bytes()[start..end].to_vec());
        }
    }
    needles
}

/// Where the canary appears: in the given texts (by index) or in files under `dir`.
fn canary_hits(texts: &[&str], dir: &Path) -> Vec<String> {
    let needles = canary_needles();
    let found = |hay: &[u8]| {
        needles
            .iter()
            .any(|n| hay.windows(n.len()).any(|w| w == n.as_slice()))
    };
    let mut hits = Vec::new();
    for (i, text) in texts.iter().enumerate() {
        if found(text.as_bytes()) {
            hits.push(format!("output #{i}"));
        }
    }
    for file in files_under(dir) {
        // Large downloads are the emulator's generated data; their head and tail suffice
        // to catch a key written into them, and reading gigabytes would slow the suite.
        let data = read_sample(&file, 8 << 20);
        if found(&data) {
            hits.push(file.display().to_string());
        }
    }
    hits
}

fn read_sample(path: &Path, limit: u64) -> Vec<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = std::fs::File::open(path) else {
        return Vec::new();
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let mut data = Vec::new();
    if len <= limit {
        let _ = f.read_to_end(&mut data);
    } else {
        let _ = f.by_ref().take(limit / 2).read_to_end(&mut data);
        let _ = f.seek(SeekFrom::End(-((limit / 2) as i64)));
        let _ = f.read_to_end(&mut data);
    }
    data
}

fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                stack.push(p);
            } else if p.is_file() {
                // Not FIFOs or devices a test made: opening a FIFO would wait for a writer.
                out.push(p);
            }
        }
    }
    out
}

/// Temporary download/list files (`.avala-pipe-*.part`) anywhere under `dir`.
fn partial_files(dir: &Path) -> Vec<PathBuf> {
    files_under(dir)
        .into_iter()
        .filter(|p| {
            let name = p.file_name().unwrap_or_default().to_string_lossy();
            name.ends_with(".part") || name.starts_with(".avala-pipe-")
        })
        .collect()
}

/// A run that goes through create → wait → download, to `out/export.json`.
fn export_pipeline(extra_download: &str) -> String {
    format!(
        "version: 1\n{FAST_RETRY}steps:\n  - id: make\n    action: exports.create\n    with: {{ dataset_id: ds_0001 }}\n  - id: wait\n    action: exports.wait\n    with: {{ export: \"{{{{ steps.make.outputs.id }}}}\", interval: 20ms }}\n  - id: fetch\n    action: download\n    with:\n      url: \"{{{{ steps.wait.outputs.download_url }}}}\"\n      to: out/export.json\n{extra_download}"
    )
}
