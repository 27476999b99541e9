//! `run --resume`: opening the journal of an earlier run (refusing when the pipeline file,
//! a var, the pipeline's name or the API changed, unless forced), fingerprinting a step,
//! and deciding whether a step's recorded result can stand for a run of it now.
//!
//! The rule: a step is reused when the journal says it succeeded with the same inputs
//! fingerprint, its outputs needed no masking, every step it depends on was reused in this
//! run (an output of a step that ran again is never mixed with the old run's), and what it
//! left on disk is still there (a download's file with its sha256; an upload's files
//! unchanged and the same set).
//!
//! Must not: reuse a step whose inputs or dependencies changed, or read a secret's value
//! into a fingerprint.

use super::JournalError;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::{json, Value};

use super::{Doc, Fingerprinter, Sink, StepRec, VERSION};
use crate::actions::{ActionKind, Inputs};
use crate::pipeline::model::{Step, TValue};

/// What `--resume` asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Off,
    On,
    /// Resume even though the file or vars changed: steps whose own inputs did not
    /// change may still be reused.
    Force,
}

/// A journal opened for a run.
pub struct Opened {
    /// The document the run starts writing (the earlier one, when resuming).
    pub doc: Doc,
    /// The earlier run's journal, when resuming from one.
    pub prior: Option<Arc<Doc>>,
    pub fp: Fingerprinter,
    /// What changed since the earlier run (forced resume), or why nothing is resumed.
    pub notes: Vec<String>,
}

/// What identifies a run's pipeline, to compare with a journal.
pub struct Identity<'a> {
    pub name: &'a str,
    pub file_bytes: &'a [u8],
    pub api: &'a str,
    pub vars: &'a serde_json::Map<String, Value>,
    /// (name, value) of the key and every `secrets:` entry.
    pub secrets: &'a [(String, String)],
    /// The run's masking of those secrets.
    pub redactor: &'a crate::secrets::Redactor,
}

/// Opens (or starts) the journal at `path`. `Err`: the resume is refused (exit 2).
pub fn open(path: &Path, mode: Mode, id: &Identity<'_>) -> Result<Opened, JournalError> {
    let prior = match mode {
        Mode::Off => None,
        Mode::On | Mode::Force => super::load(path)?,
    };
    let mut notes = Vec::new();
    let Some(prior) = prior else {
        if mode != Mode::Off {
            notes.push(format!(
                "no journal at {}: nothing to resume, running every step",
                path.display()
            ));
        }
        let salt = super::new_salt();
        let fp = Fingerprinter::with_redactor(salt.clone(), id.secrets, id.redactor.clone());
        return Ok(Opened {
            doc: fresh(id, &fp, hex::encode(salt)),
            prior: None,
            fp,
            notes,
        });
    };
    let salt = hex::decode(&prior.salt)
        .map_err(|_| format!("the journal {} has an invalid salt", path.display()))?;
    let fp = Fingerprinter::with_redactor(salt, id.secrets, id.redactor.clone());
    let doc = fresh(id, &fp, prior.salt.clone());
    let changed = changes(&prior, &doc);
    if !changed.is_empty() && mode == Mode::On {
        return Err(format!(
            "cannot resume from {}: changed since that run: {}. Re-run with --resume=force to reuse the steps whose own inputs did not change, or without --resume to run everything",
            path.display(),
            changed.join(", ")
        ).into());
    }
    if !changed.is_empty() {
        notes.push(format!(
            "resuming anyway (--resume=force); changed since the journal was written: {}",
            changed.join(", ")
        ));
    }
    let doc = Doc {
        steps: prior.steps.clone(),
        ..doc
    };
    Ok(Opened {
        doc,
        prior: Some(Arc::new(prior)),
        fp,
        notes,
    })
}

fn fresh(id: &Identity<'_>, fp: &Fingerprinter, salt: String) -> Doc {
    Doc {
        format: "avala-pipe run journal".into(),
        version: VERSION,
        pipeline: id.name.to_string(),
        api: id.api.to_string(),
        salt,
        file: fp.of_bytes(fp.mask(&String::from_utf8_lossy(id.file_bytes)).as_bytes()),
        vars: id
            .vars
            .iter()
            .map(|(k, v)| (k.clone(), fp.of_value(v)))
            .collect(),
        steps: BTreeMap::new(),
    }
}

/// What differs between the journal's run and this one, in words (names, never values).
fn changes(prior: &Doc, now: &Doc) -> Vec<String> {
    let mut out = Vec::new();
    if prior.pipeline != now.pipeline {
        out.push("the pipeline's name".to_string());
    }
    if prior.api != now.api {
        out.push(format!("the API base URL (was {})", prior.api));
    }
    if prior.file != now.file {
        out.push("the pipeline file".to_string());
    }
    let names: std::collections::BTreeSet<&String> =
        prior.vars.keys().chain(now.vars.keys()).collect();
    for name in names {
        match (prior.vars.get(name), now.vars.get(name)) {
            (Some(a), Some(b)) if a == b => {}
            (Some(_), Some(_)) => out.push(format!("var `{name}`")),
            (None, _) => out.push(format!("var `{name}` (new)")),
            (_, None) => out.push(format!("var `{name}` (removed)")),
        }
    }
    out
}

