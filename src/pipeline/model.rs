//! The checked pipeline: plain types that the graph, the plan, dry-run and the executor
//! build on. A value of these types has passed validation: ids are unique, actions exist,
//! every template parsed and every reference it makes names something that exists.
//!
//! Must not: parse YAML or render templates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use indexmap::IndexMap;

use super::yaml::Pos;

/// A value from the file that may contain templates, with its position.
#[derive(Clone, Debug, PartialEq)]
pub enum TValue {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A literal string (no template syntax in it).
    Str(String),
    /// A string with template syntax.
    Tmpl(Tmpl),
    List(Vec<TValue>),
    Map(IndexMap<String, TValue>),
}

impl TValue {
    /// True when no template needs rendering anywhere inside.
    pub fn is_literal(&self) -> bool {
        match self {
            TValue::Tmpl(_) => false,
            TValue::List(items) => items.iter().all(TValue::is_literal),
            TValue::Map(map) => map.values().all(TValue::is_literal),
            _ => true,
        }
    }

    /// Every template inside, in order.
    pub fn templates(&self) -> Vec<&Tmpl> {
        let mut out = Vec::new();
        self.collect_templates(&mut out);
        out
    }

    fn collect_templates<'a>(&'a self, out: &mut Vec<&'a Tmpl>) {
        match self {
            TValue::Tmpl(t) => out.push(t),
            TValue::List(items) => items.iter().for_each(|i| i.collect_templates(out)),
            TValue::Map(map) => map.values().for_each(|v| v.collect_templates(out)),
            _ => {}
        }
    }
}

/// A template string and where it was written.
#[derive(Clone, Debug, PartialEq)]
pub struct Tmpl {
    pub source: String,
    pub pos: Pos,
    /// `Some(expr)` when the whole string is one `{{ expr }}`: it renders to a typed value.
    pub whole_expr: Option<String>,
    /// Every `steps.<id>` the template references (a boxed slice: with [`Tmpl::reads`],
    /// a template, and so every [`TValue`], is no bigger than before it).
    pub step_refs: Box<[String]>,
    /// What it reads that a dry-run may not know, found when the file was checked (the
    /// plan then renders the template without parsing it again to find out); `None` in a
    /// template made without the check, which is then parsed when it is previewed.
    pub reads: Option<Reads>,
}

/// The roots a template reads that a dry-run may only know after the run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Reads {
    /// `steps.*`.
    pub steps: bool,
    /// `item` or `index` (unknown in a `for_each` over a list known only after the run).
    pub item: bool,
}

impl Reads {
    /// From a template's references (dotted paths: `steps.a.outputs.id`, `item`).
    pub fn of(references: &[String]) -> Reads {
        let mut reads = Reads::default();
        for r in references {
            match r.split(['.', '[']).next().unwrap_or("") {
                "steps" => reads.steps = true,
                "item" | "index" => reads.item = true,
                _ => {}
            }
        }
        reads
    }
}

/// Retry policy of a step's requests (SPEC §4).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub max_attempts: u32,
    pub initial_interval: Duration,
    pub max_interval: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            initial_interval: Duration::from_millis(500),
            max_interval: Duration::from_secs(20),
        }
    }
}

pub use crate::actions::ActionKind;

/// Which shape of the Avala API a pipeline speaks (`api.flavor`; `API.md`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ApiFlavor {
    /// The REST page of Avala's docs: `/datasets`, `id`, multipart uploads.
    Documented,
    /// What Avala's official SDKs speak today: trailing slashes, `uid`, owner/slug
    /// paths, presigned uploads.
    Current,
}

impl ApiFlavor {
    /// Production serves today's API.
    pub const DEFAULT: ApiFlavor = ApiFlavor::Current;

    pub fn name(self) -> &'static str {
        match self {
            ApiFlavor::Documented => "documented",
            ApiFlavor::Current => "current",
        }
    }

    pub fn from_name(name: &str) -> Option<ApiFlavor> {
        match name {
            "documented" => Some(ApiFlavor::Documented),
            "current" => Some(ApiFlavor::Current),
            _ => None,
        }
    }
}

