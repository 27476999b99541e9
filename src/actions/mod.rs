//! The actions of SPEC §3, and their registry. Each action is a type implementing
//! [`Action`] in a file of its own: its spec entry (inputs with their defaults, outputs),
//! a typed reading of its rendered inputs, and two halves built on the same code: `plan`
//! (the requests it would send, over a pure [`Endpoint`]) and `run` (send them through
//! the [`Client`]). Adding an action is a file and a line in [`actions!`] below.
//!
//! Takes: a step's rendered [`Inputs`]. Gives: requests (plan) or the step's result (run).
//! Must not: render the step's templates (the step layer does, before calling in), except
//! late inputs (a poll's conditions), which are rendered per response through [`Renderer`].

pub mod datasets;
pub mod download;
pub mod exports;
pub mod list;
pub mod presigned;
pub mod request;
pub mod resources;
pub mod scratch;
mod sent_hash;
pub mod sink;
pub mod upload;

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;
use serde_json::Value;

use crate::api::{ApiError, CallCtx, Client, Endpoint, HttpRequest};
use crate::pipeline::model::{parse_duration, TValue, Tmpl};
use crate::pipeline::spec::{ActionSpec, Field, Ty};
use crate::template::{Rendered, TemplateError, Text};

/// Why an action failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// An input has the wrong type or value (after rendering).
    #[error("{0}")]
    Input(String),
    /// A late input (a poll condition) did not render.
    #[error(transparent)]
    Template(#[from] TemplateError),
    /// The API or the transfer failed.
    #[error(transparent)]
    Api(#[from] ApiError),
    /// The run was interrupted while the action waited or transferred (`while polling`).
    #[error("interrupted {0}")]
    Interrupted(String),
    /// Anything else (files, exports that failed, timeouts), in words.
    #[error("{0}")]
    Other(String),
}

impl ActionError {
    pub fn is_interrupted(&self) -> bool {
        match self {
            ActionError::Interrupted(_) => true,
            ActionError::Api(e) => e.kind == crate::api::ErrorKind::Cancelled,
            _ => false,
        }
    }
}

pub type ActionResult = Result<crate::outputs::Outputs, ActionError>;

/// One action: its spec entry and its two halves.
pub trait Action {
    const SPEC: &'static ActionSpec;

    /// The requests the step would send, for dry-run (and the first ones a run sends).
    fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError>;

    /// Runs the action and returns its result (the step's outputs).
    fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> impl Future<Output = ActionResult> + Send;
}

/// The registry: every action, by kind, in the order the README and the schema list them.
macro_rules! actions {
    ($($kind:ident => $ty:ty),* $(,)?) => {
        /// The actions of SPEC §3 (and those added since).
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ActionKind { $($kind),* }

        impl ActionKind {
            pub const ALL: &'static [ActionKind] = &[$(ActionKind::$kind),*];

            pub fn spec(self) -> &'static ActionSpec {
                match self { $(ActionKind::$kind => <$ty as Action>::SPEC),* }
            }
        }

        /// The requests a step would send (dry-run, and a run's preflight).
        pub fn plan(inputs: &Inputs, endpoint: &Endpoint) -> Result<ActionPlan, ActionError> {
            match inputs.action { $(ActionKind::$kind => <$ty as Action>::plan(inputs, endpoint)),* }
        }

        /// Runs a step's action and returns its result (the step's outputs).
        pub async fn run(inputs: &Inputs, ctx: &RunCtx<'_>) -> ActionResult {
            match inputs.action { $(ActionKind::$kind => <$ty as Action>::run(inputs, ctx).await),* }
        }
    };
}

actions! {
    DatasetsList => list::DatasetsList,
    ItemsList => list::ItemsList,
    ItemsUpload => upload::ItemsUpload,
    ExportsCreate => exports::ExportsCreate,
    ExportsWait => exports::ExportsWait,
    Download => download::Download,
    Request => request::Request,
    ProjectsGet => resources::ProjectsGet,
    ProjectsList => resources::ProjectsList,
    DatasetsGet => datasets::DatasetsGet,
    DatasetsCreate => datasets::DatasetsCreate,
    DatasetsUpload => presigned::DatasetsUpload,
    ItemsGet => datasets::ItemsGet,
    TasksList => resources::TasksList,
    TasksGet => resources::TasksGet,
    TasksWait => resources::TasksWait,
}

