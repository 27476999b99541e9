//! `run` and `emulator`: settings resolution (flags > env > file > default), the
//! preflight plan, the async runtime, signals, and the exit code of a run.
//!
//! Takes: parsed arguments. Gives: an exit code.
//! Must not: evaluate steps or send requests itself (the step layer and the scheduler do).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicI32, Ordering};
use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use super::args::{OutputFormat, RunArgs};
use super::console;
use super::ExitCode;
use crate::api::{ApiConfig, Client, Endpoint, Secret, DEFAULT_BASE_URL};
use crate::emulator::{Emulator, EmulatorOptions};
use crate::execute::{self, RunSettings, RunStatus};
use crate::graph::Graph;
use crate::pipeline::check::check_base_url;
use crate::pipeline::model::{ApiFlavor, Pipeline, TValue};
use crate::pipeline::{self, yaml};
use crate::plan::Plan;
use crate::report::{self, Progress, ProgressMode, Redactor};
use crate::step::{Environment, Globals};

/// An invocation problem: printed, exit 2.
fn invalid(message: impl AsRef<str>) -> ExitCode {
    console::error(message.as_ref());
    ExitCode::Invalid
}

pub fn run(args: RunArgs, ui: UiSettings) -> ExitCode {
    let p = match pipeline::load(&args.file) {
        Ok(p) => p,
        Err(d) => {
            console::diagnostics(&d);
            return ExitCode::Invalid;
        }
    };
    // Secrets are masked from the first message on: a malformed `--var` may be one.
    let named = (p
        .secrets
        .iter()
        .map(|n| (n.clone(), std::env::var(n).unwrap_or_default())))
    .chain(std::env::var("AVALA_API_KEY").map(|k| ("AVALA_API_KEY".into(), k)));
    if let Err(msg) = crate::secrets::install_checked(named) {
        return invalid(msg.to_string());
    }
    let overrides = match overrides(&p, &args) {
        Ok(o) => o,
        Err(msg) => return invalid(msg),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return invalid(format!("cannot start the async runtime: {e}")),
    };
    runtime.block_on(run_async(p, overrides, args, ui))
}

/// How the run talks to people and to CI, resolved from flags and environment.
#[derive(Clone, Debug)]
pub struct UiSettings {
    pub progress: ProgressMode,
    pub quiet: bool,
    /// `GITHUB_ACTIONS=true`: annotations on failure.
    pub github: bool,
    /// `$GITHUB_STEP_SUMMARY`, when set under GitHub Actions.
    pub step_summary: Option<std::path::PathBuf>,
    /// `$GITHUB_OUTPUT`, when `--github-output` asks for it.
    pub github_output: Option<std::path::PathBuf>,
}

/// Everything a run or a dry-run needs, resolved from flags, environment and file.
struct Prepared {
    p: Arc<Pipeline>,
    graph: Arc<Graph>,
    endpoint: Endpoint,
    key: Option<String>,
    environment: Environment,
    globals: Globals,
    redactor: Redactor,
    concurrency: usize,
}

