//! What a change to a pipeline changes in its plan: `avala-pipe diff OLD.json NEW.json`
//! and `run --dry-run --diff OLD.json`. Two plan documents (the JSON of
//! `run --dry-run --format json` or `--out`) go in; out come the steps added, removed
//! and changed, and in each changed step the requests added, removed and changed (method,
//! URL, headers, body fields, multipart fields and files), with a one-line count first.
//! Three renderings: text for people, JSON for tools, and Markdown for a pull-request
//! comment that always fits GitHub's 65,535-character limit (what does not fit is
//! summarised and the cut is said).
//!
//! Steps are matched by id; requests within a step by method and URL (in order), then
//! the rest by position. A file is the same file when its field, name, size and type are
//! (the local path differs between two checkouts of a repository; it is shown, not
//! compared).
//!
//! Takes: two plan documents (JSON values). Gives: a [`PlanDiff`], and its renderings
//! (`render`).
//! Must not: read anything but the two documents; fail on a plan it cannot fully read
//! (unknown keys are compared as values).

mod render;

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

pub use render::{to_json, to_markdown, to_text, COMMENT_LIMIT, COMMENT_MARKER};

#[derive(Debug, Serialize, PartialEq, Eq, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub enum Change {
    Added,
    Removed,
    Changed,
}

impl Change {
    pub(crate) fn sign(self) -> char {
        match self {
            Change::Added => '+',
            Change::Removed => '-',
            Change::Changed => '~',
        }
    }
}

#[derive(Debug, Serialize, Default, PartialEq, Eq)]
pub struct Counts {
    pub steps_added: usize,
    pub steps_removed: usize,
    pub steps_changed: usize,
    pub requests_added: usize,
    pub requests_removed: usize,
    pub requests_changed: usize,
}

/// The difference between two plans.
#[derive(Debug, Serialize)]
pub struct PlanDiff {
    pub old_pipeline: String,
    pub new_pipeline: String,
    pub changed: bool,
    pub summary: Counts,
    pub steps: Vec<StepDiff>,
}

#[derive(Debug, Serialize)]
pub struct StepDiff {
    pub id: String,
    pub change: Change,
    pub action: String,
    /// The step's own keys that changed (`action`, `needs`, `if`, `for_each`, `skipped`,
    /// `repeats`, `retry`, `timeout`, `notes`, `name`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<ValueChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub requests: Vec<RequestDiff>,
}

/// One value that differs: `path` is where (`format`, `filters.status`, `needs`).
#[derive(Debug, Serialize, Clone)]
pub struct ValueChange {
    pub path: String,
    pub old: Option<Value>,
    pub new: Option<Value>,
}

#[derive(Debug, Serialize)]
pub struct RequestDiff {
    pub change: Change,
    pub method: String,
    pub url: String,
    /// The URL before, when it changed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_url: Option<String>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub headers: Vec<ValueChange>,
    /// JSON body fields (all of them for an added or removed request).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub body: Vec<ValueChange>,
    /// Multipart text fields.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<ValueChange>,
    /// Files sent (`path`: the part's field and file name).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<ValueChange>,
}

/// A document that is not a plan.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotAPlan(pub String);

/// A step only one of the plans has, with all its requests.
fn whole_step(s: &Value, change: Change, counts: &mut Counts) -> StepDiff {
    let requests = requests_of(s, change);
    match change {
        Change::Removed => {
            counts.steps_removed += 1;
            counts.requests_removed += requests.len();
        }
        _ => {
            counts.steps_added += 1;
            counts.requests_added += requests.len();
        }
    }
    StepDiff {
        id: s["id"].as_str().unwrap_or_default().to_string(),
        change,
        action: s["action"].as_str().unwrap_or_default().into(),
        fields: vec![],
        requests,
    }
}

/// A step both plans have: what changed in it, if anything.
fn changed_step(o: &Value, n: &Value, counts: &mut Counts) -> Option<StepDiff> {
    let fields = step_fields(o, n);
    let requests = request_changes(o, n);
    if fields.is_empty() && requests.is_empty() {
        return None;
    }
    counts.steps_changed += 1;
    for r in &requests {
        match r.change {
            Change::Added => counts.requests_added += 1,
            Change::Removed => counts.requests_removed += 1,
            Change::Changed => counts.requests_changed += 1,
        }
    }
    Some(StepDiff {
        id: n["id"].as_str().unwrap_or_default().to_string(),
        change: Change::Changed,
        action: n["action"].as_str().unwrap_or_default().into(),
        fields,
        requests,
    })
}

