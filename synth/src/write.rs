//! Text of the records (usage objects, logger shapes, log events, payloads) and the writers of
//! the four kinds of input file.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use agentmeter_schemas::SkipKind;
use flate2::Compression;
use flate2::write::GzEncoder;
use serde_json::{Map, Value};

use super::plan::Rng;

/// A JSON value of a generated object.
#[derive(Debug, Clone)]
pub(crate) enum Val {
    S(String),
    I(i64),
    /// JSON written as is (an array or object).
    Raw(String),
}

/// A JSON object with its keys in writing order.
#[derive(Debug, Clone, Default)]
pub(crate) struct Obj(pub Vec<(&'static str, Val)>);

/// Appends `s` as a JSON string.
pub(crate) fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') {
        out.push('"');
        out.push_str(s);
        out.push('"');
    } else {
        out.push_str(&Value::String(s.to_owned()).to_string());
    }
}

/// `s` as a JSON string.
pub(crate) fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    push_json_str(&mut out, s);
    out
}

impl Obj {
    pub(crate) fn push(&mut self, key: &'static str, v: Val) {
        self.0.push((key, v));
    }

    fn push_value(out: &mut String, v: &Val) {
        match v {
            Val::S(s) => push_json_str(out, s),
            Val::I(i) => out.push_str(&i.to_string()),
            Val::Raw(r) => out.push_str(r),
        }
    }

    /// `{"k":v,...}`, as loggers write it.
    pub(crate) fn compact(&self) -> String {
        let mut out = String::with_capacity(320);
        out.push('{');
        for (i, (k, v)) in self.0.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            push_json_str(&mut out, k);
            out.push(':');
            Self::push_value(&mut out, v);
        }
        out.push('}');
        out
    }

    /// `{ "k": v, ... }` with the keys in `order` (a permutation of the indices): the same
    /// object as [`Obj::compact`] to any JSON reader, but different bytes.
    pub(crate) fn spaced(&self, order: &[usize]) -> String {
        let mut out = String::with_capacity(360);
        out.push_str("{ ");
        for (n, &i) in order.iter().enumerate() {
            let (k, v) = &self.0[i];
            if n > 0 {
                out.push_str(", ");
            }
            push_json_str(&mut out, k);
            out.push_str(": ");
            Self::push_value(&mut out, v);
        }
        out.push_str(" }");
        out
    }

    pub(crate) fn to_map(&self) -> Map<String, Value> {
        self.0
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    Val::S(s) => Value::String(s.clone()),
                    Val::I(i) => Value::from(*i),
                    Val::Raw(r) => serde_json::from_str(r).unwrap_or(Value::Null),
                };
                ((*k).to_owned(), v)
            })
            .collect()
    }
}

/// How a logger wrote a JSON line into a CloudWatch message (FORMATS.md section 3).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Shape {
    /// `print(json.dumps(x))`: the bare object.
    Bare,
    /// Lambda Python text format: `[INFO]\t<time>\t<request id>\t<json>\n`.
    LambdaText,
    /// Other Lambda runtimes: `<time>\t<request id>\tINFO\t<json>\n`.
    Node,
    /// Python `logging` default format: `INFO:root:<json>`.
    Python,
    /// Lambda JSON log format: the JSON text is the string `message` of a JSON record.
    LambdaJson,
}

impl Shape {
    pub(crate) fn pick(rng: &mut Rng) -> Shape {
        match rng.below(100) {
            0..25 => Shape::Bare,
            25..55 => Shape::LambdaText,
            55..65 => Shape::Node,
            65..80 => Shape::Python,
            _ => Shape::LambdaJson,
        }
    }

    /// The message text holding `body` (a JSON text or plain text).
    pub(crate) fn wrap(self, body: &str, iso: &str, request_id: &str) -> String {
        match self {
            Shape::Bare => body.to_owned(),
            Shape::LambdaText => format!("[INFO]\t{iso}\t{request_id}\t{body}\n"),
            Shape::Node => format!("{iso}\t{request_id}\tINFO\t{body}\n"),
            Shape::Python => format!("INFO:root:{body}"),
            Shape::LambdaJson => {
                let mut out = String::with_capacity(body.len() + 160);
                out.push_str("{\"timestamp\":\"");
                out.push_str(iso);
                out.push_str("\",\"level\":\"INFO\",\"message\":");
                push_json_str(&mut out, body);
                out.push_str(",\"logger\":\"root\",\"requestId\":\"");
                out.push_str(request_id);
                out.push_str("\"}");
                out
            }
        }
    }
}

const PLAIN: [&str; 8] = [
    "Cold start: loaded 14 tools in 812 ms",
    "Tool lookup_schedule finished in 231 ms",
    "Retrying model call after ThrottlingException (attempt 2)",
    "Session closed by user",
    "Guardrail check passed",
    "Memory store: 3 records retrieved",
    "Tool search_formulary finished in 88 ms",
    "Streaming response completed",
];

