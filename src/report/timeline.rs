//! The run's timeline, recorded from the executor's events as they arrive: when each step
//! started and ended, every HTTP attempt, every wait and its cause, and the bytes each
//! transfer moved. Together with the [`RunResult`] it is what the HTML report and the
//! step summary's Gantt chart draw; [`Timeline::to_json`] is that data, masked.
//!
//! Takes: the executor's [`Event`]s, then the [`RunResult`]. Gives: spans and lanes, and
//! the page's data. Must not: print, or decide anything about the run; it only records.

use std::collections::HashMap;
use std::time::Instant;

use serde_json::{json, Value};

use super::Redactor;
use crate::api::{AttemptRecord, CallEvent, WaitRecord};
use crate::execute::{Event, RunResult, StepStatus};
use crate::pipeline::model::Pipeline;

/// Everything timed in a run, in milliseconds from its start.
#[derive(Debug)]
pub struct Timeline {
    origin: Instant,
    /// Step id → (started, finished), in ms from the origin.
    spans: HashMap<String, (u64, Option<u64>)>,
    attempts: Vec<(String, Option<usize>, AttemptRecord)>,
    waits: Vec<(String, Option<usize>, WaitRecord)>,
    /// (step, label) → (first seen, last seen, bytes done, total).
    transfers: HashMap<(String, String), Moved>,
}

/// A transfer's progress: first and last seen (ms), bytes done, bytes expected.
type Moved = (u64, u64, u64, Option<u64>);

/// A step's place on the timeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Span {
    pub start_ms: u64,
    pub end_ms: u64,
    /// Its concurrency lane (0-based): steps that overlap in time are in different lanes.
    pub lane: usize,
}

impl Timeline {
    /// A timeline whose zero is now (the moment the run starts).
    pub fn new() -> Self {
        Timeline {
            origin: Instant::now(),
            spans: HashMap::new(),
            attempts: Vec::new(),
            waits: Vec::new(),
            transfers: HashMap::new(),
        }
    }

    fn ms(&self, at: Instant) -> u64 {
        at.saturating_duration_since(self.origin).as_millis() as u64
    }

    pub fn record(&mut self, event: &Event) {
        let now = self.ms(Instant::now());
        match event {
            Event::StepStarted { id, at, .. } => {
                self.spans.insert(id.clone(), (self.ms(*at), None));
            }
            Event::StepFinished(r) => {
                // The step's own measure, taken inside its task (which began after `at`
                // and ended before any step that waits for it could start): a step never
                // overlaps what it depends on.
                if let Some(span) = self.spans.get_mut(&r.id) {
                    span.1 = Some(span.0 + r.duration_ms);
                }
            }
            Event::Transfer {
                step,
                label,
                done,
                total,
            } => {
                let t = self
                    .transfers
                    .entry((step.clone(), label.clone()))
                    .or_insert((now, now, 0, None));
                t.1 = now;
                t.2 = *done;
                t.3 = *total;
            }
            Event::Call {
                step,
                iteration,
                event,
            } => match event {
                CallEvent::Attempt(a) => self.attempts.push((step.clone(), *iteration, a.clone())),
                CallEvent::Wait(w) => self.waits.push((step.clone(), *iteration, w.clone())),
            },
        }
    }

    /// Each step's span and lane (steps that never started have none).
    pub fn spans(&self, result: &RunResult) -> HashMap<String, Span> {
        let mut timed: Vec<(&str, u64, u64)> = result
            .steps
            .iter()
            .filter_map(|r| {
                let (start, end) = self.spans.get(&r.id)?;
                Some((r.id.as_str(), *start, end.unwrap_or(*start + r.duration_ms)))
            })
            .collect();
        timed.sort_by_key(|t| (t.1, t.2));
        let mut lanes: Vec<u64> = Vec::new();
        let mut out = HashMap::new();
        for (id, start, end) in timed {
            let lane = match lanes.iter().position(|&busy_until| busy_until <= start) {
                Some(l) => l,
                None => {
                    lanes.push(0);
                    lanes.len() - 1
                }
            };
            lanes[lane] = end;
            out.insert(
                id.to_string(),
                Span {
                    start_ms: start,
                    end_ms: end,
                    lane,
                },
            );
        }
        out
    }

    /// Each step's attempts and waits, as JSON, by step id.
    #[allow(clippy::type_complexity)]
    fn calls_by_step(&self) -> (HashMap<&str, Vec<Value>>, HashMap<&str, Vec<Value>>) {
        let mut attempts_of: HashMap<&str, Vec<Value>> = HashMap::new();
        for (step, iteration, a) in &self.attempts {
            attempts_of.entry(step).or_default().push(json!({
                "iteration": iteration,
                "method": a.method.as_str(),
                "path": a.path,
                "attempt": a.attempt,
                "status": a.status,
                "error": a.error,
                "start_ms": self.ms(a.started),
                "duration_ms": a.duration.as_millis() as u64,
                "bytes_sent": a.bytes_sent,
                "bytes_received": a.bytes_received,
                "file": a.file,
            }));
        }
        let mut waits_of: HashMap<&str, Vec<Value>> = HashMap::new();
        for (step, iteration, w) in &self.waits {
            waits_of.entry(step).or_default().push(json!({
                "iteration": iteration,
                "cause": w.cause,
                "start_ms": self.ms(w.started),
                "duration_ms": w.duration.as_millis() as u64,
            }));
        }
        (attempts_of, waits_of)
    }

