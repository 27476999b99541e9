//! `avala-pipe run` end to end: the real binary against the in-process emulator over
//! loopback HTTP. Each test checks what the server received (pages, uploads, headers,
//! faults delivered) and what the client produced (exit code, report, files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use avala_pipe::emulator::{
    Emulator, EmulatorOptions, Fault, FaultEffect, Flavor, Origin, RetryAfter, Trigger,
};

use crate::support::{avala_pipe, root, sha256_file, start_emulator, step, write, Cmd, Output};

const KEY: &str = "avk_test_RUNKEY_0123456789";

/// `avala-pipe run FILE --format json` against `emu`, in `cwd`, with the test key; `cwd`
/// is scanned for the key and partial files afterwards.
fn run_cmd(emu: &Emulator, file: &Path, cwd: &Path, extra: &[&str]) -> Cmd {
    avala_pipe()
        .arg("run")
        .arg(file)
        .args([
            "--format",
            "json",
            "--base-url",
            &emu.base_url(),
            "--color",
            "never",
        ])
        .args(extra)
        .current_dir(cwd)
        .env("AVALA_API_KEY", KEY)
        // The pipelines speak the emulator's flavour.
        .env(
            "AVALA_API_FLAVOR",
            match emu.flavor() {
                Flavor::Documented => "documented",
                Flavor::Current => "current",
            },
        )
        .scan_dir(cwd)
}

/// Runs [`run_cmd`] to the end.
async fn run(emu: &Emulator, file: &Path, cwd: &Path, extra: &[&str]) -> Output {
    run_cmd(emu, file, cwd, extra).run_async().await
}

