mod ci;
mod dry_run;
mod emulator;
mod faults;
mod run;
mod sdk;
mod support;
mod validate;
