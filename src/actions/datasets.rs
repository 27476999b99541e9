//! Datasets by id or by owner/slug: `datasets.get`, `datasets.create` (and waiting until
//! a new dataset is `created`), `items.get`, and [`DatasetRef`], which `items.list` and
//! the upload actions share. Today's API addresses a dataset's items by owner and slug
//! (`/datasets/{owner}/{slug}/items/`); given only an id, the dataset is looked up first.
//!
//! Takes: rendered inputs. Gives: the dataset or item as the server sent it.
//! Must not: guess an owner or a slug: they come from the input or from the server.

use std::time::Duration;

use serde_json::{json, Value};

use super::{
    shown_duration, Action, ActionError, ActionPlan, ActionResult, Inputs, Repeats, RunCtx,
};
use crate::api::request::{Body, HttpRequest, Method};
use crate::api::{Endpoint, Target};
use crate::pipeline::model::{format_duration, ApiFlavor};
use crate::pipeline::spec::{dflt, opt, req, ActionSpec, Field, Ty};
use crate::template::{Later, Piece, Text};

/// A dataset as a pipeline names it.
#[derive(Clone, Debug)]
pub enum DatasetRef {
    /// Its id (`uid` in today's API).
    Id(Text),
    /// `owner/slug`, as today's API addresses items.
    OwnerSlug { owner: Text, slug: Text },
}

impl DatasetRef {
    /// Reads `f`: `owner/slug` when the text has one `/` between two non-empty parts,
    /// else an id.
    pub fn read(inputs: &Inputs, f: &Field) -> Result<Self, ActionError> {
        let text = inputs.required_text(f)?;
        Ok(match split_owner_slug(&text) {
            Some((owner, slug)) => DatasetRef::OwnerSlug { owner, slug },
            None => DatasetRef::Id(text),
        })
    }

    /// `GET /datasets/{uid}/`, when today's API needs an owner and a slug and only the id
    /// is known.
    pub fn lookup(&self, endpoint: &Endpoint) -> Option<HttpRequest> {
        match (self, endpoint.flavor) {
            (DatasetRef::Id(id), ApiFlavor::Current) => Some(HttpRequest::to(
                Method::Get,
                endpoint.at("/datasets/{}", &[id]),
            )),
            _ => None,
        }
    }

    /// The same dataset by owner and slug, looked up when needed (a run).
    pub async fn resolved(self, ctx: &RunCtx<'_>) -> Result<DatasetRef, ActionError> {
        let Some(req) = self.lookup(ctx.client.endpoint()) else {
            return Ok(self);
        };
        let body = super::fetch_json(ctx, &req).await?;
        let field = |name: &str| body.get(name).and_then(Value::as_str).map(str::to_string);
        match (field("owner_name"), field("slug")) {
            (Some(owner), Some(slug)) => Ok(DatasetRef::OwnerSlug {
                owner: Text::Known(owner),
                slug: Text::Known(slug),
            }),
            _ => Err(ActionError::Other(format!(
                "GET {}: the dataset has no `owner_name` and `slug`, which today's API needs to address its items",
                crate::api::request::display_path(&req.url)
            ))),
        }
    }

    /// The URL of `sub` (`""`, `/items`, `/items/{}`) under the dataset, for the flavour
    /// in force; `more` fills the holes of `sub`.
    pub fn path(
        &self,
        endpoint: &Endpoint,
        sub: &str,
        more: &[&Text],
    ) -> Result<Target, ActionError> {
        match (self, endpoint.flavor) {
            (DatasetRef::Id(id), ApiFlavor::Documented) => {
                let args: Vec<&Text> = std::iter::once(id).chain(more.iter().copied()).collect();
                Ok(endpoint.at(&format!("/datasets/{{}}{sub}"), &args))
            }
            (DatasetRef::OwnerSlug { owner, slug }, ApiFlavor::Current) => {
                let args: Vec<&Text> = [owner, slug].into_iter().chain(more.iter().copied()).collect();
                Ok(endpoint.at(&format!("/datasets/{{}}/{{}}{sub}"), &args))
            }
            // A plan of today's API before the lookup: owner and slug come from it.
            (DatasetRef::Id(id), ApiFlavor::Current) => {
                let of = |what: &str| Text::Later(Later::whole(format!("{what} of dataset {}", id.shown())));
                let (owner, slug) = (of("owner_name"), of("slug"));
                let args: Vec<&Text> = [&owner, &slug].into_iter().chain(more.iter().copied()).collect();
                Ok(endpoint.at(&format!("/datasets/{{}}/{{}}{sub}"), &args))
            }
            (DatasetRef::OwnerSlug { .. }, ApiFlavor::Documented) => Err(ActionError::Input(format!(
                "a dataset given as `owner/slug` is addressed only by today's API; give its id, or {}",
                endpoint.flavor_hint()
            ))),
        }
    }

