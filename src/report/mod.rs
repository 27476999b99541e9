//! Consumers of the executor's events and results: human progress lines on stderr (or
//! JSON log lines), the run report of SPEC §6, and the masking of secrets in all of it.
//!
//! Must not: run anything; it only reads events and results.

pub mod junit;

use std::time::Duration;

use serde_json::{json, Value};

use crate::execute::{Event, RunResult, StepStatus};

/// Replaces every secret value (the API key, `secrets:`) with `***` in text and JSON.
#[derive(Clone, Debug, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = String>) -> Self {
        let mut secrets: Vec<String> = secrets.into_iter().filter(|s| s.len() >= 4).collect();
        // Longest first, so a secret containing another is masked whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        Redactor { secrets }
    }

    pub fn text(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), "***");
            }
        }
        out
    }

    pub fn json(&self, value: &mut Value) {
        if self.secrets.is_empty() {
            return;
        }
        match value {
            Value::String(s) if self.secrets.iter().any(|x| s.contains(x.as_str())) => {
                *s = self.text(s);
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.json(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.json(v)),
            _ => {}
        }
    }
}

fn secs(d: Duration) -> String {
    format!("{:.1}s", d.as_secs_f64())
}

/// Human progress: a line when each step starts and ends, with its duration.
pub struct Progress {
    pub file: String,
    pub redactor: Redactor,
    pub json_logs: bool,
}

impl Progress {
    pub fn event(&self, event: &Event) {
        match event {
            Event::StepStarted { id, action } => {
                if self.json_logs {
                    tracing::info!(step = %id, action = %action, event = "step_started", "step {id} started");
                } else {
                    eprintln!("▶ {id} ({action}) started");
                }
            }
            Event::StepFinished(r) => {
                let took = secs(Duration::from_millis(r.duration_ms));
                let error = r.error.as_deref().map(|e| self.redactor.text(e));
                if self.json_logs {
                    match r.status {
                        StepStatus::Failed => tracing::error!(
                            step = %r.id, action = %r.action, status = "failed", duration_ms = r.duration_ms,
                            attempts = r.attempts, file = %self.file, line = r.line, event = "step_finished",
                            "step {} failed: {}", r.id, error.unwrap_or_default()
                        ),
                        status => tracing::info!(
                            step = %r.id, action = %r.action, status = status.as_str(), duration_ms = r.duration_ms,
                            attempts = r.attempts, event = "step_finished", reason = r.reason.as_deref().unwrap_or(""),
                            "step {} {}", r.id, status.as_str()
                        ),
                    }
                    return;
                }
                match r.status {
                    StepStatus::Succeeded => eprintln!("✔ {} succeeded in {took}", r.id),
                    StepStatus::Skipped => eprintln!(
                        "- {} skipped: {}",
                        r.id,
                        r.reason.as_deref().unwrap_or("skipped")
                    ),
                    StepStatus::Failed => eprintln!(
                        "✘ {} ({}:{}) failed after {took}: {}",
                        r.id,
                        self.file,
                        r.line,
                        error.unwrap_or_default()
                    ),
                }
            }
        }
    }

    pub fn summary(&self, result: &RunResult) {
        let count = |s: StepStatus| result.steps.iter().filter(|r| r.status == s).count();
        let status = match result.status {
            crate::execute::RunStatus::Succeeded => "succeeded",
            crate::execute::RunStatus::Failed => "failed",
            crate::execute::RunStatus::Interrupted => "was interrupted",
        };
        let line = format!(
            "run {status} in {}: {} succeeded, {} failed, {} skipped",
            secs(result.duration),
            count(StepStatus::Succeeded),
            count(StepStatus::Failed),
            count(StepStatus::Skipped)
        );
        for e in &result.output_errors {
            eprintln!("warning: {}", self.redactor.text(e));
        }
        if self.json_logs {
            tracing::info!(event = "run_finished", "{line}");
        } else {
            eprintln!("{line}");
        }
    }
}

/// The run report (SPEC §6), secrets masked.
pub fn report_json(name: &str, started_at: &str, result: &RunResult, redactor: &Redactor) -> Value {
    let mut v = json!({
        "pipeline": name,
        "status": result.status,
        "started_at": started_at,
        "duration_ms": result.duration.as_millis() as u64,
        "steps": result.steps.iter().map(|s| {
            let mut step = json!({
                "id": s.id,
                "action": s.action,
                "status": s.status,
                "attempts": s.attempts,
                "duration_ms": s.duration_ms,
                "outputs": s.outputs,
                "error": s.error,
            });
            if let Some(reason) = &s.reason {
                step["reason"] = json!(reason);
            }
            if !s.iterations.is_empty() {
                step["iterations"] = json!(s.iterations);
            }
            step
        }).collect::<Vec<_>>(),
        "outputs": result.outputs,
    });
    redactor.json(&mut v);
    v
}
