//! Logging setup: human lines or JSON objects on stderr, level from -v/-q or RUST_LOG,
//! colour only on a terminal (and never with NO_COLOR).
//! Must not: let a log line out unmasked or unescaped (secrets and outside text).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use super::args::{ColorChoice, LogFormat};

/// Whether human output on stderr gets ANSI colour.
pub fn use_color(choice: ColorChoice) -> bool {
    match choice {
        ColorChoice::Always => true,
        ColorChoice::Never => false,
        ColorChoice::Auto => {
            std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty())
                && std::env::var_os("CI").is_none()
                && std::io::stderr().is_terminal()
        }
    }
}

pub fn init(verbose: u8, quiet: bool, format: LogFormat, color: bool) {
    let default = if quiet {
        "error"
    } else {
        match verbose {
            0 => "avala_pipe=info,warn",
            // Other crates stay at warn: their debug logs may show proxy credentials.
            1 => "avala_pipe=debug,warn",
            _ => "avala_pipe=trace,warn",
        }
    };
    let filter = match std::env::var("RUST_LOG") {
        Ok(spec) if !spec.is_empty() && verbose == 0 && !quiet => EnvFilter::new(spec),
        _ => EnvFilter::new(default),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .fmt_fields(ShownFields)
            .with_ansi(color)
            .with_target(false)
            .without_time()
            .try_init(),
    };
}

/// Text log fields, each value escaped as outside text ([`crate::shown::escape`]): a
/// server's message or a URL in a log line cannot add a line (a CI workflow command) or a
/// terminal escape of its own. The message comes first, then `name=value` pairs. Secrets
/// are masked before the escaping, so an escaped secret is masked too.
struct ShownFields;

impl<'w> tracing_subscriber::fmt::FormatFields<'w> for ShownFields {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        mut writer: tracing_subscriber::fmt::format::Writer<'w>,
        fields: R,
    ) -> std::fmt::Result {
        let mut visitor = ShownVisitor::default();
        fields.record(&mut visitor);
        let mut parts = Vec::with_capacity(visitor.fields.len() + 1);
        parts.extend(visitor.message);
        parts.extend(visitor.fields);
        write!(writer, "{}", parts.join(" "))
    }
}

#[derive(Default)]
struct ShownVisitor {
    message: Option<String>,
    fields: Vec<String>,
}

impl tracing::field::Visit for ShownVisitor {
    fn record_str(&mut self, field: &tracing::field::Field, value: &str) {
        if field.name() == "message" {
            self.record_debug(field, &format_args!("{value}"));
        } else {
            self.record_debug(field, &value);
        }
    }

    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let text = crate::secrets::redact(&format!("{value:?}"));
        let text = crate::shown::escape(&text);
        match field.name() {
            "message" => self.message = Some(text.into_owned()),
            name => self.fields.push(format!("{name}={text}")),
        }
    }
}

/// stderr, with the run's secrets masked in every log line (a URL path in a retry
/// warning may hold a rendered secret).
struct RedactingStderr;

/// One log event, buffered so it can be masked whole before it is written.
struct Line(Vec<u8>);

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for RedactingStderr {
    type Writer = Line;

    fn make_writer(&'a self) -> Line {
        Line(Vec::with_capacity(256))
    }
}

impl std::io::Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line {
    fn drop(&mut self) {
        if self.0.is_empty() {
            return;
        }
        let text = crate::secrets::redact(&String::from_utf8_lossy(&self.0));
        let _ = std::io::Write::write_all(&mut std::io::stderr().lock(), text.as_bytes());
    }
}
