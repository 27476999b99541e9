//! The plan: every step in the order a run would start it, with the requests it would
//! send. It is graph order × the step layer's preview evaluation ([`step::Eval`] in
//! [`Mode::Preview`]) × each action's plan half over the pure [`Endpoint`]: the same
//! code a run uses, so a dry-run cannot drift from a run. Values known only after
//! earlier steps run are typed [`Later`](crate::template::Later) parts, shown as
//! `<known after run: ...>`. `run --dry-run` prints the plan ([`text`], or the JSON
//! document of `docs/dry-run.md`); a real run builds it first as a preflight, so a
//! missing upload file or a template error is exit 2 before any request.
//!
//! Takes: a checked pipeline, its graph, the globals, an [`Endpoint`]. Gives: [`Plan`].
//! Must not: open a network connection, or read anything but the files a step uploads.

pub mod diff;
mod text;

use std::collections::BTreeMap;

use minijinja::value::Value;
use serde::Serialize;

use crate::actions;
pub use crate::actions::Repeats;
use crate::api::{Body, Endpoint, HttpRequest, Part};
use crate::graph::Graph;
use crate::pipeline::model::{format_duration, parse_duration, Pipeline, Step, TValue};
use crate::step::{self, unknown_entry, DepState, Eval, Globals, Iterations, Mode, SkipCause};
use crate::template;
pub use text::to_text;

#[derive(Debug, Serialize)]
pub struct Plan {
    pub pipeline: String,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub id: String,
    /// The step's display name, when it has one.
    pub name: Option<String>,
    pub action: &'static str,
    /// Every step this one waits for (`needs` and the steps its templates read).
    pub needs: Vec<String>,
    #[serde(rename = "if")]
    pub condition: Option<Condition>,
    pub for_each: Option<ForEach>,
    /// Why the step will not run, when that is known now (its `if` is false, or a
    /// step it depends on will not run).
    pub skipped: Option<String>,
    pub requests: Vec<PlannedRequest>,
    /// How each request repeats (pagination, polling); null when it is sent once.
    pub repeats: Option<Repeats>,
    /// Which failures are retried and how; null when the step sends nothing.
    pub retry: Option<RetryDesc>,
    /// The step's overall time limit.
    pub timeout: Option<String>,
    /// Anything else worth reading before a run, in words.
    pub notes: Vec<String>,
    #[serde(skip)]
    pub line: u32,
}

#[derive(Debug, Serialize)]
pub struct Condition {
    /// The `if` as written.
    pub template: String,
    /// `true`/`false` when it can be decided now, null when it depends on earlier steps.
    pub value: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ForEach {
    /// What the step iterates over: the template as written, or the list written in
    /// the file.
    pub over: serde_json::Value,
    /// The number of iterations when the list is known now; null when it is known only
    /// after the run (the requests are then shown once, with `item` placeholders).
    pub count: Option<usize>,
    pub max_parallel: usize,
}

#[derive(Debug, Serialize)]
pub struct RetryDesc {
    pub max_attempts: u32,
    pub initial_interval: String,
    pub max_interval: String,
    /// The failures that are retried, in words (it depends on the method).
    pub on: String,
    /// A longer `Retry-After` fails the step at once.
    pub retry_after_max: String,
}

#[derive(Debug, Serialize)]
pub struct PlannedRequest {
    pub method: &'static str,
    /// The full URL, query included.
    pub url: String,
    pub headers: BTreeMap<String, String>,
    /// The JSON body exactly as it would be sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Vec<PlannedPart>>,
}

/// One multipart part: a text field, or a file streamed from disk.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum PlannedPart {
    Text {
        field: String,
        value: String,
    },
    File {
        field: String,
        /// The local path the file is read from.
        file: String,
        file_name: String,
        /// Bytes; null when the file is known only after the run.
        size: Option<u64>,
        content_type: String,
    },
}

/// Why a plan cannot be built: exit 2, as a run would.
#[derive(Debug, thiserror::Error)]
#[error("step `{step}` (line {line}): {message}")]
pub struct PlanError {
    pub step: String,
    pub line: u32,
    pub message: String,
}

fn planned(req: &HttpRequest, endpoint: &Endpoint) -> PlannedRequest {
    let headers = endpoint.display_headers(req).into_iter().collect();
    let (body, multipart) = match &req.body {
        Body::None => (None, None),
        Body::Json(v) => (Some(v.clone()), None),
        Body::Multipart(parts) => (None, Some(parts.iter().map(planned_part).collect())),
        Body::File {
            path, offset, len, ..
        } => (
            None,
            Some(vec![PlannedPart::File {
                field: format!("(raw body, from byte {offset})"),
                file: path.display().to_string(),
                file_name: path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default(),
                size: *len,
                content_type: "application/octet-stream".into(),
            }]),
        ),
    };
    PlannedRequest {
        method: req.method.as_str(),
        url: req.url.clone(),
        headers,
        body,
        multipart,
    }
}

