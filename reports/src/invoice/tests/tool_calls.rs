//! Tool calls on invoices: per-call prices, price changes, plans, problems and their HTML.

use super::*;

fn basic() -> Tier {
    Tier::new("basic").unwrap()
}

/// (component, model, quantity, unit, unit price, amount) of every line of an invoice.
fn line_table(
    inv: &crate::invoice::Invoice,
) -> Vec<(&'static str, String, i64, &'static str, String, String)> {
    inv.lines
        .iter()
        .map(|l| {
            (
                l.component.code(),
                l.model_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                l.quantity,
                l.unit,
                l.unit_price.normalize().to_string(),
                l.amount.to_string(),
            )
        })
        .collect()
}

/// (model, tokens, tool calls, reason) of every problem of an invoice.
fn problem_table(inv: &crate::invoice::Invoice) -> Vec<(String, i64, i64, String)> {
    inv.problems
        .iter()
        .map(|p| {
            (
                p.model_id.as_ref().map(ToString::to_string).unwrap_or_default(),
                p.tokens,
                p.tool_calls,
                p.reason.clone(),
            )
        })
        .collect()
}

fn series(hours: &[(i64, HourUsage)]) -> Series {
    hours.iter().copied().collect()
}

#[test]
fn tool_calls_bill_per_call_rounded_to_the_cent() {
    // Oct 2 09:00, before the change: 1M input tokens and 1,234 tool calls.
    let u: BTreeMap<SeriesKey, Series> = [(
        key("clinic-a", "basic", "m"),
        series(&[(
            hour(2, 9),
            HourUsage {
                invocations: 4,
                tokens: tokens(1_000_000, 0, 0),
                tool_calls: 1_234,
                ..HourUsage::default()
            },
        )]),
    )]
    .into_iter()
    .collect();
    let r = run(&u, None, &BTreeMap::new());
    let a = &r.invoices[0];
    let s = |x: &str| x.to_owned();
    assert_eq!(
        line_table(a),
        [
            ("plan_fee", s(""), 1, "month", s("10"), s("10.00")),
            ("input_tokens", s("m"), 1_000_000, "tokens", s("3"), s("3.00")),
            // 1,234 × 0.0015 (list 0.0010 × 1.5) = 1.851 → 1.85: per call, not per million.
            ("tool_calls", s("m"), 1_234, "calls", s("0.0015"), s("1.85")),
            // Tool calls are usage: 3.00 + 1.85 ≥ 1.00 included.
            ("included_usage", s(""), 1, "credit", s("-1"), s("-1.00")),
        ]
    );
    assert_eq!(a.total, d("13.85"));
    assert_eq!(a.total, a.lines.iter().map(|l| l.amount).sum::<Decimal>());
    assert!(a.complete && a.problems.is_empty());
    assert_eq!(
        (a.lines[2].price_effective_from, a.lines[2].price_effective_to),
        (a.lines[1].price_effective_from, Some(t(15, 12)))
    );
    // invoices.csv and the invoice_lines table carry the same line, and it fits the table.
    let rows = crate::invoice::export::line_rows(&r.invoices);
    let row = &rows[2];
    assert_eq!(
        (
            row.line,
            row.component.as_str(),
            row.quantity,
            row.unit.as_str(),
            row.unit_price,
            row.amount
        ),
        (3, "tool_calls", 1_234, "calls", d("0.0015"), d("1.85"))
    );
    assert_eq!(agentmeter_schemas::tables::invoice_lines_batch(&rows).unwrap().num_rows(), 4);
    assert_eq!(crate::invoice::export::margin(&r).tenants[0].revenue, d("13.85"));
    assert_eq!(crate::invoice::export::summary(&r).revenue, d("13.85"));
    let html = crate::invoice::html::invoice_page(a);
    assert!(
        html.contains(
            "<tr><td>Tool calls · m</td><td class=\"n\">1,234 calls</td>\
             <td class=\"n\">$0.0015 per call</td><td class=\"n\">$1.85</td></tr>"
        ),
        "{html}"
    );
}

