//! The scheduler: runs a checked pipeline's steps as their dependencies complete, at
//! most `concurrency` at once, ties in file order. A failed step stops new work (steps
//! in flight finish) and its dependants are skipped; `continue_on_error` lets them run.
//! `if`, `for_each` (with `max_parallel`) and step timeouts live here. Progress leaves
//! as [`Event`]s; the result is plain data ([`RunResult`]) for the report writers.
//!
//! Must not: print, or decide exit codes.

pub mod context;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::Value;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actions::{self, Inputs, Renderer, RunCtx};
use crate::api::{CallCtx, Client};
use crate::graph::Graph;
use crate::pipeline::model::{ActionKind, Pipeline, Step, TValue};
use crate::template;
pub use context::{Environment, Globals};

/// What happened, as it happens.
#[derive(Clone, Debug)]
pub enum Event {
    StepStarted {
        id: String,
        action: &'static str,
    },
    /// The step's result without its `outputs` (they can be large: a listed dataset's
    /// items; the [`RunResult`] has them).
    StepFinished(StepResult),
    /// Bytes moved by a transfer (`label`: the file), for progress bars.
    Transfer {
        step: String,
        label: String,
        done: u64,
        total: Option<u64>,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum StepStatus {
    Succeeded,
    Failed,
    Skipped,
}

impl StepStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            StepStatus::Succeeded => "succeeded",
            StepStatus::Failed => "failed",
            StepStatus::Skipped => "skipped",
        }
    }
}

/// One `for_each` iteration's result.
#[derive(Clone, Debug, Serialize)]
pub struct IterationResult {
    pub index: usize,
    pub status: StepStatus,
    pub duration_ms: u64,
    pub error: Option<String>,
}

/// One step's result.
#[derive(Clone, Debug, Serialize)]
pub struct StepResult {
    pub id: String,
    pub action: &'static str,
    pub status: StepStatus,
    pub attempts: u32,
    pub duration_ms: u64,
    pub outputs: serde_json::Value,
    pub error: Option<String>,
    /// Why a skipped step was skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub iterations: Vec<IterationResult>,
    /// The step's line in the pipeline file.
    #[serde(skip)]
    pub line: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    Succeeded,
    Failed,
    Interrupted,
}

/// The whole run, as the report writers see it.
#[derive(Clone, Debug)]
pub struct RunResult {
    pub status: RunStatus,
    pub duration: Duration,
    pub steps: Vec<StepResult>,
    pub outputs: serde_json::Value,
    /// Problems evaluating the pipeline's `outputs`.
    pub output_errors: Vec<String>,
}

/// What a run needs besides the pipeline.
pub struct RunSettings {
    pub client: Client,
    pub concurrency: usize,
    pub cancel: CancellationToken,
    pub globals: Globals,
}

