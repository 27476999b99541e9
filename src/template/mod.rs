//! Templates: the one minijinja environment (strict undefined, a fuel limit, no
//! auto-escaping), reference extraction for validation and the graph, and rendering of
//! template values into JSON values. A value that is exactly one `{{ expression }}`
//! renders to the expression's own type; anything else renders to a string.
//!
//! Values only known after a step runs (dry-run) are [`Unknown`] objects: they render as
//! `<known after run: steps.x.outputs.y>`, also inside larger strings.
//!
//! Must not: know about HTTP or the pipeline file's layout.

use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, UndefinedBehavior};

use crate::pipeline::model::{TValue, Tmpl};

mod budget;

/// Work allowed for one rendering (minijinja fuel): loops over big lists are fine,
/// runaway templates are not.
const FUEL: u64 = 5_000_000;

/// The shared, configured environment.
pub fn environment() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_fuel(Some(FUEL));
        env.set_recursion_limit(64);
        env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
        env.set_keep_trailing_newline(true);
        env
    })
}

/// Does this string contain template syntax at all?
pub fn has_syntax(text: &str) -> bool {
    text.contains("{{") || text.contains("{%") || text.contains("{#")
}

/// `Some(expr)` when the whole string is a single `{{ expr }}` (surrounding whitespace
/// allowed): such a value renders to the expression's native type.
pub fn whole_expression(text: &str) -> Option<&str> {
    let inner = text.trim().strip_prefix("{{")?.strip_suffix("}}")?;
    let inner = inner.strip_prefix('-').unwrap_or(inner);
    let inner = inner.strip_suffix('-').unwrap_or(inner);
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// What a template refers to, found by parsing it.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Dotted paths of every variable the template reads from its context
    /// (`steps.export.outputs.id`, `vars.project`, `item`).
    pub references: Vec<String>,
}

/// Parses a template; the error is minijinja's message. Within the memory budget like a
/// render: compiling folds constant expressions (`'x' * 99999999 ~ ...`).
pub fn analyze(text: &str) -> Result<Analysis, String> {
    if budget::could_grow(text) {
        let owned = text.to_string();
        return budget::run(text, move || analyze_unbounded(&owned))
            .unwrap_or_else(|stopped| Err(stopped_message(text, stopped)));
    }
    analyze_unbounded(text)
}

fn analyze_unbounded(text: &str) -> Result<Analysis, String> {
    let env = environment();
    let mut refs: Vec<String> = match whole_expression(text) {
        Some(expr) => env
            .compile_expression(expr)
            .map_err(describe)?
            .undeclared_variables(true)
            .into_iter()
            .collect(),
        None => env
            .template_from_str(text)
            .map_err(describe)?
            .undeclared_variables(true)
            .into_iter()
            .collect(),
    };
    refs.sort();
    Ok(Analysis { references: refs })
}

/// A readable message from a minijinja error, without its debug dump.
pub fn describe(err: minijinja::Error) -> String {
    let mut msg = err
        .detail()
        .map(str::to_string)
        .unwrap_or_else(|| err.kind().to_string());
    if err.detail().is_some() {
        msg = format!("{}: {msg}", err.kind());
    }
    let mut source = std::error::Error::source(&err);
    while let Some(inner) = source {
        msg.push_str(&format!(": {inner}"));
        source = inner.source();
    }
    msg
}

/// Renders one template to a JSON value.
pub fn render(tmpl: &Tmpl, ctx: &Value) -> Result<serde_json::Value, String> {
    render_text(&tmpl.source, tmpl.whole_expr.as_deref(), ctx)
}

/// The most text one render may produce.
pub const MAX_RENDERED_BYTES: usize = 64 << 20;

/// Renders template text; `whole_expr` is its expression when the text is one `{{ }}`.
/// Bounded: a render that could grow runs within a memory budget ([`budget`]), and no
/// render may produce more than [`MAX_RENDERED_BYTES`]; either is an error naming the
/// template, never an aborted process.
pub fn render_text(
    text: &str,
    whole_expr: Option<&str>,
    ctx: &Value,
) -> Result<serde_json::Value, String> {
    let value = if budget::could_grow(text) {
        let (owned, expr, ctx) = (
            text.to_string(),
            whole_expr.map(str::to_string),
            ctx.clone(),
        );
        budget::run(text, move || {
            render_unbounded(&owned, expr.as_deref(), &ctx)
        })
        .unwrap_or_else(|stopped| Err(stopped_message(text, stopped)))?
    } else {
        render_unbounded(text, whole_expr, ctx)?
    };
    match &value {
        serde_json::Value::String(s) if s.len() > MAX_RENDERED_BYTES => Err(format!(
            "template `{}` renders to {} MiB, more than the {} MiB a template may produce",
            crate::api::shapes::shorten(text, 80),
            s.len() >> 20,
            MAX_RENDERED_BYTES >> 20
        )),
        _ => Ok(value),
    }
}

