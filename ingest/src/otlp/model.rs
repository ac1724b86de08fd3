//! OTLP trace data as agentmeter reads it: one model for both encodings.
//!
//! The JSON side deserialises what the OTLP JSON mapping allows, not only what one SDK writes:
//! hex ids in either case (kept lower-case), 64-bit integers as strings or numbers, 32-bit
//! integers as numbers or strings, enums as integers (or, leniently, their proto names),
//! `null` for any field meaning its default, lowerCamelCase keys (and, leniently, the original
//! snake_case names), and unknown fields ignored. Span `events` and `links` are unknown fields
//! here: they are skipped without being built. The protobuf side converts the prost types into
//! the same model, moving their strings, and drops events and links the same way.
//!
//! The model serialises back to canonical OTLP JSON (hex ids, 64-bit integers as strings,
//! enums as integers): the raw bytes of a quarantined span.
//!
//! Opentelemetry-proto's own serde derive is stricter than the specification (timestamps only
//! as strings, `{}` refused as a request, a key without a value refused), hence this model.

use std::fmt;

use base64::Engine as _;
use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose::STANDARD};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1 as pc;
use opentelemetry_proto::tonic::trace::v1 as pt;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};

use agentmeter_schemas::InlineText;

/// An `ExportTraceServiceRequest` (or `TracesData`: the same message).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Request {
    #[serde(alias = "resource_spans", deserialize_with = "nullable")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// A line that may be an OTLP JSON request, read in one pass: the request, and whether its
/// top level also names `event` or the quarantine marker (then the line is not decided as a
/// request here: the general path, which reads every key, decides). Parses exactly what
/// [`Request`] does: `resourceSpans` (or `resource_spans`) once, `null` as none, other keys
/// skipped.
pub(crate) struct RequestLine {
    pub request: Request,
    pub names_other_record: bool,
}

impl<'de> Deserialize<'de> for RequestLine {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RequestLine;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an OTLP JSON trace request")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<RequestLine, A::Error> {
                #[derive(Deserialize)]
                struct Spans(#[serde(deserialize_with = "nullable")] Vec<ResourceSpans>);
                let mut spans: Option<Vec<ResourceSpans>> = None;
                let mut names_other_record = false;
                while let Some(key) = m.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "resourceSpans" | "resource_spans" => {
                            if spans.is_some() {
                                return Err(de::Error::duplicate_field("resourceSpans"));
                            }
                            spans = Some(m.next_value::<Spans>()?.0);
                        }
                        k => {
                            names_other_record |=
                                k == "event" || k == agentmeter_schemas::QUARANTINE_MARKER;
                            m.next_value::<de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(RequestLine {
                    request: Request { resource_spans: spans.unwrap_or_default() },
                    names_other_record,
                })
            }
        }
        d.deserialize_map(V)
    }
}

/// The spans of one resource.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ResourceSpans {
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub resource: Option<Resource>,
    #[serde(alias = "scope_spans", deserialize_with = "nullable")]
    pub scope_spans: Vec<ScopeSpans>,
    #[serde(alias = "schema_url", deserialize_with = "nullable", skip_serializing_if = "empty")]
    pub schema_url: String,
}

/// A resource: the attributes of the process that produced the spans.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Resource {
    #[serde(deserialize_with = "nullable")]
    pub attributes: Vec<KeyValue>,
    #[serde(
        alias = "dropped_attributes_count",
        deserialize_with = "int",
        skip_serializing_if = "zero"
    )]
    pub dropped_attributes_count: u32,
}

/// The spans of one instrumentation scope.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct ScopeSpans {
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub scope: Option<Scope>,
    #[serde(deserialize_with = "nullable")]
    pub spans: Vec<Span>,
    #[serde(alias = "schema_url", deserialize_with = "nullable", skip_serializing_if = "empty")]
    pub schema_url: String,
}

/// An instrumentation scope (`strands.telemetry.tracer`, ...).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Scope {
    #[serde(deserialize_with = "nullable")]
    pub name: InlineText,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "empty")]
    pub version: String,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<KeyValue>,
    #[serde(
        alias = "dropped_attributes_count",
        deserialize_with = "int",
        skip_serializing_if = "zero"
    )]
    pub dropped_attributes_count: u32,
}

