//! The SDK's other resource groups (current flavour): organizations, slices, webhooks,
//! storage configs, annotation issues, auto-label jobs, consensus, quality targets, agents,
//! inference providers, fleet, dataset sequences… served from ONE table instead of handler
//! by handler.
//!
//! It takes a request the pipeline routes did not match and gives a response when a row of
//! [`RESOURCES`] or [`ACTIONS`] matches its path: list, get, create, update (PATCH/PUT) and
//! delete generic over a resource description (path, scope, key field, paging, a sample
//! object), plus fixed answers for the few verbs that are not CRUD. Objects are JSON values
//! kept per collection and seeded lazily from the sample on first use. It must not know any
//! resource by name outside the tables, and must never store a secret it is sent (fields
//! named like `secret`, `password`, `api_key`, `token` are dropped).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use super::catalog;
use super::flavor::{json_response, Problem};
use super::options::Flavor;
use super::paging::ListQuery;
use super::state::Shared;

/// How a collection pages.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Paging {
    /// `{count, next, previous, results}` with an opaque `cursor`.
    Cursor,
    /// The same body with `?page=N` links (organizations).
    Pages,
    /// A bare JSON list.
    Bare,
}

/// One collection of the table.
struct Resource {
    /// Where it is listed (`{name}` segments are parameters).
    list: &'static str,
    /// Where one object is (`{id}` is the object's key).
    detail: &'static str,
    /// Where objects are created (POST), if they can be.
    create: Option<&'static str>,
    /// Parameters that scope the collection (a project's quality targets, …).
    scope: &'static [&'static str],
    /// The field that `{id}` names.
    key: &'static str,
    paging: Paging,
    /// Objects seeded on first use.
    seed: usize,
    /// `L`ist, `G`et, `U`pdate, `D`elete.
    ops: &'static str,
    /// A JSON object: the seeded objects and the defaults of created ones. `{n}` is the
    /// object's number, `{uid}` its uid, `{now}` the time, other `{param}`s come from the path.
    sample: &'static str,
}

/// A fixed answer for a verb that is not CRUD.
struct Action {
    method: &'static str,
    path: &'static str,
    reply: Reply,
}

