//! Logging setup: human lines or JSON objects on stderr, level from -v/-q or RUST_LOG,
//! colour only on a terminal (and never with NO_COLOR).

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
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .with_current_span(false)
            .with_span_list(false)
            .try_init(),
        LogFormat::Text => builder
            .with_ansi(color)
            .with_target(false)
            .without_time()
            .try_init(),
    };
}