/// The journal as the scheduler uses it.
#[derive(Clone, Debug)]
pub struct RunJournal {
    pub fp: Fingerprinter,
    /// The run's masking: a step's outputs are masked where they are, as they are written.
    pub redactor: crate::secrets::Redactor,
    /// The earlier run's journal (`--resume`).
    pub prior: Option<Arc<Doc>>,
    pub sink: Sink,
}

impl RunJournal {
    /// The earlier run's record of a step, when its inputs were the same.
    pub fn prior_step(&self, id: &str, inputs: &str) -> Option<Arc<StepRec>> {
        let rec = self.prior.as_ref()?.steps.get(id)?;
        (rec.inputs.as_deref() == Some(inputs)).then(|| Arc::new(rec.clone()))
    }
}

/// A step's fingerprint: its definition (templates as written), then what it renders to
/// now, piece by piece (`pieces`: for a `for_each`, `[element, its rendered inputs]` per
/// element, in order, from [`each_piece`]; else the one run's rendered inputs). A list of
/// 100,000 elements is hashed as it is read, never held whole.
pub fn step_fingerprint(
    fp: &Fingerprinter,
    step: &Step,
    pieces: impl IntoIterator<Item = Value>,
) -> String {
    let def = json!({
        "action": step.action.name(),
        "with": step.with.iter().map(|(k, v)| (k.clone(), written(v))).collect::<serde_json::Map<_, _>>(),
        "if": step.condition.as_ref().map(written),
        "for_each": step.for_each.as_ref().map(written),
        "outputs": step.outputs.iter().map(|(k, v)| (k.clone(), written(v))).collect::<serde_json::Map<_, _>>(),
    });
    fp.of_pieces(std::iter::once(def).chain(pieces))
}

/// One `for_each` element's piece of its step's fingerprint.
pub fn each_piece(item: Value, inputs: Value) -> Value {
    Value::Array(vec![item, inputs])
}

/// One iteration's fingerprint.
pub fn iteration_fingerprint(fp: &Fingerprinter, item: &Value, inputs: &Value) -> String {
    fp.of_value(&json!({"item": item, "inputs": inputs}))
}

/// A value as written in the file (templates as their source), without positions.
fn written(v: &TValue) -> Value {
    match v {
        TValue::Null => Value::Null,
        TValue::Bool(b) => json!(b),
        TValue::Int(i) => json!(i),
        TValue::Float(f) => json!(f),
        TValue::Str(s) => json!(s),
        TValue::Tmpl(t) => json!({ "template": t.source }),
        TValue::List(items) => Value::Array(items.iter().map(written).collect()),
        TValue::Map(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), written(v))).collect()),
    }
}

/// Rendered inputs as JSON.
pub fn inputs_json(inputs: &Inputs) -> Value {
    Value::Object(
        inputs
            .values()
            .iter()
            .map(|(k, v)| (k.clone(), v.clone().into_shown()))
            .collect(),
    )
}

/// One iteration's rendered inputs for its step's fingerprint (`None`: they did not render).
pub fn iteration_inputs(inputs: Option<Inputs>) -> Value {
    inputs.map_or_else(|| json!({"not rendered": true}), |i| inputs_json(&i))
}

/// A `for_each` journaled without its iterations' `results` cannot stand for a run that
/// keeps them (a template reads them, or the report shows them): it runs, its iterations
/// reused one by one. The run and `dry-run --resume` decide with this one rule.
pub fn lacks_results(step: &crate::pipeline::model::Step, keeps: bool, outputs: &Value) -> bool {
    step.for_each.is_some() && keeps && outputs.get("results").is_none()
}

/// Why a recorded success cannot stand for a run now (`None`: it can).
pub async fn still_valid(
    action: ActionKind,
    inputs: Option<&Inputs>,
    outputs: &Value,
    cancel: &tokio_util::sync::CancellationToken,
) -> Option<String> {
    match action {
        ActionKind::Download => {
            let path = outputs["path"].as_str()?;
            let want = outputs["sha256"].as_str().unwrap_or_default();
            match crate::actions::upload::hash_file(Path::new(path), cancel).await {
                Ok((_, sha)) if sha == want => None,
                Ok(_) => Some(format!("{path} changed since it was downloaded")),
                Err(_) => Some(format!("{path} is gone")),
            }
        }
        ActionKind::ItemsUpload | ActionKind::DatasetsUpload => {
            let recorded: Vec<(&str, &str)> = outputs["files"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|f| Some((f["path"].as_str()?, f["sha256"].as_str()?)))
                .collect();
            if let Some(inputs) = inputs {
                let Ok(now) = crate::actions::upload::files_of(inputs) else {
                    return Some("its files cannot be listed now".into());
                };
                let now: Vec<PathBuf> = now;
                let mut now: Vec<String> = now.iter().map(|p| p.display().to_string()).collect();
                let mut then: Vec<String> = recorded.iter().map(|(p, _)| p.to_string()).collect();
                now.sort();
                then.sort();
                if now != then {
                    return Some("the files it names are not the ones uploaded".into());
                }
            }
            for (path, want) in recorded {
                match crate::actions::upload::hash_file(Path::new(path), cancel).await {
                    Ok((_, sha)) if sha == want => {}
                    _ => return Some(format!("{path} changed since it was uploaded")),
                }
            }
            None
        }
        _ => None,
    }
}
