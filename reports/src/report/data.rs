//! Gathering a report: one pass over the period's `usage_hourly` partitions, then the shares,
//! rankings and daily sums the page draws.
//!
//! Memory is bounded by the period's tenant-hours (a sorted `(hour, requests)` list per tenant
//! of each tier) and tenant-days, never by events: partitions are read one at a time.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};

use agentmeter_aggregate::Lake;
use agentmeter_schemas::tables::{HOUR_MS, USAGE_HOURLY};
use agentmeter_schemas::{ModelId, TenantId, Tier};
use chrono::NaiveDate;

use crate::flags::Flag;
use crate::invoice::Period;
use crate::invoice::export::MarginSummary;

/// Why a report could not be gathered.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The lake could not be read.
    #[error("reading the lake at {root}")]
    Lake {
        /// The lake.
        root: String,
        /// Cause.
        #[source]
        source: agentmeter_aggregate::Error,
    },
    /// The lake holds no usage for the period.
    #[error(
        "no usage in {period}: the lake at {root} has no usage_hourly rows for {period} \
         (ingest some usage first, or choose another period)"
    )]
    NoUsage {
        /// `YYYY-MM`.
        period: String,
        /// The lake.
        root: String,
    },
    /// A sum went past `i64`.
    #[error("usage sums overflow a 64-bit integer ({what})")]
    Overflow {
        /// Which sum: the tier and tenant.
        what: String,
    },
    /// An option is out of range.
    #[error("invalid report option {field}: {reason}")]
    InvalidOption {
        /// The option.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// A margin summary or flags file could not be parsed.
    #[error("parsing {what}")]
    Input {
        /// What was parsed (file kind and line).
        what: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
}

/// A tier's pool capacity.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PoolCapacity {
    /// Requests the pool serves in an hour; `None` when not configured.
    pub requests_per_hour: Option<u64>,
}

/// What to gather besides the usage.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportOptions {
    /// Tenants drawn per chart (by requests per tier; by tokens for the daily chart).
    pub top_tenants: usize,
    /// Pool capacity per tier. A tenant's hourly share is of the capacity when one is given,
    /// else of the pool's own requests in that hour.
    pub capacity: BTreeMap<Tier, PoolCapacity>,
    /// The silo-migration line, as a fraction of the pool (0.20).
    pub share_threshold: f64,
    /// The pool saturation line, as a fraction of the capacity (0.80).
    pub saturation_threshold: f64,
    /// The period's margin summary (`margin.json` of an invoice run), when one exists.
    pub margin: Option<MarginSummary>,
    /// Flags (`flags.jsonl`); those whose window misses the period are left out.
    pub flags: Vec<Flag>,
}

impl Default for ReportOptions {
    fn default() -> Self {
        Self {
            top_tenants: 5,
            capacity: BTreeMap::new(),
            share_threshold: 0.20,
            saturation_threshold: 0.80,
            margin: None,
            flags: Vec::new(),
        }
    }
}

/// Everything the page shows, gathered from the lake and the options.
#[derive(Debug, Clone, PartialEq)]
pub struct ReportData {
    /// The month.
    pub period: Period,
    /// The lake the usage was read from, as given.
    pub lake: String,
    /// Hours in the period: the x axis of the hourly charts.
    pub hours: usize,
    /// Requests (inference calls) in the period.
    pub requests: i64,
    /// Tokens (stated totals) in the period.
    pub tokens: i64,
    /// Distinct tenants with usage.
    pub tenants: usize,
    /// Per tier with usage, in tier order.
    pub tiers: Vec<TierUsage>,
    /// Tokens per tenant per day.
    pub daily: DailyTokens,
    /// Usage per tier and model: by tier, then most tokens first.
    pub models: Vec<ModelUsage>,
    /// The silo-migration line (fraction).
    pub share_threshold: f64,
    /// The saturation line (fraction).
    pub saturation_threshold: f64,
    /// The margin summary, when one exists for this period.
    pub margin: Option<MarginSummary>,
    /// The period's flags: active first, then by severity (worst first), kind, tier, tenant.
    pub flags: Vec<Flag>,
    /// Remarks for the reader (for example a margin summary of another period left out).
    pub notes: Vec<String>,
}

