//! Validation: turns a YAML [`Node`] tree into a checked [`Pipeline`], or into every
//! problem it can find (not only the first), each with its position, its step and a
//! suggestion where one helps. It walks the format table of `spec`, parses every
//! template, checks every reference a template makes, and builds the dependency graph.
//!
//! This file holds the walk over the pipeline and its steps; `fields` checks keys and
//! types, `references` the names templates use, `position` where carets go.
//!
//! Must not: send requests or read anything but the pipeline file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::diag::{did_you_mean, Diagnostic, FileDiagnostics};
use super::model::{
    parse_duration, ActionKind, ApiFlavor, Pipeline, RetryPolicy, Step, TValue, Tmpl,
};
use super::spec::{self, Field, Ty};
use super::yaml::{self, Node, NodeKind, Pos};
use crate::graph;
use crate::template;

mod fields;
mod position;
mod references;

use fields::*;
pub use position::token_width;
use references::*;

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, FileDiagnostics> {
    let origin = Pos { line: 1, col: 1 };
    let bytes = match read_limited(path) {
        Ok(b) => b,
        Err(message) => {
            return Err(FileDiagnostics::single(
                path,
                "",
                Diagnostic::new(origin, message),
            ))
        }
    };
    let source = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let text = String::from_utf8_lossy(valid);
            let line = text.matches('\n').count() as u32 + 1;
            let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
            return Err(FileDiagnostics::single(
                path,
                &String::from_utf8_lossy(e.as_bytes()),
                Diagnostic::new(Pos { line, col }, "the file is not valid UTF-8 text"),
            ));
        }
    };
    check_source(path, &source)
}

/// Reads at most [`yaml::MAX_FILE_BYTES`]: a huge file (or `/dev/zero`) is refused
/// without being read into memory.
fn read_limited(path: &Path) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let limit = yaml::MAX_FILE_BYTES as u64;
    let too_big = |size: String| {
        format!(
            "the file is {size} bytes; pipeline files are limited to {} MiB",
            limit >> 20
        )
    };
    let cannot_read = |e: std::io::Error| format!("cannot read the pipeline file: {e}");
    let file = std::fs::File::open(path).map_err(cannot_read)?;
    if let Ok(meta) = file.metadata() {
        if meta.is_file() && meta.len() > limit {
            return Err(too_big(meta.len().to_string()));
        }
    }
    let mut bytes = Vec::new();
    file.take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot_read)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(format!("more than {limit}")));
    }
    Ok(bytes)
}

/// Checks pipeline text (as if read from `path`).
pub fn check_source(path: &Path, source: &str) -> Result<Pipeline, FileDiagnostics> {
    if source.contains('\0') {
        let before = &source[..source.find('\0').unwrap_or(0)];
        let line = before.matches('\n').count() as u32 + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
        return Err(FileDiagnostics::single(
            path,
            source,
            Diagnostic::new(
                Pos { line, col },
                "the file contains binary data (NUL bytes)",
            ),
        ));
    }
    let root = match yaml::parse(source) {
        Ok(root) => root,
        Err(e) => {
            let mut d = Diagnostic::new(e.pos, format!("invalid YAML: {}", e.message));
            d.len = token_width(source, e.pos);
            return Err(FileDiagnostics::single(path, source, d));
        }
    };
    let mut checker = Checker {
        source,
        lines: source.lines().collect(),
        diags: Vec::new(),
        step: None,
    };
    let pipeline = checker.pipeline(path, &root);
    match pipeline {
        Some(p) if checker.diags.is_empty() => Ok(p),
        _ => {
            let mut diagnostics = checker.diags;
            diagnostics.sort_by_key(|d| d.pos);
            diagnostics.dedup();
            Err(FileDiagnostics {
                file: path.to_path_buf(),
                source: source.to_string(),
                diagnostics,
            })
        }
    }
}

/// Where a template sits, which decides the names it may use.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scope {
    Vars,
    StepWith { for_each: bool },
    StepIf,
    StepForEach,
    StepOutputs { for_each: bool },
    Poll { for_each: bool },
    PipelineOutputs,
}

