//! The plan: every step in the order a run would start it, with the requests it would
//! send, built by the same action code a run uses (`actions::plan`). Values known only
//! after earlier steps run are `<known after run: ...>` placeholders. `run --dry-run`
//! prints the plan; a real run builds it first as a preflight, so a missing upload file
//! or a template error is exit 2 before any request.
//!
//! Must not: open a network connection.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use minijinja::value::Value;
use serde::Serialize;

use crate::actions::{self, Inputs};
use crate::api::{Body, Client, HttpRequest, Part};
use crate::execute::context::{self, Globals};
use crate::graph::Graph;
use crate::pipeline::model::{format_duration, Pipeline, Step, TValue};
use crate::template::{self, Unknown};

#[derive(Debug, Serialize)]
pub struct Plan {
    pub pipeline: String,
    pub steps: Vec<PlannedStep>,
}

#[derive(Debug, Serialize)]
pub struct PlannedStep {
    pub id: String,
    pub action: &'static str,
    pub needs: Vec<String>,
    /// The condition, and whether it is known now.
    #[serde(rename = "if")]
    pub condition: Option<Condition>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub for_each: Option<ForEach>,
    pub requests: Vec<PlannedRequest>,
    /// Pagination, polling, retries, in words.
    pub repeats: Vec<String>,
    pub retry: RetryDesc,
    #[serde(skip)]
    pub line: u32,
}

#[derive(Debug, Serialize)]
pub struct Condition {
    pub template: String,
    /// `true`/`false` when it can be decided now, null when it depends on earlier steps.
    pub value: Option<bool>,
}

#[derive(Debug, Serialize)]
pub struct ForEach {
    pub template: String,
    /// The number of iterations when the list is known now.
    pub count: Option<usize>,
    pub max_parallel: usize,
}

#[derive(Debug, Serialize)]
pub struct RetryDesc {
    pub max_attempts: u32,
    pub initial_interval: String,
    pub max_interval: String,
}

#[derive(Debug, Serialize)]
pub struct PlannedRequest {
    pub method: &'static str,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multipart: Option<Vec<Part>>,
}

/// Why a plan cannot be built: exit 2, as a run would.
#[derive(Debug)]
pub struct PlanError {
    pub step: String,
    pub line: u32,
    pub message: String,
}

fn planned(req: &HttpRequest, client: &Client) -> PlannedRequest {
    let headers = client
        .display_headers(&req.url, &req.body)
        .into_iter()
        .collect();
    let (body, multipart) = match &req.body {
        Body::None => (None, None),
        Body::Json(v) => (Some(v.clone()), None),
        Body::Multipart(parts) => (None, Some(parts.clone())),
    };
    PlannedRequest {
        method: req.method.as_str(),
        url: req.url.clone(),
        headers,
        body,
        multipart,
    }
}

/// Renders a value for the preview: a template that depends on earlier steps and
/// cannot be evaluated yet becomes a placeholder naming it.
fn preview(value: &TValue, ctx: &Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        TValue::Tmpl(t) => match template::render(t, ctx) {
            Ok(v) => v,
            Err(_) if !t.step_refs.is_empty() => {
                serde_json::Value::String(format!("<known after run: {}>", t.source.trim()))
            }
            Err(e) => return Err(e),
        },
        TValue::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| preview(i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        TValue::Map(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), preview(v, ctx)?);
            }
            serde_json::Value::Object(out)
        }
        other => template::render_value(other, ctx)?,
    })
}

