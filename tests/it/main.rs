mod ci;
mod emulator;
mod run;
mod support;
mod validate;
