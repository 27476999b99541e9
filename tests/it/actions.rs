//! Actions added after the first release, each against the emulator: what it sends (the
//! emulator's request log) and what it gives (the run report), and its dry-run.

use avala_pipe::emulator::EmulatorOptions;

use crate::support::{avala_pipe, start_emulator, write};

const KEY: &str = "avk_test_ACTIONS_0123456789";

#[tokio::test(flavor = "multi_thread")]
async fn projects_get_fetches_one_project_and_its_plan_shows_the_request() {
    let emu = start_emulator(Some(KEY), EmulatorOptions::default()).await;
    let dir = tempfile::tempdir().unwrap();
    let file = write(
        dir.path(),
        "p.yaml",
        "version: 1\nvars:\n  project: prj_0002\nsteps:\n  - id: project\n    action: projects.get\n    with:\n      project: \"{{ vars.project }}\"\noutputs:\n  name: \"{{ steps.project.outputs.name }}\"\n",
    );
    let base = emu.base_url();
    let cmd = avala_pipe()
        .args(["run", "--format", "json", "--base-url", &base])
        .arg(&file)
        .env("AVALA_API_KEY", KEY);
    let out = cmd.run_async().await;
    out.success();
    let report = out.json();
    let step = &report["steps"][0];
    assert_eq!(step["status"], "succeeded", "{report:#}");
    assert_eq!(step["outputs"]["id"], "prj_0002");
    assert!(report["outputs"]["name"]
        .as_str()
        .is_some_and(|n| !n.is_empty()));
    let gets: Vec<_> = emu
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/v1/projects"))
        .map(|r| (r.method, r.path))
        .collect();
    assert_eq!(
        gets,
        vec![("GET".to_string(), "/api/v1/projects/prj_0002".to_string())]
    );

    let plan = avala_pipe()
        .args(["run", "--dry-run", "--format", "json", "--base-url", &base])
        .arg(&file)
        .run();
    plan.success();
    let request = &plan.json()["steps"][0]["requests"][0];
    assert_eq!(request["method"], "GET");
    assert_eq!(request["url"], format!("{base}/projects/prj_0002"));
    emu.shutdown().await;
}
