//! GitHub Actions integration: `::error` workflow commands that annotate the pipeline file
//! at a failed step's line, the Markdown summary for `$GITHUB_STEP_SUMMARY` (diagrams from
//! [`super::mermaid`], a table cut to GitHub's 1 MiB limit), and
//! pipeline outputs in the `$GITHUB_OUTPUT` format.
//!
//! Must not: read the environment (the CLI decides whether GitHub Actions is in use).

use std::fmt::Write as _;

use super::mermaid;
use super::timeline::Timeline;
use super::Redactor;
use crate::execute::{RunResult, RunStatus, StepStatus};
use crate::pipeline::model::Pipeline;

/// Escapes a workflow command's message (`%`, CR, LF; other control and invisible
/// characters are shown escaped, as everywhere people read outside text).
fn escape_data(text: &str) -> String {
    let mut shown = String::with_capacity(text.len());
    for piece in text.split_inclusive(['\r', '\n']) {
        let line = piece.trim_end_matches(['\r', '\n']);
        shown.push_str(&crate::shown::escape(line));
        shown.push_str(&piece[line.len()..]);
    }
    shown
        .replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Escapes a workflow command's property (also `:` and `,`).
fn escape_property(text: &str) -> String {
    escape_data(text).replace(':', "%3A").replace(',', "%2C")
}

/// One `::error` annotation.
pub fn error_annotation(
    file: &str,
    line: u32,
    col: Option<u32>,
    title: &str,
    message: &str,
) -> String {
    let mut props = format!("file={},line={line}", escape_property(file));
    if let Some(col) = col {
        let _ = write!(props, ",col={col}");
    }
    let _ = write!(props, ",title={}", escape_property(title));
    format!("::error {props}::{}", escape_data(message))
}

/// Annotations for every failed step of a run.
pub fn run_annotations(file: &str, result: &RunResult, redactor: &Redactor) -> Vec<String> {
    result
        .steps
        .iter()
        .filter(|s| s.status == StepStatus::Failed)
        .map(|s| {
            error_annotation(
                file,
                s.line,
                None,
                &format!("step {} ({}) failed", s.id, s.action),
                &redactor.text(s.error.as_deref().unwrap_or("failed")),
            )
        })
        .collect()
}

/// A table cell of our own text (ids, actions): `|` and line breaks would end it.
fn cell(text: &str) -> String {
    crate::shown::escape(text).replace('|', "\\|")
}

/// A table cell of outside text (an error message): also Markdown and HTML are shown as
/// text, so a server cannot add links, images or formatting to the summary.
fn text_cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in crate::shown::escape(text).chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '\\' | '`' | '*' | '_' | '[' | ']' | '(' | ')' | '!' | '|' | '#' | '~' | '{' | '}' => {
                out.push('\\');
                out.push(c);
            }
            c => out.push(c),
        }
    }
    out
}

/// GitHub refuses a step summary over 1 MiB; this leaves room for other steps' output.
pub const SUMMARY_BUDGET: usize = 900 * 1024;

/// The Markdown summary of a run: a Mermaid Gantt of the steps in their concurrency
/// lanes, the dependency graph coloured by status, and a table of step, status, duration,
/// attempts. Whatever the run's size it stays within [`SUMMARY_BUDGET`]: each diagram is
/// cut to what Mermaid renders, the table to what fits, and each cut says so.
pub fn step_summary(
    p: &Pipeline,
    result: &RunResult,
    timeline: &Timeline,
    redactor: &Redactor,
) -> String {
    let icon = |s: StepStatus| match s {
        StepStatus::Succeeded => "✅ succeeded",
        StepStatus::Failed => "❌ failed",
        StepStatus::Skipped => "⏭️ skipped",
    };
    let status = match result.status {
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Interrupted => "was interrupted",
    };
    let mut out = format!(
        "### avala-pipe: `{}` {status} in {:.1}s\n\n",
        cell(&p.name),
        result.duration.as_secs_f64()
    );
    out.push_str(&redactor.text(&mermaid::gantt(result, timeline)));
    out.push_str(&redactor.text(&mermaid::status_graph(p, result)));
    let head =
        "| step | action | status | duration | attempts | error |\n|---|---|---|---|---|---|\n";
    let rows: Vec<String> = result
        .steps
        .iter()
        .map(|s| {
            let error = s
                .error
                .as_deref()
                .or(s.reason.as_deref())
                .map(|e| redactor.text(e))
                .unwrap_or_default();
            format!(
                "| `{}` | {} | {} | {:.1}s | {} | {} |\n",
                cell(&s.id),
                s.action,
                if s.reused {
                    format!("{} (reused)", icon(s.status))
                } else {
                    icon(s.status).to_string()
                },
                s.duration_ms as f64 / 1000.0,
                s.attempts,
                text_cell(&api_short(&error))
            )
        })
        .collect();
    // Failed steps first, then the others in order, while they fit; shown in order.
    let mut room = SUMMARY_BUDGET.saturating_sub(out.len() + head.len() + 200);
    let mut shown = vec![false; rows.len()];
    let failed_first = result
        .steps
        .iter()
        .enumerate()
        .filter(|(_, s)| s.status == StepStatus::Failed)
        .chain(
            result
                .steps
                .iter()
                .enumerate()
                .filter(|(_, s)| s.status != StepStatus::Failed),
        );
    for (i, _) in failed_first {
        if rows[i].len() > room {
            break;
        }
        room -= rows[i].len();
        shown[i] = true;
    }
    out.push_str(head);
    for (row, _) in rows.iter().zip(&shown).filter(|(_, s)| **s) {
        out.push_str(row);
    }
    let hidden = shown.iter().filter(|s| !**s).count();
    if hidden > 0 {
        let _ = writeln!(
            out,
            "\n_{hidden} of {} steps not listed: GitHub limits a step summary to 1 MiB (failed steps are listed first). `--report` or `--html` has them all._",
            rows.len()
        );
    }
    out.push('\n');
    out
}

fn api_short(text: &str) -> String {
    crate::api::shapes::shorten(text, 200)
}

/// Pipeline outputs as `$GITHUB_OUTPUT` lines (multi-line safe, with a delimiter).
pub fn outputs_file(outputs: &serde_json::Value, redactor: &Redactor) -> String {
    let mut out = String::new();
    if let Some(map) = outputs.as_object() {
        for (name, value) in map {
            let text = match value {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let text = redactor.text(&text);
            let mut delimiter = format!("avala_pipe_{:016x}", fastrand::u64(..));
            while text.contains(&delimiter) {
                delimiter = format!("avala_pipe_{:016x}", fastrand::u64(..));
            }
            let _ = writeln!(out, "{name}<<{delimiter}\n{text}\n{delimiter}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn annotations_escape() {
        assert_eq!(
            error_annotation("p.yaml", 7, Some(3), "a: b, c", "50% done\nnext"),
            "::error file=p.yaml,line=7,col=3,title=a%3A b%2C c::50%25 done%0Anext"
        );
    }

    #[test]
    fn outputs_are_delimited() {
        let text = outputs_file(
            &serde_json::json!({"id": "exp_1", "n": 3}),
            &Redactor::default(),
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("id<<avala_pipe_"));
        assert_eq!(lines[1], "exp_1");
        assert_eq!(lines[3].split("<<").next(), Some("n"));
        assert_eq!(lines[4], "3");
    }
}