/// Runs the pipeline to the end (or until cancelled).
pub async fn run(
    p: Arc<Pipeline>,
    settings: RunSettings,
    events: mpsc::UnboundedSender<Event>,
) -> RunResult {
    let started = Instant::now();
    let graph = Graph::of(&p);
    let n = p.steps.len();
    let mut results: Vec<Option<StepResult>> = vec![None; n];
    let mut running = vec![false; n];
    let entries = Arc::new(context::StepEntries::default());
    let steps_value = Value::from_dyn_object(entries.clone());
    let mut tasks: JoinSet<(usize, StepResult)> = JoinSet::new();
    let mut task_steps: std::collections::HashMap<tokio::task::Id, usize> = Default::default();
    let mut stop_reason: Option<String> = None;
    let read_later = outputs_read_later(&p, &graph);
    let shared = Arc::new(Shared {
        client: settings.client.clone(),
        globals: settings.globals.clone(),
        cancel: settings.cancel.clone(),
        concurrency: settings.concurrency,
        events: events.clone(),
    });

    const INTERRUPTED: &str = "not started: the run was interrupted";
    loop {
        let interrupted = settings.cancel.is_cancelled();
        if interrupted && stop_reason.is_none() {
            stop_reason = Some(INTERRUPTED.into());
        }
        // Settle skips until nothing changes, then start what is ready. Once interrupted,
        // what has not started is reported as such (below), not as skipped for a
        // dependency that the interruption cut short.
        let mut settle = !interrupted;
        while settle {
            settle = false;
            for i in 0..n {
                if results[i].is_some() || running[i] {
                    continue;
                }
                if let Some(reason) = skip_reason(&p, &p.steps[i], &results) {
                    let r = skipped(&p.steps[i], reason);
                    entries.insert(r.id.clone(), context::step_entry(&r.outputs, "skipped"));
                    let _ = events.send(Event::StepFinished(r.clone()));
                    results[i] = Some(r);
                    settle = true;
                }
            }
        }
        if stop_reason.is_none() {
            for i in 0..n {
                if tasks.len() >= settings.concurrency {
                    break;
                }
                if results[i].is_some() || running[i] {
                    continue;
                }
                if !graph.deps[i].iter().all(|&d| results[d].is_some()) {
                    continue;
                }
                running[i] = true;
                let step = p.steps[i].clone();
                let _ = events.send(Event::StepStarted {
                    id: step.id.clone(),
                    action: step.action.name(),
                });
                let steps_value = steps_value.clone();
                let shared = shared.clone();
                let handle = tasks.spawn(async move {
                    let r = run_step(&shared, &step, steps_value).await;
                    (step.index, r)
                });
                task_steps.insert(handle.id(), i);
            }
        }
        let Some(joined) = tasks.join_next_with_id().await else {
            break;
        };
        let (i, r) = match joined {
            Ok((_, v)) => v,
            Err(e) => {
                // A panic in a step: report it as that step's failure.
                let i = task_steps.get(&e.id()).copied().unwrap_or(0);
                let step = &p.steps[i];
                (i, failed(step, format!("internal error: {e}"), 0, 0))
            }
        };
        running[i] = false;
        if r.status == StepStatus::Failed && !p.steps[i].continue_on_error && stop_reason.is_none()
        {
            stop_reason = Some(if settings.cancel.is_cancelled() {
                INTERRUPTED.into()
            } else {
                format!("not started: step `{}` failed", r.id)
            });
        }
        let readable = if read_later[i] {
            &r.outputs
        } else {
            &serde_json::Value::Null
        };
        entries.insert(
            r.id.clone(),
            context::step_entry(readable, r.status.as_str()),
        );
        let _ = events.send(Event::StepFinished(without_outputs(&r)));
        results[i] = Some(r);
    }

    // Whatever never started.
    for (slot, step) in results.iter_mut().zip(&p.steps) {
        if slot.is_none() {
            let reason = stop_reason.clone().unwrap_or_else(|| "not started".into());
            let r = skipped(step, reason);
            let _ = events.send(Event::StepFinished(r.clone()));
            *slot = Some(r);
        }
    }
    let steps: Vec<StepResult> = results.into_iter().flatten().collect();
    let interrupted = settings.cancel.is_cancelled();
    let failed_hard = steps
        .iter()
        .zip(&p.steps)
        .any(|(r, s)| r.status == StepStatus::Failed && !s.continue_on_error);

    // Pipeline outputs, evaluated after the run.
    let mut outputs = serde_json::Map::new();
    let mut output_errors = Vec::new();
    let ctx = settings.globals.context(&steps_value, &[]);
    for (name, value) in &p.outputs {
        match template::render_value(value, &ctx) {
            Ok(v) => {
                outputs.insert(name.clone(), v);
            }
            Err(e) => {
                outputs.insert(name.clone(), serde_json::Value::Null);
                output_errors.push(format!("output `{name}`: {e}"));
            }
        }
    }
    let status = if interrupted {
        RunStatus::Interrupted
    } else if failed_hard {
        RunStatus::Failed
    } else {
        RunStatus::Succeeded
    };
    RunResult {
        status,
        duration: started.elapsed(),
        steps,
        outputs: serde_json::Value::Object(outputs),
        output_errors,
    }
}

/// Which steps' outputs a template can still read: those of steps that others depend on
/// (every `steps.<id>` reference is an edge) or that the pipeline's `outputs` name. The
/// others are not converted for templates: a big list nobody reads costs nothing more.
fn outputs_read_later(p: &Pipeline, graph: &Graph) -> Vec<bool> {
    let named: std::collections::HashSet<&str> = p
        .outputs
        .values()
        .flat_map(|v| v.templates())
        .flat_map(|t| t.step_refs.iter().map(String::as_str))
        .collect();
    p.steps
        .iter()
        .enumerate()
        .map(|(i, s)| !graph.dependants[i].is_empty() || named.contains(s.id.as_str()))
        .collect()
}

/// Why a not-yet-started step must be skipped, if it must.
fn skip_reason(p: &Pipeline, step: &Step, results: &[Option<StepResult>]) -> Option<String> {
    for &d in &step.deps {
        let Some(r) = &results[d] else { continue };
        let dep = &p.steps[d];
        match r.status {
            StepStatus::Failed if !dep.continue_on_error => {
                return Some(format!("dependency `{}` failed", dep.id));
            }
            StepStatus::Skipped if !step.tests_status_of(d) => {
                return Some(format!("dependency `{}` was skipped", dep.id));
            }
            _ => {}
        }
    }
    None
}

struct Shared {
    client: Client,
    globals: Globals,
    cancel: CancellationToken,
    concurrency: usize,
    events: mpsc::UnboundedSender<Event>,
}

