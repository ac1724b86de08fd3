//! Exactly-once behaviour of the writer: dedup within and across runs, crash recovery, and
//! `usage_hourly` agreeing with `usage_events`.

use std::fs;

use agentmeter_schemas::tables::{ChatMeasures, HOUR_MS, USAGE_EVENTS, USAGE_HOURLY};
use agentmeter_schemas::{EventId, ModelId, SourceUri, TenantId, Tier, Tokens, UsageEvent, UserId};

use super::*;
use crate::lake::Lake;

mod encoding;
mod row_keys;

pub(crate) const DAY0: i64 = 1_790_812_800_000; // 2026-10-01T00:00:00Z

pub(crate) fn ev(id: &str, tenant: &str, t: i64, input: i64) -> UsageEvent {
    UsageEvent {
        event_time_ms: t,
        event_id: EventId::new(id).unwrap(),
        tier: Tier::new("basic").unwrap(),
        tenant_id: TenantId::new(tenant).unwrap(),
        user_id: UserId::new("u1").unwrap(),
        model_id: ModelId::new("m").unwrap(),
        source: SourceUri::new("file:///in"),
        tokens: Tokens {
            input,
            output: 1,
            total: input + 1,
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
        },
        session_id: None,
        service_tier: Default::default(),
    }
}

pub(crate) fn small() -> WriterOptions {
    WriterOptions { batch_rows: 3, max_rows_per_file: 2, index_budget: 1000, ..Default::default() }
}

pub(crate) fn day(n: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, n).unwrap()
}

pub(crate) fn all_events(lake: &Lake) -> Vec<UsageEvent> {
    let mut out = Vec::new();
    for dt in lake.partitions(USAGE_EVENTS).unwrap() {
        out.extend(lake.events(dt).unwrap());
    }
    out
}

#[test]
fn duplicates_within_and_across_runs_are_written_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    for e in [
        ev("a", "t1", DAY0 + 10, 5),
        ev("b", "t2", DAY0 + 20, 6),
        ev("a", "t1", DAY0 + 10, 5),
        ev("c", "t1", DAY0 + 86_400_000, 7),
        ev("b", "t2", DAY0 + 20, 9), // same id, different content
    ] {
        w.push(e).unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!((s.written, s.duplicates, s.conflicting, s.rollups), (3, 2, 1, 2));
    assert_eq!(all_events(&lake).len(), 3);

    let mut w = EventWriter::new(&lake, small());
    w.push(ev("a", "t1", DAY0 + 10, 5)).unwrap();
    w.push(ev("d", "t1", DAY0 + 30, 1)).unwrap();
    let s = w.finish().unwrap();
    assert_eq!((s.written, s.duplicates), (1, 1));
    let ids: Vec<_> = all_events(&lake).into_iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids.len(), 4);
}

#[test]
fn a_batch_with_a_time_out_of_the_calendar_fails_before_any_day_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    // The bad record sorts last among the batch's days: none of the others may be written.
    for e in [ev("a", "t1", DAY0, 1), ev("z", "t1", i64::MAX, 1), ev("b", "t1", DAY0 - 1, 1)] {
        w.push(e).unwrap();
    }
    let e = w.finish().unwrap_err().to_string();
    assert!(
        e.contains("a usage_events record has an out-of-range time 9223372036854775807"),
        "{e}"
    );
    assert_eq!(lake.partitions(USAGE_EVENTS).unwrap(), Vec::<NaiveDate>::new());
}

#[test]
fn files_are_sorted_by_tenant_then_time_and_named_by_content() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    for e in [ev("x", "t2", DAY0 + 5, 1), ev("y", "t1", DAY0 + 9, 1), ev("z", "t1", DAY0 + 1, 1)] {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let got: Vec<_> =
        lake.events(day(1)).unwrap().into_iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(got, ["z", "y", "x"]);
    let names: Vec<_> = lake.files(USAGE_EVENTS, day(1)).unwrap();
    assert_eq!(names.len(), 1);

    // The same events into another lake give the same file name.
    let dir2 = tempfile::tempdir().unwrap();
    let lake2 = Lake::open_dir(dir2.path()).unwrap();
    let mut w = EventWriter::new(&lake2, WriterOptions::default());
    for e in [ev("z", "t1", DAY0 + 1, 1), ev("x", "t2", DAY0 + 5, 1), ev("y", "t1", DAY0 + 9, 1)] {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let names2 = lake2.files(USAGE_EVENTS, day(1)).unwrap();
    assert_eq!(names[0].name(), names2[0].name());
}

#[test]
fn hourly_agrees_with_events_including_late_data() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    for i in 0..10 {
        w.push(ev(&format!("e{i}"), "t1", DAY0 + i * HOUR_MS / 4, 10)).unwrap();
    }
    w.finish().unwrap();
    let rows = lake.hourly(day(1)).unwrap();
    assert_eq!(rows.iter().map(|(_, m)| m.invocations).collect::<Vec<_>>(), [4, 4, 2]);

    // A late event for the first hour arrives in a later run.
    let mut w = EventWriter::new(&lake, small());
    w.push(ev("late", "t1", DAY0 + 59 * 60_000, 100)).unwrap();
    w.finish().unwrap();
    let rows = lake.hourly(day(1)).unwrap();
    let first = &rows[0].1;
    assert_eq!((first.invocations, first.tokens.input), (5, 140));
    assert_eq!(lake.files(USAGE_HOURLY, day(1)).unwrap().len(), 1);
}

