//! Property tests of the decoder's records one by one: usage lines with fields changed to odd
//! values (huge numbers, odd Unicode, nesting, wrong types), subscription payloads of such
//! messages, whole or cut, and CloudWatch API events of any text. Whatever the record, it has
//! exactly one outcome, the counts balance as the run summary checks them, a refusal keeps the
//! record's exact bytes with a reason, and a valid record decodes the same way twice.

use std::collections::BTreeSet;

use agentmeter_schemas::{Accounting, Position, QuarantineEntry, RawFormat, SourceUri};
use proptest::prelude::*;

use super::*;
use crate::gzip::gzip_bytes;
use crate::source::Format;
use crate::source::fuzzing::{check_payload_passes, decode_source};

/// A valid usage record, field by field (values as JSON text).
const FIELDS: [(&str, &str); 10] = [
    ("event", r#""inference_usage""#),
    ("tier", r#""basic""#),
    ("clinic_id", r#""clinic-a""#),
    ("user_id", r#""dr.lee@clinic-a.example""#),
    ("model_id", r#""mistral.ministral-3-8b-instruct""#),
    ("input_tokens", "812"),
    ("output_tokens", "97"),
    ("total_tokens", "909"),
    ("timestamp", r#""2026-10-01T08:00:00Z""#),
    ("event_id", r#""req-1""#),
];

fn config() -> ProptestConfig {
    // Failures print their input; no regression files beside the sources.
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

/// JSON text of an odd value: numbers past every integer type, odd Unicode raw and escaped,
/// nesting, wrong types.
fn odd_value() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("1e400".to_owned()),
        Just("-1e400".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("-9223372036854775809".to_owned()),
        Just("123456789012345678901234567890".to_owned()),
        Just("1.5".to_owned()),
        Just("-0".to_owned()),
        Just("null".to_owned()),
        Just("true".to_owned()),
        Just(r#""\ud800""#.to_owned()),
        Just(r#""\u0000""#.to_owned()),
        Just("\"\u{202e}clinic-a\"".to_owned()),
        Just("\"cl\u{200b}inic\u{301}-a\"".to_owned()),
        Just("\"\u{1f4a5}\u{fffd}\"".to_owned()),
        any::<i64>().prop_map(|n| n.to_string()),
        any::<u64>().prop_map(|n| format!("\"{n}\"")),
        any::<f64>().prop_map(|f| serde_json::json!(f).to_string()),
        "\\PC{0,24}".prop_map(|s| serde_json::json!(s).to_string()),
        (1usize..150).prop_map(|d| format!("{}{}", "[".repeat(d), "]".repeat(d))),
        (1usize..150).prop_map(|d| format!("{}1{}", "{\"a\":".repeat(d), "}".repeat(d))),
        (0usize..3000).prop_map(|n| format!("\"{}\"", "x".repeat(n))),
    ]
}

/// A usage record with fields changed, removed or duplicated, as one line of JSON text.
fn near_valid() -> impl Strategy<Value = String> {
    let edits = proptest::collection::vec((0..FIELDS.len(), 0..4u8, odd_value()), 0..4);
    edits.prop_map(|edits| {
        let mut fields: Vec<(String, String)> =
            FIELDS.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect();
        for (i, how, value) in edits {
            let i = i % fields.len().max(1);
            match how {
                0 | 1 if !fields.is_empty() => fields[i].1 = value,
                2 if !fields.is_empty() => {
                    fields.remove(i);
                }
                _ => {
                    let key = FIELDS[i].0.to_owned();
                    fields.push((key, value));
                }
            }
        }
        let body: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
        format!("{{{}}}", body.join(","))
    })
}

/// One record's text: valid, near-valid, cut, or noise; never a newline inside.
fn record() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        near_valid().prop_map(String::into_bytes),
        (near_valid(), any::<prop::sample::Index>()).prop_map(|(s, cut)| {
            let b = s.into_bytes();
            b[..cut.index(b.len() + 1)].to_vec()
        }),
        odd_value().prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..64),
        "2026-10-01 08:00:00,123 INFO [a-z]{1,8}: \\PC{0,40}".prop_map(String::into_bytes),
    ]
    .prop_map(|mut b| {
        b.retain(|&c| c != b'\n');
        b
    })
}

/// Counts outcomes as the router does, against the records read from the input.
fn tally(records_read: u64, outcomes: &[Outcome]) -> Accounting {
    let mut acc = Accounting { records_read, ..Accounting::default() };
    let mut ids = BTreeSet::new();
    for o in outcomes {
        match o {
            Outcome::Event(e) if ids.insert(e.event_id.clone()) => acc.events_written += 1,
            Outcome::Event(_) => acc.duplicates += 1,
            Outcome::Span(_) => acc.spans_written += 1,
            Outcome::Skip(k) => *acc.skipped.entry(*k).or_default() += 1,
            Outcome::Reject(q) => *acc.quarantined.entry(q.reason).or_default() += 1,
        }
    }
    acc
}

/// A refusal keeps `bytes` exactly, in `format`, with a reason and a detail.
fn keeps(q: &QuarantineEntry, bytes: &[u8], format: RawFormat) -> Result<(), TestCaseError> {
    prop_assert!(!q.detail.is_empty(), "{:?}", q);
    prop_assert_eq!(q.format, format);
    prop_assert!(!q.raw_truncated && !q.raw_withheld, "{:?}", q);
    let kept = q.raw_bytes().map_err(TestCaseError::fail)?;
    prop_assert_eq!(kept.as_slice(), bytes, "{:?}", q);
    Ok(())
}

fn src() -> SourceUri {
    SourceUri::new("file:///in/usage.ndjson")
}

fn line(bytes: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    Decoder::default().line(
        bytes,
        &src(),
        Position { line: Some(3), ..Default::default() },
        &mut out,
    );
    out
}

/// Logger prefixes of a message: none, Python's `logging`, Lambda's two text formats, one
/// with too few fields and a platform line.
const LOGGERS: [&str; 6] = [
    "",
    "INFO:root:",
    "[INFO]\t2026-10-01T00:01:12.633Z\t5baf438b-013d-4143-9dc6-1f6cb0baa2b6\t",
    "2026-10-01T00:01:12.633Z\t5baf438b\tERROR\t",
    "[INFO]\tabcdefgh\t",
    "END RequestId: ",
];

/// What a logger may write after a message.
const TAILS: [&str; 4] = ["", "\n", " \r\n", "\t"];

/// A subscription payload around log events whose messages are `messages`, with the exact
/// text of each log event.
fn payload(messages: &[Vec<u8>]) -> (String, Vec<String>) {
    let events: Vec<String> = messages
        .iter()
        .enumerate()
        .map(|(i, m)| {
            let message = serde_json::json!(String::from_utf8_lossy(m)).to_string();
            format!(r#"{{"id":"{i}","timestamp":1790841600000,"message":{message}}}"#)
        })
        .collect();
    let body = format!(
        r#"{{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":[{}]}}"#,
        events.join(",")
    );
    (body, events)
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn every_line_is_one_outcome_and_a_refusal_keeps_its_bytes(
        records in proptest::collection::vec(record(), 1..24)
    ) {
        let mut outcomes = Vec::new();
        let mut read = 0;
        for r in &records {
            let d = line(r);
            let stripped = r.strip_suffix(b"\r").unwrap_or(r);
            if stripped.iter().all(u8::is_ascii_whitespace) {
                prop_assert!(d.outcomes.is_empty(), "{:?}", d.outcomes);
                continue;
            }
            read += 1;
            prop_assert_eq!(d.outcomes.len(), 1, "{:?}: {:?}", String::from_utf8_lossy(r), d.outcomes);
            prop_assert_eq!(&d.outcomes, &line(r).outcomes);
            if let Outcome::Reject(q) = &d.outcomes[0] {
                keeps(q, stripped, RawFormat::NdjsonLine)?;
            }
            outcomes.extend(d.outcomes);
        }
        let acc = tally(read, &outcomes);
        prop_assert!(acc.balances(), "{:?}", acc);
    }

    #[test]
    fn valid_records_with_any_ids_and_counts_are_events_and_decode_the_same_twice(
        tenant in "[a-z][a-z0-9-]{0,30}[a-z0-9]",
        user in "[A-Za-z0-9][A-Za-z0-9._@+-]{0,39}",
        tokens in (0i64..1_000_000, 0i64..1_000_000),
        ms in 1_600_000_000_000i64..1_900_000_000_000,
        crlf in any::<bool>(),
    ) {
        let (input, output) = tokens;
        let text = serde_json::json!({
            "event": "inference_usage", "tier": "basic", "clinic_id": tenant, "user_id": user,
            "model_id": "m", "input_tokens": input, "output_tokens": output,
            "total_tokens": input + output,
            "timestamp": chrono::DateTime::from_timestamp_millis(ms).unwrap()
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        })
        .to_string();
        let bytes = if crlf { format!("{text}\r") } else { text };
        let d = line(bytes.as_bytes());
        prop_assert_eq!(d.outcomes.len(), 1);
        let Outcome::Event(e) = &d.outcomes[0] else {
            return Err(TestCaseError::fail(format!("{bytes}: {:?}", d.outcomes)));
        };
        prop_assert_eq!(e.tenant_id.as_str(), tenant.as_str());
        prop_assert_eq!((e.tokens.input, e.tokens.output), (input, output));
        prop_assert_eq!(e.event_time_ms, ms);
        prop_assert_eq!(&d.outcomes, &line(bytes.as_bytes()).outcomes);
    }

    #[test]
    fn a_subscription_record_is_one_outcome_per_log_event(
        messages in proptest::collection::vec(record(), 0..16),
        members in 1usize..4,
    ) {
        let (body, events) = payload(&messages);
        let mut data = Vec::new();
        for _ in 0..members {
            data.extend(gzip_bytes(body.as_bytes()));
        }
        let mut d = Decoded::default();
        Decoder::default().stream_record(&data, &SourceUri::new("kinesis://s/0"), &mut d);
        prop_assert_eq!(d.outcomes.len(), members * events.len());
        for (o, ev) in d.outcomes.iter().zip(events.iter().cycle()) {
            if let Outcome::Reject(q) = o {
                keeps(q, ev.as_bytes(), RawFormat::CwlLogEvent)?;
            }
        }
        let acc = tally((members * events.len()) as u64, &d.outcomes);
        prop_assert!(acc.balances(), "{:?}", acc);
        // The same members as a payload file.
        let file = decode_source(&Decoder::default(), &data, Format::CwlSubscription, 64).unwrap();
        prop_assert_eq!(file.outcomes.len(), d.outcomes.len());
    }

    #[test]
    fn a_cut_subscription_record_keeps_the_whole_members_and_refuses_the_cut_one(
        messages in proptest::collection::vec(record(), 1..8),
        members in 1usize..4,
        cut in any::<prop::sample::Index>(),
    ) {
        let (body, events) = payload(&messages);
        let member = gzip_bytes(body.as_bytes());
        let data: Vec<u8> = member.iter().copied().cycle().take(members * member.len()).collect();
        let at = cut.index(data.len() + 1);
        let whole = at / member.len();
        let expected = match at {
            0 => 0,
            1 => 1,
            _ => whole * events.len() + usize::from(at % member.len() != 0),
        };
        let mut d = Decoded::default();
        Decoder::default().stream_record(&data[..at], &SourceUri::new("kinesis://s/0"), &mut d);
        prop_assert_eq!(d.outcomes.len(), expected, "cut at {} of {}: {:?}", at, data.len(), d.outcomes);
        if at % member.len() != 0 && at > 1 {
            let Some(Outcome::Reject(q)) = d.outcomes.last() else {
                return Err(TestCaseError::fail(format!("{:?}", d.outcomes.last())));
            };
            keeps(q, &data[whole * member.len()..at], RawFormat::CwlPayloadGzip)?;
        }
        let file = decode_source(&Decoder::default(), &data[..at], Format::CwlSubscription, 64).unwrap();
        let file_expected = if at == 1 { 1 } else { expected };
        prop_assert_eq!(file.outcomes.len(), file_expected, "file cut at {}: {:?}", at, file.outcomes);
    }

    /// A data payload is read in one pass where it can be, and in two (its depth, then
    /// serde_json) where it cannot: whatever the payload, whole, damaged or reordered, both
    /// readings give the same outcomes, and the batch the one pass gave up on holds nothing.
    #[test]
    fn a_payload_read_in_one_pass_decodes_as_two_passes_decode_it(
        messages in proptest::collection::vec(record(), 0..6),
        logger in (0usize..LOGGERS.len(), 0usize..TAILS.len(), proptest::bool::ANY),
        shape in 0usize..11,
        at in 0usize..4000,
        edit in 0u8..4,
        byte in proptest::sample::select(b"\"\\{}[],:0-9.eE tn\x01a".to_vec()),
    ) {
        // As a logger writes them: most messages are then read where they lie in the payload.
        let (prefix, tail) = (LOGGERS[logger.0].as_bytes(), TAILS[logger.1].as_bytes());
        let messages: Vec<Vec<u8>> = messages
            .iter()
            .map(|m| {
                let m = [prefix, m.as_slice(), tail].concat();
                if !logger.2 {
                    return m;
                }
                // In the Lambda JSON log format.
                let message = String::from_utf8_lossy(&m);
                serde_json::json!({"timestamp": "2026-10-01T00:00:27.144Z", "level": "INFO",
                    "message": message})
                .to_string()
                .into_bytes()
            })
            .collect();
        let (body, _) = payload(&messages);
        let body = match shape {
            0 => body,
            1 => body.replace(r#""messageType":"DATA_MESSAGE","#, "")
                .replace(r#""logEvents""#, r#""messageType":"DATA_MESSAGE","logEvents""#),
            2 => body.replace("DATA_MESSAGE", "CONTROL_MESSAGE"),
            3 => body.replace(r#""owner":"1""#, r#""owner":1.5,"x":{"y":[1]},"z":"a\u0062""#),
            4 => body.replace(r#""logEvents""#, r#""messageType":"DATA_MESSAGE","logEvents""#),
            5 => body.replacen('{', "{ \"logEvents\" : [ ] , ", 1),
            6 => body.replace(r#""subscriptionFilters":["f"]"#, r#""n":123456789012345678901,"f":[true,null,-3]"#),
            7 => format!("{body}\n\t "),
            8 => format!("{body} x"),
            9 => format!("{body}{{}}"),
            _ => body.replace("DATA_MESSAGE", r"DATA\u005fMESSAGE"),
        };
        let mut bytes = body.into_bytes();
        let at = at % (bytes.len() + 1);
        match edit {
            0 if at < bytes.len() => bytes[at] = byte,
            1 if at < bytes.len() => { bytes.remove(at); }
            2 if at < bytes.len() => bytes.insert(at, bytes[at]),
            _ => {}
        }
        check_payload_passes(&Decoder::default(), &bytes);
    }

    #[test]
    fn an_api_log_event_of_any_text_is_one_outcome(
        id in "\\PC{0,40}",
        ts in any::<i64>(),
        message in prop_oneof![near_valid(), "\\PC{0,80}"],
    ) {
        let mut a = Decoded::default();
        Decoder::default().api_log_event(&id, ts, &message, &src(), &mut a);
        prop_assert_eq!(a.outcomes.len(), 1, "{:?}", a.outcomes);
        let mut b = Decoded::default();
        Decoder::default().api_log_event(&id, ts, &message, &src(), &mut b);
        prop_assert_eq!(a.outcomes, b.outcomes);
    }
}
