//! avala-pipe in CI and in logs: JSON log lines, JUnit, GitHub Actions annotations, the step
//! summary and outputs, plain output when piped, and errors that name what to fix.

use std::path::Path;

use avala_pipe::emulator::EmulatorOptions;
use serde_json::Value;

use crate::support::{avala_pipe, start_emulator};

const KEY: &str = "avk_test_CIKEY_abcdef123456";

/// A pipeline with one step that fails (404) and one that succeeds.
fn failing_pipeline(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("ci.yaml");
    std::fs::write(
        &path,
        r#"version: 1
name: ci-demo
steps:
  - id: list
    action: datasets.list
  - id: missing
    action: request
    with: { path: /datasets/ds_9999 }
  - id: picked
    action: items.list
    for_each: ["ds_0001", "ds_0002"]
    with: { dataset: "{{ item }}", limit: 5, max_items: 5 }
outputs:
  count: "{{ steps.list.outputs.count }}"
  multi: "line one\nline two"
"#,
    )
    .unwrap();
    path
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = failing_pipeline(dir.path());
    let out = avala_pipe()
        .args([
            "run",
            "--log-format",
            "json",
            "-v",
            "--base-url",
            &emu.base_url(),
        ])
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .current_dir(dir.path())
        .scan_dir(dir.path())
        .run_async()
        .await;
    out.code(1);
    let mut steps_finished = 0;
    for line in out.stderr.lines() {
        let v: Value = serde_json::from_str(line)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {line:?}\n{}", out.stderr));
        assert!(v["level"].is_string(), "{line}");
        assert!(v["message"].is_string(), "{line}");
        if v["event"] == "step_finished" {
            steps_finished += 1;
            assert!(v["step"].is_string() && v["status"].is_string(), "{line}");
        }
        if v["event"] == "step_finished" && v["status"] == "failed" {
            assert_eq!(v["level"], "ERROR");
            assert_eq!(v["step"], "missing");
            assert!(v["message"].as_str().unwrap().contains("404"), "{line}");
            assert_eq!(v["line"], 6, "{line}");
        }
    }
    assert_eq!(steps_finished, 3, "{}", out.stderr);
    assert!(!out.stderr.contains(KEY));
    // Invalid files are JSON lines too, with their position.
    let out = avala_pipe()
        .args([
            "--log-format",
            "json",
            "validate",
            "tests/fixtures/invalid/unknown-input.yaml",
        ])
        .run_async()
        .await;
    out.code(2);
    let v: Value = serde_json::from_str(out.stderr.lines().next().unwrap()).unwrap();
    assert_eq!(
        (v["line"].as_u64(), v["column"].as_u64()),
        (Some(6), Some(7))
    );
    assert_eq!(v["suggestion"], "limit");
}

#[tokio::test(flavor = "multi_thread")]
async fn junit_has_a_case_per_step_and_iteration() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = failing_pipeline(dir.path());
    let junit = dir.path().join("junit.xml");
    let out = avala_pipe()
        .args([
            "run",
            "--concurrency",
            "4",
            "--base-url",
            &emu.base_url(),
            "--junit",
        ])
        .arg(&junit)
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .current_dir(dir.path())
        .scan_dir(dir.path())
        .run_async()
        .await;
    out.code(1);
    // Parse it with a real XML parser.
    let script = r#"
import sys, xml.etree.ElementTree as ET
root = ET.parse(sys.argv[1]).getroot()
for case in root.iter('testcase'):
    kind = 'failure' if case.find('failure') is not None else ('skipped' if case.find('skipped') is not None else 'ok')
    msg = case.find('failure').get('message') if kind == 'failure' else ''
    print(case.get('name'), kind, msg)
"#;
    let parsed = std::process::Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&junit)
        .output()
        .unwrap();
    assert!(
        parsed.status.success(),
        "{}",
        String::from_utf8_lossy(&parsed.stderr)
    );
    let text = String::from_utf8(parsed.stdout).unwrap();
    let lines: Vec<&str> = text.lines().map(str::trim_end).collect();
    assert!(lines.contains(&"list ok"), "{text}");
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("missing failure") && l.contains("404")),
        "{text}"
    );
    // The for_each step and each of its iterations (it ran: steps in flight finish,
    // or it was skipped when the failure came first: then it has no iterations).
    let picked = lines
        .iter()
        .find(|l| l.starts_with("picked "))
        .expect("picked");
    if picked.ends_with("ok") {
        assert!(
            lines.contains(&"picked[0] ok") && lines.contains(&"picked[1] ok"),
            "{text}"
        );
    }
    assert!(!std::fs::read_to_string(&junit).unwrap().contains(KEY));
}

