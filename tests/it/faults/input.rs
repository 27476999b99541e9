//! Case 12: bad pipeline and vars files through `run`, under a memory cap, and the
//! loader and validator under proptest.

use super::*;

// ---------------------------------------------------------------------------------------
// 12: bad input
// ---------------------------------------------------------------------------------------

/// Runs the binary with its address space capped at 1 GiB, so unbounded memory is a crash
/// (and a failed test) rather than a slow machine.
async fn run_capped(file: &Path, dir: &Path, base_url: &str, extra: &[&str]) -> Output {
    command(file, dir, Some(base_url))
        .args(extra)
        .memory_limit_kib(1_048_576)
        .run_async()
        .await
}

/// 12. Bad input to `run`: exit 2 within 2 s, under a 1 GiB address-space cap, nothing sent.
/// `tests/it/validate.rs` covers the same files through `validate` with their messages
/// (`alias_bombs_and_deep_nesting_are_rejected_quickly`, `a_huge_file_is_refused_without_
/// being_parsed`, `binary_garbage_and_invalid_utf8_are_refused_clearly`); this adds `run`,
/// the memory bound, merge-key bombs, block-style nesting, a huge scalar, and `--vars-file`.
#[tokio::test(flavor = "multi_thread")]
async fn case12_bad_input_is_exit_2_quickly_with_bounded_memory() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    // The bad files live apart from the run's directory, which is scanned after each run.
    let inputs = tempfile::tempdir().unwrap();
    let input = inputs.path();
    let dir = tempfile::tempdir().unwrap();
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/invalid");
    let valid = "version: 1\nvars:\n  x: 1\nsteps:\n  - id: list\n    action: datasets.list\n";
    let mut cases: Vec<(String, PathBuf, Vec<String>)> = Vec::new();
    for name in ["alias-bomb", "deep-nesting"] {
        let path = fixtures.join(format!("{name}.yaml"));
        let copy = input.join(format!("{name}.yaml"));
        std::fs::copy(&path, &copy).unwrap();
        cases.push((name.into(), copy, vec![]));
    }
    let mut merge = String::from(
        "version: 1\nsteps:\n  - id: list\n    action: datasets.list\nx0: &a0 {k: v, j: w}\n",
    );
    for i in 1..40 {
        merge.push_str(&format!(
            "x{i}: &a{i} {{<<: [*a{p}, *a{p}], k{i}: [*a{p}, *a{p}, *a{p}, *a{p}]}}\n",
            p = i - 1
        ));
    }
    cases.push((
        "merge-bomb".into(),
        write(input, "merge.yaml", &merge),
        vec![],
    ));
    let mut block =
        String::from("version: 1\nsteps:\n  - id: list\n    action: datasets.list\nvars:\n");
    for depth in 1..2000 {
        block.push_str(&" ".repeat(depth));
        block.push_str(&format!("k{depth}:\n"));
    }
    cases.push((
        "block-nesting".into(),
        write(input, "block.yaml", &block),
        vec![],
    ));
    let mut huge = String::from("version: 1\nname: \"");
    huge.push_str(&"a".repeat(17 << 20));
    huge.push_str("\"\nsteps: []\n");
    cases.push((
        "huge-scalar".into(),
        write(input, "huge.yaml", &huge),
        vec![],
    ));
    let garbage: Vec<u8> = (0..1 << 20)
        .map(|i: u32| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(input.join("garbage.yaml"), &garbage).unwrap();
    cases.push(("garbage".into(), input.join("garbage.yaml"), vec![]));
    std::fs::write(
        input.join("latin1.yaml"),
        b"version: 1\nname: caf\xe9\nsteps: []\n",
    )
    .unwrap();
    cases.push(("invalid-utf8".into(), input.join("latin1.yaml"), vec![]));
    // The same through --vars-file, with a valid pipeline.
    let ok = write(input, "ok.yaml", valid);
    let vars_bomb = write(
        input,
        "vars-bomb.yaml",
        &std::fs::read_to_string(fixtures.join("alias-bomb.yaml"))
            .unwrap()
            .replace("version: 1\n", "x: 1\n"),
    );
    cases.push((
        "vars-file-bomb".into(),
        ok.clone(),
        vec!["--vars-file".into(), vars_bomb.display().to_string()],
    ));
    cases.push((
        "vars-file-garbage".into(),
        ok.clone(),
        vec![
            "--vars-file".into(),
            input.join("garbage.yaml").display().to_string(),
        ],
    ));
    cases.push((
        "vars-file-endless".into(),
        ok.clone(),
        vec!["--vars-file".into(), "/dev/zero".into()],
    ));
    cases.push((
        "pipeline-endless".into(),
        PathBuf::from("/dev/zero"),
        vec![],
    ));

    for (name, file, extra) in &cases {
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        let out = run_capped(file, dir.path(), &emu.base_url(), &extra).await;
        assert_eq!(
            out.code,
            Some(2),
            "{name}: exit code\n--- stderr\n{}",
            out.stderr
        );
        assert!(
            out.elapsed < Duration::from_secs(2),
            "{name} took {:?}",
            out.elapsed
        );
        assert!(out.stdout.is_empty(), "{name}: {}", out.stdout);
        let why = match name.as_str() {
            "alias-bomb" | "merge-bomb" | "vars-file-bomb" => "alias bomb",
            "deep-nesting" | "block-nesting" => "nesting deeper than",
            "huge-scalar" | "pipeline-endless" => "limited to 16 MiB",
            "vars-file-endless" => "larger than 16 MiB",
            _ => "not valid UTF-8",
        };
        assert!(
            out.stderr.contains(why),
            "{name}: says {why:?}: {}",
            out.stderr
        );
        assert!(
            !out.stderr.chars().any(|c| c.is_control() && c != '\n'),
            "{name}: raw bytes echoed: {:?}",
            out.stderr
        );
    }
    assert!(emu.requests().is_empty(), "nothing may be sent");
    // The control: the valid file runs under the same cap.
    let out = run_capped(&ok, dir.path(), &emu.base_url(), &[]).await;
    out.code(0);
    assert_eq!(emu.requests().len(), 1);
    delivered(&emu, 12, &[]);
    emu.shutdown().await;
}

