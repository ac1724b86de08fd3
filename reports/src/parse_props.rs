//! Property tests of every file and document the reports read (Cost Explorer responses, the
//! price book, LiteLLM's price list, inference profiles, the flags policy and state): any
//! text, and the real examples with bytes changed or cut, gives a value or an error, never a
//! panic, and the same answer twice.

use chrono::NaiveDate;
use proptest::prelude::*;

use crate::costs::{CostQuery, parse_file};
use crate::flags::{FlagState, Policy};
use crate::prices::{ImportOptions, InferenceProfiles, PriceBook, import_litellm};

const PRICES: &str = include_str!("../../examples/prices.toml");
const POLICY: &str = include_str!("../../examples/policy.toml");
const LITELLM: &str = r#"{"sample_spec": {"max_tokens": 1}, "bedrock/us.anthropic.claude-haiku-4-5-20251001-v1:0": {"input_cost_per_token": 1e-06, "output_cost_per_token": 5e-06, "litellm_provider": "bedrock", "mode": "chat"}}"#;
const PROFILES: &str = r#"{"profiles": [{"arn": "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc", "model_id": "us.anthropic.claude-haiku-4-5-20251001-v1:0", "tags": {"tenant": "clinic-a"}}]}"#;

/// `text` with a run of bytes replaced and then cut, kept valid UTF-8.
fn mutate(text: &'static str) -> impl Strategy<Value = String> {
    (any::<prop::sample::Index>(), 0..16usize, "[ -~\n]{0,12}", any::<prop::sample::Index>())
        .prop_map(move |(at, len, with, cut)| {
            let b = text.as_bytes();
            let at = at.index(b.len());
            let end = (at + len).min(b.len());
            let mut out = b[..at].to_vec();
            out.extend_from_slice(with.as_bytes());
            out.extend_from_slice(&b[end..]);
            out.truncate(cut.index(out.len() + 1).max(out.len() / 2));
            String::from_utf8_lossy(&out).into_owned()
        })
}

fn query() -> CostQuery {
    CostQuery::month(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap())
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cost_explorer_documents(text in prop_oneof![
        mutate(crate::costs::tests::PAGE1),
        "[{}\\[\\]\":,0-9a-zA-Z. -]{0,200}",
    ]) {
        let a = parse_file(&text, &query()).map_err(|e| e.to_string());
        let b = parse_file(&text, &query()).map_err(|e| e.to_string());
        prop_assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn price_books(text in prop_oneof![mutate(PRICES), "[ -~\n]{0,300}"]) {
        let a = PriceBook::from_toml_str(&text).map_err(|e| e.to_string());
        if let Err(e) = &a {
            prop_assert!(!e.is_empty());
        }
        prop_assert_eq!(a.is_ok(), PriceBook::from_toml_str(&text).is_ok());
    }

    #[test]
    fn policies(text in prop_oneof![mutate(POLICY), "[ -~\n]{0,300}"]) {
        let a = Policy::from_toml_str(&text).map_err(|e| e.to_string());
        if let Err(e) = &a {
            prop_assert!(!e.is_empty());
        }
    }

    #[test]
    fn litellm_lists_profiles_and_flag_states(
        litellm in prop_oneof![mutate(LITELLM), "[{}\":,0-9a-z_. -]{0,200}"],
        profiles in prop_oneof![mutate(PROFILES), "[{}\\[\\]\":,0-9a-z_. -]{0,200}"],
        state in "[{}\\[\\]\":,0-9a-z_. -]{0,200}",
    ) {
        let opts = ImportOptions::new(NaiveDate::from_ymd_opt(2026, 10, 1).unwrap());
        let _ = import_litellm(&litellm, &opts);
        let _ = InferenceProfiles::from_json_str(&profiles);
        let _ = FlagState::from_json(state.as_bytes(), chrono::Utc::now());
    }
}
