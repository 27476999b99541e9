//! `datasets.list` and `items.list`, and the page loop `request` reuses with
//! `paginate: true`: follow cursors in either API shape, stop on a cursor seen twice,
//! and keep the items in memory or stream them to a JSON Lines file (`save_to`).
//!
//! Must not: hold items in memory when `save_to` is set.

use std::collections::HashSet;
use std::io::Write as _;

use serde_json::{json, Value};

use super::{ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx};
use crate::api::request::{segment, with_query, HttpRequest};
use crate::api::{shapes, CallCtx, Client};
use crate::pipeline::model::ActionKind;

/// A server bug must not become an endless loop.
const MAX_PAGES: usize = 100_000;

fn first_request(inputs: &Inputs, client: &Client) -> Result<HttpRequest, ActionError> {
    let path = match inputs.action {
        ActionKind::ItemsList => {
            format!(
                "/datasets/{}/items",
                segment(&inputs.required_str("dataset")?)
            )
        }
        _ => "/datasets".to_string(),
    };
    let limit = inputs.u64("limit")?.unwrap_or(100);
    let mut params = vec![("limit".to_string(), limit.to_string())];
    for (k, v) in inputs.map("query")? {
        params.push((k, crate::api::request::query_text(&v)));
    }
    Ok(HttpRequest::get(with_query(
        &client.api_url(&path),
        &params,
    )))
}

pub fn plan(inputs: &Inputs, client: &Client) -> Result<ActionPlan, ActionError> {
    let req = first_request(inputs, client)?;
    let mut notes = Vec::new();
    if let Some(path) = inputs.str("save_to")? {
        notes.push(format!(
            "items are streamed to {path} (JSON Lines), written in place when complete"
        ));
    }
    Ok(ActionPlan {
        requests: vec![req],
        repeats: Some(Repeats::pages(inputs.u64("max_items")?)),
        notes,
    })
}

pub async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
    let first = first_request(inputs, ctx.client)?;
    let max_items = inputs.u64("max_items")?;
    match inputs.str("save_to")? {
        Some(path) => {
            let dest = super::local_path(&path);
            let dir = dest
                .parent()
                .filter(|p| !p.as_os_str().is_empty())
                .map(std::path::Path::to_path_buf)
                .unwrap_or_else(|| ".".into());
            std::fs::create_dir_all(&dir)
                .map_err(|e| ActionError::Other(format!("cannot create {}: {e}", dir.display())))?;
            let tmp = super::temp_beside(&dir).map_err(|e| {
                ActionError::Other(format!("cannot write in {}: {e}", dir.display()))
            })?;
            let _scratch = super::scratch::register(tmp.path());
            let mut writer = std::io::BufWriter::with_capacity(256 * 1024, tmp);
            let mut write_err = None;
            let (count, total) = paginate(ctx.client, &ctx.call, &first, max_items, &mut |item| {
                if write_err.is_none() {
                    if let Err(e) = serde_json::to_writer(&mut writer, &item)
                        .and_then(|_| writer.write_all(b"\n").map_err(serde_json::Error::io))
                    {
                        write_err = Some(e);
                    }
                }
            })
            .await?;
            if let Some(e) = write_err {
                return Err(ActionError::Other(format!("writing {path} failed: {e}")));
            }
            let tmp = writer
                .into_inner()
                .map_err(|e| ActionError::Other(format!("writing {path} failed: {e}")))?;
            super::keep_permissions(&tmp, &dest);
            tmp.persist(&dest).map_err(|e| {
                ActionError::Other(format!("cannot move the items into {path}: {e}"))
            })?;
            Ok(outputs(Vec::new(), count, total, Some(path)))
        }
        None => {
            let mut items = Vec::new();
            let (count, total) = paginate(ctx.client, &ctx.call, &first, max_items, &mut |item| {
                items.push(item)
            })
            .await?;
            Ok(outputs(items, count, total, None))
        }
    }
}

/// The step's outputs. Built by hand: `json!` would serialize `items` into a deep copy,
/// which for a big list costs as much as parsing it did.
fn outputs(items: Vec<Value>, count: u64, total: Option<u64>, path: Option<String>) -> Value {
    let mut map = serde_json::Map::new();
    map.insert("items".into(), Value::Array(items));
    map.insert("count".into(), json!(count));
    map.insert("total".into(), json!(total));
    map.insert("path".into(), json!(path));
    Value::Object(map)
}

/// Fetches every page starting at `first`, handing each item to `sink`. Returns the
/// number of items and the server's total (when it gives one).
pub async fn paginate(
    client: &Client,
    call: &CallCtx,
    first: &HttpRequest,
    max_items: Option<u64>,
    sink: &mut (dyn FnMut(Value) + Send),
) -> Result<(u64, Option<u64>), ActionError> {
    let mut seen = HashSet::new();
    let mut req = first.clone();
    let mut count = 0u64;
    let mut total = None;
    for page_no in 1..=MAX_PAGES {
        let resp = client.send_json(&req, call, None).await?;
        let page = shapes::parse_page(resp.body).map_err(|m| {
            ActionError::Other(format!(
                "{} {}: unexpected response: {m}",
                req.method.as_str(),
                crate::api::request::display_path(&req.url)
            ))
        })?;
        if total.is_none() {
            total = page.total;
        }
        for item in page.items {
            if max_items.is_some_and(|m| count >= m) {
                break;
            }
            sink(item);
            count += 1;
        }
        if max_items.is_some_and(|m| count >= m) {
            return Ok((count, total));
        }
        let Some(cursor) = page.next_cursor else {
            return Ok((count, total));
        };
        if !seen.insert(cursor.clone()) {
            return Err(ActionError::Other(format!(
                "GET {}: the server returned cursor `{}` twice (page {page_no}); stopping instead of looping forever",
                crate::api::request::display_path(&first.url),
                shapes::shorten(&cursor, 40)
            )));
        }
        req = HttpRequest::get(with_query(
            &first.url,
            &[(page.cursor_param.to_string(), cursor)],
        ));
    }
    Err(ActionError::Other(format!(
        "GET {}: more than {MAX_PAGES} pages; stopping",
        crate::api::request::display_path(&first.url)
    )))
}
