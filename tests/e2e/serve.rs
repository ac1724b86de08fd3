//! `agentmeter serve`, the OTLP/HTTP receiver, as a process: the official OpenTelemetry Python
//! SDK exporting a Strands-shaped trace, then the protocol (JSON, gzip, duplicates, errors,
//! quarantine, bearer token, metrics) through a hand-rolled HTTP/1.1 client. The lake is read
//! back with DuckDB after SIGTERM.

use std::cell::Cell;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::otlp_client::*;
use crate::util::*;

/// Text that only span events carry: it must reach no file of the lake.
const PATIENT_NOTE: &str = "Patient Jane Roe (DOB 1975-05-05) is allergic to penicillin";

/// The OpenTelemetry Python SDK exporting one Strands-shaped agent call (FORMATS.md appendix
/// B) with `OTLPSpanExporter` (protobuf over HTTP) behind a `BatchSpanProcessor` of batches of
/// 4: children end, and are exported, before their `invoke_agent` root, which comes in a
/// later batch. The SDK chooses the ids; the script prints them, the root's times and every
/// export's result as JSON.
const SDK_SCRIPT: &str = r#"
import json, sys
from opentelemetry import trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExportResult
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.trace import Status, StatusCode

endpoint, tier, clinic, user, note = sys.argv[1:6]
batches = []

class Recording(OTLPSpanExporter):
    def export(self, spans):
        result = super().export(spans)
        batches.append({"spans": [s.name for s in spans], "ok": result == SpanExportResult.SUCCESS})
        return result

provider = TracerProvider(resource=Resource.create(
    {"service.name": "clinic-assistant", "tier": tier, "clinic_id": clinic}))
provider.add_span_processor(BatchSpanProcessor(
    Recording(endpoint=endpoint, timeout=10), max_export_batch_size=4, schedule_delay_millis=60000))
tracer = provider.get_tracer("strands.telemetry.tracer")

T0 = 1790845200_000_000_000  # 2026-10-01T09:00:00Z
MS = 1_000_000
actor = f"{tier}-{clinic}-{user}"
model = "us.anthropic.claude-sonnet-4-20250514-v1:0"
created = []

def start(name, op, parent, t, **attrs):
    ctx = trace.set_span_in_context(parent) if parent is not None else None
    a = {"actor_id": actor, "gen_ai.operation.name": op, "gen_ai.system": "strands-agents"}
    a.update(attrs)
    s = tracer.start_span(name, context=ctx, start_time=t, attributes=a)
    created.append(s)
    return s

def usage(i, o, cr):
    return {"gen_ai.usage.input_tokens": i, "gen_ai.usage.prompt_tokens": i,
            "gen_ai.usage.output_tokens": o, "gen_ai.usage.completion_tokens": o,
            "gen_ai.usage.total_tokens": i + o,
            "gen_ai.usage.cache_read.input_tokens": cr, "gen_ai.usage.cache_read_input_tokens": cr,
            "gen_ai.usage.cache_creation.input_tokens": 0, "gen_ai.usage.cache_write_input_tokens": 0}

# Not on whole milliseconds: the lake floors times to milliseconds.
root_start, root_end = T0 + 123_456, T0 + 7_345 * MS + 999_999
root = start("invoke_agent Clinic Assistant", "invoke_agent", None, root_start,
             **{"gen_ai.agent.name": "Clinic Assistant", "gen_ai.request.model": model})
tools_per_cycle = [[("lookup_patient", False), ("send_referral", True)], [("write_summary", False)], []]
t = T0 + 10 * MS
for cycle, tools in enumerate(tools_per_cycle):
    c = start("execute_event_loop_cycle", "execute_event_loop_cycle", root, t,
              **{"event_loop.cycle_id": f"cycle-{cycle}"})
    chat = start("chat", "chat", c, t + MS, **{"gen_ai.request.model": model})
    chat.add_event("gen_ai.user.message", {"content": note})
    chat.add_event("gen_ai.choice", {"message": "Referral for " + note})
    chat.set_attributes(usage(800 + cycle, 90 + cycle, 128))
    chat.set_status(Status(StatusCode.OK))
    chat.end(end_time=t + 900 * MS)
    for k, (name, fails) in enumerate(tools):
        ts = t + (1000 + 300 * k) * MS
        tool = start(f"execute_tool {name}", "execute_tool", c, ts,
                     **{"gen_ai.tool.name": name, "gen_ai.tool.call.id": f"tooluse_{cycle}_{k}"})
        tool.add_event("gen_ai.tool.message", {"content": note})
        if fails:
            try:
                raise RuntimeError(note)
            except RuntimeError as e:
                tool.record_exception(e)
            # Strands puts the exception's text in the status description.
            tool.set_status(Status(StatusCode.ERROR, "RuntimeError: " + note))
            tool.set_attribute("app.note", note)
            tool.set_attribute("gen_ai.tool.status", "error")
        else:
            tool.set_attribute("gen_ai.tool.status", "success")
            tool.set_status(Status(StatusCode.OK))
        tool.end(end_time=ts + 200 * MS)
    c.set_status(Status(StatusCode.OK))
    c.end(end_time=t + 2000 * MS)
    t += 2100 * MS
