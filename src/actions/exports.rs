//! `exports.create` (POST /exports) and `exports.wait` (GET /exports/{id} until done).
//! The create body names its target as the flavour in force does (`project_id` in the
//! documented API, `project` in today's), so one pipeline works against both.
//!
//! Takes: rendered inputs. Gives: the created export, or the finished one.
//! Must not: treat a failed export as still running, or poll past the timeout.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{
    shown_duration, Action, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx,
};
use crate::api::request::{Body, HttpRequest, Method};
use crate::api::shapes::{export_state, ExportState};
use crate::api::Endpoint;
use crate::pipeline::model::{format_duration, ApiFlavor};
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty};
use crate::template::Text;

const PROJECT_ID: Field = opt("project_id", Ty::Str, "Project to export.");
const DATASET_ID: Field = opt("dataset_id", Ty::Str, "Dataset to export.");
const FORMAT: Field = dflt("format", Ty::Str, "json", "Export format.");
const BODY: Field = opt(
    "body",
    Ty::Map(&Ty::Any),
    "Extra fields merged into the body.",
);

const EXPORT: Field = req("export", Ty::Str, "Export id.");
const INTERVAL: Field = dflt("interval", Ty::Duration, "2s", "First wait between polls.");
const MAX_INTERVAL: Field = dflt(
    "max_interval",
    Ty::Duration,
    "30s",
    "The wait grows up to this.",
);
const TIMEOUT: Field = dflt("timeout", Ty::Duration, "30m", "Give up after this long.");

/// `exports.create`.
pub struct ExportsCreate;
/// `exports.wait`.
pub struct ExportsWait;

impl Action for ExportsCreate {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "exports.create",
        summary: "POST /exports with a JSON body.",
        inputs: &[PROJECT_ID, DATASET_ID, FORMAT, BODY],
        one_of: &["project_id", "dataset_id"],
        outputs: &[
            ("id", "Export id."),
            ("status", "Its status."),
            ("...", "Every other field of the created export."),
        ],
        changes_server: true,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        Ok(ActionPlan {
            requests: vec![create_request(inputs, endpoint)?],
            repeats: None,
            notes: vec![],
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let req = create_request(inputs, ctx.client.endpoint())?;
        // An earlier attempt (same inputs) created an export but was cut short before the
        // step ended: re-attach to that export instead of creating another.
        if let Some(id) = ctx.journal.export() {
            let get = HttpRequest::to(
                Method::Get,
                ctx.client.endpoint().at("/exports/{}", &[&Text::Known(id)]),
            );
            let export = super::fetch_json(ctx, &get).await?;
            if export.is_object() {
                return Ok(export.into());
            }
        }
        let place = export_place(ctx).await?;
        let resp = ctx.client.send_json(&req, &ctx.call, None).await?;
        let body = resp
            .json()
            .map_err(|why| ActionError::Other(format!("POST /exports: {why}")))?;
        if let Some(id) = body["id"].as_str().or(body["uid"].as_str()) {
            ctx.journal.export_created(id);
            ctx.client.exports().started(place, id);
        }
        match body {
            Value::Object(_) => Ok(body.into()),
            other => Err(ActionError::Other(format!(
                "POST /exports: expected the created export as a JSON object, got {}",
                crate::api::shapes::shorten(&other.to_string(), 100)
            ))),
        }
    }
}

/// A place among the exports running (the published limit of 5 per account). When this
/// run's exports hold them all, asks the server how those stand (an export ends on the
/// server whether or not a step polls it), frees the ended ones, and else waits for one to
/// end: checking again with a growing interval, or woken by a step that saw one end.
async fn export_place<'a>(
    ctx: &'a RunCtx<'_>,
) -> Result<tokio::sync::SemaphorePermit<'a>, ActionError> {
    let places = ctx.client.exports();
    let mut poller = super::Poller::new(
        Duration::from_secs(1),
        Duration::from_secs(30),
        Duration::ZERO,
    );
    loop {
        if let Some(place) = places.try_take() {
            return Ok(place);
        }
        for id in places.running() {
            let get = HttpRequest::to(
                Method::Get,
                ctx.client
                    .endpoint()
                    .at("/exports/{}", &[&Text::Known(id.clone())]),
            );
            match ctx.client.send_json(&get, &ctx.call, None).await {
                Ok(resp) => {
                    let ended = resp.json().is_ok_and(|body| {
                        // Completed without a URL yet is no longer running either.
                        matches!(
                            export_state(&body),
                            ExportState::Done { .. }
                                | ExportState::Failed { .. }
                                | ExportState::NoUrl { .. }
                        )
                    });
                    if ended {
                        places.ended(&id);
                    }
                }
                Err(e) if e.status == Some(404) => places.ended(&id),
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(place) = places.try_take() {
            return Ok(place);
        }
        let polls = poller.poll();
        if polls == 1 {
            tracing::info!(
                step = %ctx.call.step,
                "{} exports this run created are running (the published limit); waiting for one to end",
                crate::api::pacer::MAX_EXPORTS
            );
        }
        tokio::select! {
            place = places.take() => return Ok(place),
            paused = poller.pause(ctx, "while waiting for a running export to end") => paused?,
        }
    }
}

fn create_request(inputs: &Inputs, endpoint: &Endpoint) -> Result<HttpRequest, ActionError> {
    let mut body = Map::new();
    let project = inputs.text(&PROJECT_ID)?.map(|t| t.shown());
    let dataset = inputs.text(&DATASET_ID)?.map(|t| t.shown());
    if project.is_none() && dataset.is_none() {
        return Err(ActionError::Input(
            "exports.create needs `project_id` or `dataset_id`".into(),
        ));
    }
    // Each flavour names the target its own way.
    let (project_key, dataset_key) = match endpoint.flavor {
        ApiFlavor::Documented => ("project_id", "dataset_id"),
        ApiFlavor::Current => ("project", "dataset"),
    };
    if let Some(p) = project {
        body.insert(project_key.into(), Value::String(p));
    }
    if let Some(d) = dataset {
        body.insert(dataset_key.into(), Value::String(d));
    }
    let format = inputs
        .text(&FORMAT)?
        .map_or_else(|| "json".into(), |t| t.shown());
    body.insert("format".into(), Value::String(format));
    for (k, v) in inputs.map(&BODY)? {
        body.insert(k, v.into_shown());
    }
    Ok(HttpRequest::to(Method::Post, endpoint.at("/exports", &[]))
        .with_body(Body::Json(Value::Object(body))))
}

/// `exports.wait`'s inputs, typed.
struct WaitInputs {
    export: Text,
    interval: Option<Duration>,
    max_interval: Option<Duration>,
    timeout: Option<Duration>,
}

impl WaitInputs {
    fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        Ok(WaitInputs {
            export: inputs.required_text(&EXPORT)?,
            interval: inputs.duration(&INTERVAL)?,
            max_interval: inputs.duration(&MAX_INTERVAL)?,
            timeout: inputs.duration(&TIMEOUT)?,
        })
    }

    fn request(&self, endpoint: &Endpoint) -> HttpRequest {
        HttpRequest::to(Method::Get, endpoint.at("/exports/{}", &[&self.export]))
    }
}

