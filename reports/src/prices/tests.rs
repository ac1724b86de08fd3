//! Tests of the price book: the shipped example, resolution, effective dating, plans and
//! versions (validation errors are in `tests_validate`).

use agentmeter_schemas::Tier;
use chrono::{DateTime, Utc};
use proptest::prelude::*;
use rust_decimal::Decimal;
use rust_decimal_macros::dec;

use super::*;

const EXAMPLE: &str = include_str!("../../../examples/prices.toml");

pub(super) fn t(s: &str) -> DateTime<Utc> {
    validate::parse_instant(s).unwrap()
}

fn tier(s: &str) -> Tier {
    Tier::new(s).unwrap()
}

fn example() -> PriceBook {
    PriceBook::from_toml_str(EXAMPLE).unwrap()
}

/// A small book: one model with a price change mid-October, plans of every kind. Shared with
/// `tests_validate`, whose expected line numbers depend on its layout.
pub(super) const SMALL: &str = r#"
version = "test-1"
currency = "USD"

[[models]]
id = "m.small-v1:0"
aliases = ["m.small"]
[[models.prices]]
effective_from = "2026-10-03"
input_per_million = "0.15"
output_per_million = "0.60"
cache_read_per_million = "0.015"
[[models.prices]]
effective_from = "2026-10-15T12:00:00Z"
input_per_million = "0.12"
output_per_million = "0.48"

[[models]]
id = "m.other"
[[models.prices]]
effective_from = "2026-01-01"
input_per_million = "1"
output_per_million = "2"

[plans.list]
base_fee = "0"
included_usage = "0"

[plans.marked]
base_fee = "10.00"
included_usage = "1.00"
markup = "0.25"

[plans.card]
base_fee = "100.00"
included_usage = "5.00"
rate_card = "gold"

[rate_cards.gold]
[[rate_cards.gold.models]]
id = "m.small-v1:0"
[[rate_cards.gold.models.prices]]
effective_from = "2026-10-10"
input_per_million = "0.10"
output_per_million = "0.40"
"#;

pub(super) fn small() -> PriceBook {
    PriceBook::from_toml_str(SMALL).unwrap()
}

// ---- the shipped example ---------------------------------------------------------------------

#[test]
fn example_loads_and_prices_the_synthetic_workload_exactly() {
    let book = example();
    assert!(book.version().starts_with("2026-10-01+"), "{}", book.version());
    assert_eq!(book.currency(), "USD");
    let at = t("2026-10-15");

    let m = book.resolve("mistral.ministral-3-8b-instruct").unwrap().price_at(at).unwrap();
    assert_eq!((m.input_per_million, m.output_per_million), (dec!(0.15), dec!(0.15)));
    assert_eq!(m.cache_read_per_million, None);

    let g = book.resolve("openai.gpt-oss-120b-1:0").unwrap().price_at(at).unwrap();
    assert_eq!((g.input_per_million, g.output_per_million), (dec!(0.15), dec!(0.60)));
    assert_eq!(
        book.resolve("openai.gpt-oss-120b").unwrap().id().as_str(),
        "openai.gpt-oss-120b-1:0"
    );

    let h = book.resolve("us.anthropic.claude-haiku-4-5-20251001-v1:0").unwrap();
    let h = h.price_at(at).unwrap();
    assert_eq!(h.input_per_million, dec!(1.10));
    assert_eq!(h.output_per_million, dec!(5.50));
    assert_eq!(h.cache_read_per_million, Some(dec!(0.11)));
    assert_eq!(h.cache_write_per_million, Some(dec!(1.375)));

    // global. and the bare id share the base price.
    let base = book.resolve("global.anthropic.claude-haiku-4-5-20251001-v1:0").unwrap();
    assert_eq!(base.id().as_str(), "anthropic.claude-haiku-4-5-20251001-v1:0");
    assert_eq!(base.price_at(at).unwrap().input_per_million, dec!(1.00));
    let micro = book.resolve("amazon.nova-micro-v1:0").unwrap().price_at(at).unwrap();
    assert_eq!(micro.cache_read_per_million, Some(dec!(0.00875)));
}

