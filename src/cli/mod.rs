//! Command-line layer: clap definitions, settings resolution, exit codes.
//!
//! Placeholder on the emulator branch: only `avala-pipe emulator [options]` works here, for
//! manual testing; the real CLI replaces this file.
use clap::Parser;

#[derive(Parser)]
#[command(name = "avala-pipe", version)]
enum Command {
    /// Serve the built-in Avala API emulator on loopback.
    Emulator(crate::emulator::EmulatorOptions),
}

pub fn main() -> i32 {
    let Command::Emulator(options) = Command::parse();
    let runtime = tokio::runtime::Runtime::new().expect("a tokio runtime");
    match runtime.block_on(crate::emulator::serve(options)) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            1
        }
    }
}