# An Agent object's lifetime totals: more than this call's chat spans add up to.
root.set_attributes(usage(9000, 900, 512))
root.set_status(Status(StatusCode.OK))
root.end(end_time=root_end)
flushed = provider.force_flush(30000)
provider.shutdown()

def ids(s):
    p = s.parent.span_id if s.parent is not None else None
    return {"span_id": format(s.get_span_context().span_id, "016x"), "name": s.name,
            "parent_span_id": format(p, "016x") if p is not None else None}

print(json.dumps({
    "flushed": flushed,
    "trace_id": format(root.get_span_context().trace_id, "032x"),
    "spans": [ids(s) for s in created],
    "root": {"span_id": format(root.get_span_context().span_id, "016x"),
             "start_ns": root_start, "end_ns": root_end},
    "batches": batches,
}))
"#;

/// The test virtualenv's Python (`$AGENTMETER_PYTHON`, else `.venv/bin/python`).
fn python() -> PathBuf {
    std::env::var_os("AGENTMETER_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/python"))
}

/// Reads `r` to its end on a thread.
fn drain<R: std::io::Read + Send + 'static>(mut r: R) -> std::thread::JoinHandle<Vec<u8>> {
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let _ = r.read_to_end(&mut buf);
        buf
    })
}

/// Runs `cmd` to completion, killing it after `limit`; fails the test unless it succeeds.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e} (run scripts/test, which sets up .venv)"));
    let stdout = drain(child.stdout.take().unwrap());
    let stderr = drain(child.stderr.take().unwrap());
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() };
    assert!(
        out.status.success(),
        "{cmd:?} failed with {}\nstdout:\n{}\nstderr:\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Asserts that no file of the lake, and no value of any Parquet table, holds event text.
fn assert_no_event_text(lake: &Path, needles: &[&str]) {
    for (path, bytes) in lake_files(lake) {
        for n in needles {
            assert!(
                !bytes.windows(n.len()).any(|w| w == n.as_bytes()),
                "{} holds {n:?}",
                path.display()
            );
        }
    }
    // Parquet pages are compressed: read every value back as well.
    let all = format!("read_parquet('{}/*/*/*.parquet', union_by_name = true)", lake.display());
    // The query does see the values: the spans' scope is there.
    let control = "to_json(t)::VARCHAR LIKE '%strands.telemetry.tracer%'";
    assert!(duckdb_int(&format!("SELECT count(*) FROM {all} t WHERE {control}")) > 0);
    let hits: Vec<String> =
        needles.iter().map(|n| format!("to_json(t)::VARCHAR LIKE '%{n}%'")).collect();
    let sql = format!("SELECT count(*) FROM {all} t WHERE {}", hits.join(" OR "));
    assert_eq!(duckdb_int(&sql), 0, "event text in a table of the lake");
}

fn str_of<'a>(row: &'a serde_json::Map<String, Value>, key: &str) -> Option<&'a str> {
    row[key].as_str()
}

