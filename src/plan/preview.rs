//! Rendering for the plan: exactly as a run renders, except that a template touching a
//! value only known after the run (`steps.*`, or `item`/`index` of a `for_each` over a
//! list not known yet) becomes a `<known after run: ...>` placeholder.
//!
//! A placeholder must never be a guess: an expression that *uses* an unknown value
//! (`| length`, `> 0`, `== 'failed'`, `| upper`) would otherwise render a plausible but
//! wrong value (`0`, `true`, ...). Such an expression shows whole instead:
//! `<known after run: steps.list.outputs.items | length>`.
//!
//! Must not: hide a mistake a run would also make (unknown filters and tests, syntax
//! errors, strict-undefined errors on known values stay errors: exit 2).

use minijinja::value::Value;
use minijinja::ErrorKind;

use crate::pipeline::model::{TValue, Tmpl};
use crate::template;

const PLACEHOLDER: &str = "<known after run:";

/// What is unknown in the context the values are rendered in.
#[derive(Clone, Copy, Debug)]
pub struct Unknowns {
    /// `item` and `index` are placeholders (a `for_each` over a list not known yet).
    pub item: bool,
}

impl Unknowns {
    /// Does a template with these references read anything unknown?
    fn touched_by(self, references: &[String]) -> bool {
        references.iter().any(|r| {
            let root = r.split(['.', '[']).next().unwrap_or("");
            root == "steps" || (self.item && (root == "item" || root == "index"))
        })
    }
}

/// Renders a value tree for the plan.
pub fn value(v: &TValue, ctx: &Value, unknowns: Unknowns) -> Result<serde_json::Value, String> {
    Ok(match v {
        TValue::Tmpl(t) => tmpl(t, ctx, unknowns)?,
        TValue::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| value(i, ctx, unknowns))
                .collect::<Result<_, _>>()?,
        ),
        TValue::Map(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), value(v, ctx, unknowns)?);
            }
            serde_json::Value::Object(out)
        }
        other => template::render_value(other, ctx)?,
    })
}

fn tmpl(t: &Tmpl, ctx: &Value, unknowns: Unknowns) -> Result<serde_json::Value, String> {
    let references = template::analyze(&t.source)?.references;
    if !unknowns.touched_by(&references) {
        return template::render(t, ctx);
    }
    if let Some(expr) = &t.whole_expr {
        return Ok(match eval(expr, ctx)? {
            Some(v) => {
                let json = template::to_json(&v);
                if has_placeholder(&json) {
                    json
                } else {
                    placeholder(expr)
                }
            }
            None => placeholder(expr),
        });
    }
    if let Some(text) = segments(&t.source, ctx, unknowns)? {
        return Ok(serde_json::Value::String(text));
    }
    // Blocks (`{% if %}`, loops): all or nothing.
    let rendered = template::render_str(&t.source, ctx);
    Ok(match rendered {
        Ok(text) if text.contains(PLACEHOLDER) => serde_json::Value::String(text),
        Ok(_) => placeholder(t.source.trim()),
        Err(e) if is_static(&e) => return Err(template::describe(e)),
        Err(_) => placeholder(t.source.trim()),
    })
}

/// Evaluates an expression; `None` when it fails on an unknown value.
fn eval(expr: &str, ctx: &Value) -> Result<Option<Value>, String> {
    match template::eval_expression(expr, ctx) {
        Ok(v) if v.is_undefined() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) if is_static(&e) => Err(template::describe(e)),
        Err(_) => Ok(None),
    }
}

/// Errors a run would hit whatever the values: not caused by an unknown value.
fn is_static(e: &minijinja::Error) -> bool {
    matches!(
        e.kind(),
        ErrorKind::SyntaxError
            | ErrorKind::UnknownFilter
            | ErrorKind::UnknownTest
            | ErrorKind::UnknownFunction
    )
}

