//! The API routes under `/api/v1` and the storage routes, wired into two axum routers.
//!
//! It takes a parsed request and gives a response, reading and changing `state` and drawing
//! every shape from `flavor`. Every route answers with and without a trailing slash.
//! Must not: check keys, limits or faults (that is `gate`, wrapped around both routers here).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::multipart::{Multipart, MultipartRejection};
use axum::extract::{DefaultBodyLimit, Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::middleware;
use axum::response::Response;
use axum::routing::{get, post, put, MethodRouter};
use axum::{Extension, Router};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::catalog;
use super::flavor::{json_response, Problem, Rejection};
use super::gate::{self, Gate, RepeatCursor};
use super::options::Flavor;
use super::paging::ListQuery;
use super::state::{ExportRecord, ExportSpec, ExportStage, Origin, Shared};
use super::storage;

pub(crate) type Reply = Result<Response, Rejection>;

/// The router of the API listener: the flavour's routes; in the current flavour every other
/// path goes to the table-driven resources of `resources`.
pub(crate) fn api_router(shared: Arc<Shared>) -> Router {
    let router = match shared.options.flavor {
        Flavor::Documented => documented_routes(),
        Flavor::Current => current_routes(shared.options.legacy_item_routes),
    };
    router
        .fallback(fallback)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            Gate::new(shared.clone(), Origin::Api),
            gate::gate,
        ))
        .with_state(shared)
}

/// Paths no route matched: the table-driven resources (current flavour), else 404. Only a
/// table path reads the body (bounded), so a large body to an unknown path is still a 404.
async fn fallback(State(shared): State<Arc<Shared>>, request: axum::extract::Request) -> Response {
    let flavor = shared.options.flavor;
    if flavor == Flavor::Current && super::resources::knows(request.uri().path()) {
        let (parts, body) = request.into_parts();
        let Ok(body) = axum::body::to_bytes(body, RESOURCE_BODY_LIMIT).await else {
            return flavor.problem(Problem::Status(StatusCode::PAYLOAD_TOO_LARGE));
        };
        let (method, uri, headers) = (&parts.method, &parts.uri, &parts.headers);
        if let Some(response) = super::resources::dispatch(&shared, method, uri, headers, &body) {
            return response;
        }
    }
    flavor.problem(Problem::NotFound { what: "Route" })
}

/// The largest JSON body the table-driven resources read.
const RESOURCE_BODY_LIMIT: usize = 2 * 1024 * 1024;

async fn method_not_allowed(
    State(shared): State<Arc<Shared>>,
    method: axum::http::Method,
) -> Response {
    shared.options.flavor.problem(Problem::MethodNotAllowed {
        method: method.to_string(),
    })
}

/// The routes of Avala's REST-over-HTTP page.
fn documented_routes() -> Router<Arc<Shared>> {
    let routes = [
        ("/api/v1/datasets", get(list_datasets)),
        ("/api/v1/datasets/{id}", get(get_dataset)),
        (
            "/api/v1/datasets/{id}/items",
            get(list_items)
                .post(upload_item)
                .layer(DefaultBodyLimit::disable()),
        ),
        ("/api/v1/exports", get(list_exports).post(create_export)),
        ("/api/v1/exports/{id}", get(get_export)),
        ("/api/v1/projects", get(list_projects)),
        ("/api/v1/projects/{id}", get(get_project)),
        ("/api/v1/users/me/projects", get(list_projects)),
    ];
    with_slashes(routes)
}

