//! Consumers of the executor's events and results: human progress lines on stderr (or
//! JSON log lines), the run report of SPEC §6, and the masking of secrets in all of it.
//!
//! Must not: run anything; it only reads events and results.

pub mod github;
pub mod html;
pub mod junit;
mod mermaid;
pub mod timeline;

use std::time::Duration;

use serde_json::{json, Value};

use crate::execute::{Event, RunResult, StepStatus};
pub use crate::secrets::Redactor;

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// How progress reaches stderr.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// One plain line per event: no carriage returns, no colour (CI, pipes).
    Plain,
    /// One JSON object per line, through `tracing` (`--log-format json`).
    Json,
    /// A live display on a terminal: steps in flight and transfer bars.
    Live,
}

/// Human progress: a line when each step starts and ends, with its duration.
pub struct Progress {
    pub file: String,
    pub redactor: Redactor,
    pub mode: ProgressMode,
    /// `-q`: only failures.
    pub quiet: bool,
    live: Option<Live>,
}

/// The live display: a spinner per step in flight, a bar per transfer.
struct Live {
    multi: indicatif::MultiProgress,
    steps: std::collections::HashMap<String, indicatif::ProgressBar>,
    transfers: std::collections::HashMap<(String, String), indicatif::ProgressBar>,
}

impl Progress {
    pub fn new(file: String, redactor: Redactor, mode: ProgressMode, quiet: bool) -> Self {
        let live = (mode == ProgressMode::Live).then(|| Live {
            multi: indicatif::MultiProgress::with_draw_target(
                indicatif::ProgressDrawTarget::stderr(),
            ),
            steps: Default::default(),
            transfers: Default::default(),
        });
        Progress {
            file,
            redactor,
            mode,
            quiet,
            live,
        }
    }

    /// A finished line: above the live display, or plainly. Its parts that came from
    /// outside (a server's message, a path made of server data) are escaped by the callers.
    fn line(&self, text: &str) {
        match &self.live {
            Some(live) => {
                let _ = live.multi.println(text);
            }
            None => eprintln!("{text}"),
        }
    }

    pub fn event(&mut self, event: &Event) {
        match event {
            Event::StepStarted { id, action, .. } => self.started(id, action),
            Event::StepFinished(r) => self.finished(r),
            Event::Transfer {
                step,
                label,
                done,
                total,
            } => self.transfer(step, label, *done, *total),
            // Attempts and waits are for the timeline; retries are logged where they happen.
            Event::Call { .. } => {}
        }
    }

    fn started(&mut self, id: &str, action: &str) {
        if self.quiet {
            return;
        }
        match self.mode {
            ProgressMode::Json => {
                tracing::info!(step = %id, action = %action, event = "step_started", "step {id} started")
            }
            ProgressMode::Plain => self.line(&format!("▶ {id} ({action}) started")),
            ProgressMode::Live => {
                if let Some(live) = &mut self.live {
                    let bar = live.multi.add(indicatif::ProgressBar::new_spinner());
                    bar.set_style(
                        indicatif::ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                            .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
                    );
                    bar.set_message(crate::shown::escape(&format!("{id} ({action})")).into_owned());
                    bar.enable_steady_tick(Duration::from_millis(120));
                    live.steps.insert(id.to_string(), bar);
                }
            }
        }
    }

