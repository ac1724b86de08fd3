//! The OTLP JSON text of generated spans, as the OpenTelemetry Collector's file exporter writes
//! it: one `ExportTraceServiceRequest` per line, ids in lower-case hex, 64-bit integers as
//! decimal strings, enums as integers (FORMATS.md section 4.1).

use super::plan::Rng;
use super::write::push_json_str;

/// Instrumentation scope of every generated span (Strands Agents' tracer).
pub(super) const SCOPE: &str = "strands.telemetry.tracer";
/// The agent's name (`invoke_agent <name>`).
pub(super) const AGENT: &str = "clinic-assistant";
/// The tools the agent has, and their share of tool calls in percent.
pub(super) const TOOLS: [(&str, u64); 6] = [
    ("search_documents", 35),
    ("patient_context", 25),
    ("clinic_config", 15),
    ("web_search", 10),
    ("lookup_schedule", 10),
    ("search_formulary", 5),
];
/// `gen_ai.agent.tools`: the tool names as the JSON text Strands stores.
const AGENT_TOOLS: &str = "[\"search_documents\", \"patient_context\", \"clinic_config\", \
                           \"web_search\", \"lookup_schedule\", \"search_formulary\"]";
/// In every fake patient note (span events only), so that tests can look for it.
pub(crate) const NOTE_MARK: &str = "MRN ";

/// A tool picked by its share of calls.
pub(super) fn pick_tool(rng: &mut Rng) -> &'static str {
    let mut x = rng.below(100);
    for (name, share) in TOOLS {
        if x < share {
            return name;
        }
        x -= share;
    }
    TOOLS[0].0
}

/// A Bedrock-style tool use id: `tooluse_` and 22 characters.
pub(super) fn tool_call_id(rng: &mut Rng) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut s = String::with_capacity(30);
    s.push_str("tooluse_");
    let mut bits = 0u64;
    for i in 0..22 {
        if i % 10 == 0 {
            bits = rng.u64();
        }
        s.push(char::from(ALPHABET[(bits & 63) as usize]));
        bits >>= 6;
    }
    s
}

const FIRST: [&str; 12] = [
    "Maria", "James", "Aisha", "Wei", "Olga", "Kofi", "Lucia", "Arjun", "Hannah", "Mateo", "Yuki",
    "Fatima",
];
const LAST: [&str; 12] = [
    "Okafor", "Novak", "Tanaka", "Silva", "Haddad", "Jensen", "Moreau", "Petrov", "Mendes",
    "Larsen", "Alvarez", "Berg",
];
const COMPLAINTS: [&str; 6] = [
    "chest pain since Tuesday",
    "shortness of breath on exertion",
    "recurrent migraines, worse at night",
    "swelling in the left ankle after a fall",
    "persistent cough for three weeks",
    "dizziness after starting a new medication",
];
const MEDS: [&str; 6] = [
    "metoprolol 25 mg",
    "metformin 500 mg",
    "lisinopril 10 mg",
    "atorvastatin 20 mg",
    "sertraline 50 mg",
    "warfarin 5 mg",
];

/// The `exception` event of a failing tool: its type and message carry a (fake) patient note,
/// as a tool's error text would, which a metering pipeline must never keep.
pub(super) struct Exception {
    pub time_ns: u64,
    pub kind: &'static str,
    pub message: String,
}

impl Exception {
    pub(super) fn new(rng: &mut Rng, tool: &str, time_ns: u64) -> Self {
        let name = format!("{} {}", rng.pick(&FIRST), rng.pick(&LAST));
        let (y, m, d) = (rng.range(1931, 2012), rng.range(1, 12), rng.range(1, 28));
        let mrn = rng.range(1_000_000, 9_999_999);
        let complaint = rng.pick(&COMPLAINTS);
        let med = rng.pick(&MEDS);
        let kind = if rng.chance(500) { "TimeoutError" } else { "ToolExecutionError" };
        let message = format!(
            "{tool} failed on the chart of {name} (DOB {y}-{m:02}-{d:02}, {NOTE_MARK}{mrn}): note \
             reads \"Pt reports {complaint}; on {med}; allergic to penicillin\""
        );
        Self { time_ns, kind, message }
    }
}