/// One step, checked.
#[derive(Clone, Debug)]
pub struct Step {
    pub index: usize,
    pub id: String,
    pub name: Option<String>,
    pub action: ActionKind,
    /// The action's inputs, by name, in file order.
    pub with: IndexMap<String, TValue>,
    /// Explicit `needs`, as written.
    pub needs: Vec<String>,
    /// Every step this one depends on (needs + template references), as indexes, sorted.
    pub deps: Vec<usize>,
    /// The steps whose `steps.<id>.status` a template of this step reads, as indexes,
    /// sorted: a skipped one does not skip this step.
    pub status_tested: Vec<usize>,
    /// Some template reads more of this step than its `status` and `outputs.count`: a
    /// `for_each` step keeps its iterations' outputs (`outputs.results`) for it.
    pub results_read: bool,
    pub condition: Option<TValue>,
    pub for_each: Option<TValue>,
    pub max_parallel: Option<usize>,
    pub outputs: IndexMap<String, TValue>,
    pub retry: RetryPolicy,
    pub timeout: Option<Duration>,
    pub continue_on_error: bool,
    /// Where the step starts in the file (its `-` entry).
    pub pos: Pos,
}

impl Step {
    pub fn input(&self, name: &str) -> Option<&TValue> {
        self.with.get(name)
    }

    /// Does any template of this step read `steps.<dep>.status`?
    pub fn tests_status_of(&self, dep: usize) -> bool {
        self.status_tested.binary_search(&dep).is_ok()
    }
}

/// The whole checked pipeline.
#[derive(Clone, Debug)]
pub struct Pipeline {
    /// The file it came from, as given on the command line.
    pub path: PathBuf,
    /// The file's text, kept for diagnostics at run time.
    pub source: Arc<str>,
    pub name: String,
    pub description: Option<String>,
    pub base_url: Option<String>,
    /// `api.trailing_slash`; unset follows the flavour.
    pub trailing_slash: Option<bool>,
    /// `api.flavor`; unset is the default ([`ApiFlavor::DEFAULT`]).
    pub flavor: Option<ApiFlavor>,
    pub vars: IndexMap<String, TValue>,
    pub secrets: Vec<String>,
    pub concurrency: usize,
    pub steps: Vec<Step>,
    pub outputs: IndexMap<String, TValue>,
    /// The steps' dependency graph, built once by the validator (which proved it acyclic).
    pub graph: Arc<crate::graph::Graph>,
}

impl Pipeline {
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps.iter().find(|s| s.id == id)
    }

    pub fn step_index(&self, id: &str) -> Option<usize> {
        self.steps.iter().position(|s| s.id == id)
    }
}

/// Parses `500ms`, `2s`, `10m`, `1h`, `1.5s` or a plain number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: f64 = number.parse().ok()?;
    if !number.is_finite() || number < 0.0 {
        return None;
    }
    let seconds = match unit.trim() {
        "" | "s" | "sec" => number,
        "ms" => number / 1000.0,
        "m" | "min" => number * 60.0,
        "h" => number * 3600.0,
        _ => return None,
    };
    if seconds > 60.0 * 60.0 * 24.0 * 365.0 {
        return None;
    }
    Some(Duration::from_secs_f64(seconds))
}

/// Renders a duration the way users write them.
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        "0s".into()
    } else if ms % 3_600_000 == 0 {
        format!("{}h", ms / 3_600_000)
    } else if ms % 60_000 == 0 {
        format!("{}m", ms / 60_000)
    } else if ms % 1000 == 0 {
        format!("{}s", ms / 1000)
    } else if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_duration("2s"), Some(Duration::from_secs(2)));
        assert_eq!(parse_duration("10m"), Some(Duration::from_secs(600)));
        assert_eq!(parse_duration("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("soon"), None);
        assert_eq!(parse_duration("5 parsecs"), None);
        assert_eq!(parse_duration(""), None);
        assert_eq!(format_duration(Duration::from_secs(1200)), "20m");
        assert_eq!(format_duration(Duration::from_millis(500)), "500ms");
    }
}