/// The pipeline routes of today's API (`API.md`, "Today's API in detail"). There is no
/// `GET /datasets/{uid}/items/` and no multipart items POST here: today's API has neither.
fn current_routes(legacy_item_routes: bool) -> Router<Arc<Shared>> {
    use super::today;
    let upload = "/api/v1/datasets/manual-upload";
    let routes = [
        ("/api/v1/users/me", get(today::users_me)),
        (
            "/api/v1/datasets",
            get(today::list_datasets).post(today::create_dataset),
        ),
        ("/api/v1/datasets/{id}", get(today::get_dataset)),
        (
            "/api/v1/datasets/{owner}/{slug}",
            get(today::get_dataset_by_slug),
        ),
        (
            "/api/v1/datasets/{owner}/{slug}/items",
            get(today::list_items),
        ),
        (
            "/api/v1/datasets/{owner}/{slug}/items/{item}",
            get(today::get_item),
        ),
        (upload, post(today::finalize)),
        ("/api/v1/datasets/manual-upload/quota", get(today::quota)),
        (
            "/api/v1/datasets/manual-upload/allowed-mimes",
            get(today::allowed_mimes),
        ),
        (
            "/api/v1/datasets/manual-upload/file-upload-url",
            post(today::presign),
        ),
        (
            "/api/v1/datasets/manual-upload/uploads/{upload}/parts",
            post(today::sign_parts),
        ),
        (
            "/api/v1/datasets/manual-upload/uploads/{upload}/complete",
            post(today::complete),
        ),
        ("/api/v1/exports", get(list_exports).post(create_export)),
        ("/api/v1/exports/{id}", get(get_export)),
        ("/api/v1/projects", get(list_projects)),
        ("/api/v1/projects/{id}", get(get_project)),
        ("/api/v1/users/me/projects", get(list_projects)),
        ("/api/v1/users/me/projects/{id}", get(get_project)),
        ("/api/v1/tasks", get(today::list_tasks)),
        ("/api/v1/tasks/{id}", get(today::get_task)),
        (
            "/api/v1/fleet/recordings/{recording}/upload/init",
            post(super::fleet::init),
        ),
        (
            "/api/v1/fleet/recordings/{recording}/upload/urls",
            post(super::fleet::urls),
        ),
        (
            "/api/v1/fleet/recordings/{recording}/upload/confirm",
            post(super::fleet::confirm),
        ),
        (
            "/api/v1/fleet/recordings/{recording}/upload/finalize",
            post(super::fleet::finalize),
        ),
        (
            "/api/v1/fleet/recordings/{recording}/upload/status",
            get(super::fleet::status),
        ),
    ];
    let router = with_slashes(routes);
    if !legacy_item_routes {
        return router;
    }
    router.merge(with_slashes([(
        "/api/v1/datasets/{owner}/items",
        get(list_items)
            .post(upload_item)
            .layer(DefaultBodyLimit::disable()),
    )]))
}

/// The router of the storage listener (no key needed).
pub(crate) fn storage_router(shared: Arc<Shared>) -> Router {
    with_slashes([
        ("/exports/{file}", get(storage::download)),
        ("/items/{dataset}/{item}", get(storage::item_bytes)),
        (
            "/bucket",
            post(storage::form_upload).layer(DefaultBodyLimit::disable()),
        ),
        ("/bucket/{object}", put(storage::put_upload)),
        ("/_emulator/stats", get(limit_stats)),
    ])
    // A catch-all route: object keys of fleet uploads, slashes and all.
    .route("/fleet/{*key}", put(super::fleet::put))
    .fallback(|| async {
        storage::s3_error(
            StatusCode::NOT_FOUND,
            "NoSuchKey",
            "The specified key does not exist.",
        )
    })
    .layer(middleware::from_fn_with_state(
        Gate::new(shared.clone(), Origin::Storage),
        gate::gate,
    ))
    .with_state(shared)
}

/// `GET /_emulator/stats` on the storage origin (no key, not counted against any limit):
/// the emulator's [`super::LimitStats`] as JSON, for benchmarks in another process.
async fn limit_stats(State(shared): State<Arc<Shared>>) -> Response {
    let stats = serde_json::to_value(shared.limits.stats()).unwrap_or(Value::Null);
    json_response(StatusCode::OK, &stats)
}

fn with_slashes<const N: usize>(
    routes: [(&str, MethodRouter<Arc<Shared>>); N],
) -> Router<Arc<Shared>> {
    routes
        .into_iter()
        .fold(Router::new(), |router, (path, method_router)| {
            router
                .route(path, method_router.clone())
                .route(&format!("{path}/"), method_router)
        })
}

// ---- datasets and items ----------------------------------------------------------------

