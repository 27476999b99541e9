//! Cases 6-9: downloads cut short or tampered with, redirects to another origin, and a
//! cursor that repeats.

use super::*;

// ---------------------------------------------------------------------------------------
// 6-8: downloads and the key
// ---------------------------------------------------------------------------------------

/// 6. A download cut mid-body once is retried and the file is whole; cut every time, the
/// run fails (exit 1) with nothing under the final name, no temporary file, and an older
/// file at that path untouched.
#[tokio::test(flavor = "multi_thread")]
async fn case06_a_cut_download_is_retried_or_leaves_nothing_behind() {
    let options = || EmulatorOptions {
        export_bytes: 200_000,
        export_polls: 0,
        ..Default::default()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &export_pipeline(""));
    let dest = dir.path().join("out/export.json");

    // Cut once: retried, whole.
    let emu = start_emulator(Some(CANARY), options()).await;
    emu.add_fault(fault(
        "cut-once",
        "GET",
        "/exports/*",
        Trigger::Nth(1),
        FaultEffect::CutAfterBytes(1000),
    ));
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(0);
    assert_eq!(out.step("fetch")["attempts"], 2);
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 200_000);
    assert_eq!(Some(sha256_file(&dest)), emu.export_sha256("exp_0001"));
    assert_eq!(
        statuses(&journal(
            &emu,
            Origin::Storage,
            "GET",
            "/exports/exp_0001.json"
        )),
        [200, 200]
    );
    delivered(&emu, 6, &[("cut-once", 1)]);
    emu.shutdown().await;

    // Cut every time, over an older file: exit 1, the older file intact.
    cut_every_time_over_an_older_file(
        start_emulator(Some(CANARY), options()).await,
        &file,
        &dest,
        1000,
    )
    .await;

    // Cut every time, no older file: nothing under the final name.
    std::fs::remove_file(&dest).unwrap();
    let emu = start_emulator(Some(CANARY), options()).await;
    emu.add_fault(fault(
        "cut-always",
        "GET",
        "/exports/*",
        Trigger::Always,
        FaultEffect::CutAfterBytes(1000),
    ));
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    assert!(!dest.exists(), "a partial file under the final name");
    delivered(&emu, 6, &[("cut-always", 3)]);
    emu.shutdown().await;
}

/// 6b. A large download (announced size ≥ 64 MiB) is written around the page cache
/// (`O_DIRECT`, where the file system takes it), its tail (not a whole block) through it:
/// cut once past its first blocks, it is retried from the start, and the file is whole,
/// with no padding and no temporary file left beside it; cut every time, it leaves an older
/// file untouched and nothing beside it.
#[tokio::test(flavor = "multi_thread")]
async fn case06_a_large_download_cut_once_is_retried_whole_around_the_page_cache() {
    let size: u64 = (64 << 20) + 12_345;
    let options = || EmulatorOptions {
        export_bytes: size,
        export_polls: 0,
        ..Default::default()
    };
    let emu = start_emulator(Some(CANARY), options()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(dir.path(), "p.yaml", &export_pipeline(""));
    let dest = dir.path().join("out/export.json");
    emu.add_fault(fault(
        "cut-once",
        "GET",
        "/exports/*",
        Trigger::Nth(1),
        FaultEffect::CutAfterBytes((3 << 20) + 7),
    ));
    let out = run(&emu, &file, dir.path(), &["-v"]).await;
    out.code(0);
    assert_eq!(out.step("fetch")["attempts"], 2);
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), size);
    assert_eq!(Some(sha256_file(&dest)), emu.export_sha256("exp_0001"));
    assert_eq!(
        out.step("fetch")["outputs"]["sha256"].as_str(),
        emu.export_sha256("exp_0001").as_deref()
    );
    assert_eq!(partial_files(dir.path()), Vec::<PathBuf>::new());
    delivered(&emu, 6, &[("cut-once", 1)]);
    // Whether this file system takes direct writes (Linux: ext4, xfs, btrfs; tmpfs since
    // 6.6): if it does, every whole MiB was written with O_DIRECT.
    #[cfg(target_os = "linux")]
    let takes_direct = {
        use std::os::unix::fs::OpenOptionsExt as _;
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(dir.path().join("probe"))
            .is_ok()
    };
    #[cfg(not(target_os = "linux"))]
    let takes_direct = false;
    let direct = if takes_direct { size >> 20 << 20 } else { 0 };
    let line = format!("{size} bytes on disk, {direct} of them written with O_DIRECT");
    assert!(
        out.stderr.contains(&line),
        "no `{line}` in:\n{}",
        out.stderr
    );
    emu.shutdown().await;

    // Cut every time past its first direct blocks, over an older file.
    let emu = start_emulator(Some(CANARY), options()).await;
    cut_every_time_over_an_older_file(emu, &file, &dest, (5 << 20) + 7).await;
}

