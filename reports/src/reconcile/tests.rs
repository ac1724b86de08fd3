use agentmeter_aggregate::{EventWriter, Lake, WriterOptions};
use agentmeter_schemas::{
    AgentSpan, EventId, ModelId, SourceUri, SpanStatus, SpanTokens, TenantId, Tier, Tokens,
    UsageEvent, UserId,
};
use chrono::NaiveDate;

use super::*;

fn oct(day: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, day).unwrap()
}

fn at(day: u32, second: i64) -> i64 {
    oct(day).and_hms_opt(9, 0, 0).unwrap().and_utc().timestamp_millis() + second * 1000
}

fn log(tenant: &str, day: u32, n: i64, input: i64, output: i64, cache_read: i64) -> UsageEvent {
    UsageEvent {
        event_time_ms: at(day, n),
        event_id: EventId::new(format!("{tenant}-{day}-{n}")).unwrap(),
        tier: Tier::new("basic").unwrap(),
        tenant_id: TenantId::new(tenant).unwrap(),
        user_id: UserId::new("u1").unwrap(),
        model_id: ModelId::new("m").unwrap(),
        source: SourceUri::new("file:///logs"),
        tokens: Tokens {
            input,
            output,
            total: input + output,
            cache_read,
            cache_write: 0,
            cache_write_1h: 0,
        },
        session_id: None,
        service_tier: Default::default(),
    }
}

/// A span of one trace per tenant and day; `n` makes the span id.
fn span(tenant: &str, day: u32, n: u8, op: &str, tokens: SpanTokens) -> AgentSpan {
    let t = ["clinic-a", "clinic-b", "hosp-c", "hosp-dd", "clinic-e"]
        .iter()
        .position(|x| *x == tenant)
        .unwrap();
    AgentSpan {
        trace_id: format!("{t:0>30}{day:02}").into(),
        span_id: format!("{t:0>14}{n:02x}").into(),
        parent_span_id: (op != "invoke_agent").then(|| format!("{t:0>14}01").into()),
        name: format!("{op} x").into(),
        operation: Some(op.into()),
        start_ms: at(day, i64::from(n)),
        end_ms: at(day, i64::from(n)) + 500,
        tier: Tier::new("basic").unwrap(),
        tenant_id: TenantId::new(tenant).unwrap(),
        user_id: None,
        model_id: None,
        tool_name: None,
        status: SpanStatus::Ok,
        tokens,
        scope: "strands.telemetry.tracer".into(),
        service: None,
        source: SourceUri::new("otlp://test"),
    }
}

fn tok(input: i64, output: i64, cache_read: Option<i64>) -> SpanTokens {
    SpanTokens {
        input: Some(input),
        output: Some(output),
        total: Some(input + output),
        cache_read,
        cache_write: None,
    }
}

/// `clinic-a` day 1 agrees (its invoke_agent span repeats the sum, and must not count);
/// `clinic-b` day 1 has 50 input tokens fewer in its spans and a chat span without usage;
/// `clinic-e` logs its Agent object's lifetime total (its second line repeats the first);
/// `hosp-c` has logs only, `hosp-dd` spans only; day 2 is outside the range asked for.
fn lake() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    for e in [
        log("clinic-a", 1, 1, 100, 10, 0),
        log("clinic-a", 1, 2, 200, 20, 5),
        log("clinic-b", 1, 1, 300, 30, 0),
        log("hosp-c", 1, 1, 7, 1, 0),
        log("clinic-e", 1, 1, 655, 50, 0),
        log("clinic-e", 1, 2, 1_310, 100, 0),
        log("clinic-a", 2, 1, 9, 9, 0),
    ] {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let mut w: EventWriter<AgentSpan> = EventWriter::new(&lake, WriterOptions::default());
    for s in [
        span("clinic-a", 1, 1, "invoke_agent", tok(300, 30, Some(5))),
        span("clinic-a", 1, 2, "chat", tok(100, 10, None)),
        span("clinic-a", 1, 3, "chat", tok(200, 20, Some(5))),
        span("clinic-a", 1, 4, "execute_tool", SpanTokens::default()),
        span("clinic-b", 1, 1, "invoke_agent", tok(300, 30, None)),
        span("clinic-b", 1, 2, "chat", tok(250, 30, None)),
        span("clinic-b", 1, 3, "chat", SpanTokens { input: Some(0), ..Default::default() }),
        span("hosp-dd", 1, 2, "chat", tok(40, 4, None)),
        span("clinic-e", 1, 2, "chat", tok(655, 50, None)),
        span("clinic-e", 1, 3, "chat", tok(655, 50, None)),
        span("clinic-a", 2, 2, "chat", tok(1, 1, None)),
    ] {
        w.push(s).unwrap();
    }
    w.finish().unwrap();
    dir
}