enum Reply {
    /// This status and JSON template (`{param}`s substituted; `null` = no body).
    Json(u16, &'static str),
    /// The template merged with the request's JSON object (a PUT of a settings object).
    Merge(&'static str),
    /// Sets these fields on the object `{id}` of the collection listed at this path.
    Set(&'static str, &'static str),
    /// `{"created": <length of the body's list under this key>}`.
    Count(&'static str),
}

const NOW: &str = "{now}";

macro_rules! resource {
    ($list:expr, $detail:expr, $create:expr, $scope:expr, $key:expr, $paging:expr, $seed:expr, $ops:expr, $sample:expr) => {
        Resource {
            list: $list,
            detail: $detail,
            create: $create,
            scope: $scope,
            key: $key,
            paging: $paging,
            seed: $seed,
            ops: $ops,
            sample: $sample,
        }
    };
}

/// Every generic collection, in matching order.
const RESOURCES: &[Resource] = &[
    resource!(
        "/agents/",
        "/agents/{id}/",
        Some("/agents/"),
        &[],
        "uid",
        Paging::Cursor,
        2,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Agent {n}", "description": "", "events": ["task.completed"],
            "callback_url": "https://example.com/agents/{n}", "is_active": true, "project": null,
            "task_types": ["annotation"], "created_at": "{now}", "updated_at": "{now}"}"#
    ),
    resource!(
        "/agents/{agent}/executions/",
        "/agents/{agent}/executions/{id}/",
        None,
        &["agent"],
        "uid",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "registration": "{agent}", "event_type": "task.completed",
            "status": "success", "created_at": "{now}"}"#
    ),
    resource!(
        "/sequences/{sequence}/annotation-issues/",
        "/sequences/{sequence}/annotation-issues/{id}/",
        Some("/sequences/{sequence}/annotation-issues/"),
        &["sequence"],
        "uid",
        Paging::Bare,
        1,
        "LGUD",
        r#"{"uid": "{uid}", "sequence_uid": "{sequence}", "status": "open", "priority": "medium",
            "severity": "minor", "description": "Box too loose", "created_at": "{now}"}"#
    ),
    resource!(
        "/datasets/{owner}/{slug}/annotation-issues/",
        "/datasets/{owner}/{slug}/annotation-issues/{id}/",
        None,
        &["owner", "slug"],
        "uid",
        Paging::Bare,
        2,
        "LG",
        r#"{"uid": "{uid}", "status": "open", "priority": "low", "severity": "minor",
            "description": "Issue {n} in {slug}", "created_at": "{now}"}"#
    ),
    resource!(
        "/qc-available-tools/",
        "/qc-available-tools/{id}/",
        None,
        &[],
        "uid",
        Paging::Bare,
        2,
        "LG",
        r#"{"uid": "{uid}", "name": "Tool {n}", "dataset_type": "image", "default": false,
            "problems": [{"uid": "{uid}", "title": "Wrong class"}]}"#
    ),
    resource!(
        "/auto-label-jobs/",
        "/auto-label-jobs/{id}/",
        Some("/projects/{project}/auto-label/"),
        &[],
        "uid",
        Paging::Cursor,
        1,
        "LGD",
        r#"{"uid": "{uid}", "status": "pending", "project": "{project}", "model_type": "default",
            "confidence_threshold": 0.5, "labels": [], "dry_run": false, "created_at": "{now}"}"#
    ),
    resource!(
        "/projects/{project}/consensus/scores/",
        "/projects/{project}/consensus/scores/{id}/",
        None,
        &["project"],
        "uid",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "dataset_item_uid": "item_0001_000{n}", "task_name": "{project} task {n}",
            "score": 0.9, "annotator_count": 3}"#
    ),
    resource!(
        "/datasets/{owner}/{slug}/sequences/",
        "/datasets/{owner}/{slug}/sequences/{id}/",
        None,
        &["owner", "slug"],
        "uid",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "key": "sequence_{n}", "status": "ready", "number_of_frames": 2,
            "dataset_data_type": "lidar",
            "frames": [
              {"key": "frame_0000", "model": "pinhole",
               "device_position": {"x": 0.0, "y": 0.0, "z": 0.0},
               "device_heading": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0},
               "images": [{"image_url": "https://example.com/f0.jpg", "width": 1920, "height": 1080,
                           "fx": 1000.0, "fy": 1000.0, "cx": 960.0, "cy": 540.0, "model": "pinhole",
                           "position": {"x": 0.0, "y": 0.0, "z": 1.5},
                           "heading": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}}]},
              {"key": "frame_0001", "model": "pinhole",
               "device_position": {"x": 1.0, "y": 0.0, "z": 0.0},
               "device_heading": {"x": 0.0, "y": 0.0, "z": 0.0, "w": 1.0}, "images": []}]}"#
    ),
    resource!(
        "/organizations/",
        "/organizations/{id}/",
        Some("/organizations/"),
        &[],
        "slug",
        Paging::Pages,
        2,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Demo org {n}", "slug": "demo-org-{n}", "description": "",
            "visibility": "private", "created_at": "{now}", "updated_at": "{now}"}"#
    ),
    resource!(
        "/organizations/{org}/members/",
        "/organizations/{org}/members/{id}/",
        None,
        &["org"],
        "user_uid",
        Paging::Cursor,
        2,
        "LGD",
        r#"{"user_uid": "{uid}", "username": "member{n}", "email": "member{n}@example.com", "role": "member"}"#
    ),
    resource!(
        "/organizations/{org}/invitations/",
        "/organizations/{org}/invitations/{id}/",
        Some("/organizations/{org}/invitations/"),
        &["org"],
        "uid",
        Paging::Cursor,
        1,
        "LGD",
        r#"{"uid": "{uid}", "invited_email": "person{n}@example.com", "role": "member", "status": "pending",
            "created_at": "{now}"}"#
    ),
    resource!(
        "/organizations/{org}/teams/",
        "/organizations/{org}/teams/{id}/",
        Some("/organizations/{org}/teams/"),
        &["org"],
        "slug",
        Paging::Cursor,
        1,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Team {n}", "slug": "team-{n}", "description": "", "color": "blue"}"#
    ),
    resource!(
        "/organizations/{org}/teams/{team}/members/",
        "/organizations/{org}/teams/{team}/members/{id}/",
        Some("/organizations/{org}/teams/{team}/members/"),
        &["org", "team"],
        "user_uid",
        Paging::Cursor,
        1,
        "LGD",
        r#"{"user_uid": "{uid}", "username": "member{n}", "role": "member"}"#
    ),
    resource!(
        "/projects/{project}/quality-targets/",
        "/projects/{project}/quality-targets/{id}/",
        Some("/projects/{project}/quality-targets/"),
        &["project"],
        "uid",
        Paging::Cursor,
        1,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Accuracy {n}", "metric": "accuracy", "operator": "gte", "threshold": 0.9,
            "severity": "warning", "is_active": true, "notify_webhook": false, "notify_emails": [],
            "created_at": "{now}"}"#
    ),
    resource!(
        "/slices/{owner}/list/",
        "/slices/{owner}/{id}/",
        Some("/slices/"),
        &[],
        "slug",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "name": "Demo slice {n}", "slug": "demo-slice-{n}", "owner_name": "demo",
            "visibility": "private", "item_count": 2, "sub_slices": [], "created_at": "{now}"}"#
    ),
    resource!(
        "/slices/{owner}/{slice}/items/list/",
        "/slices/{owner}/{slice}/items/{id}/",
        None,
        &["slice"],
        "uid",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "key": "image_000{n}.jpg", "slice": "{slice}", "created_at": "{now}"}"#
    ),
    resource!(
        "/storage-configs/",
        "/storage-configs/{id}/",
        Some("/storage-configs/"),
        &[],
        "uid",
        Paging::Cursor,
        1,
        "LGD",
        r#"{"uid": "{uid}", "name": "Bucket {n}", "provider": "aws_s3", "s3_bucket_name": "demo-bucket-{n}",
            "s3_bucket_region": "us-east-1", "s3_bucket_prefix": "", "created_at": "{now}"}"#
    ),
    resource!(
        "/webhooks/",
        "/webhooks/{id}/",
        Some("/webhooks/"),
        &[],
        "uid",
        Paging::Cursor,
        1,
        "LGUD",
        r#"{"uid": "{uid}", "target_url": "https://example.com/hooks/{n}", "events": ["export.completed"],
            "is_active": true, "created_at": "{now}", "updated_at": "{now}"}"#
    ),
    resource!(
        "/webhook-deliveries/",
        "/webhook-deliveries/{id}/",
        None,
        &[],
        "uid",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "subscription": "{uid}", "event_type": "export.completed", "status": "delivered",
            "response_status": 200, "attempts": 1, "created_at": "{now}"}"#
    ),
    resource!(
        "/inference-providers/",
        "/inference-providers/{id}/",
        Some("/inference-providers/"),
        &[],
        "uid",
        Paging::Cursor,
        1,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Provider {n}", "description": "", "provider_type": "http",
            "config": {"url": "https://example.com/infer"}, "is_active": true, "project": null,
            "created_at": "{now}", "updated_at": "{now}"}"#
    ),
    resource!(
        "/fleet/devices/",
        "/fleet/devices/{id}/",
        Some("/fleet/devices/"),
        &[],
        "uid",
        Paging::Cursor,
        2,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Robot {n}", "type": "robot", "status": "online", "firmware_version": "1.0.{n}",
            "tags": [], "metadata": {}, "created_at": "{now}"}"#
    ),
    resource!(
        "/fleet/recordings/",
        "/fleet/recordings/{id}/",
        None,
        &[],
        "uid",
        Paging::Cursor,
        2,
        "LGUD",
        r#"{"uid": "{uid}", "status": "uploaded", "tags": [], "duration_seconds": 60, "created_at": "{now}"}"#
    ),
    resource!(
        "/fleet/events/",
        "/fleet/events/{id}/",
        Some("/fleet/events/"),
        &[],
        "uid",
        Paging::Cursor,
        2,
        "LGD",
        r#"{"uid": "{uid}", "label": "Event {n}", "type": "marker", "severity": "info",
            "timestamp": "{now}", "tags": [], "metadata": {}, "created_at": "{now}"}"#
    ),
    resource!(
        "/fleet/rules/",
        "/fleet/rules/{id}/",
        Some("/fleet/rules/"),
        &[],
        "uid",
        Paging::Cursor,
        1,
        "LGUD",
        r#"{"uid": "{uid}", "name": "Rule {n}", "description": "", "enabled": true,
            "condition": {"type": "threshold"}, "actions": [], "scope": {}, "created_at": "{now}"}"#
    ),
    resource!(
        "/fleet/alerts/",
        "/fleet/alerts/{id}/",
        None,
        &[],
        "uid",
        Paging::Cursor,
        2,
        "LG",
        r#"{"uid": "{uid}", "status": "open", "severity": "warning", "message": "Alert {n}", "created_at": "{now}"}"#
    ),
    resource!(
        "/fleet/alert-channels/",
        "/fleet/alert-channels/{id}/",
        Some("/fleet/alert-channels/"),
        &[],
        "uid",
        Paging::Cursor,
        1,
        "LGD",
        r#"{"uid": "{uid}", "name": "Channel {n}", "type": "email", "config": {}, "created_at": "{now}"}"#
    ),
];