async fn list_datasets(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let query = list_query(&shared, &uri, &headers)?;
    let total = shared.catalog.dataset_count();
    let datasets: Vec<_> = query
        .window(total)
        .filter_map(|i| shared.catalog.dataset_at(i))
        .collect();
    let counts = shared.item_counts(&datasets);
    let flavor = shared.options.flavor;
    let objects = datasets
        .iter()
        .zip(counts)
        .map(|(d, count)| flavor.dataset(d, count))
        .collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

async fn get_dataset(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Reply {
    let dataset = find_dataset(&shared, &id)?;
    let count = shared.item_count(&dataset);
    Ok(ok(shared.options.flavor.dataset(&dataset, count)))
}

async fn list_items(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let dataset = find_dataset(&shared, &id)?;
    let query = list_query(&shared, &uri, &headers)?;
    let (items, total) = shared.items_page(&dataset, query.offset, query.limit);
    let flavor = shared.options.flavor;
    let objects = items
        .iter()
        .map(|item| flavor.item(&dataset.id, item, &shared.storage_origin))
        .collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

/// `POST /datasets/{id}/items`: one multipart part named `file`, hashed as it streams in.
async fn upload_item(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Reply {
    let flavor = shared.options.flavor;
    let dataset = find_dataset(&shared, &id)?;
    let bad = |message: String| Rejection(flavor, Problem::BadRequest { message });
    let mut multipart = multipart.map_err(|e| bad(e.body_text()))?;
    let mut received = None;
    while let Some(mut field) = multipart
        .next_field()
        .await
        .map_err(|e| bad(e.body_text()))?
    {
        if field.name() != Some("file") {
            continue;
        }
        if received.is_some() {
            return Err(bad("Send one part named \"file\" per request".into()));
        }
        let name = field.file_name().map(str::to_owned);
        let content_type = field.content_type().map(str::to_owned);
        let (mut hasher, mut size) = (Sha256::new(), 0u64);
        // The bytes go to a file of the storage origin, so the item's `url` serves them.
        let path = storage::new_blob_path(&shared);
        let mut file = tokio::fs::File::create(&path)
            .await
            .map_err(|e| bad(e.to_string()))?;
        while let Some(chunk) = field.chunk().await.map_err(|e| bad(e.body_text()))? {
            hasher.update(&chunk);
            size += chunk.len() as u64;
            file.write_all(&chunk)
                .await
                .map_err(|e| bad(e.to_string()))?;
        }
        file.flush().await.map_err(|e| bad(e.to_string()))?;
        received = Some((
            name,
            content_type,
            size,
            hex::encode(hasher.finalize()),
            path,
        ));
    }
    let Some((name, content_type, size, sha256, path)) = received else {
        return Err(Rejection(
            flavor,
            Problem::Validation {
                field: "file",
                message: "The multipart body has no part named \"file\".".into(),
            },
        ));
    };
    let name = name.unwrap_or_else(|| "upload".into());
    let item = shared.add_upload(&dataset, name, size, sha256, content_type);
    shared
        .manual
        .lock()
        .expect("manual lock")
        .item_files
        .insert(item.id.clone(), (size, vec![path]));
    Ok(json_response(
        StatusCode::CREATED,
        &flavor.item(&dataset.id, &item, &shared.storage_origin),
    ))
}

// ---- exports -----------------------------------------------------------------------------

async fn create_export(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let flavor = shared.options.flavor;
    let object: Map<String, Value> = serde_json::from_slice(&body).map_err(|e| {
        let message = format!("The body is not a JSON object: {e}");
        Rejection(flavor, Problem::BadRequest { message })
    })?;
    let request = parse_export_request(flavor, &object).map_err(|p| Rejection(flavor, p))?;
    for project in &request.projects {
        if shared.catalog.find_project(project).is_none() {
            return Err(Rejection(flavor, Problem::NotFound { what: "Project" }));
        }
    }
    for dataset in &request.datasets {
        find_dataset(&shared, dataset)?;
    }
    let Some(export) = shared.add_export(request) else {
        let mut response = flavor.problem(Problem::RateLimited { retry_after: 1 });
        response.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("1"),
        );
        return Ok(response);
    };
    Ok(json_response(
        StatusCode::CREATED,
        &export_json(&shared, &export),
    ))
}

/// Reads the flavour's export body: documented `{project_id, dataset_id, format}`; current
/// `{project, dataset}` or `{name, format, projects: [], datasets: [], slices: []}`.
fn parse_export_request(flavor: Flavor, body: &Map<String, Value>) -> Result<ExportSpec, Problem> {
    let text = |key: &'static str| -> Result<Option<String>, Problem> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) if !s.is_empty() => Ok(Some(s.clone())),
            Some(_) => Err(Problem::Validation {
                field: key,
                message: format!("{key} must be a non-empty string."),
            }),
        }
    };
    let list = |key: &'static str| -> Result<Vec<String>, Problem> {
        match body.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| v.as_str().filter(|s| !s.is_empty()).map(str::to_owned))
                .collect::<Option<Vec<_>>>()
                .ok_or(Problem::Validation {
                    field: key,
                    message: format!("{key} must be a list of ids."),
                }),
            Some(_) => Err(Problem::Validation {
                field: key,
                message: format!("{key} must be a list of ids."),
            }),
        }
    };
    let format = text("format")?.unwrap_or_else(|| "json".into());
    let request = match flavor {
        Flavor::Documented => ExportSpec {
            name: text("name")?,
            format,
            projects: text("project_id")?.into_iter().collect(),
            datasets: text("dataset_id")?.into_iter().collect(),
            slices: Vec::new(),
        },
        Flavor::Current => {
            let mut projects: Vec<String> = text("project")?.into_iter().collect();
            projects.extend(list("projects")?);
            let mut datasets: Vec<String> = text("dataset")?.into_iter().collect();
            datasets.extend(list("datasets")?);
            ExportSpec {
                name: text("name")?,
                format,
                projects,
                datasets,
                slices: list("slices")?,
            }
        }
    };
    if request.projects.is_empty() && request.datasets.is_empty() && request.slices.is_empty() {
        return Err(match flavor {
            Flavor::Documented => Problem::Validation {
                field: "project_id",
                message: "One of project_id or dataset_id is required.".into(),
            },
            Flavor::Current => Problem::Validation {
                field: "non_field_errors",
                message: "Provide a project, a dataset, or lists of projects, datasets or slices."
                    .into(),
            },
        });
    }
    Ok(request)
}