#[test]
fn a_tool_calls_only_series_is_billed_and_weighs_no_cost() {
    let u: BTreeMap<SeriesKey, Series> = [
        // clinic-a on Oct 2: 1M input tokens (list 2.00) and 1,234 tool calls.
        (
            key("clinic-a", "basic", "m"),
            series(&[(
                hour(2, 9),
                HourUsage {
                    invocations: 1,
                    tokens: tokens(1_000_000, 0, 0),
                    tool_calls: 1_234,
                    ..HourUsage::default()
                },
            )]),
        ),
        // agent-co: tool calls alone (no inference logged), on Oct 2 and Oct 20.
        (
            key("agent-co", "basic", "m"),
            series(&[(hour(2, 10), calls(5_000)), (hour(20, 3), calls(10_000))]),
        ),
    ]
    .into_iter()
    .collect();
    let c = costs(&[(2, Some("basic"), "6.00", false), (20, Some("basic"), "5.00", false)]);
    let r = run(&u, Some(&c), &BTreeMap::new());
    let g = &r.invoices[0];
    assert_eq!(g.tenant_id.as_str(), "agent-co");
    let s = |x: &str| x.to_owned();
    assert_eq!(
        line_table(g),
        [
            ("plan_fee", s(""), 1, "month", s("10"), s("10.00")),
            // 5,000 × 0.0015 = 7.50 before the change; 10,000 × 0.0012 = 12.00 after.
            ("tool_calls", s("m"), 5_000, "calls", s("0.0015"), s("7.50")),
            ("tool_calls", s("m"), 10_000, "calls", s("0.0012"), s("12.00")),
            ("included_usage", s(""), 1, "credit", s("-1"), s("-1.00")),
        ]
    );
    assert_eq!(g.total, d("28.50"));
    assert!(g.complete);
    // Weights are tokens alone: Oct 2's list cost is clinic-a's 1M input tokens at 2.00 (the
    // 6,234 tool calls would add 6.234), so all of Oct 2's 6.00 goes to clinic-a; Oct 20 had
    // tool calls only, so its 5.00 is unallocated and it is not a day "with usage but no cost".
    let oct = |day| t(day, 0).date_naive();
    assert_eq!(r.list_cost, [((oct(2), basic()), d("2.00"))].into_iter().collect());
    let shares: Vec<(String, String, i64)> = r
        .allocations
        .iter()
        .map(|a| (a.tenant_id.to_string(), a.amount.to_string(), a.tokens))
        .collect();
    assert_eq!(shares, [("clinic-a".into(), "6.00".into(), 1_000_000)]);
    let un: Vec<(String, String)> =
        r.unallocated.iter().map(|u| (u.amount.to_string(), u.reason.clone())).collect();
    assert_eq!(un, [("5.00".into(), "no priced usage of tier basic that day".into())]);
    assert!(r.usage_without_cost.is_empty());
    assert_eq!((g.allocated_cost, g.margin), (d("0.00"), d("28.50")));
    let a = &r.invoices[1];
    assert_eq!((a.total, a.allocated_cost, a.margin), (d("13.85"), d("6.00"), d("7.85")));
    // Margin and FOCUS still add up.
    let m = crate::invoice::export::margin(&r);
    assert!(m.reconciliation.reconciled);
    assert_eq!(
        (
            m.tiers[0].revenue,
            m.tiers[0].allocated_cost,
            m.tiers[0].unallocated_cost,
            m.tiers[0].margin
        ),
        (d("42.35"), d("6.00"), d("5.00"), d("31.35"))
    );
    let focus = crate::invoice::focus::rows(&r, "123456789012");
    let focus: Vec<(String, String, Option<i64>)> =
        focus.iter().map(|f| (f.tenant.clone(), f.cost.to_string(), f.tokens)).collect();
    assert_eq!(
        focus,
        [("clinic-a".into(), "6.00".into(), Some(1_000_000)), (String::new(), "5.00".into(), None)]
    );
}

