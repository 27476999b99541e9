//! Keys and values: takes YAML nodes and a field table of `spec`; checks a mapping's keys
//! against the table and each value against its type, and gives template values
//! ([`TValue`]), queueing each template it meets for `references`.
//!
//! Must not: look inside templates (that is `references`) or name a particular key of
//! the format beyond the few whose type check is special (`version`).

use super::*;

impl Checker<'_> {
    /// A mapping of names to template values (`vars`, `outputs`), in file order; a
    /// missing or null mapping is empty (a wrong type was reported by `type_check`).
    pub(super) fn tvalue_map(
        &mut self,
        node: Option<&Node>,
        scope: Scope,
        step: Option<usize>,
    ) -> IndexMap<String, TValue> {
        let mut out = IndexMap::new();
        for (k, v) in node.and_then(Node::as_map).unwrap_or_default() {
            if let Some(key) = self.key(k) {
                let value = self.tvalue(v, scope, step);
                out.insert(key, value);
            }
        }
        out
    }

    /// Checks the keys of a mapping against a field table: unknown keys (with a
    /// suggestion), missing required keys, and each value's type. Returns the known keys.
    pub(super) fn fields<'n>(
        &mut self,
        map: &'n [(Node, Node)],
        table: &[Field],
        what: &str,
    ) -> HashMap<&'static str, &'n Node> {
        let anchor = map.first().map(|(k, _)| k.pos);
        self.fields_at(map, table, what, anchor)
    }

    /// As [`Self::fields`], reporting missing keys at `anchor`.
    pub(super) fn fields_at<'n>(
        &mut self,
        map: &'n [(Node, Node)],
        table: &[Field],
        what: &str,
        anchor: Option<Pos>,
    ) -> HashMap<&'static str, &'n Node> {
        let mut found = HashMap::new();
        for (k, v) in map {
            let Some(key) = self.key(k) else { continue };
            match spec::field(table, &key) {
                Some(field) => {
                    self.type_check(v, field.ty, field.name);
                    found.insert(field.name, v);
                }
                None => {
                    let suggestion = did_you_mean(&key, table.iter().map(|f| f.name));
                    let known: Vec<&str> = table.iter().map(|f| f.name).collect();
                    let d = self
                        .error(k.pos, format!("unknown key `{key}` in {what}"))
                        .suggest(suggestion);
                    if suggestion.is_none() {
                        d.help = Some(format!("known keys: {}", known.join(", ")));
                    }
                }
            }
        }
        let pos = anchor;
        for field in table.iter().filter(|f| f.required) {
            if !found.contains_key(field.name) {
                if let Some(pos) = pos {
                    self.error(
                        pos,
                        format!("missing required key `{}` in {what}", field.name),
                    )
                    .help(field.doc.to_string());
                }
            }
        }
        found
    }

    /// Type checks a literal value; templates are checked when rendered.
    pub(super) fn type_check(&mut self, node: &Node, ty: Ty, name: &str) {
        if is_template(node) {
            if matches!(ty, Ty::Object(_) | Ty::Steps) {
                self.error(
                    node.pos,
                    format!("`{name}` must be written out, not a template"),
                );
            }
            return;
        }
        let ok = match (ty, &node.kind) {
            (Ty::Any, _) => true,
            (Ty::Str, NodeKind::Str(_) | NodeKind::Int(_) | NodeKind::Float(_)) => true,
            (Ty::Bool, NodeKind::Bool(_)) => true,
            (Ty::Int { min, max }, NodeKind::Int(i)) => {
                if (*i < min || *i > max) && name != "version" {
                    self.error(
                        node.pos,
                        format!("`{name}` must be between {min} and {max}, found {i}"),
                    );
                }
                true
            }
            (Ty::Int { .. }, NodeKind::Str(_)) if name == "version" => true,
            (Ty::Duration, NodeKind::Int(_) | NodeKind::Float(_) | NodeKind::Str(_)) => {
                self.duration(node);
                true
            }
            (Ty::StrList, NodeKind::Seq(_)) | (Ty::StrOrList, NodeKind::Seq(_)) => {
                self.str_list(node);
                true
            }
            (Ty::StrOrList, NodeKind::Str(_)) => true,
            (Ty::IntOrList, NodeKind::Int(_)) => true,
            (Ty::IntOrList, NodeKind::Seq(items)) => {
                self.integers(items, name);
                true
            }
            (Ty::Map(inner), NodeKind::Map(entries)) => {
                for (k, v) in entries {
                    if let Some(key) = self.key(k) {
                        self.type_check(v, *inner, &key);
                    }
                }
                true
            }
            (Ty::Map(_), NodeKind::Null) => true,
            (Ty::Enum(options), NodeKind::Str(s)) => {
                self.one_of(node.pos, s, options, name);
                true
            }
            (Ty::Object(fields), NodeKind::Map(entries)) => {
                self.fields(entries, fields, &format!("`{name}`"));
                true
            }
            (Ty::Condition, NodeKind::Bool(_)) => true,
            (Ty::Condition, NodeKind::Str(_)) => {
                self.error(node.pos, format!("`{name}` must be a template such as \"{{{{ steps.x.outputs.count > 0 }}}}\" or true/false"));
                true
            }
            (Ty::List, NodeKind::Seq(_)) => true,
            (Ty::Steps, _) => true,
            _ => false,
        };
        if !ok {
            self.error(
                node.pos,
                format!(
                    "`{name}` must be {}, found {}",
                    expected(ty),
                    describe_node(node)
                ),
            );
        }
    }

    /// Each item of a list of statuses is an integer (or a template).
    fn integers(&mut self, items: &[Node], name: &str) {
        for item in items {
            if !matches!(item.kind, NodeKind::Int(_)) && !is_template(item) {
                self.error(
                    item.pos,
                    format!("`{name}` must list integers, found {}", item.type_name()),
                );
            }
        }
    }

    /// `value` is one of `options`, else an error suggesting the closest (or the same
    /// in another case).
    fn one_of(&mut self, pos: Pos, value: &str, options: &[&str], name: &str) {
        if options.contains(&value) {
            return;
        }
        let suggestion = did_you_mean(value, options.iter().copied()).or_else(|| {
            options
                .iter()
                .copied()
                .find(|o| o.eq_ignore_ascii_case(value))
        });
        self.error(
            pos,
            format!(
                "`{name}` must be one of {}, found `{value}`",
                options.join(", ")
            ),
        )
        .suggest(suggestion);
    }

    /// Converts a node to a template value, parsing the templates inside.
    pub(super) fn tvalue(&mut self, node: &Node, scope: Scope, step: Option<usize>) -> TValue {
        match &node.kind {
            NodeKind::Null => TValue::Null,
            NodeKind::Bool(b) => TValue::Bool(*b),
            NodeKind::Int(i) => TValue::Int(*i),
            NodeKind::Float(f) => TValue::Float(*f),
            NodeKind::Str(s) if template::has_syntax(s) => match template::analyze(s) {
                Ok(analysis) => {
                    let reads = Reads::of(&analysis.references);
                    self.pending.push(PendingTemplate {
                        step,
                        scope,
                        pos: node.pos,
                        source: s.clone(),
                        references: analysis.references,
                    });
                    TValue::Tmpl(Tmpl {
                        source: s.clone(),
                        pos: node.pos,
                        whole_expr: template::whole_expression(s).map(str::to_string),
                        step_refs: Box::default(),
                        reads: Some(reads),
                    })
                }
                Err(msg) => {
                    self.error(node.pos, format!("template does not parse: {msg}"));
                    TValue::Str(s.clone())
                }
            },
            NodeKind::Str(s) => TValue::Str(s.clone()),
            NodeKind::Seq(items) => {
                TValue::List(items.iter().map(|i| self.tvalue(i, scope, step)).collect())
            }
            NodeKind::Map(entries) => {
                let mut map = IndexMap::new();
                for (k, v) in entries {
                    if let Some(key) = self.key(k) {
                        map.insert(key, self.tvalue(v, scope, step));
                    }
                }
                TValue::Map(map)
            }
        }
    }

    pub(super) fn key(&mut self, node: &Node) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            NodeKind::Int(i) => Some(i.to_string()),
            NodeKind::Bool(b) => Some(b.to_string()),
            _ => {
                self.error(
                    node.pos,
                    format!("keys must be strings, found {}", node.type_name()),
                );
                None
            }
        }
    }

    pub(super) fn string(&mut self, node: &Node) -> Option<String> {
        match &node.kind {
            NodeKind::Str(s) => Some(s.clone()),
            NodeKind::Int(i) => Some(i.to_string()),
            NodeKind::Float(f) => Some(f.to_string()),
            _ => None,
        }
    }

    pub(super) fn boolean(&mut self, node: &Node) -> Option<bool> {
        match node.kind {
            NodeKind::Bool(b) => Some(b),
            _ => None,
        }
    }

    pub(super) fn int(&mut self, node: &Node, min: i64, max: i64) -> Option<i64> {
        match node.kind {
            NodeKind::Int(i) if i >= min && i <= max => Some(i),
            _ => None,
        }
    }

    pub(super) fn duration(&mut self, node: &Node) -> Option<Duration> {
        let text = match &node.kind {
            NodeKind::Str(s) if template::has_syntax(s) => return None,
            NodeKind::Str(s) => s.clone(),
            NodeKind::Int(i) => i.to_string(),
            NodeKind::Float(f) => f.to_string(),
            _ => return None,
        };
        let parsed = parse_duration(&text);
        if parsed.is_none() && !self.diags.iter().any(|d| d.pos == node.pos) {
            self.error(node.pos, format!("`{text}` is not a duration"))
                .help("write durations as 500ms, 2s, 10m, 1h or a number of seconds");
        }
        parsed
    }

    pub(super) fn str_list(&mut self, node: &Node) -> Vec<String> {
        match &node.kind {
            NodeKind::Str(s) => vec![s.clone()],
            NodeKind::Seq(items) => items
                .iter()
                .filter_map(|i| match &i.kind {
                    NodeKind::Str(s) => Some(s.clone()),
                    NodeKind::Int(n) => Some(n.to_string()),
                    _ => {
                        if !self.diags.iter().any(|d| d.pos == i.pos) {
                            self.error(
                                i.pos,
                                format!("expected a string, found {}", i.type_name()),
                            );
                        }
                        None
                    }
                })
                .collect(),
            _ => vec![],
        }
    }
}

