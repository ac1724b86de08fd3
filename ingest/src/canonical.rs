//! Content-derived ids for records that carry none: the canonical JSON of the record (object
//! keys sorted at every level, serde_json's escapes and number forms), digested. The ids are
//! persisted, so the canonical text must never change for a given input.

use std::borrow::Cow;

use agentmeter_schemas::EventId;

use crate::fields::Name;
use crate::fields::flat::Kind;

/// Canonical JSON (object keys sorted at every level) of `text`, for content-derived ids that
/// do not change with spacing or key order.
pub(crate) fn canonical_json(text: &str) -> Option<String> {
    let mut out = Vec::with_capacity(text.len());
    match flat_members(text) {
        Some(mut members) => write_members(
            &mut members,
            &mut out,
            |m| &m.0,
            |m, out| {
                out.extend_from_slice(m.1.as_bytes());
                Ok(())
            },
        )
        .ok()?,
        None => {
            let tree: Node<'_> = serde_json::from_str(text).ok()?;
            tree.write_canonical(&mut out).ok()?;
        }
    }
    String::from_utf8(out).ok()
}

/// The members of `text` when it is one flat object whose every value is already in its
/// canonical form as written (a string without escapes, an unsigned integer that fits 64 bits,
/// `true`, `false`, `null`): a usage line, whose canonical text is then its members sorted,
/// with no tree built (content ids were 40 % of the instructions of an ingest of lines without
/// ids; BENCHMARKS.md).
/// `None` for anything else, which [`Node`] reads.
fn flat_members(text: &str) -> Option<Vec<(Cow<'_, str>, &str)>> {
    let mut members = Vec::with_capacity(16);
    crate::fields::flat::members(text, true, |key, raw, kind| {
        is_canonical_scalar(raw, kind).then(|| members.push((Cow::Borrowed(key), raw)))
    })?;
    Some(members)
}

/// True when serde_json writes the value `raw`, of `kind` as the flat reading found it, back
/// byte for byte: the reading has told escapes and number forms apart already.
fn is_canonical_scalar(raw: &str, kind: Kind) -> bool {
    match kind {
        Kind::Str | Kind::True | Kind::False | Kind::Null => true,
        // An unsigned integer: up to 19 digits always fit 64 bits; 20 may not.
        Kind::Integer => !raw.starts_with('-') && (raw.len() < 20 || raw.parse::<u64>().is_ok()),
        Kind::Escaped | Kind::Number => false,
    }
}

/// Writes an object's members with keys sorted, the last of repeated keys kept. Each key
/// keeps its own `Cow`: whether it was borrowed says whether it needs an escape.
fn write_members<'c, M>(
    members: &mut [M],
    out: &mut Vec<u8>,
    key: impl Fn(&M) -> &Cow<'c, str>,
    mut value: impl FnMut(&M, &mut Vec<u8>) -> serde_json::Result<()>,
) -> serde_json::Result<()> {
    // A stable sort keeps repeated keys in input order: the last one is the value.
    members.sort_by(|a, b| key(a).cmp(key(b)));
    out.push(b'{');
    for (i, run) in members.chunk_by(|a, b| key(a) == key(b)).enumerate() {
        let last = &run[run.len() - 1];
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key(last))?;
        out.push(b':');
        value(last, out)?;
    }
    out.push(b'}');
    Ok(())
}

/// A JSON value as `serde_json::Value` reads it (the same numbers, the last of repeated keys),
/// but borrowing the input's strings and keeping objects as lists: the canonical form is
/// written without a map or an allocation per key and string (content ids took 4 % of an
/// ingest's CPU for the 5 % of lines without an id; BENCHMARKS.md).
enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Node<'_> {
    /// Writes the value with object keys sorted at every level. Keys and scalars are written
    /// by serde_json's own serializer: the bytes `Value::to_string` gives them.
    fn write_canonical(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(b) => serde_json::to_writer(&mut *out, b)?,
            Node::U64(n) => serde_json::to_writer(&mut *out, n)?,
            Node::I64(n) => serde_json::to_writer(&mut *out, n)?,
            Node::F64(n) => serde_json::to_writer(&mut *out, n)?,
            Node::Str(s) => write_str(out, s)?,
            Node::Array(items) => {
                out.push(b'[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    x.write_canonical(out)?;
                }
                out.push(b']');
            }
            Node::Object(members) => {
                let mut refs: Vec<&(Cow<'_, str>, Node<'_>)> = members.iter().collect();
                write_members(&mut refs, out, |m| &m.0, |m, out| m.1.write_canonical(out))?;
            }
        }
        Ok(())
    }
}

