//! The plan for people (`run --dry-run`): Terraform-style, one block per step, every
//! request with its method, URL, headers and body or parts, then how it repeats, what
//! is retried and anything else to know, on `~` lines. `docs/dry-run.md` describes it.
//!
//! Must not: compute anything; it only reads the [`Plan`].

use std::fmt::Write as _;

use super::{Plan, PlannedPart, PlannedRequest, PlannedStep};

fn plural(n: usize, word: &str) -> String {
    format!("{n} {word}{}", if n == 1 { "" } else { "s" })
}

/// The plan as text.
pub fn to_text(plan: &Plan) -> String {
    let mut text = Text::default();
    for s in &plan.steps {
        text.step(s);
    }
    text.finish(&plan.pipeline)
}

/// The plan's text, written one step at a time (the header, which counts them, last).
#[derive(Default)]
pub(super) struct Text {
    body: String,
    steps: usize,
    requests: usize,
}

impl Text {
    pub(super) fn step(&mut self, s: &PlannedStep) {
        self.steps += 1;
        self.requests += s.requests.len();
        step(&mut self.body, self.steps, s);
        self.body.push('\n');
    }

    /// The whole text: the header, then every step.
    pub(super) fn finish(mut self, pipeline: &str) -> String {
        let header = format!(
            "Plan for pipeline `{pipeline}`: {}, {} shown. Nothing was sent.\n\n",
            plural(self.steps, "step"),
            plural(self.requests, "request"),
        );
        self.body.insert_str(0, &header);
        self.body
    }
}

fn step(out: &mut String, number: usize, s: &PlannedStep) {
    let name = s
        .name
        .as_deref()
        .map(|n| format!(" — {n}"))
        .unwrap_or_default();
    let _ = writeln!(out, "{number}. {} ({}){name}", s.id, s.action);
    if !s.needs.is_empty() {
        let _ = writeln!(out, "   after: {}", s.needs.join(", "));
    }
    if let Some(c) = &s.condition {
        let state = match c.value {
            Some(true) => "true now",
            Some(false) => "false now",
            None => "decided at run time; the step is skipped when it is false",
        };
        let _ = writeln!(out, "   if: {} ({state})", c.template);
    }
    if let Some(fe) = &s.for_each {
        let over = match &fe.over {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let count = match fe.count {
            Some(c) => format!("{}, {} at a time", plural(c, "item"), fe.max_parallel),
            None => format!(
                "a list known after run, {} at a time; shown once, with `item` placeholders",
                fe.max_parallel
            ),
        };
        let _ = writeln!(out, "   for each: {over} ({count})");
    }
    if let Some(reason) = &s.skipped {
        let _ = writeln!(out, "   skipped: {reason}");
    }
    for r in &s.requests {
        request(out, r);
    }
    if let Some(repeats) = &s.repeats {
        let _ = writeln!(out, "   ~ {}", repeats.describe());
    }
    for note in &s.notes {
        let _ = writeln!(out, "   ~ {note}");
    }
    if let Some(r) = &s.retry {
        let _ = writeln!(
            out,
            "   ~ retries: up to {} attempts on {}; backoff {} to {}; a Retry-After over {} fails the step",
            r.max_attempts, r.on, r.initial_interval, r.max_interval, r.retry_after_max
        );
    }
    if let Some(t) = &s.timeout {
        let _ = writeln!(out, "   ~ times out after {t}");
    }
}

fn request(out: &mut String, r: &PlannedRequest) {
    let _ = writeln!(out, "   {} {}", r.method, r.url);
    for (k, v) in &r.headers {
        let _ = writeln!(out, "     {k}: {v}");
    }
    if let Some(body) = &r.body {
        let pretty = serde_json::to_string_pretty(body).unwrap_or_default();
        for line in pretty.lines() {
            let _ = writeln!(out, "     | {line}");
        }
    }
    for part in r.multipart.iter().flatten() {
        match part {
            PlannedPart::Text { field, value } => {
                let value = serde_json::to_string(value).unwrap_or_default();
                let _ = writeln!(out, "     part {field} = {value}");
            }
            PlannedPart::File {
                field,
                file,
                file_name,
                size,
                content_type,
            } => {
                let size = size.map_or("size known after run".to_string(), |s| {
                    plural(s as usize, "byte")
                });
                let _ = writeln!(
                    out,
                    "     part {field}: {file_name} ({size}, {content_type}) from {file}"
                );
            }
        }
    }
}
