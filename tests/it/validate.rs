//! `validate`, `graph`, `schema` and the small commands: everything that happens to a
//! pipeline file before any request is sent.
//!
//! Every `tests/fixtures/invalid/X.yaml` has an `X.stderr` with the exact stderr of
//! `avala-pipe --color never validate tests/fixtures/invalid/X.yaml`; an `X.json`, when
//! present, is the exact stdout of the same command with `--format json`. Run with
//! `BLESS=1` to rewrite them, then review the diff.

use std::path::{Path, PathBuf};
use std::time::Duration;

use avala_pipe::pipeline::{check_source, TValue};
use serde_json::Value;

use crate::support::{avala_pipe, bless, path, root};

const INVALID: &str = "tests/fixtures/invalid";

/// The fixture files with extension `ext`, sorted, as paths relative to the crate root.
fn fixtures(ext: &str) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(path(INVALID))
        .expect("tests/fixtures/invalid exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == ext))
        .map(|p| Path::new(INVALID).join(p.file_name().expect("file name")))
        .collect();
    files.sort();
    files
}

/// Compares `actual` with the file at `expected` (relative to the crate root), or
/// rewrites the file under `BLESS=1`. Returns a description of the mismatch.
fn compare_or_bless(expected: &Path, actual: &str) -> Option<String> {
    let full = root().join(expected);
    if bless() {
        std::fs::write(&full, actual).expect("write the expected file");
        return None;
    }
    let wanted = std::fs::read_to_string(&full).unwrap_or_default();
    if wanted == actual {
        return None;
    }
    Some(format!(
        "{}: output differs (run with BLESS=1 to accept it)\n--- expected\n{wanted}--- actual\n{actual}",
        expected.display()
    ))
}