/// A string as serde_json writes it. One borrowed from the input held no escape there, so no
/// quote, backslash or control character (serde_json refuses those unescaped): it is written
/// between quotes as is. An unescaped one is scanned for bytes that need an escape again.
// The `Cow` is the point: borrowed means no escape in the input.
#[allow(clippy::ptr_arg)]
fn write_str(out: &mut Vec<u8>, s: &Cow<'_, str>) -> serde_json::Result<()> {
    let plain = match s {
        Cow::Borrowed(_) => true,
        Cow::Owned(s) => s.bytes().all(|b| b >= 0x20 && b != b'"' && b != b'\\'),
    };
    if plain {
        out.push(b'"');
        out.extend_from_slice(s.as_bytes());
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, s.as_ref())
    }
}

impl<'de> serde::Deserialize<'de> for Node<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::I64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        // As `Value`: a float JSON cannot hold is null.
        Ok(if v.is_finite() { Node::F64(v) } else { Node::Null })
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(x) = seq.next_element()? {
            items.push(x);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

/// The content-derived id of a record that carries none: `h:` and 32 hex digits.
pub(crate) fn content_id(text: &str) -> Option<EventId> {
    let canon = canonical_json(text)?;
    let hex = agentmeter_schemas::content_digest_hex(canon.as_bytes());
    EventId::new(["h:", hex.as_str()].concat()).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Content ids are persisted: the canonical text must stay byte for byte what it was
    /// (keys sorted, serde_json's escapes and number forms, the last of duplicate keys).
    #[test]
    fn canonical_text_is_pinned() {
        let text = "{\"z\":[1.50,-0,2e3,18446744073709551615,-9223372036854775808,true,null],\
            \"a\":{\"k\\u00e9\":\"caf\u{e9} \\\"q\\\" \\n\\u0001 \\/\",\"b\":{}},\"d\":1,\"d\":2,\"\":[]}";
        assert_eq!(
            canonical_json(text).unwrap(),
            "{\"\":[],\"a\":{\"b\":{},\"k\u{e9}\":\"caf\u{e9} \\\"q\\\" \\n\\u0001 /\"},\"d\":2,\
             \"z\":[1.5,-0.0,2000.0,18446744073709551615,-9223372036854775808,true,null]}"
        );
        assert_eq!(content_id(text).unwrap().as_str(), "h:6529b684d6d5dbd04ce24665fcb2369c");
    }

    /// The canonical text as it was first written: through a `serde_json::Value`.
    fn canonical_through_value(text: &str) -> Option<String> {
        fn write(v: &serde_json::Value, out: &mut String) {
            match v {
                serde_json::Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    let members: Vec<String> = keys
                        .into_iter()
                        .map(|k| {
                            let mut s = serde_json::to_string(k).unwrap();
                            s.push(':');
                            write(&m[k], &mut s);
                            s
                        })
                        .collect();
                    out.push_str(&format!("{{{}}}", members.join(",")));
                }
                serde_json::Value::Array(a) => {
                    let items: Vec<String> = a
                        .iter()
                        .map(|x| {
                            let mut s = String::new();
                            write(x, &mut s);
                            s
                        })
                        .collect();
                    out.push_str(&format!("[{}]", items.join(",")));
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let mut out = String::new();
        write(&v, &mut out);
        Some(out)
    }

    #[test]
    fn canonical_text_is_the_one_a_json_value_gives() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let cases = [
            r#"{"event":"inference_usage","tier":"basic","input_tokens":3,"request_id":"r-1"}"#,
            r#"{"b":{"y":[{"q":1,"p":2}],"x":null},"a":[],"c":{}}"#,
            r#"{"d":1,"d":{"z":1,"a":2},"e":[1,{"k":2,"k":3}],"d":[3]}"#,
            r#"{"k\u0000":"\ud83d\ude00","k":"\t","\u00e9":"\\\/","é":1}"#,
            // A key unescaped into a quote, in a flat object: written escaped again.
            r#"{"k\"q":"plain","a":1}"#,
            "{\"s\":\"a\\u007fb\\u001fc \u{7f} \\\"\",\"\\\\\":\"\u{1f4a5}\",\"\\u0020\":\"\\b\"}",
            r#"{"n":[0,-0,0.0,-0.0,1e0,1E2,1.5e-7,123456789012345678901234567890]}"#,
            r#"{"n":[9223372036854775807,9223372036854775808,-9223372036854775808]}"#,
            r#"{"n":[-9223372036854775809,18446744073709551616,1.7976931348623157e308]}"#,
            r#"{"n":[5e-324,0.1,0.30000000000000004,-1.0,100,-7,true,false,null]}"#,
            " { \"spaced\" : [ 1 , 2 ] , \"t\" : \"a b\" } ",
            "[1,\"two\",{\"b\":1,\"a\":2}]",
            "\"just a string\"",
            "42",
            deep.as_str(),
            // Not JSON, or not one value: neither reading gives a text.
            "{\"a\":1} trailing",
            "{\"a\":1e400}",
            "{\"a\":}",
            r#"{"a":"\ud800"}"#,
            "",
        ];
        for text in cases {
            assert_eq!(canonical_json(text), canonical_through_value(text), "{text}");
        }
        assert_eq!(canonical_json(&deep), None, "past serde_json's depth limit");
        assert_eq!(
            canonical_json(r#"{"d":1,"d":{"z":1,"a":2}}"#).unwrap(),
            r#"{"d":{"a":2,"z":1}}"#
        );
    }

    /// The canonical text through the tree, the path every value could take.
    fn canonical_through_node(text: &str) -> Option<String> {
        let tree: Node<'_> = serde_json::from_str(text).ok()?;
        let mut out = Vec::new();
        tree.write_canonical(&mut out).ok()?;
        String::from_utf8(out).ok()
    }

    proptest::proptest! {
        // A failure prints its input; no regression file is written (README, "Property tests").
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Objects of every kind of member, repeated and escaped keys among them: the flat
        /// path, when it takes the object, writes what the tree and a `serde_json::Value` write.
        #[test]
        fn the_flat_path_writes_what_the_tree_writes(
            members in proptest::collection::vec((0usize..8, 0usize..14), 0..12),
            spaced in proptest::bool::ANY,
        ) {
            const KEYS: [&str; 8] =
                ["event", "tier", "a", "\\u0061", "k\\\"q", "caf\u{e9}", "", "input_tokens"];
            const VALUES: [&str; 14] = [
                "\"plain\"", "\"esc\\\"aped\\n\"", "\"\\u00e9\"", "0", "812",
                "18446744073709551615", "18446744073709551616", "-7", "1.50", "2e3", "true",
                "null", "{\"b\":1,\"a\":[2]}", "[1,{\"z\":0,\"y\":1}]",
            ];
            let sep = if spaced { " , " } else { "," };
            let body: Vec<String> =
                members.iter().map(|&(k, v)| format!("\"{}\":{}", KEYS[k], VALUES[v])).collect();
            let text = format!("{{{}}}", body.join(sep));
            let fast = flat_members(&text).is_some();
            // Keys with an escape (3, 4) are the tree's to read as well.
            let plain = members
                .iter()
                .all(|&(k, v)| !matches!(k, 3 | 4) && !matches!(v, 1 | 2 | 6 | 7 | 8 | 9 | 12 | 13));
            proptest::prop_assert_eq!(fast, plain, "{}", text);
            let got = canonical_json(&text);
            proptest::prop_assert!(got.is_some(), "{}", text);
            proptest::prop_assert_eq!(&got, &canonical_through_node(&text), "{}", text);
            proptest::prop_assert_eq!(&got, &canonical_through_value(&text), "{}", text);
        }
    }

    #[test]
    fn flat_objects_take_the_flat_path_and_others_do_not() {
        let line = r#"{"event":"inference_usage","tier":"basic","input_tokens":3,"ok":true}"#;
        assert!(flat_members(line).is_some());
        for text in [
            r#"{"a":-1}"#,
            r#"{"a":1.0}"#,
            r#"{"a":"\u0041"}"#,
            r#"{"a":{}}"#,
            r#"{"a":[]}"#,
            r#"{"a":99999999999999999999}"#,
            "[1]",
            "\"s\"",
            r#"{"a":1} x"#,
        ] {
            assert!(flat_members(text).is_none(), "{text}");
        }
        // A control character unescaped is not JSON, in a key or a value, on either path.
        for text in ["{\"a\u{1}\":1}", "{\"a\":\"\u{1f}\"}", "[\"\u{0}\"]", "{\"a\":[\"\u{7}\"]}"] {
            assert_eq!(canonical_json(text), None, "{text:?}");
            assert_eq!(canonical_through_value(text), None, "{text:?}");
        }
    }

    #[test]
    fn content_ids_ignore_spacing_and_key_order() {
        let a = content_id(r#"{"a":1,"b":[{"y":2,"x":1}]}"#).unwrap();
        let b = content_id("{ \"b\" : [ {\"x\":1, \"y\":2} ],\n \"a\":1 }").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, content_id(r#"{"a":2,"b":[{"y":2,"x":1}]}"#).unwrap());
    }
}
