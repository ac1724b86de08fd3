//! Test fixtures in the real shapes (FORMATS.md 4.1, 4.4 and appendix B): a Strands trace in
//! OTLP JSON (`testdata/strands-trace.json`, the shape of opentelemetry-proto's
//! `examples/trace.json`) and the same trace built with the prost types.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PV;
use opentelemetry_proto::tonic::common::v1::{AnyValue, InstrumentationScope, KeyValue};
use opentelemetry_proto::tonic::resource::v1::Resource;
use opentelemetry_proto::tonic::trace::v1::span::{Event, Link};
use opentelemetry_proto::tonic::trace::v1::{ResourceSpans, ScopeSpans, Span, Status};

pub(crate) const STRANDS: &str = include_str!("testdata/strands-trace.json");

/// Text that only events, links and content attributes carry: it must never come out.
pub(crate) const PRIVATE: [&str; 8] = [
    "Jane Doe",
    "1980-01-01",
    "SECRET-STACK",
    "LINK-SECRET",
    "exception.message",
    "gen_ai.user.message",
    "gen_ai.choice",
    "chest pain",
];

fn kv(key: &str, value: PV) -> KeyValue {
    KeyValue { key: key.into(), value: Some(AnyValue { value: Some(value) }) }
}

fn s(key: &str, v: &str) -> KeyValue {
    kv(key, PV::StringValue(v.into()))
}

fn n(key: &str, v: i64) -> KeyValue {
    kv(key, PV::IntValue(v))
}

fn hex(h: &str) -> Vec<u8> {
    (0..h.len()).step_by(2).map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap()).collect()
}

fn event(name: &str, attrs: Vec<KeyValue>) -> Event {
    Event {
        time_unix_nano: 1_790_841_601_000_000_000,
        name: name.into(),
        attributes: attrs,
        dropped_attributes_count: 0,
    }
}

#[allow(clippy::too_many_arguments)]
fn span(
    id: &str,
    parent: &str,
    name: &str,
    t: (u64, u64),
    op: &str,
    attrs: Vec<KeyValue>,
    events: Vec<Event>,
    code: Option<i32>,
) -> Span {
    let mut all = vec![
        s("tier", "basic"),
        s("clinic_id", "clinic-a-north"),
        s("actor_id", "basic-clinic-a-north-dr.lee@clinic-a.example"),
        s("gen_ai.operation.name", op),
    ];
    all.extend(attrs);
    Span {
        trace_id: hex("5b8efff798038103d269b633813fc60c"),
        span_id: hex(id),
        parent_span_id: hex(parent),
        name: name.into(),
        kind: 1,
        start_time_unix_nano: t.0,
        end_time_unix_nano: t.1,
        attributes: all,
        events,
        status: code.map(|code| Status { code, message: String::new() }),
        ..Default::default()
    }
}

