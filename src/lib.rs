//! avala-pipe: run declarative YAML pipelines against the Avala REST API.
//!
//! The crate is organised by stage, in the order data flows through it:
//! `pipeline` (load + validate a file) → `template` (minijinja) → `graph` (dependencies)
//! → `step` (one step in one context: condition, iterations, inputs, outputs, skip rule;
//! in preview or run mode) → `plan` (graph order × preview evaluation × each action's
//! plan half: what dry-run prints) and `execute` (the scheduler) with `actions` and `api`
//! (a pure endpoint description, and the client that sends) → `report` (events to
//! text/JSON).
//! `outputs` is a step's outputs (a list's items kept as the server's text until read).
//! `secrets` masks the key and secrets in every output; `shown` escapes outside text in
//! every human output. `emulator` is a local stand-in for the Avala API, used by `run --emulator` and the tests.
//! `cli` is the only module that reads the process environment or arguments.
//!
//! Must not: exit the process or print from below `cli` (the executor emits events).

// Every function reads in one screen (threshold in clippy.toml).
#![warn(clippy::too_many_lines)]

pub mod actions;
pub mod api;
pub mod cli;
pub mod clock;
pub mod emulator;
pub mod execute;
pub mod graph;
pub mod journal;
pub mod outputs;
pub mod pipeline;
pub mod plan;
pub mod report;
pub mod secrets;
pub mod shown;
pub mod step;
pub mod template;
