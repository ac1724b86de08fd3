//! A period's usage, read from `usage_hourly` and summed over users.

use std::collections::BTreeMap;

use agentmeter_aggregate::{LakeReader, Result};
use agentmeter_schemas::tables::USAGE_HOURLY;
use agentmeter_schemas::{ModelId, TenantId, Tier, Tokens};

use super::model::Period;

/// The key of one usage series: what is priced together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tier.
    pub tier: Tier,
    /// Model as logged.
    pub model_id: ModelId,
}

/// Hourly token sums of one series, by hour start (ms).
pub type Series = BTreeMap<i64, (i64, Tokens)>;

/// Every series with usage in the period.
///
/// # Errors
///
/// The lake cannot be read, or a sum overflows.
pub fn load(lake: &LakeReader, period: &Period) -> Result<BTreeMap<SeriesKey, Series>> {
    let mut out: BTreeMap<SeriesKey, Series> = BTreeMap::new();
    for dt in lake.partitions(USAGE_HOURLY)? {
        if dt < period.start || dt >= period.end {
            continue;
        }
        for (k, m) in lake.hourly(dt)? {
            let key = SeriesKey { tenant_id: k.tenant_id, tier: k.tier, model_id: k.model_id };
            let slot = out.entry(key).or_default().entry(k.hour_ms).or_default();
            let overflow = || agentmeter_aggregate::Error::Overflow {
                table: USAGE_HOURLY,
                dt: dt.to_string(),
            };
            slot.0 = slot.0.checked_add(m.invocations).ok_or_else(overflow)?;
            slot.1 = slot.1.checked_add(&m.tokens).ok_or_else(overflow)?;
        }
    }
    Ok(out)
}