fn planned_part(part: &Part) -> PlannedPart {
    match part {
        Part::Text { field, value } => PlannedPart::Text {
            field: field.clone(),
            value: value.clone(),
        },
        Part::File {
            field,
            path,
            file_name,
            size,
            content_type,
        } => PlannedPart::File {
            field: field.clone(),
            file: path.display().to_string(),
            file_name: file_name.clone(),
            size: *size,
            content_type: content_type.clone(),
        },
    }
}

/// What stops one step from being planned.
#[derive(Debug, thiserror::Error)]
enum Problem {
    #[error(transparent)]
    Step(#[from] step::StepError),
    #[error(transparent)]
    Action(#[from] actions::ActionError),
}

/// Builds the plan of a whole pipeline, in the order of `graph`.
pub fn build(
    p: &Pipeline,
    graph: &Graph,
    globals: &Globals,
    endpoint: &Endpoint,
    concurrency: usize,
) -> Result<Plan, PlanError> {
    let at = At::new(p, globals, endpoint, concurrency, Requests::All);
    collect(p, graph, &at)
}

/// The plan as text ([`to_text`] of [`build`]), each step written as soon as it is planned
/// and then dropped: a dry-run of 50,000 steps holds its text, not every planned request
/// as well (they are several times its size, and freeing them all at the end took longer
/// than printing). Fails as [`build`] does, before any text is given.
pub fn build_text(
    p: &Pipeline,
    graph: &Graph,
    globals: &Globals,
    endpoint: &Endpoint,
    concurrency: usize,
) -> Result<String, PlanError> {
    let mut text = text::Text::default();
    let at = At::new(p, globals, endpoint, concurrency, Requests::All);
    plan_all(p, graph, &at, |s| text.step(&s))?;
    Ok(text.finish(&p.name))
}

/// The preflight of a real run: every step planned as for [`build`] (every iteration's
/// inputs rendered, every upload file found), with the same errors, but the requests of
/// a `for_each` step beyond its first not kept: a run over 100,000 items does not hold
/// 100,000 planned requests.
pub fn preflight(
    p: &Pipeline,
    graph: &Graph,
    globals: &Globals,
    endpoint: &Endpoint,
    concurrency: usize,
) -> Result<Plan, PlanError> {
    let at = At::new(p, globals, endpoint, concurrency, Requests::First);
    collect(p, graph, &at)
}

/// Which planned requests a step keeps.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Requests {
    All,
    /// Those of the first iteration only (the others are checked, then dropped).
    First,
}

/// Every step planned, kept in a [`Plan`].
fn collect(p: &Pipeline, graph: &Graph, at: &At) -> Result<Plan, PlanError> {
    let mut steps = Vec::with_capacity(p.steps.len());
    plan_all(p, graph, at, |s| steps.push(s))?;
    Ok(Plan {
        pipeline: p.name.clone(),
        steps,
    })
}

/// Plans every step in the order of `graph`, handing each to `each` as it is planned.
fn plan_all(
    p: &Pipeline,
    graph: &Graph,
    at: &At,
    mut each: impl FnMut(PlannedStep),
) -> Result<(), PlanError> {
    let mut states = vec![DepState::Pending; p.steps.len()];
    for &i in &graph.order {
        let step = &p.steps[i];
        let planned = plan_step(p, step, at, &mut states).map_err(|e| PlanError {
            step: step.id.clone(),
            line: step.pos.line,
            message: e.to_string(),
        })?;
        each(planned);
    }
    Ok(())
}

/// Where every step is planned: the context, the endpoint, what is kept.
struct At<'a> {
    base: Value,
    endpoint: &'a Endpoint,
    concurrency: usize,
    keep: Requests,
}

impl<'a> At<'a> {
    fn new(
        p: &Pipeline,
        globals: &Globals,
        endpoint: &'a Endpoint,
        concurrency: usize,
        keep: Requests,
    ) -> Self {
        let steps_map: BTreeMap<String, Value> = p
            .steps
            .iter()
            .map(|s| (s.id.clone(), unknown_entry(&s.id)))
            .collect();
        At {
            base: globals.context(&Value::from(steps_map), &[]),
            endpoint,
            concurrency,
            keep,
        }
    }
}