/// Runs the export pipeline `file` with every download of the export cut after `cut` bytes,
/// over an older file at `dest`: exit 1 after 3 attempts, the error naming neither the
/// presigned query nor anything but the path, the older file intact, no temporary file left.
async fn cut_every_time_over_an_older_file(emu: Emulator, file: &Path, dest: &Path, cut: u64) {
    emu.add_fault(fault(
        "cut-always",
        "GET",
        "/exports/*",
        Trigger::Always,
        FaultEffect::CutAfterBytes(cut),
    ));
    std::fs::write(dest, "the older file\n").unwrap();
    let dir = file.parent().unwrap();
    let out = run(&emu, file, dir, &[]).await;
    out.code(1);
    let error = out.error("fetch");
    assert!(
        error.contains("(3 attempts)") && error.contains("left untouched"),
        "{error}"
    );
    assert!(
        !error.contains("X-Amz-Signature"),
        "no presigned query: {error}"
    );
    assert_eq!(std::fs::read_to_string(dest).unwrap(), "the older file\n");
    assert_eq!(partial_files(dir), Vec::<PathBuf>::new());
    assert_eq!(
        journal(&emu, Origin::Storage, "GET", "/exports/exp_0001.json").len(),
        3
    );
    delivered(&emu, 6, &[("cut-always", 3)]);
    emu.shutdown().await;
}

