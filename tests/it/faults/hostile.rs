//! Issue 16, group A (`hostileNN_...`, NN the issue's item): secrets in every encoding and
//! every output, `--var` and short secrets, server text that tries to forge terminal or CI
//! output, template memory, and messages about odd files.

use super::*;

/// A secret with characters every encoder treats differently: `/`, a space, `+`, a
/// non-ASCII letter and a quote.
const PARTNER: &str = "pt_Zq/9 x+é\"K7";

/// The binary with the suite's key and flags, but the log format and extra environment
/// chosen by the test (`command` fixes JSON logs); `dir` is scanned afterwards.
fn human_command(file: &Path, dir: &Path, url: &str, json_logs: bool, env: &[(&str, &str)]) -> Cmd {
    let mut cmd = avala_pipe()
        .arg("run")
        .arg(file)
        .args([
            "--format",
            "json",
            "--color",
            "never",
            "-vv",
            "--log-format",
            if json_logs { "json" } else { "text" },
            "--base-url",
            url,
            "--report",
        ])
        .arg(dir.join("report.json"))
        .current_dir(dir)
        .env("AVALA_API_KEY", CANARY)
        .scan_dir(dir);
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd
}

/// The binary on a pseudo-terminal (`script`), so progress is the live display; returns
/// what the terminal received.
fn on_terminal(file: &Path, dir: &Path, url: &str, env: &[(&str, &str)]) -> String {
    let mut cmd = avala_pipe()
        .arg("run")
        .arg(file)
        .args(["--base-url", url, "-v"])
        .on_terminal()
        .current_dir(dir)
        .env("TERM", "xterm-256color")
        .env("AVALA_API_KEY", CANARY)
        .env_remove("NO_COLOR");
    for (k, v) in env {
        cmd = cmd.env(k, v);
    }
    cmd.run().stdout
}