/// One step of the plan; records what is known of its running in `states`.
fn plan_step(
    p: &Pipeline,
    step: &Step,
    at: &At,
    states: &mut [DepState],
) -> Result<PlannedStep, Problem> {
    let (base, endpoint, concurrency) = (&at.base, at.endpoint, at.concurrency);
    let eval = Eval::new(step, Mode::Preview);
    let decision = eval.condition(base)?;
    let condition = step.condition.as_ref().map(|c| Condition {
        template: match source(c) {
            serde_json::Value::String(s) => s,
            other => other.to_string(),
        },
        value: match decision {
            Some(step::Decision::Run) => Some(true),
            Some(step::Decision::Skip) => Some(false),
            _ => None,
        },
    });
    let (skipped, mut notes) = skips(p, step, decision, states);
    let iterations = eval.items(base)?;
    let for_each = step.for_each.as_ref().map(|fe| ForEach {
        over: source(fe),
        count: match &iterations {
            Iterations::Each(items) => Some(items.len()),
            _ => None,
        },
        max_parallel: step.max_parallel.unwrap_or(concurrency),
    });
    let mut requests = Vec::new();
    let mut repeats = None;
    if skipped.is_none() {
        // Each iteration's context is made when it is planned, not all of them first.
        let contexts: Box<dyn Iterator<Item = (Value, bool)>> = match &iterations {
            Iterations::Once => Box::new(std::iter::once((base.clone(), false))),
            Iterations::Each(items) => Box::new(
                items
                    .iter()
                    .enumerate()
                    .map(|(index, item)| (step::item_context(base, &item, index), false)),
            ),
            Iterations::Later => Box::new(std::iter::once((step::later_item_context(base), true))),
        };
        for (n, (ctx, item_later)) in contexts.enumerate() {
            let inputs = eval.inputs(&ctx, item_later)?;
            let action_plan = actions::plan(&inputs, endpoint)?;
            if n == 0 || at.keep == Requests::All {
                requests.extend(action_plan.requests.iter().map(|r| planned(r, endpoint)));
            }
            repeats = repeats.or(action_plan.repeats);
            for note in action_plan.notes {
                if !notes.contains(&note) {
                    notes.push(note);
                }
            }
        }
    }
    notes.extend(step_notes(step, repeats.as_ref()));
    Ok(PlannedStep {
        id: step.id.clone(),
        name: step.name.clone(),
        action: step.action.name(),
        needs: step.deps.iter().map(|&d| p.steps[d].id.clone()).collect(),
        condition,
        for_each,
        retry: retry(step, &requests, endpoint),
        skipped,
        requests,
        repeats,
        timeout: step.timeout.map(format_duration),
        notes,
        line: step.pos.line,
    })
}

/// As the scheduler decides ([`step::skip_cause`]): why the step will not run, if that
/// is known now, and notes about skips decided at run time. Records the step's state.
fn skips(
    p: &Pipeline,
    step: &Step,
    decision: Option<step::Decision>,
    states: &mut [DepState],
) -> (Option<String>, Vec<String>) {
    let state = |d: usize| states[d];
    let mut skip = match decision {
        Some(step::Decision::Skip) => Some("`if` is false".to_string()),
        _ => None,
    };
    if let Some(SkipCause::Skipped(dep) | SkipCause::Failed(dep)) = step::skip_cause(p, step, state)
    {
        skip.get_or_insert_with(|| format!("`{}`, which it depends on, will not run", dep.id));
    }
    let maybe = step::maybe_skipped_by(p, step, state);
    let notes: Vec<String> = maybe
        .iter()
        .map(|dep| format!("skipped if `{}` is skipped at run time", dep.id))
        .collect();
    states[step.index] = if skip.is_some() {
        DepState::Skipped
    } else if decision == Some(step::Decision::Undecided) || !maybe.is_empty() {
        DepState::MaybeSkipped
    } else {
        DepState::Pending
    };
    (skip, notes)
}

/// Notes that follow from the step's own keys.
fn step_notes(step: &Step, repeats: Option<&Repeats>) -> Vec<String> {
    let mut notes = Vec::new();
    if let (Some(Repeats::Poll { timeout, .. }), Some(limit)) = (repeats, step.timeout) {
        if parse_duration(timeout).is_some_and(|t| t > limit) {
            notes.push(format!(
                "the step's timeout ({}) ends the wait before the poll's own timeout ({timeout})",
                format_duration(limit)
            ));
        }
    }
    if step.continue_on_error {
        notes.push("a failure of this step does not fail the run (continue_on_error)".into());
    }
    notes
}

/// A value as written in the file: templates as their source text.
fn source(value: &TValue) -> serde_json::Value {
    match value {
        TValue::Tmpl(t) => serde_json::Value::String(t.source.trim().to_string()),
        TValue::List(items) => serde_json::Value::Array(items.iter().map(source).collect()),
        TValue::Map(map) => {
            serde_json::Value::Object(map.iter().map(|(k, v)| (k.clone(), source(v))).collect())
        }
        other => template::render_value(other, &Value::UNDEFINED).unwrap_or_default(),
    }
}

/// The retry policy as it applies to the step's requests (SPEC §4).
fn retry(step: &Step, requests: &[PlannedRequest], endpoint: &Endpoint) -> Option<RetryDesc> {
    requests.first()?;
    let unsafe_method = requests
        .iter()
        .map(|r| r.method)
        .find(|m| !matches!(*m, "GET" | "HEAD"));
    let on = match unsafe_method {
        None => "408, 429, 5xx and connection errors".to_string(),
        Some(method) => format!(
            "429 and connections that failed before the request was sent (a {method} is never sent twice)"
        ),
    };
    Some(RetryDesc {
        max_attempts: step.retry.max_attempts,
        initial_interval: format_duration(step.retry.initial_interval),
        max_interval: format_duration(step.retry.max_interval),
        on,
        retry_after_max: format_duration(endpoint.retry_after_cap),
    })
}