/// A template found while walking, checked once all step ids are known.
struct PendingTemplate {
    step: Option<usize>,
    scope: Scope,
    tmpl: Tmpl,
    references: Vec<String>,
}

struct Checker<'a> {
    source: &'a str,
    /// The source's lines, indexed once: finding a reference's column must not rescan
    /// the file for every template.
    lines: Vec<&'a str>,
    diags: Vec<Diagnostic>,
    /// The step being checked, for messages.
    step: Option<String>,
}

impl Checker<'_> {
    fn error(&mut self, pos: Pos, message: impl Into<String>) -> &mut Diagnostic {
        let mut d = Diagnostic::new(pos, message);
        d.step = self.step.clone();
        d.len = token_width(self.source, pos);
        self.diags.push(d);
        self.diags.last_mut().expect("just pushed")
    }

    /// An error whose caret spans `width` characters.
    fn error_span(
        &mut self,
        pos: Pos,
        width: usize,
        message: impl Into<String>,
    ) -> &mut Diagnostic {
        let d = self.error(pos, message);
        d.len = width.max(1);
        d
    }

    fn pipeline(&mut self, path: &Path, root: &Node) -> Option<Pipeline> {
        let Some(map) = root.as_map() else {
            let message = match root.kind {
                // An empty file, or only comments: say so rather than "found null".
                NodeKind::Null => "the pipeline file is empty".to_string(),
                _ => format!(
                    "a pipeline file must be a mapping, found {}",
                    root.type_name()
                ),
            };
            self.error(root.pos, message)
                .help("start with `version: 1` and a `steps:` list");
            return None;
        };
        let fields = self.fields(map, spec::TOP, "the pipeline");

        let version = fields.get("version").copied();
        if let Some(v) = version {
            // Other types have already been reported by the type check.
            let comparable = matches!(v.kind, NodeKind::Int(_) | NodeKind::Str(_));
            if comparable
                && !matches!(v.kind, NodeKind::Int(1))
                && !matches!(&v.kind, NodeKind::Str(s) if s == "1")
            {
                self.error(
                    v.pos,
                    format!(
                        "unsupported version {}: this avala-pipe reads version 1",
                        scalar_text(v)
                    ),
                )
                .help("set `version: 1`");
            }
        }

        let mut pending = Vec::new();
        let name = fields
            .get("name")
            .and_then(|n| self.string(n))
            .unwrap_or_else(|| {
                path.file_stem()
                    .map(|s| s.to_string_lossy().into_owned())
                    .unwrap_or_else(|| "pipeline".into())
            });
        let description = fields.get("description").and_then(|n| self.string(n));
        let (mut base_url, mut trailing_slash, mut flavor) = (None, None, None);
        if let Some(api) = fields.get("api").and_then(|n| n.as_map()) {
            let api = lookup(api, spec::API);
            base_url = api.get("base_url").and_then(|n| self.string(n));
            trailing_slash = api.get("trailing_slash").and_then(|n| self.boolean(n));
            flavor = api
                .get("flavor")
                .and_then(|n| self.string(n))
                .and_then(|f| ApiFlavor::from_name(&f));
        }
        if let Some(url) = &base_url {
            if let Some(node) = fields
                .get("api")
                .and_then(|n| n.as_map())
                .and_then(|m| find(m, "base_url"))
            {
                if let Err(msg) = check_base_url(url) {
                    self.error(node.pos, msg);
                }
            }
        }

        let vars = self.tvalue_map(fields.get("vars").copied(), Scope::Vars, None, &mut pending);
        let secrets = fields
            .get("secrets")
            .map(|n| self.str_list(n))
            .unwrap_or_default();
        for (i, s) in secrets.iter().enumerate() {
            if s == "AVALA_API_KEY" {
                if let Some(NodeKind::Seq(items)) = fields.get("secrets").map(|n| &n.kind) {
                    self.error(items[i].pos, "AVALA_API_KEY cannot be a template secret: the key is sent by avala-pipe itself and never reachable from templates");
                }
            }
        }
        let concurrency = fields
            .get("concurrency")
            .and_then(|n| self.int(n, 1, 256))
            .unwrap_or(4) as usize;
        let mut default_retry = RetryPolicy::default();
        let mut default_timeout = None;
        if let Some(node) = fields.get("defaults") {
            if let Some(map) = node.as_map() {
                let d = lookup(map, spec::DEFAULTS);
                default_timeout = d.get("timeout").and_then(|n| self.duration(n));
                if let Some(r) = d.get("retry") {
                    default_retry = self.retry(r, RetryPolicy::default());
                }
            }
        }

        let steps_node = fields.get("steps").copied();
        let mut steps = Vec::new();
        if let Some(node) = steps_node {
            match &node.kind {
                NodeKind::Seq(items) if items.is_empty() => {
                    self.error(
                        node.pos,
                        "`steps` is empty: a pipeline needs at least one step",
                    );
                }
                NodeKind::Seq(items) => {
                    for (index, item) in items.iter().enumerate() {
                        if let Some(step) =
                            self.step(index, item, default_retry, default_timeout, &mut pending)
                        {
                            steps.push(step);
                        }
                    }
                }
                NodeKind::Null => {
                    self.error(
                        node.pos,
                        "`steps` is empty: a pipeline needs at least one step",
                    );
                }
                _ => {
                    self.error(
                        node.pos,
                        format!(
                            "`steps` must be a list of steps, found {}",
                            node.type_name()
                        ),
                    );
                }
            }
        }
        self.step = None;

        let outputs = self.tvalue_map(
            fields.get("outputs").copied(),
            Scope::PipelineOutputs,
            None,
            &mut pending,
        );

        let all_steps_parsed = steps_node
            .map(|n| matches!(&n.kind, NodeKind::Seq(items) if items.len() == steps.len()))
            .unwrap_or(false);
        self.unique_ids(&steps);
        let ids: HashMap<String, usize> = steps.iter().map(|s| (s.id.clone(), s.index)).collect();
        let step_names: Vec<String> = steps.iter().map(|s| s.id.clone()).collect();
        for p in &pending {
            self.references(
                p,
                &steps,
                &ids,
                &step_names,
                &vars,
                &secrets,
                all_steps_parsed,
            );
        }
        // Edges: needs + template references. Templates are grouped by step once, so
        // this stays linear in the number of steps.
        let mut by_step: HashMap<usize, Vec<&PendingTemplate>> = HashMap::new();
        for p in &pending {
            if let Some(index) = p.step {
                by_step.entry(index).or_default().push(p);
            }
        }
        for step in &mut steps {
            let mut deps: Vec<usize> = step
                .needs
                .iter()
                .filter_map(|n| ids.get(n).copied())
                .collect();
            for t in by_step.get(&step.index).into_iter().flatten() {
                deps.extend(
                    referenced_steps(&t.references)
                        .iter()
                        .filter_map(|r| ids.get(r).copied()),
                );
                for r in &t.references {
                    if let Some(id) = r
                        .strip_prefix("steps.")
                        .and_then(|r| r.strip_suffix(".status"))
                    {
                        if let Some(&d) = ids.get(id) {
                            step.status_tested.push(d);
                        }
                    }
                }
            }
            step.status_tested.sort_unstable();
            step.status_tested.dedup();
            deps.retain(|d| *d != step.index);
            deps.sort_unstable();
            deps.dedup();
            step.deps = deps;
        }
        // Store the analysed templates (with their step refs) back into the steps.
        let analysed = AnalysedTemplates::new(&pending);
        attach_step_refs(&mut steps, &analysed);
        let mut outputs = outputs;
        for v in outputs.values_mut() {
            fill_refs(v, &analysed);
        }
        let mut vars = vars;
        for v in vars.values_mut() {
            fill_refs(v, &analysed);
        }

        if self.diags.is_empty() {
            let deps: Vec<Vec<usize>> = steps.iter().map(|s| s.deps.clone()).collect();
            if let Err(cycles) = graph::Graph::build(&deps) {
                for cycle in cycles {
                    let first = &steps[cycle[0]];
                    let path: Vec<&str> = cycle
                        .iter()
                        .chain(std::iter::once(&cycle[0]))
                        .map(|i| steps[*i].id.as_str())
                        .collect();
                    self.step = Some(first.id.clone());
                    self.error(first.pos, format!("dependency cycle: {}", path.join(" -> ")))
                        .help("a step cannot depend, directly or through others, on itself; remove one of these edges (`needs` or a `steps.<id>` reference)");
                }
                self.step = None;
            }
        }

        Some(Pipeline {
            path: path.to_path_buf(),
            source: Arc::from(self.source),
            name,
            description,
            base_url,
            trailing_slash,
            flavor,
            vars,
            secrets,
            concurrency,
            steps,
            outputs,
        })
    }

    fn step(
        &mut self,
        index: usize,
        node: &Node,
        default_retry: RetryPolicy,
        default_timeout: Option<Duration>,
        pending: &mut Vec<PendingTemplate>,
    ) -> Option<Step> {
        self.step = None;
        let Some(map) = node.as_map() else {
            self.error(
                node.pos,
                format!(
                    "each step must be a mapping with `id` and `action`, found {}",
                    node.type_name()
                ),
            );
            return None;
        };
        // Name the step in messages as early as possible.
        // A number (`id: 123`) is read as its text so it is reported as an invalid id.
        let id = find(map, "id").and_then(|n| match &n.kind {
            NodeKind::Int(_) | NodeKind::Float(_) => Some(scalar_text(n)),
            _ => n.as_str().map(str::to_string),
        });
        self.step = id.clone().or_else(|| Some(format!("#{}", index + 1)));
        let fields = self.fields(
            map,
            spec::STEP,
            &format!("step `{}`", self.step.clone().unwrap_or_default()),
        );
        let id_node = fields.get("id").copied();
        let id = match (id, id_node) {
            (Some(id), Some(n)) => {
                if !valid_id(&id) {
                    let fixed = sanitize_id(&id);
                    self.error(n.pos, format!("invalid step id `{id}`: ids match [A-Za-z_][A-Za-z0-9_]* so templates can use steps.<id>")).suggest(Some(&fixed));
                }
                id
            }
            _ => format!("#{}", index + 1),
        };
        let action_node = fields.get("action").copied();
        let action = action_node.and_then(|n| {
            let name = n.as_str()?;
            let kind = ActionKind::from_name(name);
            if kind.is_none() {
                let names: Vec<&str> = spec::ACTIONS.iter().map(|a| a.name).collect();
                let suggestion = did_you_mean(name, names.iter().copied());
                self.error(n.pos, format!("unknown action `{name}`"))
                    .suggest(suggestion)
                    .help = Some(format!("actions: {}", names.join(", ")));
            }
            kind
        });
        let has_for_each = fields.contains_key("for_each");
        let mut with = IndexMap::new();
        if let Some(kind) = action {
            let aspec = spec::action(kind.name()).expect("every action has a spec");
            let what = format!("the inputs (`with`) of {}", kind.name());
            let empty: &[(Node, Node)] = &[];
            let with_node = fields.get("with").copied();
            let entries = match with_node {
                Some(n) if matches!(n.kind, NodeKind::Null) => empty,
                Some(n) => match n.as_map() {
                    Some(m) => m,
                    None => {
                        self.error(
                            n.pos,
                            format!(
                                "`with` must be a mapping of inputs, found {}",
                                n.type_name()
                            ),
                        );
                        empty
                    }
                },
                None => empty,
            };
            let with_key = map
                .iter()
                .find(|(k, _)| k.as_str() == Some("with"))
                .map(|(k, _)| k.pos);
            let anchor = with_key.or(action_node.map(|n| n.pos)).unwrap_or(node.pos);
            let found = self.fields_at(entries, aspec.inputs, &what, Some(anchor));
            if !aspec.one_of.is_empty() && !aspec.one_of.iter().any(|n| found.contains_key(n)) {
                self.error(
                    anchor,
                    format!("{} needs one of: {}", kind.name(), aspec.one_of.join(", ")),
                );
            }
            for (k, v) in entries {
                let Some(key) = self.key(k) else { continue };
                if spec::field(aspec.inputs, &key).is_none() {
                    continue;
                }
                let scope = if key == "poll" {
                    None
                } else {
                    Some(Scope::StepWith {
                        for_each: has_for_each,
                    })
                };
                let mut value = match scope {
                    Some(scope) => self.tvalue(v, scope, Some(index), pending),
                    None => self.poll(v, index, has_for_each, pending),
                };
                if key == "json" || key == "body" {
                    numbers_back(&mut value, v);
                }
                with.insert(key, value);
            }
        }
        if with.get("paginate") == Some(&TValue::Bool(true)) {
            if let Some(TValue::Str(method)) = with.get("method") {
                if !method.eq_ignore_ascii_case("GET") {
                    if let Some(node) = fields
                        .get("with")
                        .and_then(|w| w.as_map())
                        .and_then(|m| find(m, "method"))
                    {
                        self.error(node.pos, format!("`paginate` follows cursors with GET requests; a {method} cannot be paginated"))
                            .help("paginate a GET list endpoint, or drop `paginate`");
                    }
                }
            }
        }
        if with.get("paginate") == Some(&TValue::Bool(true)) && with.contains_key("poll") {
            if let Some(poll) = fields
                .get("with")
                .and_then(|w| w.as_map())
                .and_then(|m| m.iter().find(|(k, _)| k.as_str() == Some("poll")))
            {
                self.error(poll.0.pos, "`paginate` and `poll` cannot be combined: a paginated request is read to its last page once")
                    .help("poll in one step and paginate in another that needs it");
            }
        }
        let needs = fields
            .get("needs")
            .map(|n| self.str_list(n))
            .unwrap_or_default();
        let condition = fields
            .get("if")
            .map(|n| self.tvalue(n, Scope::StepIf, Some(index), pending));
        let for_each = fields
            .get("for_each")
            .map(|n| self.tvalue(n, Scope::StepForEach, Some(index), pending));
        let max_parallel = fields
            .get("max_parallel")
            .and_then(|n| self.int(n, 1, 256))
            .map(|v| v as usize);
        if let (Some(n), false) = (fields.get("max_parallel"), has_for_each) {
            self.error(
                n.pos,
                "`max_parallel` only applies to a step with `for_each`",
            );
        }
        let outputs = self.tvalue_map(
            fields.get("outputs").copied(),
            Scope::StepOutputs {
                for_each: has_for_each,
            },
            Some(index),
            pending,
        );
        let retry = fields
            .get("retry")
            .map(|n| self.retry(n, default_retry))
            .unwrap_or(default_retry);
        let timeout = fields
            .get("timeout")
            .and_then(|n| self.duration(n))
            .or(default_timeout);
        let continue_on_error = fields
            .get("continue_on_error")
            .and_then(|n| self.boolean(n))
            .unwrap_or(false);
        let name = fields.get("name").and_then(|n| self.string(n));

        // Remember where each `needs` entry is, for reference errors.
        let needs_nodes: Vec<(String, Pos)> = match fields.get("needs").map(|n| &n.kind) {
            Some(NodeKind::Seq(items)) => items
                .iter()
                .filter_map(|i| match &i.kind {
                    NodeKind::Int(n) => Some((n.to_string(), i.pos)),
                    _ => Some((i.as_str()?.to_string(), i.pos)),
                })
                .collect(),
            Some(NodeKind::Str(s)) => vec![(s.clone(), fields["needs"].pos)],
            _ => vec![],
        };
        for (need, pos) in needs_nodes {
            pending.push(PendingTemplate {
                step: Some(index),
                scope: Scope::StepWith { for_each: false },
                tmpl: Tmpl {
                    source: String::new(),
                    pos,
                    whole_expr: None,
                    step_refs: vec![],
                },
                references: vec![format!("needs:{need}")],
            });
        }

        Some(Step {
            index,
            id,
            name,
            action: action?,
            with,
            needs,
            deps: vec![],
            status_tested: vec![],
            condition,
            for_each,
            max_parallel,
            outputs,
            retry,
            timeout,
            continue_on_error,
            pos: map.first().map(|(k, _)| k.pos).unwrap_or(node.pos),
        })
    }

    fn poll(
        &mut self,
        node: &Node,
        index: usize,
        for_each: bool,
        pending: &mut Vec<PendingTemplate>,
    ) -> TValue {
        let Some(map) = node.as_map() else {
            return self.tvalue(node, Scope::StepWith { for_each }, Some(index), pending);
        };
        let mut out = IndexMap::new();
        for (k, v) in map {
            let Some(key) = self.key(k) else { continue };
            // An unknown key is already reported; its value is not checked further.
            if spec::field(spec::POLL, &key).is_none() {
                continue;
            }
            let scope = if key == "until" || key == "fail_if" {
                Scope::Poll { for_each }
            } else {
                Scope::StepWith { for_each }
            };
            out.insert(key, self.tvalue(v, scope, Some(index), pending));
        }
        TValue::Map(out)
    }

    fn retry(&mut self, node: &Node, base: RetryPolicy) -> RetryPolicy {
        let mut policy = base;
        if let Some(map) = node.as_map() {
            let f = lookup(map, spec::RETRY);
            if let Some(n) = f.get("max_attempts").and_then(|n| self.int(n, 1, 100)) {
                policy.max_attempts = n as u32;
            }
            if let Some(d) = f.get("initial_interval").and_then(|n| self.duration(n)) {
                policy.initial_interval = d;
            }
            if let Some(d) = f.get("max_interval").and_then(|n| self.duration(n)) {
                policy.max_interval = d;
            }
        }
        policy
    }

    fn unique_ids(&mut self, steps: &[Step]) {
        let mut seen: HashMap<&str, &Step> = HashMap::new();
        for step in steps {
            if let Some(first) = seen.get(step.id.as_str()) {
                let line = first.pos.line;
                self.step = Some(step.id.clone());
                self.error(
                    step.pos,
                    format!(
                        "duplicate step id `{}` (first used on line {line})",
                        step.id
                    ),
                )
                .help("step ids must be unique: rename one of them");
            } else {
                seen.insert(&step.id, step);
            }
        }
        self.step = None;
    }
}

