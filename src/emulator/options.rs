//! The emulator's settings: the clap arguments of `avala-pipe emulator` and the struct tests fill
//! in with `..Default::default()`.
//!
//! It takes flags (or struct fields) and gives plain values; `check` rejects impossible ones.
//! It must not read the environment, open files or start anything: the CLI layer owns the
//! process, and `Emulator::start` reads the `--seed`/`--faults` files.

use std::path::PathBuf;

/// Which of the two published shapes of the Avala API to serve (see `API.md`).
#[derive(
    clap::ValueEnum,
    Clone,
    Copy,
    Debug,
    PartialEq,
    Eq,
    Default,
    serde::Serialize,
    serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Flavor {
    /// The REST-over-HTTP documentation page: `items/total/has_more/cursor`, `id`,
    /// `{"error": {"code", "message", "details"}}`, exports `pending → processing → completed`.
    #[default]
    Documented,
    /// What the official SDKs speak today: `results/next/previous/count`, `uid`,
    /// `{"detail": ...}` and field maps, exports `requested → pending → processing → exported`.
    Current,
}

/// Options of the emulator. `Default` gives the same values as the command line without flags.
#[derive(clap::Args, Clone, Debug, PartialEq)]
pub struct EmulatorOptions {
    /// Port of the API listener on 127.0.0.1 (0 picks a free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
    /// Port of the storage listener (the second origin serving export downloads; 0 = free port).
    #[arg(long, default_value_t = 0)]
    pub storage_port: u16,
    /// Which shape of the API to serve.
    #[arg(long, value_enum, default_value_t = Flavor::Documented)]
    pub flavor: Flavor,
    /// Accept only this API key (by default any non-empty key is accepted).
    #[arg(long, value_name = "KEY")]
    pub key: Option<String>,
    /// Number of generated demo datasets (ds_0001, ds_0002, ...).
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub datasets: usize,
    /// Number of generated demo projects (prj_0001, ...).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub projects: usize,
    /// Items generated in each demo dataset.
    #[arg(long, value_name = "N", default_value_t = 20)]
    pub items_per_dataset: usize,
    /// Size in bytes of each export file: the export's JSON document padded with spaces to
    /// this size (streamed: gigabytes cost no memory). 0 (the default) serves the document as
    /// it is; a document larger than N is served whole.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub export_bytes: u64,
    /// Polls of `GET /exports/{id}` until an export is done.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub export_polls: u32,
    /// Datasets (and optionally projects) from a JSON file, instead of the generated ones.
    #[arg(long, value_name = "FILE")]
    pub seed: Option<PathBuf>,
    /// Answer 429 with Retry-After past N API requests in the current second.
    #[arg(long, value_name = "N")]
    pub rate_limit: Option<u32>,
    /// Uploads in flight at once (storage PUTs and POSTs, documented item POSTs) past which
    /// an upload is answered 429, as the published limit of 10 concurrent uploads (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 10)]
    pub max_uploads: u32,
    /// Exports running at once (created, not yet done) past which creating one is answered
    /// 429, as the published limit of 5 concurrent exports (0: no limit).
    #[arg(long, value_name = "N", default_value_t = 5)]
    pub max_exports: u32,
    /// Probability (0 to 1) that an API request gets a random 503.
    #[arg(long, value_name = "P", default_value_t = 0.0)]
    pub fail_rate: f64,
    /// Delay every API response by this many milliseconds.
    #[arg(long, value_name = "MS")]
    pub latency: Option<u64>,
    /// Exports end `failed` with a message instead of completing.
    #[arg(long)]
    pub fail_export: bool,
    /// Scripted fault plan (JSON): see the module documentation for the format.
    #[arg(long, value_name = "FILE")]
    pub faults: Option<PathBuf>,
    /// Keep at most this many requests in the in-memory request journal (oldest dropped).
    /// (About 1 KiB each; 0 keeps none.)
    #[arg(long, value_name = "N", default_value_t = 10_000)]
    pub journal_limit: usize,
    /// Current flavour: files larger than this many bytes get a v2 MULTIPART upload session
    /// (parts of 5 to 128 MiB) instead of a single PUT.
    #[arg(long, value_name = "BYTES", default_value_t = 100 * 1024 * 1024)]
    pub multipart_threshold: u64,
    /// Current flavour: the storage quota of `GET /datasets/manual-upload/quota/`; a presign
    /// that would exceed it gets 413.
    #[arg(long, value_name = "BYTES", default_value_t = 1 << 40)]
    pub upload_quota: u64,
    /// Current flavour: GETs of a new dataset until its status moves from `creating` to
    /// `created`.
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub dataset_polls: u32,
    /// Current flavour: GETs of a task (alone or in a list) until it is `completed`
    /// (`pending`, then `in_progress`, then `completed`).
    #[arg(long, value_name = "N", default_value_t = 2)]
    pub task_polls: u32,
    /// Current flavour, transitional: also serve the documented item routes
    /// (`GET /datasets/{uid}/items/`, the multipart items POST) that today's API no longer has.
    #[arg(long)]
    pub legacy_item_routes: bool,
}

impl Default for EmulatorOptions {
    fn default() -> Self {
        // One source of truth for the defaults: the clap attributes above.
        #[derive(clap::Parser)]
        struct Wrapper {
            #[command(flatten)]
            options: EmulatorOptions,
        }
        <Wrapper as clap::Parser>::try_parse_from(["emulator"])
            .expect("emulator options have no required flags")
            .options
    }
}

impl EmulatorOptions {
    /// Rejects values that cannot be served; the message names the flag.
    pub(crate) fn check(&self) -> Result<(), InvalidOption> {
        if !(0.0..=1.0).contains(&self.fail_rate) {
            return Err(InvalidOption(format!(
                "--fail-rate must be between 0 and 1, not {}",
                self.fail_rate
            )));
        }
        if self.rate_limit == Some(0) {
            return Err(InvalidOption("--rate-limit must be at least 1".into()));
        }
        if self.key.as_deref() == Some("") {
            return Err(InvalidOption("--key must not be empty".into()));
        }
        Ok(())
    }
}

/// An option value the emulator cannot serve; the message names the flag.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct InvalidOption(pub String);
