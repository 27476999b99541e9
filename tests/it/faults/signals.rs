//! Case 10: SIGINT and SIGTERM during an upload, a download, a backoff sleep and a poll.
//! The run is spawned, the emulator's journal (or the temporary file) shows the moment,
//! the signal goes in with `kill`, and the exit must follow within 3 s.

use super::*;
use crate::support::Running;

// ---------------------------------------------------------------------------------------
// 10: signals
// ---------------------------------------------------------------------------------------

/// A run in the background, to be interrupted.
struct Background(Running);

fn spawn(emu: &Emulator, file: &Path, dir: &Path) -> Background {
    Background(command(file, dir, Some(&emu.base_url())).spawn())
}

/// Waits (up to 20 s) until `ready` holds, checking every 5 ms.
async fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let started = Instant::now();
    while !ready() {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "never saw: {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

impl Background {
    fn signal(&self, name: &str) {
        self.0.signal(name);
    }

    /// Waits for the exit; it must come within 3 s of the signal.
    async fn finish(self) -> Output {
        let signalled = Instant::now();
        let run = self.0.wait_async().await;
        let elapsed = signalled.elapsed();
        assert!(
            elapsed < Duration::from_secs(3),
            "exit took {elapsed:?} after the signal\n{}",
            run.stderr
        );
        run
    }
}

/// The signals of case 10 and the exit codes they give.
const SIGNALS: [(&str, i32); 2] = [("INT", 130), ("TERM", 143)];

/// What every interrupted run shows: the exit code, an `interrupted` report, and a summary
/// on stderr naming what finished, what was interrupted and what never started.
#[track_caller]
fn assert_interrupted(out: &Output, code: i32, finished: &[&str], cut: &str, not_started: &[&str]) {
    out.code(code);
    let report = out.json();
    assert_eq!(report["status"], "interrupted");
    let step = out.step(cut);
    assert_eq!(step["status"], "failed");
    assert!(
        step["error"].as_str().unwrap().starts_with("interrupted"),
        "{step:#}"
    );
    for id in finished {
        assert_eq!(out.step(id)["status"], "succeeded", "{id}");
    }
    for id in not_started {
        let step = out.step(id);
        assert_eq!(step["status"], "skipped", "{id}");
        assert!(
            step["reason"].as_str().unwrap().contains("interrupted"),
            "{step:#}"
        );
    }
    let summary = out
        .stderr
        .lines()
        .find(|l| l.contains("\"run_finished\""))
        .unwrap_or_else(|| panic!("no summary on stderr:\n{}", out.stderr));
    assert!(summary.contains("was interrupted"), "{summary}");
    let finished_list = if finished.is_empty() {
        "none".to_string()
    } else {
        finished.join(", ")
    };
    assert!(
        summary.contains(&format!("finished: {finished_list}")),
        "{summary}"
    );
    assert!(
        summary.contains(&format!("interrupted: {cut}")),
        "{summary}"
    );
    if !not_started.is_empty() {
        assert!(
            summary.contains(&format!("not started: {}", not_started.join(", "))),
            "{summary}"
        );
    }
}

/// 10a. A signal while an upload is in flight (the server holds its answer).
#[tokio::test(flavor = "multi_thread")]
async fn case10_a_signal_during_an_upload_stops_the_run() {
    for (signal, code) in SIGNALS {
        let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
        emu.add_fault(fault(
            "slow-upload",
            "POST",
            "/api/v1/datasets/*/items",
            Trigger::Always,
            FaultEffect::DelayMs(2000),
        ));
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "data/a.jsonl", &"{\"a\": 1}\n".repeat(10_000));
        let file = write(
            dir.path(),
            "p.yaml",
            "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n  - id: up\n    action: items.upload\n    needs: [list]\n    with: { dataset: ds_0001, files: data/a.jsonl }\n  - id: after\n    action: datasets.list\n    needs: [up]\n",
        );
        let bg = spawn(&emu, &file, dir.path());
        wait_for("the upload in flight", || {
            emu.fault_delivered("slow-upload") == 1
        })
        .await;
        bg.signal(signal);
        let out = bg.finish().await;
        assert_interrupted(&out, code, &["list"], "up", &["after"]);
        assert_eq!(
            journal(&emu, Origin::Api, "POST", "/datasets/ds_0001/items").len(),
            1,
            "not retried after the signal"
        );
        assert_eq!(journal(&emu, Origin::Api, "GET", "/datasets").len(), 1);
        delivered(&emu, 10, &[("slow-upload", 1)]);
        emu.shutdown().await;
    }
}