/// In a JSON body, a plain `0.50` or `1e3` is the number it looks like (elsewhere such
/// scalars keep their text, so `version: 3.10` stays "3.10").
pub(super) fn numbers_back(value: &mut TValue, node: &Node) {
    match (value, &node.kind) {
        (v @ TValue::Str(_), _) if node.number.is_some() => {
            *v = TValue::Float(node.number.unwrap_or_default());
        }
        (TValue::List(items), NodeKind::Seq(nodes)) => {
            for (item, n) in items.iter_mut().zip(nodes) {
                numbers_back(item, n);
            }
        }
        (TValue::Map(map), NodeKind::Map(entries)) => {
            for (k, n) in entries {
                if let Some(item) = k.as_str().and_then(|k| map.get_mut(k)) {
                    numbers_back(item, n);
                }
            }
        }
        _ => {}
    }
}

/// What a value of type `ty` looks like, for "must be ..." messages.
fn expected(ty: Ty) -> &'static str {
    match ty {
        Ty::Str => "a string",
        Ty::Bool => "true or false",
        Ty::Int { .. } => "an integer",
        Ty::Duration => "a duration such as 500ms, 2s, 10m, 1h",
        Ty::StrList => "a list of strings",
        Ty::StrOrList => "a string or a list of strings",
        Ty::IntOrList => "an integer or a list of integers",
        Ty::Map(_) => "a mapping",
        Ty::Any | Ty::Steps => "a value",
        Ty::Enum(_) => "a string",
        Ty::Object(_) => "a mapping",
        Ty::Condition => "a template or true/false",
        Ty::List => "a list or a template that yields one",
    }
}

/// The known keys of a mapping that `fields` has already checked.
pub(super) fn lookup<'n>(
    map: &'n [(Node, Node)],
    table: &[Field],
) -> HashMap<&'static str, &'n Node> {
    map.iter()
        .filter_map(|(k, v)| Some((spec::field(table, k.as_str()?)?.name, v)))
        .collect()
}

pub(super) fn find<'n>(map: &'n [(Node, Node)], key: &str) -> Option<&'n Node> {
    map.iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

pub(super) fn is_template(node: &Node) -> bool {
    node.as_str().is_some_and(template::has_syntax)
}

pub(super) fn scalar_text(node: &Node) -> String {
    match &node.kind {
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Float(f) => f.to_string(),
        NodeKind::Str(s) => format!("\"{s}\""),
        NodeKind::Bool(b) => b.to_string(),
        _ => node.type_name().to_string(),
    }
}

pub(super) fn describe_node(node: &Node) -> String {
    match &node.kind {
        NodeKind::Str(s) => format!("\"{}\"", s.chars().take(40).collect::<String>()),
        NodeKind::Int(i) => i.to_string(),
        NodeKind::Bool(b) => b.to_string(),
        _ => node.type_name().to_string(),
    }
}
