//! The routes only today's API has (current flavour), as `API.md` ("Today's API in detail")
//! describes them: the user, datasets with filters, by owner/slug and created by POST, items
//! by owner/slug, the manual-upload routes (quota, presign, parts, complete, finalize) and
//! tasks.
//!
//! It takes parsed requests and gives responses in the current flavour's shapes, reading and
//! changing `state` and `manual`. It must not check keys, limits or faults (`gate` does), and
//! it never sees object bytes (the storage origin in `storage` receives them).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use axum::Extension;
use serde_json::{json, Map, Value};

use super::catalog::{self, DatasetInfo, ProjectInfo, OWNER};
use super::flavor::{json_response, Problem, Rejection};
use super::gate::RepeatCursor;
use super::manual::{Presign, PresignError};
use super::options::Flavor;
use super::routes::{list_query, page, Reply};
use super::state::Shared;

/// The emulator's one user: uploads are stored under `__u__=/<uid>/`.
pub(crate) const USER_UID: &str = "5f0c7a52-0000-4000-8000-00000000e001";
/// Tasks seeded per project.
const TASKS_PER_PROJECT: usize = 3;

fn reject(problem: Problem) -> Rejection {
    Rejection(Flavor::Current, problem)
}

fn field_error(field: &'static str, message: impl Into<String>) -> Rejection {
    reject(Problem::Validation {
        field,
        message: message.into(),
    })
}

fn json_body(body: &Bytes) -> Result<Map<String, Value>, Rejection> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice(body).map_err(|e| {
        reject(Problem::BadRequest {
            message: format!("JSON parse error - {e}"),
        })
    })
}

fn text_field(
    body: &Map<String, Value>,
    key: &'static str,
    required: bool,
) -> Result<Option<String>, Rejection> {
    match body.get(key) {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(Some(s.clone())),
        None | Some(Value::Null) if !required => Ok(None),
        None | Some(Value::Null) => Err(field_error(key, "This field is required.")),
        Some(_) => Err(field_error(key, "Not a valid string.")),
    }
}

pub(crate) async fn users_me() -> Reply {
    Ok(json_response(
        StatusCode::OK,
        &json!({
            "uid": USER_UID,
            "username": OWNER,
            "email": "demo@example.com",
            "first_name": "Demo",
            "last_name": "User",
        }),
    ))
}

// ---- datasets ----------------------------------------------------------------------------

/// A dataset in the current shape, with its status (a GET by id counts as a poll).
pub(crate) fn dataset_json(shared: &Shared, dataset: &DatasetInfo, poll: bool) -> Value {
    let count = shared.item_count(dataset);
    let status = shared.dataset_status(dataset, poll);
    Flavor::Current.dataset_in(dataset, count, status)
}

