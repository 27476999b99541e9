//! `run --dry-run`: snapshots of the text and JSON plans of every example pipeline (and of
//! `tests/fixtures/dry-run/cases.yaml`, which holds every case of issue 5), proof that a
//! dry-run opens no connection and never shows the key, the JSON document's shape, the
//! exit-2 cases, and a comparison with what a real run sends to the emulator.
//!
//! Snapshots live in `tests/it/snapshots/`; after an intended change, rewrite them with
//! `INSTA_UPDATE=always cargo nextest run dry_run` and review the diff.

use std::collections::{BTreeMap, BTreeSet};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::Value;

use super::support::{avala_pipe, path, root, Cmd, Output};

const BASE_URL: &str = "https://server.avala.ai/api/v1";
const CANARY: &str = "avk_CANARY_dryrun_123";
/// A secret with characters that JSON and URLs escape.
const PARTNER_TOKEN: &str = "tok_SECRET \"quoted\"/slash&amp";
const CASES: &str = "tests/fixtures/dry-run/cases.yaml";

/// The example pipelines, sorted.
fn example_pipelines() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path("pipelines"))
        .expect("pipelines/ exists")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "example pipelines missing: {files:?}");
    files
}

/// `run FILE --dry-run` with the fixed base URL and the environment the cases need.
fn dry_run(file: &Path, extra: &[&str]) -> Cmd {
    avala_pipe()
        .arg("run")
        .arg(file)
        .args(["--dry-run", "--base-url", BASE_URL])
        .args(extra)
        .env("DRYRUN_REGION", "eu-west")
        .env("PARTNER_TOKEN", PARTNER_TOKEN)
}

/// UTC date `YYYY-MM-DD` of now.
fn utc_date() -> String {
    avala_pipe::clock::iso8601(avala_pipe::clock::now())[..10].to_string()
}

/// Runs a dry-run and filters what varies between machines and days.
fn snapshot_of(cmd: Cmd) -> String {
    let before = utc_date();
    let out = cmd.run();
    let after = utc_date();
    out.success();
    assert_eq!(out.stderr, "", "a dry-run prints its plan and nothing else");
    let mut text = out
        .stdout
        .replace(&root().display().to_string(), "[ROOT]")
        .replace(
            concat!("avala-pipe/", env!("CARGO_PKG_VERSION")),
            "avala-pipe/[VERSION]",
        );
    for date in [before, after] {
        text = text.replace(&date, "[DATE]");
    }
    text
}

fn stem(file: &Path) -> String {
    file.file_stem().unwrap().to_string_lossy().into_owned()
}

#[test]
fn text_plans_of_the_example_pipelines() {
    for file in example_pipelines() {
        let text = snapshot_of(dry_run(&file, &[]));
        insta::assert_snapshot!(format!("{}-text", stem(&file)), text);
    }
}

#[test]
fn json_plans_of_the_example_pipelines() {
    for file in example_pipelines() {
        let json = snapshot_of(dry_run(&file, &["--format", "json"]));
        serde_json::from_str::<Value>(&json).expect("stdout is one JSON document");
        insta::assert_snapshot!(format!("{}-json", stem(&file)), json);
    }
}

#[test]
fn text_and_json_plans_of_every_case() {
    let text = snapshot_of(dry_run(&path(CASES), &[]));
    insta::assert_snapshot!("cases-text", text);
    let json = snapshot_of(dry_run(&path(CASES), &["--format", "json"]));
    insta::assert_snapshot!("cases-json", json);
}

/// The plan of `cases.yaml` as JSON, and its steps by id.
fn cases_plan(extra: &[&str]) -> (Value, BTreeMap<String, Value>) {
    let out = dry_run(&path(CASES), &[&["--format", "json"], extra].concat()).run();
    out.success();
    let doc = out.json();
    let steps = doc["steps"]
        .as_array()
        .expect("steps is a list")
        .iter()
        .map(|s| (s["id"].as_str().unwrap().to_string(), s.clone()))
        .collect();
    (doc, steps)
}

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

