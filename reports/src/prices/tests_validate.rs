//! Tests of price book validation: every error, with its exact message.

use super::PriceBook;
use super::tests::{SMALL, small, t};

/// The error message for `SMALL` with `from` replaced by `to` (which must occur in it).
fn err_with(from: &str, to: &str) -> String {
    assert!(SMALL.contains(from), "{from:?} is not in SMALL");
    PriceBook::from_toml_str(&SMALL.replacen(from, to, 1)).unwrap_err().to_string()
}

#[test]
fn amounts_must_be_quoted_decimals() {
    let at = "models[0] (m.small-v1:0).prices[0].input_per_million";
    assert_eq!(
        err_with("input_per_million = \"0.15\"", "input_per_million = 0.15"),
        format!(
            "{at}: 0.15 is a TOML float; write it as a quoted string, \"0.15\", so it is read exactly"
        )
    );
    assert_eq!(
        err_with("input_per_million = \"0.15\"", "input_per_million = 1"),
        format!(
            "{at}: 1 is a TOML integer; write it as a quoted string, \"1\", so it is read exactly"
        )
    );
    assert_eq!(
        err_with("input_per_million = \"0.15\"", "input_per_million = true"),
        format!("{at}: expected a quoted decimal string such as \"0.15\", found a TOML boolean")
    );
    for bad in ["abc", "", "1e-7", ".5", "5.", "1,5", "+1", " 1", "0x10", "1.2.3", "NaN"] {
        assert_eq!(
            err_with("input_per_million = \"0.15\"", &format!("input_per_million = {bad:?}")),
            format!("{at}: {bad:?} is not a decimal")
        );
    }
    assert_eq!(
        err_with("input_per_million = \"0.15\"", "input_per_million = \"-0.01\""),
        format!("{at}: \"-0.01\" is negative")
    );
    assert_eq!(
        err_with("input_per_million = \"0.15\"", "input_per_million = \"0.1234567890123\""),
        format!("{at}: \"0.1234567890123\" has more than 12 decimal places")
    );
    // Twelve places, negative zero and large values are fine.
    for good in ["0.123456789012", "-0", "0", "123456789"] {
        let text = SMALL.replacen("\"0.15\"", &format!("{good:?}"), 1);
        let book = PriceBook::from_toml_str(&text).unwrap();
        let p = book.resolve("m.small").unwrap().entries()[0].prices.input_per_million;
        assert_eq!(p.to_string(), good.trim_start_matches('-'));
    }
    assert_eq!(
        err_with("cache_read_per_million = \"0.015\"", "cache_read_per_million = \"x\""),
        "models[0] (m.small-v1:0).prices[0].cache_read_per_million: \"x\" is not a decimal"
    );
    assert_eq!(
        err_with("base_fee = \"10.00\"", "base_fee = 10.0"),
        "plans.marked.base_fee: 10 is a TOML float; write it as a quoted string, \"10\", so it is read exactly"
    );
    assert_eq!(
        err_with("input_per_million = \"0.10\"", "input_per_million = \"-1\""),
        "rate_cards.gold.models[0] (m.small-v1:0).prices[0].input_per_million: \"-1\" is negative"
    );
}

#[test]
fn markup_rules() {
    assert_eq!(
        err_with("markup = \"0.25\"", "markup = \"-1.5\""),
        "plans.marked.markup: \"-1.5\" is below -1 (a markup of -1 already makes every price zero)"
    );
    assert_eq!(
        err_with("markup = \"0.25\"", "markup = 0.25"),
        "plans.marked.markup: 0.25 is a TOML float; write it as a quoted string, \"0.25\", so it is read exactly"
    );
    assert_eq!(
        err_with("rate_card = \"gold\"", "rate_card = \"gold\"\nmarkup = \"0.1\""),
        "plans.card: markup and rate_card are both set; a plan uses one or the other"
    );
    assert_eq!(
        err_with("rate_card = \"gold\"", "rate_card = \"platinum\""),
        "plans.card: rate_card \"platinum\" is not defined"
    );
    let big = "79228162514264337593543950335";
    assert_eq!(
        err_with("input_per_million = \"1\"", &format!("input_per_million = \"{big}\"")),
        format!(
            "plans.marked.markup: applying markup 0.25 to models[1] (m.other).prices[0].input_per_million ({big}) overflows exact decimal arithmetic"
        )
    );
}