/// The text of one span, written field by field.
pub(super) struct SpanJson {
    out: String,
    attrs: usize,
}

/// Ids and times of a span.
pub(super) struct SpanHead<'a> {
    pub trace_id: &'a str,
    pub span_id: &'a str,
    pub parent: Option<&'a str>,
    pub name: &'a str,
    pub start_ns: u64,
    pub end_ns: u64,
}

fn push_attr_key(out: &mut String, n: &mut usize, key: &str) {
    if *n > 0 {
        out.push(',');
    }
    *n += 1;
    out.push_str("{\"key\":");
    push_json_str(out, key);
    out.push_str(",\"value\":{");
}

fn push_str_attr(out: &mut String, n: &mut usize, key: &str, v: &str) {
    push_attr_key(out, n, key);
    out.push_str("\"stringValue\":");
    push_json_str(out, v);
    out.push_str("}}");
}

fn push_int_attr(out: &mut String, n: &mut usize, key: &str, v: i64) {
    push_attr_key(out, n, key);
    out.push_str("\"intValue\":\"");
    out.push_str(&v.to_string());
    out.push_str("\"}}");
}

impl SpanJson {
    /// Starts a span: ids, name, kind INTERNAL, times, and opens its attributes.
    pub(super) fn new(h: &SpanHead<'_>) -> Self {
        let mut out = String::with_capacity(1400);
        out.push_str("{\"traceId\":\"");
        out.push_str(h.trace_id);
        out.push_str("\",\"spanId\":\"");
        out.push_str(h.span_id);
        if let Some(p) = h.parent {
            out.push_str("\",\"parentSpanId\":\"");
            out.push_str(p);
        }
        out.push_str("\",\"flags\":257,\"name\":");
        push_json_str(&mut out, h.name);
        out.push_str(",\"kind\":1,\"startTimeUnixNano\":\"");
        out.push_str(&h.start_ns.to_string());
        out.push_str("\",\"endTimeUnixNano\":\"");
        out.push_str(&h.end_ns.to_string());
        out.push_str("\",\"attributes\":[");
        Self { out, attrs: 0 }
    }

    /// A string attribute.
    pub(super) fn s(&mut self, key: &str, v: &str) -> &mut Self {
        push_str_attr(&mut self.out, &mut self.attrs, key, v);
        self
    }

    /// An integer attribute.
    pub(super) fn i(&mut self, key: &str, v: i64) -> &mut Self {
        push_int_attr(&mut self.out, &mut self.attrs, key, v);
        self
    }

    /// Token counts in every spelling Strands writes (FORMATS.md appendix B); the cache counts
    /// only when the model reports them.
    pub(super) fn tokens(&mut self, t: &Tok) -> &mut Self {
        self.i("gen_ai.usage.prompt_tokens", t.input)
            .i("gen_ai.usage.input_tokens", t.input)
            .i("gen_ai.usage.completion_tokens", t.output)
            .i("gen_ai.usage.output_tokens", t.output)
            .i("gen_ai.usage.total_tokens", t.total());
        if t.cache {
            self.i("gen_ai.usage.cache_read_input_tokens", t.cache_read)
                .i("gen_ai.usage.cache_read.input_tokens", t.cache_read)
                .i("gen_ai.usage.cache_write_input_tokens", t.cache_write)
                .i("gen_ai.usage.cache_creation.input_tokens", t.cache_write);
        }
        self
    }

    /// `gen_ai.agent.tools` of an `invoke_agent` span.
    pub(super) fn agent_tools(&mut self) -> &mut Self {
        self.s("gen_ai.agent.tools", AGENT_TOOLS)
    }