/// A string of literal text and `{{ expr }}` parts (no blocks), each part rendered on
/// its own so that one unknown part does not hide the others. `None` when the text
/// has blocks or comments, or cannot be split safely.
fn segments(source: &str, ctx: &Value, unknowns: Unknowns) -> Result<Option<String>, String> {
    if source.contains("{%") || source.contains("{#") {
        return Ok(None);
    }
    let mut out = String::new();
    let mut rest = source;
    let mut trim_next = false;
    while let Some(start) = rest.find("{{") {
        let Some(len) = rest[start..].find("}}") else {
            return Ok(None);
        };
        let mut literal = &rest[..start];
        if trim_next {
            literal = literal.trim_start();
        }
        let mut inner = &rest[start + 2..start + len];
        if let Some(stripped) = inner.strip_prefix('-') {
            literal = literal.trim_end();
            inner = stripped;
        }
        trim_next = false;
        if let Some(stripped) = inner.strip_suffix('-') {
            trim_next = true;
            inner = stripped;
        }
        out.push_str(literal);
        let expr = inner.trim();
        let Ok(analysis) = template::analyze(&format!("{{{{ {expr} }}}}")) else {
            return Ok(None);
        };
        if unknowns.touched_by(&analysis.references) {
            match eval(expr, ctx)? {
                Some(v) if v.to_string().contains(PLACEHOLDER) => out.push_str(&v.to_string()),
                _ => out.push_str(&format!("{PLACEHOLDER} {expr}>")),
            }
        } else {
            let v = template::eval_expression(expr, ctx).map_err(template::describe)?;
            if v.is_undefined() {
                return Err(format!("`{expr}` is undefined"));
            }
            out.push_str(&v.to_string());
        }
        rest = &rest[start + len + 2..];
    }
    out.push_str(if trim_next { rest.trim_start() } else { rest });
    Ok(Some(out))
}

fn placeholder(what: &str) -> serde_json::Value {
    serde_json::Value::String(format!("{PLACEHOLDER} {what}>"))
}

fn has_placeholder(v: &serde_json::Value) -> bool {
    match v {
        serde_json::Value::String(s) => s.contains(PLACEHOLDER),
        serde_json::Value::Array(items) => items.iter().any(has_placeholder),
        serde_json::Value::Object(map) => map.values().any(has_placeholder),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::template::Unknown;
    use minijinja::context;

    fn tmpl(text: &str) -> TValue {
        TValue::Tmpl(Tmpl {
            source: text.into(),
            pos: Default::default(),
            whole_expr: template::whole_expression(text).map(str::to_string),
            step_refs: vec![],
        })
    }

    fn show(text: &str) -> serde_json::Value {
        let ctx = context! {
            steps => context! { a => context! { outputs => Unknown::value("steps.a.outputs"), status => Unknown::value("steps.a.status") } },
            vars => context! { n => 3, ids => vec!["x", "y"] },
            item => Unknown::value("item"),
        };
        value(&tmpl(text), &ctx, Unknowns { item: true }).unwrap()
    }

    #[test]
    fn placeholders_pass_through_paths_and_strings() {
        assert_eq!(
            show("{{ steps.a.outputs.items[0].id }}"),
            "<known after run: steps.a.outputs.items[0].id>"
        );
        assert_eq!(
            show("out/{{ steps.a.outputs.id }}.json"),
            "out/<known after run: steps.a.outputs.id>.json"
        );
        assert_eq!(show("{{ item.id }}"), "<known after run: item.id>");
        assert_eq!(show("{{ vars.ids }}"), serde_json::json!(["x", "y"]));
    }

    #[test]
    fn values_computed_from_unknowns_are_never_guessed() {
        for (text, shown) in [
            (
                "{{ steps.a.outputs.items | length }}",
                "<known after run: steps.a.outputs.items | length>",
            ),
            (
                "{{ steps.a.outputs.count > 0 }}",
                "<known after run: steps.a.outputs.count > 0>",
            ),
            (
                "{{ steps.a.status == 'failed' }}",
                "<known after run: steps.a.status == 'failed'>",
            ),
            (
                "{{ steps.a.outputs.name | upper }}",
                "<known after run: steps.a.outputs.name | upper>",
            ),
            (
                "{{ steps.a.outputs.count + 1 }}",
                "<known after run: steps.a.outputs.count + 1>",
            ),
            (
                "n={{ vars.n }}, {{ steps.a.outputs.items | length }} items of {{ steps.a.outputs.id }}",
                "n=3, <known after run: steps.a.outputs.items | length> items of <known after run: steps.a.outputs.id>",
            ),
            (
                "{% if steps.a.outputs.x %}a{% else %}b{% endif %}",
                "<known after run: {% if steps.a.outputs.x %}a{% else %}b{% endif %}>",
            ),
        ] {
            assert_eq!(show(text), shown, "{text}");
        }
    }

    #[test]
    fn mistakes_a_run_would_make_stay_errors() {
        let ctx = context! { steps => context! { a => context! { outputs => Unknown::value("steps.a.outputs") } }, vars => context! { n => 3 } };
        let none = Unknowns { item: false };
        assert!(value(&tmpl("{{ steps.a.outputs.x | nosuchfilter }}"), &ctx, none).is_err());
        assert!(value(&tmpl("{{ vars.missing }}"), &ctx, none).is_err());
        assert!(value(
            &tmpl("a-{{ vars.n.x }}-{{ steps.a.outputs.id }}"),
            &ctx,
            none
        )
        .is_err());
    }
}