    fn finished(&mut self, r: &crate::execute::StepResult) {
        if let Some(live) = &mut self.live {
            if let Some(bar) = live.steps.remove(&r.id) {
                bar.finish_and_clear();
                live.multi.remove(&bar);
            }
            let keys: Vec<_> = live
                .transfers
                .keys()
                .filter(|(s, _)| *s == r.id)
                .cloned()
                .collect();
            for k in keys {
                if let Some(bar) = live.transfers.remove(&k) {
                    bar.finish_and_clear();
                    live.multi.remove(&bar);
                }
            }
        }
        let took = secs(Duration::from_millis(r.duration_ms));
        let error = r.error.as_deref().map(|e| self.redactor.text(e));
        if self.mode == ProgressMode::Json {
            match r.status {
                StepStatus::Failed => tracing::error!(
                    step = %r.id, action = %r.action, status = "failed", duration_ms = r.duration_ms,
                    attempts = r.attempts, file = %self.file, line = r.line, event = "step_finished",
                    "step {} failed: {}", r.id, error.unwrap_or_default()
                ),
                _ if self.quiet => {}
                status => tracing::info!(
                    step = %r.id, action = %r.action, status = status.as_str(), duration_ms = r.duration_ms,
                    attempts = r.attempts, event = "step_finished", reason = r.reason.as_deref().unwrap_or(""),
                    "step {} {}", r.id, status.as_str()
                ),
            }
            return;
        }
        let shown = |text: &str| crate::shown::escape(&self.redactor.text(text)).into_owned();
        match r.status {
            StepStatus::Succeeded if r.reused && !self.quiet => self.line(&format!(
                "✔ {} reused: done in an earlier run (journal)",
                r.id
            )),
            StepStatus::Succeeded if !self.quiet => {
                self.line(&format!("✔ {} succeeded in {took}", shown(&r.id)))
            }
            StepStatus::Skipped if !self.quiet => self.line(&format!(
                "- {} skipped: {}",
                shown(&r.id),
                shown(r.reason.as_deref().unwrap_or("skipped"))
            )),
            StepStatus::Failed => self.line(&format!(
                "✘ {} ({}:{}) failed after {took}: {}",
                shown(&r.id),
                shown(&self.file),
                r.line,
                shown(&error.unwrap_or_default())
            )),
            _ => {}
        }
    }

