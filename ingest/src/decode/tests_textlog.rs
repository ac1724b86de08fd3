//! Log files as agents write them: a logging prefix, then the usage JSON.

use agentmeter_schemas::{Position, Reason, SkipKind, SourceUri, UsageEvent};

use super::*;
use crate::LogTimezone;

const USAGE: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"u1","model_id":"mistral.ministral-3-8b-instruct","input_tokens":812,"output_tokens":97,"total_tokens":909}"#;
/// 2026-10-01T08:00:00.123Z
const T: i64 = 1_790_841_600_123;

fn decode_with(line: &str, cfg: DecodeConfig) -> Outcome {
    let mut out = Decoded::default();
    let src = SourceUri::new("file:///logs/agent.log");
    let pos = Position { line: Some(3), ..Default::default() };
    Decoder::new(cfg).line(line.as_bytes(), &src, pos, &mut out);
    assert_eq!(out.outcomes.len(), 1, "{line}: {:?}", out.outcomes);
    out.outcomes.remove(0)
}

fn decode(line: &str) -> Outcome {
    decode_with(line, DecodeConfig::default())
}

fn event(o: Outcome) -> UsageEvent {
    match o {
        Outcome::Event(e) => e,
        other => panic!("not an event: {other:?}"),
    }
}

fn refused(o: Outcome) -> (Reason, String) {
    match o {
        Outcome::Reject(q) => (q.reason, q.detail),
        other => panic!("not a reject: {other:?}"),
    }
}

#[test]
fn python_logging_formats_ingest_like_ndjson() {
    for line in [
        format!("2026-10-01 08:00:00,123 - strands.usage - INFO - {USAGE}"),
        format!("2026-10-01 08:00:00,123 INFO strands.usage {USAGE}"),
        format!("2026-10-01 08:00:00.123 [INFO] strands.usage: {USAGE}\r"),
    ] {
        let e = event(decode(&line));
        assert_eq!((e.event_time_ms, e.tokens.input, e.tenant_id.as_str()), (T, 812, "clinic-a"));
        // The id is a digest of the line (prefix included): the same line read again (the
        // file ingested twice) is the same event.
        let hex = agentmeter_schemas::content_digest_hex(line.trim().as_bytes());
        assert_eq!(e.event_id.as_str(), format!("h:{hex}"));
    }
    let e = event(decode(&format!("2026-10-01 08:00:00 - strands.usage - INFO - {USAGE}")));
    assert_eq!(e.event_time_ms, T - 123);
}

#[test]
fn lambda_text_formats_in_a_log_file_ingest_like_ndjson() {
    // `[INFO]` first: the line starts as a JSON array would, and is still a log line.
    for line in [
        format!("[INFO]\t2026-10-01T08:00:00.123Z\t1c8df7d3-2f4b-4c5e-9a3d-518e6eca8125\t{USAGE}"),
        format!("2026-10-01T08:00:00.123Z\t1c8df7d3-2f4b-4c5e-9a3d-518e6eca8125\tINFO\t{USAGE}"),
    ] {
        let e = event(decode(&line));
        assert_eq!((e.event_time_ms, e.tokens.input, e.tenant_id.as_str()), (T, 812, "clinic-a"));
    }
    assert!(matches!(
        decode("[WARNING]\t2026-10-01T08:00:00.123Z\treq-1\tRetrying the model call"),
        Outcome::Skip(SkipKind::NonJsonMessage)
    ));
    // A JSON array is still read as JSON (and is no usage record).
    assert_eq!(refused(decode("[1, 2]")).0, Reason::NotAnObject);
}

#[test]
fn the_objects_own_time_and_id_win() {
    let obj = USAGE.replace('{', r#"{"timestamp":"2026-10-02T00:00:00Z","event_id":"req-9","#);
    let e = event(decode(&format!("2026-10-01 08:00:00,123 - a - INFO - {obj}")));
    assert_eq!((e.event_time_ms, e.event_id.as_str()), (1_790_899_200_000, "req-9"));
}

#[test]
fn asctime_is_read_in_the_log_timezone() {
    let line = format!("2026-10-01 10:00:00,123 - a - INFO - {USAGE}");
    let berlin = DecodeConfig::default().with_log_times("Europe/Berlin".parse().unwrap(), None);
    assert_eq!(event(decode_with(&line, berlin.clone())).event_time_ms, T);
    assert_eq!(event(decode(&line)).event_time_ms, T + 2 * 3_600_000);
    let gap = format!("2026-03-29 02:30:00,000 - a - INFO - {USAGE}");
    assert_eq!(
        refused(decode_with(&gap, berlin)),
        (
            Reason::InvalidTimestamp,
            "2026-03-29 02:30:00 does not exist in Europe/Berlin (a clock change)".into()
        )
    );
}

#[test]
fn a_line_without_a_time_needs_default_time() {
    let line = format!("INFO:strands.usage:{USAGE}");
    assert_eq!(
        refused(decode(&line)),
        (
            Reason::MissingTimestamp,
            "no time in the line's logging prefix and no timestamp field (give --default-time)"
                .into()
        )
    );
    let cfg = DecodeConfig::default().with_log_times(LogTimezone::Utc, Some(T));
    assert_eq!(event(decode_with(&line, cfg)).event_time_ms, T);
}

#[test]
fn other_lines_of_the_application() {
    // A log line without JSON, or with JSON that is not usage, is skipped and counted.
    let o =
        decode("2026-10-01 08:00:01,456 - httpx - INFO - HTTP Request: POST \"HTTP/1.1 200 OK\"");
    assert!(matches!(o, Outcome::Skip(SkipKind::NonJsonMessage)), "{o:?}");
    let o = decode(r#"2026-10-01 08:00:01,456 - app - INFO - {"event":"startup"}"#);
    assert!(matches!(o, Outcome::Skip(SkipKind::OtherEvent)), "{o:?}");
    // Broken usage JSON after a prefix is quarantined, as is text with no known prefix.
    let cut = &USAGE[..USAGE.len() - 5];
    let (reason, _) = refused(decode(&format!("2026-10-01 08:00:00,123 - a - INFO - {cut}")));
    assert_eq!(reason, Reason::InvalidJson);
    assert_eq!(
        refused(decode("Traceback (most recent call last):")),
        (Reason::InvalidJson, "neither JSON nor a line with a known logging prefix".into())
    );
}