    /// The dataset itself: by id in either API, or by owner/slug in today's.
    fn get(&self, endpoint: &Endpoint) -> Result<HttpRequest, ActionError> {
        let target = match self {
            DatasetRef::Id(id) => endpoint.at("/datasets/{}", &[id]),
            DatasetRef::OwnerSlug { .. } => self.path(endpoint, "", &[])?,
        };
        Ok(HttpRequest::to(Method::Get, target))
    }
}

/// `owner/slug`: one `/` between two non-empty parts (known now, or after the run).
fn split_owner_slug(text: &Text) -> Option<(Text, Text)> {
    match text {
        Text::Known(s) => {
            let (owner, slug) = s.split_once('/')?;
            (!owner.is_empty() && !slug.is_empty() && !slug.contains('/'))
                .then(|| (Text::Known(owner.into()), Text::Known(slug.into())))
        }
        Text::Later(later) => {
            let pieces = later.pieces();
            let slashes: usize = pieces
                .iter()
                .map(|p| match p {
                    Piece::Text(t) => t.matches('/').count(),
                    Piece::Unknown(_) => 0,
                })
                .sum();
            if slashes != 1 {
                return None;
            }
            let at = pieces
                .iter()
                .position(|p| matches!(p, Piece::Text(t) if t.contains('/')))?;
            let Piece::Text(t) = &pieces[at] else {
                return None;
            };
            let (before, after) = t.split_once('/')?;
            let mut owner = pieces[..at].to_vec();
            owner.push(Piece::Text(before.into()));
            let mut slug = vec![Piece::Text(after.into())];
            slug.extend_from_slice(&pieces[at + 1..]);
            let side = |p: Vec<Piece>| {
                let l = Later::from_pieces(
                    p.into_iter()
                        .filter(|p| !matches!(p, Piece::Text(t) if t.is_empty()))
                        .collect(),
                );
                (!l.pieces().is_empty()).then_some(Text::Later(l))
            };
            Some((side(owner)?, side(slug)?))
        }
    }
}

const DATASET: Field = req("dataset", Ty::Str, "Dataset id, or `owner/slug`.");
const ITEM: Field = req("item", Ty::Str, "Item id.");

/// `datasets.get`.
pub struct DatasetsGet;

