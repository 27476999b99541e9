//! `datasets.list` and `items.list`, and the page loop `request` reuses with
//! `paginate: true`: follow cursors in either API shape, stop on a cursor seen twice,
//! and keep the items in memory or stream them to a JSON Lines file (`save_to`).
//!
//! Takes: rendered inputs. Gives: the items (or the file they were streamed to).
//! Must not: hold items in memory when `save_to` is set.

use std::collections::HashSet;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::datasets::DatasetRef;
use super::{Action, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx};
use crate::api::request::{with_query, HttpRequest, Method};
use crate::api::{shapes, CallCtx, Endpoint, Target};
use crate::outputs::{Item, Items, Outputs};
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty, COUNT};
use crate::template::Text;

/// A server bug must not become an endless loop.
const MAX_PAGES: usize = 100_000;
/// The longest cursor followed: real ones are a few dozen bytes, and each is sent back
/// in a URL (a server sending fresh 60 KiB cursors forever once grew the run to GiBs).
const MAX_CURSOR_BYTES: usize = 8 << 10;
/// Pages in a row without an item that still say there are more: a server paging
/// through nothing, forever, is stopped long before `MAX_PAGES`.
const MAX_EMPTY_PAGES: usize = 1_000;

const DATASET: Field = req(
    "dataset",
    Ty::Str,
    "Dataset: its id, or `owner/slug` (today's API lists items by owner and slug; given an id, it is looked up first).",
);
const LIMIT: Field = dflt("limit", Ty::Int { min: 1, max: 1000 }, "100", "Page size.");
const MAX_ITEMS: Field = opt("max_items", COUNT, "Stop after this many items.");
const QUERY: Field = opt(
    "query",
    Ty::Map(&Ty::Any),
    "Extra query parameters (filters).",
);
const SAVE_TO: Field = opt(
    "save_to",
    Ty::Str,
    "Stream the items to this JSON Lines file instead of keeping them in memory.",
);

/// The paging inputs every list action takes (`request` with `paginate` reuses the loop).
pub const PAGING: [Field; 4] = [LIMIT, MAX_ITEMS, QUERY, SAVE_TO];

pub const LIST_OUTPUTS: &[(&str, &str)] = &[
    ("items", "The items (empty with `save_to`)."),
    ("count", "How many items were fetched."),
    (
        "total",
        "The server's total, when it gives one (else null).",
    ),
    ("path", "With `save_to`: the file written."),
];

/// `datasets.list`.
pub struct DatasetsList;
/// `items.list`.
pub struct ItemsList;

impl Action for DatasetsList {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "datasets.list",
        summary: "GET /datasets, following cursors until there are no more pages.",
        inputs: &PAGING,
        one_of: &[],
        outputs: LIST_OUTPUTS,
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let paging = Paging::read(inputs)?;
        let first = paging.first_request(endpoint.at("/datasets", &[]), &[]);
        Ok(paging.plan(vec![first]))
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let paging = Paging::read(inputs)?;
        let first = paging.first_request(ctx.client.endpoint().at("/datasets", &[]), &[]);
        paging.run(&first, ctx).await
    }
}

impl Action for ItemsList {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "items.list",
        summary: "GET /datasets/{dataset}/items (today's API: /datasets/{owner}/{slug}/items/), paginated.",
        inputs: &[DATASET, LIMIT, MAX_ITEMS, QUERY, SAVE_TO],
        one_of: &[],
        outputs: LIST_OUTPUTS,
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let paging = Paging::read(inputs)?;
        let dataset = DatasetRef::read(inputs, &DATASET)?;
        let mut requests: Vec<HttpRequest> = dataset.lookup(endpoint).into_iter().collect();
        let items = dataset.path(endpoint, "/items", &[])?;
        requests.push(paging.first_request(items, &[]));
        Ok(paging.plan(requests))
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let paging = Paging::read(inputs)?;
        let dataset = DatasetRef::read(inputs, &DATASET)?.resolved(ctx).await?;
        let items = dataset.path(ctx.client.endpoint(), "/items", &[])?;
        paging.run(&paging.first_request(items, &[]), ctx).await
    }
}

