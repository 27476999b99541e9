//! The built-in Avala API emulator (SPEC §7): a local, stateful stand-in for the Avala REST API
//! in both shapes of `API.md`, for demos, offline development and tests.
//!
//! It takes `EmulatorOptions` and gives a running server on two loopback listeners: the API
//! (`base_url()`, everything under `/api/v1`) and a storage origin (`storage_origin()`) that
//! serves export downloads behind presigned-looking URLs, as object storage would. Tests and
//! `run --emulator` start it in-process with `Emulator::start`; `avala-pipe emulator` calls
//! `serve`. It must not bind anything but 127.0.0.1, read the process environment, or log
//! header values (keys are secrets).
//!
//! # Seeded data (deterministic)
//! - Datasets `ds_0001`, `ds_0002`, … (`--datasets N`; numbers zero-padded to at least 4
//!   digits), named `Demo dataset N`, `data_type` cycling image, video, lidar, mcap, splat.
//!   Generated on demand from the index, so `--datasets 100000` costs nothing at start-up.
//! - Items of dataset N: `item_NNNN_0001` … (`--items-per-dataset`), keys like
//!   `image_0001.jpg`; uploads continue the numbering (`item_0001_0021` after 20 seeded).
//! - Projects `prj_0001`, … (`--projects N`); exports `exp_0001`, … in creation order.
//! - `--seed FILE`: `{"datasets": [{"id", "name", "slug", "data_type", "visibility",
//!   "items": [{"id", "key", "metadata"}] | "item_count"}], "projects": [{"id", "name",
//!   "status"}]}` (every field optional; a bare list of datasets also works). Its datasets
//!   replace the generated ones; its projects, when given, replace the generated projects.
//!
//! - The examples of Avala's REST page: `dataset_abc123` and `project_abc123` exist in both
//!   flavours (reachable by id, kept out of lists).
//!
//! # Routes (each with and without a trailing slash; `docs/emulator.md` has the full list)
//! API (key in `X-Avala-Api-Key`; any non-empty key, or exactly `--key`). Documented flavour:
//! `GET /datasets`, `GET /datasets/{id}`, `GET|POST /datasets/{id}/items` (multipart, part
//! `file`), `GET|POST /exports`, `GET /exports/{id}` (each GET is a poll that moves the export
//! one stage on; after `--export-polls` polls it is done), `GET /projects`,
//! `GET /projects/{id}`, `GET /users/me/projects`. Current flavour (`today`): today's routes
//! as Avala's SDK calls them — `/users/me/`, datasets (filters, create, by owner/slug), items
//! by owner/slug, the manual-upload routes (`manual`), projects, tasks, exports, fleet
//! recording uploads (`fleet`) — and every other SDK resource group from one table
//! (`resources`). Lists take `limit` (1..=1000,
//! default 100) and an opaque `cursor`. Storage (no key; a request with the key is refused
//! with 400 and counted by `storage_key_leaks()`): export files, item bytes, the presigned
//! POST form and PUTs (`storage`), fleet recording PUTs (`fleet`).
//!
//! # Fault plan (`--faults FILE`, `Emulator::add_fault`)
//! A JSON list of faults (or `{"faults": [...]}`), each `{"name"?, "method"?, "path", "when"?,
//! "effect"}`; see [`Fault`]. For example:
//! ```json
//! [
//!   {"name": "throttle", "method": "GET", "path": "/api/v1/datasets", "when": {"nth": 1},
//!    "effect": {"status": {"code": 429, "retry_after": {"http_date_in": 1}}}},
//!   {"method": "GET", "path": "/api/v1/exports/*", "when": "always", "effect": {"delay_ms": 200}},
//!   {"path": "/exports/*", "when": {"first": 1}, "effect": {"cut_after_bytes": 1000}},
//!   {"method": "POST", "path": "/api/v1/datasets/*/items",
//!    "effect": {"status": {"code": 500, "after_route": true}}},
//!   {"path": "/api/v1/datasets", "effect": "redirect_other_origin"},
//!   {"path": "/api/v1/datasets/*/items", "when": "always", "effect": "repeat_cursor"}
//! ]
//! ```
//! # Published limits (`--max-uploads 10`, `--max-exports 5`, `--rate-limit N`)
//! Uploads in flight past `--max-uploads` and export creations while `--max-exports` are
//! running get 429 with `Retry-After: 1`; `--rate-limit` counts API requests per whole Unix
//! second. What each limit saw: [`Emulator::limits`], `GET {storage}/_emulator/stats`.
//!
//! Each fault counts the requests it matches; `faults_delivered()` reports how many times each
//! one was actually delivered.

