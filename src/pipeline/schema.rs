//! The JSON Schema of the pipeline file, generated from the format table in `spec`, so
//! editors (yaml-language-server) complete and check keys. `schemas/pipeline.schema.json`
//! is the committed copy; a test fails when it differs from this output.
//!
//! Must not: be used for validation (that is `check`, which gives better messages).

use serde_json::{json, Map, Value};

use super::spec::{self, Field, Ty};

/// A string that holds template syntax: accepted wherever another type is expected.
fn template() -> Value {
    json!({"type": "string", "pattern": "\\{\\{|\\{%", "description": "A template, rendered at run time."})
}

fn ty(t: Ty) -> Value {
    let or_template = |v: Value| json!({"anyOf": [v, template()]});
    match t {
        Ty::Str => json!({"type": ["string", "number"]}),
        Ty::Bool => or_template(json!({"type": "boolean"})),
        Ty::Int { min, max } => {
            or_template(json!({"type": "integer", "minimum": min, "maximum": max}))
        }
        Ty::Duration => json!({
            "anyOf": [
                {"type": "string", "pattern": "^\\s*[0-9]+(\\.[0-9]+)?\\s*(ms|s|m|h)?\\s*$"},
                {"type": "number", "minimum": 0},
                template()
            ],
            "examples": ["500ms", "2s", "10m", "1h"]
        }),
        Ty::StrList => {
            or_template(json!({"type": "array", "items": {"type": ["string", "number"]}}))
        }
        Ty::StrOrList => json!({"anyOf": [
            {"type": "string"},
            {"type": "array", "items": {"type": "string"}}
        ]}),
        Ty::IntOrList => or_template(json!({"anyOf": [
            {"type": "integer"},
            {"type": "array", "items": {"type": "integer"}}
        ]})),
        Ty::Map(inner) => json!({"type": ["object", "null"], "additionalProperties": ty(*inner)}),
        Ty::Any => json!({}),
        Ty::Enum(options) => or_template(json!({"enum": options})),
        Ty::Object(fields) => object(fields),
        Ty::Condition => json!({"anyOf": [{"type": "boolean"}, template()]}),
        Ty::List => json!({"anyOf": [{"type": "array"}, template()]}),
        Ty::Steps => json!({"type": "array", "minItems": 1, "items": {"$ref": "#/$defs/step"}}),
    }
}

fn field(f: &Field) -> Value {
    let mut v = ty(f.ty);
    if let Some(obj) = v.as_object_mut() {
        let mut doc = f.doc.to_string();
        if let Some(d) = f.default {
            doc.push_str(&format!(" Default: {d}."));
        }
        obj.insert("description".into(), Value::String(doc));
    }
    v
}

fn object(fields: &[Field]) -> Value {
    let mut props = Map::new();
    for f in fields {
        props.insert(f.name.into(), field(f));
    }
    let required: Vec<&str> = fields
        .iter()
        .filter(|f| f.required)
        .map(|f| f.name)
        .collect();
    json!({
        "type": "object",
        "properties": props,
        "required": required,
        "additionalProperties": false,
    })
}

/// The whole schema document.
pub fn schema() -> Value {
    let mut top = object(spec::TOP);
    let mut step = object(spec::STEP);
    step["properties"]["action"] = json!({
        "enum": spec::ACTIONS.iter().map(|a| a.name).collect::<Vec<_>>(),
        "description": "What the step does.",
    });
    step["allOf"] = Value::Array(
        spec::ACTIONS
            .iter()
            .map(|a| {
                let mut with = object(a.inputs);
                with["description"] = Value::String(format!("Inputs of {}: {}", a.name, a.summary));
                if !a.one_of.is_empty() {
                    with["anyOf"] =
                        Value::Array(a.one_of.iter().map(|n| json!({"required": [n]})).collect());
                }
                json!({
                    "if": {"properties": {"action": {"const": a.name}}, "required": ["action"]},
                    "then": {"properties": {"with": with}},
                })
            })
            .collect(),
    );
    let obj = top.as_object_mut().expect("object");
    obj.insert(
        "$schema".into(),
        json!("https://json-schema.org/draft/2020-12/schema"),
    );
    obj.insert(
        "$id".into(),
        json!("https://avala.ai/schemas/avala-pipe/pipeline.schema.json"),
    );
    obj.insert("title".into(), json!("avala-pipe pipeline"));
    obj.insert(
        "description".into(),
        json!("A declarative pipeline of steps against the Avala REST API, run by avala-pipe."),
    );
    obj.insert("$defs".into(), json!({ "step": step }));
    top
}

/// The schema as committed: pretty JSON with a trailing newline.
pub fn schema_text() -> String {
    let mut text = serde_json::to_string_pretty(&schema()).expect("schema serializes");
    text.push('\n');
    text
}