/// minijinja's own `render_str`, within the memory budget, for callers that read
/// minijinja's error kinds (the dry-run preview); a stop is an `InvalidOperation`.
pub fn render_str(text: &str, ctx: &Value) -> Result<String, minijinja::Error> {
    if !budget::could_grow(text) {
        return environment().render_str(text, ctx);
    }
    let (owned, ctx) = (text.to_string(), ctx.clone());
    budget::run(&format!("preview:{text}"), move || {
        environment().render_str(&owned, &ctx)
    })
    .unwrap_or_else(|stopped| Err(stopped_error(text, stopped)))
}

/// An expression evaluated by minijinja, within the memory budget (see [`render_str`]).
pub fn eval_expression(expr: &str, ctx: &Value) -> Result<Value, minijinja::Error> {
    let text = format!("{{{{ {expr} }}}}");
    if !budget::could_grow(&text) {
        return environment().compile_expression(expr)?.eval(ctx);
    }
    let (owned, ctx) = (expr.to_string(), ctx.clone());
    budget::run(&format!("preview:{text}"), move || {
        environment().compile_expression(&owned)?.eval(&ctx)
    })
    .unwrap_or_else(|stopped| Err(stopped_error(&text, stopped)))
}

fn stopped_error(text: &str, stopped: budget::Stopped) -> minijinja::Error {
    minijinja::Error::new(
        minijinja::ErrorKind::InvalidOperation,
        stopped_message(text, stopped),
    )
}

fn stopped_message(text: &str, stopped: budget::Stopped) -> String {
    let text = crate::api::shapes::shorten(text, 80);
    match stopped {
        budget::Stopped::Memory => format!(
            "template `{text}` needs more than {} MiB of memory (a string doubled in a loop, a huge join or repetition?); templates are limited so a run cannot exhaust memory",
            budget::MEMORY_BUDGET >> 20
        ),
        budget::Stopped::TooMany => format!(
            "template `{text}` was not rendered: other templates of this run already went over their memory budget"
        ),
    }
}

fn render_unbounded(
    text: &str,
    whole_expr: Option<&str>,
    ctx: &Value,
) -> Result<serde_json::Value, String> {
    let env = environment();
    match whole_expr {
        Some(expr) => {
            let value = env
                .compile_expression(expr)
                .map_err(describe)?
                .eval(ctx)
                .map_err(describe)?;
            if value.is_undefined() {
                return Err(format!("`{expr}` is undefined"));
            }
            Ok(to_json(&value))
        }
        None => env
            .render_str(text, ctx)
            .map(serde_json::Value::String)
            .map_err(describe),
    }
}

/// Renders a template value tree to JSON.
pub fn render_value(value: &TValue, ctx: &Value) -> Result<serde_json::Value, String> {
    Ok(match value {
        TValue::Null => serde_json::Value::Null,
        TValue::Bool(b) => serde_json::Value::Bool(*b),
        TValue::Int(i) => serde_json::Value::from(*i),
        TValue::Float(f) => serde_json::Value::from(*f),
        TValue::Str(s) => serde_json::Value::String(s.clone()),
        TValue::Tmpl(t) => render(t, ctx)?,
        TValue::List(items) => serde_json::Value::Array(
            items
                .iter()
                .map(|i| render_value(i, ctx))
                .collect::<Result<_, _>>()?,
        ),
        TValue::Map(map) => {
            let mut out = serde_json::Map::new();
            for (k, v) in map {
                out.insert(k.clone(), render_value(v, ctx)?);
            }
            serde_json::Value::Object(out)
        }
    })
}

