//! Splitting whole sources: formats, gzip members, corrupt regions, documents, positions.

use agentmeter_schemas::{Position, RawFormat, Reason, SkipKind, SourceUri};

use super::*;
use crate::gzip::gzip_bytes;

const USAGE: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"m","input_tokens":1,"output_tokens":2,"total_tokens":3,"timestamp":"2026-10-01T08:00:00Z"}"#;

fn usage(i: u32) -> String {
    USAGE.replace("\"u1\"", &format!("\"u{i}\""))
}

fn cw_payload(ids: &[u32]) -> Vec<u8> {
    let events: Vec<_> = ids
        .iter()
        .map(|i| serde_json::json!({"id": i.to_string(), "timestamp": 1_790_841_600_000_i64, "message": usage(*i)}))
        .collect();
    let body = serde_json::json!({"messageType":"DATA_MESSAGE","owner":"1","logGroup":"g","logStream":"s","subscriptionFilters":["f"],"logEvents":events});
    gzip_bytes(body.to_string().as_bytes())
}

pub(super) fn run_with(bytes: &[u8], format: Format, cfg: DecodeConfig) -> Decoded {
    let decoder = Decoder::new(cfg);
    let mut out = Decoded::default();
    let source = Arc::new(SourceUri::new("file:///in"));
    let mut emit = |u: Unit| {
        u.decode(&decoder, false, &mut out);
        Ok(())
    };
    split(Window::new(Cursor::new(bytes), 64, None), &source, format, decoder.config(), &mut emit)
        .unwrap();
    out
}

fn run(bytes: &[u8]) -> Decoded {
    run_with(bytes, Format::Auto, DecodeConfig::default())
}

fn summary(d: &Decoded) -> Vec<String> {
    d.outcomes
        .iter()
        .map(|o| match o {
            Outcome::Event(e) => format!("event {} {}", e.event_id, e.user_id),
            Outcome::Skip(k) => format!("skip {k}"),
            Outcome::Reject(q) => format!("reject {} at {}", q.reason, q.position),
            Outcome::Span(s) => format!("span {}", s.key()),
        })
        .collect()
}

