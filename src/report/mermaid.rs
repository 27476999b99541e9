//! The run as Mermaid diagrams for the GitHub step summary: a Gantt chart of the steps in
//! their concurrency lanes, and the dependency graph coloured by status. Each is cut to what
//! GitHub's Mermaid renders (50,000 characters, 500 edges), and a cut says so.
//!
//! Takes: the run's result, its timeline, the pipeline. Gives: Markdown (fenced Mermaid).
//! Must not: mask (the caller does), or read anything but its arguments.

use std::fmt::Write as _;

use super::timeline::{Span, Timeline};
use crate::execute::{RunResult, StepStatus};
use crate::pipeline::model::Pipeline;

/// GitHub renders a Mermaid block of at most 50,000 characters (Mermaid's `maxTextSize`).
const MERMAID_BUDGET: usize = 40_000;
/// Mermaid draws at most 500 edges in a flowchart (its `maxEdges`).
const MERMAID_EDGES: usize = 400;

/// A Mermaid name: no characters Mermaid reads as syntax.
fn mermaid_text(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            ':' | '#' | ';' | '"' | '`' | '\n' | '\r' | '<' | '>' | '[' | ']' | '{' | '}' => '_',
            c => c,
        })
        .collect()
}

/// The steps that ran, as a Gantt chart with one section per concurrency lane (times in
/// milliseconds from the start). The longest steps are kept when all do not fit.
pub fn gantt(result: &RunResult, timeline: &Timeline) -> String {
    let spans = timeline.spans(result);
    let mut ran: Vec<(&crate::execute::StepResult, &Span)> = result
        .steps
        .iter()
        .filter_map(|r| Some((r, spans.get(&r.id)?)))
        .collect();
    if ran.is_empty() {
        return String::new();
    }
    let line = |r: &crate::execute::StepResult, s: &Span, n: usize| {
        let tag = match r.status {
            StepStatus::Failed => "crit, ",
            StepStatus::Skipped => "milestone, ",
            StepStatus::Succeeded => "done, ",
        };
        format!(
            "    {} :{tag}t{n}, {}, {}\n",
            mermaid_text(&r.id),
            s.start_ms,
            s.end_ms.max(s.start_ms + 1)
        )
    };
    // Keep the longest (and every failed) step while the block fits.
    let total = ran.len();
    ran.sort_by_key(|(r, s)| {
        (
            r.status != StepStatus::Failed,
            std::cmp::Reverse(s.end_ms - s.start_ms),
        )
    });
    let mut size = 200;
    let mut kept = Vec::new();
    for (n, (r, s)) in ran.into_iter().enumerate() {
        let l = line(r, s, n);
        if size + l.len() + 20 > MERMAID_BUDGET {
            break;
        }
        size += l.len() + 20;
        kept.push((s.lane, s.start_ms, l));
    }
    kept.sort();
    // Times are milliseconds from the start: an axis of seconds, minutes or hours.
    let axis = match result.duration.as_secs() {
        0..=59 => "%S.%L s",
        60..=3599 => "%M:%S",
        _ => "%H:%M",
    };
    let mut out = format!(
        "```mermaid\ngantt\n    dateFormat x\n    axisFormat {axis}\n    todayMarker off\n"
    );
    let mut lane = usize::MAX;
    for (l, _, text) in &kept {
        if *l != lane {
            lane = *l;
            let _ = writeln!(out, "    section lane {}", lane + 1);
        }
        out.push_str(text);
    }
    out.push_str("```\n");
    if kept.len() < total {
        let _ = writeln!(
            out,
            "\n_The chart shows the {} longest of {total} steps that ran (GitHub renders Mermaid diagrams up to 50,000 characters)._",
            kept.len()
        );
    }
    out.push('\n');
    out
}

/// The dependency graph with each step coloured by its status; cut to what Mermaid
/// renders (steps in graph order while they and their edges fit).
pub fn status_graph(p: &Pipeline, result: &RunResult) -> String {
    let status: std::collections::HashMap<&str, StepStatus> = result
        .steps
        .iter()
        .map(|r| (r.id.as_str(), r.status))
        .collect();
    let mut nodes = String::new();
    let mut edges = String::new();
    let (mut shown, mut edge_count) = (vec![false; p.steps.len()], 0);
    let graph = &p.graph;
    for &i in &graph.order {
        let s = &p.steps[i];
        let class = match status.get(s.id.as_str()) {
            Some(StepStatus::Succeeded) => "ok",
            Some(StepStatus::Failed) => "failed",
            _ => "skipped",
        };
        let node = format!("    n{i}[\"{}\"]:::{class}\n", mermaid_text(&s.id));
        let mine: Vec<String> = s
            .deps
            .iter()
            .filter(|&&d| shown[d])
            .map(|d| format!("    n{d} --> n{i}\n"))
            .collect();
        let more: usize = node.len() + mine.iter().map(String::len).sum::<usize>();
        if nodes.len() + edges.len() + more + 300 > MERMAID_BUDGET
            || edge_count + mine.len() > MERMAID_EDGES
        {
            break;
        }
        shown[i] = true;
        edge_count += mine.len();
        nodes.push_str(&node);
        edges.extend(mine);
    }
    let count = shown.iter().filter(|s| **s).count();
    let mut out = format!(
        "```mermaid\nflowchart LR\n    classDef ok fill:#2da44e,color:#fff,stroke:#1a7f37\n    classDef failed fill:#cf222e,color:#fff,stroke:#a40e26\n    classDef skipped fill:#8c959f,color:#fff,stroke:#6e7781\n{nodes}{edges}```\n"
    );
    if count < p.steps.len() {
        let _ = writeln!(
            out,
            "\n_The graph shows the first {count} of {} steps (GitHub renders Mermaid diagrams up to 50,000 characters and 500 edges)._",
            p.steps.len()
        );
    }
    out.push('\n');
    out
}
