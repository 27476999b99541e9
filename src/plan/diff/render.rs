//! The renderings of a [`PlanDiff`]: text for people (one block per step, `+`/`-`/`~`),
//! JSON for tools, and Markdown for a pull-request comment that stays under GitHub's
//! 65,535-character limit whatever the diff's size (rows while they fit, then a count of the
//! rest; the full text diff folded in when everything fits).
//!
//! Takes: a [`PlanDiff`]. Gives: strings. Must not: compute anything about the plans.

use std::fmt::Write as _;

use serde_json::Value;

use super::{Change, PlanDiff, RequestDiff, ValueChange};

/// GitHub's limit on a comment's body.
pub const COMMENT_LIMIT: usize = 65_535;
/// The Markdown stays under this, leaving room for what a workflow adds around it.
const COMMENT_BUDGET: usize = 60_000;
/// The first line of the Markdown: a workflow finds its own comment by it.
pub const COMMENT_MARKER: &str = "<!-- avala-pipe plan diff -->";

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

impl PlanDiff {
    /// The one line of counts that comes first in every format.
    pub fn summary_line(&self) -> String {
        let c = &self.summary;
        if !self.changed {
            return "No changes: the plan is the same.".into();
        }
        let part = |n: usize, what: &str| (n > 0).then(|| format!("{n} {what}"));
        let steps: Vec<String> = [
            part(c.steps_added, "added"),
            part(c.steps_removed, "removed"),
            part(c.steps_changed, "changed"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let requests: Vec<String> = [
            part(c.requests_added, "added"),
            part(c.requests_removed, "removed"),
            part(c.requests_changed, "changed"),
        ]
        .into_iter()
        .flatten()
        .collect();
        let total_steps = c.steps_added + c.steps_removed + c.steps_changed;
        let total_requests = c.requests_added + c.requests_removed + c.requests_changed;
        let mut line = format!(
            "Plan changes: {} ({})",
            plural(total_steps, "step"),
            steps.join(", ")
        );
        if total_requests > 0 {
            let _ = write!(
                line,
                "; {} ({})",
                plural(total_requests, "request"),
                requests.join(", ")
            );
        }
        line.push('.');
        line
    }
}

/// A value in one line: strings as they are, anything else as JSON.
fn short(v: &Option<Value>) -> String {
    match v {
        None => "(none)".into(),
        Some(Value::String(s)) => format!("{s:?}"),
        Some(other) => other.to_string(),
    }
}

fn change_line(c: &ValueChange) -> String {
    match (&c.old, &c.new) {
        (None, Some(_)) => format!("{}: {} (added)", c.path, short(&c.new)),
        (Some(_), None) => format!("{}: {} (removed)", c.path, short(&c.old)),
        _ => format!("{}: {} → {}", c.path, short(&c.old), short(&c.new)),
    }
}

/// The lines under one request: what changed in it.
fn request_lines(r: &RequestDiff) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(old) = &r.old_url {
        lines.push(format!("url: {old} → {}", r.url));
    }
    for (what, list) in [
        ("header", &r.headers),
        ("body", &r.body),
        ("field", &r.fields),
        ("file", &r.files),
    ] {
        for c in list {
            lines.push(format!("{what} {}", change_line(c)));
        }
    }
    lines
}

/// The diff for people.
pub fn to_text(d: &PlanDiff) -> String {
    let mut out = d.summary_line() + "\n";
    for s in &d.steps {
        let _ = writeln!(out, "\n{} {} ({})", s.change.sign(), s.id, s.action);
        for f in &s.fields {
            let _ = writeln!(out, "    {}", change_line(f));
        }
        for r in &s.requests {
            let _ = writeln!(out, "  {} {} {}", r.change.sign(), r.method, r.url);
            for line in request_lines(r) {
                let _ = writeln!(out, "      {line}");
            }
        }
    }
    out
}

/// The diff for tools.
pub fn to_json(d: &PlanDiff) -> String {
    serde_json::to_string_pretty(d).unwrap_or_default() + "\n"
}

fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
        .replace('\n', " ")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

fn md_code(text: &str) -> String {
    format!("`{}`", text.replace('`', "'"))
}

/// What changes in one step, as a table cell (`<br>` between lines).
fn step_cell(s: &super::StepDiff) -> String {
    let mut what: Vec<String> = s.fields.iter().map(|f| md_code(&change_line(f))).collect();
    for r in &s.requests {
        let lines = request_lines(r);
        let head = format!(
            "{} {}",
            r.change.sign(),
            md_code(&format!("{} {}", r.method, r.url))
        );
        if lines.is_empty() || r.change != Change::Changed {
            what.push(head);
            // An added or removed request's body fields, briefly.
            if r.change != Change::Changed {
                what.extend(lines.iter().take(5).map(|l| md_code(l)));
            }
        } else {
            what.push(format!(
                "{head}: {}",
                lines
                    .iter()
                    .map(|l| md_code(l))
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
    }
    what.join("<br>")
}

/// The diff as a pull-request comment, under [`COMMENT_LIMIT`] whatever its size: one row
/// per step while they fit, then a count of the rest.
pub fn to_markdown(d: &PlanDiff) -> String {
    let pipeline = if d.old_pipeline == d.new_pipeline || d.old_pipeline.is_empty() {
        md_code(&d.new_pipeline)
    } else {
        format!(
            "{} → {}",
            md_code(&d.old_pipeline),
            md_code(&d.new_pipeline)
        )
    };
    let mut out = format!(
        "{COMMENT_MARKER}\n### avala-pipe plan: {pipeline}\n\n**{}**\n",
        d.summary_line()
    );
    if !d.changed {
        return out;
    }
    out.push_str("\n| | step | action | what changes |\n|---|---|---|---|\n");
    let icon = |c: Change| match c {
        Change::Added => "➕",
        Change::Removed => "➖",
        Change::Changed => "✏️",
    };
    let mut shown = 0;
    // Room for the closing note.
    let budget = COMMENT_BUDGET - 400;
    for s in &d.steps {
        let mut cell = step_cell(s);
        if cell.chars().count() > 2000 {
            cell = cell.chars().take(2000).collect::<String>() + "… (cut)";
        }
        let row = format!(
            "| {} | {} | {} | {} |\n",
            icon(s.change),
            md_code(&s.id),
            md_cell(&s.action),
            cell.replace('|', "\\|").replace('\n', " ")
        );
        if out.len() + row.len() > budget {
            break;
        }
        out.push_str(&row);
        shown += 1;
    }
    if shown == d.steps.len() {
        // Everything listed: the full text diff too, folded, when it fits.
        let full = format!(
            "\n<details><summary>Full diff</summary>\n\n```text\n{}```\n\n</details>\n",
            to_text(d).replace("```", "'`'")
        );
        if out.len() + full.len() <= COMMENT_BUDGET {
            out.push_str(&full);
        }
    } else {
        let _ = writeln!(
            out,
            "\n_{} of {} changed steps not listed: a GitHub comment holds at most {COMMENT_LIMIT} characters. Run `avala-pipe diff OLD.json NEW.json` for all of them._",
            d.steps.len() - shown,
            d.steps.len()
        );
    }
    out
}
