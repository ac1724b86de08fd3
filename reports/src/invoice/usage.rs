//! A period's usage, read from `usage_hourly` and summed over users: the logs' and the chat
//! spans' side by side, for each plan to bill the one it names.

use std::collections::BTreeMap;

use agentmeter_aggregate::{Lake, Result};
use agentmeter_schemas::tables::{ChatMeasures, HourlyKey, HourlyMeasures, USAGE_HOURLY};
use agentmeter_schemas::{ModelId, ServiceTier, TenantId, Tier, Tokens};

use super::model::Period;
use crate::prices::UsageSource;

/// The key of one usage series: what is priced together.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SeriesKey {
    /// Tenant.
    pub tenant_id: TenantId,
    /// Tier.
    pub tier: Tier,
    /// Model as logged (for tool calls: the model of the agent invocation they ran in, or
    /// `_unknown`).
    pub model_id: ModelId,
    /// The service tier the calls ran in (tool calls: standard).
    pub service_tier: ServiceTier,
    /// The calls' prompt band (tool calls: 0), which decides long-context prices.
    pub prompt_band: i64,
}

/// The usage of one series in one hour, from both records of a model call.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HourUsage {
    /// Inference calls (from the logs).
    pub invocations: i64,
    /// Of those, the calls that reported no usage (from the logs).
    pub usage_unknown: i64,
    /// Token sums (from the logs).
    pub tokens: Tokens,
    /// Log lines of a lifetime series, counted as their increments.
    pub cumulative_lines: i64,
    /// The same calls as their `chat` spans saw them.
    pub chat: ChatMeasures,
    /// `execute_tool` spans started in the hour.
    pub tool_calls: i64,
}

/// The usage a plan bills: calls, the calls among them without usage, and tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Billed {
    /// Model calls.
    pub calls: i64,
    /// Of those, the ones that reported no usage.
    pub usage_unknown: i64,
    /// Token sums.
    pub tokens: Tokens,
}

impl Billed {
    /// True when the hour has inference usage (calls or tokens), the usage that weighs the
    /// allocation of AWS cost.
    pub fn has_inference(&self) -> bool {
        self.calls != 0 || self.tokens != Tokens::default()
    }
}

impl HourUsage {
    /// The usage `source` says to bill.
    pub fn billed(&self, source: UsageSource) -> Billed {
        match source {
            UsageSource::Logs => Billed {
                calls: self.invocations,
                usage_unknown: self.usage_unknown,
                tokens: self.tokens,
            },
            UsageSource::ChatSpans => Billed {
                calls: self.chat.calls,
                usage_unknown: self.chat.usage_unknown,
                tokens: self.chat.tokens,
            },
        }
    }
}

/// Hourly usage of one series, by hour start (ms).
pub type Series = BTreeMap<i64, HourUsage>;

/// Every series with billable usage (logged calls, chat spans or tool calls) in the period.
/// Rows with only span measures that are not billed (agent invocations and durations) are
/// not loaded.
///
/// # Errors
///
/// The lake cannot be read, or a sum overflows.
pub fn load(lake: &Lake, period: &Period) -> Result<BTreeMap<SeriesKey, Series>> {
    let mut out: BTreeMap<SeriesKey, Series> = BTreeMap::new();
    for_each_row(lake, period, |_, k, m, overflow| {
        if m.invocations == 0 && m.agent.tool_calls == 0 && m.chat.calls == 0 {
            return Ok(());
        }
        let key = SeriesKey {
            tenant_id: k.tenant_id,
            tier: k.tier,
            model_id: k.model_id,
            service_tier: k.service_tier,
            prompt_band: k.prompt_band,
        };
        let slot = out.entry(key).or_default().entry(k.hour_ms).or_default();
        slot.invocations = slot.invocations.checked_add(m.invocations).ok_or_else(overflow)?;
        slot.usage_unknown =
            slot.usage_unknown.checked_add(m.usage_unknown).ok_or_else(overflow)?;
        slot.chat = slot.chat.checked_add(&m.chat).ok_or_else(overflow)?;
        slot.tokens = slot.tokens.checked_add(&m.tokens).ok_or_else(overflow)?;
        slot.cumulative_lines =
            slot.cumulative_lines.checked_add(m.cumulative_lines).ok_or_else(overflow)?;
        slot.tool_calls = slot.tool_calls.checked_add(m.agent.tool_calls).ok_or_else(overflow)?;
        Ok(())
    })?;
    Ok(out)
}

/// Calls `f` with every `usage_hourly` row of the period's days, its day and the error to
/// return when a sum overflows.
fn for_each_row(
    lake: &Lake,
    period: &Period,
    mut f: impl FnMut(
        chrono::NaiveDate,
        HourlyKey,
        HourlyMeasures,
        &dyn Fn() -> agentmeter_aggregate::Error,
    ) -> Result<()>,
) -> Result<()> {
    for dt in lake.partitions(USAGE_HOURLY)? {
        if dt < period.start || dt >= period.end {
            continue;
        }
        let overflow =
            || agentmeter_aggregate::Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() };
        for (k, m) in lake.hourly(dt)? {
            f(dt, k, m, &overflow)?;
        }
    }
    Ok(())
}

/// What one tenant's spans drove in one day and tier: the drivers of the AgentCore cost
/// pools.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DriverUse {
    /// Summed duration of `invoke_agent` spans, ms (AgentCore Runtime).
    pub agent_duration_ms: i64,
    /// `execute_tool` spans (AgentCore Gateway).
    pub tool_calls: i64,
}

/// (day, tier) → tenant → what its spans drove.
pub type Drivers = BTreeMap<(chrono::NaiveDate, Tier), BTreeMap<TenantId, DriverUse>>;

/// The period's cost drivers from `usage_hourly`'s span columns, per day, tier and tenant.
///
/// # Errors
///
/// The lake cannot be read, or a sum overflows.
pub fn drivers(lake: &Lake, period: &Period) -> Result<Drivers> {
    let mut out = Drivers::new();
    for_each_row(lake, period, |dt, k, m, overflow| {
        let a = &m.agent;
        if a.agent_duration_ms == 0 && a.tool_calls == 0 {
            return Ok(());
        }
        let slot = out.entry((dt, k.tier)).or_default().entry(k.tenant_id).or_default();
        slot.agent_duration_ms =
            slot.agent_duration_ms.checked_add(a.agent_duration_ms).ok_or_else(overflow)?;
        slot.tool_calls = slot.tool_calls.checked_add(a.tool_calls).ok_or_else(overflow)?;
        Ok(())
    })?;
    Ok(out)
}