#[test]
fn python_sdk_trace_lands_once_with_tool_calls_and_durations() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "100"]);
    let script = dir.path().join("export.py");
    std::fs::write(&script, SDK_SCRIPT).unwrap();
    let endpoint = format!("http://127.0.0.1:{}/v1/traces", server.port());
    let mut cmd = Command::new(python());
    cmd.arg(&script)
        .args([endpoint.as_str(), "premium", "clinic-a-east", "nurse-kim", PATIENT_NOTE])
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("no_proxy", "127.0.0.1,localhost");
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("OTEL_") {
            cmd.env_remove(k);
        }
    }
    let out = run_bounded(&mut cmd, Duration::from_secs(120));
    let sdk: Value = serde_json::from_slice(&out.stdout).expect("the script's JSON");
    assert_eq!(sdk["flushed"], true, "{sdk}");
    let batches = sdk["batches"].as_array().unwrap();
    assert!(batches.iter().all(|b| b["ok"] == true), "every export acknowledged: {sdk}");
    let root_name = "invoke_agent Clinic Assistant";
    let in_batch = |b: &Value| b["spans"].as_array().unwrap().iter().any(|s| s == root_name);
    assert!(batches.len() >= 2 && !in_batch(&batches[0]), "children first: {sdk}");
    assert!(in_batch(batches.last().unwrap()), "the root last: {sdk}");

    let stopped = server.stop();
    assert_eq!(stopped.counts(), [10, 10, 0, 0], "{}", stopped.stdout);

    // agent_spans: exactly the SDK's spans, once each.
    let trace_id = sdk["trace_id"].as_str().unwrap();
    let created = sdk["spans"].as_array().unwrap();
    assert_eq!(created.len(), 10);
    let mut want: Vec<String> =
        created.iter().map(|s| format!("{trace_id}:{}", s["span_id"].as_str().unwrap())).collect();
    want.sort();
    assert_eq!(lake_span_keys(&lake), want);
    assert_eq!(lake_span_counts(&lake), (10, 10));
    let spans = table(&lake, "agent_spans");
    let rows = duckdb(&format!(
        "SELECT span_id, parent_span_id, name, operation, tier, tenant_id, user_id, model_id, \
         tool_name, status, input_tokens, output_tokens, total_tokens, cache_read_tokens, \
         scope, service FROM {spans}"
    ));
    for row in &rows {
        let id = str_of(row, "span_id").unwrap();
        let sent = created.iter().find(|s| s["span_id"] == id).unwrap();
        assert_eq!(row["parent_span_id"], sent["parent_span_id"], "{row:?}");
        assert_eq!(row["name"], sent["name"], "{row:?}");
        assert_eq!(str_of(row, "tier"), Some("premium"));
        assert_eq!(str_of(row, "tenant_id"), Some("clinic-a-east"));
        // actor_id premium-clinic-a-east-nurse-kim: the known prefix removed, not split on '-'.
        assert_eq!(str_of(row, "user_id"), Some("nurse-kim"), "{row:?}");
        assert_eq!(str_of(row, "scope"), Some("strands.telemetry.tracer"));
        assert_eq!(str_of(row, "service"), Some("clinic-assistant"));
        let name = str_of(row, "name").unwrap();
        let want_status = if name == "execute_tool send_referral" { "error" } else { "ok" };
        assert_eq!(str_of(row, "status"), Some(want_status), "{row:?}");
        assert_eq!(str_of(row, "tool_name"), name.strip_prefix("execute_tool "), "{row:?}");
        if name == "chat" {
            // Both spellings are sent; the counts are not summed.
            assert!((800..=802).contains(&row["input_tokens"].as_i64().unwrap()), "{row:?}");
            assert_eq!(row["cache_read_tokens"], 128, "{row:?}");
        }
    }
    let ops = duckdb(&format!(
        "SELECT operation, count(*) AS n, sum(input_tokens) AS i FROM {spans} \
         GROUP BY operation ORDER BY operation"
    ));
    let ops: Vec<(String, i64, Option<i64>)> = ops
        .iter()
        .map(|r| {
            (str_of(r, "operation").unwrap().to_owned(), r["n"].as_i64().unwrap(), r["i"].as_i64())
        })
        .collect();
    assert_eq!(
        ops,
        [
            ("chat".to_owned(), 3, Some(2403)),
            ("execute_event_loop_cycle".to_owned(), 3, None),
            ("execute_tool".to_owned(), 3, None),
            ("invoke_agent".to_owned(), 1, Some(9000)),
        ]
    );

    // Span events (prompts, the exception with the patient note) reach no file.
    assert_no_event_text(
        &lake,
        &["Jane Roe", "penicillin", "gen_ai.user.message", "gen_ai.choice", "exception.stacktrace"],
    );

    // agent_invocations: one, with the root's duration (times floored to milliseconds).
    let root_ms = |k: &str| (sdk["root"][k].as_u64().unwrap() / 1_000_000) as i64;
    let duration = root_ms("end_ns") - root_ms("start_ns");
    assert_eq!(duration, 7345);
    let inv = duckdb(&format!(
        "SELECT trace_id, span_id, tier, tenant_id, user_id, model_id, duration_ms, tool_calls, \
         tool_errors, model_calls, status FROM {}",
        table(&lake, "agent_invocations")
    ));
    assert_eq!(inv.len(), 1, "{inv:?}");
    let i = &inv[0];
    assert_eq!(str_of(i, "trace_id"), Some(trace_id));
    assert_eq!(i["span_id"], sdk["root"]["span_id"]);
    assert_eq!(str_of(i, "tenant_id"), Some("clinic-a-east"));
    assert_eq!(str_of(i, "user_id"), Some("nurse-kim"));
    assert_eq!(str_of(i, "model_id"), Some("us.anthropic.claude-sonnet-4-20250514-v1:0"));
    assert_eq!(i["duration_ms"], duration);
    assert_eq!((i["tool_calls"].as_i64(), i["tool_errors"].as_i64()), (Some(3), Some(1)));
    assert_eq!(i["model_calls"], 3);
    assert_eq!(str_of(i, "status"), Some("ok"));

    // usage_hourly: the agent columns; tokens still come only from the logs (none here).
    let hourly = duckdb(&format!(
        "SELECT sum(tool_calls) AS tc, sum(tool_errors) AS te, sum(agent_invocations) AS ai, \
         sum(agent_duration_ms) AS d, max(max_agent_duration_ms) AS m, sum(invocations) AS inv, \
         sum(total_tokens) AS tok, count(DISTINCT tenant_id) AS tenants, \
         min(user_id) AS u1, max(user_id) AS u2 FROM {}",
        table(&lake, "usage_hourly")
    ));
    let h = &hourly[0];
    let n = |k: &str| h[k].as_i64().unwrap();
    assert_eq!([n("tc"), n("te"), n("ai"), n("d"), n("m")], [3, 1, 1, duration, duration], "{h:?}");
    assert_eq!([n("inv"), n("tok"), n("tenants")], [0, 0, 1], "{h:?}");
    assert_eq!((str_of(h, "u1"), str_of(h, "u2")), (Some("nurse-kim"), Some("nurse-kim")));
    assert!(wal_files(&lake).is_empty(), "{:?}", wal_files(&lake));
}

