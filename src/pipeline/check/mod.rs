//! Validation: the stage between the YAML tree and the checked pipeline.
//!
//! Takes a pipeline file (or its text) and gives either a checked [`Pipeline`] or every
//! problem it can find (not only the first), each with its position, its step and a
//! suggestion where one helps. It walks the format table of `spec`, parses every template,
//! checks every name a template uses, and derives the dependency edges.
//!
//! The walk is split by what it looks at: `pipeline` the top-level keys, `step` one step,
//! `actions` the rules that belong to one action only, `fields` keys and types,
//! `references` the names templates use, `edges` the dependencies they make, `base_url`
//! the URL policy, `position` where carets go. This file reads the file and holds the
//! checker's shared state.
//!
//! Must not: send requests, render templates, or read anything but the pipeline file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;

use super::diag::{did_you_mean, Diagnostic, FileDiagnostics};
use super::model::{parse_duration, Pipeline, Reads, RetryPolicy, Step, TValue, Tmpl};
use super::spec::{self, Field, Ty};
use super::yaml::{self, Node, NodeKind, Pos};
use crate::template;

mod actions;
mod base_url;
mod edges;
mod fields;
mod pipeline;
mod position;
mod references;
mod step;

pub use base_url::{check_base_url, is_loopback, BaseUrlError};
use edges::*;
use fields::*;
pub use position::token_width;
use references::*;

