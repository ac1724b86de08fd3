//! Tests of the LiteLLM import, on a hand-made fixture shaped like LiteLLM's
//! `model_prices_and_context_window.json` (FORMATS.md section 6.4).

use chrono::{DateTime, NaiveDate, Utc};
use rust_decimal_macros::dec;

use super::litellm::per_million;
use super::*;

const FIXTURE: &str = r#"{
  "sample_spec": {
    "litellm_provider": "one of https://docs.litellm.ai/docs/providers",
    "mode": "one of: chat, embedding, completion, image_generation, audio_transcription",
    "input_cost_per_token": 0.0,
    "output_cost_per_token": 0.0
  },
  "mistral.ministral-3-8b-instruct": {
    "litellm_provider": "bedrock_converse",
    "mode": "chat",
    "input_cost_per_token": 1.5e-07,
    "output_cost_per_token": 1.5e-07,
    "input_cost_per_token_batches": 7.5e-08,
    "output_cost_per_token_batches": 7.5e-08,
    "max_tokens": 128000
  },
  "openai.gpt-oss-120b-1:0": {
    "litellm_provider": "bedrock_converse",
    "mode": "chat",
    "input_cost_per_token": 1.5e-07,
    "output_cost_per_token": 6e-07,
    "input_cost_per_token_priority": 2.625e-07,
    "output_cost_per_token_priority": 1.05e-06,
    "input_cost_per_token_flex": 7.5e-08,
    "supports_reasoning": true
  },
  "us.anthropic.claude-haiku-4-5-20251001-v1:0": {
    "litellm_provider": "bedrock_converse",
    "mode": "chat",
    "input_cost_per_token": 1.1e-06,
    "output_cost_per_token": 5.5e-06,
    "cache_read_input_token_cost": 1.1e-07,
    "cache_creation_input_token_cost": 1.375e-06,
    "cache_creation_input_token_cost_above_1hr": 2.2e-06,
    "source": "https://aws.amazon.com/bedrock/pricing/"
  },
  "us.anthropic.claude-sonnet-4-5-20250929-v1:0": {
    "litellm_provider": "bedrock_converse",
    "mode": "chat",
    "input_cost_per_token": 3.3e-06,
    "output_cost_per_token": 1.65e-05,
    "cache_read_input_token_cost": 3.3e-07,
    "cache_creation_input_token_cost": 4.125e-06,
    "input_cost_per_token_above_200k_tokens": 6.6e-06,
    "output_cost_per_token_above_200k_tokens": 2.475e-05,
    "cache_read_input_token_cost_above_200k_tokens": 6.6e-07
  },
  "anthropic.claude-haiku-4-5-20251001-v1:0": {
    "litellm_provider": "bedrock_converse",
    "mode": "chat",
    "input_cost_per_token": 0.000001,
    "output_cost_per_token": 0.000005,
    "cache_read_input_token_cost": 1e-7,
    "cache_creation_input_token_cost": 1.25E-06
  },
  "amazon.nova-micro-v1:0": {
    "litellm_provider": "bedrock_converse",
    "mode": "chat",
    "input_cost_per_token": 3.5e-08,
    "output_cost_per_token": 1.4e-07,
    "cache_read_input_token_cost": 8.75e-09
  },
  "meta.llama3-8b-instruct-v1:0": {
    "litellm_provider": "bedrock",
    "input_cost_per_token": 3e-07,
    "output_cost_per_token": 6e-07
  },
  "gpt-4o": {
    "litellm_provider": "openai",
    "mode": "chat",
    "input_cost_per_token": 2.5e-06,
    "output_cost_per_token": 1e-05
  },
  "bedrock/us-east-1/anthropic.claude-haiku-4-5-20251001-v1:0": {
    "litellm_provider": "bedrock",
    "mode": "chat",
    "input_cost_per_token": 1.1e-06,
    "output_cost_per_token": 5.5e-06
  },
  "bedrock_mantle/openai.gpt-oss-120b": {
    "litellm_provider": "bedrock_mantle",
    "mode": "chat",
    "input_cost_per_token": 1.5e-07,
    "output_cost_per_token": 6e-07
  },
  "amazon.titan-embed-text-v2:0": {
    "litellm_provider": "bedrock",
    "mode": "embedding",
    "input_cost_per_token": 2e-08,
    "output_cost_per_token": 0.0
  },
  "amazon.image-only-v1:0": {
    "litellm_provider": "bedrock",
    "mode": "chat",
    "output_cost_per_image": 0.04
  },
  "x.float-artifact-v1:0": {
    "litellm_provider": "bedrock",
    "mode": "chat",
    "input_cost_per_token": 1.1000000000000001e-06,
    "output_cost_per_token": 5e-06
  },
  "x.negative-v1:0": {
    "litellm_provider": "bedrock",
    "mode": "chat",
    "input_cost_per_token": -1e-06,
    "output_cost_per_token": 5e-06
  },
  "x.string-cost-v1:0": {
    "litellm_provider": "bedrock",
    "mode": "chat",
    "input_cost_per_token": "1e-06",
    "output_cost_per_token": 5e-06
  },
  "x.not-an-object": 42
}"#;