/// `trace_id:span_id` of the fixture's spans, ids in lower case, sorted.
fn fixture_keys() -> Vec<String> {
    let v: Value = serde_json::from_str(STRANDS_FIXTURE).unwrap();
    let mut keys: Vec<String> = v["resourceSpans"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rs| rs["scopeSpans"].as_array().unwrap())
        .flat_map(|ss| ss["spans"].as_array().unwrap())
        .map(|s| {
            let id = |k: &str| s[k].as_str().unwrap().to_ascii_lowercase();
            format!("{}:{}", id("traceId"), id("spanId"))
        })
        .collect();
    keys.sort();
    keys
}

/// Asserts a `google.rpc.Status` error in JSON: `status`, `code`, a message.
fn assert_rpc_status(r: &Response, status: u16, code: i64) {
    assert_eq!(r.status, status, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{r:?}");
    let body = r.json();
    assert_eq!(body["code"], code, "{body}");
    assert!(!body["message"].as_str().unwrap_or_default().is_empty(), "{body}");
}

#[test]
fn json_gzip_and_repeated_exports_land_each_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "100"]);
    let body = STRANDS_FIXTURE.as_bytes();
    let r = server.post_json(body);
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));
    assert_eq!(r.header("content-type"), Some("application/json"));
    let gz = gzip(body);
    let r = server
        .post(&[("Content-Type", "application/json"), ("Content-Encoding", "gzip")], &gz)
        .unwrap();
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));
    let r = server.post_json(body);
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));
    // After the flushes: 7 written, the two repeats counted as duplicates.
    let flushed = || {
        let m = server.metrics();
        metric(&m, "agentmeter_otlp_spans_written_total")
            + metric(&m, "agentmeter_otlp_spans_duplicate_total")
            >= 21
    };
    eventually("three exports flushed", flushed);
    let m = server.metrics();
    assert_eq!(metric(&m, "agentmeter_otlp_spans_received_total"), 21);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_written_total"), 7);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_duplicate_total"), 14);
    assert_eq!(metric(&m, "agentmeter_otlp_requests_total{outcome=\"ok\"}"), 3);
    assert_eq!(
        metric(&m, "agentmeter_otlp_received_bytes_total"),
        (2 * body.len() + gz.len()) as u64
    );

    let stopped = server.stop();
    assert_eq!(stopped.counts(), [21, 7, 14, 0], "{}", stopped.stdout);
    assert_eq!(lake_span_keys(&lake), fixture_keys());
    assert_eq!(lake_span_counts(&lake), (7, 7));
    let users = duckdb(&format!("SELECT DISTINCT user_id FROM {}", table(&lake, "agent_spans")));
    assert_eq!(users.len(), 1);
    assert_eq!(str_of(&users[0], "user_id"), Some("dr.lee@clinic-a.example"));
    assert_no_event_text(&lake, &["Jane Doe", "chest pain", "SECRET-STACK", "LINK-SECRET"]);
    assert!(quarantine_entries(&lake).is_empty());
}