/// Converts a minijinja value to JSON; [`Unknown`] placeholders become their text.
pub fn to_json(value: &Value) -> serde_json::Value {
    if let Some(unknown) = value.downcast_object_ref::<Unknown>() {
        return serde_json::Value::String(unknown.placeholder());
    }
    if value.is_undefined() || value.is_none() {
        return serde_json::Value::Null;
    }
    match value.kind() {
        minijinja::value::ValueKind::Seq | minijinja::value::ValueKind::Iterable => {
            match value.try_iter() {
                Ok(iter) => serde_json::Value::Array(iter.map(|v| to_json(&v)).collect()),
                Err(_) => serde_json::Value::Null,
            }
        }
        minijinja::value::ValueKind::Map => {
            let mut out = serde_json::Map::new();
            if let Ok(keys) = value.try_iter() {
                for key in keys {
                    let item = value.get_item(&key).unwrap_or_default();
                    let name = key
                        .as_str()
                        .map(str::to_string)
                        .unwrap_or_else(|| key.to_string());
                    out.insert(name, to_json(&item));
                }
            }
            serde_json::Value::Object(out)
        }
        _ => serde_json::to_value(value).unwrap_or(serde_json::Value::Null),
    }
}

/// Converts JSON to a minijinja value (cheap to clone afterwards).
pub fn from_json(value: &serde_json::Value) -> Value {
    Value::from_serialize(value)
}

/// A value only known after a step has run (dry-run). Attribute access extends the
/// path; rendering shows `<known after run: PATH>`.
#[derive(Debug)]
pub struct Unknown(pub String);

impl Unknown {
    pub fn value(path: impl Into<String>) -> Value {
        Value::from_object(Unknown(path.into()))
    }

    pub fn placeholder(&self) -> String {
        format!("<known after run: {}>", self.0)
    }
}

impl Object for Unknown {
    fn repr(self: &Arc<Self>) -> ObjectRepr {
        ObjectRepr::Plain
    }

    fn get_value(self: &Arc<Self>, key: &Value) -> Option<Value> {
        let path = match key.as_str() {
            Some(name) => format!("{}.{name}", self.0),
            None => format!("{}[{key}]", self.0),
        };
        Some(Unknown::value(path))
    }

    /// Not known yet, so not iterable: `length`, loops and `join` fail instead of
    /// silently seeing an empty list (the plan then shows the whole expression).
    fn enumerate(self: &Arc<Self>) -> Enumerator {
        Enumerator::NonEnumerable
    }

    fn render(self: &Arc<Self>, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.placeholder())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use minijinja::context;

    fn tmpl(text: &str) -> Tmpl {
        Tmpl {
            source: text.into(),
            pos: Default::default(),
            whole_expr: whole_expression(text).map(str::to_string),
            step_refs: vec![],
        }
    }

    #[test]
    fn whole_expressions_keep_their_type() {
        let ctx = context! { xs => vec![1, 2], s => "3.10", no => "NO" };
        assert_eq!(
            render(&tmpl("{{ xs }}"), &ctx).unwrap(),
            serde_json::json!([1, 2])
        );
        assert_eq!(
            render(&tmpl("{{ s }}"), &ctx).unwrap(),
            serde_json::json!("3.10")
        );
        assert_eq!(
            render(&tmpl(" {{ no }} "), &ctx).unwrap(),
            serde_json::json!("NO")
        );
        assert_eq!(
            render(&tmpl("n={{ xs | length }}"), &ctx).unwrap(),
            serde_json::json!("n=2")
        );
    }

    #[test]
    fn strict_undefined() {
        let ctx = context! { vars => context!{ a => 1 } };
        assert!(render(&tmpl("{{ vars.b }}"), &ctx).is_err());
        assert!(render(&tmpl("x{{ vars.b }}"), &ctx).is_err());
        assert_eq!(
            render(&tmpl("{{ vars.b | default('d') }}"), &ctx).unwrap(),
            serde_json::json!("d")
        );
    }

    #[test]
    fn references_are_extracted() {
        let a = analyze("out/{{ steps.export.outputs.id }}-{{ vars.project }}.json").unwrap();
        assert_eq!(
            a.references,
            vec!["steps.export.outputs.id", "vars.project"]
        );
        assert!(analyze("{{ oops").is_err());
    }

    #[test]
    fn unknown_values_render_as_placeholders() {
        let ctx = context! { steps => context!{ e => context!{ outputs => Unknown::value("steps.e.outputs") } } };
        assert_eq!(
            render(&tmpl("out/{{ steps.e.outputs.id }}.json"), &ctx).unwrap(),
            serde_json::json!("out/<known after run: steps.e.outputs.id>.json")
        );
        assert_eq!(
            render(&tmpl("{{ steps.e.outputs.items }}"), &ctx).unwrap(),
            serde_json::json!("<known after run: steps.e.outputs.items>")
        );
    }
}
