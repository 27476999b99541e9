//! The built-in Avala API emulator (see SPEC §7). Placeholder until the emulator lands.

/// Options of `avala-pipe emulator`.
#[derive(clap::Args, Debug, Clone, Default)]
pub struct EmulatorOptions {
    /// Port of the API listener (0: any free port).
    #[arg(long, default_value_t = 0)]
    pub port: u16,
}
