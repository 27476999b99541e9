//! What the validator knows about particular actions beyond their `spec` entry: which
//! input is a poll block, which inputs are JSON bodies, and the rules that tie two inputs
//! of one action together. Takes an action's name; gives how to read its inputs and a
//! rule function to run over them. An action without an entry here reads plainly and has
//! no extra rules, so a new action needs none.
//!
//! Must not: check keys or types one by one (the `spec` table and `fields` do that).

use super::*;
use crate::pipeline::model::ActionKind;

/// Rules over an action's read inputs (`with`, by name) and their nodes (for positions).
pub(super) type Rules = fn(&mut Checker<'_>, &IndexMap<String, TValue>, &[(Node, Node)]);

/// How one action's inputs are read.
pub(super) struct Reading {
    /// The input that is a poll block (`until` and `fail_if` see `response`).
    pub(super) poll: Option<&'static str>,
    /// Inputs that are JSON bodies: a plain `0.50` or `1e3` in them is a number.
    pub(super) json: &'static [&'static str],
    pub(super) rules: Rules,
}

const PLAIN: Reading = Reading {
    poll: None,
    json: &[],
    rules: no_rules,
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
            poll: Some("poll"),
            json: &["json"],
            rules: request_rules,
        },
    ),
];

/// How `kind`'s inputs are read, and its own rules.
pub(super) fn reading(kind: ActionKind) -> &'static Reading {
    READINGS
        .iter()
        .find(|(name, _)| *name == kind.name())
        .map_or(&PLAIN, |(_, reading)| reading)
}

fn no_rules(_: &mut Checker<'_>, _: &IndexMap<String, TValue>, _: &[(Node, Node)]) {}

/// `request`: pagination follows cursors with GET requests, read once to the last page,
/// so it goes with neither another method nor `poll`.
fn request_rules(c: &mut Checker<'_>, with: &IndexMap<String, TValue>, nodes: &[(Node, Node)]) {
    if with.get("paginate") != Some(&TValue::Bool(true)) {
        return;
    }
    if let Some(TValue::Str(method)) = with.get("method") {
        if !method.eq_ignore_ascii_case("GET") {
            if let Some(node) = find(nodes, "method") {
                c.error(node.pos, format!("`paginate` follows cursors with GET requests; a {method} cannot be paginated"))
                    .help("paginate a GET list endpoint, or drop `paginate`");
            }
        }
    }
    if with.contains_key("poll") {
        if let Some((key, _)) = nodes.iter().find(|(k, _)| k.as_str() == Some("poll")) {
            c.error(key.pos, "`paginate` and `poll` cannot be combined: a paginated request is read to its last page once")
                .help("poll in one step and paginate in another that needs it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every action and input the table names exists in the format table, with the type
    /// its reading assumes: renaming one there fails here, not silently at validate time.
    #[test]
    fn the_table_names_actions_and_inputs_of_the_spec() {
        let names = |fields: &[Field]| fields.iter().map(|f| f.name).collect::<Vec<_>>();
        for (name, reading) in READINGS {
            let aspec = spec::action(name).unwrap_or_else(|| panic!("no action {name}"));
            if let Some(poll) = reading.poll {
                let field = spec::field(aspec.inputs, poll)
                    .unwrap_or_else(|| panic!("{name} has no input {poll}"));
                assert!(
                    matches!(field.ty, Ty::Object(f) if names(f) == names(spec::POLL)),
                    "{name}.{poll} is not a poll block"
                );
            }
            for input in reading.json {
                assert!(
                    spec::field(aspec.inputs, input).is_some(),
                    "{name} has no input {input}"
                );
            }
        }
    }
}