/// A copy of a result for an event: everything but the outputs, which may be many
/// megabytes of listed items that no progress printer reads.
fn without_outputs(r: &StepResult) -> StepResult {
    StepResult {
        id: r.id.clone(),
        action: r.action,
        status: r.status,
        attempts: r.attempts,
        duration_ms: r.duration_ms,
        outputs: json!({}),
        error: r.error.clone(),
        reason: r.reason.clone(),
        iterations: r.iterations.clone(),
        line: r.line,
    }
}

fn skipped(step: &Step, reason: String) -> StepResult {
    StepResult {
        id: step.id.clone(),
        action: step.action.name(),
        status: StepStatus::Skipped,
        attempts: 0,
        duration_ms: 0,
        outputs: json!({}),
        error: None,
        reason: Some(reason),
        iterations: vec![],
        line: step.pos.line,
    }
}

fn failed(step: &Step, error: String, attempts: u32, duration_ms: u64) -> StepResult {
    StepResult {
        id: step.id.clone(),
        action: step.action.name(),
        status: StepStatus::Failed,
        attempts,
        duration_ms,
        outputs: json!({}),
        error: Some(error),
        reason: None,
        iterations: vec![],
        line: step.pos.line,
    }
}

/// Renders late templates (poll conditions) with the step's context plus `data`.
struct StepRenderer {
    ctx: Value,
}

impl Renderer for StepRenderer {
    fn render_with(
        &self,
        value: &TValue,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let mut extra: BTreeMap<String, Value> = BTreeMap::new();
        if let Some(obj) = data.as_object() {
            for (k, v) in obj {
                extra.insert(k.clone(), template::from_json(v));
            }
        }
        let ctx = minijinja::context! { ..Value::from(extra), ..self.ctx.clone() };
        template::render_value(value, &ctx).map_err(|e| format!("{name}: {e}"))
    }
}

async fn run_step(shared: &Shared, step: &Step, steps_value: Value) -> StepResult {
    let started = Instant::now();
    let call = CallCtx::new(step.retry, shared.cancel.clone(), &step.id);
    let work = execute_step(shared, step, steps_value, &call);
    let outcome = match step.timeout {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(format!(
                "timed out after {} (the step's timeout){}",
                crate::pipeline::model::format_duration(limit),
                match step.action {
                    ActionKind::ItemsUpload | ActionKind::ExportsCreate => {
                        "; requests that were in flight may already have been applied by the server"
                    }
                    _ => "",
                }
            )),
        },
        None => work.await,
    };
    let attempts = call.attempts.load(Ordering::Relaxed);
    let duration_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(StepOutcome::Done {
            outputs,
            iterations,
        }) => StepResult {
            id: step.id.clone(),
            action: step.action.name(),
            status: StepStatus::Succeeded,
            attempts,
            duration_ms,
            outputs,
            error: None,
            reason: None,
            iterations,
            line: step.pos.line,
        },
        Ok(StepOutcome::Skipped(reason)) => skipped(step, reason),
        Err(error) => {
            let mut r = failed(step, error, attempts, duration_ms);
            if shared.cancel.is_cancelled() {
                let error = r.error.unwrap_or_default();
                r.error = Some(if error.starts_with("interrupted") {
                    error
                } else {
                    format!("interrupted: {error}")
                });
            }
            r
        }
    }
}

enum StepOutcome {
    Done {
        outputs: serde_json::Value,
        iterations: Vec<IterationResult>,
    },
    Skipped(String),
}

