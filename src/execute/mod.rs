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
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::actions::{self, ActionError, RunCtx};
use crate::api::{CallCtx, CallEvent, Client};
use crate::graph::Graph;
use crate::journal::resume::{self, RunJournal};
use crate::journal::{MaskedOutputs, Record, StepLog};
use crate::outputs::Outputs;
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
    pub outputs: Outputs,
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
    /// What the reports read besides what templates read.
    pub keep: Keep,
}

/// What the reports asked for read of every step. Off, a `for_each` step keeps only its
/// iterations' count (and their outputs when a template reads `outputs.results`): its
/// memory stays flat however many iterations it runs.
#[derive(Clone, Copy, Debug, Default)]
pub struct Keep {
    /// Every step's outputs (the JSON report shows them).
    pub outputs: bool,
    /// Each `for_each` iteration's record (the JSON, JUnit and HTML reports list them).
    pub iterations: bool,
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
                keep: settings.keep,
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
            r.outputs.template()
        } else {
            Value::from(())
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
    keep: Keep,
}

impl Shared {
    /// Does this `for_each` step keep its iterations' outputs (`outputs.results`)?
    fn keeps_results(&self, step: &Step) -> bool {
        step.results_read || self.keep.outputs
    }
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
        outputs: Outputs::default(),
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
        outputs: Outputs::default(),
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
        outputs: Outputs::default(),
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
                note: if crate::actions::may_change_server(step) {
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
        outputs: Outputs,
        iterations: Vec<IterationResult>,
        /// Taken from the earlier run's journal, not run.
        reused: bool,
    },
    Skipped(String),
}