const OTHER_EVENTS: [&str; 4] = ["agent_started", "tool_call", "agent_finished", "session_resumed"];

/// A log message that is not usage, and how the decoder skips it.
pub(crate) fn skip_message(
    rng: &mut Rng,
    iso: &str,
    request_id: &str,
    tier: &str,
    tenant: &str,
) -> (String, SkipKind) {
    let plain = *rng.pick(&PLAIN);
    let name = *rng.pick(&OTHER_EVENTS);
    let other = || {
        format!(
            "{{\"event\":\"{name}\",\"tier\":\"{tier}\",\"clinic_id\":\"{tenant}\",\"request_id\":\"{request_id}\"}}"
        )
    };
    match rng.below(9) {
        0 => (format!("START RequestId: {request_id} Version: $LATEST\n"), SkipKind::PlatformLine),
        1 => (format!("END RequestId: {request_id}\n"), SkipKind::PlatformLine),
        2 => {
            let ms = rng.range(40_000, 900_000);
            let mem = rng.range(90, 400);
            let msg = format!(
                "REPORT RequestId: {request_id}\tDuration: {}.{:02} ms\tBilled Duration: {} ms\tMemory Size: 512 MB\tMax Memory Used: {mem} MB\t\n",
                ms / 100,
                ms % 100,
                ms / 100 + 1
            );
            (msg, SkipKind::PlatformLine)
        }
        3 => (plain.to_owned(), SkipKind::NonJsonMessage),
        4 => (Shape::LambdaText.wrap(plain, iso, request_id), SkipKind::NonJsonMessage),
        5 => (Shape::Python.wrap(&other(), iso, request_id), SkipKind::OtherEvent),
        6 => (Shape::LambdaJson.wrap(plain, iso, request_id), SkipKind::NonJsonMessage),
        7 => {
            let ms = rng.range(2, 900);
            let msg =
                format!("{{\"level\":\"DEBUG\",\"msg\":\"model latency\",\"latency_ms\":{ms}}}");
            (msg, SkipKind::OtherEvent)
        }
        _ => (Shape::LambdaJson.wrap(&other(), iso, request_id), SkipKind::OtherEvent),
    }
}

/// A CloudWatch log event object, as in subscription payloads and exports.
pub(crate) fn log_event(id: &str, ts_ms: i64, message: &str) -> String {
    let mut out = String::with_capacity(message.len() + 110);
    out.push_str("{\"id\":\"");
    out.push_str(id);
    out.push_str("\",\"timestamp\":");
    out.push_str(&ts_ms.to_string());
    out.push_str(",\"message\":");
    push_json_str(&mut out, message);
    out.push('}');
    out
}

/// A DATA_MESSAGE subscription payload around log events (already JSON).
pub(crate) fn data_message(group: &str, stream: &str, events: &[String]) -> String {
    let len: usize = events.iter().map(|e| e.len() + 1).sum();
    let mut out = String::with_capacity(len + 200);
    out.push_str("{\"messageType\":\"DATA_MESSAGE\",\"owner\":\"123456789012\",\"logGroup\":");
    push_json_str(&mut out, group);
    out.push_str(",\"logStream\":");
    push_json_str(&mut out, stream);
    out.push_str(",\"subscriptionFilters\":[\"agentmeter-usage\"],\"logEvents\":[");
    for (i, e) in events.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(e);
    }
    out.push_str("]}");
    out
}

/// The health check CloudWatch Logs sends to a new destination.
pub(crate) fn control_message(ts_ms: i64) -> String {
    format!(
        "{{\"messageType\":\"CONTROL_MESSAGE\",\"owner\":\"CloudwatchLogs\",\"logGroup\":\"\",\"logStream\":\"\",\"subscriptionFilters\":[],\"logEvents\":[{{\"id\":\"\",\"timestamp\":{ts_ms},\"message\":\"CWL CONTROL MESSAGE: Checking health of destination Firehose.\"}}]}}"
    )
}

/// One gzip member at level 6, as CloudWatch Logs compresses subscription data.
pub(crate) fn gzip(data: &[u8]) -> io::Result<Vec<u8>> {
    let mut e = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::new(6));
    e.write_all(data)?;
    e.finish()
}

fn create(path: &Path) -> io::Result<BufWriter<File>> {
    Ok(BufWriter::with_capacity(256 << 10, File::create(path)?))
}

/// A plain NDJSON file, with copies of some lines to repeat further down.
pub(crate) struct Ndjson {
    w: BufWriter<File>,
    /// Non-blank lines written.
    pub lines: u64,
    /// Copies to write once `lines` reaches their due count.
    pub later: Vec<(u64, String)>,
}

