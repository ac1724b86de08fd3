//! Engine tests with a hand-made price book: exact lines, splits at a price change, problems,
//! allocations that add up, and per-tenant outputs that hold one tenant alone.

use std::collections::BTreeMap;
use std::str::FromStr;

use agentmeter_schemas::tables::HOUR_MS;
use agentmeter_schemas::{ModelId, TenantId, Tier, Tokens};
use chrono::{DateTime, Utc};
use rust_decimal::Decimal;

use super::compute::{InvoiceInput, PlanTerms, PriceSpan, Pricing, Spans, compute};
use super::model::{Component, Period};
use super::usage::{HourUsage, Series, SeriesKey};
use crate::costs::{CostGroup, CostReport, DailyCost};
use crate::prices::{UnitPrices, UsageSource};
use agentmeter_schemas::tables::ChatMeasures;

mod classes;
mod pools;
mod tool_calls;

fn d(s: &str) -> Decimal {
    Decimal::from_str(s).unwrap()
}

fn t(day: u32, hour: u32) -> DateTime<Utc> {
    chrono::NaiveDate::from_ymd_opt(2026, 10, day)
        .unwrap()
        .and_hms_opt(hour, 0, 0)
        .unwrap()
        .and_utc()
}

/// Model "m": 2.00 in / 8.00 out per million and 0.0010 per tool call until Oct 15 12:00, then
/// 1.00 / 4.00 and 0.0008; cache read only after the change. Model "m-no-tools" has the same
/// prices without a tool-call price. Model "free-nothing" is not priced. Plans: basic has a
/// markup of 50%, a 10.00 fee and 1.00 included; premium has no plan.
#[derive(Default)]
struct Book {
    source: UsageSource,
}

fn prices(input: &str, output: &str, cache_read: Option<&str>) -> UnitPrices {
    UnitPrices {
        input_per_million: d(input),
        output_per_million: d(output),
        cache_read_per_million: cache_read.map(d),
        cache_write_per_million: None,
        per_tool_call: None,
        ..UnitPrices::none()
    }
}

fn scaled(p: &UnitPrices, f: Decimal) -> UnitPrices {
    UnitPrices {
        input_per_million: p.input_per_million * f,
        output_per_million: p.output_per_million * f,
        cache_read_per_million: p.cache_read_per_million.map(|c| c * f),
        cache_write_per_million: p.cache_write_per_million.map(|c| c * f),
        per_tool_call: p.per_tool_call.map(|c| c * f),
        ..UnitPrices::none()
    }
}

impl Pricing for Book {
    fn version(&self) -> String {
        "test+000000000000".into()
    }
    fn currency(&self) -> String {
        "USD".into()
    }
    fn tiers(&self) -> Vec<Tier> {
        vec![Tier::new("basic").unwrap()]
    }
    fn plan(&self, tier: &Tier) -> Option<PlanTerms> {
        (tier.as_str() == "basic").then(|| PlanTerms {
            base_fee: d("10"),
            included_usage: d("1.00"),
            usage_source: self.source,
        })
    }
    fn spans(&self, tier: &Tier, model: &str, from: DateTime<Utc>, to: DateTime<Utc>) -> Spans {
        if model != "m" && model != "m-no-tools" {
            return Spans {
                priced: vec![],
                uncovered: vec![(from, to, format!("model {model} is not in the price book"))],
            };
        }
        let change = t(15, 12);
        let markup = if tier.as_str() == "basic" { d("1.5") } else { Decimal::ONE };
        let tool = |p: &str| (model == "m").then(|| d(p));
        let a = UnitPrices { per_tool_call: tool("0.0010"), ..prices("2.00", "8.00", None) };
        let b =
            UnitPrices { per_tool_call: tool("0.0008"), ..prices("1.00", "4.00", Some("0.10")) };
        vec![
            (
                from,
                change,
                a,
                Some(
                    chrono::NaiveDate::from_ymd_opt(2024, 1, 1)
                        .unwrap()
                        .and_hms_opt(0, 0, 0)
                        .unwrap()
                        .and_utc(),
                ),
                Some(change),
            ),
            (change, to, b, Some(change), None),
        ]
        .into_iter()
        .fold(Spans::default(), |mut s, (f, t, p, ef, et)| {
            s.priced.push(PriceSpan {
                from: f,
                to: t,
                billed: scaled(&p, markup),
                list: p,
                effective_from: ef,
                effective_to: et,
            });
            s
        })
    }
}