#[test]
fn a_price_change_splits_the_tool_call_line() {
    let u: BTreeMap<SeriesKey, Series> = [(
        key("clinic-a", "basic", "m"),
        series(&[
            (hour(15, 11), calls(1_010)),
            (hour(15, 12), calls(2_504)),
            (hour(31, 23), calls(1_000)),
        ]),
    )]
    .into_iter()
    .collect();
    let r = run(&u, None, &BTreeMap::new());
    let a = &r.invoices[0];
    let s = |x: &str| x.to_owned();
    assert_eq!(
        line_table(a),
        [
            ("plan_fee", s(""), 1, "month", s("10"), s("10.00")),
            // 1,010 × 0.0015 = 1.515 → 1.52 (half away from zero).
            ("tool_calls", s("m"), 1_010, "calls", s("0.0015"), s("1.52")),
            // (2,504 + 1,000) × 0.0012 = 4.2048 → 4.20.
            ("tool_calls", s("m"), 3_504, "calls", s("0.0012"), s("4.20")),
            ("included_usage", s(""), 1, "credit", s("-1"), s("-1.00")),
        ]
    );
    assert_eq!(a.total, d("14.72"));
    assert_eq!(a.lines[1].price_effective_to, Some(t(15, 12)));
    assert_eq!(
        (a.lines[2].price_effective_from, a.lines[2].price_effective_to),
        (Some(t(15, 12)), None)
    );
    assert!(r.list_cost.is_empty());
}

#[test]
fn unpriced_tool_calls_are_problems_never_zero_lines() {
    let u: BTreeMap<SeriesKey, Series> = [
        // Tool spans whose invocation named no model.
        (
            key("clinic-a", "basic", "_unknown"),
            series(&[(hour(3, 0), calls(7)), (hour(4, 0), calls(5))]),
        ),
        // A model the book does not know, with tool calls and no tokens.
        (key("clinic-a", "basic", "free-nothing"), series(&[(hour(6, 0), calls(9))])),
        // A priced model without a tool-call price: its tokens are billed, its calls are not.
        (
            key("clinic-a", "basic", "m-no-tools"),
            series(&[
                (
                    hour(5, 0),
                    HourUsage {
                        invocations: 1,
                        tokens: tokens(1_000_000, 0, 0),
                        tool_calls: 40,
                        ..HourUsage::default()
                    },
                ),
                (hour(16, 0), calls(60)),
            ]),
        ),
    ]
    .into_iter()
    .collect();
    let r = run(&u, None, &BTreeMap::new());
    let a = &r.invoices[0];
    let s = |x: &str| x.to_owned();
    assert_eq!(
        problem_table(a),
        [
            (
                s("_unknown"),
                0,
                12,
                s(
                    "the spans name no model (_unknown) from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00"
                )
            ),
            (
                s("free-nothing"),
                0,
                9,
                s(
                    "model free-nothing is not in the price book from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00"
                )
            ),
            (
                s("m-no-tools"),
                0,
                40,
                s(
                    "no tool_calls price from 2026-10-01T00:00:00+00:00 to 2026-10-15T12:00:00+00:00"
                )
            ),
            (
                s("m-no-tools"),
                0,
                60,
                s(
                    "no tool_calls price from 2026-10-15T12:00:00+00:00 to 2026-11-01T00:00:00+00:00"
                )
            ),
        ]
    );
    assert!(!a.complete);
    assert_eq!(
        line_table(a),
        [
            ("plan_fee", s(""), 1, "month", s("10"), s("10.00")),
            ("input_tokens", s("m-no-tools"), 1_000_000, "tokens", s("3"), s("3.00")),
            ("included_usage", s(""), 1, "credit", s("-1"), s("-1.00")),
        ]
    );
    assert_eq!(a.total, d("12.00"));
    // summary.json and the HTML invoice name the unbilled tool calls.
    let summary = serde_json::to_value(crate::invoice::export::summary(&r)).unwrap();
    assert_eq!(summary["complete"], false);
    assert_eq!(
        summary["problems"][0],
        serde_json::json!({
            "tenant_id": "clinic-a",
            "tier": "basic",
            "model_id": "_unknown",
            "tokens": 0,
            "tool_calls": 12,
            "usage_unknown": 0,
            "reason": "the spans name no model (_unknown) from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00",
        })
    );
    let html = crate::invoice::html::invoice_page(a);
    assert!(
        html.contains(
            "<li>m-no-tools: no tool_calls price from 2026-10-01T00:00:00+00:00 to \
             2026-10-15T12:00:00+00:00 (40 tool calls)</li>"
        ),
        "{html}"
    );
}

