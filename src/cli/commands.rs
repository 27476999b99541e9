//! One function per command. Each returns its exit code; nothing below this layer exits.
//! Must not: hold a stage's logic (each command calls into the library).

use std::io::Write as _;

use clap::CommandFactory;

use std::path::Path;

use super::args::{
    Cli, Command, DiffArgs, DiffFormat, GraphArgs, GraphFormat, OutputFormat, RunArgs, ValidateArgs,
};
use super::console;
use super::ExitCode;
use crate::pipeline::{self, schema};
use crate::report::ProgressMode;

/// A live display only on a terminal, outside CI, and not on a dumb terminal.
fn live_progress() -> bool {
    use std::io::IsTerminal as _;
    std::io::stderr().is_terminal()
        && std::env::var_os("CI").is_none()
        && std::env::var("TERM").map_or(true, |t| t != "dumb")
}

pub fn dispatch(cli: Cli, color: bool) -> ExitCode {
    let json_logs = cli.log_format == super::args::LogFormat::Json;
    let github = std::env::var("GITHUB_ACTIONS").is_ok_and(|v| v == "true");
    super::console::init(super::console::Console {
        json: json_logs,
        color,
        github,
    });
    let quiet = cli.quiet;
    match cli.command {
        Command::Validate(args) => validate(args),
        Command::Graph(args) => graph(args),
        Command::Diff(args) => diff(args),
        Command::Schema => {
            console::stdout_text(&schema::schema_text());
            ExitCode::Success
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            let mut out = Vec::new();
            clap_complete::generate(shell, &mut cmd, "avala-pipe", &mut out);
            console::stdout_text(&String::from_utf8_lossy(&out));
            ExitCode::Success
        }
        Command::Man => {
            let man = clap_mangen::Man::new(Cli::command());
            let mut out = Vec::new();
            if man.render(&mut out).is_err() {
                return ExitCode::RunFailed;
            }
            let _ = std::io::stdout().write_all(&out);
            ExitCode::Success
        }
        Command::Run(args) => {
            let ui = super::run::UiSettings {
                progress: if json_logs {
                    ProgressMode::Json
                } else if live_progress() {
                    ProgressMode::Live
                } else {
                    ProgressMode::Plain
                },
                quiet,
                github,
                step_summary: std::env::var_os("GITHUB_STEP_SUMMARY")
                    .filter(|v| github && !v.is_empty())
                    .map(Into::into),
                github_output: if args.github_output {
                    match std::env::var_os("GITHUB_OUTPUT").filter(|v| !v.is_empty()) {
                        Some(path) => Some(path.into()),
                        None => {
                            super::console::error("--github-output needs the GITHUB_OUTPUT environment variable (set by GitHub Actions)");
                            return ExitCode::Invalid;
                        }
                    }
                } else {
                    None
                },
            };
            super::run::run(args, ui)
        }
        Command::Emulator(opts) => super::run::emulator(opts),
    }
}

fn validate(args: ValidateArgs) -> ExitCode {
    let results = pipeline::check::load_all(&args.files);
    let valid = results.iter().all(Result::is_ok);
    match args.format {
        OutputFormat::Json => {
            let files: Vec<serde_json::Value> = args
                .files
                .iter()
                .zip(&results)
                .map(|(path, r)| match r {
                    Ok(p) => serde_json::json!({
                        "file": path.display().to_string(),
                        "valid": true,
                        "pipeline": p.name,
                        "steps": p.steps.len(),
                        "diagnostics": [],
                    }),
                    Err(d) => serde_json::json!({
                        "file": path.display().to_string(),
                        "valid": false,
                        "diagnostics": d.to_json(),
                    }),
                })
                .collect();
            let doc = serde_json::json!({ "valid": valid, "files": files });
            console::stdout_text(&(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"));
        }
        OutputFormat::Text => {
            for (path, r) in args.files.iter().zip(&results) {
                match r {
                    Ok(p) => super::console::info(&format!(
                        "{}: valid ({} step{})",
                        path.display(),
                        p.steps.len(),
                        if p.steps.len() == 1 { "" } else { "s" }
                    )),
                    Err(d) => super::console::diagnostics(d),
                }
            }
        }
    }
    // The process ends here: the checked pipelines (several KB a step) are left to the
    // exit, not freed one allocation at a time.
    std::mem::forget(results);
    if valid {
        ExitCode::Success
    } else {
        ExitCode::Invalid
    }
}

fn graph(args: GraphArgs) -> ExitCode {
    let p = match pipeline::load(&args.file) {
        Ok(p) => p,
        Err(d) => {
            super::console::diagnostics(&d);
            return ExitCode::Invalid;
        }
    };
    let text = match args.format {
        GraphFormat::Mermaid => crate::graph::to_mermaid(&p),
        GraphFormat::Dot => crate::graph::to_dot(&p),
        GraphFormat::Json => {
            serde_json::to_string_pretty(&crate::graph::to_json(&p)).unwrap_or_default() + "\n"
        }
    };
    console::stdout_text(&text);
    ExitCode::Success
}

/// A saved plan, read as JSON.
fn read_plan(path: &Path) -> Result<serde_json::Value, ExitCode> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        console::error(&format!("cannot read the plan {}: {e}", path.display()));
        ExitCode::Invalid
    })?;
    serde_json::from_str(&text).map_err(|e| {
        console::error(&format!(
            "{}: not a JSON plan ({e}); save one with `avala-pipe run FILE --dry-run --out PLAN.json`",
            path.display()
        ));
        ExitCode::Invalid
    })
}

/// Prints the diff of two plans; exit 3 for a change only when asked.
fn print_diff(
    old: &serde_json::Value,
    new: &serde_json::Value,
    format: DiffFormat,
    detailed: bool,
) -> ExitCode {
    use crate::plan::diff;
    let d = match diff::diff(old, new) {
        Ok(d) => d,
        Err(e) => {
            console::error(&e.to_string());
            return ExitCode::Invalid;
        }
    };
    let text = match format {
        DiffFormat::Text => diff::to_text(&d),
        DiffFormat::Json => diff::to_json(&d),
        DiffFormat::Markdown => diff::to_markdown(&d),
    };
    console::stdout_text(&text);
    if detailed && d.changed {
        ExitCode::Changed
    } else {
        ExitCode::Success
    }
}

fn diff(args: DiffArgs) -> ExitCode {
    let old = match read_plan(&args.old) {
        Ok(v) => v,
        Err(code) => return code,
    };
    let new = match read_plan(&args.new) {
        Ok(v) => v,
        Err(code) => return code,
    };
    print_diff(&old, &new, args.format, args.detailed_exitcode)
}

/// A dry-run's `--out` and `--diff`, given its plan as JSON (masked): `None` when the
/// plan is to be printed as usual.
pub(super) fn dry_run_extras(plan: &serde_json::Value, args: &RunArgs) -> Option<ExitCode> {
    if let Some(path) = &args.out {
        let text = serde_json::to_string_pretty(plan).unwrap_or_default() + "\n";
        if let Err(e) = std::fs::write(path, text) {
            console::error(&format!("cannot write the plan to {}: {e}", path.display()));
            return Some(ExitCode::Invalid);
        }
    }
    let old_path = args.diff.as_ref()?;
    let old = match read_plan(old_path) {
        Ok(v) => v,
        Err(code) => return Some(code),
    };
    let format = args.diff_format.unwrap_or(match args.format {
        OutputFormat::Json => DiffFormat::Json,
        OutputFormat::Text => DiffFormat::Text,
    });
    Some(print_diff(&old, plan, format, args.detailed_exitcode))
}