impl Action for DatasetsGet {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "datasets.get",
        summary: "GET /datasets/{dataset} (today's API: by uid, or /datasets/{owner}/{slug}/).",
        inputs: &[DATASET],
        one_of: &[],
        outputs: &[
            ("id", "Dataset id."),
            ("status", "`creating` or `created` (today's API)."),
            ("...", "Every other field of the dataset."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let req = DatasetRef::read(inputs, &DATASET)?.get(endpoint)?;
        Ok(ActionPlan {
            requests: vec![req],
            ..ActionPlan::default()
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let req = DatasetRef::read(inputs, &DATASET)?.get(ctx.client.endpoint())?;
        Ok(super::fetch_json(ctx, &req).await?.into())
    }
}

/// `items.get`.
pub struct ItemsGet;

impl ItemsGet {
    fn request(
        inputs: &Inputs,
        endpoint: &Endpoint,
        dataset: &DatasetRef,
    ) -> Result<HttpRequest, ActionError> {
        let item = inputs.required_text(&ITEM)?;
        Ok(HttpRequest::to(
            Method::Get,
            dataset.path(endpoint, "/items/{}", &[&item])?,
        ))
    }
}

impl Action for ItemsGet {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "items.get",
        summary: "GET /datasets/{dataset}/items/{item} (today's API: /datasets/{owner}/{slug}/items/{item}/).",
        inputs: &[DATASET, ITEM],
        one_of: &[],
        outputs: &[
            ("id", "Item id."),
            ("key", "Its path in the dataset."),
            ("url", "Where its bytes are (today's API)."),
            ("...", "Every other field of the item."),
        ],
        changes_server: false,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        let dataset = DatasetRef::read(inputs, &DATASET)?;
        let mut requests: Vec<HttpRequest> = dataset.lookup(endpoint).into_iter().collect();
        requests.push(Self::request(inputs, endpoint, &dataset)?);
        Ok(ActionPlan {
            requests,
            ..ActionPlan::default()
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        let dataset = DatasetRef::read(inputs, &DATASET)?.resolved(ctx).await?;
        let req = Self::request(inputs, ctx.client.endpoint(), &dataset)?;
        Ok(super::fetch_json(ctx, &req).await?.into())
    }
}

const NAME: Field = req("name", Ty::Str, "Dataset name.");
const SLUG: Field = opt(
    "slug",
    Ty::Str,
    "URL name (default: the name in lower case, runs of other characters as `-`).",
);
pub const DATA_TYPE: Field = dflt(
    "data_type",
    Ty::Enum(&["image", "video", "lidar", "mcap", "splat"]),
    "image",
    "What the dataset holds.",
);
pub const VISIBILITY: Field = dflt(
    "visibility",
    Ty::Enum(&["private", "public"]),
    "private",
    "Who can see it.",
);
pub const WAIT: Field = dflt(
    "wait",
    Ty::Bool,
    "true",
    "Wait until the dataset is `created`.",
);
pub const WAIT_TIMEOUT: Field = dflt(
    "timeout",
    Ty::Duration,
    "1h",
    "How long to wait for `created`.",
);

/// `datasets.create`.
pub struct DatasetsCreate;

/// A new dataset's description, as today's API takes it.
pub struct NewDataset {
    pub name: Text,
    pub slug: Text,
    pub data_type: String,
    pub visibility: String,
    pub wait: bool,
    pub timeout: Option<Duration>,
}

impl NewDataset {
    pub fn read(inputs: &Inputs, name: &Field, slug: &Field) -> Result<Self, ActionError> {
        let name = inputs.required_text(name)?;
        let slug = match inputs.text(slug)? {
            Some(s) => s,
            None => match &name {
                Text::Known(n) => Text::Known(slugify(n)),
                Text::Later(l) => Text::Later(Later::whole(format!("the slug of {}", l.shown()))),
            },
        };
        let shown = |f: &Field| -> Result<String, ActionError> {
            Ok(inputs
                .text(f)?
                .map_or_else(|| f.default.unwrap_or("").to_string(), |t| t.shown()))
        };
        Ok(NewDataset {
            name,
            slug,
            data_type: shown(&DATA_TYPE)?,
            visibility: shown(&VISIBILITY)?,
            wait: inputs.flag(&WAIT)?,
            timeout: inputs.duration(&WAIT_TIMEOUT)?,
        })
    }

    /// The body of `POST /datasets/` (and of the upload's finalize).
    pub fn body(&self) -> serde_json::Map<String, Value> {
        let mut body = serde_json::Map::new();
        body.insert("name".into(), json!(self.name.shown()));
        body.insert("slug".into(), json!(self.slug.shown()));
        body.insert("data_type".into(), json!(self.data_type));
        body.insert("visibility".into(), json!(self.visibility));
        body.insert("create_metadata".into(), json!(true));
        body
    }

    /// How waiting for `created` repeats, for the plan.
    pub fn repeats(&self) -> Option<Repeats> {
        self.wait.then(|| Repeats::Poll {
            interval: "2s".into(),
            max_interval: "10s".into(),
            timeout: shown_duration(self.timeout),
            until: "the dataset's status is created".into(),
            fail_if: Some("its status is failed or error".into()),
        })
    }
}

/// A slug from a name: lower case ASCII letters and digits, other runs as one `-`.
pub fn slugify(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.ends_with('-') {
            out.push('-');
        }
    }
    out.trim_matches('-').to_string()
}

/// Only today's API creates datasets.
pub fn needs_current(endpoint: &Endpoint, action: &str, what: &str) -> Result<(), ActionError> {
    match endpoint.flavor {
        ApiFlavor::Current => Ok(()),
        ApiFlavor::Documented => Err(ActionError::Input(format!(
            "{action}: {what} exists only in today's API; {}",
            endpoint.flavor_hint()
        ))),
    }
}

fn create_request(new: &NewDataset, endpoint: &Endpoint) -> HttpRequest {
    HttpRequest::to(Method::Post, endpoint.at("/datasets", &[]))
        .with_body(Body::Json(Value::Object(new.body())))
}

impl Action for DatasetsCreate {
    const SPEC: &'static ActionSpec = &ActionSpec {
        name: "datasets.create",
        summary: "POST /datasets/ (today's API), then GET /datasets/{uid}/ until it is created.",
        inputs: &[NAME, SLUG, DATA_TYPE, VISIBILITY, WAIT, WAIT_TIMEOUT],
        one_of: &[],
        outputs: &[
            ("id", "Dataset id."),
            (
                "owner_name",
                "Its owner (the `{owner}` of owner/slug paths).",
            ),
            ("slug", "Its slug."),
            ("status", "`created` (or `creating` with `wait: false`)."),
            ("...", "Every other field of the dataset."),
        ],
        changes_server: true,
    };

    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
        needs_current(endpoint, "datasets.create", "creating a dataset")?;
        let new = NewDataset::read(inputs, &NAME, &SLUG)?;
        let mut requests = vec![create_request(&new, endpoint)];
        if new.wait {
            let uid = Text::Later(Later::whole("the new dataset's uid"));
            requests.push(HttpRequest::to(
                Method::Get,
                endpoint.at("/datasets/{}", &[&uid]),
            ));
        }
        Ok(ActionPlan {
            repeats: new.repeats(),
            requests,
            notes: vec![],
        })
    }

    async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
        needs_current(
            ctx.client.endpoint(),
            "datasets.create",
            "creating a dataset",
        )?;
        let new = NewDataset::read(inputs, &NAME, &SLUG)?;
        let req = create_request(&new, ctx.client.endpoint());
        // An earlier attempt (same inputs) created it and was cut short: re-attach.
        let created = match ctx.journal.dataset() {
            Some(uid) => get_dataset(&uid, ctx).await?,
            None => {
                let created = super::fetch_json(ctx, &req).await?;
                if let Some(uid) = dataset_uid(&created) {
                    ctx.journal.dataset_created(uid);
                }
                created
            }
        };
        if !new.wait {
            return Ok(created.into());
        }
        Ok(wait_created(&created, new.timeout.unwrap_or_default(), ctx)
            .await?
            .into())
    }
}

