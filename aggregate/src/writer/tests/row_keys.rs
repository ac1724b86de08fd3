//! Rollups of the files this process put, from the row keys it kept: the same rollups as from
//! the files' ids, an id two files hold counted once, and keys that do not fit refused.

use super::*;
use crate::store::{Condition, Put};

/// A lake in `dir` that keeps row keys, and a writer's file of events `e1`..`e5` in day 1.
fn lake_with_kept_keys(dir: &std::path::Path) -> (Lake, ObjectMeta) {
    let lake = Lake::open_dir(dir).unwrap();
    lake.keep_row_keys(1 << 20);
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    for i in 1..=5 {
        let (tenant, t) = (["t-a", "t-b"][i % 2], DAY0 + i as i64 * 60_000);
        w.push(ev(&format!("e{i}"), tenant, t, 10 * i as i64)).unwrap();
    }
    w.finish_without_rollups().unwrap();
    let files = lake.files(USAGE_EVENTS, day(1)).unwrap();
    assert_eq!(files.len(), 1);
    (lake, files[0].clone())
}

/// Puts a data file of `events` as another writer would have, unseen by this one.
fn put_foreign_file(lake: &Lake, name: &str, events: &[UsageEvent]) {
    let batch = <UsageEvent as LakeRecord>::batch(events.iter()).unwrap();
    let props = crate::parquet_io::properties(UsageEvent::SORTED_BY, UsageEvent::COLUMNS);
    let key = crate::layout::data_file(USAGE_EVENTS, day(1), name);
    let bytes = crate::parquet_io::encode(&key, UsageEvent::schema(), props, &[batch]).unwrap();
    assert!(matches!(
        lake.store().put(&key, bytes, Condition::Absent).unwrap(),
        Put::Written { .. }
    ));
}

/// The day's rollup files, byte for byte.
fn rollup_bytes(dir: &std::path::Path) -> Vec<Vec<u8>> {
    crate::rollup::ROLLUP_TABLES
        .iter()
        .map(|t| fs::read(dir.join(crate::layout::partition_file(t, day(1)))).unwrap())
        .collect()
}

#[test]
fn a_rollup_from_kept_keys_is_the_rollup_from_the_files_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, own) = lake_with_kept_keys(dir.path());
    // Another writer's file, before this one's by name, repeating e4 and e5 and adding two.
    let foreign: Vec<UsageEvent> = (4..=7)
        .map(|i| {
            ev(&format!("e{i}"), ["t-a", "t-b"][i % 2], DAY0 + i as i64 * 60_000, 10 * i as i64)
        })
        .collect();
    put_foreign_file(&lake, "0000", &foreign);
    assert!(lake.rebuild_rollups(&BTreeSet::from([day(1)])).failed.is_empty());
    assert_eq!(lake.row_keys().take(&own.key), None, "the rollup took the file's keys");
    let hourly = lake.hourly(day(1)).unwrap();
    assert_eq!(hourly.iter().map(|(_, m)| m.invocations).sum::<i64>(), 7, "e1..e7 once each");
    assert_eq!(hourly.iter().map(|(_, m)| m.tokens.input).sum::<i64>(), 280);
    let with_keys = rollup_bytes(dir.path());
    // The same day rolled up by a process that kept nothing: the same files.
    for t in crate::rollup::ROLLUP_TABLES {
        fs::remove_file(dir.path().join(crate::layout::partition_file(t, day(1)))).unwrap();
    }
    let fresh = Lake::open_dir(dir.path()).unwrap();
    assert!(fresh.rebuild_rollups(&BTreeSet::from([day(1)])).failed.is_empty());
    assert_eq!(rollup_bytes(dir.path()), with_keys);
}

#[test]
fn the_rollup_counts_rows_by_the_keys_kept_for_them() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, own) = lake_with_kept_keys(dir.path());
    // Five rows kept as one id twice and another three times: two rows counted, so the
    // rollup went by the keys, not by the file's ids.
    lake.row_keys().take(&own.key).unwrap();
    lake.row_keys().keep(&own.key, vec![7, 7, 9, 9, 9]);
    assert!(lake.rebuild_rollups(&BTreeSet::from([day(1)])).failed.is_empty());
    let hourly = lake.hourly(day(1)).unwrap();
    assert_eq!(hourly.iter().map(|(_, m)| m.invocations).sum::<i64>(), 2);
}

#[test]
fn keys_that_do_not_fit_the_files_rows_fail_the_rollup_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, own) = lake_with_kept_keys(dir.path());
    lake.row_keys().take(&own.key).unwrap();
    lake.row_keys().keep(&own.key, vec![1, 2, 3, 4]);
    let report = lake.rebuild_rollups(&BTreeSet::from([day(1)]));
    let (dt, e) = &report.failed[0];
    assert_eq!(*dt, day(1));
    let message = e.to_string();
    assert!(message.contains(&own.key), "{message}");
    assert!(message.contains("5 rows, 4 keys kept for them"), "{message}");
    // Nothing was kept twice: the next rebuild reads the file's ids, and is right.
    assert!(lake.rebuild_rollups(&BTreeSet::from([day(1)])).failed.is_empty());
    let hourly = lake.hourly(day(1)).unwrap();
    assert_eq!(hourly.iter().map(|(_, m)| m.invocations).sum::<i64>(), 5);
}

#[test]
fn a_lake_that_keeps_no_keys_keeps_none() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    w.push(ev("e1", "t-a", DAY0, 1)).unwrap();
    w.finish_without_rollups().unwrap();
    let file = &lake.files(USAGE_EVENTS, day(1)).unwrap()[0];
    assert_eq!(lake.row_keys().take(&file.key), None);
}

#[test]
fn rollups_ahead_that_give_up_on_input_out_of_order_stop_the_keeping() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    lake.keep_row_keys(1 << 20);
    let ahead = RollupsAhead::new(&lake);
    let opts = WriterOptions { batch_rows: 2, ..small() };
    let mut w = EventWriter::with_rollups_ahead(&lake, opts, &ahead);
    // Batches of one day each, the days taking turns: each rollup ahead is redone.
    for round in 0..16 {
        let d = round % 2;
        w.push(ev(&format!("r{round}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
        w.commit().unwrap();
        ahead.settle();
    }
    ahead.input_ended();
    let (_, days) = w.finish_without_rollups().unwrap();
    ahead.settle();
    let report = ahead.finish();
    assert!(report.redone > 2, "{report:?}");
    assert_eq!(format!("{:?}", lake.row_keys()), "RowKeys { files: 0, bytes: 0, budget: 0 }");
    // The days left are rolled up from their files' ids, and right.
    lake.rebuild_rollups(&days).into_result().unwrap();
    let calls: i64 =
        days.iter().flat_map(|d| lake.hourly(*d).unwrap()).map(|(_, m)| m.invocations).sum();
    assert_eq!(calls, 16);
}