const LIMIT: usize = 32 << 10;

/// The fixture padded with trailing spaces (still valid JSON) to `len` bytes.
fn padded_fixture(len: usize) -> Vec<u8> {
    let mut b = STRANDS_FIXTURE.as_bytes().to_vec();
    assert!(b.len() <= len);
    b.resize(len, b' ');
    b
}

#[test]
fn malformed_unsupported_and_oversized_bodies_get_otlp_errors() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let limit = LIMIT.to_string();
    let server = Server::start(&lake, &["--flush-interval-ms", "100", "--max-body-bytes", &limit]);
    let json_gz = [("Content-Type", "application/json"), ("Content-Encoding", "gzip")];
    let refused = Cell::new(0);
    let check = |r: Response, status: u16, code: i64| {
        assert_rpc_status(&r, status, code);
        refused.set(refused.get() + 1);
    };
    // Not decodable: 400, do not retry.
    check(server.post_json(b"not json"), 400, 3);
    check(server.post_json(br#"{"resourceSpans":"nope"}"#), 400, 3);
    check(server.post(&json_gz, STRANDS_FIXTURE.as_bytes()).unwrap(), 400, 3);
    let r =
        server.post(&[("Content-Type", "application/x-protobuf")], b"\xff\xff\xff\xff").unwrap();
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("application/x-protobuf"));
    // google.rpc.Status in protobuf: field 1 (code) = 3 INVALID_ARGUMENT, field 2 (message).
    assert_eq!(r.body.get(..3), Some(&[0x08, 0x03, 0x12][..]), "{:?}", r.body);
    refused.set(refused.get() + 1);
    // Another content type: 415.
    check(
        server.post(&[("Content-Type", "text/plain")], STRANDS_FIXTURE.as_bytes()).unwrap(),
        415,
        3,
    );
    check(server.post(&[], STRANDS_FIXTURE.as_bytes()).unwrap(), 415, 3);
    // Over the limit, plain or once inflated: 413. At the limit: accepted.
    check(server.post_json(&padded_fixture(LIMIT + 1)), 413, 8);
    let bomb = gzip(&padded_fixture(LIMIT + 1));
    assert!(bomb.len() < LIMIT / 4, "a small body that inflates past the limit");
    check(server.post(&json_gz, &bomb).unwrap(), 413, 8);
    let r = server.post_json(&padded_fixture(LIMIT));
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));
    let r = server.post(&json_gz, &gzip(&padded_fixture(LIMIT))).unwrap();
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));

    let m = server.metrics();
    assert_eq!(
        metric(&m, "agentmeter_otlp_requests_total{outcome=\"client_error\"}"),
        refused.get()
    );
    assert_eq!(metric(&m, "agentmeter_otlp_requests_total{outcome=\"ok\"}"), 2);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_received_total"), 14);
    let stopped = server.stop();
    assert_eq!(stopped.counts(), [14, 7, 7, 0], "{}", stopped.stdout);
    assert_eq!(lake_span_keys(&lake), fixture_keys());
}