fn key(tenant: &str, tier: &str, model: &str) -> SeriesKey {
    SeriesKey {
        tenant_id: TenantId::new(tenant).unwrap(),
        tier: Tier::new(tier).unwrap(),
        model_id: ModelId::new(model).unwrap(),
        service_tier: Default::default(),
        prompt_band: 0,
    }
}

fn tokens(input: i64, output: i64, cache_read: i64) -> Tokens {
    Tokens {
        input,
        output,
        total: input + output + cache_read,
        cache_read,
        cache_write: 0,
        cache_write_1h: 0,
    }
}

/// One hour of inference usage (no tool calls).
fn hu(invocations: i64, tokens: Tokens) -> HourUsage {
    HourUsage { invocations, tokens, ..HourUsage::default() }
}

/// One hour of tool calls alone (what spans add: no calls, no tokens).
fn calls(tool_calls: i64) -> HourUsage {
    HourUsage { tool_calls, ..HourUsage::default() }
}

pub(super) fn usage() -> BTreeMap<SeriesKey, Series> {
    let mut u = BTreeMap::new();
    let hour = |day, h| t(day, h).timestamp_millis();
    // clinic-a: before and after the change; clinic-b: one hour on Oct 1 only.
    let a: Series = [
        (hour(1, 9), hu(3, tokens(1_000_000, 250_000, 0))),
        (hour(15, 11), hu(1, tokens(500_000, 0, 0))),
        (hour(15, 12), hu(2, tokens(2_000_000, 100_000, 40_000))),
    ]
    .into_iter()
    .collect();
    let b: Series = [(hour(1, 10), hu(1, tokens(333_333, 3, 0)))].into_iter().collect();
    u.insert(key("clinic-a", "basic", "m"), a);
    u.insert(key("clinic-b", "basic", "m"), b);
    u
}

pub(super) fn costs(rows: &[(u32, Option<&str>, &str, bool)]) -> CostReport {
    CostReport {
        metric: "UnblendedCost".into(),
        tag_key: "Tier".into(),
        days: rows
            .iter()
            .map(|(day, tag, amount, estimated)| DailyCost {
                date: t(*day, 0).date_naive(),
                group: match tag {
                    Some(v) => CostGroup::Tagged((*v).to_owned()),
                    None => CostGroup::Untagged,
                },
                amount: d(amount),
                unit: "USD".into(),
                estimated: *estimated,
            })
            .collect(),
        pages: 1,
    }
}

pub(super) fn run(
    usage: &BTreeMap<SeriesKey, Series>,
    costs: Option<&CostReport>,
    roster: &BTreeMap<TenantId, Tier>,
) -> super::InvoiceRun {
    run_with(&Book::default(), usage, costs, roster)
}

/// A run of October 2026 priced by `pricing`, without costs or a roster.
fn run_with_pricing(
    pricing: &dyn Pricing,
    usage: &BTreeMap<SeriesKey, Series>,
) -> super::InvoiceRun {
    let input = InvoiceInput {
        period: Period::parse("2026-10").unwrap(),
        pricing,
        usage,
        costs: None,
        pool_costs: &[],
        drivers: &Default::default(),
        roster: &BTreeMap::new(),
    };
    compute(&input).unwrap()
}

fn run_with(
    book: &Book,
    usage: &BTreeMap<SeriesKey, Series>,
    costs: Option<&CostReport>,
    roster: &BTreeMap<TenantId, Tier>,
) -> super::InvoiceRun {
    let input = InvoiceInput {
        period: Period::parse("2026-10").unwrap(),
        pricing: book,
        usage,
        costs,
        pool_costs: &[],
        drivers: &Default::default(),
        roster,
    };
    compute(&input).unwrap()
}

