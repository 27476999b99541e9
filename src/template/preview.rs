//! Rendering for the plan: exactly as a run renders, except that a template touching a
//! value only known after the run (`steps.*`, or `item`/`index` of a `for_each` over a
//! list not known yet) gives a [`Later`] part instead of a value.
//!
//! A placeholder must never be a guess: an expression that *uses* an unknown value
//! (`| length`, `> 0`, `== 'failed'`, `| upper`) would otherwise render a plausible but
//! wrong value (`0`, `true`, ...). Such an expression is unknown whole:
//! `<known after run: steps.list.outputs.items | length>`.
//!
//! Takes: a value tree and a context holding [`Unknown`] values. Gives: [`Rendered`].
//! Must not: hide a mistake a run would also make (unknown filters and tests, syntax
//! errors, strict-undefined errors on known values stay errors: exit 2).

use indexmap::IndexMap;
use minijinja::value::Value;
use minijinja::ErrorKind;

use super::{Later, Piece, Rendered, TemplateError, Unknown};
use crate::pipeline::model::{Reads, TValue, Tmpl};
use crate::template;

/// What is unknown in the context the values are rendered in.
#[derive(Clone, Copy, Debug)]
pub struct Unknowns {
    /// `item` and `index` are placeholders (a `for_each` over a list not known yet).
    pub item: bool,
}

impl Unknowns {
    /// Does a template that reads these roots read anything unknown?
    fn touch(self, reads: Reads) -> bool {
        reads.steps || (self.item && reads.item)
    }

    /// Does the template read anything unknown? Known from the check when the template
    /// went through it (no second parse); else the template is parsed.
    fn touched(self, t: &Tmpl) -> Result<bool, TemplateError> {
        let reads = match t.reads {
            Some(reads) => reads,
            None => Reads::of(&template::analyze(&t.source)?.references),
        };
        Ok(self.touch(reads))
    }
}

/// Does the template read nothing unknown (so the plan renders it as a run would)?
pub fn is_known(t: &Tmpl, unknowns: Unknowns) -> Result<bool, TemplateError> {
    Ok(!unknowns.touched(t)?)
}

/// Renders a value tree for the plan.
pub fn value(v: &TValue, ctx: &Value, unknowns: Unknowns) -> Result<Rendered, TemplateError> {
    Ok(match v {
        TValue::Tmpl(t) => tmpl(t, ctx, unknowns)?,
        TValue::List(items) => Rendered::list(
            items
                .iter()
                .map(|i| value(i, ctx, unknowns))
                .collect::<Result<_, _>>()?,
        ),
        TValue::Map(map) => {
            let mut out = IndexMap::with_capacity(map.len());
            for (k, v) in map {
                out.insert(k.clone(), value(v, ctx, unknowns)?);
            }
            Rendered::map(out)
        }
        other => Rendered::Json(template::render_value(other, ctx)?),
    })
}

fn tmpl(t: &Tmpl, ctx: &Value, unknowns: Unknowns) -> Result<Rendered, TemplateError> {
    if !unknowns.touched(t)? {
        return Ok(Rendered::Json(template::render(t, ctx)?));
    }
    if let Some(expr) = &t.whole_expr {
        return Ok(match eval(expr, ctx)?.map(|v| to_rendered(&v)) {
            // A value that holds unknown parts shows them; a known one computed from an
            // unknown would be a guess.
            Some(r) if !r.is_known() => r,
            _ => Rendered::Later(Later::whole(expr.as_str())),
        });
    }
    if let Some(pieces) = segments(&t.source, ctx, unknowns)? {
        return Ok(Rendered::Later(Later::from_pieces(pieces)));
    }
    // Blocks (`{% if %}`, loops): unknown as a whole.
    match template::render_str(&t.source, ctx) {
        Err(e) if is_static(&e) => Err(e.into()),
        _ => Ok(Rendered::Later(Later::whole(t.source.trim()))),
    }
}

/// A minijinja value as [`Rendered`]: unknown values (found by type) become [`Later`].
fn to_rendered(value: &Value) -> Rendered {
    if let Some(path) = Unknown::path_of(value) {
        return Rendered::Later(Later::whole(path));
    }
    match value.kind() {
        minijinja::value::ValueKind::Seq => match value.try_iter() {
            Ok(iter) => Rendered::list(iter.map(|v| to_rendered(&v)).collect()),
            Err(_) => Rendered::Json(serde_json::Value::Null),
        },
        minijinja::value::ValueKind::Map => {
            let mut out = IndexMap::new();
            if let Ok(keys) = value.try_iter() {
                for key in keys {
                    let item = value.get_item(&key).unwrap_or_default();
                    let name = key
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| key.to_string());
                    out.insert(name, to_rendered(&item));
                }
            }
            Rendered::map(out)
        }
        _ => Rendered::Json(template::to_json(value)),
    }
}

/// Evaluates an expression; `None` when it fails on an unknown value.
fn eval(expr: &str, ctx: &Value) -> Result<Option<Value>, TemplateError> {
    match template::eval_expression(expr, ctx) {
        Ok(v) if v.is_undefined() => Ok(None),
        Ok(v) => Ok(Some(v)),
        Err(e) if is_static(&e) => Err(e.into()),
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
fn segments(
    source: &str,
    ctx: &Value,
    unknowns: Unknowns,
) -> Result<Option<Vec<Piece>>, TemplateError> {
    if source.contains("{%") || source.contains("{#") {
        return Ok(None);
    }
    let mut out = Vec::new();
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
        out.push(Piece::Text(literal.to_string()));
        let expr = inner.trim();
        let Ok(analysis) = template::analyze(&format!("{{{{ {expr} }}}}")) else {
            return Ok(None);
        };
        out.push(segment(
            expr,
            ctx,
            unknowns.touch(Reads::of(&analysis.references)),
        )?);
        rest = &rest[start + len + 2..];
    }
    out.push(Piece::Text(
        if trim_next { rest.trim_start() } else { rest }.to_string(),
    ));
    Ok(Some(out))
}

/// One `{{ expr }}` of a string: its text, or what is unknown about it.
fn segment(expr: &str, ctx: &Value, touched: bool) -> Result<Piece, TemplateError> {
    if touched {
        let path = eval(expr, ctx)?.and_then(|v| Unknown::path_of(&v).map(str::to_string));
        return Ok(Piece::Unknown(path.unwrap_or_else(|| expr.to_string())));
    }
    let v = template::eval_expression(expr, ctx)?;
    if v.is_undefined() {
        return Err(TemplateError(format!("`{expr}` is undefined")));
    }
    Ok(Piece::Text(v.to_string()))
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
            step_refs: Box::default(),
            reads: None,
        })
    }

    /// The template as the check leaves it: what it reads already known.
    fn checked(text: &str) -> TValue {
        let mut t = tmpl(text);
        if let TValue::Tmpl(t) = &mut t {
            t.reads = Some(Reads::of(&template::analyze(text).unwrap().references));
        }
        t
    }

    /// The plan's text, the same whether what the template reads was found by the check
    /// or by parsing it here.
    fn show(text: &str) -> serde_json::Value {
        let ctx = context! {
            steps => context! { a => context! { outputs => Unknown::value("steps.a.outputs"), status => Unknown::value("steps.a.status") } },
            vars => context! { n => 3, ids => vec!["x", "y"] },
            item => Unknown::value("item"),
        };
        let shown = value(&tmpl(text), &ctx, Unknowns { item: true })
            .unwrap()
            .shown();
        let from_check = value(&checked(text), &ctx, Unknowns { item: true }).unwrap();
        assert_eq!(from_check.shown(), shown, "{text}");
        shown
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
