//! `run --html`: the page opened from disk in a real browser (Debian's headless
//! `chromium`), after its script ran: one timeline row per step, waits drawn by cause,
//! no console message and no script error, no secret.
//!
//! Chromium is required, not optional: when `/usr/bin/chromium` is missing, the test
//! installs it with apt when it runs as root (as on this project's machines and in CI),
//! and otherwise fails saying how to install it (a skipped browser test would be a defect).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use avala_pipe::emulator::{EmulatorOptions, Fault, FaultEffect, RetryAfter, Trigger};

use crate::support::{avala_pipe, path, start_emulator, write};

const CHROMIUM: &str = "/usr/bin/chromium";
const KEY: &str = "avk_html_7Qm3xZ9tLp2Vw8Rk";

/// The browser, installed when it may be.
fn chromium() -> PathBuf {
    static INSTALL: Mutex<()> = Mutex::new(());
    let _one_at_a_time = INSTALL.lock().unwrap_or_else(|e| e.into_inner());
    if Path::new(CHROMIUM).exists() {
        return CHROMIUM.into();
    }
    let root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0");
    assert!(
        root,
        "the HTML report tests need Debian's chromium at {CHROMIUM}: run `apt-get update && apt-get install -y chromium` (as root; .ci/run does it when it runs as root)"
    );
    // Another test process may be installing it: wait for apt's locks rather than fail.
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(["-o", "DPkg::Lock::Timeout=600", "-o", "Acquire::Retries=3"])
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .status()
            .is_ok_and(|s| s.success())
    };
    let installed =
        (apt(&["update"]) && apt(&["install", "-y", "chromium"])) || Path::new(CHROMIUM).exists();
    assert!(installed, "installing chromium with apt-get failed");
    CHROMIUM.into()
}

/// What the browser made of a page.
struct Browsed {
    /// The DOM after the page's script ran.
    dom: String,
    /// Console messages the page logged.
    console: Vec<String>,
}

/// The browser's command line, and its fresh profile (removed when dropped).
fn headless(page: &Path, extra: &[&str]) -> (Command, tempfile::TempDir) {
    let profile = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("timeout");
    cmd.arg("120").arg(chromium()).args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        "--virtual-time-budget=5000",
    ]);
    cmd.arg(format!("--user-data-dir={}", profile.path().display()))
        .args(extra)
        .arg(format!("file://{}", page.display()));
    (cmd, profile)
}

