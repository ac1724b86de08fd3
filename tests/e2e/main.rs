//! End-to-end tests: the `agentmeter` binary on generated inputs, with the lake read back by
//! DuckDB (the local stand-in for Athena). `scripts/test` installs DuckDB into `.venv`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod otlp_client;
mod util;

mod aws_sources;
mod cli;
mod compact;
mod concurrency;
mod crash;
mod crash_matrix;
mod crash_services;
mod csv_formulas;
mod dirty;
mod disk;
mod faults;
mod flags;
mod hostile;
mod ingest;
mod invoice;
mod isolation;
mod periods;
mod pools;
mod privacy;
mod profiles;
mod push;
mod reconcile;
mod run;
mod s3_lake;
mod schema;
mod security;
mod serve;
mod serve_load;
mod shapes;
mod usage_api;
