//! Evaluating flags over `tenant_hourly` (and agent invocations, once spans are ingested).
//!
//! Flags are evaluated at the end of every UTC day of a range, each over its own trailing
//! window ending there:
//!
//! | kind | window | holds when |
//! |---|---|---|
//! | `silo_migration` | `window_days` | a tenant's share of its pool is above `share_threshold` in at least `consistent_fraction` of its active hours (at least `min_active_hours` of them) |
//! | `pool_saturation` | 24 h | in some hour the pool uses more than `saturation_threshold` of its capacity |
//! | `quota_breach` | 24 h | a tenant's requests that day exceed the daily quota, or its peak requests in one second exceed the rate limit |
//! | `runaway_session` | 24 h | an agent invocation made more than `max_tool_calls` tool calls or ran longer than `max_invocation_seconds` |
//!
//! A tenant's share of an hour is its requests over the pool's capacity in requests per hour
//! when one is set (or its tokens over the tokens-per-minute capacity × 60, whichever is
//! larger when both are set), else over the pool's own requests that hour.

use std::collections::{BTreeMap, BTreeSet};

use agentmeter_schemas::tables::{HOUR_MS, TenantHour};
use agentmeter_schemas::{TenantId, Tier};
use chrono::{DateTime, TimeDelta, Utc};

use super::model::{Evidence, Flag, FlagKind, FlagStatus, Severity};
use super::policy::Policy;

/// One agent invocation, as the spans give it (the `runaway_session` input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentInvocation {
    /// Trace id (hex).
    pub trace_id: String,
    /// Span id of the `invoke_agent` span (hex).
    pub span_id: String,
    /// Tier.
    pub tier: Tier,
    /// Tenant.
    pub tenant_id: TenantId,
    /// Start.
    pub start: DateTime<Utc>,
    /// Duration in milliseconds.
    pub duration_ms: i64,
    /// Tool calls made inside it.
    pub tool_calls: i64,
}

/// The flags holding at one evaluation time.
#[derive(Debug, Clone, PartialEq)]
pub struct Evaluation {
    /// The evaluation time (end of a UTC day, or the end of the range).
    pub at: DateTime<Utc>,
    /// The flags holding then (status `active`).
    pub flags: Vec<Flag>,
}

/// `tenant_hourly` rows indexed for windows: tier → hour → rows.
pub struct HourIndex<'a> {
    by_tier: BTreeMap<&'a Tier, BTreeMap<i64, Vec<&'a TenantHour>>>,
}

impl<'a> HourIndex<'a> {
    /// Indexes the rows.
    pub fn new(rows: &'a [TenantHour]) -> Self {
        let mut by_tier: BTreeMap<&Tier, BTreeMap<i64, Vec<&TenantHour>>> = BTreeMap::new();
        for r in rows {
            by_tier.entry(&r.tier).or_default().entry(r.hour_ms).or_default().push(r);
        }
        Self { by_tier }
    }
}

fn ms(t: DateTime<Utc>) -> i64 {
    t.timestamp_millis()
}

fn flag_id(kind: FlagKind, tier: &Tier, tenant: Option<&TenantId>, extra: Option<&str>) -> String {
    let mut id = format!("{}/{tier}", kind.code());
    if let Some(t) = tenant {
        id.push('/');
        id.push_str(t.as_str());
    }
    if let Some(x) = extra {
        id.push('/');
        id.push_str(x);
    }
    id
}

/// Tenant share of one hour given the pool and the tier's capacity.
fn share(row: &TenantHour, pool_requests: i64, rph: Option<u64>, tpm: Option<u64>) -> f64 {
    let by_requests = rph.map(|c| row.invocations as f64 / c as f64);
    let by_tokens = tpm.map(|c| row.tokens.total as f64 / (c as f64 * 60.0));
    match (by_requests, by_tokens) {
        (Some(a), Some(b)) => a.max(b),
        (Some(a), None) | (None, Some(a)) => a,
        (None, None) if pool_requests > 0 => row.invocations as f64 / pool_requests as f64,
        (None, None) => 0.0,
    }
}