async fn run_async(
    p: Pipeline,
    overrides: Vec<(String, TValue)>,
    args: RunArgs,
    ui: UiSettings,
) -> ExitCode {
    // The emulator, when asked for, lives as long as the run, in the pipeline's flavour.
    let emulator = if args.emulator && !args.dry_run {
        let flavor = match flavor(&p, &args) {
            ApiFlavor::Documented => crate::emulator::Flavor::Documented,
            ApiFlavor::Current => crate::emulator::Flavor::Current,
        };
        let options = EmulatorOptions {
            flavor,
            ..EmulatorOptions::default()
        };
        match Emulator::start(options).await {
            Ok(e) => Some(e),
            Err(e) => return invalid(format!("cannot start the emulator: {e}")),
        }
    } else {
        None
    };
    let prepared = match prepare(p, &overrides, &args, emulator.as_ref()) {
        Ok(prepared) => prepared,
        Err(code) => return code,
    };
    let plan_as_text_only = args.format == OutputFormat::Text
        && args.resume.is_none()
        && args.out.is_none()
        && args.diff.is_none();
    if args.dry_run && plan_as_text_only {
        return print_text_plan(prepared, &args);
    }
    // The HTTP client reads the system's root certificates (~5 ms): a real run builds it on
    // another thread while the plan is checked.
    let client = (!args.dry_run).then(|| {
        let cfg = ApiConfig::new(
            prepared.endpoint.clone(),
            prepared.key.clone().map(Secret::new),
        );
        tokio::task::spawn_blocking(move || Client::new(cfg))
    });
    // The plan: what dry-run prints, and the preflight of a real run (which keeps
    // nothing of it).
    let build = match args.dry_run {
        true => crate::plan::build,
        false => crate::plan::preflight,
    };
    let plan = match build(
        &prepared.p,
        &prepared.graph,
        &prepared.globals,
        &prepared.endpoint,
        prepared.concurrency,
    ) {
        Ok(plan) => plan,
        Err(e) => return plan_error(&prepared, &e),
    };
    if args.dry_run {
        let code = match args.resume.is_some() {
            true => print_resume_plan(&plan, &args, &prepared).await,
            false => print_plan(&plan, &args, &prepared),
        };
        // The process ends with the dry-run: the plan and the pipeline (several KB a step)
        // are left to the exit, not freed one allocation at a time.
        std::mem::forget(plan);
        std::mem::forget(prepared);
        return code;
    }
    drop(plan);
    let client = match client {
        Some(task) => match task.await {
            Ok(Ok(client)) => client,
            Ok(Err(e)) => return invalid(e.to_string()),
            Err(e) => return invalid(format!("cannot build the HTTP client: {e}")),
        },
        None => return invalid("internal error: no HTTP client for a real run"),
    };
    let code = execute_run(prepared, client, &args, &ui, emulator.as_ref()).await;
    if let Some(e) = emulator {
        e.shutdown().await;
    }
    code
}

/// Resolves the base URL, the key, the environment, the vars and the redactor.
fn prepare(
    p: Pipeline,
    overrides: &[(String, TValue)],
    args: &RunArgs,
    emulator: Option<&Emulator>,
) -> Result<Prepared, ExitCode> {
    let endpoint = endpoint(&p, args, emulator)?;
    let key = api_key(args, emulator)?;
    let environment = environment(args.dry_run);
    let globals = Globals::new(&p, &environment, overrides)
        .map_err(|e| invalid(format!("{}: {e}", p.path.display())))?;
    let mut secret_values: Vec<String> = p
        .secrets
        .iter()
        .filter_map(|s| environment.env.get(s).cloned())
        .collect();
    if let Ok(k) = std::env::var("AVALA_API_KEY") {
        secret_values.push(k);
    }
    secret_values.extend(key.clone());
    let redactor = Redactor::new(secret_values.iter().flat_map(|s| crate::secrets::forms(s)));
    crate::secrets::install(redactor.clone());
    let concurrency = args.concurrency.map(usize::from).unwrap_or(p.concurrency);
    let graph = Graph::of(&p);
    Ok(Prepared {
        p: Arc::new(p),
        graph,
        endpoint,
        key,
        environment,
        globals,
        redactor,
        concurrency,
    })
}

