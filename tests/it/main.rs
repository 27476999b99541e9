mod actions;
mod ci;
mod dry_run;
mod emulator;
mod faults;
mod run;
mod support;
mod validate;
