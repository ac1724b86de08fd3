//! Flags (silo migration, pool saturation, quota breaches, runaway sessions) and their alerts.
//!
//! - [`policy`]: thresholds, capacities, limits (TOML, validated).
//! - [`engine`]: evaluation over `tenant_hourly` at the end of every day of a range, and the
//!   merge of consecutive evaluations into episodes.
//! - [`state`]: raised flags, persisted, so each flag alerts once when raised and once when
//!   resolved.
//! - [`model`]: the stable JSON schema of flags and alerts.

pub mod engine;
pub mod model;
pub mod policy;
pub mod state;
pub mod table;
pub mod usage_rules;

pub use engine::{AgentInvocation, Evaluation, episodes, evaluate_range};
pub use model::{Alert, Evidence, Flag, FlagKind, FlagStatus, Severity, Transition};
pub use policy::{AnomalyPolicy, BudgetAmount, Budgets, Policy, PolicyError};
pub use state::FlagState;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod usage_rules_tests;
