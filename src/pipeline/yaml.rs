//! The only door to YAML: parses text into a [`Node`] tree where every node knows its
//! line and column. Everything YAML-specific (serde-saphyr, its budgets, its options)
//! stays in this file so the parser can be swapped without touching validation.
//!
//! Scalars follow YAML 1.2 core: only `true`/`false` are booleans (`NO` stays a string),
//! a number with leading zeros stays a string (`012`), and every non-string scalar keeps
//! the text it was written as, so a string-typed field can recover `3.10` exactly.
//!
//! Must not: interpret the pipeline format (that is `pipeline::check`).

use std::fmt;

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::Spanned;

/// Largest pipeline file we accept, checked before parsing.
pub const MAX_FILE_BYTES: usize = 16 * 1024 * 1024;
/// Deepest nesting of collections we accept (a pipeline needs fewer than 10).
pub const MAX_DEPTH: usize = 48;

/// A position in the source: 1-based line and column.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

impl fmt::Display for Pos {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.line, self.col)
    }
}

/// One YAML node with its position.
#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub pos: Pos,
    pub kind: NodeKind,
    /// For a string that was written as a plain number which does not survive a round
    /// trip (`3.10`, `0.50`, `1e3`): that number, for places that want numbers (JSON bodies).
    pub number: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum NodeKind {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    /// A string scalar.
    Str(String),
    /// A non-string scalar (null, bool, number): its value and the text it was written as.
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

impl Node {
    /// What the node is, for "expected X, found Y" messages.
    pub fn type_name(&self) -> &'static str {
        match self.kind {
            NodeKind::Null => "null",
            NodeKind::Bool(_) => "a boolean",
            NodeKind::Int(_) => "an integer",
            NodeKind::Float(_) => "a number",
            NodeKind::Str(_) => "a string",
            NodeKind::Seq(_) => "a list",
            NodeKind::Map(_) => "a mapping",
        }
    }

    pub fn as_str(&self) -> Option<&str> {
        match &self.kind {
            NodeKind::Str(s) => Some(s),
            _ => None,
        }
    }

    pub fn as_map(&self) -> Option<&[(Node, Node)]> {
        match &self.kind {
            NodeKind::Map(m) => Some(m),
            _ => None,
        }
    }
}

/// A parse failure: where and what.
#[derive(Debug, Clone)]
pub struct YamlError {
    pub pos: Pos,
    pub message: String,
}

/// Parses one YAML document. Duplicate keys, alias bombs and deep nesting are errors.
pub fn parse(source: &str) -> Result<Node, YamlError> {
    if source.len() > MAX_FILE_BYTES {
        return Err(YamlError {
            pos: Pos { line: 1, col: 1 },
            message: format!(
                "file is {} bytes; pipeline files are limited to {} MiB",
                source.len(),
                MAX_FILE_BYTES / (1024 * 1024)
            ),
        });
    }
    let options = options();
    FLOATS.with_borrow_mut(Vec::clear);
    let raw: Spanned<RawNode> =
        serde_saphyr::from_str_with_options(source, options).map_err(convert_error)?;
    let mut root = settle(raw);
    let floats = FLOATS.with_borrow_mut(std::mem::take);
    if !floats.is_empty() {
        keep_float_text(source, &mut root, &mut floats.into_iter());
    }
    Ok(root)
}

fn options() -> serde_saphyr::Options {
    let mut options = serde_saphyr::Options::default();
    options.strict_booleans = true;
    options.leading_zero_numbers_as_strings = true;
    options.underscored_numbers_as_strings = true;
    options.legacy_octal_numbers = false;
    options.duplicate_keys = serde_saphyr::DuplicateKeyPolicy::Error;
    options.with_snippet = false;
    let mut budget = serde_saphyr::Budget::default();
    budget.max_depth = MAX_DEPTH;
    budget.max_nodes = 2_000_000;
    budget.max_events = 4_000_000;
    budget.max_aliases = 10_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES;
    budget.max_recorded_anchor_events = 100_000;
    options.budget = Some(budget);
    options.alias_limits.max_total_replayed_events = 100_000;
    options
}

fn convert_error(err: serde_saphyr::Error) -> YamlError {
    let pos = err
        .location()
        .map(|l| Pos {
            line: l.line().max(1) as u32,
            col: l.column().max(1) as u32,
        })
        .unwrap_or(Pos { line: 1, col: 1 });
    let mut message = err.to_string();
    // serde-saphyr appends the position; we render positions ourselves.
    if let Some(cut) = message.find(" at line ") {
        message.truncate(cut);
    }
    let message = friendly(message.trim().trim_end_matches('.'));
    YamlError { pos, message }
}

