//! Flags over a tenant's own usage: budgets per period and anomalies against its baseline.
//!
//! | kind | evaluated | holds when |
//! |---|---|---|
//! | `budget_threshold` | at every evaluation point | the tenant's usage in the period so far (tokens, or usage charges priced with `--prices`) reaches a level (`budgets.levels`) of its budget; one flag per level and period, so each level alerts once |
//! | `usage_anomaly` | at the end of each UTC day | the day's tokens are at least `min_tokens`, at least `ratio` × the median of the tenant's days with usage in the `baseline_days` before (times its tier's median ratio that day, when the whole tier is up), and at least `min_z` robust standard deviations above it (`1.4826 × MAD`, floored at a tenth of the median); one flag per episode |
//!
//! A budget's forecast is the usage so far plus the trailing seven days' rate (within the
//! period) times the time left in the period.

use std::collections::BTreeMap;

use agentmeter_schemas::tables::TenantHour;
use agentmeter_schemas::{TenantId, Tier};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;

use super::model::{Evidence, Flag, FlagKind, FlagStatus, Severity};
use super::policy::{BudgetAmount, Policy};
use crate::format::grouped;
use crate::invoice::Period;

/// Days of the trailing rate a budget forecast extrapolates.
pub const FORECAST_DAYS: i64 = 7;

/// A tenant's usage charges in the period so far at an instant (`usd` budgets), as
/// `invoice --preview` would price the usage before it, without the plan fee and credit.
pub trait ChargesToDate {
    /// The charges of `tenant` from the start of the period holding `at - 1 ms` up to `at`.
    fn charges(&self, tenant: &TenantId, at: DateTime<Utc>) -> Option<Decimal>;
}

/// Charges computed beforehand for a set of instants.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChargeTable(pub BTreeMap<DateTime<Utc>, BTreeMap<TenantId, Decimal>>);

impl ChargesToDate for ChargeTable {
    fn charges(&self, tenant: &TenantId, at: DateTime<Utc>) -> Option<Decimal> {
        // An instant that was priced but where the tenant had no usage: nothing charged.
        self.0.get(&at).map(|m| m.get(tenant).copied().unwrap_or_default())
    }
}

/// The period whose usage an evaluation at `at` judges: the month holding `at - 1 ms`.
pub fn period_at(at: DateTime<Utc>) -> Period {
    Period::containing((at - TimeDelta::milliseconds(1)).date_naive())
}

/// The instants whose charges a `usd` budget at `points` needs: each point, and the start
/// of its forecast window when that is inside the period.
pub fn charge_instants(points: &[DateTime<Utc>]) -> Vec<DateTime<Utc>> {
    let mut out: Vec<DateTime<Utc>> = Vec::new();
    for &at in points {
        out.push(at);
        let w = forecast_start(at);
        if w > period_at(at).start_time() {
            out.push(w);
        }
    }
    out.sort();
    out.dedup();
    out
}

fn forecast_start(at: DateTime<Utc>) -> DateTime<Utc> {
    (at - TimeDelta::days(FORECAST_DAYS)).max(period_at(at).start_time())
}

/// Tokens and requests per tenant and hour, from `tenant_hourly`.
pub struct TenantHours {
    hours: BTreeMap<(Tier, TenantId), BTreeMap<i64, (i64, i64)>>,
}

impl TenantHours {
    /// Indexes the rows.
    pub fn new(rows: &[TenantHour]) -> Self {
        let mut hours: BTreeMap<(Tier, TenantId), BTreeMap<i64, (i64, i64)>> = BTreeMap::new();
        for r in rows {
            let e = hours
                .entry((r.tier.clone(), r.tenant_id.clone()))
                .or_default()
                .entry(r.hour_ms)
                .or_default();
            e.0 = e.0.saturating_add(r.tokens.total);
            e.1 = e.1.saturating_add(r.invocations);
        }
        Self { hours }
    }