#[test]
fn instants_rules() {
    let at = "models[0] (m.small-v1:0).prices[1].effective_from";
    let change = "effective_from = \"2026-10-15T12:00:00Z\"";
    assert_eq!(
        err_with(change, "effective_from = \"2026-10-15T12:30:00Z\""),
        format!(
            "{at}: \"2026-10-15T12:30:00Z\" is not on a whole UTC hour (usage is aggregated by hour, so a price can only change at the start of an hour)"
        )
    );
    assert_eq!(
        err_with(change, "effective_from = \"2026-10-15T12:00:00+05:30\""),
        format!(
            "{at}: \"2026-10-15T12:00:00+05:30\" is not on a whole UTC hour (usage is aggregated by hour, so a price can only change at the start of an hour)"
        )
    );
    for bad in ["2026-13-01", "15/10/2026", "2026-10-15T12:00:00", "", "2026-10-15 12"] {
        assert_eq!(
            err_with(change, &format!("effective_from = {bad:?}")),
            format!(
                "{at}: {bad:?} is not a date (YYYY-MM-DD) or an RFC 3339 instant with an offset (YYYY-MM-DDTHH:00:00Z)"
            )
        );
    }
    assert_eq!(
        err_with(change, "effective_from = 20261015"),
        format!("{at}: expected a quoted date such as \"2026-10-01\", found a TOML integer")
    );
    // Offsets convert to UTC; native TOML dates are accepted.
    let book = PriceBook::from_toml_str(
        &SMALL.replace(change, "effective_from = \"2026-10-15T14:00:00+02:00\""),
    )
    .unwrap();
    assert_eq!(
        book.resolve("m.small").unwrap().entries()[1].effective_from,
        t("2026-10-15T12:00:00Z")
    );
    let book =
        PriceBook::from_toml_str(&SMALL.replace(change, "effective_from = 2026-10-15T12:00:00Z"))
            .unwrap();
    assert_eq!(
        book.resolve("m.small").unwrap().entries()[1].effective_from,
        t("2026-10-15T12:00:00Z")
    );
    let book = PriceBook::from_toml_str(
        &SMALL.replace("effective_from = \"2026-10-03\"", "effective_from = 2026-10-03"),
    )
    .unwrap();
    assert_eq!(book.resolve("m.small").unwrap().entries()[0].effective_from, t("2026-10-03"));

    assert_eq!(
        err_with(change, "effective_from = \"2026-10-03\""),
        format!(
            "{at}: 2026-10-03 is not after models[0] (m.small-v1:0).prices[0].effective_from 2026-10-03; list prices in increasing order of effective_from"
        )
    );
    assert_eq!(
        err_with(change, "effective_from = \"2026-10-01T06:00:00Z\""),
        format!(
            "{at}: 2026-10-01T06:00:00Z is not after models[0] (m.small-v1:0).prices[0].effective_from 2026-10-03; list prices in increasing order of effective_from"
        )
    );
}

#[test]
fn ids_and_names() {
    assert_eq!(
        err_with("id = \"m.other\"", "id = \"m other\""),
        "models[1].id: invalid model_id \"m other\": contains a character that is not allowed"
    );
    assert_eq!(
        err_with("aliases = [\"m.small\"]", "aliases = [\"\"]"),
        "models[0] (m.small-v1:0).aliases[0]: invalid model_id \"\": is empty"
    );
    assert_eq!(
        err_with("id = \"m.other\"", "id = \"m.small\""),
        "models[1] (m.small).id: \"m.small\" is already declared by models[0] (m.small-v1:0)"
    );
    assert_eq!(
        err_with("id = \"m.other\"", "id = \"m.other\"\naliases = [\"m.x\", \"m.small-v1:0\"]"),
        "models[1] (m.other).aliases[1]: \"m.small-v1:0\" is already declared by models[0] (m.small-v1:0)"
    );
    assert_eq!(
        err_with("aliases = [\"m.small\"]", "aliases = [\"m.small\", \"m.small\"]"),
        "models[0] (m.small-v1:0).aliases[1]: \"m.small\" is already declared by models[0] (m.small-v1:0)"
    );
    assert_eq!(
        err_with("[plans.list]", "[plans.\"gold tier\"]"),
        "plans.\"gold tier\": invalid tier \"gold tier\": contains a character that is not allowed"
    );
    let text =
        SMALL.replace("rate_cards.gold", "rate_cards.\"g c\"").replace("\"gold\"", "\"g c\"");
    assert_eq!(
        PriceBook::from_toml_str(&text).unwrap_err().to_string(),
        "rate_cards.\"g c\": the name \"g c\" must be 1 to 64 characters from A-Z a-z 0-9 - _"
    );
    // The same id may appear in the list and in a rate card.
    assert!(small().rate_card("gold").is_some_and(|m| m[0].id().as_str() == "m.small-v1:0"));
}

