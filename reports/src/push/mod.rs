//! Pushing verified usage into the billing systems users already run: Stripe billing meter
//! events, Lago events, OpenMeter CloudEvents and Metronome usage events.
//!
//! **What is sent.** Per tenant, UTC hour, model and component (`input_tokens`,
//! `output_tokens`, `cache_read_tokens`, `cache_write_tokens`, `tool_calls`, `invocations`),
//! the quantity `usage_hourly` holds (the logs' counts; tool calls from the spans). Every
//! system sums the events of a meter, so usage that arrives late for an hour already sent is
//! sent as one more event of the difference.
//!
//! **Exactly once, across crashes and reruns.** Each system has a push ledger in the lake
//! (`_state/push/<system>/<day>.json`, replaced only from the version read) holding, per key,
//! the quantity sent and the number of events. A run first records the events it is about
//! to send as *pending* (their identifier and quantity fixed), then sends them, then marks
//! them sent. A crash between the two leaves them pending: the next run sends the same
//! events again, with the same identifiers, which every one of these systems deduplicates
//! (`identifier`, `transaction_id`, CloudEvents `id`). So nothing is sent twice as new
//! usage, and nothing is lost.

mod ledger;
mod systems;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::time::Duration;

use agentmeter_aggregate::Lake;
use agentmeter_schemas::TenantId;
use chrono::{DateTime, NaiveDate, Utc};

pub use ledger::{Ledger, Pending};
pub use systems::{System, UsageEvent};

use crate::invoice::roster::Roster;

/// The components pushed, in order.
pub const COMPONENTS: [&str; 6] = [
    "input_tokens",
    "output_tokens",
    "cache_read_tokens",
    "cache_write_tokens",
    "tool_calls",
    "invocations",
];

/// One quantity to bill: a tenant's usage of one component of one model in one hour.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct UsageKey {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Start of the hour, UTC.
    pub hour: DateTime<Utc>,
    /// The model id.
    pub model_id: String,
    /// One of [`COMPONENTS`].
    pub component: &'static str,
}

impl UsageKey {
    /// The key as the ledger stores it: `tenant/hour/model/component`.
    pub fn text(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.tenant_id,
            self.hour.format("%Y-%m-%dT%H:%M:%SZ"),
            self.model_id,
            self.component
        )
    }
}

/// The quantities of one day of usage, per key (zero quantities left out).
///
/// # Errors
///
/// The lake cannot be read.
pub fn day_usage(
    lake: &Lake,
    day: NaiveDate,
) -> agentmeter_aggregate::Result<BTreeMap<UsageKey, i64>> {
    let mut out: BTreeMap<UsageKey, i64> = BTreeMap::new();
    // A day without a rollup reads as no rows.
    for (k, m) in lake.hourly(day)? {
        let Some(hour) = DateTime::from_timestamp_millis(k.hour_ms) else { continue };
        let quantities = [
            m.tokens.input,
            m.tokens.output,
            m.tokens.cache_read,
            m.tokens.cache_write,
            m.agent.tool_calls,
            m.invocations,
        ];
        for (component, q) in COMPONENTS.iter().zip(quantities) {
            if q == 0 {
                continue;
            }
            let key = UsageKey {
                tenant_id: k.tenant_id.clone(),
                hour,
                model_id: k.model_id.to_string(),
                component,
            };
            let e = out.entry(key).or_default();
            *e = e.saturating_add(q);
        }
    }
    Ok(out)
}

/// How a push run sends.
#[derive(Debug, Clone)]
pub struct PushOptions {
    /// The system.
    pub system: System,
    /// Its API base URL (the official one, or a self-hosted Lago or OpenMeter).
    pub endpoint: String,
    /// The API key or token (never logged).
    pub token: String,
    /// Event names are `<prefix>_<component>` (Stripe meter event names, Lago billable
    /// metric codes, OpenMeter event types, Metronome event types).
    pub event_prefix: String,
    /// Attempts per request before the run gives up on the system (the events stay pending).
    pub max_attempts: u32,
    /// The first wait between attempts, doubling.
    pub initial_backoff: Duration,
    /// Bound on one request.
    pub timeout: Duration,
}