/// The journey of SPEC §2 in both flavours: every file stored once with its sha256,
/// the export downloaded whole from the second origin, without the key.
async fn journey(flavor: Flavor) {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            flavor,
            export_bytes: 300_000,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = root().join(match flavor {
        Flavor::Documented => "pipelines/journey.yaml",
        Flavor::Current => "pipelines/journey-current.yaml",
    });
    let out = run(&emu, &file, dir.path(), &[]).await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    let report = out.json();
    assert_eq!(report["status"], "succeeded");

    // Each data file stored exactly once, with the right digest.
    let mut expected: Vec<(String, String)> = std::fs::read_dir(root().join("pipelines/data"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .map(|p| {
            (
                p.file_name().unwrap().to_string_lossy().into_owned(),
                sha256_file(&p),
            )
        })
        .collect();
    expected.sort();
    let mut stored: Vec<(String, String)> = emu
        .uploads()
        .into_iter()
        .map(|u| (u.name, u.sha256))
        .collect();
    stored.sort();
    assert_eq!(stored, expected);
    let upload = step(&report, "upload");
    assert_eq!(upload["outputs"]["count"], expected.len());
    for f in upload["outputs"]["files"].as_array().unwrap() {
        let name = Path::new(f["path"].as_str().unwrap())
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let want = &expected.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(f["sha256"].as_str().unwrap(), want);
    }

    // The download: whole, from the storage origin, without the key.
    let export_id = report["outputs"]["export_id"].as_str().unwrap().to_string();
    let path = dir.path().join(report["outputs"]["file"].as_str().unwrap());
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 300_000);
    assert_eq!(Some(sha256_file(&path)), emu.export_sha256(&export_id));
    assert_eq!(
        report["outputs"]["sha256"].as_str(),
        emu.export_sha256(&export_id).as_deref()
    );
    let requests = emu.requests();
    let storage: Vec<_> = requests
        .iter()
        .filter(|r| r.origin == Origin::Storage)
        .collect();
    let downloads = storage.iter().filter(|r| r.method == "GET").count();
    assert_eq!(downloads, 1, "one download request");
    // Today's API: each file went to storage (presigned), never the API.
    let to_storage = storage.iter().filter(|r| r.method != "GET").count();
    match flavor {
        Flavor::Documented => assert_eq!(to_storage, 0),
        Flavor::Current => assert_eq!(to_storage, expected.len()),
    }
    assert_eq!(emu.storage_key_leaks(), 0, "the key reached storage");
    for r in &storage {
        assert!(
            !r.headers.contains_key("x-avala-api-key"),
            "the key went to the storage origin: {r:?}"
        );
    }
    for r in requests.iter().filter(|r| r.origin == Origin::Api) {
        assert_eq!(
            r.headers.get("x-avala-api-key").map(String::as_str),
            Some(KEY)
        );
        assert!(r.headers["user-agent"].starts_with("avala-pipe/"), "{r:?}");
    }
    // No temporary file left beside the download.
    let leftovers: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".part"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The key appears nowhere in what the run printed.
    assert!(!out.stdout.contains(KEY) && !out.stderr.contains(KEY));
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn journey_documented_flavour() {
    journey(Flavor::Documented).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn journey_current_flavour() {
    journey(Flavor::Current).await;
}

/// Every page is fetched exactly once, in both shapes, and `save_to` streams the items.
#[tokio::test(flavor = "multi_thread")]
async fn pagination_fetches_every_page_once() {
    for flavor in [Flavor::Documented, Flavor::Current] {
        let emu = start_emulator(
            Some(KEY),
            EmulatorOptions {
                flavor,
                datasets: 250,
                ..Default::default()
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "list.yaml",
            "version: 1\nsteps:\n  - id: all\n    action: datasets.list\n    with: { limit: 100 }\n  - id: saved\n    action: datasets.list\n    with: { limit: 100, save_to: out/datasets.jsonl }\n  - id: few\n    action: datasets.list\n    with: { limit: 100, max_items: 120 }\n",
        );
        let out = run(&emu, &file, dir.path(), &["--concurrency", "1"]).await;
        assert_eq!(out.code, Some(0), "{flavor:?}: {}", out.stderr);
        let report = out.json();
        let all = step(&report, "all");
        assert_eq!(all["outputs"]["count"], 250);
        let ids: Vec<&str> = all["outputs"]["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].as_str().unwrap())
            .collect();
        let unique: std::collections::HashSet<_> = ids.iter().collect();
        assert_eq!(unique.len(), 250, "{flavor:?}: every item once");
        let saved = step(&report, "saved");
        assert_eq!(saved["outputs"]["count"], 250);
        let lines = std::fs::read_to_string(dir.path().join("out/datasets.jsonl")).unwrap();
        assert_eq!(lines.lines().count(), 250);
        assert_eq!(step(&report, "few")["outputs"]["count"], 120);

        // 3 pages each for `all` and `saved`, 2 for `few`; no page twice.
        let lists: Vec<_> = emu
            .requests()
            .into_iter()
            .filter(|r| r.method == "GET" && r.path.trim_end_matches('/').ends_with("/datasets"))
            .collect();
        assert_eq!(lists.len(), 8, "{flavor:?}: {lists:#?}");
        let first_pages = lists
            .iter()
            .filter(|r| !r.query.contains("cursor="))
            .count();
        assert_eq!(first_pages, 3, "{flavor:?}");
        emu.shutdown().await;
    }
}

/// `Retry-After` is obeyed (seconds and HTTP-date), then the call succeeds.
#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_obeyed() {
    for (name, retry_after) in [
        ("seconds", RetryAfter::Seconds(1)),
        ("date", RetryAfter::HttpDateIn(2)),
    ] {
        let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
        emu.add_fault(
            Fault::new(
                "GET",
                "/api/v1/datasets",
                FaultEffect::status(429).retry_after(retry_after),
            )
            .named(name)
            .when(Trigger::Nth(1)),
        );
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n",
        );
        let out = run(&emu, &file, dir.path(), &[]).await;
        assert_eq!(out.code, Some(0), "{}", out.stderr);
        assert_eq!(emu.fault_delivered(name), 1);
        assert!(
            out.elapsed >= Duration::from_millis(950),
            "{name}: waited only {:?}",
            out.elapsed
        );
        let report = out.json();
        assert_eq!(step(&report, "list")["attempts"], 2);
        assert!(
            out.stderr.contains("429"),
            "the retry is logged: {}",
            out.stderr
        );
        emu.shutdown().await;
    }
}

/// A failed step fails the run, names the step, the request and the server's message,
/// and its dependants are skipped; `continue_on_error` lets them run.
#[tokio::test(flavor = "multi_thread")]
async fn failures_skip_dependants_unless_continue_on_error() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        r#"version: 1
steps:
  - id: missing
    action: request
    with: { path: /datasets/ds_9999 }
  - id: after
    action: datasets.list
    needs: [missing]
  - id: independent
    action: datasets.list
"#,
    );
    let out = run(&emu, &file, dir.path(), &["--concurrency", "1"]).await;
    assert_eq!(out.code, Some(1), "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["status"], "failed");
    let missing = step(&report, "missing");
    assert_eq!(missing["status"], "failed");
    let error = missing["error"].as_str().unwrap();
    assert!(
        error.contains("GET /api/v1/datasets/ds_9999") && error.contains("404"),
        "{error}"
    );
    assert!(
        error.to_lowercase().contains("not found"),
        "server message: {error}"
    );
    assert!(
        out.stderr.contains("missing") && out.stderr.contains("p.yaml:3"),
        "{}",
        out.stderr
    );
    assert_eq!(step(&report, "after")["status"], "skipped");
    // With one slot, `independent` would start after `missing`: a failure stops new work.
    assert_eq!(step(&report, "independent")["status"], "skipped");

    let file = write(
        dir.path(),
        "q.yaml",
        r#"version: 1
steps:
  - id: missing
    action: request
    continue_on_error: true
    with: { path: /datasets/ds_9999 }
  - id: recover
    action: datasets.list
    if: "{{ steps.missing.status == 'failed' }}"
  - id: never
    action: datasets.list
    if: "{{ steps.missing.status == 'succeeded' }}"
  - id: after_never
    action: datasets.list
    needs: [never]
"#,
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = out.json();
    assert_eq!(report["status"], "succeeded");
    assert_eq!(step(&report, "missing")["status"], "failed");
    assert_eq!(step(&report, "recover")["status"], "succeeded");
    assert_eq!(step(&report, "never")["status"], "skipped");
    assert_eq!(step(&report, "after_never")["status"], "skipped");
    emu.shutdown().await;
}

/// `for_each` over a list from an earlier step, with `max_parallel`, and typed values:
/// a list stays a list, `3.10` and `NO` stay strings.
#[tokio::test(flavor = "multi_thread")]
async fn for_each_and_typed_templates() {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            datasets: 5,
            items_per_dataset: 3,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        r#"version: 1
vars:
  version: 3.10
  flag: NO
  octal: 012
  pick: [ds_0002, ds_0004]
steps:
  - id: list
    action: datasets.list
  - id: each
    action: items.list
    for_each: "{{ steps.list.outputs.items }}"
    max_parallel: 2
    with: { dataset: "{{ item.id }}" }
    outputs:
      n: "{{ result.count }}"
      at: "{{ index }}"
  - id: picked
    action: request
    for_each: "{{ vars.pick }}"
    with: { path: "/datasets/{{ item }}" }
outputs:
  version: "{{ vars.version }}"
  flag: "{{ vars.flag }}"
  octal: "{{ vars.octal }}"
  counts: "{{ steps.each.outputs.results | map(attribute='n') | list }}"
  names: "{{ steps.picked.outputs.results | map(attribute='body.name') | list }}"
  first: "{{ steps.list.outputs.items[0] }}"
"#,
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = out.json();
    let outputs = &report["outputs"];
    assert_eq!(outputs["version"], "3.10");
    assert_eq!(outputs["flag"], "NO");
    assert_eq!(outputs["octal"], "012");
    assert_eq!(outputs["counts"], serde_json::json!([3, 3, 3, 3, 3]));
    assert_eq!(outputs["names"].as_array().unwrap().len(), 2);
    assert!(
        outputs["first"].is_object(),
        "a whole-value template keeps its type"
    );
    let each = step(&report, "each");
    assert_eq!(each["outputs"]["count"], 5);
    assert_eq!(each["iterations"].as_array().unwrap().len(), 5);
    emu.shutdown().await;
}

/// Two slow independent steps overlap (checked against the sum of their delays, with
/// a wide margin: this is about overlap, not speed).
#[tokio::test(flavor = "multi_thread")]
async fn independent_steps_run_concurrently() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    for id in ["ds_0001", "ds_0002"] {
        emu.add_fault(
            Fault::new(
                "GET",
                &format!("/api/v1/datasets/{id}"),
                FaultEffect::DelayMs(1500),
            )
            .named(id)
            .when(Trigger::Always),
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: a\n    action: request\n    with: { path: /datasets/ds_0001 }\n  - id: b\n    action: request\n    with: { path: /datasets/ds_0002 }\n",
    );
    let out = run(&emu, &file, dir.path(), &["--concurrency", "2"]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    assert_eq!(emu.fault_delivered("ds_0001"), 1);
    assert_eq!(emu.fault_delivered("ds_0002"), 1);
    let report = out.json();
    assert!(
        report["duration_ms"].as_u64().unwrap() < 2900,
        "steps did not overlap: {report:#}"
    );
    emu.shutdown().await;
}

/// An export that fails ends the run at once with the server's message and the id.
#[tokio::test(flavor = "multi_thread")]
async fn failed_export_fails_with_the_servers_message() {
    for flavor in [Flavor::Documented, Flavor::Current] {
        let emu = start_emulator(
            Some(KEY),
            EmulatorOptions {
                flavor,
                fail_export: true,
                ..Default::default()
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            "version: 1\nsteps:\n  - id: make\n    action: exports.create\n    with: { dataset_id: ds_0001 }\n  - id: wait\n    action: exports.wait\n    with: { export: \"{{ steps.make.outputs.id }}\", interval: 100ms }\n",
        );
        let out = run(&emu, &file, dir.path(), &[]).await;
        assert_eq!(out.code, Some(1), "{}", out.stderr);
        let report = out.json();
        let id = step(&report, "make")["outputs"]["id"]
            .as_str()
            .unwrap()
            .to_string();
        let error = step(&report, "wait")["error"].as_str().unwrap().to_string();
        assert!(
            error.contains(&id) && error.contains("failed"),
            "{flavor:?}: {error}"
        );
        emu.shutdown().await;
    }
}

/// Every example pipeline runs to success with `--emulator`.
#[tokio::test(flavor = "multi_thread")]
async fn every_example_pipeline_runs_with_the_emulator() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(root().join("pipelines"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3);
    for file in files {
        let dir = tempfile::tempdir().unwrap();
        let out = avala_pipe()
            .arg("run")
            .arg(&file)
            .args(["--emulator", "--format", "json"])
            .current_dir(dir.path())
            // Each file as a user runs it: its own flavour, else the binary's default.
            .env_remove("AVALA_API_FLAVOR")
            .scan_dir(dir.path())
            .run_async()
            .await;
        assert_eq!(out.code, Some(0), "{}: {}", file.display(), out.stderr);
        let report = out.json();
        assert_eq!(report["status"], "succeeded", "{}", file.display());
        for step in report["steps"].as_array().unwrap() {
            assert_ne!(step["status"], "failed", "{}: {step:#}", file.display());
        }
    }
}

/// Invocation problems are exit 2 before any request.
#[tokio::test(flavor = "multi_thread")]
async fn invocation_errors_send_nothing() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nvars:\n  dataset: ds_0001\nsteps:\n  - id: up\n    action: items.upload\n    with: { dataset: \"{{ vars.dataset }}\", files: \"nothing-here/*.jsonl\" }\n",
    );
    // No file matches the glob.
    let out = run(&emu, &file, dir.path(), &[]).await;
    assert_eq!(out.code, Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("matched no file"), "{}", out.stderr);
    // An undeclared --var.
    let out = run(&emu, &file, dir.path(), &["--var", "datset=x"]).await;
    assert_eq!(out.code, Some(2));
    assert!(
        out.stderr.contains("did you mean `dataset`"),
        "{}",
        out.stderr
    );
    // Plain http to a non-loopback host.
    let out = avala_pipe()
        .args(["run"])
        .arg(&file)
        .args(["--base-url", "http://api.example.com/api/v1"])
        .env("AVALA_API_KEY", KEY)
        .run_async()
        .await;
    out.code(2);
    // No key for a real run.
    let out = avala_pipe()
        .args(["run"])
        .arg(&file)
        .args(["--base-url", &emu.base_url()])
        .run_async()
        .await;
    out.code(2).stderr_has("AVALA_API_KEY");
    assert!(
        emu.requests().is_empty(),
        "nothing may be sent: {:?}",
        emu.requests()
    );
    emu.shutdown().await;
}

/// A system proxy never sees loopback traffic: plain http to loopback is allowed only
/// because the key stays on this machine.
#[tokio::test(flavor = "multi_thread")]
async fn a_proxy_never_carries_loopback_traffic() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let trap = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    trap.set_nonblocking(true).unwrap();
    let proxy = format!("http://{}", trap.local_addr().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n",
    );
    let mut cmd = avala_pipe()
        .arg("run")
        .arg(&file)
        .args(["--base-url", &emu.base_url()])
        .env("AVALA_API_KEY", KEY);
    for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
        cmd = cmd.env(var, &proxy);
    }
    cmd.run_async().await.success();
    assert!(trap.accept().is_err(), "the proxy received a connection");
    assert!(
        !emu.requests().is_empty(),
        "the emulator was reached directly"
    );
    emu.shutdown().await;
}

/// A variable that is not Unicode neither crashes a run nor shows up in its output.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn non_unicode_environment_variables_are_skipped() {
    use std::os::unix::ffi::OsStrExt as _;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n",
    );
    let odd = std::ffi::OsStr::from_bytes(b"tok_\xff_SECRETISH");
    let out = avala_pipe()
        .arg("run")
        .arg(&file)
        .args(["--emulator"])
        .env("SOME_BINARY_VAR", odd)
        .run_async()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(0), "{stderr}");
    assert!(!stderr.contains("SECRETISH"), "{stderr}");
    let out = avala_pipe()
        .arg("run")
        .arg(&file)
        .args(["--base-url", "http://127.0.0.1:9/api/v1"])
        .env("AVALA_API_KEY", odd)
        .run_async()
        .await;
    let stderr = &out.stderr;
    assert_eq!(out.code, Some(2), "{stderr}");
    assert!(
        stderr.contains("AVALA_API_KEY is not valid UTF-8") && !stderr.contains("SECRETISH"),
        "{stderr}"
    );
}

