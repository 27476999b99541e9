//! Cases 11, 13 and 14: the key (also when the server echoes it), plain http to another
//! host, and server text that looks like a template.

use super::*;

// ---------------------------------------------------------------------------------------
// 11: the key
// ---------------------------------------------------------------------------------------

/// 11. Every run of this suite is scanned for the canary (see the module docs). Here the
/// server itself echoes the key back, plain and base64-encoded, in a success body and in an
/// error message: the report, stdout and stderr still never show it.
#[tokio::test(flavor = "multi_thread")]
async fn case11_the_key_never_appears_even_when_the_server_echoes_it() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    let b64 = base64::engine::general_purpose::STANDARD.encode(CANARY);
    let b64_url = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(format!("user:{CANARY}"));
    emu.add_fault(fault(
        "echo-ok",
        "GET",
        "/api/v1/datasets/ds_0001",
        Trigger::Always,
        status_body(
            200,
            json!({"id": "ds_0001", "note": format!("key={CANARY}"), "token": b64, "basic": b64_url}),
        ),
    ));
    emu.add_fault(fault(
        "echo-error",
        "GET",
        "/api/v1/datasets/ds_0002",
        Trigger::Always,
        status_body(
            400,
            json!({"error": {"code": "bad", "message": format!("bad key {CANARY} ({b64})"), "details": []}}),
        ),
    ));
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nsteps:\n  - id: ok\n    action: request\n    with: { path: /datasets/ds_0001 }\n  - id: bad\n    action: request\n    needs: [ok]\n    with: { path: /datasets/ds_0002 }\noutputs:\n  note: \"{{ steps.ok.outputs.body.note }}\"\n  token: \"{{ steps.ok.outputs.body.token }}\"\n",
    );
    let out = run(&emu, &file, dir.path(), &["--junit", "junit.xml"]).await;
    out.code(1);
    assert_eq!(out.step("ok")["status"], "succeeded");
    let note = out.json()["outputs"]["note"].as_str().unwrap().to_string();
    assert!(note.starts_with("key=") && note.contains("***"), "{note}");
    let error = out.error("bad");
    assert!(error.contains("bad key ***"), "{error}");
    assert!(dir.path().join("junit.xml").exists());
    assert!(dir.path().join("report.json").exists());
    // Every request to the API carried the key; the journal is the only place it may be.
    let api = journal(&emu, Origin::Api, "GET", "");
    assert_eq!(api.len(), 2);
    assert!(api
        .iter()
        .all(|r| r.headers.get("x-avala-api-key").map(String::as_str) == Some(CANARY)));
    delivered(&emu, 11, &[("echo-ok", 1), ("echo-error", 1)]);
    emu.shutdown().await;
}

// ---------------------------------------------------------------------------------------
// 13-14: transport security and server data
// ---------------------------------------------------------------------------------------

/// 13. A plain `http://` base URL to a non-loopback host is exit 2 before anything is sent,
/// whichever way it is given, also when it hides behind template syntax or userinfo.
/// Nothing is sent anywhere: the proxy variables point at the emulator, so a request that
/// went out would be journalled there; the https control proves the trap catches one.
#[tokio::test(flavor = "multi_thread")]
async fn case13_plain_http_to_another_host_is_refused_before_sending() {
    let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
    let trap = emu.base_url().trim_end_matches("/api/v1").to_string();
    let dir = tempfile::tempdir().unwrap();
    let list = "steps:\n  - id: list\n    action: datasets.list\n";
    let plain = write(
        dir.path(),
        "plain.yaml",
        &format!("version: 1\n{FAST_RETRY}{list}"),
    );
    let in_file = write(
        dir.path(),
        "in-file.yaml",
        &format!("version: 1\napi:\n  base_url: http://api.example.com/api/v1\n{list}"),
    );
    let templated = write(
        dir.path(),
        "templated.yaml",
        &format!("version: 1\napi:\n  base_url: \"http://api.example.com/{{{{ env.PREFIX }}}}/api/v1\"\n{list}"),
    );
    let with_trap = |mut cmd: Cmd| {
        for var in [
            "HTTP_PROXY",
            "http_proxy",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "all_proxy",
        ] {
            cmd = cmd.env(var, &trap);
        }
        cmd.env("PREFIX", "v")
    };
    let flag = |url: &str| command(&plain, dir.path(), Some(url)).env("PREFIX", "v");
    let by_env =
        command(&plain, dir.path(), None).env("AVALA_BASE_URL", "http://api.example.com/api/v1");
    let cases: Vec<(&str, Cmd)> = vec![
        ("flag", flag("http://api.example.com/api/v1")),
        ("env", by_env),
        ("file", command(&in_file, dir.path(), None)),
        (
            "file with a template",
            command(&templated, dir.path(), None),
        ),
        (
            "flag with a template",
            flag("http://api.example.com/{{ env.PREFIX }}/api/v1"),
        ),
        ("userinfo", flag("http://127.0.0.1@api.example.com/api/v1")),
        ("private address", flag("http://10.0.0.1/api/v1")),
        (
            "loopback-looking name",
            flag("http://127.0.0.1.example.com/api/v1"),
        ),
    ];
    for (name, cmd) in cases {
        let out = with_trap(cmd).run_async().await;
        assert_eq!(out.code, Some(2), "{name}\n{}", out.stderr);
        assert!(
            out.stderr.contains("http://") && out.stderr.contains("https://"),
            "{name}: says why: {}",
            out.stderr
        );
        assert!(out.stdout.is_empty());
        assert!(
            emu.requests().is_empty(),
            "{name}: a request went out: {:#?}",
            emu.requests()
        );
    }
    // The control: an https URL passes the check, and its CONNECT lands in the trap.
    let out = with_trap(flag("https://api.example.com/api/v1"))
        .run_async()
        .await;
    out.code(1);
    assert!(
        !emu.requests().is_empty(),
        "the proxy trap caught nothing: it would not catch a leak either"
    );
    assert!(emu
        .requests()
        .iter()
        .all(|r| !r.headers.values().any(|v| v.contains(CANARY))));
    delivered(&emu, 13, &[]);
    emu.shutdown().await;
}

