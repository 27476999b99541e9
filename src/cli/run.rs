//! `run` and `emulator`: settings resolution (flags + env + file) and the async runtime.

use super::args::RunArgs;
use super::ExitCode;
use crate::emulator::EmulatorOptions;

pub fn run(args: RunArgs, color: bool) -> ExitCode {
    let _ = (args, color);
    eprintln!("run: not built yet");
    ExitCode::Invalid
}

pub fn emulator(opts: EmulatorOptions) -> ExitCode {
    let _ = opts;
    ExitCode::Invalid
}
