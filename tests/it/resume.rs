//! The run journal and `run --resume` (issue 13), against the emulator, its request log
//! and its stored uploads as the witness.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use avala_pipe::emulator::{EmulatorOptions, Fault, FaultEffect, Trigger};

use crate::support::{avala_pipe, start_emulator, write, Output};

const KEY: &str = "avk_test_RESUME_canary_0123456789";

/// The posts of files to a dataset so far.
fn posts_to(emu: &avala_pipe::emulator::Emulator, dataset: &str) -> usize {
    let path = format!("/api/v1/datasets/{dataset}/items");
    emu.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.trim_end_matches('/') == path)
        .count()
}

fn upload_pipeline(dir: &Path, files: usize) -> std::path::PathBuf {
    for i in 0..files {
        write(dir, &format!("data/f{i:03}.txt"), &format!("file {i}\n"));
    }
    write(
        dir,
        "upload.yaml",
        "version: 1\nsteps:\n  - id: up\n    action: items.upload\n    with:\n      dataset: ds_0001\n      files: data/*.txt\n      concurrency: 4\n",
    )
}

/// The paths of the requests the emulator received after the first `before`.
fn paths_since(emu: &avala_pipe::emulator::Emulator, before: usize) -> Vec<String> {
    emu.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect()
}