#[test]
fn tenant_hours_keep_users_and_the_peak_second() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    // Three requests in second 10 (two users), one in second 11, one in the next hour.
    for (i, (t, user)) in
        [(10_000, "u1"), (10_400, "u2"), (10_999, "u1"), (11_000, "u1"), (HOUR_MS + 5, "u1")]
            .into_iter()
            .enumerate()
    {
        let mut e = ev(&format!("p{i}"), "t1", DAY0 + t, 1);
        e.user_id = UserId::new(user).unwrap();
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let rows = lake.tenant_hourly(day(1)).unwrap();
    let got: Vec<_> =
        rows.iter().map(|r| (r.invocations, r.users, r.peak_requests_per_second)).collect();
    assert_eq!(got, [(4, 2, 3), (1, 1, 1)]);
    assert_eq!(rows[0].tokens.input, 4);
}

fn period() -> (NaiveDate, NaiveDate) {
    (day(1), NaiveDate::from_ymd_opt(2026, 11, 1).unwrap())
}

#[test]
fn a_crash_between_events_and_rollup_leaves_a_stale_rollup_that_is_rebuilt_on_demand() {
    let dir = tempfile::tempdir().unwrap();
    {
        let lake = Lake::open_dir(dir.path()).unwrap();
        let mut w = EventWriter::new(&lake, small());
        w.push(ev("e0", "t1", DAY0, 1)).unwrap();
        w.finish().unwrap();
        assert!(lake.stale_rollups(period().0, period().1).unwrap().is_empty());
        let mut w = EventWriter::new(&lake, small());
        for i in 1..4 {
            w.push(ev(&format!("e{i}"), "t1", DAY0 + i, 1)).unwrap();
        }
        w.commit().unwrap();
        // Dropped without finish: the process died before the rollup, two hours ago.
        let half = dir.path().join("usage_events/dt=2026-10-01/.tmp-h~1-0-part-x.parquet.partial");
        fs::write(&half, b"half").unwrap();
        let f = fs::File::options().write(true).open(&half).unwrap();
        f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200))
            .unwrap();
    }
    let lake = Lake::open_dir(dir.path()).unwrap();
    let temps = fs::read_dir(dir.path().join("usage_events/dt=2026-10-01"))
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name().to_string_lossy().starts_with(".tmp-"))
        .count();
    assert_eq!(temps, 0, "the temporary file was removed on open");
    assert_eq!(lake.files(USAGE_EVENTS, day(1)).unwrap().len(), 3);
    // The rollup still holds the first event only, and says so.
    assert_eq!(lake.hourly(day(1)).unwrap()[0].1.invocations, 1);
    let stale = lake.stale_rollups(period().0, period().1).unwrap();
    assert_eq!(stale.len(), 1);
    assert_eq!(stale[0].0, day(1));
    assert_eq!(
        stale[0].1,
        "usage_hourly was rolled up from events=1 spans=0, the partition holds events=3 spans=0"
    );
    assert_eq!(lake.ensure_rollups(period().0, period().1).unwrap(), vec![day(1)]);
    assert_eq!(lake.hourly(day(1)).unwrap()[0].1.invocations, 4);
    assert!(lake.stale_rollups(period().0, period().1).unwrap().is_empty());
    assert!(lake.ensure_rollups(period().0, period().1).unwrap().is_empty(), "nothing to do");
}

