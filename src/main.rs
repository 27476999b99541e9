//! The `avala-pipe` binary: hands over to [`avala_pipe::cli::main`] and exits with its code.
//! Must not: do anything else (every decision lives in the library).

fn main() {
    std::process::exit(avala_pipe::cli::main());
}