/// Fixed answers, matched before the collections.
const ACTIONS: &[Action] = &[
    Action {
        method: "POST",
        path: "/agents/{id}/test/",
        reply: Reply::Json(200, r#"{"success": true, "status_code": 200}"#),
    },
    Action {
        method: "GET",
        path: "/datasets/{owner}/{slug}/annotation-issues/metrics/",
        reply: Reply::Json(
            200,
            r#"{"status_count": {"open": 2}, "priority_count": {"low": 2}, "severity_count": {"minor": 2},
            "mean_seconds_close_time_all": 0, "mean_unresolved_issue_age_all": 3600,
            "object_count_by_annotation_issue_problem_uid": []}"#,
        ),
    },
    Action {
        method: "POST",
        path: "/datasets/{owner}/{slug}/bulk-edition/",
        reply: Reply::Json(200, r#"{"status": "ok"}"#),
    },
    Action {
        method: "GET",
        path: "/datasets/{owner}/{slug}/health/",
        reply: Reply::Json(
            200,
            r#"{"dataset_uid": "{owner}/{slug}", "dataset_slug": "{slug}", "dataset_status": "created",
            "data_type": "image", "is_sequence": false, "item_count": 0, "sequence_count": 0, "total_frames": 0,
            "sequences": [], "ingest_ok": true, "issues": []}"#,
        ),
    },
    Action {
        method: "POST",
        path: "/datasets/{owner}/{slug}/transfer/",
        reply: Reply::Json(
            200,
            r#"{"uid": "{owner}-{slug}", "name": "{slug}", "slug": "{slug}", "owner_name": "demo-org-1",
            "status": "created"}"#,
        ),
    },
    Action {
        method: "GET",
        path: "/projects/{project}/consensus/",
        reply: Reply::Json(
            200,
            r#"{"mean_score": 0.9, "median_score": 0.92, "min_score": 0.7, "max_score": 1.0,
            "total_items": 20, "items_with_consensus": 18}"#,
        ),
    },
    Action {
        method: "POST",
        path: "/projects/{project}/consensus/compute/",
        reply: Reply::Json(
            200,
            r#"{"status": "queued", "message": "Consensus computation queued for {project}."}"#,
        ),
    },
    Action {
        method: "GET",
        path: "/projects/{project}/consensus/config/",
        reply: Reply::Json(
            200,
            r#"{"uid": "consensus-{project}", "iou_threshold": 0.5, "min_agreement_ratio": 0.6, "min_annotations": 2}"#,
        ),
    },
    Action {
        method: "PUT",
        path: "/projects/{project}/consensus/config/",
        reply: Reply::Merge(
            r#"{"uid": "consensus-{project}", "iou_threshold": 0.5, "min_agreement_ratio": 0.6, "min_annotations": 2}"#,
        ),
    },
    Action {
        method: "POST",
        path: "/projects/{project}/quality-targets/evaluate/",
        reply: Reply::Json(
            200,
            r#"[{"uid": "evaluation-{project}", "name": "Accuracy", "metric": "accuracy", "threshold": 0.9,
            "operator": "gte", "current_value": 0.93, "is_breached": false}]"#,
        ),
    },
    Action {
        method: "GET",
        path: "/organizations/industry-choices/",
        reply: Reply::Json(
            200,
            r#"{"choices": [{"value": "robotics", "label": "Robotics"}, {"value": "automotive", "label": "Automotive"}]}"#,
        ),
    },
    Action {
        method: "POST",
        path: "/organizations/{org}/leave/",
        reply: Reply::Json(204, "null"),
    },
    Action {
        method: "POST",
        path: "/organizations/{org}/transfer-ownership/",
        reply: Reply::Json(204, "null"),
    },
    Action {
        method: "PATCH",
        path: "/organizations/{org}/members/{id}/role/",
        reply: Reply::Json(204, "null"),
    },
    Action {
        method: "POST",
        path: "/organizations/{org}/invitations/{id}/resend/",
        reply: Reply::Json(204, "null"),
    },
    Action {
        method: "POST",
        path: "/organizations/{org}/invitations/{id}/cancel/",
        reply: Reply::Json(204, "null"),
    },
    Action {
        method: "PATCH",
        path: "/organizations/{org}/teams/{team}/members/{id}/role/",
        reply: Reply::Json(204, "null"),
    },
    Action {
        method: "GET",
        path: "/storage-configs/setup-info/",
        reply: Reply::Json(
            200,
            r#"{"avala_aws_account_id": "000000000000", "external_id": "avala-emulator"}"#,
        ),
    },
    Action {
        method: "POST",
        path: "/storage-configs/{id}/test/",
        reply: Reply::Json(200, r#"{"success": true}"#),
    },
    Action {
        method: "POST",
        path: "/webhooks/{id}/test/",
        reply: Reply::Json(200, r#"{"success": true, "status_code": 200}"#),
    },
    Action {
        method: "POST",
        path: "/inference-providers/{id}/test/",
        reply: Reply::Json(200, r#"{"success": true}"#),
    },
    Action {
        method: "POST",
        path: "/fleet/alert-channels/{id}/test/",
        reply: Reply::Json(200, r#"{"success": true}"#),
    },
    Action {
        method: "POST",
        path: "/fleet/alerts/{id}/acknowledge/",
        reply: Reply::Set("/fleet/alerts/", r#"{"status": "acknowledged"}"#),
    },
    Action {
        method: "POST",
        path: "/fleet/alerts/{id}/resolve/",
        reply: Reply::Set("/fleet/alerts/", r#"{"status": "resolved"}"#),
    },
    Action {
        method: "POST",
        path: "/fleet/events/batch/",
        reply: Reply::Count("events"),
    },
];

/// The objects of every collection, by collection and scope.
#[derive(Default)]
pub(crate) struct Store {
    collections: HashMap<String, Collection>,
}

#[derive(Default)]
struct Collection {
    objects: Vec<Value>,
    /// Objects numbered so far (seeded and created).
    numbered: usize,
}

/// Matches a path against a pattern; gives the `{param}` values.
fn matches(pattern: &str, path: &str) -> Option<HashMap<&'static str, String>> {
    let pattern_segments: Vec<&str> = pattern.trim_matches('/').split('/').collect();
    let path_segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    if pattern_segments.len() != path_segments.len() {
        return None;
    }
    let mut params = HashMap::new();
    for (p, s) in pattern_segments.iter().zip(&path_segments) {
        if let Some(name) = p.strip_prefix('{').and_then(|n| n.strip_suffix('}')) {
            if s.is_empty() {
                return None;
            }
            // Parameter names come from the static tables.
            params.insert(param_name(name), (*s).to_owned());
        } else if p != s {
            return None;
        }
    }
    Some(params)
}

/// The `'static` name of a table parameter (every `{name}` the tables use is listed here; a
/// unit test checks it).
fn param_name(name: &str) -> &'static str {
    const NAMES: &[&str] = &[
        "id", "agent", "sequence", "owner", "slug", "project", "org", "team", "slice",
    ];
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("param")
}

/// A deterministic UUID-shaped id for object `n` of a collection.
fn uid_for(collection: &str, n: usize) -> String {
    let hash = collection.bytes().fold(0x811c_9dc5_u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    });
    format!("{hash:08x}-0000-4000-8000-{n:012x}")
}

/// Fills a template's `{param}`s, `{n}`, `{uid}` and `{now}` and parses it.
fn fill(template: &str, params: &HashMap<&'static str, String>, n: usize, uid: &str) -> Value {
    let mut text = template
        .replace(NOW, &catalog::iso8601(catalog::now()))
        .replace("{uid}", uid)
        .replace("{n}", &n.to_string());
    for (name, value) in params {
        let escaped = serde_json::to_string(value).unwrap_or_default();
        text = text.replace(&format!("{{{name}}}"), escaped.trim_matches('"'));
    }
    serde_json::from_str(&text).unwrap_or(Value::Null)
}

fn scope_key(resource: &Resource, params: &HashMap<&'static str, String>) -> String {
    let mut key = resource.list.to_owned();
    for name in resource.scope {
        key.push('|');
        key.push_str(params.get(name).map_or("", String::as_str));
    }
    key
}

/// The collection of a resource in a scope, seeded on first use.
fn collection<'a>(
    store: &'a mut Store,
    resource: &Resource,
    params: &HashMap<&'static str, String>,
) -> &'a mut Collection {
    let key = scope_key(resource, params);
    let entry = store.collections.entry(key.clone()).or_default();
    if entry.numbered == 0 {
        for n in 1..=resource.seed {
            let object = fill(resource.sample, params, n, &uid_for(&key, n));
            entry.objects.push(object);
        }
        entry.numbered = resource.seed.max(1);
    }
    entry
}