#[test]
fn example_plans_bill_the_synthetic_workload() {
    let book = example();
    let at = t("2026-10-20T05:00:00Z");
    let basic = book.plan(&tier("basic")).unwrap();
    assert_eq!(basic.pricing, PlanPricing::Markup(dec!(0.25)));
    assert_eq!((basic.requests_per_second, basic.requests_per_day), (Some(2), Some(50)));
    let p = book.billed_prices(&tier("basic"), "mistral.ministral-3-8b-instruct", at).unwrap();
    assert_eq!(p.input_per_million, dec!(0.1875));
    assert_eq!(p.input_per_million.to_string(), "0.1875");

    let premium = book.plan(&tier("premium")).unwrap();
    assert_eq!(premium.pricing, PlanPricing::RateCard("premium".into()));
    assert_eq!((premium.base_fee, premium.included_usage), (dec!(499.00), dec!(50.00)));
    let g = book.billed_prices(&tier("premium"), "openai.gpt-oss-120b-1:0", at).unwrap();
    assert_eq!((g.input_per_million, g.output_per_million), (dec!(0.18), dec!(0.72)));
    let h = book
        .billed_prices(&tier("premium"), "us.anthropic.claude-haiku-4-5-20251001-v1:0", at)
        .unwrap();
    assert_eq!(h.cache_read_per_million, Some(dec!(0.132)));
    assert_eq!(h.cache_write_per_million, Some(dec!(1.65)));
    // Not on the premium rate card: unpriced, not list.
    assert_eq!(
        book.billed_prices(&tier("premium"), "mistral.ministral-3-8b-instruct", at),
        Err(Unpriced::NotInRateCard {
            tier: tier("premium"),
            rate_card: "premium".into(),
            model_id: "mistral.ministral-3-8b-instruct".into(),
            profile: None,
        })
    );
}

// ---- resolution ----------------------------------------------------------------------------

#[test]
fn resolution_is_exact_alias_or_arn_resource() {
    let book = example();
    let id = |s: &str| book.resolve(s).map(|m| m.id().as_str().to_owned());
    let haiku_us = Some("us.anthropic.claude-haiku-4-5-20251001-v1:0".to_owned());
    assert_eq!(id("us.anthropic.claude-haiku-4-5-20251001-v1:0"), haiku_us);
    assert_eq!(id("openai.gpt-oss-20b"), Some("openai.gpt-oss-20b-1:0".into()));
    assert_eq!(
        id(
            "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-haiku-4-5-20251001-v1:0"
        ),
        haiku_us
    );
    assert_eq!(
        id("arn:aws:bedrock:us-east-1::foundation-model/mistral.ministral-3-8b-instruct"),
        Some("mistral.ministral-3-8b-instruct".into())
    );
    // Undeclared geo prefixes and suffix variants are unknown: nothing is stripped.
    assert_eq!(id("apac.anthropic.claude-haiku-4-5-20251001-v1:0"), None);
    assert_eq!(id("jp.anthropic.claude-sonnet-4-5-20250929-v1:0"), None);
    assert_eq!(id("mistral.ministral-3-8b-instruct-v1:0"), None);
    assert_eq!(id("openai.gpt-oss-120b-2:0"), None);
    // An application inference profile is opaque unless declared.
    assert_eq!(
        id("arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6"),
        None
    );
    // Other partitions, services and resource types are not matched.
    assert_eq!(
        id("arn:aws-us-gov:bedrock:us-gov-west-1::foundation-model/amazon.nova-lite-v1:0"),
        None
    );
    assert_eq!(id("arn:aws:sagemaker:us-east-1:1:foundation-model/amazon.nova-lite-v1:0"), None);
    assert_eq!(id("arn:aws:bedrock:us-east-1:1:custom-model/amazon.nova-lite-v1:0"), None);
    assert_eq!(id("arn:aws:bedrock::1:foundation-model/amazon.nova-lite-v1:0"), None);
    assert_eq!(id(""), None);
}

