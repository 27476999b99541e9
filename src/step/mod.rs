//! One step in one context: its `if`, its `for_each` iterations, its rendered inputs
//! (late ones included, through [`LateInputs`]), its outputs, and the rule that skips it
//! when a dependency did not run. Evaluated in [`Mode::Preview`] (dry-run: values not
//! known yet are typed [`Later`](crate::template::Later)) or [`Mode::Run`]. The plan and
//! the scheduler both evaluate steps here, so a dry-run cannot drift from a run.
//!
//! Takes: a checked step, a template context (built by [`Globals::context`]).
//! Gives: decisions, iteration contexts, [`Inputs`] for the action, outputs.
//! Must not: send requests, schedule, or print.

pub mod context;

use indexmap::IndexMap;
use minijinja::value::{Value, ValueKind};

use crate::actions::{Inputs, Renderer};
use crate::api::shapes::shorten;
use crate::outputs::Outputs;
use crate::pipeline::model::{Pipeline, Step, TValue};
use crate::pipeline::spec::{self, Ty};
use crate::template::preview::{self, Unknowns};
use crate::template::{self, truthy, Rendered, TemplateError, Unknown};
pub use context::{step_entry, unknown_entry, Environment, Globals, GlobalsError, StepEntries};

/// How a step is evaluated.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// A real run: every value is known.
    Run,
    /// A dry-run: `steps.*` (and `item` of a list not known yet) are known after the run.
    Preview,
}

/// Why a step could not be evaluated.
#[derive(Debug, thiserror::Error)]
pub enum StepError {
    #[error(transparent)]
    Template(#[from] TemplateError),
    #[error("`for_each` must yield a list, got {0}")]
    NotAList(String),
}

/// What the step's `if` decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    Run,
    Skip,
    /// Known only after earlier steps run (dry-run).
    Undecided,
}

/// The iterations of a step (`L`: how the list is held).
#[derive(Debug)]
pub enum Iterations<L = Vec<serde_json::Value>> {
    /// No `for_each`: the step runs once.
    Once,
    /// One per element of this list.
    Each(L),
    /// A list known only after the run (dry-run): shown once with `item` placeholders.
    Later,
}

/// The elements a run's `for_each` goes over, read one at a time, in order, each as the
/// JSON value a whole render of the list would give.
#[derive(Debug)]
pub enum Items {
    /// A list written in the file.
    Json(Vec<serde_json::Value>),
    /// What the template evaluated to, as minijinja holds it: a `range(...)` stays lazy,
    /// and a list held by vars or by a step's outputs is not copied.
    Value(Value),
}

impl Items {
    /// The number of elements (a lazy list is counted, not collected).
    pub fn len(&self) -> usize {
        match self {
            Items::Json(items) => items.len(),
            Items::Value(v) => v
                .len()
                .unwrap_or_else(|| v.try_iter().map_or(0, Iterator::count)),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Each element as JSON, made when it is reached.
    pub fn iter(&self) -> Box<dyn Iterator<Item = serde_json::Value> + Send + '_> {
        match self {
            Items::Json(items) => Box::new(items.iter().cloned()),
            Items::Value(v) => match v.try_iter() {
                Ok(iter) => Box::new(iter.map(|item| template::to_json(&item))),
                Err(_) => Box::new(std::iter::empty()),
            },
        }
    }
}

/// One step, evaluated in one mode.
#[derive(Clone, Copy, Debug)]
pub struct Eval<'a> {
    pub step: &'a Step,
    pub mode: Mode,
}

impl<'a> Eval<'a> {
    pub fn new(step: &'a Step, mode: Mode) -> Self {
        Eval { step, mode }
    }

    fn render(&self, v: &TValue, ctx: &Value, item: bool) -> Result<Rendered, TemplateError> {
        match self.mode {
            Mode::Run => Ok(Rendered::Json(template::render_value(v, ctx)?)),
            Mode::Preview => preview::value(v, ctx, Unknowns { item }),
        }
    }