/// Fields never kept from a request body.
fn is_secret(field: &str) -> bool {
    ["secret", "password", "api_key", "token", "auth_json"]
        .iter()
        .any(|s| field.contains(s))
}

fn merge(object: &mut Value, body: &Map<String, Value>, key: &str) {
    if let Value::Object(map) = object {
        for (field, value) in body {
            if field != key && field != "uid" && !is_secret(field) {
                map.insert(field.clone(), value.clone());
            }
        }
    }
}

fn slugify(text: &str) -> String {
    let mut slug = String::new();
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            slug.push(c.to_ascii_lowercase());
        } else if !slug.is_empty() && !slug.ends_with('-') {
            slug.push('-');
        }
    }
    slug.trim_end_matches('-').to_owned()
}

fn problem(problem: Problem) -> Response {
    Flavor::Current.problem(problem)
}

/// Whether some row of the tables has this path (under `/api/v1`), whatever the method.
pub(crate) fn knows(path: &str) -> bool {
    let Some(path) = path.strip_prefix("/api/v1") else {
        return false;
    };
    ACTIONS.iter().any(|a| matches(a.path, path).is_some())
        || RESOURCES.iter().any(|r| {
            [Some(r.list), Some(r.detail), r.create]
                .into_iter()
                .flatten()
                .any(|p| matches(p, path).is_some())
        })
}