/// Percent-encodes `text`: every byte, or only those outside `[A-Za-z0-9_]`; hex digits in
/// either case.
fn percent(text: &str, lower: bool, every: bool) -> String {
    text.bytes()
        .map(|b| {
            if !every && (b.is_ascii_alphanumeric() || b == b'_') {
                (b as char).to_string()
            } else if lower {
                format!("%{b:02x}")
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `\uXXXX` for every UTF-16 unit of `text`.
fn unicode_escaped(text: &str, upper: bool) -> String {
    text.encode_utf16()
        .map(|u| {
            if upper {
                format!("\\u{u:04X}")
            } else {
                format!("\\u{u:04x}")
            }
        })
        .collect()
}

/// Every form of `secret` the redactor claims to mask.
fn secret_forms(secret: &str) -> Vec<(&'static str, String)> {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    let json = serde_json::to_string(secret).unwrap();
    vec![
        ("plain", secret.to_string()),
        ("json-escaped", json[1..json.len() - 1].to_string()),
        ("percent-upper", percent(secret, false, true)),
        ("percent-lower", percent(secret, true, true)),
        ("percent-lower-partial", percent(secret, true, false)),
        (
            "form-lower",
            percent(secret, true, false).replace("%20", "+"),
        ),
        ("unicode-lower", unicode_escaped(secret, false)),
        ("unicode-upper", unicode_escaped(secret, true)),
        ("base64", STANDARD.encode(format!("user:{secret}"))),
        ("base64-url", URL_SAFE_NO_PAD.encode(format!("{secret}!"))),
    ]
}

/// Checks `text` shows each numbered form masked (`MARK{i}L<mask>R{i}MARK`) and never
/// unmasked: between every `MARK{i}L` and its `R{i}MARK` is the mask (`***`, or as the
/// output escapes it); base64 forms may keep edge characters (the `user:` prefix and the
/// bytes the secret shares a base64 group with).
#[track_caller]
fn assert_masked(what: &str, text: &str, forms: &[(&'static str, String)], mask: &str) {
    for (i, (name, _)) in forms.iter().enumerate() {
        let left = format!("MARK{i}L");
        let right = format!("R{i}MARK");
        let hits: Vec<&str> = text
            .match_indices(&left)
            .map(|(at, _)| &text[at + left.len()..])
            .collect();
        assert!(
            !hits.is_empty(),
            "{what}: form {name} ({left}) not shown at all:\n{text}"
        );
        let edges = if name.starts_with("base64") { 16 } else { 0 };
        for hit in hits {
            let between = hit.split(&right).next().unwrap_or(hit);
            let rest = between.replacen(mask, "", 1);
            assert!(
                between.contains(mask) && rest.len() <= edges,
                "{what}: form {name} not masked: {}",
                &between[..between.len().min(160)]
            );
        }
    }
}

/// Item 2: A server echoing a secret in any encoding the redactor claims — percent-encoded in
/// either case or partly, form-encoded, JSON- or \u-escaped, base64 — in a success body and
/// in error messages: every output masks each form: stdout's report, `--report`, JUnit,
/// `$GITHUB_OUTPUT`, the step summary, annotations, the HTML report, stderr as text and JSON
/// logs, and the live display.
#[tokio::test(flavor = "multi_thread")]
async fn hostile02_every_encoding_of_a_secret_is_masked_in_every_output() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    let mut forms = secret_forms(PARTNER);
    forms.push(("key-percent-lower", percent(CANARY, true, true)));
    let marked: Vec<String> = forms
        .iter()
        .enumerate()
        .map(|(i, (_, f))| format!("MARK{i}L{f}R{i}MARK"))
        .collect();
    emu.add_fault(fault(
        "echo",
        "GET",
        "/api/v1/datasets/ds_echo",
        Trigger::Always,
        status_body(200, json!({"id": "ds_echo", "forms": marked})),
    ));
    let mut steps =
        String::from("  - id: echo\n    action: request\n    with: { path: /datasets/ds_echo }\n");
    for (i, text) in marked.iter().enumerate() {
        emu.add_fault(fault(
            &format!("fail{i}"),
            "GET",
            &format!("/api/v1/datasets/ds_f{i}"),
            Trigger::Always,
            status_body(
                400,
                json!({"error": {"code": "bad", "message": format!("echo {text}"), "details": []}}),
            ),
        ));
        steps.push_str(&format!(
            "  - id: f{i}\n    action: request\n    continue_on_error: true\n    with: {{ path: /datasets/ds_f{i} }}\n"
        ));
    }
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &format!(
            "version: 1\nsecrets: [PARTNER_TOKEN]\nsteps:\n{steps}outputs:\n  forms: \"{{{{ steps.echo.outputs.body.forms | join(' ') }}}}\"\n"
        ),
    );
    let github_output = dir.path().join("github_output.txt");
    let summary = dir.path().join("summary.md");
    let env = [
        ("PARTNER_TOKEN", PARTNER),
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_OUTPUT", github_output.to_str().unwrap()),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];
    for json_logs in [true, false] {
        let _ = std::fs::remove_file(&github_output);
        let _ = std::fs::remove_file(&summary);
        let cmd = human_command(&file, dir.path(), &emu.base_url(), json_logs, &env);
        let cmd = cmd.args([
            "--junit",
            "junit.xml",
            "--html",
            "report.html",
            "--github-output",
        ]);
        let out = cmd.run_async().await;
        // The failing steps continue on error: the run succeeds.
        out.code(0);
        let logs = if json_logs {
            "stderr (JSON logs)"
        } else {
            "stderr (text logs)"
        };
        assert_masked(logs, &out.stderr, &forms, "***");
        assert_masked("stdout", &out.stdout, &forms, "***");
        let read = |name: &str| std::fs::read_to_string(dir.path().join(name)).unwrap();
        assert_masked("--report", &read("report.json"), &forms, "***");
        assert_masked("--junit", &read("junit.xml"), &forms, "***");
        assert_masked("--html", &read("report.html"), &forms, "***");
        assert_masked("$GITHUB_OUTPUT", &read("github_output.txt"), &forms, "***");
        assert_masked("step summary", &read("summary.md"), &forms, "\\*\\*\\*");
        assert!(
            out.stderr.lines().any(|l| l.starts_with("::error ")),
            "annotations are part of stderr: {}",
            out.stderr
        );
    }
    // The live display, on a terminal.
    let screen = on_terminal(
        &file,
        dir.path(),
        &emu.base_url(),
        &[("PARTNER_TOKEN", PARTNER)],
    );
    assert!(screen.contains("run succeeded"), "{screen}");
    assert_masked("live display", &screen, &forms, "***");
    // The key is not on the screen either: the harness scanned it (and `dir`).
    println!("FIGURES case=h02 forms={} outputs=10", forms.len());
    emu.shutdown().await;
}

/// Item 3: `--var` with a secret's value and no `=` (a slip of `--var "$TOKEN"`), or with an
/// `=` inside the secret (base64 padding), is exit 2 with nothing sent, and neither the
/// secret nor the part before its `=` is printed.
#[tokio::test(flavor = "multi_thread")]
async fn hostile03_a_malformed_var_holding_a_secret_is_not_echoed() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsecrets: [PARTNER_TOKEN]\nvars:\n  x: 1\nsteps:\n  - id: list\n    action: datasets.list\n",
    );
    let padded = "c2VjcmV0LXRva2Vu=="; // base64 ends with `=`
    let cases = [
        ("no =", PARTNER, PARTNER, "KEY=VALUE"),
        ("= inside", padded, "c2VjcmV0LXRva2Vu", "--var"),
        ("the key", CANARY, CANARY, "KEY=VALUE"),
    ];
    for (name, secret, never, says) in cases {
        for json_logs in [false, true] {
            let cmd = human_command(
                &file,
                dir.path(),
                &emu.base_url(),
                json_logs,
                &[("PARTNER_TOKEN", secret)],
            )
            .args(["--var", secret]);
            if name == "the key" {
                // Also where clap echoes an argument it did not expect.
                let stray =
                    human_command(&file, dir.path(), &emu.base_url(), json_logs, &[]).arg(secret);
                let out = stray.run_async().await;
                out.code(2);
                assert!(
                    out.stderr.contains("unexpected argument '***'"),
                    "{}",
                    out.stderr
                );
            }
            let out = cmd.run_async().await;
            out.code(2);
            assert!(out.stderr.contains(says), "{name}: {}", out.stderr);
            for text in [&out.stdout, &out.stderr] {
                assert!(!text.contains(never), "{name}: echoed: {text}");
            }
        }
    }
    assert!(emu.requests().is_empty(), "nothing may be sent");
    delivered(&emu, 3, &[]);
    emu.shutdown().await;
}

/// Item 4: A secret (or the key) under 4 characters cannot be masked without masking unrelated
/// text, so it is refused before anything is sent (exit 2, naming the variable, not
/// showing the value); 4 characters are masked; an empty secret has nothing to mask.
#[tokio::test(flavor = "multi_thread")]
async fn hostile04_short_secrets_are_refused_and_four_characters_are_masked() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "echo",
        "GET",
        "/api/v1/datasets/ds_echo",
        Trigger::Always,
        status_body(
            200,
            json!({"id": "ds_echo", "note": "say Q7x! twice: Q7x!"}),
        ),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsecrets: [PARTNER_TOKEN]\nsteps:\n  - id: echo\n    action: request\n    with: { path: /datasets/ds_echo }\n",
    );
    for short in ["Q7x", "é", "  ab "] {
        let cmd = human_command(
            &file,
            dir.path(),
            &emu.base_url(),
            false,
            &[("PARTNER_TOKEN", short)],
        );
        let out = cmd.run_async().await;
        out.code(2);
        assert!(
            out.stderr.contains("PARTNER_TOKEN is")
                && out.stderr.contains("shorter than 4 characters"),
            "{short:?}: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
    }
    // The key too.
    let cmd =
        human_command(&file, dir.path(), &emu.base_url(), false, &[]).env("AVALA_API_KEY", "k9");
    let out = cmd.run_async().await;
    out.code(2);
    assert!(
        out.stderr.contains("AVALA_API_KEY is 2 characters"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("k9"), "{}", out.stderr);
    assert!(emu.requests().is_empty(), "nothing may be sent");
    // Four characters are masked wherever the server echoes them.
    let cmd = human_command(
        &file,
        dir.path(),
        &emu.base_url(),
        false,
        &[("PARTNER_TOKEN", "Q7x!")],
    );
    let out = cmd.run_async().await;
    out.code(0);
    assert_eq!(
        out.step("echo")["outputs"]["body"]["note"],
        "say *** twice: ***"
    );
    // An empty secret masks nothing.
    let cmd = human_command(
        &file,
        dir.path(),
        &emu.base_url(),
        false,
        &[("PARTNER_TOKEN", "")],
    );
    let out = cmd.run_async().await;
    out.code(0);
    assert_eq!(
        out.step("echo")["outputs"]["body"]["note"],
        "say Q7x! twice: Q7x!"
    );
    delivered(&emu, 4, &[("echo", 2)]);
    emu.shutdown().await;
}

/// Server text that tries to take over a terminal or a CI log: a screen clear, an OSC
/// title, BEL, backspaces, a carriage return, newlines followed by workflow commands, a
/// `##[` command, a right-to-left override and HTML.
const FORGED: &str = "bad\u{1b}[2J\u{1b}]0;pwned\u{7}\u{8}\u{8}\rOK\n::error ::forged by server\n  ::add-mask::x\n##[error]v1 forged \u{202e}gnp.exe <img src=x>\u{ffff}";

/// Lines of `text` (split at LF and CR) that a CI runner would read as a workflow command
/// we did not write: anything starting with `::` but our own `::error file=` annotations,
/// and any `##[`.
fn forged_commands(text: &str) -> Vec<String> {
    text.split(['\n', '\r'])
        .filter(|l| {
            let l = l.trim_start();
            (l.starts_with("::") && !l.starts_with("::error file=")) || l.contains("##[")
        })
        .map(str::to_string)
        .collect()
}

/// Item 5: A server's error message, an export's failure message and an export status (shown in
/// `-v` logs) holding terminal escapes and workflow commands are shown escaped in every
/// human output: text logs, the live display, annotations and the step summary; JSON logs
/// stay one object per line.
#[tokio::test(flavor = "multi_thread")]
async fn hostile05_server_text_cannot_forge_terminal_or_ci_output() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "error",
        "GET",
        "/api/v1/datasets/ds_evil",
        Trigger::Always,
        status_body(
            400,
            json!({"error": {"code": "bad", "message": FORGED, "details": []}}),
        ),
    ));
    emu.add_fault(fault(
        "status",
        "GET",
        "/api/v1/exports/*",
        Trigger::First(1),
        status_body(
            200,
            json!({"id": "exp_evil", "status": format!("processing{FORGED}")}),
        ),
    ));
    emu.add_fault(fault(
        "failed",
        "GET",
        "/api/v1/exports/*",
        Trigger::Always,
        status_body(
            200,
            json!({"id": "exp_evil", "status": "failed", "error_message": FORGED}),
        ),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        &format!("version: 1\n{FAST_RETRY}steps:\n  - id: evil\n    action: request\n    continue_on_error: true\n    with: {{ path: /datasets/ds_evil }}\n  - id: make\n    action: exports.create\n    with: {{ dataset_id: ds_0001 }}\n  - id: wait\n    action: exports.wait\n    with: {{ export: \"{{{{ steps.make.outputs.id }}}}\", interval: 20ms }}\n"),
    );
    let summary = dir.path().join("summary.md");
    let env = [
        ("GITHUB_ACTIONS", "true"),
        ("GITHUB_STEP_SUMMARY", summary.to_str().unwrap()),
    ];
    // Text logs, with annotations, and a JUnit file.
    let cmd = human_command(&file, dir.path(), &emu.base_url(), false, &env)
        .args(["--junit", "junit.xml"]);
    let out = cmd.run_async().await;
    out.code(1);
    let junit = std::fs::read_to_string(dir.path().join("junit.xml")).unwrap();
    assert!(
        !junit.contains(|c: char| (c.is_control() && c != '\n' && c != '\t') || c == '\u{ffff}'),
        "JUnit holds characters XML does not allow: {junit:?}"
    );
    assert!(junit.contains("\\u{1b}]0;pwned"), "{junit}");
    let err = &out.stderr;
    assert!(
        !err.contains(['\u{1b}', '\u{7}', '\u{8}', '\r', '\u{202e}']),
        "raw control characters on stderr: {err:?}"
    );
    assert_eq!(forged_commands(err), Vec::<String>::new(), "{err}");
    // The text is shown, escaped: in the step's failure line, the export's, and the -v log
    // line of the export's status.
    let escaped = "\\u{1b}]0;pwned\\u{7}\\u{8}\\u{8}";
    for (what, line) in [
        ("failure line", "✘ evil"),
        ("export failure", "✘ wait"),
        ("debug log", "is processingbad"),
        ("annotation", "::error file="),
    ] {
        let line = err
            .lines()
            .find(|l| l.contains(line))
            .unwrap_or_else(|| panic!("no {what} line: {err}"));
        assert!(
            line.contains(escaped),
            "{what} shows the text escaped: {line}"
        );
    }
    let summary_text = std::fs::read_to_string(&summary).unwrap();
    assert!(
        !summary_text.contains(['\u{1b}', '\u{7}', '\r', '\u{202e}'])
            && !summary_text.contains("<img"),
        "{summary_text}"
    );
    assert_eq!(forged_commands(&summary_text), Vec::<String>::new());
    // JSON logs: one object per line, whatever the server said.
    let cmd = human_command(&file, dir.path(), &emu.base_url(), true, &[]);
    let out = cmd.run_async().await;
    out.code(1);
    for line in out.stderr.lines() {
        serde_json::from_str::<Value>(line)
            .unwrap_or_else(|e| panic!("not one JSON object ({e}): {line:?}"));
    }
    // The live display.
    let screen = on_terminal(&file, dir.path(), &emu.base_url(), &[]);
    assert!(screen.contains("run failed"), "{screen}");
    for bad in ["\u{1b}]0;", "\u{7}", "\u{8}", "\u{1b}[2J", "\u{202e}"] {
        assert!(
            !screen.contains(bad),
            "{bad:?} reached the terminal: {screen:?}"
        );
    }
    assert!(screen.contains("\\u{1b}]0;pwned"), "{screen:?}");
    assert_eq!(forged_commands(&screen), Vec::<String>::new(), "{screen:?}");
    println!("FIGURES case=h05 outputs=5");
    emu.shutdown().await;
}

/// `validate` of a file written to a fresh directory: exit code and stderr.
fn validate(name: &str, bytes: &[u8]) -> crate::support::Output {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).unwrap();
    crate::support::avala_pipe()
        .args(["validate".into(), path.into_os_string()])
        .run()
}