#[test]
fn invalid_fixtures_give_their_expected_stderr_and_exit_2() {
    let mut failures = Vec::new();
    let yamls = fixtures("yaml");
    assert!(yamls.len() >= 25, "fixtures missing: {yamls:?}");
    for yaml in &yamls {
        let out = avala_pipe()
            .args(["--color", "never", "validate"])
            .arg(yaml)
            .run();
        if out.code != Some(2) {
            failures.push(format!(
                "{}: exit code {:?}, expected 2",
                yaml.display(),
                out.code
            ));
        }
        if !out.stdout.is_empty() {
            failures.push(format!(
                "{}: stdout should be empty, got:\n{}",
                yaml.display(),
                out.stdout
            ));
        }
        failures.extend(compare_or_bless(
            &yaml.with_extension("stderr"),
            &out.stderr,
        ));
    }
    assert!(
        failures.is_empty(),
        "{} problem(s):\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
}

#[test]
fn invalid_fixtures_give_their_expected_json() {
    let mut failures = Vec::new();
    for json in fixtures("json") {
        let out = avala_pipe()
            .args(["validate", "--format", "json"])
            .arg(json.with_extension("yaml"))
            .run();
        if out.code != Some(2) {
            failures.push(format!("{}: exit code {:?}", json.display(), out.code));
        }
        failures.extend(compare_or_bless(&json, &out.stdout));
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_fixture_has_its_expected_output_and_vice_versa() {
    let yamls = fixtures("yaml");
    let mut problems = Vec::new();
    for yaml in &yamls {
        // Under BLESS=1 the fixture test is writing the missing files right now.
        if !bless() && !root().join(yaml.with_extension("stderr")).is_file() {
            problems.push(format!(
                "{} has no .stderr (run the tests with BLESS=1)",
                yaml.display()
            ));
        }
    }
    for other in fixtures("stderr").into_iter().chain(fixtures("json")) {
        if !yamls.contains(&other.with_extension("yaml")) {
            problems.push(format!("{} has no .yaml", other.display()));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn json_format_gives_each_diagnostic_with_file_position_step_and_suggestion() {
    let file = "tests/fixtures/invalid/many-problems.yaml";
    let out = avala_pipe()
        .args(["validate", "--format", "json", file])
        .run();
    out.code(2);
    let doc = out.json();
    assert_eq!(doc["valid"], false);
    let files = doc["files"].as_array().expect("files");
    assert_eq!(files.len(), 1);
    assert_eq!(files[0]["file"], file);
    assert_eq!(files[0]["valid"], false);
    let diags = files[0]["diagnostics"].as_array().expect("diagnostics");
    let summary: Vec<(u64, u64, &str, &str, &str)> = diags
        .iter()
        .map(|d| {
            assert_eq!(d["file"], file, "{d}");
            (
                d["line"].as_u64().expect("line"),
                d["column"].as_u64().expect("column"),
                d["message"].as_str().expect("message"),
                d["step"].as_str().expect("step"),
                d["suggestion"].as_str().unwrap_or("-"),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                6,
                7,
                "unknown key `limt` in the inputs (`with`) of datasets.list",
                "list",
                "limit"
            ),
            (
                10,
                19,
                "unknown step `lst` in `steps.lst`",
                "wait",
                "steps.list"
            ),
            (11, 16, "`soon` is not a duration", "wait", "-"),
        ]
    );
    // A problem outside any step has a null step; stderr stays quiet in JSON mode.
    let out = avala_pipe()
        .args([
            "validate",
            "--format",
            "json",
            "tests/fixtures/invalid/unknown-top-key.yaml",
        ])
        .run();
    out.code(2);
    let d = &out.json()["files"][0]["diagnostics"][0];
    assert_eq!(d["step"], Value::Null);
    assert_eq!(d["suggestion"], "name");
    assert_eq!(
        (d["line"].as_u64(), d["column"].as_u64()),
        (Some(2), Some(1))
    );
    assert_eq!(out.stderr, "");
}

#[test]
fn json_format_of_valid_files() {
    let out = avala_pipe()
        .args([
            "validate",
            "--format",
            "json",
            "pipelines/journey.yaml",
            "pipelines/fan-out.yaml",
        ])
        .run();
    out.success();
    let doc = out.json();
    assert_eq!(doc["valid"], true);
    let files = doc["files"].as_array().expect("files");
    assert_eq!(files.len(), 2);
    assert_eq!(files[0]["file"], "pipelines/journey.yaml");
    assert_eq!(files[0]["valid"], true);
    assert_eq!(files[0]["pipeline"], "nightly-export");
    assert_eq!(files[0]["steps"], 4);
    assert_eq!(files[0]["diagnostics"], serde_json::json!([]));
    assert_eq!(files[1]["pipeline"], "dataset-inventory");
}

/// The example pipelines, as paths relative to the crate root.
fn examples() -> Vec<String> {
    let mut files: Vec<String> = std::fs::read_dir(path("pipelines"))
        .expect("pipelines/ exists")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml"))
        .map(|p| format!("pipelines/{}", p.file_name().unwrap().to_string_lossy()))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "expected at least 3 examples: {files:?}");
    files
}

#[test]
fn every_example_pipeline_validates() {
    for file in examples() {
        let out = avala_pipe().args(["validate", &file]).run();
        out.success();
        out.stderr_has(&format!("{file}: valid ("));
    }
}

#[test]
fn valid_fixtures_validate_and_forward_references_order_the_graph() {
    let out = avala_pipe()
        .args(["validate", "tests/fixtures/valid/templates.yaml"])
        .run();
    out.success()
        .stderr_has("tests/fixtures/valid/templates.yaml: valid (4 steps)");
    let graph = avala_pipe()
        .args([
            "graph",
            "--format",
            "json",
            "tests/fixtures/valid/templates.yaml",
        ])
        .run();
    graph.success();
    let doc = graph.json();
    // `poll` (3rd in the file) references `later` (4th): `later` runs first.
    assert_eq!(
        doc["order"],
        serde_json::json!(["list", "each", "later", "poll"])
    );
    assert_eq!(
        doc["edges"],
        serde_json::json!([["list", "each"], ["list", "poll"], ["later", "poll"]])
    );
}

#[test]
fn every_example_pipeline_names_the_schema_for_editors() {
    for file in examples() {
        let text = std::fs::read_to_string(path(&file)).expect("read the example");
        let first = text.lines().next().unwrap_or("");
        assert_eq!(
            first, "# yaml-language-server: $schema=../schemas/pipeline.schema.json",
            "{file} must start with the yaml-language-server line"
        );
    }
}

#[test]
fn multiple_files_report_every_problem_and_exit_2_if_any_is_invalid() {
    let out = avala_pipe()
        .args([
            "--color",
            "never",
            "validate",
            "pipelines/journey.yaml",
            "tests/fixtures/invalid/unknown-input.yaml",
            "pipelines/fan-out.yaml",
            "tests/fixtures/invalid/cycle.yaml",
        ])
        .run();
    out.code(2);
    out.stderr_has("pipelines/journey.yaml: valid (4 steps)")
        .stderr_has("pipelines/fan-out.yaml: valid (3 steps)")
        .stderr_has("--> tests/fixtures/invalid/unknown-input.yaml:6:7")
        .stderr_has("error: tests/fixtures/invalid/unknown-input.yaml is invalid: 1 problem")
        .stderr_has("error: dependency cycle: a -> b -> c -> a")
        .stderr_has("error: tests/fixtures/invalid/cycle.yaml is invalid: 1 problem");
    // Reported in the order given.
    let at = |s: &str| out.stderr.find(s).expect("present");
    assert!(at("journey.yaml: valid") < at("unknown-input.yaml:6:7"));
    assert!(at("unknown-input.yaml:6:7") < at("fan-out.yaml: valid"));
    assert!(at("fan-out.yaml: valid") < at("cycle.yaml:3:5"));

    let all_valid = avala_pipe()
        .args([
            "validate",
            "pipelines/journey.yaml",
            "pipelines/fan-out.yaml",
        ])
        .run();
    all_valid.success();

    let json = avala_pipe()
        .args([
            "validate",
            "--format",
            "json",
            "pipelines/journey.yaml",
            "tests/fixtures/invalid/cycle.yaml",
        ])
        .run();
    json.code(2);
    let doc = json.json();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["files"][0]["valid"], true);
    assert_eq!(doc["files"][1]["valid"], false);
}

#[test]
fn a_missing_file_or_a_directory_is_exit_2() {
    let out = avala_pipe()
        .args(["validate", "tests/fixtures/no-such-file.yaml"])
        .run();
    out.code(2)
        .stderr_has("cannot read the pipeline file")
        .stderr_has("tests/fixtures/no-such-file.yaml");
    avala_pipe()
        .args(["validate", "tests/fixtures"])
        .run()
        .code(2)
        .stderr_has("cannot read the pipeline file");
    // No file at all is an invocation error.
    avala_pipe().arg("validate").run().code(2);
}

#[test]
fn yaml_1_2_scalars_stay_as_written() {
    let source = "version: 1\nvars:\n  country: NO\n  answer: yes\n  python: 3.10\n  code: 012\n  big: 1_000\n  float: 2.5\n  count: 12\n  flag: true\n  quoted: '3.10'\nsteps:\n  - id: list\n    action: items.list\n    with:\n      dataset: 3.10\n";
    let p = check_source(Path::new("scalars.yaml"), source).expect("valid");
    let expect = [
        ("country", TValue::Str("NO".into())),
        ("answer", TValue::Str("yes".into())),
        ("python", TValue::Str("3.10".into())),
        ("code", TValue::Str("012".into())),
        ("big", TValue::Str("1_000".into())),
        ("float", TValue::Float(2.5)),
        ("count", TValue::Int(12)),
        ("flag", TValue::Bool(true)),
        ("quoted", TValue::Str("3.10".into())),
    ];
    for (name, value) in expect {
        assert_eq!(p.vars.get(name), Some(&value), "vars.{name}");
    }
    assert_eq!(
        p.steps[0].input("dataset"),
        Some(&TValue::Str("3.10".into()))
    );
}

#[test]
fn alias_bombs_and_deep_nesting_are_rejected_quickly() {
    for name in ["alias-bomb", "deep-nesting"] {
        let out = avala_pipe()
            .args(["validate", &format!("{INVALID}/{name}.yaml")])
            .timeout(Duration::from_secs(30))
            .run();
        out.code(2);
        // A generous sanity bound for slow machines; the real figure is milliseconds.
        assert!(
            out.elapsed < Duration::from_secs(2),
            "{name} took {:?}",
            out.elapsed
        );
    }
}

#[test]
fn a_huge_file_is_refused_without_being_parsed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("huge.yaml");
    let mut text = String::from("version: 1\nsteps:\n  - id: a\n    action: datasets.list\n");
    text.push_str("# padding\n".repeat(5 * 1024 * 1024).as_str()); // 50 MiB
    std::fs::write(&file, &text).expect("write");
    let out = avala_pipe().arg("validate").arg(&file).run();
    out.code(2).stderr_has(&format!(
        "the file is {} bytes; pipeline files are limited to 16 MiB",
        text.len()
    ));
    assert!(out.elapsed < Duration::from_secs(2), "{:?}", out.elapsed);
}

#[test]
fn binary_garbage_and_invalid_utf8_are_refused_clearly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let png = dir.path().join("image.yaml");
    let mut bytes = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR".to_vec();
    bytes.extend((0u8..=255).cycle().take(4096));
    std::fs::write(&png, &bytes).expect("write");
    let latin1 = dir.path().join("latin1.yaml");
    std::fs::write(&latin1, b"version: 1\nname: caf\xe9\nsteps: []\n").expect("write");
    let nul = dir.path().join("nul.yaml");
    std::fs::write(&nul, b"version: 1\nname: a\x00b\n").expect("write");

    let cases = [
        (&png, "the file is not valid UTF-8 text", ":1:1"),
        (&latin1, "the file is not valid UTF-8 text", ":2:10"),
        (&nul, "the file contains binary data (NUL bytes)", ":2:8"),
    ];
    for (file, message, position) in cases {
        let out = avala_pipe()
            .args(["--color", "never", "validate"])
            .arg(file)
            .run();
        out.code(2)
            .stderr_has(&format!("error: {message}"))
            .stderr_has(&format!("{}{position}", file.display()));
        // The offending bytes are never echoed raw to the terminal.
        assert!(
            !out.stderr.chars().any(|c| c.is_control() && c != '\n'),
            "control characters in stderr: {:?}",
            out.stderr
        );
    }
}

#[test]
fn a_generated_2000_step_pipeline_validates() {
    let mut text = String::from("version: 1\nvars:\n  project: prj_0001\nsteps:\n");
    for i in 0..2000 {
        match i % 4 {
            0 => text.push_str(&format!(
                "  - id: s{i}\n    action: datasets.list\n    with:\n      limit: 10\n"
            )),
            1 => text.push_str(&format!(
                "  - id: s{i}\n    action: exports.create\n    needs: [s{}]\n    with:\n      project_id: \"{{{{ vars.project }}}}\"\n",
                i - 1
            )),
            2 => text.push_str(&format!(
                "  - id: s{i}\n    action: exports.wait\n    with:\n      export: \"{{{{ steps.s{}.outputs.id }}}}\"\n",
                i - 1
            )),
            _ => text.push_str(&format!(
                "  - id: s{i}\n    action: download\n    with:\n      url: \"{{{{ steps.s{}.outputs.download_url }}}}\"\n      to: \"out/{i}.json\"\n",
                i - 1
            )),
        }
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let file = dir.path().join("big.yaml");
    std::fs::write(&file, &text).expect("write");
    let out = avala_pipe().arg("validate").arg(&file).run();
    out.success().stderr_has("valid (2000 steps)");
    // Only a sanity bound (debug build, busy machine): release takes a few milliseconds.
    assert!(out.elapsed < Duration::from_secs(10), "{:?}", out.elapsed);

    let graph = avala_pipe()
        .args(["graph", "--format", "json"])
        .arg(&file)
        .run();
    graph.success();
    let doc = graph.json();
    assert_eq!(doc["edges"].as_array().map(Vec::len), Some(1500));
    assert_eq!(doc["order"][1999], "s1999");
}

/// The edges of `pipelines/journey.yaml`, in flow order.
const JOURNEY_EDGES: [(&str, &str); 3] = [
    ("upload", "export"),
    ("export", "ready"),
    ("ready", "fetch"),
];

#[test]
fn graph_mermaid() {
    let out = avala_pipe().args(["graph", "pipelines/journey.yaml"]).run();
    out.success();
    assert!(out.stdout.starts_with("flowchart TD\n"), "{}", out.stdout);
    for (from, to) in JOURNEY_EDGES {
        out.stdout_has(&format!("    {from} --> {to}\n"));
    }
    assert_eq!(out.stdout.matches("-->").count(), 3, "{}", out.stdout);
    out.stdout_has("upload[\"Upload the day's files<br/><small>items.upload</small>\"]");
    let explicit = avala_pipe()
        .args(["graph", "--format", "mermaid", "pipelines/journey.yaml"])
        .run();
    assert_eq!(explicit.stdout, out.stdout);
}

#[test]
fn graph_dot() {
    let out = avala_pipe()
        .args(["graph", "--format", "dot", "pipelines/journey.yaml"])
        .run();
    out.success();
    assert!(
        out.stdout.starts_with("digraph \"nightly-export\" {\n"),
        "{}",
        out.stdout
    );
    assert!(out.stdout.ends_with("}\n"), "{}", out.stdout);
    for (from, to) in JOURNEY_EDGES {
        out.stdout_has(&format!("    \"{from}\" -> \"{to}\";\n"));
    }
    assert_eq!(out.stdout.matches("->").count(), 3, "{}", out.stdout);
}

#[test]
fn graph_json() {
    let out = avala_pipe()
        .args(["graph", "--format", "json", "pipelines/journey.yaml"])
        .run();
    out.success();
    let doc = out.json();
    assert_eq!(doc["pipeline"], "nightly-export");
    let edges: Vec<(String, String)> = doc["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| (e[0].as_str().unwrap().into(), e[1].as_str().unwrap().into()))
        .collect();
    let expected: Vec<(String, String)> = JOURNEY_EDGES
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(edges, expected);
    assert_eq!(
        doc["order"],
        serde_json::json!(["upload", "export", "ready", "fetch"])
    );
    let steps = doc["steps"].as_array().expect("steps");
    assert_eq!(steps[1]["id"], "export");
    assert_eq!(steps[1]["action"], "exports.create");
    // `export` depends on `upload` through `needs`; `ready` through its template.
    assert_eq!(steps[1]["needs"], serde_json::json!(["upload"]));
    assert_eq!(steps[2]["needs"], serde_json::json!(["export"]));
}

#[test]
fn graph_of_an_invalid_file_is_exit_2_with_diagnostics() {
    let out = avala_pipe()
        .args([
            "--color",
            "never",
            "graph",
            "tests/fixtures/invalid/cycle.yaml",
        ])
        .run();
    out.code(2)
        .stderr_has("error: dependency cycle: a -> b -> c -> a");
    assert_eq!(out.stdout, "");
    avala_pipe()
        .args(["graph", "--format", "svg", "pipelines/journey.yaml"])
        .run()
        .code(2);
}

#[test]
fn committed_schema_is_fresh() {
    let out = avala_pipe().arg("schema").run();
    out.success();
    let committed = std::fs::read_to_string(path("schemas/pipeline.schema.json"))
        .expect("schemas/pipeline.schema.json exists");
    assert!(
        committed == out.stdout,
        "schemas/pipeline.schema.json is stale: run `cargo run -- schema > schemas/pipeline.schema.json` and commit it"
    );
}

#[test]
fn schema_is_json_with_a_step_definition() {
    let out = avala_pipe().arg("schema").run();
    out.success();
    let schema = out.json();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["type"], "object");
    assert!(schema["$defs"]["step"].is_object(), "no $defs.step");
    assert_eq!(
        schema["properties"]["steps"]["items"]["$ref"],
        "#/$defs/step"
    );
    assert_eq!(schema["required"], serde_json::json!(["version", "steps"]));
    let actions = schema["$defs"]["step"]["properties"]["action"]["enum"]
        .as_array()
        .expect("action enum");
    assert_eq!(actions.len(), avala_pipe::actions::ActionKind::ALL.len());
    // Each action constrains its inputs: exports.wait requires `export`.
    let wait = schema["$defs"]["step"]["allOf"]
        .as_array()
        .expect("allOf")
        .iter()
        .find(|c| c["if"]["properties"]["action"]["const"] == "exports.wait")
        .expect("exports.wait clause");
    assert_eq!(
        wait["then"]["properties"]["with"]["required"],
        serde_json::json!(["export"])
    );
}

#[test]
fn help_and_version() {
    let out = avala_pipe().arg("--help").run();
    out.success();
    for command in [
        "run",
        "validate",
        "graph",
        "schema",
        "emulator",
        "completions",
        "man",
    ] {
        out.stdout_has(&format!("  {command} "));
    }
    out.stdout_has("Exit codes:");
    avala_pipe()
        .args(["validate", "--help"])
        .run()
        .success()
        .stdout_has("avala-pipe validate pipelines/*.yaml");
    let version = avala_pipe().arg("--version").run();
    version.success();
    assert_eq!(
        version.stdout,
        format!("avala-pipe {}\n", env!("CARGO_PKG_VERSION"))
    );
    // An unknown command or flag is an invocation error: exit 2.
    avala_pipe().arg("frobnicate").run().code(2);
    avala_pipe()
        .args(["validate", "--nope", "x.yaml"])
        .run()
        .code(2);
}

#[test]
fn completions_and_man_page() {
    let bash = avala_pipe().args(["completions", "bash"]).run();
    bash.success()
        .stdout_has("_avala__pipe() {")
        .stdout_has("complete -F _avala__pipe");
    for shell in ["zsh", "fish", "powershell", "elvish"] {
        let out = avala_pipe().args(["completions", shell]).run();
        out.success();
        assert!(!out.stdout.is_empty(), "{shell}");
    }
    avala_pipe().args(["completions", "tcsh"]).run().code(2);
    let man = avala_pipe().arg("man").run();
    man.success()
        .stdout_has(".TH avala-pipe")
        .stdout_has(".SH NAME");
}

/// The README's action table, rendered from the format table in `pipeline::spec`.
fn actions_table() -> String {
    use avala_pipe::actions::request::POLL_FIELDS as POLL;
    use avala_pipe::pipeline::spec::{Field, ACTIONS};
    let input = |f: &Field| match (f.required, f.default) {
        (true, _) => format!("`{}` (required)", f.name),
        (false, Some(d)) => format!("`{}` = `{d}`", f.name),
        (false, None) => format!("`{}`", f.name),
    };
    let mut out = String::from("| action | what it does | inputs | outputs |\n|---|---|---|---|\n");
    for a in ACTIONS.iter() {
        let mut inputs = a.inputs.iter().map(input).collect::<Vec<_>>().join(", ");
        if !a.one_of.is_empty() {
            let names: Vec<String> = a.one_of.iter().map(|n| format!("`{n}`")).collect();
            inputs.push_str(&format!("; one of {} is required", names.join(", ")));
        }
        let outputs: Vec<String> = a
            .outputs
            .iter()
            .map(|(name, _)| match *name {
                "..." => "… every other field".to_string(),
                name => format!("`{name}`"),
            })
            .collect();
        out.push_str(&format!(
            "| `{}` | {} | {} | {} |\n",
            a.name,
            a.summary.replace('|', "\\|"),
            inputs,
            outputs.join(", ")
        ));
    }
    let poll: Vec<String> = POLL.iter().map(input).collect();
    out.push_str(&format!(
        "\n`request`'s `poll` takes {}.\n",
        poll.join(", ")
    ));
    out
}

#[test]
fn readme_action_table_matches_the_format_table() {
    let readme = std::fs::read_to_string(path("README.md")).expect("README.md exists");
    let table = actions_table();
    assert!(
        readme.contains(&table),
        "README.md's `## Actions` table differs from the action specs (src/actions/); it should contain:\n\n{table}"
    );
}
