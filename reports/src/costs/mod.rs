//! AWS Cost Explorer daily costs per tier, from the API or from a file.
//!
//! Each tier runs in its own Bedrock Project, and the projects carry a cost-allocation tag
//! (`Tier` by default). Invoices split each tier's daily AWS cost across that tier's tenants,
//! so what this module delivers is: for each day of a period, the cost of each tag value.
//!
//! - [`CostQuery`]: the period `[start, end)`, the metric (`UnblendedCost` by default, one of
//!   [`METRICS`]), the tag to group by (`Tier`) and an optional [`TagFilter`] on a tag.
//! - [`fetch`]: asks Cost Explorer (`GetCostAndUsage`, DAILY, `GroupBy` TAG) through
//!   `aws-sdk-costexplorer`, following every page; [`client_from_env`] builds the client from
//!   the standard AWS configuration.
//! - [`parse_file`]: reads the same response(s) from JSON, as `aws ce get-cost-and-usage`
//!   prints them, for runs without AWS access; [`to_response_json`] writes a report back in
//!   that shape.
//! - [`CostReport`]: [`DailyCost`] rows per (day, [`CostGroup`]), exact decimal amounts,
//!   estimated (provisional) days marked.
//! - [`CostError`]: every failure, naming the page, result and group at fault.
//!
//! Both the API and the file go through the same checks, so a file is accepted exactly when
//! the same responses from the API would be.
//!
//! ```
//! use agentmeter_reports::costs::{CostGroup, CostQuery, parse_file};
//! use chrono::NaiveDate;
//!
//! let query = CostQuery::month(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
//! let response = r#"{
//!   "GroupDefinitions": [{"Type": "TAG", "Key": "Tier"}],
//!   "ResultsByTime": [{
//!     "TimePeriod": {"Start": "2026-10-01", "End": "2026-10-02"},
//!     "Total": {},
//!     "Groups": [
//!       {"Keys": ["Tier$premium"], "Metrics": {"UnblendedCost": {"Amount": "12.5", "Unit": "USD"}}},
//!       {"Keys": ["Tier$"], "Metrics": {"UnblendedCost": {"Amount": "0.25", "Unit": "USD"}}}
//!     ],
//!     "Estimated": true
//!   }]
//! }"#;
//! let report = parse_file(response, &query)?;
//! assert_eq!(report.days[0].group, CostGroup::Tagged("premium".into()));
//! assert_eq!(report.days[1].group, CostGroup::Untagged);
//! assert_eq!(report.total().to_string(), "12.75");
//! assert_eq!(report.estimated_days().len(), 1);
//! # Ok::<(), agentmeter_reports::costs::CostError>(())
//! ```

mod amount;
mod ce;
mod error;
mod model;
mod parse;

#[cfg(test)]
mod ce_tests;
#[cfg(test)]
pub(crate) mod moto;
#[cfg(test)]
pub(crate) mod tests;

pub use ce::{CREDENTIALS_HINT, DEFAULT_REGION, MAX_PAGES, client_from_env, fetch};
pub use error::{CostError, Location, Part};
pub use model::{
    CostGroup, CostQuery, CostReport, DEFAULT_METRIC, DEFAULT_TAG_KEY, DailyCost, METRICS,
    TagFilter,
};
pub use parse::{parse_file, to_response_json};
