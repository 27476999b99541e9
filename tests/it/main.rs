//! The one integration-test binary. Each module tests one area by running the real
//! `avala-pipe` binary (see `support`); add new areas as modules here.

mod support;
mod validate;