/// A span without its events and links.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Span {
    /// Hex, lower-cased; not validated here (a bad id refuses the span, not the request).
    #[serde(alias = "trace_id", deserialize_with = "hex_id")]
    pub trace_id: InlineText,
    #[serde(alias = "span_id", deserialize_with = "hex_id")]
    pub span_id: InlineText,
    #[serde(alias = "trace_state", deserialize_with = "nullable", skip_serializing_if = "empty")]
    pub trace_state: String,
    #[serde(alias = "parent_span_id", deserialize_with = "hex_id", skip_serializing_if = "empty")]
    pub parent_span_id: InlineText,
    #[serde(deserialize_with = "int", skip_serializing_if = "zero")]
    pub flags: u32,
    #[serde(deserialize_with = "nullable")]
    pub name: InlineText,
    #[serde(deserialize_with = "span_kind")]
    pub kind: i32,
    #[serde(
        alias = "start_time_unix_nano",
        deserialize_with = "int",
        serialize_with = "as_string"
    )]
    pub start_time_unix_nano: u64,
    #[serde(alias = "end_time_unix_nano", deserialize_with = "int", serialize_with = "as_string")]
    pub end_time_unix_nano: u64,
    #[serde(deserialize_with = "span_attributes")]
    pub attributes: Vec<KeyValue>,
    #[serde(
        alias = "dropped_attributes_count",
        deserialize_with = "int",
        skip_serializing_if = "zero"
    )]
    pub dropped_attributes_count: u32,
    #[serde(
        alias = "dropped_events_count",
        deserialize_with = "int",
        skip_serializing_if = "zero"
    )]
    pub dropped_events_count: u32,
    #[serde(alias = "dropped_links_count", deserialize_with = "int", skip_serializing_if = "zero")]
    pub dropped_links_count: u32,
    #[serde(deserialize_with = "nullable", skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
}

/// A span's status.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, rename_all = "camelCase")]
pub(crate) struct Status {
    #[serde(deserialize_with = "nullable", skip_serializing_if = "empty")]
    pub message: String,
    #[serde(deserialize_with = "status_code")]
    pub code: i32,
}

/// One attribute.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default)]
pub(crate) struct KeyValue {
    #[serde(deserialize_with = "nullable")]
    pub key: InlineText,
    #[serde(deserialize_with = "nullable")]
    pub value: Value,
}

/// An `AnyValue`. `Empty` is a value with no variant set (or `null`).
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) enum Value {
    #[default]
    Empty,
    String(InlineText),
    Bool(bool),
    Int(i64),
    Double(f64),
    Array(Vec<Value>),
    Kvlist(Vec<KeyValue>),
    Bytes(Vec<u8>),
}

/// `{"values": [...]}` of an array or kvlist value, to write.
#[derive(Serialize)]
struct Values<'a, T> {
    values: &'a [T],
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct ArrayJson {
    #[serde(deserialize_with = "nullable")]
    values: Vec<Value>,
}

#[derive(Default, Deserialize)]
#[serde(default)]
struct KvlistJson {
    #[serde(deserialize_with = "nullable")]
    values: Vec<KeyValue>,
}

fn empty(s: &str) -> bool {
    s.is_empty()
}

fn zero(n: &u32) -> bool {
    *n == 0
}

fn as_string<S: Serializer>(n: &u64, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(n)
}

/// `null` means the default (proto3 JSON).
fn nullable<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(d)?.unwrap_or_default())
}

/// A span's attributes (`null` is none), in a list made once at the size GenAI spans reach
/// rather than grown by doubling.
fn span_attributes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<KeyValue>, D::Error> {
    struct List;
    impl<'de> Visitor<'de> for List {
        type Value = Vec<KeyValue>;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a list of attributes")
        }
        fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            let mut out = Vec::with_capacity(SPAN_ATTRIBUTES);
            while let Some(kv) = seq.next_element()? {
                out.push(kv);
            }
            Ok(out)
        }
        fn visit_none<E>(self) -> Result<Self::Value, E> {
            Ok(Vec::new())
        }
        fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_seq(self)
        }
    }
    d.deserialize_option(List)
}

/// Attributes reserved for a span: a GenAI span carries about 10 to 16 (the generated ones 8
/// to 13), which a list grown from empty reaches in three allocations, copying the entries
/// twice.
pub(super) const SPAN_ATTRIBUTES: usize = 16;

/// A hex id, lower-cased. Its digits are checked later, per span.
fn hex_id<'de, D: Deserializer<'de>>(d: D) -> Result<InlineText, D::Error> {
    let mut id = Option::<InlineText>::deserialize(d)?.unwrap_or_default();
    id.make_ascii_lowercase();
    Ok(id)
}

/// An integer given as a JSON number or a decimal string (`null` is 0).
pub(super) struct IntVisitor;

impl Visitor<'_> for IntVisitor {
    type Value = Option<i128>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an integer as a number or a decimal string")
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v.into()))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v.into()))
    }
    fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
        // `1e3` and `1.0` are integers in JSON's eyes; anything with a fraction is not.
        if v.fract() == 0.0 && v.abs() < 1.8e19 {
            return Ok(Some(v as i128));
        }
        Err(E::custom(format!("{v} is not an integer")))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        v.parse::<i128>().map(Some).map_err(|_| E::custom(format!("{v:?} is not an integer")))
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

