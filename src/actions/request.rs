//! `request`: any API call, optionally paginated or polled until a condition holds.
//! Outputs `status`, `headers`, `body` (and `items` when paginated). Poll conditions
//! are templates over `response` (`{status, headers, body}`), rendered per response.
//!
//! Takes: rendered inputs (a poll's conditions unrendered). Gives: the response.
//! Must not: send the key off the API's origin (the client enforces it).

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    list, shown_duration, Action, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx,
};
use crate::api::request::{Body, HttpRequest, Method, Part};
use crate::api::{Endpoint, JsonResponse};
use crate::pipeline::model::{format_duration, parse_duration, TValue};
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty};
use crate::template::{truthy, Rendered, Text};

const METHOD: Field = dflt(
    "method",
    Ty::Enum(&["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"]),
    "GET",
    "HTTP method.",
);
const PATH: Field = opt("path", Ty::Str, "Path under the base URL.");
const URL: Field = opt(
    "url",
    Ty::Str,
    "Absolute URL (the key is sent only to the API's origin).",
);
const QUERY: Field = opt("query", Ty::Map(&Ty::Any), "Query parameters.");
const JSON: Field = opt("json", Ty::Any, "JSON body.");
const MULTIPART: Field = opt("multipart", Ty::Object(MULTIPART_FIELDS), "Multipart body.");
const EXPECT: Field = opt(
    "expect",
    Ty::IntOrList,
    "Statuses that count as success (default: any 2xx).",
);
const PAGINATE: Field = dflt(
    "paginate",
    Ty::Bool,
    "false",
    "Follow cursors and collect `items`.",
);
const POLL: Field = opt(
    "poll",
    Ty::Object(POLL_FIELDS),
    "Repeat the request until a condition holds.",
);

const MULTIPART_FIELDS: &[Field] = &[
    opt("fields", Ty::Map(&Ty::Any), "Text fields: name → value."),
    opt(
        "files",
        Ty::Map(&Ty::Str),
        "File fields: name → path (streamed from disk).",
    ),
];

const UNTIL: Field = req(
    "until",
    Ty::Condition,
    "Done when this renders true; `response` is the latest `{status, headers, body}`.",
)
.late();
const FAIL_IF: Field = opt(
    "fail_if",
    Ty::Condition,
    "Fail at once when this renders true.",
)
.late();
const POLL_INTERVAL: Field = dflt("interval", Ty::Duration, "2s", "First wait between polls.");
const POLL_MAX_INTERVAL: Field = dflt(
    "max_interval",
    Ty::Duration,
    "30s",
    "The wait grows up to this.",
);
const POLL_TIMEOUT: Field = dflt("timeout", Ty::Duration, "30m", "Give up after this long.");

/// `request`'s `poll` keys.
pub const POLL_FIELDS: &[Field] = &[
    UNTIL,
    FAIL_IF,
    POLL_INTERVAL,
    POLL_MAX_INTERVAL,
    POLL_TIMEOUT,
];

/// `request`.
pub struct Request;

impl Action for Request {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "request",
        summary: "Any API call.",
        inputs: &[
            METHOD, PATH, URL, QUERY, JSON, MULTIPART, EXPECT, PAGINATE, POLL,
        ],
        one_of: &["path", "url"],
        outputs: &[
            ("status", "HTTP status."),
            ("headers", "Response headers."),
            ("body", "Parsed JSON, else text."),
            ("items", "With `paginate`: every item of every page."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        plan(&RequestInputs::read(inputs)?, endpoint)
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        run(RequestInputs::read(inputs)?, ctx).await
    }
}

/// `request`'s inputs, typed.
struct RequestInputs {
    method: Method,
    target: Text,
    /// `url` was given (else `path`).
    absolute: bool,
    query: Vec<(String, Text)>,
    json: Option<Rendered>,
    multipart: Option<Vec<Part>>,
    expect: Option<Vec<u16>>,
    paginate: bool,
    poll: Option<Poll>,
}

struct Poll {
    until: TValue,
    fail_if: Option<TValue>,
    interval: Option<Duration>,
    max_interval: Option<Duration>,
    timeout: Option<Duration>,
}

impl RequestInputs {
    fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        let method_text = inputs
            .text(&METHOD)?
            .map_or_else(|| "GET".into(), |t| t.shown());
        let method = Method::parse(&method_text).ok_or_else(|| {
            ActionError::Input(format!(
                "input `method`: unknown HTTP method `{method_text}`"
            ))
        })?;
        let (target, absolute) = match (inputs.text(&URL)?, inputs.text(&PATH)?) {
            (Some(url), _) => (url, true),
            (None, Some(path)) => (path, false),
            (None, None) => return Err(ActionError::Input("request needs `path` or `url`".into())),
        };
        let multipart = match inputs.get(&MULTIPART) {
            Some(_) => Some(multipart_parts(inputs)?),
            None => None,
        };
        Ok(RequestInputs {
            method,
            target,
            absolute,
            query: inputs.query(&QUERY)?,
            json: inputs.get(&JSON).cloned(),
            multipart,
            expect: expect(inputs)?,
            paginate: inputs.flag(&PAGINATE)?,
            poll: poll_settings(inputs)?,
        })
    }

