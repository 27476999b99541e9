//! Cases 1-5, 15 and 16: what is retried (429 with Retry-After, 5xx and cut bodies on a
//! GET), how long for, and what never is (client errors, a POST the server may have acted on).

use super::*;

// ---------------------------------------------------------------------------------------
// 1-3: retries
// ---------------------------------------------------------------------------------------

/// 1. A 429 with `Retry-After: 1` is waited out, then the GET succeeds; the HTTP-date form
/// is obeyed too, on a POST, which a 429 may retry (the server refused it): one export.
#[tokio::test(flavor = "multi_thread")]
async fn case01_retry_after_in_seconds_and_as_an_http_date_is_obeyed() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "429-seconds",
        "GET",
        "/api/v1/datasets",
        Trigger::Nth(1),
        status(429, Some(RetryAfter::Seconds(1))),
    ));
    // An HTTP-date has one-second resolution: 2 s ahead is at least 1 s ahead.
    emu.add_fault(fault(
        "429-date",
        "POST",
        "/api/v1/exports",
        Trigger::Nth(1),
        status(429, Some(RetryAfter::HttpDateIn(2))),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n  - id: make\n    action: exports.create\n    needs: [list]\n    with: { dataset_id: ds_0001 }\n",
    );
    let out = run(&emu, &file, dir.path(), &[]).await;

    out.code(0);
    for id in ["list", "make"] {
        let step = out.step(id);
        assert_eq!(step["status"], "succeeded");
        assert_eq!(step["attempts"], 2, "{id}");
        assert!(
            step["duration_ms"].as_u64().unwrap() >= 950,
            "{id} did not wait out Retry-After: {step:#}"
        );
    }
    assert!(out.stderr.contains("429"), "the retry is logged");
    assert!(out.stderr.contains("retrying in 1.0s"), "{}", out.stderr);
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "GET", "/datasets")),
        [429, 200]
    );
    let posts = journal(&emu, Origin::Api, "POST", "/exports");
    assert_eq!(statuses(&posts), [429, 201], "exactly one export created");
    delivered(&emu, 1, &[("429-seconds", 1), ("429-date", 1)]);
    emu.shutdown().await;
}

/// 2. A `Retry-After` above the cap (in seconds or as a date a day ahead) fails the step at
/// once with a message naming the wait, and does not hold up the rest of the run.
#[tokio::test(flavor = "multi_thread")]
async fn case02_retry_after_above_the_cap_fails_at_once() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "day-seconds",
        "GET",
        "/api/v1/datasets/ds_0001",
        Trigger::Always,
        status(429, Some(RetryAfter::Seconds(86_400))),
    ));
    emu.add_fault(fault(
        "day-date",
        "POST",
        "/api/v1/exports",
        Trigger::Always,
        status(429, Some(RetryAfter::HttpDateIn(86_400))),
    ));
    // `other` pages slowly, so its later pages go out after the 429s arrived.
    emu.add_fault(fault(
        "slow-first-page",
        "GET",
        "/api/v1/datasets",
        Trigger::Nth(1),
        FaultEffect::DelayMs(400),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nconcurrency: 3\nsteps:\n  - id: one\n    action: request\n    with: { path: /datasets/ds_0001 }\n  - id: make\n    action: exports.create\n    with: { dataset_id: ds_0001 }\n  - id: other\n    action: datasets.list\n    with: { limit: 1 }\n",
    );
    let out = run(&emu, &file, dir.path(), &[]).await;

    out.code(1);
    assert!(
        out.elapsed < Duration::from_secs(5),
        "took {:?}: the over-long Retry-After held the run up",
        out.elapsed
    );
    let one = out.error("one");
    assert!(
        one.contains("retry after 86400s") && one.contains("120s"),
        "names the wait and the cap: {one}"
    );
    let make = out.error("make");
    assert!(
        (make.contains("retry after 86399s") || make.contains("retry after 86400s"))
            && make.contains("120s"),
        "{make}"
    );
    assert_eq!(out.step("other")["status"], "succeeded");
    assert_eq!(out.step("other")["outputs"]["count"], 3);
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "GET", "/datasets/ds_0001")),
        [429],
        "not retried"
    );
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "POST", "/exports")),
        [429]
    );
    delivered(
        &emu,
        2,
        &[("day-seconds", 1), ("day-date", 1), ("slow-first-page", 1)],
    );
    emu.shutdown().await;
}

