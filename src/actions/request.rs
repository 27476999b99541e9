//! `request`: any API call, optionally paginated or polled until a condition holds.
//! Outputs `status`, `headers`, `body` (and `items` when paginated). Poll conditions
//! are templates over `response` (`{status, headers, body}`), rendered per response.
//!
//! Must not: send the key off the API's origin (the client enforces it).

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::{list, next_interval, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx};
use crate::api::request::{query_text, with_query, Body, HttpRequest, Method, Part};
use crate::api::{Client, JsonResponse};
use crate::pipeline::model::{format_duration, parse_duration, TValue};

fn build(inputs: &Inputs, client: &Client) -> Result<HttpRequest, ActionError> {
    let method_text = inputs.str("method")?.unwrap_or_else(|| "GET".into());
    let method = Method::parse(&method_text).ok_or_else(|| {
        ActionError::Input(format!(
            "input `method`: unknown HTTP method `{method_text}`"
        ))
    })?;
    let url = match (inputs.str("url")?, inputs.str("path")?) {
        (Some(url), _) => client.resolve(&url),
        (None, Some(path)) => client.api_url(&path),
        (None, None) => return Err(ActionError::Input("request needs `path` or `url`".into())),
    };
    let params: Vec<(String, String)> = inputs
        .map("query")?
        .into_iter()
        .map(|(k, v)| (k, query_text(&v)))
        .collect();
    let url = with_query(&url, &params);
    let body = if let Some(json) = inputs.get("json") {
        Body::Json(json.clone())
    } else if inputs.get("multipart").is_some() {
        Body::Multipart(multipart_parts(inputs)?)
    } else {
        Body::None
    };
    Ok(HttpRequest { method, url, body })
}

fn multipart_parts(inputs: &Inputs) -> Result<Vec<Part>, ActionError> {
    let spec = inputs.map("multipart")?;
    let mut parts = Vec::new();
    if let Some(Value::Object(fields)) = spec.get("fields") {
        for (k, v) in fields {
            parts.push(Part::Text {
                field: k.clone(),
                value: query_text(v),
            });
        }
    }
    if let Some(Value::Object(files)) = spec.get("files") {
        for (k, v) in files {
            let path = super::local_path(&query_text(v));
            let size = if inputs.preview && super::is_placeholder(v) {
                0
            } else {
                std::fs::metadata(&path)
                    .map_err(|e| {
                        ActionError::Input(format!("multipart file {}: {e}", path.display()))
                    })?
                    .len()
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
    }
    Ok(parts)
}

fn expect(inputs: &Inputs) -> Result<Option<Vec<u16>>, ActionError> {
    let list = match inputs.get("expect") {
        None => return Ok(None),
        Some(Value::Array(items)) => items.clone(),
        Some(v) => vec![v.clone()],
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

struct Poll {
    until: TValue,
    fail_if: Option<TValue>,
    interval: Duration,
    max_interval: Duration,
    timeout: Duration,
}

fn poll_settings(inputs: &Inputs) -> Result<Option<Poll>, ActionError> {
    let Some(TValue::Map(raw)) = inputs.raw.get("poll") else {
        return Ok(None);
    };
    // Non-condition poll fields were rendered with the rest of the inputs.
    let rendered = inputs.map("poll")?;
    let dur = |name: &str, default: &str| -> Result<Duration, ActionError> {
        let text = match rendered.get(name) {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            _ => default.to_string(),
        };
        parse_duration(&text)
            .ok_or_else(|| ActionError::Input(format!("`poll.{name}`: `{text}` is not a duration")))
    };
    Ok(Some(Poll {
        until: raw.get("until").cloned().unwrap_or(TValue::Bool(true)),
        fail_if: raw.get("fail_if").cloned(),
        interval: dur("interval", "2s")?,
        max_interval: dur("max_interval", "30s")?,
        timeout: dur("timeout", "30m")?,
    }))
}

pub fn plan(inputs: &Inputs, client: &Client) -> Result<ActionPlan, ActionError> {
    let req = build(inputs, client)?;
    let mut notes = Vec::new();
    // As `run`: pagination wins over polling.
    let repeats = if inputs.bool("paginate")? {
        Some(Repeats::pages(None))
    } else {
        poll_settings(inputs)?.map(|p| Repeats::Poll {
            interval: format_duration(p.interval),
            max_interval: format_duration(p.max_interval),
            timeout: format_duration(p.timeout),
            until: condition_text(&p.until),
            fail_if: p.fail_if.as_ref().map(condition_text),
        })
    };
    if let Some(list) = expect(inputs)? {
        let statuses: Vec<String> = list.iter().map(u16::to_string).collect();
        notes.push(format!("succeeds on status {}", statuses.join(", ")));
    }
    Ok(ActionPlan {
        requests: vec![req],
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

pub async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
    let req = build(inputs, ctx.client)?;
    let expect = expect(inputs)?;
    if inputs.bool("paginate")? {
        let mut items = Vec::new();
        let (count, total) =
            list::paginate(ctx.client, &ctx.call, &req, None, &mut |i| items.push(i)).await?;
        return Ok(
            json!({"status": 200, "headers": {}, "body": null, "items": items, "count": count, "total": total}),
        );
    }
    let Some(poll) = poll_settings(inputs)? else {
        let resp = ctx
            .client
            .send_json(&req, &ctx.call, expect.as_deref())
            .await?;
        return Ok(response_value(&resp));
    };
    let started = Instant::now();
    let mut interval = poll.interval;
    let mut polls = 0u32;
    loop {
        polls += 1;
        let resp = ctx
            .client
            .send_json(&req, &ctx.call, expect.as_deref())
            .await?;
        let value = response_value(&resp);
        let data = json!({ "response": value });
        if let Some(fail_if) = &poll.fail_if {
            if truthy(
                &ctx.renderer
                    .render_with(fail_if, "poll.fail_if", &data)
                    .map_err(ActionError::Input)?,
            ) {
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
        if truthy(
            &ctx.renderer
                .render_with(&poll.until, "poll.until", &data)
                .map_err(ActionError::Input)?,
        ) {
            let mut out = value;
            if let Some(o) = out.as_object_mut() {
                o.insert("polls".into(), json!(polls));
            }
            return Ok(out);
        }
        if started.elapsed() + interval > poll.timeout {
            return Err(ActionError::Other(format!(
                "{} {}: poll.until still false after {polls} polls; timed out (timeout: {})",
                req.method.as_str(),
                crate::api::request::display_path(&req.url),
                format_duration(poll.timeout)
            )));
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = ctx.call.cancel.cancelled() => return Err(ActionError::Other("interrupted while polling".into())),
        }
        interval = next_interval(interval, poll.max_interval);
    }
}

/// Jinja truthiness of a rendered value (`"false"` from a string template is false).
pub fn truthy(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => {
            let t = s.trim();
            !(t.is_empty()
                || t.eq_ignore_ascii_case("false")
                || t == "0"
                || t.eq_ignore_ascii_case("none"))
        }
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }
}
