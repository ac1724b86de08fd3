//! OTLP JSON trace requests: a request body as the receiver gets it, and the same bytes as an
//! NDJSON line of the Collector's file exporter.
#![no_main]

use agentmeter_ingest::{DecodeConfig, Decoded, Decoder, Outcome, otlp};
use agentmeter_schemas::{Position, RawFormat, SourceUri};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let source = SourceUri::new("http://127.0.0.1/v1/traces");
    let cfg = DecodeConfig::default();
    if let Ok(d) = otlp::decode_json(data, &source, &cfg) {
        common::check_rejects(&d);
        for o in &d.outcomes {
            match o {
                Outcome::Span(_) => {}
                // A refused span's bytes are a request of that span alone.
                Outcome::Reject(q) => {
                    assert_eq!(q.format, RawFormat::OtlpJson);
                    let raw = q.raw_bytes().expect("a refused span keeps its request");
                    let again = otlp::decode_json(&raw, &source, &cfg).expect("a request");
                    assert_eq!(again.outcomes.len(), 1);
                }
                other => panic!("not a span outcome: {other:?}"),
            }
        }
        let twice = otlp::decode_json(data, &source, &cfg).expect("decoded once");
        assert_eq!(d.outcomes, twice.outcomes);
    }
    if !data.contains(&b'\n') {
        let mut out = Decoded::default();
        Decoder::default().line(data, &source, Position::default(), &mut out);
        common::check_rejects(&out);
    }
});