#[test]
fn application_profiles_are_never_priced_by_their_opaque_id() {
    // A model (alias) named like the profile's id does not price the profile's ARN.
    let text = EXAMPLE.replace(
        "aliases = [\"openai.gpt-oss-120b\"]\n[[models.prices]]",
        "aliases = [\"openai.gpt-oss-120b\", \"a1b2c3d4e5f6\"]\n[[models.prices]]",
    );
    let book = PriceBook::from_toml_str(&text).unwrap();
    let arn = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/a1b2c3d4e5f6";
    assert!(book.resolve(arn).is_none());
    let at = t("2026-10-02");
    for plan in ["basic", "premium"] {
        let e = book.billed_prices(&tier(plan), arn, at).unwrap_err();
        assert_eq!(e, Unpriced::UnknownApplicationProfile { profile_id: "a1b2c3d4e5f6".into() });
        assert_eq!(
            e.to_string(),
            "application inference profile a1b2c3d4e5f6 is not in --inference-profiles"
        );
    }
    // The bare id is an ordinary id: an exact match on the alias.
    assert_eq!(book.resolve("a1b2c3d4e5f6").unwrap().id().as_str(), "openai.gpt-oss-120b-1:0");
}

#[test]
fn arn_resource_parsing() {
    let r = bedrock_arn_resource;
    assert_eq!(r("arn:aws:bedrock:eu-west-1:1:inference-profile/eu.x-v1:0"), Some("eu.x-v1:0"));
    assert_eq!(r("arn:aws:bedrock:eu-west-1:1:application-inference-profile/abc"), None);
    assert_eq!(r("arn:aws:bedrock:eu-west-1:1:foundation-model/"), None);
    assert_eq!(r("arn:aws:bedrock:eu-west-1:1:foundation-model"), None);
    assert_eq!(r("arn:aws:bedrock:eu-west-1"), None);
    assert_eq!(r("us.x-v1:0"), None);
}

// ---- effective dating ----------------------------------------------------------------------

#[test]
fn a_mid_month_change_splits_exactly_and_early_usage_is_uncovered() {
    let book = small();
    let cov = book.segments("m.small", t("2026-10-01"), t("2026-11-01")).unwrap();
    assert_eq!(cov.uncovered, vec![TimeRange { from: t("2026-10-01"), to: t("2026-10-03") }]);
    assert_eq!(cov.segments.len(), 2);
    let (a, b) = (&cov.segments[0], &cov.segments[1]);
    assert_eq!((a.from, a.to), (t("2026-10-03"), t("2026-10-15T12:00:00Z")));
    assert_eq!(
        (a.effective_from, a.effective_to),
        (t("2026-10-03"), Some(t("2026-10-15T12:00:00Z")))
    );
    assert_eq!(a.prices.input_per_million, dec!(0.15));
    assert_eq!(a.prices.cache_read_per_million, Some(dec!(0.015)));
    assert_eq!((b.from, b.to), (t("2026-10-15T12:00:00Z"), t("2026-11-01")));
    assert_eq!((b.effective_from, b.effective_to), (t("2026-10-15T12:00:00Z"), None));
    assert_eq!(b.prices.input_per_million, dec!(0.12));
    assert_eq!(b.prices.cache_read_per_million, None);

    // Clipped to the period; the effective dates stay those of the entry.
    let cov = book.segments("m.small-v1:0", t("2026-10-05"), t("2026-10-06")).unwrap();
    assert!(cov.uncovered.is_empty());
    assert_eq!(cov.segments.len(), 1);
    assert_eq!((cov.segments[0].from, cov.segments[0].to), (t("2026-10-05"), t("2026-10-06")));
    assert_eq!(cov.segments[0].effective_from, t("2026-10-03"));

    // Wholly before the first price; empty and reversed ranges; unknown model.
    let cov = book.segments("m.small", t("2026-09-01"), t("2026-10-01")).unwrap();
    assert!(cov.segments.is_empty());
    assert_eq!(cov.uncovered, vec![TimeRange { from: t("2026-09-01"), to: t("2026-10-01") }]);
    assert_eq!(
        book.segments("m.small", t("2026-10-05"), t("2026-10-05")),
        Some(Coverage::default())
    );
    assert_eq!(
        book.segments("m.small", t("2026-10-06"), t("2026-10-05")),
        Some(Coverage::default())
    );
    assert_eq!(book.segments("m.none", t("2026-10-01"), t("2026-11-01")), None);

    // The hour before the change is the old price, the change's hour the new one.
    let m = book.resolve("m.small").unwrap();
    assert_eq!(m.price_at(t("2026-10-15T11:00:00Z")).unwrap().input_per_million, dec!(0.15));
    assert_eq!(m.price_at(t("2026-10-15T12:00:00Z")).unwrap().input_per_million, dec!(0.12));
    assert_eq!(m.price_at(t("2026-10-02T23:00:00Z")), None);
}