    fn build(&self, endpoint: &Endpoint) -> HttpRequest {
        let target = if self.absolute {
            endpoint.resolve(&self.target)
        } else {
            // A path is under the base URL even when it looks like a URL.
            match &self.target {
                Text::Known(p) => crate::api::Target::Url(endpoint.api_url(p)),
                Text::Later(l) => crate::api::Target::Later(endpoint.api_url(&l.shown())),
            }
        };
        let body = if let Some(json) = &self.json {
            Body::Json(json.shown())
        } else if let Some(parts) = &self.multipart {
            Body::Multipart(parts.clone())
        } else {
            Body::None
        };
        HttpRequest::to(self.method, target)
            .with_query(&self.query)
            .with_body(body)
    }
}

fn multipart_parts(inputs: &Inputs) -> Result<Vec<Part>, ActionError> {
    let spec = inputs.map(&MULTIPART)?;
    let mut parts = Vec::new();
    if let Some(fields) = spec.get("fields") {
        for (k, v) in fields.shown().as_object().into_iter().flatten() {
            parts.push(Part::Text {
                field: k.clone(),
                value: crate::api::request::query_text(v),
            });
        }
    }
    let files = match spec.get("files") {
        Some(Rendered::Map(m)) => m.clone(),
        Some(Rendered::Json(Value::Object(m))) => m
            .iter()
            .map(|(k, v)| (k.clone(), Rendered::Json(v.clone())))
            .collect(),
        _ => Default::default(),
    };
    let raw_files = match inputs.unrendered(&MULTIPART) {
        Some(TValue::Map(m)) => match m.get("files") {
            Some(TValue::Map(files)) => Some(files),
            _ => None,
        },
        _ => None,
    };
    for (k, v) in files {
        let text = v.to_text();
        if let (Some(TValue::Tmpl(tmpl)), Some(path)) =
            (raw_files.and_then(|f| f.get(&k)), text.known())
        {
            super::placement(tmpl, "multipart.files", path)?;
        }
        let path = super::local_path(&text.shown());
        let size = match text.known() {
            None => None,
            Some(_) => Some(
                std::fs::metadata(&path)
                    .map_err(|e| {
                        ActionError::Input(format!("multipart file {}: {e}", path.display()))
                    })?
                    .len(),
            ),
        };
        let file_name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| "file".into());
        parts.push(Part::File {
            field: k.clone(),
            content_type: super::upload::content_type(&file_name).to_string(),
            path,
            file_name,
            size,
        });
    }
    Ok(parts)
}