#[test]
fn lines_split_at_the_price_change_and_sum_to_the_total() {
    let u = usage();
    let r = run(&u, None, &BTreeMap::new());
    let a = &r.invoices[0];
    assert_eq!(a.tenant_id.as_str(), "clinic-a");
    let lines: Vec<(&str, i64, String, String)> = a
        .lines
        .iter()
        .map(|l| {
            (
                l.component.code(),
                l.quantity,
                l.unit_price.normalize().to_string(),
                l.amount.to_string(),
            )
        })
        .collect();
    assert_eq!(
        lines,
        [
            ("plan_fee", 1, "10".into(), "10.00".into()),
            // Before Oct 15 12:00: 1.5M input at 3.00, 250k output at 12.00 (list × 1.5).
            ("input_tokens", 1_500_000, "3".into(), "4.50".into()),
            ("output_tokens", 250_000, "12".into(), "3.00".into()),
            // After: 2M input at 1.50, 100k output at 6.00, 40k cache read at 0.15.
            ("input_tokens", 2_000_000, "1.5".into(), "3.00".into()),
            ("output_tokens", 100_000, "6".into(), "0.60".into()),
            ("cache_read_tokens", 40_000, "0.15".into(), "0.01".into()),
            ("included_usage", 1, "-1".into(), "-1.00".into()),
        ]
    );
    assert_eq!(a.total, d("20.11"));
    assert_eq!(a.total, a.lines.iter().map(|l| l.amount).sum::<Decimal>());
    assert_eq!(a.lines[1].price_effective_to, Some(t(15, 12)));
    assert_eq!(a.lines[3].price_effective_from, Some(t(15, 12)));
    assert!(a.complete);
    // clinic-b: 333,333 × 3.00 / 1M = 0.999999 → 1.00; 3 × 12.00 / 1M = 0.000036 → 0.00 (a line
    // that rounds to zero is still shown); usage 1.00 ≤ included 1.00 → credit 1.00.
    let b = &r.invoices[1];
    let amounts: Vec<String> = b.lines.iter().map(|l| l.amount.to_string()).collect();
    assert_eq!(amounts, ["10.00", "1.00", "0.00", "-1.00"]);
    assert_eq!(b.total, d("10.00"));
}

#[test]
fn unpriced_usage_is_a_problem_never_a_zero_line() {
    let mut u = usage();
    let free: Series =
        [(t(3, 0).timestamp_millis(), hu(1, tokens(10, 10, 0)))].into_iter().collect();
    u.insert(key("clinic-a", "basic", "free-nothing"), free);
    let premium: Series =
        [(t(2, 0).timestamp_millis(), hu(1, tokens(10, 10, 7)))].into_iter().collect();
    u.insert(key("hospital-a", "premium", "m"), premium);
    let r = run(&u, None, &BTreeMap::new());
    let a = &r.invoices[0];
    assert!(!a.complete);
    assert_eq!(a.problems.len(), 1);
    assert_eq!(a.problems[0].tokens, 20);
    assert!(
        a.problems[0].reason.starts_with("model free-nothing is not in the price book"),
        "{}",
        a.problems[0].reason
    );
    assert!(a.lines.iter().all(|l| l.model_id.as_ref().is_none_or(|m| m.as_str() == "m")));
    // hospital-a: tier premium has no plan, and the cache read before the change has no price.
    let h = r.invoices.iter().find(|i| i.tenant_id.as_str() == "hospital-a").unwrap();
    let reasons: Vec<&str> = h.problems.iter().map(|p| p.reason.as_str()).collect();
    assert_eq!(reasons.len(), 2, "{reasons:?}");
    assert!(reasons[0].starts_with("no cache_read_tokens price from "), "{reasons:?}");
    assert_eq!(reasons[1], "tier premium has no plan in the price book");
    assert!(h.lines.iter().all(|l| l.component != Component::CacheReadTokens));
}

