//! Template references: takes the templates met during the walk and what exists (steps,
//! vars, secrets); checks every name a template reads (`steps.<id>`, `vars.<name>`,
//! `secrets.<NAME>`, `item`, ...) against what exists where the template sits.
//!
//! Must not: check keys or types (that is `fields`), or turn references into edges
//! (that is `edges`).

use super::*;

pub(super) const GLOBAL_FUNCTIONS: &[&str] = &[
    "range",
    "dict",
    "namespace",
    "debug",
    "lipsum",
    "cycler",
    "joiner",
];

pub(super) const ROOTS: &[&str] = &["vars", "env", "secrets", "steps", "run", "pipeline"];

/// What exists, for checking the names templates use: the steps, the vars and secrets.
pub(super) struct Known<'k> {
    pub(super) steps: &'k [Step],
    pub(super) ids: &'k HashMap<String, usize>,
    pub(super) step_names: &'k [String],
    pub(super) vars: &'k IndexMap<String, TValue>,
    pub(super) secrets: &'k [String],
    /// When a step could not be read, an unknown step id may be that one: not reported.
    pub(super) all_steps_parsed: bool,
}

/// One reference of a template: where it is, its parts, and where the template sits.
struct Site<'r> {
    pos: Pos,
    width: usize,
    parts: Vec<&'r str>,
    scope: Scope,
    own_id: Option<&'r str>,
}

impl Site<'_> {
    /// `item` and `index` are bound in a `for_each` step's inputs, outputs and poll.
    fn locals(&self) -> &'static [&'static str] {
        match self.scope {
            Scope::StepWith { for_each: true }
            | Scope::StepOutputs { for_each: true }
            | Scope::Poll { for_each: true } => &["item", "index"],
            _ => &[],
        }
    }
}