/// Compares two plan documents.
pub fn diff(old: &Value, new: &Value) -> Result<PlanDiff, NotAPlan> {
    let steps = |v: &Value, which: &str| -> Result<Vec<Value>, NotAPlan> {
        v.get("steps")
            .and_then(Value::as_array)
            .cloned()
            .ok_or_else(|| {
                NotAPlan(format!(
                    "the {which} document is not a plan (no `steps` list): make it with `avala-pipe run FILE --dry-run --out PLAN.json`"
                ))
            })
    };
    let (old_steps, new_steps) = (steps(old, "old")?, steps(new, "new")?);
    let id = |s: &Value| s["id"].as_str().unwrap_or_default().to_string();
    let index = |list: &[Value]| -> HashMap<String, usize> {
        list.iter().enumerate().map(|(i, s)| (id(s), i)).collect()
    };
    let (old_at, new_at) = (index(&old_steps), index(&new_steps));
    let mut out = Vec::new();
    let mut counts = Counts::default();
    // In the new plan's order, with removed steps after the step they followed.
    let mut removed_after: HashMap<usize, Vec<&Value>> = HashMap::new();
    let mut last_kept = 0;
    for o in &old_steps {
        match new_at.get(&id(o)) {
            Some(&n) => last_kept = n + 1,
            None => removed_after.entry(last_kept).or_default().push(o),
        }
    }
    let removed = |at: usize, out: &mut Vec<StepDiff>, counts: &mut Counts| {
        for o in removed_after.get(&at).into_iter().flatten() {
            out.push(whole_step(o, Change::Removed, counts));
        }
    };
    for (i, n) in new_steps.iter().enumerate() {
        removed(i, &mut out, &mut counts);
        let step = match old_at.get(&id(n)).map(|&i| &old_steps[i]) {
            None => Some(whole_step(n, Change::Added, &mut counts)),
            Some(o) => changed_step(o, n, &mut counts),
        };
        out.extend(step);
    }
    removed(new_steps.len(), &mut out, &mut counts);
    Ok(PlanDiff {
        old_pipeline: old["pipeline"].as_str().unwrap_or_default().into(),
        new_pipeline: new["pipeline"].as_str().unwrap_or_default().into(),
        changed: !out.is_empty(),
        summary: counts,
        steps: out,
    })
}

const STEP_KEYS: &[&str] = &[
    "name", "action", "needs", "if", "for_each", "skipped", "repeats", "retry", "timeout", "notes",
];

fn step_fields(o: &Value, n: &Value) -> Vec<ValueChange> {
    let mut out = Vec::new();
    for key in STEP_KEYS {
        let (a, b) = (&o[*key], &n[*key]);
        if a != b {
            out.push(ValueChange {
                path: key.to_string(),
                old: Some(a.clone()).filter(|v| !v.is_null()),
                new: Some(b.clone()).filter(|v| !v.is_null()),
            });
        }
    }
    out
}

fn request_list(step: &Value) -> Vec<&Value> {
    step["requests"]
        .as_array()
        .map(|r| r.iter().collect())
        .unwrap_or_default()
}

/// Every request of a step added or removed whole.
fn requests_of(step: &Value, change: Change) -> Vec<RequestDiff> {
    request_list(step)
        .into_iter()
        .map(|r| {
            let (old, new) = match change {
                Change::Removed => (Some(r), None),
                _ => (None, Some(r)),
            };
            request_diff(change, old, new)
        })
        .collect()
}

