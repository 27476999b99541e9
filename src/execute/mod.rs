//! The scheduler: runs a checked pipeline's steps as their dependencies complete, at
//! most `concurrency` at once, ties in file order. A failed step stops new work (steps
//! in flight finish) and its dependants are skipped ([`step::skip_cause`]);
//! `continue_on_error` lets them run. Step timeouts, cancellation and `for_each`
//! concurrency (`max_parallel`) live here; what a step *means* (its `if`, iterations,
//! inputs, outputs) is the step layer's ([`step::Eval`] in [`Mode::Run`]). Progress
//! leaves as [`Event`]s; the result is plain data ([`RunResult`]) for the report writers.
//!
//! Takes: a checked pipeline, its graph, a client. Gives: events and a [`RunResult`].
//! Must not: print, render templates itself, or decide exit codes.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use minijinja::value::Value;
use serde::Serialize;
use serde_json::json;
use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actions::{self, ActionError, RunCtx};
use crate::api::{CallCtx, CallEvent, Client};
use crate::graph::Graph;
use crate::journal::resume::{self, RunJournal};
use crate::journal::{MaskedOutputs, Record, StepLog};
use crate::pipeline::model::{format_duration, Pipeline, Step};
use crate::step::{
    self, step_entry, DepState, Eval, Globals, Iterations, LateInputs, Mode, SkipCause,
    StepEntries, StepError,
};
use crate::template;