    /// Tokens and requests of a series over `[from, to)`.
    fn sum(
        series: &BTreeMap<i64, (i64, i64)>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> (i64, i64) {
        series
            .range(from.timestamp_millis()..to.timestamp_millis())
            .fold((0, 0), |acc, (_, v)| (acc.0.saturating_add(v.0), acc.1.saturating_add(v.1)))
    }
}

fn midnight(d: NaiveDate) -> DateTime<Utc> {
    d.and_time(chrono::NaiveTime::MIN).and_utc()
}

fn level_label(level: f64) -> String {
    format!("{}%", (level * 100.0).round() as i64)
}

/// What a budget measured at one instant.
struct Spend {
    fraction: f64,
    forecast_fraction: f64,
    figures: BTreeMap<String, f64>,
    amounts: BTreeMap<String, String>,
    said: (String, String, String),
    metric: &'static str,
}

fn measure(
    budget: BudgetAmount,
    tenant: &TenantId,
    series: &BTreeMap<i64, (i64, i64)>,
    charges: Option<&dyn ChargesToDate>,
    at: DateTime<Utc>,
) -> Option<Spend> {
    let period = period_at(at);
    let (start, end) = (period.start_time(), period.end_time());
    let w = forecast_start(at);
    let elapsed_ms = (at - w).num_milliseconds();
    let left_ms = (end - at).num_milliseconds().max(0);
    match budget {
        BudgetAmount::Tokens(limit) => {
            let (spent, _) = TenantHours::sum(series, start, at);
            let (recent, _) = TenantHours::sum(series, w, at);
            let forecast = if elapsed_ms > 0 {
                spent.saturating_add(
                    (i128::from(recent) * i128::from(left_ms) / i128::from(elapsed_ms)) as i64,
                )
            } else {
                spent
            };
            let mut figures = BTreeMap::new();
            figures.insert("spent_tokens".into(), spent as f64);
            figures.insert("limit_tokens".into(), limit as f64);
            figures.insert("forecast_tokens".into(), forecast as f64);
            let fraction = spent as f64 / limit as f64;
            let forecast_fraction = forecast as f64 / limit as f64;
            figures.insert("forecast_fraction".into(), forecast_fraction);
            Some(Spend {
                fraction,
                forecast_fraction,
                figures,
                amounts: BTreeMap::new(),
                said: (
                    format!("{} tokens", grouped(spent)),
                    format!("{} tokens", grouped(limit)),
                    format!("{} tokens", grouped(forecast)),
                ),
                metric: "budget_tokens",
            })
        }
        BudgetAmount::Usd(limit) => {
            let c = charges?;
            let spent = c.charges(tenant, at)?;
            let before = if w > start { c.charges(tenant, w)? } else { Decimal::ZERO };
            let forecast = if elapsed_ms > 0 {
                spent + (spent - before) * Decimal::from(left_ms) / Decimal::from(elapsed_ms)
            } else {
                spent
            }
            .round_dp(2);
            let mut forecast = forecast;
            forecast.rescale(2);
            let fraction = (spent / limit).to_f64().unwrap_or(0.0);
            let forecast_fraction = (forecast / limit).to_f64().unwrap_or(0.0);
            let mut figures = BTreeMap::new();
            figures.insert("forecast_fraction".into(), forecast_fraction);
            let mut amounts = BTreeMap::new();
            amounts.insert("spent".into(), spent.to_string());
            amounts.insert("budget".into(), limit.to_string());
            amounts.insert("forecast".into(), forecast.to_string());
            Some(Spend {
                fraction,
                forecast_fraction,
                figures,
                amounts,
                said: (spent.to_string(), limit.to_string(), forecast.to_string()),
                metric: "budget_usd",
            })
        }
    }
}

/// The `budget_threshold` flags holding at `at`.
pub fn budget_flags(
    index: &TenantHours,
    policy: &Policy,
    charges: Option<&dyn ChargesToDate>,
    at: DateTime<Utc>,
) -> Vec<Flag> {
    let b = &policy.budgets;
    let mut out = Vec::new();
    let period = period_at(at);
    for ((tier, tenant), series) in &index.hours {
        let Some(budget) = b.of(tier, tenant) else { continue };
        let Some(spend) = measure(budget, tenant, series, charges, at) else { continue };
        for &level in b.levels.iter().filter(|l| spend.fraction >= **l) {
            let (spent, limit, forecast) = &spend.said;
            let severity = if level >= 1.0 {
                Severity::Critical
            } else if level >= 0.8 {
                Severity::Warning
            } else {
                Severity::Info
            };
            let mut evidence = Evidence {
                figures: spend.figures.clone(),
                amounts: spend.amounts.clone(),
                ..Default::default()
            };
            evidence.figures.insert("level".into(), level);
            out.push(Flag {
                id: format!(
                    "{}/{tier}/{tenant}/{}/{}",
                    FlagKind::BudgetThreshold.code(),
                    period.label(),
                    level_label(level)
                ),
                kind: FlagKind::BudgetThreshold,
                tier: tier.clone(),
                tenant_id: Some(tenant.clone()),
                window_start: period.start_time(),
                window_end: at,
                metric: spend.metric.into(),
                value: spend.fraction,
                threshold: level,
                evidence,
                severity,
                recommended_action: format!(
                    "Tenant {tenant} has used {:.0}% of its {} budget ({spent} of {limit}); at the \
                     last {FORECAST_DAYS} days' rate it reaches {forecast} ({:.0}%) by the end of \
                     the period: tell the tenant, or raise the budget",
                    spend.fraction * 100.0,
                    period.label(),
                    spend.forecast_fraction * 100.0
                ),
                status: FlagStatus::Active,
            });
        }
    }
    out
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n == 0 {
        0.0
    } else if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

/// A tenant's day against its baseline.
struct DayScore {
    tokens: i64,
    requests: i64,
    median: f64,
    ratio: f64,
    z: f64,
    days: usize,
}

/// The `usage_anomaly` flags of the UTC day ending at `at` (none unless `at` is a midnight).
pub fn anomaly_flags(index: &TenantHours, policy: &Policy, at: DateTime<Utc>) -> Vec<Flag> {
    let a = &policy.anomalies;
    if !a.enabled || at != midnight(at.date_naive()) {
        return Vec::new();
    }
    let day_start = at - TimeDelta::days(1);
    let mut by_tier: BTreeMap<&Tier, Vec<(&TenantId, DayScore)>> = BTreeMap::new();
    for ((tier, tenant), series) in &index.hours {
        let (tokens, requests) = TenantHours::sum(series, day_start, at);
        let mut base: Vec<f64> = (1..=i64::from(a.baseline_days))
            .map(|k| {
                let s = day_start - TimeDelta::days(k);
                TenantHours::sum(series, s, s + TimeDelta::days(1)).0 as f64
            })
            .filter(|t| *t > 0.0)
            .collect();
        if base.len() < a.min_baseline_days as usize {
            continue;
        }
        let days = base.len();
        let med = median(&mut base);
        let mut dev: Vec<f64> = base.iter().map(|x| (x - med).abs()).collect();
        let scale = (1.4826 * median(&mut dev)).max(0.1 * med).max(1.0);
        let score = DayScore {
            tokens,
            requests,
            median: med,
            ratio: tokens as f64 / med,
            z: (tokens as f64 - med) / scale,
            days,
        };
        by_tier.entry(tier).or_default().push((tenant, score));
    }
    let mut out = Vec::new();
    for (tier, scores) in &by_tier {
        for (tenant, s) in scores {
            // The tier's own movement that day: the median ratio of the other tenants.
            let mut peers: Vec<f64> =
                scores.iter().filter(|(t, _)| t != tenant).map(|(_, p)| p.ratio).collect();
            let peer_ratio = if peers.len() >= 3 { median(&mut peers) } else { 1.0 };
            let threshold = a.ratio * peer_ratio.max(1.0);
            if s.tokens < a.min_tokens || s.ratio < threshold || s.z < a.min_z {
                continue;
            }
            let mut evidence = Evidence::default();
            for (k, v) in [
                ("tokens", s.tokens as f64),
                ("requests", s.requests as f64),
                ("baseline_median_tokens", s.median.round()),
                ("baseline_days", s.days as f64),
                ("robust_z", (s.z * 100.0).round() / 100.0),
                ("tier_ratio", (peer_ratio * 100.0).round() / 100.0),
            ] {
                evidence.figures.insert(k.into(), v);
            }
            out.push(Flag {
                id: format!("{}/{tier}/{tenant}", FlagKind::UsageAnomaly.code()),
                kind: FlagKind::UsageAnomaly,
                tier: (*tier).clone(),
                tenant_id: Some((*tenant).clone()),
                window_start: day_start,
                window_end: at,
                metric: "daily_tokens_ratio".into(),
                value: s.ratio,
                threshold,
                evidence,
                severity: Severity::Warning,
                recommended_action: format!(
                    "Tenant {tenant} used {} tokens on {}, {:.1}× its median day ({}) over the {} \
                     days with usage before, while its tier ran at {:.1}× its own: check for a \
                     runaway agent, a new workload or a leaked key",
                    grouped(s.tokens),
                    day_start.date_naive(),
                    s.ratio,
                    grouped(s.median.round() as i64),
                    s.days,
                    peer_ratio
                ),
                status: FlagStatus::Active,
            });
        }
    }
    out
}

/// The hours of history the rules need before `from`: the baseline, and the period's start
/// for budgets.
pub fn history_start(policy: &Policy, from: DateTime<Utc>) -> DateTime<Utc> {
    let baseline = midnight(from.date_naive())
        - TimeDelta::days(i64::from(policy.anomalies.baseline_days) + 1);
    baseline.min(period_at(from + TimeDelta::milliseconds(1)).start_time())
}

/// Both rules at `at`.
pub fn usage_flags(
    index: &TenantHours,
    policy: &Policy,
    charges: Option<&dyn ChargesToDate>,
    at: DateTime<Utc>,
) -> Vec<Flag> {
    let mut out = budget_flags(index, policy, charges, at);
    out.extend(anomaly_flags(index, policy, at));
    out
}