fn int<'de, D, T>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i128> + Default,
{
    match d.deserialize_any(IntVisitor)? {
        None => Ok(T::default()),
        Some(v) => T::try_from(v).map_err(|_| de::Error::custom(format!("{v} is out of range"))),
    }
}

/// An enum: an integer (what OTLP requires) or, leniently, its proto name.
pub(super) fn enum_value<'de, D: Deserializer<'de>>(
    d: D,
    names: &'static [&'static str],
) -> Result<i32, D::Error> {
    struct V(&'static [&'static str]);
    impl Visitor<'_> for V {
        type Value = i32;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("an enum value as an integer")
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("enum value {v} is out of range")))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<i32, E> {
            i32::try_from(v).map_err(|_| E::custom(format!("enum value {v} is out of range")))
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<i32, E> {
            match self.0.iter().position(|n| *n == v) {
                // The tables are shorter than i32::MAX.
                Some(i) => Ok(i as i32),
                None => v.parse().map_err(|_| E::custom(format!("unknown enum value {v:?}"))),
            }
        }
        fn visit_unit<E>(self) -> Result<i32, E> {
            Ok(0)
        }
        fn visit_none<E>(self) -> Result<i32, E> {
            Ok(0)
        }
    }
    d.deserialize_any(V(names))
}

/// `SpanKind`'s proto names, by value.
pub(super) const SPAN_KINDS: &[&str] = &[
    "SPAN_KIND_UNSPECIFIED",
    "SPAN_KIND_INTERNAL",
    "SPAN_KIND_SERVER",
    "SPAN_KIND_CLIENT",
    "SPAN_KIND_PRODUCER",
    "SPAN_KIND_CONSUMER",
];

/// `Status.StatusCode`'s proto names, by value.
pub(super) const STATUS_CODES: &[&str] =
    &["STATUS_CODE_UNSET", "STATUS_CODE_OK", "STATUS_CODE_ERROR"];

fn span_kind<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, SPAN_KINDS)
}

fn status_code<'de, D: Deserializer<'de>>(d: D) -> Result<i32, D::Error> {
    enum_value(d, STATUS_CODES)
}

/// Standard or URL-safe alphabet, padded or not (proto3 JSON accepts both).
pub(super) fn base64_decode(s: &str) -> Option<Vec<u8>> {
    let cfg = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, cfg)
        .decode(s)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, cfg).decode(s))
        .ok()
}

/// A `doubleValue`: a number, or a string (`"NaN"`, `"Infinity"`, `"-Infinity"`, digits);
/// `null` is no value.
pub(super) struct DoubleSeed;

impl<'de> de::DeserializeSeed<'de> for DoubleSeed {
    type Value = Option<f64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<f64>, D::Error> {
        d.deserialize_any(self)
    }
}

impl Visitor<'_> for DoubleSeed {
    type Value = Option<f64>;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number")
    }
    fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
        Ok(Some(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Some(v as f64))
    }
    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        match v {
            "NaN" => Ok(Some(f64::NAN)),
            "Infinity" => Ok(Some(f64::INFINITY)),
            "-Infinity" => Ok(Some(f64::NEG_INFINITY)),
            _ => v.parse().map(Some).map_err(|_| E::custom(format!("{v:?} is not a number"))),
        }
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_none<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

struct IntSeed;

impl<'de> de::DeserializeSeed<'de> for IntSeed {
    type Value = Option<i64>;
    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Option<i64>, D::Error> {
        match d.deserialize_any(IntVisitor)? {
            None => Ok(None),
            Some(v) => i64::try_from(v)
                .map(Some)
                .map_err(|_| de::Error::custom(format!("intValue {v} is out of range"))),
        }
    }
}

