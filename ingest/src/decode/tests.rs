//! Decoder tests over hand-written fixtures of the real formats (FORMATS.md sections 1 and 3).

use agentmeter_schemas::{Position, QuarantineEntry, RawFormat, Reason, SkipKind, SourceUri};

use super::*;
use crate::gzip::gzip_bytes;

const USAGE: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"dr.lee@clinic-a.example","model_id":"mistral.ministral-3-8b-instruct","input_tokens":812,"output_tokens":97,"total_tokens":909}"#;
const CW_ID: &str = "36897046232316298063931829383442926153542430203385888768";

fn src() -> SourceUri {
    SourceUri::new("file:///in/usage.ndjson")
}

fn line_no(n: u64) -> Position {
    Position { line: Some(n), ..Default::default() }
}

fn decode(line: &str) -> Decoded {
    let mut out = Decoded::default();
    Decoder::default().line(line.as_bytes(), &src(), line_no(7), &mut out);
    out
}

fn one(line: &str) -> Outcome {
    let mut d = decode(line);
    assert_eq!(d.outcomes.len(), 1, "{line}: {:?}", d.outcomes);
    d.outcomes.remove(0)
}

fn event(o: Outcome) -> agentmeter_schemas::UsageEvent {
    match o {
        Outcome::Event(e) => e,
        other => panic!("not an event: {other:?}"),
    }
}

fn reject(o: Outcome) -> QuarantineEntry {
    match o {
        Outcome::Reject(e) => *e,
        other => panic!("not a reject: {other:?}"),
    }
}

/// A CloudWatch log event line around `message`.
fn cw_line(id: &str, ts: i64, message: &str) -> String {
    serde_json::json!({"id": id, "timestamp": ts, "message": message}).to_string()
}

#[test]
fn bare_object_with_its_own_time_and_id() {
    let line = USAGE.replace(
        "{\"event\"",
        "{\"timestamp\":\"2026-10-01T08:00:00Z\",\"event_id\":\"req-1\",\"event\"",
    );
    let e = event(one(&line));
    assert_eq!(e.event_id.as_str(), "req-1");
    assert_eq!(e.event_time_ms, 1_790_841_600_000);
    assert_eq!(e.source, src());
    assert_eq!((e.tokens.input, e.tokens.output, e.tokens.total), (812, 97, 909));
}

#[test]
fn every_logger_prefix_of_a_cloudwatch_message() {
    let messages = [
        USAGE.to_string(),
        format!("{USAGE}\n"),
        format!("[INFO]\t2026-10-01T08:00:00.534Z\t1c8df7d3-2f4b-4c5e-9a3d-518e6eca8125\t{USAGE}\n"),
        format!("2026-10-01T08:00:00.534Z\t1c8df7d3\tINFO\t{USAGE}"),
        format!("INFO:root:{USAGE}"),
        format!("INFO:healthcare.agent:{USAGE}"),
        // Lambda JSON log format: the application's message is a JSON string in `message`.
        serde_json::json!({"timestamp":"2026-10-01T08:00:00Z","level":"INFO","message":USAGE,"logger":"root","requestId":"r"}).to_string(),
    ];
    for m in messages {
        let e = event(one(&cw_line(CW_ID, 1_790_841_600_123, &m)));
        assert_eq!(e.event_id.as_str(), CW_ID, "{m:?}");
        assert_eq!(e.event_time_ms, 1_790_841_600_123, "{m:?}");
        assert_eq!(e.tenant_id.as_str(), "clinic-a");
    }
}

#[test]
fn integer_event_ids_as_moto_sends_them_stay_exact() {
    let line = format!(
        r#"{{"id":{CW_ID},"timestamp":1790841600000,"message":{}}}"#,
        serde_json::to_string(USAGE).unwrap()
    );
    assert_eq!(event(one(&line)).event_id.as_str(), CW_ID);
    let line = format!(
        r#"{{"id":17,"timestamp":1790841600000,"message":{}}}"#,
        serde_json::to_string(USAGE).unwrap()
    );
    assert_eq!(event(one(&line)).event_id.as_str(), "17");
}

