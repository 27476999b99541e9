//! Measured with a client nobody here wrote: Avala's official Python SDK (PyPI `avala`
//! 0.10.0) against the emulator's current flavour. The virtualenv is created on first use
//! under `target/sdk-venv` (needs only `python3` and access to PyPI); the scripts are in
//! `tests/sdk/` and talk to 127.0.0.1 only.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use avala_pipe::emulator::{Emulator, EmulatorOptions, Flavor, Origin};
use serde_json::Value;

use crate::support::{path, sha256_file, start_emulator, write};

const SDK: &str = "avala==0.10.0";

/// `target/sdk-venv/bin/python`, creating the virtualenv if it is missing. It is built
/// beside its final place and renamed into it, so two tests never see half of one.
async fn sdk_python() -> PathBuf {
    let venv = path("target/sdk-venv");
    let python = venv.join("bin/python");
    let ready = |python: &Path| {
        std::process::Command::new(python)
            .args(["-c", "import avala, httpx, importlib.metadata as m; assert m.version('avala') == '0.10.0'"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if ready(&python) {
        return python;
    }
    let building = path(&format!("target/sdk-venv.{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&building);
    // Each step is bounded: a stuck download fails the test instead of hanging it.
    let run = |program: &Path, args: &[&str]| {
        let mut child = std::process::Command::new(program)
            .args(args)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
        let deadline = std::time::Instant::now() + Duration::from_secs(600);
        let status = loop {
            if let Some(status) = child.try_wait().expect("wait") {
                break status;
            }
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                panic!("{} {args:?} took over 10 minutes", program.display());
            }
            std::thread::sleep(Duration::from_millis(100));
        };
        assert!(status.success(), "{} {args:?} failed", program.display());
    };
    run(
        Path::new("python3"),
        &["-m", "venv", building.to_str().unwrap()],
    );
    run(
        &building.join("bin/python"),
        &[
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--timeout",
            "60",
            SDK,
        ],
    );
    if std::fs::rename(&building, &venv).is_err() {
        // Another test finished first: use its virtualenv.
        let _ = std::fs::remove_dir_all(&building);
    }
    assert!(ready(&python), "the SDK virtualenv is not usable");
    python
}

/// Runs a script of `tests/sdk` against the emulator; gives its last stdout line as JSON.
async fn run_script(emu: &Emulator, script: &str, args: &[&Path], timeout: u64) -> Value {
    let python = sdk_python().await;
    let home = tempfile::tempdir().unwrap();
    let mut command = tokio::process::Command::new(python);
    command
        .arg(path("tests/sdk").join(script))
        .args(args)
        .current_dir(path("tests/sdk"))
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", home.path())
        .env("AVALA_BASE_URL", emu.base_url())
        .env("AVALA_API_KEY", emu.demo_key())
        .env("STORAGE_ORIGIN", emu.storage_origin())
        .env("NO_PROXY", "127.0.0.1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(timeout), command.output())
        .await
        .unwrap_or_else(|_| panic!("{script} did not finish within {timeout} s"))
        .expect("python runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} failed:\n{stderr}\n{stdout}");
    assert!(
        !stdout.contains(&emu.demo_key()) && !stderr.contains(&emu.demo_key()),
        "the key was printed"
    );
    let last = stdout.lines().last().unwrap_or_default();
    serde_json::from_str(last).unwrap_or_else(|e| panic!("{script}: {e}: {stdout}\n{stderr}"))
}

fn assert_no_key_on_storage(emu: &Emulator) {
    assert_eq!(emu.storage_key_leaks(), 0);
    for r in emu.requests() {
        if r.origin == Origin::Storage {
            assert!(!r.headers.contains_key("x-avala-api-key"), "{r:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_official_sdk_lists_uploads_waits_exports_and_downloads() {
    let emu = start_emulator(
        Some("avk_sdk_test_key"),
        EmulatorOptions {
            flavor: Flavor::Current,
            multipart_threshold: 1_000_000,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("folder");
    write(&folder, "a.txt", "hello\n");
    write(&folder, "sub/b.json", &"{\"frame\": 1}\n".repeat(300));
    // Above the multipart threshold: two parts (5 MiB and the rest).
    let big: Vec<u8> = (0..6_000_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(folder.join("big.bin"), &big).unwrap();
    let download = dir.path().join("export.json");
    let s = run_script(&emu, "journey.py", &[&folder, &download], 240).await;

    let all: Vec<_> = (1..=3).map(|n| format!("ds_{n:04}")).collect();
    assert_eq!(s["all_datasets"], serde_json::json!(all));
    assert_eq!(s["has_more"], true);
    assert_eq!(s["videos"], serde_json::json!(["ds_0002"]));
    assert_eq!(s["item_url_status"], 200);
    assert_eq!(s["created_status"], "creating");
    assert_eq!(s["waited_status"], "created");
    assert_eq!(s["item_count"], 3);
    assert_eq!(
        s["uploaded_keys"],
        serde_json::json!(["a.txt", "big.bin", "sub/b.json"])
    );
    for key in ["a.txt", "big.bin", "sub/b.json"] {
        assert_eq!(
            s["uploaded_digests"][key].as_str(),
            Some(sha256_file(&folder.join(key)).as_str()),
            "{key}: the item URL serves the bytes sent"
        );
    }
    assert_eq!(s["legacy_keys"], serde_json::json!(["legacy/a.txt"]));
    assert_eq!(
        s["duplicate_slug"]["slug"][0],
        "dataset with this slug already exists."
    );
    let tasks = s["tasks"].as_object().unwrap();
    assert!(!tasks.is_empty() && tasks.values().all(|v| v == "completed"));
    assert_eq!(s["export_created_status"], "requested");
    assert_eq!(s["export_status"], "exported");
    assert_eq!(
        s["export_dataset_keys"],
        serde_json::json!(["a.txt", "big.bin", "sub/b.json"])
    );
    let export_id = s["export_uid"].as_str().unwrap();
    assert_eq!(Some(sha256_file(&download)), emu.export_sha256(export_id));
    assert!(s["rate_limit"]["limit"].is_string(), "{}", s["rate_limit"]);

    // The emulator saw all three storage protocols, and no key on its storage origin.
    let requests = emu.requests();
    let storage = |method: &str, query_has: &str| {
        requests.iter().any(|r| {
            r.origin == Origin::Storage
                && r.method == method
                && r.path.starts_with("/bucket")
                && r.query.contains(query_has)
                && r.status / 100 == 2
        })
    };
    assert!(storage("PUT", "partNumber=2"), "a multipart part was sent");
    assert!(storage("PUT", "X-Amz-Signature"), "a single PUT was sent");
    assert!(storage("POST", ""), "the legacy form was sent");
    assert_no_key_on_storage(&emu);
    let stored: Vec<_> = emu
        .uploads()
        .into_iter()
        .map(|u| (u.name, u.sha256))
        .collect();
    assert!(stored.contains(&("big.bin".into(), sha256_file(&folder.join("big.bin")))));

    // The same journey as an avala-pipe pipeline, against the same emulator, sees what the
    // SDK uploaded: the dataset by uid, its items by owner/slug, its export.
    let uploaded = s["dataset_uid"].as_str().expect("the SDK's dataset uid");
    let pipeline = write(
        dir.path(),
        "after-sdk.yaml",
        "version: 1\napi: { flavor: current }\nvars:\n  dataset: x\nsteps:\n  - id: got\n    action: datasets.get\n    with: { dataset: \"{{ vars.dataset }}\" }\n  - id: items\n    action: items.list\n    with: { dataset: \"{{ steps.got.outputs.owner_name }}/{{ steps.got.outputs.slug }}\" }\n  - id: export\n    action: exports.create\n    with: { dataset_id: \"{{ vars.dataset }}\" }\n  - id: ready\n    action: exports.wait\n    with: { export: \"{{ steps.export.outputs.id }}\", interval: 200ms }\n  - id: fetch\n    action: download\n    with: { url: \"{{ steps.ready.outputs.download_url }}\", to: out/export.json }\noutputs:\n  keys: \"{{ steps.items.outputs.items | map(attribute='key') | sort | list }}\"\n",
    );
    let out = crate::support::avala_pipe()
        .args([
            "run",
            "--format",
            "json",
            "--no-journal",
            "--base-url",
            &emu.base_url(),
        ])
        .arg(&pipeline)
        .args(["--var", &format!("dataset={uploaded}")])
        .env("AVALA_API_KEY", "avk_sdk_test_key")
        .current_dir(dir.path())
        .run_async()
        .await;
    out.success();
    assert_eq!(
        out.json()["outputs"]["keys"],
        serde_json::json!(["a.txt", "big.bin", "sub/b.json"])
    );
    let exported: Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/export.json")).unwrap())
            .unwrap();
    let mut keys: Vec<&str> = exported["datasets"][0]["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|i| i["key"].as_str())
        .collect();
    keys.sort();
    assert_eq!(keys, ["a.txt", "big.bin", "sub/b.json"]);
    assert_no_key_on_storage(&emu);
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn every_public_sdk_call_is_counted_and_the_pipeline_groups_all_work() {
    let emu = start_emulator(
        None,
        EmulatorOptions {
            flavor: Flavor::Current,
            ..Default::default()
        },
    )
    .await;
    let scratch = tempfile::tempdir().unwrap();
    let report = run_script(&emu, "every_call.py", &[scratch.path()], 240).await;
    let (total, ok) = (
        report["total"].as_u64().unwrap(),
        report["ok"].as_u64().unwrap(),
    );
    let results = report["results"].as_object().unwrap();
    let failures: Vec<String> = results
        .iter()
        .filter(|(_, v)| *v != "ok")
        .map(|(k, v)| format!("{k}: {v}"))
        .collect();
    let stopped = &report["stopped"];
    println!(
        "official SDK: {ok} of {total} public client methods succeed; not: {failures:#?}; \
         groups stopped early: {stopped}"
    );
    assert!(total >= 140, "the SDK's client has {total} public methods");
    // The issue asks for 100; 144 of 145 is what the emulator achieves (only the managed MCAP
    // upload protocol is not emulated), so a regression below 140 fails too.
    assert!(ok >= 140, "only {ok} of {total}: {failures:#?} {stopped}");
    assert_eq!(results["fleet.uploads.upload_recording"], "ok");
    for (name, result) in results {
        let group = name.split('.').next().unwrap();
        if ["datasets", "projects", "tasks", "exports"].contains(&group) {
            assert_eq!(result, "ok", "{name}");
        }
    }
    assert_no_key_on_storage(&emu);
    emu.shutdown().await;
}