/// 12 (fuzz). The loader and validator never panic, on random bytes, on YAML-ish text made
/// of pipeline keywords, and on mutations of valid pipelines. Deterministic (a fixed seed,
/// no persistence file) and bounded (256 cases each, and a time cap) so CI stays fast.
#[test]
fn case12_the_loader_and_validator_never_panic() {
    use proptest::prelude::*;
    use proptest::test_runner::{Config, RngAlgorithm, TestRng, TestRunner};

    let started = Instant::now();
    let path = Path::new("fuzz.yaml");
    // More cases for a longer local hunt: AVALA_PIPE_FUZZ_CASES=100000.
    let cases: u32 = std::env::var("AVALA_PIPE_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(256);
    let runner = || {
        TestRunner::new_with_rng(
            Config {
                cases,
                failure_persistence: None,
                ..Config::default()
            },
            TestRng::deterministic_rng(RngAlgorithm::ChaCha),
        )
    };

    // Random bytes, as text (the loader sees text; invalid UTF-8 stops before it).
    let past_yaml = std::sync::atomic::AtomicUsize::new(0);
    let loaded = std::sync::atomic::AtomicUsize::new(0);
    let check = |text: &str| {
        let began = Instant::now();
        match avala_pipe::pipeline::check_source(path, text) {
            Ok(_) => {
                loaded.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
            Err(d) => {
                if !d
                    .diagnostics
                    .iter()
                    .any(|d| d.message.starts_with("invalid YAML"))
                {
                    past_yaml.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        }
        assert!(
            began.elapsed() < Duration::from_secs(2),
            "checking took {:?}: {text:?}",
            began.elapsed()
        );
    };
    runner()
        .run(&proptest::collection::vec(any::<u8>(), 0..2048), |bytes| {
            check(&String::from_utf8_lossy(&bytes));
            Ok(())
        })
        .unwrap();

    // YAML-ish structures from pipeline keywords, template pieces and YAML syntax.
    let words = [
        "version",
        "name",
        "steps",
        "id",
        "action",
        "with",
        "needs",
        "if",
        "for_each",
        "max_parallel",
        "outputs",
        "retry",
        "timeout",
        "continue_on_error",
        "vars",
        "secrets",
        "api",
        "base_url",
        "trailing_slash",
        "defaults",
        "concurrency",
        "description",
        "datasets.list",
        "items.list",
        "items.upload",
        "exports.create",
        "exports.wait",
        "download",
        "request",
        "poll",
        "until",
        "fail_if",
        "paginate",
        "expect",
        "files",
        "dataset",
        "url",
        "to",
        "sha256",
        "max_attempts",
        "initial_interval",
        "1",
        "0",
        "-1",
        "2s",
        "10m",
        "1e999",
        "true",
        "null",
        "~",
        "a",
        "b",
        "{{",
        "}}",
        "{%",
        "%}",
        "{#",
        "#}",
        "steps.a.outputs.x",
        "vars.x",
        "env.HOME",
        "item",
        "index",
        "response.body",
        "| default(1)",
        "is defined",
        "loop",
        ":",
        ": ",
        "- ",
        "-",
        "[",
        "]",
        "{",
        "}",
        ",",
        "&a",
        "*a",
        "<<",
        "!!str",
        "!tag",
        "|",
        ">",
        "'",
        "\"",
        "#",
        "?",
        "\n",
        "\n  ",
        "\n    ",
        "\n      ",
        "\t",
        " ",
        "%YAML 1.2",
        "---",
        "...",
        "\u{feff}",
        "é",
        "\u{0}",
    ];
    let token = proptest::sample::select(words.to_vec());
    runner()
        .run(&proptest::collection::vec(token, 0..200), |tokens| {
            check(&tokens.concat());
            Ok(())
        })
        .unwrap();

    // Mutations of valid pipelines: cut, duplicate, or replace a span with a keyword.
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let valid: Vec<String> = ["pipelines", "tests/fixtures/valid"]
        .iter()
        .flat_map(|d| std::fs::read_dir(root.join(d)).unwrap())
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .map(|p| std::fs::read_to_string(p).unwrap())
        .collect();
    assert!(valid.len() >= 2);
    let mutation = (
        0..valid.len(),
        proptest::collection::vec(
            (
                any::<prop::sample::Index>(),
                any::<prop::sample::Index>(),
                0..4u8,
                proptest::sample::select(words.to_vec()),
            ),
            1..8,
        ),
    );
    runner()
        .run(&mutation, |(which, edits)| {
            let mut text: Vec<char> = valid[which].chars().collect();
            for (at, len, kind, word) in edits {
                if text.is_empty() {
                    break;
                }
                let start = at.index(text.len());
                let end = (start + len.index(64)).min(text.len());
                match kind {
                    0 => {
                        text.drain(start..end);
                    }
                    1 => {
                        let copy: Vec<char> = text[start..end].to_vec();
                        text.splice(start..start, copy);
                    }
                    2 => {
                        text.splice(start..end, word.chars());
                    }
                    _ => {
                        text.splice(start..start, word.chars());
                    }
                }
            }
            check(&text.into_iter().collect::<String>());
            Ok(())
        })
        .unwrap();

    // The inputs reached the validator, not only the YAML parser, and some still load.
    let (past_yaml, loaded) = (past_yaml.into_inner(), loaded.into_inner());
    println!(
        "FIGURES fuzz cases={} past_yaml={past_yaml} loaded={loaded}",
        3 * cases
    );
    assert!(
        past_yaml > 50 && loaded > 5,
        "past YAML: {past_yaml}, loaded: {loaded}"
    );
    assert!(
        cases > 256 || started.elapsed() < Duration::from_secs(30),
        "the fuzz run took {:?}",
        started.elapsed()
    );
}
