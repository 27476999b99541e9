//! `exports.create` (POST /exports) and `exports.wait` (GET /exports/{id} until done).
//! The create body carries both API shapes' keys (`project_id` and `project`, ...):
//! each API ignores the other's, so one pipeline works against both.
//!
//! Must not: treat a failed export as still running, or poll past the timeout.

use std::time::{Duration, Instant};

use serde_json::{Map, Value};

use super::{next_interval, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx};
use crate::api::request::{segment, Body, HttpRequest, Method};
use crate::api::shapes::{export_state, ExportState};
use crate::api::Client;
use crate::pipeline::model::format_duration;

fn create_request(inputs: &Inputs, client: &Client) -> Result<HttpRequest, ActionError> {
    let mut body = Map::new();
    let project = inputs.str("project_id")?;
    let dataset = inputs.str("dataset_id")?;
    if project.is_none() && dataset.is_none() {
        return Err(ActionError::Input(
            "exports.create needs `project_id` or `dataset_id`".into(),
        ));
    }
    if let Some(p) = project {
        body.insert("project_id".into(), Value::String(p.clone()));
        body.insert("project".into(), Value::String(p));
    }
    if let Some(d) = dataset {
        body.insert("dataset_id".into(), Value::String(d.clone()));
        body.insert("dataset".into(), Value::String(d));
    }
    body.insert(
        "format".into(),
        Value::String(inputs.str("format")?.unwrap_or_else(|| "json".into())),
    );
    for (k, v) in inputs.map("body")? {
        body.insert(k, v);
    }
    Ok(HttpRequest {
        method: Method::Post,
        url: client.api_url("/exports"),
        body: Body::Json(Value::Object(body)),
    })
}

pub fn plan_create(inputs: &Inputs, client: &Client) -> Result<ActionPlan, ActionError> {
    Ok(ActionPlan {
        requests: vec![create_request(inputs, client)?],
        repeats: None,
        notes: vec![],
    })
}

pub async fn run_create(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
    let req = create_request(inputs, ctx.client)?;
    let resp = ctx.client.send_json(&req, &ctx.call, None).await?;
    match resp.body {
        Value::Object(_) => Ok(resp.body),
        other => Err(ActionError::Other(format!(
            "POST /exports: expected the created export as a JSON object, got {}",
            crate::api::shapes::shorten(&other.to_string(), 100)
        ))),
    }
}

fn wait_request(inputs: &Inputs, client: &Client) -> Result<HttpRequest, ActionError> {
    let id = inputs.required_str("export")?;
    Ok(HttpRequest::get(
        client.api_url(&format!("/exports/{}", segment(&id))),
    ))
}

pub fn plan_wait(inputs: &Inputs, client: &Client) -> Result<ActionPlan, ActionError> {
    let interval = inputs.duration("interval")?;
    let max = inputs.duration("max_interval")?;
    let timeout = inputs.duration("timeout")?;
    Ok(ActionPlan {
        requests: vec![wait_request(inputs, client)?],
        repeats: Some(Repeats::Poll {
            interval: format_duration(interval),
            max_interval: format_duration(max),
            timeout: format_duration(timeout),
            until: "status is completed or exported, with a download_url".into(),
            fail_if: Some("status is failed, error or cancelled".into()),
        }),
        notes: vec![],
    })
}

pub async fn run_wait(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
    let req = wait_request(inputs, ctx.client)?;
    let id = inputs.required_str("export")?;
    let mut interval = inputs.duration("interval")?;
    let max = inputs.duration("max_interval")?;
    let timeout = inputs.duration("timeout")?;
    let started = Instant::now();
    let mut polls = 0u32;
    loop {
        polls += 1;
        let resp = ctx.client.send_json(&req, &ctx.call, None).await?;
        match export_state(&resp.body) {
            ExportState::Done { .. } => return Ok(resp.body),
            ExportState::Failed { message } => {
                return Err(ActionError::Other(format!(
                    "export {id} {message} (after {polls} poll{})",
                    if polls == 1 { "" } else { "s" }
                )))
            }
            ExportState::Running { status } => {
                let elapsed = started.elapsed();
                if elapsed + interval > timeout {
                    return Err(ActionError::Other(format!(
                        "export {id} is still `{status}` after {} ({polls} polls); timed out waiting (timeout: {})",
                        format_duration(Duration::from_secs(elapsed.as_secs())),
                        format_duration(timeout)
                    )));
                }
                tracing::debug!(step = %ctx.call.step, "export {id} is {status}; polling again in {}", format_duration(interval));
                tokio::select! {
                    _ = tokio::time::sleep(interval) => {}
                    _ = ctx.call.cancel.cancelled() => return Err(ActionError::Other("interrupted while waiting for the export".into())),
                }
                interval = next_interval(interval, max);
            }
        }
    }
}
