//! The actions of SPEC §3. Each action module has two halves built on the same code:
//! `plan` (the requests it would send, for dry-run) and `run` (send them). Both start
//! from the action's rendered inputs ([`Inputs`]).
//!
//! Must not: render the step's templates (the executor does, before calling in), except
//! `request`'s poll conditions, which are rendered per response through [`Renderer`].

pub mod download;
pub mod exports;
pub mod list;
pub mod request;
pub mod scratch;
pub mod upload;

use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

use crate::api::{ApiError, CallCtx, Client, HttpRequest};
use crate::pipeline::model::{parse_duration, ActionKind, TValue};
use crate::pipeline::spec;

/// Why an action failed.
#[derive(Debug)]
pub enum ActionError {
    /// An input has the wrong type or value (after rendering).
    Input(String),
    /// The API or the transfer failed.
    Api(ApiError),
    /// Anything else (files, exports that failed, timeouts), in words.
    Other(String),
}

impl std::fmt::Display for ActionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ActionError::Input(m) | ActionError::Other(m) => f.write_str(m),
            ActionError::Api(e) => write!(f, "{e}"),
        }
    }
}

impl From<ApiError> for ActionError {
    fn from(e: ApiError) -> Self {
        ActionError::Api(e)
    }
}

impl ActionError {
    pub fn is_cancelled(&self) -> bool {
        matches!(self, ActionError::Api(e) if e.kind == crate::api::ErrorKind::Cancelled)
    }
}

pub type ActionResult = Result<Value, ActionError>;

/// Renders templates that need per-request data (`response` in poll conditions).
pub trait Renderer: Send + Sync {
    fn render_with(&self, value: &TValue, name: &str, data: &Value) -> Result<Value, String>;
}

/// A step's inputs after rendering, with the action's defaults filled in.
#[derive(Clone, Debug)]
pub struct Inputs {
    pub action: ActionKind,
    pub values: Map<String, Value>,
    /// Unrendered inputs, for those rendered late (`poll`).
    pub raw: indexmap::IndexMap<String, TValue>,
    /// Dry-run: values may be `<known after run: ...>` placeholders.
    pub preview: bool,
}

pub fn is_placeholder(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.contains("<known after run:"))
}

impl Inputs {
    pub fn new(
        action: ActionKind,
        values: Map<String, Value>,
        raw: indexmap::IndexMap<String, TValue>,
        preview: bool,
    ) -> Self {
        Inputs {
            action,
            values,
            raw,
            preview,
        }
    }