/// 14. Server text that looks like a template (`{{ env.HOME }}` in a dataset name, in an
/// error message) is carried as data: sent on as is, reported as is, never rendered.
#[tokio::test(flavor = "multi_thread")]
async fn case14_server_text_that_looks_like_a_template_is_data() {
    let dir = tempfile::tempdir().unwrap();
    let home = dir.path().join("HOME_MARKER_4821");
    std::fs::create_dir_all(&home).unwrap();
    let seed = write(
        dir.path(),
        "seed.json",
        r#"{"datasets": [
            {"id": "ds_tpl", "name": "{{ env.HOME }}"},
            {"id": "ds_loop", "name": "{% for i in range(3) %}{{ i }}{% endfor %}"}
        ]}"#,
    );
    let emu = start_emulator(
        Some(CANARY),
        EmulatorOptions {
            seed: Some(seed),
            ..Default::default()
        },
    )
    .await;
    emu.add_fault(fault(
        "template-error",
        "GET",
        "/api/v1/datasets/ds_nope",
        Trigger::Always,
        status_body(
            404,
            json!({"error": {"code": "not_found", "message": "no dataset named {{ env.HOME }}", "details": []}}),
        ),
    ));
    let file = write(
        dir.path(),
        "p.yaml",
        r#"version: 1
steps:
  - id: list
    action: datasets.list
    outputs:
      first: "{{ result.items[0].name }}"
  - id: echo
    action: request
    with:
      path: /datasets
      query: { q: "{{ steps.list.outputs.first }}", w: "name={{ steps.list.outputs.items[1].name }}" }
  - id: each
    action: request
    for_each: "{{ steps.list.outputs.items }}"
    with: { path: "/datasets/{{ item.id }}", query: { n: "{{ item.name }}" } }
  - id: missing
    action: request
    continue_on_error: true
    with: { path: /datasets/ds_nope }
outputs:
  names: "{{ steps.list.outputs.items | map(attribute='name') | list }}"
  joined: "first={{ steps.list.outputs.first }}"
"#,
    );
    let out = command(&file, dir.path(), Some(&emu.base_url()))
        .env("HOME", &home)
        .run_async()
        .await;
    out.code(0);
    let report = out.json();
    assert_eq!(
        report["outputs"]["names"],
        json!([
            "{{ env.HOME }}",
            "{% for i in range(3) %}{{ i }}{% endfor %}"
        ])
    );
    assert_eq!(report["outputs"]["joined"], "first={{ env.HOME }}");
    let error = out.error("missing");
    assert!(error.contains("no dataset named {{ env.HOME }}"), "{error}");
    for text in [&out.stdout, &out.stderr] {
        assert!(!text.contains("HOME_MARKER_4821"), "rendered: {text}");
    }
    // What the server received: the literal text, in the query.
    let decode = |q: &str| -> Vec<(String, String)> {
        url::form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    };
    let echo = journal(&emu, Origin::Api, "GET", "/datasets")
        .into_iter()
        .find(|r| r.query.contains("q="))
        .expect("the echo request");
    let query = decode(&echo.query);
    assert!(
        query.contains(&("q".into(), "{{ env.HOME }}".into())),
        "{query:?}"
    );
    assert!(query.contains(&(
        "w".into(),
        "name={% for i in range(3) %}{{ i }}{% endfor %}".into()
    )));
    let each = journal(&emu, Origin::Api, "GET", "/datasets/ds_tpl");
    assert_eq!(
        decode(&each[0].query),
        [("n".into(), "{{ env.HOME }}".into())]
    );
    for r in emu.requests() {
        assert!(!r.query.contains("HOME_MARKER"), "{r:?}");
    }
    delivered(&emu, 14, &[("template-error", 1)]);
    emu.shutdown().await;
}
