use super::super::parse;
use super::*;
use crate::fields::{Got, Scalar};

/// A usage line as an application logs it.
const LINE: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"dr.lee@clinic-a.example","model_id":"m","input_tokens":812,"output_tokens":97,"total_tokens":909,"service_tier":"flex","event_id":"req-1","ok":true,"n":null}"#;

/// Logger prefixes: Lambda's two text formats, Python's `logging`, and what only looks like them.
const PREFIXES: [&str; 16] = [
    "",
    "INFO:root:",
    "[INFO]\t2026-10-01T00:01:12.633Z\t5baf438b-013d-4143-9dc6-1f6cb0baa2b6\t",
    "2026-10-01T00:01:12.633Z\t5baf438b-013d-4143\tINFO\t",
    "  ",
    "[NOPE]\t2026-10-01T00:01:12.633Z\tx\t",
    "[INFO]\tabcdefgh\t",
    "2026-10-01T\t\t\tX\t",
    "2026-\t\t-\t\t",
    "\t",
    "START RequestId: ",
    "note \u{a0}\u{2028}é ",
    "a\"b",
    "a\\b",
    "a\u{1}b",
    "a\nb",
];

/// What comes after the object in a message.
const TAILS: [&str; 8] = ["", "\n", " \r\n", "\t", " x", "\n\n ", "}", "\u{b}"];

/// `message` of `m` as it lies in a payload (escaped as serde_json escapes it), checked
/// against the message unescaped: its logger prefix stripped and its object read as the
/// decoder reads them.
fn agree(m: &str) -> bool {
    let escaped = serde_json::to_string(m).unwrap();
    let text = format!("{escaped},\"timestamp\":1}}");
    let Some((end, body)) = message::<1>(&text, 0, "clinic_id") else {
        return false;
    };
    assert_eq!(end, escaped.len(), "{m:?}");
    same_as_unescaped(m, &body, 1);
    true
}

/// `body`, read in place `depth` strings deep, is what the logger rules and the flat reader
/// make of `m`, the message unescaped; its own message's object too, if read in place.
fn same_as_unescaped(m: &str, body: &MessageBody<'_>, depth: usize) {
    let Body::Json(json) = message_body(m) else {
        panic!("{m:?} read in place, though no JSON is found in it unescaped");
    };
    let unescaped = parse(json, "clinic_id", true).expect("read in place, so flat unescaped");
    let mut object = body.text.to_owned();
    for _ in 0..depth {
        object = serde_json::from_str(&format!("\"{object}\"")).unwrap();
    }
    assert!(json.starts_with(&object), "{m:?}: {object:?}");
    let Some(inner) = &body.inner else {
        assert_eq!(body.fields, unescaped, "{m:?}");
        return;
    };
    // A record without an event: all but its message, then its message's object.
    assert!(!unescaped.has(Key::Event), "{m:?}");
    let Got::One(_, Scalar::Str(message)) = unescaped.get(Key::Message) else {
        panic!("{m:?}: one message");
    };
    let others = unescaped.entries.iter().filter(|e| e.0 != Key::Message);
    assert!(body.fields.entries.iter().eq(others), "{m:?}");
    assert_eq!(body.fields.markers, unescaped.markers);
    same_as_unescaped(message, inner, depth + 1);
}

/// A Lambda JSON log record around `message`.
fn record(message: &str) -> String {
    serde_json::json!({"timestamp": "2026-10-01T00:00:27.144Z", "level": "INFO",
        "message": message})
    .to_string()
}

