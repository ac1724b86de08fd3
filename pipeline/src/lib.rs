//! How decoded records reach the lake: the one record router, the readers of the AWS sources
//! with their commit-then-checkpoint loop, the OTLP receiver's write-ahead log, and opening a
//! lake from its location (a directory or `s3://bucket/prefix`) with the process's runtime and
//! AWS configuration. The `agentmeter` binary and the Lambda function both call these
//! services; neither routes a record itself.
#![deny(missing_docs)]

pub mod env;
mod error;
pub mod ingest;
pub mod progress;
pub mod receiver;
pub mod router;
pub mod sources;

pub use env::{Env, LakeLocation};
pub use error::{Error, Result};
pub use router::{Finished, Router};