#[test]
fn problems_show_tokens_and_tool_calls_in_html() {
    // The missing plan has no quantity; a model unknown to the book has both.
    let u: BTreeMap<SeriesKey, Series> = [(
        key("hospital-a", "premium", "free-nothing"),
        series(&[(
            hour(2, 0),
            HourUsage {
                invocations: 1,
                tokens: tokens(1_000, 234, 0),
                tool_calls: 3_456,
                ..HourUsage::default()
            },
        )]),
    )]
    .into_iter()
    .collect();
    let r = run(&u, None, &BTreeMap::new());
    let h = &r.invoices[0];
    assert_eq!(
        problem_table(h).iter().map(|p| (p.1, p.2)).collect::<Vec<_>>(),
        [(1_234, 3_456), (0, 0)]
    );
    let html = crate::invoice::html::invoice_page(h);
    assert!(
        html.contains("to 2026-11-01T00:00:00+00:00 (1,234 tokens, 3,456 tool calls)</li>"),
        "{html}"
    );
    assert!(html.contains("<li>tier premium has no plan in the price book</li>"), "{html}");
}

/// A real price book: list prices for tier basic, 20% off for tier partner. `_unknown` is
/// declared with a tool-call price, which must not make such tool calls billable.
const TOOL_BOOK: &str = r#"
version = "tools-1"
currency = "USD"

[[models]]
id = "m.agent"
[[models.prices]]
effective_from = "2026-01-01"
input_per_million = "1.00"
output_per_million = "2.00"
per_tool_call = "0.0015"

[[models]]
id = "_unknown"
[[models.prices]]
effective_from = "2026-01-01"
input_per_million = "0"
output_per_million = "0"
per_tool_call = "0.0015"

[plans.basic]
base_fee = "0"
included_usage = "0"

[plans.partner]
base_fee = "5.00"
included_usage = "0"
markup = "-0.20"
"#;

#[test]
fn the_price_book_scales_tool_calls_by_the_plan() {
    let book = crate::prices::PriceBook::from_toml_str(TOOL_BOOK).unwrap();
    let u: BTreeMap<SeriesKey, Series> = [
        (key("listed", "basic", "m.agent"), series(&[(hour(2, 9), calls(1_234))])),
        (key("partner-co", "partner", "_unknown"), series(&[(hour(2, 9), calls(3))])),
        (key("partner-co", "partner", "m.agent"), series(&[(hour(2, 9), calls(1_234))])),
    ]
    .into_iter()
    .collect();
    let input = InvoiceInput {
        period: Period::parse("2026-10").unwrap(),
        pricing: &book,
        usage: &u,
        costs: None,
        pool_costs: &[],
        drivers: &Default::default(),
        roster: &BTreeMap::new(),
    };
    let r = compute(&input).unwrap();
    let s = |x: &str| x.to_owned();
    let listed = &r.invoices[0];
    assert_eq!(
        line_table(listed),
        [
            ("plan_fee", s(""), 1, "month", s("0"), s("0.00")),
            // 1,234 × 0.0015 = 1.851 → 1.85.
            ("tool_calls", s("m.agent"), 1_234, "calls", s("0.0015"), s("1.85")),
        ]
    );
    assert_eq!(listed.total, d("1.85"));
    assert!(listed.complete);
    let partner = &r.invoices[1];
    assert_eq!(
        line_table(partner),
        [
            ("plan_fee", s(""), 1, "month", s("5"), s("5.00")),
            // 20% off: 0.0015 × 0.80 = 0.0012; 1,234 × 0.0012 = 1.4808 → 1.48.
            ("tool_calls", s("m.agent"), 1_234, "calls", s("0.0012"), s("1.48")),
        ]
    );
    assert_eq!(partner.total, d("6.48"));
    assert_eq!(
        problem_table(partner),
        [(
            s("_unknown"),
            0,
            3,
            s(
                "the spans name no model (_unknown) from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00"
            )
        )]
    );
    assert!(!partner.complete);
}