    fn spec(&self, name: &str) -> Option<&'static spec::Field> {
        spec::action(self.action.name()).and_then(|a| spec::field(a.inputs, name))
    }

    fn default(&self, name: &str) -> Option<&'static str> {
        self.spec(name).and_then(|f| f.default)
    }

    pub fn get(&self, name: &str) -> Option<&Value> {
        self.values.get(name).filter(|v| !v.is_null())
    }

    fn bad(&self, name: &str, expected: &str, got: &Value) -> ActionError {
        ActionError::Input(format!(
            "input `{name}` must be {expected}, got {}",
            crate::api::shapes::shorten(&got.to_string(), 80)
        ))
    }

    pub fn str(&self, name: &str) -> Result<Option<String>, ActionError> {
        match self.get(name) {
            None => Ok(self.default(name).map(str::to_string)),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.bad(name, "a string", other)),
        }
    }

    pub fn required_str(&self, name: &str) -> Result<String, ActionError> {
        match self.str(name)? {
            Some(s) if !s.is_empty() => Ok(s),
            _ => Err(ActionError::Input(format!(
                "input `{name}` is required and rendered empty"
            ))),
        }
    }

    pub fn u64(&self, name: &str) -> Result<Option<u64>, ActionError> {
        let v = match self.get(name) {
            None => return Ok(self.default(name).and_then(|d| d.parse().ok())),
            Some(v) => v,
        };
        if self.preview && is_placeholder(v) {
            return Ok(self.default(name).and_then(|d| d.parse().ok()));
        }
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let n = n.ok_or_else(|| self.bad(name, "a whole number", v))?;
        if let Some(spec::Field {
            ty: spec::Ty::Int { min, max },
            ..
        }) = self.spec(name)
        {
            if (n as i64) < *min || (n as i64) > *max {
                return Err(ActionError::Input(format!(
                    "input `{name}` must be between {min} and {max}, got {n}"
                )));
            }
        }
        Ok(Some(n))
    }

    pub fn bool(&self, name: &str) -> Result<bool, ActionError> {
        match self.get(name) {
            None => Ok(self.default(name) == Some("true")),
            Some(Value::Bool(b)) => Ok(*b),
            Some(Value::String(s)) if s == "true" || s == "false" => Ok(s == "true"),
            Some(v) if self.preview && is_placeholder(v) => Ok(self.default(name) == Some("true")),
            Some(other) => Err(self.bad(name, "true or false", other)),
        }
    }

    pub fn duration(&self, name: &str) -> Result<Duration, ActionError> {
        let text = match self.get(name) {
            None => self.default(name).unwrap_or("0").to_string(),
            Some(Value::String(s)) => s.clone(),
            Some(Value::Number(n)) => n.to_string(),
            Some(other) => return Err(self.bad(name, "a duration", other)),
        };
        match parse_duration(&text) {
            Some(d) => Ok(d),
            None if self.preview && text.contains("<known after run:") => Ok(Duration::ZERO),
            None => Err(ActionError::Input(format!(
                "input `{name}` must be a duration such as 2s or 10m, got `{text}`"
            ))),
        }
    }

    /// A string or a list of strings.
    pub fn str_list(&self, name: &str) -> Result<Vec<String>, ActionError> {
        match self.get(name) {
            None => Ok(vec![]),
            Some(Value::String(s)) => Ok(vec![s.clone()]),
            Some(Value::Array(items)) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(self.bad(name, "a list of strings", other)),
                })
                .collect(),
            Some(other) => Err(self.bad(name, "a string or a list of strings", other)),
        }
    }

    pub fn map(&self, name: &str) -> Result<Map<String, Value>, ActionError> {
        match self.get(name) {
            None => Ok(Map::new()),
            Some(Value::Object(m)) => Ok(m.clone()),
            Some(other) => Err(self.bad(name, "a mapping", other)),
        }
    }
}

/// Everything an action needs to run.
pub struct RunCtx<'a> {
    pub client: &'a Client,
    pub call: CallCtx,
    pub renderer: &'a dyn Renderer,
    /// Bytes moved by a transfer: `(label, done, total)`, for progress displays.
    pub progress: &'a (dyn Fn(&str, u64, Option<u64>) + Send + Sync),
}

/// Calls `progress` at most every quarter second (and always on the last call).
pub struct Throttle {
    last: Option<std::time::Instant>,
}

impl Throttle {
    pub fn new() -> Self {
        Throttle { last: None }
    }

    pub fn ready(&mut self, last_call: bool) -> bool {
        let now = std::time::Instant::now();
        let due = last_call
            || self
                .last
                .is_none_or(|t| now.duration_since(t) >= Duration::from_millis(250));
        if due {
            self.last = Some(now);
        }
        due
    }
}

impl Default for Throttle {
    fn default() -> Self {
        Self::new()
    }
}

/// What dry-run shows for a step: the requests, how they repeat, and notes in words.
#[derive(Debug, Default)]
pub struct ActionPlan {
    pub requests: Vec<HttpRequest>,
    /// Pagination or polling, when the request is sent more than once.
    pub repeats: Option<Repeats>,
    /// Anything else a reviewer should know (files, destinations, expected statuses).
    pub notes: Vec<String>,
}