impl Action for ExportsWait {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "exports.wait",
        summary: "GET /exports/{export} until it is done.",
        inputs: &[EXPORT, INTERVAL, MAX_INTERVAL, TIMEOUT],
        one_of: &[],
        outputs: &[
            ("id", "Export id."),
            ("status", "`completed` or `exported`."),
            ("download_url", "Where to download it."),
            ("...", "Every other field of the export."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let wait = WaitInputs::read(inputs)?;
        Ok(ActionPlan {
            requests: vec![wait.request(endpoint)],
            repeats: Some(Repeats::Poll {
                interval: shown_duration(wait.interval),
                max_interval: shown_duration(wait.max_interval),
                timeout: shown_duration(wait.timeout),
                until: "status is completed or exported, with a download_url".into(),
                fail_if: Some("status is failed, error or cancelled".into()),
            }),
            notes: vec![],
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        run_wait(WaitInputs::read(inputs)?, ctx).await
    }
}

async fn run_wait(inputs: WaitInputs, ctx: &RunCtx<'_>) -> ActionResult {
    let req = inputs.request(ctx.client.endpoint());
    let id = inputs.export.shown();
    let known = |d: Option<Duration>| d.unwrap_or_default();
    let timeout = known(inputs.timeout);
    let mut poller =
        super::Poller::new(known(inputs.interval), known(inputs.max_interval), timeout);
    // Polls that said the export is done but gave no download URL.
    let mut without_url = 0u32;
    loop {
        let polls = poller.poll();
        let resp = ctx.client.send_json(&req, &ctx.call, None).await?;
        let body = resp.json().map_err(|why| {
            ActionError::Other(format!(
                "GET {}: {why}",
                crate::api::request::display_path(&req.url)
            ))
        })?;
        let state = export_state(&body);
        let no_url = matches!(state, ExportState::NoUrl { .. });
        without_url += u32::from(no_url);
        if matches!(state, ExportState::Done { .. } | ExportState::Failed { .. }) {
            ctx.client.exports().ended(&id);
        }
        match state {
            ExportState::Done { .. } => return Ok(body.into()),
            ExportState::Failed { message } => {
                return Err(ActionError::Other(format!(
                    "export {id} {message} (after {polls} poll{})",
                    if polls == 1 { "" } else { "s" }
                )))
            }
            ExportState::Running { status } | ExportState::NoUrl { status } => {
                if poller.out_of_time() {
                    let mut now = match no_url {
                        true => format!("is `{status}` but has no download URL yet"),
                        false => format!("is still `{status}`"),
                    };
                    if without_url > 0 && without_url < polls {
                        now.push_str(&format!(
                            " ({without_url} of {polls} polls said it was completed, without a download URL)"
                        ));
                    }
                    return Err(ActionError::Other(format!(
                        "export {id} {now} after {} ({polls} polls); timed out waiting (timeout: {})",
                        poller.waited(),
                        format_duration(timeout)
                    )));
                }
                tracing::debug!(step = %ctx.call.step, "export {id} is {status}; polling again in {}", format_duration(poller.interval()));
                poller.pause(ctx, "while waiting for the export").await?;
            }
        }
    }
}
