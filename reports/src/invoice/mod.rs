//! Invoices: usage from the lake priced by the price book, AWS costs from Cost Explorer split
//! across tenants, and the finance exports.
//!
//! - [`compute`](compute::compute) is the engine (pure; no I/O).
//! - [`usage::load`] reads a period's usage from `usage_hourly`.
//! - [`export`] writes the invoices (JSON, CSV, HTML, the `invoice_lines` table), the margin
//!   summary and the FOCUS export.

mod book;
pub mod compute;
pub mod export;
pub mod focus;
pub mod html;
pub mod ledger;
pub mod model;
pub mod reprice;
pub mod roster;
pub mod usage;

pub use compute::{
    InvoiceError, InvoiceInput, InvoiceRun, PlanTerms, PriceSpan, Pricing, Spans, compute,
};
pub use model::{
    Allocation, BillTo, Component, CostPool, DocumentKind, DocumentStatus, Invoice, Issuer, Line,
    Period, PeriodStatus, Problem, Unallocated,
};

#[cfg(test)]
mod tests;