/// Reads one command-line value (`--var K=VALUE`) as a YAML scalar, with the same
/// YAML 1.2 rules as the file (`NO` and `3.10` stay strings). Anything that is not a
/// plain scalar is kept as the text given.
pub fn parse_scalar(text: &str) -> crate::pipeline::model::TValue {
    use crate::pipeline::model::TValue;
    match parse(text).map(|n| n.kind) {
        Ok(NodeKind::Null) if text.trim().is_empty() => TValue::Str(String::new()),
        Ok(NodeKind::Null) => TValue::Null,
        Ok(NodeKind::Bool(b)) => TValue::Bool(b),
        Ok(NodeKind::Int(i)) => TValue::Int(i),
        Ok(NodeKind::Float(f)) => TValue::Float(f),
        Ok(NodeKind::Str(s)) => TValue::Str(s),
        _ => TValue::Str(text.to_string()),
    }
}

/// Why a `--vars-file` cannot be read as vars.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VarsFileError {
    #[error("{pos}: {message}")]
    Yaml { pos: Pos, message: String },
    #[error("a vars file must be a mapping of var names to values")]
    NotAMapping,
    #[error("{pos}: var names must be strings")]
    NameNotAString { pos: Pos },
}

/// Reads a `--vars-file`: a mapping of names to values (any YAML, no templates).
pub fn parse_map_of_scalars(
    text: &str,
) -> Result<Vec<(String, crate::pipeline::model::TValue)>, VarsFileError> {
    let node = parse(text).map_err(|e| VarsFileError::Yaml {
        pos: e.pos,
        message: e.message,
    })?;
    let NodeKind::Map(entries) = node.kind else {
        return Err(VarsFileError::NotAMapping);
    };
    entries
        .into_iter()
        .map(|(k, v)| match k.kind {
            NodeKind::Str(name) => Ok((name, literal(v))),
            _ => Err(VarsFileError::NameNotAString { pos: k.pos }),
        })
        .collect()
}

fn literal(node: Node) -> crate::pipeline::model::TValue {
    use crate::pipeline::model::TValue;
    match node.kind {
        NodeKind::Null => TValue::Null,
        NodeKind::Bool(b) => TValue::Bool(b),
        NodeKind::Int(i) => TValue::Int(i),
        NodeKind::Float(f) => TValue::Float(f),
        NodeKind::Str(s) => TValue::Str(s),
        NodeKind::Seq(items) => TValue::List(items.into_iter().map(literal).collect()),
        NodeKind::Map(entries) => TValue::Map(
            entries
                .into_iter()
                .filter_map(|(k, v)| Some((k.as_str()?.to_string(), literal(v))))
                .collect(),
        ),
    }
}

/// Rewrites the parser's messages that name its internals.
fn friendly(message: &str) -> String {
    if let Some(rest) = message.strip_prefix("duplicate mapping key: ") {
        let key = rest.split(", set ").next().unwrap_or(rest);
        return format!("duplicate key `{key}`: each key may appear once in a mapping");
    }
    if let Some(breach) = message.split("budget breached:").nth(1) {
        return budget_breach(breach);
    }
    message.to_string()
}

/// A loading limit the document went over, in words (the parser says it as its own type's
/// name and fields).
fn budget_breach(breach: &str) -> String {
    let kind = breach
        .trim_start()
        .split(|c: char| !c.is_ascii_alphanumeric())
        .next()
        .unwrap_or("");
    let why = "limits keep loading a pipeline file fast and safe";
    match kind {
        "Depth" => format!("nesting deeper than {MAX_DEPTH} levels"),
        "Aliases" | "Anchors" | "AliasAnchorRatio" | "RecordedAnchorEvents"
        | "RecordedAnchorBytes" | "MergeKeys" => "aliases expand to too much data (an alias bomb?): anchors and aliases are limited to keep loading fast and safe".to_string(),
        "ScalarBytes" | "InputBytes" => format!(
            "the text of the document's values adds up to more than {} MiB, counting each alias expansion; {why}",
            MAX_FILE_BYTES >> 20
        ),
        "Nodes" | "Events" => format!(
            "the document has too many values (over 2 million, counting each alias expansion); {why}"
        ),
        "Documents" => "a pipeline file holds one YAML document".to_string(),
        "SequenceUnbalanced" => "the document's structure is unbalanced (cut short?)".to_string(),
        _ => format!("the document is too large or too complex to load safely; {why}"),
    }
}