/// One tier's pool over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct TierUsage {
    /// The tier.
    pub tier: Tier,
    /// Requests.
    pub requests: i64,
    /// Tokens.
    pub tokens: i64,
    /// Distinct tenants with usage.
    pub tenants: usize,
    /// The configured capacity, requests per hour.
    pub capacity_per_hour: Option<u64>,
    /// The pool's requests in each hour of the period.
    pub pool_requests: Vec<i64>,
    /// Pool requests over capacity in each hour, when a capacity is configured.
    pub utilization: Option<Vec<f64>>,
    /// Hours whose utilization is above the saturation line.
    pub hours_saturated: u32,
    /// The top tenants by requests (most first; ties by tenant id).
    pub top: Vec<TenantShare>,
    /// Tenants outside the top whose share went above the line in some hour.
    pub others_over: Vec<ShareStats>,
}

/// A tenant's share of its pool, hour by hour.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantShare {
    /// The summary figures.
    pub stats: ShareStats,
    /// Tokens in the tier.
    pub tokens: i64,
    /// Share of the pool in each hour of the period (0 when the denominator is 0).
    pub share: Vec<f64>,
}

/// How a tenant used its pool over the period.
#[derive(Debug, Clone, PartialEq)]
pub struct ShareStats {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Requests in the tier.
    pub requests: i64,
    /// Hours with at least one request.
    pub hours_active: u32,
    /// Active hours whose share is above the silo-migration line.
    pub hours_over: u32,
    /// The largest hourly share.
    pub peak_share: f64,
}

/// One model's usage in one tier.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelUsage {
    /// The tier.
    pub tier: Tier,
    /// The model as logged.
    pub model_id: ModelId,
    /// Requests.
    pub requests: i64,
    /// Tokens.
    pub tokens: i64,
    /// Distinct tenants that used it.
    pub tenants: usize,
}

/// Tokens per day of the top tenants (across tiers) and of the rest.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DailyTokens {
    /// The days of the period.
    pub days: Vec<NaiveDate>,
    /// The top tenants by tokens (most first; ties by tenant id).
    pub top: Vec<TenantDaily>,
    /// Every other tenant, summed per day.
    pub rest: Vec<i64>,
    /// How many tenants `rest` sums.
    pub rest_tenants: usize,
}

/// One tenant's tokens per day.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantDaily {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Tokens per day of the period.
    pub tokens: Vec<i64>,
    /// Their sum.
    pub total: i64,
}

/// One tenant of one tier while gathering.
#[derive(Default)]
struct TenantAcc {
    requests: i64,
    tokens: i64,
    /// `(hour index, requests)`, sorted by hour, one entry per hour.
    hourly: Vec<(u32, i64)>,
}

impl TenantAcc {
    fn add(&mut self, hour: u32, requests: i64, tokens: i64) -> Option<()> {
        self.requests = self.requests.checked_add(requests)?;
        self.tokens = self.tokens.checked_add(tokens)?;
        // Rows arrive in hour order (partitions by date, each summed in key order); the
        // search handles a stray row of an earlier hour without breaking the order.
        match self.hourly.last_mut() {
            Some(last) if last.0 == hour => last.1 = last.1.checked_add(requests)?,
            Some(last) if last.0 > hour => match self.hourly.binary_search_by_key(&hour, |e| e.0) {
                Ok(i) => self.hourly[i].1 = self.hourly[i].1.checked_add(requests)?,
                Err(i) => self.hourly.insert(i, (hour, requests)),
            },
            _ => self.hourly.push((hour, requests)),
        }
        Some(())
    }
}