/// What happened, as it happens.
#[derive(Clone, Debug)]
pub enum Event {
    StepStarted {
        id: String,
        action: &'static str,
        /// When the scheduler started it (the timeline's clock: the reader may lag).
        at: Instant,
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
    /// An HTTP attempt or a wait of a step (`iteration`: its `for_each` iteration), for
    /// the run report's timeline.
    Call {
        step: String,
        iteration: Option<usize>,
        event: CallEvent,
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
    /// Not run: its result was taken from the journal of an earlier run (`--resume`).
    #[serde(skip)]
    pub reused: bool,
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
    /// The pipeline's dependency graph (built once, by the caller).
    pub graph: Arc<Graph>,
    /// The run journal (and the earlier run's, when resuming); `None`: `--no-journal`.
    pub journal: Option<RunJournal>,
    /// Send every HTTP attempt and wait as an [`Event::Call`] (for the reports that draw a
    /// timeline); off, they cost nothing.
    pub timeline: bool,
}

/// Runs the pipeline to the end (or until cancelled).
pub async fn run(
    p: Arc<Pipeline>,
    settings: RunSettings,
    events: mpsc::UnboundedSender<Event>,
) -> RunResult {
    let started = Instant::now();
    let mut s = Scheduler::new(p, &settings, events);
    loop {
        s.note_interruption();
        s.settle_skips();
        s.start_ready();
        let Some(joined) = s.tasks.join_next_with_id().await else {
            break;
        };
        s.finished(joined);
    }
    s.finish(started)
}

const INTERRUPTED: &str = "not started: the run was interrupted";

/// The state of one run: which steps are done, which run, and why nothing new starts.
struct Scheduler {
    p: Arc<Pipeline>,
    graph: Arc<Graph>,
    shared: Arc<Shared>,
    concurrency: usize,
    results: Vec<Option<StepResult>>,
    running: Vec<bool>,
    entries: Arc<StepEntries>,
    steps_value: Value,
    tasks: JoinSet<(usize, StepResult)>,
    task_steps: HashMap<tokio::task::Id, usize>,
    stop_reason: Option<String>,
    read_later: Vec<bool>,
    globals: Globals,
}

impl Scheduler {
    fn new(p: Arc<Pipeline>, settings: &RunSettings, events: mpsc::UnboundedSender<Event>) -> Self {
        let n = p.steps.len();
        let entries = Arc::new(StepEntries::default());
        let steps_value = Value::from_dyn_object(entries.clone());
        let read_later = outputs_read_later(&p, &settings.graph);
        Scheduler {
            graph: settings.graph.clone(),
            shared: Arc::new(Shared {
                client: settings.client.clone(),
                globals: settings.globals.clone(),
                cancel: settings.cancel.clone(),
                concurrency: settings.concurrency,
                events,
                journal: settings.journal.clone(),
                timeline: settings.timeline,
            }),
            concurrency: settings.concurrency,
            results: vec![None; n],
            running: vec![false; n],
            entries,
            steps_value,
            tasks: JoinSet::new(),
            task_steps: HashMap::new(),
            stop_reason: None,
            read_later,
            globals: settings.globals.clone(),
            p,
        }
    }

    fn interrupted(&self) -> bool {
        self.shared.cancel.is_cancelled()
    }

    fn note_interruption(&mut self) {
        if self.interrupted() && self.stop_reason.is_none() {
            self.stop_reason = Some(INTERRUPTED.into());
        }
    }

    fn state(&self, d: usize) -> DepState {
        match &self.results[d] {
            None => DepState::Pending,
            Some(r) => match r.status {
                StepStatus::Succeeded => DepState::Succeeded,
                StepStatus::Failed => DepState::Failed,
                StepStatus::Skipped => DepState::Skipped,
            },
        }
    }

    /// Skips what a failed or skipped dependency rules out, until nothing changes. Once
    /// interrupted, what has not started is reported as such (in `finish`), not as
    /// skipped for a dependency that the interruption cut short.
    fn settle_skips(&mut self) {
        let mut settle = !self.interrupted();
        while settle {
            settle = false;
            for i in 0..self.p.steps.len() {
                if self.results[i].is_some() || self.running[i] {
                    continue;
                }
                let cause = step::skip_cause(&self.p, &self.p.steps[i], |d| self.state(d));
                let reason = match cause {
                    None => continue,
                    Some(SkipCause::Failed(dep)) => format!("dependency `{}` failed", dep.id),
                    Some(SkipCause::Skipped(dep)) => {
                        format!("dependency `{}` was skipped", dep.id)
                    }
                };
                let r = skipped(&self.p.steps[i], reason);
                self.record(i, r);
                settle = true;
            }
        }
    }

    /// Starts every step whose dependencies are done, within the concurrency limit.
    fn start_ready(&mut self) {
        if self.stop_reason.is_some() {
            return;
        }
        for i in 0..self.p.steps.len() {
            if self.tasks.len() >= self.concurrency {
                break;
            }
            if self.results[i].is_some()
                || self.running[i]
                || !self.graph.deps[i]
                    .iter()
                    .all(|&d| self.results[d].is_some())
            {
                continue;
            }
            self.running[i] = true;
            let deps_reused = self.graph.deps[i]
                .iter()
                .all(|&d| self.results[d].as_ref().is_some_and(|r| r.reused));
            let step = self.p.steps[i].clone();
            let _ = self.shared.events.send(Event::StepStarted {
                id: step.id.clone(),
                action: step.action.name(),
                at: Instant::now(),
            });
            let steps_value = self.steps_value.clone();
            let shared = self.shared.clone();
            let handle = self.tasks.spawn(async move {
                let r = run_step(&shared, &step, steps_value, deps_reused).await;
                (step.index, r)
            });
            self.task_steps.insert(handle.id(), i);
        }
    }

    /// A step task ended (or panicked: reported as that step's failure).
    fn finished(
        &mut self,
        joined: Result<(tokio::task::Id, (usize, StepResult)), tokio::task::JoinError>,
    ) {
        let (i, r) = match joined {
            Ok((_, v)) => v,
            Err(e) => {
                let i = self.task_steps.get(&e.id()).copied().unwrap_or(0);
                (
                    i,
                    failed(&self.p.steps[i], format!("internal error: {e}"), 0, 0),
                )
            }
        };
        self.running[i] = false;
        if let (Some(j), false) = (&self.shared.journal, r.reused) {
            let succeeded = r.status == StepStatus::Succeeded;
            j.sink.send(Record::Finished {
                step: r.id.clone(),
                status: r.status.as_str(),
                inputs: None,
                outputs: succeeded.then(|| MaskedOutputs::of(&j.redactor, &r.outputs)),
            });
        }
        if r.status == StepStatus::Failed
            && !self.p.steps[i].continue_on_error
            && self.stop_reason.is_none()
        {
            self.stop_reason = Some(if self.interrupted() {
                INTERRUPTED.into()
            } else {
                format!("not started: step `{}` failed", r.id)
            });
        }
        self.record(i, r);
    }

    /// Makes a step's result final: readable by later templates, reported as an event.
    fn record(&mut self, i: usize, r: StepResult) {
        let readable = if self.read_later[i] {
            &r.outputs
        } else {
            &serde_json::Value::Null
        };
        self.entries
            .insert(r.id.clone(), step_entry(readable, r.status.as_str()));
        let _ = self
            .shared
            .events
            .send(Event::StepFinished(without_outputs(&r)));
        self.results[i] = Some(r);
    }

    /// Reports what never started, evaluates the pipeline's outputs, gives the result.
    fn finish(mut self, started: Instant) -> RunResult {
        for (slot, step) in self.results.iter_mut().zip(&self.p.steps) {
            if slot.is_none() {
                let reason = self
                    .stop_reason
                    .clone()
                    .unwrap_or_else(|| "not started".into());
                let r = skipped(step, reason);
                let _ = self.shared.events.send(Event::StepFinished(r.clone()));
                *slot = Some(r);
            }
        }
        let steps: Vec<StepResult> = std::mem::take(&mut self.results)
            .into_iter()
            .flatten()
            .collect();
        let failed_hard = steps
            .iter()
            .zip(&self.p.steps)
            .any(|(r, s)| r.status == StepStatus::Failed && !s.continue_on_error);
        let (outputs, output_errors) = self.pipeline_outputs();
        let status = if self.interrupted() {
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
            outputs,
            output_errors,
        }
    }

    /// The pipeline's `outputs`, evaluated after the run.
    fn pipeline_outputs(&self) -> (serde_json::Value, Vec<String>) {
        let mut outputs = serde_json::Map::new();
        let mut errors = Vec::new();
        let ctx = self.globals.context(&self.steps_value, &[]);
        for (name, value) in &self.p.outputs {
            match template::render_value(value, &ctx) {
                Ok(v) => {
                    outputs.insert(name.clone(), v);
                }
                Err(e) => {
                    outputs.insert(name.clone(), serde_json::Value::Null);
                    errors.push(format!("output `{name}`: {e}"));
                }
            }
        }
        (serde_json::Value::Object(outputs), errors)
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

struct Shared {
    client: Client,
    globals: Globals,
    cancel: CancellationToken,
    concurrency: usize,
    events: mpsc::UnboundedSender<Event>,
    journal: Option<RunJournal>,
    timeline: bool,
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
        reused: r.reused,
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
        reused: false,
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
        reused: false,
    }
}

/// Why a step failed, as the scheduler sees it.
#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Step(#[from] StepError),
    #[error(transparent)]
    Action(#[from] ActionError),
    #[error("timed out after {limit} (the step's timeout){note}")]
    TimedOut { limit: String, note: &'static str },
    #[error("iteration {index}: {source}")]
    Iteration { index: usize, source: Box<Failure> },
}

impl Failure {
    /// Its own words already begin with "interrupted" (an action cut short while it
    /// waited or transferred).
    fn says_interrupted(&self) -> bool {
        match self {
            Failure::Action(ActionError::Interrupted(_)) => true,
            Failure::Iteration { .. } | Failure::Action(_) => false,
            Failure::Step(_) | Failure::TimedOut { .. } => false,
        }
    }
}

async fn run_step(
    shared: &Shared,
    step: &Step,
    steps_value: Value,
    deps_reused: bool,
) -> StepResult {
    let started = Instant::now();
    let mut call = CallCtx::new(step.retry, shared.cancel.clone(), &step.id);
    if shared.timeline {
        let events = shared.events.clone();
        call = call.observed(Arc::new(move |ctx: &CallCtx, event: CallEvent| {
            let _ = events.send(Event::Call {
                step: ctx.step.clone(),
                iteration: ctx.iteration,
                event,
            });
        }));
    }
    let work = execute_step(shared, step, steps_value, &call, deps_reused);
    let outcome = match step.timeout {
        Some(limit) => match tokio::time::timeout(limit, work).await {
            Ok(r) => r,
            Err(_) => Err(Failure::TimedOut {
                limit: format_duration(limit),
                note: if step.action.spec().changes_server {
                    "; requests that were in flight may already have been applied by the server"
                } else {
                    ""
                },
            }),
        },
        None => work.await,
    };
    let attempts = call.attempts.load(Ordering::Relaxed);
    let duration_ms = started.elapsed().as_millis() as u64;
    match outcome {
        Ok(StepOutcome::Done {
            outputs,
            iterations,
            reused,
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
            reused,
        },
        Ok(StepOutcome::Skipped(reason)) => skipped(step, reason),
        Err(error) => {
            // Interrupted: said once, whatever the action's own words were.
            let text = if shared.cancel.is_cancelled() && !error.says_interrupted() {
                format!("interrupted: {error}")
            } else {
                error.to_string()
            };
            failed(step, text, attempts, duration_ms)
        }
    }
}

enum StepOutcome {
    Done {
        outputs: serde_json::Value,
        iterations: Vec<IterationResult>,
        /// Taken from the earlier run's journal, not run.
        reused: bool,
    },
    Skipped(String),
}

/// What a step that runs does: one run of these inputs, or one run per item.
enum Work {
    Once(crate::actions::Inputs),
    Each(Vec<serde_json::Value>),
}

async fn execute_step(
    shared: &Shared,
    step: &Step,
    steps_value: Value,
    call: &CallCtx,
    deps_reused: bool,
) -> Result<StepOutcome, Failure> {
    let eval = Eval::new(step, Mode::Run);
    let base = shared.globals.context(&steps_value, &[]);
    if eval.condition(&base)? == Some(step::Decision::Skip) {
        return Ok(StepOutcome::Skipped("`if` was false".into()));
    }
    // A step that runs once renders its inputs once: the journal's fingerprint and the
    // action read the same `Inputs`. (A run knows every list: `Later` is a dry-run's.)
    let work = match eval.iterations(&base)? {
        Iterations::Each(items) => Work::Each(items),
        Iterations::Once | Iterations::Later => Work::Once(eval.inputs(&base, false)?),
    };
    let log = match &shared.journal {
        None => StepLog::default(),
        Some(journal) => {
            let from = from_journal(shared, journal, eval, &base, &work, deps_reused);
            match from.await? {
                Ok(reused) => return Ok(reused),
                Err(log) => log,
            }
        }
    };
    let from = Journaled {
        log: &log,
        deps_reused,
    };
    match work {
        Work::Each(items) => for_each(shared, eval, &base, items, call, &from).await,
        Work::Once(inputs) => Ok(StepOutcome::Done {
            outputs: run_once(shared, eval, &base, inputs, call, &log).await?,
            iterations: vec![],
            reused: false,
        }),
    }
}

/// What the journal gives a step that runs.
struct Journaled<'a> {
    log: &'a StepLog,
    deps_reused: bool,
}

/// The step's result from the earlier run's journal (`Ok`), when it can stand for a run
/// now (see [`resume`]); else (`Err`) the step's view of the journal, its start recorded.
async fn from_journal(
    shared: &Shared,
    journal: &RunJournal,
    eval: Eval<'_>,
    base: &Value,
    work: &Work,
    deps_reused: bool,
) -> Result<Result<StepOutcome, StepLog>, Failure> {
    let step = eval.step;
    let (items, rendered, once) = match work {
        Work::Each(items) => {
            let mut rendered = Vec::with_capacity(items.len());
            for (index, item) in items.iter().enumerate() {
                let ctx = step::item_context(base, item, index);
                // An iteration whose inputs do not render fails when it runs, with its
                // index in the error, as without a journal.
                rendered.push(resume::iteration_inputs(eval.inputs(&ctx, false).ok()));
            }
            (Some(items.as_slice()), rendered, None)
        }
        Work::Once(inputs) => (None, vec![resume::inputs_json(inputs)], Some(inputs)),
    };
    let fingerprint = resume::step_fingerprint(&journal.fp, step, items, &rendered);
    let prior = journal.prior_step(&step.id, &fingerprint);
    if let Some(p) = prior
        .as_ref()
        .filter(|p| deps_reused && p.status == "succeeded")
    {
        if let (true, Some(outputs)) = (p.reusable, &p.outputs) {
            match resume::still_valid(step.action, once, outputs, &shared.cancel).await {
                None => {
                    return Ok(Ok(StepOutcome::Done {
                        outputs: outputs.clone(),
                        iterations: p
                            .iterations
                            .iter()
                            .map(|(&index, _)| IterationResult {
                                index,
                                status: StepStatus::Succeeded,
                                duration_ms: 0,
                                error: None,
                            })
                            .collect(),
                        reused: true,
                    }))
                }
                Some(why) => tracing::info!(step = %step.id, "running again: {why}"),
            }
        }
    }
    let (written, on_disk) = tokio::sync::oneshot::channel();
    journal.sink.send(Record::Started {
        step: step.id.clone(),
        inputs: fingerprint,
        written: Some(written),
    });
    // An action that changes the server sends nothing before the journal knows the step
    // started: a resume then looks for work the journal could not record (an error
    // writing it drops the sender: the run goes on without the guarantee rather than
    // hanging). One that only reads has nothing to look for: it does not wait for the disk.
    if step.action.spec().changes_server {
        let _ = on_disk.await;
    }
    Ok(Err(StepLog {
        step: step.id.clone(),
        prior,
        sink: journal.sink.clone(),
    }))
}

/// Runs one iteration per item, `max_parallel` at a time; the first failure stops new
/// iterations (those in flight finish).
async fn for_each(
    shared: &Shared,
    eval: Eval<'_>,
    base: &Value,
    items: Vec<serde_json::Value>,
    call: &CallCtx,
    journaled: &Journaled<'_>,
) -> Result<StepOutcome, Failure> {
    let parallel = eval.step.max_parallel.unwrap_or(shared.concurrency).max(1);
    let semaphore = Arc::new(Semaphore::new(parallel));
    let stop = CancellationToken::new();
    let futures = items.iter().enumerate().map(|(index, item)| {
        let (semaphore, stop) = (semaphore.clone(), stop.clone());
        async move {
            let _permit = semaphore.acquire().await.ok();
            if stop.is_cancelled() || shared.cancel.is_cancelled() {
                return None;
            }
            let started = Instant::now();
            let ctx = step::item_context(base, item, index);
            // Rendered once: the iteration's fingerprint and its action read the same.
            let inputs = eval.inputs(&ctx, false);
            let fingerprint = match (&shared.journal, &inputs) {
                (Some(j), Ok(inputs)) => Some(resume::iteration_fingerprint(
                    &j.fp,
                    item,
                    &resume::inputs_json(inputs),
                )),
                _ => None,
            };
            if let Some(output) = reused_iteration(journaled, index, fingerprint.as_deref()) {
                return Some((started.elapsed(), Ok(output)));
            }
            let r = match inputs {
                Ok(inputs) => {
                    let call = call.for_iteration(index);
                    run_once(shared, eval, &ctx, inputs, &call, journaled.log).await
                }
                Err(e) => Err(e.into()),
            };
            if let (Some(j), Some(fingerprint)) = (&shared.journal, fingerprint) {
                j.sink.send(Record::Iteration {
                    step: eval.step.id.clone(),
                    index,
                    inputs: fingerprint,
                    status: if r.is_ok() { "succeeded" } else { "failed" },
                    output: r.as_ref().map_or(serde_json::Value::Null, Clone::clone),
                });
            }
            if r.is_err() {
                stop.cancel();
            }
            Some((started.elapsed(), r))
        }
    });
    let finished = futures_util::future::join_all(futures).await;
    gather(finished)
}

/// The step's outcome from its iterations' (in order; `None`: never started): the first
/// failure, or every output with each iteration's result.
fn gather(
    finished: Vec<Option<(Duration, Result<serde_json::Value, Failure>)>>,
) -> Result<StepOutcome, Failure> {
    let count = finished.len();
    let mut results = Vec::with_capacity(count);
    let mut iterations = Vec::with_capacity(count);
    let mut first_error = None;
    for (index, entry) in finished.into_iter().enumerate() {
        let (status, took, error, output) = match entry {
            Some((took, Ok(out))) => (StepStatus::Succeeded, took, None, out),
            Some((took, Err(e))) => {
                let text = e.to_string();
                first_error.get_or_insert(Failure::Iteration {
                    index,
                    source: Box::new(e),
                });
                (
                    StepStatus::Failed,
                    took,
                    Some(text),
                    serde_json::Value::Null,
                )
            }
            None => (
                StepStatus::Skipped,
                Duration::ZERO,
                None,
                serde_json::Value::Null,
            ),
        };
        iterations.push(IterationResult {
            index,
            status,
            duration_ms: took.as_millis() as u64,
            error,
        });
        results.push(output);
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    Ok(StepOutcome::Done {
        outputs: json!({"results": results, "count": count}),
        iterations,
        reused: false,
    })
}

/// An iteration the earlier run finished with the same item and inputs (its step's
/// dependencies all reused), as it ended then.
fn reused_iteration(
    journaled: &Journaled<'_>,
    index: usize,
    fingerprint: Option<&str>,
) -> Option<serde_json::Value> {
    let prior = journaled.log.prior.as_ref()?.iterations.get(&index)?;
    (journaled.deps_reused
        && prior.status == "succeeded"
        && prior.reusable
        && prior.inputs.as_deref() == fingerprint?.into())
    .then(|| prior.output.clone())
}

/// Runs the action on inputs rendered in `ctx`, adds the step's `outputs`.
async fn run_once(
    shared: &Shared,
    eval: Eval<'_>,
    ctx: &Value,
    inputs: crate::actions::Inputs,
    call: &CallCtx,
    log: &StepLog,
) -> Result<serde_json::Value, Failure> {
    let late = LateInputs::new(ctx.clone());
    let progress = |label: &str, done: u64, total: Option<u64>| {
        let _ = shared.events.send(Event::Transfer {
            step: eval.step.id.clone(),
            label: label.to_string(),
            done,
            total,
        });
    };
    let run_ctx = RunCtx {
        client: &shared.client,
        call: call.clone(),
        renderer: &late,
        progress: &progress,
        journal: log,
    };
    let result = actions::run(&inputs, &run_ctx).await?;
    Ok(eval.outputs(ctx, result)?)
}