/// Pairs a step's requests: the same method and URL first (in order), then by position.
fn request_changes(o: &Value, n: &Value) -> Vec<RequestDiff> {
    let (old, new) = (request_list(o), request_list(n));
    fn key(r: &Value) -> (Option<&str>, Option<&str>) {
        (r["method"].as_str(), r["url"].as_str())
    }
    let mut old_used = vec![false; old.len()];
    let mut pair: Vec<Option<usize>> = vec![None; new.len()];
    for (j, r) in new.iter().enumerate() {
        if let Some(i) = (0..old.len()).find(|&i| !old_used[i] && key(old[i]) == key(r)) {
            old_used[i] = true;
            pair[j] = Some(i);
        }
    }
    for (j, r) in new.iter().enumerate() {
        if pair[j].is_some() {
            continue;
        }
        if let Some(i) = (0..old.len()).find(|&i| !old_used[i] && old[i]["method"] == r["method"]) {
            old_used[i] = true;
            pair[j] = Some(i);
        }
    }
    let mut out = Vec::new();
    for (j, r) in new.iter().enumerate() {
        match pair[j] {
            Some(i) => {
                let d = request_diff(Change::Changed, Some(old[i]), Some(r));
                if d.old_url.is_some()
                    || !d.headers.is_empty()
                    || !d.body.is_empty()
                    || !d.fields.is_empty()
                    || !d.files.is_empty()
                {
                    out.push(d);
                }
            }
            None => out.push(request_diff(Change::Added, None, Some(r))),
        }
    }
    for (i, r) in old.iter().enumerate() {
        if !old_used[i] {
            out.push(request_diff(Change::Removed, Some(r), None));
        }
    }
    out
}

fn request_diff(change: Change, old: Option<&Value>, new: Option<&Value>) -> RequestDiff {
    let shown = new.or(old).expect("a request");
    let null = Value::Null;
    let (o, n) = (old.unwrap_or(&null), new.unwrap_or(&null));
    let url = shown["url"].as_str().unwrap_or_default().to_string();
    let old_url = old.zip(new).and_then(|(o, n)| {
        (o["url"] != n["url"]).then(|| o["url"].as_str().unwrap_or_default().to_string())
    });
    let mut headers = Vec::new();
    let mut body = Vec::new();
    // An added or removed request shows its body fields, not its headers (those are the
    // same for every request of the API).
    if change == Change::Changed {
        values("", &o["headers"], &n["headers"], &mut headers);
    }
    values("", &o["body"], &n["body"], &mut body);
    let (fields, files) = parts(&o["multipart"], &n["multipart"]);
    RequestDiff {
        change,
        method: shown["method"].as_str().unwrap_or_default().into(),
        url,
        old_url,
        headers,
        body,
        fields,
        files,
    }
}

/// The leaves that differ between two JSON values, by path (`a.b`, `items[2]`).
fn values(path: &str, old: &Value, new: &Value, out: &mut Vec<ValueChange>) {
    if old == new {
        return;
    }
    let join = |k: &str| {
        if path.is_empty() {
            k.to_string()
        } else {
            format!("{path}.{k}")
        }
    };
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, v) in a {
                values(&join(k), v, b.get(k).unwrap_or(&Value::Null), out);
            }
            for (k, v) in b {
                if !a.contains_key(k) {
                    values(&join(k), &Value::Null, v, out);
                }
            }
        }
        (Value::Null, Value::Object(b)) => {
            for (k, v) in b {
                values(&join(k), &Value::Null, v, out);
            }
        }
        (Value::Object(a), Value::Null) => {
            for (k, v) in a {
                values(&join(k), v, &Value::Null, out);
            }
        }
        _ => out.push(ValueChange {
            path: if path.is_empty() {
                "(body)".into()
            } else {
                path.into()
            },
            old: Some(old.clone()).filter(|v| !v.is_null()),
            new: Some(new.clone()).filter(|v| !v.is_null()),
        }),
    }
}

