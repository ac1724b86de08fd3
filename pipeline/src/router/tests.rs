//! The input's groups as the rollups ahead see them.

use std::path::PathBuf;

use agentmeter_ingest::source::Format;
use agentmeter_schemas::{
    EventId, ModelId, ServiceTier, SourceUri, TenantId, Tier, Tokens, UsageEvent, UserId,
};
use chrono::NaiveDate;

use super::*;

fn spec(path: &str, format: Format) -> SourceSpec {
    SourceSpec {
        path: PathBuf::from(path),
        uri: SourceUri::new(format!("file://{path}")),
        format,
        len: 0,
    }
}

/// Event `n` of `source`, at noon on day `day` of October 2026.
fn event(source: &SourceSpec, day: u32, n: u32) -> Outcome {
    Outcome::Event(UsageEvent {
        event_time_ms: 1_790_856_000_000 + i64::from(day - 1) * 86_400_000 + i64::from(n),
        event_id: EventId::new(format!("{}-{day}-{n}", source.uri.as_str())).unwrap(),
        tier: Tier::new("basic").unwrap(),
        tenant_id: TenantId::new("clinic-a").unwrap(),
        user_id: UserId::new("u1").unwrap(),
        model_id: ModelId::new("m").unwrap(),
        source: source.uri.clone(),
        tokens: Tokens { input: 10, output: 1, total: 11, ..Tokens::default() },
        session_id: None,
        service_tier: ServiceTier::Standard,
    })
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 10, d).unwrap()
}

/// Routes `sources` (each with its days, three events a day) through a router rolling up
/// ahead in batches of 4 events into a new local lake, and finishes it.
fn ingest(sources: &[(SourceSpec, Vec<u32>)]) -> (tempfile::TempDir, Lake, Finished) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path().join("lake")).unwrap();
    let opts = WriterOptions { batch_rows: 4, ..WriterOptions::default() };
    let mut router = Router::rolling_up_ahead(&lake, opts);
    let specs: Vec<SourceSpec> = sources.iter().map(|(s, _)| s.clone()).collect();
    router.expect_groups(&specs);
    for (s, days) in sources {
        router.source_started(s).unwrap();
        for &d in days {
            for n in 0..3 {
                router.route(event(s, d, n)).unwrap();
            }
        }
        router.source_finished(s).unwrap();
    }
    let finished = router.finish().unwrap();
    (dir, lake, finished)
}

/// A month's NDJSON files, then the same month's CloudWatch exports: the second group goes
/// back to the first's days, so nothing is rolled up ahead (each day would be rolled up and
/// redone), and every day is rolled up once at the end.
#[test]
fn groups_of_the_same_days_roll_nothing_up_ahead() {
    let (_dir, lake, finished) = ingest(&[
        (spec("/in/ndjson/1.ndjson", Format::Ndjson), vec![1, 2]),
        (spec("/in/ndjson/2.ndjson", Format::Ndjson), vec![3, 4]),
        (spec("/in/cloudwatch/1.json", Format::FilterLogEvents), vec![1, 2]),
        (spec("/in/cloudwatch/2.json", Format::FilterLogEvents), vec![3, 4]),
    ]);
    assert_eq!((finished.ahead.rolled, finished.ahead.redone), (0, 0));
    assert!(finished.ahead.revisited);
    assert_eq!(finished.rollups.rebuilt, (1..=4).map(day).collect::<Vec<_>>());
    for d in 1..=4 {
        let rows = lake.hourly(day(d)).unwrap();
        let calls: i64 = rows.iter().map(|(_, m)| m.invocations).sum();
        assert_eq!(calls, 6, "day {d}: three events of each group");
    }
}

/// Groups one after another in time (September's files, then October's) go on: no group
/// goes back, and nothing rolled up ahead is redone.
#[test]
fn groups_one_after_another_in_time_go_on() {
    let (_dir, _lake, finished) = ingest(&[
        (spec("/in/a/1.ndjson", Format::Ndjson), vec![1, 2]),
        (spec("/in/b/1.ndjson", Format::Ndjson), vec![2, 3]),
        (spec("/in/c/1.ndjson", Format::Ndjson), vec![4, 5]),
    ]);
    assert!(!finished.ahead.revisited);
    assert_eq!(finished.ahead.redone, 0);
    assert_eq!(finished.rollups.rebuilt, (1..=5).map(day).collect::<Vec<_>>());
}

/// The files of one directory and format are one group: the input is not held back by group,
/// and a directory's files with two formats are two.
#[test]
fn a_group_is_the_files_of_one_directory_and_format() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path().join("lake")).unwrap();
    let mut router = Router::rolling_up_ahead(&lake, WriterOptions::default());
    let one = [spec("/in/1.ndjson", Format::Ndjson), spec("/in/2.ndjson", Format::Ndjson)];
    router.expect_groups(&one);
    assert!(router.groups.is_none());
    let two = [spec("/in/1.ndjson", Format::Ndjson), spec("/in/2.json", Format::FilterLogEvents)];
    router.expect_groups(&two);
    assert_eq!(router.groups.as_ref().map(|g| g.starts.clone()), Some(vec![false, true]));
    // Without rollups ahead there is nothing to hold back.
    let mut plain = Router::new(&lake, WriterOptions::default());
    plain.expect_groups(&two);
    assert!(plain.groups.is_none());
}
