//! CloudWatch Logs subscription payloads: the input as a payload file (and a Kinesis record)
//! as it stands, or, with the first byte odd, gzipped by the target so that the payload JSON
//! itself is what varies: read in one pass and in two alike, then one member and two
//! concatenated.
#![no_main]

use std::borrow::Cow;
use std::io::Write;

use agentmeter_ingest::source::Format;
use agentmeter_ingest::source::fuzzing::decode_source;
use agentmeter_ingest::{Decoded, Decoder};
use agentmeter_schemas::SourceUri;
use libfuzzer_sys::fuzz_target;
use serde::Deserialize;
use serde_json::value::RawValue;

mod common;

/// The decoder's own reading of a payload, to count the records a body holds.
#[derive(Deserialize)]
struct Payload<'a> {
    #[serde(rename = "messageType", borrow)]
    message_type: Cow<'a, str>,
    #[serde(rename = "logEvents", borrow, default)]
    log_events: Vec<&'a RawValue>,
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).expect("in memory");
    e.finish().expect("in memory")
}

fn record(decoder: &Decoder, data: &[u8]) -> Decoded {
    let mut out = Decoded::default();
    decoder.stream_record(data, &SourceUri::new("kinesis://fuzz/0"), &mut out);
    common::check_rejects(&out);
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let decoder = Decoder::default();
    if mode & 1 == 0 {
        for format in [Format::CwlSubscription, Format::Auto] {
            let small = decode_source(&decoder, bytes, format, 16 + usize::from(mode / 2))
                .expect("in memory");
            let large = decode_source(&decoder, bytes, format, 1 << 16).expect("in memory");
            common::check_rejects(&small);
            common::check_rejects(&large);
            // As for NDJSON: a corrupt member inflates as far as what was read at once.
            if !bytes.starts_with(&[0x1f, 0x8b]) {
                assert_eq!(small.outcomes, large.outcomes);
            }
        }
        assert_eq!(record(&decoder, bytes).outcomes, record(&decoder, bytes).outcomes);
        return;
    }
    // The payload read in one pass, its messages where they lie, against serde_json's reading.
    agentmeter_ingest::source::fuzzing::check_payload_passes(&decoder, bytes);
    let member = gzip(bytes);
    let one = record(&decoder, &member);
    // One payload is one outcome (refused, skipped) or one per log event.
    if one.outcomes.len() != 1 {
        let p: Payload<'_> = serde_json::from_slice(bytes).expect("several outcomes: a payload");
        assert_eq!(p.message_type, "DATA_MESSAGE");
        assert_eq!(p.log_events.len(), one.outcomes.len());
    }
    let mut two = member.clone();
    two.extend_from_slice(&member);
    assert_eq!(record(&decoder, &two).outcomes.len(), 2 * one.outcomes.len());
    let file = decode_source(&decoder, &two, Format::CwlSubscription, 64).expect("in memory");
    common::check_rejects(&file);
    assert_eq!(file.outcomes.len(), 2 * one.outcomes.len());
});