#[test]
fn billed_segments_with_markup_keep_list_beside_billed() {
    let book = small();
    let s = book.billed_segments(&tier("marked"), "m.small", t("2026-10-01"), t("2026-11-01"));
    let s = s.unwrap();
    assert_eq!(s.model.as_str(), "m.small-v1:0");
    assert_eq!(s.list_model.as_ref().map(|m| m.as_str()), Some("m.small-v1:0"));
    assert_eq!(s.unbilled, vec![TimeRange { from: t("2026-10-01"), to: t("2026-10-03") }]);
    assert_eq!(s.unlisted, s.unbilled);
    let billed: Vec<_> = s.billed.iter().map(|b| b.prices.input_per_million).collect();
    assert_eq!(billed, [dec!(0.1875), dec!(0.15)]);
    assert_eq!(s.billed[0].prices.output_per_million, dec!(0.75));
    assert_eq!(s.billed[0].prices.cache_read_per_million, Some(dec!(0.01875)));
    assert_eq!(s.billed[1].prices.cache_read_per_million, None);
    let list: Vec<_> = s.list.iter().map(|b| b.prices.input_per_million).collect();
    assert_eq!(list, [dec!(0.15), dec!(0.12)]);
    assert_eq!(s.billed[1].from, t("2026-10-15T12:00:00Z"));

    let at = t("2026-10-20");
    assert_eq!(s.billed_at(at).unwrap().prices.input_per_million, dec!(0.15));
    assert_eq!(s.list_at(at).unwrap().prices.input_per_million, dec!(0.12));

    // List plan: billed is list.
    let l = book.billed_segments(&tier("list"), "m.small", t("2026-10-01"), t("2026-11-01"));
    let l = l.unwrap();
    assert_eq!(l.billed, l.list);
}

#[test]
fn billed_segments_from_a_rate_card_have_their_own_dates() {
    let book = small();
    // The card's models resolve by the card's declarations: "m.small" is not declared there.
    let e = book.billed_segments(&tier("card"), "m.small", t("2026-10-01"), t("2026-11-01"));
    assert!(matches!(e, Err(Unpriced::NotInRateCard { .. })), "{e:?}");
    let s = book
        .billed_segments(&tier("card"), "m.small-v1:0", t("2026-10-01"), t("2026-11-01"))
        .unwrap();
    assert_eq!(s.unbilled, vec![TimeRange { from: t("2026-10-01"), to: t("2026-10-10") }]);
    assert_eq!(s.billed.len(), 1);
    assert_eq!((s.billed[0].from, s.billed[0].to), (t("2026-10-10"), t("2026-11-01")));
    assert_eq!(s.billed[0].prices.input_per_million, dec!(0.10));
    assert_eq!(s.list.len(), 2);
    assert_eq!(s.unlisted, vec![TimeRange { from: t("2026-10-01"), to: t("2026-10-03") }]);
}

#[test]
fn unpriced_reasons() {
    let book = small();
    let (from, to) = (t("2026-10-01"), t("2026-11-01"));
    assert_eq!(
        book.billed_segments(&tier("gold"), "m.small", from, to),
        Err(Unpriced::NoPlan { tier: tier("gold") })
    );
    assert_eq!(
        book.billed_segments(&tier("marked"), "m.unknown", from, to),
        Err(Unpriced::UnknownModel { model_id: "m.unknown".into(), profile: None })
    );
    let e = book.billed_segments(&tier("card"), "m.other", from, to).unwrap_err();
    assert_eq!(e.to_string(), "model \"m.other\" is not on rate card \"gold\" of tier card");
    let e = book.billed_prices(&tier("list"), "m.small", t("2026-10-02")).unwrap_err();
    assert_eq!(e.to_string(), "model \"m.small\" has no price at 2026-10-02 00:00:00 UTC");
    assert_eq!(
        Unpriced::UnknownModel { model_id: "x".into(), profile: None }.to_string(),
        "model \"x\" is not in the price book (declare it, or add it as an alias)"
    );
}