#[test]
fn ndjson_plain_and_gzip_number_lines_across_chunks() {
    let mut text = String::from("\n\n");
    for i in 0..10_000 {
        text.push_str(&usage(i));
        text.push('\n');
    }
    text.push_str("{broken\n");
    for bytes in [text.as_bytes().to_vec(), gzip_bytes(text.as_bytes())] {
        let d = run(&bytes);
        assert_eq!(d.outcomes.len(), 10_001);
        match &d.outcomes[10_000] {
            Outcome::Reject(q) => {
                assert_eq!(q.reason, Reason::InvalidJson);
                assert_eq!(q.position.line, Some(10_003));
                assert_eq!(q.raw.as_deref(), Some("{broken"));
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn concatenated_gzip_gzip_ndjson_is_text() {
    let mut bytes = gzip_bytes(format!("{}\n", usage(1)).as_bytes());
    bytes.extend(gzip_bytes(format!("{}\n", usage(2)).as_bytes()));
    assert_eq!(summary(&run(&bytes)).len(), 2);
}

#[test]
fn firehose_file_with_a_corrupt_member_and_trailing_garbage() {
    let m1 = cw_payload(&[1, 2]);
    let mut m2 = cw_payload(&[3]);
    let n = m2.len();
    m2[n / 2] ^= 0x55;
    let m3 = cw_payload(&[4]);
    let mut file = Vec::new();
    file.extend(&m1);
    file.extend(&m2);
    file.extend(&m3);
    file.extend(b"junk");
    let d = run(&file);
    let s = summary(&d);
    assert_eq!(s[0], "event 1 u1");
    assert_eq!(s[1], "event 2 u2");
    assert_eq!(s[2], "reject invalid_gzip at gzip member 2");
    assert_eq!(s[3], "event 4 u4");
    assert_eq!(s[4], "reject invalid_gzip at gzip member 4");
    assert_eq!(s.len(), 5);
    match &d.outcomes[2] {
        Outcome::Reject(q) => {
            assert_eq!(q.format, RawFormat::CwlPayloadGzip);
            assert_eq!(q.raw_bytes().unwrap(), m2, "exactly the corrupt member's bytes");
            assert_eq!(q.position.offset, Some(m1.len() as u64));
        }
        other => panic!("{other:?}"),
    }
    match &d.outcomes[4] {
        Outcome::Reject(q) => assert_eq!(q.raw_bytes().unwrap(), b"junk"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_corrupt_first_member_still_means_a_payload_file() {
    let mut m1 = cw_payload(&[1]);
    let n = m1.len();
    m1[n - 6] ^= 0xff; // CRC
    let mut file = m1;
    file.extend(cw_payload(&[2]));
    assert_eq!(summary(&run(&file)), ["reject invalid_gzip at gzip member 1", "event 2 u2"]);
}

#[test]
fn oversized_payload_is_refused_and_the_next_one_read() {
    let mut file = cw_payload(&(0..200).collect::<Vec<_>>());
    file.extend(cw_payload(&[7]));
    let cfg = DecodeConfig::new("clinic_id", 1 << 20, 4096).unwrap();
    let s = summary(&run_with(&file, Format::CwlSubscription, cfg));
    assert_eq!(s, ["reject too_large at gzip member 1", "event 7 u7"]);
}

#[test]
fn an_oversized_first_payload_does_not_hide_the_file_s_format() {
    // Detected, not told: the first member is too large to look at whole, yet it opens as a
    // payload, so the file is still read payload by payload (as text, the next payload
    // would be swallowed into one refused line with it).
    let mut file = cw_payload(&(0..200).collect::<Vec<_>>());
    file.extend(cw_payload(&[7]));
    let cfg = DecodeConfig::new("clinic_id", 1 << 20, 4096).unwrap();
    let s = summary(&run_with(&file, Format::Auto, cfg.clone()));
    assert_eq!(s, ["reject too_large at gzip member 1", "event 7 u7"]);
    // A long first member that is not a payload is still text: one line, refused as such.
    let mut text = gzip_bytes("x".repeat(8192).as_bytes());
    text.extend(gzip_bytes(format!("\n{}\n", usage(7)).as_bytes()));
    let cfg = DecodeConfig::new("clinic_id", 1000, 4096).unwrap();
    let s = summary(&run_with(&text, Format::Auto, cfg));
    assert_eq!(s.len(), 2);
    assert_eq!(s[0], "reject too_large at line 1");
    assert!(s[1].starts_with("event h:") && s[1].ends_with(" u7"), "{}", s[1]);
}

#[test]
fn control_message_file() {
    let body = r#"{"messageType":"CONTROL_MESSAGE","owner":"CloudwatchLogs","logGroup":"","logStream":"","subscriptionFilters":[],"logEvents":[{"id":"","timestamp":1790841600000,"message":"CWL CONTROL MESSAGE: Checking health of destination Firehose."}]}"#;
    assert_eq!(summary(&run(&gzip_bytes(body.as_bytes()))), ["skip control_message"]);
    assert_eq!(SkipKind::ControlMessage.code(), "control_message");
}

#[test]
fn filter_log_events_document_is_streamed() {
    let events: Vec<_> = (0..5000)
        .map(|i| serde_json::json!({"logStreamName":"s","timestamp":1_790_841_600_000_i64,"message":usage(i),"ingestionTime":1,"eventId":format!("e{i}")}))
        .collect();
    let doc = serde_json::to_string_pretty(
        &serde_json::json!({"events": events, "searchedLogStreams": []}),
    )
    .unwrap();
    let d = run(doc.as_bytes());
    assert_eq!(d.outcomes.len(), 5000);
    let s = summary(&d);
    assert_eq!(s[4999], "event e4999 u4999");
    let d = run_with(doc.as_bytes(), Format::FilterLogEvents, DecodeConfig::default());
    assert_eq!(d.outcomes.len(), 5000);
}

#[test]
fn documents_that_cannot_be_read_quarantine_the_whole_source() {
    let doc = "{\n  \"events\": [\n    {\"eventId\": \"a\", \"timestamp\": 1, \"message\": \"x\"},\n    oops\n  ]\n}\n";
    let d = run(doc.as_bytes());
    let last = d.outcomes.last().unwrap();
    match last {
        Outcome::Reject(q) => {
            assert_eq!(q.reason, Reason::InvalidJson);
            assert_eq!(q.format, RawFormat::Source);
            assert_eq!(q.raw.as_deref(), Some(doc));
            assert!(q.detail.contains("line 4"), "{}", q.detail);
        }
        other => panic!("{other:?}"),
    }
    let pretty = "{\n  \"hello\": 1\n}\n";
    assert_eq!(summary(&run(pretty.as_bytes())), ["reject unrecognized_format at whole source"]);
}

#[test]
fn whole_source_entries_replay() {
    let doc = serde_json::to_string_pretty(&serde_json::json!({"events": [
        {"eventId":"z","timestamp":1_790_841_600_000_i64,"message":usage(1)}
    ]}))
    .unwrap();
    let entry = agentmeter_schemas::QuarantineEntry::new(
        Reason::InvalidJson,
        "",
        SourceUri::new("file:///orig"),
        Position::default(),
        RawFormat::Source,
        doc.as_bytes(),
        1 << 20,
    );
    let d = run(format!("{}\n", serde_json::to_string(&entry).unwrap()).as_bytes());
    assert_eq!(summary(&d), ["event z u1"]);
    match &d.outcomes[0] {
        Outcome::Event(e) => assert_eq!(e.source.as_str(), "file:///orig"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn overlong_lines_are_refused_with_their_line_number() {
    let cfg = DecodeConfig::new("clinic_id", 300, 1 << 20).unwrap();
    let long = format!("{{\"pad\":\"{}\"}}", "x".repeat(1000));
    let text = format!("{}\n{long}\n{}\n", usage(1), usage(2));
    let d = run_with(text.as_bytes(), Format::Auto, cfg);
    assert_eq!(summary(&d)[1], "reject too_large at line 2");
    match &d.outcomes[1] {
        Outcome::Reject(q) => {
            // Read whole (it is under the longest line read), so a raised limit replays it.
            assert!(!q.raw_truncated);
            assert_eq!(q.raw.as_deref(), Some(long.as_str()));
            assert_eq!(q.detail, "line of 1010 bytes is over the 300-byte limit");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(d.outcomes.len(), 3);
    assert!(matches!(d.outcomes[2], Outcome::Event(_)));
    // Past the longest line read, only its first bytes are kept.
    let huge = format!("{{\"pad\":\"{}\"}}", "x".repeat(agentmeter_schemas::ENTRY_LINE_MAX));
    let text = format!("{}\n{huge}\n{}\n", usage(1), usage(2));
    let d = run_with(
        text.as_bytes(),
        Format::Auto,
        DecodeConfig::new("clinic_id", 300, 1 << 20).unwrap(),
    );
    match &d.outcomes[1] {
        Outcome::Reject(q) => {
            assert!(q.raw_truncated);
            assert_eq!(q.raw.as_deref().map(str::len), Some(agentmeter_schemas::ENTRY_LINE_MAX));
            assert_eq!(
                q.detail,
                format!("line of {} bytes is over the 300-byte limit", huge.len())
            );
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(d.outcomes[2], Outcome::Event(_)));
}

#[test]
fn expand_walks_directories_in_order_and_skips_hidden_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    std::fs::create_dir_all(root.join("b/c")).unwrap();
    for f in ["b/c/2.ndjson", "b/1.ndjson", "a.ndjson.gz", ".hidden", "b/.tmp"] {
        std::fs::write(root.join(f), "x").unwrap();
    }
    let specs = expand(&[root.to_owned(), root.join("a.ndjson.gz")], Format::Auto).unwrap();
    let names: Vec<_> = specs
        .iter()
        .map(|s| s.path.strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["a.ndjson.gz", "b/1.ndjson", "b/c/2.ndjson"]);
    assert!(specs[0].uri.as_str().starts_with("file:///"));
    let err = expand(&[root.join("missing")], Format::Auto).unwrap_err();
    assert!(err.to_string().starts_with("cannot read source "), "{err}");
}

#[test]
fn formats_parse() {
    assert_eq!("cwl-subscription".parse::<Format>(), Ok(Format::CwlSubscription));
    assert!("csv".parse::<Format>().unwrap_err().contains("unknown format \"csv\""));
}

#[test]
fn a_broken_first_line_does_not_take_the_file_with_it() {
    let text = format!("{{\"event\":\"inference_usage\",\"tier\":\n{}\n{}\n", usage(1), usage(2));
    let d = run(text.as_bytes());
    assert_eq!(summary(&d)[0], "reject invalid_json at line 1");
    assert_eq!(d.outcomes.len(), 3);
    assert!(
        matches!(d.outcomes[1], Outcome::Event(_)) && matches!(d.outcomes[2], Outcome::Event(_))
    );
}

#[test]
fn a_non_payload_first_member_does_not_take_the_file_with_it() {
    let mut file = gzip_bytes(br#"{"hello":"not a payload"}"#);
    file.extend(cw_payload(&[1, 2]));
    file.extend(cw_payload(&[3]));
    assert_eq!(
        summary(&run(&file)),
        ["reject invalid_payload at gzip member 1", "event 1 u1", "event 2 u2", "event 3 u3"]
    );
}

#[test]
fn gzip_text_with_one_line_per_member_is_still_text() {
    let mut file = gzip_bytes(format!("{}\n", usage(1)).as_bytes());
    file.extend(gzip_bytes(format!("{}\n", usage(2)).as_bytes()));
    file.extend(gzip_bytes(usage(3).as_bytes()));
    let d = run(&file);
    assert_eq!(d.outcomes.len(), 3);
    assert!(d.outcomes.iter().all(|o| matches!(o, Outcome::Event(_))));
}

#[test]
fn a_truncated_member_does_not_swallow_the_next_one() {
    let mut a = cw_payload(&[1]);
    a.truncate(a.len() - 12);
    let b = cw_payload(&[2]);
    let c = cw_payload(&[3]);
    let file = [a.clone(), b, c].concat();
    let d = run(&file);
    assert_eq!(summary(&d), ["reject invalid_gzip at gzip member 1", "event 2 u2", "event 3 u3"]);
    match &d.outcomes[0] {
        Outcome::Reject(q) => assert_eq!(q.raw_bytes().unwrap(), a, "exactly the truncated member"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_gzip_magic_inside_garbage_is_not_a_member() {
    // Garbage between members holding bytes that look like a gzip magic but not like a member
    // header (reserved flag bits set).
    let garbage =
        [[b'x'; 20].as_slice(), &[0x1f, 0x8b, 0x08, 0xe0, 0, 0, 0, 0, 0, 3], &[b'y'; 20]].concat();
    let file = [cw_payload(&[1]), garbage.clone(), cw_payload(&[7])].concat();
    let d = run(&file);
    assert_eq!(summary(&d), ["event 1 u1", "reject invalid_gzip at gzip member 2", "event 7 u7"]);
    match &d.outcomes[1] {
        Outcome::Reject(q) => assert_eq!(q.raw_bytes().unwrap(), garbage),
        other => panic!("{other:?}"),
    }
}

#[test]
fn what_opens_a_document() {
    for yes in [&b"{"[..], b"  [ ", b"{\"events\": [", b"{ \"events\":[{\"a\":1},"] {
        assert!(opens_document(yes), "{}", String::from_utf8_lossy(yes));
    }
    for no in [&b"{\"event\":\"inference_usage\",\"tier\":"[..], b"{\"eventsX", b"x{", b""] {
        assert!(!opens_document(no), "{}", String::from_utf8_lossy(no));
    }
}

// --- OTLP ---------------------------------------------------------------------------------------

/// The Strands trace as one compact line, as the Collector's file exporter writes it.
fn otlp_line() -> String {
    serde_json::from_str::<serde_json::Value>(crate::otlp::fixtures::STRANDS).unwrap().to_string()
}

fn otlp_request(spans: usize) -> Vec<u8> {
    use prost::Message as _;
    let mut req = crate::otlp::fixtures::strands_proto();
    req.resource_spans[0].scope_spans[0].spans.truncate(spans);
    req.encode_to_vec()
}

fn length_prefixed(requests: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in requests {
        out.extend((r.len() as u32).to_be_bytes());
        out.extend(*r);
    }
    out
}

fn assert_private(d: &Decoded) {
    let text = format!("{:?}", d.outcomes);
    for p in crate::otlp::fixtures::PRIVATE {
        assert!(!text.contains(p), "{p:?} leaked");
    }
}

#[test]
fn collector_file_exporter_ndjson_plain_and_gzip() {
    let no_tenant =
        otlp_line().replace(r#"{"key":"clinic_id","value":{"stringValue":"clinic-a-north"}},"#, "");
    let text =
        format!("{}\n{{\"resourceSpans\":\"oops\"}}\n{no_tenant}\n{}\n", otlp_line(), usage(1));
    for bytes in [text.as_bytes().to_vec(), gzip_bytes(text.as_bytes())] {
        let d = run(&bytes);
        assert_private(&d);
        let s = summary(&d);
        assert_eq!(s.len(), 7 + 1 + 7 + 1);
        assert_eq!(s[0], "span 5b8efff798038103d269b633813fc60c:eee19b7ec3c1b176");
        assert_eq!(s[7], "reject invalid_payload at line 2");
        assert_eq!(s[8], "reject missing_field at line 3, log event 1");
        assert!(s[15].starts_with("event h:") && s[15].ends_with(" u1"), "{}", s[15]);
        match (&d.outcomes[7], &d.outcomes[9]) {
            (Outcome::Reject(whole), Outcome::Reject(span)) => {
                assert_eq!(whole.format, RawFormat::NdjsonLine);
                assert_eq!((whole.raw.as_deref(), whole.raw_withheld), (None, true));
                assert_eq!(
                    whole.detail,
                    "body is not an OTLP JSON ExportTraceServiceRequest: invalid type: string \"…\", \
                     expected a sequence at line 1 column 23 (not kept: a trace request may hold \
                     free text)"
                );
                assert_eq!(span.format, RawFormat::OtlpJson);
                assert_eq!(
                    span.position,
                    Position { line: Some(3), event: Some(2), ..Default::default() }
                );
            }
            other => panic!("{other:?}"),
        }
    }
}

fn proto_summary(bytes: &[u8]) -> Vec<String> {
    summary(&run_with(bytes, Format::OtlpProto, DecodeConfig::default()))
}

#[test]
fn length_prefixed_protobuf_file_with_a_bad_request() {
    let (a, b) = (otlp_request(2), otlp_request(7));
    let garbage = b"\x0a\xff\xff\xff\x0fnot a request".to_vec();
    let file = length_prefixed(&[&a, &garbage, &b]);
    for bytes in [file.clone(), gzip_bytes(&file)] {
        let d = run_with(&bytes, Format::OtlpProto, DecodeConfig::default());
        assert_private(&d);
        let s = summary(&d);
        assert_eq!(s.len(), 2 + 1 + 7);
        assert_eq!(s[2], "reject invalid_payload at gzip member 2");
        assert_eq!(s[9], "span 5b8efff798038103d269b633813fc60c:eee19b7ec3c1b174");
        match &d.outcomes[2] {
            Outcome::Reject(q) => {
                assert_eq!(
                    (q.format, q.raw.as_deref(), q.raw_withheld),
                    (RawFormat::Source, None, true)
                );
                let plain = bytes == file;
                assert_eq!(q.position.offset, plain.then_some(4 + a.len() as u64));
                assert!(q.detail.starts_with("body is not a protobuf ExportTraceServiceRequest: "));
            }
            other => panic!("{other:?}"),
        }
    }
    // One bare request, plain or gzip.
    assert_eq!(proto_summary(&b).len(), 7);
    assert_eq!(proto_summary(&gzip_bytes(&b)).len(), 7);
}

#[test]
fn protobuf_files_that_end_early_or_are_too_large() {
    let a = otlp_request(1);
    let mut file = length_prefixed(&[&a, &a]);
    file.truncate(file.len() - 3);
    assert_eq!(
        proto_summary(&file),
        [
            "span 5b8efff798038103d269b633813fc60c:eee19b7ec3c1b176",
            "reject invalid_payload at gzip member 2",
        ]
    );
    let mut file = length_prefixed(&[&a]);
    file.extend([0, 0]);
    let d = run_with(&file, Format::OtlpProto, DecodeConfig::default());
    match &d.outcomes[1] {
        Outcome::Reject(q) => {
            assert!(q.raw_truncated);
            assert_eq!(q.detail, "request 2: the file ends inside its 4-byte length prefix");
        }
        other => panic!("{other:?}"),
    }
    let cfg = DecodeConfig::new("clinic_id", 1 << 20, a.len() - 1).unwrap();
    let big = otlp_request(7);
    let d = run_with(&length_prefixed(&[&big, &a, &big]), Format::OtlpProto, cfg.clone());
    let s = summary(&d);
    assert_eq!(s[0], "reject too_large at gzip member 1");
    assert_eq!(s.len(), 3);
    let d = run_with(&big, Format::OtlpProto, cfg);
    match d.outcomes.as_slice() {
        [Outcome::Reject(q)] => {
            assert_eq!(q.reason, Reason::TooLarge);
            assert!(q.raw_truncated);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_refused_protobuf_request_replays_as_a_bare_request() {
    let entry = |source: &str, raw: &[u8]| {
        let e = agentmeter_schemas::QuarantineEntry::new(
            Reason::InvalidPayload,
            "",
            SourceUri::new(source),
            Position { member: Some(2), ..Default::default() },
            RawFormat::Source,
            raw,
            1 << 20,
        );
        format!("{}\n", serde_json::to_string(&e).unwrap())
    };
    let good = otlp_request(3);
    for source in ["file:///traces/export.pb", "file:///traces/unnamed"] {
        let d = run(entry(source, &good).as_bytes());
        assert_eq!(d.outcomes.len(), 3, "{source}");
        assert!(
            d.outcomes.iter().all(|o| matches!(o, Outcome::Span(s) if s.source.as_str() == source))
        );
        assert_eq!(d.lineage, [SourceUri::new(source)]);
    }
    let d = run(entry("file:///traces/export.binpb.gz", b"\x0a\xff\xff\xff\x0fbad").as_bytes());
    match d.outcomes.as_slice() {
        [Outcome::Reject(q)] => {
            assert_eq!((q.reason, q.format), (Reason::InvalidPayload, RawFormat::Source));
            assert_eq!(q.position.member, Some(2));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn protobuf_files_are_detected_by_extension() {
    let dir = tempfile::tempdir().unwrap();
    let req = otlp_request(2);
    std::fs::write(dir.path().join("a.binpb"), length_prefixed(&[&req, &req])).unwrap();
    std::fs::write(dir.path().join("b.PB.gz"), gzip_bytes(&req)).unwrap();
    std::fs::write(dir.path().join("c.ndjson"), format!("{}\n", otlp_line())).unwrap();
    let specs = expand(&[dir.path().to_owned()], Format::Auto).unwrap();
    let decoder = Decoder::default();
    let counts: Vec<usize> = specs
        .iter()
        .map(|spec| {
            let mut out = Decoded::default();
            read_file(spec, decoder.config(), None, &mut |u| {
                u.decode(&decoder, false, &mut out);
                Ok(())
            })
            .unwrap();
            assert!(out.outcomes.iter().all(|o| matches!(o, Outcome::Span(_))), "{:?}", spec.path);
            out.outcomes.len()
        })
        .collect();
    assert_eq!(counts, [4, 2, 7]);
    for (name, yes) in [
        ("x.pb", true),
        ("x.otlp.gz", true),
        ("X.BINPB", true),
        ("x.pb.json", false),
        ("pb", false),
        ("x.ndjson.gz", false),
    ] {
        assert_eq!(otlp_proto_name(name), yes, "{name}");
    }
    assert_eq!("otlp-proto".parse::<Format>(), Ok(Format::OtlpProto));
}

#[test]
fn a_pretty_printed_otlp_json_request_is_read_whole() {
    let pretty = crate::otlp::fixtures::STRANDS;
    for bytes in [pretty.as_bytes().to_vec(), gzip_bytes(pretty.as_bytes())] {
        let d = run(&bytes);
        assert_private(&d);
        assert_eq!(d.outcomes.len(), 7);
        assert!(d.outcomes.iter().all(|o| matches!(o, Outcome::Span(_))));
    }
    // The right keys, the wrong shape: the whole source is refused, and replays as such.
    let wrong = "{\n  \"resourceSpans\": [{\"scopeSpans\": {\"spans\": []}}]\n}\n";
    let d = run(wrong.as_bytes());
    let q = match d.outcomes.as_slice() {
        [Outcome::Reject(q)] => q.clone(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        (q.reason, q.format, q.raw.as_deref(), q.raw_withheld),
        (Reason::InvalidPayload, RawFormat::Source, None, true)
    );
    let d = run(format!("{}\n", serde_json::to_string(&q).unwrap()).as_bytes());
    assert_eq!(summary(&d), ["reject invalid_payload at whole source"]);
    let cfg = DecodeConfig::new("clinic_id", 1 << 20, 100).unwrap();
    assert_eq!(
        summary(&run_with(pretty.as_bytes(), Format::Auto, cfg)),
        ["reject too_large at whole source"]
    );
}

#[test]
fn a_gzip_text_file_cut_short_keeps_its_lines_and_refuses_the_rest_without_stopping() {
    let text: String = (0..3000).map(|i| format!("{}\n", usage(i))).collect();
    let gz = gzip_bytes(text.as_bytes());
    let cut = &gz[..gz.len() / 2];
    for format in [Format::Auto, Format::Ndjson] {
        let s = summary(&run_with(cut, format, DecodeConfig::default()));
        let (last, lines) = s.split_last().unwrap();
        assert_eq!(last, "reject invalid_gzip at whole source");
        // The line the cut went through is refused as it stands; every line before is read.
        let (cut_line, whole) = lines.split_last().unwrap();
        assert!(cut_line.starts_with("reject invalid_json at line "), "{cut_line}");
        assert!(whole.len() > 500 && whole.iter().all(|l| l.starts_with("event ")));
    }
    // Corrupt in the middle rather than cut: the same.
    let mut bad = gz.clone();
    let mid = bad.len() / 2;
    bad[mid..mid + 64].fill(0xff);
    let s = summary(&run(&bad));
    assert_eq!(s.last().unwrap(), "reject invalid_gzip at whole source");
}

/// A gzip file whose first member is damaged a few hundred bytes in (found by the `ndjson`
/// fuzz target): what it is read as, and what is refused, does not depend on how much of
/// it the reader holds at once.
#[test]
fn a_damaged_gzip_file_reads_the_same_whatever_the_window() {
    let bytes = include_bytes!("testdata/corrupt-first-member.gz");
    let decoder = Decoder::default();
    for format in [Format::Auto, Format::Ndjson, Format::FilterLogEvents] {
        let want = fuzzing::decode_source(&decoder, bytes, format, 1 << 16).unwrap();
        for window in [16, 17, 100, 4096, 256 << 10] {
            let got = fuzzing::decode_source(&decoder, bytes, format, window).unwrap();
            assert_eq!(got.outcomes, want.outcomes, "{format:?}, window {window}");
            assert_eq!(got.lineage, want.lineage, "{format:?}, window {window}");
        }
    }
}

/// The units a text file is split into: each run of lines (its first line number and
/// bytes), or a refused line (its position, detail and kept bytes).
fn text_units(bytes: &[u8], window: usize) -> Vec<(u64, Vec<u8>)> {
    let source = Arc::new(SourceUri::new("file:///in"));
    // Records over 300 bytes are refused, but lines up to the longest quarantine entry are
    // read whole (the decoder tells the two apart).
    let cfg = DecodeConfig::new("clinic_id", 300, 1 << 20).unwrap();
    let mut units = Vec::new();
    let mut emit = |u: Unit| {
        units.push(match u {
            Unit::Lines { first_line, data, .. } => (first_line, data),
            Unit::Reject(q) => {
                let kept = q.raw.as_deref().map_or(0, str::len);
                let what = format!("reject {} {} {kept} {}", q.position, q.detail, q.raw_truncated);
                (0, what.into_bytes())
            }
            _ => panic!("a text file gave another unit"),
        });
        Ok(())
    };
    split(Window::new(Cursor::new(bytes), window, None), &source, Format::Ndjson, &cfg, &mut emit)
        .unwrap();
    units
}

/// Lines whole in the reader's buffer go straight into a unit, others through a line of
/// their own: the units (their lines, numbers and bounds, and the refusals of lines over the
/// longest read whole) do not depend on how much of the file the buffer holds.
#[test]
fn text_units_are_the_same_whatever_the_window() {
    let cap = agentmeter_schemas::ENTRY_LINE_MAX;
    let mut text = b"\n\n".to_vec();
    for i in 0..9_000 {
        text.extend_from_slice(usage(i).as_bytes());
        text.extend_from_slice(if i % 7 == 0 { b"\r\n" } else { b"\n" });
    }
    text.extend_from_slice(&b"x".repeat(cap));
    text.extend_from_slice(b"\n\n");
    text.extend_from_slice(&b"y".repeat(cap + 1));
    text.push(b'\n');
    for i in 0..3 {
        text.extend_from_slice(usage(i).as_bytes());
        text.push(b'\n');
    }
    text.extend_from_slice(b"{\"last\":\"without a newline\"}");
    let want = text_units(&text, 16);
    let lines: Vec<u64> = want.iter().map(|(first, _)| *first).collect();
    // Units close at 1 MiB: lines 3 to 5,642, then the rest of the 9,000 with the line of
    // `cap` bytes (9,003), then the blank line 9,004 alone before the line over `cap` is
    // refused at its number, and the lines go on from 9,006.
    assert_eq!(lines, [3, 5643, 9004, 0, 9006]);
    assert_eq!(
        want.iter().map(|u| u.1.len()).collect::<Vec<_>>(),
        [1_048_736, 1_674_017, 1, 78, 578]
    );
    assert_eq!(
        String::from_utf8_lossy(&want[3].1),
        format!("reject line 9005 line of {} bytes is over the 300-byte limit {cap} true", cap + 1)
    );
    for window in [17, 300, 4096, 256 << 10, 3 << 20] {
        assert!(text_units(&text, window) == want, "window {window}");
    }
}

#[test]
fn a_units_lines_fit_the_room_made_for_it_without_growing() {
    let mut chunk = Chunk::new(Arc::new(SourceUri::new("file:///in")));
    // Lines of uneven lengths, as a log's are: each unit ends past `CHUNK_BYTES` by a part of
    // its last line that differs from unit to unit.
    let lines: Vec<Vec<u8>> = (0..40).map(|i| vec![b'x'; 200 + i * 37 % 900]).collect();
    let mut next = lines.iter().cycle();
    let mut fill = |chunk: &mut Chunk| {
        while !chunk.full() {
            chunk.push(next.next().unwrap());
        }
    };
    fill(&mut chunk);
    let _ = chunk.take();
    for unit in 0..50 {
        let room = chunk.data.capacity();
        fill(&mut chunk);
        assert_eq!(chunk.data.capacity(), room, "unit {unit} grew");
        let _ = chunk.take();
    }
}