#[test]
fn a_rostered_tenant_without_usage_pays_the_base_fee() {
    let roster: BTreeMap<TenantId, Tier> =
        [(TenantId::new("clinic-z").unwrap(), Tier::new("basic").unwrap())].into_iter().collect();
    let r = run(&usage(), None, &roster);
    let z = r.invoices.iter().find(|i| i.tenant_id.as_str() == "clinic-z").unwrap();
    assert_eq!(z.lines.len(), 1);
    assert_eq!(z.lines[0].component, Component::PlanFee);
    assert_eq!(z.total, d("10.00"));
    assert_eq!(z.allocated_cost, Decimal::ZERO);
    assert!(r.notes.iter().any(|n| n == "tenant clinic-a has usage but is not in the roster"));
}

#[test]
fn costs_are_split_to_the_cent_and_the_rest_is_unallocated() {
    let u = usage();
    let c = costs(&[
        // Oct 1: both tenants used basic. List costs: a = 1M×2 + 250k×8 = 4.00; b = 333,333×2 +
        // 3×8 per million = 0.666690. 10.00 split 4.00 : 0.66669 → 8.57 / 1.43.
        (1, Some("Basic"), "10.004", true),
        // Oct 2: cost but no usage.
        (2, Some("basic"), "3.333", false),
        // Untagged, and a tag matching no tier.
        (1, None, "0.50", false),
        (1, Some("gold"), "1", false),
    ]);
    let r = run(&u, Some(&c), &BTreeMap::new());
    let shares: Vec<(String, String)> =
        r.allocations.iter().map(|a| (a.tenant_id.to_string(), a.amount.to_string())).collect();
    assert_eq!(shares, [("clinic-a".into(), "8.57".into()), ("clinic-b".into(), "1.43".into())]);
    let un: Vec<(String, String)> =
        r.unallocated.iter().map(|u| (u.amount.to_string(), u.reason.clone())).collect();
    assert_eq!(
        un,
        [
            ("3.33".into(), "no priced usage of tier basic that day".into()),
            ("0.50".into(), "untagged cost".into()),
            ("1.00".into(), "tag value \"gold\" matches no tier".into()),
        ]
    );
    assert_eq!(r.cost_total, d("14.83"));
    let allocated: Decimal = r.allocations.iter().map(|a| a.amount).sum();
    let unallocated: Decimal = r.unallocated.iter().map(|u| u.amount).sum();
    assert_eq!(allocated + unallocated, r.cost_total);
    let a = &r.invoices[0];
    assert_eq!((a.allocated_cost, a.margin, a.provisional), (d("8.57"), d("11.54"), true));
    // Usage on Oct 15 had no cost row.
    assert!(r.usage_without_cost.contains(&(t(15, 0).date_naive(), Tier::new("basic").unwrap())));
    let m = super::export::margin(&r);
    assert!(m.reconciliation.reconciled);
    assert_eq!(m.untiered_cost, d("1.50"));
    assert_eq!(m.tiers[0].unallocated_cost, d("3.33"));
}