    /// The step's `if`, when it has one.
    pub fn condition(&self, base: &Value) -> Result<Option<Decision>, StepError> {
        let Some(cond) = &self.step.condition else {
            return Ok(None);
        };
        let r = self
            .render(cond, base, false)
            .map_err(|e| e.context("`if`"))?;
        Ok(Some(match r.known() {
            Some(v) if truthy(v) => Decision::Run,
            Some(_) => Decision::Skip,
            None => Decision::Undecided,
        }))
    }

    /// The step's iterations.
    pub fn iterations(&self, base: &Value) -> Result<Iterations, StepError> {
        Ok(match self.items(base)? {
            Iterations::Each(Items::Json(items)) => Iterations::Each(items),
            Iterations::Each(items) => Iterations::Each(items.iter().collect()),
            Iterations::Once => Iterations::Once,
            Iterations::Later => Iterations::Later,
        })
    }

    /// The iterations from the `for_each` value rendered whole.
    fn rendered_iterations(&self, base: &Value) -> Result<Iterations, StepError> {
        let Some(fe) = &self.step.for_each else {
            return Ok(Iterations::Once);
        };
        match self
            .render(fe, base, false)
            .map_err(|e| e.context("`for_each`"))?
        {
            Rendered::Json(serde_json::Value::Array(items)) => Ok(Iterations::Each(items)),
            Rendered::Json(other) => Err(StepError::NotAList(shorten(&other.to_string(), 80))),
            _ => Ok(Iterations::Later),
        }
    }

    /// The step's iterations, their list read as it goes (see [`Items`]).
    pub fn items(&self, base: &Value) -> Result<Iterations<Items>, StepError> {
        let Some(fe) = &self.step.for_each else {
            return Ok(Iterations::Once);
        };
        // A dry-run reads the list as a run does when it is known now.
        let whole = match fe {
            TValue::Tmpl(t)
                if self.mode == Mode::Run || preview::is_known(t, Unknowns { item: false })? =>
            {
                t.whole_expr.as_deref().map(|e| (t, e))
            }
            _ => None,
        };
        let Some((tmpl, expr)) = whole else {
            return Ok(match self.rendered_iterations(base)? {
                Iterations::Each(items) => Iterations::Each(Items::Json(items)),
                Iterations::Once => Iterations::Once,
                Iterations::Later => Iterations::Later,
            });
        };
        let value = template::eval_whole(&tmpl.source, expr, base)
            .map_err(|e| StepError::from(e.context("`for_each`")))?;
        match value.kind() {
            ValueKind::Seq | ValueKind::Iterable => Ok(Iterations::Each(Items::Value(value))),
            _ => Err(StepError::NotAList(shorten(
                &template::to_json(&value).to_string(),
                80,
            ))),
        }
    }

    /// Renders the step's inputs in `ctx`, all but the late ones (a poll's conditions,
    /// rendered per response). `item_later`: `item`/`index` are placeholders.
    pub fn inputs(&self, ctx: &Value, item_later: bool) -> Result<Inputs, StepError> {
        let spec = self.step.action.spec();
        let mut values = IndexMap::with_capacity(self.step.with.len());
        for (name, value) in &self.step.with {
            let late_keys = match (spec::field(spec.inputs, name).map(|f| f.ty), value) {
                (Some(Ty::Object(keys)), TValue::Map(map)) if keys.iter().any(|k| k.late) => {
                    Some((keys, map))
                }
                _ => None,
            };
            let rendered = match late_keys {
                Some((keys, map)) => {
                    let mut out = IndexMap::with_capacity(map.len());
                    for (k, v) in map {
                        if spec::field(keys, k).is_some_and(|f| f.late) {
                            continue;
                        }
                        let r = self
                            .render(v, ctx, item_later)
                            .map_err(|e| e.context(format!("input `{name}.{k}`")))?;
                        out.insert(k.clone(), r);
                    }
                    Rendered::map(out)
                }
                None => self
                    .render(value, ctx, item_later)
                    .map_err(|e| e.context(format!("input `{name}`")))?,
            };
            values.insert(name.clone(), rendered);
        }
        Ok(Inputs::new(
            self.step.action,
            values,
            self.step.with.clone(),
        ))
    }

