mod emulator;
mod run;