/// 3. 503, 503, 200 on a GET succeeds on the third attempt; 500 forever stops after the
/// policy's attempts (the default 5, and a step's own 3) with exit 1; a proxy's HTML error
/// page is cut short in the message.
#[tokio::test(flavor = "multi_thread")]
async fn case03_transient_5xx_are_retried_and_permanent_ones_are_bounded() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "503-twice",
        "GET",
        "/api/v1/datasets",
        Trigger::First(2),
        status(503, None),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "ok.yaml",
        "version: 1\ndefaults:\n  retry: { initial_interval: 10ms }\nsteps:\n  - id: list\n    action: datasets.list\n",
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(0);
    assert_eq!(out.step("list")["attempts"], 3);
    assert_eq!(out.step("list")["outputs"]["count"], 3);
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "GET", "/datasets")),
        [503, 503, 200]
    );

    let page = format!("<html><body>{}</body></html>", "Bad gateway. ".repeat(400));
    emu.add_fault(fault(
        "500-forever",
        "GET",
        "/api/v1/datasets/ds_0001",
        Trigger::Always,
        status(500, None),
    ));
    emu.add_fault(fault(
        "502-html-forever",
        "GET",
        "/api/v1/datasets/ds_0002",
        Trigger::Always,
        status_body(502, Value::String(page)),
    ));
    let file = write(
        dir.path(),
        "bad.yaml",
        "version: 1\nconcurrency: 2\ndefaults:\n  retry: { initial_interval: 10ms, max_interval: 40ms }\nsteps:\n  - id: default_policy\n    action: request\n    with: { path: /datasets/ds_0001 }\n  - id: own_policy\n    action: request\n    retry: { max_attempts: 3, initial_interval: 10ms }\n    with: { path: /datasets/ds_0002 }\n",
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    let error = out.error("default_policy");
    assert!(
        error.contains("500") && error.contains("(5 attempts)"),
        "{error}"
    );
    assert_eq!(out.step("default_policy")["attempts"], 5);
    let error = out.error("own_policy");
    assert!(
        error.contains("502") && error.contains("(3 attempts)"),
        "{error}"
    );
    assert!(
        error.contains("Bad gateway") && error.len() < 700,
        "the HTML page is cut short: {error}"
    );
    assert_eq!(
        journal(&emu, Origin::Api, "GET", "/datasets/ds_0001").len(),
        5
    );
    assert_eq!(
        journal(&emu, Origin::Api, "GET", "/datasets/ds_0002").len(),
        3
    );
    delivered(
        &emu,
        3,
        &[
            ("503-twice", 2),
            ("500-forever", 5),
            ("502-html-forever", 3),
        ],
    );
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 4-5: never retried
// ---------------------------------------------------------------------------------------

/// 4. 400, 401, 403, 404 and 422 are answers, not accidents: never retried, on a GET or a
/// POST. A 401 says to check AVALA_API_KEY without showing it, also for a real wrong key,
/// and a 401 on a list is a failure, never an empty list.
#[tokio::test(flavor = "multi_thread")]
async fn case04_client_errors_are_never_retried() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    let codes = [400u16, 401, 403, 404, 422];
    for code in codes {
        emu.add_fault(fault(
            &format!("get-{code}"),
            "GET",
            &format!("/api/v1/datasets/c{code}"),
            Trigger::Always,
            status(code, None),
        ));
    }
    emu.add_fault(fault(
        "post-422",
        "POST",
        "/api/v1/exports",
        Trigger::Always,
        status(422, None),
    ));
    emu.add_fault(fault(
        "list-401",
        "GET",
        "/api/v1/datasets",
        Trigger::Always,
        status(401, None),
    ));
    let dir = tempfile::tempdir().unwrap();
    let mut text = String::from("version: 1\nconcurrency: 8\nsteps:\n");
    for code in codes {
        text.push_str(&format!(
            "  - id: get{code}\n    action: request\n    with: {{ path: /datasets/c{code} }}\n"
        ));
    }
    text.push_str("  - id: make\n    action: exports.create\n    with: { dataset_id: ds_0001 }\n  - id: list\n    action: datasets.list\n");
    let file = write(dir.path(), "p.yaml", &text);
    let out = run(&emu, &file, dir.path(), &[]).await;

    out.code(1);
    for code in codes {
        let step = out.step(&format!("get{code}"));
        assert_eq!(step["status"], "failed");
        assert_eq!(step["attempts"], 1, "{code} was retried: {step:#}");
        let error = step["error"].as_str().unwrap();
        assert!(error.contains(&code.to_string()), "{error}");
        assert_eq!(
            journal(&emu, Origin::Api, "GET", &format!("/datasets/c{code}")).len(),
            1
        );
    }
    let e401 = out.error("get401");
    assert!(e401.contains("check that AVALA_API_KEY"), "{e401}");
    assert!(out.error("get403").contains("AVALA_API_KEY lacks access"));
    assert_eq!(out.step("make")["attempts"], 1);
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "POST", "/exports")),
        [422]
    );
    let list = out.step("list");
    assert_eq!(list["status"], "failed", "a 401 is not an empty list");
    assert!(list["error"].as_str().unwrap().contains("AVALA_API_KEY"));
    let mut expected: Vec<(String, u64)> = codes.iter().map(|c| (format!("get-{c}"), 1)).collect();
    expected.push(("post-422".into(), 1));
    expected.push(("list-401".into(), 1));
    let expected: Vec<(&str, u64)> = expected.iter().map(|(n, c)| (n.as_str(), *c)).collect();
    delivered(&emu, 4, &expected);

    // A real wrong key: the emulator's own 401, once, and the key is not shown.
    let wrong = "avk_CANARY_wrong_key_0000";
    let file = write(
        dir.path(),
        "one.yaml",
        "version: 1\nsteps:\n  - id: one\n    action: request\n    with: { path: /datasets/ds_0003 }\n",
    );
    let out = command(&file, dir.path(), Some(&emu.base_url()))
        .env("AVALA_API_KEY", wrong)
        .run_async()
        .await;
    out.code(1);
    let error = out.error("one");
    assert!(
        error.contains("401") && error.contains("check that AVALA_API_KEY"),
        "{error}"
    );
    assert!(!out.stdout.contains(wrong) && !out.stderr.contains(wrong));
    let real = journal(&emu, Origin::Api, "GET", "/datasets/ds_0003");
    assert_eq!(statuses(&real), [401], "not retried");
    emu.shutdown().await;
}