/// What serde-saphyr hands over for one value: its children are [`Node`]s already, each
/// made as soon as it was read ([`settle`]). Building the whole tree of serde-saphyr's
/// `Spanned` values first (two locations of 48 bytes on every value) and lowering it
/// afterwards held ~6 KB per step of a pipeline at once: the largest part of a 50,000-step
/// file's memory.
enum RawNode {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    Seq(Vec<Node>),
    Map(Vec<(Node, Node)>),
}

thread_local! {
    /// The byte spans of the floats read so far in the document being parsed, in document
    /// order: a float that does not survive a round trip keeps its written text (see
    /// [`keep_float_text`]), and serde gives a value no way to the source text.
    static FLOATS: std::cell::RefCell<Vec<Option<(usize, usize)>>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// One value read, with its position; a float's span is noted in [`FLOATS`].
fn settle(raw: Spanned<RawNode>) -> Node {
    let loc = raw.referenced;
    let pos = Pos {
        line: loc.line().max(1) as u32,
        col: loc.column().max(1) as u32,
    };
    let kind = match raw.value {
        RawNode::Null => NodeKind::Null,
        RawNode::Bool(b) => NodeKind::Bool(b),
        RawNode::Int(i) => NodeKind::Int(i),
        RawNode::Float(f) => {
            let span = loc.span();
            let written = span
                .byte_offset()
                .zip(span.byte_len())
                .map(|(start, len)| (start as usize, len as usize));
            FLOATS.with_borrow_mut(|floats| floats.push(written));
            NodeKind::Float(f)
        }
        RawNode::Str(s) => NodeKind::Str(s),
        RawNode::Seq(items) => NodeKind::Seq(items),
        RawNode::Map(entries) => NodeKind::Map(entries),
    };
    Node {
        pos,
        kind,
        number: None,
    }
}

/// Walks the tree in document order, as the floats were read: a float that would not
/// survive a round trip (`3.10`, `1e3`) becomes the string it was written as, with its
/// number kept for places that want numbers.
fn keep_float_text(
    source: &str,
    node: &mut Node,
    spans: &mut impl Iterator<Item = Option<(usize, usize)>>,
) {
    match &mut node.kind {
        NodeKind::Float(f) => {
            let f = *f;
            let written = spans
                .next()
                .flatten()
                .and_then(|(start, len)| source.get(start..start.checked_add(len)?))
                .map(str::trim);
            if let Some(text) = written {
                if text.parse::<f64>().ok() == Some(f) && format_float(f) != text {
                    node.number = Some(f);
                    node.kind = NodeKind::Str(text.to_string());
                }
            }
        }
        NodeKind::Seq(items) => items
            .iter_mut()
            .for_each(|item| keep_float_text(source, item, spans)),
        NodeKind::Map(entries) => {
            for (k, v) in entries {
                keep_float_text(source, k, spans);
                keep_float_text(source, v, spans);
            }
        }
        _ => {}
    }
}

fn format_float(f: f64) -> String {
    let s = f.to_string();
    if s.contains('.') || s.contains('e') || s.contains("inf") || s.contains("NaN") {
        s
    } else {
        format!("{s}.0")
    }
}

impl<'de> Deserialize<'de> for RawNode {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(RawVisitor)
    }
}

struct RawVisitor;

