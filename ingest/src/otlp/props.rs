//! Property tests of trace requests near the real ones: the Strands trace with ids, times and
//! attribute values changed to odd ones (wrong lengths, huge numbers, NaN, nested values, odd
//! Unicode, thousands of attributes), in protobuf and in OTLP JSON, whole or as an NDJSON
//! line. A request that decodes has one outcome per span, a span or a refusal whose bytes
//! replay as that one span; the two encodings agree; decoding twice gives the same.

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as PV;
use opentelemetry_proto::tonic::common::v1::{AnyValue, ArrayValue, KeyValue, KeyValueList};
use proptest::prelude::*;
use prost::Message as _;
use serde_json::Value;

use super::fixtures::{STRANDS, strands_proto};
use super::*;
use crate::{DecodeConfig, Decoded, Decoder, Outcome};
use agentmeter_schemas::{Position, RawFormat, SourceUri};

fn config() -> ProptestConfig {
    ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() }
}

fn src() -> SourceUri {
    SourceUri::new("http://127.0.0.1:4318/v1/traces")
}

fn odd_any_value() -> impl Strategy<Value = PV> {
    let leaf = prop_oneof![
        any::<i64>().prop_map(PV::IntValue),
        prop_oneof![Just(f64::NAN), Just(f64::INFINITY), Just(-0.0), any::<f64>()]
            .prop_map(PV::DoubleValue),
        any::<bool>().prop_map(PV::BoolValue),
        "\\PC{0,300}".prop_map(PV::StringValue),
        Just(PV::StringValue("\u{202e}clinic-a".into())),
        Just(PV::StringValue("18446744073709551616".into())),
        proptest::collection::vec(any::<u8>(), 0..40).prop_map(PV::BytesValue),
    ];
    leaf.prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(|v| {
                PV::ArrayValue(ArrayValue {
                    values: v.into_iter().map(|v| AnyValue { value: Some(v) }).collect(),
                })
            }),
            proptest::collection::vec(("[a-z._]{1,12}", inner), 0..4).prop_map(|kv| {
                PV::KvlistValue(KeyValueList {
                    values: kv
                        .into_iter()
                        .map(|(key, v)| KeyValue { key, value: Some(AnyValue { value: Some(v) }) })
                        .collect(),
                })
            }),
        ]
    })
}

/// One change to a span of the request.
#[derive(Debug, Clone)]
enum Edit {
    TraceId(Vec<u8>),
    SpanId(Vec<u8>),
    Parent(Vec<u8>),
    Times(u64, u64),
    Value(prop::sample::Index, Option<PV>),
    Key(prop::sample::Index, String),
    Remove(prop::sample::Index),
    Many(usize),
    Copies(usize),
}

fn edit() -> impl Strategy<Value = Edit> {
    let id = |n| {
        prop_oneof![
            proptest::collection::vec(any::<u8>(), 0..20),
            Just(vec![0; n]),
            proptest::collection::vec(any::<u8>(), n..=n),
        ]
    };
    prop_oneof![
        id(16).prop_map(Edit::TraceId),
        id(8).prop_map(Edit::SpanId),
        id(8).prop_map(Edit::Parent),
        (any::<u64>(), any::<u64>()).prop_map(|(a, b)| Edit::Times(a, b)),
        (any::<prop::sample::Index>(), proptest::option::of(odd_any_value()))
            .prop_map(|(i, v)| Edit::Value(i, v)),
        (any::<prop::sample::Index>(), "\\PC{0,20}").prop_map(|(i, k)| Edit::Key(i, k)),
        any::<prop::sample::Index>().prop_map(Edit::Remove),
        (1000usize..1100).prop_map(Edit::Many),
        (2usize..40).prop_map(Edit::Copies),
    ]
}

fn apply(req: &mut ExportTraceServiceRequest, span: prop::sample::Index, e: Edit) {
    let spans = &mut req.resource_spans[0].scope_spans[0].spans;
    let i = span.index(spans.len());
    if let Edit::Copies(n) = e {
        let copy = spans[i].clone();
        spans.extend(std::iter::repeat_n(copy, n));
        return;
    }
    let s = &mut spans[i];
    match e {
        Edit::TraceId(b) => s.trace_id = b,
        Edit::SpanId(b) => s.span_id = b,
        Edit::Parent(b) => s.parent_span_id = b,
        Edit::Times(a, b) => (s.start_time_unix_nano, s.end_time_unix_nano) = (a, b),
        Edit::Value(at, v) if !s.attributes.is_empty() => {
            let n = at.index(s.attributes.len());
            s.attributes[n].value = v.map(|v| AnyValue { value: Some(v) });
        }
        Edit::Key(at, k) if !s.attributes.is_empty() => {
            let n = at.index(s.attributes.len());
            s.attributes[n].key = k;
        }
        Edit::Remove(at) if !s.attributes.is_empty() => {
            s.attributes.remove(at.index(s.attributes.len()));
        }
        Edit::Many(n) => {
            let extra = (0..n).map(|k| KeyValue {
                key: format!("x.{k}"),
                value: Some(AnyValue { value: Some(PV::IntValue(k as i64)) }),
            });
            s.attributes.extend(extra);
        }
        _ => {}
    }
}

fn span_count(req: &ExportTraceServiceRequest) -> usize {
    req.resource_spans.iter().flat_map(|r| &r.scope_spans).map(|s| s.spans.len()).sum()
}

