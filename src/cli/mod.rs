//! Command-line layer: clap definitions, settings resolution, exit codes.
pub fn main() -> i32 {
    0
}