/// The flags holding at `at`.
pub fn evaluate_at(
    index: &HourIndex<'_>,
    invocations: &[AgentInvocation],
    policy: &Policy,
    at: DateTime<Utc>,
) -> Vec<Flag> {
    let mut out = Vec::new();
    let day_start = at - TimeDelta::days(1);
    for (&tier, hours) in &index.by_tier {
        let tp = policy.tier(tier);
        // Silo migration over the trailing window.
        let w_start = at - TimeDelta::days(i64::from(policy.window_days));
        #[derive(Default)]
        struct Acc {
            active: u32,
            over: u32,
            requests: i64,
            max_share: f64,
            shares: Vec<f64>,
        }
        let mut acc: BTreeMap<&TenantId, Acc> = BTreeMap::new();
        let mut pool_total = 0i64;
        for rows in hours.range(ms(w_start)..ms(at)).map(|(_, r)| r) {
            let pool: i64 = rows.iter().map(|r| r.invocations).sum();
            pool_total += pool;
            for r in rows.iter().filter(|r| r.invocations > 0) {
                let s = share(r, pool, tp.requests_per_hour, tp.tokens_per_minute);
                let a = acc.entry(&r.tenant_id).or_default();
                a.active += 1;
                a.requests += r.invocations;
                a.max_share = a.max_share.max(s);
                a.shares.push(s);
                if s > policy.share_threshold {
                    a.over += 1;
                }
            }
        }
        for (tenant, mut a) in acc {
            let consistent = f64::from(a.over) >= policy.consistent_fraction * f64::from(a.active);
            if a.active >= policy.min_active_hours && a.over > 0 && consistent {
                let overall =
                    if pool_total > 0 { a.requests as f64 / pool_total as f64 } else { 0.0 };
                let mut evidence = Evidence {
                    hours_over: Some(a.over),
                    hours_active: Some(a.active),
                    ..Default::default()
                };
                evidence.figures.insert("requests".into(), a.requests as f64);
                evidence.figures.insert("pool_requests".into(), pool_total as f64);
                evidence.figures.insert("max_hourly_share".into(), a.max_share);
                evidence.figures.insert("share_of_pool_requests".into(), overall);
                let fraction = f64::from(a.over) / f64::from(a.active);
                evidence.figures.insert("fraction_of_hours_over".into(), fraction);
                // The value is the tenant's measured share, comparable with the threshold, not
                // the fraction of hours (evidence). Against the pool's own usage: its share of
                // the window's requests (a tenant alone in an hour has all of it, so hourly
                // shares overstate); against a capacity: its median hourly share.
                a.shares.sort_by(f64::total_cmp);
                let n = a.shares.len();
                let median = if n % 2 == 1 {
                    a.shares[n / 2]
                } else {
                    (a.shares[n / 2 - 1] + a.shares[n / 2]) / 2.0
                };
                evidence.figures.insert("median_hourly_share".into(), median);
                out.push(Flag {
                    id: flag_id(FlagKind::SiloMigration, tier, Some(tenant), None),
                    kind: FlagKind::SiloMigration,
                    tier: tier.clone(),
                    tenant_id: Some(tenant.clone()),
                    window_start: w_start,
                    window_end: at,
                    metric: "pool_share".into(),
                    value: if tp.requests_per_hour.is_none() && tp.tokens_per_minute.is_none() {
                        overall
                    } else {
                        median
                    },
                    threshold: policy.share_threshold,
                    evidence,
                    severity: Severity::Warning,
                    recommended_action: format!(
                        "Move tenant {tenant} from the shared {tier} pool to a dedicated (silo) deployment: it used more than {:.0}% of the pool in {} of its {} active hours",
                        policy.share_threshold * 100.0,
                        a.over,
                        a.active
                    ),
                    status: FlagStatus::Active,
                });
            }
        }
        // Pool saturation and quotas over the last day.
        let day: Vec<(&i64, &Vec<&TenantHour>)> = hours.range(ms(day_start)..ms(at)).collect();
        if tp.requests_per_hour.is_some() || tp.tokens_per_minute.is_some() {
            let (mut over, mut peak, mut active) = (0u32, 0.0f64, 0u32);
            for (_, rows) in &day {
                let requests: i64 = rows.iter().map(|r| r.invocations).sum();
                let tokens: i64 = rows.iter().map(|r| r.tokens.total).sum();
                let u = tp
                    .requests_per_hour
                    .map_or(0.0, |c| requests as f64 / c as f64)
                    .max(tp.tokens_per_minute.map_or(0.0, |c| tokens as f64 / (c as f64 * 60.0)));
                active += u32::from(requests > 0);
                peak = peak.max(u);
                if u > policy.saturation_threshold {
                    over += 1;
                }
            }
            if over > 0 {
                out.push(Flag {
                    id: flag_id(FlagKind::PoolSaturation, tier, None, None),
                    kind: FlagKind::PoolSaturation,
                    tier: tier.clone(),
                    tenant_id: None,
                    window_start: day_start,
                    window_end: at,
                    metric: "pool_utilization".into(),
                    value: peak,
                    threshold: policy.saturation_threshold,
                    evidence: Evidence { hours_over: Some(over), hours_active: Some(active), ..Default::default() },
                    severity: if peak >= 1.0 { Severity::Critical } else { Severity::Warning },
                    recommended_action: format!(
                        "Scale the {tier} pool: it ran above {:.0}% of capacity in {over} hours (peak {:.0}%)",
                        policy.saturation_threshold * 100.0,
                        peak * 100.0
                    ),
                    status: FlagStatus::Active,
                });
            }
        }
        let mut per_tenant: BTreeMap<&TenantId, (i64, i64, u32)> = BTreeMap::new();
        for (_, rows) in &day {
            for r in rows.iter() {
                let t = per_tenant.entry(&r.tenant_id).or_default();
                t.0 += r.invocations;
                t.1 = t.1.max(r.peak_requests_per_second);
                if tp.rate_limit_per_second.is_some_and(|l| r.peak_requests_per_second as u64 > l) {
                    t.2 += 1;
                }
            }
        }
        for (tenant, (requests, peak, hours_over)) in per_tenant {
            let quota_flag =
                |metric: &str, value: i64, limit: u64, evidence: Evidence, action: String| Flag {
                    id: flag_id(FlagKind::QuotaBreach, tier, Some(tenant), Some(metric)),
                    kind: FlagKind::QuotaBreach,
                    tier: tier.clone(),
                    tenant_id: Some(tenant.clone()),
                    window_start: day_start,
                    window_end: at,
                    metric: metric.into(),
                    value: value as f64,
                    threshold: limit as f64,
                    evidence,
                    severity: Severity::Warning,
                    recommended_action: action,
                    status: FlagStatus::Active,
                };
            if let Some(q) = tp.daily_quota
                && requests as u64 > q
            {
                out.push(quota_flag(
                    "requests_per_day",
                    requests,
                    q,
                    Evidence { days_over: Some(1), ..Default::default() },
                    format!("Tenant {tenant} made {requests} requests in a day against a {tier} quota of {q}: enforce the quota or move it to a higher tier"),
                ));
            }
            if let Some(l) = tp.rate_limit_per_second
                && peak as u64 > l
            {
                out.push(quota_flag(
                    "peak_requests_per_second",
                    peak,
                    l,
                    Evidence { hours_over: Some(hours_over), ..Default::default() },
                    format!("Tenant {tenant} peaked at {peak} requests in one second against a {tier} limit of {l}/s: check its throttling"),
                ));
            }
        }
    }
    // Runaway sessions of the last day.
    for inv in invocations.iter().filter(|i| i.start >= day_start && i.start < at) {
        let too_many = inv.tool_calls > policy.max_tool_calls as i64;
        let too_long = inv.duration_ms > policy.max_invocation_seconds as i64 * 1000;
        if !too_many && !too_long {
            continue;
        }
        let key = format!("{}:{}", inv.trace_id, inv.span_id);
        let mut evidence = Evidence { invocation: Some(key.clone()), ..Default::default() };
        evidence.figures.insert("tool_calls".into(), inv.tool_calls as f64);
        evidence.figures.insert("duration_ms".into(), inv.duration_ms as f64);
        let (metric, value, threshold) = if too_many {
            ("tool_calls", inv.tool_calls as f64, policy.max_tool_calls as f64)
        } else {
            ("duration_ms", inv.duration_ms as f64, (policy.max_invocation_seconds * 1000) as f64)
        };
        out.push(Flag {
            id: flag_id(FlagKind::RunawaySession, &inv.tier, Some(&inv.tenant_id), Some(&key)),
            kind: FlagKind::RunawaySession,
            tier: inv.tier.clone(),
            tenant_id: Some(inv.tenant_id.clone()),
            window_start: inv.start,
            window_end: inv.start + TimeDelta::milliseconds(inv.duration_ms),
            metric: metric.into(),
            value,
            threshold,
            evidence,
            severity: Severity::Critical,
            recommended_action: format!(
                "Agent invocation {key} of tenant {} made {} tool calls in {} s: check the agent for a tool loop (runtime limits: {} calls, {} s)",
                inv.tenant_id,
                inv.tool_calls,
                inv.duration_ms / 1000,
                policy.max_tool_calls,
                policy.max_invocation_seconds
            ),
            status: FlagStatus::Active,
        });
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    out
}

/// Evaluation times of `[from, to)`: the end of every UTC day inside it, and `to`.
pub fn evaluation_points(from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<DateTime<Utc>> {
    let mut points = Vec::new();
    let first_midnight =
        from.date_naive().and_time(chrono::NaiveTime::MIN).and_utc() + TimeDelta::days(1);
    let mut t = first_midnight;
    while t < to {
        points.push(t);
        t += TimeDelta::days(1);
    }
    if to > from {
        points.push(to);
    }
    points
}

/// Evaluates at every point of `[from, to)`.
pub fn evaluate_range(
    rows: &[TenantHour],
    invocations: &[AgentInvocation],
    policy: &Policy,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Evaluation> {
    let index = HourIndex::new(rows);
    evaluation_points(from, to)
        .into_iter()
        .map(|at| Evaluation { at, flags: evaluate_at(&index, invocations, policy, at) })
        .collect()
}

/// Merges consecutive evaluations of the same flag into one: its first window start, its last
/// window end, its worst value, and its latest evidence; `active` if it holds at the last
/// evaluation, else `resolved`.
pub fn episodes(evaluations: &[Evaluation]) -> Vec<Flag> {
    let mut open: BTreeMap<String, Flag> = BTreeMap::new();
    let mut out = Vec::new();
    for e in evaluations {
        let here: BTreeSet<&str> = e.flags.iter().map(|f| f.id.as_str()).collect();
        let closed: Vec<String> =
            open.keys().filter(|id| !here.contains(id.as_str())).cloned().collect();
        for id in closed {
            if let Some(mut f) = open.remove(&id) {
                f.status = FlagStatus::Resolved;
                out.push(f);
            }
        }
        for f in &e.flags {
            match open.get_mut(&f.id) {
                Some(o) => {
                    o.window_end = o.window_end.max(f.window_end);
                    o.value = o.value.max(f.value);
                    o.severity = o.severity.max(f.severity);
                    o.evidence = f.evidence.clone();
                    o.recommended_action = f.recommended_action.clone();
                }
                None => {
                    open.insert(f.id.clone(), f.clone());
                }
            }
        }
    }
    out.extend(open.into_values());
    out.sort_by(|a, b| (a.kind, &a.id, a.window_start).cmp(&(b.kind, &b.id, b.window_start)));
    out
}

/// Hours between two instants (for tests and summaries).
pub fn hours_between(from: DateTime<Utc>, to: DateTime<Utc>) -> i64 {
    (ms(to) - ms(from)) / HOUR_MS
}