/// What a push run did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushReport {
    /// Days looked at.
    pub days: usize,
    /// Events sent and acknowledged in this run (pending ones of earlier runs included).
    pub sent: usize,
    /// Of those, events left pending by an earlier run and sent again.
    pub resent: usize,
    /// Their total quantity per component.
    pub quantities: BTreeMap<String, i64>,
    /// Events left pending (the system failed): the next run sends them.
    pub pending: usize,
    /// Tenants with usage but no customer id for the system in the roster (not sent).
    pub tenants_without_customer: Vec<TenantId>,
    /// Keys whose usage is lower than what was already sent (never expected; reported).
    pub decreased: usize,
    /// The first failure, if the system failed.
    pub failure: Option<String>,
}

/// Why a push could not run.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The lake could not be read or written.
    #[error(transparent)]
    Lake(#[from] agentmeter_aggregate::Error),
    /// A ledger is not what this version wrote.
    #[error("{uri}: {why}")]
    Corrupt {
        /// The ledger.
        uri: String,
        /// What is wrong.
        why: String,
    },
    /// Other runs kept replacing the ledger.
    #[error("other push runs kept changing the ledger of {day}; run again")]
    Busy {
        /// The day.
        day: NaiveDate,
    },
    /// The HTTP client could not be built.
    #[error("cannot build the HTTP client: {0}")]
    Client(String),
}

/// Pushes the usage of `days` to the system: per day, pending events first, then the new
/// differences, each recorded before it is sent and marked after.
///
/// # Errors
///
/// The lake or a ledger cannot be read or written. A failing system is not an error: it is
/// in the report, and its events stay pending.
pub fn push(
    lake: &Lake,
    roster: &Roster,
    days: &[NaiveDate],
    opts: &PushOptions,
) -> Result<PushReport, PushError> {
    let sender = systems::Sender::new(opts)?;
    let mut report = PushReport::default();
    let mut missing: std::collections::BTreeSet<TenantId> = Default::default();
    for &day in days {
        report.days += 1;
        let usage = day_usage(lake, day)?;
        // Each tenant's customer in the system, looked up once: `None` is not sent.
        let mut customers: BTreeMap<TenantId, Option<String>> = BTreeMap::new();
        for k in usage.keys() {
            if !customers.contains_key(&k.tenant_id) {
                customers.insert(k.tenant_id.clone(), opts.system.customer(roster, &k.tenant_id));
            }
        }
        missing.extend(customers.iter().filter(|(_, c)| c.is_none()).map(|(t, _)| t.clone()));
        let usage: BTreeMap<UsageKey, i64> =
            usage.into_iter().filter(|(k, _)| customers[&k.tenant_id].is_some()).collect();
        let plan = ledger::plan(lake, opts.system, day, &usage)?;
        report.decreased += plan.decreased;
        let to_send = plan.pending;
        if to_send.is_empty() {
            continue;
        }
        let mut sent_ids = Vec::new();
        let mut failure = None;
        for batch in to_send.chunks(opts.system.batch_size()) {
            let events: Vec<UsageEvent> = batch
                .iter()
                .map(|p| UsageEvent {
                    identifier: p.identifier.clone(),
                    customer: customers
                        .get(&p.key.tenant_id)
                        .cloned()
                        .flatten()
                        .unwrap_or_default(),
                    event_name: format!("{}_{}", opts.event_prefix, p.key.component),
                    hour: p.key.hour,
                    model_id: p.key.model_id.clone(),
                    tenant_id: p.key.tenant_id.clone(),
                    quantity: p.quantity,
                })
                .collect();
            match sender.send(&events) {
                Ok(()) => sent_ids.extend(batch.iter().map(|p| p.identifier.clone())),
                Err(e) => {
                    failure = Some(e);
                    break;
                }
            }
        }
        ledger::mark_sent(lake, opts.system, day, &sent_ids)?;
        for p in to_send.iter().filter(|p| sent_ids.contains(&p.identifier)) {
            report.sent += 1;
            if p.earlier_run {
                report.resent += 1;
            }
            *report.quantities.entry(p.key.component.to_owned()).or_default() += p.quantity;
        }
        report.pending += to_send.len() - sent_ids.len();
        if let Some(f) = failure {
            report.failure = Some(f);
            // The system is failing: the later days wait for the next run too.
            break;
        }
    }
    report.tenants_without_customer = missing.into_iter().collect();
    Ok(report)
}