#[test]
fn a_rerun_that_finds_everything_written_rolls_up_the_days_the_crashed_run_did_not() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let events = [ev("a", "t1", DAY0, 1), ev("b", "t1", DAY0 + 86_400_000, 2)];
    // The first run commits both days and dies before its rollups.
    let mut w = EventWriter::new(&lake, small());
    for e in &events {
        w.push(e.clone()).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    assert_eq!(lake.stale_rollups(period().0, period().1).unwrap().len(), 2);
    // Run again: nothing new to write, and both days rolled up, as a clean run leaves them.
    let mut w = EventWriter::new(&lake, small());
    for e in &events {
        w.push(e.clone()).unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!((s.written, s.duplicates, s.rollups), (0, 2, 2));
    assert!(lake.stale_rollups(period().0, period().1).unwrap().is_empty());
    assert_eq!(lake.hourly(day(2)).unwrap()[0].1.tokens.input, 2);
    // Once current, a day met again with nothing new is not rebuilt.
    let mut w = EventWriter::new(&lake, small());
    w.push(events[0].clone()).unwrap();
    assert_eq!(w.finish().unwrap().rollups, 0);
}

/// Where requests are round trips, the rollup checks of the days met with nothing new go on
/// threads of their own, side by side, and the stale days are still rolled up at the end.
#[test]
fn a_rerun_checks_its_days_rollups_side_by_side_where_requests_are_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let events = [ev("a", "t1", DAY0, 1), ev("b", "t1", DAY0 + 86_400_000, 2)];
    let mut w = EventWriter::new(&Lake::open_dir(dir.path()).unwrap(), small());
    for e in &events {
        w.push(e.clone()).unwrap();
    }
    w.commit().unwrap();
    drop(w);
    // Two days, three rollup footers each: all six in flight together.
    let (lake, footers) = crate::store::tests::lake_where_rollup_footers_meet(dir.path(), 6);
    let mut w = EventWriter::new(&lake, small());
    for e in &events {
        w.push(e.clone()).unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!((s.written, s.duplicates, s.rollups), (0, 2, 2));
    assert_eq!(footers.timed_out(), 0);
    assert!(lake.stale_rollups(period().0, period().1).unwrap().is_empty());
    assert_eq!(lake.hourly(day(2)).unwrap()[0].1.tokens.input, 2);
}

#[test]
fn a_partition_whose_rollup_fails_never_blocks_the_others_and_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    // Sums past i64 (the decoder refuses such counts; the lake must still not be blocked).
    for i in 0..3 {
        let mut e = ev(&format!("big{i}"), "t1", DAY0 + i, 1);
        e.tokens.input = i64::MAX / 2;
        e.tokens.total = i64::MAX / 2;
        w.push(e).unwrap();
    }
    w.push(ev("small", "t2", DAY0 + 10, 1)).unwrap();
    w.push(ev("other-day", "t2", DAY0 + 86_400_000, 1)).unwrap();
    let err = w.finish().unwrap_err();
    assert_eq!(
        err.to_string(),
        "the rollups of 1 day could not be rebuilt: dt=2026-10-01 (usage sums overflow a \
         64-bit integer in usage_hourly partition dt=2026-10-01)"
    );
    // The other day is rolled up; the failed one stays stale, for every reader to see.
    assert_eq!(lake.hourly(day(2)).unwrap()[0].1.invocations, 1);
    let stale = lake.stale_rollups(period().0, period().1).unwrap();
    assert_eq!(stale.iter().map(|s| s.0).collect::<Vec<_>>(), vec![day(1)]);
    let err = lake.ensure_rollups(period().0, period().1).unwrap_err();
    assert!(matches!(&err, Error::RollupsFailed { days } if days.len() == 1), "{err}");
}