/// 7. A body that does not match the given `sha256` (the storage answered with other bytes)
/// fails the step at once and leaves the older file at the destination untouched.
#[tokio::test(flavor = "multi_thread")]
async fn case07_a_checksum_mismatch_leaves_the_older_file_untouched() {
    let emu = start_emulator(
        Some(CANARY),
        EmulatorOptions {
            export_bytes: 100_000,
            export_polls: 0,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // First a good run: the file in place, and the URL and digest to check against.
    let file = write(dir.path(), "p.yaml", &export_pipeline(""));
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(0);
    let url = out.step("wait")["outputs"]["download_url"]
        .as_str()
        .unwrap()
        .to_string();
    let good = emu.export_sha256("exp_0001").unwrap();
    let dest = dir.path().join("out/export.json");
    assert_eq!(sha256_file(&dest), good);

    emu.add_fault(fault(
        "tampered",
        "GET",
        "/exports/*",
        Trigger::Always,
        status_body(200, Value::String("tampered bytes\n".into())),
    ));
    let file = write(
        dir.path(),
        "again.yaml",
        &format!("version: 1\nsteps:\n  - id: fetch\n    action: download\n    with:\n      url: \"{url}\"\n      to: out/export.json\n      sha256: {good}\n"),
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    let error = out.error("fetch");
    assert!(
        error.contains("sha256 mismatch")
            && error.contains(&good)
            && error.contains("left untouched"),
        "{error}"
    );
    assert_eq!(
        out.step("fetch")["attempts"],
        1,
        "a mismatch is not retried"
    );
    assert_eq!(sha256_file(&dest), good, "the older file is untouched");
    assert_eq!(
        statuses(&journal(
            &emu,
            Origin::Storage,
            "GET",
            "/exports/exp_0001.json"
        )),
        [200, 200]
    );
    delivered(&emu, 7, &[("tampered", 1)]);
    emu.shutdown().await;
}

/// 8. A redirect to another origin never carries the key: an API call sent off to the
/// storage origin, and a download redirected there from the API origin (which succeeds,
/// without the key).
#[tokio::test(flavor = "multi_thread")]
async fn case08_a_redirect_to_another_origin_never_carries_the_key() {
    let emu = start_emulator(
        Some(CANARY),
        EmulatorOptions {
            export_bytes: 50_000,
            export_polls: 0,
            ..Default::default()
        },
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    // Make an export, to have a signed storage URL.
    let file = write(dir.path(), "p.yaml", &export_pipeline(""));
    run(&emu, &file, dir.path(), &[]).await.code(0);
    let url = emu
        .requests()
        .into_iter()
        .find(|r| r.origin == Origin::Storage)
        .map(|r| format!("{}?{}", r.path, r.query))
        .unwrap();
    let api_origin = emu.base_url().trim_end_matches("/api/v1").to_string();

    emu.add_fault(fault(
        "redirect-api-call",
        "GET",
        "/api/v1/datasets/ds_0001",
        Trigger::Nth(1),
        FaultEffect::RedirectOtherOrigin,
    ));
    // Only the first request (on the API origin) is redirected; the storage one is served.
    emu.add_fault(fault(
        "redirect-download",
        "GET",
        "/exports/*",
        Trigger::Nth(1),
        FaultEffect::RedirectOtherOrigin,
    ));
    let file = write(
        dir.path(),
        "redirects.yaml",
        &format!("version: 1\n{FAST_RETRY}steps:\n  - id: call\n    action: request\n    continue_on_error: true\n    with: {{ path: /datasets/ds_0001 }}\n  - id: fetch\n    action: download\n    with:\n      url: \"{api_origin}{url}\"\n      to: out/redirected.json\n"),
    );
    let before = emu.requests().len();
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(0);
    let call = out.step("call");
    assert_eq!(call["status"], "failed", "{call:#}");
    let dest = dir.path().join("out/redirected.json");
    assert_eq!(Some(sha256_file(&dest)), emu.export_sha256("exp_0001"));

    let requests: Vec<RecordedRequest> = emu.requests().into_iter().skip(before).collect();
    let storage: Vec<&RecordedRequest> = requests
        .iter()
        .filter(|r| r.origin == Origin::Storage)
        .collect();
    assert!(
        storage.iter().any(|r| r.path == "/api/v1/datasets/ds_0001"),
        "the API call was redirected to storage: {requests:#?}"
    );
    assert!(storage.iter().any(|r| r.path == "/exports/exp_0001.json"));
    for r in &storage {
        assert!(
            !r.headers.contains_key("x-avala-api-key")
                && !r.headers.values().any(|v| v.contains(CANARY)),
            "the key went to another origin: {r:#?}"
        );
    }
    for r in requests.iter().filter(|r| r.origin == Origin::Api) {
        assert_eq!(
            r.headers.get("x-avala-api-key").map(String::as_str),
            Some(CANARY)
        );
    }
    delivered(
        &emu,
        8,
        &[("redirect-api-call", 1), ("redirect-download", 1)],
    );
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 9: endless pages
// ---------------------------------------------------------------------------------------

/// 9. A cursor that repeats stops the page loop with a message, quickly, in both shapes.
#[tokio::test(flavor = "multi_thread")]
async fn case09_a_repeating_cursor_stops_quickly() {
    for flavor in [Flavor::Documented, Flavor::Current] {
        let emu = start_emulator(
            Some(CANARY),
            EmulatorOptions {
                flavor,
                datasets: 250,
                ..Default::default()
            },
        )
        .await;
        emu.add_fault(fault(
            "repeat",
            "GET",
            "/api/v1/datasets",
            Trigger::Always,
            FaultEffect::RepeatCursor,
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n    with: { limit: 100, save_to: out/datasets.jsonl }\n",
        );
        let out = run(&emu, &file, dir.path(), &[]).await;
        out.code(1);
        assert!(out.elapsed < Duration::from_secs(5), "{:?}", out.elapsed);
        let error = out.error("list");
        assert!(
            error.contains("twice") && error.contains("/datasets"),
            "{flavor:?}: {error}"
        );
        assert!(!dir.path().join("out/datasets.jsonl").exists());
        assert_eq!(
            journal(&emu, Origin::Api, "GET", "/datasets").len(),
            2,
            "{flavor:?}: stops at the first repeat"
        );
        delivered(&emu, 9, &[("repeat", 2)]);
        emu.shutdown().await;
    }
}

// ---------------------------------------------------------------------------------------
// 17: a multipart part sent again (found on the way: issue 14's hash of the sent chunks)
// ---------------------------------------------------------------------------------------

/// Today's flavour, files past 1 MiB uploaded in a multipart session (parts of 5 MiB).
async fn multipart_emulator() -> Emulator {
    start_emulator(
        Some(CANARY),
        EmulatorOptions {
            flavor: Flavor::Current,
            multipart_threshold: 1024 * 1024,
            dataset_polls: 0,
            ..Default::default()
        },
    )
    .await
}

/// 17. `datasets.upload` of a file big enough for a multipart session (4 parts of 5 MiB),
/// where one part's PUT fails with 500 after the emulator stored it and another's fails
/// before: the upload is retried until every part is held, and the sha256 in the report
/// (hashed from the chunks the upload read to send, in file order, a re-sent chunk not
/// hashed twice) and the one the emulator computed from the parts it kept are both the
/// file's.
#[tokio::test(flavor = "multi_thread")]
async fn case17_a_retried_multipart_part_keeps_the_files_sha256() {
    let emu = multipart_emulator().await;
    let stored_then_500 = FaultEffect::Status {
        code: 500,
        body: None,
        retry_after: None,
        after_route: true,
    };
    emu.add_fault(fault(
        "after",
        "PUT",
        "/bucket/*",
        Trigger::Nth(2),
        stored_then_500,
    ));
    // The fourth PUT's 500 comes late: by then the second has been stored and answered
    // (else its failure could cut the second mid-body, and nothing would be stored twice).
    emu.add_fault(fault(
        "slow",
        "PUT",
        "/bucket/*",
        Trigger::Nth(4),
        FaultEffect::DelayMs(400),
    ));
    emu.add_fault(fault(
        "before",
        "PUT",
        "/bucket/*",
        Trigger::Nth(4),
        status(500, None),
    ));
    let dir = tempfile::tempdir().unwrap();
    // Not a repeating pattern: a part hashed twice, or out of order, changes the digest.
    let mut bytes = Vec::with_capacity(19 * 1024 * 1024);
    let mut x: u32 = 7;
    while bytes.len() < 19 * 1024 * 1024 {
        x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
        bytes.extend_from_slice(&x.to_le_bytes());
    }
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let big = dir.path().join("data/big.bin");
    std::fs::write(&big, &bytes).unwrap();
    let want = sha256_file(&big);
    let file = write(
        dir.path(),
        "p.yaml",
        &format!("version: 1\napi: {{ flavor: current }}\n{FAST_RETRY}steps:\n  - id: up\n    action: datasets.upload\n    with: {{ name: Big, files: data/big.bin, concurrency: 3 }}\n"),
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.success();
    assert_eq!(out.step("up")["outputs"]["files"][0]["sha256"], want);
    let uploads = emu.uploads();
    assert_eq!(uploads.len(), 1, "{uploads:?}");
    assert_eq!(
        (uploads[0].size, uploads[0].sha256.as_str()),
        (bytes.len() as u64, want.as_str())
    );
    // Both 500s were answered, and every part is in the object above: the part refused
    // before it was stored was sent again; the one stored before its 500 was either sent
    // again or found held by the session.
    let puts = statuses(&journal(&emu, Origin::Storage, "PUT", ""));
    assert_eq!(puts.iter().filter(|&&s| s == 500).count(), 2, "{puts:?}");
    assert!(puts.iter().filter(|&&s| s == 200).count() >= 3, "{puts:?}");
    delivered(&emu, 17, &[("after", 1), ("slow", 1), ("before", 1)]);
    emu.shutdown().await;
}

/// 18. A multipart upload cut by its step's timeout while a part is held: the run ends (the
/// hash of the bytes sent stops waiting for chunks that will not come) and says why.
#[tokio::test(flavor = "multi_thread")]
async fn case18_an_upload_cut_by_its_timeout_does_not_hang_the_run() {
    let emu = multipart_emulator().await;
    emu.add_fault(fault(
        "held",
        "PUT",
        "/bucket/*",
        Trigger::Always,
        FaultEffect::DelayMs(4_000),
    ));
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let bytes: Vec<u8> = (0..11 * 1024 * 1024u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(dir.path().join("data/big.bin"), &bytes).unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\napi: { flavor: current }\nsteps:\n  - id: up\n    action: datasets.upload\n    timeout: 1s\n    with: { name: Big, files: data/big.bin }\n",
    );
    let started = Instant::now();
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    assert!(out.error("up").contains("timed out"), "{}", out.error("up"));
    // Well before the 60 s the harness allows (a hang would reach it).
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "{:?}",
        started.elapsed()
    );
    emu.shutdown().await;
}
