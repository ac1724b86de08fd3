//! Price classes on invoices: 1-hour cache writes, long-context prompts and service tiers,
//! priced by the real price book; a class without a price is a problem, never $0.

use std::collections::BTreeMap;

use agentmeter_schemas::{ModelId, ServiceTier, TenantId, Tier, Tokens};
use rust_decimal::Decimal;

use super::{d, hu, run_with_pricing, t};
use crate::invoice::usage::{Series, SeriesKey};
use crate::prices::PriceBook;

const MODEL: &str = "global.anthropic.claude-sonnet-4-6";

fn series(service_tier: ServiceTier, prompt_band: i64, tokens: Tokens) -> (SeriesKey, Series) {
    let key = SeriesKey {
        tenant_id: TenantId::new("clinic-a").unwrap(),
        tier: Tier::new("basic").unwrap(),
        model_id: ModelId::new(MODEL).unwrap(),
        service_tier,
        prompt_band,
    };
    (key, [(t(2, 9).timestamp_millis(), hu(1, tokens))].into_iter().collect())
}

fn tk(input: i64, output: i64, cache_write: i64, cache_write_1h: i64) -> Tokens {
    Tokens {
        input,
        output,
        total: input + output + cache_write,
        cache_read: 0,
        cache_write,
        cache_write_1h,
    }
}

#[test]
fn every_class_is_billed_at_its_own_price_and_an_unpriced_one_is_a_problem() {
    let book = PriceBook::from_toml_str(crate::prices::tests_classes::BOOK).unwrap();
    let usage: BTreeMap<SeriesKey, Series> = [
        series(ServiceTier::Standard, 0, tk(1_000_000, 100_000, 400_000, 100_000)),
        // Prompts over 128k, under the model's 200k threshold: the same lines as band 0.
        series(ServiceTier::Standard, 128_000, tk(500_000, 0, 0, 0)),
        series(ServiceTier::Standard, 200_000, tk(300_000, 10_000, 0, 0)),
        series(ServiceTier::Priority, 0, tk(100_000, 1_000, 0, 0)),
        // The book prices no flex tier, and batch has no long-context prices.
        series(ServiceTier::Flex, 0, tk(50_000, 0, 0, 0)),
        series(ServiceTier::Batch, 272_000, tk(10, 0, 0, 0)),
    ]
    .into_iter()
    .chain(
        // A model the book does not know, in two bands: one problem for both.
        [(0, 700), (200_000, 250_000)].map(|(band, input)| {
            let (mut k, s) = series(ServiceTier::Standard, band, tk(input, 0, 0, 0));
            k.model_id = ModelId::new("nope").unwrap();
            (k, s)
        }),
    )
    .collect();
    let run = run_with_pricing(&book, &usage);
    let inv = &run.invoices[0];
    let lines: Vec<(String, i64, String, String)> = inv
        .lines
        .iter()
        .map(|l| {
            let class = l.class.and_then(|c| c.describe()).map(|c| format!(" ({c})"));
            (
                format!("{}{}", l.component.code(), class.unwrap_or_default()),
                l.quantity,
                l.unit_price.normalize().to_string(),
                l.amount.to_string(),
            )
        })
        .collect();
    let line = |c: &str, q: i64, p: &str, a: &str| (c.to_owned(), q, p.to_owned(), a.to_owned());
    // List prices × 1.10 (the plan's markup).
    assert_eq!(
        lines,
        [
            line("plan_fee", 1, "0", "0.00"),
            line("input_tokens", 1_500_000, "3.3", "4.95"),
            line("output_tokens", 100_000, "16.5", "1.65"),
            // 400,000 written, 100,000 of them for an hour.
            line("cache_write_tokens", 300_000, "4.125", "1.24"),
            line("cache_write_1h_tokens", 100_000, "6.6", "0.66"),
            line("input_tokens (long context)", 300_000, "6.6", "1.98"),
            line("output_tokens (long context)", 10_000, "24.75", "0.25"),
            line("input_tokens (priority tier)", 100_000, "5.775", "0.58"),
            line("output_tokens (priority tier)", 1_000, "28.875", "0.03"),
        ]
    );
    assert_eq!(inv.total, d("11.34"));
    assert_eq!(inv.total, inv.lines.iter().map(|l| l.amount).sum::<Decimal>());
    let problems: Vec<(i64, &str)> =
        inv.problems.iter().map(|p| (p.tokens, p.reason.as_str())).collect();
    assert_eq!(
        problems,
        [
            (
                50_000,
                "no flex service tier price from 2026-10-01T00:00:00+00:00 to \
                 2026-11-01T00:00:00+00:00"
            ),
            (
                10,
                "no long-context price (prompts over 200000 tokens) for the batch service tier \
                 from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00"
            ),
            (
                250_700,
                "model \"nope\" is not in the price book (declare it, or add it as an alias) \
                 from 2026-10-01T00:00:00+00:00 to 2026-11-01T00:00:00+00:00"
            ),
        ]
    );
    assert!(!inv.complete);
    // The lake and CSV rows name each line's class.
    let rows = crate::invoice::export::line_rows(&run.invoices);
    let classes: Vec<(Option<&str>, Option<bool>)> =
        rows.iter().map(|r| (r.service_tier.as_deref(), r.long_context)).collect();
    assert_eq!(classes[0], (None, None));
    assert_eq!(classes[5], (Some("standard"), Some(true)));
    assert_eq!(classes[7], (Some("priority"), Some(false)));
}

#[test]
fn one_hour_writes_without_their_price_are_a_problem() {
    let toml = crate::prices::tests_classes::BOOK.replacen(
        "cache_write_1h_per_million = \"6.00\"\n",
        "",
        1,
    );
    let book = PriceBook::from_toml_str(&toml).unwrap();
    let usage: BTreeMap<SeriesKey, Series> =
        [series(ServiceTier::Standard, 0, tk(1_000, 0, 700, 200))].into_iter().collect();
    let inv = &run_with_pricing(&book, &usage).invoices[0];
    let problems: Vec<(i64, &str)> =
        inv.problems.iter().map(|p| (p.tokens, p.reason.as_str())).collect();
    assert_eq!(
        problems,
        [(
            200,
            "no cache_write_1h_tokens price from 2026-10-01T00:00:00+00:00 to \
             2026-11-01T00:00:00+00:00"
        )]
    );
    // The 5-minute writes are still billed.
    assert!(
        inv.lines.iter().any(|l| l.component.code() == "cache_write_tokens" && l.quantity == 500)
    );
}

#[test]
fn every_component_is_named_alike_in_json_and_csv() {
    use crate::invoice::model::Component;
    for c in [
        Component::InputTokens,
        Component::OutputTokens,
        Component::CacheReadTokens,
        Component::CacheWriteTokens,
        Component::CacheWrite1hTokens,
        Component::ToolCalls,
        Component::PlanFee,
        Component::IncludedUsage,
    ] {
        assert_eq!(serde_json::to_value(c).unwrap(), c.code(), "{c:?}");
    }
}