    /// Closes the span: its `exception` event if any, and its status (OK, or ERROR with a
    /// message free of patient data).
    pub(super) fn finish(mut self, exception: Option<&Exception>) -> String {
        self.out.push_str("],");
        match exception {
            Some(e) => {
                self.out.push_str("\"events\":[{\"timeUnixNano\":\"");
                self.out.push_str(&e.time_ns.to_string());
                self.out.push_str("\",\"name\":\"exception\",\"attributes\":[");
                let mut n = 0;
                push_str_attr(&mut self.out, &mut n, "exception.type", e.kind);
                push_str_attr(&mut self.out, &mut n, "exception.message", &e.message);
                let trace = format!(
                    "Traceback (most recent call last):\n  File \"/var/task/strands/tools/executor.py\", line 212, in _stream\n    result = await tool.stream(tool_use, invocation_state)\n{}: {}",
                    e.kind, e.message
                );
                push_str_attr(&mut self.out, &mut n, "exception.stacktrace", &trace);
                push_str_attr(&mut self.out, &mut n, "exception.escaped", "False");
                self.out.push_str("]}],\"status\":{\"message\":");
                push_json_str(&mut self.out, &format!("{}: the tool call failed", e.kind));
                self.out.push_str(",\"code\":2}}");
            }
            None => self.out.push_str("\"status\":{\"code\":1}}"),
        }
        self.out
    }
}

/// Token counts of one span.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Tok {
    pub input: i64,
    pub output: i64,
    pub cache_read: i64,
    pub cache_write: i64,
    /// The model reports cache counts (they are written, zeros included).
    pub cache: bool,
}

impl Tok {
    pub(super) fn total(&self) -> i64 {
        self.input + self.output + self.cache_read + self.cache_write
    }
}

/// The resource of a group of spans: the agent service of one tenant, or a misconfigured one
/// that sets no tenant.
pub(super) struct Resource<'a> {
    pub service: &'a str,
    pub tier: &'a str,
    pub tenant: Option<&'a str>,
}

/// Appends one `resourceSpans` element: the resource, the Strands scope and its spans (each
/// already JSON).
pub(super) fn push_resource_spans<'s>(
    out: &mut String,
    r: &Resource<'_>,
    spans: impl Iterator<Item = &'s str>,
) {
    out.push_str("{\"resource\":{\"attributes\":[");
    let mut n = 0;
    push_str_attr(out, &mut n, "service.name", r.service);
    push_str_attr(out, &mut n, "telemetry.sdk.language", "python");
    push_str_attr(out, &mut n, "telemetry.sdk.name", "opentelemetry");
    push_str_attr(out, &mut n, "telemetry.sdk.version", "1.45.0");
    push_str_attr(out, &mut n, "tier", r.tier);
    if let Some(t) = r.tenant {
        push_str_attr(out, &mut n, "clinic_id", t);
    }
    out.push_str("]},\"scopeSpans\":[{\"scope\":{\"name\":\"");
    out.push_str(SCOPE);
    out.push_str("\"},\"spans\":[");
    for (i, s) in spans.enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(s);
    }
    out.push_str("]}]}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn a_span_is_otlp_json() {
        let mut rng = Rng::new(1, "t", 0);
        let h = SpanHead {
            trace_id: "0af7651916cd43dd8448eb211c80319c",
            span_id: "b7ad6b7169203331",
            parent: Some("b7ad6b7169203332"),
            name: "execute_tool patient_context",
            start_ns: 1_790_841_600_000_000_001,
            end_ns: 1_790_841_601_000_000_000,
        };
        let mut s = SpanJson::new(&h);
        s.s("tier", "premium").i("n", -3);
        let e = Exception::new(&mut rng, "patient_context", h.end_ns);
        let text = s.finish(Some(&e));
        let v: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["startTimeUnixNano"], "1790841600000000001");
        assert_eq!(v["attributes"][1]["value"]["intValue"], "-3");
        assert_eq!(v["status"]["code"], 2);
        assert!(!v["status"]["message"].as_str().unwrap().contains(NOTE_MARK));
        let msg = v["events"][0]["attributes"][1]["value"]["stringValue"].as_str().unwrap();
        assert!(msg.contains(NOTE_MARK), "{msg}");
        assert_eq!(tool_call_id(&mut rng).len(), 30);
    }
}