struct TierAcc {
    pool: Vec<i64>,
    tenants: BTreeMap<TenantId, TenantAcc>,
}

/// Gathers the report of `period` from the lake's `usage_hourly` table.
///
/// Only the period's partitions are read, one at a time. Requests are inference calls;
/// tokens are the totals the records stated.
///
/// # Errors
///
/// [`ReportError::InvalidOption`] for a threshold outside `(0, 1]` or a zero capacity,
/// [`ReportError::Lake`] when the lake cannot be read, [`ReportError::NoUsage`] when the
/// period has no usage, [`ReportError::Overflow`] when a sum passes `i64`.
pub fn gather(
    lake: &Lake,
    period: Period,
    opts: &ReportOptions,
) -> Result<ReportData, ReportError> {
    validate(opts)?;
    let root = lake.uri();
    let lake_err = |source| ReportError::Lake { root: root.clone(), source };
    let start_ms = period.start_time().timestamp_millis();
    let span_ms = period.end_time().timestamp_millis() - start_ms;
    let hours = usize::try_from(span_ms / HOUR_MS).unwrap_or(0);
    let days: Vec<NaiveDate> = period.start.iter_days().take_while(|d| *d < period.end).collect();

    let mut tiers: BTreeMap<Tier, TierAcc> = BTreeMap::new();
    let mut daily: BTreeMap<TenantId, Vec<i64>> = BTreeMap::new();
    let mut models: BTreeMap<(Tier, ModelId), (i64, i64, BTreeSet<TenantId>)> = BTreeMap::new();
    let mut rows = 0u64;
    for dt in lake.partitions(USAGE_HOURLY).map_err(lake_err)? {
        if dt < period.start || dt >= period.end {
            continue;
        }
        // One day summed per (tier, tenant, hour) before it joins the month.
        let mut day: BTreeMap<(Tier, TenantId, u32), (i64, i64)> = BTreeMap::new();
        for (k, m) in lake.hourly(dt).map_err(lake_err)? {
            let offset = k.hour_ms - start_ms;
            let Some(hour) = u32::try_from(offset / HOUR_MS).ok().filter(|h| (*h as usize) < hours)
            else {
                continue;
            };
            let overflow = || overflow_in(&k.tier, &k.tenant_id);
            let slot = day.entry((k.tier.clone(), k.tenant_id.clone(), hour)).or_default();
            slot.0 = slot.0.checked_add(m.invocations).ok_or_else(overflow)?;
            slot.1 = slot.1.checked_add(m.tokens.total).ok_or_else(overflow)?;
            let model = models.entry((k.tier.clone(), k.model_id.clone())).or_default();
            model.0 = model.0.checked_add(m.invocations).ok_or_else(overflow)?;
            model.1 = model.1.checked_add(m.tokens.total).ok_or_else(overflow)?;
            if !model.2.contains(&k.tenant_id) {
                model.2.insert(k.tenant_id.clone());
            }
            rows += 1;
        }
        for ((tier, tenant, hour), (requests, tokens)) in day {
            let overflow = || overflow_in(&tier, &tenant);
            let acc = tiers
                .entry(tier.clone())
                .or_insert_with(|| TierAcc { pool: vec![0; hours], tenants: BTreeMap::new() });
            if let Some(pool) = acc.pool.get_mut(hour as usize) {
                *pool = pool.checked_add(requests).ok_or_else(overflow)?;
            }
            acc.tenants
                .entry(tenant.clone())
                .or_default()
                .add(hour, requests, tokens)
                .ok_or_else(overflow)?;
            let day_index = hour as usize / 24;
            let per_day = daily.entry(tenant.clone()).or_insert_with(|| vec![0; days.len()]);
            if let Some(d) = per_day.get_mut(day_index) {
                *d = d.checked_add(tokens).ok_or_else(overflow)?;
            }
        }
    }
    if rows == 0 {
        return Err(ReportError::NoUsage { period: period.label(), root });
    }

    let mut requests = 0i64;
    let mut tokens = 0i64;
    let mut tier_usage = Vec::new();
    for (tier, acc) in tiers {
        let capacity = opts.capacity.get(&tier).and_then(|c| c.requests_per_hour);
        let t = tier_report(tier, acc, capacity, opts)?;
        let total = || ReportError::Overflow { what: "period totals".into() };
        requests = requests.checked_add(t.requests).ok_or_else(total)?;
        tokens = tokens.checked_add(t.tokens).ok_or_else(total)?;
        tier_usage.push(t);
    }

    let mut models: Vec<ModelUsage> = models
        .into_iter()
        .map(|((tier, model_id), (requests, tokens, tenants))| ModelUsage {
            tier,
            model_id,
            requests,
            tokens,
            tenants: tenants.len(),
        })
        .collect();
    models.sort_by_cached_key(|m| (m.tier.clone(), Reverse(m.tokens), m.model_id.clone()));

    let mut notes = Vec::new();
    let margin = match &opts.margin {
        Some(m) if m.period == period.label() => Some(m.clone()),
        Some(m) => {
            tracing::warn!(
                margin = %m.period,
                period = %period.label(),
                "Margin summary of another period left out."
            );
            notes.push(format!(
                "The margin summary given is for {}, not {}: cost against revenue is left out.",
                m.period,
                period.label()
            ));
            None
        }
        None => None,
    };
    let (from, to) = (period.start_time(), period.end_time());
    let mut flags: Vec<Flag> =
        opts.flags.iter().filter(|f| f.window_start < to && f.window_end > from).cloned().collect();
    flags.sort_by_cached_key(|f| {
        let resolved = f.status != crate::flags::FlagStatus::Active;
        let who = (f.tier.clone(), f.tenant_id.clone(), f.window_start, f.id.clone());
        (resolved, Reverse(f.severity), f.kind, who)
    });

    Ok(ReportData {
        period,
        lake: root.clone(),
        hours,
        requests,
        tokens,
        // `daily` is keyed by tenant across tiers.
        tenants: daily.len(),
        tiers: tier_usage,
        daily: daily_tokens(days, daily, opts.top_tenants)?,
        models,
        share_threshold: opts.share_threshold,
        saturation_threshold: opts.saturation_threshold,
        margin,
        flags,
        notes,
    })
}