mod catalog;
mod faults;
mod flavor;
mod fleet;
mod gate;
mod limits;
mod manual;
mod options;
mod paging;
mod resources;
mod routes;
mod state;
mod storage;
mod today;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::serve::ListenerExt as _;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use faults::{Fault, FaultEffect, RetryAfter, Trigger};
pub use limits::LimitStats;
pub use options::{EmulatorOptions, Flavor};
pub use state::{Origin, RecordedRequest, StoredUpload};

use catalog::Catalog;
use faults::FaultBook;
use state::Shared;

/// The key shown by `avala-pipe emulator` when no `--key` is given (any non-empty key works).
pub const DEMO_KEY: &str = "avk_emulator_demo";

/// Why the emulator could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum EmulatorError {
    #[error("invalid emulator option: {0}")]
    Options(#[from] options::InvalidOption),
    #[error("cannot load the seed file {path}: {source}")]
    Seed {
        path: PathBuf,
        source: catalog::SeedError,
    },
    #[error("cannot load the fault plan {path}: {message}")]
    Faults { path: PathBuf, message: String },
    #[error("cannot listen on 127.0.0.1:{port} for the {listener} listener: {source}")]
    Bind {
        listener: &'static str,
        port: u16,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot wait for a stop signal: {0}")]
    Signal(#[source] std::io::Error),
}

/// A running emulator. Dropping it stops the listeners; `shutdown` also waits for them.
pub struct Emulator {
    shared: Arc<Shared>,
    stop: watch::Sender<()>,
    tasks: Vec<JoinHandle<()>>,
}

impl Emulator {
    /// Binds both listeners on 127.0.0.1 and serves them on the current tokio runtime.
    pub async fn start(options: EmulatorOptions) -> Result<Emulator, EmulatorError> {
        options.check()?;
        let catalog = match &options.seed {
            Some(path) => {
                Catalog::from_seed_file(path, options.projects, options.items_per_dataset).map_err(
                    |source| EmulatorError::Seed {
                        path: path.clone(),
                        source,
                    },
                )?
            }
            None => Catalog::generated(
                options.datasets,
                options.projects,
                options.items_per_dataset,
            ),
        };
        let faults = FaultBook::default();
        if let Some(path) = &options.faults {
            let plan = std::fs::read_to_string(path)
                .map_err(|e| e.to_string())
                .and_then(|text| faults::parse_plan(&text).map_err(|e| e.to_string()))
                .map_err(|message| EmulatorError::Faults {
                    path: path.clone(),
                    message,
                })?;
            plan.into_iter().for_each(|fault| faults.add(fault));
        }
        let api = bind("API", options.port).await?;
        let storage = bind("storage", options.storage_port).await?;
        let shared = Arc::new(Shared::new(
            options,
            catalog,
            origin(&api),
            origin(&storage),
            faults,
        ));
        let (stop, _) = watch::channel(());
        let tasks = vec![
            spawn_server(api, routes::api_router(shared.clone()), &stop),
            spawn_server(storage, routes::storage_router(shared.clone()), &stop),
        ];
        Ok(Emulator {
            shared,
            stop,
            tasks,
        })
    }

    /// `http://127.0.0.1:PORT/api/v1`.
    pub fn base_url(&self) -> String {
        format!("{}/api/v1", self.shared.api_origin)
    }

    /// `http://127.0.0.1:PORT2`: the storage listener, another origin than the API.
    pub fn storage_origin(&self) -> String {
        self.shared.storage_origin.clone()
    }

    /// The flavour of the API it serves.
    pub fn flavor(&self) -> Flavor {
        self.shared.options.flavor
    }

    /// The `--key` if one was given, else [`DEMO_KEY`].
    pub fn demo_key(&self) -> String {
        self.shared
            .options
            .key
            .clone()
            .unwrap_or_else(|| DEMO_KEY.to_owned())
    }

    /// Every request received on both listeners, in arrival order (the last
    /// `--journal-limit` of them).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// Every file that became a dataset item, in order: stored by `POST /datasets/{id}/items`
    /// (documented), or uploaded to the storage origin and finalized by `POST
    /// /datasets/manual-upload/` (current; `name` is the `file_path_in_dataset`).
    pub fn uploads(&self) -> Vec<StoredUpload> {
        self.shared.uploads()
    }

    /// How many requests reached the storage origin carrying `X-Avala-Api-Key` (each was
    /// refused with 400 and logged loudly): anything but 0 means a client leaked its key.
    pub fn storage_key_leaks(&self) -> u64 {
        self.shared
            .key_leaks
            .load(std::sync::atomic::Ordering::SeqCst)
    }

    /// The sha256 (lowercase hex) of the file the storage origin serves for an export. This
    /// generates the file, so it takes a while for multi-GiB exports.
    pub fn export_sha256(&self, export_id: &str) -> Option<String> {
        self.shared
            .export(export_id, false)
            .map(|export| storage::sha256(&export))
    }

    /// What the published limits saw so far: the most uploads in flight and exports running
    /// at once, what was refused, and the API requests and rate-limit 429s of each window.
    /// (Another process reads the same from `GET {storage_origin}/_emulator/stats`.)
    pub fn limits(&self) -> LimitStats {
        self.shared.limits.stats()
    }

    /// Adds a scripted fault after the ones already planned.
    pub fn add_fault(&self, fault: Fault) {
        self.shared.faults.add(fault);
    }

    /// Each fault's name (or `#` and its 0-based position) and how often it was delivered.
    pub fn faults_delivered(&self) -> Vec<(String, u64)> {
        self.shared.faults.report()
    }

    /// How often the fault with this name (or `#position`) was delivered (0 if unknown).
    pub fn fault_delivered(&self, name: &str) -> u64 {
        self.faults_delivered()
            .into_iter()
            .find(|(n, _)| n == name)
            .map_or(0, |(_, count)| count)
    }

    /// Stops accepting requests and waits (up to 2 s) for the connections in flight.
    pub async fn shutdown(mut self) {
        let _ = self.stop.send(());
        for task in std::mem::take(&mut self.tasks) {
            let abort = task.abort_handle();
            if tokio::time::timeout(Duration::from_secs(2), task)
                .await
                .is_err()
            {
                abort.abort();
            }
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.stop.send(());
    }
}

/// `avala-pipe emulator`: starts the emulator, prints how to reach it on stdout, and serves
/// until Ctrl-C or SIGTERM.
pub async fn serve(options: EmulatorOptions) -> Result<(), EmulatorError> {
    let flavor = match options.flavor {
        Flavor::Documented => "documented",
        Flavor::Current => "current",
    };
    let emulator = Emulator::start(options).await?;
    let (base, key) = (emulator.base_url(), emulator.demo_key());
    let slash = if flavor == "current" { "/" } else { "" };
    println!("Avala API emulator ({flavor} flavour)");
    println!("  base URL:       {base}");
    println!("  storage origin: {}", emulator.storage_origin());
    println!("  API key:        {key}");
    println!("  try:            curl -H \"X-Avala-Api-Key: {key}\" {base}/datasets{slash}");
    println!("Stop with Ctrl-C.");
    wait_for_stop_signal().await?;
    let stats = serde_json::to_string(&emulator.limits()).unwrap_or_default();
    emulator.shutdown().await;
    println!("limits seen: {stats}");
    Ok(())
}

async fn wait_for_stop_signal() -> Result<(), EmulatorError> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).map_err(EmulatorError::Signal)?;
        tokio::select! {
            result = tokio::signal::ctrl_c() => result.map_err(EmulatorError::Signal),
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await.map_err(EmulatorError::Signal)
    }
}

async fn bind(listener: &'static str, port: u16) -> Result<TcpListener, EmulatorError> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|source| EmulatorError::Bind {
            listener,
            port,
            source,
        })
}

fn origin(listener: &TcpListener) -> String {
    let addr = listener
        .local_addr()
        .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
    format!("http://{addr}")
}

fn spawn_server(
    listener: TcpListener,
    router: axum::Router,
    stop: &watch::Sender<()>,
) -> JoinHandle<()> {
    let mut stopped = stop.subscribe();
    let listener = listener.tap_io(|tcp| {
        let _ = tcp.set_nodelay(true);
    });
    tokio::spawn(async move {
        let shutdown = async move {
            let _ = stopped.changed().await;
        };
        if let Err(error) = axum::serve(listener, router)
            .with_graceful_shutdown(shutdown)
            .await
        {
            tracing::warn!(%error, "emulator listener stopped");
        }
    })
}