#[test]
fn load_carries_tool_calls_per_hour() {
    use agentmeter_aggregate::Lake;
    use agentmeter_schemas::UserId;
    use agentmeter_schemas::tables::{
        AgentMeasures, HourlyKey, HourlyMeasures, TABLES, USAGE_HOURLY, hourly_batch,
    };
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let row = |h: i64, user: &str, model: &str, invocations, tk, agent| {
        (
            HourlyKey {
                hour_ms: h,
                tier: basic(),
                tenant_id: TenantId::new("clinic-a").unwrap(),
                user_id: UserId::new(user).unwrap(),
                model_id: ModelId::new(model).unwrap(),
                service_tier: Default::default(),
                prompt_band: 0,
            },
            HourlyMeasures { invocations, tokens: tk, agent, ..HourlyMeasures::default() },
        )
    };
    let tools =
        |tool_calls| AgentMeasures { tool_calls, tool_errors: 1, ..AgentMeasures::default() };
    let oct2 = vec![
        row(hour(2, 9), "u1", "m", 2, tokens(100, 10, 0), tools(3)),
        row(hour(2, 9), "u2", "m", 0, Tokens::default(), tools(4)),
        row(hour(2, 9), "_unknown", "_unknown", 0, Tokens::default(), tools(5)),
        // Agent invocations alone are not billed: not loaded.
        row(
            hour(2, 10),
            "u1",
            "m",
            0,
            Tokens::default(),
            AgentMeasures {
                agent_invocations: 1,
                agent_duration_ms: 900,
                max_agent_duration_ms: 900,
                ..AgentMeasures::default()
            },
        ),
    ];
    let nov1 = vec![row(
        chrono::NaiveDate::from_ymd_opt(2026, 11, 1)
            .unwrap()
            .and_hms_opt(0, 0, 0)
            .unwrap()
            .and_utc()
            .timestamp_millis(),
        "u1",
        "m",
        1,
        tokens(5, 5, 0),
        tools(8),
    )];
    let table = TABLES.iter().find(|t| t.name == USAGE_HOURLY).unwrap();
    for rows in [&oct2, &nov1] {
        let batch = hourly_batch(rows.iter().map(|(k, m)| (k, m))).unwrap();
        let at = DateTime::from_timestamp_millis(rows[0].0.hour_ms).unwrap().date_naive();
        lake.replace_partition(table, at, &batch, &[]).unwrap();
    }
    let got = crate::invoice::usage::load(&lake, &Period::parse("2026-10").unwrap()).unwrap();
    let want: BTreeMap<SeriesKey, Series> = [
        (key("clinic-a", "basic", "_unknown"), series(&[(hour(2, 9), calls(5))])),
        (
            key("clinic-a", "basic", "m"),
            series(&[(
                hour(2, 9),
                HourUsage {
                    invocations: 2,
                    tokens: tokens(100, 10, 0),
                    tool_calls: 7,
                    ..HourUsage::default()
                },
            )]),
        ),
    ]
    .into_iter()
    .collect();
    assert_eq!(got, want);
}
