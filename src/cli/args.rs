//! The clap definitions: every command, flag and help text.
//! Must not: run anything, or resolve settings (that is `run`, flags > env > file).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::emulator::EmulatorOptions;

const EXAMPLES: &str = "\
Examples:
  avala-pipe run pipelines/journey.yaml --emulator     # try a pipeline offline
  avala-pipe run nightly.yaml --dry-run                 # preview every request, send nothing
  AVALA_API_KEY=avk_... avala-pipe run nightly.yaml --report report.json
  avala-pipe validate pipelines/*.yaml                  # check files in CI
  avala-pipe graph nightly.yaml --format mermaid

Exit codes: 0 success, 1 the run failed, 2 invalid pipeline or invocation,
3 the plan changed (diff and --dry-run --diff, with --detailed-exitcode only),
130/143 interrupted by SIGINT/SIGTERM.";

#[derive(Parser, Debug)]
#[command(
    name = "avala-pipe",
    version,
    about = "Run declarative YAML pipelines against the Avala REST API",
    long_about = "Run declarative YAML pipelines against the Avala REST API: list datasets, \
upload files, create and wait for exports, download results, or call any endpoint. \
Steps form a dependency graph; outputs flow between steps through Jinja templates.",
    after_help = EXAMPLES,
    propagate_version = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
    /// More log output (-v: debug, -vv: trace).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    pub verbose: u8,
    /// Errors only.
    #[arg(short, long, global = true, conflicts_with = "verbose")]
    pub quiet: bool,
    /// Log line format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    /// Colour in human output.
    #[arg(long, value_enum, default_value_t = ColorChoice::Auto, global = true)]
    pub color: ColorChoice,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a pipeline (or preview it with --dry-run).
    #[command(after_help = "Examples:
  avala-pipe run pipelines/journey.yaml --emulator
  avala-pipe run nightly.yaml --dry-run --format json > plan.json
  avala-pipe run nightly.yaml --var project=prj_42 --report report.json")]
    Run(RunArgs),
    /// Check pipeline files and report every problem found.
    #[command(after_help = "Examples:
  avala-pipe validate pipelines/*.yaml
  avala-pipe validate nightly.yaml --format json | jq '.files[].diagnostics'")]
    Validate(ValidateArgs),
    /// Show what changed between two saved plans (steps, requests, bodies, files).
    #[command(after_help = "Examples:
  avala-pipe run nightly.yaml --dry-run --out old.json     # on the base branch
  avala-pipe run nightly.yaml --dry-run --out new.json     # on the head branch
  avala-pipe diff old.json new.json
  avala-pipe diff old.json new.json --format markdown > comment.md
  avala-pipe diff old.json new.json --detailed-exitcode    # exit 3 when the plan changed")]
    Diff(DiffArgs),
    /// Print the dependency graph of a pipeline.
    #[command(after_help = "Examples:
  avala-pipe graph nightly.yaml                  # Mermaid, renders in GitHub Markdown
  avala-pipe graph nightly.yaml --format dot | dot -Tsvg > graph.svg")]
    Graph(GraphArgs),
    /// Print the JSON Schema of the pipeline file format.
    #[command(after_help = "Example:
  avala-pipe schema > pipeline.schema.json")]
    Schema,
    /// Serve a local emulator of the Avala API (both API flavours, faults on demand).
    #[command(after_help = "Examples:
  avala-pipe emulator --port 8080
  avala-pipe emulator --flavor current --rate-limit 20 --export-bytes 1073741824")]
    Emulator(EmulatorOptions),
    /// Print shell completions.
    #[command(after_help = "Example:
  avala-pipe completions bash > /etc/bash_completion.d/avala-pipe")]
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print the man page (roff).
    #[command(after_help = "Example:
  avala-pipe man > avala-pipe.1 && man ./avala-pipe.1")]
    Man,
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// The pipeline file.
    pub file: PathBuf,
    /// Override a declared var (VALUE is read as a YAML scalar). Repeatable.
    #[arg(long = "var", value_name = "KEY=VALUE")]
    pub vars: Vec<String>,
    /// A YAML map of var overrides.
    #[arg(long, value_name = "FILE")]
    pub vars_file: Option<PathBuf>,
    /// Print every request the run would send, and send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// stdout format: text, or one JSON document (the plan or the run report).
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
    /// Steps in flight at once (overrides the file's `concurrency`).
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
    pub concurrency: Option<u16>,
    /// API base URL (overrides AVALA_BASE_URL and the file's api.base_url).
    #[arg(long, env = "AVALA_BASE_URL", value_name = "URL")]
    pub base_url: Option<String>,
    /// Which shape of the API to speak, `current` or `documented` (overrides the file's
    /// api.flavor; AVALA_API_FLAVOR is the flavour of files that name none; default current).
    #[arg(long, value_name = "FLAVOR", value_parser = ["current", "documented"])]
    pub api_flavor: Option<String>,
    /// Write the run report (JSON) to FILE.
    #[arg(long, value_name = "FILE")]
    pub report: Option<PathBuf>,
    /// Write the run report as one self-contained HTML page to FILE: a timeline of the
    /// steps, each request and wait, transfers, the graph and the failures.
    #[arg(long, value_name = "FILE", conflicts_with = "dry_run")]
    pub html: Option<PathBuf>,
    /// Write a JUnit XML report to FILE (one testcase per step).
    #[arg(long, value_name = "FILE")]
    pub junit: Option<PathBuf>,
    /// Append the pipeline's outputs to $GITHUB_OUTPUT (GitHub Actions).
    #[arg(long)]
    pub github_output: bool,
    /// Run against the built-in emulator (no account needed); --base-url and
    /// AVALA_BASE_URL are then ignored.
    #[arg(long)]
    pub emulator: bool,
    /// The run journal's file (default: .avala-pipe/<pipeline file stem>.journal.jsonl in
    /// the working directory).
    #[arg(long, value_name = "FILE", conflicts_with = "no_journal")]
    pub journal: Option<PathBuf>,
    /// Write no run journal.
    #[arg(long)]
    pub no_journal: bool,
    /// Skip what the journal of an earlier run says is done (exit 2 if the pipeline file or
    /// vars changed); --resume=force resumes anyway, reusing steps whose inputs did not change.
    #[arg(long, value_name = "force", num_args = 0..=1, require_equals = true,
          default_missing_value = "on", value_parser = ["on", "force"], conflicts_with = "no_journal")]
    pub resume: Option<String>,
    /// With --dry-run: also save the plan (JSON, secrets masked) to FILE, for `diff`.
    #[arg(long, value_name = "FILE", requires = "dry_run")]
    pub out: Option<PathBuf>,
    /// With --dry-run: print what changed since the plan saved in OLD instead of the plan.
    #[arg(long, value_name = "OLD", requires = "dry_run")]
    pub diff: Option<PathBuf>,
    /// The format of --diff (default: text, or json with --format json).
    #[arg(long, value_enum, value_name = "FORMAT", requires = "diff")]
    pub diff_format: Option<DiffFormat>,
    /// With --diff: exit 3 when the plan changed (0 when it did not).
    #[arg(long, requires = "diff")]
    pub detailed_exitcode: bool,
}

#[derive(Args, Debug, Clone)]
pub struct DiffArgs {
    /// The plan before (`run FILE --dry-run --out OLD.json`, or `--dry-run --format json`).
    pub old: PathBuf,
    /// The plan after.
    pub new: PathBuf,
    /// text for people, json for tools, markdown for a pull-request comment (always
    /// within GitHub's 65,535-character limit).
    #[arg(long, value_enum, default_value_t = DiffFormat::Text)]
    pub format: DiffFormat,
    /// Exit 3 when the plan changed (0 when it did not), like Terraform's
    /// -detailed-exitcode.
    #[arg(long)]
    pub detailed_exitcode: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiffFormat {
    Text,
    Json,
    Markdown,
}

#[derive(Args, Debug, Clone)]
pub struct ValidateArgs {
    /// Pipeline files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,
}

#[derive(Args, Debug, Clone)]
pub struct GraphArgs {
    pub file: PathBuf,
    #[arg(long, value_enum, default_value_t = GraphFormat::Mermaid)]
    pub format: GraphFormat,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum GraphFormat {
    Mermaid,
    Dot,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColorChoice {
    Auto,
    Always,
    Never,
}