/// A secret rendered into a URL path is masked in retry warnings, not only in errors.
#[tokio::test(flavor = "multi_thread")]
async fn secrets_are_masked_in_log_lines() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    emu.add_fault(
        Fault::new(
            "GET",
            "/api/v1/partners/**",
            FaultEffect::status(503).retry_after(RetryAfter::Seconds(0)),
        )
        .named("flaky")
        .when(Trigger::First(1)),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsecrets: [PARTNER_TOKEN]\nsteps:\n  - id: sync\n    action: request\n    continue_on_error: true\n    with: { path: \"/partners/{{ secrets.PARTNER_TOKEN }}/sync\" }\n",
    );
    let out = run_cmd(&emu, &file, dir.path(), &["-vv"])
        .env("PARTNER_TOKEN", "tok_partner_42")
        .run_async()
        .await;
    assert_eq!(emu.fault_delivered("flaky"), 1);
    assert!(
        out.stderr.contains("503"),
        "the retry is logged: {}",
        out.stderr
    );
    assert!(
        !out.stderr.contains("tok_partner_42") && !out.stdout.contains("tok_partner_42"),
        "{}",
        out.stderr
    );
    emu.shutdown().await;
}

/// A downloaded file gets ordinary permissions, and a replaced file keeps its own.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread")]
async fn downloads_get_ordinary_permissions() {
    use std::os::unix::fs::PermissionsExt as _;
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: make\n    action: exports.create\n    with: { dataset_id: ds_0001 }\n  - id: wait\n    action: exports.wait\n    with: { export: \"{{ steps.make.outputs.id }}\", interval: 100ms }\n  - id: fresh\n    action: download\n    with: { url: \"{{ steps.wait.outputs.download_url }}\", to: out/fresh.json }\n  - id: replaced\n    action: download\n    with: { url: \"{{ steps.wait.outputs.download_url }}\", to: out/replaced.json }\n",
    );
    std::fs::create_dir_all(dir.path().join("out")).unwrap();
    let replaced = dir.path().join("out/replaced.json");
    std::fs::write(&replaced, "old").unwrap();
    std::fs::set_permissions(&replaced, std::fs::Permissions::from_mode(0o640)).unwrap();
    let out = run(&emu, &file, dir.path(), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    // What any new file gets here (0666 less the umask), not a temp file's private 0600.
    let ordinary = write(dir.path(), "ordinary.txt", "x");
    assert_eq!(mode(&dir.path().join("out/fresh.json")), mode(&ordinary));
    assert_eq!(
        mode(&replaced),
        0o640,
        "a replaced file keeps its permissions"
    );
    emu.shutdown().await;
}

/// A status listed in `expect` is the answer the step wants: it is not retried.
#[tokio::test(flavor = "multi_thread")]
async fn an_expected_status_is_not_retried() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    emu.add_fault(
        Fault::new("GET", "/api/v1/datasets/ds_0001", FaultEffect::status(503))
            .named("maintenance")
            .when(Trigger::Always),
    );
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: probe\n    action: request\n    with: { path: /datasets/ds_0001, expect: [200, 503] }\n",
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    assert_eq!(out.code, Some(0), "{}", out.stderr);
    let report = out.json();
    let probe = step(&report, "probe");
    assert_eq!(probe["outputs"]["status"], 503);
    assert_eq!(probe["attempts"], 1);
    assert_eq!(emu.fault_delivered("maintenance"), 1);
    emu.shutdown().await;
}

/// A vars file that is not a mapping of names to values is an invocation error that says
/// which, with the file and, where it helps, the position.
#[test]
fn a_vars_file_must_map_names_to_values() {
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nvars:\n  x: 1\nsteps:\n  - id: list\n    action: datasets.list\n",
    );
    let cases = [
        (
            "list.yaml",
            "- 1\n- 2\n",
            "list.yaml: a vars file must be a mapping of var names to values",
        ),
        (
            "keys.yaml",
            "x: 1\n[a]: 2\n",
            "keys.yaml: 2:1: var names must be strings",
        ),
        ("broken.yaml", "x: [1\n", "broken.yaml: 1:4: "),
    ];
    for (name, text, message) in cases {
        let vars = write(dir.path(), name, text);
        avala_pipe()
            .args(["run", "--dry-run", "--vars-file"])
            .arg(&vars)
            .arg(&file)
            .current_dir(dir.path())
            .run()
            .code(2)
            .stderr_has(message);
    }
}
