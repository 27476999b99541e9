//! `avala-pipe diff` and `run --dry-run --out/--diff`: two versions of the demo journey
//! (the export's format changed, a step added) diff to exactly those changes in text,
//! JSON and Markdown (snapshots); `--detailed-exitcode`; and a 5,000-step pipeline's
//! Markdown diff and step summary stay within GitHub's limits.

use std::path::{Path, PathBuf};

use avala_pipe::emulator::EmulatorOptions;

use crate::support::{avala_pipe, path, start_emulator, write};

/// The journey as committed, and a change to it: the export's format, and a new step.
fn journey_versions(dir: &Path) -> (PathBuf, PathBuf) {
    let old = std::fs::read_to_string(path("pipelines/journey.yaml")).unwrap();
    for entry in std::fs::read_dir(path("pipelines/data")).unwrap() {
        let entry = entry.unwrap();
        let to = dir.join("data").join(entry.file_name());
        std::fs::create_dir_all(to.parent().unwrap()).unwrap();
        std::fs::copy(entry.path(), to).unwrap();
    }
    let new = old
        .replace(
            "      project_id: \"{{ vars.project }}\"\n      format: json\n",
            "      project_id: \"{{ vars.project }}\"\n      format: coco\n",
        )
        .replace(
            "\noutputs:\n",
            "  - id: notify\n    action: request\n    needs: [fetch]\n    with:\n      method: POST\n      path: /webhooks/export-ready\n      json:\n        export: \"{{ steps.export.outputs.id }}\"\n        sha256: \"{{ steps.fetch.outputs.sha256 }}\"\n\noutputs:\n",
        );
    assert_ne!(old, new);
    assert!(new.contains("format: coco") && new.contains("id: notify"));
    (write(dir, "old.yaml", &old), write(dir, "new.yaml", &new))
}

/// `run FILE --dry-run --out PLAN`: saves the plan and still prints it.
fn save_plan(dir: &Path, file: &Path, name: &str) -> PathBuf {
    let plan = dir.join(name);
    let out = avala_pipe()
        .args(["run", "--dry-run", "--out"])
        .arg(&plan)
        .arg(file)
        .current_dir(dir)
        .run();
    out.success().stdout_has("Plan for pipeline");
    plan
}

fn diff(dir: &Path, old: &Path, new: &Path, extra: &[&str]) -> crate::support::Output {
    avala_pipe()
        .arg("diff")
        .arg(old)
        .arg(new)
        .args(extra)
        .current_dir(dir)
        .run()
}

#[test]
fn a_changed_journey_diffs_to_exactly_its_changes_in_every_format() {
    let dir = tempfile::tempdir().unwrap();
    let (old_file, new_file) = journey_versions(dir.path());
    let old = save_plan(dir.path(), &old_file, "old.json");
    let new = save_plan(dir.path(), &new_file, "new.json");

    let text = diff(dir.path(), &old, &new, &[]);
    text.success();
    assert!(text.stdout.starts_with(
        "Plan changes: 2 steps (1 added, 1 changed); 2 requests (1 added, 1 changed).\n"
    ));
    insta::assert_snapshot!("journey-text", text.stdout);

    let json = diff(dir.path(), &old, &new, &["--format", "json"]);
    let doc = json.success().json();
    let steps: Vec<(&str, &str)> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["id"].as_str().unwrap(), s["change"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("export", "changed"), ("notify", "added")]);
    let export = &doc["steps"][0];
    assert!(export.get("fields").is_none(), "only its request changed");
    assert_eq!(
        export["requests"][0]["body"],
        serde_json::json!([{"path": "format", "old": "json", "new": "coco"}])
    );
    insta::assert_snapshot!("journey-json", json.stdout);

    let md = diff(dir.path(), &old, &new, &["--format", "markdown"]);
    md.success();
    assert!(md.stdout.starts_with("<!-- avala-pipe plan diff -->\n"));
    insta::assert_snapshot!("journey-markdown", md.stdout);

    // `--dry-run --diff OLD` is the same diff, from the pipeline file itself.
    let inline = avala_pipe()
        .args(["run", "--dry-run", "--diff"])
        .arg(&old)
        .arg(&new_file)
        .current_dir(dir.path())
        .run();
    inline.success();
    assert_eq!(inline.stdout, text.stdout);
}

#[test]
fn the_detailed_exit_code_says_whether_the_plan_changed() {
    let dir = tempfile::tempdir().unwrap();
    let (old_file, new_file) = journey_versions(dir.path());
    let old = save_plan(dir.path(), &old_file, "old.json");
    let new = save_plan(dir.path(), &new_file, "new.json");
    diff(dir.path(), &old, &new, &["--detailed-exitcode"]).code(3);
    diff(dir.path(), &old, &old, &["--detailed-exitcode"])
        .success()
        .stdout_has("No changes: the plan is the same.");
    // Opt-in: a change alone is not a failure.
    diff(dir.path(), &old, &new, &[]).success();
    avala_pipe()
        .args(["run", "--dry-run", "--detailed-exitcode", "--diff"])
        .arg(&old)
        .arg(&new_file)
        .current_dir(dir.path())
        .run()
        .code(3);
    // Not a plan: an invocation error.
    let report = write(dir.path(), "report.json", "{\"status\": \"succeeded\"}");
    diff(dir.path(), &report, &new, &[])
        .code(2)
        .stderr_has("not a plan");
}