/// The API's endpoint: `--base-url` > `AVALA_BASE_URL` > the file > the default, or the
/// in-process emulator.
fn endpoint(
    p: &Pipeline,
    args: &RunArgs,
    emulator: Option<&Emulator>,
) -> Result<Endpoint, ExitCode> {
    let base_url = match emulator {
        Some(e) => e.base_url(),
        None if args.emulator => "http://127.0.0.1:0/api/v1".to_string(),
        // An empty --base-url / AVALA_BASE_URL counts as unset.
        None => args
            .base_url
            .clone()
            .filter(|u| !u.trim().is_empty())
            .or_else(|| p.base_url.clone())
            .unwrap_or_else(|| DEFAULT_BASE_URL.to_string()),
    };
    // Credentials in the URL would be shown wherever the URL is: refuse them unseen.
    if reqwest::Url::parse(&base_url)
        .is_ok_and(|u| !u.username().is_empty() || u.password().is_some())
    {
        return Err(invalid(
            "the base URL carries credentials (user:password@): they would be shown in every plan and log; give the URL without them (the key goes in AVALA_API_KEY)",
        ));
    }
    // The URL as it will be used: a base URL is never rendered, so template syntax in it
    // is not exempt here as it is in `validate` (it would hide a plain-http host).
    if crate::template::has_syntax(&base_url) {
        return Err(invalid(format!(
            "base URL `{base_url}`: templates are not rendered in a base URL; give the URL itself (https://, or plain http:// to a loopback host only)"
        )));
    }
    check_base_url(&base_url).map_err(|e| invalid(e.to_string()))?;
    let Ok(url) = reqwest::Url::parse(&base_url) else {
        return Err(invalid(format!("invalid base URL `{base_url}`")));
    };
    let mut endpoint = Endpoint::new(url, flavor(p, args));
    if let Some(slash) = p.trailing_slash {
        endpoint.trailing_slash = slash;
    }
    Ok(endpoint)
}

/// The flavour in force: `--api-flavor` > the file > AVALA_API_FLAVOR > the default. A
/// file that names its flavour was written for it; the variable is the default for files
/// that do not.
fn flavor(p: &Pipeline, args: &RunArgs) -> ApiFlavor {
    let named = |v: &Option<String>| v.as_deref().and_then(ApiFlavor::from_name);
    named(&args.api_flavor)
        .or(p.flavor)
        .or_else(|| named(&std::env::var("AVALA_API_FLAVOR").ok()))
        .unwrap_or(ApiFlavor::DEFAULT)
}

/// The API key: the emulator's demo key, none for a dry-run, else AVALA_API_KEY.
fn api_key(args: &RunArgs, emulator: Option<&Emulator>) -> Result<Option<String>, ExitCode> {
    if let Some(e) = emulator {
        return Ok(Some(e.demo_key()));
    }
    if args.dry_run {
        return Ok(None);
    }
    match std::env::var("AVALA_API_KEY") {
        Ok(k) if !k.trim().is_empty() => Ok(Some(k)),
        Err(std::env::VarError::NotUnicode(_)) => Err(invalid(
            "AVALA_API_KEY is not valid UTF-8 text: check how the key is stored",
        )),
        _ => Err(invalid(
            "AVALA_API_KEY is not set: a real run needs the API key in the AVALA_API_KEY environment variable (use --dry-run to preview without it, or --emulator to try offline)",
        )),
    }
}

/// What the run knows of its surroundings (the key left out).
fn environment(dry_run: bool) -> Environment {
    let now = httpdate_now();
    Environment {
        // Variables that are not Unicode are left out (never printed: one may be a secret).
        env: std::env::vars_os()
            .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?)))
            .filter(|(k, _)| k != "AVALA_API_KEY")
            .collect::<BTreeMap<_, _>>(),
        run_id: format!("run-{}-{:04x}", now.0, fastrand::u16(..)),
        started_at: now.1.clone(),
        date: now.1[..10].to_string(),
        preview: dry_run,
    }
}

/// A plan that cannot be built: exit 2, as the run would.
fn plan_error(prepared: &Prepared, e: &crate::plan::PlanError) -> ExitCode {
    invalid(prepared.redactor.text(&format!(
        "step `{}` ({}:{}): {}",
        e.step,
        prepared.p.path.display(),
        e.line,
        e.message
    )))
}

