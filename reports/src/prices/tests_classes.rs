//! Tests of the price classes: 1-hour cache writes, long-context prices and service tiers.

use agentmeter_schemas::{ServiceTier, Tier};
use rust_decimal_macros::dec;

use super::tests::t;
use super::*;

/// Claude-like prices: a 200k long-context tier, 1-hour writes, priority and batch tiers
/// (batch without long-context prices), no flex.
pub(crate) const BOOK: &str = r#"
version = "classes-1"
currency = "USD"

[[models]]
id = "global.anthropic.claude-sonnet-4-6"
[[models.prices]]
effective_from = "2026-01-01"
input_per_million = "3.00"
output_per_million = "15.00"
cache_read_per_million = "0.30"
cache_write_per_million = "3.75"
cache_write_1h_per_million = "6.00"
long_context_above = 200000
[models.prices.long_context]
input_per_million = "6.00"
output_per_million = "22.50"
cache_read_per_million = "0.60"
cache_write_per_million = "7.50"
cache_write_1h_per_million = "12.00"
[models.prices.priority]
input_per_million = "5.25"
output_per_million = "26.25"
[models.prices.priority.long_context]
input_per_million = "10.50"
output_per_million = "39.375"
[models.prices.batch]
input_per_million = "1.50"
output_per_million = "7.50"

[plans.basic]
base_fee = "0"
included_usage = "0"
markup = "0.10"
"#;

fn prices(book: &PriceBook) -> UnitPrices {
    book.billed_prices(
        &Tier::new("basic").unwrap(),
        "global.anthropic.claude-sonnet-4-6",
        t("2026-10-01"),
    )
    .unwrap()
    .clone()
}

#[test]
fn each_class_has_its_prices_or_says_why_not() {
    let book = PriceBook::from_toml_str(BOOK).unwrap();
    let p = prices(&book);
    // Marked up by 10 %, every class alike, exactly.
    let std = p.for_class(ServiceTier::Standard, 0).unwrap();
    assert_eq!(
        (std.input_per_million, std.cache_write_per_million, std.cache_write_1h_per_million),
        (dec!(3.300), Some(dec!(4.1250)), Some(dec!(6.600)))
    );
    // The band of prompts over 128k is still below the threshold.
    assert_eq!(p.for_class(ServiceTier::Standard, 128_000).unwrap(), std);
    let long = p.for_class(ServiceTier::Standard, 200_000).unwrap();
    assert_eq!((long.input_per_million, long.output_per_million), (dec!(6.600), dec!(24.7500)));
    assert_eq!(p.for_class(ServiceTier::Standard, 272_000).unwrap(), long);
    let prio = p.for_class(ServiceTier::Priority, 200_000).unwrap();
    assert_eq!(prio.output_per_million, dec!(43.31250));
    assert_eq!(prio.cache_read_per_million, None);
    assert_eq!(p.for_class(ServiceTier::Batch, 0).unwrap().input_per_million, dec!(1.650));
    assert_eq!(
        p.for_class(ServiceTier::Batch, 200_000).unwrap_err().to_string(),
        "no long-context price (prompts over 200000 tokens) for the batch service tier"
    );
    assert_eq!(
        p.for_class(ServiceTier::Flex, 0).unwrap_err().to_string(),
        "no flex service tier price"
    );
}

#[test]
fn a_model_without_a_threshold_has_one_price_whatever_the_prompt() {
    let book = PriceBook::from_toml_str(super::tests::SMALL).unwrap();
    let p = book.billed_prices(&Tier::new("list").unwrap(), "m.other", t("2026-10-01")).unwrap();
    assert_eq!(p.for_class(ServiceTier::Standard, 272_000).unwrap(), p.standard());
    assert_eq!(
        p.for_class(ServiceTier::Priority, 0).unwrap_err(),
        ClassUnpriced::ServiceTier(ServiceTier::Priority)
    );
}

#[test]
fn class_tables_are_validated_where_they_are() {
    let at = "models[0] (global.anthropic.claude-sonnet-4-6).prices[0]";
    let err = |from: &str, to: &str| {
        assert!(BOOK.contains(from), "{from:?}");
        PriceBook::from_toml_str(&BOOK.replacen(from, to, 1)).unwrap_err().to_string()
    };
    assert_eq!(
        err("long_context_above = 200000", "long_context_above = 150000"),
        format!(
            "{at}.long_context_above: 150000 is not one of the supported thresholds \
             (128000, 200000, 272000 tokens)"
        )
    );
    assert_eq!(
        err("long_context_above = 200000", "long_context_above = \"200000\""),
        format!(
            "{at}.long_context_above: a string is not one of the supported thresholds \
             (128000, 200000, 272000 tokens)"
        )
    );
    assert_eq!(
        err("long_context_above = 200000\n", ""),
        format!("{at}.long_context: long-context prices need long_context_above in the same entry")
    );
    assert_eq!(
        err("input_per_million = \"10.50\"", "input_per_million = \"ten\""),
        format!("{at}.priority.long_context.input_per_million: \"ten\" is not a decimal")
    );
    assert_eq!(
        err("cache_write_1h_per_million = \"6.00\"", "cache_write_1h_per_million = \"-6\""),
        format!("{at}.cache_write_1h_per_million: \"-6\" is negative")
    );
    assert!(err("[models.prices.batch]", "[models.prices.reserved]").contains("unknown field"));
}