/// 10b. A signal while a download streams into its temporary file: the transfer stops, the
/// temporary file goes, nothing appears under the final name. Two signals at once (the
/// second exits without waiting for anything) still leave no temporary file.
#[tokio::test(flavor = "multi_thread")]
async fn case10_a_signal_during_a_download_removes_the_temporary_file() {
    let runs: [(&[&str], &[i32]); 3] = [
        (&["INT"], &[130]),
        (&["TERM"], &[143]),
        // Stopped, both arrive together on SIGCONT: whichever is handled second exits.
        (&["STOP", "INT", "TERM", "CONT"], &[130, 143]),
    ];
    for (signals, codes) in runs {
        // Big enough that the download is still streaming when the signal comes.
        let emu = start_emulator(
            Some(CANARY),
            EmulatorOptions {
                export_bytes: 16 << 30,
                export_polls: 0,
                ..Default::default()
            },
        )
        .await;
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            &export_pipeline("  - id: after\n    action: datasets.list\n    needs: [fetch]\n"),
        );
        let bg = spawn(&emu, &file, dir.path());
        let out_dir = dir.path().join("out");
        wait_for("the temporary download file", || {
            !partial_files(&out_dir).is_empty()
        })
        .await;
        for signal in signals {
            bg.signal(signal);
        }
        let out = bg.finish().await;
        if let [code] = codes {
            assert_interrupted(&out, *code, &["make", "wait"], "fetch", &["after"]);
        } else {
            assert!(
                out.code.is_some_and(|c| codes.contains(&c)),
                "exit {:?}\n{}",
                out.code,
                out.stderr
            );
        }
        assert!(!out_dir.join("export.json").exists());
        let downloads = journal(&emu, Origin::Storage, "GET", "/exports/exp_0001.json");
        assert_eq!(downloads.len(), 1, "not retried after the signal");
        assert_eq!(downloads[0].status, 200, "it was streaming");
        delivered(&emu, 10, &[]);
        emu.shutdown().await;
    }
}

/// 10c. A signal during a backoff sleep (a 429 asked for 30 s) ends the run at once.
#[tokio::test(flavor = "multi_thread")]
async fn case10_a_signal_during_a_backoff_sleep_stops_waiting() {
    for (signal, code) in SIGNALS {
        let emu = start_emulator(Some(CANARY), EmulatorOptions::default()).await;
        emu.add_fault(fault(
            "429-30s",
            "GET",
            "/api/v1/datasets",
            Trigger::Always,
            status(429, Some(RetryAfter::Seconds(30))),
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = write(
            dir.path(),
            "p.yaml",
            "version: 1\nsteps:\n  - id: list\n    action: datasets.list\n  - id: after\n    action: request\n    needs: [list]\n    with: { path: /datasets/ds_0001 }\n",
        );
        let bg = spawn(&emu, &file, dir.path());
        wait_for("the 429 answered", || {
            statuses(&journal(&emu, Origin::Api, "GET", "/datasets")) == [429]
        })
        .await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        bg.signal(signal);
        let out = bg.finish().await;
        assert_interrupted(&out, code, &[], "list", &["after"]);
        assert_eq!(
            journal(&emu, Origin::Api, "GET", "/datasets").len(),
            1,
            "no retry after the signal"
        );
        delivered(&emu, 10, &[("429-30s", 1)]);
        emu.shutdown().await;
    }
}

/// 10d. A signal while `exports.wait` polls (the third poll is slow to answer).
#[tokio::test(flavor = "multi_thread")]
async fn case10_a_signal_during_a_poll_stops_polling() {
    for (signal, code) in SIGNALS {
        let emu = start_emulator(
            Some(CANARY),
            EmulatorOptions {
                export_polls: 1000,
                ..Default::default()
            },
        )
        .await;
        emu.add_fault(fault(
            "slow-poll",
            "GET",
            "/api/v1/exports/*",
            Trigger::Nth(3),
            FaultEffect::DelayMs(2000),
        ));
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "p.yaml", &export_pipeline(""));
        let bg = spawn(&emu, &file, dir.path());
        wait_for("the third poll in flight", || {
            emu.fault_delivered("slow-poll") == 1
        })
        .await;
        bg.signal(signal);
        let out = bg.finish().await;
        assert_interrupted(&out, code, &["make"], "wait", &["fetch"]);
        assert_eq!(
            journal(&emu, Origin::Api, "GET", "/exports/exp_0001").len(),
            3,
            "no poll after the signal"
        );
        assert!(journal(&emu, Origin::Storage, "GET", "/exports/exp_0001.json").is_empty());
        delivered(&emu, 10, &[("slow-poll", 1)]);
        emu.shutdown().await;
    }
}