/// What a step that runs does: one run of these inputs, or one run per item.
enum Work {
    Once(crate::actions::Inputs),
    Each(step::Items),
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
    let work = match eval.items(&base)? {
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
    // The step's fingerprint covers the whole list, hashed element by element as it is
    // read (an element whose inputs do not render fails when it runs, with its index in
    // the error, as without a journal).
    let (fingerprint, once) = match work {
        Work::Each(items) => {
            let pieces = items.iter().enumerate().map(|(index, item)| {
                let ctx = step::item_context(base, &item, index);
                let inputs = resume::iteration_inputs(eval.inputs(&ctx, false).ok());
                resume::each_piece(item, inputs)
            });
            (resume::step_fingerprint(&journal.fp, step, pieces), None)
        }
        Work::Once(inputs) => (
            resume::step_fingerprint(&journal.fp, step, [resume::inputs_json(inputs)]),
            Some(inputs),
        ),
    };
    let prior = journal.prior_step(&step.id, &fingerprint);
    if let Some(p) = prior
        .as_ref()
        .filter(|p| deps_reused && p.status == "succeeded")
    {
        let lacks_results = p
            .outputs
            .as_ref()
            .is_some_and(|o| resume::lacks_results(step, shared.keeps_results(step), o));
        if let (true, false, Some(outputs)) = (p.reusable, lacks_results, &p.outputs) {
            match resume::still_valid(step.action, once, outputs, &shared.cancel).await {
                None => {
                    return Ok(Ok(StepOutcome::Done {
                        outputs: outputs.clone().into(),
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
    if crate::actions::may_change_server(step) {
        let _ = on_disk.await;
    }
    Ok(Err(StepLog {
        step: step.id.clone(),
        prior,
        sink: journal.sink.clone(),
    }))
}

/// Runs one iteration per item, `max_parallel` at a time, the first failure stopping new
/// iterations (those in flight finish). An iteration's future is made when it starts and
/// its end is gathered when it ends: however long the list, at most `max_parallel`
/// iterations exist at once, and what is kept of the ended ones is what something reads.
async fn for_each(
    shared: &Shared,
    eval: Eval<'_>,
    base: &Value,
    items: step::Items,
    call: &CallCtx,
    journaled: &Journaled<'_>,
) -> Result<StepOutcome, Failure> {
    use futures_util::StreamExt as _;
    let parallel = eval.step.max_parallel.unwrap_or(shared.concurrency).max(1);
    let stop = CancellationToken::new();
    let keep_results = shared.keeps_results(eval.step);
    let mut gathered = Gathered::new(items.len(), keep_results, shared.keep.iterations);
    let each = Each {
        shared,
        eval,
        base,
        call,
        journaled,
        stop: &stop,
        keep_results,
    };
    let mut next = items.iter().enumerate();
    let mut running = futures_util::stream::FuturesUnordered::new();
    loop {
        while running.len() < parallel {
            let Some((index, item)) = next.next() else {
                break;
            };
            running.push(each.run(index, item));
        }
        let Some((index, end)) = running.next().await else {
            break;
        };
        gathered.add(index, end);
    }
    gathered.outcome()
}

/// What every iteration of one `for_each` step shares.
struct Each<'a> {
    shared: &'a Shared,
    eval: Eval<'a>,
    base: &'a Value,
    call: &'a CallCtx,
    journaled: &'a Journaled<'a>,
    /// Cancelled by the first failure: no new iteration starts.
    stop: &'a CancellationToken,
    keep_results: bool,
}

/// How one iteration ended: `None` when it never started.
type IterationEnd = Option<(Duration, Result<serde_json::Value, Failure>)>;

impl Each<'_> {
    /// One iteration; its output is `Null` when the step does not keep its results.
    async fn run(&self, index: usize, item: serde_json::Value) -> (usize, IterationEnd) {
        let (shared, eval) = (self.shared, self.eval);
        if self.stop.is_cancelled() || shared.cancel.is_cancelled() {
            return (index, None);
        }
        let started = Instant::now();
        let ctx = step::item_context(self.base, &item, index);
        // Rendered once: the iteration's fingerprint and its action read the same.
        let inputs = eval.inputs(&ctx, false);
        let fingerprint = match (&shared.journal, &inputs) {
            (Some(j), Ok(inputs)) => Some(resume::iteration_fingerprint(
                &j.fp,
                &item,
                &resume::inputs_json(inputs),
            )),
            _ => None,
        };
        if let Some(output) = reused_iteration(self.journaled, index, fingerprint.as_deref()) {
            return (index, Some((started.elapsed(), Ok(output))));
        }
        let mut r = match inputs {
            Ok(inputs) => {
                let call = self.call.for_iteration(index);
                run_once(shared, eval, &ctx, inputs, &call, self.journaled.log)
                    .await
                    .map(Outputs::into_value)
            }
            Err(e) => Err(e.into()),
        };
        if let (Some(j), Some(fingerprint)) = (&shared.journal, fingerprint) {
            // An output the step does not keep is handed over, not copied.
            let output = match &mut r {
                Ok(out) if self.keep_results => out.clone(),
                Ok(out) => std::mem::take(out),
                Err(_) => serde_json::Value::Null,
            };
            j.sink.send(Record::Iteration {
                step: eval.step.id.clone(),
                index,
                inputs: fingerprint,
                status: if r.is_ok() { "succeeded" } else { "failed" },
                output,
            });
        }
        if r.is_err() {
            self.stop.cancel();
        }
        (index, Some((started.elapsed(), r)))
    }
}

/// The ends of a step's iterations as they come (in any order): their count, the failure
/// of the first that failed, and, when something reads them, each one's output (in order)
/// and record.
struct Gathered {
    count: usize,
    /// Every iteration's output by index (`Null` for one that failed or never ran).
    results: Option<Vec<serde_json::Value>>,
    /// Every iteration's record by index (skipped until it ends).
    records: Option<Vec<IterationResult>>,
    first_error: Option<(usize, Failure)>,
}

impl Gathered {
    fn new(count: usize, keep_results: bool, keep_records: bool) -> Self {
        Gathered {
            count,
            results: keep_results.then(|| vec![serde_json::Value::Null; count]),
            records: keep_records.then(|| {
                (0..count)
                    .map(|index| IterationResult {
                        index,
                        status: StepStatus::Skipped,
                        duration_ms: 0,
                        error: None,
                    })
                    .collect()
            }),
            first_error: None,
        }
    }

    fn add(&mut self, index: usize, end: IterationEnd) {
        let Some((took, r)) = end else { return };
        let (status, error) = match r {
            Ok(out) => {
                if let Some(slot) = self.results.as_mut().and_then(|r| r.get_mut(index)) {
                    *slot = out;
                }
                (StepStatus::Succeeded, None)
            }
            Err(e) => {
                let text = self.records.is_some().then(|| e.to_string());
                if self
                    .first_error
                    .as_ref()
                    .is_none_or(|(first, _)| index < *first)
                {
                    self.first_error = Some((index, e));
                }
                (StepStatus::Failed, text)
            }
        };
        if let Some(record) = self.records.as_mut().and_then(|r| r.get_mut(index)) {
            record.status = status;
            record.duration_ms = took.as_millis() as u64;
            record.error = error;
        }
    }

    /// The step's outcome: the first failure, or the outputs (`results` only when kept).
    fn outcome(self) -> Result<StepOutcome, Failure> {
        if let Some((index, e)) = self.first_error {
            return Err(Failure::Iteration {
                index,
                source: Box::new(e),
            });
        }
        let mut outputs = serde_json::Map::new();
        if let Some(results) = self.results {
            outputs.insert("results".into(), serde_json::Value::Array(results));
        }
        outputs.insert("count".into(), self.count.into());
        Ok(StepOutcome::Done {
            outputs: serde_json::Value::Object(outputs).into(),
            iterations: self.records.unwrap_or_default(),
            reused: false,
        })
    }
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
) -> Result<Outputs, Failure> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn end(ms: u64, r: Result<serde_json::Value, Failure>) -> IterationEnd {
        Some((Duration::from_millis(ms), r))
    }

    #[test]
    fn iterations_ending_in_any_order_are_gathered_in_order_and_only_as_far_as_kept() {
        let ends = || {
            [
                (2, end(3, Ok(json!("c")))),
                (0, end(1, Ok(json!("a")))),
                (1, end(2, Ok(json!("b")))),
            ]
        };
        let mut kept = Gathered::new(3, true, true);
        let mut flat = Gathered::new(3, false, false);
        for (index, e) in ends() {
            kept.add(index, e);
        }
        for (index, e) in ends() {
            flat.add(index, e);
        }
        let Ok(StepOutcome::Done {
            outputs,
            iterations,
            ..
        }) = kept.outcome()
        else {
            panic!("succeeded")
        };
        assert_eq!(outputs, json!({"results": ["a", "b", "c"], "count": 3}));
        let took: Vec<u64> = iterations.iter().map(|i| i.duration_ms).collect();
        assert_eq!(took, [1, 2, 3]);
        let Ok(StepOutcome::Done {
            outputs,
            iterations,
            ..
        }) = flat.outcome()
        else {
            panic!("succeeded")
        };
        assert_eq!(outputs, json!({"count": 3}));
        assert!(iterations.is_empty());
    }

    #[test]
    fn the_failure_of_the_first_iteration_that_failed_is_the_steps() {
        let failure = |text: &str| Err(Failure::Step(StepError::NotAList(text.into())));
        let mut g = Gathered::new(4, false, true);
        g.add(3, end(1, failure("third")));
        g.add(1, end(1, failure("first")));
        g.add(0, end(1, Ok(json!(0))));
        g.add(2, None);
        let Err(Failure::Iteration { index, source }) = g.outcome() else {
            panic!("failed")
        };
        assert_eq!(index, 1);
        assert!(source.to_string().contains("first"), "{source}");
    }
}
