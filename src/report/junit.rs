//! JUnit XML: one `<testcase>` per step (and per `for_each` iteration), `<failure>`
//! carrying the error, `<skipped>` for skipped steps. CI systems render it natively.
//!
//! Must not: include secrets (messages pass through the redactor).

use std::fmt::Write as _;

use super::Redactor;
use crate::execute::{RunResult, StepStatus};

fn esc(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\n' | '\t' => out.push(c),
            // Control characters (an escape sequence in a server's message) are shown, and
            // U+FFFE/U+FFFF, which XML does not allow, too: the file stays valid XML.
            c if c.is_control() || crate::shown::is_invisible(c) => {
                out.push_str(&format!("\\u{{{:x}}}", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

pub fn to_xml(pipeline: &str, file: &str, result: &RunResult, redactor: &Redactor) -> String {
    struct Case {
        name: String,
        secs: f64,
        status: StepStatus,
        message: Option<String>,
    }
    let mut cases = Vec::new();
    for s in &result.steps {
        cases.push(Case {
            name: s.id.clone(),
            secs: s.duration_ms as f64 / 1000.0,
            status: s.status,
            message: s.error.clone().or_else(|| s.reason.clone()),
        });
        for it in &s.iterations {
            cases.push(Case {
                name: format!("{}[{}]", s.id, it.index),
                secs: it.duration_ms as f64 / 1000.0,
                status: it.status,
                message: it.error.clone(),
            });
        }
    }
    let failures = cases
        .iter()
        .filter(|c| c.status == StepStatus::Failed)
        .count();
    let skipped = cases
        .iter()
        .filter(|c| c.status == StepStatus::Skipped)
        .count();
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    let _ = writeln!(
        out,
        "<testsuites name=\"avala-pipe\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\">",
        cases.len(),
        result.duration.as_secs_f64()
    );
    let _ = writeln!(
        out,
        "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{:.3}\" file=\"{}\">",
        esc(pipeline),
        cases.len(),
        result.duration.as_secs_f64(),
        esc(file)
    );
    for c in &cases {
        let _ = write!(
            out,
            "    <testcase name=\"{}\" classname=\"{}\" time=\"{:.3}\"",
            esc(&c.name),
            esc(pipeline),
            c.secs
        );
        let message = c
            .message
            .as_deref()
            .map(|m| esc(&redactor.text(m)))
            .unwrap_or_default();
        match c.status {
            StepStatus::Succeeded => out.push_str("/>\n"),
            StepStatus::Failed => {
                let _ = writeln!(
                    out,
                    ">\n      <failure message=\"{message}\">{message}</failure>\n    </testcase>"
                );
            }
            StepStatus::Skipped => {
                let _ = writeln!(
                    out,
                    ">\n      <skipped message=\"{message}\"/>\n    </testcase>"
                );
            }
        }
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}
