fn main() {
    std::process::exit(avala_pipe::cli::main());
}