/// Answers a request for a table row, or `None` when no row has this path.
pub(crate) fn dispatch(
    shared: &Shared,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &Bytes,
) -> Option<Response> {
    let path = uri.path().strip_prefix("/api/v1")?;
    let mut path_exists = false;
    for action in ACTIONS {
        let Some(params) = matches(action.path, path) else {
            continue;
        };
        path_exists = true;
        if action.method == method.as_str() {
            return Some(action_reply(shared, &action.reply, &params, body));
        }
    }
    // Lists (and creates at the list path) before details: `/slices/{owner}/list/` must not
    // be read as the slice named `list`.
    for resource in RESOURCES {
        if let Some(params) = matches(resource.list, path) {
            path_exists = true;
            if method == Method::GET && resource.ops.contains('L') {
                return Some(list(shared, resource, &params, uri, headers));
            }
        }
        if let Some(params) = resource.create.and_then(|create| matches(create, path)) {
            path_exists = true;
            if method == Method::POST {
                return Some(match body_object(body) {
                    Ok(body) => create_object(shared, resource, &params, &body),
                    Err(response) => *response,
                });
            }
        }
    }
    if let Some(response) = detail_reply(shared, method, path, body, &mut path_exists) {
        return Some(response);
    }
    path_exists.then(|| {
        problem(Problem::MethodNotAllowed {
            method: method.to_string(),
        })
    })
}