fn counts(input: i64, output: i64, cache_read: i64) -> TokenCounts {
    TokenCounts { input, output, cache_read, cache_write: 0 }
}

#[test]
fn compares_log_tokens_with_chat_span_tokens_per_tenant_and_day() {
    let dir = lake();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let r = reconcile(&lake, oct(1), oct(1)).unwrap();
    let summary: Vec<_> = r
        .lines
        .iter()
        .map(|l| {
            (
                l.tenant_id.as_str(),
                l.status,
                l.log_calls,
                l.chat_spans,
                l.chat_spans_without_usage,
                l.logs,
                l.spans,
                l.difference,
                l.likely_cause,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            (
                "clinic-a",
                Status::Match,
                2,
                2,
                0,
                counts(300, 30, 5),
                counts(300, 30, 5),
                counts(0, 0, 0),
                None
            ),
            (
                "clinic-b",
                Status::UsageUnknown,
                1,
                2,
                1,
                counts(300, 30, 0),
                counts(250, 30, 0),
                counts(-50, 0, 0),
                None
            ),
            (
                "clinic-e",
                Status::Differs,
                2,
                2,
                0,
                counts(1_965, 150, 0),
                counts(1_310, 100, 0),
                counts(-655, -50, 0),
                Some(LikelyCause::CumulativeLogging)
            ),
            (
                "hosp-c",
                Status::LogsOnly,
                1,
                0,
                0,
                counts(7, 1, 0),
                counts(0, 0, 0),
                counts(-7, -1, 0),
                None
            ),
            (
                "hosp-dd",
                Status::SpansOnly,
                0,
                1,
                0,
                counts(0, 0, 0),
                counts(40, 4, 0),
                counts(40, 4, 0),
                Some(LikelyCause::MissingLogLines)
            ),
        ]
    );
    assert!(r.lines.iter().all(|l| l.dt == oct(1) && l.tier.as_str() == "basic"));
    assert_eq!(
        r.differences().map(|l| l.tenant_id.as_str()).collect::<Vec<_>>(),
        ["clinic-b", "clinic-e", "hosp-c", "hosp-dd"]
    );
    assert_eq!(
        r.counts().into_iter().collect::<Vec<_>>(),
        [
            (Status::Match, 1),
            (Status::Differs, 1),
            (Status::LogsOnly, 1),
            (Status::SpansOnly, 1),
            (Status::UsageUnknown, 1)
        ]
    );
}

#[test]
fn csv_has_a_header_and_one_row_per_line() {
    let dir = lake();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let r = reconcile(&lake, oct(1), oct(2)).unwrap();
    let text = String::from_utf8(r.to_csv().unwrap()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "dt,tier,tenant_id,status,log_calls,log_calls_without_usage,chat_spans,\
         chat_spans_without_usage,\
         log_input_tokens,span_input_tokens,difference_input_tokens,\
         log_output_tokens,span_output_tokens,difference_output_tokens,\
         log_cache_read_tokens,span_cache_read_tokens,difference_cache_read_tokens,\
         log_cache_write_tokens,span_cache_write_tokens,difference_cache_write_tokens,likely_cause"
    );
    assert_eq!(
        lines[2],
        "2026-10-01,basic,clinic-b,usage_unknown,1,0,2,1,300,250,-50,30,30,0,0,0,0,0,0,0,"
    );
    assert_eq!(
        lines[5],
        "2026-10-01,basic,hosp-dd,spans_only,0,0,1,0,0,40,40,0,4,4,0,0,0,0,0,0,missing_log_lines"
    );
    // Day 2 is in this range: its one chat span has 8 input and 8 output tokens fewer.
    assert_eq!(
        lines[6],
        "2026-10-02,basic,clinic-a,differs,1,0,1,0,9,1,-8,9,1,-8,0,0,0,0,0,0,cumulative_logging"
    );
    assert_eq!(lines.len(), 7);
}

#[test]
fn an_empty_range_reconciles_to_nothing() {
    let dir = lake();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let r = reconcile(&lake, oct(5), oct(9)).unwrap();
    assert!(r.lines.is_empty());
    assert_eq!(String::from_utf8(r.to_csv().unwrap()).unwrap().lines().count(), 1);
}