/// `GET /datasets/`: filters `data_type`, `name` (substring, any case), `status`,
/// `visibility`; seeded datasets first, then created ones.
pub(crate) async fn list_datasets(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let query = list_query(&shared, &uri, &headers)?;
    let filters = Filters::parse(&uri);
    let total_all = shared.dataset_count();
    if filters.is_empty() {
        let datasets: Vec<_> = query
            .window(total_all)
            .filter_map(|i| shared.dataset_at(i))
            .collect();
        let objects = datasets
            .iter()
            .map(|d| dataset_json(&shared, d, false))
            .collect();
        return Ok(page(&shared, &query, objects, total_all, repeat));
    }
    let mut matched = Vec::new();
    for i in 0..total_all {
        if let Some(d) = shared.dataset_at(i) {
            let status = shared.dataset_status(&d, false);
            if filters.keep(&d, status) {
                matched.push(d);
            }
        }
    }
    let total = matched.len();
    let objects = matched
        .iter()
        .skip(query.offset)
        .take(query.limit)
        .map(|d| dataset_json(&shared, d, false))
        .collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

#[derive(Default)]
struct Filters {
    data_type: Option<String>,
    name: Option<String>,
    status: Option<String>,
    visibility: Option<String>,
}

impl Filters {
    fn parse(uri: &Uri) -> Self {
        let mut filters = Filters::default();
        for (key, value) in query_pairs(uri) {
            let slot = match key.as_str() {
                "data_type" => &mut filters.data_type,
                "name" => &mut filters.name,
                "status" => &mut filters.status,
                "visibility" => &mut filters.visibility,
                _ => continue,
            };
            if !value.is_empty() {
                *slot = Some(value);
            }
        }
        filters
    }

    fn is_empty(&self) -> bool {
        self.data_type.is_none()
            && self.name.is_none()
            && self.status.is_none()
            && self.visibility.is_none()
    }

    fn keep(&self, d: &DatasetInfo, status: &str) -> bool {
        let same = |want: &Option<String>, have: &str| want.as_deref().is_none_or(|w| w == have);
        same(&self.data_type, &d.data_type)
            && same(&self.status, status)
            && same(&self.visibility, &d.visibility)
            && self
                .name
                .as_deref()
                .is_none_or(|n| d.name.to_lowercase().contains(&n.to_lowercase()))
    }
}

/// The decoded `key=value` pairs of a query string.
pub(crate) fn query_pairs(uri: &Uri) -> Vec<(String, String)> {
    url::form_urlencoded::parse(uri.query().unwrap_or("").as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn not_found(what: &'static str) -> Rejection {
    reject(Problem::NotFound { what })
}

/// `GET /datasets/{uid}/`: one poll of a dataset being created.
pub(crate) async fn get_dataset(
    State(shared): State<Arc<Shared>>,
    Path(id): Path<String>,
) -> Reply {
    let dataset = shared
        .find_dataset(&id)
        .ok_or_else(|| not_found("Dataset"))?;
    Ok(ok(dataset_json(&shared, &dataset, true)))
}

fn by_slug(shared: &Shared, owner: &str, slug: &str) -> Result<DatasetInfo, Rejection> {
    shared
        .find_dataset_by_slug(owner, slug)
        .ok_or_else(|| not_found("Dataset"))
}

/// `GET /datasets/{owner}/{slug}/`.
pub(crate) async fn get_dataset_by_slug(
    State(shared): State<Arc<Shared>>,
    Path((owner, slug)): Path<(String, String)>,
) -> Reply {
    let dataset = by_slug(&shared, &owner, &slug)?;
    Ok(ok(dataset_json(&shared, &dataset, true)))
}

/// `POST /datasets/` `{name, slug, data_type, visibility, create_metadata}` → 201 `creating`.
pub(crate) async fn create_dataset(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let body = json_body(&body)?;
    let dataset = new_dataset(&shared, &body)?;
    Ok(json_response(
        StatusCode::CREATED,
        &dataset_json(&shared, &dataset, false),
    ))
}

fn new_dataset(shared: &Shared, body: &Map<String, Value>) -> Result<DatasetInfo, Rejection> {
    let name = text_field(body, "name", true)?.unwrap_or_default();
    let slug = text_field(body, "slug", true)?.unwrap_or_default();
    if !slug
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err(field_error(
            "slug",
            "Enter a valid \"slug\" consisting of letters, numbers, underscores or hyphens.",
        ));
    }
    let data_type = text_field(body, "data_type", true)?.unwrap_or_default();
    if !["image", "video", "lidar", "mcap", "splat"].contains(&data_type.as_str()) {
        return Err(field_error(
            "data_type",
            format!("\"{data_type}\" is not a valid choice."),
        ));
    }
    let visibility = text_field(body, "visibility", false)?.unwrap_or_else(|| "private".into());
    if !["private", "public"].contains(&visibility.as_str()) {
        return Err(field_error(
            "visibility",
            format!("\"{visibility}\" is not a valid choice."),
        ));
    }
    shared
        .create_dataset(&name, &slug, &data_type, &visibility)
        .ok_or_else(|| field_error("slug", "dataset with this slug already exists."))
}

/// `GET /datasets/{owner}/{slug}/items/`.
pub(crate) async fn list_items(
    State(shared): State<Arc<Shared>>,
    Path((owner, slug)): Path<(String, String)>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let dataset = by_slug(&shared, &owner, &slug)?;
    let query = list_query(&shared, &uri, &headers)?;
    let (items, total) = shared.items_page(&dataset, query.offset, query.limit);
    let objects = items
        .iter()
        .map(|item| Flavor::Current.item_of(&dataset, item, &shared.storage_origin))
        .collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

/// `GET /datasets/{owner}/{slug}/items/{item_uid}/`.
pub(crate) async fn get_item(
    State(shared): State<Arc<Shared>>,
    Path((owner, slug, item_id)): Path<(String, String, String)>,
) -> Reply {
    let dataset = by_slug(&shared, &owner, &slug)?;
    let item = shared
        .find_item(&dataset, &item_id)
        .ok_or_else(|| not_found("Item"))?;
    Ok(ok(Flavor::Current.item_of(
        &dataset,
        &item,
        &shared.storage_origin,
    )))
}

// ---- manual upload -----------------------------------------------------------------------

/// `GET /datasets/manual-upload/quota/`.
pub(crate) async fn quota(State(shared): State<Arc<Shared>>) -> Reply {
    let used = shared.manual.lock().expect("manual lock").used;
    Ok(ok(
        json!({ "used": used, "limit": shared.options.upload_quota }),
    ))
}

/// `GET /datasets/manual-upload/allowed-mimes/`.
pub(crate) async fn allowed_mimes() -> Reply {
    Ok(ok(json!({
        "image": ["image/jpeg", "image/png", "image/webp"],
        "video": ["video/mp4"],
        "lidar": ["application/octet-stream", "application/json"],
        "mcap": ["application/octet-stream"],
        "splat": ["application/octet-stream"],
        "mimes": ["image/jpeg", "image/png", "video/mp4", "application/json",
                  "application/x-ndjson", "application/octet-stream"],
    })))
}

/// `POST /datasets/manual-upload/file-upload-url/`: a target for one file (see `manual`).
pub(crate) async fn presign(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let body = json_body(&body)?;
    let dataset_name = text_field(&body, "dataset_name", true)?.unwrap_or_default();
    let path = text_field(&body, "file_path_in_dataset", true)?.unwrap_or_default();
    if path.starts_with('/') || path.split('/').any(|s| s.is_empty() || s == "..") {
        return Err(field_error(
            "file_path_in_dataset",
            "Enter a relative path without empty or '..' segments.",
        ));
    }
    let size = match body.get("content_length") {
        Some(Value::Number(n)) => n.as_u64(),
        _ => None,
    }
    .ok_or_else(|| field_error("content_length", "A non-negative integer is required."))?;
    let version = body
        .get("upload_protocol_version")
        .and_then(Value::as_u64)
        .unwrap_or(1);
    let v2_batch = match version {
        2 => Some(text_field(&body, "dataset_upload_uid", true)?.unwrap_or_default()),
        _ => None,
    };
    let request = Presign {
        dataset_name,
        path,
        size,
        v2_batch,
    };
    let mut manual = shared.manual.lock().expect("manual lock");
    match manual.presign(
        request,
        shared.options.upload_quota,
        shared.options.multipart_threshold,
        &shared.storage_origin,
    ) {
        Ok(answer) => Ok(ok(answer)),
        Err(PresignError::Quota { used, limit }) => Ok(json_response(
            StatusCode::PAYLOAD_TOO_LARGE,
            &json!({
                "detail": format!(
                    "Upload quota exceeded: {used} of {limit} bytes used, this file needs {size} more."
                ),
                "limit": limit,
                "used": used,
            }),
        )),
    }
}

/// `POST /datasets/manual-upload/uploads/{upload_uid}/parts/` `{"part_numbers": [n]}`.
pub(crate) async fn sign_parts(
    State(shared): State<Arc<Shared>>,
    Path(upload): Path<String>,
    body: Bytes,
) -> Reply {
    let body = json_body(&body)?;
    let numbers: Vec<u64> = body
        .get("part_numbers")
        .and_then(Value::as_array)
        .map(|list| list.iter().filter_map(Value::as_u64).collect())
        .filter(|list: &Vec<u64>| !list.is_empty())
        .ok_or_else(|| field_error("part_numbers", "A non-empty list of integers is required."))?;
    let manual = shared.manual.lock().expect("manual lock");
    if !manual.objects.contains_key(&upload) {
        return Err(not_found("Upload"));
    }
    manual
        .sign_parts(&upload, &numbers, &shared.storage_origin)
        .map(ok)
        .ok_or_else(|| field_error("part_numbers", "A part number is out of range."))
}

/// `POST /datasets/manual-upload/uploads/{upload_uid}/complete/`: every part must be stored;
/// the object's digest is computed from its part files.
pub(crate) async fn complete(
    State(shared): State<Arc<Shared>>,
    Path(upload): Path<String>,
) -> Reply {
    let object = {
        let manual = shared.manual.lock().expect("manual lock");
        manual
            .objects
            .get(&upload)
            .cloned()
            .ok_or_else(|| not_found("Upload"))?
    };
    if object.complete() {
        return Ok(ok(json!({ "upload_uid": upload, "complete": true })));
    }
    let missing: Vec<u64> = (1..=object.part_count())
        .filter(|n| object.parts.get(n).map(|b| b.size) != object.part_len(*n))
        .collect();
    if !missing.is_empty() {
        return Err(reject(Problem::BadRequest {
            message: format!("Parts not uploaded yet: {missing:?}."),
        }));
    }
    // One part: its digest is the object's. Several: the digest hashed as they arrived,
    // finished here (reading only the parts not hashed yet), else read whole.
    let sha256 = match object.parts.get(&1) {
        Some(blob) if object.part_count() == 1 && !blob.sha256.is_empty() => blob.sha256.clone(),
        _ => {
            let paths: Vec<_> = object.parts.values().map(|b| b.path.clone()).collect();
            let (shared, id) = (shared.clone(), upload.clone());
            tokio::task::spawn_blocking(move || {
                match super::storage::advance_digest(&shared, &id) {
                    Ok(Some(sha256)) => Ok(sha256),
                    _ => super::storage::sha256_of_files(&paths),
                }
            })
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or(reject(Problem::Status(StatusCode::INTERNAL_SERVER_ERROR)))?
        }
    };
    let mut manual = shared.manual.lock().expect("manual lock");
    if let Some(stored) = manual.objects.get_mut(&upload) {
        stored.sha256 = Some(sha256);
    }
    Ok(ok(json!({ "upload_uid": upload, "complete": true })))
}

/// `POST /datasets/manual-upload/` `{name, slug, data_type, visibility, create_metadata}`
/// (+ `dataset_upload_uid`): a new dataset (`creating`) whose items are the batch's files.
pub(crate) async fn finalize(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    let body = json_body(&body)?;
    let name = text_field(&body, "name", true)?.unwrap_or_default();
    let batch = match text_field(&body, "dataset_upload_uid", false)? {
        Some(uid) => uid,
        None => format!("name:{name}"),
    };
    let files = shared.manual.lock().expect("manual lock").finished(&batch);
    if files.is_empty() {
        return Err(reject(Problem::BadRequest {
            message: format!("No uploaded files found for dataset \"{name}\"."),
        }));
    }
    let dataset = new_dataset(&shared, &body)?;
    let mut manual = shared.manual.lock().expect("manual lock");
    for file in files {
        let item = shared.add_upload(
            &dataset,
            file.path.clone(),
            file.size,
            file.sha256.clone().unwrap_or_default(),
            None,
        );
        let parts = file.parts.values().map(|b| b.path.clone()).collect();
        manual.item_files.insert(item.id, (file.size, parts));
        if let Some(object) = manual.objects.get_mut(&file.id) {
            object.finalized = true;
        }
    }
    drop(manual);
    Ok(json_response(
        StatusCode::CREATED,
        &dataset_json(&shared, &dataset, false),
    ))
}

// ---- tasks -------------------------------------------------------------------------------

/// The seeded tasks of a project: `{project}-t1`, `-t2`, `-t3`.
fn tasks_of(project: &ProjectInfo) -> impl Iterator<Item = (String, &'static str, String)> + '_ {
    (1..=TASKS_PER_PROJECT).map(move |k| {
        let kind = if k == TASKS_PER_PROJECT {
            "review"
        } else {
            "annotation"
        };
        (
            format!("{}-t{k}", project.id),
            kind,
            format!("{} task {k}", project.name),
        )
    })
}

fn all_projects(shared: &Shared) -> Vec<ProjectInfo> {
    let mut projects: Vec<ProjectInfo> = (0..shared.catalog.project_count())
        .filter_map(|i| shared.catalog.project_at(i))
        .collect();
    projects.extend(shared.catalog.find_project(catalog::EXAMPLE_PROJECT));
    projects
}

fn task_json(project: &ProjectInfo, id: &str, kind: &str, name: &str, status: &str) -> Value {
    json!({
        "uid": id,
        "type": kind,
        "name": name,
        "status": status,
        "project": project.id,
        "created_at": catalog::iso8601(project.created_at + 600),
        "updated_at": catalog::iso8601(catalog::now()),
    })
}

/// `GET /tasks/` (filters `project`, `status`): every listed task counts one poll.
pub(crate) async fn list_tasks(
    State(shared): State<Arc<Shared>>,
    uri: Uri,
    headers: HeaderMap,
    repeat: Option<Extension<RepeatCursor>>,
) -> Reply {
    let query = list_query(&shared, &uri, &headers)?;
    let pairs = query_pairs(&uri);
    let want = |key: &str| {
        pairs
            .iter()
            .find(|(k, v)| k == key && !v.is_empty())
            .map(|(_, v)| v.clone())
    };
    let (project_filter, status_filter) = (want("project"), want("status"));
    let mut tasks = Vec::new();
    for project in all_projects(&shared) {
        if project_filter.as_deref().is_some_and(|p| p != project.id) {
            continue;
        }
        for (id, kind, name) in tasks_of(&project) {
            let status = shared.poll_task(&id);
            if status_filter.as_deref().is_none_or(|s| s == status) {
                tasks.push(task_json(&project, &id, kind, &name, status));
            }
        }
    }
    let total = tasks.len();
    let objects = tasks
        .into_iter()
        .skip(query.offset)
        .take(query.limit)
        .collect();
    Ok(page(&shared, &query, objects, total, repeat))
}

/// `GET /tasks/{uid}/`: one poll.
pub(crate) async fn get_task(State(shared): State<Arc<Shared>>, Path(id): Path<String>) -> Reply {
    let (project_id, _) = id.rsplit_once("-t").ok_or_else(|| not_found("Task"))?;
    let project = shared
        .catalog
        .find_project(project_id)
        .ok_or_else(|| not_found("Task"))?;
    let (id, kind, name) = tasks_of(&project)
        .find(|(task, _, _)| *task == id)
        .ok_or_else(|| not_found("Task"))?;
    let status = shared.poll_task(&id);
    Ok(ok(task_json(&project, &id, kind, &name, status)))
}

fn ok(body: Value) -> Response {
    json_response(StatusCode::OK, &body)
}