async fn execute_step(
    shared: &Shared,
    step: &Step,
    steps_value: Value,
    call: &CallCtx,
) -> Result<StepOutcome, String> {
    let base = shared.globals.context(&steps_value, &[]);
    if let Some(cond) = &step.condition {
        let v = template::render_value(cond, &base).map_err(|e| format!("`if`: {e}"))?;
        if !actions::request::truthy(&v) {
            return Ok(StepOutcome::Skipped("`if` was false".into()));
        }
    }
    let Some(for_each) = &step.for_each else {
        let outputs = run_once(shared, step, &base, call).await?;
        return Ok(StepOutcome::Done {
            outputs,
            iterations: vec![],
        });
    };
    let list = template::render_value(for_each, &base).map_err(|e| format!("`for_each`: {e}"))?;
    let serde_json::Value::Array(items) = list else {
        return Err(format!(
            "`for_each` must yield a list, got {}",
            crate::api::shapes::shorten(&list.to_string(), 80)
        ));
    };
    let parallel = step.max_parallel.unwrap_or(shared.concurrency).max(1);
    let semaphore = Arc::new(Semaphore::new(parallel));
    let stop = CancellationToken::new();
    let mut futures = Vec::with_capacity(items.len());
    for (index, item) in items.iter().enumerate() {
        let semaphore = semaphore.clone();
        let stop = stop.clone();
        let base = base.clone();
        futures.push(async move {
            let _permit = semaphore.acquire().await.ok();
            if stop.is_cancelled() || shared.cancel.is_cancelled() {
                return None;
            }
            let started = Instant::now();
            let ctx =
                minijinja::context! { item => template::from_json(item), index => index, ..base };
            let r = run_once(shared, step, &ctx, call).await;
            if r.is_err() {
                stop.cancel();
            }
            Some((index, started.elapsed(), r))
        });
    }
    let finished: Vec<_> = futures_util::future::join_all(futures).await;
    let mut results = Vec::with_capacity(items.len());
    let mut iterations = Vec::with_capacity(items.len());
    let mut first_error = None;
    for (index, entry) in finished.into_iter().enumerate() {
        match entry {
            Some((_, took, Ok(out))) => {
                iterations.push(IterationResult {
                    index,
                    status: StepStatus::Succeeded,
                    duration_ms: took.as_millis() as u64,
                    error: None,
                });
                results.push(out);
            }
            Some((_, took, Err(e))) => {
                iterations.push(IterationResult {
                    index,
                    status: StepStatus::Failed,
                    duration_ms: took.as_millis() as u64,
                    error: Some(e.clone()),
                });
                if first_error.is_none() {
                    first_error = Some(format!("iteration {index}: {e}"));
                }
                results.push(serde_json::Value::Null);
            }
            None => {
                iterations.push(IterationResult {
                    index,
                    status: StepStatus::Skipped,
                    duration_ms: 0,
                    error: None,
                });
                results.push(serde_json::Value::Null);
            }
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(StepOutcome::Done {
        outputs: json!({"results": results, "count": items.len()}),
        iterations,
    })
}

/// Renders the inputs in `ctx`, runs the action, adds the step's `outputs`.
async fn run_once(
    shared: &Shared,
    step: &Step,
    ctx: &Value,
    call: &CallCtx,
) -> Result<serde_json::Value, String> {
    let inputs = render_inputs(step, ctx, false)?;
    let renderer = StepRenderer { ctx: ctx.clone() };
    let progress = |label: &str, done: u64, total: Option<u64>| {
        let _ = shared.events.send(Event::Transfer {
            step: step.id.clone(),
            label: label.to_string(),
            done,
            total,
        });
    };
    let run_ctx = RunCtx {
        client: &shared.client,
        call: call.clone(),
        renderer: &renderer,
        progress: &progress,
    };
    let result = actions::run(&inputs, &run_ctx)
        .await
        .map_err(|e| e.to_string())?;
    if step.outputs.is_empty() {
        return Ok(result);
    }
    let with_result = minijinja::context! { result => template::from_json(&result), ..ctx.clone() };
    let mut outputs = match result {
        serde_json::Value::Object(o) => o,
        other => serde_json::Map::from_iter([("value".to_string(), other)]),
    };
    for (name, value) in &step.outputs {
        let v = template::render_value(value, &with_result)
            .map_err(|e| format!("output `{name}`: {e}"))?;
        outputs.insert(name.clone(), v);
    }
    Ok(serde_json::Value::Object(outputs))
}

/// Renders a step's inputs (all but poll conditions, which need `response`).
pub fn render_inputs(step: &Step, ctx: &Value, preview: bool) -> Result<Inputs, String> {
    render_inputs_with(step, ctx, preview, &template::render_value)
}

/// A function that renders one input value in a context.
pub type RenderFn<'a> = dyn Fn(&TValue, &Value) -> Result<serde_json::Value, String> + 'a;

/// [`render_inputs`] with another renderer: the plan passes one that turns values only
/// known after the run into placeholders, so a run and its preview share everything else.
pub fn render_inputs_with(
    step: &Step,
    ctx: &Value,
    preview: bool,
    render: &RenderFn<'_>,
) -> Result<Inputs, String> {
    let mut values = serde_json::Map::new();
    for (name, value) in &step.with {
        let rendered = if name == "poll" {
            match value {
                TValue::Map(m) => {
                    let mut out = serde_json::Map::new();
                    for (k, v) in m {
                        if k == "until" || k == "fail_if" {
                            continue;
                        }
                        out.insert(
                            k.clone(),
                            render(v, ctx).map_err(|e| format!("input `poll.{k}`: {e}"))?,
                        );
                    }
                    serde_json::Value::Object(out)
                }
                other => render(other, ctx).map_err(|e| format!("input `poll`: {e}"))?,
            }
        } else {
            render(value, ctx).map_err(|e| format!("input `{name}`: {e}"))?
        };
        values.insert(name.clone(), rendered);
    }
    Ok(Inputs::new(step.action, values, step.with.clone(), preview))
}