impl<'de> Visitor<'de> for RawVisitor {
    type Value = RawNode;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any YAML value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<RawNode, E> {
        Ok(RawNode::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<RawNode, E> {
        Ok(RawNode::Int(v))
    }
    fn visit_u64<E: de::Error>(self, v: u64) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_i128<E: de::Error>(self, v: i128) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_u128<E: de::Error>(self, v: u128) -> Result<RawNode, E> {
        i64::try_from(v)
            .map(RawNode::Int)
            .map_err(|_| E::custom("integer too large"))
    }
    fn visit_f64<E>(self, v: f64) -> Result<RawNode, E> {
        Ok(RawNode::Float(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<RawNode, E> {
        Ok(RawNode::Str(v.to_string()))
    }
    fn visit_string<E>(self, v: String) -> Result<RawNode, E> {
        Ok(RawNode::Str(v))
    }
    fn visit_bytes<E: de::Error>(self, v: &[u8]) -> Result<RawNode, E> {
        String::from_utf8(v.to_vec())
            .map(RawNode::Str)
            .map_err(|_| E::custom("binary values are not supported"))
    }
    fn visit_unit<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_none<E>(self) -> Result<RawNode, E> {
        Ok(RawNode::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<RawNode, D::Error> {
        RawNode::deserialize(d)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawNode, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element::<Spanned<RawNode>>()? {
            items.push(settle(item));
        }
        items.shrink_to_fit();
        Ok(RawNode::Seq(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawNode, A::Error> {
        let mut entries = Vec::new();
        while let Some(key) = map.next_key::<Spanned<RawNode>>()? {
            let key = settle(key);
            let value = settle(map.next_value::<Spanned<RawNode>>()?);
            entries.push((key, value));
        }
        entries.shrink_to_fit();
        Ok(RawNode::Map(entries))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar(src: &str) -> NodeKind {
        let node = parse(&format!("v: {src}\n")).unwrap();
        node.as_map().unwrap()[0].1.kind.clone()
    }

    #[test]
    fn yaml_1_2_scalars_keep_their_text() {
        assert_eq!(scalar("NO"), NodeKind::Str("NO".into()));
        assert_eq!(scalar("yes"), NodeKind::Str("yes".into()));
        assert_eq!(scalar("3.10"), NodeKind::Str("3.10".into()));
        assert_eq!(scalar("012"), NodeKind::Str("012".into()));
        assert_eq!(scalar("1_000"), NodeKind::Str("1_000".into()));
        assert_eq!(scalar("3.5"), NodeKind::Float(3.5));
        assert_eq!(scalar("12"), NodeKind::Int(12));
        assert_eq!(scalar("true"), NodeKind::Bool(true));
        assert_eq!(scalar("~"), NodeKind::Null);
        assert_eq!(scalar("'3.10'"), NodeKind::Str("3.10".into()));
    }

    /// Floats are read before the tree is whole and matched to their written text after:
    /// nested, as keys, next to floats that round-trip, and through an alias.
    #[test]
    fn floats_keep_their_text_wherever_they_are() {
        let node =
            parse("a: [3.5, 3.10, {k: 2.50, 1.5: 0.10}]\nb: &x [1e3, 2.25]\nc: *x\nd: 0.50\n")
                .unwrap();
        let map = node.as_map().unwrap();
        let seq = |n: &Node| match &n.kind {
            NodeKind::Seq(items) => items.iter().map(|i| i.kind.clone()).collect::<Vec<_>>(),
            _ => panic!("{n:?}"),
        };
        let a = seq(&map[0].1);
        assert_eq!(a[..2], [NodeKind::Float(3.5), NodeKind::Str("3.10".into())]);
        let NodeKind::Map(inner) = &a[2] else {
            panic!("{a:?}")
        };
        let inner: Vec<_> = inner.iter().map(|(k, v)| (&k.kind, &v.kind)).collect();
        assert_eq!(
            inner,
            [
                (&NodeKind::Str("k".into()), &NodeKind::Str("2.50".into())),
                (&NodeKind::Float(1.5), &NodeKind::Str("0.10".into())),
            ]
        );
        assert_eq!(
            seq(&map[1].1),
            [NodeKind::Str("1e3".into()), NodeKind::Float(2.25)]
        );
        // A value read through an alias has no span of its own (serde-saphyr replays the
        // anchor's events): its floats are numbers, and the floats after it keep theirs.
        assert_eq!(
            seq(&map[2].1),
            [NodeKind::Float(1e3), NodeKind::Float(2.25)]
        );
        assert_eq!(map[3].1.kind, NodeKind::Str("0.50".into()));
        let NodeKind::Seq(b) = &map[1].1.kind else {
            panic!()
        };
        assert_eq!(b[0].number, Some(1000.0));
    }

    #[test]
    fn positions_are_one_based() {
        let node = parse("a: 1\nbb:\n  - x\n").unwrap();
        let map = node.as_map().unwrap();
        assert_eq!(map[1].0.pos, Pos { line: 2, col: 1 });
        let NodeKind::Seq(items) = &map[1].1.kind else {
            panic!()
        };
        assert_eq!(items[0].pos, Pos { line: 3, col: 5 });
    }

    #[test]
    fn duplicate_keys_are_rejected() {
        let err = parse("a: 1\na: 2\n").unwrap_err();
        assert_eq!(err.pos.line, 2, "{err:?}");
        assert!(err.message.contains("duplicate"), "{err:?}");
    }

    #[test]
    fn alias_bomb_is_rejected_quickly() {
        let mut src = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..30 {
            let p = i - 1;
            src.push_str(&format!(
                "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
            ));
        }
        let started = std::time::Instant::now();
        assert!(parse(&src).is_err());
        assert!(started.elapsed().as_secs() < 5);
    }
}
