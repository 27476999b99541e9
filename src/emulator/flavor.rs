//! The two response shapes of `API.md`: how objects, list pages, export statuses and errors
//! look in the documented flavour and in the current (SDK) flavour.
//!
//! It takes plain records (from `catalog` and `state`) and gives JSON values and error
//! responses. Every difference between the flavours lives here, so routes stay shape-agnostic.
//! It must not read or change state, and it must not parse requests.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::catalog::{iso8601, DatasetInfo, ItemRecord, ProjectInfo};
use super::options::Flavor;
use super::state::{ExportRecord, ExportStage};

/// An error to answer with, in the flavour's body.
#[derive(Debug)]
pub(crate) enum Problem {
    /// 401: no key (`missing`) or a key that is not accepted.
    Unauthorized { missing: bool },
    /// 404 for a dataset, project, export or route.
    NotFound { what: &'static str },
    /// 400 for a query parameter (`limit`).
    InvalidParam {
        field: &'static str,
        message: String,
    },
    /// 400 for a malformed request (bad cursor, bad JSON, bad multipart).
    BadRequest { message: String },
    /// A body that parses but is not acceptable: 422 documented, 400 field map current.
    Validation {
        field: &'static str,
        message: String,
    },
    /// 429 from `--rate-limit`; `Retry-After` is added by the caller.
    RateLimited { retry_after: u64 },
    /// Any status without a specific message (faults, `--fail-rate`).
    Status(StatusCode),
    /// 405 for a route that exists with other methods.
    MethodNotAllowed { method: String },
}

/// A problem with the flavour to render it in: what handlers return as their error.
#[derive(Debug)]
pub(crate) struct Rejection(pub Flavor, pub Problem);

impl IntoResponse for Rejection {
    fn into_response(self) -> Response {
        self.0.problem(self.1)
    }
}

impl Flavor {
    /// The name of the id field: `id` (documented) or `uid` (current).
    pub(crate) fn id_key(self) -> &'static str {
        match self {
            Flavor::Documented => "id",
            Flavor::Current => "uid",
        }
    }

    fn object(self, id: &str, fields: Vec<(&str, Value)>) -> Value {
        let mut map = Map::with_capacity(fields.len() + 1);
        map.insert(self.id_key().to_owned(), Value::from(id));
        for (key, value) in fields {
            map.insert(key.to_owned(), value);
        }
        Value::Object(map)
    }

    pub(crate) fn dataset(self, d: &DatasetInfo, item_count: usize) -> Value {
        self.dataset_in(d, item_count, "created")
    }

    /// A dataset with its status; the current flavour adds `owner_name`.
    pub(crate) fn dataset_in(self, d: &DatasetInfo, item_count: usize, status: &str) -> Value {
        let created = iso8601(d.created_at);
        let mut value = self.object(
            &d.id,
            vec![
                ("name", json!(d.name)),
                ("slug", json!(d.slug)),
                ("item_count", json!(item_count)),
                ("status", json!(status)),
                ("data_type", json!(d.data_type)),
                ("visibility", json!(d.visibility)),
                ("created_at", json!(created)),
                ("updated_at", json!(created)),
            ],
        );
        if self == Flavor::Current {
            value["owner_name"] = json!(d.owner);
        }
        value
    }

    /// An item with the current flavour's extra fields (`dataset_owner_name`,
    /// `dataset_slug`, `updated_at`).
    pub(crate) fn item_of(self, d: &DatasetInfo, item: &ItemRecord, storage_origin: &str) -> Value {
        let mut value = self.item(&d.id, item, storage_origin);
        if self == Flavor::Current {
            value["dataset_owner_name"] = json!(d.owner);
            value["dataset_slug"] = json!(d.slug);
            value["updated_at"] = json!(iso8601(item.created_at));
            value["is_hidden"] = json!(false);
        }
        value
    }

    pub(crate) fn item(self, dataset_id: &str, item: &ItemRecord, storage_origin: &str) -> Value {
        self.object(
            &item.id,
            vec![
                ("key", json!(item.key)),
                ("dataset", json!(dataset_id)),
                (
                    "url",
                    json!(format!("{storage_origin}/items/{dataset_id}/{}", item.id)),
                ),
                ("metadata", item.metadata.clone()),
                ("created_at", json!(iso8601(item.created_at))),
            ],
        )
    }

    pub(crate) fn project(self, p: &ProjectInfo) -> Value {
        let mut value = self.object(
            &p.id,
            vec![
                ("name", json!(p.name)),
                ("status", json!(p.status)),
                ("created_at", json!(iso8601(p.created_at))),
            ],
        );
        if self == Flavor::Current {
            value["updated_at"] = json!(iso8601(p.created_at));
        }
        value
    }