/// A dataset's id as the server gives it (`uid` today, `id` in the documented shape).
pub fn dataset_uid(dataset: &Value) -> Option<&str> {
    dataset
        .get("uid")
        .or_else(|| dataset.get("id"))
        .and_then(Value::as_str)
}

/// `GET /datasets/{uid}/`.
pub async fn get_dataset(uid: &str, ctx: &RunCtx<'_>) -> Result<Value, ActionError> {
    let req = HttpRequest::to(
        Method::Get,
        ctx.client
            .endpoint()
            .at("/datasets/{}", &[&Text::Known(uid.to_string())]),
    );
    super::fetch_json(ctx, &req).await
}

/// Polls `GET /datasets/{uid}/` until the dataset is `created` (every 2s, growing to 10s).
pub async fn wait_created(
    dataset: &Value,
    timeout: Duration,
    ctx: &RunCtx<'_>,
) -> Result<Value, ActionError> {
    let uid = dataset
        .get("id")
        .or_else(|| dataset.get("uid"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ActionError::Other(format!(
                "the created dataset has no uid: {}",
                crate::api::shapes::shorten(&dataset.to_string(), 200)
            ))
        })?
        .to_string();
    let req = HttpRequest::to(
        Method::Get,
        ctx.client
            .endpoint()
            .at("/datasets/{}", &[&Text::Known(uid.clone())]),
    );
    let mut poller = super::Poller::new(Duration::from_secs(2), Duration::from_secs(10), timeout);
    let mut current = dataset.clone();
    loop {
        match current.get("status").and_then(Value::as_str) {
            Some("created") => return Ok(current),
            Some(s @ ("failed" | "error")) => {
                return Err(ActionError::Other(format!("dataset {uid} is {s}")))
            }
            _ => {}
        }
        if poller.out_of_time() {
            return Err(ActionError::Other(format!(
                "dataset {uid} is still `{}` after {}; timed out waiting for `created` (timeout: {})",
                current.get("status").and_then(Value::as_str).unwrap_or("?"),
                poller.waited(),
                format_duration(timeout)
            )));
        }
        poller.pause(ctx, "while waiting for the dataset").await?;
        current = super::fetch_json(ctx, &req).await?;
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn slugs() {
        assert_eq!(
            super::slugify("Nightly Frames 2026!"),
            "nightly-frames-2026"
        );
        assert_eq!(super::slugify("  a__b  "), "a-b");
    }
}
