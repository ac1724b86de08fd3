//! One tenant's usage over a range of days, grouped by day, model or user, read from
//! `usage_hourly` (the rollup: a month is 31 small files, whatever the number of events).

use std::collections::BTreeMap;

use agentmeter_aggregate::{Error, Lake, Result};
use agentmeter_schemas::tables::{HourlyMeasures, USAGE_HOURLY};
use agentmeter_schemas::{TenantId, Tier};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Serialize;

/// How the rows of an answer are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    /// One row per UTC day.
    Day,
    /// One row per model.
    Model,
    /// One row per user of the tenant.
    User,
}

impl std::str::FromStr for GroupBy {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "day" => Ok(GroupBy::Day),
            "model" => Ok(GroupBy::Model),
            "user" => Ok(GroupBy::User),
            other => Err(format!("group_by {other:?}: expected day, model or user")),
        }
    }
}

/// The figures of a row or of the totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Figures {
    /// Inference calls (from the logs).
    pub invocations: i64,
    /// Of those, calls that reported no usage (billed as unknown, never as free).
    pub usage_unknown: i64,
    /// Input tokens.
    pub input_tokens: i64,
    /// Output tokens.
    pub output_tokens: i64,
    /// Total tokens.
    pub total_tokens: i64,
    /// Prompt-cache read tokens.
    pub cache_read_tokens: i64,
    /// Prompt-cache write tokens.
    pub cache_write_tokens: i64,
    /// Tool calls (`execute_tool` spans).
    pub tool_calls: i64,
    /// Of those, the failed ones.
    pub tool_errors: i64,
    /// Agent invocations (`invoke_agent` spans).
    pub agent_invocations: i64,
    /// Their summed duration, milliseconds.
    pub agent_duration_ms: i64,
    /// The longest of them, milliseconds.
    pub max_agent_duration_ms: i64,
}

impl Figures {
    fn add(&mut self, m: &HourlyMeasures) -> Option<()> {
        let t = &m.tokens;
        let a = &m.agent;
        self.invocations = self.invocations.checked_add(m.invocations)?;
        self.usage_unknown = self.usage_unknown.checked_add(m.usage_unknown)?;
        self.input_tokens = self.input_tokens.checked_add(t.input)?;
        self.output_tokens = self.output_tokens.checked_add(t.output)?;
        self.total_tokens = self.total_tokens.checked_add(t.total)?;
        self.cache_read_tokens = self.cache_read_tokens.checked_add(t.cache_read)?;
        self.cache_write_tokens = self.cache_write_tokens.checked_add(t.cache_write)?;
        self.tool_calls = self.tool_calls.checked_add(a.tool_calls)?;
        self.tool_errors = self.tool_errors.checked_add(a.tool_errors)?;
        self.agent_invocations = self.agent_invocations.checked_add(a.agent_invocations)?;
        self.agent_duration_ms = self.agent_duration_ms.checked_add(a.agent_duration_ms)?;
        self.max_agent_duration_ms = self.max_agent_duration_ms.max(a.max_agent_duration_ms);
        Some(())
    }
}

/// One row: the group's key and its figures.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Row {
    /// The day (`group_by=day`), the model id (`model`) or the user id (`user`).
    pub key: String,
    /// Its figures.
    #[serde(flatten)]
    pub figures: Figures,
}

/// The answer of `GET /v1/usage`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UsageAnswer {
    /// The tenant.
    pub tenant_id: TenantId,
    /// First day, inclusive.
    pub from: NaiveDate,
    /// Last day, exclusive.
    pub to: NaiveDate,
    /// How `rows` are grouped.
    pub group_by: GroupBy,
    /// The tiers the tenant's usage was logged under.
    pub tiers: Vec<Tier>,
    /// One row per group with usage, in key order.
    pub rows: Vec<Row>,
    /// The sum of the rows.
    pub totals: Figures,
    /// The start of the last hour with usage in the range (UTC), if any.
    pub last_hour: Option<DateTime<Utc>>,
}

/// `tenant`'s usage over the days in `[from, to)`, grouped by `group_by`.
///
/// # Errors
///
/// The lake cannot be read, or a sum overflows.
pub fn usage(
    lake: &Lake,
    tenant: &TenantId,
    from: NaiveDate,
    to: NaiveDate,
    group_by: GroupBy,
) -> Result<UsageAnswer> {
    let mut groups: BTreeMap<String, Figures> = BTreeMap::new();
    let mut totals = Figures::default();
    let mut tiers: Vec<Tier> = Vec::new();
    let mut last_hour: Option<i64> = None;
    for dt in lake.partitions(USAGE_HOURLY)? {
        if dt < from || dt >= to {
            continue;
        }
        let overflow = || Error::Overflow { table: USAGE_HOURLY, dt: dt.to_string() };
        for (k, m) in lake.hourly(dt)? {
            if &k.tenant_id != tenant {
                continue;
            }
            let key = match group_by {
                GroupBy::Day => dt.to_string(),
                GroupBy::Model => k.model_id.to_string(),
                GroupBy::User => k.user_id.to_string(),
            };
            groups.entry(key).or_default().add(&m).ok_or_else(overflow)?;
            totals.add(&m).ok_or_else(overflow)?;
            if !tiers.contains(&k.tier) {
                tiers.push(k.tier);
            }
            last_hour = last_hour.max(Some(k.hour_ms));
        }
    }
    tiers.sort();
    Ok(UsageAnswer {
        tenant_id: tenant.clone(),
        from,
        to,
        group_by,
        tiers,
        rows: groups.into_iter().map(|(key, figures)| Row { key, figures }).collect(),
        totals,
        last_hour: last_hour.and_then(DateTime::from_timestamp_millis),
    })
}