impl ActionKind {
    pub fn name(self) -> &'static str {
        self.spec().name
    }

    pub fn from_name(name: &str) -> Option<ActionKind> {
        ActionKind::ALL.iter().copied().find(|a| a.name() == name)
    }
}

/// Renders late inputs (poll conditions) with the step's context plus per-response data.
pub trait Renderer: Send + Sync {
    fn render_with(&self, value: &TValue, name: &str, data: &Value)
        -> Result<Value, TemplateError>;
}

/// A step's inputs after rendering. Actions read them through typed accessors that take
/// the input's own [`Field`] (so its default comes from the one place it is declared).
/// In a dry-run a value may be known only after the run: the accessors say so in their
/// types ([`Text`], `Option<Duration>`), or fall back to the field's default where the
/// plan only needs a plausible shape (a page size, a flag).
#[derive(Clone, Debug)]
pub struct Inputs {
    pub action: ActionKind,
    values: IndexMap<String, Rendered>,
    /// The inputs as written, for those rendered late.
    raw: IndexMap<String, TValue>,
}

impl Inputs {
    pub fn new(
        action: ActionKind,
        values: IndexMap<String, Rendered>,
        raw: IndexMap<String, TValue>,
    ) -> Self {
        Inputs {
            action,
            values,
            raw,
        }
    }

    /// Every rendered input, as the plan shows them.
    pub fn values(&self) -> &IndexMap<String, Rendered> {
        &self.values
    }

    /// The rendered value of an input (absent or null: `None`).
    pub fn get(&self, f: &Field) -> Option<&Rendered> {
        self.values.get(f.name).filter(|v| !v.is_null())
    }

    /// The input as written (for late inputs).
    pub fn unrendered(&self, f: &Field) -> Option<&TValue> {
        self.raw.get(f.name)
    }

    fn bad(&self, f: &Field, expected: &str, got: &Value) -> ActionError {
        ActionError::Input(format!(
            "input `{}` must be {expected}, got {}",
            f.name,
            crate::api::shapes::shorten(&got.to_string(), 80)
        ))
    }

    /// A string (numbers kept as written); the default when absent.
    pub fn text(&self, f: &Field) -> Result<Option<Text>, ActionError> {
        match self.get(f) {
            None => Ok(f.default.map(|d| Text::Known(d.to_string()))),
            Some(Rendered::Json(Value::String(s))) => Ok(Some(Text::Known(s.clone()))),
            Some(Rendered::Json(Value::Number(n))) => Ok(Some(Text::Known(n.to_string()))),
            Some(Rendered::Json(other)) => Err(self.bad(f, "a string", other)),
            Some(later) => Ok(Some(later.to_text())),
        }
    }

    /// A string that must be there and not empty.
    pub fn required_text(&self, f: &Field) -> Result<Text, ActionError> {
        match self.text(f)? {
            Some(Text::Known(s)) if s.is_empty() => Err(ActionError::Input(format!(
                "input `{}` is required and rendered empty",
                f.name
            ))),
            Some(t) => Ok(t),
            None => Err(ActionError::Input(format!(
                "input `{}` is required and rendered empty",
                f.name
            ))),
        }
    }

    /// A whole number within the field's range. A value known only after the run reads
    /// as the default (the plan shows the shape of the request, not this number).
    pub fn count(&self, f: &Field) -> Result<Option<u64>, ActionError> {
        let default = || f.default.and_then(|d| d.parse().ok());
        let v = match self.get(f) {
            None => return Ok(default()),
            Some(Rendered::Json(v)) => v,
            Some(_) => return Ok(default()),
        };
        let n = match v {
            Value::Number(n) => n.as_u64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        };
        let n = n.ok_or_else(|| self.bad(f, "a whole number", v))?;
        if let Ty::Int { min, max } = f.ty {
            if (n as i64) < min || (n as i64) > max {
                return Err(ActionError::Input(format!(
                    "input `{}` must be between {min} and {max}, got {n}",
                    f.name
                )));
            }
        }
        Ok(Some(n))
    }

    /// true or false. A value known only after the run reads as the default.
    pub fn flag(&self, f: &Field) -> Result<bool, ActionError> {
        let default = f.default == Some("true");
        match self.get(f) {
            None => Ok(default),
            Some(Rendered::Json(Value::Bool(b))) => Ok(*b),
            Some(Rendered::Json(Value::String(s))) if s == "true" || s == "false" => {
                Ok(s == "true")
            }
            Some(Rendered::Json(other)) => Err(self.bad(f, "true or false", other)),
            Some(_) => Ok(default),
        }
    }

