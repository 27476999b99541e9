//! Messages for people on stderr, in the format chosen on the command line: plain text
//! (coloured only on a terminal), or one JSON object per line with `--log-format json`.
//! Under GitHub Actions, pipeline problems also become `::error` annotations.
//! Must not: print a secret or raw outside text (every message is masked and escaped).

use std::sync::OnceLock;

use crate::pipeline::FileDiagnostics;
use crate::report::github;

#[derive(Clone, Copy, Debug, Default)]
pub struct Console {
    pub json: bool,
    pub color: bool,
    /// `GITHUB_ACTIONS=true`: annotate problems in the pipeline file.
    pub github: bool,
}

static CONSOLE: OnceLock<Console> = OnceLock::new();

pub fn init(console: Console) {
    let _ = CONSOLE.set(console);
}

pub fn get() -> Console {
    CONSOLE.get().copied().unwrap_or_default()
}

/// Writes the command's output to stdout. A closed pipe (`| head`) ends the output
/// quietly instead of panicking as `print!` would.
pub fn stdout_text(text: &str) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes()).and_then(|_| out.flush());
}

/// Writes the command's output to stdout masked by `redactor`, as [`stdout_text`] writes
/// it, without a masked copy of the whole text first.
pub fn stdout_masked(text: &str, redactor: &crate::secrets::Redactor) {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    let _ = redactor
        .write_text(text, &mut out)
        .and_then(|_| out.flush());
}

/// A message as people may see it: secrets masked, then, in text, outside text escaped (a
/// server's words or a file's names may be part of it; JSON escapes its own).
fn shown(message: &str) -> String {
    let message = crate::secrets::redact(message);
    if get().json {
        message
    } else {
        crate::shown::escape(&message).into_owned()
    }
}

pub fn error(message: &str) {
    let message = &shown(message);
    let c = get();
    if c.json {
        tracing::error!("{message}");
    } else if c.color {
        eprintln!("\x1b[1;31merror\x1b[0m: {message}");
    } else {
        eprintln!("error: {message}");
    }
}

pub fn warn(message: &str) {
    let message = &shown(message);
    if get().json {
        tracing::warn!("{message}");
    } else {
        eprintln!("warning: {message}");
    }
}

pub fn info(message: &str) {
    let message = &shown(message);
    if get().json {
        tracing::info!("{message}");
    } else {
        eprintln!("{message}");
    }
}

/// Every diagnostic of a file: rustc-style text, or JSON lines; plus annotations.
pub fn diagnostics(d: &FileDiagnostics) {
    let c = get();
    if c.json {
        for diag in &d.diagnostics {
            tracing::error!(
                file = %d.file.display(),
                line = diag.pos.line,
                column = diag.pos.col,
                step = diag.step.as_deref().unwrap_or(""),
                suggestion = diag.suggestion.as_deref().unwrap_or(""),
                help = diag.help.as_deref().unwrap_or(""),
                "{}",
                diag.message
            );
        }
    } else {
        eprint!("{}", d.render(c.color));
    }
    if c.github {
        for diag in &d.diagnostics {
            let mut message = crate::shown::escape(&diag.message).into_owned();
            if let Some(s) = &diag.suggestion {
                message.push_str(&format!(" (did you mean `{}`?)", crate::shown::escape(s)));
            }
            eprintln!(
                "{}",
                github::error_annotation(
                    &d.file.display().to_string(),
                    diag.pos.line,
                    Some(diag.pos.col),
                    "invalid pipeline",
                    &message
                )
            );
        }
    }
}