/// Why a pipeline file could not be read (before any of it is checked).
#[derive(Debug, thiserror::Error)]
enum ReadError {
    #[error("the file is {size} bytes; pipeline files are limited to {limit_mib} MiB")]
    TooBig { size: String, limit_mib: u64 },
    #[error("cannot read the pipeline file: {0}")]
    Io(#[from] std::io::Error),
}

/// Reads and checks a pipeline file.
pub fn load(path: &Path) -> Result<Pipeline, FileDiagnostics> {
    let origin = Pos { line: 1, col: 1 };
    let bytes = match read_limited(path) {
        Ok(b) => b,
        Err(e) => {
            return Err(FileDiagnostics::single(
                path,
                "",
                Diagnostic::new(origin, e.to_string()),
            ))
        }
    };
    let source = match String::from_utf8(bytes) {
        Ok(s) => s,
        Err(e) => {
            let valid = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let pos = end_of(&String::from_utf8_lossy(valid));
            return Err(FileDiagnostics::single(
                path,
                &String::from_utf8_lossy(e.as_bytes()),
                Diagnostic::new(pos, "the file is not valid UTF-8 text"),
            ));
        }
    };
    check_source(path, &source)
}

/// Reads at most [`yaml::MAX_FILE_BYTES`]: a huge file (or `/dev/zero`) is refused
/// without being read into memory.
fn read_limited(path: &Path) -> Result<Vec<u8>, ReadError> {
    use std::io::Read as _;
    let limit = yaml::MAX_FILE_BYTES as u64;
    let too_big = |size: String| ReadError::TooBig {
        size,
        limit_mib: limit >> 20,
    };
    let file = std::fs::File::open(path)?;
    if let Ok(meta) = file.metadata() {
        if meta.is_file() && meta.len() > limit {
            return Err(too_big(meta.len().to_string()));
        }
    }
    let mut bytes = Vec::new();
    file.take(limit + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(too_big(format!("more than {limit}")));
    }
    Ok(bytes)
}

/// The position just after `text`, as if it were the start of a file.
fn end_of(text: &str) -> Pos {
    let line = text.matches('\n').count() as u32 + 1;
    let col = text.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    Pos { line, col }
}

/// Checks pipeline text (as if read from `path`).
pub fn check_source(path: &Path, source: &str) -> Result<Pipeline, FileDiagnostics> {
    if let Some(nul) = source.find('\0') {
        return Err(FileDiagnostics::single(
            path,
            source,
            Diagnostic::new(
                end_of(&source[..nul]),
                "the file contains binary data (NUL bytes)",
            ),
        ));
    }
    let mut root = match yaml::parse(source) {
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
        pending: Vec::new(),
    };
    // Each step's nodes are dropped once the step is checked (`Checker::steps`): the tree
    // and the checked steps are not both whole at once.
    let step_nodes = take_step_nodes(&mut root);
    let pipeline = checker.pipeline(path, &root, step_nodes);
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

/// The entries of the root's `steps:` list, taken out of the tree (the list is left
/// empty, still a list for the type check of `steps`). None when `steps` is not a list.
fn take_step_nodes(root: &mut Node) -> Option<Vec<Node>> {
    let NodeKind::Map(entries) = &mut root.kind else {
        return None;
    };
    let (_, steps) = entries
        .iter_mut()
        .find(|(k, _)| k.as_str() == Some("steps"))?;
    match &mut steps.kind {
        NodeKind::Seq(items) => Some(std::mem::take(items)),
        _ => None,
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
    /// Where the template is written, and its text (the stored [`Tmpl`] is found again by
    /// both: values read through an alias may share a position).
    pos: Pos,
    source: String,
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
    /// Every template met so far, in file order, to be checked once all step ids are known.
    pending: Vec<PendingTemplate>,
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

    #[test]
    fn each_template_keeps_what_it_reads_for_the_plan() {
        let p = check_source(
            Path::new("p.yaml"),
            r#"version: 1
vars: { n: 3 }
steps:
  - id: a
    action: datasets.list
  - id: b
    action: request
    for_each: "{{ range(vars.n) }}"
    if: "{{ steps.a.status == 'succeeded' }}"
    with:
      path: "/x/{{ index }}"
      query: { q: "{{ vars.n }}", r: "{{ item }}-{{ steps.a.outputs.x }}" }
"#,
        )
        .unwrap();
        let b = &p.steps[1];
        let reads = |v: &TValue| match v {
            TValue::Tmpl(t) => t.reads.map(|r| (r.steps, r.item)),
            other => panic!("not a template: {other:?}"),
        };
        assert_eq!(reads(b.for_each.as_ref().unwrap()), Some((false, false)));
        assert_eq!(reads(b.condition.as_ref().unwrap()), Some((true, false)));
        assert_eq!(reads(&b.with["path"]), Some((false, true)));
        let TValue::Map(query) = &b.with["query"] else {
            panic!("query is a map")
        };
        assert_eq!(reads(&query["q"]), Some((false, false)));
        assert_eq!(reads(&query["r"]), Some((true, true)));
    }

    #[test]
    fn a_step_keeps_its_results_for_any_reference_but_its_status_and_count() {
        let each = |id: &str| {
            format!("  - id: {id}\n    action: request\n    for_each: [1, 2]\n    with: {{ path: /x }}\n")
        };
        let source = format!(
            "version: 1\nsteps:\n{}{}{}{}{}  - id: read\n    action: request\n    if: \"{{{{ steps.status.status == 'succeeded' and steps.count.outputs.count > 1 }}}}\"\n    with:\n      path: \"/{{{{ steps.results.outputs.results[0].status }}}}\"\n      query: {{ n: \"{{{{ steps.whole.outputs | length }}}}\" }}\noutputs:\n  all: \"{{{{ steps.piped.outputs.results | map(attribute='status') | list }}}}\"\n",
            each("status"),
            each("count"),
            each("results"),
            each("whole"),
            each("piped"),
        );
        let p = check_source(Path::new("p.yaml"), &source).unwrap();
        let read: Vec<(&str, bool)> = p
            .steps
            .iter()
            .map(|s| (s.id.as_str(), s.results_read))
            .collect();
        assert_eq!(
            read,
            [
                ("status", false),
                ("count", false),
                ("results", true),
                ("whole", true),
                ("piped", true),
                ("read", false),
            ]
        );
    }
}