/// `--dry-run` in text, with no other use of the plan (`--out`, `--diff`, `--resume`): the
/// text of each step is written as the step is planned, the planned requests are not kept.
fn print_text_plan(prepared: Prepared, args: &RunArgs) -> ExitCode {
    let text = crate::plan::build_text(
        &prepared.p,
        &prepared.graph,
        &prepared.globals,
        &prepared.endpoint,
        prepared.concurrency,
    );
    let code = match text {
        Ok(text) => {
            emulator_note(args, &prepared);
            console::stdout_masked(&text, &prepared.redactor);
            ExitCode::Success
        }
        Err(e) => plan_error(&prepared, &e),
    };
    // The process ends with the dry-run: the pipeline is left to the exit (above).
    std::mem::forget(prepared);
    code
}

/// `--emulator` with `--dry-run`: the URLs shown are not an emulator's.
fn emulator_note(args: &RunArgs, prepared: &Prepared) {
    if args.emulator {
        console::info(&format!(
            "note: a dry-run starts no emulator; its URLs show {}",
            prepared.endpoint.base_url.as_str().trim_end_matches('/')
        ));
    }
}

fn print_plan(plan: &Plan, args: &RunArgs, prepared: &Prepared) -> ExitCode {
    emulator_note(args, prepared);
    let redactor = &prepared.redactor;
    if args.out.is_some() || args.diff.is_some() {
        let mut doc = serde_json::to_value(plan).unwrap_or_default();
        redactor.json(&mut doc);
        if let Some(code) = super::commands::dry_run_extras(&doc, args) {
            return code;
        }
    }
    match args.format {
        OutputFormat::Json => {
            let mut doc = serde_json::to_value(plan).unwrap_or_default();
            redactor.json(&mut doc);
            console::stdout_text(&(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"));
        }
        OutputFormat::Text => console::stdout_text(&redactor.text(&crate::plan::to_text(plan))),
    }
    ExitCode::Success
}

/// `--dry-run --resume`: the plan, then what a resume would reuse and skip, and why.
async fn print_resume_plan(plan: &Plan, args: &RunArgs, prepared: &Prepared) -> ExitCode {
    let inputs = prepared.journal_inputs(args);
    let (notes, decisions) = match crate::journal::preview::decide(&inputs).await {
        Ok(d) => d,
        Err(e) => return invalid(prepared.redactor.text(&e.to_string())),
    };
    match args.format {
        OutputFormat::Json => {
            let mut doc = serde_json::to_value(plan).unwrap_or_default();
            doc["resume"] = serde_json::json!({
                "journal": inputs.path.display().to_string(),
                "notes": notes,
                "steps": decisions,
            });
            prepared.redactor.json(&mut doc);
            console::stdout_text(&(serde_json::to_string_pretty(&doc).unwrap_or_default() + "\n"));
        }
        OutputFormat::Text => {
            let text = crate::plan::to_text(plan)
                + &crate::journal::preview::to_text(&inputs.path, &notes, &decisions);
            console::stdout_text(&prepared.redactor.text(&text));
        }
    }
    ExitCode::Success
}

/// A real run: the scheduler, the progress printer, then the reports and the exit code.
async fn execute_run(
    prepared: Prepared,
    client: Client,
    args: &RunArgs,
    ui: &UiSettings,
    emulator: Option<&Emulator>,
) -> ExitCode {
    let cancel = CancellationToken::new();
    let signal = Arc::new(AtomicI32::new(0));
    spawn_signal_handler(cancel.clone(), signal.clone());
    let p = prepared.p.clone();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    if let (Some(e), false) = (emulator, ui.quiet) {
        console::info(&format!("using the built-in emulator at {}", e.base_url()));
    }
    let mut progress = Progress::new(
        p.path.display().to_string(),
        prepared.redactor.clone(),
        ui.progress,
        ui.quiet,
    );
    // The timeline (every attempt and wait) is kept only for the reports that draw it.
    let mut timeline = report::timeline::Timeline::new();
    let keep_timeline = args.html.is_some() || ui.step_summary.is_some();
    let printer = tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            progress.event(&event);
            if keep_timeline {
                timeline.record(&event);
            }
        }
        (progress, timeline)
    });
    let journal = match open_journal(&prepared, args) {
        Ok(j) => j,
        Err(code) => return code,
    };
    let settings = RunSettings {
        client,
        concurrency: prepared.concurrency,
        cancel,
        globals: prepared.globals.clone(),
        graph: prepared.graph.clone(),
        journal: journal.as_ref().map(|(_, j)| j.clone()),
        timeline: keep_timeline,
        keep: execute::Keep {
            outputs: args.report.is_some() || args.format == OutputFormat::Json,
            iterations: args.report.is_some()
                || args.format == OutputFormat::Json
                || args.junit.is_some()
                || args.html.is_some(),
        },
    };
    let result = execute::run(p.clone(), settings, tx).await;
    if let Some((writer, senders)) = journal {
        // The writer stops once every sender is gone.
        drop(senders);
        if let Err(e) = writer.close().await {
            console::error(&prepared.redactor.text(&e.to_string()));
        }
    }
    let Ok((mut progress, timeline)) = printer.await else {
        return ExitCode::RunFailed;
    };
    progress.summary(&result);
    write_reports(&prepared, args, ui, &result, &timeline);
    let status = result.status;
    // The process ends with this run: its outputs (a 20k-item list is ~half a million
    // allocations) are left to the exit, not freed one by one (~15 ms of a list's run).
    std::mem::forget(result);
    match (status, signal.load(Ordering::SeqCst)) {
        (RunStatus::Interrupted, 15) => ExitCode::Terminated,
        (RunStatus::Interrupted, _) => ExitCode::Interrupted,
        (RunStatus::Failed, _) => ExitCode::RunFailed,
        (RunStatus::Succeeded, _) => ExitCode::Success,
    }
}

