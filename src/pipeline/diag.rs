//! Diagnostics for pipeline files: a message at a file position, rendered like rustc
//! (`error:`, `--> file:line:col`, the source line, a caret, `help: did you mean ...`)
//! or as JSON for tools.
//!
//! Must not: decide what is wrong (that is `check`); it only carries and renders.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::yaml::Pos;

/// One problem found in a pipeline file.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Diagnostic {
    #[serde(flatten)]
    pub pos: Pos,
    /// Width of the caret under the offending text (at least 1).
    #[serde(skip)]
    pub len: usize,
    pub message: String,
    /// The step the problem is in, when it is in one.
    pub step: Option<String>,
    /// A replacement that would likely fix it ("did you mean ...").
    pub suggestion: Option<String>,
    /// Further explanation.
    pub help: Option<String>,
}

impl Serialize for Pos {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let mut st = s.serialize_struct("Pos", 2)?;
        st.serialize_field("line", &self.line)?;
        st.serialize_field("column", &self.col)?;
        st.end()
    }
}

impl Diagnostic {
    pub fn new(pos: Pos, message: impl Into<String>) -> Self {
        Diagnostic {
            pos,
            len: 1,
            message: message.into(),
            step: None,
            suggestion: None,
            help: None,
        }
    }

    pub fn suggest(&mut self, suggestion: Option<&str>) -> &mut Self {
        self.suggestion = suggestion.map(str::to_string);
        self
    }

    pub fn help(&mut self, help: impl Into<String>) -> &mut Self {
        self.help = Some(help.into());
        self
    }
}

/// Every problem found in one file. This is what `validate` prints and what `run`
/// refuses to start with.
#[derive(Clone, Debug)]
pub struct FileDiagnostics {
    pub file: PathBuf,
    pub source: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl FileDiagnostics {
    pub fn single(file: &Path, source: &str, diagnostic: Diagnostic) -> Self {
        FileDiagnostics {
            file: file.to_path_buf(),
            source: source.to_string(),
            diagnostics: vec![diagnostic],
        }
    }

    /// rustc-style text, one block per diagnostic, then a count.
    pub fn render(&self, color: bool) -> String {
        let paint = Paint(color);
        let mut out = String::new();
        for d in &self.diagnostics {
            self.render_one(&mut out, d, paint);
        }
        let n = self.diagnostics.len();
        let _ = writeln!(
            out,
            "{}: {} is invalid: {n} problem{}",
            paint.red("error"),
            crate::shown::escape(&self.file.display().to_string()),
            if n == 1 { "" } else { "s" }
        );
        out
    }

    /// One diagnostic: the message, where, the step, the source line with a caret, and
    /// the suggestion and help.
    fn render_one(&self, out: &mut String, d: &Diagnostic, paint: Paint) {
        let pad = " ".repeat(d.pos.line.to_string().len());
        // The message, step, suggestion and help may quote the file's text: an escape
        // sequence or an invisible character in a name is shown, not obeyed or hidden.
        let shown = |text: &str| crate::shown::escape(text).into_owned();
        let _ = writeln!(out, "{}: {}", paint.red("error"), shown(&d.message));
        let _ = writeln!(
            out,
            "{pad}{} {}:{}:{}",
            paint.blue("-->"),
            shown(&self.file.display().to_string()),
            d.pos.line,
            d.pos.col
        );
        if let Some(step) = &d.step {
            let _ = writeln!(out, "{pad} {} in step `{}`", paint.blue("="), shown(step));
        }
        // No source (the file could not be read): no snippet to show.
        if !self.source.is_empty() {
            self.render_snippet(out, d, &pad, paint);
        }
        if let Some(s) = &d.suggestion {
            let _ = writeln!(
                out,
                "{pad} {} help: did you mean `{}`?",
                paint.blue("="),
                shown(s)
            );
        }
        if let Some(h) = &d.help {
            let _ = writeln!(out, "{pad} {} help: {}", paint.blue("="), shown(h));
        }
        out.push('\n');
    }

    /// The diagnostic's source line and a caret under the offending text.
    fn render_snippet(&self, out: &mut String, d: &Diagnostic, pad: &str, paint: Paint) {
        let line_text = source_line(&self.source, d.pos.line);
        let _ = writeln!(out, "{pad} {}", paint.blue("|"));
        // Control and invisible characters (a binary file, an escape sequence, a
        // byte-order mark) must not reach the terminal: they are shown as U+FFFD, one
        // for one, so the caret still lines up.
        let snippet: String = line_text
            .chars()
            .take(200)
            .map(|c| {
                if (c.is_control() && c != '\t') || crate::shown::is_invisible(c) {
                    char::REPLACEMENT_CHARACTER
                } else {
                    c
                }
            })
            .collect();
        let _ = writeln!(
            out,
            "{} {} {}",
            paint.blue(&d.pos.line.to_string()),
            paint.blue("|"),
            snippet
        );
        let caret_pad: String = line_text
            .chars()
            .take(d.pos.col.saturating_sub(1) as usize)
            .map(|c| if c == '\t' { '\t' } else { ' ' })
            .collect();
        let _ = writeln!(
            out,
            "{pad} {} {caret_pad}{}",
            paint.blue("|"),
            paint.red(&"^".repeat(d.len.min(120)))
        );
    }

    /// One JSON object per diagnostic, with the file name.
    pub fn to_json(&self) -> Vec<serde_json::Value> {
        self.diagnostics
            .iter()
            .map(|d| {
                let mut v = serde_json::to_value(d).unwrap_or_default();
                if let Some(obj) = v.as_object_mut() {
                    obj.insert(
                        "file".into(),
                        serde_json::Value::String(self.file.display().to_string()),
                    );
                }
                v
            })
            .collect()
    }
}

/// ANSI colours for rendered diagnostics, or none.
#[derive(Clone, Copy)]
struct Paint(bool);

impl Paint {
    fn code(self, code: &str, text: &str) -> String {
        if self.0 {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_string()
        }
    }

