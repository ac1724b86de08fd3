//! Reports over the lake and over runs.
//!
//! - [`run_summary`]: the human-readable end-of-run summary of an ingest.
//! - [`usage`]: usage totals per tenant, tier and day, read from `usage_hourly`.
//! - [`allocate`]: largest-remainder splits that add up to the cent.
//! - [`prices`]: the price book: effective-dated model prices, aliases, and plan terms.
//! - [`invoice`]: invoices, allocations and the finance exports.
//! - [`costs`]: AWS Cost Explorer daily costs per tier, from the API or a file.
//!
//! Invoices, flags and alerts will live here too; they read the lake only through
//! `agentmeter-aggregate`'s reader.
#![deny(missing_docs)]

pub mod allocate;
pub mod costs;
pub mod invoice;
pub mod prices;
pub mod run_summary;
pub mod usage;