/// The documented shape (docs/dry-run.md): every step and request has exactly these
/// fields, so CI can diff plans and `jq` them without guarding against missing keys.
#[test]
fn the_json_plan_has_the_documented_shape() {
    let (doc, steps) = cases_plan(&[]);
    assert_eq!(keys(&doc), BTreeSet::from(["pipeline", "steps"]));
    assert_eq!(doc["pipeline"], "dry-run-cases");
    let step_keys = BTreeSet::from([
        "id", "name", "action", "needs", "if", "for_each", "skipped", "requests", "repeats",
        "retry", "timeout", "notes",
    ]);
    for step in steps.values() {
        assert_eq!(keys(step), step_keys, "{step:#}");
        for r in step["requests"].as_array().unwrap() {
            let mut expected = BTreeSet::from(["method", "url", "headers"]);
            expected.extend(r.get("body").map(|_| "body"));
            expected.extend(r.get("multipart").map(|_| "multipart"));
            assert_eq!(keys(r), expected, "{r:#}");
            assert!(
                !(r.get("body").is_some() && r.get("multipart").is_some()),
                "body or multipart, never both: {r:#}"
            );
        }
        if !step["retry"].is_null() {
            assert_eq!(
                keys(&step["retry"]),
                BTreeSet::from([
                    "max_attempts",
                    "initial_interval",
                    "max_interval",
                    "on",
                    "retry_after_max"
                ])
            );
        }
    }
    // Steps come in the order a run starts them: every step after those it needs.
    let order: Vec<&str> = doc["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    for (i, step) in doc["steps"].as_array().unwrap().iter().enumerate() {
        for need in step["needs"].as_array().unwrap() {
            let at = order.iter().position(|id| need == id).unwrap();
            assert!(at < i, "{} comes before {need}", order[i]);
        }
    }
}

#[test]
fn values_known_after_the_run_are_placeholders_also_inside_strings() {
    let (_, steps) = cases_plan(&[]);
    let wait = &steps["wait"]["requests"][0];
    assert_eq!(
        wait["url"],
        format!("{BASE_URL}/exports/<known after run: steps.make.outputs.id>")
    );
    let fetch = &steps["fetch"];
    assert_eq!(
        fetch["requests"][0]["url"],
        "<known after run: steps.wait.outputs.download_url>"
    );
    assert!(
        fetch["notes"][0]
            .as_str()
            .unwrap()
            .contains("out/<known after run: steps.make.outputs.id>.json"),
        "{fetch:#}"
    );
    assert_eq!(
        steps["make"]["requests"][0]["body"]["after"],
        "<known after run: steps.list.outputs.count>"
    );
    // Computed from an unknown value: shown whole, never guessed (`| length` is not 0).
    let each = steps["each_unknown"]["requests"][0]["url"]
        .as_str()
        .unwrap();
    assert!(
        each.contains("note=first+<known after run: item.name>+of+<known after run: steps.list.outputs.items | length>"),
        "{each}"
    );
}

#[test]
fn vars_env_and_cli_vars_render_for_real_and_keep_their_type() {
    let (_, steps) = cases_plan(&[]);
    let body = &steps["make"]["requests"][0]["body"];
    assert!(body.is_object(), "the body is the JSON value, not a string");
    assert_eq!(body["datasets"], serde_json::json!(["ds_0001", "ds_0002"]));
    assert_eq!(body["limit"], 10);
    assert_eq!(body["threshold"], 0.5);
    assert_eq!(body["project_id"], "prj_default");
    assert_eq!(
        steps["list"]["requests"][0]["url"],
        format!("{BASE_URL}/datasets?limit=10&region=eu-west")
    );

    let (_, steps) = cases_plan(&["--var", "project=prj_cli", "--var", "limit=25"]);
    let body = &steps["make"]["requests"][0]["body"];
    assert_eq!(body["project_id"], "prj_cli");
    assert_eq!(body["limit"], 25);
    assert_eq!(
        steps["list"]["requests"][0]["url"],
        format!("{BASE_URL}/datasets?limit=25&region=eu-west")
    );
}