/// 5. An upload that failed after its body was sent (500 after the route stored it) is not
/// retried: exactly one stored object, exit 1, and the message says the file may already be
/// stored. A 503 before the route is not retried either (nothing stored), and a 429 is
/// (the server refused it): one object.
#[tokio::test(flavor = "multi_thread")]
async fn case05_an_upload_is_never_duplicated() {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "data/a.jsonl", "{\"a\": 1}\n");
    let file = write(
        dir.path(),
        "p.yaml",
        &format!("version: 1\n{FAST_RETRY}steps:\n  - id: up\n    action: items.upload\n    with: {{ dataset: ds_0001, files: data/a.jsonl }}\n"),
    );
    let items = "/datasets/ds_0001/items";

    // 500 after the body was stored.
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "500-after-store",
        "POST",
        "/api/v1/datasets/*/items",
        Trigger::Always,
        FaultEffect::Status {
            code: 500,
            body: None,
            retry_after: None,
            after_route: true,
        },
    ));
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    let error = out.error("up");
    assert!(
        error.contains("500")
            && error.contains("may already be stored")
            && error.contains("a.jsonl"),
        "{error}"
    );
    assert_eq!(out.step("up")["attempts"], 1);
    assert_eq!(emu.uploads().len(), 1, "exactly one stored object");
    assert_eq!(statuses(&journal(&emu, Origin::Api, "POST", items)), [500]);
    delivered(&emu, 5, &[("500-after-store", 1)]);
    emu.shutdown().await;

    // 503 before the route: not retried, nothing stored.
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "503-before",
        "POST",
        "/api/v1/datasets/*/items",
        Trigger::Always,
        status(503, None),
    ));
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    assert_eq!(out.step("up")["attempts"], 1);
    assert!(emu.uploads().is_empty());
    assert_eq!(statuses(&journal(&emu, Origin::Api, "POST", items)), [503]);
    delivered(&emu, 5, &[("503-before", 1)]);
    emu.shutdown().await;

    // 429: refused, so retried, and stored once.
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "429-once",
        "POST",
        "/api/v1/datasets/*/items",
        Trigger::Nth(1),
        status(429, Some(RetryAfter::Raw("0.2".into()))),
    ));
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(0);
    assert_eq!(out.step("up")["attempts"], 2);
    let uploads = emu.uploads();
    assert_eq!(uploads.len(), 1);
    assert_eq!(
        uploads[0].sha256,
        sha256_file(&dir.path().join("data/a.jsonl"))
    );
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "POST", items)),
        [429, 201]
    );
    delivered(&emu, 5, &[("429-once", 1)]);
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// Found on the way
// ---------------------------------------------------------------------------------------

