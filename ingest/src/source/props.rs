//! Property tests of every input shape the decoder reads: whatever the bytes (valid records,
//! mutated ones, truncated files, noise), splitting and decoding never panics, gives the same
//! outcomes twice, and accounts for every record.

use agentmeter_schemas::SourceUri;
use proptest::prelude::*;

use super::*;
use crate::gzip::gzip_bytes;

fn decode_file(bytes: &[u8], format: Format) -> Decoded {
    super::tests::run_with(bytes, format, DecodeConfig::default())
}

/// A comparable digest of outcomes (quarantine entries by reason, position and bytes).
fn digest(d: &Decoded) -> Vec<String> {
    d.outcomes
        .iter()
        .map(|o| match o {
            Outcome::Event(e) => format!("event {:?}", e),
            Outcome::Span(s) => format!("span {:?}", s),
            Outcome::Skip(k) => format!("skip {k}"),
            Outcome::Reject(q) => {
                format!("reject {} {:?} {:?} {:?}", q.reason, q.position, q.raw, q.raw_base64)
            }
        })
        .collect()
}

const USAGE: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":812,"output_tokens":97,"total_tokens":909,"timestamp":"2026-10-01T08:00:00Z","event_id":"e1"}"#;

/// A usage line, with a run of its bytes replaced: most mutations break it somewhere.
fn mutated_usage() -> impl Strategy<Value = Vec<u8>> {
    (0..USAGE.len(), 0..12usize, proptest::collection::vec(any::<u8>(), 0..12)).prop_map(
        |(at, cut, with)| {
            let mut b = USAGE.as_bytes().to_vec();
            let end = (at + cut).min(b.len());
            b.splice(at..end, with);
            b.retain(|&c| c != b'\n');
            b
        },
    )
}

/// A line: valid, mutated, JSON-like noise, or raw bytes (never a newline inside).
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(USAGE.as_bytes().to_vec()),
        mutated_usage(),
        "[ -~]{0,80}".prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>().prop_filter("no newline", |b| *b != b'\n'), 0..80),
        (1usize..200).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d)).into_bytes()),
        "2026-10-01 08:00:00,123 INFO [a-z]{1,8}: [ -~]{0,40}".prop_map(String::into_bytes),
    ]
}

fn config() -> ProptestConfig {
    ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() }
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_ndjson_line_is_one_outcome_and_decoding_is_deterministic(
        lines in proptest::collection::vec(line(), 1..40)
    ) {
        let text = lines.join(&b'\n');
        let d = decode_file(&text, Format::Ndjson);
        let records = lines
            .iter()
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
            .count();
        prop_assert_eq!(d.outcomes.len(), records);
        prop_assert_eq!(digest(&d), digest(&decode_file(&text, Format::Ndjson)));
        // A refused line keeps its bytes (as text, else base64), never nothing.
        for o in &d.outcomes {
            if let Outcome::Reject(q) = o {
                prop_assert!(q.raw.is_some() || q.raw_base64.is_some(), "{:?}", q);
            }
        }
    }

    #[test]
    fn any_prefix_of_a_file_in_any_format_decodes_without_panicking(
        lines in proptest::collection::vec(line(), 1..12),
        cut in any::<prop::sample::Index>(),
        gz in any::<bool>(),
    ) {
        let text = lines.join(&b'\n');
        let file = if gz { gzip_bytes(&text) } else { text };
        let prefix = &file[..cut.index(file.len() + 1)];
        for format in [Format::Auto, Format::Ndjson, Format::CwlSubscription, Format::FilterLogEvents, Format::OtlpProto] {
            let d = decode_file(prefix, format);
            prop_assert_eq!(digest(&d), digest(&decode_file(prefix, format)));
        }
    }

    #[test]
    fn subscription_files_mutated_or_cut_decode_without_panicking(
        events in 1usize..20,
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..6),
        cut in any::<prop::sample::Index>(),
    ) {
        let logs: Vec<_> = (0..events)
            .map(|i| serde_json::json!({"id": i.to_string(), "timestamp": 1_790_841_600_000_i64, "message": USAGE.replace("e1", &format!("e{i}"))}))
            .collect();
        let body = serde_json::json!({"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":logs});
        let mut file = gzip_bytes(body.to_string().as_bytes());
        file.extend(gzip_bytes(body.to_string().as_bytes()));
        let intact = decode_file(&file, Format::Auto);
        prop_assert_eq!(intact.outcomes.len(), 2 * events);
        for (at, b) in flips {
            let i = at.index(file.len());
            file[i] = b;
        }
        let file = &file[..cut.index(file.len() + 1)];
        let d = decode_file(file, Format::Auto);
        prop_assert_eq!(digest(&d), digest(&decode_file(file, Format::Auto)));
    }

    #[test]
    fn otlp_bodies_of_any_bytes_are_a_request_or_an_error(
        body in proptest::collection::vec(any::<u8>(), 0..300),
        json in "[{}\\[\\]\":,a-zA-Z0-9 ]{0,200}",
    ) {
        let src = SourceUri::new("http://127.0.0.1/v1/traces");
        let cfg = DecodeConfig::default();
        let _ = crate::otlp::decode_proto(&body, &src, &cfg);
        let _ = crate::otlp::decode_json(json.as_bytes(), &src, &cfg);
        let _ = crate::otlp::decode_json(&body, &src, &cfg);
    }

    #[test]
    fn a_real_trace_request_with_bytes_flipped_decodes_to_spans_refusals_or_an_error(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        use prost::Message as _;
        let mut body = crate::otlp::fixtures::strands_proto().encode_to_vec();
        for (at, b) in flips {
            let i = at.index(body.len());
            body[i] = b;
        }
        let src = SourceUri::new("http://127.0.0.1/v1/traces");
        if let Ok(d) = crate::otlp::decode_proto(&body, &src, &DecodeConfig::default()) {
            prop_assert!(d.outcomes.iter().all(|o| matches!(o, Outcome::Span(_) | Outcome::Reject(_))));
        }
    }
}
