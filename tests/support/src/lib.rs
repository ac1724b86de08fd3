//! Test support shared by the crates' tests and the end-to-end tests: real local stand-ins
//! for the cloud, started by the tests themselves on 127.0.0.1.
//!
//! - [`moto::MotoServer`]: moto in server mode, the local AWS.
//! - [`duckdb`]: DuckDB, the local stand-in for Athena, run through the test virtualenv's
//!   Python.
//! - [`faults::FaultProxy`]: a proxy in front of either that injects throttling, 5xx, delays,
//!   dropped connections and cut bodies by a seeded schedule.
//!
//! `scripts/test` installs both into `.venv` and points the tests at them.
#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod crash;
pub mod duckdb;
pub mod faults;
pub mod moto;
