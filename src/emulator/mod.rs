//! The built-in Avala API emulator (see SPEC §7). Placeholder until the emulator lands.
