//! `run --dry-run --resume`: per step, whether a resume would reuse it and why, and for
//! an upload that was cut short which files it would skip. Built by the same rule as the
//! run ([`super::resume`]): steps are evaluated in [`Mode::Run`] with the journal's outputs
//! as the `steps.*` entries of the steps that would be reused.
//!
//! Takes: what the CLI resolved for the run. Gives: the decision per step, as JSON and text.
//! Must not: send anything or write the journal.

use super::JournalError;
use std::path::PathBuf;
use std::sync::Arc;

use minijinja::value::Value as MjValue;
use serde_json::{json, Value};

use super::resume::{self, Identity, Mode, Opened};
use crate::graph::Graph;
use crate::pipeline::model::Pipeline;
use crate::report::Redactor;
use crate::step::{self, step_entry, Eval, Globals, Iterations, StepEntries};

/// What the journal needs of a run (the CLI builds it).
pub struct JournalInputs {
    pub p: Arc<Pipeline>,
    pub graph: Arc<Graph>,
    pub globals: Globals,
    pub api: String,
    /// (name, value) of the key and every `secrets:` entry.
    pub secrets: Vec<(String, String)>,
    pub redactor: Redactor,
    pub path: PathBuf,
    pub mode: Mode,
}

impl JournalInputs {
    /// Opens the journal as the run would (`Err`: the resume is refused).
    pub fn open(&self) -> Result<Opened, JournalError> {
        let bytes = std::fs::read(&self.p.path).unwrap_or_default();
        let vars = match serde_json::to_value(&self.globals.vars) {
            Ok(Value::Object(m)) => m,
            _ => serde_json::Map::new(),
        };
        resume::open(
            &self.path,
            self.mode,
            &Identity {
                name: &self.p.name,
                file_bytes: &bytes,
                api: &self.api,
                vars: &vars,
                secrets: &self.secrets,
                redactor: &self.redactor,
            },
        )
    }
}

/// Each step's decision: `{"step", "reuse": bool, "why", "files_skipped"?, "files_sent"?}`.
pub async fn decide(inputs: &JournalInputs) -> Result<(Vec<String>, Vec<Value>), JournalError> {
    let opened = inputs.open()?;
    let p = &inputs.p;
    let n = p.steps.len();
    let Some(prior) = opened.prior.clone() else {
        let all = p
            .steps
            .iter()
            .map(|s| json!({"step": s.id, "reuse": false, "why": "no journal to resume from"}))
            .collect();
        return Ok((opened.notes, all));
    };
    let entries = Arc::new(StepEntries::default());
    let steps_value = MjValue::from_dyn_object(entries.clone());
    let cancel = tokio_util::sync::CancellationToken::new();
    let mut reused = vec![false; n];
    let mut out: Vec<Option<Value>> = vec![None; n];
    for &i in &inputs.graph.order {
        let s = &p.steps[i];
        let blocked_by = inputs.graph.deps[i]
            .iter()
            .find(|&&d| !reused[d])
            .map(|&d| p.steps[d].id.as_str());
        let base = inputs.globals.context(&steps_value, &[]);
        let rec = prior.steps.get(&s.id);
        let (decision, outputs) = decide_step(s, rec, blocked_by, &opened, &base, &cancel).await;
        if let Some(outputs) = outputs {
            reused[i] = true;
            entries.insert(
                s.id.clone(),
                step_entry(crate::template::from_json(&outputs), "succeeded"),
            );
        }
        out[i] = Some(decision);
    }
    let mut decisions: Vec<Value> = out.into_iter().flatten().collect();
    for d in &mut decisions {
        inputs.redactor.json(d);
    }
    // In file order.
    decisions.sort_by_key(|d| {
        p.steps
            .iter()
            .position(|s| Some(s.id.as_str()) == d["step"].as_str())
    });
    Ok((opened.notes, decisions))
}

/// One step's decision, and its recorded outputs when it would be reused.
async fn decide_step(
    s: &crate::pipeline::model::Step,
    rec: Option<&super::StepRec>,
    blocked_by: Option<&str>,
    opened: &Opened,
    base: &MjValue,
    cancel: &tokio_util::sync::CancellationToken,
) -> (Value, Option<Value>) {
    let decision = |reuse: bool, why: String| json!({"step": s.id, "reuse": reuse, "why": why});
    let Some(rec) = rec else {
        return (decision(false, "runs: not in the journal".into()), None);
    };
    if let Some(dep) = blocked_by {
        let why = format!("runs: it depends on `{dep}`, which runs");
        return (decision(false, why), None);
    }
    let (fingerprint, once) = match evaluate(opened, Eval::new(s, step::Mode::Run), base) {
        Ok(v) => v,
        Err(e) => return (decision(false, format!("runs: {e}")), None),
    };
    if rec.inputs.as_deref() != Some(fingerprint.as_str()) {
        return (decision(false, "runs: its inputs changed".into()), None);
    }
    let files = upload_plan(s, rec, once.as_ref());
    let with_files = |mut d: Value| {
        if let Some((skipped, sent)) = &files {
            d["files_skipped"] = json!(skipped);
            d["files_sent"] = json!(sent);
        }
        d
    };
    if rec.status != "succeeded" {
        return (
            with_files(rerun(s, rec, decision(false, String::new()))),
            None,
        );
    }
    let Some(outputs) = rec.outputs.as_ref().filter(|_| rec.reusable) else {
        let why = "runs: its outputs held a secret, so the journal kept them masked";
        return (decision(false, why.into()), None);
    };
    // The run's rule; whether the run will have a report (which keeps `results` too) is
    // not known here: only what the templates read counts.
    if resume::lacks_results(s, s.results_read, outputs) {
        let why = "runs: the earlier run did not keep its iterations' `results`, which a template now reads (iterations that succeeded with the same inputs are reused one by one)";
        return (decision(false, why.into()), None);
    }
    if let Some(why) = resume::still_valid(s.action, once.as_ref(), outputs, cancel).await {
        return (with_files(decision(false, format!("runs: {why}"))), None);
    }
    let why = "reused: it succeeded with the same inputs".into();
    (decision(true, why), Some(outputs.clone()))
}