#[test]
fn skips_are_counted_by_kind() {
    let cases = [
        ("START RequestId: 8f5 Version: $LATEST", SkipKind::PlatformLine),
        ("REPORT RequestId: 8f5\tDuration: 1.2 ms\tBilled Duration: 2 ms", SkipKind::PlatformLine),
        ("tool_name=<search>, status=<ok> | tool call finished", SkipKind::NonJsonMessage),
        ("[INFO]\t2026-10-01T08:00:00Z\tr\tAgent started", SkipKind::NonJsonMessage),
        (r#"{"event":"agent_started","clinic_id":"clinic-a"}"#, SkipKind::OtherEvent),
        (r#"{"level":"INFO","msg":"ready"}"#, SkipKind::OtherEvent),
        ("Traceback { broken", SkipKind::NonJsonMessage),
    ];
    for (msg, kind) in cases {
        assert_eq!(one(&cw_line("1", 1_790_841_600_000, msg)), Outcome::Skip(kind), "{msg:?}");
    }
    assert_eq!(one(r#"{"event":"tool_call","x":1}"#), Outcome::Skip(SkipKind::OtherEvent));
}

#[test]
fn broken_usage_json_in_a_message_is_quarantined_with_the_whole_line() {
    let line =
        cw_line("1", 1_790_841_600_000, r#"[INFO]	t	r	{"event":"inference_usage","tier":"basic""#);
    let q = reject(one(&line));
    assert_eq!(q.reason, Reason::InvalidJson);
    assert_eq!(q.format, RawFormat::NdjsonLine);
    assert_eq!(q.raw.as_deref(), Some(line.as_str()));
    assert_eq!(q.position, line_no(7));
}

#[test]
fn malformed_lines() {
    let q = reject(one(r#"{"tier":"basic","clinic_id":"clinic-a"}"#));
    assert_eq!(
        (q.reason, q.detail.as_str()),
        (Reason::MissingField, "event is missing: not an inference_usage record")
    );
    assert_eq!(reject(one("[1,2]")).reason, Reason::NotAnObject);
    assert_eq!(reject(one("{\"event\":")).reason, Reason::InvalidJson);
    assert_eq!(reject(one(r#"{"event":7}"#)).reason, Reason::InvalidField);

    let mut out = Decoded::default();
    let bytes = [b"{\"event\":\"inference_usage\",\"tier\":\"b\xffasic\"}".as_slice()].concat();
    Decoder::default().line(&bytes, &src(), line_no(1), &mut out);
    let q = reject(out.outcomes.remove(0));
    assert_eq!((q.reason, q.detail.as_str()), (Reason::InvalidUtf8, "invalid UTF-8 at byte 36"));
    assert_eq!(q.raw_bytes().unwrap(), bytes);
    assert!(q.raw.is_none());

    let cfg = DecodeConfig::new("clinic_id", 64, 1 << 20).unwrap();
    let mut out = Decoded::default();
    Decoder::new(cfg).line(USAGE.as_bytes(), &src(), line_no(1), &mut out);
    assert_eq!(reject(out.outcomes.remove(0)).reason, Reason::TooLarge);
}

#[test]
fn blank_lines_are_not_records_and_crlf_is_tolerated() {
    assert!(decode("   \t").outcomes.is_empty());
    assert!(decode("").outcomes.is_empty());
    let line =
        USAGE.replace("{\"event\"", "{\"timestamp\":\"2026-10-01T08:00:00Z\",\"event\"") + "\r";
    event(one(&line));
}

fn payload(kind: &str, events: &[String]) -> String {
    format!(
        r#"{{"messageType":"{kind}","owner":"123456789012","logGroup":"/aws/lambda/agent","logStream":"2026/10/01/[$LATEST]abc","subscriptionFilters":["usage"],"logEvents":[{}]}}"#,
        events.join(",")
    )
}

#[test]
fn subscription_payload_with_one_bad_event() {
    let good =
        cw_line(CW_ID, 1_790_841_600_000, &format!("[INFO]\t2026-10-01T08:00:00Z\tr\t{USAGE}\n"));
    let bad = cw_line("2", 1_790_841_600_001, &USAGE.replace("909", "900"));
    let other = cw_line("3", 1_790_841_600_002, "END RequestId: r");
    let body = payload("DATA_MESSAGE", &[good, bad.clone(), other]);
    let compressed = gzip_bytes(body.as_bytes());
    let mut out = Decoded::default();
    let pos = Position { member: Some(4), offset: Some(1000), ..Default::default() };
    Decoder::default().payload_gzip(&compressed, Ctx::new(&src(), pos), &mut out);
    assert_eq!(out.outcomes.len(), 3);
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), CW_ID);
    let q = reject(out.outcomes.remove(0));
    assert_eq!(q.reason, Reason::InconsistentTotal);
    assert_eq!(q.format, RawFormat::CwlLogEvent);
    assert_eq!(q.raw.as_deref(), Some(bad.as_str()), "exact bytes of the event");
    assert_eq!(
        q.position,
        Position { member: Some(4), event: Some(2), offset: Some(1000), line: None }
    );
    assert_eq!(out.outcomes.remove(0), Outcome::Skip(SkipKind::PlatformLine));
}

/// A data payload is read in one pass into a batch that holds nothing yet; a payload that
/// only the two passes read, or a batch that holds something, is left to them untouched.
#[test]
fn a_data_payload_is_read_in_one_pass_where_it_can_be() {
    let good = cw_line(CW_ID, 1_790_841_600_000, USAGE);
    let bad = cw_line("2", 1_790_841_600_001, &USAGE.replace("909", "900"));
    let d = Decoder::default();
    let source = src();
    let ctx = Ctx::new(&source, Position::default());
    let body = payload("DATA_MESSAGE", &[good.clone(), bad]);
    let mut out = Decoded::default();
    assert!(d.payload_flat(&body, ctx, &mut out));
    assert_eq!(out.outcomes.len(), 2);
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), CW_ID);
    assert_eq!(reject(out.outcomes.remove(0)).position.event, Some(2));
    // The one pass gave up past its first event (a nested member after the log events).
    let nested = body.replacen("]}", r#"],"x":{"y":1}}"#, 1);
    let mut out = Decoded::default();
    assert!(!d.payload_flat(&nested, ctx, &mut out));
    assert!(out.is_empty(), "the batch is given back empty: {:?}", out.outcomes);
    for text in [
        payload("CONTROL_MESSAGE", std::slice::from_ref(&good)),
        // The type after the log events.
        body.replace(r#""messageType":"DATA_MESSAGE","#, "")
            .replace("]}", r#"],"messageType":"DATA_MESSAGE"}"#),
    ] {
        assert!(!d.payload_flat(&text, ctx, &mut Decoded::default()), "{text}");
    }
    let mut held = Decoded::default();
    held.outcomes.push(Outcome::Skip(SkipKind::PlatformLine));
    assert!(!d.payload_flat(&body, ctx, &mut held));
    assert_eq!(held.outcomes.len(), 1);
    // Under a depth limit below the payload's three levels, its depth is checked first.
    let shallow = Decoder::new(
        DecodeConfig::default()
            .with_limits(crate::RecordLimits { json_depth: 2, ..Default::default() })
            .unwrap(),
    );
    assert!(!shallow.payload_flat(&body, ctx, &mut Decoded::default()));
}

#[test]
fn control_message_is_one_skip() {
    let body = payload(
        "CONTROL_MESSAGE",
        &[cw_line(
            "",
            1_790_841_600_000,
            "CWL CONTROL MESSAGE: Checking health of destination Kinesis stream.",
        )],
    );
    let mut out = Decoded::default();
    Decoder::default().payload_gzip(
        &gzip_bytes(body.as_bytes()),
        Ctx::new(&src(), Position::default()),
        &mut out,
    );
    assert_eq!(out.outcomes, vec![Outcome::Skip(SkipKind::ControlMessage)]);
}

#[test]
fn payloads_that_are_not_payloads() {
    let mut out = Decoded::default();
    let d = Decoder::default();
    d.payload_gzip(b"\x1f\x8bnot really", Ctx::new(&src(), Position::default()), &mut out);
    d.payload_gzip(
        &gzip_bytes(b"{\"messageType\":\"HELLO\"}"),
        Ctx::new(&src(), Position::default()),
        &mut out,
    );
    d.payload_gzip(
        &gzip_bytes(b"{\"logEvents\":[]}"),
        Ctx::new(&src(), Position::default()),
        &mut out,
    );
    let reasons: Vec<_> = out.outcomes.into_iter().map(|o| reject(o).reason).collect();
    assert_eq!(reasons, [Reason::InvalidGzip, Reason::InvalidPayload, Reason::InvalidPayload]);
}

#[test]
fn one_line_payloads_and_filter_log_events_documents() {
    let ev = cw_line(CW_ID, 1_790_841_600_000, USAGE);
    let d = decode(&payload("DATA_MESSAGE", &[ev.clone(), ev]));
    assert_eq!(d.outcomes.len(), 2);
    let fle = serde_json::json!({
        "events": [
            {"logStreamName":"s","timestamp":1_790_841_600_000_i64,"message":USAGE,"ingestionTime":1_790_841_600_500_i64,"eventId":CW_ID},
            {"logStreamName":"s","timestamp":1_790_841_600_000_i64,"message":"plain","eventId":"x"}
        ],
        "searchedLogStreams": []
    })
    .to_string();
    let mut d = decode(&fle);
    assert_eq!(event(d.outcomes.remove(0)).event_id.as_str(), CW_ID);
    assert_eq!(d.outcomes.remove(0), Outcome::Skip(SkipKind::NonJsonMessage));
}

#[test]
fn tenant_field_is_configurable() {
    let cfg = DecodeConfig::new("org", 1 << 20, 1 << 20).unwrap();
    let line = USAGE
        .replace("\"clinic_id\"", "\"org\"")
        .replace("{\"event\"", "{\"timestamp\":\"2026-10-01T08:00:00Z\",\"event\"");
    let mut out = Decoded::default();
    Decoder::new(cfg).line(line.as_bytes(), &src(), line_no(1), &mut out);
    assert_eq!(event(out.outcomes.remove(0)).tenant_id.as_str(), "clinic-a");
}

#[test]
fn quarantine_entries_replay_with_their_original_lineage() {
    let bad = USAGE
        .replace("909", "910")
        .replace("{\"event\"", "{\"timestamp\":\"2026-10-01T08:00:00Z\",\"event\"");
    let first = reject(one(&bad));
    let envelope = serde_json::to_string(&first).unwrap();

    // Replayed unchanged: refused again, same source, position and bytes.
    let mut out = Decoded::default();
    let qsrc = SourceUri::new("file:///lake/_quarantine/x.jsonl");
    Decoder::default().line(envelope.as_bytes(), &qsrc, line_no(1), &mut out);
    assert_eq!(out.lineage, vec![src()]);
    assert_eq!(out.outcomes, vec![Outcome::Reject(Box::new(first.clone()))]);

    // Fixed in place: accepted, attributed to the original source.
    let mut fixed = first.clone();
    fixed.raw = Some(bad.replace("910", "909"));
    let mut out = Decoded::default();
    Decoder::default().line(
        serde_json::to_string(&fixed).unwrap().as_bytes(),
        &qsrc,
        line_no(1),
        &mut out,
    );
    let e = event(out.outcomes.remove(0));
    assert_eq!(e.source, src());

    // Entries do not nest.
    let mut nested = first;
    nested.raw = Some(envelope);
    let mut out = Decoded::default();
    Decoder::default().line(
        serde_json::to_string(&nested).unwrap().as_bytes(),
        &qsrc,
        line_no(1),
        &mut out,
    );
    assert_eq!(
        reject(out.outcomes.remove(0)).detail,
        "a quarantine entry inside a quarantine entry"
    );
}

#[test]
fn quarantined_payload_and_log_event_entries_replay() {
    let good = cw_line(CW_ID, 1_790_841_600_000, USAGE);
    let entry = QuarantineEntry::new(
        Reason::InvalidGzip,
        "was corrupt",
        src(),
        Position { member: Some(1), ..Default::default() },
        RawFormat::CwlPayloadGzip,
        &gzip_bytes(payload("DATA_MESSAGE", std::slice::from_ref(&good)).as_bytes()),
        1 << 20,
    );
    let mut out = Decoded::default();
    Decoder::default().line(
        serde_json::to_string(&entry).unwrap().as_bytes(),
        &src(),
        line_no(1),
        &mut out,
    );
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), CW_ID);

    let entry = QuarantineEntry::new(
        Reason::InvalidJson,
        "",
        src(),
        Position::default(),
        RawFormat::CwlLogEvent,
        good.as_bytes(),
        1 << 20,
    );
    let mut out = Decoded::default();
    Decoder::default().line(
        serde_json::to_string(&entry).unwrap().as_bytes(),
        &src(),
        line_no(1),
        &mut out,
    );
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), CW_ID);
}

#[test]
fn conflicting_duplicate_keys_are_refused() {
    let line = USAGE.replace("\"tier\":\"basic\"", "\"tier\":\"basic\",\"tier\":\"premium\"");
    assert_eq!(reject(one(&line)).reason, Reason::ConflictingField);
}

#[test]
fn an_otlp_json_line_gives_one_outcome_per_span() {
    let line = serde_json::json!({"resourceSpans": [{"resource": {"attributes": [
        {"key": "tier", "value": {"stringValue": "basic"}},
        {"key": "clinic_id", "value": {"stringValue": "clinic-a"}}]},
      "scopeSpans": [{"scope": {"name": "strands.telemetry.tracer"}, "spans": [
        {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331", "name": "chat",
         "startTimeUnixNano": "1790841600000000000", "endTimeUnixNano": "1790841601000000000"},
        {"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "0000000000000000", "name": "chat",
         "startTimeUnixNano": "1790841600000000000", "endTimeUnixNano": "1790841601000000000"}]}]}]})
    .to_string();
    let d = decode(&line);
    match d.outcomes.as_slice() {
        [Outcome::Span(s), Outcome::Reject(q)] => {
            assert_eq!((s.tenant_id.as_str(), s.source.clone()), ("clinic-a", src()));
            assert_eq!((q.reason, q.format), (Reason::InvalidEventId, RawFormat::OtlpJson));
            assert_eq!(
                q.position,
                Position { line: Some(7), event: Some(2), ..Default::default() }
            );
        }
        other => panic!("{other:?}"),
    }
    let q = reject(one(r#"{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":7}]}]}]}"#));
    assert_eq!(
        (q.reason, q.format, q.position),
        (Reason::InvalidPayload, RawFormat::NdjsonLine, line_no(7))
    );
}

/// A line opening with `resourceSpans` is read in one pass; every such line must end as it
/// does when the general path reads it (here forced by a first key the fast path does not
/// take): spans, refusals, and lines that also name `event` or hold the key twice.
#[test]
fn trace_request_lines_end_as_the_general_path_ends_them() {
    let spans = r#"[{"resource":{"attributes":[{"key":"tier","value":{"stringValue":"basic"}},
        {"key":"clinic_id","value":{"stringValue":"clinic-a"}}]},"scopeSpans":[{"spans":[
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"b7ad6b7169203331","name":"chat",
         "startTimeUnixNano":"1790841600000000000","endTimeUnixNano":"1790841601000000000"},
        {"traceId":"0af7651916cd43dd8448eb211c80319c","spanId":"00","name":"chat"}]}]}]"#
        .replace('\n', "");
    let usage = format!(
        r#""timestamp":"2026-10-01T08:00:00Z","event_id":"req-1",{}"#,
        &USAGE[1..USAGE.len() - 1]
    );
    for rest in [
        format!(r#""resourceSpans":{spans}}}"#),
        format!(r#""resource_spans":{spans}}}"#),
        r#""resourceSpans":null}"#.to_owned(),
        r#""resourceSpans":[]}"#.to_owned(),
        format!(r#""resourceSpans":{spans},"other":{{"a":[1,2]}}}}"#),
        // Also a usage record, or a quarantine envelope: not a trace request.
        format!(r#""resourceSpans":{spans},{usage}}}"#),
        format!(r#""resourceSpans":{spans},"\u0065vent":"inference_usage"}}"#),
        format!(r#""resourceSpans":{spans},"agentmeter_quarantine":1}}"#),
        // Not one request.
        format!(r#""resourceSpans":{spans},"resourceSpans":[]}}"#),
        format!(r#""resourceSpans":{spans}}} trailing"#),
        r#""resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":7}]}]}]}"#.to_owned(),
        r#""resourceSpans":"#.to_owned(),
    ] {
        let fast = decode(&format!("{{{rest}"));
        let general = decode(&format!(r#"{{"x":0,{rest}"#));
        assert_eq!(fast.outcomes.len(), general.outcomes.len(), "{rest}");
        for (a, b) in fast.outcomes.iter().zip(&general.outcomes) {
            match (a, b) {
                // A refused line keeps its own bytes, and a parse error its column, which
                // differ by the forcing key.
                (Outcome::Reject(a), Outcome::Reject(b)) => {
                    let column =
                        |d: &str| d.split(" column ").next().unwrap_or_default().to_owned();
                    assert_eq!(
                        (a.reason, column(&a.detail), a.format, a.position),
                        (b.reason, column(&b.detail), b.format, b.position),
                        "{rest}"
                    );
                }
                (a, b) => assert_eq!(a, b, "{rest}"),
            }
        }
    }
    let with_usage = decode(&format!(r#"{{"resourceSpans":{spans},{usage}}}"#));
    assert!(matches!(with_usage.outcomes.as_slice(), [Outcome::Event(_)]), "{with_usage:?}");
}

#[test]
fn an_unreadable_otlp_span_entry_stays_quarantined_as_it_was_read() {
    let entry = QuarantineEntry::new(
        Reason::MissingField,
        "clinic_id (or tenant_id) is missing",
        SourceUri::new("http://127.0.0.1:4318/v1/traces"),
        Position { event: Some(3), ..Default::default() },
        RawFormat::OtlpJson,
        b"{\"resourceSpans\":[",
        1 << 20,
    );
    let q = reject(one(&serde_json::to_string(&entry).unwrap()));
    assert_eq!(
        (q.reason, q.format, q.position),
        (Reason::InvalidPayload, RawFormat::OtlpJson, entry.position)
    );
    assert_eq!((q.source, q.raw), (entry.source, entry.raw));
}

#[test]
fn stream_records_are_gzip_payloads_member_by_member_or_ndjson_lines() {
    let uri = SourceUri::new(
        "kinesis://usage/shardId-000000000001/49590338271490256608559692538361571095921575989136588802",
    );
    let ev = |id: &str| cw_line(id, 1_790_841_600_000, USAGE);
    let first = gzip_bytes(payload("DATA_MESSAGE", &[ev("1"), ev("2")]).as_bytes());
    let second = gzip_bytes(payload("CONTROL_MESSAGE", &[ev("3")]).as_bytes());
    let mut corrupt = gzip_bytes(payload("DATA_MESSAGE", &[ev("4")]).as_bytes());
    corrupt.truncate(corrupt.len() - 5);
    let mut data = first.clone();
    data.extend(&second);
    data.extend(&corrupt);
    let mut out = Decoded::default();
    Decoder::default().stream_record(&data, &uri, &mut out);
    assert_eq!(out.outcomes.len(), 4, "{:?}", out.outcomes);
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), "1");
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), "2");
    assert_eq!(out.outcomes.remove(0), Outcome::Skip(SkipKind::ControlMessage));
    let q = reject(out.outcomes.remove(0));
    assert_eq!(q.reason, Reason::InvalidGzip);
    assert_eq!(q.source, uri);
    let offset = (first.len() + second.len()) as u64;
    assert_eq!(
        q.position,
        Position { member: Some(3), offset: Some(offset), ..Default::default() }
    );
    assert_eq!(q.format, RawFormat::CwlPayloadGzip);

    // Not gzip: NDJSON, one record per line, positions by line.
    let line = USAGE.replace(
        "{\"event\"",
        "{\"timestamp\":\"2026-10-01T08:00:00Z\",\"event_id\":\"k-1\",\"event\"",
    );
    let text = format!("{line}\nnot json\n");
    let mut out = Decoded::default();
    Decoder::default().stream_record(text.as_bytes(), &uri, &mut out);
    assert_eq!(out.outcomes.len(), 2, "{:?}", out.outcomes);
    assert_eq!(event(out.outcomes.remove(0)).event_id.as_str(), "k-1");
    let q = reject(out.outcomes.remove(0));
    assert_eq!((q.reason, q.position), (Reason::InvalidJson, line_no(2)));
}

#[test]
fn api_log_events_keep_their_cloudwatch_id() {
    let uri = SourceUri::new("logs:///aws/lambda/agent/2026/10/01/[$LATEST]abc/7");
    let mut out = Decoded::default();
    let message = format!("2026-10-01T08:00:00.000Z\tr-1\tINFO\t{USAGE}");
    Decoder::default().api_log_event(CW_ID, 1_790_841_600_000, &message, &uri, &mut out);
    let e = event(out.outcomes.remove(0));
    assert_eq!(e.event_id.as_str(), CW_ID);
    assert_eq!(e.source, uri);
}

#[test]
fn a_lines_session_is_kept_under_any_of_its_names() {
    let with = |field: &str| {
        USAGE.replace(
            "{\"event\"",
            &format!("{{\"timestamp\":\"2026-10-01T08:00:00Z\",{field},\"event\""),
        )
    };
    for field in [
        r#""session_id":"s-1""#,
        r#""sessionId":"s-1""#,
        r#""agent_instance_id":"s-1""#,
        r#""session_id":"s-1","sessionId":"s-1""#,
    ] {
        let e = event(one(&with(field)));
        assert_eq!(e.session_id.as_ref().map(|s| s.as_str()), Some("s-1"), "{field}");
    }
    for field in [r#""session_id":null"#, r#""session_id":"""#] {
        assert_eq!(event(one(&with(field))).session_id, None, "{field}");
    }
    let q = reject(one(&with(r#""session_id":"a b""#)));
    assert_eq!(q.reason, Reason::InvalidField);
    let q = reject(one(&with(r#""session_id":"s-1","sessionId":"s-2""#)));
    assert_eq!(
        (q.reason, q.detail.as_str()),
        (Reason::ConflictingField, "session_id and sessionId differ")
    );
}

/// `USAGE` with a time of its own.
fn timed() -> String {
    USAGE.replacen('{', "{\"timestamp\":\"2026-10-01T08:00:00Z\",", 1)
}

/// A valid usage line with one more field that makes it `depth` levels deep.
fn nested_usage(depth: usize) -> String {
    let deep = format!("{}1{}", "[".repeat(depth - 1), "]".repeat(depth - 1));
    timed().replacen('{', &format!("{{\"debug\":{deep},"), 1)
}

#[test]
fn json_nested_past_the_limit_is_over_limit_and_its_neighbours_pass() {
    // The object itself is level 1: a field of 63 brackets makes 64 levels, the default.
    assert!(matches!(one(&nested_usage(64)), Outcome::Event(_)));
    let line = nested_usage(65);
    let q = reject(one(&line));
    assert_eq!(q.reason, Reason::OverLimit);
    assert_eq!(q.detail, "JSON nested deeper than the limit of 64 levels");
    assert_eq!(q.raw.as_deref(), Some(line.as_str()));
    // 100,000 levels: refused before the parser recurses, with the line kept whole.
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let text = format!("{}\n{deep}\n{}", timed(), timed());
    let mut out = Decoded::default();
    Decoder::default().stream_record(text.as_bytes(), &src(), &mut out);
    let kinds: Vec<_> = out
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Event(_) => "event".to_owned(),
            Outcome::Reject(q) => q.reason.code().to_owned(),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(kinds, ["event", "over_limit", "event"]);
    // The limit is a setting.
    let cfg = DecodeConfig::default()
        .with_limits(crate::RecordLimits { json_depth: 3, ..Default::default() })
        .unwrap();
    let mut out = Decoded::default();
    Decoder::new(cfg).line(nested_usage(4).as_bytes(), &src(), line_no(1), &mut out);
    assert!(matches!(&out.outcomes[..], [Outcome::Reject(q)] if q.reason == Reason::OverLimit));
    // At the lowest limit, a flat line (read without a depth scan) is one level deep and an
    // event; one nested value more is over the limit.
    let cfg = DecodeConfig::default()
        .with_limits(crate::RecordLimits { json_depth: 1, ..Default::default() })
        .unwrap();
    let mut out = Decoded::default();
    let nested = timed().replacen('{', r#"{"context":{"a":1},"#, 1);
    for line in [timed(), format!(" {}\t", timed()), nested] {
        Decoder::new(cfg.clone()).line(line.as_bytes(), &src(), line_no(1), &mut out);
    }
    assert!(matches!(
        &out.outcomes[..],
        [Outcome::Event(_), Outcome::Event(_), Outcome::Reject(q)] if q.reason == Reason::OverLimit
    ));
}

#[test]
fn a_deep_message_inside_a_log_event_is_over_limit_only_when_it_claims_usage() {
    let deep = nested_usage(70);
    let q = reject(one(&cw_line(CW_ID, 1_790_841_600_000, &deep)));
    assert_eq!(q.reason, Reason::OverLimit);
    let other = format!("{{\"level\":\"info\",\"ctx\":{}1{}}}", "[".repeat(80), "]".repeat(80));
    assert_eq!(
        one(&cw_line(CW_ID, 1_790_841_600_000, &other)),
        Outcome::Skip(SkipKind::NonJsonMessage)
    );
}

#[test]
fn a_batch_naming_too_many_tenants_or_users_refuses_the_records_past_the_limit() {
    let cfg = DecodeConfig::default()
        .with_limits(crate::RecordLimits {
            tenants_per_batch: 2,
            users_per_batch: 3,
            ..Default::default()
        })
        .unwrap();
    let line = |tenant: &str, user: &str| {
        timed().replace("dr.lee@clinic-a.example", user).replace("clinic-a", tenant)
    };
    let lines = [
        line("clinic-a", "u1"),
        line("clinic-b", "u2"),
        line("clinic-c", "u3"), // a third tenant
        line("clinic-a", "u3"),
        line("clinic-b", "u4"), // a fourth user
        line("clinic-b", "u1"),
    ];
    let mut out = Decoded::default();
    Decoder::new(cfg.clone()).stream_record(lines.join("\n").as_bytes(), &src(), &mut out);
    let got: Vec<String> = out
        .outcomes
        .iter()
        .map(|o| match o {
            Outcome::Event(e) => format!("{} {}", e.tenant_id.as_str(), e.user_id.as_str()),
            Outcome::Reject(q) => format!("{}: {}", q.reason.code(), q.detail),
            other => format!("{other:?}"),
        })
        .collect();
    assert_eq!(
        got,
        [
            "clinic-a u1",
            "clinic-b u2",
            "over_limit: the batch names more than 2 tenants (the limit per batch)",
            "clinic-a u3",
            "over_limit: the batch names more than 3 users (the limit per batch)",
            "clinic-b u1",
        ]
    );
    // The next batch starts afresh.
    let mut out = Decoded::default();
    Decoder::new(cfg).stream_record(lines[2].as_bytes(), &src(), &mut out);
    assert!(matches!(&out.outcomes[..], [Outcome::Event(_)]));
}

/// The UTF-8 check takes what the standard library takes and refuses the rest at the same
/// byte, in lines long enough for its SIMD paths and in short ones.
#[test]
fn the_utf8_check_agrees_with_the_standard_librarys() {
    let long = format!("{{\"model_id\":\"{}\",\"note\":\"é ✓ 𝄞\"}}", "a".repeat(300));
    let mut cases: Vec<Vec<u8>> = vec![b"".to_vec(), b"{}".to_vec(), long.clone().into_bytes()];
    for bad in [&b"\xff"[..], b"\xc3", b"\xe2\x9c", b"\xed\xa0\x80", b"\xf4\x90\x80\x80"] {
        for at in [0, 5, 100, long.len()] {
            let mut b = long.as_bytes()[..at].to_vec();
            b.extend_from_slice(bad);
            b.extend_from_slice(&long.as_bytes()[at..]);
            cases.push(b);
        }
    }
    for bytes in &cases {
        let ours = super::utf8(bytes).map_err(|e| e.valid_up_to());
        assert_eq!(ours, std::str::from_utf8(bytes).map_err(|e| e.valid_up_to()), "{bytes:?}");
    }
    assert_eq!(super::utf8(long.as_bytes()), Ok(long.as_str()));
    assert_eq!(super::utf8(&cases[5]).map_err(|e| e.valid_up_to()), Err(100));
}
