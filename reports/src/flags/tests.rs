//! Flag rules on hand-made hours, and the alert state machine.

use agentmeter_schemas::tables::{HOUR_MS, TenantHour};
use agentmeter_schemas::{TenantId, Tier, Tokens};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};

use super::engine::{AgentInvocation, evaluate_range, evaluation_points};
use super::*;

fn t0() -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, 10, 1).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

fn row(hour: i64, tier: &str, tenant: &str, requests: i64, peak: i64) -> TenantHour {
    TenantHour {
        hour_ms: t0().timestamp_millis() + hour * HOUR_MS,
        tier: Tier::new(tier).unwrap(),
        tenant_id: TenantId::new(tenant).unwrap(),
        invocations: requests,
        tokens: Tokens {
            input: requests * 100,
            output: 0,
            total: requests * 100,
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
        },
        users: 1,
        peak_requests_per_second: peak,
    }
}

/// 8 days of basic: `noisy` takes 8 of every 20 requests (40%) while active; six quiet
/// tenants 2 each (10%, or 1/6 of the pool without the noisy one: still under 20%).
fn month(noisy_hours: std::ops::Range<i64>) -> Vec<TenantHour> {
    let mut rows = Vec::new();
    for h in 0..8 * 24 {
        if noisy_hours.contains(&h) {
            rows.push(row(h, "basic", "clinic-noisy", 8, 1));
        }
        for q in 0..6 {
            rows.push(row(h, "basic", &format!("clinic-q{q}"), 2, 1));
        }
    }
    rows
}

fn lenient() -> Policy {
    // Quotas out of the way: these tests are about one rule at a time.
    Policy::from_toml_str("[tiers.basic]\ndaily_quota = 100000\nrate_limit_per_second = 1000")
        .unwrap()
}

fn ids(flags: &[Flag]) -> Vec<&str> {
    flags.iter().map(|f| f.id.as_str()).collect()
}

#[test]
fn the_noisy_neighbour_is_flagged_and_the_quiet_ones_are_not() {
    let rows = month(0..8 * 24);
    let evals = evaluate_range(&rows, &[], &lenient(), t0(), t0() + TimeDelta::days(8));
    assert_eq!(evals.len(), 8);
    let last = &evals[7];
    assert_eq!(ids(&last.flags), ["silo_migration/basic/clinic-noisy"]);
    let f = &last.flags[0];
    assert_eq!(f.window_start, t0() + TimeDelta::days(1));
    assert_eq!((f.evidence.hours_over, f.evidence.hours_active), (Some(168), Some(168)));
    assert!((f.evidence.figures["share_of_pool_requests"] - 0.4).abs() < 1e-9);
    // The value is the measured share (8 of 20 requests), the fraction of hours evidence.
    assert!((f.value - 0.4).abs() < 1e-9, "{}", f.value);
    assert_eq!(f.evidence.figures["fraction_of_hours_over"], 1.0);
    assert!(
        f.recommended_action.starts_with("Move tenant clinic-noisy from the shared basic pool")
    );
    // The first day already has 24 active hours (min 12) all over 20%.
    assert_eq!(ids(&evals[0].flags), ["silo_migration/basic/clinic-noisy"]);
}

#[test]
fn occasional_spikes_are_not_consistent() {
    // Active every third hour, over 20% only in a third of those.
    let mut rows = month(0..0);
    for h in (0..8 * 24).step_by(3) {
        rows.push(row(h, "basic", "clinic-spiky", if h % 9 == 0 { 8 } else { 1 }, 1));
    }
    let evals = evaluate_range(&rows, &[], &lenient(), t0(), t0() + TimeDelta::days(8));
    assert!(evals.iter().all(|e| e.flags.is_empty()), "{:?}", evals.last().unwrap().flags);
}

#[test]
fn pool_saturation_needs_a_capacity() {
    let rows = month(0..8 * 24);
    assert!(
        evaluate_range(&rows, &[], &lenient(), t0(), t0() + TimeDelta::days(1))[0]
            .flags
            .iter()
            .all(|f| f.kind != FlagKind::PoolSaturation)
    );
    let policy = Policy::from_toml_str(
        "[tiers.basic]\ndaily_quota = 100000\nrate_limit_per_second = 1000\nrequests_per_hour = 22",
    )
    .unwrap();
    let e = &evaluate_range(&rows, &[], &policy, t0(), t0() + TimeDelta::days(1))[0];
    let f = e.flags.iter().find(|f| f.kind == FlagKind::PoolSaturation).unwrap();
    assert_eq!(f.id, "pool_saturation/basic");
    assert!((f.value - 20.0 / 22.0).abs() < 1e-9);
    assert_eq!(f.evidence.hours_over, Some(24));
    assert_eq!(f.severity, Severity::Warning);
}

#[test]
fn quota_and_rate_limit_breaches() {
    let mut rows = month(0..0);
    rows.push(row(5, "basic", "clinic-q0", 40, 3));
    let evals = evaluate_range(&rows, &[], &Policy::default(), t0(), t0() + TimeDelta::days(2));
    let day1 = &evals[0].flags;
    // clinic-q0 makes 48 + 40 requests on day 1 (> 50) and peaked at 3/s there (> 2); the
    // others make 48 (under the quota).
    assert!(ids(day1).contains(&"quota_breach/basic/clinic-q0/requests_per_day"));
    assert!(!ids(day1).contains(&"quota_breach/basic/clinic-q1/requests_per_day"));
    let peak = day1.iter().find(|f| f.metric == "peak_requests_per_second").unwrap();
    assert_eq!((peak.value, peak.threshold, peak.evidence.hours_over), (3.0, 2.0, Some(1)));
    assert!(
        !ids(&evals[1].flags).contains(&"quota_breach/basic/clinic-q0/peak_requests_per_second")
    );
}