/// The paging inputs of a list action, typed.
pub struct Paging {
    limit: u64,
    max_items: Option<u64>,
    query: Vec<(String, Text)>,
    save_to: Option<Text>,
}

impl Paging {
    pub fn read(inputs: &Inputs) -> Result<Self, ActionError> {
        let save_to = inputs.text(&SAVE_TO)?;
        if let Some(Text::Known(path)) = &save_to {
            super::check_placement(inputs, &SAVE_TO, path)?;
        }
        Ok(Paging {
            limit: inputs.count(&LIMIT)?.unwrap_or(100),
            max_items: inputs.count(&MAX_ITEMS)?,
            query: inputs.query(&QUERY)?,
            save_to,
        })
    }

    /// The first page's request: `limit`, the action's own filters, then `query`.
    pub fn first_request(&self, target: Target, filters: &[(String, Text)]) -> HttpRequest {
        let mut params = vec![("limit".to_string(), Text::Known(self.limit.to_string()))];
        params.extend(filters.iter().cloned());
        params.extend(self.query.iter().cloned());
        HttpRequest::to(Method::Get, target).with_query(&params)
    }

    /// The plan: `requests` (the last one is the first page), then page after page.
    pub fn plan(&self, requests: Vec<HttpRequest>) -> ActionPlan {
        let mut notes = Vec::new();
        if let Some(path) = &self.save_to {
            notes.push(format!(
                "items are streamed to {} (JSON Lines), written in place when complete",
                path.shown()
            ));
        }
        ActionPlan {
            requests,
            repeats: Some(Repeats::pages(self.max_items)),
            notes,
        }
    }

    /// Fetches every page from `first`: the items in memory, or streamed to `save_to`.
    pub async fn run(&self, first: &HttpRequest, ctx: &RunCtx<'_>) -> ActionResult {
        match self.save_to.as_ref().map(Text::shown) {
            Some(path) => save_to(first, self.max_items, &path, ctx).await,
            None => {
                let mut items = Items::default();
                let (count, total) =
                    paginate(ctx.client, &ctx.call, first, self.max_items, &mut |item| {
                        items.push(item)
                    })
                    .await?;
                Ok(outputs(items, count, total, None))
            }
        }
    }
}