fn valid_id(id: &str) -> bool {
    let mut chars = id.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn sanitize_id(id: &str) -> String {
    let mut out: String = id
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect();
    if out.chars().next().is_none_or(|c| c.is_ascii_digit()) {
        out.insert(0, '_');
    }
    out
}

/// A base URL must be absolute http(s); plain http only to loopback (SPEC §1).
pub fn check_base_url(url: &str) -> Result<(), String> {
    if template::has_syntax(url) {
        return Err(format!(
            "the base URL `{url}` contains template syntax, but base URLs are used as written, never rendered: write it out as an https:// URL (plain http:// only to loopback), or pass it with --base-url or AVALA_BASE_URL"
        ));
    }
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid base URL `{url}`: {e}"))?;
    match parsed.scheme() {
        "https" => Ok(()),
        "http" if is_loopback(&parsed) => Ok(()),
        "http" => Err(format!(
            "refusing plain http:// base URL `{url}`: the API key would travel unencrypted; use https:// (plain http is allowed only to loopback hosts)"
        )),
        other => Err(format!("unsupported scheme `{other}` in base URL `{url}`: use https://")),
    }
}

/// Is the URL's host loopback (127.0.0.0/8, ::1, localhost)?
pub fn is_loopback(url: &reqwest::Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Files given on the command line, in order, for `validate`.
pub fn load_all(paths: &[PathBuf]) -> Vec<Result<Pipeline, FileDiagnostics>> {
    paths.iter().map(|p| load(p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_tests_are_read_from_the_templates_references() {
        let p = check_source(
            Path::new("p.yaml"),
            r#"version: 1
steps:
  - id: a
    action: datasets.list
  - id: b
    action: datasets.list
    if: "{{ steps.a.status == 'skipped' }}"
  - id: c
    action: datasets.list
    needs: [a]
    if: "{{ 'steps.a.status' != '' }}"
"#,
        )
        .unwrap();
        assert!(p.steps[1].tests_status_of(0));
        // Text that merely looks like the reference inside a string literal is no test.
        assert!(!p.steps[2].tests_status_of(0));
    }
}
