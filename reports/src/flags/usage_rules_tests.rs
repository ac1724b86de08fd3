//! Budgets and anomalies on hand-made days: the day each level is crossed, its forecast, one
//! alert per level and period, and anomalies against the tenant's baseline and its tier.

use std::collections::BTreeMap;

use agentmeter_schemas::tables::{HOUR_MS, TenantHour};
use agentmeter_schemas::{TenantId, Tier, Tokens};
use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use rust_decimal::Decimal;

use super::engine::evaluation_points;
use super::usage_rules::*;
use super::*;

fn day(m: u32, d: u32) -> DateTime<Utc> {
    NaiveDate::from_ymd_opt(2026, m, d).unwrap().and_hms_opt(0, 0, 0).unwrap().and_utc()
}

/// One row at 12:00 of a day.
fn at_noon(tier: &str, tenant: &str, d: DateTime<Utc>, tokens: i64) -> TenantHour {
    TenantHour {
        hour_ms: d.timestamp_millis() + 12 * HOUR_MS,
        tier: Tier::new(tier).unwrap(),
        tenant_id: TenantId::new(tenant).unwrap(),
        invocations: tokens / 1000,
        tokens: Tokens { input: tokens, total: tokens, ..Tokens::default() },
        users: 1,
        peak_requests_per_second: 1,
    }
}

fn evaluate(
    rows: &[TenantHour],
    policy: &Policy,
    charges: Option<&dyn ChargesToDate>,
    from: DateTime<Utc>,
    to: DateTime<Utc>,
) -> Vec<Evaluation> {
    let index = TenantHours::new(rows);
    evaluation_points(from, to)
        .into_iter()
        .map(|at| Evaluation { at, flags: usage_flags(&index, policy, charges, at) })
        .collect()
}

fn alerts(evals: &[Evaluation]) -> Vec<(String, Transition, DateTime<Utc>)> {
    let mut state = FlagState::default();
    state.advance(evals).into_iter().map(|a| (a.flag.id, a.transition, a.at)).collect()
}

#[test]
fn each_budget_level_alerts_once_on_the_day_it_is_crossed_with_a_forecast() {
    // 10,000 tokens a day from Oct 1 to Nov 5; a tier budget of 200,000 tokens a month.
    let rows: Vec<TenantHour> = (0..36)
        .map(|d| at_noon("basic", "clinic-a", day(10, 1) + TimeDelta::days(d), 10_000))
        .collect();
    let policy = Policy::from_toml_str("[budgets.tiers.basic]\ntokens = 200000\n").unwrap();
    let evals = evaluate(&rows, &policy, None, day(10, 1), day(11, 6));
    let raised = alerts(&evals);
    let id = |level: &str, p: &str| format!("budget_threshold/basic/clinic-a/{p}/{level}");
    // 100,000 after Oct 10 (50%), 160,000 after Oct 16 (80%), 200,000 after Oct 20 (100%);
    // November starts again and reaches none; nothing resolves.
    assert_eq!(
        raised,
        [
            (id("50%", "2026-10"), Transition::Raised, day(10, 11)),
            (id("80%", "2026-10"), Transition::Raised, day(10, 17)),
            (id("100%", "2026-10"), Transition::Raised, day(10, 21)),
        ]
    );
    let first = evals.iter().find(|e| e.at == day(10, 11)).unwrap();
    let f = &first.flags[0];
    assert_eq!(
        (f.kind, f.metric.as_str(), f.value, f.threshold),
        (FlagKind::BudgetThreshold, "budget_tokens", 0.5, 0.5)
    );
    assert_eq!(f.severity, Severity::Info);
    // Forecast: 100,000 + 70,000 over the last 7 days × 21 days left / 7 = 310,000 (155%).
    assert_eq!(f.evidence.figures["spent_tokens"], 100_000.0);
    assert_eq!(f.evidence.figures["forecast_tokens"], 310_000.0);
    assert_eq!(f.evidence.figures["forecast_fraction"], 1.55);
    assert_eq!(
        f.recommended_action,
        "Tenant clinic-a has used 50% of its 2026-10 budget (100,000 tokens of 200,000 tokens); \
         at the last 7 days' rate it reaches 310,000 tokens (155%) by the end of the period: \
         tell the tenant, or raise the budget"
    );
    // After 2 days the rate is over those 2 days: 20,000 + 20,000 / 2 × 29 = 310,000.
    let early = usage_flags(
        &TenantHours::new(&rows),
        &Policy::from_toml_str(
            "[budgets]\nlevels = [0.1]\n[budgets.tiers.basic]\ntokens = 200000\n",
        )
        .unwrap(),
        None,
        day(10, 3),
    );
    assert_eq!(early[0].evidence.figures["forecast_tokens"], 310_000.0);
    let last = evals.iter().find(|e| e.at == day(10, 31)).unwrap();
    assert_eq!(last.flags.iter().filter(|f| f.kind == FlagKind::BudgetThreshold).count(), 3);
    assert_eq!(last.flags.iter().map(|f| f.severity).max(), Some(Severity::Critical));
}

