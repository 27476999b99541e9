//! Command-line layer: clap definitions (`args`), logging setup, and one function per
//! command. This is the only module that reads the process environment; exit codes are
//! chosen here, in [`ExitCode`].
//!
//! Must not: hold the logic of a stage (it resolves settings and calls into the stages).

pub mod args;
mod commands;
pub mod console;
mod logging;
mod run;

use clap::Parser;

pub use args::Cli;

/// The process exit codes (documented in the README).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExitCode {
    Success = 0,
    RunFailed = 1,
    Invalid = 2,
    /// `--detailed-exitcode`: the plan changed (like Terraform's exit 2, which is taken here).
    Changed = 3,
    Interrupted = 130,
    Terminated = 143,
}

/// Parses arguments, sets up logging, runs the command, returns the exit code.
pub fn main() -> i32 {
    tune_allocator();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() {
                ExitCode::Invalid as i32
            } else {
                0
            };
            // An argument clap echoes back may be the key given in the wrong place.
            let key = std::env::var("AVALA_API_KEY").unwrap_or_default();
            let text = e.render().to_string();
            let masked = crate::secrets::Redactor::new(crate::secrets::forms(&key)).text(&text);
            if masked != text {
                eprint!("{masked}");
            } else {
                let _ = e.print();
            }
            return code;
        }
    };
    let color = logging::use_color(cli.color);
    logging::init(cli.verbose, cli.quiet, cli.log_format, color);
    // A panic's message may quote data (a server's text, a rendered secret): it is masked
    // and escaped like every other message. A step that panics fails; the run goes on.
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        let text = format!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
        let text = crate::shown::escape(&crate::secrets::redact(&text)).into_owned();
        eprintln!("internal error (a bug in avala-pipe; please report it): {text}");
    }));
    commands::dispatch(cli, color) as i32
}

/// glibc's allocator serves blocks above 128 KiB (its starting threshold) with a fresh
/// `mmap` each and gives freed memory at the top of a heap back to the system: a download's
/// body, received in ~300 KiB chunks freed on other threads, cost ~130,000 page faults per
/// GiB (a quarter of the process's kernel time; issue 14). Blocks up to 32 MiB now come from
/// the heap, and up to 64 MiB of free memory stays mapped for reuse. Peak memory is not
/// raised: it is the same blocks, reused instead of mapped again.
fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets glibc's tuning parameters; called first thing, before any
    // other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 64 << 20);
    }
}
