//! CloudWatch Logs shapes: logger prefixes in a message, log events, subscription payloads.
//!
//! The prefix rules follow FORMATS.md section 3.6: a message may be bare JSON, JSON after the
//! Lambda text-format prefix (`[LEVEL]\t<time>\t<request id>\t`, or the Node order
//! `<time>\t<request id>\t<LEVEL>\t`), JSON after a Python `logging` prefix
//! (`LEVEL:logger:`), a Lambda platform line, or plain text.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

/// What a log message holds once its logger prefix is stripped.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Body<'m> {
    /// Text starting with `{`; a JSON object may follow (and text after it).
    Json(&'m str),
    /// A Lambda platform line.
    Platform,
    /// No JSON object in it.
    Text,
}

pub(crate) const LEVELS: [&str; 8] =
    ["TRACE", "DEBUG", "INFO", "WARN", "WARNING", "ERROR", "CRITICAL", "FATAL"];

const PLATFORM: [&str; 7] = [
    "START RequestId:",
    "END RequestId:",
    "REPORT RequestId:",
    "INIT_START",
    "INIT_REPORT",
    "XRAY TraceId:",
    "RUNTIME_DONE",
];

/// After `n` tab-separated fields, the rest of `s`.
fn after_tabs(s: &str, n: usize) -> Option<&str> {
    let mut rest = s;
    for _ in 0..n {
        let i = rest.find('\t')?;
        rest = &rest[i + 1..];
    }
    Some(rest)
}

/// `[LEVEL]\t<time>\t<request id>\t<message>` (Lambda Python text format).
fn lambda_bracket(m: &str) -> Option<&str> {
    let inner = m.strip_prefix('[')?;
    let (level, rest) = inner.split_once("]\t")?;
    if !LEVELS.contains(&level) {
        return None;
    }
    after_tabs(rest, 2)
}

/// `<ISO time>\t<request id>\t<LEVEL>\t<message>` (other Lambda runtimes).
fn lambda_iso(m: &str) -> Option<&str> {
    let b = m.as_bytes();
    let date_like = b.len() > 11
        && b[..4].iter().all(u8::is_ascii_digit)
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T';
    if !date_like {
        return None;
    }
    let mut parts = m.splitn(4, '\t');
    let (_time, _req, level, rest) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
    (!level.is_empty() && level.bytes().all(|c| c.is_ascii_uppercase())).then_some(rest)
}

fn json_or_text(s: &str) -> Body<'_> {
    match s.find('{') {
        Some(i) => Body::Json(&s[i..]),
        None => Body::Text,
    }
}

/// Strips the logger prefix of a CloudWatch message.
pub(crate) fn message_body(message: &str) -> Body<'_> {
    let m = message.trim_end_matches(['\n', '\r']).trim_start();
    if m.starts_with('{') {
        return Body::Json(m);
    }
    if let Some(rest) = lambda_bracket(m).or_else(|| lambda_iso(m)) {
        return json_or_text(rest);
    }
    if PLATFORM.iter().any(|p| m.starts_with(p)) {
        return Body::Platform;
    }
    json_or_text(m)
}

/// A subscription payload (decompressed), with its log events kept as raw JSON so that a bad
/// one can be quarantined byte for byte.
#[derive(Debug, Deserialize)]
pub(crate) struct Payload<'a> {
    #[serde(rename = "messageType", borrow)]
    pub message_type: Cow<'a, str>,
    #[serde(rename = "logEvents", borrow, default)]
    pub log_events: Vec<&'a RawValue>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        let json = r#"{"event":"inference_usage"}"#;
        let trailing = format!("{json} trailing");
        let cases: Vec<(String, Body<'_>)> = vec![
            (format!("{json}\n"), Body::Json(json)),
            (
                format!("[INFO]\t2025-01-31T22:12:58.534Z\t1c8df7d3-aaaa-518e6eca8125\t{json}\n"),
                Body::Json(json),
            ),
            (format!("[WARNING]\t2025-01-31T22:12:58.534Z\t\t{json}\r\n"), Body::Json(json)),
            (format!("2025-01-31T22:12:58.534Z\t1c8df7d3\tINFO\t{json}"), Body::Json(json)),
            (format!("INFO:root:{json}"), Body::Json(json)),
            (format!("INFO:agent.usage:{json} trailing"), Body::Json(&trailing)),
            ("START RequestId: 1c8d Version: $LATEST".into(), Body::Platform),
            ("END RequestId: 1c8d".into(), Body::Platform),
            (
                "REPORT RequestId: 1c8d\tDuration: 2.3 ms\tBilled Duration: 3 ms".into(),
                Body::Platform,
            ),
            ("XRAY TraceId: 1-5".into(), Body::Platform),
            ("tool=search, ok=true | Tool finished".into(), Body::Text),
            ("[INFO]\t2025\treq\tplain text".into(), Body::Text),
        ];
        for (msg, want) in cases {
            assert_eq!(message_body(&msg), want, "{msg:?}");
        }
    }

    #[test]
    fn unknown_bracket_levels_fall_back_to_the_first_brace() {
        assert_eq!(message_body("[NOTE]\ta\tb\tc {\"x\":1}"), Body::Json("{\"x\":1}"));
    }

    #[test]
    fn payload_shape() {
        let p: Payload<'_> = serde_json::from_str(
            r#"{"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s",
            "subscriptionFilters":["f"],"logEvents":[{"id":"1","timestamp":2,"message":"m"}]}"#,
        )
        .unwrap();
        assert_eq!(p.message_type, "DATA_MESSAGE");
        assert_eq!(p.log_events[0].get(), r#"{"id":"1","timestamp":2,"message":"m"}"#);
    }
}