/// How a planned request repeats: page after page, or until a condition holds.
/// Serialized as the `repeats` field of the JSON plan (see `docs/dry-run.md`).
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Repeats {
    /// Follows the next cursor (either API shape) until there are no more pages.
    Pages {
        until: String,
        /// Stops early after this many items (`max_items`).
        max_items: Option<u64>,
    },
    /// Sends the request again, the interval growing to `max_interval`, until `until`
    /// holds; fails at once when `fail_if` holds, or when `timeout` passes.
    Poll {
        interval: String,
        max_interval: String,
        timeout: String,
        until: String,
        fail_if: Option<String>,
    },
}

impl Repeats {
    /// Pagination as every list action and `request` with `paginate: true` does it.
    pub fn pages(max_items: Option<u64>) -> Repeats {
        Repeats::Pages {
            until: "has_more is false or next is null".into(),
            max_items,
        }
    }

    /// The same, in words.
    pub fn describe(&self) -> String {
        match self {
            Repeats::Pages { until, max_items } => {
                let stop = max_items
                    .map(|m| format!(", stopping after {m} item{}", if m == 1 { "" } else { "s" }))
                    .unwrap_or_default();
                format!("repeats with the next cursor until {until}{stop}; a cursor seen twice fails the step")
            }
            Repeats::Poll {
                interval,
                max_interval,
                timeout,
                until,
                fail_if,
            } => {
                let mut text = format!(
                    "repeats every {interval} (growing to {max_interval}) until {until}, up to {timeout}"
                );
                if let Some(f) = fail_if {
                    text.push_str(&format!("; fails at once when {f}"));
                }
                text
            }
        }
    }
}

/// The requests a step would send, for dry-run (and the first ones a run sends).
pub fn plan(inputs: &Inputs, client: &Client) -> Result<ActionPlan, ActionError> {
    match inputs.action {
        ActionKind::DatasetsList | ActionKind::ItemsList => list::plan(inputs, client),
        ActionKind::ItemsUpload => upload::plan(inputs, client),
        ActionKind::ExportsCreate => exports::plan_create(inputs, client),
        ActionKind::ExportsWait => exports::plan_wait(inputs, client),
        ActionKind::Download => download::plan(inputs, client),
        ActionKind::Request => request::plan(inputs, client),
    }
}

/// Runs a step's action and returns its result (the step's outputs).
pub async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
    match inputs.action {
        ActionKind::DatasetsList | ActionKind::ItemsList => list::run(inputs, ctx).await,
        ActionKind::ItemsUpload => upload::run(inputs, ctx).await,
        ActionKind::ExportsCreate => exports::run_create(inputs, ctx).await,
        ActionKind::ExportsWait => exports::run_wait(inputs, ctx).await,
        ActionKind::Download => download::run(inputs, ctx).await,
        ActionKind::Request => request::run(inputs, ctx).await,
    }
}

/// A temporary file in `dir` for a result that will be renamed into place. It is created
/// with the mode an ordinary new file would get (0666 less the umask), not tempfile's
/// private 0600, so the renamed result looks like any file the user writes.
pub fn temp_beside(dir: &std::path::Path) -> std::io::Result<tempfile::NamedTempFile> {
    let mut builder = tempfile::Builder::new();
    builder.prefix(".avala-pipe-").suffix(".part");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir)
}

/// Gives the file about to replace `dest` the permissions `dest` has now, if it exists.
pub fn keep_permissions(tmp: &tempfile::NamedTempFile, dest: &std::path::Path) {
    if let Ok(meta) = std::fs::metadata(dest) {
        let _ = std::fs::set_permissions(tmp.path(), meta.permissions());
    }
}

/// A path as the user gave it, resolved against the working directory.
pub fn local_path(text: &str) -> PathBuf {
    PathBuf::from(text)
}

/// Poll interval growth: ×1.5 per poll, capped.
pub fn next_interval(current: Duration, max: Duration) -> Duration {
    current.mul_f64(1.5).min(max).max(Duration::from_millis(10))
}
