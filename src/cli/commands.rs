//! One function per command. Each returns its exit code; nothing below this layer exits.

use std::io::Write as _;

use clap::CommandFactory;

use super::args::{Cli, Command, GraphArgs, GraphFormat, OutputFormat, ValidateArgs};
use super::ExitCode;
use crate::pipeline::{self, schema};

pub fn dispatch(cli: Cli, color: bool) -> ExitCode {
    let json_logs = cli.log_format == super::args::LogFormat::Json;
    match cli.command {
        Command::Validate(args) => validate(args, color),
        Command::Graph(args) => graph(args, color),
        Command::Schema => {
            print!("{}", schema::schema_text());
            ExitCode::Success
        }
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(shell, &mut cmd, "avala-pipe", &mut std::io::stdout());
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
        Command::Run(args) => super::run::run(args, color, json_logs),
        Command::Emulator(opts) => super::run::emulator(opts),
    }
}

fn validate(args: ValidateArgs, color: bool) -> ExitCode {
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
            println!("{}", serde_json::to_string_pretty(&doc).unwrap_or_default());
        }
        OutputFormat::Text => {
            for (path, r) in args.files.iter().zip(&results) {
                match r {
                    Ok(p) => eprintln!(
                        "{}: valid ({} step{})",
                        path.display(),
                        p.steps.len(),
                        if p.steps.len() == 1 { "" } else { "s" }
                    ),
                    Err(d) => eprint!("{}", d.render(color)),
                }
            }
        }
    }
    if valid {
        ExitCode::Success
    } else {
        ExitCode::Invalid
    }
}

fn graph(args: GraphArgs, color: bool) -> ExitCode {
    let p = match pipeline::load(&args.file) {
        Ok(p) => p,
        Err(d) => {
            eprint!("{}", d.render(color));
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
    print!("{text}");
    ExitCode::Success
}