fn browse(page: &Path) -> Browsed {
    let (mut cmd, _profile) = headless(page, &["--enable-logging=stderr", "--v=0", "--dump-dom"]);
    let out = cmd.output().expect("chromium runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "chromium failed: {stderr}");
    Browsed {
        dom: String::from_utf8_lossy(&out.stdout).into_owned(),
        console: stderr
            .lines()
            .filter(|l| l.contains(":CONSOLE"))
            .map(str::to_string)
            .collect(),
    }
}

impl Browsed {
    #[track_caller]
    fn assert_clean(&self) {
        assert!(
            self.console.is_empty(),
            "the page logged to the console: {:#?}",
            self.console
        );
        assert!(
            !self.dom.contains("id=\"script-error\""),
            "the page's script failed: {}",
            self.dom
        );
    }

    fn rows(&self) -> Vec<String> {
        self.dom
            .split("<details class=\"row\" data-step=\"")
            .skip(1)
            .map(|rest| rest.split('"').next().unwrap_or("").to_string())
            .collect()
    }

    fn count(&self, needle: &str) -> usize {
        self.dom.matches(needle).count()
    }
}

/// The run data embedded in the page.
fn page_data(html: &str) -> serde_json::Value {
    let start = html.find("id=\"run-data\">").expect("the data block") + "id=\"run-data\">".len();
    let end = start + html[start..].find("</script>").unwrap();
    serde_json::from_str(&html[start..end]).expect("the data block is JSON")
}

/// Nothing on the page comes from elsewhere.
#[track_caller]
fn assert_self_contained(html: &str) {
    // The SVG namespace is a name, not something fetched.
    let html = html.replace("\"http://www.w3.org/2000/svg\"", "");
    for external in ["src=", "href=", "@import", "url(", "http://", "https://"] {
        assert!(!html.contains(external), "the page references {external}");
    }
}

#[test]
fn the_demo_journey_shows_one_timeline_row_per_step_in_a_browser() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("journey.html");
    avala_pipe()
        .args(["run", "--emulator", "--html"])
        .arg(&page)
        .arg(path("pipelines/journey.yaml"))
        .args(["--var", "out_dir=out"])
        .current_dir(dir.path())
        .run()
        .success();
    let html = std::fs::read_to_string(&page).unwrap();
    assert_self_contained(&html);
    let browsed = browse(&page);
    browsed.assert_clean();
    assert_eq!(
        browsed.rows(),
        ["upload", "export", "ready", "fetch"],
        "one timeline row per step, in the order they ran"
    );
    assert!(browsed.dom.contains("data-rendered=\"4\""));
    // The export was polled: the wait between polls is drawn as a poll wait.
    assert!(browsed.count("class=\"wait poll\"") >= 1, "{}", browsed.dom);
    // Three uploaded files and the download, each with its sha256.
    let data = page_data(&html);
    let files: Vec<&serde_json::Value> = data["steps"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|s| s["transfers"].as_array().unwrap())
        .collect();
    assert_eq!(files.len(), 4, "{files:#?}");
    assert!(files
        .iter()
        .all(|f| f["sha256"].as_str().unwrap().len() == 64));
    assert_eq!(browsed.count("<tr><td>upload (items.upload)</td>"), 3);
}

/// Against an emulator limiting the key to 2 requests a second, the pacer holds requests
/// back: those waits are drawn as rate-limit waits, not as retries.
#[tokio::test(flavor = "multi_thread")]
async fn rate_limit_waits_show_as_rate_limit_waits() {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            rate_limit: Some(2),
            ..EmulatorOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "burst.yaml",
        "version: 1\nname: burst\nsteps:\n  - id: probe\n    action: request\n    for_each: [1, 2, 3, 4, 5, 6, 7, 8]\n    max_parallel: 4\n    with: { path: /datasets }\n",
    );
    let page = dir.path().join("burst.html");
    let cmd = avala_pipe()
        .args(["run", "--base-url", &emu.base_url(), "--html"])
        .arg(&page)
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .current_dir(dir.path());
    let out = cmd.run_async().await;
    out.success();
    emu.shutdown().await;
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains(KEY), "the key is on the page");
    let data = page_data(&html);
    let waits: Vec<&str> = data["steps"][0]["waits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["cause"].as_str().unwrap())
        .collect();
    let paced = waits.iter().filter(|c| **c == "rate_limit").count();
    assert!(paced >= 2, "the pacer held requests back: {waits:?}");
    assert!(
        waits
            .iter()
            .all(|c| matches!(*c, "rate_limit" | "retry_after")),
        "a rate limit causes no backoff or poll waits: {waits:?}"
    );
    let browsed = browse(&page);
    browsed.assert_clean();
    assert_eq!(browsed.rows(), ["probe"]);
    // Each pacer wait is drawn on the step's row and in its waterfall, as a rate-limit wait.
    assert_eq!(browsed.count("class=\"wait rate_limit\""), paced);
    assert_eq!(
        browsed.count("<tr class=\"wait-row\" data-cause=\"rate_limit\">"),
        paced
    );
    // The iterations are grouped in the waterfall.
    assert_eq!(browsed.count("<div class=\"iter\">iteration "), 8);
}