fn overflow_in(tier: &Tier, tenant_id: &TenantId) -> ReportError {
    ReportError::Overflow { what: format!("tier {tier}, tenant {tenant_id}") }
}

fn validate(opts: &ReportOptions) -> Result<(), ReportError> {
    let fraction = |field: &'static str, v: f64| {
        if v.is_finite() && v > 0.0 && v <= 1.0 {
            Ok(())
        } else {
            Err(ReportError::InvalidOption { field, reason: format!("{v} is not in (0, 1]") })
        }
    };
    fraction("share_threshold", opts.share_threshold)?;
    fraction("saturation_threshold", opts.saturation_threshold)?;
    if let Some((tier, _)) = opts.capacity.iter().find(|(_, c)| c.requests_per_hour == Some(0)) {
        return Err(ReportError::InvalidOption {
            field: "capacity.requests_per_hour",
            reason: format!("tier {tier} has a capacity of 0 requests per hour"),
        });
    }
    Ok(())
}

fn tier_report(
    tier: Tier,
    acc: TierAcc,
    capacity: Option<u64>,
    opts: &ReportOptions,
) -> Result<TierUsage, ReportError> {
    // Shares and utilization are ratios for drawing and comparing with a line, not money.
    let denominator = |hour: usize| -> f64 {
        match capacity {
            Some(c) => c as f64,
            None => acc.pool.get(hour).copied().unwrap_or(0) as f64,
        }
    };
    let mut requests = 0i64;
    let mut tokens = 0i64;
    let mut ranked: Vec<(ShareStats, i64, &TenantAcc)> = Vec::new();
    for (tenant_id, t) in &acc.tenants {
        let overflow = || overflow_in(&tier, tenant_id);
        requests = requests.checked_add(t.requests).ok_or_else(overflow)?;
        tokens = tokens.checked_add(t.tokens).ok_or_else(overflow)?;
        let mut stats = ShareStats {
            tenant_id: tenant_id.clone(),
            requests: t.requests,
            hours_active: 0,
            hours_over: 0,
            peak_share: 0.0,
        };
        for &(hour, n) in &t.hourly {
            let d = denominator(hour as usize);
            let share = if d > 0.0 { n as f64 / d } else { 0.0 };
            if n > 0 {
                stats.hours_active += 1;
                if share > opts.share_threshold {
                    stats.hours_over += 1;
                }
            }
            stats.peak_share = stats.peak_share.max(share);
        }
        ranked.push((stats, t.tokens, t));
    }
    ranked.sort_by(|a, b| {
        b.0.requests.cmp(&a.0.requests).then_with(|| a.0.tenant_id.cmp(&b.0.tenant_id))
    });
    let mut top = Vec::new();
    let mut others_over = Vec::new();
    for (i, (stats, tenant_tokens, t)) in ranked.into_iter().enumerate() {
        if i < opts.top_tenants {
            let mut share = vec![0.0; acc.pool.len()];
            for &(hour, n) in &t.hourly {
                let d = denominator(hour as usize);
                if d > 0.0
                    && let Some(s) = share.get_mut(hour as usize)
                {
                    *s = n as f64 / d;
                }
            }
            top.push(TenantShare { stats, tokens: tenant_tokens, share });
        } else if stats.hours_over > 0 {
            others_over.push(stats);
        }
    }
    others_over.sort_by(|a, b| {
        b.hours_over.cmp(&a.hours_over).then_with(|| a.tenant_id.cmp(&b.tenant_id))
    });
    let utilization =
        capacity.map(|c| acc.pool.iter().map(|&n| n as f64 / c as f64).collect::<Vec<_>>());
    let hours_saturated = utilization
        .as_ref()
        .map(|u| u.iter().filter(|&&v| v > opts.saturation_threshold).count())
        .unwrap_or(0);
    Ok(TierUsage {
        tier,
        requests,
        tokens,
        tenants: acc.tenants.len(),
        capacity_per_hour: capacity,
        pool_requests: acc.pool,
        utilization,
        hours_saturated: u32::try_from(hours_saturated).unwrap_or(u32::MAX),
        top,
        others_over,
    })
}

fn daily_tokens(
    days: Vec<NaiveDate>,
    per_tenant: BTreeMap<TenantId, Vec<i64>>,
    n: usize,
) -> Result<DailyTokens, ReportError> {
    let mut ranked = Vec::new();
    for (tenant_id, tokens) in per_tenant {
        let total = tokens.iter().try_fold(0i64, |a, &b| a.checked_add(b));
        let Some(total) = total else {
            return Err(ReportError::Overflow {
                what: format!("daily tokens of tenant {tenant_id}"),
            });
        };
        ranked.push(TenantDaily { tenant_id, tokens, total });
    }
    ranked.sort_by(|a, b| b.total.cmp(&a.total).then_with(|| a.tenant_id.cmp(&b.tenant_id)));
    let others = if ranked.len() > n { ranked.split_off(n) } else { Vec::new() };
    let mut rest = vec![0i64; days.len()];
    for t in &others {
        for (r, &v) in rest.iter_mut().zip(&t.tokens) {
            *r = r.checked_add(v).ok_or_else(|| ReportError::Overflow {
                what: "daily tokens of the other tenants".into(),
            })?;
        }
    }
    Ok(DailyTokens { days, top: ranked, rest, rest_tenants: others.len() })
}