impl Prepared {
    /// What the journal needs of this run.
    fn journal_inputs(&self, args: &RunArgs) -> crate::journal::preview::JournalInputs {
        let mut secrets: Vec<(String, String)> = self
            .p
            .secrets
            .iter()
            .filter_map(|s| Some((s.clone(), self.environment.env.get(s)?.clone())))
            .collect();
        secrets.extend(self.key.clone().map(|k| ("AVALA_API_KEY".to_string(), k)));
        crate::journal::preview::JournalInputs {
            p: self.p.clone(),
            graph: self.graph.clone(),
            globals: self.globals.clone(),
            api: self.endpoint.base_url.to_string(),
            secrets,
            redactor: self.redactor.clone(),
            path: args
                .journal
                .clone()
                .unwrap_or_else(|| crate::journal::default_path(&self.p.path)),
            mode: match args.resume.as_deref() {
                None => crate::journal::resume::Mode::Off,
                Some("force") => crate::journal::resume::Mode::Force,
                Some(_) => crate::journal::resume::Mode::On,
            },
        }
    }
}

/// The run journal (none with --no-journal, or with --emulator, whose state ends with the
/// run); a refused resume is exit 2.
fn open_journal(
    prepared: &Prepared,
    args: &RunArgs,
) -> Result<Option<(crate::journal::Writer, crate::journal::resume::RunJournal)>, ExitCode> {
    if args.emulator && args.resume.is_some() {
        return Err(invalid(
            "--resume needs the server the earlier run used; the built-in emulator of --emulator starts empty at every run (run `avala-pipe emulator` and give its --base-url instead)",
        ));
    }
    if args.no_journal || (args.emulator && args.journal.is_none()) {
        return Ok(None);
    }
    let inputs = prepared.journal_inputs(args);
    let opened = inputs
        .open()
        .map_err(|e| invalid(prepared.redactor.text(&e.to_string())))?;
    for note in &opened.notes {
        console::warn(&prepared.redactor.text(note));
    }
    let writer = match crate::journal::Writer::start(
        inputs.path.clone(),
        opened.doc,
        prepared.redactor.clone(),
    ) {
        Ok(w) => w,
        // Only the default journal is optional: a run in a read-only folder still runs.
        Err(e) if args.journal.is_none() && args.resume.is_none() => {
            console::warn(&prepared.redactor.text(&format!(
                "{e}; running without a journal (--resume will not be possible)"
            )));
            return Ok(None);
        }
        Err(e) => return Err(invalid(prepared.redactor.text(&e.to_string()))),
    };
    let run = crate::journal::resume::RunJournal {
        fp: opened.fp,
        redactor: prepared.redactor.clone(),
        prior: opened.prior,
        sink: writer.sender(),
    };
    Ok(Some((writer, run)))
}