/// Item 14: A file over a loading limit (its values, counting each alias expansion, add up to
/// more than 16 MiB) is told so in words, not as the parser's Debug struct.
#[test]
fn hostile14_a_size_budget_breach_is_said_in_words() {
    let mut text = format!(
        "version: 1\nsteps:\n  - id: a\n    action: datasets.list\nbig: &big \"{}\"\nrefs:\n",
        "x".repeat(1 << 20)
    );
    for _ in 0..20 {
        text.push_str("  - *big\n");
    }
    let out = validate("budget.yaml", text.as_bytes());
    out.code(2);
    assert!(
        out.stderr.contains("more than 16 MiB"),
        "says which limit: {}",
        out.stderr
    );
    for debug in ["ScalarBytes", "{", "budget breached", "(defined)"] {
        assert!(!out.stderr.contains(debug), "{debug}: {}", out.stderr);
    }
}

/// Item 15: A file with old Mac line ends (a lone CR) gets the offending line printed, not an
/// empty one; an invisible or control character in an id is shown escaped in the message
/// and as U+FFFD in the snippet, never raw.
#[test]
fn hostile15_cr_only_files_and_invisible_characters_are_shown() {
    let out = validate(
        "mac.yaml",
        b"version: 1\rsteps:\r  - id: a\r    action: datasets.lsit\r",
    );
    out.code(2);
    assert!(
        out.stderr.contains("4 |     action: datasets.lsit"),
        "the source line: {}",
        out.stderr
    );
    // (name, the id as written in YAML, as read, as shown)
    for (name, written, id, shown) in [
        ("bom", "a\u{feff}b", "a\u{feff}b", "a\\u{feff}b"),
        ("rtl", "ab\u{202e}cd", "ab\u{202e}cd", "ab\\u{202e}cd"),
        ("escape", "a\\e[31mb", "a\u{1b}[31mb", "a\\u{1b}[31mb"),
        ("zero-width", "a\u{200b}", "a\u{200b}", "a\\u{200b}"),
    ] {
        let yaml =
            format!("version: 1\nsteps:\n  - id: \"{written}\"\n    action: datasets.list\n");
        let out = validate(&format!("{name}.yaml"), yaml.as_bytes());
        out.code(2);
        assert!(out.stderr.contains(shown), "{name}: {}", out.stderr);
        let raw: Vec<char> = id.chars().filter(|c| !c.is_ascii_graphic()).collect();
        assert!(
            !out.stderr.contains(raw.as_slice()),
            "{name}: shown raw: {:?}",
            out.stderr
        );
    }
}

