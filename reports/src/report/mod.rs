//! The HTML report: one self-contained page with SVG charts of a month's usage.
//!
//! [`gather`] reads the period's `usage_hourly` partitions from the lake, one at a time, into a
//! [`ReportData`]: totals per tier, each tier's top tenants with their hourly share of the pool
//! (of the configured [`PoolCapacity`], else of the pool's own requests), the pool's
//! utilization, tokens per tenant per day (top N and the rest), usage per model, and whatever
//! the caller passes in [`ReportOptions`]: the invoice run's margin summary and the flags
//! ([`parse_margin`] and [`parse_flags`] read their files' text).
//! [`render`] turns it into the page:
//!
//! 1. Summary: period, the lake, requests, tokens and tenants per tier, models.
//! 2. Pool share over time, per tier, with the 20% silo-migration line, and the pool's
//!    utilization against the 80% saturation line (or its requests per hour).
//! 3. Daily tokens per tenant, stacked.
//! 4. Cost against revenue per tier, when a margin summary is given.
//! 5. Flags.
//!
//! The page has no script and no external reference (inline `<style>` and `<svg>` only), so it
//! opens offline; every string from the data is escaped; the same data renders to the same
//! bytes. `scripts/check-report` renders it in headless Chromium and checks that it loads
//! cleanly.
//!
//! ```no_run
//! use agentmeter_aggregate::Lake;
//! use agentmeter_reports::invoice::Period;
//! use agentmeter_reports::report::{ReportOptions, gather, render};
//!
//! let lake = Lake::open_dir("lake")?;
//! let period = Period::parse("2026-10")?;
//! let data = gather(&lake, period, &ReportOptions::default())?;
//! std::fs::write("report.html", render(&data))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod data;
mod html;
mod inputs;
mod svg;

pub use data::{
    DailyTokens, ModelUsage, PoolCapacity, ReportData, ReportError, ReportOptions, ShareStats,
    TenantDaily, TenantShare, TierUsage, gather,
};
pub use html::{SECTION_IDS, render};
pub use inputs::{parse_flags, parse_margin};

#[cfg(test)]
mod tests;
