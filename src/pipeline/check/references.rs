//! Template references: every name a template reads (`steps.<id>`, `vars.<name>`,
//! `secrets.<NAME>`, `item`, ...) is checked against what exists where the template sits,
//! and the step ids it names become graph edges.
//!
//! Must not: check keys or types (that is `fields`).

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

impl Checker<'_> {
    /// Checks every name a template uses.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn references(
        &mut self,
        p: &PendingTemplate,
        steps: &[Step],
        ids: &HashMap<String, usize>,
        step_names: &[String],
        vars: &IndexMap<String, TValue>,
        secrets: &[String],
        all_steps_parsed: bool,
    ) {
        self.step = p
            .step
            // Steps are in file order: a binary search, not a scan per template.
            .and_then(|i| {
                steps
                    .binary_search_by_key(&i, |s| s.index)
                    .ok()
                    .map(|k| &steps[k])
            })
            .map(|s| s.id.clone());
        let own_id = self.step.clone();
        for reference in &p.references {
            if let Some(need) = reference.strip_prefix("needs:") {
                if Some(need) == own_id.as_deref() {
                    self.error(p.tmpl.pos, format!("step `{need}` needs itself"));
                } else if !ids.contains_key(need) && all_steps_parsed {
                    let s = did_you_mean(need, step_names.iter().map(String::as_str));
                    self.error(p.tmpl.pos, format!("`needs` names unknown step `{need}`"))
                        .suggest(s);
                }
                continue;
            }
            let parts: Vec<&str> = reference.split('.').collect();
            let root = parts[0];
            let (pos, width) = self.locate(&p.tmpl, reference);
            let allowed_locals: &[&str] = match p.scope {
                Scope::StepWith { for_each: true }
                | Scope::StepOutputs { for_each: true }
                | Scope::Poll { for_each: true } => &["item", "index"],
                _ => &[],
            };
            match root {
                "steps" if p.scope == Scope::Vars => {
                    self.error_span(
                        pos,
                        width,
                        "vars cannot refer to steps: vars are rendered once, before any step runs",
                    )
                    .help("use the template in the step that needs it, or in `outputs`");
                }
                "steps" => {
                    let Some(id) = parts.get(1) else {
                        self.error_span(pos, width, "refer to a step as `steps.<id>` (dynamic lookups cannot be checked or ordered)");
                        continue;
                    };
                    if Some(*id) == own_id.as_deref() && p.scope != Scope::PipelineOutputs {
                        self.error_span(pos, width, format!("step `{id}` refers to itself"))
                            .help("use `result` in a step's `outputs` to read its own result");
                        continue;
                    }
                    if !ids.contains_key(*id) {
                        if all_steps_parsed {
                            let s = did_you_mean(id, step_names.iter().map(String::as_str))
                                .map(|s| format!("steps.{s}"));
                            self.error_span(
                                pos,
                                width,
                                format!("unknown step `{id}` in `steps.{id}`"),
                            )
                            .suggest(s.as_deref());
                        }
                        continue;
                    }
                    if let Some(attr) = parts.get(2) {
                        if *attr != "outputs" && *attr != "status" {
                            let s = did_you_mean(attr, ["outputs", "status"])
                                .map(|s| format!("steps.{id}.{s}"));
                            self.error_span(pos, width, format!("`steps.{id}.{attr}` does not exist: a step has `outputs` and `status`")).suggest(s.as_deref());
                        }
                    }
                }
                "vars" => {
                    if let Some(name) = parts.get(1) {
                        if !vars.contains_key(*name) {
                            let s = did_you_mean(name, vars.keys().map(String::as_str))
                                .map(|s| format!("vars.{s}"));
                            let d = self
                                .error_span(
                                    pos,
                                    width,
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
                    }
                }
                "secrets" => {
                    if let Some(name) = parts.get(1) {
                        if !secrets.iter().any(|s| s == name) {
                            let s = did_you_mean(name, secrets.iter().map(String::as_str))
                                .map(|s| format!("secrets.{s}"));
                            self.error_span(
                                pos,
                                width,
                                format!("`secrets.{name}` is not listed under `secrets:`"),
                            )
                            .suggest(s.as_deref());
                        }
                    }
                }
                "env" => {
                    if parts.get(1) == Some(&"AVALA_API_KEY") {
                        self.error_span(pos, width, "`env.AVALA_API_KEY` is not available to templates: avala-pipe sends the key itself and never exposes it");
                    }
                }
                "run" => {
                    if let Some(attr) = parts.get(1) {
                        if !["id", "started_at", "date"].contains(attr) {
                            let s = did_you_mean(attr, ["id", "started_at", "date"])
                                .map(|s| format!("run.{s}"));
                            self.error_span(
                                pos,
                                width,
                                format!(
                                    "`run.{attr}` does not exist (run has id, started_at, date)"
                                ),
                            )
                            .suggest(s.as_deref());
                        }
                    }
                }
                "pipeline" => {
                    if let Some(attr) = parts.get(1) {
                        if !["name", "dir"].contains(attr) {
                            let s = did_you_mean(attr, ["name", "dir"])
                                .map(|s| format!("pipeline.{s}"));
                            self.error_span(
                                pos,
                                width,
                                format!(
                                    "`pipeline.{attr}` does not exist (pipeline has name, dir)"
                                ),
                            )
                            .suggest(s.as_deref());
                        }
                    }
                }
                "result" if matches!(p.scope, Scope::StepOutputs { .. }) => {}
                "response" if matches!(p.scope, Scope::Poll { .. }) => {}
                name if allowed_locals.contains(&name) => {}
                name if GLOBAL_FUNCTIONS.contains(&name) => {}
                name => {
                    let mut candidates: Vec<&str> = ROOTS.to_vec();
                    candidates.extend_from_slice(allowed_locals);
                    if matches!(p.scope, Scope::StepOutputs { .. }) {
                        candidates.push("result");
                    }
                    if matches!(p.scope, Scope::Poll { .. }) {
                        candidates.push("response");
                    }
                    let s = did_you_mean(name, candidates.iter().copied());
                    let help = match name {
                        "item" | "index" => "`item` and `index` exist only in a step with `for_each` (in its `with` and `outputs`)".to_string(),
                        "result" => "`result` exists only in a step's `outputs`".to_string(),
                        "response" => "`response` exists only in `poll.until` and `poll.fail_if`".to_string(),
                        _ => format!("available here: {}", candidates.join(", ")),
                    };
                    self.error_span(pos, width, format!("unknown variable `{name}` in template"))
                        .suggest(s)
                        .help(help);
                }
            }
        }
        self.step = None;
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
