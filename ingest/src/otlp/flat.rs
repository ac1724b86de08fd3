//! An OTLP JSON request read in one loop over its bytes, without serde's machinery: serde_json
//! spent about 26,700 instructions a span of the generated month's OTLP files on its visitors,
//! map accesses and string scanning, this reader about 11,000 (BENCHMARKS.md, "Where the time
//! goes"). It reads the grammar [`model`](super::model) derives, key by key, and
//! gives up (`None`) on whatever it does not take on itself: a key with an escape, a duplicate
//! key, an array where a struct belongs, anything malformed, nesting near serde_json's limit.
//! The caller then reads the text with serde_json as before, which words any error. So the
//! request of every text it takes is exactly serde_json's (the tests below, the property tests
//! in `props`, and the `otlp_json` fuzz target).
//!
//! A leaf it does not read itself (an escaped string, a double, an integer with a fraction or
//! past 18 digits, an enum's name spelt as digits) is handed to the model's own visitor on a
//! serde_json reader of that value's text alone: the same code reads it either way.

use std::borrow::Cow;

use serde::de::{DeserializeSeed as _, Deserializer as _, IgnoredAny};

use agentmeter_schemas::{InlineText, QUARANTINE_MARKER};

use super::model::{
    DoubleSeed, IntVisitor, KeyValue, Request, Resource, ResourceSpans, SPAN_ATTRIBUTES,
    SPAN_KINDS, STATUS_CODES, Scope, ScopeSpans, Span, Status, Value, base64_decode, enum_value,
};
use crate::fields::flat::{Kind, skip_ws, string_end, value};

/// The deepest nesting read here: well short of serde_json's limit of 128, so that nothing
/// read here is too deep for it.
const DEPTH: u32 = 64;

/// The request of `text`, and whether its top level also names `event` or the quarantine
/// marker ([`super::model::RequestLine`]); `None` for any text this reader does not take.
pub(crate) fn request(text: &str) -> Option<(Request, bool)> {
    let mut r = Reader { text, b: text.as_bytes(), i: skip_ws(text.as_bytes(), 0), depth: 0 };
    let mut names_other_record = false;
    let req = r.record(|r, out: &mut Request, key| {
        if !matches!(key, "resourceSpans" | "resource_spans") {
            names_other_record |= key == "event" || key == QUARANTINE_MARKER;
            return Some(None);
        }
        out.resource_spans = r.list(0, Reader::resource_spans)?;
        Some(Some(0))
    })?;
    (skip_ws(r.b, r.i) == r.b.len()).then_some((req, names_other_record))
}

/// Whether the flat reading of `text`, where it gives a request, gives serde_json's, both as
/// a request line and as a whole request body (for the tests and the fuzz targets:
/// [`crate::source::fuzzing`]). Compared as text: a NaN double is not equal to itself.
pub(crate) fn agrees(text: &str) -> bool {
    let Some((req, other)) = request(text) else { return true };
    let (Ok(line), Ok(whole)) = (
        serde_json::from_str::<super::model::RequestLine>(text),
        serde_json::from_str::<Request>(text),
    ) else {
        return false;
    };
    let req = format!("{req:?}");
    other == line.names_other_record
        && req == format!("{:?}", line.request)
        && req == format!("{whole:?}")
}

/// Marks field `bit` of an object as read; `None` if it was already (serde's derive refuses a
/// duplicate field).
fn once(seen: &mut u32, bit: u32) -> Option<()> {
    let was = *seen;
    *seen |= 1 << bit;
    (was & (1 << bit) == 0).then_some(())
}

/// A reader of the text from byte `i`.
struct Reader<'a> {
    text: &'a str,
    b: &'a [u8],
    i: usize,
    /// Objects and arrays open at `i`.
    depth: u32,
}