/// `--report`, `--junit`, GitHub's outputs, and the JSON report on stdout.
fn write_reports(
    prepared: &Prepared,
    args: &RunArgs,
    ui: &UiSettings,
    result: &execute::RunResult,
    timeline: &report::timeline::Timeline,
) {
    let (p, redactor) = (&prepared.p, &prepared.redactor);
    let started_at = &prepared.environment.started_at;
    if let Some(path) = &args.html {
        let page = report::html::to_html(p, started_at, result, timeline, redactor);
        if let Err(e) = std::fs::write(path, page) {
            console::error(&format!(
                "cannot write the HTML report to {}: {e}",
                path.display()
            ));
        }
    }
    // The report is built only when asked for: outputs may hold big lists.
    let wants_report = args.report.is_some() || args.format == OutputFormat::Json;
    let report = wants_report
        .then(|| report::report_json(&p.name, &prepared.environment.started_at, result, redactor));
    if let (Some(path), Some(report)) = (&args.report, &report) {
        if let Err(e) = write_file(path, report) {
            console::error(&format!(
                "cannot write the report to {}: {e}",
                path.display()
            ));
        }
    }
    if let Some(path) = &args.junit {
        let xml = report::junit::to_xml(&p.name, &p.path.display().to_string(), result, redactor);
        if let Err(e) = std::fs::write(path, xml) {
            console::error(&format!(
                "cannot write the JUnit report to {}: {e}",
                path.display()
            ));
        }
    }
    publish_to_github(ui, p, result, timeline, redactor);
    if let (OutputFormat::Json, Some(report)) = (args.format, &report) {
        console::stdout_text(&(serde_json::to_string_pretty(report).unwrap_or_default() + "\n"));
    }
}

/// GitHub Actions: annotations for failed steps (on stderr, which the runner scans for
/// workflow commands too, so stdout stays one JSON document), the step summary table, and
/// pipeline outputs.
fn publish_to_github(
    ui: &UiSettings,
    p: &Pipeline,
    result: &execute::RunResult,
    timeline: &report::timeline::Timeline,
    redactor: &Redactor,
) {
    use std::io::Write as _;
    if ui.github {
        for line in report::github::run_annotations(&p.path.display().to_string(), result, redactor)
        {
            eprintln!("{line}");
        }
    }
    let append = |path: &Path, text: String, what: &str| {
        let written = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()));
        if let Err(e) = written {
            console::error(&format!(
                "cannot append the {what} to {}: {e}",
                path.display()
            ));
        }
    };
    if let Some(path) = &ui.step_summary {
        append(
            path,
            report::github::step_summary(p, result, timeline, redactor),
            "step summary",
        );
    }
    if let Some(path) = &ui.github_output {
        append(
            path,
            report::github::outputs_file(&result.outputs, redactor),
            "outputs",
        );
    }
}

fn write_file(path: &Path, value: &serde_json::Value) -> std::io::Result<()> {
    let text = serde_json::to_string_pretty(value).unwrap_or_default() + "\n";
    std::fs::write(path, text)
}

