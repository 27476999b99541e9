//! The plan: every step in the order a run would start it, with the requests it would
//! send, built by the same action code a run uses (`actions::plan`) from inputs rendered
//! by the same function (`execute::render_inputs_with`). Values known only after earlier
//! steps run are `<known after run: ...>` placeholders ([`preview`]). `run --dry-run`
//! prints the plan ([`text`], or the JSON document of `docs/dry-run.md`); a real run
//! builds it first as a preflight, so a missing upload file or a template error is exit
//! 2 before any request.
//!
//! Must not: open a network connection, or read anything but the files a step uploads.

mod preview;
mod text;

use std::collections::BTreeMap;

use minijinja::value::Value;
use serde::Serialize;

pub use crate::actions::Repeats;
use crate::actions::{self, is_placeholder};
use crate::api::request::{encode_query, segment};
use crate::api::{Body, Client, HttpRequest, Part};
use crate::execute::context::{self, Globals};
use crate::graph::Graph;
use crate::pipeline::model::{format_duration, parse_duration, Pipeline, Step, TValue};
use crate::template::{self, Unknown};
pub use text::to_text;

/// The JSON plan document (`run --dry-run --format json`). Its shape is a documented,
/// stable interface (`docs/dry-run.md`): add fields, never rename or drop them.
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
#[derive(Debug)]
pub struct PlanError {
    pub step: String,
    pub line: u32,
    pub message: String,
}

fn planned(req: &HttpRequest, client: &Client, placeholders: &[String]) -> PlannedRequest {
    let headers = client
        .display_headers(&req.url, &req.body)
        .into_iter()
        .collect();
    let (body, multipart) = match &req.body {
        Body::None => (None, None),
        Body::Json(v) => (Some(v.clone()), None),
        Body::Multipart(parts) => (None, Some(parts.iter().map(planned_part).collect())),
    };
    PlannedRequest {
        method: req.method.as_str(),
        url: readable_url(&req.url, placeholders),
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
        } => {
            let file = path.display().to_string();
            let unknown = is_placeholder(&serde_json::Value::String(file.clone()));
            PlannedPart::File {
                field: field.clone(),
                file,
                file_name: file_name.clone(),
                size: (!unknown).then_some(*size),
                content_type: content_type.clone(),
            }
        }
    }
}

/// Builds the plan of a whole pipeline.
pub fn build(
    p: &Pipeline,
    globals: &Globals,
    client: &Client,
    concurrency: usize,
) -> Result<Plan, PlanError> {
    let graph = Graph::of(p);
    let steps_map: BTreeMap<String, Value> = p
        .steps
        .iter()
        .map(|s| (s.id.clone(), context::unknown_entry(&s.id)))
        .collect();
    let base = globals.context(&Value::from(steps_map), &[]);
    let mut skips = Skips {
        known: vec![None; p.steps.len()],
        maybe: vec![false; p.steps.len()],
    };
    let mut steps = Vec::with_capacity(p.steps.len());
    for &i in &graph.order {
        let step = &p.steps[i];
        let fail = |message: String| PlanError {
            step: step.id.clone(),
            line: step.pos.line,
            message,
        };
        let condition = condition(step, &base).map_err(fail)?;
        let (skipped, mut notes) = skips.decide(p, step, condition.as_ref());
        let (for_each, iterations, unknowns) =
            iterations(step, &base, concurrency).map_err(fail)?;
        let mut requests = Vec::new();
        let mut repeats = None;
        if skipped.is_none() {
            for ctx in &iterations {
                let inputs = crate::execute::render_inputs_with(step, ctx, true, &|v, ctx| {
                    preview::value(v, ctx, unknowns)
                })
                .map_err(fail)?;
                let action_plan =
                    actions::plan(&inputs, client).map_err(|e| fail(e.to_string()))?;
                let shown = placeholders(&serde_json::Value::Object(inputs.values));
                requests.extend(
                    action_plan
                        .requests
                        .iter()
                        .map(|r| planned(r, client, &shown)),
                );
                repeats = repeats.or(action_plan.repeats);
                for note in action_plan.notes {
                    if !notes.contains(&note) {
                        notes.push(note);
                    }
                }
            }
        }
        notes.extend(step_notes(step, repeats.as_ref()));
        steps.push(PlannedStep {
            id: step.id.clone(),
            name: step.name.clone(),
            action: step.action.name(),
            needs: step.deps.iter().map(|&d| p.steps[d].id.clone()).collect(),
            condition,
            for_each,
            retry: retry(step, &requests, client),
            skipped,
            requests,
            repeats,
            timeout: step.timeout.map(format_duration),
            notes,
            line: step.pos.line,
        });
    }
    Ok(Plan {
        pipeline: p.name.clone(),
        steps,
    })
}

/// Which steps will not run (known now), and which may be skipped at run time, by
/// step index, filled in the order steps are planned.
struct Skips {
    known: Vec<Option<String>>,
    maybe: Vec<bool>,
}

