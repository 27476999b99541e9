//! Templates: the one minijinja environment (strict undefined, a fuel limit, no
//! auto-escaping), reference extraction for validation and the graph, and rendering of
//! template values into JSON values. A value that is exactly one `{{ expression }}`
//! renders to the expression's own type; anything else renders to a string.
//!
//! Values only known after a step runs (dry-run) are [`Unknown`] objects in the context;
//! [`preview`] renders with them into [`Rendered`] values whose unknown parts are typed
//! ([`Later`]), never recognised by their text.
//!
//! Takes: checked template values and a context. Gives: JSON or [`Rendered`] values.
//! Must not: know about HTTP or the pipeline file's layout.

mod budget;
pub mod preview;
mod rendered;

use std::sync::{Arc, OnceLock};

use minijinja::value::{Enumerator, Object, ObjectRepr, Value};
use minijinja::{Environment, UndefinedBehavior};

use crate::pipeline::model::{TValue, Tmpl};
pub use rendered::{Later, Piece, Rendered, Text};

/// A template that failed to parse or render: minijinja's message, in words.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(pub String);

impl TemplateError {
    /// The same error with what was being rendered in front (`input `dataset``).
    pub fn context(self, what: impl std::fmt::Display) -> TemplateError {
        TemplateError(format!("{what}: {}", self.0))
    }
}

impl From<minijinja::Error> for TemplateError {
    fn from(e: minijinja::Error) -> Self {
        TemplateError(describe(e))
    }
}

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
pub fn analyze(text: &str) -> Result<Analysis, TemplateError> {
    if budget::could_grow(text) {
        let owned = text.to_string();
        return budget::run(text, move || analyze_unbounded(&owned))
            .unwrap_or_else(|stopped| Err(TemplateError(stopped_message(text, stopped))));
    }
    analyze_unbounded(text)
}

fn analyze_unbounded(text: &str) -> Result<Analysis, TemplateError> {
    let env = environment();
    let mut refs: Vec<String> = match whole_expression(text) {
        Some(expr) => env
            .compile_expression(expr)?
            .undeclared_variables(true)
            .into_iter()
            .collect(),
        None => env
            .template_from_str(text)?
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
pub fn render(tmpl: &Tmpl, ctx: &Value) -> Result<serde_json::Value, TemplateError> {
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
) -> Result<serde_json::Value, TemplateError> {
    let value = if budget::could_grow(text) {
        let (owned, expr, ctx) = (
            text.to_string(),
            whole_expr.map(str::to_string),
            ctx.clone(),
        );
        budget::run(text, move || {
            render_unbounded(&owned, expr.as_deref(), &ctx)
        })
        .unwrap_or_else(|stopped| Err(TemplateError(stopped_message(text, stopped))))?
    } else {
        render_unbounded(text, whole_expr, ctx)?
    };
    match &value {
        serde_json::Value::String(s) if s.len() > MAX_RENDERED_BYTES => {
            Err(TemplateError(format!(
                "template `{}` renders to {} MiB, more than the {} MiB a template may produce",
                shorten(text),
                s.len() >> 20,
                MAX_RENDERED_BYTES >> 20
            )))
        }
        _ => Ok(value),
    }
}

/// Evaluates a template that is one `{{ expr }}` (`text`) to minijinja's own value, not
/// converted to JSON (a run's `for_each` list, read item by item); bounded as
/// [`render_text`] is.
pub fn eval_whole(text: &str, expr: &str, ctx: &Value) -> Result<Value, TemplateError> {
    fn eval(expr: &str, ctx: &Value) -> Result<Value, TemplateError> {
        let value = environment().compile_expression(expr)?.eval(ctx)?;
        if value.is_undefined() {
            return Err(TemplateError(format!("`{expr}` is undefined")));
        }
        Ok(value)
    }
    if !budget::could_grow(text) {
        return eval(expr, ctx);
    }
    let (owned, ctx) = (expr.to_string(), ctx.clone());
    budget::run(text, move || eval(&owned, &ctx))
        .unwrap_or_else(|stopped| Err(TemplateError(stopped_message(text, stopped))))
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

/// The start of a template, to name it in a message.
fn shorten(text: &str) -> String {
    let cut: String = text.chars().take(80).collect();
    if cut.len() < text.len() {
        format!("{cut}…")
    } else {
        cut
    }
}

fn stopped_message(text: &str, stopped: budget::Stopped) -> String {
    let text = shorten(text);
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
) -> Result<serde_json::Value, TemplateError> {
    let env = environment();
    match whole_expr {
        Some(expr) => {
            let value = env.compile_expression(expr)?.eval(ctx)?;
            if value.is_undefined() {
                return Err(TemplateError(format!("`{expr}` is undefined")));
            }
            Ok(to_json(&value))
        }
        None => Ok(serde_json::Value::String(env.render_str(text, ctx)?)),
    }
}

/// Renders a template value tree to JSON.
pub fn render_value(value: &TValue, ctx: &Value) -> Result<serde_json::Value, TemplateError> {
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

/// Converts a minijinja value to JSON (a run's values: no [`Unknown`] inside).
pub fn to_json(value: &Value) -> serde_json::Value {
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
/// path. [`preview`] recognises it by its type (`downcast`), never by how it renders.
#[derive(Debug)]
pub struct Unknown(pub String);

impl Unknown {
    pub fn value(path: impl Into<String>) -> Value {
        Value::from_object(Unknown(path.into()))
    }

    /// The path when `value` is an unknown value.
    pub fn path_of(value: &Value) -> Option<&str> {
        value.downcast_object_ref::<Unknown>().map(|u| u.0.as_str())
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
        write!(f, "<known after run: {}>", self.0)
    }
}

/// Jinja truthiness of a rendered value (`"false"` from a string template is false).
pub fn truthy(v: &serde_json::Value) -> bool {
    use serde_json::Value as J;
    match v {
        J::Null => false,
        J::Bool(b) => *b,
        J::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        J::String(s) => {
            let t = s.trim();
            !(t.is_empty()
                || t.eq_ignore_ascii_case("false")
                || t == "0"
                || t.eq_ignore_ascii_case("none"))
        }
        J::Array(a) => !a.is_empty(),
        J::Object(o) => !o.is_empty(),
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
            step_refs: Box::default(),
            reads: None,
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
}