/// `cmd` under a 1 GiB address-space cap, so unbounded memory is a failed allocation (an
/// abort, exit 134) rather than a slow machine.
fn capped(cmd: Cmd) -> Cmd {
    cmd.memory_limit_kib(1_048_576)
}

/// Item 10: Templates that build huge strings — a string doubled in a loop, a join with a huge
/// separator, constant repetitions folded when the template is compiled — never abort the
/// process: exit 2 at validate time when nothing but the file decides (`validate` and the
/// preflight of `run`, nothing sent), else a step failure naming the template, while the
/// rest of the run goes on. All under a 1 GiB cap.
#[tokio::test(flavor = "multi_thread")]
async fn hostile10_template_memory_is_bounded() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    emu.add_fault(fault(
        "seed",
        "GET",
        "/api/v1/datasets/ds_seed",
        Trigger::Always,
        status_body(200, json!({"id": "ds_seed", "s": "x", "sep": "y"})),
    ));
    let dir = tempfile::tempdir().unwrap();
    let doubling = "{% set ns = namespace(s='x') %}{% for i in range(vars.n) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}";
    let folded = vec!["('x' * 99999999)"; 40].join(" ~ ");
    // Decided by the file alone: exit 2, nothing sent.
    for (name, path) in [
        ("doubling", doubling.to_string()),
        ("folded", format!("{{{{ {folded} }}}}")),
        (
            "join",
            "{{ range(100000) | join('x' * 90000000) | length }}".into(),
        ),
    ] {
        let file = write(
            dir.path(),
            &format!("{name}.yaml"),
            &format!("version: 1\nvars:\n  n: 40\nsteps:\n  - id: bomb\n    action: request\n    with:\n      path: \"/datasets/{path}\"\n"),
        );
        let cmd = avala_pipe()
            .arg("validate")
            .arg(&file)
            .current_dir(dir.path())
            .scan_dir(dir.path());
        let out = capped(cmd).run_async().await;
        // Templates are compiled at validate time: a folded constant is found there.
        if name == "folded" {
            out.code(2);
            assert!(out.stderr.contains("MiB of memory"), "{}", out.stderr);
        } else {
            out.code(0);
        }
        let cmd = capped(human_command(
            &file,
            dir.path(),
            &emu.base_url(),
            false,
            &[],
        ));
        let out = cmd.run_async().await;
        out.code(2);
        assert!(
            out.stderr.contains("step `bomb`")
                && out.stderr.contains("needs more than 256 MiB of memory"),
            "{name}: {}",
            out.stderr
        );
        assert!(
            out.elapsed < Duration::from_secs(20),
            "{name}: {:?}",
            out.elapsed
        );
    }
    assert!(emu.requests().is_empty(), "nothing may be sent");
    // Decided by server data: the step fails, naming the template; the run goes on.
    let file = write(
        dir.path(),
        "server.yaml",
        "version: 1\nsteps:\n  - id: seed\n    action: request\n    with: { path: /datasets/ds_seed }\n  - id: double\n    action: request\n    continue_on_error: true\n    with:\n      path: \"/datasets/{% set ns = namespace(s=steps.seed.outputs.body.s) %}{% for i in range(40) %}{% set ns.s = ns.s ~ ns.s %}{% endfor %}{{ ns.s | length }}\"\n  - id: join\n    action: request\n    continue_on_error: true\n    with:\n      path: \"/datasets/{{ range(100000) | join(steps.seed.outputs.body.sep * 90000000) | length }}\"\n  - id: after\n    action: datasets.list\n    needs: [double, join]\n",
    );
    let cmd = capped(human_command(
        &file,
        dir.path(),
        &emu.base_url(),
        false,
        &[],
    ));
    let out = cmd.run_async().await;
    out.code(0);
    for id in ["double", "join"] {
        let step = out.step(id);
        assert_eq!(step["status"], "failed", "{step:#}");
        let error = step["error"].as_str().unwrap();
        assert!(
            error.contains("template `/datasets/") && error.contains("MiB of memory"),
            "{id}: {error}"
        );
    }
    assert_eq!(out.step("after")["status"], "succeeded");
    delivered(&emu, 10, &[("seed", 1)]);
    emu.shutdown().await;
}
