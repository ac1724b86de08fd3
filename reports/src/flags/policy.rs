//! The flags policy: thresholds and per-tier pool capacity, rate limits and quotas.
//!
//! ```toml
//! share_threshold = 0.20        # silo migration: a tenant above this share of its pool...
//! consistent_fraction = 0.5     # ...in at least this fraction of its active hours...
//! window_days = 7               # ...over this trailing window...
//! min_active_hours = 12         # ...with at least this many active hours
//! saturation_threshold = 0.80   # a pool above this utilization of its capacity in an hour
//! max_tool_calls = 10           # runaway session: more tool calls in one agent invocation
//! max_invocation_seconds = 300  # runaway session: a longer agent invocation
//!
//! [tiers.basic]
//! rate_limit_per_second = 2     # requests per second per tenant
//! daily_quota = 50              # requests per UTC day per tenant
//! requests_per_hour = 36000     # pool capacity (optional)
//! tokens_per_minute = 400000    # pool capacity (optional)
//! ```
//!
//! Every key is optional; the defaults are the seeds' (20% share, 80% pool, 10 tool calls,
//! 5 minutes; basic 2/s and 50/day, premium 10/s and 500/day, no capacity). Unknown keys and
//! out-of-range values are refused with the field's name.

use std::collections::BTreeMap;

use agentmeter_schemas::{TenantId, Tier};
use rust_decimal::Decimal;
use serde::Deserialize;

/// A budget per billing period (calendar month, UTC).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetAmount {
    /// Total tokens (as `usage_hourly`'s `total_tokens` counts them).
    Tokens(i64),
    /// Usage charges in the price book's currency, priced with `flags --prices` (before the
    /// plan fee and the included-usage credit).
    Usd(Decimal),
}

/// `[budgets]`: the levels that raise an alert, and the budgets.
#[derive(Debug, Clone, PartialEq)]
pub struct Budgets {
    /// Fractions of a budget that raise a `budget_threshold` flag, ascending.
    pub levels: Vec<f64>,
    /// Per tenant (over its tier's).
    pub tenants: BTreeMap<TenantId, BudgetAmount>,
    /// Per tier: each tenant of the tier has this budget.
    pub tiers: BTreeMap<Tier, BudgetAmount>,
}

impl Budgets {
    /// The budget of `tenant` in `tier`: its own, else its tier's.
    pub fn of(&self, tier: &Tier, tenant: &TenantId) -> Option<BudgetAmount> {
        self.tenants.get(tenant).or_else(|| self.tiers.get(tier)).copied()
    }

    /// Whether any budget is priced (needs a price book).
    pub fn needs_prices(&self) -> bool {
        self.tenants.values().chain(self.tiers.values()).any(|b| matches!(b, BudgetAmount::Usd(_)))
    }
}

/// `[anomalies]`: a tenant's day against its own trailing days and its tier's peers.
#[derive(Debug, Clone, PartialEq)]
pub struct AnomalyPolicy {
    /// Whether `usage_anomaly` flags are evaluated.
    pub enabled: bool,
    /// Days before the evaluated day that form the baseline.
    pub baseline_days: u32,
    /// Days with usage the baseline needs; a newer tenant is not judged.
    pub min_baseline_days: u32,
    /// The day's tokens over the baseline median that raise a flag (times the tier's own
    /// ratio that day when the whole tier is up).
    pub ratio: f64,
    /// Robust z-score the day must also reach: (day − median) / (1.4826 × MAD).
    pub min_z: f64,
    /// Days below this many tokens are never anomalies (small numbers are noisy).
    pub min_tokens: i64,
}

/// Limits and capacity of one tier.
#[derive(Debug, Clone, PartialEq)]
pub struct TierPolicy {
    /// Requests per second per tenant (the rate limit).
    pub rate_limit_per_second: Option<u64>,
    /// Requests per UTC day per tenant.
    pub daily_quota: Option<u64>,
    /// Pool capacity in requests per hour.
    pub requests_per_hour: Option<u64>,
    /// Pool capacity in tokens per minute.
    pub tokens_per_minute: Option<u64>,
}

