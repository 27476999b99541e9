//! Template references: takes the templates met during the walk and what exists (steps,
//! vars, secrets); checks every name a template reads (`steps.<id>`, `vars.<name>`,
//! `secrets.<NAME>`, `item`, ...) against what exists where the template sits, and gives
//! the step ids it names as graph edges and as each template's step refs.
//!
//! Must not: check keys or types (that is `fields`), or order the graph (that is `graph`).

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
                self.need(need, p.tmpl.pos, own_id.as_deref(), known);
                continue;
            }
            let (pos, width) = self.locate(&p.tmpl, reference);
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
    pub(super) fn locate(&self, tmpl: &Tmpl, reference: &str) -> (Pos, usize) {
        let line = self
            .lines
            .get(tmpl.pos.line.saturating_sub(1) as usize)
            .copied()
            .unwrap_or("");
        let start = line
            .char_indices()
            .nth(tmpl.pos.col.saturating_sub(1) as usize)
            .map_or(line.len(), |(i, _)| i);
        match line[start..].find(reference) {
            Some(offset) => (
                Pos {
                    line: tmpl.pos.line,
                    col: (line[..start + offset].chars().count() + 1) as u32,
                },
                reference.chars().count(),
            ),
            None => (tmpl.pos, token_width(self.source, tmpl.pos)),
        }
    }
}

/// The analysed templates by position, so storing their step refs back is one lookup
/// per template rather than a scan of all of them (quadratic in big pipelines).
pub(super) struct AnalysedTemplates<'p> {
    by_pos: HashMap<Pos, Vec<&'p PendingTemplate>>,
}

impl<'p> AnalysedTemplates<'p> {
    pub(super) fn new(pending: &'p [PendingTemplate]) -> Self {
        let mut by_pos: HashMap<Pos, Vec<&'p PendingTemplate>> = HashMap::new();
        for p in pending {
            by_pos.entry(p.tmpl.pos).or_default().push(p);
        }
        AnalysedTemplates { by_pos }
    }

    /// The first analysed template written at `t`'s place with `t`'s source.
    fn find(&self, t: &Tmpl) -> Option<&'p PendingTemplate> {
        self.by_pos
            .get(&t.pos)?
            .iter()
            .find(|p| p.tmpl.source == t.source)
            .copied()
    }
}

/// Each step's dependencies: its `needs` and the steps its templates reference; and the
/// steps whose status it tests. Templates are grouped by step once, so this stays linear
/// in the number of steps.
pub(super) fn add_edges(
    steps: &mut [Step],
    pending: &[PendingTemplate],
    ids: &HashMap<String, usize>,
) {
    let mut by_step: HashMap<usize, Vec<&PendingTemplate>> = HashMap::new();
    for p in pending {
        if let Some(index) = p.step {
            by_step.entry(index).or_default().push(p);
        }
    }
    for step in steps {
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
            step.status_tested
                .extend(status_tests(&t.references).filter_map(|id| ids.get(id).copied()));
        }
        step.status_tested.sort_unstable();
        step.status_tested.dedup();
        deps.retain(|d| *d != step.index);
        deps.sort_unstable();
        deps.dedup();
        step.deps = deps;
    }
}

/// The step ids named by `steps.<id>.status` references.
fn status_tests(references: &[String]) -> impl Iterator<Item = &str> {
    references.iter().filter_map(|r| {
        r.strip_prefix("steps.")
            .and_then(|r| r.strip_suffix(".status"))
    })
}

pub(super) fn attach_step_refs(steps: &mut [Step], pending: &AnalysedTemplates) {
    for step in steps.iter_mut() {
        for v in step.with.values_mut() {
            fill_refs(v, pending);
        }
        for v in step.outputs.values_mut() {
            fill_refs(v, pending);
        }
        if let Some(v) = step.condition.as_mut() {
            fill_refs(v, pending);
        }
        if let Some(v) = step.for_each.as_mut() {
            fill_refs(v, pending);
        }
    }
}

/// Copies the step ids each template references into the stored template.
pub(super) fn fill_refs(value: &mut TValue, pending: &AnalysedTemplates) {
    match value {
        TValue::Tmpl(t) => {
            if let Some(p) = pending.find(t) {
                t.step_refs = referenced_steps(&p.references);
            }
        }
        TValue::List(items) => items.iter_mut().for_each(|i| fill_refs(i, pending)),
        TValue::Map(map) => map.values_mut().for_each(|v| fill_refs(v, pending)),
        _ => {}
    }
}

/// The step ids named by `steps.<id>` references, sorted and unique.
pub(super) fn referenced_steps(references: &[String]) -> Vec<String> {
    let mut ids: Vec<String> = references
        .iter()
        .filter_map(|r| {
            r.strip_prefix("steps.")
                .map(|rest| rest.split('.').next().unwrap_or(rest).to_string())
        })
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

pub(super) fn list_or_none<'a>(names: impl Iterator<Item = &'a String>) -> String {
    let names: Vec<&str> = names.map(String::as_str).collect();
    if names.is_empty() {
        "none yet".into()
    } else {
        names.join(", ")
    }
}
