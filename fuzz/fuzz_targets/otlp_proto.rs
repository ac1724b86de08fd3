//! OTLP protobuf trace requests: a request body as the receiver gets it, and the input as an
//! OTLP protobuf file (a bare request, or length-prefixed ones).
#![no_main]

use agentmeter_ingest::source::Format;
use agentmeter_ingest::source::fuzzing::decode_source;
use agentmeter_ingest::{DecodeConfig, otlp};
use agentmeter_schemas::SourceUri;
use libfuzzer_sys::fuzz_target;
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use prost::Message as _;

mod common;

fuzz_target!(|data: &[u8]| {
    let source = SourceUri::new("http://127.0.0.1/v1/traces");
    let cfg = DecodeConfig::default();
    let decoded = otlp::decode_proto(data, &source, &cfg);
    let request = ExportTraceServiceRequest::decode(data);
    assert_eq!(decoded.is_ok(), request.is_ok());
    if let (Ok(d), Ok(req)) = (decoded, request) {
        common::check_rejects(&d);
        // One outcome per span, each a span or a refusal that replays as that one span.
        let spans: usize =
            req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum();
        assert_eq!(d.outcomes.len(), spans);
        common::check_span_outcomes(&d, &source, &cfg);
        let twice = otlp::decode_proto(data, &source, &cfg).expect("decoded once");
        assert_eq!(d.outcomes, twice.outcomes);
    }
    let decoder = agentmeter_ingest::Decoder::default();
    let file = decode_source(&decoder, data, Format::OtlpProto, 64).expect("in memory");
    common::check_rejects(&file);
});