#[test]
fn a_tenant_budget_overrides_its_tiers_and_usd_budgets_use_the_charges() {
    let rows: Vec<TenantHour> = (0..10)
        .flat_map(|d| {
            let t = day(10, 1) + TimeDelta::days(d);
            [at_noon("basic", "clinic-a", t, 10_000), at_noon("basic", "clinic-b", t, 10_000)]
        })
        .collect();
    let policy = Policy::from_toml_str(
        "[budgets]\nlevels = [0.8]\n[budgets.tiers.basic]\ntokens = 1000000\n\
         [budgets.tenants.clinic-b]\nusd = \"10.00\"\n",
    )
    .unwrap();
    assert!(policy.budgets.needs_prices());
    // clinic-b's charges: 1.00 a day.
    let mut table = ChargeTable::default();
    for d in 1..=11 {
        let at = day(10, d);
        let charged: BTreeMap<TenantId, Decimal> =
            [(TenantId::new("clinic-b").unwrap(), Decimal::from(d - 1))].into();
        table.0.insert(at, charged);
    }
    let evals = evaluate(&rows, &policy, Some(&table), day(10, 1), day(10, 11));
    // clinic-a: 100,000 of 1,000,000 tokens, never 80%; clinic-b: 8.00 of 10.00 on Oct 9.
    let raised = alerts(&evals);
    assert_eq!(
        raised,
        [(
            "budget_threshold/basic/clinic-b/2026-10/80%".to_owned(),
            Transition::Raised,
            day(10, 9)
        )]
    );
    let f = &evals.iter().find(|e| e.at == day(10, 9)).unwrap().flags[0];
    assert_eq!(f.metric, "budget_usd");
    // Amounts are exact decimal strings: 8 + (8 − 1) / 7 days × 23 days left = 31.00.
    assert_eq!(f.evidence.amounts["spent"], "8");
    assert_eq!(f.evidence.amounts["budget"], "10.00");
    assert_eq!(f.evidence.amounts["forecast"], "31.00");
    // Without charges a usd budget is not judged (the command requires --prices).
    assert!(
        evaluate(&rows, &policy, None, day(10, 1), day(10, 11))
            .iter()
            .all(|e| e.flags.iter().all(|f| f.tenant_id.as_ref().unwrap().as_str() == "clinic-a"))
    );
}

/// Four tenants at 1,000,000 tokens a day (±5%) from Oct 1 to Oct 31, with `spike` applied.
fn tier_month(spike: impl Fn(&str, u32) -> i64) -> Vec<TenantHour> {
    let mut rows = Vec::new();
    for d in 1..=31u32 {
        for (i, t) in ["clinic-a", "clinic-b", "clinic-c", "clinic-d"].iter().enumerate() {
            let wobble = [0, 50_000, -30_000, 20_000, -50_000][(d as usize + i) % 5];
            let base = 1_000_000 + wobble;
            rows.push(at_noon("basic", t, day(10, d), base * spike(t, d)));
        }
    }
    rows
}

#[test]
fn a_spike_against_the_tenants_own_baseline_is_one_episode() {
    // clinic-a runs at 6× on Oct 20 and 21.
    let rows = tier_month(|t, d| if t == "clinic-a" && (d == 20 || d == 21) { 6 } else { 1 });
    let policy = Policy::default();
    let evals = evaluate(&rows, &policy, None, day(10, 1), day(11, 1));
    assert_eq!(
        alerts(&evals),
        [
            ("usage_anomaly/basic/clinic-a".to_owned(), Transition::Raised, day(10, 21)),
            ("usage_anomaly/basic/clinic-a".to_owned(), Transition::Resolved, day(10, 23)),
        ]
    );
    let f = &evals.iter().find(|e| e.at == day(10, 21)).unwrap().flags[0];
    // The threshold is 3× the tier's own ratio that day (its other tenants' median, 1.02).
    let tier_ratio = f.evidence.figures["tier_ratio"];
    assert_eq!((f.metric.as_str(), tier_ratio), ("daily_tokens_ratio", 1.02));
    assert!((f.threshold - 3.0 * 1.02).abs() < 0.01, "{}", f.threshold);
    assert_eq!(f.evidence.figures["baseline_days"], 14.0);
    assert!(f.value > 5.5 && f.value < 6.5, "{}", f.value);
    assert!(f.recommended_action.starts_with("Tenant clinic-a used "), "{}", f.recommended_action);
    // The second day is still judged against the 14 days before it, which hold one spike:
    // the median does not move.
    let second = &evals.iter().find(|e| e.at == day(10, 22)).unwrap().flags[0];
    assert!(second.value > 5.5, "{}", second.value);
}