    /// The step's outputs: the action's result, plus the step's `outputs` rendered with
    /// `result` bound to it (a run only).
    pub fn outputs(&self, ctx: &Value, result: Outputs) -> Result<Outputs, StepError> {
        if self.step.outputs.is_empty() {
            return Ok(result);
        }
        let with_result = minijinja::context! { result => result.template(), ..ctx.clone() };
        let mut outputs = result;
        for (name, value) in &self.step.outputs {
            let v = template::render_value(value, &with_result)
                .map_err(|e| e.context(format!("output `{name}`")))?;
            outputs.insert(name.clone(), v);
        }
        Ok(outputs)
    }
}

/// The context of one `for_each` iteration.
pub fn item_context(base: &Value, item: &serde_json::Value, index: usize) -> Value {
    minijinja::context! { item => template::from_json(item), index => index, ..base.clone() }
}

/// The context of a `for_each` over a list known only after the run.
pub fn later_item_context(base: &Value) -> Value {
    minijinja::context! {
        item => Unknown::value("item"),
        index => Unknown::value("index"),
        ..base.clone()
    }
}

/// Renders late inputs (a poll's conditions) in the step's context plus per-response
/// data (`response`).
pub struct LateInputs {
    ctx: Value,
}

impl LateInputs {
    pub fn new(ctx: Value) -> Self {
        LateInputs { ctx }
    }
}

impl Renderer for LateInputs {
    fn render_with(
        &self,
        value: &TValue,
        name: &str,
        data: &serde_json::Value,
    ) -> Result<serde_json::Value, TemplateError> {
        let mut extra = std::collections::BTreeMap::new();
        for (k, v) in data.as_object().into_iter().flatten() {
            extra.insert(k.clone(), template::from_json(v));
        }
        let ctx = minijinja::context! { ..Value::from(extra), ..self.ctx.clone() };
        template::render_value(value, &ctx).map_err(|e| e.context(name))
    }
}

/// What is known of a dependency when a step's skip rule is applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DepState {
    /// Not finished yet (run), or will run (plan).
    Pending,
    Succeeded,
    Failed,
    Skipped,
    /// May be skipped at run time (plan: its `if`, or its own dependencies, decide then).
    MaybeSkipped,
}

/// Why a dependency makes a step skip.
#[derive(Clone, Copy, Debug)]
pub enum SkipCause<'p> {
    /// It failed and does not `continue_on_error`.
    Failed(&'p Step),
    /// It was skipped and the step does not test its status.
    Skipped(&'p Step),
}

/// The skip rule, as the scheduler applies it and the plan previews it: the first
/// dependency that makes `step` skip, if one does.
pub fn skip_cause<'p>(
    p: &'p Pipeline,
    step: &Step,
    state: impl Fn(usize) -> DepState,
) -> Option<SkipCause<'p>> {
    step.deps.iter().find_map(|&d| {
        let dep = &p.steps[d];
        match state(d) {
            DepState::Failed if !dep.continue_on_error => Some(SkipCause::Failed(dep)),
            DepState::Skipped if !step.tests_status_of(d) => Some(SkipCause::Skipped(dep)),
            _ => None,
        }
    })
}