/// A failed step shows on the page with its request and the server's message, and a
/// secret rendered into its URL is masked there like everywhere else.
#[tokio::test(flavor = "multi_thread")]
async fn failures_show_the_request_and_server_message_masked() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsecrets: [PARTNER_TOKEN]\nsteps:\n  - id: missing\n    action: request\n    with: { path: \"/datasets/{{ secrets.PARTNER_TOKEN }}\" }\n  - id: after\n    action: request\n    needs: [missing]\n    with: { path: /datasets }\n",
    );
    let page = dir.path().join("p.html");
    let cmd = avala_pipe()
        .args(["run", "--base-url", &emu.base_url(), "--html"])
        .arg(&page)
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .env("PARTNER_TOKEN", "tok_partner_4242")
        .current_dir(dir.path());
    let out = cmd.run_async().await;
    out.code(1);
    emu.shutdown().await;
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(!html.contains("tok_partner_4242") && !html.contains(KEY));
    let browsed = browse(&page);
    browsed.assert_clean();
    assert_eq!(browsed.rows(), ["missing", "after"]);
    let failure = browsed
        .dom
        .split("<div class=\"failure\" data-step=\"missing\">")
        .nth(1)
        .expect("the failure is shown");
    assert!(
        failure.contains("GET /api/v1/datasets/*** → 404"),
        "{failure}"
    );
    assert!(failure.contains("404 Not Found"), "{failure}");
    assert!(browsed
        .dom
        .contains("data-step=\"after\" data-status=\"skipped\""));
}

/// A 503 without `Retry-After` is retried after a backoff, one with it after the server's
/// wait: the page tells the two apart, on the step's row and in its waterfall.
#[tokio::test(flavor = "multi_thread")]
async fn retry_waits_are_told_apart_by_cause() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    emu.add_fault(
        Fault::new("GET", "/api/v1/datasets/ds_0001", FaultEffect::status(503))
            .named("plain")
            .when(Trigger::First(1)),
    );
    emu.add_fault(
        Fault::new(
            "GET",
            "/api/v1/datasets/ds_0002",
            FaultEffect::status(503).retry_after(RetryAfter::Raw("0.3".into())),
        )
        .named("told")
        .when(Trigger::First(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\ndefaults:\n  retry: { max_attempts: 3, initial_interval: 50ms, max_interval: 100ms }\nsteps:\n  - id: plain\n    action: request\n    with: { path: /datasets/ds_0001 }\n  - id: told\n    action: request\n    with: { path: /datasets/ds_0002 }\n",
    );
    let page = dir.path().join("p.html");
    let cmd = avala_pipe()
        .args(["run", "--base-url", &emu.base_url(), "--html"])
        .arg(&page)
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .current_dir(dir.path());
    let out = cmd.run_async().await;
    out.success();
    assert_eq!(
        (emu.fault_delivered("plain"), emu.fault_delivered("told")),
        (1, 1)
    );
    emu.shutdown().await;
    let data = page_data(&std::fs::read_to_string(&page).unwrap());
    let of = |id: &str| -> (Vec<String>, Vec<Option<u64>>) {
        let step = data["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["id"] == id)
            .unwrap();
        (
            step["waits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|w| w["cause"].as_str().unwrap().to_string())
                .collect(),
            step["attempts"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a["status"].as_u64())
                .collect(),
        )
    };
    assert_eq!(
        of("plain"),
        (vec!["backoff".to_string()], vec![Some(503), Some(200)])
    );
    let (told, statuses) = of("told");
    assert_eq!(
        (told, statuses),
        (vec!["retry_after".to_string()], vec![Some(503), Some(200)])
    );
    let told_wait = data["steps"][1]["waits"][0]["duration_ms"]
        .as_u64()
        .unwrap();
    assert!(told_wait >= 290, "the server's 0.3 s: {told_wait} ms");
    let browsed = browse(&page);
    browsed.assert_clean();
    for cause in ["backoff", "retry_after"] {
        assert_eq!(
            browsed.count(&format!("class=\"wait {cause}\"")),
            1,
            "{cause}"
        );
        assert_eq!(
            browsed.count(&format!("<tr class=\"wait-row\" data-cause=\"{cause}\">")),
            1,
            "{cause}"
        );
    }
}