#[test]
fn evicted_partitions_are_reloaded_for_dedup() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let opts = WriterOptions {
        batch_rows: 1,
        max_rows_per_file: 10,
        index_budget: 1,
        ..Default::default()
    };
    let mut w = EventWriter::new(&lake, opts);
    for d in 0..5 {
        w.push(ev(&format!("d{d}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
    }
    for d in 0..5 {
        w.push(ev(&format!("d{d}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
    }
    let s = w.finish().unwrap();
    assert_eq!((s.written, s.duplicates), (5, 5));
}

fn span(
    span_id: &str,
    parent: Option<&str>,
    op: &str,
    start: i64,
    dur: i64,
) -> agentmeter_schemas::AgentSpan {
    use agentmeter_schemas::{AgentSpan, SpanStatus, SpanTokens};
    AgentSpan {
        trace_id: "0af7651916cd43dd8448eb211c80319c".into(),
        span_id: span_id.into(),
        parent_span_id: parent.map(Into::into),
        name: format!("{op} x").into(),
        operation: Some(op.into()),
        start_ms: DAY0 + start,
        end_ms: DAY0 + start + dur,
        tier: Tier::new("premium").unwrap(),
        tenant_id: TenantId::new("hospital-a").unwrap(),
        user_id: (op == "invoke_agent").then(|| UserId::new("dr.lee").unwrap()),
        model_id: (op != "execute_tool").then(|| ModelId::new("m").unwrap()),
        tool_name: (op == "execute_tool").then(|| "search".into()),
        status: if span_id.ends_with('e') { SpanStatus::Error } else { SpanStatus::Ok },
        tokens: SpanTokens { input: Some(5), ..Default::default() },
        scope: "strands.telemetry.tracer".into(),
        service: None,
        source: SourceUri::new("otlp://test"),
    }
}

#[test]
fn spans_are_written_once_and_rolled_up_into_invocations_and_tool_calls() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w: EventWriter<agentmeter_schemas::AgentSpan> = EventWriter::new(&lake, small());
    // Children first, as Strands exports them; the root last; one tool fails; one duplicate.
    let spans = [
        span("000000000000000c", Some("000000000000000a"), "execute_event_loop_cycle", 10, 500),
        span("0000000000000011", Some("000000000000000c"), "execute_tool", 20, 100),
        span("000000000000001e", Some("000000000000000c"), "execute_tool", 130, 100),
        span("0000000000000021", Some("000000000000000c"), "chat", 240, 200),
        span("000000000000000a", None, "invoke_agent", 0, 2_000),
        span("0000000000000011", Some("000000000000000c"), "execute_tool", 20, 100),
    ];
    for s in spans {
        w.push(s).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!((stats.written, stats.duplicates), (5, 1));
    let inv = lake.invocations(day(1)).unwrap();
    assert_eq!(inv.len(), 1);
    let i = &inv[0];
    assert_eq!((i.tool_calls, i.tool_errors, i.model_calls, i.duration_ms), (2, 1, 1, 2_000));
    assert_eq!(i.user_id.as_ref().map(|u| u.as_str()), Some("dr.lee"));
    let hourly = lake.hourly(day(1)).unwrap();
    assert_eq!(hourly.len(), 1, "tool calls land on the invocation's user and model");
    let (k, m) = &hourly[0];
    assert_eq!((k.user_id.as_str(), k.model_id.as_str()), ("dr.lee", "m"));
    assert_eq!(m.invocations, 0, "spans never add log invocations or tokens");
    assert_eq!(m.tokens, Tokens::default());
    assert_eq!(
        (
            m.agent.tool_calls,
            m.agent.tool_errors,
            m.agent.agent_invocations,
            m.agent.agent_duration_ms,
            m.agent.max_agent_duration_ms
        ),
        (2, 1, 1, 2_000, 2_000)
    );
    // The chat span's tokens, in columns of their own (a missing total is the sum).
    let chat_tokens =
        Tokens { input: 5, output: 0, total: 5, cache_read: 0, cache_write: 0, cache_write_1h: 0 };
    assert_eq!(m.chat, ChatMeasures { calls: 1, usage_unknown: 0, tokens: chat_tokens });
}

/// A span's text is held in the span up to `InlineText::INLINE` bytes: only longer text adds
/// heap to a batch's estimate.
#[test]
fn a_spans_text_adds_to_its_estimate_only_when_held_apart() {
    use agentmeter_schemas::{AgentSpan, InlineText};
    let short = span("0000000000000001", None, "chat", 0, 1);
    assert_eq!(short.approx_bytes(), std::mem::size_of::<AgentSpan>());
    let name = "n".repeat(InlineText::INLINE + 1);
    let long = AgentSpan { name: name.as_str().into(), ..short };
    assert!(long.name.is_held_apart());
    // 57 bytes rounded up to the allocator's 16, plus its 16 of bookkeeping.
    assert_eq!(long.approx_bytes(), std::mem::size_of::<AgentSpan>() + 64 + 16);
}

/// A batch is cut by bytes as well as rows: spans (several times an event's size) fill the
/// byte budget long before the row count, so memory stays bounded whatever the record.
#[test]
fn batches_are_cut_by_bytes_as_well_as_rows() {
    let one_span = span("0000000000000001", None, "chat", 0, 1).approx_bytes();
    let one_event = ev("a", "t1", DAY0, 1).approx_bytes();
    assert!(one_span > 2 * one_event, "span {one_span} B, event {one_event} B");
    // A chunk's slots and 4 spans' keys reach the budget.
    let overhead = Records::<agentmeter_schemas::AgentSpan>::OVERHEAD;
    let budget = records::CHUNK * one_span + 4 * overhead;
    let opts = WriterOptions { batch_rows: 1_000, batch_bytes: budget, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w: EventWriter<agentmeter_schemas::AgentSpan> = EventWriter::new(&lake, opts);
    for i in 0..10 {
        w.push(span(&format!("{:016x}", i + 1), None, "chat", i * 1_000, 1)).unwrap();
    }
    let s = w.finish().unwrap();
    // Batches of 4, 4 and 2, one file each.
    assert_eq!((s.written, s.files), (10, 3));
    // The same budget holds more events per batch: a second chunk of events still fits.
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, opts);
    let mut first = None;
    for i in 0..200 {
        w.push(ev(&format!("e{i}"), "t1", DAY0 + i as i64, 1)).unwrap();
        if w.batch.records.is_empty() && first.is_none() {
            first = Some(i + 1);
        }
    }
    let fit = first.unwrap();
    assert!(fit > records::CHUNK, "{fit} events, {one_event} bytes each");
    assert_eq!(w.finish().unwrap().written, 200);
}

#[test]
fn a_batch_is_made_with_room_for_the_one_before_and_an_eighth() {
    let one_event = ev("a", "t1", DAY0, 1).approx_bytes() + Records::<UsageEvent>::OVERHEAD;
    // Cut by bytes, far below the row limit: a chunk's slots count as it is started, and the
    // 33rd event of the one (day, tenant) starts a second chunk, 15,656 bytes.
    let opts =
        WriterOptions { batch_rows: 1 << 20, batch_bytes: 40 * one_event, ..Default::default() };
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, opts);
    let (mut handed, mut since) = (Vec::new(), 0);
    for i in 0..120 {
        w.push(ev(&format!("e{i}"), "t1", DAY0 + i, 1)).unwrap();
        since += 1;
        if w.batch.records.is_empty() {
            handed.push(since);
            since = 0;
            // Sized after the batch handed over, not grown from a fixed start by doubling.
            assert_eq!(w.batch.records.capacity(), 33 + 33 / 8);
        }
    }
    assert_eq!(handed, vec![33, 33, 33]);
    assert_eq!(w.finish().unwrap().written, 120);
}

#[test]
fn calls_without_usage_are_written_counted_and_rolled_up_apart() {
    use agentmeter_schemas::SpanTokens;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    let mut silent = ev("silent", "t1", DAY0 + 10, 0);
    silent.tokens = Tokens::default();
    // Output without input or total still says nothing about the input: unknown too.
    let mut half = ev("half", "t1", DAY0 + 20, 0);
    half.tokens = Tokens { output: 7, ..Tokens::default() };
    for e in [ev("a", "t1", DAY0, 10), silent.clone(), silent, half] {
        w.push(e).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!((stats.written, stats.duplicates, stats.usage_unknown), (3, 1, 2));
    let mut w: EventWriter<agentmeter_schemas::AgentSpan> = EventWriter::new(&lake, small());
    let mut quiet = span("0000000000000031", Some("000000000000000c"), "chat", 40, 100);
    quiet.tokens = SpanTokens { input: Some(0), output: Some(0), ..SpanTokens::default() };
    let mut absent = span("0000000000000032", Some("000000000000000c"), "chat", 50, 100);
    absent.tokens = SpanTokens::default();
    let spoke = span("0000000000000033", Some("000000000000000c"), "chat", 60, 100);
    let agent = span("000000000000000a", None, "invoke_agent", 0, 2_000);
    for s in [quiet, absent, spoke, agent] {
        w.push(s).unwrap();
    }
    let stats = w.finish().unwrap();
    assert_eq!((stats.written, stats.usage_unknown), (4, 2));
    let rows = lake.hourly(day(1)).unwrap();
    let logs: i64 = rows.iter().map(|(_, m)| m.usage_unknown).sum();
    let invocations: i64 = rows.iter().map(|(_, m)| m.invocations).sum();
    let chat: Vec<_> = rows.iter().map(|(_, m)| m.chat).filter(|c| c.calls > 0).collect();
    assert_eq!((invocations, logs), (3, 2));
    assert_eq!(chat.len(), 1);
    assert_eq!((chat[0].calls, chat[0].usage_unknown, chat[0].tokens.input), (3, 2, 5));
}

#[test]
fn a_rollup_of_an_older_computation_is_stale_and_rebuilt() {
    use agentmeter_schemas::tables::{hourly_batch, usage_hourly_schema};
    use parquet::file::metadata::KeyValue;

    use crate::rollup::{COVERS_KEY, Coverage, ROLLUP_VERSION};
    use crate::store::Condition;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, small());
    w.push(ev("e0", "t1", DAY0, 1)).unwrap();
    w.finish().unwrap();
    // The same rows and files, recorded as an earlier version recorded them (no version).
    let digest = Coverage::of(&lake, day(1)).unwrap().digest();
    let old = digest.strip_suffix(&format!(";rollup={ROLLUP_VERSION}")).unwrap().to_owned();
    let rows = lake.hourly(day(1)).unwrap();
    let batch = hourly_batch(rows.iter().map(|(k, m)| (k, m))).unwrap();
    let props = crate::parquet_io::properties(&[], &[])
        .into_builder()
        .set_key_value_metadata(Some(vec![KeyValue::new(COVERS_KEY.to_owned(), old)]))
        .build();
    let key = crate::layout::partition_file(USAGE_HOURLY, day(1));
    let bytes = crate::parquet_io::encode(&key, usage_hourly_schema(), props, &[batch]).unwrap();
    lake.store().put(&key, bytes, Condition::Always).unwrap();
    let stale = lake.stale_rollups(period().0, period().1).unwrap();
    assert_eq!(stale, vec![(day(1), "usage_hourly was written by an older version".to_owned())]);
    assert_eq!(lake.ensure_rollups(period().0, period().1).unwrap(), vec![day(1)]);
    assert!(lake.stale_rollups(period().0, period().1).unwrap().is_empty());
}

#[test]
fn a_sessions_lifetime_series_is_rolled_up_as_increments() {
    use agentmeter_schemas::SessionId;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let line = |id: &str, session: &str, t: i64, input: i64, output: i64| {
        let mut e = ev(id, "t1", t, 0);
        e.tokens = Tokens {
            input,
            output,
            total: input + output,
            cache_read: 0,
            cache_write: 0,
            cache_write_1h: 0,
        };
        e.session_id = Some(SessionId::new(session).unwrap());
        e
    };
    let mut w = EventWriter::new(&lake, small());
    // Agent object "a" logs its accumulated usage: 655/40 per call, three calls, the third in
    // the next hour. Agent "b" logs per call; "c" has one line.
    for e in [
        line("a3", "a", DAY0 + HOUR_MS + 5, 1965, 120),
        line("a1", "a", DAY0 + 1, 655, 40),
        line("a2", "a", DAY0 + 2, 1310, 80),
        line("b1", "b", DAY0 + 3, 655, 40),
        line("b2", "b", DAY0 + 4, 760, 35),
        line("c1", "c", DAY0 + 5, 900, 50),
    ] {
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let rows = lake.hourly(day(1)).unwrap();
    let by_hour: Vec<(i64, i64, i64, i64, i64)> = rows
        .iter()
        .map(|(k, m)| {
            (k.hour_ms - DAY0, m.invocations, m.tokens.input, m.tokens.output, m.cumulative_lines)
        })
        .collect();
    // Hour 0: a1 + (a2 - a1) + b1 + b2 + c1; hour 1: a3 - a2.
    assert_eq!(
        by_hour,
        [(0, 5, 655 + 655 + 655 + 760 + 900, 40 + 40 + 40 + 35 + 50, 1), (HOUR_MS, 1, 655, 40, 1)]
    );
    // tenant_hourly agrees, and the lines themselves are kept as logged.
    let tenant: i64 = lake.tenant_hourly(day(1)).unwrap().iter().map(|t| t.tokens.input).sum();
    assert_eq!(tenant, 655 * 4 + 760 + 900);
    let logged: i64 = all_events(&lake).iter().map(|e| e.tokens.input).sum();
    assert_eq!(logged, 655 + 1310 + 1965 + 655 + 760 + 900);
}

#[test]
fn rows_are_keyed_by_service_tier_and_the_band_of_each_calls_own_prompt() {
    use agentmeter_schemas::{ServiceTier, SessionId};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let line = |id: &str, t: i64, input: i64, output: i64| {
        let mut e = ev(id, "t1", t, 0);
        e.tokens = Tokens { input, output, total: input + output, ..Tokens::default() };
        e
    };
    let mut w = EventWriter::new(&lake, small());
    // A reused Agent logging its lifetime usage, 70,000 input tokens per call: its running
    // totals pass 128,000 and 200,000, its calls never do.
    for (i, n) in [1, 2, 3].into_iter().enumerate() {
        let mut e = line(&format!("s{n}"), DAY0 + i as i64, 70_000 * n, 10 * n);
        e.session_id = Some(SessionId::new("agent-1").unwrap());
        w.push(e).unwrap();
    }
    // One long call at priority, with 1-hour cache writes that count in its prompt.
    let mut long = line("p1", DAY0 + 10, 150_000, 500);
    long.service_tier = ServiceTier::Priority;
    long.tokens.cache_write = 60_000;
    long.tokens.cache_write_1h = 45_000;
    long.tokens.total += 60_000;
    w.push(long).unwrap();
    // A flex call in band 0.
    let mut flex = line("f1", DAY0 + 11, 1_000, 20);
    flex.service_tier = ServiceTier::Flex;
    w.push(flex).unwrap();
    w.finish().unwrap();
    let mut rows: Vec<(ServiceTier, i64, i64, i64, i64, i64, i64)> = lake
        .hourly(day(1))
        .unwrap()
        .iter()
        .map(|(k, m)| {
            (
                k.service_tier,
                k.prompt_band,
                m.invocations,
                m.tokens.input,
                m.tokens.cache_write,
                m.tokens.cache_write_1h,
                m.cumulative_lines,
            )
        })
        .collect();
    rows.sort();
    assert_eq!(
        rows,
        [
            (ServiceTier::Standard, 0, 3, 210_000, 0, 0, 2),
            (ServiceTier::Priority, 200_000, 1, 150_000, 60_000, 45_000, 0),
            (ServiceTier::Flex, 0, 1, 1_000, 0, 0, 0),
        ]
    );
    let tenant = lake.tenant_hourly(day(1)).unwrap();
    assert_eq!(tenant.len(), 1);
    assert_eq!((tenant[0].invocations, tenant[0].tokens.cache_write_1h), (5, 45_000));
}

proptest::proptest! {
    // A failure prints its input; no regression file is written (README, "Property tests").
    #![proptest_config(proptest::prelude::ProptestConfig {
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]
    /// The integer-keyed sort gives exactly the order of `sort_cmp`: tenants that share
    /// prefixes, equal times and ids that differ only at the end included.
    #[test]
    fn sort_rows_orders_as_sort_cmp(
        mut rows in proptest::collection::vec((0u8..6, 0i64..4, 0u16..50), 0..300),
        in_time_order in proptest::bool::ANY,
    ) {
        // Logs come in about time order, tenants interleaved: each tenant's rows are then
        // already sorted when grouped, which the sort finds.
        if in_time_order {
            rows.sort_by_key(|r| r.1);
        }
        let tenants = ["a", "a-1", "a-10", "b", "B", "a.1"];
        let events: Vec<UsageEvent> = rows
            .iter()
            .map(|&(t, ms, id)| ev(&format!("id-{id}"), tenants[t as usize], DAY0 + ms, 1))
            .collect();
        // Distinct ids per (tenant, time) tie, as after dedup within a day.
        let mut seen = std::collections::HashSet::new();
        let keep: Vec<usize> = (0..events.len())
            .filter(|&i| seen.insert(events[i].event_id.clone()))
            .collect();
        let mut fast = keep.clone();
        sort_rows(&events, &mut fast);
        let mut slow = keep;
        slow.sort_by(|&a, &b| UsageEvent::sort_cmp(&events[a], &events[b]));
        proptest::prop_assert_eq!(fast, slow);
    }
}

/// Every file under `root` but temporary ones, with its bytes.
fn lake_files(root: &std::path::Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut dirs = vec![root.to_path_buf()];
    while let Some(d) = dirs.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            if name.starts_with('.') || name == "_state" {
                continue;
            }
            if p.is_dir() {
                dirs.push(p);
            } else {
                out.push((
                    p.strip_prefix(root).unwrap().display().to_string(),
                    fs::read(&p).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Six days in time order, three events a day, through a writer that rolls up ahead, or one
/// rolled up at the end.
pub(crate) fn six_days(
    lake: &Lake,
    ahead: Option<&RollupsAhead>,
) -> (WriteStats, BTreeSet<NaiveDate>) {
    let opts = WriterOptions { batch_rows: 4, ..small() };
    let mut w = match ahead {
        Some(a) => EventWriter::with_rollups_ahead(lake, opts, a),
        None => EventWriter::new(lake, opts),
    };
    for d in 0..6 {
        for i in 0..3 {
            let t = DAY0 + d * 86_400_000 + i * HOUR_MS;
            w.push(ev(&format!("d{d}-{i}"), "t1", t, 10 + i)).unwrap();
        }
    }
    w.hand_over().unwrap();
    if let Some(a) = ahead {
        a.input_ended();
    }
    w.finish_without_rollups().unwrap()
}

#[test]
fn rollups_built_ahead_are_byte_for_byte_those_built_at_the_end() {
    let end = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(end.path()).unwrap();
    let (stats, days) = six_days(&lake, None);
    assert_eq!(lake.rebuild_rollups(&days).into_result().unwrap().len(), 6);

    let early = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(early.path()).unwrap();
    let ahead = RollupsAhead::new(&lake);
    let (stats_ahead, days_ahead) = six_days(&lake, Some(&ahead));
    assert_eq!((stats_ahead, &days_ahead), (stats, &days));
    ahead.settle();
    let report = ahead.finish();
    assert_eq!(
        report,
        AheadReport { current: days.clone(), rolled: 6, redone: 0, revisited: false }
    );
    assert!(lake.stale_rollups(day(1), day(31)).unwrap().is_empty());
    let (a, b) = (lake_files(end.path()), lake_files(early.path()));
    assert_eq!(a.len(), 6 * 5, "two data files and three rollups a day");
    assert!(a == b, "the lakes differ");
}

#[test]
fn days_over_the_size_limit_are_left_for_the_end() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    lake.keep_row_keys(1 << 20);
    let ahead = RollupsAhead::with_max_day_bytes(&lake, 1);
    let (_, days) = six_days(&lake, Some(&ahead));
    ahead.settle();
    assert_eq!(ahead.finish(), AheadReport::default(), "no day is a byte or less");
    // Their keys are not held until the end.
    assert_eq!(format!("{:?}", lake.row_keys()), "RowKeys { files: 0, bytes: 0, budget: 1048576 }");
    assert_eq!(lake.stale_rollups(day(1), day(31)).unwrap().len(), 6);
    assert_eq!(lake.rebuild_rollups(&days).into_result().unwrap().len(), 6);
}

#[test]
fn a_day_written_after_its_rollup_ahead_is_rolled_up_again() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let ahead = RollupsAhead::new(&lake);
    let opts = WriterOptions { batch_rows: 2, ..small() };
    let mut w = EventWriter::with_rollups_ahead(&lake, opts, &ahead);
    for (id, d) in [("a", 0), ("b", 0), ("c", 1), ("d", 1)] {
        w.push(ev(id, "t1", DAY0 + d * 86_400_000, 1)).unwrap();
    }
    w.commit().unwrap();
    // Day 2's batch is the last handed over: day 1 alone is behind the input.
    ahead.settle();
    assert_eq!(lake.hourly(day(1)).unwrap()[0].1.invocations, 2);
    assert!(lake.hourly(day(2)).unwrap().is_empty());
    // A late event for day 1.
    w.push(ev("late", "t1", DAY0 + 5, 1)).unwrap();
    w.hand_over().unwrap();
    ahead.input_ended();
    let (_, days) = w.finish_without_rollups().unwrap();
    ahead.settle();
    let report = ahead.finish();
    assert_eq!(report.redone, 1);
    assert_eq!(report.rolled, 3, "day 1 twice (once late), day 2 once");
    assert_eq!(report.current, days);
    assert_eq!(lake.hourly(day(1)).unwrap()[0].1.invocations, 3);
    assert!(lake.stale_rollups(day(1), day(31)).unwrap().is_empty());
}

#[test]
fn the_days_rollup_states_are_read_side_by_side_where_requests_are_round_trips() {
    let dir = tempfile::tempdir().unwrap();
    let mut w = EventWriter::new(&Lake::open_dir(dir.path()).unwrap(), small());
    for (id, d) in [("a", 0), ("b", 1)] {
        w.push(ev(id, "t1", DAY0 + d * 86_400_000, 1)).unwrap();
    }
    w.finish().unwrap();
    // Two days, three rollup footers each: all six in flight together.
    let (lake, footers) = crate::store::tests::lake_where_rollup_footers_meet(dir.path(), 6);
    assert_eq!(lake.stale_rollups(day(1), day(3)).unwrap(), vec![]);
    assert_eq!(footers.timed_out(), 0);
}

/// Where listings are round trips, the day after a batch's last is listed as the batch is
/// handed over, before any record of it is pushed, and the batch that holds it is committed
/// with that listing rather than waiting on one of its own.
#[test]
fn the_day_after_a_batch_s_last_is_listed_ahead_and_that_listing_is_used() {
    use crate::store::tests::{Hooked, Op};
    let dir = tempfile::tempdir().unwrap();
    Lake::open_dir(dir.path()).unwrap();
    let lists = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let (seen, listed) = std::sync::mpsc::channel::<String>();
    let (l, seen) = (lists.clone(), std::sync::Mutex::new(seen));
    let store = Hooked::new(crate::store::LocalStore::new(dir.path()), move |op| {
        if let Op::List(p) = op
            && p.starts_with("usage_events/dt=")
        {
            l.lock().unwrap().push(p.to_owned());
            let _ = seen.lock().unwrap().send(p.to_owned());
        }
        Ok(())
    });
    let lake = Lake::open(std::sync::Arc::new(store)).unwrap();
    let opts = WriterOptions { batch_rows: 2, ..small() };
    let mut w = EventWriter::new(&lake, opts);
    w.push(ev("a", "t1", DAY0, 1)).unwrap();
    w.push(ev("b", "t1", DAY0 + 1, 1)).unwrap();
    // The first batch (day 1) is handed over: day 2 is listed before any of its records.
    let wait = std::time::Duration::from_secs(10);
    let mut early = Vec::new();
    while !early.iter().any(|p: &String| p.contains("2026-10-02")) {
        early.push(listed.recv_timeout(wait).expect("day 2 listed ahead"));
    }
    w.push(ev("c", "t1", DAY0 + 86_400_000, 1)).unwrap();
    w.push(ev("d", "t1", DAY0 + 86_400_001, 1)).unwrap();
    let (stats, _) = w.finish_without_rollups().unwrap();
    assert_eq!(stats.written, 4);
    let lists = lists.lock().unwrap().clone();
    let of = |d: &str| lists.iter().filter(|p| p.contains(d)).count();
    // Each day listed once: day 2 ahead of its batch, day 3 ahead of a batch that never came.
    assert_eq!((of("2026-10-01"), of("2026-10-02"), of("2026-10-03")), (1, 1, 1), "{lists:?}");
}

/// A batch dropped with its listing still going (a commit before it failed) waits for the
/// listing's thread: none outlives the writer, nor makes a request on a runtime that is
/// shutting down as the run stops (a panic on a fault storm's failing run, before).
#[test]
fn a_listing_dropped_unread_waits_for_its_thread() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let done = std::sync::Arc::new(AtomicBool::new(false));
    let flag = done.clone();
    let listing = super::Listing::start(Vec::new(), move || {
        std::thread::sleep(std::time::Duration::from_millis(50));
        flag.store(true, Ordering::SeqCst);
        Ok(Vec::new())
    });
    drop(listing);
    assert!(done.load(Ordering::SeqCst), "the listing's thread was still running");
}

/// A listing whose thread panicked raises that panic where it is read: before, it was read as
/// a day with no files, and the batch committed without the ids stored for the day.
#[test]
fn a_listing_whose_thread_panicked_raises_its_panic_when_read() {
    let listing = super::Listing::start(Vec::new(), || panic!("the listing failed"));
    let read = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| listing.recv()));
    let panic = read.expect_err("a panicked listing was read as a listing");
    assert_eq!(panic.downcast_ref::<&str>(), Some(&"the listing failed"));
}

/// A span's identity is `trace:span` in parts: its dedup key and its display are those of
/// the joined key (which the span rollups and earlier versions built), an event's its id.
#[test]
fn a_spans_identity_in_parts_keys_and_shows_as_the_joined_key() {
    use crate::LakeRecord;
    let s = span("00f067aa0ba902b7", None, "chat", 0, 1);
    assert_eq!(s.identity().key(), agentmeter_schemas::keyed::key128(s.key().as_bytes()));
    assert_eq!(s.identity().to_string(), "0af7651916cd43dd8448eb211c80319c:00f067aa0ba902b7");
    let e = ev("a", "t1", DAY0, 1);
    assert_eq!(
        e.identity().key(),
        agentmeter_schemas::keyed::key128(e.event_id.as_str().as_bytes())
    );
    assert_eq!(e.identity().to_string(), e.event_id.as_str());
}