/// A request body as a JSON object (a bare list becomes `{"items": [...]}`).
fn body_object(body: &Bytes) -> Result<Map<String, Value>, Box<Response>> {
    if body.is_empty() {
        return Ok(Map::new());
    }
    serde_json::from_slice::<Value>(body)
        .map_err(|e| {
            Box::new(problem(Problem::BadRequest {
                message: format!("JSON parse error - {e}"),
            }))
        })
        .map(|v| match v {
            Value::Object(map) => map,
            other => {
                let mut map = Map::new();
                map.insert("items".into(), other);
                map
            }
        })
}

/// The answer of a fixed action route.
fn action_reply(
    shared: &Shared,
    reply: &Reply,
    params: &HashMap<&'static str, String>,
    body: &Bytes,
) -> Response {
    match reply {
        Reply::Json(204, _) => StatusCode::NO_CONTENT.into_response(),
        Reply::Json(status, template) => json_response(
            StatusCode::from_u16(*status).unwrap_or(StatusCode::OK),
            &fill(template, params, 1, ""),
        ),
        Reply::Merge(template) => match body_object(body) {
            Ok(body) => {
                let mut value = fill(template, params, 1, "");
                merge(&mut value, &body, "uid");
                json_response(StatusCode::OK, &value)
            }
            Err(response) => *response,
        },
        Reply::Set(list, fields) => set_fields(shared, list, fields, params),
        Reply::Count(key) => match body_object(body) {
            Ok(body) => {
                let count = body.get(*key).and_then(Value::as_array).map_or(0, Vec::len);
                json_response(StatusCode::CREATED, &json!({ "created": count }))
            }
            Err(response) => *response,
        },
    }
}

