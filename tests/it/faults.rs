//! The reliability and security suite (issue 6): the real binary against the in-process
//! emulator with scripted faults, one test per case of the issue (`caseNN_...`), plus the
//! cases the suite found on the way (`case15` on). This file holds the suite's helpers;
//! the cases live in `faults/`: `retries` (1-5, 15, 16), `transfers` (6-9), `signals`
//! (10), `security` (11, 13, 14) and `input` (12); `hostile` and `hostile_b` hold issue
//! 16's groups A and B (`hostileNN_...`, `hostile_bNN_...`, NN the item of the issue).
//! Run them alone with
//! `cargo nextest run -E 'test(/faults::/)'`.
//!
//! Every test checks both sides: the server (the emulator's journal of requests, what it
//! stored, and that each scripted fault was actually delivered, so no test passes by never
//! reaching its fault path) and the client (exit code, messages, the report, files on disk).
//!
//! Every run is built by [`command`], which is case 11 for all of them: the key is a
//! canary (`avk_CANARY_…`), runs use `-vv --log-format json --report FILE --html FILE`, and
//! the shared harness (`support`, [`Cmd::scan_dir`]) fails the test if the canary appears,
//! in plain or base64 form, in stdout, stderr, the reports or any file under the test's
//! directory, or if a temporary `.part` file is left behind.
//! Each test prints a `FIGURES` line (`--no-capture` shows them) with the faults it
//! delivered, the canary hits and the partial files it found.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use avala_pipe::emulator::{
    Emulator, EmulatorOptions, Fault, FaultEffect, Flavor, Origin, RecordedRequest, RetryAfter,
    Trigger,
};
use base64::Engine as _;
use serde_json::{json, Value};

use crate::support::{avala_pipe, partial_files, sha256_file, start_emulator, write, Cmd, Output};

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

/// The binary, set up as every run in this suite is: the canary key, `-vv`, JSON logs, the
/// JSON and HTML reports, and a scan of `cwd` for the key and partial files once it exits.
fn command(file: &Path, cwd: &Path, base_url: Option<&str>) -> Cmd {
    let mut cmd = avala_pipe()
        .arg("run")
        .arg(file)
        .args([
            "--format",
            "json",
            "--color",
            "never",
            "-vv",
            "--log-format",
            "json",
            "--report",
        ])
        .arg(cwd.join("report.json"))
        // The HTML report is scanned for the canary with every other file under `cwd`.
        .arg("--html")
        .arg(cwd.join("report.html"));
    if let Some(url) = base_url {
        cmd = cmd.args(["--base-url", url]);
    }
    cmd.current_dir(cwd)
        .env("AVALA_API_KEY", CANARY)
        .scan_dir(cwd)
}

/// Runs `file` against `emu` with the suite's flags and checks what it left behind.
async fn run(emu: &Emulator, file: &Path, dir: &Path, extra: &[&str]) -> Output {
    command(file, dir, Some(&emu.base_url()))
        .args(extra)
        .run_async()
        .await
}

/// A run that goes through create → wait → download, to `out/export.json`.
fn export_pipeline(extra_download: &str) -> String {
    format!(
        "version: 1\n{FAST_RETRY}steps:\n  - id: make\n    action: exports.create\n    with: {{ dataset_id: ds_0001 }}\n  - id: wait\n    action: exports.wait\n    with: {{ export: \"{{{{ steps.make.outputs.id }}}}\", interval: 20ms }}\n  - id: fetch\n    action: download\n    with:\n      url: \"{{{{ steps.wait.outputs.download_url }}}}\"\n      to: out/export.json\n{extra_download}"
    )
}