    /// Bytes moved by an upload or a download: a bar on a terminal only.
    fn transfer(&mut self, step: &str, label: &str, done: u64, total: Option<u64>) {
        let Some(live) = &mut self.live else { return };
        if self.quiet {
            return;
        }
        let key = (step.to_string(), label.to_string());
        let bar = live.transfers.entry(key).or_insert_with(|| {
            let bar = live
                .multi
                .add(indicatif::ProgressBar::new(total.unwrap_or(0)));
            let template = if total.is_some() {
                "  {msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}"
            } else {
                "  {msg} {bytes} {binary_bytes_per_sec}"
            };
            bar.set_style(
                indicatif::ProgressStyle::with_template(template)
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            // A label may be a path made of server data.
            bar.set_message(crate::shown::escape(&self.redactor.text(label)).into_owned());
            bar
        });
        if let Some(t) = total {
            bar.set_length(t);
        }
        bar.set_position(done);
    }

    pub fn summary(&mut self, result: &RunResult) {
        if let Some(live) = self.live.take() {
            let _ = live.multi.clear();
        }
        let count = |s: StepStatus| result.steps.iter().filter(|r| r.status == s).count();
        let status = match result.status {
            crate::execute::RunStatus::Succeeded => "succeeded",
            crate::execute::RunStatus::Failed => "failed",
            crate::execute::RunStatus::Interrupted => "was interrupted",
        };
        let mut line = format!(
            "run {status} in {}: {} succeeded, {} failed, {} skipped",
            secs(result.duration),
            count(StepStatus::Succeeded),
            count(StepStatus::Failed),
            count(StepStatus::Skipped)
        );
        let reused = result.steps.iter().filter(|r| r.reused).count();
        if reused > 0 {
            line.push_str(&format!(
                " ({reused} of them reused from the journal of an earlier run)"
            ));
        }
        if result.status == crate::execute::RunStatus::Interrupted {
            line.push_str(&interruption_detail(result));
        }
        for e in &result.output_errors {
            let e = self.redactor.text(e);
            match self.mode {
                ProgressMode::Json => tracing::warn!(event = "output_error", "{e}"),
                _ => self.line(&format!("warning: {}", crate::shown::escape(&e))),
            }
        }
        match self.mode {
            ProgressMode::Json => tracing::info!(event = "run_finished", status = status, "{line}"),
            _ if self.quiet && result.status == crate::execute::RunStatus::Succeeded => {}
            _ => eprintln!("{line}"),
        }
    }
}

/// After an interruption: which steps finished, which it cut short, which never started.
fn interruption_detail(result: &RunResult) -> String {
    let (mut finished, mut cut, mut not_started) = (Vec::new(), Vec::new(), Vec::new());
    for r in &result.steps {
        let was_cut = r.status == StepStatus::Failed
            && r.error
                .as_deref()
                .is_some_and(|e| e.starts_with("interrupted"));
        let never = r.status == StepStatus::Skipped
            && r.reason
                .as_deref()
                .is_some_and(|e| e.contains("interrupted"));
        let list = if was_cut {
            &mut cut
        } else if never {
            &mut not_started
        } else {
            &mut finished
        };
        list.push(r.id.as_str());
    }
    let names = |ids: &[&str]| {
        if ids.is_empty() {
            "none".to_string()
        } else {
            ids.join(", ")
        }
    };
    format!(
        "; finished: {}; interrupted: {}; not started: {}",
        names(&finished),
        names(&cut),
        names(&not_started)
    )
}

/// The run report (SPEC §6), secrets masked.
pub fn report_json(name: &str, started_at: &str, result: &RunResult, redactor: &Redactor) -> Value {
    let steps = result
        .steps
        .iter()
        .map(|s| {
            let mut step = serde_json::Map::new();
            step.insert("id".into(), json!(s.id));
            step.insert("action".into(), json!(s.action));
            step.insert("status".into(), json!(s.status));
            // `reused`: taken from the journal of an earlier run (`--resume`).
            step.insert(
                "run".into(),
                json!(match (s.reused, s.status) {
                    (true, _) => "reused",
                    (false, crate::execute::StepStatus::Skipped) => "not run",
                    (false, _) => "ran",
                }),
            );
            step.insert("attempts".into(), json!(s.attempts));
            step.insert("duration_ms".into(), json!(s.duration_ms));
            // A list's items are parsed here, for the report only.
            step.insert("outputs".into(), s.outputs.to_value());
            step.insert("error".into(), json!(s.error));
            if let Some(reason) = &s.reason {
                step.insert("reason".into(), json!(reason));
            }
            if !s.iterations.is_empty() {
                step.insert("iterations".into(), json!(s.iterations));
            }
            Value::Object(step)
        })
        .collect();
    let mut report = serde_json::Map::new();
    report.insert("pipeline".into(), json!(name));
    report.insert("status".into(), json!(result.status));
    report.insert("started_at".into(), json!(started_at));
    report.insert(
        "duration_ms".into(),
        json!(result.duration.as_millis() as u64),
    );
    report.insert("steps".into(), Value::Array(steps));
    report.insert("outputs".into(), result.outputs.clone());
    let mut v = Value::Object(report);
    redactor.json(&mut v);
    v
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
    use base64::Engine as _;

    use super::Redactor;

    #[test]
    fn masks_secrets_plain_and_base64_encoded_at_any_alignment() {
        let key = "avk_live_0123456789abcdef";
        let r = Redactor::new([key.to_string()]);
        assert_eq!(r.text(&format!("key={key}.")), "key=***.");
        for prefix in ["", "u", "us", "user:"] {
            for encoded in [
                STANDARD.encode(format!("{prefix}{key}")),
                URL_SAFE_NO_PAD.encode(format!("{prefix}{key}!")),
            ] {
                let masked = r.text(&format!("Basic {encoded}"));
                assert!(masked.contains("***"), "{prefix:?}: {masked}");
                let rest = masked.trim_start_matches("Basic ").replace("***", "");
                // Left: the prefix's own characters and a few mixing in the edges.
                assert!(
                    rest.len() <= prefix.len() * 4 / 3 + 8,
                    "only the edges are left: {masked}"
                );
            }
        }
        let mut v = serde_json::json!({"a": [STANDARD.encode(key)]});
        r.json(&mut v);
        assert!(v["a"][0].as_str().unwrap().contains("***"), "{v}");
        // Short secrets are masked as they are, and not as base64 scraps.
        assert_eq!(
            Redactor::new(["abcd".to_string()]).text("YWJjZA abcd"),
            "YWJjZA ***"
        );
    }
}