#[test]
fn usage_lines_after_every_logger_prefix_read_in_place() {
    for prefix in &PREFIXES[..5] {
        for tail in &TAILS[..3] {
            let m = format!("{prefix}{LINE}{tail}");
            assert!(agree(&m), "{m:?} read in place");
        }
    }
    // The Lambda JSON log format: the usage line escaped twice, after a logger's prefix or not.
    for prefix in &PREFIXES[..5] {
        for tail in &TAILS[..3] {
            let m = record(&format!("{prefix}{LINE}{tail}"));
            assert!(agree(&m), "{m:?} read in place");
        }
    }
    // A record's message of text without an escape is text to it; one with escapes that is
    // not read in place leaves the record to be unescaped.
    assert!(agree(r#"{"level":"INFO","message":"Tool lookup finished in 231 ms"}"#));
    assert!(!agree(&record(&LINE.replace("812", "[812]"))));
    // A record with an event of its own is read whole, its message unescaped.
    let own = serde_json::json!({"event": "inference_usage", "message": LINE}).to_string();
    assert!(!agree(&own));
}

#[test]
fn what_it_does_not_take_is_unescaped_first() {
    let line = |from: &str, to: &str| LINE.replacen(from, to, 1);
    for m in [
        line("clinic-a", "clinic\\a"),
        line("clinic-a", "clinic\"a"),
        line("clinic-a", "clinic\u{1}a"),
        line("clinic-a", "clinic\u{e9}"),
        line(r#""tier""#, "\n\"tier\""),
        line(r#""tier""#, "\t\"tier\""),
        line("812", "[812]"),
        line("812", r#"{"a":1}"#),
        line("812", "8.12"),
        line("812", "01"),
        format!("{LINE} trailing"),
        format!("{LINE}\t"),
        format!("{}{LINE}", "x".repeat(PREFIX_BYTES)),
        "Retrying model call after ThrottlingException".to_owned(),
        "{".to_owned(),
        String::new(),
    ] {
        let taken = agree(&m);
        // Only text that is not ASCII, and a number read as written, can be read in place.
        let odd_but_flat = [line("clinic-a", "clinic\u{e9}"), line("812", "8.12")];
        assert_eq!(taken, odd_but_flat.contains(&m), "{m:?}");
    }
}

#[test]
fn a_prefix_is_taken_only_where_its_rules_are_decided_before_the_brace() {
    for (n, prefix) in PREFIXES.iter().enumerate() {
        let m = format!("{prefix}{LINE}");
        let taken = agree(&m);
        // The tabs of a short prefix, and a quote, backslash or control character in any,
        // leave the message to be unescaped; a platform line has no JSON to read.
        assert_eq!(taken, !matches!(n, 8 | 9 | 10 | 12 | 13 | 14 | 15), "{m:?}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]

    /// Messages built from prefixes, members that JSON allows and does not, and tails, as
    /// they are or in a Lambda JSON log record: wherever one is read in place, it reads as
    /// the message unescaped reads.
    #[test]
    fn every_message_it_takes_reads_as_the_unescaped_message_reads(
        prefix in 0usize..PREFIXES.len(),
        members in proptest::collection::vec((0usize..10, 0usize..16, 0usize..4), 0..6),
        tail in 0usize..TAILS.len(),
        lambda_json in proptest::bool::ANY,
    ) {
        const KEYS: [&str; 10] = [
            "event", "tier", "clinic_id", "input_tokens", "event_id", "message",
            "service_tier", "cacheDetails", "timestamp", "t\\u0069er",
        ];
        const VALUES: [&str; 16] = [
            "\"inference_usage\"", "\"\"", "12", "-7", "0", "1.5", "true", "null",
            "\"a\\\"b\"", "\"a\\nb\"", "{\"type\":\"flex\"}", "[1]", "\"caf\u{e9}\"", "01",
            "\"{\\\"event\\\":1}\"", "123456789012345678901",
        ];
        const SPACES: [&str; 4] = ["", " ", "\n", "\t "];
        let mut m = String::from(PREFIXES[prefix]);
        m.push('{');
        for (n, (k, v, s)) in members.iter().enumerate() {
            if n > 0 {
                m.push(',');
            }
            m.push_str(SPACES[*s]);
            m.push_str(&format!("\"{}\":{}", KEYS[*k], VALUES[*v]));
        }
        m.push('}');
        m.push_str(TAILS[tail]);
        agree(&if lambda_json { record(&m) } else { m });
    }
}