impl<'a> Reader<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    /// Moves past `null` if it is next.
    fn null(&mut self) -> bool {
        let is = self.b.get(self.i..self.i + 4) == Some(b"null");
        if is {
            self.i += 4;
        }
        is
    }

    /// The object at `i`, each member's key (without an escape) handed to `member` with the
    /// reader at its value, which `member` reads.
    fn object(&mut self, mut member: impl FnMut(&mut Self, &'a str) -> Option<()>) -> Option<()> {
        self.nested(b'{', b'}', |r| {
            if r.peek()? != b'"' {
                return None;
            }
            let end = string_end(r.b, r.i + 1)?;
            // Quotes are ASCII: both ends are character boundaries.
            let key = &r.text[r.i + 1..end];
            r.i = skip_ws(r.b, end + 1);
            if r.peek()? != b':' {
                return None;
            }
            r.i = skip_ws(r.b, r.i + 1);
            member(r, key)
        })
    }

    /// The array at `i`, `item` reading each of its values.
    fn array(&mut self, item: impl FnMut(&mut Self) -> Option<()>) -> Option<()> {
        self.nested(b'[', b']', item)
    }

    /// What `open` at `i` holds up to its `close`, each item read by `item` and followed by a
    /// comma or the end.
    fn nested(
        &mut self,
        open: u8,
        close: u8,
        mut item: impl FnMut(&mut Self) -> Option<()>,
    ) -> Option<()> {
        if self.peek()? != open || self.depth == DEPTH {
            return None;
        }
        self.depth += 1;
        self.i = skip_ws(self.b, self.i + 1);
        if self.peek()? == close {
            self.i += 1;
        } else {
            loop {
                item(self)?;
                self.i = skip_ws(self.b, self.i);
                match self.peek()? {
                    b',' => self.i = skip_ws(self.b, self.i + 1),
                    c if c == close => {
                        self.i += 1;
                        break;
                    }
                    _ => return None,
                }
            }
        }
        self.depth -= 1;
        Some(())
    }

    /// A nullable list: `null` is none; else an array of items read by `item`, in a list made
    /// at `capacity`.
    fn list<T>(
        &mut self,
        capacity: usize,
        mut item: impl FnMut(&mut Self) -> Option<T>,
    ) -> Option<Vec<T>> {
        let mut out = Vec::with_capacity(capacity);
        if !self.null() {
            self.array(|r| {
                out.push(item(r)?);
                Some(())
            })?;
        }
        Some(out)
    }

    /// A nullable struct: `null` is none; else an object read by `read`.
    fn optional<T>(&mut self, read: impl FnOnce(&mut Self) -> Option<T>) -> Option<Option<T>> {
        if self.null() { Some(None) } else { read(self).map(Some) }
    }

    /// The scalar at `i`: its text and kind.
    fn scalar(&mut self) -> Option<(&'a str, Kind)> {
        let start = self.i;
        let kind = value(self.b, &mut self.i)?;
        Some((&self.text[start..self.i], kind))
    }

    /// Moves past any value, as serde's `IgnoredAny` reads it.
    fn skip(&mut self) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(|r, _| r.skip()),
            b'[' => self.array(Self::skip),
            _ => match self.scalar()? {
                // Its escapes are serde_json's to check.
                (raw, Kind::Escaped) => serde_json::from_str::<IgnoredAny>(raw).ok().map(drop),
                _ => Some(()),
            },
        }
    }

    /// A string or `null` (`None`).
    fn string(&mut self) -> Option<Option<Cow<'a, str>>> {
        match self.scalar()? {
            (_, Kind::Null) => Some(None),
            (raw, Kind::Str) => Some(Some(Cow::Borrowed(&raw[1..raw.len() - 1]))),
            (raw, Kind::Escaped) => {
                serde_json::from_str::<String>(raw).ok().map(|s| Some(s.into()))
            }
            _ => None,
        }
    }

    /// A nullable text field (`null` is empty).
    fn text(&mut self) -> Option<InlineText> {
        Some(self.string()?.map_or_else(InlineText::default, |s| InlineText::from(&*s)))
    }

    /// A nullable string field (`null` is empty).
    fn owned(&mut self) -> Option<String> {
        Some(self.string()?.map_or_else(String::new, Cow::into_owned))
    }

    /// A hex id, lower-cased (`null` is empty).
    fn hex_id(&mut self) -> Option<InlineText> {
        let mut id = self.text()?;
        id.make_ascii_lowercase();
        Some(id)
    }

    /// An integer as [`IntVisitor`] reads it: a number or a decimal string; `null` is `None`.
    fn int(&mut self) -> Option<Option<i128>> {
        match self.scalar()? {
            (_, Kind::Null) => Some(None),
            (raw, Kind::Integer) if short_integer(raw) => raw.parse().ok().map(Some),
            (raw, Kind::Str) => raw[1..raw.len() - 1].parse().ok().map(Some),
            (raw, _) => by_serde(raw, |d| d.deserialize_any(IntVisitor)),
        }
    }

    /// An integer field of type `T` (`null` is 0).
    fn count<T: TryFrom<i128> + Default>(&mut self) -> Option<T> {
        match self.int()? {
            None => Some(T::default()),
            Some(v) => T::try_from(v).ok(),
        }
    }

    /// An enum: an integer, or one of `names` (`null` is 0).
    fn enumeration(&mut self, names: &'static [&'static str]) -> Option<i32> {
        match self.scalar()? {
            (_, Kind::Null) => Some(0),
            (raw, Kind::Integer) if short_integer(raw) => raw.parse().ok(),
            (raw, _) => by_serde(raw, |d| enum_value(d, names)),
        }
    }

    /// The object at `i` as a `T`, its members read by `field`: the field's number once it
    /// has read a key it knows into `out` (serde's derive refuses a field twice), `None` for a
    /// key it does not know, whose value is passed over.
    fn record<T: Default>(
        &mut self,
        mut field: impl FnMut(&mut Self, &mut T, &'a str) -> Option<Option<u32>>,
    ) -> Option<T> {
        let mut out = T::default();
        let mut seen = 0;
        self.object(|r, key| match field(r, &mut out, key)? {
            Some(bit) => once(&mut seen, bit),
            None => r.skip(),
        })?;
        Some(out)
    }

    fn resource_spans(&mut self) -> Option<ResourceSpans> {
        self.record(|r, out: &mut ResourceSpans, key| {
            Some(Some(match key {
                "resource" => {
                    out.resource = r.optional(Self::resource)?;
                    0
                }
                "scopeSpans" | "scope_spans" => {
                    out.scope_spans = r.list(0, Self::scope_spans)?;
                    1
                }
                "schemaUrl" | "schema_url" => {
                    out.schema_url = r.owned()?;
                    2
                }
                _ => return Some(None),
            }))
        })
    }

    fn resource(&mut self) -> Option<Resource> {
        self.record(|r, out: &mut Resource, key| {
            Some(Some(match key {
                "attributes" => {
                    out.attributes = r.list(0, Self::key_value)?;
                    0
                }
                "droppedAttributesCount" | "dropped_attributes_count" => {
                    out.dropped_attributes_count = r.count()?;
                    1
                }
                _ => return Some(None),
            }))
        })
    }

    fn scope_spans(&mut self) -> Option<ScopeSpans> {
        self.record(|r, out: &mut ScopeSpans, key| {
            Some(Some(match key {
                "scope" => {
                    out.scope = r.optional(Self::scope)?;
                    0
                }
                "spans" => {
                    out.spans = r.list(0, Self::span)?;
                    1
                }
                "schemaUrl" | "schema_url" => {
                    out.schema_url = r.owned()?;
                    2
                }
                _ => return Some(None),
            }))
        })
    }

    fn scope(&mut self) -> Option<Scope> {
        self.record(|r, out: &mut Scope, key| {
            Some(Some(match key {
                "name" => {
                    out.name = r.text()?;
                    0
                }
                "version" => {
                    out.version = r.owned()?;
                    1
                }
                "attributes" => {
                    out.attributes = r.list(0, Self::key_value)?;
                    2
                }
                "droppedAttributesCount" | "dropped_attributes_count" => {
                    out.dropped_attributes_count = r.count()?;
                    3
                }
                _ => return Some(None),
            }))
        })
    }

    fn span(&mut self) -> Option<Span> {
        self.record(|r, out: &mut Span, key| {
            Some(Some(match key {
                "traceId" | "trace_id" => {
                    out.trace_id = r.hex_id()?;
                    0
                }
                "spanId" | "span_id" => {
                    out.span_id = r.hex_id()?;
                    1
                }
                "traceState" | "trace_state" => {
                    out.trace_state = r.owned()?;
                    2
                }
                "parentSpanId" | "parent_span_id" => {
                    out.parent_span_id = r.hex_id()?;
                    3
                }
                "flags" => {
                    out.flags = r.count()?;
                    4
                }
                "name" => {
                    out.name = r.text()?;
                    5
                }
                "kind" => {
                    out.kind = r.enumeration(SPAN_KINDS)?;
                    6
                }
                "startTimeUnixNano" | "start_time_unix_nano" => {
                    out.start_time_unix_nano = r.count()?;
                    7
                }
                "endTimeUnixNano" | "end_time_unix_nano" => {
                    out.end_time_unix_nano = r.count()?;
                    8
                }
                "attributes" => {
                    out.attributes = r.list(SPAN_ATTRIBUTES, Self::key_value)?;
                    9
                }
                "droppedAttributesCount" | "dropped_attributes_count" => {
                    out.dropped_attributes_count = r.count()?;
                    10
                }
                "droppedEventsCount" | "dropped_events_count" => {
                    out.dropped_events_count = r.count()?;
                    11
                }
                "droppedLinksCount" | "dropped_links_count" => {
                    out.dropped_links_count = r.count()?;
                    12
                }
                "status" => {
                    out.status = r.optional(Self::status)?;
                    13
                }
                // Events and links among them: skipped unbuilt, as serde_json skips them.
                _ => return Some(None),
            }))
        })
    }

    fn status(&mut self) -> Option<Status> {
        self.record(|r, out: &mut Status, key| {
            Some(Some(match key {
                "message" => {
                    out.message = r.owned()?;
                    0
                }
                "code" => {
                    out.code = r.enumeration(STATUS_CODES)?;
                    1
                }
                _ => return Some(None),
            }))
        })
    }

    fn key_value(&mut self) -> Option<KeyValue> {
        if let Some(kv) = self.compact_key_value() {
            return Some(kv);
        }
        self.record(|r, out: &mut KeyValue, key| {
            Some(Some(match key {
                "key" => {
                    out.key = r.text()?;
                    0
                }
                "value" => {
                    out.value = r.any_value()?;
                    1
                }
                _ => return Some(None),
            }))
        })
    }

    /// An attribute as the SDKs and the Collector write nearly all of them, byte for byte
    /// `{"key":"k","value":{"stringValue":"v"}}` (or `"intValue":"7"`, `"boolValue":true`)
    /// without an escape or a space, read by comparing its fixed parts where the general
    /// path finds, matches and checks each key (most of a span's reading: a GenAI span holds
    /// about a dozen). What [`Reader::key_value`] would make of the same text; `None`, the
    /// reader unmoved, for any other.
    fn compact_key_value(&mut self) -> Option<KeyValue> {
        let (b, text) = (self.b, self.text);
        let rest = |i: usize| b.get(i..).unwrap_or_default();
        let mut i = self.i;
        if !rest(i).starts_with(br#"{"key":""#) {
            return None;
        }
        let end = string_end(b, i + 8)?;
        let key = &text[i + 8..end];
        i = end;
        if !rest(i).starts_with(br#"","value":{""#) {
            return None;
        }
        i += 12;
        // A string's text, from `i` past the quote that opens it to the quote that closes it.
        let string = |i: usize| string_end(b, i).map(|end| (&text[i..end], end + 1));
        let value = if rest(i).starts_with(br#"stringValue":""#) {
            let (v, end) = string(i + 14)?;
            i = end;
            Value::String(InlineText::from(v))
        } else if rest(i).starts_with(br#"intValue":""#) {
            let (v, end) = string(i + 11)?;
            i = end;
            Value::Int(i64::try_from(v.parse::<i128>().ok()?).ok()?)
        } else if rest(i).starts_with(br#"boolValue":true"#) {
            i += 15;
            Value::Bool(true)
        } else if rest(i).starts_with(br#"boolValue":false"#) {
            i += 16;
            Value::Bool(false)
        } else {
            return None;
        };
        if !rest(i).starts_with(b"}}") {
            return None;
        }
        self.i = i + 2;
        Some(KeyValue { key: InlineText::from(key), value })
    }

    /// An `AnyValue` (`null` is [`Value::Empty`]), as the model's visitor reads it: keys that
    /// give no value (`null`, unknown ones) are passed over, and a second value refuses it.
    fn any_value(&mut self) -> Option<Value> {
        let mut out = Value::Empty;
        if self.null() {
            return Some(out);
        }
        self.object(|r, key| {
            let v = match key {
                "stringValue" | "string_value" => {
                    r.string()?.map(|s| Value::String(InlineText::from(&*s)))
                }
                "boolValue" | "bool_value" => match r.scalar()?.1 {
                    Kind::True => Some(Value::Bool(true)),
                    Kind::False => Some(Value::Bool(false)),
                    Kind::Null => None,
                    _ => return None,
                },
                "intValue" | "int_value" => match r.int()? {
                    Some(v) => Some(Value::Int(i64::try_from(v).ok()?)),
                    None => None,
                },
                "doubleValue" | "double_value" => {
                    let (raw, _) = r.scalar()?;
                    by_serde(raw, |d| DoubleSeed.deserialize(d))?.map(Value::Double)
                }
                "arrayValue" | "array_value" => {
                    r.optional(|r| r.values(Self::any_value))?.map(Value::Array)
                }
                "kvlistValue" | "kvlist_value" => {
                    r.optional(|r| r.values(Self::key_value))?.map(Value::Kvlist)
                }
                "bytesValue" | "bytes_value" => match r.string()? {
                    Some(s) => Some(Value::Bytes(base64_decode(&s)?)),
                    None => None,
                },
                _ => {
                    r.skip()?;
                    None
                }
            };
            if let Some(v) = v {
                if !matches!(out, Value::Empty) {
                    return None;
                }
                out = v;
            }
            Some(())
        })?;
        Some(out)
    }

    /// `{"values": [...]}` of an array or kvlist value, each value read by `item`.
    fn values<T>(&mut self, mut item: impl FnMut(&mut Self) -> Option<T>) -> Option<Vec<T>> {
        self.record(|r, out: &mut Vec<T>, key| {
            if key != "values" {
                return Some(None);
            }
            *out = r.list(0, &mut item)?;
            Some(Some(0))
        })
    }
}