fn opts() -> ImportOptions {
    ImportOptions::new(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap())
}

fn at() -> DateTime<Utc> {
    "2026-10-20T00:00:00Z".parse().unwrap()
}

#[test]
fn per_token_costs_become_exact_prices_per_million() {
    for (literal, want) in [
        ("1.5e-07", "0.15"),
        ("3.3e-06", "3.3"),
        ("1.25e-06", "1.25"),
        ("1.25E-06", "1.25"),
        ("1.375e-06", "1.375"),
        ("8.75e-09", "0.00875"),
        ("6e-07", "0.6"),
        ("1.65e-05", "16.5"),
        ("0.00000015", "0.15"),
        ("0.0001", "100"),
        ("2.5e+00", "2500000"),
        ("2.5e2", "250000000"),
        ("0", "0"),
        ("0.0", "0"),
        ("-0.0", "0"),
        ("1.1000000000000001e-06", "1.1000000000000001"),
        ("-1e-06", "-1"),
        ("1e-34", "0.0000000000000000000000000001"),
    ] {
        assert_eq!(per_million(literal).map(|d| d.to_string()), Ok(want.into()), "{literal}");
    }
    for bad in ["\"1e-06\"", "true", "null", "1e", ".5", "5.", "1e-99999", "1e-35", "1e40", "--1"] {
        assert!(per_million(bad).is_err(), "{bad}");
    }
}

#[test]
fn import_keeps_bedrock_chat_entries_and_reports_the_rest() {
    let (text, report) = import_litellm(FIXTURE, &opts()).unwrap();
    assert_eq!(
        report.kept,
        [
            "amazon.nova-micro-v1:0",
            "anthropic.claude-haiku-4-5-20251001-v1:0",
            "meta.llama3-8b-instruct-v1:0",
            "mistral.ministral-3-8b-instruct",
            "openai.gpt-oss-120b-1:0",
            "us.anthropic.claude-haiku-4-5-20251001-v1:0",
            "us.anthropic.claude-sonnet-4-5-20250929-v1:0",
        ]
    );
    let reasons: Vec<(&str, String)> =
        report.skipped.iter().map(|s| (s.key.as_str(), s.reason.to_string())).collect();
    assert_eq!(
        reasons,
        [
            ("amazon.image-only-v1:0", "no input_cost_per_token".to_owned()),
            ("amazon.titan-embed-text-v2:0", "mode \"embedding\" is not chat".into()),
            ("bedrock/us-east-1/anthropic.claude-haiku-4-5-20251001-v1:0", "the key contains '/' (region-pinned)".into()),
            ("bedrock_mantle/openai.gpt-oss-120b", "provider \"bedrock_mantle\" is not imported".into()),
            ("gpt-4o", "provider \"openai\" is not imported".into()),
            ("sample_spec", "provider \"one of https://docs.litellm.ai/docs/providers\" is not imported".into()),
            ("x.float-artifact-v1:0", "input_cost_per_token 1.1000000000000001e-06: has more than 12 decimal places per million tokens".into()),
            ("x.negative-v1:0", "input_cost_per_token -1e-06: is negative".into()),
            ("x.not-an-object", "not an object with string provider and mode".into()),
            ("x.string-cost-v1:0", "input_cost_per_token \"1e-06\": is not a JSON number".into()),
        ]
    );
    assert_eq!(
        report.summary(),
        "kept 7, skipped 10 (malformed: 1, missing cost: 1, not chat: 1, other provider: 3, \
         region-pinned: 1, unusable cost: 3)"
    );
    let ignored: Vec<(&str, usize)> =
        report.ignored_costs.iter().map(|(k, n)| (k.as_str(), *n)).collect();
    assert_eq!(
        ignored,
        // A flex input price without its output price makes no table.
        [("input_cost_per_token_flex", 1)]
    );

    assert!(text.starts_with("# Price book imported from LiteLLM"), "{text}");
    assert!(text.contains("# CHECK BEFORE BILLING"), "{text}");
    assert!(text.contains("\nversion = \"2026-10-01\"\ncurrency = \"USD\"\n"), "{text}");

    let book = PriceBook::from_toml_str(&text).unwrap();
    assert_eq!(book.declared_version(), "2026-10-01");
    assert_eq!(book.models().len(), 7);
    assert_eq!(book.plans().count(), 0);
    let price = |id: &str| book.resolve(id).unwrap().price_at(at()).unwrap().clone();
    let m = price("mistral.ministral-3-8b-instruct");
    assert_eq!((m.input_per_million, m.output_per_million), (dec!(0.15), dec!(0.15)));
    assert_eq!(m.input_per_million.to_string(), "0.15");
    assert_eq!((m.cache_read_per_million, m.cache_write_per_million), (None, None));
    let s = price("us.anthropic.claude-sonnet-4-5-20250929-v1:0");
    assert_eq!(s.input_per_million.to_string(), "3.3");
    assert_eq!(s.output_per_million.to_string(), "16.5");
    assert_eq!(s.cache_read_per_million, Some(dec!(0.33)));
    assert_eq!(s.cache_write_per_million, Some(dec!(4.125)));
    // Long-context prices above 200k, a table of their own; the tiers' tables.
    assert_eq!(s.long_context_above, Some(200_000));
    let long = s.long_context.clone().unwrap();
    assert_eq!(
        (long.input_per_million, long.output_per_million, long.cache_read_per_million),
        (dec!(6.6), dec!(24.75), Some(dec!(0.66)))
    );
    let o = price("openai.gpt-oss-120b-1:0");
    let tiers: Vec<_> = o.service_tiers.keys().copied().collect();
    assert_eq!(tiers, [agentmeter_schemas::ServiceTier::Priority]);
    assert_eq!(
        o.service_tiers[&agentmeter_schemas::ServiceTier::Priority].prices.output_per_million,
        dec!(1.05)
    );
    assert_eq!(
        m.service_tiers[&agentmeter_schemas::ServiceTier::Batch].prices.input_per_million,
        dec!(0.075)
    );
    let u = price("us.anthropic.claude-haiku-4-5-20251001-v1:0");
    assert_eq!(u.cache_write_1h_per_million, Some(dec!(2.2)));
    let h = price("anthropic.claude-haiku-4-5-20251001-v1:0");
    assert_eq!(h.cache_write_per_million.map(|d| d.to_string()), Some("1.25".into()));
    assert_eq!(h.input_per_million.to_string(), "1");
    let n = price("amazon.nova-micro-v1:0");
    assert_eq!(n.cache_read_per_million.map(|d| d.to_string()), Some("0.00875".into()));
    assert_eq!(price("meta.llama3-8b-instruct-v1:0").output_per_million, dec!(0.6));
    // Effective from the option's date: earlier usage is unpriced.
    let m = book.resolve("openai.gpt-oss-120b-1:0").unwrap();
    assert_eq!(
        m.entries()[0].effective_from,
        "2026-10-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap()
    );
    assert_eq!(m.price_at("2026-09-30T23:00:00Z".parse().unwrap()), None);

    // Deterministic.
    assert_eq!(import_litellm(FIXTURE, &opts()).unwrap().0, text);
}

