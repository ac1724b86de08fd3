//! Usage totals read from `usage_hourly`.

use std::collections::BTreeMap;

use agentmeter_aggregate::{Error, Lake, Result};
use agentmeter_schemas::tables::{AgentMeasures, USAGE_HOURLY};
use agentmeter_schemas::{TenantId, Tier, Tokens};
use chrono::NaiveDate;
use serde::Serialize;

/// Usage of one tenant.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Totals {
    /// Tier(s) the tenant's usage was logged under.
    pub tiers: Vec<Tier>,
    /// Inference calls.
    pub invocations: i64,
    /// Token sums.
    pub tokens: Tokens,
    /// What the tenant's spans add (tool calls, agent invocations and durations).
    #[serde(skip)]
    pub agent: AgentMeasures,
}

/// Usage totals per tenant over the partitions in `[from, to]` (all when `None`).
///
/// # Errors
///
/// The lake cannot be read, or a sum overflows.
pub fn tenant_totals(
    lake: &Lake,
    from: Option<NaiveDate>,
    to: Option<NaiveDate>,
) -> Result<BTreeMap<TenantId, Totals>> {
    let mut out: BTreeMap<TenantId, Totals> = BTreeMap::new();
    for dt in lake.partitions(USAGE_HOURLY)? {
        if from.is_some_and(|f| dt < f) || to.is_some_and(|t| dt > t) {
            continue;
        }
        for (key, m) in lake.hourly(dt)? {
            let t = out.entry(key.tenant_id).or_default();
            if !t.tiers.contains(&key.tier) {
                t.tiers.push(key.tier);
                t.tiers.sort();
            }
            let overflow = || Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() };
            t.invocations = t.invocations.checked_add(m.invocations).ok_or_else(overflow)?;
            t.tokens = t.tokens.checked_add(&m.tokens).ok_or_else(overflow)?;
            t.agent = t.agent.checked_add(&m.agent).ok_or_else(overflow)?;
        }
    }
    Ok(out)
}
