//! Big runs kept small (issue 14, goal 5): a `for_each` keeps its iterations' outputs only
//! when a template or a report reads them. These tests check that what is read is still
//! there without any report, and that a resumed run never takes a step's outputs without
//! `results` for a run that reads them. (Memory itself is measured in bench/run.sh, not
//! asserted here.)

use std::path::Path;

use avala_pipe::emulator::{Emulator, EmulatorOptions};

use crate::support::{avala_pipe, start_emulator, write, Output};

const KEY: &str = "avk_test_SCALEKEY_0123456789";

/// `avala-pipe run -q ARGS` in `dir` against `emu`: text output, no report.
async fn run_quiet(emu: &Emulator, dir: &Path, args: &[&str]) -> Output {
    let cmd = avala_pipe()
        .current_dir(dir)
        .args(["-q", "run", "--base-url", &emu.base_url()])
        .args(args.iter().copied())
        .env("AVALA_API_KEY", KEY);
    tokio::task::spawn_blocking(move || cmd.run())
        .await
        .unwrap()
}

fn paths_since(emu: &Emulator, before: usize) -> Vec<String> {
    emu.requests()[before..]
        .iter()
        .map(|r| r.path.clone())
        .collect()
}

const EACH: &str = r#"version: 1
steps:
  - id: each
    action: request
    for_each: "{{ range(1, 4) }}"
    max_parallel: 2
    with:
      path: "/datasets/ds_000{{ item }}"
"#;

#[tokio::test(flavor = "multi_thread")]
async fn results_a_later_step_reads_are_kept_without_any_report() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let text = format!(
        "{EACH}  - id: again\n    action: request\n    for_each: \"{{{{ steps.each.outputs.results }}}}\"\n    max_parallel: 1\n    with:\n      path: \"/datasets/{{{{ item.body.id }}}}/items\"\n  - id: count\n    action: request\n    needs: [again]\n    with:\n      path: \"/datasets/ds_000{{{{ steps.each.outputs.count }}}}\"\n"
    );
    write(dir.path(), "p.yaml", &text);
    run_quiet(&emu, dir.path(), &["p.yaml", "--no-journal"])
        .await
        .success();
    let mut paths = paths_since(&emu, 0);
    paths[..3].sort();
    assert_eq!(
        paths,
        [
            "/api/v1/datasets/ds_0001",
            "/api/v1/datasets/ds_0002",
            "/api/v1/datasets/ds_0003",
            // In the order of `results`: the iterations' order, whichever ended first.
            "/api/v1/datasets/ds_0001/items",
            "/api/v1/datasets/ds_0002/items",
            "/api/v1/datasets/ds_0003/items",
            "/api/v1/datasets/ds_0003",
        ]
    );
    emu.shutdown().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_that_reads_results_the_first_run_did_not_keep_reruns_the_step_from_its_iterations(
) {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    // First run: nothing reads `results`, no report asks for them: the journal records the
    // step's outputs without them (each iteration's output is journaled on its own).
    write(dir.path(), "p.yaml", EACH);
    run_quiet(&emu, dir.path(), &["p.yaml", "--journal", "j.json"])
        .await
        .success();
    assert_eq!(emu.requests().len(), 3);
    // The file now reads them (a changed file: `--resume=force`): the step cannot be taken
    // whole from the journal, but each of its iterations can, so nothing is sent again for
    // them.
    let text = format!(
        "{EACH}  - id: after\n    action: request\n    with:\n      path: \"/datasets/{{{{ steps.each.outputs.results[2].body.id }}}}/items\"\n"
    );
    write(dir.path(), "p.yaml", &text);
    let out = run_quiet(
        &emu,
        dir.path(),
        &[
            "p.yaml",
            "--journal",
            "j.json",
            "--resume=force",
            "--report",
            "r.json",
        ],
    )
    .await;
    out.success();
    assert_eq!(paths_since(&emu, 3), ["/api/v1/datasets/ds_0003/items"]);
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("r.json")).unwrap()).unwrap();
    let each = &report["steps"][0];
    assert_eq!(each["run"], "ran", "{each}");
    assert_eq!(each["outputs"]["count"], 3);
    assert_eq!(each["outputs"]["results"][1]["body"]["id"], "ds_0002");
    emu.shutdown().await;
}