async fn run_in(dir: &Path, base: &str, args: &[&str]) -> Output {
    let cmd = avala_pipe()
        .current_dir(dir)
        .args(["run", "--base-url", base])
        .args(args.iter().copied())
        .env("AVALA_API_KEY", KEY);
    tokio::task::spawn_blocking(move || cmd.run())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn an_upload_killed_at_any_moment_resumes_storing_each_file_exactly_once() {
    const FILES: usize = 200;
    // Kill after this many files were stored (0: as soon as the first request arrives).
    let mut killed = 0;
    for (round, after) in [0usize, 1, 7, 25, 50, 80, 111, 150, 180, 196]
        .into_iter()
        .enumerate()
    {
        let emu = start_emulator(
            Some(KEY),
            EmulatorOptions {
                // Slow enough that the journal (written at most every 200 ms) records
                // stored files while the upload is still going.
                latency: Some(10),
                ..EmulatorOptions::default()
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        upload_pipeline(dir.path(), FILES);
        let base = emu.base_url();
        let mut child = Command::new(env!("CARGO_BIN_EXE_avala-pipe"))
            .args(["run", "upload.yaml", "--base-url", &base])
            .current_dir(dir.path())
            .env("AVALA_API_KEY", KEY)
            .env("AVALA_API_FLAVOR", "documented")
            .env("NO_COLOR", "1")
            .env_remove("AVALA_BASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        // The 111 round checks the dry-run's file list, which the journal's (debounced)
        // record of stored files drives: it kills only once the journal holds some.
        let journal = dir.path().join(".avala-pipe/upload.journal.jsonl");
        let journaled = |path: &Path| {
            avala_pipe::journal::load(path)
                .ok()
                .flatten()
                .and_then(|j| j.steps.get("up").map(|s| !s.files.is_empty()))
                .unwrap_or(false)
        };
        loop {
            let stored = emu.uploads().len();
            let ready = after != 111 || journaled(&journal);
            if (after == 0 && posts_to(&emu, "ds_0001") > 0)
                || (after > 0 && stored >= after && ready)
            {
                break;
            }
            if child.try_wait().unwrap().is_some() {
                // A loaded machine was too slow to kill it in time: a resume of a run
                // that ended must still send nothing twice.
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let cut = child.try_wait().unwrap().is_none();
        if cut {
            child.kill().unwrap(); // SIGKILL
            killed += 1;
        }
        assert!(
            cut || after != 111,
            "round {round}: the run ended before it could be killed with files in its journal"
        );
        child.wait().unwrap();
        // Requests the server was still answering when the client died end now.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let first_posts = posts_to(&emu, "ds_0001");
        let stored_first = emu.uploads().len();

        if after == 111 {
            // The dry-run says the upload runs again, and which files it skips.
            let plan = run_in(
                dir.path(),
                &base,
                &["upload.yaml", "--dry-run", "--resume", "--format", "json"],
            )
            .await;
            plan.success();
            let step = &plan.json()["resume"]["steps"][0];
            assert_eq!(step["reuse"], false, "{step}");
            assert!(
                step["why"].as_str().unwrap().contains("cut short"),
                "{step}"
            );
            let skipped = step["files_skipped"].as_array().unwrap().len();
            let sent = step["files_sent"].as_array().unwrap().len();
            assert_eq!(skipped + sent, FILES);
            assert!(
                skipped > 0 && skipped <= stored_first,
                "{skipped} of {stored_first}"
            );
        }
        let out = run_in(
            dir.path(),
            &base,
            &["upload.yaml", "--resume", "--format", "json"],
        )
        .await;
        out.success();
        let report = out.json();
        assert_eq!(
            report["steps"][0]["outputs"]["count"], FILES,
            "round {round}"
        );
        let uploads = emu.uploads();
        let mut names: Vec<&str> = uploads.iter().map(|u| u.name.as_str()).collect();
        names.sort();
        let expected: Vec<String> = (0..FILES).map(|i| format!("f{i:03}.txt")).collect();
        assert_eq!(
            names, expected,
            "round {round} (killed after {stored_first} stored): each file exactly once"
        );
        let posts = posts_to(&emu, "ds_0001");
        assert!(
            posts <= FILES + 4,
            "round {round}: {posts} uploads in all ({first_posts} before the kill, {stored_first} stored then)"
        );
        // The journal was never torn: the resumed run read it, and it reads now.
        let journal =
            avala_pipe::journal::load(&dir.path().join(".avala-pipe/upload.journal.jsonl"))
                .unwrap()
                .unwrap();
        assert_eq!(journal.steps["up"].status, "succeeded");
        emu.shutdown().await;
    }
    assert!(
        killed >= 9,
        "only {killed} of 10 runs were killed before they ended"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_download_that_failed_after_the_export_resumes_without_a_new_export() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    emu.add_fault(
        Fault::new("GET", "/exports/*", FaultEffect::status(503))
            .named("storage down")
            .when(Trigger::Nth(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "export.yaml",
        r#"version: 1
steps:
  - id: create
    action: exports.create
    with:
      dataset_id: ds_0001
  - id: wait
    action: exports.wait
    with:
      export: "{{ steps.create.outputs.id }}"
      interval: 10ms
  - id: fetch
    action: download
    retry: { max_attempts: 1 }
    with:
      url: "{{ steps.wait.outputs.download_url }}"
      to: out/export.jsonl
"#,
    );
    let base = emu.base_url();
    let first = run_in(dir.path(), &base, &["export.yaml"]).await;
    first.code(1);
    assert_eq!(emu.fault_delivered("storage down"), 1);
    let before = emu.requests().len();

    let out = run_in(
        dir.path(),
        &base,
        &["export.yaml", "--resume", "--format", "json"],
    )
    .await;
    out.success();
    let sent: Vec<_> = emu.requests()[before..]
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    assert!(
        !sent
            .iter()
            .any(|(m, p)| m == "POST" && p.contains("/exports")),
        "{sent:?}"
    );
    let polls = sent
        .iter()
        .filter(|(_, p)| p.starts_with("/api/v1/exports/"))
        .count();
    assert!(polls <= 1, "{sent:?}");
    let downloads = sent
        .iter()
        .filter(|(_, p)| p.starts_with("/exports/"))
        .count();
    assert_eq!(downloads, 1, "{sent:?}");
    let report = out.json();
    let runs: Vec<_> = report["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["run"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs, ["reused", "reused", "ran"], "{report:#}");
    let file = dir.path().join("out/export.jsonl");
    assert_eq!(
        Some(crate::support::sha256_file(&file)),
        emu.export_sha256("exp_0001")
    );

    // Everything done: a resume sends nothing and keeps the file.
    let before = emu.requests().len();
    let summary = dir.path().join("summary.md");
    let cmd = avala_pipe()
        .current_dir(dir.path())
        .args(["run", "--base-url", &base, "export.yaml", "--resume"])
        .env("AVALA_API_KEY", KEY)
        .env("GITHUB_ACTIONS", "true")
        .env("GITHUB_STEP_SUMMARY", &summary);
    let again = tokio::task::spawn_blocking(move || cmd.run())
        .await
        .unwrap();
    again.success();
    assert_eq!(emu.requests().len(), before, "nothing left to do");
    assert!(
        again.stderr.contains("3 of them reused"),
        "{}",
        again.stderr
    );
    let table = std::fs::read_to_string(&summary).unwrap();
    assert_eq!(table.matches("(reused)").count(), 3, "{table}");
    // A download whose file changed is done again (and only it).
    std::fs::write(&file, "tampered").unwrap();
    let fixed = run_in(
        dir.path(),
        &base,
        &["export.yaml", "--resume", "--format", "json"],
    )
    .await;
    fixed.success();
    assert_eq!(fixed.json()["steps"][2]["run"], "ran");
    assert_eq!(emu.requests().len(), before + 1);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_changed_var_refuses_a_resume_and_force_reruns_only_its_dependants() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "vars.yaml",
        r#"version: 1
vars:
  a: ds_0001
  b: ds_0002
steps:
  - id: one
    action: request
    with:
      path: "/datasets/{{ vars.a }}"
  - id: two
    action: request
    with:
      path: "/datasets/{{ vars.b }}"
  - id: after_one
    action: request
    with:
      path: "/datasets/{{ steps.one.outputs.body.id }}/items"
  - id: after_two
    action: request
    with:
      path: "/datasets/{{ steps.two.outputs.body.id }}/items"
"#,
    );
    let base = emu.base_url();
    run_in(dir.path(), &base, &["vars.yaml"]).await.success();

    let refused = run_in(
        dir.path(),
        &base,
        &["vars.yaml", "--resume", "--var", "b=ds_0003"],
    )
    .await;
    refused.code(2);
    assert!(refused.stderr.contains("var `b`"), "{}", refused.stderr);
    assert!(!refused.stderr.contains("var `a`"), "{}", refused.stderr);
    assert!(
        !refused.stderr.contains("ds_0003"),
        "no values: {}",
        refused.stderr
    );

    // The dry-run says what a forced resume would do.
    let plan = run_in(
        dir.path(),
        &base,
        &[
            "vars.yaml",
            "--dry-run",
            "--resume=force",
            "--var",
            "b=ds_0003",
            "--format",
            "json",
        ],
    )
    .await;
    plan.success();
    let reuse: Vec<bool> = plan.json()["resume"]["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["reuse"].as_bool().unwrap())
        .collect();
    assert_eq!(reuse, [true, false, true, false], "{}", plan.stdout);

    let before = emu.requests().len();
    let forced = run_in(
        dir.path(),
        &base,
        &[
            "vars.yaml",
            "--resume=force",
            "--var",
            "b=ds_0003",
            "--format",
            "json",
        ],
    )
    .await;
    forced.success();
    let runs: Vec<String> = forced.json()["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["run"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(runs, ["reused", "ran", "reused", "ran"]);
    let paths = paths_since(&emu, before);
    assert_eq!(
        paths,
        ["/api/v1/datasets/ds_0003", "/api/v1/datasets/ds_0003/items"]
    );
    emu.shutdown().await;
}

/// Every encoding of `secret` a journal must not contain.
fn encodings(secret: &str) -> Vec<String> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;
    let percent = |upper: bool| {
        secret
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                    (b as char).to_string()
                } else if upper {
                    format!("%{b:02X}")
                } else {
                    format!("%{b:02x}")
                }
            })
            .collect::<String>()
    };
    let json = serde_json::to_string(secret).unwrap();
    let mut out = vec![
        secret.to_string(),
        json.trim_matches('"').to_string(),
        percent(true),
        percent(false),
    ];
    // base64 at every alignment: the encoding of the secret's whole 3-byte groups.
    for skip in 0..3 {
        let whole = &secret.as_bytes()[skip..];
        let whole = &whole[..whole.len() / 3 * 3];
        out.push(STANDARD.encode(whole).trim_end_matches('=').to_string());
        out.push(URL_SAFE_NO_PAD.encode(whole));
    }
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn the_journal_holds_no_key_and_no_secret_in_any_encoding() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let token = "tok\"en/ü+ sec=RET_42";
    write(
        dir.path(),
        "secret.yaml",
        r#"version: 1
secrets: [TOKEN]
vars:
  label: "{{ secrets.TOKEN }}-label"
steps:
  - id: plain
    action: request
    with:
      path: /datasets/ds_0001
  - id: echo
    action: request
    with:
      path: /datasets
      query:
        q: "{{ secrets.TOKEN }}"
    outputs:
      token: "{{ secrets.TOKEN }}"
      label: "{{ vars.label }}"
      pct: "{{ secrets.TOKEN | urlencode }}"
"#,
    );
    let base = emu.base_url();
    let run = |args: &'static [&'static str]| {
        let cmd = avala_pipe()
            .current_dir(dir.path())
            .args(["run", "--base-url", &base, "secret.yaml"])
            .args(args.iter().copied())
            .env("AVALA_API_KEY", KEY)
            .env("TOKEN", token);
        tokio::task::spawn_blocking(move || cmd.run())
    };
    run(&[]).await.unwrap().success();
    let path = dir.path().join(".avala-pipe/secret.journal.jsonl");
    let text = std::fs::read_to_string(&path).unwrap();
    for secret in [KEY, token] {
        for form in encodings(secret) {
            assert!(
                !text.contains(&form),
                "the journal contains {form:?}:\n{text}"
            );
        }
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    // The step whose outputs held the secret is not reused (its outputs were masked).
    let resumed = run(&["--resume", "--format", "json"]).await.unwrap();
    resumed.success();
    let report = resumed.json();
    assert_eq!(report["steps"][0]["run"], "reused", "{report:#}");
    assert_eq!(report["steps"][1]["run"], "ran", "{report:#}");
    emu.shutdown().await;
}

/// Today's flow (`datasets.upload`, current flavour): a run killed mid-way, then resumed,
/// makes one dataset holding each file once; the resume continues the upload session.
#[tokio::test(flavor = "multi_thread")]
async fn a_killed_presigned_upload_resumes_in_its_session_in_the_current_flavour() {
    use avala_pipe::emulator::{Flavor, Origin};
    const FILES: usize = 60;
    let storage_puts = |emu: &avala_pipe::emulator::Emulator| {
        emu.requests()
            .iter()
            .filter(|r| r.origin == Origin::Storage && r.method == "PUT")
            .count()
    };
    for after in [0usize, 13, 41] {
        let emu = start_emulator(
            Some(KEY),
            EmulatorOptions {
                flavor: Flavor::Current,
                latency: Some(3),
                ..EmulatorOptions::default()
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        for i in 0..FILES {
            write(
                dir.path(),
                &format!("data/f{i:03}.txt"),
                &format!("file {i}\n"),
            );
        }
        write(
            dir.path(),
            "today.yaml",
            "version: 1\napi:\n  flavor: current\nsteps:\n  - id: up\n    action: datasets.upload\n    with:\n      name: Resumed\n      files: data/*.txt\n      concurrency: 4\n      wait: false\n",
        );
        let base = emu.base_url();
        let mut child = Command::new(env!("CARGO_BIN_EXE_avala-pipe"))
            .args(["run", "today.yaml", "--base-url", &base])
            .current_dir(dir.path())
            .env("AVALA_API_KEY", KEY)
            .env("NO_COLOR", "1")
            .env_remove("AVALA_API_FLAVOR")
            .env_remove("AVALA_BASE_URL")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let started = Instant::now();
        while storage_puts(&emu) < after.max(1) {
            assert!(
                child.try_wait().unwrap().is_none(),
                "the run ended before the kill"
            );
            assert!(started.elapsed() < Duration::from_secs(30));
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        child.kill().unwrap();
        child.wait().unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;

        let out = run_in(
            dir.path(),
            &base,
            &["today.yaml", "--resume", "--format", "json"],
        )
        .await;
        out.success();
        let mut names: Vec<String> = emu.uploads().into_iter().map(|u| u.name).collect();
        names.sort();
        let expected: Vec<String> = (0..FILES).map(|i| format!("f{i:03}.txt")).collect();
        assert_eq!(
            names, expected,
            "killed after {after} PUTs: each file exactly once"
        );
        let puts = storage_puts(&emu);
        assert!(puts <= FILES + 4, "{puts} PUTs to storage in all");
        let finalizes = emu
            .requests()
            .iter()
            .filter(|r| {
                r.method == "POST"
                    && r.path.trim_end_matches('/') == "/api/v1/datasets/manual-upload"
            })
            .count();
        assert_eq!(finalizes, 1);
        emu.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_for_each_resumes_from_the_iteration_that_failed() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    emu.add_fault(
        Fault::new("GET", "/api/v1/datasets/ds_0002", FaultEffect::status(503))
            .named("second fails")
            .when(Trigger::Nth(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "each.yaml",
        r#"version: 1
steps:
  - id: each
    action: request
    for_each: [ds_0001, ds_0002, ds_0003]
    max_parallel: 1
    retry: { max_attempts: 1 }
    with:
      path: "/datasets/{{ item }}"
  - id: after
    action: request
    with:
      path: "/datasets/{{ steps.each.outputs.results[2].body.id }}/items"
"#,
    );
    let base = emu.base_url();
    run_in(
        dir.path(),
        &base,
        &["each.yaml", "--journal", "j/each.json"],
    )
    .await
    .code(1);
    assert_eq!(emu.fault_delivered("second fails"), 1);
    assert!(dir.path().join("j/each.json").is_file());
    assert!(!dir.path().join(".avala-pipe").exists());
    let before = emu.requests().len();
    let out = run_in(
        dir.path(),
        &base,
        &[
            "each.yaml",
            "--journal",
            "j/each.json",
            "--resume",
            "--format",
            "json",
        ],
    )
    .await;
    out.success();
    let paths = paths_since(&emu, before);
    assert_eq!(
        paths,
        [
            "/api/v1/datasets/ds_0002",
            "/api/v1/datasets/ds_0003",
            "/api/v1/datasets/ds_0003/items"
        ]
    );
    let report = out.json();
    assert_eq!(report["steps"][0]["outputs"]["count"], 3);
    assert_eq!(
        report["steps"][0]["outputs"]["results"][0]["body"]["id"], "ds_0001",
        "the reused iteration's output is restored"
    );
    // --no-journal writes none, and cannot be combined with --resume.
    run_in(dir.path(), &base, &["each.yaml", "--no-journal"])
        .await
        .success();
    assert!(!dir.path().join(".avala-pipe").exists());
    run_in(
        dir.path(),
        &base,
        &["each.yaml", "--no-journal", "--resume"],
    )
    .await
    .code(2);
    emu.shutdown().await;
}

/// A `for_each` whose `results` nothing read was journaled without them: once a step reads
/// them (the file changed: `--resume=force`), the dry-run says it runs, and the run runs
/// it, its iterations reused one by one.
#[tokio::test(flavor = "multi_thread")]
async fn a_for_each_without_kept_results_runs_again_once_they_are_read() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let each = "version: 1\nsteps:\n  - id: each\n    action: request\n    for_each: [ds_0001, ds_0002, ds_0003]\n    with:\n      path: \"/datasets/{{ item }}\"\n";
    write(dir.path(), "each.yaml", each);
    let base = emu.base_url();
    run_in(dir.path(), &base, &["each.yaml"]).await.success();
    let reader = "  - id: after\n    action: request\n    with:\n      path: \"/datasets/{{ steps.each.outputs.results[2].body.id }}/items\"\n";
    write(dir.path(), "each.yaml", &format!("{each}{reader}"));
    let plan = run_in(
        dir.path(),
        &base,
        &[
            "each.yaml",
            "--dry-run",
            "--resume=force",
            "--format",
            "json",
        ],
    )
    .await;
    plan.success();
    let first = &plan.json()["resume"]["steps"][0];
    assert_eq!(first["reuse"], false, "{}", plan.stdout);
    assert!(
        first["why"].as_str().unwrap().contains("`results`"),
        "{}",
        plan.stdout
    );
    let before = emu.requests().len();
    let out = run_in(
        dir.path(),
        &base,
        &["each.yaml", "--resume=force", "--format", "json"],
    )
    .await;
    out.success();
    let paths = paths_since(&emu, before);
    assert_eq!(paths, ["/api/v1/datasets/ds_0003/items"]);
    assert_eq!(
        out.json()["steps"][0]["outputs"]["results"][2]["body"]["id"],
        "ds_0003"
    );
    emu.shutdown().await;
}

/// `datasets.create` that created its dataset but failed while waiting for it: the resume
/// re-attaches to that dataset (by its uid) instead of creating another.
#[tokio::test(flavor = "multi_thread")]
async fn a_created_dataset_is_re_attached_to_not_created_again() {
    use avala_pipe::emulator::Flavor;
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            flavor: Flavor::Current,
            ..EmulatorOptions::default()
        },
    )
    .await;
    emu.add_fault(
        Fault::new("GET", "/api/v1/datasets/*", FaultEffect::status(503))
            .named("first poll fails")
            .when(Trigger::Nth(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "create.yaml",
        "version: 1\napi:\n  flavor: current\nsteps:\n  - id: ds\n    action: datasets.create\n    retry: { max_attempts: 1 }\n    with:\n      name: Re-attached\n",
    );
    let base = emu.base_url();
    let posts = |emu: &avala_pipe::emulator::Emulator| {
        emu.requests()
            .iter()
            .filter(|r| r.method == "POST" && r.path.trim_end_matches('/') == "/api/v1/datasets")
            .count()
    };
    let cmd = |args: &'static [&'static str]| {
        avala_pipe()
            .current_dir(dir.path())
            .args(["run", "--base-url", &base, "create.yaml"])
            .args(args.iter().copied())
            .env("AVALA_API_KEY", KEY)
            .env_remove("AVALA_API_FLAVOR")
    };
    let first = cmd(&[]);
    let first = tokio::task::spawn_blocking(move || first.run())
        .await
        .unwrap();
    first.code(1);
    assert_eq!(
        emu.fault_delivered("first poll fails"),
        1,
        "{}",
        first.stderr
    );
    assert_eq!(posts(&emu), 1);
    let again = cmd(&["--resume", "--format", "json"]);
    let again = tokio::task::spawn_blocking(move || again.run())
        .await
        .unwrap();
    again.success();
    assert_eq!(posts(&emu), 1, "no second dataset");
    assert_eq!(again.json()["steps"][0]["outputs"]["name"], "Re-attached");
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_default_journal_that_cannot_be_written_does_not_stop_a_run() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    write(
        dir.path(),
        "one.yaml",
        "version: 1\nsteps:\n  - id: one\n    action: request\n    with:\n      path: /datasets\n",
    );
    // A file where the journal's folder would be.
    write(dir.path(), ".avala-pipe", "not a folder");
    let base = emu.base_url();
    let out = run_in(dir.path(), &base, &["one.yaml"]).await;
    out.success();
    assert!(
        out.stderr.contains("running without a journal"),
        "{}",
        out.stderr
    );
    // Asked for, it is an error before anything is sent.
    let before = emu.requests().len();
    run_in(
        dir.path(),
        &base,
        &["one.yaml", "--journal", ".avala-pipe/x.json"],
    )
    .await
    .code(2);
    assert_eq!(emu.requests().len(), before);
    emu.shutdown().await;
}