/// OTLP: "The response body for all HTTP 4xx and HTTP 5xx responses MUST be a Protobuf-encoded
/// Status message" (JSON-encoded for JSON requests), and the module's doc says so too. A body
/// more than 1 KiB over `--max-body-bytes` is refused by axum's `DefaultBodyLimit` with a
/// plain-text 413 instead, not counted in the metrics.
#[test]
fn a_body_far_over_the_limit_gets_a_google_rpc_status_and_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let limit = LIMIT.to_string();
    let server = Server::start(&lake, &["--max-body-bytes", &limit]);
    // Small enough to sit in the socket buffers whole: the answer is read, not a reset.
    let r = server.post_json(&padded_fixture(LIMIT + 4096));
    let m = server.metrics();
    server.stop();
    assert_rpc_status(&r, 413, 8);
    assert_eq!(metric(&m, "agentmeter_otlp_requests_total{outcome=\"client_error\"}"), 1);
}

#[test]
fn acknowledged_spans_still_in_the_log_are_flushed_on_sigterm_and_sigint() {
    let dir = tempfile::tempdir().unwrap();
    for signal in ["TERM", "INT"] {
        let lake = dir.path().join(format!("lake-{signal}"));
        // No flush before the signal: the spans are only in the write-ahead log.
        let server = Server::start(&lake, &["--flush-interval-ms", "600000"]);
        let r = server.post_json(STRANDS_FIXTURE.as_bytes());
        assert_eq!(r.status, 200, "{}", r.text());
        // A 200 means durable: the log already holds every span.
        let wal: Vec<u8> =
            lake_files(&lake.join("_wal")).into_iter().flat_map(|(_, bytes)| bytes).collect();
        let wal = String::from_utf8(wal).unwrap();
        for key in fixture_keys() {
            let (_, span_id) = key.split_once(':').unwrap();
            assert!(wal.contains(&format!("\"{span_id}\"")), "span {span_id} not in the log");
        }
        assert_eq!(metric(&server.metrics(), "agentmeter_otlp_spans_written_total"), 0);
        server.signal(signal);
        let stopped = server.wait();
        assert_eq!(stopped.status.code(), Some(0), "SIG{signal}: {}", stopped.stderr);
        assert_eq!(stopped.counts(), [7, 7, 0, 0], "SIG{signal}");
        assert_eq!(lake_span_keys(&lake), fixture_keys(), "SIG{signal}");
        assert!(wal_files(&lake).is_empty(), "SIG{signal}: {:?}", wal_files(&lake));
    }
}

#[test]
fn spans_a_killed_receiver_acknowledged_are_flushed_by_its_next_start() {
    let dir = tempfile::tempdir().unwrap();
    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "600000"]);
    let r = server.post_json(STRANDS_FIXTURE.as_bytes());
    assert_eq!(r.status, 200, "{}", r.text());
    // A crash: nothing flushed, the acknowledged spans only in the write-ahead log.
    server.signal("KILL");
    let killed = server.wait();
    assert_ne!(killed.status.code(), Some(0));
    assert!(!wal_files(&lake).is_empty());
    assert!(lake_span_keys(&lake).is_empty(), "nothing flushed before the crash");
    // The log is the receiver's own: another writer of the lake leaves it alone.
    let mut cmd = bin();
    cmd.args(["ingest", "--lake"]).arg(&lake).arg(&empty);
    ok(&mut cmd);
    assert!(!wal_files(&lake).is_empty(), "an ingest does not take the receiver's log");
    let server = Server::start(&lake, &["--flush-interval-ms", "600000"]);
    // Flushed at start-up, before the first request.
    assert_eq!(lake_span_keys(&lake), fixture_keys());
    assert_eq!(server.stop().counts(), [0, 0, 0, 0]);
    assert!(wal_files(&lake).is_empty(), "{:?}", wal_files(&lake));
    // Once only: another start finds nothing left to move.
    let server = Server::start(&lake, &["--flush-interval-ms", "600000"]);
    assert_eq!(server.stop().counts(), [0, 0, 0, 0]);
    assert_eq!(lake_span_counts(&lake).0, 7);
}

/// Two spans in one request: one valid, one without a tenant.
fn one_without_tenant() -> (Vec<u8>, String, String) {
    let trace = "0af7651916cd43dd8448eb211c80319c";
    let (good, bad) = ("b7ad6b7169203331", "b7ad6b7169203332");
    let t = 1_790_841_600_000_000_000;
    let mut with_tenant = vec![
        kv_str("clinic_id", "clinic-b"),
        kv_str("actor_id", "basic-clinic-b-u1"),
        kv_str("gen_ai.operation.name", "execute_tool"),
        kv_str("gen_ai.tool.name", "lookup"),
    ];
    let mut a = span(trace, good, None, "execute_tool lookup", t, 40, false, with_tenant.clone());
    with_tenant.remove(0);
    let mut b = span(trace, bad, None, "execute_tool lookup", t, 40, false, with_tenant);
    let event = serde_json::json!([{
        "timeUnixNano": t.to_string(), "name": "exception",
        "attributes": [kv_str("exception.message", PATIENT_NOTE)],
    }]);
    a["events"] = event.clone();
    b["events"] = event;
    let body = export_request(vec![kv_str("tier", "basic")], vec![a, b]);
    (serde_json::to_vec(&body).unwrap(), format!("{trace}:{good}"), bad.to_owned())
}