/// First SIGINT/SIGTERM: cancel (transfers abort, temporary files go). Second: exit now.
fn spawn_signal_handler(cancel: CancellationToken, which: Arc<AtomicI32>) {
    tokio::spawn(async move {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let (Ok(mut int), Ok(mut term)) = (
                signal(SignalKind::interrupt()),
                signal(SignalKind::terminate()),
            ) else {
                return;
            };
            let mut received = 0;
            loop {
                let code = tokio::select! {
                    _ = int.recv() => 2,
                    _ = term.recv() => 15,
                };
                received += 1;
                if received == 1 {
                    which.store(code, Ordering::SeqCst);
                    console::warn("interrupted: stopping (starting nothing new, aborting transfers); send the signal again to exit at once");
                    cancel.cancel();
                } else {
                    // Exiting skips destructors: remove the partial files by name first.
                    crate::actions::scratch::remove_all();
                    std::process::exit(if code == 15 { 143 } else { 130 });
                }
            }
        }
        #[cfg(not(unix))]
        {
            if tokio::signal::ctrl_c().await.is_ok() {
                which.store(2, Ordering::SeqCst);
                cancel.cancel();
            }
        }
    });
}

/// The var overrides of `--vars-file` then `--var` (later wins); an undeclared name is
/// an error. They are given to the run, not written into the checked pipeline.
fn overrides(p: &Pipeline, args: &RunArgs) -> Result<Vec<(String, TValue)>, String> {
    let mut overrides: Vec<(String, TValue, String)> = Vec::new();
    if let Some(path) = &args.vars_file {
        let text = read_vars_file(path)?;
        let map =
            yaml::parse_map_of_scalars(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        for (k, v) in map {
            overrides.push((k, v, format!("--vars-file {}", path.display())));
        }
    }
    for item in &args.vars {
        let Some((k, v)) = item.split_once('=') else {
            return Err(format!("--var {item}: expected KEY=VALUE"));
        };
        if crate::secrets::redact(item) != *item && !p.vars.contains_key(k.trim()) {
            return Err("--var: an argument holding a secret's value does not start with a declared var's name and `=`; it is not shown".into());
        }
        overrides.push((
            k.trim().to_string(),
            yaml::parse_scalar(v),
            format!("--var {k}"),
        ));
    }
    let mut out = Vec::with_capacity(overrides.len());
    for (name, value, origin) in overrides {
        if !p.vars.contains_key(&name) {
            return Err(undeclared(p, &name, &origin));
        }
        out.push((name, value));
    }
    Ok(out)
}

fn undeclared(p: &Pipeline, name: &str, origin: &str) -> String {
    let declared: Vec<&str> = p.vars.keys().map(String::as_str).collect();
    let hint = crate::pipeline::diag::did_you_mean(name, declared.iter().copied())
        .map(|s| format!(" (did you mean `{s}`?)"))
        .unwrap_or_default();
    format!(
        "{origin}: `{name}` is not a declared var of {}{hint}; declared: {}",
        p.path.display(),
        if declared.is_empty() {
            "none".to_string()
        } else {
            declared.join(", ")
        }
    )
}

/// A `--vars-file`, read with the pipeline file's size limit (it may be a FIFO or a device:
/// `/dev/zero` must be an error, not all the memory there is).
fn read_vars_file(path: &Path) -> Result<String, String> {
    use std::io::Read as _;
    let limit = yaml::MAX_FILE_BYTES as u64;
    let cannot = |e: std::io::Error| format!("cannot read {}: {e}", path.display());
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .map_err(cannot)?
        .take(limit + 1)
        .read_to_end(&mut bytes)
        .map_err(cannot)?;
    if bytes.len() as u64 > limit {
        return Err(format!(
            "{}: larger than {} MiB; vars files are limited like pipeline files",
            path.display(),
            limit >> 20
        ));
    }
    String::from_utf8(bytes).map_err(|_| format!("{}: not valid UTF-8 text", path.display()))
}

/// (unix seconds, ISO 8601 UTC) of now.
fn httpdate_now() -> (u64, String) {
    let secs = crate::clock::now();
    (secs, crate::clock::iso8601(secs))
}

pub fn emulator(opts: EmulatorOptions) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return invalid(format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(crate::emulator::serve(opts)) {
        Ok(()) => ExitCode::Success,
        Err(e) => invalid(format!("emulator: {e}")),
    }
}