    /// An export's status in this flavour's words: a running export moves one status on per
    /// poll and stays on the last running one until it is done.
    pub(crate) fn export_status(self, stage: ExportStage, polls: u32) -> &'static str {
        let running: &[&'static str] = match self {
            Flavor::Documented => &["pending", "processing"],
            Flavor::Current => &["requested", "pending", "processing"],
        };
        match stage {
            ExportStage::Running => running[(polls as usize).min(running.len() - 1)],
            ExportStage::Ready if self == Flavor::Documented => "completed",
            ExportStage::Ready => "exported",
            ExportStage::Failed => "failed",
        }
    }

    pub(crate) fn export(
        self,
        e: &ExportRecord,
        status: &str,
        download_url: Option<String>,
        failure: Option<&str>,
    ) -> Value {
        let spec = &e.spec;
        let first = |list: &[String]| list.first().map_or(Value::Null, |s| json!(s));
        let mut fields = match self {
            Flavor::Documented => vec![
                ("status", json!(status)),
                ("format", json!(spec.format)),
                ("project_id", first(&spec.projects)),
                ("dataset_id", first(&spec.datasets)),
            ],
            Flavor::Current => vec![
                ("name", json!(spec.name)),
                ("status", json!(status)),
                ("format", json!(spec.format)),
                ("project", first(&spec.projects)),
                ("dataset", first(&spec.datasets)),
                ("projects", json!(spec.projects)),
                ("datasets", json!(spec.datasets)),
                ("slices", json!(spec.slices)),
            ],
        };
        fields.push(("download_url", json!(download_url)));
        fields.push(("created_at", json!(iso8601(e.created_at))));
        fields.push(("updated_at", json!(iso8601(e.updated_at))));
        if let Some(message) = failure {
            fields.push(("message", json!(message)));
        }
        self.object(&e.id, fields)
    }

    /// A list page. `next`/`previous` are cursors (documented) turned into absolute URLs by
    /// `url_for` (current).
    pub(crate) fn page(
        self,
        objects: Vec<Value>,
        total: usize,
        next: Option<String>,
        previous: Option<Option<String>>,
        url_for: impl Fn(Option<&str>) -> String,
    ) -> Value {
        match self {
            Flavor::Documented => json!({
                "items": objects,
                "total": total,
                "has_more": next.is_some(),
                "cursor": next,
            }),
            Flavor::Current => json!({
                "count": total,
                "next": next.as_deref().map(|c| url_for(Some(c))),
                "previous": previous.map(|c| url_for(c.as_deref())),
                "results": objects,
            }),
        }
    }

    /// The error response for a problem, with the flavour's body.
    pub(crate) fn problem(self, problem: Problem) -> Response {
        let (status, code, message, field) = describe(&problem);
        let body = match self {
            Flavor::Documented => {
                let details = match field {
                    Some(field) => json!([{ "field": field, "message": message }]),
                    None => json!([]),
                };
                json!({ "error": { "code": code, "message": message, "details": details } })
            }
            Flavor::Current => match (&problem, field) {
                (Problem::InvalidParam { .. } | Problem::Validation { .. }, Some(field)) => {
                    json!({ field: [message] })
                }
                _ => json!({ "detail": current_detail(&problem, &message) }),
            },
        };
        let status = match (self, &problem) {
            (Flavor::Current, Problem::Validation { .. }) => StatusCode::BAD_REQUEST,
            _ => status,
        };
        json_response(status, &body)
    }
}

/// Status, documented error code, message and offending field of a problem.
fn describe(problem: &Problem) -> (StatusCode, String, String, Option<&'static str>) {
    match problem {
        Problem::Unauthorized { missing: true } => (
            StatusCode::UNAUTHORIZED,
            "unauthorized".into(),
            "Missing API key: send it in the X-Avala-Api-Key header".into(),
            None,
        ),
        Problem::Unauthorized { missing: false } => (
            StatusCode::UNAUTHORIZED,
            "unauthorized".into(),
            "Invalid API key".into(),
            None,
        ),
        Problem::NotFound { what } => (
            StatusCode::NOT_FOUND,
            "not_found".into(),
            format!("{what} not found"),
            None,
        ),
        Problem::InvalidParam { field, message } => (
            StatusCode::BAD_REQUEST,
            "invalid_parameter".into(),
            message.clone(),
            Some(*field),
        ),
        Problem::BadRequest { message } => (
            StatusCode::BAD_REQUEST,
            "bad_request".into(),
            message.clone(),
            None,
        ),
        Problem::Validation { field, message } => (
            StatusCode::UNPROCESSABLE_ENTITY,
            "validation_error".into(),
            message.clone(),
            Some(*field),
        ),
        Problem::RateLimited { retry_after } => (
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited".into(),
            format!("Too many requests; retry after {retry_after} s"),
            None,
        ),
        Problem::MethodNotAllowed { method } => (
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed".into(),
            format!("Method \"{method}\" not allowed."),
            None,
        ),
        Problem::Status(status) => {
            let reason = status.canonical_reason().unwrap_or("Error");
            let code = reason.to_ascii_lowercase().replace([' ', '-'], "_");
            (*status, code, reason.to_owned(), None)
        }
    }
}

/// The `detail` text the current (Django REST Framework) API sends for a problem.
fn current_detail(problem: &Problem, message: &str) -> String {
    match problem {
        Problem::Unauthorized { missing: true } => {
            "Authentication credentials were not provided.".into()
        }
        Problem::Unauthorized { missing: false } => "Invalid API key.".into(),
        Problem::NotFound { .. } => "Not found.".into(),
        Problem::RateLimited { retry_after } => format!(
            "Request was throttled. Expected available in {retry_after} second{}.",
            if *retry_after == 1 { "" } else { "s" }
        ),
        _ => message.to_owned(),
    }
}

/// A JSON response with an exact Content-Length.
pub(crate) fn json_response(status: StatusCode, body: &Value) -> Response {
    let bytes = serde_json::to_vec(body).expect("JSON values serialize");
    let mut response = (status, bytes).into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn running_exports_move_one_status_per_poll() {
        let running = |flavor: Flavor| -> Vec<_> {
            (0..4)
                .map(|polls| flavor.export_status(ExportStage::Running, polls))
                .collect()
        };
        assert_eq!(
            running(Flavor::Documented),
            ["pending", "processing", "processing", "processing"]
        );
        assert_eq!(
            running(Flavor::Current),
            ["requested", "pending", "processing", "processing"]
        );
        assert_eq!(
            Flavor::Current.export_status(ExportStage::Ready, 0),
            "exported"
        );
        assert_eq!(
            Flavor::Documented.export_status(ExportStage::Failed, 9),
            "failed"
        );
    }
}