    /// The run as data for the HTML report: steps with their spans, lanes, attempts,
    /// waits, iterations and transfers; the dependency edges; secrets masked.
    pub fn to_json(
        &self,
        p: &Pipeline,
        started_at: &str,
        result: &RunResult,
        redactor: &Redactor,
    ) -> Value {
        let spans = self.spans(result);
        let (mut attempts_of, mut waits_of) = self.calls_by_step();
        let ids: HashMap<&str, usize> = p.steps.iter().map(|s| (s.id.as_str(), s.index)).collect();
        let steps: Vec<Value> = result
            .steps
            .iter()
            .map(|r| {
                let span = spans.get(&r.id);
                let start = span.map(|s| s.start_ms);
                let attempts = attempts_of.remove(r.id.as_str()).unwrap_or_default();
                let waits = waits_of.remove(r.id.as_str()).unwrap_or_default();
                let needs: Vec<&str> = ids
                    .get(r.id.as_str())
                    .map(|&i| {
                        p.steps[i]
                            .deps
                            .iter()
                            .map(|&d| p.steps[d].id.as_str())
                            .collect()
                    })
                    .unwrap_or_default();
                json!({
                    "id": r.id,
                    "name": ids.get(r.id.as_str()).and_then(|&i| p.steps[i].name.clone()),
                    "action": r.action,
                    "status": r.status,
                    "line": r.line,
                    "needs": needs,
                    "start_ms": start,
                    "duration_ms": r.duration_ms,
                    "lane": span.map(|s| s.lane),
                    "attempts_total": r.attempts,
                    "error": r.error,
                    "reason": r.reason,
                    "iterations": r.iterations,
                    "attempts": attempts,
                    "waits": waits,
                    "transfers": self.transfers_of(r, start),
                })
            })
            .collect();
        let count = |s: StepStatus| result.steps.iter().filter(|r| r.status == s).count();
        let mut v = json!({
            "pipeline": p.name,
            "file": p.path.display().to_string(),
            "status": result.status,
            "started_at": started_at,
            "duration_ms": result.duration.as_millis() as u64,
            "lanes": spans.values().map(|s| s.lane + 1).max().unwrap_or(0),
            "counts": {
                "succeeded": count(StepStatus::Succeeded),
                "failed": count(StepStatus::Failed),
                "skipped": count(StepStatus::Skipped),
            },
            "steps": steps,
            "output_errors": result.output_errors,
        });
        redactor.json(&mut v);
        v
    }

    /// The files a step moved: from its outputs (path, bytes, sha256), timed by its
    /// transfer events or, for an upload, by the attempt that sent the file.
    fn transfers_of(&self, r: &crate::execute::StepResult, start: Option<u64>) -> Vec<Value> {
        let files: Vec<&Value> = match r.action {
            "items.upload" => r
                .outputs
                .field("files")
                .and_then(Value::as_array)
                .map(|f| f.iter().collect())
                .unwrap_or_default(),
            "download" => r
                .outputs
                .as_json()
                .filter(|o| o.get("path").is_some())
                .into_iter()
                .collect(),
            _ => Vec::new(),
        };
        files
            .into_iter()
            .map(|f| {
                let path = f["path"].as_str().unwrap_or_default();
                let bytes = f["bytes"].as_u64().unwrap_or(0);
                // An upload's time is that of its last attempt (which streamed the file);
                // a download's, from the step's start to its last transfer event.
                let millis = match r.action {
                    "items.upload" => self
                        .attempts
                        .iter()
                        .rev()
                        .find(|(s, _, a)| *s == r.id && a.file.as_deref() == Some(path))
                        .map(|(_, _, a)| a.duration.as_millis() as u64),
                    _ => self
                        .transfers
                        .iter()
                        .filter(|((s, _), _)| *s == r.id)
                        .map(|(_, t)| t.1)
                        .max()
                        .zip(start)
                        .map(|(last, start)| last.saturating_sub(start))
                        .filter(|&ms| ms > 0)
                        .or(Some(r.duration_ms)),
                };
                let throughput = millis
                    .filter(|&ms| ms > 0)
                    .map(|ms| (bytes as f64 * 1000.0 / ms as f64) as u64);
                json!({
                    "path": path,
                    "bytes": bytes,
                    "sha256": f["sha256"],
                    "duration_ms": millis,
                    "bytes_per_second": throughput,
                })
            })
            .collect()
    }
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::execute::{RunStatus, StepResult};

    fn step(id: &str) -> StepResult {
        StepResult {
            id: id.into(),
            action: "request",
            status: StepStatus::Succeeded,
            attempts: 1,
            duration_ms: 0,
            outputs: Default::default(),
            error: None,
            reason: None,
            iterations: vec![],
            line: 1,
            reused: false,
        }
    }

    #[test]
    fn overlapping_steps_take_separate_lanes_and_a_lane_is_reused_once_free() {
        let mut t = Timeline::new();
        // a: 0-100, b: 10-50 (overlaps a), c: 60-90 (b's lane is free again), d: 100-120.
        for (id, start, end) in [("a", 0, 100), ("b", 10, 50), ("c", 60, 90), ("d", 100, 120)] {
            t.spans.insert(id.into(), (start, Some(end)));
        }
        let result = RunResult {
            status: RunStatus::Succeeded,
            duration: Duration::from_millis(120),
            steps: ["a", "b", "c", "d", "never"].map(step).to_vec(),
            outputs: json!({}),
            output_errors: vec![],
        };
        let spans = t.spans(&result);
        let lane = |id: &str| spans[id].lane;
        assert_eq!([lane("a"), lane("b"), lane("c"), lane("d")], [0, 1, 1, 0]);
        assert!(
            !spans.contains_key("never"),
            "a step that never started has no span"
        );
    }
}