#[test]
fn a_whole_tier_moving_together_a_new_tenant_and_small_days_are_not_anomalies() {
    // Every tenant at 6× on Oct 20: the tier moved, not the tenant.
    let everyone = tier_month(|_, d| if d == 20 { 6 } else { 1 });
    let evals = evaluate(&everyone, &Policy::default(), None, day(10, 1), day(11, 1));
    assert!(alerts(&evals).is_empty());
    // A spike before 7 days of history: no baseline yet.
    let early = tier_month(|t, d| if t == "clinic-a" && d == 6 { 6 } else { 1 });
    assert!(alerts(&evaluate(&early, &Policy::default(), None, day(10, 1), day(11, 1))).is_empty());
    // Below min_tokens: 6× of a small tenant is noise.
    let small = Policy::from_toml_str("[anomalies]\nmin_tokens = 10000000\n").unwrap();
    let spike = tier_month(|t, d| if t == "clinic-a" && d == 20 { 6 } else { 1 });
    assert!(alerts(&evaluate(&spike, &small, None, day(10, 1), day(11, 1))).is_empty());
    let off = Policy::from_toml_str("[anomalies]\nenabled = false\n").unwrap();
    assert!(alerts(&evaluate(&spike, &off, None, day(10, 1), day(11, 1))).is_empty());
}

#[test]
fn bad_budgets_and_anomaly_settings_name_the_field() {
    let cases = [
        ("[budgets]\nlevels = []", "budgets.levels: give at least one level"),
        (
            "[budgets]\nlevels = [0.5, 12.0]",
            "budgets.levels: each level must be a fraction above 0 and at most 10, got 12",
        ),
        (
            "[budgets.tiers.basic]\ntokens = 0",
            "budgets.tiers.basic.tokens: must be at least 1, got 0",
        ),
        (
            "[budgets.tenants.clinic-a]\nusd = \"-3\"",
            "budgets.tenants.clinic-a.usd: must be a quoted amount above 0 (\"250.00\"), got \"-3\"",
        ),
        (
            "[budgets.tenants.clinic-a]\ntokens = 5\nusd = \"3\"",
            "budgets.tenants.clinic-a: give one of tokens = N or usd = \"AMOUNT\"",
        ),
        ("[anomalies]\nratio = 1.0", "anomalies.ratio: must be above 1, got 1"),
        (
            "[anomalies]\nbaseline_days = 5\nmin_baseline_days = 7",
            "anomalies.min_baseline_days: must be at most baseline_days (5), got 7",
        ),
    ];
    for (text, want) in cases {
        assert_eq!(Policy::from_toml_str(text).unwrap_err().0, want, "{text}");
    }
    let hostile = Policy::from_toml_str("[budgets.tenants.\"../x\"]\ntokens = 5").unwrap_err().0;
    assert!(hostile.starts_with("budgets.tenants.\"../x\": "), "{hostile}");
    // A refused key is quoted and escaped, never printed raw (control characters, overrides).
    let hostile =
        Policy::from_toml_str("[budgets.tenants.\"a\\u0000\\u202eb\"]\ntokens = 5").unwrap_err().0;
    assert!(hostile.starts_with("budgets.tenants.\"a\\0\\u{202e}b\": "), "{hostile}");
    let hostile = Policy::from_toml_str("[tiers.\"t\\nx\"]\ndaily_quota = 5").unwrap_err().0;
    assert!(hostile.starts_with("tiers.\"t\\nx\": "), "{hostile}");
    let p = Policy::from_toml_str("[budgets]\nlevels = [1.0, 0.5, 0.5]").unwrap();
    assert_eq!(p.budgets.levels, [0.5, 1.0]);
}