fn expect(inputs: &Inputs) -> Result<Option<Vec<u16>>, ActionError> {
    let list = match inputs.get(&EXPECT).map(Rendered::shown) {
        None => return Ok(None),
        Some(Value::Array(items)) => items,
        Some(v) => vec![v],
    };
    list.iter()
        .map(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
                .filter(|n| (100..600).contains(n))
                .map(|n| n as u16)
                .ok_or_else(|| {
                    ActionError::Input(format!("input `expect`: `{v}` is not an HTTP status"))
                })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

fn poll_settings(inputs: &Inputs) -> Result<Option<Poll>, ActionError> {
    let Some(TValue::Map(raw)) = inputs.unrendered(&POLL) else {
        return Ok(None);
    };
    // The other poll keys were rendered with the rest of the inputs.
    let rendered = inputs.map(&POLL)?;
    let dur = |f: &Field| -> Result<Option<Duration>, ActionError> {
        let text = match rendered.get(f.name) {
            Some(Rendered::Json(Value::String(s))) => s.clone(),
            Some(Rendered::Json(Value::Number(n))) => n.to_string(),
            Some(Rendered::Json(_)) | None => f.default.unwrap_or("0").to_string(),
            Some(_) => return Ok(None),
        };
        parse_duration(&text).map(Some).ok_or_else(|| {
            ActionError::Input(format!("`poll.{}`: `{text}` is not a duration", f.name))
        })
    };
    Ok(Some(Poll {
        until: raw.get(UNTIL.name).cloned().unwrap_or(TValue::Bool(true)),
        fail_if: raw.get(FAIL_IF.name).cloned(),
        interval: dur(&POLL_INTERVAL)?,
        max_interval: dur(&POLL_MAX_INTERVAL)?,
        timeout: dur(&POLL_TIMEOUT)?,
    }))
}

fn plan(inputs: &RequestInputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
    let mut notes = Vec::new();
    // As `run`: pagination wins over polling.
    let repeats = if inputs.paginate {
        Some(Repeats::pages(None))
    } else {
        inputs.poll.as_ref().map(|p| Repeats::Poll {
            interval: shown_duration(p.interval),
            max_interval: shown_duration(p.max_interval),
            timeout: shown_duration(p.timeout),
            until: condition_text(&p.until),
            fail_if: p.fail_if.as_ref().map(condition_text),
        })
    };
    if let Some(list) = &inputs.expect {
        let statuses: Vec<String> = list.iter().map(u16::to_string).collect();
        notes.push(format!("succeeds on status {}", statuses.join(", ")));
    }
    Ok(ActionPlan {
        requests: vec![inputs.build(endpoint)],
        repeats,
        notes,
    })
}

/// A poll condition as a reviewer reads it: the expression without its `{{ }}`.
fn condition_text(value: &TValue) -> String {
    match value {
        TValue::Tmpl(t) => t
            .whole_expr
            .clone()
            .unwrap_or_else(|| t.source.trim().to_string()),
        TValue::Bool(b) => b.to_string(),
        TValue::Str(s) => s.clone(),
        other => format!("{other:?}"),
    }
}

fn response_value(resp: &JsonResponse) -> Value {
    json!({"status": resp.status, "headers": resp.headers, "body": resp.body})
}

async fn run(inputs: RequestInputs, ctx: &RunCtx<'_>) -> ActionResult {
    let req = inputs.build(ctx.client.endpoint());
    let expect = inputs.expect.clone();
    if inputs.paginate {
        let mut items = crate::outputs::Items::default();
        let (count, total) =
            list::paginate(ctx.client, &ctx.call, &req, None, &mut |i| items.push(i)).await?;
        let Value::Object(fields) = json!({"status": 200, "headers": {}, "body": null, "items": null, "count": count, "total": total})
        else {
            unreachable!("an object literal")
        };
        return Ok(crate::outputs::Outputs::with_items(fields, items));
    }
    let Some(poll) = inputs.poll else {
        let resp = ctx
            .client
            .send_json(&req, &ctx.call, expect.as_deref())
            .await?;
        return Ok(response_value(&resp).into());
    };
    let timeout = poll.timeout.unwrap_or_default();
    let mut poller = super::Poller::new(
        poll.interval.unwrap_or_default(),
        poll.max_interval.unwrap_or_default(),
        timeout,
    );
    loop {
        let polls = poller.poll();
        let resp = ctx
            .client
            .send_json(&req, &ctx.call, expect.as_deref())
            .await?;
        let value = response_value(&resp);
        let data = json!({ "response": value });
        if let Some(fail_if) = &poll.fail_if {
            if truthy(&ctx.renderer.render_with(fail_if, "poll.fail_if", &data)?) {
                return Err(ActionError::Other(format!(
                    "{} {}: poll.fail_if held after {polls} poll{} (status {}): {}",
                    req.method.as_str(),
                    crate::api::request::display_path(&req.url),
                    if polls == 1 { "" } else { "s" },
                    resp.status,
                    crate::api::shapes::shorten(&resp.body.to_string(), 300)
                )));
            }
        }
        if truthy(&ctx.renderer.render_with(&poll.until, "poll.until", &data)?) {
            let mut out = value;
            if let Some(o) = out.as_object_mut() {
                o.insert("polls".into(), json!(polls));
            }
            return Ok(out.into());
        }
        if poller.out_of_time() {
            return Err(ActionError::Other(format!(
                "{} {}: poll.until still false after {polls} polls; timed out (timeout: {})",
                req.method.as_str(),
                crate::api::request::display_path(&req.url),
                format_duration(timeout)
            )));
        }
        poller.pause(ctx, "while polling").await?;
    }
}