#[test]
fn import_options() {
    let mut o = opts();
    o.keep_region_pinned = true;
    o.effective_from = "2026-10-15T12:00:00Z".parse().unwrap();
    o.version = "litellm-1.109.1".into();
    let (text, report) = import_litellm(FIXTURE, &o).unwrap();
    assert!(report.kept.iter().any(|k| k.starts_with("bedrock/us-east-1/")));
    assert!(text.contains("effective_from = \"2026-10-15T12:00:00Z\""), "{text}");
    let book = PriceBook::from_toml_str(&text).unwrap();
    assert_eq!(book.declared_version(), "litellm-1.109.1");
    assert!(book.resolve("bedrock/us-east-1/anthropic.claude-haiku-4-5-20251001-v1:0").is_some());

    o.providers = vec!["openai".into()];
    let (_, report) = import_litellm(FIXTURE, &o).unwrap();
    assert_eq!(report.kept, ["gpt-4o"]);

    let mut o = opts();
    o.effective_from = "2026-10-15T12:30:00Z".parse().unwrap();
    assert_eq!(
        import_litellm(FIXTURE, &o).unwrap_err().to_string(),
        "import option effective_from: 2026-10-15T12:30:00+00:00 is not on a whole UTC hour"
    );
    let mut o = opts();
    o.version = "a b".into();
    assert!(
        import_litellm(FIXTURE, &o).unwrap_err().to_string().starts_with("import option version:")
    );
}

#[test]
fn import_refuses_what_is_not_a_json_object() {
    let e = import_litellm("[1, 2]", &opts()).unwrap_err();
    assert!(matches!(e, PriceBookError::LiteLlmJson(_)), "{e}");
    let e = import_litellm("{\n  \"a\": {,\n}", &opts()).unwrap_err();
    assert!(e.to_string().contains("line 2"), "{e}");
    // An empty map gives an empty but loadable book.
    let (text, report) = import_litellm("{}", &opts()).unwrap();
    assert_eq!(report.summary(), "kept 0, skipped 0");
    assert!(PriceBook::from_toml_str(&text).unwrap().models().is_empty());
}