/// A pipeline of `n` independent requests, each to `/datasets/<prefix>-<i>`.
fn many_steps(n: usize, prefix: &str, continue_on_error: bool) -> String {
    let mut text = String::from("version: 1\nname: wide\nconcurrency: 64\nsteps:\n");
    for i in 0..n {
        text.push_str(&format!(
            "  - id: step_{i:05}_with_a_descriptive_name\n    action: request\n{}    with: {{ path: /datasets/{prefix}-{i:05}-a-long-identifier-to-fill-the-comment }}\n",
            if continue_on_error { "    continue_on_error: true\n" } else { "" }
        ));
    }
    text
}

#[test]
fn a_5000_step_diff_fits_a_github_comment() {
    let dir = tempfile::tempdir().unwrap();
    let old_file = write(dir.path(), "old.yaml", &many_steps(5000, "old", false));
    let new_file = write(dir.path(), "new.yaml", &many_steps(5000, "new", false));
    let old = save_plan(dir.path(), &old_file, "old.json");
    let new = save_plan(dir.path(), &new_file, "new.json");
    let md = diff(dir.path(), &old, &new, &["--format", "markdown"]);
    md.success();
    let body = &md.stdout;
    assert!(
        body.chars().count() <= 65_535,
        "{} characters",
        body.chars().count()
    );
    assert!(
        body.contains("**Plan changes: 5000 steps (5000 changed); 5000 requests (5000 changed).**")
    );
    assert!(
        body.contains("changed steps not listed: a GitHub comment holds at most 65535 characters"),
        "the cut is said"
    );
    // Text and JSON are not cut.
    let text = diff(dir.path(), &old, &new, &[]);
    assert_eq!(text.success().stdout.matches("\n~ step_").count(), 5000);
}

/// GitHub refuses a step summary over 1 MiB and Mermaid draws at most 50,000 characters:
/// a run of 5,000 failing steps (long error rows) stays within both.
#[tokio::test(flavor = "multi_thread")]
async fn a_5000_step_summary_stays_within_github_limits() {
    let emu = start_emulator(Some("avk_wide_0123456789"), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "wide.yaml", &many_steps(5000, "missing", true));
    let summary = dir.path().join("summary.md");
    let cmd = avala_pipe()
        .args(["run", "--quiet", "--base-url", &emu.base_url()])
        .arg(&file)
        .env("AVALA_API_KEY", "avk_wide_0123456789")
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary)
        .current_dir(dir.path())
        .timeout(std::time::Duration::from_secs(180));
    let out = cmd.run_async().await;
    emu.shutdown().await;
    // Every step failed (404), each with continue_on_error: the run succeeds.
    out.success();
    let text = std::fs::read_to_string(&summary).unwrap();
    assert!(text.len() < 1024 * 1024, "{} bytes", text.len());
    let blocks: Vec<&str> = text.split("```mermaid\n").skip(1).collect();
    assert_eq!(blocks.len(), 2, "a Gantt and the graph");
    for block in &blocks {
        let block = block.split("```").next().unwrap();
        assert!(block.len() < 50_000, "a Mermaid block of {}", block.len());
    }
    assert!(blocks[0].starts_with("gantt\n"));
    assert!(blocks[0].contains(":crit, "), "failed steps are marked");
    assert!(blocks[1].contains(":::failed"));
    assert!(text.contains("steps that ran (GitHub renders Mermaid diagrams"));
    assert!(text.contains("steps not listed: GitHub limits a step summary to 1 MiB"));
    assert!(text.contains("404"));
}

/// A saved plan is masked as the printed one: a secret never reaches the file, nor a diff.
#[test]
fn a_saved_plan_and_its_diff_never_show_a_secret() {
    let dir = tempfile::tempdir().unwrap();
    let pipeline = |path: &str| {
        format!("version: 1\nsecrets: [PARTNER_TOKEN]\nsteps:\n  - id: sync\n    action: request\n    with: {{ path: \"{path}/{{{{ secrets.PARTNER_TOKEN }}}}\" }}\n")
    };
    let plan = |name: &str, path: &str| {
        let file = write(dir.path(), &format!("{name}.yaml"), &pipeline(path));
        let out_file = dir.path().join(format!("{name}.json"));
        avala_pipe()
            .args(["run", "--dry-run", "--out"])
            .arg(&out_file)
            .arg(&file)
            .env("PARTNER_TOKEN", "tok_partner_9876")
            .current_dir(dir.path())
            .run()
            .success();
        out_file
    };
    let old = plan("old", "/partners");
    let new = plan("new", "/partners/v2");
    for file in [&old, &new] {
        let text = std::fs::read_to_string(file).unwrap();
        assert!(
            text.contains("/partners") && !text.contains("tok_partner_9876"),
            "{text}"
        );
    }
    for format in ["text", "json", "markdown"] {
        let out = diff(dir.path(), &old, &new, &["--format", format]);
        out.success().stdout_has("/partners/v2/***");
        assert!(!out.stdout.contains("tok_partner_9876"));
    }
}