/// A validated policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Policy {
    /// Silo migration share threshold.
    pub share_threshold: f64,
    /// Fraction of active hours over the share threshold.
    pub consistent_fraction: f64,
    /// Trailing window of the silo-migration rule, days.
    pub window_days: u32,
    /// Active hours needed in the window.
    pub min_active_hours: u32,
    /// Pool utilization threshold.
    pub saturation_threshold: f64,
    /// Tool calls per agent invocation above which it is a runaway.
    pub max_tool_calls: u64,
    /// Agent invocation duration above which it is a runaway, seconds.
    pub max_invocation_seconds: u64,
    /// Per tier.
    pub tiers: BTreeMap<Tier, TierPolicy>,
    /// Budgets per period.
    pub budgets: Budgets,
    /// Usage anomalies.
    pub anomalies: AnomalyPolicy,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudget {
    tokens: Option<i64>,
    usd: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawBudgets {
    levels: Option<Vec<f64>>,
    #[serde(default)]
    tenants: BTreeMap<String, RawBudget>,
    #[serde(default)]
    tiers: BTreeMap<String, RawBudget>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawAnomalies {
    enabled: Option<bool>,
    baseline_days: Option<i64>,
    min_baseline_days: Option<i64>,
    ratio: Option<f64>,
    min_z: Option<f64>,
    min_tokens: Option<i64>,
}

fn budget(name: &str, b: RawBudget) -> Result<BudgetAmount, PolicyError> {
    match (b.tokens, b.usd) {
        (Some(t), None) if t >= 1 => Ok(BudgetAmount::Tokens(t)),
        (Some(t), None) => Err(PolicyError(format!("{name}.tokens: must be at least 1, got {t}"))),
        (None, Some(u)) => match u.parse::<Decimal>() {
            Ok(d) if d > Decimal::ZERO => Ok(BudgetAmount::Usd(d)),
            _ => Err(PolicyError(format!(
                "{name}.usd: must be a quoted amount above 0 (\"250.00\"), got {u:?}"
            ))),
        },
        _ => Err(PolicyError(format!("{name}: give one of tokens = N or usd = \"AMOUNT\""))),
    }
}

fn budgets(raw: RawBudgets) -> Result<Budgets, PolicyError> {
    let mut levels = raw.levels.unwrap_or_else(|| vec![0.5, 0.8, 1.0]);
    if levels.is_empty() {
        return Err(PolicyError("budgets.levels: give at least one level".into()));
    }
    for l in &levels {
        if !(l.is_finite() && *l > 0.0 && *l <= 10.0) {
            return Err(PolicyError(format!(
                "budgets.levels: each level must be a fraction above 0 and at most 10, got {l}"
            )));
        }
    }
    levels.sort_by(f64::total_cmp);
    levels.dedup();
    let mut tenants = BTreeMap::new();
    for (name, b) in raw.tenants {
        let t = TenantId::new(&name)
            .map_err(|e| PolicyError(format!("budgets.tenants.{}: {e}", refused_key(&name))))?;
        tenants.insert(t, budget(&format!("budgets.tenants.{name}"), b)?);
    }
    let mut tiers = BTreeMap::new();
    for (name, b) in raw.tiers {
        let t = Tier::new(&name)
            .map_err(|e| PolicyError(format!("budgets.tiers.{}: {e}", refused_key(&name))))?;
        tiers.insert(t, budget(&format!("budgets.tiers.{name}"), b)?);
    }
    Ok(Budgets { levels, tenants, tiers })
}

fn anomalies(raw: RawAnomalies) -> Result<AnomalyPolicy, PolicyError> {
    let baseline_days =
        positive("anomalies.baseline_days", raw.baseline_days, 90)?.unwrap_or(14) as u32;
    let min_baseline_days =
        positive("anomalies.min_baseline_days", raw.min_baseline_days, 90)?.unwrap_or(7) as u32;
    if min_baseline_days > baseline_days {
        return Err(PolicyError(format!(
            "anomalies.min_baseline_days: must be at most baseline_days ({baseline_days}), got {min_baseline_days}"
        )));
    }
    let ratio = raw.ratio.unwrap_or(3.0);
    if !(ratio.is_finite() && ratio > 1.0) {
        return Err(PolicyError(format!("anomalies.ratio: must be above 1, got {ratio}")));
    }
    let min_z = raw.min_z.unwrap_or(5.0);
    if !(min_z.is_finite() && min_z > 0.0) {
        return Err(PolicyError(format!("anomalies.min_z: must be above 0, got {min_z}")));
    }
    Ok(AnomalyPolicy {
        enabled: raw.enabled.unwrap_or(true),
        baseline_days,
        min_baseline_days,
        ratio,
        min_z,
        min_tokens: positive("anomalies.min_tokens", raw.min_tokens, i64::MAX)?.unwrap_or(100_000)
            as i64,
    })
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawTier {
    rate_limit_per_second: Option<i64>,
    daily_quota: Option<i64>,
    requests_per_hour: Option<i64>,
    tokens_per_minute: Option<i64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    share_threshold: Option<f64>,
    consistent_fraction: Option<f64>,
    window_days: Option<i64>,
    min_active_hours: Option<i64>,
    saturation_threshold: Option<f64>,
    max_tool_calls: Option<i64>,
    max_invocation_seconds: Option<i64>,
    #[serde(default)]
    tiers: BTreeMap<String, RawTier>,
    #[serde(default)]
    budgets: RawBudgets,
    #[serde(default)]
    anomalies: RawAnomalies,
}

/// A refused policy, naming the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct PolicyError(pub String);

fn fraction(name: &str, v: Option<f64>, default: f64) -> Result<f64, PolicyError> {
    let v = v.unwrap_or(default);
    if v.is_finite() && v > 0.0 && v <= 1.0 {
        Ok(v)
    } else {
        Err(PolicyError(format!("{name}: must be a fraction above 0 and at most 1, got {v}")))
    }
}

fn positive(name: &str, v: Option<i64>, max: i64) -> Result<Option<u64>, PolicyError> {
    match v {
        None => Ok(None),
        Some(n) if n >= 1 && n <= max => Ok(Some(n as u64)),
        Some(n) => {
            Err(PolicyError(format!("{name}: must be a whole number from 1 to {max}, got {n}")))
        }
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy::from_toml_str("").unwrap_or_else(|_| unreachable!("the empty policy is valid"))
    }
}

impl Policy {
    /// Parses and validates a policy; missing keys take the seeds' defaults.
    ///
    /// # Errors
    ///
    /// [`PolicyError`] naming the field (TOML syntax errors keep their line and column).
    pub fn from_toml_str(text: &str) -> Result<Self, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| PolicyError(e.to_string()))?;
        let mut tiers: BTreeMap<Tier, TierPolicy> = BTreeMap::from([
            (
                Tier::new("basic").map_err(|e| PolicyError(e.to_string()))?,
                TierPolicy {
                    rate_limit_per_second: Some(2),
                    daily_quota: Some(50),
                    requests_per_hour: None,
                    tokens_per_minute: None,
                },
            ),
            (
                Tier::new("premium").map_err(|e| PolicyError(e.to_string()))?,
                TierPolicy {
                    rate_limit_per_second: Some(10),
                    daily_quota: Some(500),
                    requests_per_hour: None,
                    tokens_per_minute: None,
                },
            ),
        ]);
        for (name, t) in raw.tiers {
            let tier = Tier::new(&name)
                .map_err(|e| PolicyError(format!("tiers.{}: {e}", refused_key(&name))))?;
            let base = tiers.get(&tier).cloned().unwrap_or(TierPolicy {
                rate_limit_per_second: None,
                daily_quota: None,
                requests_per_hour: None,
                tokens_per_minute: None,
            });
            let field = |f: &str| format!("tiers.{name}.{f}");
            tiers.insert(
                tier,
                TierPolicy {
                    rate_limit_per_second: positive(
                        &field("rate_limit_per_second"),
                        t.rate_limit_per_second,
                        1_000_000,
                    )?
                    .or(base.rate_limit_per_second),
                    daily_quota: positive(&field("daily_quota"), t.daily_quota, i64::MAX)?
                        .or(base.daily_quota),
                    requests_per_hour: positive(
                        &field("requests_per_hour"),
                        t.requests_per_hour,
                        i64::MAX,
                    )?
                    .or(base.requests_per_hour),
                    tokens_per_minute: positive(
                        &field("tokens_per_minute"),
                        t.tokens_per_minute,
                        i64::MAX,
                    )?
                    .or(base.tokens_per_minute),
                },
            );
        }
        Ok(Policy {
            share_threshold: fraction("share_threshold", raw.share_threshold, 0.20)?,
            consistent_fraction: fraction("consistent_fraction", raw.consistent_fraction, 0.5)?,
            window_days: positive("window_days", raw.window_days, 90)?.unwrap_or(7) as u32,
            min_active_hours: positive("min_active_hours", raw.min_active_hours, 24 * 90)?
                .unwrap_or(12) as u32,
            saturation_threshold: fraction("saturation_threshold", raw.saturation_threshold, 0.80)?,
            max_tool_calls: positive("max_tool_calls", raw.max_tool_calls, 1_000_000)?
                .unwrap_or(10),
            max_invocation_seconds: positive(
                "max_invocation_seconds",
                raw.max_invocation_seconds,
                86_400,
            )?
            .unwrap_or(300),
            tiers,
            budgets: budgets(raw.budgets)?,
            anomalies: anomalies(raw.anomalies)?,
        })
    }

    /// The policy of a tier (no limits for a tier the policy does not know).
    pub fn tier(&self, tier: &Tier) -> TierPolicy {
        self.tiers.get(tier).cloned().unwrap_or(TierPolicy {
            rate_limit_per_second: None,
            daily_quota: None,
            requests_per_hour: None,
            tokens_per_minute: None,
        })
    }
}

/// A key refused as an id, quoted and escaped (control characters, overrides) and shortened,
/// as its message shows it.
fn refused_key(name: &str) -> String {
    let mut shown: String = name.chars().take(80).collect();
    if shown.len() < name.len() {
        shown.push('…');
    }
    format!("{shown:?}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_the_seeds() {
        let p = Policy::default();
        assert_eq!(
            (p.share_threshold, p.saturation_threshold, p.max_tool_calls, p.max_invocation_seconds),
            (0.2, 0.8, 10, 300)
        );
        let basic = p.tier(&Tier::new("basic").unwrap());
        assert_eq!((basic.rate_limit_per_second, basic.daily_quota), (Some(2), Some(50)));
        let premium = p.tier(&Tier::new("premium").unwrap());
        assert_eq!((premium.rate_limit_per_second, premium.daily_quota), (Some(10), Some(500)));
    }

    #[test]
    fn overrides_keep_the_other_defaults() {
        let p = Policy::from_toml_str("window_days = 3\n[tiers.basic]\nrequests_per_hour = 900\n[tiers.gold]\ndaily_quota = 9\n").unwrap();
        assert_eq!(p.window_days, 3);
        let basic = p.tier(&Tier::new("basic").unwrap());
        assert_eq!((basic.daily_quota, basic.requests_per_hour), (Some(50), Some(900)));
        assert_eq!(p.tier(&Tier::new("gold").unwrap()).daily_quota, Some(9));
    }

    #[test]
    fn malformed_policies_name_the_field() {
        let cases = [
            (
                "share_threshold = 1.5",
                "share_threshold: must be a fraction above 0 and at most 1, got 1.5",
            ),
            (
                "[tiers.basic]\ndaily_quota = 0",
                "tiers.basic.daily_quota: must be a whole number from 1 to 9223372036854775807, got 0",
            ),
            ("window_days = 400", "window_days: must be a whole number from 1 to 90, got 400"),
            (
                "[tiers.\"bad tier\"]\ndaily_quota = 1",
                "tiers.\"bad tier\": invalid tier \"bad tier\": contains a character that is not allowed",
            ),
        ];
        for (text, want) in cases {
            assert_eq!(Policy::from_toml_str(text).unwrap_err().0, want, "{text}");
        }
        let unknown = Policy::from_toml_str("[tiers.basic]\ndaily_qouta = 5").unwrap_err().0;
        assert!(unknown.contains("unknown field `daily_qouta`"), "{unknown}");
        let typed = Policy::from_toml_str("max_tool_calls = \"ten\"").unwrap_err().0;
        assert!(typed.contains("max_tool_calls") || typed.contains("invalid type"), "{typed}");
    }
}
