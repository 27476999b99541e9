//! The pipeline file: YAML loading with positions (`yaml`), the format table (`spec`),
//! validation (`check`) into the checked types (`model`), and diagnostics (`diag`).
//!
//! Takes: a file path. Gives: a checked [`Pipeline`], or every problem with its position.
//! Must not: render templates, touch the network, or read files other than the pipeline.
pub mod check;
pub mod diag;
pub mod model;
pub mod schema;
pub mod spec;
pub mod yaml;

pub use check::{check_source, load};
pub use diag::{Diagnostic, FileDiagnostics};
pub use model::{ActionKind, Pipeline, Step, TValue, Tmpl};