/// `Reply::Set`: sets fields of a stored object of the collection at `list`.
fn set_fields(
    shared: &Shared,
    list: &str,
    fields: &str,
    params: &HashMap<&'static str, String>,
) -> Response {
    let Some(resource) = RESOURCES.iter().find(|r| r.list == list) else {
        return problem(Problem::NotFound { what: "Object" });
    };
    let mut store = shared.resources.lock().expect("resources lock");
    let found = collection(&mut store, resource, params)
        .objects
        .iter_mut()
        .find(|o| o[resource.key].as_str() == params.get("id").map(String::as_str));
    let Some(object) = found else {
        return problem(Problem::NotFound { what: "Object" });
    };
    match (object, fill(fields, params, 1, "")) {
        (Value::Object(map), Value::Object(set)) => {
            map.extend(set);
            map.insert("updated_at".into(), json!(catalog::iso8601(catalog::now())));
            json_response(StatusCode::OK, &Value::Object(map.clone()))
        }
        _ => problem(Problem::Status(StatusCode::INTERNAL_SERVER_ERROR)),
    }
}

/// A GET, update or delete of one object, when a resource's detail path matches.
fn detail_reply(
    shared: &Shared,
    method: &Method,
    path: &str,
    body: &Bytes,
    path_exists: &mut bool,
) -> Option<Response> {
    for resource in RESOURCES {
        let Some(params) = matches(resource.detail, path) else {
            continue;
        };
        *path_exists = true;
        let op = match *method {
            Method::GET => 'G',
            Method::PATCH | Method::PUT => 'U',
            Method::DELETE => 'D',
            _ => continue,
        };
        if !resource.ops.contains(op) {
            continue;
        }
        return Some(match body_object(body) {
            Ok(body) => detail(shared, resource, &params, op, &body),
            Err(response) => *response,
        });
    }
    None
}

fn list(
    shared: &Shared,
    resource: &Resource,
    params: &HashMap<&'static str, String>,
    uri: &Uri,
    headers: &HeaderMap,
) -> Response {
    let query = match ListQuery::parse(uri, headers, &shared.api_origin) {
        Ok(query) => query,
        Err(p) => return problem(p),
    };
    let filters: Vec<(String, String)> = super::today::query_pairs(uri)
        .into_iter()
        .filter(|(k, v)| {
            !v.is_empty()
                && ![
                    "limit",
                    "cursor",
                    "page",
                    "page_size",
                    "organization",
                    "search",
                ]
                .contains(&k.as_str())
        })
        .collect();
    let mut store = shared.resources.lock().expect("resources lock");
    let all: Vec<Value> = collection(&mut store, resource, params)
        .objects
        .iter()
        .filter(|o| {
            filters.iter().all(|(k, v)| match o.get(k) {
                Some(Value::String(s)) => s == v,
                Some(Value::Bool(b)) => b.to_string() == *v,
                Some(Value::Null) | None => true,
                Some(other) => serde_json::to_string(other).ok().as_deref() == Some(v.as_str()),
            })
        })
        .cloned()
        .collect();
    drop(store);
    match resource.paging {
        Paging::Bare => json_response(StatusCode::OK, &Value::Array(all)),
        Paging::Cursor => {
            let total = all.len();
            let objects = all
                .into_iter()
                .skip(query.offset)
                .take(query.limit)
                .collect();
            json_response(
                StatusCode::OK,
                &query.page(Flavor::Current, objects, total, false).0,
            )
        }
        Paging::Pages => {
            let pairs = super::today::query_pairs(uri);
            let page: usize = pairs
                .iter()
                .find(|(k, _)| k == "page")
                .and_then(|(_, v)| v.parse().ok())
                .filter(|p| *p >= 1)
                .unwrap_or(1);
            let total = all.len();
            let start = (page - 1).saturating_mul(query.limit);
            let objects: Vec<Value> = all.into_iter().skip(start).take(query.limit).collect();
            let base = format!("{}{}", shared.api_origin, uri.path());
            let link = |p: usize| format!("{base}?page={p}&limit={}", query.limit);
            let next = (start + objects.len() < total).then(|| link(page + 1));
            let previous = (page > 1).then(|| link(page - 1));
            json_response(
                StatusCode::OK,
                &json!({"count": total, "next": next, "previous": previous, "results": objects}),
            )
        }
    }
}

