//! Flags and alerts: the stable JSON schema that files, the `flags` table, webhooks and AWS
//! targets all carry.

use std::collections::BTreeMap;

use agentmeter_schemas::{TenantId, Tier};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// What a flag is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagKind {
    /// A tenant consistently takes more than its share of a pooled tier: move it to a silo.
    SiloMigration,
    /// A tier's pool runs above its utilization threshold: scale the pool.
    PoolSaturation,
    /// A tenant exceeds its tier's daily quota or rate limit.
    QuotaBreach,
    /// An agent invocation with too many tool calls or running too long.
    RunawaySession,
    /// A tenant passed a level of its budget for the period.
    BudgetThreshold,
    /// A tenant's day far above its own baseline and its tier's peers.
    UsageAnomaly,
}

impl FlagKind {
    /// The snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            FlagKind::SiloMigration => "silo_migration",
            FlagKind::PoolSaturation => "pool_saturation",
            FlagKind::QuotaBreach => "quota_breach",
            FlagKind::RunawaySession => "runaway_session",
            FlagKind::BudgetThreshold => "budget_threshold",
            FlagKind::UsageAnomaly => "usage_anomaly",
        }
    }
}

/// How urgent a flag is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    /// Worth knowing.
    Info,
    /// Act soon.
    Warning,
    /// Act now.
    Critical,
}

/// Whether a flag still holds at the end of the evaluated range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FlagStatus {
    /// It holds at the last evaluation.
    Active,
    /// It held earlier in the range and no longer does.
    Resolved,
}

/// The numbers behind a flag.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Evidence {
    /// Hours in the window where the metric was over the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_over: Option<u32>,
    /// Hours in the window where the tenant (or pool) had any request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hours_active: Option<u32>,
    /// Days in the window over the threshold.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub days_over: Option<u32>,
    /// Further named figures (for example `requests`, `pool_requests`, `tool_calls`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub figures: BTreeMap<String, f64>,
    /// Named amounts of money, as exact decimal strings (a priced budget's `spent`, `budget`
    /// and `forecast`): never floating point.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub amounts: BTreeMap<String, String>,
    /// The agent invocation (trace id and span id) of a runaway session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invocation: Option<String>,
}

/// One flag. `id` is its identity across runs (kind, tier, tenant and, for a runaway
/// session, the invocation): a flag with the same id is the same flag, raised once and
/// resolved once.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Flag {
    /// Stable identity, e.g. `silo_migration/basic/clinic-027`.
    pub id: String,
    /// What it is about.
    pub kind: FlagKind,
    /// The tier (the pool).
    pub tier: Tier,
    /// The tenant, except for pool flags.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant_id: Option<TenantId>,
    /// Start of the evidence window (inclusive).
    pub window_start: DateTime<Utc>,
    /// End of the evidence window (exclusive).
    pub window_end: DateTime<Utc>,
    /// What was measured (`pool_share`, `pool_utilization`, `requests_per_day`,
    /// `peak_requests_per_second`, `tool_calls`, `duration_ms`).
    pub metric: String,
    /// The measured value (the worst in the window).
    pub value: f64,
    /// The threshold it crossed.
    pub threshold: f64,
    /// The numbers behind it.
    pub evidence: Evidence,
    /// How urgent.
    pub severity: Severity,
    /// What to do about it.
    pub recommended_action: String,
    /// Whether it still holds at the end of the evaluated range.
    pub status: FlagStatus,
}

/// A change of a flag's state, delivered to the alert sinks once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// The flag appeared.
    Raised,
    /// The flag no longer holds.
    Resolved,
}

/// One alert: a flag raised or resolved.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// Idempotency key: the same alert always has the same key (flag id, transition and the
    /// time the flag was raised), so a receiver can drop redeliveries.
    pub alert_id: String,
    /// Raised or resolved.
    pub transition: Transition,
    /// The evaluation time at which the change was seen.
    pub at: DateTime<Utc>,
    /// The flag as evaluated then.
    pub flag: Flag,
}

impl Alert {
    /// A one-line human summary, for stdout and message subjects.
    pub fn summary(&self) -> String {
        let who = self.flag.tenant_id.as_ref().map(|t| format!(" tenant {t}")).unwrap_or_default();
        format!(
            "[{}] {} {}: tier {}{}: {} {} (threshold {}) — {}",
            match self.flag.severity {
                Severity::Info => "info",
                Severity::Warning => "warning",
                Severity::Critical => "critical",
            },
            self.flag.kind.code(),
            match self.transition {
                Transition::Raised => "raised",
                Transition::Resolved => "resolved",
            },
            self.flag.tier,
            who,
            self.flag.metric,
            crate::format::figure(&self.flag.metric, self.flag.value),
            crate::format::figure(&self.flag.metric, self.flag.threshold),
            self.flag.recommended_action
        )
    }
}
