//! OTLP JSON trace requests: a request body as the receiver gets it, and the same bytes as an
//! NDJSON line of the Collector's file exporter; read flat (without serde) wherever that
//! reading takes them, as serde_json reads them.
#![no_main]

use agentmeter_ingest::source::fuzzing::check_flat_request;
use agentmeter_ingest::{DecodeConfig, Decoded, Decoder, otlp};
use agentmeter_schemas::{Position, SourceUri};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let source = SourceUri::new("http://127.0.0.1/v1/traces");
    let cfg = DecodeConfig::default();
    if let Ok(text) = std::str::from_utf8(data) {
        check_flat_request(text);
    }
    if let Ok(d) = otlp::decode_json(data, &source, &cfg) {
        common::check_rejects(&d);
        common::check_span_outcomes(&d, &source, &cfg);
        let twice = otlp::decode_json(data, &source, &cfg).expect("decoded once");
        assert_eq!(d.outcomes, twice.outcomes);
    }
    if !data.contains(&b'\n') {
        let mut out = Decoded::default();
        Decoder::default().line(data, &source, Position::default(), &mut out);
        common::check_rejects(&out);
    }
});
