//! One step: takes a step's mapping and gives a checked [`Step`] (without its edges, which
//! need every step): its id and action, its inputs (`with`), `needs`, `if`, `for_each`
//! and `max_parallel`, `outputs`, retry, timeout and `continue_on_error`.
//!
//! Must not: name any particular action or input; what one action alone requires lives
//! in `actions`.

use super::pipeline::Limits;
use super::*;
use crate::pipeline::model::ActionKind;

impl Checker<'_> {
    pub(super) fn step(&mut self, index: usize, node: &Node, defaults: Limits) -> Option<Step> {
        self.step = None;
        let map = self.step_map(node)?;
        let written_id = self.name_step(map, index);
        let fields = self.fields(
            map,
            spec::STEP,
            &format!("step `{}`", self.step.clone().unwrap_or_default()),
        );
        let get = |key: &str| fields.get(key).copied();
        let id = self.step_id(written_id, get("id"), index);
        let action = get("action").and_then(|n| self.action(n));
        let has_for_each = fields.contains_key("for_each");
        let at = StepAt {
            index,
            for_each: has_for_each,
        };
        let with = match action {
            Some(kind) => {
                let anchor = with_anchor(map, get("action"), node);
                self.inputs(kind, get("with"), anchor, at)
            }
            None => IndexMap::new(),
        };
        let needs = get("needs").map(|n| self.str_list(n)).unwrap_or_default();
        let condition = get("if").map(|n| self.tvalue(n, Scope::StepIf, Some(index)));
        let for_each = get("for_each").map(|n| self.tvalue(n, Scope::StepForEach, Some(index)));
        let max_parallel = self.max_parallel(get("max_parallel"), has_for_each);
        let outputs = self.tvalue_map(
            get("outputs"),
            Scope::StepOutputs {
                for_each: has_for_each,
            },
            Some(index),
        );
        let limits = self.limits(get("retry"), get("timeout"), defaults);
        let continue_on_error = get("continue_on_error")
            .and_then(|n| self.boolean(n))
            .unwrap_or(false);
        let name = get("name").and_then(|n| self.string(n));
        self.pending_needs(get("needs"), index);
        Some(Step {
            index,
            id,
            name,
            action: action?,
            with,
            needs,
            deps: vec![],
            status_tested: vec![],
            results_read: false,
            condition,
            for_each,
            max_parallel,
            outputs,
            retry: limits.retry,
            timeout: limits.timeout,
            continue_on_error,
            pos: map.first().map(|(k, _)| k.pos).unwrap_or(node.pos),
        })
    }

    fn step_map<'n>(&mut self, node: &'n Node) -> Option<&'n [(Node, Node)]> {
        let map = node.as_map();
        if map.is_none() {
            self.error(
                node.pos,
                format!(
                    "each step must be a mapping with `id` and `action`, found {}",
                    node.type_name()
                ),
            );
        }
        map
    }

    /// The step's retry policy and timeout: its own where it gives them, else the defaults.
    pub(super) fn limits(
        &mut self,
        retry: Option<&Node>,
        timeout: Option<&Node>,
        defaults: Limits,
    ) -> Limits {
        Limits {
            retry: retry
                .map(|n| self.retry(n, defaults.retry))
                .unwrap_or(defaults.retry),
            timeout: timeout.and_then(|n| self.duration(n)).or(defaults.timeout),
        }
    }

    /// Names the step in messages as early as possible, and gives the id as written.
    /// A number (`id: 123`) is read as its text so it is reported as an invalid id.
    fn name_step(&mut self, map: &[(Node, Node)], index: usize) -> Option<String> {
        let id = find(map, "id").and_then(|n| match &n.kind {
            NodeKind::Int(_) | NodeKind::Float(_) => Some(scalar_text(n)),
            _ => n.as_str().map(str::to_string),
        });
        self.step = id.clone().or_else(|| Some(format!("#{}", index + 1)));
        id
    }

    /// The step's id, checked against the id syntax; `#N` when it has none.
    fn step_id(&mut self, written: Option<String>, node: Option<&Node>, index: usize) -> String {
        let (Some(id), Some(n)) = (written, node) else {
            return format!("#{}", index + 1);
        };
        if !valid_id(&id) {
            let fixed = sanitize_id(&id);
            self.error(n.pos, format!("invalid step id `{id}`: ids match [A-Za-z_][A-Za-z0-9_]* so templates can use steps.<id>")).suggest(Some(&fixed));
        }
        id
    }

    /// The action a step names, with a suggestion when it is unknown.
    fn action(&mut self, node: &Node) -> Option<ActionKind> {
        let name = node.as_str()?;
        let kind = ActionKind::from_name(name);
        if kind.is_none() {
            let names: Vec<&str> = spec::ACTIONS.iter().map(|a| a.name).collect();
            let suggestion = did_you_mean(name, names.iter().copied());
            self.error(node.pos, format!("unknown action `{name}`"))
                .suggest(suggestion)
                .help = Some(format!("actions: {}", names.join(", ")));
        }
        kind
    }

    /// `with:`: the action's inputs, checked against its spec entry and its own rules.
    fn inputs(
        &mut self,
        kind: ActionKind,
        with: Option<&Node>,
        anchor: Pos,
        at: StepAt,
    ) -> IndexMap<String, TValue> {
        let aspec = spec::action(kind.name()).expect("every action has a spec");
        let entries = self.with_entries(with);
        let what = format!("the inputs (`with`) of {}", kind.name());
        let found = self.fields_at(entries, aspec.inputs, &what, Some(anchor));
        if !aspec.one_of.is_empty() && !aspec.one_of.iter().any(|n| found.contains_key(n)) {
            self.error(
                anchor,
                format!("{} needs one of: {}", kind.name(), aspec.one_of.join(", ")),
            );
        }
        let reading = actions::reading(kind);
        let mut inputs = IndexMap::new();
        for (k, v) in entries {
            let Some(key) = self.key(k) else { continue };
            let Some(field) = spec::field(aspec.inputs, &key) else {
                continue;
            };
            let value = self.input(field, v, reading, at);
            inputs.insert(key, value);
        }
        for problem in (reading.rule)(&inputs) {
            self.input_problem(problem, entries);
        }
        inputs
    }

    /// Reports what an action's own rule found, under the input it names.
    fn input_problem(&mut self, problem: actions::InputProblem, entries: &[(Node, Node)]) {
        let Some((key, value)) = entries
            .iter()
            .find(|(k, _)| k.as_str() == Some(problem.input))
        else {
            return;
        };
        let pos = if problem.at_key { key.pos } else { value.pos };
        self.error(pos, problem.message).help(problem.help);
    }

    /// The entries of `with:`; none when it is missing, null or (reported) not a mapping.
    fn with_entries<'n>(&mut self, with: Option<&'n Node>) -> &'n [(Node, Node)] {
        let Some(n) = with else { return &[] };
        if matches!(n.kind, NodeKind::Null) {
            return &[];
        }
        n.as_map().unwrap_or_else(|| {
            self.error(
                n.pos,
                format!(
                    "`with` must be a mapping of inputs, found {}",
                    n.type_name()
                ),
            );
            &[]
        })
    }

    /// One input's value: a block with late fields (a poll), a JSON body, or plain.
    fn input(
        &mut self,
        field: &Field,
        node: &Node,
        reading: &actions::Reading,
        at: StepAt,
    ) -> TValue {
        if let Ty::Object(fields) = field.ty {
            if fields.iter().any(|f| f.late) {
                return self.late_block(node, fields, at);
            }
        }
        let scope = Scope::StepWith {
            for_each: at.for_each,
        };
        let mut value = self.tvalue(node, scope, Some(at.index));
        if reading.json.contains(&field.name) {
            numbers_back(&mut value, node);
        }
        value
    }

    /// A block with late fields (a poll): those are rendered per response and see
    /// `response` (`until`, `fail_if`); the rest reads as inputs do.
    fn late_block(&mut self, node: &Node, fields: &[Field], at: StepAt) -> TValue {
        let for_each = at.for_each;
        let Some(map) = node.as_map() else {
            return self.tvalue(node, Scope::StepWith { for_each }, Some(at.index));
        };
        let mut out = IndexMap::new();
        for (k, v) in map {
            let Some(key) = self.key(k) else { continue };
            // An unknown key is already reported; its value is not checked further.
            let Some(field) = spec::field(fields, &key) else {
                continue;
            };
            let scope = if field.late {
                Scope::Poll { for_each }
            } else {
                Scope::StepWith { for_each }
            };
            out.insert(key, self.tvalue(v, scope, Some(at.index)));
        }
        TValue::Map(out)
    }

    fn max_parallel(&mut self, node: Option<&Node>, has_for_each: bool) -> Option<usize> {
        let n = node?;
        let value = self.int(n, 1, 256).map(|v| v as usize);
        if !has_for_each {
            self.error(
                n.pos,
                "`max_parallel` only applies to a step with `for_each`",
            );
        }
        value
    }

    pub(super) fn retry(&mut self, node: &Node, base: RetryPolicy) -> RetryPolicy {
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

    /// Each `needs` entry becomes a pending reference, checked once all step ids are known.
    fn pending_needs(&mut self, needs: Option<&Node>, index: usize) {
        let entries: Vec<(String, Pos)> = match needs.map(|n| (&n.kind, n.pos)) {
            Some((NodeKind::Seq(items), _)) => items
                .iter()
                .filter_map(|i| match &i.kind {
                    NodeKind::Int(n) => Some((n.to_string(), i.pos)),
                    _ => Some((i.as_str()?.to_string(), i.pos)),
                })
                .collect(),
            Some((NodeKind::Str(s), pos)) => vec![(s.clone(), pos)],
            _ => vec![],
        };
        for (need, pos) in entries {
            self.pending.push(PendingTemplate {
                step: Some(index),
                scope: Scope::StepWith { for_each: false },
                pos,
                source: String::new(),
                references: vec![format!("needs:{need}")],
            });
        }
    }
}

/// Which step a value belongs to, and whether `item` and `index` are bound there.
#[derive(Clone, Copy)]
struct StepAt {
    index: usize,
    for_each: bool,
}

/// Where a missing input is reported: the `with` key, else the action, else the step.
fn with_anchor(map: &[(Node, Node)], action: Option<&Node>, step: &Node) -> Pos {
    let with_key = map
        .iter()
        .find(|(k, _)| k.as_str() == Some("with"))
        .map(|(k, _)| k.pos);
    with_key.or(action.map(|n| n.pos)).unwrap_or(step.pos)
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