/// One outcome per span, each a span or a refusal that replays as one span.
fn check_spans(d: &Decoded, spans: usize) -> Result<(), TestCaseError> {
    prop_assert_eq!(d.outcomes.len(), spans);
    for o in &d.outcomes {
        match o {
            Outcome::Span(_) => {}
            Outcome::Reject(q) => {
                prop_assert!(!q.detail.is_empty());
                prop_assert_eq!(q.format, RawFormat::OtlpJson);
                let raw = q.raw_bytes().map_err(TestCaseError::fail)?;
                let again = decode_json(&raw, &src(), &DecodeConfig::default())
                    .map_err(|e| TestCaseError::fail(e.detail()))?;
                prop_assert_eq!(again.outcomes.len(), 1, "{:?}", again.outcomes);
            }
            other => return Err(TestCaseError::fail(format!("not a span outcome: {other:?}"))),
        }
    }
    Ok(())
}

/// Outcomes with refusals as their reason and position: a refused span's bytes are its
/// attributes encoded again, and its detail may quote a double attribute; serde_json reads a
/// double's decimal text only to within an ulp (without its `float_roundtrip` feature), so a
/// double that came through JSON may print one digit apart.
fn comparable(d: &Decoded) -> Vec<String> {
    d.outcomes
        .iter()
        .map(|o| match o {
            Outcome::Reject(q) => format!("reject {} {:?}", q.reason, q.position),
            other => format!("{other:?}"),
        })
        .collect()
}

/// Every scalar of a JSON document, by path.
fn scalars(v: &Value, path: &mut Vec<Value>, out: &mut Vec<Vec<Value>>) {
    match v {
        Value::Array(a) => a.iter().enumerate().for_each(|(i, x)| {
            path.push(Value::from(i));
            scalars(x, path, out);
            path.pop();
        }),
        Value::Object(m) => m.iter().for_each(|(k, x)| {
            path.push(Value::from(k.as_str()));
            scalars(x, path, out);
            path.pop();
        }),
        _ => out.push(path.clone()),
    }
}

fn at<'v>(v: &'v mut Value, path: &[Value]) -> &'v mut Value {
    path.iter().fold(v, |v, k| match k {
        Value::String(k) => &mut v[k.as_str()],
        k => &mut v[k.as_u64().unwrap() as usize],
    })
}

fn odd_json() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        any::<u64>().prop_map(|n| Value::from(n.to_string())),
        "\\PC{0,40}".prop_map(Value::from),
        Just(Value::from("5B8EFFF798038103D269B633813FC60C")),
        Just(Value::from("\u{202e}")),
        Just(serde_json::json!([[{"a": []}]])),
        Just(serde_json::json!({"stringValue": {"intValue": "1"}})),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn a_changed_protobuf_request_is_one_outcome_per_span_in_both_encodings(
        edits in proptest::collection::vec((any::<prop::sample::Index>(), edit()), 1..6)
    ) {
        let mut req = strands_proto();
        for (span, e) in edits {
            apply(&mut req, span, e);
        }
        let body = req.encode_to_vec();
        let cfg = DecodeConfig::default();
        let d = decode_proto(&body, &src(), &cfg).map_err(|e| TestCaseError::fail(e.detail()))?;
        check_spans(&d, span_count(&req))?;
        prop_assert_eq!(&d.outcomes, &decode_proto(&body, &src(), &cfg).unwrap().outcomes);
        // The OTLP JSON encoding of the same request decodes to the same outcomes, except
        // where the encoder cannot say it (it writes a NaN or infinite double as null).
        let finite = !format!("{req:?}").contains("NaN") && !format!("{req:?}").contains("inf");
        if let (true, Ok(text)) = (finite, serde_json::to_vec(&req)) {
            let text = std::str::from_utf8(&text).unwrap();
            prop_assert!(super::flat::agrees(text));
            let serde = serde_json::from_str::<super::model::RequestLine>(text).is_ok();
            prop_assert_eq!(super::flat::request(text).is_some(), serde, "{}", text);
            let j = decode_json(text.as_bytes(), &src(), &cfg).map_err(|e| TestCaseError::fail(e.detail()))?;
            prop_assert_eq!(comparable(&d), comparable(&j));
        }
    }

    #[test]
    fn a_json_request_with_values_changed_is_one_outcome_per_span_or_an_error(
        changes in proptest::collection::vec((any::<prop::sample::Index>(), odd_json()), 1..5),
    ) {
        let mut doc: Value = serde_json::from_str(STRANDS).unwrap();
        let mut paths = Vec::new();
        scalars(&doc, &mut Vec::new(), &mut paths);
        for (i, v) in changes {
            *at(&mut doc, &paths[i.index(paths.len())]) = v;
        }
        let cfg = DecodeConfig::default();
        let spans = decode_json(STRANDS.as_bytes(), &src(), &cfg).unwrap().outcomes.len();
        let body = doc.to_string();
        prop_assert!(super::flat::agrees(&body), "{}", body);
        // And read flat wherever serde_json reads it: values are changed, not keys or nesting.
        let serde = serde_json::from_str::<super::model::RequestLine>(&body).is_ok();
        prop_assert_eq!(super::flat::request(&body).is_some(), serde, "{}", body);
        let whole = decode_json(body.as_bytes(), &src(), &cfg);
        if let Ok(d) = &whole {
            check_spans(d, spans)?;
            let again = decode_json(body.as_bytes(), &src(), &cfg).unwrap();
            prop_assert_eq!(&d.outcomes, &again.outcomes);
        }
        // As an NDJSON line (the Collector's file exporter): the request's spans, or one
        // refusal of the line.
        let mut line = Decoded::default();
        let pos = Position { line: Some(1), ..Position::default() };
        Decoder::default().line(body.as_bytes(), &src(), pos, &mut line);
        match &whole {
            Ok(_) => prop_assert_eq!(line.outcomes.len(), spans),
            Err(_) => prop_assert_eq!(line.outcomes.len(), 1, "{:?}", line.outcomes),
        }
    }
}
