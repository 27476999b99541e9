//! What rendering gives: JSON, except that a dry-run may hold parts only known after the
//! run. A [`Rendered`] value says so in its type ([`Later`]), so nothing downstream has
//! to recognise a placeholder by its text: the plan shows [`Rendered::shown`], a run
//! only ever sees [`Rendered::Json`].
//!
//! Must not: render templates or know about steps (it is data).

use indexmap::IndexMap;
use serde_json::Value;

/// A rendered value.
#[derive(Clone, Debug, PartialEq)]
pub enum Rendered {
    /// Fully known.
    Json(Value),
    /// Known only after the run: a whole value, or a string with unknown parts.
    Later(Later),
    /// A list some element of which is known only after the run.
    List(Vec<Rendered>),
    /// A map some value of which is known only after the run.
    Map(IndexMap<String, Rendered>),
}

/// A value, or a string, with parts known only after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Later(Vec<Piece>);

/// One part of a [`Later`] string.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Piece {
    /// Literal text, or a part already known.
    Text(String),
    /// An expression known after the run (`steps.export.outputs.id`).
    Unknown(String),
}

impl Later {
    /// A whole value known after the run: the expression that yields it.
    pub fn whole(expr: impl Into<String>) -> Later {
        Later(vec![Piece::Unknown(expr.into())])
    }

    /// A string of known text and unknown parts (adjacent text merged).
    pub fn from_pieces(pieces: Vec<Piece>) -> Later {
        let mut out: Vec<Piece> = Vec::with_capacity(pieces.len());
        for piece in pieces {
            match (out.last_mut(), piece) {
                (Some(Piece::Text(prev)), Piece::Text(t)) => prev.push_str(&t),
                (_, piece) => out.push(piece),
            }
        }
        Later(out)
    }

    pub fn pieces(&self) -> &[Piece] {
        &self.0
    }

    /// The unknown expressions, in order.
    pub fn unknowns(&self) -> impl Iterator<Item = &str> {
        self.0.iter().filter_map(|p| match p {
            Piece::Unknown(e) => Some(e.as_str()),
            Piece::Text(_) => None,
        })
    }

    /// As people read it: `out/<known after run: steps.export.outputs.id>.json`.
    pub fn shown(&self) -> String {
        self.map_text(|t| t.to_string())
    }

    /// [`Later::shown`] with each known text part passed through `f` (URL encoding: the
    /// known parts are encoded as a run would send them, the placeholders stay readable).
    pub fn map_text(&self, f: impl Fn(&str) -> String) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(&f(t)),
                Piece::Unknown(e) => {
                    out.push_str("<known after run: ");
                    out.push_str(e);
                    out.push('>');
                }
            }
        }
        out
    }
}

impl std::fmt::Display for Later {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown())
    }
}

/// A string input: known text, or text known after the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Text {
    Known(String),
    Later(Later),
}

impl Text {
    pub fn known(&self) -> Option<&str> {
        match self {
            Text::Known(s) => Some(s),
            Text::Later(_) => None,
        }
    }

    /// As people read it.
    pub fn shown(&self) -> String {
        match self {
            Text::Known(s) => s.clone(),
            Text::Later(l) => l.shown(),
        }
    }

    /// Encoded as a run would send it (`f`), placeholders left readable.
    pub fn encoded(&self, f: impl Fn(&str) -> String) -> String {
        match self {
            Text::Known(s) => f(s),
            Text::Later(l) => l.map_text(f),
        }
    }
}

impl Rendered {
    /// Builds a list, `Json` when every element is known.
    pub fn list(items: Vec<Rendered>) -> Rendered {
        if items.iter().all(|i| matches!(i, Rendered::Json(_))) {
            Rendered::Json(Value::Array(
                items.into_iter().map(Rendered::into_shown).collect(),
            ))
        } else {
            Rendered::List(items)
        }
    }

    /// Builds a map, `Json` when every value is known.
    pub fn map(entries: IndexMap<String, Rendered>) -> Rendered {
        if entries.values().all(|v| matches!(v, Rendered::Json(_))) {
            Rendered::Json(Value::Object(
                entries
                    .into_iter()
                    .map(|(k, v)| (k, v.into_shown()))
                    .collect(),
            ))
        } else {
            Rendered::Map(entries)
        }
    }

    /// The value when it is wholly known.
    pub fn known(&self) -> Option<&Value> {
        match self {
            Rendered::Json(v) => Some(v),
            _ => None,
        }
    }

    pub fn is_known(&self) -> bool {
        matches!(self, Rendered::Json(_))
    }

    /// Is it null (an input given as null counts as not given)?
    pub fn is_null(&self) -> bool {
        matches!(self, Rendered::Json(Value::Null))
    }

    /// As JSON, unknown parts shown as `<known after run: ...>` text: what the plan
    /// prints. For a known value this is the value itself.
    pub fn shown(&self) -> Value {
        self.clone().into_shown()
    }

    pub fn into_shown(self) -> Value {
        match self {
            Rendered::Json(v) => v,
            Rendered::Later(l) => Value::String(l.shown()),
            Rendered::List(items) => {
                Value::Array(items.into_iter().map(Rendered::into_shown).collect())
            }
            Rendered::Map(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (k, v.into_shown())).collect())
            }
        }
    }

    /// Every unknown expression inside, in order.
    pub fn unknowns(&self) -> Vec<String> {
        let mut out = Vec::new();
        self.collect_unknowns(&mut out);
        out
    }

    fn collect_unknowns(&self, out: &mut Vec<String>) {
        match self {
            Rendered::Json(_) => {}
            Rendered::Later(l) => out.extend(l.unknowns().map(str::to_string)),
            Rendered::List(items) => items.iter().for_each(|i| i.collect_unknowns(out)),
            Rendered::Map(map) => map.values().for_each(|v| v.collect_unknowns(out)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_parts_collapse_to_json_and_unknown_ones_show() {
        let later = Later::from_pieces(vec![
            Piece::Text("out/".into()),
            Piece::Unknown("steps.e.outputs.id".into()),
            Piece::Text(".".into()),
            Piece::Text("json".into()),
        ]);
        assert_eq!(
            later.shown(),
            "out/<known after run: steps.e.outputs.id>.json"
        );
        let list = Rendered::list(vec![
            Rendered::Json(Value::from(1)),
            Rendered::Json(Value::from(2)),
        ]);
        assert_eq!(list, Rendered::Json(serde_json::json!([1, 2])));
        let mixed = Rendered::list(vec![Rendered::Json(Value::from(1)), Rendered::Later(later)]);
        assert!(!mixed.is_known());
        assert_eq!(
            mixed.shown(),
            serde_json::json!([1, "out/<known after run: steps.e.outputs.id>.json"])
        );
        assert_eq!(mixed.unknowns(), vec!["steps.e.outputs.id".to_string()]);
    }
}
