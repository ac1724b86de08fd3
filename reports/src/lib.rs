//! Reports over the lake and over runs.
//!
//! - [`run_summary`]: the human-readable end-of-run summary of an ingest.
//! - [`usage`]: usage totals per tenant, tier and day, read from `usage_hourly`.
//! - [`allocate`]: largest-remainder splits that add up to the cent.
//! - [`prices`]: the price book: effective-dated model prices, aliases, and plan terms.
//! - [`invoice`]: invoices, allocations and the finance exports.
//! - [`flags`]: noisy-neighbour, saturation, quota and runaway flags, and their alerts.
//! - [`costs`]: AWS Cost Explorer daily costs per tier, from the API or a file.
//! - [`alerts`]: alert sinks (JSONL file, stdout, signed webhook, SNS) and their delivery.
//! - [`reconcile`]: tokens of the logs against tokens of the chat spans, per tenant and day.
//! - [`report`]: the month's self-contained HTML report, with SVG charts.
//! - [`export_csv`]: the one CSV writer, which keeps a cell from running as a formula.
//!
//! Invoices, flags and alerts will live here too; they read the lake only through
//! `agentmeter-aggregate`'s reader.
#![deny(missing_docs)]

pub mod alerts;
pub mod allocate;
pub mod api;
pub mod costs;
pub mod export_csv;
pub mod flags;
mod format;
pub mod invoice;
pub mod prices;
pub mod push;
pub mod reconcile;
pub mod report;
pub mod run_summary;
pub mod usage;

#[cfg(test)]
mod parse_props;