    /// A duration; `None` when it is known only after the run.
    pub fn duration(&self, f: &Field) -> Result<Option<Duration>, ActionError> {
        let text = match self.get(f) {
            None => f.default.unwrap_or("0").to_string(),
            Some(Rendered::Json(Value::String(s))) => s.clone(),
            Some(Rendered::Json(Value::Number(n))) => n.to_string(),
            Some(Rendered::Json(other)) => return Err(self.bad(f, "a duration", other)),
            Some(_) => return Ok(None),
        };
        match parse_duration(&text) {
            Some(d) => Ok(Some(d)),
            None => Err(ActionError::Input(format!(
                "input `{}` must be a duration such as 2s or 10m, got `{text}`",
                f.name
            ))),
        }
    }

    /// A string or a list of strings.
    pub fn texts(&self, f: &Field) -> Result<Vec<Text>, ActionError> {
        match self.get(f) {
            None => Ok(vec![]),
            Some(Rendered::Json(Value::Array(items))) => items
                .iter()
                .map(|i| match i {
                    Value::String(s) => Ok(Text::Known(s.clone())),
                    other => Err(self.bad(f, "a list of strings", other)),
                })
                .collect(),
            Some(Rendered::List(items)) => Ok(items.iter().map(Rendered::to_text).collect()),
            Some(Rendered::Json(Value::String(s))) => Ok(vec![Text::Known(s.clone())]),
            Some(Rendered::Json(other)) => Err(self.bad(f, "a string or a list of strings", other)),
            Some(later) => Ok(vec![later.to_text()]),
        }
    }

    /// A mapping of names to values (known, or known after the run).
    pub fn map(&self, f: &Field) -> Result<IndexMap<String, Rendered>, ActionError> {
        match self.get(f) {
            None => Ok(IndexMap::new()),
            Some(Rendered::Json(Value::Object(m))) => Ok(m
                .iter()
                .map(|(k, v)| (k.clone(), Rendered::Json(v.clone())))
                .collect()),
            Some(Rendered::Map(m)) => Ok(m.clone()),
            Some(Rendered::Json(other)) => Err(self.bad(f, "a mapping", other)),
            Some(_) => Err(ActionError::Input(format!(
                "input `{}` must be a mapping; it is known only after the run",
                f.name
            ))),
        }
    }

    /// A mapping of names to values as query parameters.
    pub fn query(&self, f: &Field) -> Result<Vec<(String, Text)>, ActionError> {
        Ok(self
            .map(f)?
            .into_iter()
            .map(|(k, v)| (k, v.to_text()))
            .collect())
    }
}

impl Rendered {
    /// As text for a URL or a form field: strings as they are, other JSON as JSON.
    pub fn to_text(&self) -> Text {
        match self {
            Rendered::Json(v) => Text::Known(crate::api::request::query_text(v)),
            Rendered::Later(l) => Text::Later(l.clone()),
            other => Text::Later(crate::template::Later::from_pieces(vec![
                crate::template::Piece::Text(other.shown().to_string()),
            ])),
        }
    }
}

/// A duration for the plan: known now, or after the run.
pub fn shown_duration(d: Option<Duration>) -> String {
    d.map_or_else(
        || "a duration known after run".to_string(),
        crate::pipeline::model::format_duration,
    )
}

/// Everything an action needs to run.
pub struct RunCtx<'a> {
    pub client: &'a Client,
    pub call: CallCtx,
    pub renderer: &'a dyn Renderer,
    /// Bytes moved by a transfer: `(label, done, total)`, for progress displays.
    pub progress: &'a (dyn Fn(&str, u64, Option<u64>) + Send + Sync),
    /// The run journal, as this step sees it: what an interrupted earlier attempt got
    /// done, and where to record the remote work this one does once the server confirms it.
    pub journal: &'a crate::journal::StepLog,
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

/// Context roots whose values the user controls; anything else a template reads
/// (`steps.*` outputs, a `for_each` `item`) may come from a server.
const USER_ROOTS: &[&str] = &["vars", "env", "secrets", "run", "pipeline", "index"];