/// Whether `raw`, an integer's text, is one read here: at most 18 digits (no overflow), and
/// not `-0` (which serde_json reads as a double).
fn short_integer(raw: &str) -> bool {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    digits.len() <= 18 && raw != "-0"
}

/// `read` on a serde_json reader of `raw`, one value's text alone: the value as a document
/// holding it would give it.
fn by_serde<T>(
    raw: &str,
    read: impl FnOnce(
        &mut serde_json::Deserializer<serde_json::de::StrRead<'_>>,
    ) -> serde_json::Result<T>,
) -> Option<T> {
    let mut d = serde_json::Deserializer::from_str(raw);
    let v = read(&mut d).ok()?;
    d.end().ok()?;
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::super::fixtures::STRANDS;
    use super::*;

    /// The flat reading of `text`, checked against serde_json's wherever it gives one.
    fn agree(text: &str) -> Option<(Request, bool)> {
        assert!(agrees(text), "{text}");
        request(text)
    }

    /// `text` is read flat, as serde_json reads it.
    fn flat(text: &str) -> Request {
        agree(text).unwrap_or_else(|| panic!("not read flat: {text}")).0
    }

    /// `text` is left to serde_json, which gives `serde` (`Ok` when it reads a request).
    fn left(text: &str, serde: bool) {
        assert!(agree(text).is_none(), "read flat: {text}");
        assert_eq!(serde_json::from_str::<Request>(text).is_ok(), serde, "{text}");
    }

    /// `spans` as the only scope's spans of a request.
    fn with_spans(spans: &str) -> String {
        format!(r#"{{"resourceSpans":[{{"scopeSpans":[{{"spans":[{spans}]}}]}}]}}"#)
    }

    /// An attribute of value `value`, in a span.
    fn with_value(value: &str) -> String {
        with_spans(&format!(r#"{{"attributes":[{{"key":"k","value":{value}}}]}}"#))
    }

    #[test]
    fn the_strands_trace_is_read_flat_as_serde_json_reads_it() {
        let req = flat(STRANDS);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans.len(), 7);
        assert!(spans.iter().all(|s| s.trace_id.len() == 32 && !s.attributes.is_empty()));
        // Its events, links and content attributes are skipped or held as serde_json holds
        // them; one line of it, and with spaces and line breaks between its tokens.
        let line: serde_json::Value = serde_json::from_str(STRANDS).unwrap();
        let compact = line.to_string();
        let pretty = serde_json::to_string_pretty(&line).unwrap();
        assert_eq!(format!("{:?}", flat(&compact)), format!("{req:?}"));
        assert_eq!(format!("{:?}", flat(&format!(" \r\n{pretty}\t\n"))), format!("{req:?}"));
    }

    #[test]
    fn every_field_is_read_flat_in_each_spelling_the_model_takes() {
        let span = r#"{"trace_id":"5B8EFFF798038103D269B633813FC60C","span_id":"EEE19B7EC3C1B174",
            "parentSpanId":null,"traceState":"a=b","flags":257,"name":"chat","kind":"SPAN_KIND_CLIENT",
            "start_time_unix_nano":"1790841600000000000","endTimeUnixNano":1790841601000000000,
            "droppedAttributesCount":"2","dropped_events_count":3,"droppedLinksCount":null,
            "status":{"message":"bad","code":"STATUS_CODE_ERROR","extra":[1,{"a":null}]},
            "events":[{"name":"x","attributes":[{"key":"gen_ai.prompt","value":{"stringValue":"Jane \"Doe\""}}]}],
            "links":[],"attributes":[
              {"key":"s","value":{"stringValue":"caf\u00e9 \ud83d\ude00 \\"}},
              {"key":"b","value":{"boolValue":false}},
              {"key":"i","value":{"int_value":"-9223372036854775808"}},
              {"key":"j","value":{"intValue":12345678901234567}},
              {"key":"d","value":{"doubleValue":0.1}},
              {"key":"e","value":{"doubleValue":"NaN"}},
              {"key":"f","value":{"doubleValue":1e300}},
              {"key":"a","value":{"arrayValue":{"values":[{"intValue":"1"},null,{}]}}},
              {"key":"l","value":{"kvlistValue":{"values":[{"key":"x","value":{"boolValue":true}}]}}},
              {"key":"y","value":{"bytesValue":"AQID"}},
              {"key":"n","value":{"stringValue":null,"intValue":"7","other":{}}},
              {"key":"z","value":null},{"key":null},{}]}"#;
        let text = format!(
            r#"{{"resource_spans":[{{"resource":{{"attributes":[{{"key":"tier","value":{{"stringValue":"basic"}}}}],"dropped_attributes_count":0}},
            "schema_url":"u","scopeSpans":[{{"scope":{{"name":"s","version":"1","attributes":null,"droppedAttributesCount":1}},
            "schemaUrl":null,"spans":[{span},{{}}]}},{{"scope":null,"spans":null}}]}},{{}}],"unknown":{{"deep":[[[]]]}}}}"#
        );
        let req = flat(&text);
        let spans = &req.resource_spans[0].scope_spans[0].spans;
        assert_eq!(spans[0].trace_id.as_str(), "5b8efff798038103d269b633813fc60c");
        assert_eq!((spans[0].kind, spans[0].status.as_ref().map(|s| s.code)), (3, Some(2)));
        assert_eq!(spans[0].start_time_unix_nano, 1_790_841_600_000_000_000);
        assert_eq!(spans[0].attributes.len(), 14);
        assert_eq!(spans[0].attributes[0].value, Value::String("café 😀 \\".into()));
        assert_eq!(spans[0].attributes[2].value, Value::Int(i64::MIN));
        assert_eq!(spans[0].attributes[9].value, Value::Bytes(vec![1, 2, 3]));
        assert_eq!(spans[0].attributes[10].value, Value::Int(7));
        assert_eq!(spans[1], Span::default());
        // A top-level `event` or quarantine marker is said, as serde_json's reading says it.
        let (_, other) = agree(r#"{"event":"inference_usage","resourceSpans":[]}"#).unwrap();
        assert!(other);
        let (_, other) =
            agree(r#"{"agentmeter_quarantine":{"a":1},"resourceSpans":null}"#).unwrap();
        assert!(other);
        assert_eq!(flat("{}"), Request::default());
    }

    #[test]
    fn a_compact_attribute_is_read_as_any_other() {
        let text = with_spans(concat!(
            r#"{"attributes":[{"key":"s","value":{"stringValue":"v"}},"#,
            r#"{"key":"i","value":{"intValue":"-42"}},{"key":"t","value":{"boolValue":true}},"#,
            r#"{"key":"f","value":{"boolValue":false}},{"key":"","value":{"stringValue":""}},"#,
            r#"{"key":"e","value":{"stringValue":"a\"b"}},{"key":"n","value":{"intValue":"007"}},"#,
            r#"{"key":"x","value":{"stringValue":"v"},"other":1},{"key":"d","value":{"doubleValue":1}}]}"#,
        ));
        let req = flat(&text);
        let values: Vec<_> = req.resource_spans[0].scope_spans[0].spans[0]
            .attributes
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.clone()))
            .collect();
        assert_eq!(
            values,
            [
                ("s", Value::String("v".into())),
                ("i", Value::Int(-42)),
                ("t", Value::Bool(true)),
                ("f", Value::Bool(false)),
                ("", Value::String("".into())),
                ("e", Value::String("a\"b".into())),
                ("n", Value::Int(7)),
                ("x", Value::String("v".into())),
                ("d", Value::Double(1.0)),
            ]
        );
        // Which of them the compact reading takes, and where it leaves the reader.
        let compact = |text: &str| {
            let mut r = Reader { text, b: text.as_bytes(), i: 0, depth: 0 };
            r.compact_key_value().map(|kv| (kv, r.i))
        };
        let s = r#"{"key":"s","value":{"stringValue":"v"}},"#;
        assert_eq!(
            compact(s),
            Some((KeyValue { key: "s".into(), value: Value::String("v".into()) }, s.len() - 1))
        );
        assert!(compact(r#"{"key":"t","value":{"boolValue":true}}"#).is_some());
        assert!(compact(r#"{"key":"i","value":{"intValue":"-42"}}"#).is_some());
        for general in [
            r#"{"key":"e","value":{"stringValue":"a"b"}}"#,
            r#"{"key":"x","value":{"stringValue":"v"},"other":1}"#,
            r#"{"key":"d","value":{"doubleValue":1}}"#,
            r#"{"value":{"stringValue":"v"},"key":"s"}"#,
            r#"{ "key":"s","value":{"stringValue":"v"}}"#,
        ] {
            assert_eq!(compact(general), None, "{general}");
        }
        // Near the compact shape, refused by serde_json: a second value, a second key, an
        // integer out of range or not one, a control character.
        left(&with_value(r#"{"stringValue":"v","intValue":"1"}"#), false);
        left(
            &with_spans(r#"{"attributes":[{"key":"a","value":{"stringValue":"v"},"key":"b"}]}"#),
            false,
        );
        left(&with_value(r#"{"intValue":"9223372036854775808"}"#), false);
        left(&with_value(r#"{"intValue":"7 "}"#), false);
        left(&with_value("{\"stringValue\":\"\u{7}\"}"), false);
        left(&with_value(r#"{"boolValue":truth}"#), false);
    }

    #[test]
    fn what_it_does_not_take_is_left_to_serde_json() {
        // Duplicate fields, and a second value of an attribute: serde_json refuses them.
        left(r#"{"resourceSpans":[],"resource_spans":[]}"#, false);
        left(&with_spans(r#"{"traceId":"aa","trace_id":"bb"}"#), false);
        left(&with_value(r#"{"stringValue":"a","intValue":"1"}"#), false);
        // Out of range, not an integer, not a known enum: refused.
        left(&with_spans(r#"{"flags":4294967296}"#), false);
        left(&with_spans(r#"{"flags":"-1"}"#), false);
        left(&with_spans(r#"{"kind":"SPAN_KIND_NONE"}"#), false);
        left(&with_spans(r#"{"kind":2147483648}"#), false);
        left(&with_spans(r#"{"kind":1.5}"#), false);
        left(&with_value(r#"{"intValue":"9223372036854775808"}"#), false);
        left(&with_value(r#"{"intValue":"1.5"}"#), false);
        left(&with_value(r#"{"bytesValue":"not base64!"}"#), false);
        left(&with_value(r#"{"boolValue":"true"}"#), false);
        left(&with_value(r#""text""#), false);
        // Not JSON: a control character in a string, a bad escape, trailing text, a bad number.
        left(&with_spans("{\"name\":\"a\u{1}b\"}"), false);
        left(&with_spans(r#"{"name":"\x"}"#), false);
        left(&format!("{} x", with_spans("")), false);
        left(&with_spans(r#"{"flags":01}"#), false);
        left(&with_spans(r#"{"events":[1.]}"#), false);
        // Nested past this reader's depth, in a skipped value (which serde_json skips at
        // any depth).
        let deep = |n| with_spans(&format!(r#"{{"events":{}{}}}"#, "[".repeat(n), "]".repeat(n)));
        assert!(agree(&deep(57)).is_some());
        left(&deep(58), true);
        left(&deep(130), true);
        // Taken by serde_json, not here: an escaped key, a struct as an array, an integer
        // as `-0`, 1e3 or past 18 digits where the model reads it itself.
        left(&with_spans(r#"{"n\u0061me":"chat"}"#), true);
        left(r#"{"resourceSpans":[[null,[],"u"]]}"#, true);
        // `-0` is a double to serde_json: an integer to the model, no enum value.
        assert_eq!(flat(&with_spans(r#"{"flags":-0}"#)).resource_spans.len(), 1);
        left(&with_spans(r#"{"kind":-0}"#), false);
        let big = flat(&with_spans(
            r#"{"startTimeUnixNano":1e3,"endTimeUnixNano":18446744073709551615}"#,
        ));
        let span = &big.resource_spans[0].scope_spans[0].spans[0];
        assert_eq!((span.start_time_unix_nano, span.end_time_unix_nano), (1000, u64::MAX));
    }
}
