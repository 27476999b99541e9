mod ci;
mod dry_run;
mod emulator;
mod run;
mod support;
mod validate;
