//! What the validator knows about particular actions beyond their `spec` entry: which
//! inputs are JSON bodies, and the rules that tie two inputs of one action together.
//! Takes an action's name; gives how to read its inputs and a rule over their values. An
//! action without an entry here reads plainly and has no rules of its own, so a new
//! action needs none. The rules see values only and name the input a problem is at; the
//! walker (`step`) turns that into a position.
//!
//! Must not: check keys or types one by one (the `spec` table and `fields` do that), or
//! look at YAML.

use super::*;
use crate::pipeline::model::ActionKind;

/// What one action's rule found wrong with its inputs.
pub(super) struct InputProblem {
    /// The input the caret goes under.
    pub(super) input: &'static str,
    /// Under the input's key (it should not be there at all) rather than its value.
    pub(super) at_key: bool,
    pub(super) message: String,
    pub(super) help: &'static str,
}

/// A rule over an action's read inputs (`with`, by name).
pub(super) type Rule = fn(&IndexMap<String, TValue>) -> Vec<InputProblem>;

/// How one action's inputs are read, beyond their types.
pub(super) struct Reading {
    /// Inputs that are JSON bodies: a plain `0.50` or `1e3` in them is a number.
    pub(super) json: &'static [&'static str],
    pub(super) rule: Rule,
}

const PLAIN: Reading = Reading {
    json: &[],
    rule: |_| vec![],
};

const READINGS: &[(&str, Reading)] = &[
    (
        "exports.create",
        Reading {
            json: &["body"],
            ..PLAIN
        },
    ),
    (
        "request",
        Reading {
            json: &["json"],
            rule: request_rule,
        },
    ),
];

/// How `kind`'s inputs are read, and its own rule.
pub(super) fn reading(kind: ActionKind) -> &'static Reading {
    READINGS
        .iter()
        .find(|(name, _)| *name == kind.name())
        .map_or(&PLAIN, |(_, reading)| reading)
}

/// `request`: pagination follows cursors with GET requests, read once to the last page,
/// so it goes with neither another method nor `poll`.
fn request_rule(with: &IndexMap<String, TValue>) -> Vec<InputProblem> {
    let mut problems = Vec::new();
    if with.get("paginate") != Some(&TValue::Bool(true)) {
        return problems;
    }
    if let Some(TValue::Str(method)) = with.get("method") {
        if !method.eq_ignore_ascii_case("GET") {
            problems.push(InputProblem {
                input: "method",
                at_key: false,
                message: format!(
                    "`paginate` follows cursors with GET requests; a {method} cannot be paginated"
                ),
                help: "paginate a GET list endpoint, or drop `paginate`",
            });
        }
    }
    if with.contains_key("poll") {
        problems.push(InputProblem {
            input: "poll",
            at_key: true,
            message: "`paginate` and `poll` cannot be combined: a paginated request is read to its last page once".into(),
            help: "poll in one step and paginate in another that needs it",
        });
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action and input the table names exists in the format table: renaming one
    /// there fails here, not silently at validate time.
    #[test]
    fn the_table_names_actions_and_inputs_of_the_spec() {
        for (name, reading) in READINGS {
            let aspec = spec::action(name).unwrap_or_else(|| panic!("no action {name}"));
            for input in reading.json {
                assert!(
                    spec::field(aspec.inputs, input).is_some(),
                    "{name} has no input {input}"
                );
            }
        }
    }
    fn with(pairs: &[(&str, TValue)]) -> IndexMap<String, TValue> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect()
    }

    #[test]
    fn request_paginates_only_plain_gets() {
        let paginate = ("paginate", TValue::Bool(true));
        let post = ("method", TValue::Str("post".into()));
        let get = ("method", TValue::Str("get".into()));
        let poll = ("poll", TValue::Map(IndexMap::new()));
        let inputs = |problems: Vec<InputProblem>| -> Vec<(&str, bool)> {
            problems.iter().map(|p| (p.input, p.at_key)).collect()
        };
        assert!(request_rule(&with(&[post.clone(), poll.clone()])).is_empty());
        assert!(request_rule(&with(&[paginate.clone(), get])).is_empty());
        assert_eq!(
            inputs(request_rule(&with(&[paginate, post, poll]))),
            [("method", false), ("poll", true)]
        );
    }
}