impl Skips {
    /// As the executor decides: a step is skipped when its `if` is false, or when a step
    /// it depends on is skipped and it does not test that step's status. Returns why the
    /// step will not run (if known now), and notes about skips decided at run time.
    fn decide(
        &mut self,
        p: &Pipeline,
        step: &Step,
        condition: Option<&Condition>,
    ) -> (Option<String>, Vec<String>) {
        let i = step.index;
        let mut skip = match condition {
            Some(Condition {
                value: Some(false), ..
            }) => Some("`if` is false".to_string()),
            _ => None,
        };
        let mut notes = Vec::new();
        self.maybe[i] = matches!(condition, Some(Condition { value: None, .. }));
        for &d in &step.deps {
            let dep = &p.steps[d].id;
            if step.tests_status_of(d) {
                continue;
            }
            if self.known[d].is_some() {
                skip.get_or_insert_with(|| format!("`{dep}`, which it depends on, will not run"));
            } else if self.maybe[d] {
                notes.push(format!("skipped if `{dep}` is skipped at run time"));
                self.maybe[i] = true;
            }
        }
        self.known[i] = skip.clone();
        (skip, notes)
    }
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

/// The `<known after run: ...>` placeholders in rendered inputs. One ends at the last
/// `>` before the next placeholder (its expression may hold a `>` itself).
fn placeholders(v: &serde_json::Value) -> Vec<String> {
    const START: &str = "<known after run:";
    let mut out = Vec::new();
    match v {
        serde_json::Value::String(s) => {
            let mut rest = s.as_str();
            while let Some(start) = rest.find(START) {
                let after = &rest[start..];
                let next = after[1..].find(START).map_or(after.len(), |n| n + 1);
                let end = after[..next].rfind('>').map_or(next, |e| e + 1);
                out.push(after[..end].to_string());
                rest = &after[end..];
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| out.extend(placeholders(i))),
        serde_json::Value::Object(map) => map.values().for_each(|i| out.extend(placeholders(i))),
        _ => {}
    }
    out
}

/// The URL with its placeholders readable: path segments and query values are
/// percent-encoded when a request is built, placeholders included.
fn readable_url(url: &str, placeholders: &[String]) -> String {
    let mut url = url.to_string();
    for p in placeholders {
        for encoded in [segment(p), encode_query(p)] {
            if encoded != *p {
                url = url.replace(&encoded, p);
            }
        }
    }
    url
}

/// The step's `if`: decided now, or at run time when it reads earlier steps.
fn condition(step: &Step, base: &Value) -> Result<Option<Condition>, String> {
    let Some(cond) = &step.condition else {
        return Ok(None);
    };
    let value = if context::depends_on_steps(cond) {
        None
    } else {
        let v = template::render_value(cond, base).map_err(|e| format!("`if`: {e}"))?;
        Some(actions::request::truthy(&v))
    };
    let template = match source(cond) {
        serde_json::Value::String(s) => s,
        other => other.to_string(),
    };
    Ok(Some(Condition { template, value }))
}

/// The contexts the step's requests are planned in: one per element of a known
/// `for_each` list; one with `item`/`index` placeholders when the list is not known yet.
fn iterations(
    step: &Step,
    base: &Value,
    concurrency: usize,
) -> Result<(Option<ForEach>, Vec<Value>, preview::Unknowns), String> {
    let known = preview::Unknowns { item: false };
    let Some(fe) = &step.for_each else {
        return Ok((None, vec![base.clone()], known));
    };
    let max_parallel = step.max_parallel.unwrap_or(concurrency);
    if context::depends_on_steps(fe) {
        let ctx = minijinja::context! {
            item => Unknown::value("item"),
            index => Unknown::value("index"),
            ..base.clone()
        };
        let for_each = ForEach {
            over: source(fe),
            count: None,
            max_parallel,
        };
        return Ok((Some(for_each), vec![ctx], preview::Unknowns { item: true }));
    }
    let list = template::render_value(fe, base).map_err(|e| format!("`for_each`: {e}"))?;
    let serde_json::Value::Array(items) = list else {
        return Err(format!(
            "`for_each` must yield a list, got {}",
            crate::api::shapes::shorten(&list.to_string(), 80)
        ));
    };
    let contexts = items
        .iter()
        .enumerate()
        .map(|(index, item)| {
            minijinja::context! { item => template::from_json(item), index => index, ..base.clone() }
        })
        .collect();
    let for_each = ForEach {
        over: source(fe),
        count: Some(items.len()),
        max_parallel,
    };
    Ok((Some(for_each), contexts, known))
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
fn retry(step: &Step, requests: &[PlannedRequest], client: &Client) -> Option<RetryDesc> {
    let first = requests.first()?;
    let safe = requests.iter().all(|r| matches!(r.method, "GET" | "HEAD"));
    let on = if safe {
        "408, 429, 5xx and connection errors".to_string()
    } else {
        format!(
            "429 and connections that failed before the request was sent (a {} is never sent twice)",
            first.method
        )
    };
    Some(RetryDesc {
        max_attempts: step.retry.max_attempts,
        initial_interval: format_duration(step.retry.initial_interval),
        max_interval: format_duration(step.retry.max_interval),
        on,
        retry_after_max: format_duration(client.config().retry_after_cap),
    })
}
