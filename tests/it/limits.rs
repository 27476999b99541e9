//! The published concurrency limits (10 uploads in flight, 5 exports running), as the
//! emulator counts them: it refuses what is past them with 429, and a run never exceeds them,
//! even when two upload steps and a multipart session's parts all want places at once.
//! Correctness only: nothing here measures speed.

use std::time::Duration;

use avala_pipe::emulator::{EmulatorOptions, Fault, FaultEffect, Flavor, Trigger};

use crate::support::{avala_pipe, start_emulator, write};

const KEY: &str = "avk_test_LIMITS_0123456789";

/// Runs `pipeline` in `dir` against `emu`; it must succeed.
async fn run_ok(
    emu: &avala_pipe::emulator::Emulator,
    pipeline: &std::path::Path,
    dir: &std::path::Path,
) -> crate::support::Output {
    let out = avala_pipe()
        .args(["run", "--format", "json", "--base-url", &emu.base_url()])
        .arg(pipeline)
        .current_dir(dir)
        .env("AVALA_API_KEY", KEY)
        .timeout(Duration::from_secs(60))
        .run_async()
        .await;
    assert_eq!(out.code, Some(0), "stderr:\n{}", out.stderr);
    out
}

/// Two upload steps side by side (10 files each, concurrency 10) and a file big enough for a
/// multipart session (3 parts), while every storage PUT is held 40 ms: twenty uploads want
/// to be in flight at once, the run lets ten.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_never_has_more_uploads_in_flight_than_the_published_limit() {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            flavor: Flavor::Current,
            multipart_threshold: 1024 * 1024,
            dataset_polls: 0,
            ..EmulatorOptions::default()
        },
    )
    .await;
    emu.add_fault(Fault::new("PUT", "/bucket/*", FaultEffect::DelayMs(40)).when(Trigger::Always));
    let dir = tempfile::tempdir().unwrap();
    for i in 0..10 {
        write(dir.path(), &format!("a/f{i}.txt"), &format!("a {i}\n"));
        write(dir.path(), &format!("b/f{i}.txt"), &format!("b {i}\n"));
    }
    // 11 MiB: parts of 5, 5 and 1 MiB, sent side by side.
    let big: String = "0123456789abcdef".repeat(11 * 1024 * 1024 / 16);
    write(dir.path(), "a/big.bin", &big);
    let pipeline = write(
        dir.path(),
        "two.yaml",
        "version: 1\napi:\n  flavor: current\nsteps:\n\
         \x20 - id: a\n    action: datasets.upload\n    with: {name: A, files: a/*, concurrency: 10}\n\
         \x20 - id: b\n    action: datasets.upload\n    with: {name: B, files: b/*, concurrency: 10}\n",
    );
    run_ok(&emu, &pipeline, dir.path()).await;
    let limits = emu.limits();
    assert_eq!(limits.uploads_refused, 0, "{limits:?}");
    assert!(limits.max_uploads_in_flight <= 10, "{limits:?}");
    // The limit was reached, so it was the client that kept to it.
    assert_eq!(limits.max_uploads_in_flight, 10, "{limits:?}");
    assert_eq!(emu.uploads().len(), 21);
    emu.shutdown().await;
}

/// Past `--max-uploads`, an upload gets 429 (with Retry-After) and the emulator counts it.
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_refuses_uploads_past_the_limit_and_counts_the_most_in_flight() {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            flavor: Flavor::Current,
            max_uploads: 2,
            ..EmulatorOptions::default()
        },
    )
    .await;
    // Held 300 ms each: three at once are in flight together.
    emu.add_fault(Fault::new("PUT", "/bucket/*", FaultEffect::DelayMs(300)).when(Trigger::Always));
    let http = reqwest::Client::new();
    let url = format!("{}/bucket/none?X-Amz-Signature=0", emu.storage_origin());
    let puts = (0..3).map(|_| http.put(&url).body("x").send());
    let answers = futures_util::future::join_all(puts).await;
    let mut statuses: Vec<u16> = answers
        .into_iter()
        .map(|r| r.unwrap().status().as_u16())
        .collect();
    statuses.sort_unstable();
    // Two got through to storage (and were refused there: a bad signature); one got 429.
    assert_eq!(statuses, [403, 403, 429]);
    let limits = emu.limits();
    assert_eq!(
        (limits.max_uploads_in_flight, limits.uploads_refused),
        (3, 1)
    );
    // Stats for another process, on the storage origin, without the key.
    let served: serde_json::Value = http
        .get(format!("{}/_emulator/stats", emu.storage_origin()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(served["uploads_refused"], 1);
    emu.shutdown().await;
}

/// The sixth export while five are running gets 429; once one is done, a new one is created.
#[tokio::test(flavor = "multi_thread")]
async fn the_emulator_refuses_a_sixth_running_export() {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            flavor: Flavor::Current,
            export_polls: 1,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let http = reqwest::Client::new();
    let base = emu.base_url();
    let create = || {
        http.post(format!("{base}/exports/"))
            .header("X-Avala-Api-Key", KEY)
            .json(&serde_json::json!({"project": "prj_0001"}))
            .send()
    };
    for _ in 0..5 {
        assert_eq!(create().await.unwrap().status(), 201);
    }
    let refused = create().await.unwrap();
    assert_eq!(refused.status(), 429);
    assert!(refused.headers().contains_key("retry-after"));
    // One poll finishes exp_0001: a place is free again.
    let polled = http
        .get(format!("{base}/exports/exp_0001/"))
        .header("X-Avala-Api-Key", KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(polled.status(), 200);
    assert_eq!(create().await.unwrap().status(), 201);
    let limits = emu.limits();
    assert_eq!((limits.max_exports_running, limits.exports_refused), (6, 1));
    emu.shutdown().await;
}

/// Seven exports asked for at once: the run creates five, and the sixth and seventh only
/// once it has seen earlier ones end (here by asking how they stand: nothing else polls
/// them while the create step runs), so the server never refuses one.
#[tokio::test(flavor = "multi_thread")]
async fn a_run_never_has_more_exports_running_than_the_published_limit() {
    let emu = start_emulator(
        Some(KEY),
        EmulatorOptions {
            flavor: Flavor::Current,
            export_polls: 2,
            ..EmulatorOptions::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let pipeline = write(
        dir.path(),
        "exports.yaml",
        "version: 1\napi:\n  flavor: current\nsteps:\n\
         \x20 - id: create\n    action: exports.create\n    for_each: \"{{ range(7) | list }}\"\n    max_parallel: 7\n    with: {project_id: prj_0001}\n\
         \x20 - id: wait\n    action: exports.wait\n    for_each: \"{{ steps.create.outputs.results }}\"\n    with: {export: \"{{ item.uid }}\", interval: 10ms}\n",
    );
    let out = run_ok(&emu, &pipeline, dir.path()).await;
    let limits = emu.limits();
    assert_eq!(limits.exports_refused, 0, "{limits:?}");
    // The limit was reached, so it was the client that kept to it.
    assert_eq!(limits.max_exports_running, 5, "{limits:?}");
    let created = emu
        .requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path.ends_with("/exports/"))
        .count();
    assert_eq!(created, 7);
    assert_eq!(out.json()["steps"][1]["outputs"]["count"], 7);
    emu.shutdown().await;
}
