mod ci;
mod emulator;
mod faults;
mod run;
mod support;
mod validate;