#[test]
fn per_tenant_files_hold_one_tenant_alone() {
    let u = usage();
    let c = costs(&[(1, Some("basic"), "10", false)]);
    let r = run(&u, Some(&c), &BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let written =
        super::export::write_draft(&r, dir.path(), "123456789012", chrono::Utc::now()).unwrap();
    let tenants = written.dir.join(super::export::TENANTS_DIR);
    let a_json = std::fs::read_to_string(tenants.join("clinic-a.json")).unwrap();
    let a_html = std::fs::read_to_string(tenants.join("clinic-a.html")).unwrap();
    let b = &r.invoices[1];
    for text in [&a_json, &a_html] {
        assert!(!text.contains("clinic-b"));
        for l in &b.lines {
            // Quantities distinctive enough to be recognised.
            if l.quantity >= 1000 {
                assert!(
                    !text.contains(&l.quantity.to_string()),
                    "clinic-b's quantity {} leaked",
                    l.quantity
                );
            }
        }
        assert!(!text.contains(&b.allocated_cost.to_string()));
    }
    let parsed: serde_json::Value = serde_json::from_str(&a_json).unwrap();
    assert_eq!(parsed["total"], "20.11");
    assert_eq!(parsed["lines"][1]["amount"], "4.50");
    assert_eq!(parsed["invoice_number"], "AM-202610-clinic-a");
    // A rerun without clinic-b removes clinic-b's files.
    let mut only_a = u.clone();
    only_a.retain(|k, _| k.tenant_id.as_str() == "clinic-a");
    let r2 = run(&only_a, Some(&c), &BTreeMap::new());
    super::export::write_draft(&r2, dir.path(), "123456789012", chrono::Utc::now()).unwrap();
    assert!(!tenants.join("clinic-b.json").exists());
    assert!(tenants.join("clinic-a.json").exists());
}

#[test]
fn tenants_named_like_run_wide_files_keep_their_invoices_and_never_see_the_others() {
    // Every run-wide file name (and the tenant directory's) as a tenant id.
    let names = ["summary", "margin", "invoices", "focus", "tenants", "summary.json"];
    let base = usage();
    let template: Vec<_> =
        base.iter().filter(|(k, _)| k.tenant_id.as_str() == "clinic-a").collect();
    let mut u = BTreeMap::new();
    for name in names {
        for (k, v) in &template {
            let mut k = (*k).clone();
            k.tenant_id = TenantId::new(name).unwrap();
            u.insert(k, (*v).clone());
        }
    }
    let c = costs(&[(1, Some("basic"), "10", false)]);
    let r = run(&u, Some(&c), &BTreeMap::new());
    let dir = tempfile::tempdir().unwrap();
    let written =
        super::export::write_draft(&r, dir.path(), "123456789012", chrono::Utc::now()).unwrap();
    let tenants = written.dir.join(super::export::TENANTS_DIR);
    for name in names {
        let inv: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(tenants.join(format!("{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(inv["tenant_id"], name, "{name}.json is {name}'s invoice");
        let html = std::fs::read_to_string(tenants.join(format!("{name}.html"))).unwrap();
        for other in names.iter().filter(|o| **o != name && !name.contains(**o)) {
            assert!(!html.contains(&format!(">{other}<")), "{other} in {name}.html");
        }
    }
    // The run-wide files are the run's, not a tenant's.
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(written.dir.join("summary.json")).unwrap())
            .unwrap();
    assert_eq!(summary["invoices"], names.len());
    let margin: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(written.dir.join("margin.json")).unwrap())
            .unwrap();
    assert_eq!(margin["tenants"].as_array().unwrap().len(), names.len());
    assert!(written.dir.join("invoices.csv").is_file());
    assert!(written.dir.join("focus.csv").is_file());
}

#[test]
fn periods() {
    let p = super::Period::parse("2026-12").unwrap();
    assert_eq!(
        (p.start.to_string(), p.end.to_string()),
        ("2026-12-01".into(), "2027-01-01".into())
    );
    assert_eq!(p.days().count(), 31);
    assert!(super::Period::parse("2026-1").is_err());
    assert_eq!(
        super::Period::parse("26-01").unwrap_err(),
        "period \"26-01\" is not a YYYY-MM month"
    );
    let _ = HOUR_MS;
}

fn hour(day: u32, h: u32) -> i64 {
    t(day, h).timestamp_millis()
}

#[test]
fn costs_in_another_currency_are_refused_not_booked_as_the_books() {
    let u = usage();
    let mut c = costs(&[(1, Some("basic"), "10", false), (2, Some("basic"), "5", false)]);
    c.days[1].unit = "EUR".into();
    let roster = BTreeMap::new();
    let input = InvoiceInput {
        period: Period::parse("2026-10").unwrap(),
        pricing: &Book::default(),
        usage: &u,
        costs: Some(&c),
        pool_costs: &[],
        drivers: &Default::default(),
        roster: &roster,
    };
    assert_eq!(
        compute(&input).unwrap_err().to_string(),
        "the costs are in EUR but the price book is in USD; give costs in USD (no conversion is made)"
    );
}

/// One hour of a reused Agent object: its second log line carries the lifetime total (1,310
/// input tokens), while its chat spans carry what the call used (655).
fn reused_agent() -> BTreeMap<SeriesKey, Series> {
    let h = HourUsage {
        invocations: 2,
        tokens: tokens(655 + 1_310, 100 + 200, 0),
        chat: ChatMeasures { calls: 2, usage_unknown: 0, tokens: tokens(1_310, 200, 0) },
        ..HourUsage::default()
    };
    [(key("clinic-a", "basic", "m"), [(hour(2, 9), h)].into_iter().collect())].into_iter().collect()
}

fn quantity(inv: &super::Invoice, c: Component) -> i64 {
    inv.lines.iter().filter(|l| l.component == c).map(|l| l.quantity).sum()
}

#[test]
fn a_chat_spans_plan_bills_the_chat_spans_and_says_so() {
    let u = reused_agent();
    let logs = run_with(&Book::default(), &u, None, &BTreeMap::new());
    let chat = run_with(&Book { source: UsageSource::ChatSpans }, &u, None, &BTreeMap::new());
    let (l, c) = (&logs.invoices[0], &chat.invoices[0]);
    assert_eq!(l.usage_source, UsageSource::Logs);
    assert_eq!(c.usage_source, UsageSource::ChatSpans);
    assert_eq!(quantity(l, Component::InputTokens), 1_965);
    assert_eq!(quantity(c, Component::InputTokens), 1_310);
    assert_eq!(quantity(c, Component::OutputTokens), 200);
    assert!(l.complete && c.complete);
    let json = serde_json::to_value(c).unwrap();
    assert_eq!(json["usage_source"], "chat_spans");
    assert!(super::html::invoice_page(c).contains("Tokens billed from the chat spans"));
}

#[test]
fn calls_without_usage_make_the_invoice_incomplete_never_free() {
    let mut u = reused_agent();
    let series = u.values_mut().next().unwrap();
    let h = series.values_mut().next().unwrap();
    h.usage_unknown = 1;
    h.invocations += 1;
    h.chat.usage_unknown = 2;
    h.chat.calls += 2;
    for (book, source, n) in
        [(Book::default(), "logs", 1), (Book { source: UsageSource::ChatSpans }, "chat spans", 2)]
    {
        let r = run_with(&book, &u, None, &BTreeMap::new());
        let inv = &r.invoices[0];
        assert!(!inv.complete, "{source}");
        let p: Vec<_> = inv.problems.iter().filter(|p| p.usage_unknown > 0).collect();
        assert_eq!(p.len(), 1, "{source}: {:?}", inv.problems);
        assert_eq!(p[0].usage_unknown, n);
        assert_eq!((p[0].tokens, p[0].tool_calls), (0, 0));
        assert_eq!(
            p[0].reason,
            format!(
                "model calls reported no usage in the {source} (usage unknown, not billed as free) \
                 in the hours from 2026-10-02T09:00:00+00:00 to 2026-10-02T09:00:00+00:00"
            )
        );
        assert_eq!(p[0].quantities(|n| n.to_string()), format!("{n} calls without usage"));
    }
}

#[test]
fn lines_billed_as_increments_of_a_lifetime_series_are_noted() {
    let mut u = usage();
    let series = u.get_mut(&key("clinic-b", "basic", "m")).unwrap();
    series.values_mut().for_each(|h| h.cumulative_lines = 2);
    let r = run(&u, None, &BTreeMap::new());
    let noted: Vec<&String> = r.notes.iter().filter(|n| n.contains("lifetime usage")).collect();
    assert_eq!(
        noted,
        ["tenant clinic-b: 2 usage log lines repeated their session's earlier calls (an Agent \
          object logging its lifetime usage) and were billed as their increments"]
    );
}