#[test]
fn for_each_if_repeats_and_retries_are_fields() {
    let (_, steps) = cases_plan(&[]);
    // A list known now expands per item; a literal list too.
    let known = &steps["each_known"];
    assert_eq!(known["for_each"]["count"], 2);
    assert_eq!(known["for_each"]["max_parallel"], 2);
    let urls: Vec<&str> = known["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["url"].as_str().unwrap())
        .collect();
    assert_eq!(
        urls,
        [
            format!("{BASE_URL}/datasets/ds_0001?position=0"),
            format!("{BASE_URL}/datasets/ds_0002?position=1")
        ]
    );
    let literal = &steps["each_literal"];
    assert_eq!(
        literal["for_each"]["over"],
        serde_json::json!(["alpha", "beta"])
    );
    assert_eq!(literal["requests"].as_array().unwrap().len(), 2);
    // A list known after the run: one request, with `item` placeholders.
    let unknown = &steps["each_unknown"];
    assert_eq!(unknown["for_each"]["count"], Value::Null);
    assert_eq!(
        unknown["for_each"]["over"],
        "{{ steps.list.outputs.items }}"
    );
    assert_eq!(unknown["requests"].as_array().unwrap().len(), 1);
    assert!(unknown["requests"][0]["url"]
        .as_str()
        .unwrap()
        .contains("/datasets/<known after run: item.id>/items"));

    // `if`: undecided, false, and what follows from a false one.
    assert_eq!(steps["maybe"]["if"]["value"], Value::Null);
    assert_eq!(steps["maybe"]["requests"].as_array().unwrap().len(), 1);
    assert!(steps["after_maybe"]["notes"]
        .to_string()
        .contains("skipped if `maybe` is skipped at run time"));
    assert_eq!(steps["never"]["if"]["value"], false);
    assert_eq!(steps["never"]["skipped"], "`if` is false");
    assert_eq!(steps["never"]["requests"], serde_json::json!([]));
    assert!(steps["after_never"]["skipped"]
        .as_str()
        .unwrap()
        .contains("`never`"));
    assert_eq!(steps["after_never"]["requests"], serde_json::json!([]));

    // Pagination and polling.
    assert_eq!(steps["list"]["repeats"]["kind"], "pages");
    assert_eq!(steps["paged"]["repeats"]["kind"], "pages");
    assert_eq!(steps["each_unknown"]["repeats"]["kind"], "pages");
    let poll = &steps["poll"]["repeats"];
    assert_eq!(poll["kind"], "poll");
    assert_eq!(poll["interval"], "1s");
    assert_eq!(poll["timeout"], "2m");
    assert_eq!(poll["until"], "response.body.status == 'completed'");
    assert_eq!(poll["fail_if"], "response.body.status == 'failed'");
    let wait = &steps["wait"];
    assert_eq!(wait["repeats"]["kind"], "poll");
    assert_eq!(wait["repeats"]["timeout"], "15m");
    assert_eq!(wait["timeout"], "5m");
    assert_eq!(steps["form"]["repeats"], Value::Null);

    // Retries: the policy, and what is retried for the method.
    assert_eq!(steps["paged"]["retry"]["max_attempts"], 2);
    assert_eq!(steps["list"]["retry"]["max_attempts"], 3);
    assert_eq!(steps["list"]["retry"]["initial_interval"], "1s");
    assert!(steps["list"]["retry"]["on"]
        .as_str()
        .unwrap()
        .contains("5xx"));
    assert!(!steps["make"]["retry"]["on"]
        .as_str()
        .unwrap()
        .contains("5xx"));
    assert_eq!(steps["never"]["retry"], Value::Null);
}

#[test]
fn multipart_parts_show_every_file_a_glob_matches() {
    let (_, steps) = cases_plan(&[]);
    let data = path("tests/fixtures/dry-run/data");
    let uploads = steps["upload"]["requests"].as_array().unwrap();
    let parts: Vec<(String, String, u64, String)> = uploads
        .iter()
        .map(|r| {
            assert_eq!(r["method"], "POST");
            assert_eq!(r["url"], format!("{BASE_URL}/datasets/ds_0002/items"));
            let parts = r["multipart"].as_array().unwrap();
            assert_eq!(parts.len(), 1);
            let p = &parts[0];
            (
                p["field"].as_str().unwrap().to_string(),
                p["file_name"].as_str().unwrap().to_string(),
                p["size"].as_u64().unwrap(),
                p["content_type"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let size = |name: &str| std::fs::metadata(data.join(name)).unwrap().len();
    assert_eq!(
        parts,
        [
            (
                "upload".into(),
                "first.jsonl".into(),
                size("first.jsonl"),
                "application/x-ndjson".into()
            ),
            (
                "upload".into(),
                "second.jsonl".into(),
                size("second.jsonl"),
                "application/x-ndjson".into()
            ),
            (
                "upload".into(),
                "labels.csv".into(),
                size("labels.csv"),
                "text/plain".into()
            ),
        ]
    );
    let form = &steps["form"]["requests"][0]["multipart"];
    assert_eq!(
        form[0],
        serde_json::json!({"field": "note", "value": "for prj_default"})
    );
    assert_eq!(form[2]["file_name"], "labels.csv");
    assert_eq!(form[2]["size"], size("labels.csv"));
}

/// Every form a secret may take in output: as is, escaped for JSON and URLs, and in
/// base64 at each of the three alignments it can have inside a longer encoded text.
fn secret_forms(secret: &str) -> Vec<String> {
    let json = serde_json::to_string(secret).unwrap();
    let mut forms = vec![
        secret.to_string(),
        json[1..json.len() - 1].to_string(),
        url_encoded(secret),
        secret.replace(' ', "%20"),
    ];
    for offset in 0..3 {
        let bytes = &secret.as_bytes()[offset..];
        let whole = bytes.len() / 3 * 3;
        for engine in [
            base64::engine::general_purpose::STANDARD_NO_PAD,
            base64::engine::general_purpose::URL_SAFE_NO_PAD,
        ] {
            forms.push(engine.encode(&bytes[..whole]));
        }
    }
    forms
}

fn url_encoded(text: &str) -> String {
    text.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[track_caller]
fn assert_never_shown(out: &Output, secret: &str) {
    for form in secret_forms(secret) {
        for (name, stream) in [("stdout", &out.stdout), ("stderr", &out.stderr)] {
            assert!(
                !stream.contains(&form),
                "`{}`: {name} shows the secret as {form:?}:\n{stream}",
                out.command
            );
        }
    }
}

/// A loopback listener that counts the connections it accepts.
struct CountingListener {
    port: u16,
    accepted: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl CountingListener {
    fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    match listener.accept() {
                        Ok(_) => {
                            accepted.fetch_add(1, Ordering::SeqCst);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            })
        };
        CountingListener {
            port,
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops listening; returns the number of connections accepted.
    fn finish(mut self) -> usize {
        // Give a late connection attempt the chance to be counted.
        std::thread::sleep(Duration::from_millis(100));
        self.stop.store(true, Ordering::SeqCst);
        self.thread.take().unwrap().join().unwrap();
        self.accepted.load(Ordering::SeqCst)
    }
}

#[test]
fn a_dry_run_opens_no_connection_and_never_shows_the_key() {
    let listener = CountingListener::start();
    let base = format!("http://127.0.0.1:{}/api/v1", listener.port);
    let mut files = example_pipelines();
    files.push(path(CASES));
    for file in &files {
        for format in ["text", "json"] {
            let out = avala_pipe()
                .args(["-vv", "run"])
                .arg(file)
                .args(["--dry-run", "--format", format, "--base-url", &base])
                .env("AVALA_API_KEY", CANARY)
                .env("PARTNER_TOKEN", PARTNER_TOKEN)
                .env("DRYRUN_REGION", "eu-west")
                .run();
            out.success();
            assert!(
                out.stdout.contains(&format!("127.0.0.1:{}", listener.port)),
                "the plan is for the listener: {}",
                out.stdout
            );
            assert_never_shown(&out, CANARY);
            assert_never_shown(&out, PARTNER_TOKEN);
        }
    }
    assert_eq!(listener.finish(), 0, "a dry-run connected to the server");

    // The listener does count: one connection of our own is seen.
    let listener = CountingListener::start();
    drop(std::net::TcpStream::connect(("127.0.0.1", listener.port)).unwrap());
    assert_eq!(listener.finish(), 1);
}

#[test]
fn secrets_are_masked_in_both_formats() {
    for format in ["text", "json"] {
        let out = dry_run(&path(CASES), &["--format", format]).run();
        out.success();
        assert_never_shown(&out, PARTNER_TOKEN);
        assert!(out.stdout.contains("***"), "{}", out.stdout);
    }
    let (_, steps) = cases_plan(&[]);
    assert_eq!(steps["make"]["requests"][0]["body"]["partner_token"], "***");
    assert_eq!(
        steps["paged"]["requests"][0]["url"],
        format!("{BASE_URL}/datasets?limit=2&token=***")
    );
}

/// Plans are reviewed where secrets are not available (a pull request): an unset secret
/// shows as a placeholder in a dry-run, while a real run refuses to start without it.
#[test]
fn a_dry_run_shows_unset_secrets_as_placeholders() {
    let out = dry_run(&path(CASES), &["--format", "json"])
        .env_remove("PARTNER_TOKEN")
        .run();
    out.success();
    let plan = out.json();
    let make = plan["steps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["id"] == "make")
        .unwrap();
    assert_eq!(
        make["requests"][0]["body"]["partner_token"],
        "<secret PARTNER_TOKEN: not set>"
    );
    let out = avala_pipe()
        .args(["run", CASES, "--base-url", "http://127.0.0.1:9/api/v1"])
        .env("AVALA_API_KEY", "avk_x_unused")
        .env("DRYRUN_REGION", "eu-west")
        .env_remove("PARTNER_TOKEN")
        .run();
    out.code(2);
    out.stderr_has("environment variable PARTNER_TOKEN is not set");
}

#[test]
fn a_dry_run_needs_no_key_and_starts_no_emulator() {
    let file = path("pipelines/journey.yaml");
    // The builder removes AVALA_API_KEY from the environment.
    let out = avala_pipe().arg("run").arg(&file).arg("--dry-run").run();
    out.success();
    out.stdout_has("X-Avala-Api-Key: <redacted>");

    let out = avala_pipe()
        .arg("run")
        .arg(&file)
        .args(["--dry-run", "--emulator", "--format", "json"])
        .run();
    out.success();
    assert!(
        !out.stderr.contains("using the built-in emulator"),
        "{}",
        out.stderr
    );
    out.stderr_has("a dry-run starts no emulator");
    let plan = out.json();
    assert_eq!(
        plan["steps"][1]["requests"][0]["url"], "http://127.0.0.1:0/api/v1/exports",
        "port 0: nothing listens there"
    );
}

/// Writes `text` as `p.yaml` (with a `data/` folder of two files) in a fresh directory.
fn scratch(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/a.jsonl"), "{}\n").unwrap();
    std::fs::write(dir.path().join("data/b.jsonl"), "{}\n").unwrap();
    let file = dir.path().join("p.yaml");
    std::fs::write(&file, text).unwrap();
    (dir, file)
}

#[test]
fn what_a_run_would_refuse_is_exit_2() {
    for (what, with, message) in [
        (
            "a missing file",
            r#"{ dataset: ds_1, files: "data/missing.jsonl" }"#,
            "data/missing.jsonl does not exist",
        ),
        (
            "an empty glob",
            r#"{ dataset: ds_1, files: "data/*.csv" }"#,
            "matched no file",
        ),
        (
            "a template error",
            r#"{ dataset: "{{ vars.name.first }}", files: "data/*.jsonl" }"#,
            "step `up`",
        ),
        (
            "an unknown filter on a value known after the run",
            r#"{ dataset: "{{ steps.list.outputs.id | shout }}", files: "data/*.jsonl" }"#,
            "shout",
        ),
    ] {
        let (dir, file) = scratch(&format!(
            "version: 1\nvars:\n  name: plain\nsteps:\n  - id: list\n    action: datasets.list\n  - id: up\n    action: items.upload\n    with: {with}\n"
        ));
        for format in ["text", "json"] {
            let out = avala_pipe()
                .current_dir(dir.path())
                .arg("run")
                .arg(&file)
                .args(["--dry-run", "--format", format])
                .run();
            out.code(2).stderr_has(message);
            assert_eq!(out.stdout, "", "{what}: no plan on stdout");
        }
    }
    // The same glob with files to match is fine, and lists them in order.
    let (dir, file) = scratch(
        "version: 1\nsteps:\n  - id: up\n    action: items.upload\n    with: { dataset: ds_1, files: \"data/*.jsonl\" }\n",
    );
    let out = avala_pipe()
        .current_dir(dir.path())
        .arg("run")
        .arg(&file)
        .args(["--dry-run", "--format", "json"])
        .run();
    out.success();
    let names: Vec<Value> = out.json()["steps"][0]["requests"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["multipart"][0]["file_name"].clone())
        .collect();
    assert_eq!(names, [Value::from("a.jsonl"), Value::from("b.jsonl")]);
}

/// The preview does not drift from a run: every request of the plan whose URL is known
/// now is what the emulator then receives (method, URL with query, headers), and the
/// planned upload parts are the files stored.
#[tokio::test(flavor = "multi_thread")]
async fn the_plan_is_what_a_run_sends() {
    use avala_pipe::emulator::{EmulatorOptions, Origin};
    const KEY: &str = "avk_test_DRYRUN_fidelity";
    let mut bodies = 0;
    for file in example_pipelines() {
        // The emulator speaks the pipeline's flavour (the file's, else the default).
        let flavor = match avala_pipe::pipeline::load(&file).map(|p| p.flavor) {
            Ok(Some(avala_pipe::pipeline::model::ApiFlavor::Documented)) => {
                avala_pipe::emulator::Flavor::Documented
            }
            _ => avala_pipe::emulator::Flavor::Current,
        };
        let options = EmulatorOptions {
            flavor,
            ..EmulatorOptions::default()
        };
        let emu = crate::support::start_emulator(Some(KEY), options).await;
        let dir = tempfile::tempdir().unwrap();
        let run = |dry: bool| {
            avala_pipe()
                .arg("run")
                .arg(&file)
                .args(["--format", "json", "--base-url", &emu.base_url()])
                .args(if dry { &["--dry-run"][..] } else { &[][..] })
                .current_dir(dir.path())
                .env("AVALA_API_KEY", KEY)
                // The file's flavour, else the binary's default: as the emulator's above.
                .env_remove("AVALA_API_FLAVOR")
                .scan_dir(dir.path())
                .run_async()
        };
        let plan = run(true).await;
        assert_eq!(plan.code, Some(0), "{}", file.display());
        assert!(emu.requests().is_empty(), "the dry-run sent a request");
        let real = run(false).await;
        assert_eq!(real.code, Some(0), "{}: {}", file.display(), real.stderr);
        let plan = plan.json();
        let origin = emu.base_url().trim_end_matches("/api/v1").to_string();
        let received = emu.requests();
        let mut compared = 0;
        for step in plan["steps"].as_array().unwrap() {
            for r in step["requests"].as_array().unwrap() {
                let url = r["url"].as_str().unwrap();
                if url.contains("<known after run:") {
                    continue;
                }
                let matching: Vec<_> = received
                    .iter()
                    .filter(|got| {
                        let query = if got.query.is_empty() {
                            String::new()
                        } else {
                            format!("?{}", got.query)
                        };
                        got.origin == Origin::Api
                            && got.method == r["method"]
                            && format!("{origin}{}{query}", got.path) == url
                    })
                    .collect();
                assert!(
                    !matching.is_empty(),
                    "{}: planned {} {url} was not sent; sent: {received:#?}",
                    file.display(),
                    r["method"]
                );
                for got in &matching {
                    compare_headers(&r["headers"], &got.headers, KEY);
                }
                // The body shown is the body sent (a placeholder stands for any value).
                if let Some(body) = r.get("body") {
                    bodies += 1;
                    assert!(
                        matching
                            .iter()
                            .any(|got| got.json.as_ref().is_some_and(|j| shows(body, j))),
                        "{}: planned body of {} {url} was not sent: {body:#}\nsent: {:#?}",
                        file.display(),
                        r["method"],
                        matching.iter().map(|g| &g.json).collect::<Vec<_>>()
                    );
                }
                compared += 1;
            }
        }
        assert!(compared > 0, "{}: nothing to compare", file.display());
        // Planned files: the files stored, with their sizes (multipart parts of
        // `items.upload`; presigned files of `datasets.upload`).
        let requests_of = |action: &str| -> Vec<Value> {
            plan["steps"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|s| s["action"] == action)
                .flat_map(|s| s["requests"].as_array().unwrap().clone())
                .collect()
        };
        let mut planned: Vec<(String, u64)> = requests_of("items.upload")
            .iter()
            .map(|r| {
                let p = &r["multipart"][0];
                (
                    p["file_name"].as_str().unwrap().to_string(),
                    p["size"].as_u64().unwrap(),
                )
            })
            .collect();
        planned.extend(requests_of("datasets.upload").iter().filter_map(|r| {
            let body = &r["body"];
            Some((
                body["file_path_in_dataset"].as_str()?.to_string(),
                body["content_length"].as_u64()?,
            ))
        }));
        let mut stored: Vec<(String, u64)> = emu
            .uploads()
            .into_iter()
            .map(|u| (u.name, u.size))
            .collect();
        planned.sort();
        stored.sort();
        assert_eq!(planned, stored, "{}", file.display());
        emu.shutdown().await;
    }
    // exports.create, request's json, the presign and finalize of datasets.upload, ...
    assert!(bodies >= 5, "only {bodies} planned bodies were compared");
}

/// Does the planned body show the body sent? Equal JSON, where a placeholder (`<...>`,
/// or text with a `<known after run: ...>` part) stands for any value.
fn shows(planned: &Value, sent: &Value) -> bool {
    match (planned, sent) {
        (Value::String(p), _) if p.contains("<known after run:") => true,
        (Value::String(p), _) if p.starts_with('<') && p.ends_with('>') => true,
        (Value::Object(p), Value::Object(s)) => {
            p.len() == s.len()
                && p.iter()
                    .all(|(k, v)| s.get(k).is_some_and(|sv| shows(v, sv)))
        }
        (Value::Array(p), Value::Array(s)) => {
            p.len() == s.len() && p.iter().zip(s).all(|(a, b)| shows(a, b))
        }
        _ => planned == sent,
    }
}

/// The headers shown are the headers sent (besides `Host` and `Content-Length`, which
/// follow from the URL and the body).
#[track_caller]
fn compare_headers(shown: &Value, sent: &BTreeMap<String, String>, key: &str) {
    let shown: BTreeMap<String, String> = shown
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str().unwrap().to_string()))
        .collect();
    for (name, value) in &shown {
        let got = sent
            .get(name)
            .unwrap_or_else(|| panic!("{name} shown but not sent: {sent:#?}"));
        match (name.as_str(), value.as_str()) {
            ("x-avala-api-key", "<redacted>") => assert_eq!(got, key),
            ("content-type", "multipart/form-data; boundary=<generated>") => {
                assert!(got.starts_with("multipart/form-data; boundary="), "{got}")
            }
            (_, v) => assert_eq!(got, v, "{name}"),
        }
    }
    for name in sent.keys() {
        assert!(
            shown.contains_key(name) || ["host", "content-length"].contains(&name.as_str()),
            "{name} sent but not shown: {shown:#?}"
        );
    }
}

/// The README's dry-run excerpt is real output, not a drawing of it.
#[test]
fn the_readme_excerpt_is_real_output() {
    let readme = std::fs::read_to_string(path("README.md")).unwrap();
    let section = readme
        .split("## Preview a run (dry-run)")
        .nth(1)
        .expect("README has a dry-run section");
    let excerpt = section
        .split("```text\n")
        .nth(1)
        .and_then(|s| s.split("```").next())
        .expect("the section has a text excerpt");
    let out = avala_pipe()
        .args(["run", "pipelines/journey.yaml", "--dry-run"])
        .run();
    out.success();
    let actual = out.stdout.replace(
        concat!("avala-pipe/", env!("CARGO_PKG_VERSION")),
        "avala-pipe/0.1.0",
    );
    assert!(
        actual.contains(excerpt),
        "the README excerpt is not in the output of `{}`:\n{actual}",
        out.command
    );
}