impl<'de> Deserialize<'de> for Value {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Value;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an AnyValue object")
            }
            fn visit_unit<E>(self) -> Result<Value, E> {
                Ok(Value::Empty)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Value, A::Error> {
                let mut out = Value::Empty;
                // Keys and strings held in place: an attribute value allocates nothing.
                while let Some(key) = m.next_key::<InlineText>()? {
                    let v = match key.as_str() {
                        "stringValue" | "string_value" => {
                            m.next_value::<Option<InlineText>>()?.map(Value::String)
                        }
                        "boolValue" | "bool_value" => {
                            m.next_value::<Option<bool>>()?.map(Value::Bool)
                        }
                        "intValue" | "int_value" => m.next_value_seed(IntSeed)?.map(Value::Int),
                        "doubleValue" | "double_value" => {
                            m.next_value_seed(DoubleSeed)?.map(Value::Double)
                        }
                        "arrayValue" | "array_value" => {
                            m.next_value::<Option<ArrayJson>>()?.map(|a| Value::Array(a.values))
                        }
                        "kvlistValue" | "kvlist_value" => {
                            m.next_value::<Option<KvlistJson>>()?.map(|a| Value::Kvlist(a.values))
                        }
                        "bytesValue" | "bytes_value" => match m.next_value::<Option<String>>()? {
                            None => None,
                            Some(s) => {
                                Some(Value::Bytes(base64_decode(&s).ok_or_else(|| {
                                    de::Error::custom("bytesValue is not base64")
                                })?))
                            }
                        },
                        _ => {
                            m.next_value::<de::IgnoredAny>()?;
                            None
                        }
                    };
                    if let Some(v) = v {
                        if !matches!(out, Value::Empty) {
                            return Err(de::Error::custom("AnyValue has more than one value"));
                        }
                        out = v;
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

impl Serialize for Value {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(None)?;
        match self {
            Value::Empty => {}
            Value::String(v) => m.serialize_entry("stringValue", v)?,
            Value::Bool(v) => m.serialize_entry("boolValue", v)?,
            Value::Int(v) => m.serialize_entry("intValue", &v.to_string())?,
            Value::Double(v) if v.is_nan() => m.serialize_entry("doubleValue", "NaN")?,
            Value::Double(v) if v.is_infinite() => {
                let text = if *v > 0.0 { "Infinity" } else { "-Infinity" };
                m.serialize_entry("doubleValue", text)?;
            }
            Value::Double(v) => m.serialize_entry("doubleValue", v)?,
            Value::Array(values) => m.serialize_entry("arrayValue", &Values { values })?,
            Value::Kvlist(values) => m.serialize_entry("kvlistValue", &Values { values })?,
            Value::Bytes(v) => m.serialize_entry("bytesValue", &STANDARD.encode(v))?,
        }
        m.end()
    }
}

/// Lower-case hex of `bytes`.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(char::from(DIGITS[usize::from(b >> 4)]));
        s.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    s
}

impl From<ExportTraceServiceRequest> for Request {
    fn from(r: ExportTraceServiceRequest) -> Self {
        Self { resource_spans: r.resource_spans.into_iter().map(Into::into).collect() }
    }
}

impl From<pt::ResourceSpans> for ResourceSpans {
    fn from(r: pt::ResourceSpans) -> Self {
        Self {
            resource: r.resource.map(|res| Resource {
                attributes: attributes(res.attributes),
                dropped_attributes_count: res.dropped_attributes_count,
            }),
            scope_spans: r.scope_spans.into_iter().map(Into::into).collect(),
            schema_url: r.schema_url,
        }
    }
}

impl From<pt::ScopeSpans> for ScopeSpans {
    fn from(s: pt::ScopeSpans) -> Self {
        Self {
            scope: s.scope.map(|sc| Scope {
                name: sc.name.into(),
                version: sc.version,
                attributes: attributes(sc.attributes),
                dropped_attributes_count: sc.dropped_attributes_count,
            }),
            spans: s.spans.into_iter().map(Into::into).collect(),
            schema_url: s.schema_url,
        }
    }
}

impl From<pt::Span> for Span {
    /// Events and links are dropped here, unread.
    fn from(s: pt::Span) -> Self {
        Self {
            trace_id: hex(&s.trace_id).into(),
            span_id: hex(&s.span_id).into(),
            trace_state: s.trace_state,
            parent_span_id: hex(&s.parent_span_id).into(),
            flags: s.flags,
            name: s.name.into(),
            kind: s.kind,
            start_time_unix_nano: s.start_time_unix_nano,
            end_time_unix_nano: s.end_time_unix_nano,
            attributes: attributes(s.attributes),
            dropped_attributes_count: s.dropped_attributes_count,
            dropped_events_count: s.dropped_events_count,
            dropped_links_count: s.dropped_links_count,
            status: s.status.map(|st| Status { message: st.message, code: st.code }),
        }
    }
}

fn attributes(kvs: Vec<pc::KeyValue>) -> Vec<KeyValue> {
    kvs.into_iter()
        .map(|kv| KeyValue { key: kv.key.into(), value: kv.value.map_or(Value::Empty, any_value) })
        .collect()
}

fn any_value(v: pc::AnyValue) -> Value {
    use pc::any_value::Value as P;
    match v.value {
        None => Value::Empty,
        Some(P::StringValue(s)) => Value::String(s.into()),
        Some(P::BoolValue(b)) => Value::Bool(b),
        Some(P::IntValue(i)) => Value::Int(i),
        Some(P::DoubleValue(d)) => Value::Double(d),
        Some(P::ArrayValue(a)) => Value::Array(a.values.into_iter().map(any_value).collect()),
        Some(P::KvlistValue(kv)) => Value::Kvlist(attributes(kv.values)),
        Some(P::BytesValue(b)) => Value::Bytes(b),
    }
}