/// 15. A GET whose JSON body is cut short is retried like any transport error; a POST whose
/// answer is cut after the server acted is not (one export), and says it may have applied.
#[tokio::test(flavor = "multi_thread")]
async fn case15_a_cut_api_response_is_retried_only_when_safe() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "cut-list",
        "GET",
        "/api/v1/datasets",
        Trigger::Nth(1),
        FaultEffect::CutAfterBytes(40),
    ));
    emu.add_fault(fault(
        "cut-create",
        "POST",
        "/api/v1/exports",
        Trigger::Nth(1),
        FaultEffect::CutAfterBytes(10),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &format!("version: 1\n{FAST_RETRY}steps:\n  - id: list\n    action: datasets.list\n  - id: make\n    action: exports.create\n    needs: [list]\n    with: {{ dataset_id: ds_0001 }}\n"),
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    let list = out.step("list");
    assert_eq!(list["status"], "succeeded", "{list:#}");
    assert_eq!(list["attempts"], 2);
    assert_eq!(list["outputs"]["count"], 3);
    let error = out.error("make");
    assert!(
        error.contains("cut short") && error.contains("may already have"),
        "{error}"
    );
    assert_eq!(out.step("make")["attempts"], 1);
    assert_eq!(journal(&emu, Origin::Api, "GET", "/datasets").len(), 2);
    assert_eq!(
        journal(&emu, Origin::Api, "POST", "/exports").len(),
        1,
        "one export created"
    );
    delivered(&emu, 15, &[("cut-list", 1), ("cut-create", 1)]);
    emu.shutdown().await;
}

/// 16. A server slower than the step's `timeout` fails the step when the timeout passes;
/// an unreadable `Retry-After` falls back to the backoff instead of failing.
#[tokio::test(flavor = "multi_thread")]
async fn case16_a_slow_server_meets_the_step_timeout_and_odd_retry_after_is_tolerated() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "slow",
        "GET",
        "/api/v1/datasets/ds_0001",
        Trigger::Always,
        FaultEffect::DelayMs(2000),
    ));
    emu.add_fault(fault(
        "odd-retry-after",
        "GET",
        "/api/v1/datasets/ds_0002",
        Trigger::Nth(1),
        status(429, Some(RetryAfter::Raw("soon, maybe".into()))),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &format!("version: 1\n{FAST_RETRY}concurrency: 2\nsteps:\n  - id: slow\n    action: request\n    timeout: 300ms\n    with: {{ path: /datasets/ds_0001 }}\n  - id: odd\n    action: request\n    with: {{ path: /datasets/ds_0002 }}\n"),
    );
    let out = run(&emu, &file, dir.path(), &[]).await;
    out.code(1);
    let slow = out.step("slow");
    assert!(
        slow["duration_ms"].as_u64().unwrap() < 1500,
        "the timeout did not cut the 2 s wait: {slow:#}"
    );
    let error = out.error("slow");
    assert!(error.contains("timed out after 300ms"), "{error}");
    assert_eq!(out.step("odd")["status"], "succeeded");
    assert_eq!(out.step("odd")["attempts"], 2);
    assert_eq!(
        statuses(&journal(&emu, Origin::Api, "GET", "/datasets/ds_0002")),
        [429, 200]
    );
    assert_eq!(
        journal(&emu, Origin::Api, "GET", "/datasets/ds_0001").len(),
        1
    );
    delivered(&emu, 16, &[("slow", 1), ("odd-retry-after", 1)]);
    emu.shutdown().await;
}