/// Streams every item to a JSON Lines file, renamed into place when complete.
async fn save_to(
    first: &HttpRequest,
    max_items: Option<u64>,
    path: &str,
    ctx: &RunCtx<'_>,
) -> ActionResult {
    let dest = super::destination(&super::local_path(path))?;
    let dir = dest
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(std::path::Path::to_path_buf)
        .unwrap_or_else(|| ".".into());
    std::fs::create_dir_all(&dir)
        .map_err(|e| ActionError::Other(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = super::temp_beside(&dir)
        .map_err(|e| ActionError::Other(format!("cannot write in {}: {e}", dir.display())))?;
    let _scratch = super::scratch::register(tmp.path());
    let mut writer = std::io::BufWriter::with_capacity(256 * 1024, tmp);
    let mut write_err = None;
    let (count, total) = paginate(ctx.client, &ctx.call, first, max_items, &mut |item| {
        if write_err.is_none() {
            if let Err(e) = item.write_line(&mut writer) {
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
    tmp.persist(&dest)
        .map_err(|e| ActionError::Other(format!("cannot move the items into {path}: {e}")))?;
    Ok(outputs(
        Items::default(),
        count,
        total,
        Some(path.to_string()),
    ))
}

/// The step's outputs: the items as the server wrote them, then the counts.
fn outputs(items: Items, count: u64, total: Option<u64>, path: Option<String>) -> Outputs {
    let mut map = serde_json::Map::new();
    map.insert("items".into(), Value::Null);
    map.insert("count".into(), json!(count));
    map.insert("total".into(), json!(total));
    map.insert("path".into(), json!(path));
    Outputs::with_items(map, items)
}

/// Fetches every page starting at `first`, handing each item to `sink` as the server
/// wrote it. Returns the number of items and the server's total (when it gives one).
///
/// The next page is asked for as soon as a page has arrived, from the paging fields at
/// its end ([`shapes::next_from_tail`]); the page is then read once, lightly: its paging
/// fields (which must agree with that guess, or the guess is dropped and the right page
/// asked for), and its items captured as text (their syntax and UTF-8 checked, not
/// built), so an item is parsed only if something reads it. A page whose items may hold what only a
/// full parse refuses (a number out of range, an escape that is no character, deep
/// nesting: see [`crate::outputs::scan_page`]) is parsed in full, and fails the step as before — its
/// already-asked next page dropped unread: one GET more than the server needed.
pub async fn paginate(
    client: &crate::api::Client,
    call: &CallCtx,
    first: &HttpRequest,
    max_items: Option<u64>,
    sink: &mut (dyn FnMut(Item) + Send),
) -> Result<(u64, Option<u64>), ActionError> {
    let mut pager = Pager {
        first,
        max_items,
        seen: HashSet::new(),
        count: 0,
        empty_run: 0,
    };
    let mut total = None;
    let mut req = first.clone();
    let mut ahead: Option<Prefetch> = None;
    for page_no in 1..=MAX_PAGES {
        let raw = match ahead.take() {
            Some(prefetch) => prefetch.answer().await?,
            None => client.send_raw(&req, call, None).await?,
        };
        // The next page, guessed from the page's last bytes, asked for before the page is
        // read; kept only if the page, once read, points to the same one.
        let mut guessed = pager
            .guess(&raw.bytes)
            .map(|next| (Prefetch::start(client, call, &next), next));
        let unexpected = |m: shapes::BadBody| {
            ActionError::Other(format!(
                "{} {}: unexpected response: {m}",
                req.method.as_str(),
                crate::api::request::display_path(&req.url)
            ))
        };
        let (items, next) = match shapes::page_info(&raw.bytes) {
            Some(info) => {
                if total.is_none() {
                    total = info.total;
                }
                let next = pager.follow(
                    info.items.len(),
                    info.next_cursor,
                    info.cursor_param,
                    page_no,
                );
                if let Ok(Some(next)) = &next {
                    // A wrong guess is dropped (its request aborted).
                    ahead = Some(match guessed.take() {
                        Some((prefetch, guess)) if guess.url == next.url => prefetch,
                        _ => Prefetch::start(client, call, next),
                    });
                }
                let page = crate::outputs::scan_page(&raw.bytes, info.items);
                if page.doubtful {
                    page_of(raw).map_err(unexpected)?;
                }
                (page.items, next)
            }
            // Not a page the light pass reads: the whole body says what is wrong.
            None => {
                let page = page_of(raw).map_err(unexpected)?;
                if total.is_none() {
                    total = page.total;
                }
                let next = pager.follow(
                    page.items.len(),
                    page.next_cursor,
                    page.cursor_param,
                    page_no,
                );
                (page.items.iter().map(Item::from_value).collect(), next)
            }
        };
        for item in items {
            if max_items.is_some_and(|m| pager.count >= m) {
                break;
            }
            sink(item);
            pager.count += 1;
        }
        match next? {
            Some(next) => req = next,
            None => return Ok((pager.count, total)),
        }
    }
    Err(ActionError::Other(format!(
        "GET {}: more than {MAX_PAGES} pages; stopping",
        crate::api::request::display_path(&first.url)
    )))
}

/// A page's items, parsed in full (ids normalised).
fn page_of(raw: crate::api::RawResponse) -> Result<shapes::Page, shapes::BadBody> {
    raw.decoded().json().and_then(shapes::parse_page)
}

/// The rules for going on to the next page.
struct Pager<'a> {
    first: &'a HttpRequest,
    max_items: Option<u64>,
    /// Cursors seen, as digests: a fixed 32 bytes each, however long the cursor.
    seen: HashSet<[u8; 32]>,
    /// Items handed on so far.
    count: u64,
    empty_run: usize,
}

impl Pager<'_> {
    /// The request for the page after `page`, from the paging fields at its end, ahead
    /// of reading it: only where [`Pager::follow`] could agree without the page's item
    /// count (no `max_items`, a cursor not seen and not too long).
    fn guess(&self, page: &[u8]) -> Option<HttpRequest> {
        let (cursor, cursor_param) = shapes::next_from_tail(page)?;
        let fresh = self.max_items.is_none()
            && cursor.len() <= MAX_CURSOR_BYTES
            && !self
                .seen
                .contains(&<[u8; 32]>::from(Sha256::digest(cursor.as_bytes())));
        fresh.then(|| self.request(&cursor, cursor_param))
    }

    fn request(&self, cursor: &str, cursor_param: &str) -> HttpRequest {
        HttpRequest::get(with_query(
            &self.first.url,
            &[(cursor_param.to_string(), cursor.to_string())],
        ))
    }

    /// The next page's request after a page of `items` items (`None`: this was the last
    /// one wanted), or why the server's paging cannot be followed.
    fn follow(
        &mut self,
        items: usize,
        cursor: Option<String>,
        cursor_param: &str,
        page_no: usize,
    ) -> Result<Option<HttpRequest>, ActionError> {
        let shown = || crate::api::request::display_path(&self.first.url);
        self.empty_run = if items == 0 { self.empty_run + 1 } else { 0 };
        if self
            .max_items
            .is_some_and(|m| self.count.saturating_add(items as u64) >= m)
        {
            return Ok(None);
        }
        let Some(cursor) = cursor else {
            return Ok(None);
        };
        if cursor.len() > MAX_CURSOR_BYTES {
            return Err(ActionError::Other(format!(
                "GET {}: the server sent a next cursor of {} bytes on page {page_no}, more than the {} this client follows; stopping",
                shown(),
                cursor.len(),
                MAX_CURSOR_BYTES
            )));
        }
        if self.empty_run >= MAX_EMPTY_PAGES {
            return Err(ActionError::Other(format!(
                "GET {}: {} pages in a row without an item, each with a next cursor (page {page_no}); stopping instead of paging forever",
                shown(),
                self.empty_run
            )));
        }
        if !self.seen.insert(Sha256::digest(cursor.as_bytes()).into()) {
            return Err(ActionError::Other(format!(
                "GET {}: the server returned cursor `{}` twice (page {page_no}); stopping instead of looping forever",
                shown(),
                shapes::shorten(&cursor, 40)
            )));
        }
        Ok(Some(self.request(&cursor, cursor_param)))
    }
}

/// The next page, asked for ahead of need in a task of its own (aborted when dropped:
/// a list that stops early leaves no request behind).
struct Prefetch(tokio::task::JoinHandle<Result<crate::api::RawResponse, crate::api::ApiError>>);

impl Prefetch {
    fn start(client: &crate::api::Client, call: &CallCtx, req: &HttpRequest) -> Self {
        let (client, call, req) = (client.clone(), call.clone(), req.clone());
        Prefetch(tokio::spawn(async move {
            client.send_raw(&req, &call, None).await
        }))
    }

    async fn answer(mut self) -> Result<crate::api::RawResponse, ActionError> {
        match (&mut self.0).await {
            Ok(answer) => Ok(answer?),
            Err(e) => Err(ActionError::Other(format!("internal error: {e}"))),
        }
    }
}

impl Drop for Prefetch {
    fn drop(&mut self) {
        self.0.abort();
    }
}