fn create_object(
    shared: &Shared,
    resource: &Resource,
    params: &HashMap<&'static str, String>,
    body: &Map<String, Value>,
) -> Response {
    let mut store = shared.resources.lock().expect("resources lock");
    let key = scope_key(resource, params);
    let collection = collection(&mut store, resource, params);
    collection.numbered += 1;
    let n = collection.numbered;
    let mut object = fill(resource.sample, params, n, &uid_for(&key, n));
    merge(&mut object, body, resource.key);
    if resource.key != "uid" {
        let wanted = body
            .get(resource.key)
            .and_then(Value::as_str)
            .map(str::to_owned)
            .or_else(|| body.get("name").and_then(Value::as_str).map(slugify))
            .filter(|k| !k.is_empty());
        if let Some(wanted) = wanted {
            if collection
                .objects
                .iter()
                .any(|o| o[resource.key].as_str() == Some(wanted.as_str()))
            {
                return json_response(
                    StatusCode::BAD_REQUEST,
                    &json!({ resource.key: [format!("An object with this {} already exists.", resource.key)] }),
                );
            }
            object[resource.key] = json!(wanted);
        }
    }
    collection.objects.push(object.clone());
    json_response(StatusCode::CREATED, &object)
}

fn detail(
    shared: &Shared,
    resource: &Resource,
    params: &HashMap<&'static str, String>,
    op: char,
    body: &Map<String, Value>,
) -> Response {
    let id = params.get("id").map(String::as_str);
    let mut store = shared.resources.lock().expect("resources lock");
    let collection = collection(&mut store, resource, params);
    let Some(position) = collection
        .objects
        .iter()
        .position(|o| o[resource.key].as_str() == id)
    else {
        return problem(Problem::NotFound { what: "Object" });
    };
    match op {
        'G' => json_response(StatusCode::OK, &collection.objects[position]),
        'U' => {
            let object = &mut collection.objects[position];
            merge(object, body, resource.key);
            if object.get("updated_at").is_some() {
                object["updated_at"] = json!(catalog::iso8601(catalog::now()));
            }
            json_response(StatusCode::OK, object)
        }
        _ => {
            collection.objects.remove(position);
            StatusCode::NO_CONTENT.into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sample_and_template_is_json_once_filled() {
        let mut params = HashMap::new();
        for name in [
            "id", "agent", "sequence", "owner", "slug", "project", "org", "team", "slice",
        ] {
            params.insert(param_name(name), format!("x-{name}"));
        }
        for resource in RESOURCES {
            let value = fill(resource.sample, &params, 1, "u");
            assert!(value.is_object(), "{}", resource.list);
            assert!(
                value.get(resource.key).is_some(),
                "{}: no {}",
                resource.list,
                resource.key
            );
            for p in [resource.list, resource.detail]
                .into_iter()
                .chain(resource.create)
            {
                for segment in p.split('/').filter(|s| s.starts_with('{')) {
                    let name = segment.trim_matches(|c| c == '{' || c == '}');
                    assert_ne!(param_name(name), "param", "{p}: add {name} to the names");
                }
            }
        }
        for action in ACTIONS {
            let template = match &action.reply {
                Reply::Json(_, t) | Reply::Merge(t) | Reply::Set(_, t) => *t,
                Reply::Count(_) => "{}",
            };
            assert!(
                !fill(template, &params, 1, "u").is_null() || template == "null",
                "{}",
                action.path
            );
        }
    }

    #[test]
    fn paths_match_segment_by_segment() {
        let params = matches("/slices/{owner}/{id}/", "/slices/demo/cats/").unwrap();
        assert_eq!(params["id"], "cats");
        assert!(matches("/slices/{owner}/{id}/", "/slices/demo/").is_none());
        assert!(matches("/webhooks/", "/webhooks").is_some());
    }
}