/// Multipart text fields and files that differ.
fn parts(old: &Value, new: &Value) -> (Vec<ValueChange>, Vec<ValueChange>) {
    let list = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let (old, new) = (list(old), list(new));
    let is_file = |p: &Value| p.get("file_name").is_some();
    let mut fields = Vec::new();
    let text = |ps: &[Value]| -> Map<String, Value> {
        ps.iter()
            .filter(|p| !is_file(p))
            .map(|p| {
                (
                    p["field"].as_str().unwrap_or_default().to_string(),
                    p["value"].clone(),
                )
            })
            .collect()
    };
    values(
        "",
        &Value::Object(text(&old)),
        &Value::Object(text(&new)),
        &mut fields,
    );
    // A file is its field, name, size and type; its local path is only shown.
    let file_key = |p: &Value| {
        (
            p["field"].clone(),
            p["file_name"].clone(),
            p["size"].clone(),
            p["content_type"].clone(),
        )
    };
    let label = |p: &Value| {
        format!(
            "{}: {}",
            p["field"].as_str().unwrap_or_default(),
            p["file_name"].as_str().unwrap_or_default()
        )
    };
    let describe = |p: &Value| {
        let size = p["size"]
            .as_u64()
            .map_or("size known after run".to_string(), |s| format!("{s} bytes"));
        Value::String(format!(
            "{} ({size}, {}) from {}",
            p["file_name"].as_str().unwrap_or_default(),
            p["content_type"].as_str().unwrap_or_default(),
            p["file"].as_str().unwrap_or_default()
        ))
    };
    let mut files = Vec::new();
    let old_files: Vec<&Value> = old.iter().filter(|p| is_file(p)).collect();
    let new_files: Vec<&Value> = new.iter().filter(|p| is_file(p)).collect();
    for o in &old_files {
        if !new_files.iter().any(|n| file_key(n) == file_key(o)) {
            let replaced = new_files.iter().find(|n| {
                n["field"] == o["field"]
                    && n["file_name"] == o["file_name"]
                    && !old_files.iter().any(|x| file_key(x) == file_key(n))
            });
            files.push(ValueChange {
                path: label(o),
                old: Some(describe(o)),
                new: replaced.map(|n| describe(n)),
            });
        }
    }
    for n in &new_files {
        let replaces = old_files
            .iter()
            .any(|o| o["field"] == n["field"] && o["file_name"] == n["file_name"]);
        if !old_files.iter().any(|o| file_key(o) == file_key(n)) && !replaces {
            files.push(ValueChange {
                path: label(n),
                old: None,
                new: Some(describe(n)),
            });
        }
    }
    (fields, files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn plan(steps: Value) -> Value {
        json!({"pipeline": "p", "steps": steps})
    }

    #[test]
    fn the_same_plan_has_no_changes() {
        let p = plan(
            json!([{"id": "a", "action": "request", "requests": [{"method": "GET", "url": "u"}]}]),
        );
        let d = diff(&p, &p).unwrap();
        assert!(!d.changed);
        assert_eq!(d.summary_line(), "No changes: the plan is the same.");
    }

    #[test]
    fn requests_pair_by_url_then_position() {
        let old = plan(json!([{"id": "a", "action": "request", "requests": [
            {"method": "POST", "url": "u1", "body": {"x": 1}},
            {"method": "POST", "url": "u2", "body": {"x": 1}}]}]));
        let new = plan(json!([{"id": "a", "action": "request", "requests": [
            {"method": "POST", "url": "u2", "body": {"x": 1}},
            {"method": "POST", "url": "u3", "body": {"x": 2, "y": {"z": true}}}]}]));
        let d = diff(&old, &new).unwrap();
        assert_eq!(d.summary.requests_changed, 1);
        let r = &d.steps[0].requests[0];
        assert_eq!(r.old_url.as_deref(), Some("u1"));
        let paths: Vec<&str> = r.body.iter().map(|c| c.path.as_str()).collect();
        assert_eq!(paths, ["x", "y.z"]);
    }

    #[test]
    fn a_file_is_compared_without_its_local_path() {
        let part = |file: &str, size: u64| json!({"field": "file", "file": file, "file_name": "a.jsonl", "size": size, "content_type": "x"});
        let step = |p: Value| {
            plan(
                json!([{"id": "up", "action": "items.upload", "requests": [{"method": "POST", "url": "u", "multipart": [p]}]}]),
            )
        };
        let d = diff(
            &step(part("base/a.jsonl", 3)),
            &step(part("head/a.jsonl", 3)),
        )
        .unwrap();
        assert!(!d.changed);
        let d = diff(&step(part("a.jsonl", 3)), &step(part("a.jsonl", 4))).unwrap();
        assert_eq!(d.steps[0].requests[0].files.len(), 1);
        assert!(to_text(&d).contains("file file: a.jsonl: \"a.jsonl (3 bytes, x) from a.jsonl\" → \"a.jsonl (4 bytes, x) from a.jsonl\""), "{}", to_text(&d));
    }

    #[test]
    fn a_removed_step_stays_where_it_was() {
        let s = |id: &str| json!({"id": id, "action": "request", "requests": []});
        let d = diff(
            &plan(json!([s("a"), s("b"), s("c")])),
            &plan(json!([s("a"), s("c"), s("d")])),
        )
        .unwrap();
        let order: Vec<(&str, Change)> =
            d.steps.iter().map(|s| (s.id.as_str(), s.change)).collect();
        assert_eq!(order, [("b", Change::Removed), ("d", Change::Added)]);
    }

    #[test]
    fn not_a_plan_is_an_error() {
        assert!(diff(&json!({"status": "succeeded"}), &plan(json!([]))).is_err());
    }
}