pub(crate) fn strands_proto() -> ExportTraceServiceRequest {
    let model = || s("gen_ai.request.model", "mistral.ministral-3-8b-instruct");
    let chat1 = span(
        "eee19b7ec3c1b176",
        "eee19b7ec3c1b175",
        "chat",
        (1_790_841_600_100_999_999, 1_790_841_601_350_000_001),
        "chat",
        vec![
            model(),
            n("gen_ai.usage.prompt_tokens", 812),
            n("gen_ai.usage.input_tokens", 812),
            n("gen_ai.usage.completion_tokens", 97),
            n("gen_ai.usage.output_tokens", 97),
            n("gen_ai.usage.total_tokens", 909),
            n("gen_ai.usage.cache_read_input_tokens", 128),
            n("gen_ai.usage.cache_read.input_tokens", 128),
            n("gen_ai.usage.cache_write_input_tokens", 0),
            n("gen_ai.usage.cache_creation.input_tokens", 0),
        ],
        vec![event(
            "gen_ai.user.message",
            vec![s("content", "Patient Jane Doe (DOB 1980-01-01) reports chest pain")],
        )],
        Some(1),
    );
    let tool1 = span(
        "eee19b7ec3c1b177",
        "eee19b7ec3c1b175",
        "execute_tool lookup_patient",
        (1_790_841_601_400_000_000, 1_790_841_601_650_000_000),
        "execute_tool",
        vec![
            s("gen_ai.tool.name", "lookup_patient"),
            s("gen_ai.tool.call.arguments", "{\"name\": \"Jane Doe\"}"),
        ],
        vec![event("gen_ai.tool.message", vec![s("content", "Jane Doe")])],
        Some(1),
    );
    let mut tool2 = span(
        "eee19b7ec3c1b178",
        "eee19b7ec3c1b175",
        "execute_tool send_referral",
        (1_790_841_601_700_000_000, 1_790_841_601_900_000_000),
        "execute_tool",
        vec![s("gen_ai.tool.name", "send_referral")],
        vec![event(
            "exception",
            vec![
                s("exception.message", "referral for Jane Doe rejected"),
                s("exception.stacktrace", "SECRET-STACK"),
                kv("exception.escaped", PV::BoolValue(false)),
            ],
        )],
        Some(2),
    );
    tool2.status = Some(Status { code: 2, message: "ReferralError: referral rejected".into() });
    let cycle1 = span(
        "eee19b7ec3c1b175",
        "eee19b7ec3c1b174",
        "execute_event_loop_cycle",
        (1_790_841_600_050_000_000, 1_790_841_601_950_000_000),
        "execute_event_loop_cycle",
        vec![],
        vec![],
        Some(1),
    );
    let chat2 = span(
        "eee19b7ec3c1b17a",
        "eee19b7ec3c1b179",
        "chat",
        (1_790_841_602_000_000_000, 1_790_841_603_000_000_000),
        "chat",
        vec![
            model(),
            n("gen_ai.usage.prompt_tokens", 1020),
            n("gen_ai.usage.completion_tokens", 64),
            n("gen_ai.usage.total_tokens", 1084),
            n("gen_ai.usage.cache_read_input_tokens", 512),
        ],
        vec![],
        Some(0),
    );
    let cycle2 = span(
        "eee19b7ec3c1b179",
        "eee19b7ec3c1b174",
        "execute_event_loop_cycle",
        (1_790_841_601_960_000_000, 1_790_841_603_050_000_000),
        "execute_event_loop_cycle",
        vec![],
        vec![],
        Some(1),
    );
    let mut root = span(
        "eee19b7ec3c1b174",
        "",
        "invoke_agent Clinic Assistant",
        (1_790_841_600_000_000_000, 1_790_841_603_100_000_000),
        "invoke_agent",
        vec![
            model(),
            n("gen_ai.usage.prompt_tokens", 9664),
            n("gen_ai.usage.input_tokens", 9664),
            n("gen_ai.usage.completion_tokens", 805),
            n("gen_ai.usage.output_tokens", 805),
            n("gen_ai.usage.total_tokens", 10469),
            n("gen_ai.usage.cache_read_input_tokens", 1280),
            n("gen_ai.usage.cache_read.input_tokens", 1280),
        ],
        vec![event("gen_ai.choice", vec![s("message", "Jane Doe was referred.")])],
        Some(1),
    );
    root.links = vec![Link {
        trace_id: hex("0af7651916cd43dd8448eb211c80319c"),
        span_id: hex("b7ad6b7169203331"),
        attributes: vec![s("link.note", "LINK-SECRET")],
        ..Default::default()
    }];
    ExportTraceServiceRequest {
        resource_spans: vec![ResourceSpans {
            resource: Some(Resource {
                attributes: vec![
                    s("service.name", "clinic-assistant"),
                    s("telemetry.sdk.language", "python"),
                ],
                ..Default::default()
            }),
            scope_spans: vec![ScopeSpans {
                scope: Some(InstrumentationScope {
                    name: "strands.telemetry.tracer".into(),
                    ..Default::default()
                }),
                spans: vec![chat1, tool1, tool2, cycle1, chat2, cycle2, root],
                schema_url: String::new(),
            }],
            schema_url: String::new(),
        }],
    }
}