#[test]
fn a_span_without_a_tenant_is_quarantined_with_a_partial_success() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "100"]);
    let (body, good, bad) = one_without_tenant();
    let r = server.post_json(&body);
    assert_eq!(r.status, 200, "{}", r.text());
    let partial = &r.json()["partialSuccess"];
    // int64 in OTLP JSON: a decimal string, or a number (which decoders accept).
    let rejected = &partial["rejectedSpans"];
    assert!(rejected == 1 || rejected == "1", "{partial}");
    assert!(partial["errorMessage"].as_str().unwrap().contains("clinic_id"), "{partial}");
    eventually("the quarantine flushed", || {
        metric(&server.metrics(), "agentmeter_otlp_spans_quarantined_total") == 1
    });
    let m = server.metrics();
    assert_eq!(metric(&m, "agentmeter_otlp_spans_rejected_total"), 1);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_written_total"), 1);
    let stopped = server.stop();
    assert_eq!(stopped.counts(), [2, 1, 0, 1], "{}", stopped.stdout);
    assert_eq!(lake_span_keys(&lake), [good]);
    let entries = quarantine_entries(&lake);
    assert_eq!(entries.len(), 1, "{entries:?}");
    let q = &entries[0];
    assert_eq!(q["format"], "otlp_json", "{q}");
    assert_eq!(q["reason"], "missing_field", "{q}");
    // The raw bytes: a request holding that span alone, which a replay decodes again.
    let raw: Value = serde_json::from_str(q["raw"].as_str().unwrap()).unwrap();
    let spans = &raw["resourceSpans"][0]["scopeSpans"][0]["spans"];
    assert_eq!(spans.as_array().unwrap().len(), 1, "{raw}");
    assert_eq!(spans[0]["spanId"], bad.as_str());
    assert_no_event_text(&lake, &["Jane Roe", "penicillin", "exception.message"]);
}

#[test]
fn a_bearer_token_from_a_file_or_the_environment_is_required() {
    let dir = tempfile::tempdir().unwrap();
    let token = "tok-3f9a1c-for-the-test";
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, format!("{token}\n")).unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(
        &lake,
        &["--flush-interval-ms", "100", "--auth-token-file", token_file.to_str().unwrap()],
    );
    let body = STRANDS_FIXTURE.as_bytes();
    let ct = ("Content-Type", "application/json");
    let wrong = format!("Bearer {token}x");
    let basic = format!("Basic {token}");
    for auth in [None, Some("Bearer nope"), Some(wrong.as_str()), Some(basic.as_str())] {
        let mut headers = vec![ct];
        headers.extend(auth.map(|a| ("Authorization", a)));
        let r = server.post(&headers, body).unwrap();
        assert_rpc_status(&r, 401, 16);
        assert_eq!(r.header("www-authenticate"), Some("Bearer"), "{auth:?}");
    }
    let right = format!("Bearer {token}");
    let r = server.post(&[ct, ("Authorization", &right)], body).unwrap();
    assert_eq!((r.status, r.text()), (200, "{}".to_owned()));
    let m = server.metrics();
    assert_eq!(metric(&m, "agentmeter_otlp_requests_total{outcome=\"client_error\"}"), 4);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_received_total"), 7);
    let stopped = server.stop();
    assert_eq!(stopped.counts(), [7, 7, 0, 0]);
    assert!(!stopped.stdout.contains(token) && !stopped.stderr.contains(token));
    assert_eq!(lake_span_keys(&lake), fixture_keys());

    // The same from AGENTMETER_OTLP_TOKEN.
    let lake = dir.path().join("lake-env");
    let server = Server::start_with_env(&lake, &[], &[("AGENTMETER_OTLP_TOKEN", token)]);
    assert_rpc_status(&server.post(&[ct], body).unwrap(), 401, 16);
    let r = server.post(&[ct, ("Authorization", "Bearer nope")], body).unwrap();
    assert_rpc_status(&r, 401, 16);
    let r = server.post(&[ct, ("Authorization", &right)], body).unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(server.stop().counts(), [7, 7, 0, 0]);
    assert_eq!(lake_span_keys(&lake), fixture_keys());
}