fn preview_inputs(step: &Step, ctx: &Value) -> Result<Inputs, String> {
    let mut values = serde_json::Map::new();
    for (name, value) in &step.with {
        let v = match (name.as_str(), value) {
            ("poll", TValue::Map(m)) => {
                let mut out = serde_json::Map::new();
                for (k, v) in m.iter().filter(|(k, _)| *k != "until" && *k != "fail_if") {
                    out.insert(
                        k.clone(),
                        preview(v, ctx).map_err(|e| format!("input `poll.{k}`: {e}"))?,
                    );
                }
                serde_json::Value::Object(out)
            }
            _ => preview(value, ctx).map_err(|e| format!("input `{name}`: {e}"))?,
        };
        values.insert(name.clone(), v);
    }
    Ok(Inputs::new(step.action, values, step.with.clone(), true))
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
    let mut steps = Vec::with_capacity(p.steps.len());
    for &i in &graph.order {
        let step = &p.steps[i];
        let fail = |message: String| PlanError {
            step: step.id.clone(),
            line: step.pos.line,
            message,
        };
        let condition = match &step.condition {
            None => None,
            Some(cond) => {
                let template = match cond {
                    TValue::Tmpl(t) => t.source.clone(),
                    other => format!(
                        "{}",
                        template::render_value(other, &base).unwrap_or_default()
                    ),
                };
                let value = if context::depends_on_steps(cond) {
                    None
                } else {
                    let v = template::render_value(cond, &base)
                        .map_err(|e| fail(format!("`if`: {e}")))?;
                    Some(actions::request::truthy(&v))
                };
                Some(Condition { template, value })
            }
        };
        let mut requests = Vec::new();
        let mut repeats = Vec::new();
        let mut for_each = None;
        let iterations: Vec<Value> = match &step.for_each {
            None => vec![base.clone()],
            Some(fe) => {
                let template = match fe {
                    TValue::Tmpl(t) => t.source.clone(),
                    _ => "(a list written in the file)".into(),
                };
                let max_parallel = step.max_parallel.unwrap_or(concurrency);
                if context::depends_on_steps(fe) {
                    for_each = Some(ForEach {
                        template,
                        count: None,
                        max_parallel,
                    });
                    repeats.push(format!(
                        "once per element of {}, {max_parallel} at a time; `item` fields are known after run",
                        fe.templates().first().map(|t| t.source.trim().to_string()).unwrap_or_default()
                    ));
                    vec![
                        minijinja::context! { item => Unknown::value("item"), index => Unknown::value("index"), ..base.clone() },
                    ]
                } else {
                    let list = template::render_value(fe, &base)
                        .map_err(|e| fail(format!("`for_each`: {e}")))?;
                    let serde_json::Value::Array(items) = list else {
                        return Err(fail("`for_each` must yield a list".into()));
                    };
                    for_each = Some(ForEach {
                        template,
                        count: Some(items.len()),
                        max_parallel,
                    });
                    items
                        .iter()
                        .enumerate()
                        .map(|(index, item)| minijinja::context! { item => template::from_json(item), index => index, ..base.clone() })
                        .collect()
                }
            }
        };
        if condition.as_ref().and_then(|c| c.value) != Some(false) {
            for ctx in &iterations {
                let inputs = preview_inputs(step, ctx).map_err(fail)?;
                let action_plan =
                    actions::plan(&inputs, client).map_err(|e| fail(e.to_string()))?;
                requests.extend(action_plan.requests.iter().map(|r| planned(r, client)));
                for note in action_plan.notes {
                    if !repeats.contains(&note) {
                        repeats.push(note);
                    }
                }
            }
        } else {
            repeats.push("skipped: `if` is false".into());
        }
        if let Some(t) = step.timeout {
            repeats.push(format!("the step times out after {}", format_duration(t)));
        }
        steps.push(PlannedStep {
            id: step.id.clone(),
            action: step.action.name(),
            needs: step.deps.iter().map(|&d| p.steps[d].id.clone()).collect(),
            condition,
            for_each,
            requests,
            repeats,
            retry: RetryDesc {
                max_attempts: step.retry.max_attempts,
                initial_interval: format_duration(step.retry.initial_interval),
                max_interval: format_duration(step.retry.max_interval),
            },
            line: step.pos.line,
        });
    }
    Ok(Plan {
        pipeline: p.name.clone(),
        steps,
    })
}

/// The plan for people: Terraform-style, one block per step.
pub fn to_text(plan: &Plan) -> String {
    let mut out = String::new();
    let n: usize = plan.steps.iter().map(|s| s.requests.len()).sum();
    let _ = writeln!(
        out,
        "Plan for pipeline `{}`: {} step{}, {n} request{} shown. Nothing was sent.\n",
        plan.pipeline,
        plan.steps.len(),
        if plan.steps.len() == 1 { "" } else { "s" },
        if n == 1 { "" } else { "s" }
    );
    for (i, s) in plan.steps.iter().enumerate() {
        let _ = writeln!(out, "{}. {} ({})", i + 1, s.id, s.action);
        if !s.needs.is_empty() {
            let _ = writeln!(out, "   after: {}", s.needs.join(", "));
        }
        if let Some(c) = &s.condition {
            let state = match c.value {
                Some(true) => "true now",
                Some(false) => "false now: the step will be skipped",
                None => "decided at run time",
            };
            let _ = writeln!(out, "   if: {} ({state})", c.template.trim());
        }
        if let Some(fe) = &s.for_each {
            let count = fe.count.map_or("a list known after run".to_string(), |c| {
                format!("{c} items")
            });
            let _ = writeln!(
                out,
                "   for each: {} ({count}, {} at a time)",
                fe.template.trim(),
                fe.max_parallel
            );
        }
        for r in &s.requests {
            let _ = writeln!(out, "   {} {}", r.method, r.url);
            for (k, v) in &r.headers {
                let _ = writeln!(out, "     {k}: {v}");
            }
            if let Some(body) = &r.body {
                let pretty = serde_json::to_string_pretty(body).unwrap_or_default();
                for line in pretty.lines() {
                    let _ = writeln!(out, "     | {line}");
                }
            }
            for part in r.multipart.iter().flatten() {
                match part {
                    Part::Text { field, value } => {
                        let _ = writeln!(out, "     part {field} = {value:?}");
                    }
                    Part::File {
                        field,
                        path,
                        file_name,
                        size,
                        content_type,
                    } => {
                        let _ = writeln!(
                            out,
                            "     part {field}: {file_name} ({size} bytes, {content_type}) from {}",
                            path.display()
                        );
                    }
                }
            }
        }
        for note in &s.repeats {
            let _ = writeln!(out, "   ~ {note}");
        }
        let _ = writeln!(
            out,
            "   ~ retries: up to {} attempts, backoff {} to {}",
            s.retry.max_attempts, s.retry.initial_interval, s.retry.max_interval
        );
        out.push('\n');
    }
    out
}
