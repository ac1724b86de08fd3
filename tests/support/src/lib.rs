//! Test support shared by the crates' tests and the end-to-end tests: real local stand-ins
//! for the cloud, started by the tests themselves on 127.0.0.1.
//!
//! - [`moto::MotoServer`]: moto in server mode, the local AWS.
//! - [`duckdb`]: DuckDB, the local stand-in for Athena, run through the test virtualenv's
//!   Python.
//!
//! `scripts/test` installs both into `.venv` and points the tests at them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod duckdb;
pub mod moto;