#[test]
fn health_and_prometheus_metrics_count_the_requests() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "100"]);
    let r = server.get("/health");
    assert_eq!((r.status, r.text()), (200, "ok\n".to_owned()));
    let body = STRANDS_FIXTURE.as_bytes();
    assert_eq!(server.post_json(body).status, 200);
    assert_eq!(server.post(&[("Content-Type", "text/plain")], b"x").unwrap().status, 415);
    assert_eq!(server.post_json(b"{").status, 400);
    eventually("the spans written", || {
        metric(&server.metrics(), "agentmeter_otlp_spans_written_total") == 7
    });
    let r = server.get("/metrics");
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/plain"), "{r:?}");
    let m = r.text();
    let names = [
        "agentmeter_otlp_requests_total",
        "agentmeter_otlp_received_bytes_total",
        "agentmeter_otlp_spans_received_total",
        "agentmeter_otlp_spans_rejected_total",
        "agentmeter_otlp_spans_written_total",
        "agentmeter_otlp_spans_duplicate_total",
        "agentmeter_otlp_spans_quarantined_total",
    ];
    for name in names {
        assert!(m.contains(&format!("# TYPE {name} counter\n")), "{name} in:\n{m}");
        assert!(m.contains(&format!("# HELP {name} ")), "{name} in:\n{m}");
    }
    let requests = |outcome: &str| {
        metric(&m, &format!("agentmeter_otlp_requests_total{{outcome=\"{outcome}\"}}"))
    };
    assert_eq!([requests("ok"), requests("client_error"), requests("unavailable")], [1, 2, 0]);
    // Bodies read: the 415's body is never read (the request is refused on its headers).
    assert_eq!(metric(&m, "agentmeter_otlp_received_bytes_total"), body.len() as u64 + 1);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_received_total"), 7);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_rejected_total"), 0);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_duplicate_total"), 0);
    assert_eq!(metric(&m, "agentmeter_otlp_spans_quarantined_total"), 0);
    assert_eq!(server.stop().counts(), [7, 7, 0, 0]);
}

#[test]
fn a_lake_that_falls_behind_gets_503_until_the_flushes_catch_up() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server =
        Server::start(&lake, &["--flush-interval-ms", "100", "--max-log-backlog-mib", "1"]);
    // The spans' table cannot be written: every flush fails and is retried.
    let table = lake.join("agent_spans");
    let _ = std::fs::remove_dir_all(&table);
    std::fs::write(&table, b"in the way").unwrap();
    let body = STRANDS_FIXTURE.as_bytes();
    let mut acked = 0;
    let refused = loop {
        assert!(acked < 2_000, "still acknowledged after {acked} requests");
        let r = server.post_json(body);
        if r.status != 200 {
            break r;
        }
        acked += 1;
    };
    assert_rpc_status(&refused, 503, 14);
    assert_eq!(refused.header("retry-after"), Some("1"));
    let backlog = metric(&server.metrics(), "agentmeter_otlp_log_backlog_bytes");
    assert!(backlog > 1 << 20, "{backlog}");
    // A load balancer is told too.
    let health = server.get("/health");
    assert_eq!(health.status, 503);
    assert!(health.text().starts_with("unavailable: the lake is behind: "), "{}", health.text());
    // The table can be written again: the retried flush drains the log, and requests are
    // taken again.
    std::fs::remove_file(&table).unwrap();
    eventually("the backlog flushed", || {
        metric(&server.metrics(), "agentmeter_otlp_log_backlog_bytes") == 0
    });
    assert_eq!(server.get("/health").text(), "ok\n");
    let r = server.post_json(body);
    assert_eq!(r.status, 200, "{}", r.text());
    let stopped = server.stop();
    assert!(stopped.stderr.contains("the lake is behind: "), "{}", stopped.stderr);
    let received = 7 * (acked + 1);
    assert_eq!(stopped.counts(), [received, 7, received - 7, 0], "{}", stopped.stdout);
    assert_eq!(lake_span_keys(&lake), fixture_keys());
}