/// Why a step that did not succeed in the earlier run runs again, and what it re-attaches.
fn rerun(s: &crate::pipeline::model::Step, rec: &super::StepRec, mut d: Value) -> Value {
    let mut why = format!(
        "runs again: it {} in the earlier run",
        match rec.status.as_str() {
            "running" => "was cut short",
            other => other,
        }
    );
    if s.action == crate::actions::ActionKind::ItemsUpload {
        why.push_str(
            "; it first lists the dataset, to skip files stored after the journal's last write",
        );
    }
    if rec.export.is_some() {
        why.push_str("; re-attaches to the export it created");
    }
    d["why"] = json!(why);
    d
}

/// An upload's files now: (skipped, sent). A finished `datasets.upload` that runs again
/// makes a new dataset: every file is sent.
fn upload_plan(
    s: &crate::pipeline::model::Step,
    rec: &super::StepRec,
    once: Option<&crate::actions::Inputs>,
) -> Option<(Vec<String>, Vec<String>)> {
    let (skipped, sent) = once
        .filter(|_| is_upload(s.action))
        .and_then(|inp| upload_files(rec, inp))?;
    if s.action == crate::actions::ActionKind::DatasetsUpload && rec.status == "succeeded" {
        return Some((Vec::new(), skipped.into_iter().chain(sent).collect()));
    }
    Some((skipped, sent))
}

/// The files an upload names now: those the journal has with the same sha256 (skipped),
/// and the others (sent).
fn upload_files(
    rec: &super::StepRec,
    inputs: &crate::actions::Inputs,
) -> Option<(Vec<String>, Vec<String>)> {
    let files = crate::actions::upload::files_of(inputs).ok()?;
    let (mut skipped, mut sent) = (Vec::new(), Vec::new());
    for f in files {
        let shown = f.display().to_string();
        let same = rec
            .files
            .get(&shown)
            .is_some_and(|r| sha256_of(&f).as_deref() == Some(r.sha256.as_str()));
        if same {
            skipped.push(shown)
        } else {
            sent.push(shown)
        }
    }
    Some((skipped, sent))
}

fn is_upload(action: crate::actions::ActionKind) -> bool {
    use crate::actions::ActionKind;
    matches!(action, ActionKind::ItemsUpload | ActionKind::DatasetsUpload)
}

/// A file's sha256 (hex), as an upload computes it.
fn sha256_of(path: &std::path::Path) -> Option<String> {
    let never = tokio_util::sync::CancellationToken::new();
    crate::actions::upload::hash_blocking(path, &never)
        .ok()
        .map(|(_, sha256)| sha256)
}

/// A step's fingerprint now, and its inputs when it runs once.
fn evaluate(
    opened: &Opened,
    eval: Eval<'_>,
    base: &MjValue,
) -> Result<(String, Option<crate::actions::Inputs>), JournalError> {
    if eval.condition(base).map_err(|e| e.to_string())? == Some(step::Decision::Skip) {
        return Err("its `if` is false now (it is skipped, not reused)".into());
    }
    match eval.iterations(base).map_err(|e| e.to_string())? {
        Iterations::Each(items) => {
            let pieces = items.iter().enumerate().map(|(index, item)| {
                let ctx = step::item_context(base, item, index);
                let inputs = resume::iteration_inputs(eval.inputs(&ctx, false).ok());
                resume::each_piece(item.clone(), inputs)
            });
            Ok((
                resume::step_fingerprint(&opened.fp, eval.step, pieces),
                None,
            ))
        }
        Iterations::Once | Iterations::Later => {
            let inp = eval.inputs(base, false).map_err(|e| e.to_string())?;
            let piece = resume::inputs_json(&inp);
            Ok((
                resume::step_fingerprint(&opened.fp, eval.step, [piece]),
                Some(inp),
            ))
        }
    }
}

/// The decisions in words.
pub fn to_text(journal: &std::path::Path, notes: &[String], decisions: &[Value]) -> String {
    let mut out = format!("\nResume from {}:\n", journal.display());
    for n in notes {
        out.push_str(&format!("  note: {n}\n"));
    }
    for d in decisions {
        out.push_str(&format!(
            "  {} — {}\n",
            d["step"].as_str().unwrap_or_default(),
            d["why"].as_str().unwrap_or_default()
        ));
        if let Some(skipped) = d["files_skipped"].as_array() {
            let sent = d["files_sent"].as_array().map_or(0, Vec::len);
            out.push_str(&format!(
                "      files: {} already stored (skipped), {sent} to send\n",
                skipped.len()
            ));
            for f in skipped.iter().take(10) {
                out.push_str(&format!(
                    "        skip {}\n",
                    f.as_str().unwrap_or_default()
                ));
            }
            if skipped.len() > 10 {
                out.push_str(&format!("        … and {} more\n", skipped.len() - 10));
            }
            let sent = d["files_sent"].as_array().cloned().unwrap_or_default();
            for f in sent.iter().take(10) {
                out.push_str(&format!(
                    "        send {}\n",
                    f.as_str().unwrap_or_default()
                ));
            }
            if sent.len() > 10 {
                out.push_str(&format!("        … and {} more\n", sent.len() - 10));
            }
        }
    }
    out
}