#[tokio::test(flavor = "multi_thread")]
async fn github_actions_annotations_summary_and_outputs() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = failing_pipeline(dir.path());
    let summary = dir.path().join("summary.md");
    let outputs = dir.path().join("outputs.txt");
    std::fs::write(&summary, "# earlier content\n").unwrap();
    let out = avala_pipe()
        .args([
            "run",
            "--github-output",
            "--format",
            "json",
            "--base-url",
            &emu.base_url(),
        ])
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .env("GITHUB_OUTPUT", &outputs)
        .current_dir(dir.path())
        .scan_dir(dir.path())
        .run_async()
        .await;
    out.code(1);
    // stdout stays one JSON document; annotations go to stderr.
    let report: Value = serde_json::from_str(&out.stdout).expect("stdout is the report");
    assert_eq!(report["status"], "failed");
    let annotation = out
        .stderr
        .lines()
        .find(|l| l.starts_with("::error "))
        .unwrap_or_else(|| panic!("no annotation:\n{}", out.stderr));
    assert!(
        annotation.contains(&format!("file={}", file.display())),
        "{annotation}"
    );
    assert!(annotation.contains(",line=6,"), "{annotation}");
    assert!(
        annotation.contains("title=step missing (request) failed::"),
        "{annotation}"
    );
    assert!(annotation.contains("404"), "{annotation}");
    let md = std::fs::read_to_string(&summary).unwrap();
    assert!(
        md.starts_with("# earlier content\n"),
        "appended, not replaced"
    );
    assert!(
        md.contains("| step | action | status | duration | attempts | error |"),
        "{md}"
    );
    assert!(md.contains("| `missing` | request | ❌ failed |"), "{md}");
    assert!(
        md.contains("| `list` | datasets.list | ✅ succeeded |"),
        "{md}"
    );
    let written = std::fs::read_to_string(&outputs).unwrap();
    let lines: Vec<&str> = written.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("count<<"))
        .expect("count output");
    assert_eq!(lines[at + 1], "3");
    let at = lines
        .iter()
        .position(|l| l.starts_with("multi<<"))
        .expect("multi output");
    assert_eq!(&lines[at + 1..at + 3], &["line one", "line two"]);
    assert_eq!(lines[at + 3], lines[at].split_once("<<").unwrap().1);

    // Invalid files become annotations at their position.
    let out = avala_pipe()
        .args(["validate", "tests/fixtures/invalid/unknown-input.yaml"])
        .env("GITHUB_ACTIONS", "true")
        .run_async()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("::error file=tests/fixtures/invalid/unknown-input.yaml,line=6,col=7,title=invalid pipeline::unknown key `limt`"),
        "{}",
        out.stderr
    );
    // --github-output outside GitHub Actions is an invocation error.
    let out = avala_pipe()
        .args(["run", "--github-output", "--dry-run"])
        .arg(&file)
        .env_remove("GITHUB_OUTPUT")
        .run_async()
        .await;
    out.code(2);
    assert!(out.stderr.contains("GITHUB_OUTPUT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn piped_output_is_plain() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = failing_pipeline(dir.path());
    for ci in [None, Some("true")] {
        let mut cmd = avala_pipe()
            .args(["run", "--color", "auto", "--base-url", &emu.base_url()])
            .arg(&file)
            .env("AVALA_API_KEY", KEY)
            .env_remove("NO_COLOR")
            .current_dir(dir.path())
            .scan_dir(dir.path());
        if let Some(v) = ci {
            cmd = cmd.env("CI", v);
        }
        let out = cmd.run_async().await;
        out.code(1);
        for text in [&out.stdout, &out.stderr] {
            assert!(
                !text.contains('\x1b'),
                "ANSI escape in piped output: {text:?}"
            );
            assert!(
                !text.contains('\r'),
                "carriage return in piped output: {text:?}"
            );
        }
        assert!(
            out.stderr.contains("▶ list (datasets.list) started"),
            "{}",
            out.stderr
        );
        assert!(out.stderr.contains("run failed in"), "{}", out.stderr);
    }
    // -q: only the failure.
    let out = avala_pipe()
        .args(["run", "-q", "--base-url", &emu.base_url()])
        .arg(&file)
        .env("AVALA_API_KEY", KEY)
        .current_dir(dir.path())
        .scan_dir(dir.path())
        .run_async()
        .await;
    out.code(1);
    assert!(!out.stderr.contains("started"), "{}", out.stderr);
    assert!(out.stderr.contains("✘ missing"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread")]
async fn errors_name_the_key_variable_never_the_key() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = failing_pipeline(dir.path());
    let wrong = "avk_WRONG_key_0000000000";
    let out = avala_pipe()
        .args(["run", "--format", "json", "--base-url", &emu.base_url()])
        .arg(&file)
        .env("AVALA_API_KEY", wrong)
        .current_dir(dir.path())
        .scan_dir(dir.path())
        .run_async()
        .await;
    out.code(1);
    let report: Value = serde_json::from_str(&out.stdout).unwrap();
    let error = report["steps"][0]["error"].as_str().unwrap();
    assert!(
        error.contains("401") && error.contains("AVALA_API_KEY"),
        "{error}"
    );
    assert!(!out.stdout.contains(wrong) && !out.stderr.contains(wrong));
    // A missing key for a real run: exit 2, naming the variable, before any request.
    let before = emu.requests().len();
    let out = avala_pipe()
        .args(["run", "--base-url", &emu.base_url()])
        .arg(&file)
        .env_remove("AVALA_API_KEY")
        .run_async()
        .await;
    out.code(2);
    assert!(
        out.stderr.contains("AVALA_API_KEY is not set"),
        "{}",
        out.stderr
    );
    assert_eq!(emu.requests().len(), before);
}

#[tokio::test(flavor = "multi_thread")]
async fn help_has_examples_for_every_command() {
    for cmd in [
        "run",
        "validate",
        "graph",
        "schema",
        "emulator",
        "completions",
        "man",
    ] {
        let out = avala_pipe().args([cmd, "--help"]).run_async().await;
        out.success();
        assert!(
            out.stdout.contains("Example"),
            "{cmd} --help has no example:\n{}",
            out.stdout
        );
    }
    for shell in ["bash", "zsh", "fish"] {
        let out = avala_pipe().args(["completions", shell]).run_async().await;
        out.success();
        assert!(out.stdout.contains("avala-pipe"), "{shell}");
    }
    let out = avala_pipe().arg("man").run_async().await;
    out.success();
    assert!(
        out.stdout.contains(".TH") && out.stdout.contains("avala\\-pipe"),
        "{}",
        &out.stdout[..200.min(out.stdout.len())]
    );
}

/// On a terminal (a pseudo-terminal from `script`, outside CI) the progress is live: the
/// display redraws in place, while the finished lines stay as in plain mode.
#[test]
fn a_terminal_gets_a_live_display() {
    let journey = crate::support::path("pipelines/journey.yaml");
    let dir = tempfile::tempdir().unwrap();
    let out = avala_pipe()
        .arg("run")
        .arg(&journey)
        .arg("--emulator")
        .on_terminal()
        .current_dir(dir.path())
        .scan_dir(dir.path())
        .env("TERM", "xterm-256color")
        .env_remove("NO_COLOR")
        .run();
    let text = &out.stdout;
    assert_eq!(out.code, Some(0), "{text}");
    assert!(text.contains("✔ ready succeeded"), "{text}");
    assert!(text.contains("run succeeded"), "{text}");
    // The spinner of the one-second export wait is drawn and redrawn in place.
    assert!(
        text.contains("ready (exports.wait)"),
        "no live line: {text:?}"
    );
    assert!(text.contains("\u{1b}["), "no cursor control: {text:?}");
    // ... which is exactly what piped output never has (see piped_output_is_plain).
    assert!(
        !text.contains("▶ ready"),
        "plain start lines on a terminal: {text:?}"
    );
}