impl Checker<'_> {
    /// Checks every name a template uses.
    pub(super) fn references(&mut self, p: &PendingTemplate, known: &Known) {
        self.step = p
            .step
            // Steps are in file order: a binary search, not a scan per template.
            .and_then(|i| {
                let steps = known.steps;
                steps
                    .binary_search_by_key(&i, |s| s.index)
                    .ok()
                    .map(|k| &steps[k])
            })
            .map(|s| s.id.clone());
        let own_id = self.step.clone();
        for reference in &p.references {
            if let Some(need) = reference.strip_prefix("needs:") {
                self.need(need, p.pos, own_id.as_deref(), known);
                continue;
            }
            let (pos, width) = self.locate(p.pos, reference);
            let site = Site {
                pos,
                width,
                parts: reference.split('.').collect(),
                scope: p.scope,
                own_id: own_id.as_deref(),
            };
            self.reference(&site, known);
        }
        self.step = None;
    }

    /// A `needs` entry: another step that exists.
    fn need(&mut self, need: &str, pos: Pos, own_id: Option<&str>, known: &Known) {
        if Some(need) == own_id {
            self.error(pos, format!("step `{need}` needs itself"));
        } else if !known.ids.contains_key(need) && known.all_steps_parsed {
            let s = did_you_mean(need, known.step_names.iter().map(String::as_str));
            self.error(pos, format!("`needs` names unknown step `{need}`"))
                .suggest(s);
        }
    }

    /// One dotted reference, by its root.
    fn reference(&mut self, site: &Site, known: &Known) {
        let (pos, width) = (site.pos, site.width);
        match site.parts[0] {
            "steps" if site.scope == Scope::Vars => {
                self.error_span(
                    pos,
                    width,
                    "vars cannot refer to steps: vars are rendered once, before any step runs",
                )
                .help("use the template in the step that needs it, or in `outputs`");
            }
            "steps" => self.step_reference(site, known),
            "vars" => self.var_reference(site, known.vars),
            "secrets" => self.secret_reference(site, known.secrets),
            "env" => {
                if site.parts.get(1) == Some(&"AVALA_API_KEY") {
                    self.error_span(pos, width, "`env.AVALA_API_KEY` is not available to templates: avala-pipe sends the key itself and never exposes it");
                }
            }
            "run" => self.attribute_reference(site, &["id", "started_at", "date"]),
            "pipeline" => self.attribute_reference(site, &["name", "dir"]),
            "result" if matches!(site.scope, Scope::StepOutputs { .. }) => {}
            "response" if matches!(site.scope, Scope::Poll { .. }) => {}
            name if site.locals().contains(&name) => {}
            name if GLOBAL_FUNCTIONS.contains(&name) => {}
            name => self.unknown_variable(site, name),
        }
    }

    /// `steps.<id>[.outputs|.status]`: a literal id of another step that exists.
    fn step_reference(&mut self, site: &Site, known: &Known) {
        let (pos, width) = (site.pos, site.width);
        let Some(id) = site.parts.get(1) else {
            self.error_span(
                pos,
                width,
                "refer to a step as `steps.<id>` (dynamic lookups cannot be checked or ordered)",
            );
            return;
        };
        if Some(*id) == site.own_id && site.scope != Scope::PipelineOutputs {
            self.error_span(pos, width, format!("step `{id}` refers to itself"))
                .help("use `result` in a step's `outputs` to read its own result");
            return;
        }
        if !known.ids.contains_key(*id) {
            if known.all_steps_parsed {
                let s = did_you_mean(id, known.step_names.iter().map(String::as_str))
                    .map(|s| format!("steps.{s}"));
                self.error_span(pos, width, format!("unknown step `{id}` in `steps.{id}`"))
                    .suggest(s.as_deref());
            }
            return;
        }
        if let Some(attr) = site.parts.get(2) {
            if *attr != "outputs" && *attr != "status" {
                let s =
                    did_you_mean(attr, ["outputs", "status"]).map(|s| format!("steps.{id}.{s}"));
                self.error_span(
                    pos,
                    width,
                    format!(
                        "`steps.{id}.{attr}` does not exist: a step has `outputs` and `status`"
                    ),
                )
                .suggest(s.as_deref());
            }
        }
    }

    /// `vars.<name>`: a declared var.
    fn var_reference(&mut self, site: &Site, vars: &IndexMap<String, TValue>) {
        let Some(name) = site.parts.get(1) else {
            return;
        };
        if vars.contains_key(*name) {
            return;
        }
        let s = did_you_mean(name, vars.keys().map(String::as_str)).map(|s| format!("vars.{s}"));
        let d = self
            .error_span(
                site.pos,
                site.width,
                format!("undeclared var `{name}` in `vars.{name}`"),
            )
            .suggest(s.as_deref());
        if d.suggestion.is_none() {
            d.help = Some(format!(
                "declare it under `vars:` (vars: {})",
                list_or_none(vars.keys())
            ));
        }
    }

    /// `secrets.<NAME>`: a name listed under `secrets:`.
    fn secret_reference(&mut self, site: &Site, secrets: &[String]) {
        let Some(name) = site.parts.get(1) else {
            return;
        };
        if secrets.iter().any(|s| s == name) {
            return;
        }
        let s =
            did_you_mean(name, secrets.iter().map(String::as_str)).map(|s| format!("secrets.{s}"));
        self.error_span(
            site.pos,
            site.width,
            format!("`secrets.{name}` is not listed under `secrets:`"),
        )
        .suggest(s.as_deref());
    }

    /// `run.<attr>` or `pipeline.<attr>`: one of a fixed set of attributes.
    fn attribute_reference(&mut self, site: &Site, attributes: &[&str]) {
        let root = site.parts[0];
        let Some(attr) = site.parts.get(1) else {
            return;
        };
        if attributes.contains(attr) {
            return;
        }
        let s = did_you_mean(attr, attributes.iter().copied()).map(|s| format!("{root}.{s}"));
        self.error_span(
            site.pos,
            site.width,
            format!(
                "`{root}.{attr}` does not exist ({root} has {})",
                attributes.join(", ")
            ),
        )
        .suggest(s.as_deref());
    }

    /// A name that is neither a root nor bound where the template sits.
    fn unknown_variable(&mut self, site: &Site, name: &str) {
        let mut candidates: Vec<&str> = ROOTS.to_vec();
        candidates.extend_from_slice(site.locals());
        if matches!(site.scope, Scope::StepOutputs { .. }) {
            candidates.push("result");
        }
        if matches!(site.scope, Scope::Poll { .. }) {
            candidates.push("response");
        }
        let s = did_you_mean(name, candidates.iter().copied());
        let help = match name {
            "item" | "index" => "`item` and `index` exist only in a step with `for_each` (in its `with` and `outputs`)".to_string(),
            "result" => "`result` exists only in a step's `outputs`".to_string(),
            "response" => "`response` exists only in `poll.until` and `poll.fail_if`".to_string(),
            _ => format!("available here: {}", candidates.join(", ")),
        };
        self.error_span(
            site.pos,
            site.width,
            format!("unknown variable `{name}` in template"),
        )
        .suggest(s)
        .help(help);
    }

    /// The position and width of `reference` in the file, when it is on the template's
    /// first line; else the template's own position.
    pub(super) fn locate(&self, at: Pos, reference: &str) -> (Pos, usize) {
        let line = self
            .lines
            .get(at.line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("");
        let start = line
            .char_indices()
            .nth(at.col.saturating_sub(1) as usize)
            .map_or(line.len(), |(i, _)| i);
        match line[start..].find(reference) {
            Some(offset) => (
                Pos {
                    line: at.line,
                    col: (line[..start + offset].chars().count() + 1) as u32,
                },
                reference.chars().count(),
            ),
            None => (at, token_width(self.source, at)),
        }
    }
}

pub(super) fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none yet".into()
    } else {
        names.join(", ")
    }
}