#[test]
fn markup_of_minus_one_is_free_and_zero_prices_stay_exact() {
    let text = SMALL.replace("markup = \"0.25\"", "markup = \"-1\"");
    let book = PriceBook::from_toml_str(&text).unwrap();
    let p = book.billed_prices(&tier("marked"), "m.small", t("2026-10-05")).unwrap();
    assert_eq!(p.input_per_million, Decimal::ZERO);
    assert_eq!(p.cache_read_per_million, Some(Decimal::ZERO));
}

// ---- version -------------------------------------------------------------------------------

#[test]
fn version_names_the_exact_bytes() {
    let a = small().version();
    assert_eq!(a, small().version());
    let (label, hex) = a.split_once('+').unwrap();
    assert_eq!(label, "test-1");
    assert_eq!(hex.len(), 12);
    assert!(hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    let edited = PriceBook::from_toml_str(&format!("{SMALL}# a comment\n")).unwrap();
    assert_ne!(edited.version(), a);
    assert!(edited.version().starts_with("test-1+"));
    assert_eq!(edited.declared_version(), "test-1");
}

#[test]
fn load_reads_a_file_and_names_it_in_errors() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("prices.toml");
    std::fs::write(&path, SMALL).unwrap();
    assert_eq!(PriceBook::load(&path).unwrap().version(), small().version());
    std::fs::write(&path, SMALL.replace("rate_card = \"gold\"", "rate_card = \"silver\"")).unwrap();
    let e = PriceBook::load(&path).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!("{}: plans.card: rate_card \"silver\" is not defined", path.display())
    );
    let missing = dir.path().join("missing.toml");
    let e = PriceBook::load(&missing).unwrap_err();
    assert!(matches!(e, PriceBookError::Io { .. }), "{e}");
    assert!(e.to_string().starts_with(&format!("cannot read price book {}: ", missing.display())));
}

proptest! {
    /// Segments and uncovered ranges tile any queried range exactly, in order, and each
    /// segment carries the price in effect at its start.
    #[test]
    fn segments_tile_the_range(
        starts in proptest::collection::btree_set(0i64..2_000, 1..6),
        a in -100i64..2_200,
        len in 0i64..2_500,
    ) {
        let hour = |h: i64| t("2026-01-01") + chrono::Duration::hours(h);
        let mut text = String::from("version = \"p\"\ncurrency = \"USD\"\n[[models]]\nid = \"m\"\n");
        for (i, s) in starts.iter().enumerate() {
            let at = hour(*s).to_rfc3339();
            text.push_str(&format!(
                "[[models.prices]]\neffective_from = \"{at}\"\ninput_per_million = \"{i}\"\noutput_per_million = \"0\"\n"
            ));
        }
        let book = PriceBook::from_toml_str(&text).unwrap();
        let m = book.resolve("m").unwrap();
        let (from, to) = (hour(a), hour(a + len));
        let cov = m.segments(from, to);
        let mut pieces: Vec<(DateTime<Utc>, DateTime<Utc>)> =
            cov.uncovered.iter().map(|r| (r.from, r.to)).collect();
        pieces.extend(cov.segments.iter().map(|s| (s.from, s.to)));
        let mut cursor = from;
        for (lo, hi) in &pieces {
            prop_assert_eq!(*lo, cursor);
            prop_assert!(lo < hi);
            cursor = *hi;
        }
        prop_assert_eq!(cursor, if len == 0 { from } else { to });
        for s in &cov.segments {
            prop_assert_eq!(m.price_at(s.from), Some(&s.prices));
            prop_assert!(s.effective_from <= s.from);
            prop_assert!(s.effective_to.is_none_or(|e| s.to <= e));
            let last = s.to - chrono::Duration::hours(1);
            prop_assert_eq!(m.price_at(last), Some(&s.prices));
        }
        for r in &cov.uncovered {
            prop_assert_eq!(m.price_at(r.from), None);
        }
    }
}
