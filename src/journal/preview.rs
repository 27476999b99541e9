//! `run --dry-run --resume`: per step, whether a resume would reuse it and why, and for
//! an upload that was cut short which files it would skip. Built by the same rule as the
//! run ([`super::resume`]): steps are evaluated in [`Mode::Run`] with the journal's outputs
//! as the `steps.*` entries of the steps that would be reused.
//!
//! Takes: what the CLI resolved for the run. Gives: the decision per step, as JSON and text.
//! Must not: send anything or write the journal.

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
    pub fn open(&self) -> Result<Opened, String> {
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
            },
        )
    }
}

/// Each step's decision: `{"step", "reuse": bool, "why", "files_skipped"?, "files_sent"?}`.
pub async fn decide(inputs: &JournalInputs) -> Result<(Vec<String>, Vec<Value>), String> {
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
        let decision = |reuse: bool, why: String| json!({"step": s.id, "reuse": reuse, "why": why});
        let Some(rec) = prior.steps.get(&s.id) else {
            out[i] = Some(decision(false, "runs: not in the journal".into()));
            continue;
        };
        if let Some(&d) = inputs.graph.deps[i].iter().find(|&&d| !reused[d]) {
            out[i] = Some(decision(
                false,
                format!("runs: it depends on `{}`, which runs", p.steps[d].id),
            ));
            continue;
        }
        let eval = Eval::new(s, step::Mode::Run);
        let base = inputs.globals.context(&steps_value, &[]);
        let evaluated = evaluate(&opened, eval, &base);
        let (fingerprint, once) = match evaluated {
            Ok(v) => v,
            Err(e) => {
                out[i] = Some(decision(false, format!("runs: {e}")));
                continue;
            }
        };
        if rec.inputs.as_deref() != Some(fingerprint.as_str()) {
            out[i] = Some(decision(false, "runs: its inputs changed".into()));
            continue;
        }
        // An upload that runs again sends only the files not stored yet.
        let files = once
            .as_ref()
            .filter(|_| is_upload(s.action))
            .and_then(|inp| upload_files(rec, inp))
            .map(|(skipped, sent)| {
                // A finished `datasets.upload` that runs again makes a new dataset: all sent.
                if s.action == crate::actions::ActionKind::DatasetsUpload
                    && rec.status == "succeeded"
                {
                    (Vec::new(), skipped.into_iter().chain(sent).collect())
                } else {
                    (skipped, sent)
                }
            });
        let with_files = |mut d: Value| {
            if let Some((skipped, sent)) = &files {
                d["files_skipped"] = json!(skipped);
                d["files_sent"] = json!(sent);
            }
            d
        };
        if rec.status != "succeeded" {
            let mut d = with_files(decision(
                false,
                format!(
                    "runs again: it {} in the earlier run",
                    match rec.status.as_str() {
                        "running" => "was cut short",
                        other => other,
                    }
                ),
            ));
            if s.action == crate::actions::ActionKind::ItemsUpload {
                d["why"] = json!(format!(
                    "{}; it first lists the dataset, to skip files stored after the journal's last write",
                    d["why"].as_str().unwrap_or_default()
                ));
            }
            if rec.export.is_some() {
                d["why"] = json!(format!(
                    "{}; re-attaches to the export it created",
                    d["why"].as_str().unwrap_or_default()
                ));
            }
            out[i] = Some(d);
            continue;
        }
        let Some(outputs) = rec.outputs.as_ref().filter(|_| rec.reusable) else {
            out[i] = Some(decision(
                false,
                "runs: its outputs held a secret, so the journal kept them masked".into(),
            ));
            continue;
        };
        if let Some(why) = resume::still_valid(s.action, once.as_ref(), outputs, &cancel).await {
            out[i] = Some(with_files(decision(false, format!("runs: {why}"))));
            continue;
        }
        reused[i] = true;
        entries.insert(s.id.clone(), step_entry(outputs, "succeeded"));
        out[i] = Some(decision(
            true,
            "reused: it succeeded with the same inputs".into(),
        ));
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

/// A file's sha256 (hex), read in chunks.
fn sha256_of(path: &std::path::Path) -> Option<String> {
    use sha2::Digest as _;
    let mut file = std::fs::File::open(path).ok()?;
    let mut hasher = sha2::Sha256::new();
    std::io::copy(&mut file, &mut hasher).ok()?;
    Some(hex::encode(hasher.finalize()))
}

/// A step's fingerprint now, and its inputs when it runs once.
fn evaluate(
    opened: &Opened,
    eval: Eval<'_>,
    base: &MjValue,
) -> Result<(String, Option<crate::actions::Inputs>), String> {
    if eval.condition(base).map_err(|e| e.to_string())? == Some(step::Decision::Skip) {
        return Err("its `if` is false now (it is skipped, not reused)".into());
    }
    match eval.iterations(base).map_err(|e| e.to_string())? {
        Iterations::Each(items) => {
            let mut rendered = Vec::new();
            for (index, item) in items.iter().enumerate() {
                let ctx = step::item_context(base, item, index);
                rendered.push(resume::iteration_inputs(eval.inputs(&ctx, false).ok()));
            }
            Ok((
                resume::step_fingerprint(&opened.fp, eval.step, Some(&items), &rendered),
                None,
            ))
        }
        Iterations::Once | Iterations::Later => {
            let inp = eval.inputs(base, false).map_err(|e| e.to_string())?;
            let rendered = vec![resume::inputs_json(&inp)];
            Ok((
                resume::step_fingerprint(&opened.fp, eval.step, None, &rendered),
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
