//! Edges: takes the checked templates and the steps, and gives each step its dependencies
//! (`needs` and the steps its templates reference), the steps whose status it tests, and
//! each stored template its step refs.
//!
//! Must not: report problems (the names were checked by `references`) or order the graph
//! (that is `graph`).

use super::*;

/// The analysed templates sorted by position, so storing their step refs back is one
/// binary search per template rather than a scan of all of them (quadratic in big
/// pipelines). A sorted list, not a map of lists: one allocation for 250,000 templates,
/// not one each.
pub(super) struct AnalysedTemplates<'p> {
    by_pos: Vec<&'p PendingTemplate>,
}

impl<'p> AnalysedTemplates<'p> {
    pub(super) fn new(pending: &'p [PendingTemplate]) -> Self {
        let mut by_pos: Vec<&'p PendingTemplate> = pending.iter().collect();
        // Stable: of two templates at one place, the first met is found first. They are
        // met in file order, so this is a check more than a sort.
        by_pos.sort_by_key(|p| p.pos);
        AnalysedTemplates { by_pos }
    }

    /// The first analysed template written at `t`'s place with `t`'s source.
    fn find(&self, t: &Tmpl) -> Option<&'p PendingTemplate> {
        let first = self.by_pos.partition_point(|p| p.pos < t.pos);
        self.by_pos[first..]
            .iter()
            .take_while(|p| p.pos == t.pos)
            .find(|p| p.source == t.source)
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
    for p in pending {
        // Any template (a step's or the pipeline's outputs) may read a step's results.
        for id in results_reads(&p.references) {
            // Steps are in file order (an index, not a position: a step that could not
            // be read is missing).
            let found = ids
                .get(id)
                .and_then(|i| steps.binary_search_by_key(i, |s| s.index).ok());
            if let Some(k) = found {
                steps[k].results_read = true;
            }
        }
    }
    // The steps' templates in step order (stable: in the order met), walked beside the
    // steps, which are in step order too.
    let mut by_step: Vec<(usize, &PendingTemplate)> =
        pending.iter().filter_map(|p| Some((p.step?, p))).collect();
    by_step.sort_by_key(|(index, _)| *index);
    let mut templates = by_step.as_slice();
    for step in steps {
        let mut deps: Vec<usize> = step
            .needs
            .iter()
            .filter_map(|n| ids.get(n).copied())
            .collect();
        let before = templates.partition_point(|(index, _)| *index < step.index);
        let mine = templates[before..].partition_point(|(index, _)| *index == step.index);
        for (_, t) in &templates[before..before + mine] {
            deps.extend(
                referenced_steps(&t.references)
                    .iter()
                    .filter_map(|r| ids.get(r).copied()),
            );
            step.status_tested
                .extend(status_tests(&t.references).filter_map(|id| ids.get(id).copied()));
        }
        templates = &templates[before + mine..];
        step.status_tested.sort_unstable();
        step.status_tested.dedup();
        deps.retain(|d| *d != step.index);
        deps.sort_unstable();
        deps.dedup();
        step.deps = deps;
    }
}

/// The step ids of references that may read a step's `outputs.results`: every
/// `steps.<id>...` but `steps.<id>.status` and `steps.<id>.outputs.count` (a reference
/// to the whole step or its whole outputs counts: the template may read anything).
fn results_reads(references: &[String]) -> impl Iterator<Item = &str> {
    references.iter().filter_map(|r| {
        let mut parts = r.strip_prefix("steps.")?.split('.');
        let id = parts.next()?;
        match (parts.next(), parts.next()) {
            (Some("status"), _) | (Some("outputs"), Some("count")) => None,
            _ => Some(id),
        }
    })
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
                t.step_refs = referenced_steps(&p.references).into_boxed_slice();
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