/// The file placement policy (README, "Files from server data"): when a path is a
/// template that reads data a server may have sent (step outputs, a `for_each` item),
/// the part after its literal prefix may not climb out of that prefix with `..`, and a
/// path that is all template may not be absolute. `out/{{ item.key }}` with the key
/// `../../x` is refused, not written outside `out/` (destinations: `download.to`,
/// `save_to`), and a server cannot name `/home/me/.ssh/id_rsa` as a file to upload
/// (`files`). Literal paths and those built from `vars`/`env` are the user's own.
pub fn check_placement(inputs: &Inputs, f: &Field, rendered: &str) -> Result<(), ActionError> {
    match inputs.unrendered(f) {
        Some(TValue::Tmpl(tmpl)) => placement(tmpl, f.name, rendered),
        _ => Ok(()),
    }
}

/// [`check_placement`] for a string-or-list input (`files`): each path known now is
/// checked against the template it came from (the whole list's, or its own element's).
pub fn check_placements(inputs: &Inputs, f: &Field, rendered: &[Text]) -> Result<(), ActionError> {
    let mut known = rendered.iter().filter_map(Text::known);
    match inputs.unrendered(f) {
        Some(TValue::Tmpl(tmpl)) => known.try_for_each(|p| placement(tmpl, f.name, p)),
        Some(TValue::List(raw)) => {
            raw.iter()
                .zip(rendered)
                .try_for_each(|(raw, path)| match (raw, path.known()) {
                    (TValue::Tmpl(tmpl), Some(path)) => placement(tmpl, f.name, path),
                    _ => Ok(()),
                })
        }
        _ => Ok(()),
    }
}

/// The policy for one path rendered from `tmpl`.
pub fn placement(tmpl: &Tmpl, name: &str, rendered: &str) -> Result<(), ActionError> {
    let refs = crate::template::analyze(&tmpl.source)
        .map(|a| a.references)
        .unwrap_or_else(|_| vec!["steps".into()]);
    let from_server = refs.iter().any(|r| {
        let root = r.split(['.', '[']).next().unwrap_or(r);
        !USER_ROOTS.contains(&root)
    });
    if !from_server {
        return Ok(());
    }
    let cut = ["{{", "{%", "{#"]
        .iter()
        .filter_map(|m| tmpl.source.find(m))
        .min()
        .unwrap_or(tmpl.source.len());
    let prefix = &tmpl.source[..cut];
    // `{{-` may eat whitespace before it: then nothing of the prefix is relied on.
    let (prefix, tail) = match rendered.strip_prefix(prefix) {
        Some(tail) => (prefix, tail),
        None => ("", rendered),
    };
    let refuse = |why: String| {
        ActionError::Input(format!(
            "input `{name}` renders to `{}`: {why}; a path built from server data (step outputs, `for_each` items) must stay under its literal part. Write the path in the file, or take it from `vars`, to use it on purpose",
            crate::api::shapes::shorten(rendered, 200)
        ))
    };
    if tail
        .split(['/', std::path::MAIN_SEPARATOR])
        .any(|c| c == "..")
    {
        let under = match prefix {
            "" => "the working directory".to_string(),
            p => format!("`{p}`"),
        };
        return Err(refuse(format!(
            "the templated part climbs out of {under} with `..`"
        )));
    }
    if prefix.is_empty() && std::path::Path::new(tail).is_absolute() {
        return Err(refuse("the templated path is absolute".into()));
    }
    Ok(())
}

/// Where a result for `dest` is written in place: a regular file (or none yet) is
/// replaced; a symlink is followed, so its target is replaced and the link kept; a
/// directory, device, FIFO or socket is refused (never replaced by a regular file).
pub fn destination(dest: &std::path::Path) -> Result<PathBuf, ActionError> {
    let mut path = dest.to_path_buf();
    for _ in 0..40 {
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && path == dest => {
                return Ok(path)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ActionError::Other(format!(
                    "{} is a symbolic link to {}, which does not exist: not writing through a dangling link",
                    dest.display(),
                    path.display()
                )))
            }
            Err(e) => {
                return Err(ActionError::Other(format!(
                    "cannot inspect {}: {e}",
                    path.display()
                )))
            }
        };
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(path);
        }
        if kind.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| {
                ActionError::Other(format!("cannot read the link {}: {e}", path.display()))
            })?;
            path = match path.parent() {
                Some(dir) if target.is_relative() => dir.join(target),
                _ => target,
            };
            continue;
        }
        let what = special_kind(&kind);
        let via = if path == dest {
            String::new()
        } else {
            format!(" (the target of the link {})", dest.display())
        };
        return Err(ActionError::Other(format!(
            "{}{via} is {what}, not a regular file: refusing to replace it with one",
            path.display()
        )));
    }
    Err(ActionError::Other(format!(
        "{}: too many levels of symbolic links",
        dest.display()
    )))
}