#[test]
fn book_level_rules() {
    assert_eq!(
        err_with("currency = \"USD\"", "currency = \"EUR\""),
        "currency: \"EUR\" is not supported; the only currency is \"USD\""
    );
    assert_eq!(
        err_with("rate_card = \"gold\"", "rate_card = \"gold\"\ncurrency = \"EUR\""),
        "plans.card.currency: \"EUR\" is not supported; the only currency is \"USD\""
    );
    assert_eq!(err_with("version = \"test-1\"", "version = \"\""), "version: \"\" is empty");
    assert_eq!(
        err_with("version = \"test-1\"", "version = \"1+2\""),
        "version: \"1+2\" must be printable ASCII without spaces or '+' ('+' separates the file digest)"
    );
    assert_eq!(
        err_with("rate_card = \"gold\"", "rate_card = \"gold\"\nrequests_per_day = 0"),
        "plans.card.requests_per_day: must be at least 1 (leave it out for no limit)"
    );
    assert_eq!(
        err_with("rate_card = \"gold\"", "rate_card = \"gold\"\nusage_source = \"spans\""),
        "plans.card.usage_source: \"spans\" is not a usage source (logs or chat_spans)"
    );
}

#[test]
fn a_plan_names_its_usage_source_or_bills_the_logs() {
    use super::UsageSource;
    use agentmeter_schemas::Tier;
    let text =
        SMALL.replacen("markup = \"0.25\"", "markup = \"0.25\"\nusage_source = \"chat_spans\"", 1);
    let book = PriceBook::from_toml_str(&text).unwrap();
    let source = |tier: &str| book.plan(&Tier::new(tier).unwrap()).unwrap().usage_source;
    assert_eq!(source("marked"), UsageSource::ChatSpans);
    assert_eq!(source("card"), UsageSource::Logs);
    let explicit =
        SMALL.replacen("markup = \"0.25\"", "markup = \"0.25\"\nusage_source = \"logs\"", 1);
    let book = PriceBook::from_toml_str(&explicit).unwrap();
    assert_eq!(book.plan(&Tier::new("marked").unwrap()).unwrap().usage_source, UsageSource::Logs);
}

#[test]
fn a_model_needs_prices() {
    let text = format!("{SMALL}\n[[models]]\nid = \"m.bare\"\n");
    assert_eq!(
        PriceBook::from_toml_str(&text).unwrap_err().to_string(),
        "models[2] (m.bare).prices: a model needs at least one [[...prices]] entry"
    );
}

#[test]
fn toml_errors_keep_line_and_column() {
    let e = err_with("base_fee = \"10.00\"", "base_fee = \"10.00\"\nbase_fees = \"1\"");
    assert!(e.starts_with("TOML parse error at line 31, column 1"), "{e}");
    assert!(e.contains("unknown field `base_fees`"), "{e}");
    let e = err_with("included_usage = \"1.00\"\n", "");
    assert!(e.contains("missing field `included_usage`"), "{e}");
    let e = err_with("version = \"test-1\"", "version = \"test-1");
    assert!(e.starts_with("TOML parse error at line 2, column"), "{e}");
    let e = err_with("version = \"test-1\"", "version = 2026-10-01");
    assert!(e.contains("line 2") && e.contains("expected a string"), "{e}");
    let e = err_with("[[models]]\nid = \"m.other\"", "[[models]]\nid = \"m.other\"\nprice = []");
    assert!(e.contains("unknown field `price`"), "{e}");
}