#[test]
fn runaway_sessions() {
    let inv = |id: &str, calls: i64, secs: i64| AgentInvocation {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: id.into(),
        tier: Tier::new("premium").unwrap(),
        tenant_id: TenantId::new("hospital-a").unwrap(),
        start: t0() + TimeDelta::hours(3),
        duration_ms: secs * 1000,
        tool_calls: calls,
    };
    let invs = [
        inv("b7ad6b7169203331", 11, 20),
        inv("00f067aa0ba902b7", 10, 300),
        inv("1111111111111111", 2, 301),
    ];
    let e = &evaluate_range(&[], &invs, &Policy::default(), t0(), t0() + TimeDelta::days(1))[0];
    let got: Vec<(&str, f64)> = e.flags.iter().map(|f| (f.metric.as_str(), f.value)).collect();
    assert_eq!(got, [("duration_ms", 301_000.0), ("tool_calls", 11.0)]);
    assert_eq!(
        e.flags[1].id,
        "runaway_session/premium/hospital-a/0af7651916cd43dd8448eb211c80319c:b7ad6b7169203331"
    );
    assert_eq!(e.flags[1].severity, Severity::Critical);
}

#[test]
fn each_flag_alerts_once_when_raised_and_once_when_resolved() {
    // Noisy for the first 4 days, then gone: with a 2-day window the flag holds days 1-5.
    let rows = month(0..4 * 24);
    let policy = Policy::from_toml_str(
        "window_days = 2\n[tiers.basic]\ndaily_quota = 100000\nrate_limit_per_second = 1000",
    )
    .unwrap();
    let evals = evaluate_range(&rows, &[], &policy, t0(), t0() + TimeDelta::days(8));
    let mut state = FlagState::default();
    let alerts = state.advance(&evals);
    let seen: Vec<(Transition, DateTime<Utc>)> =
        alerts.iter().map(|a| (a.transition, a.at)).collect();
    assert_eq!(
        seen,
        [
            (Transition::Raised, t0() + TimeDelta::days(1)),
            (Transition::Resolved, t0() + TimeDelta::days(6))
        ]
    );
    assert_ne!(alerts[0].alert_id, alerts[1].alert_id);
    // Running again over the same range, or part of it, alerts nothing.
    assert!(state.advance(&evals).is_empty());
    assert!(state.advance(&evals[..3]).is_empty());
    // Round trip through JSON keeps the state.
    let saved = FlagState::from_json(&serde_json::to_vec(&state).unwrap(), t0()).unwrap();
    assert_eq!(saved, state);
    // Episodes: one, resolved.
    let eps = episodes(&evals);
    assert_eq!(eps.len(), 1);
    assert_eq!(
        (eps[0].status, eps[0].window_start, eps[0].window_end),
        (FlagStatus::Resolved, t0() - TimeDelta::days(1), t0() + TimeDelta::days(5))
    );
}

#[test]
fn evaluation_points_are_day_ends_and_the_end() {
    let p = evaluation_points(
        t0() + TimeDelta::hours(5),
        t0() + TimeDelta::days(2) + TimeDelta::hours(3),
    );
    assert_eq!(
        p,
        [
            t0() + TimeDelta::days(1),
            t0() + TimeDelta::days(2),
            t0() + TimeDelta::days(2) + TimeDelta::hours(3)
        ]
    );
    assert_eq!(evaluation_points(t0(), t0() + TimeDelta::days(1)), [t0() + TimeDelta::days(1)]);
}

#[test]
fn alert_summaries_print_counts_as_integers_and_shares_as_percentages() {
    let flag = |metric: &str, value: f64, threshold: f64| Alert {
        alert_id: "x".into(),
        transition: Transition::Raised,
        at: t0(),
        flag: Flag {
            id: "x".into(),
            kind: FlagKind::RunawaySession,
            tier: Tier::new("basic").unwrap(),
            tenant_id: Some(TenantId::new("clinic-a").unwrap()),
            window_start: t0(),
            window_end: t0(),
            metric: metric.into(),
            value,
            threshold,
            evidence: Evidence::default(),
            severity: Severity::Critical,
            recommended_action: "act".into(),
            status: FlagStatus::Active,
        },
    };
    let cases = [
        ("tool_calls", 12.0, 10.0, "tool_calls 12 (threshold 10)"),
        ("requests_per_day", 12_345.0, 500.0, "requests_per_day 12,345 (threshold 500)"),
        ("pool_share", 0.29, 0.2, "pool_share 29.0% (threshold 20.0%)"),
        ("budget_usd", 0.8123, 0.8, "budget_usd 81.2% (threshold 80.0%)"),
        ("daily_tokens_ratio", 6.04, 3.06, "daily_tokens_ratio 6× (threshold 3.1×)"),
    ];
    for (metric, v, t, want) in cases {
        let s = flag(metric, v, t).summary();
        assert!(s.contains(&format!(": {want} — act")), "{s}");
    }
}