fn special_kind(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt as _;
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        return "a directory";
    }
    "not a regular file"
}

/// Sends an API request and reads its JSON body; a body that is not JSON fails with the
/// request and the reason (where the bytes went wrong).
pub async fn fetch_json(ctx: &RunCtx<'_>, req: &HttpRequest) -> Result<Value, ActionError> {
    let resp = ctx.client.send_json(req, &ctx.call, None).await?;
    resp.json().map_err(|why| {
        ActionError::Other(format!(
            "{} {}: {why}",
            req.method.as_str(),
            crate::api::request::display_path(&req.url)
        ))
    })
}

/// The clock of every action that polls (`exports.wait`, `tasks.wait`, `request` with
/// `poll`, waiting for a dataset): polls counted, the interval growing ×1.5 to its cap,
/// the timeout, and the pause between two polls. Each action keeps only its own state
/// check and its own words.
pub struct Poller {
    started: std::time::Instant,
    interval: Duration,
    max: Duration,
    pub timeout: Duration,
    /// Polls made so far.
    pub polls: u32,
}

impl Poller {
    pub fn new(interval: Duration, max: Duration, timeout: Duration) -> Self {
        Poller {
            started: std::time::Instant::now(),
            interval,
            max,
            timeout,
            polls: 0,
        }
    }

    /// Counts the poll about to be made; gives its number.
    pub fn poll(&mut self) -> u32 {
        self.polls += 1;
        self.polls
    }

    /// The next pause would end past the timeout.
    pub fn out_of_time(&self) -> bool {
        self.started.elapsed() + self.interval > self.timeout
    }

    /// Time since the first poll, in whole seconds, as people write it.
    pub fn waited(&self) -> String {
        crate::pipeline::model::format_duration(Duration::from_secs(
            self.started.elapsed().as_secs(),
        ))
    }

    pub fn interval(&self) -> Duration {
        self.interval
    }

    /// The pause before the next poll, cut short by an interrupt (`what`: what was being
    /// waited for, "while polling"), recorded as a poll wait for the run's timeline; the
    /// interval then grows.
    pub async fn pause(&mut self, ctx: &RunCtx<'_>, what: &str) -> Result<(), ActionError> {
        let waiting = std::time::Instant::now();
        tokio::select! {
            _ = tokio::time::sleep(self.interval) => {}
            _ = ctx.call.cancel.cancelled() => return Err(ActionError::Interrupted(what.to_string())),
        }
        ctx.call.waited(crate::api::WaitCause::Poll, waiting);
        self.interval = self
            .interval
            .mul_f64(1.5)
            .min(self.max)
            .max(Duration::from_millis(10));
        Ok(())
    }
}

/// Whether running `step` may change the server: its action's spec says so, or it is a
/// `request` whose method is not written as `GET` or `HEAD` (a template may render any).
/// The journal waits for such a step's start record before its first request, and a
/// timeout says its requests in flight may have been applied.
pub fn may_change_server(step: &crate::pipeline::model::Step) -> bool {
    use crate::pipeline::model::TValue;
    if step.action.spec().changes_server {
        return true;
    }
    if step.action != ActionKind::Request {
        return false;
    }
    match step.with.get("method") {
        None => false,
        Some(TValue::Str(m)) => !(m.eq_ignore_ascii_case("GET") || m.eq_ignore_ascii_case("HEAD")),
        Some(_) => true,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_request_may_change_the_server_unless_its_method_is_written_get_or_head() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.yaml");
        std::fs::write(
            &path,
            r#"version: 1
vars: {m: POST}
steps:
  - {id: get, action: request, with: {path: /a}}
  - {id: head, action: request, with: {method: HEAD, path: /a}}
  - {id: post, action: request, with: {method: POST, path: /a}}
  - {id: templated, action: request, with: {method: "{{ vars.m }}", path: /a}}
  - {id: list, action: datasets.list}
  - {id: export, action: exports.create, with: {project_id: prj_0001}}
"#,
        )
        .unwrap();
        let p = crate::pipeline::load(&path).unwrap_or_else(|e| panic!("{e:?}"));
        let says: Vec<(&str, bool)> = p
            .steps
            .iter()
            .map(|s| (s.id.as_str(), super::may_change_server(s)))
            .collect();
        assert_eq!(
            says,
            [
                ("get", false),
                ("head", false),
                ("post", true),
                ("templated", true),
                ("list", false),
                ("export", true)
            ]
        );
    }
}