async fn list_exports(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let query = list_query(&shared, &uri, &headers)?;
    let (exports, total) = shared.exports_page(query.offset, query.limit);
    let objects = exports.iter().map(|e| export_json(&shared, e)).collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

/// `GET /exports/{id}`: each call is a poll that moves the export one stage on.
async fn get_export(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Reply {
    let flavor = shared.options.flavor;
    let export = shared
        .export(&id, true)
        .ok_or(Rejection(flavor, Problem::NotFound { what: "Export" }))?;
    Ok(ok(export_json(&shared, &export)))
}

fn export_json(shared: &Shared, export: &ExportRecord) -> Value {
    let flavor = shared.options.flavor;
    let stage = shared.export_stage(export);
    let url = (stage == ExportStage::Ready).then(|| storage::download_url(shared, export));
    let failure = (stage == ExportStage::Failed)
        .then_some("Export failed: the emulator was started with --fail-export.");
    let status = flavor.export_status(stage, export.polls);
    flavor.export(export, status, url, failure)
}

// ---- projects ----------------------------------------------------------------------------

async fn list_projects(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let query = list_query(&shared, &uri, &headers)?;
    let total = shared.catalog.project_count();
    let flavor = shared.options.flavor;
    let objects = query
        .window(total)
        .filter_map(|i| shared.catalog.project_at(i))
        .map(|p| flavor.project(&p))
        .collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

async fn get_project(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Reply {
    let flavor = shared.options.flavor;
    let project = shared
        .catalog
        .find_project(&id)
        .ok_or(Rejection(flavor, Problem::NotFound { what: "Project" }))?;
    Ok(ok(flavor.project(&project)))
}

// ---- helpers -----------------------------------------------------------------------------

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}

fn find_dataset(shared: &Shared, id: &str) -> Result<catalog::DatasetInfo, Rejection> {
    let flavor = shared.options.flavor;
    let not_found = || Rejection(flavor, Problem::NotFound { what: "Dataset" });
    shared.find_dataset(id).ok_or_else(not_found)
}

pub(crate) fn list_query(
    shared: &Shared,
    uri: &Uri,
    headers: &HeaderMap,
) -> Result<ListQuery, Rejection> {
    ListQuery::parse(uri, headers, &shared.api_origin)
        .map_err(|problem| Rejection(shared.options.flavor, problem))
}

/// The page response; counts a `repeat_cursor` fault when the page really repeated its cursor.
pub(crate) fn page(
    shared: &Shared,
    query: &ListQuery,
    objects: Vec<Value>,
    total: usize,
    repeat: Option<Extension<RepeatCursor>>,
) -> Response {
    let (body, repeated) = query.page(shared.options.flavor, objects, total, repeat.is_some());
    if let (true, Some(Extension(RepeatCursor(position)))) = (repeated, repeat) {
        shared.faults.delivered(position);
    }
    ok(body)
}