/// The dependencies that may make `step` skip at run time (plan).
pub fn maybe_skipped_by<'p>(
    p: &'p Pipeline,
    step: &Step,
    state: impl Fn(usize) -> DepState,
) -> Vec<&'p Step> {
    step.deps
        .iter()
        .filter(|&&d| state(d) == DepState::MaybeSkipped && !step.tests_status_of(d))
        .map(|&d| &p.steps[d])
        .collect()
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::Arc;

    use super::*;
    use crate::pipeline::check::check_source;

    fn pipeline(yaml: &str) -> Pipeline {
        check_source(std::path::Path::new("t.yaml"), yaml).expect("a valid pipeline")
    }

    fn globals(p: &Pipeline) -> Globals {
        Globals::new(p, &Environment::default(), &[]).unwrap()
    }

    const SOURCE: &str = "version: 1\nvars:\n  ids: [a, b]\nsteps:\n  - id: list\n    action: datasets.list\n  - id: each\n    action: exports.create\n    if: \"{{ steps.list.outputs.count > 0 }}\"\n    for_each: \"{{ vars.ids }}\"\n    with: { dataset_id: \"{{ item }}\" }\n  - id: poll\n    action: request\n    with:\n      path: \"/exports/{{ steps.list.outputs.items[0].id }}\"\n      poll: { until: \"{{ response.body.done }}\", interval: 1s }\n";

    #[test]
    fn preview_leaves_what_depends_on_earlier_steps_undecided_and_run_decides_it() {
        let p = pipeline(SOURCE);
        let g = globals(&p);
        let unknown: BTreeMap<String, Value> = p
            .steps
            .iter()
            .map(|s| (s.id.clone(), unknown_entry(&s.id)))
            .collect();
        let preview_ctx = g.context(&Value::from(unknown), &[]);
        let each = Eval::new(&p.steps[1], Mode::Preview);
        assert_eq!(
            each.condition(&preview_ctx).unwrap(),
            Some(Decision::Undecided)
        );
        // The list is known now: two iterations, each rendering its own item.
        let Iterations::Each(items) = each.iterations(&preview_ctx).unwrap() else {
            panic!("a known list");
        };
        assert_eq!(items.len(), 2);
        let inputs = each
            .inputs(&item_context(&preview_ctx, &items[1], 1), false)
            .unwrap();
        assert_eq!(inputs.values()["dataset_id"], Rendered::Json("b".into()));

        let entries = Arc::new(StepEntries::default());
        entries.insert(
            "list".into(),
            step_entry(
                template::from_json(&serde_json::json!({"count": 0, "items": [{"id": "x"}]})),
                "succeeded",
            ),
        );
        let run_ctx = g.context(&Value::from_dyn_object(entries), &[]);
        let run = Eval::new(&p.steps[1], Mode::Run);
        assert_eq!(run.condition(&run_ctx).unwrap(), Some(Decision::Skip));
    }

    #[test]
    fn late_inputs_are_left_for_each_response_and_the_rest_is_rendered() {
        let p = pipeline(SOURCE);
        let g = globals(&p);
        let entries = Arc::new(StepEntries::default());
        entries.insert(
            "list".into(),
            step_entry(
                template::from_json(&serde_json::json!({"count": 1, "items": [{"id": "exp 1"}]})),
                "succeeded",
            ),
        );
        let ctx = g.context(&Value::from_dyn_object(entries), &[]);
        let inputs = Eval::new(&p.steps[2], Mode::Run)
            .inputs(&ctx, false)
            .unwrap();
        assert_eq!(
            inputs.values()["path"],
            Rendered::Json("/exports/exp 1".into())
        );
        // `until` waits for a response; `interval` is rendered now.
        assert_eq!(
            inputs.values()["poll"],
            Rendered::Json(serde_json::json!({"interval": "1s"}))
        );
        let late = LateInputs::new(ctx);
        let until = match p.steps[2].input("poll") {
            Some(TValue::Map(m)) => m["until"].clone(),
            other => panic!("{other:?}"),
        };
        let done = late
            .render_with(
                &until,
                "poll.until",
                &serde_json::json!({"response": {"body": {"done": true}}}),
            )
            .unwrap();
        assert_eq!(done, serde_json::json!(true));
    }

    #[test]
    fn the_skip_rule_is_one_rule_for_the_plan_and_the_run() {
        let p = pipeline("version: 1\nsteps:\n  - id: a\n    action: datasets.list\n  - id: b\n    action: datasets.list\n    needs: [a]\n  - id: c\n    action: datasets.list\n    if: \"{{ steps.a.status == 'skipped' }}\"\n");
        let (b, c) = (&p.steps[1], &p.steps[2]);
        assert!(matches!(
            skip_cause(&p, b, |_| DepState::Failed),
            Some(SkipCause::Failed(dep)) if dep.id == "a"
        ));
        assert!(matches!(
            skip_cause(&p, b, |_| DepState::Skipped),
            Some(SkipCause::Skipped(_))
        ));
        // `c` tests `a`'s status: a skipped `a` does not skip it.
        assert!(skip_cause(&p, c, |_| DepState::Skipped).is_none());
        assert!(skip_cause(&p, b, |_| DepState::Succeeded).is_none());
        assert_eq!(maybe_skipped_by(&p, b, |_| DepState::MaybeSkipped).len(), 1);
        assert!(maybe_skipped_by(&p, c, |_| DepState::MaybeSkipped).is_empty());
    }
}