    /// Bold red: `error` and the caret.
    fn red(self, text: &str) -> String {
        self.code("1;31", text)
    }

    /// Bold blue: the gutter, `-->` and `=`.
    fn blue(self, text: &str) -> String {
        self.code("1;34", text)
    }
}

/// Line `number` (from 1) of `source`, with line breaks counted as the YAML parser counts
/// them: LF, CRLF, and a lone CR (old Mac files).
fn source_line(source: &str, number: u32) -> &str {
    let mut rest = source;
    for _ in 1..number.max(1) {
        match rest.find(['\n', '\r']) {
            Some(i) => {
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
            }
            None => return "",
        }
    }
    rest.find(['\n', '\r']).map_or(rest, |end| &rest[..end])
}

/// The closest candidate to `name`, when it is close enough to be a likely typo.
pub fn did_you_mean<'a>(
    name: &str,
    candidates: impl IntoIterator<Item = &'a str>,
) -> Option<&'a str> {
    // Typos are short; a long name would cost a quadratic table for nothing.
    if name.len() > 64 {
        return None;
    }
    let limit = (name.chars().count() / 3).max(1) + usize::from(name.len() > 6);
    candidates
        .into_iter()
        .filter(|c| c.len() <= 64 && c.len().abs_diff(name.len()) <= limit)
        .map(|c| (edit_distance(name, c), c))
        .filter(|(d, c)| *d <= limit && *d < c.len().max(name.len()))
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Damerau-Levenshtein (optimal string alignment) distance, by chars.
pub fn edit_distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let mut d = vec![vec![0usize; b.len() + 1]; a.len() + 1];
    for (i, row) in d.iter_mut().enumerate() {
        row[0] = i;
    }
    for (j, cell) in d[0].iter_mut().enumerate() {
        *cell = j;
    }
    for i in 1..=a.len() {
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (d[i - 1][j] + 1)
                .min(d[i][j - 1] + 1)
                .min(d[i - 1][j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(d[i - 2][j - 2] + 1);
            }
            d[i][j] = best;
        }
    }
    d[a.len()][b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_lines_end_at_lf_crlf_and_lone_cr() {
        let source = "a\nb\r\nc\rd\r\re";
        let lines: Vec<&str> = (1..=7).map(|n| source_line(source, n)).collect();
        assert_eq!(lines, ["a", "b", "c", "d", "", "e", ""]);
    }

    #[test]
    fn suggestions() {
        assert_eq!(did_you_mean("limt", ["limit", "query"]), Some("limit"));
        assert_eq!(
            did_you_mean("make_exprot", ["make_export", "fetch"]),
            Some("make_export")
        );
        assert_eq!(did_you_mean("projet", ["project"]), Some("project"));
        assert_eq!(did_you_mean("zzz", ["limit"]), None);
        assert_eq!(
            did_you_mean("exports.craete", ["exports.create", "exports.wait"]),
            Some("exports.create")
        );
    }
}