impl Ndjson {
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        Ok(Self { w: create(path)?, lines: 0, later: Vec::new() })
    }

    /// Writes one line, then any copies now due.
    pub(crate) fn line(&mut self, bytes: &[u8], crlf: bool) -> io::Result<()> {
        self.raw_line(bytes, crlf)?;
        while let Some(i) = self.later.iter().position(|(due, _)| *due <= self.lines) {
            let (_, copy) = self.later.swap_remove(i);
            self.raw_line(copy.as_bytes(), false)?;
        }
        Ok(())
    }

    fn raw_line(&mut self, bytes: &[u8], crlf: bool) -> io::Result<()> {
        self.w.write_all(bytes)?;
        self.w.write_all(if crlf { b"\r\n" } else { b"\n" })?;
        self.lines += 1;
        Ok(())
    }

    /// A blank line (not a record).
    pub(crate) fn blank(&mut self, text: &str) -> io::Result<()> {
        self.w.write_all(text.as_bytes())?;
        self.w.write_all(b"\n")
    }

    /// Writes the copies still pending, in due order, and closes the file.
    pub(crate) fn finish(mut self) -> io::Result<()> {
        let mut later = std::mem::take(&mut self.later);
        later.sort_by_key(|(due, _)| *due);
        for (_, copy) in later {
            self.raw_line(copy.as_bytes(), false)?;
        }
        self.w.flush()
    }
}

/// A gzip NDJSON file of CloudWatch log events (an export of a log group).
pub(crate) struct CwExport {
    w: GzEncoder<BufWriter<File>>,
    pub lines: u64,
}

impl CwExport {
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        Ok(Self { w: GzEncoder::new(create(path)?, Compression::new(6)), lines: 0 })
    }

    pub(crate) fn line(&mut self, text: &str) -> io::Result<()> {
        self.w.write_all(text.as_bytes())?;
        self.w.write_all(b"\n")?;
        self.lines += 1;
        Ok(())
    }

    pub(crate) fn finish(self) -> io::Result<()> {
        self.w.finish()?.flush()
    }
}

/// A Firehose object: concatenated gzip members.
pub(crate) struct FirehoseFile {
    w: BufWriter<File>,
    pub members: u64,
}

impl FirehoseFile {
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        Ok(Self { w: create(path)?, members: 0 })
    }

    pub(crate) fn member(&mut self, gz: &[u8]) -> io::Result<()> {
        self.members += 1;
        self.w.write_all(gz)
    }

    pub(crate) fn finish(mut self) -> io::Result<()> {
        self.w.flush()
    }
}

/// An `aws logs filter-log-events` output document, written event by event.
pub(crate) struct FilterLogEvents {
    w: BufWriter<File>,
    pub events: u64,
}

impl FilterLogEvents {
    pub(crate) fn create(path: &Path) -> io::Result<Self> {
        let mut w = create(path)?;
        w.write_all(b"{\n    \"events\": [")?;
        Ok(Self { w, events: 0 })
    }

    pub(crate) fn event(
        &mut self,
        stream: &str,
        ts_ms: i64,
        message: &str,
        ingestion_ms: i64,
        id: &str,
    ) -> io::Result<()> {
        let sep = if self.events == 0 { "" } else { "," };
        write!(
            self.w,
            "{sep}\n        {{\n            \"logStreamName\": {},\n            \"timestamp\": {ts_ms},\n            \"message\": {},\n            \"ingestionTime\": {ingestion_ms},\n            \"eventId\": \"{id}\"\n        }}",
            json_str(stream),
            json_str(message)
        )?;
        self.events += 1;
        Ok(())
    }

    pub(crate) fn finish(mut self) -> io::Result<()> {
        if self.events > 0 {
            self.w.write_all(b"\n    ")?;
        }
        self.w.write_all(b"],\n    \"searchedLogStreams\": []\n}\n")?;
        self.w.flush()
    }
}

/// A pretty JSON document in no format the ingest reads (notes left next to an export).
pub(crate) fn notes_document(month: &str) -> String {
    format!(
        "{{\n    \"description\": \"Backfill notes for {month}: exports of the agent log groups\",\n    \"exportedBy\": \"ops@example.com\",\n    \"logGroups\": [\n        \"/aws/lambda/clinic-agent-basic\",\n        \"/aws/lambda/clinic-agent-premium\"\n    ],\n    \"nextToken\": null\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compact_and_spaced_are_the_same_object() {
        let mut o = Obj::default();
        o.push("a", Val::S("x\"y".into()));
        o.push("b", Val::I(-3));
        let a: Value = serde_json::from_str(&o.compact()).unwrap();
        let b: Value = serde_json::from_str(&o.spaced(&[1, 0])).unwrap();
        assert_eq!(a, b);
        assert_ne!(o.compact(), o.spaced(&[0, 1]));
    }

    #[test]
    fn lambda_json_shape_nests_the_text() {
        let m = Shape::LambdaJson.wrap("{\"a\":1}", "2026-10-01T00:00:00.000Z", "r");
        let v: Value = serde_json::from_str(&m).unwrap();
        assert_eq!(v["message"], "{\"a\":1}");
    }
}
