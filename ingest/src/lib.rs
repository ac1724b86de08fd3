//! Sources and decoders: inference_usage logs, in every shape they arrive in, into validated
//! [`UsageEvent`](agentmeter_schemas::UsageEvent)s, counted skips and quarantine entries.
//!
//! - [`source`]: which files to read and how each splits into units (format detection, gzip,
//!   concatenated subscription payloads, `filter-log-events` documents).
//! - [`Decoder`]: the pure, synchronous decoder of one record into an [`Outcome`].
//! - [`otlp`]: OpenTelemetry spans (OTLP protobuf and JSON requests) into
//!   [`AgentSpan`](agentmeter_schemas::AgentSpan)s.
//! - [`pipeline`]: the multi-threaded decode stage that hands outcomes, in input order, to a
//!   [`pipeline::Sink`] (the lake writer lives in `agentmeter-aggregate`; the binary joins
//!   them).
//! - [`kinesis`], [`cwlogs`]: the AWS sources (a Kinesis stream's shards, a CloudWatch Logs
//!   backfill), read through the official SDK; the caller decodes their records with
//!   [`Decoder::stream_record`] and [`Decoder::api_log_event`] and checkpoints.
#![deny(missing_docs)]

mod aws_error;
mod canonical;
mod cloudwatch;
mod config;
pub mod cwlogs;
mod decode;
mod fields;
mod gzip;
pub mod kinesis;
mod limits;
mod normalize;
pub mod otlp;
pub mod otlp_http;
pub mod pipeline;
pub mod s3;
pub mod source;
mod textlog;
mod window;

pub use config::{
    ConfigError, DEFAULT_MAX_JSON_DEPTH, DEFAULT_MAX_SPAN_DURATION_MS, DEFAULT_MAX_TOKENS_PER_CALL,
    DecodeConfig, MAX_JSON_DEPTH_CEILING, RecordLimits,
};
pub use decode::{Decoded, Decoder, FileRawStore, Outcome, RawStore};
pub use textlog::{BadTimezone, LogTimezone};
