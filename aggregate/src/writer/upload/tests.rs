//! The committer's requests: data files put from the upload thread (S3) or in place (a local
//! lake), a batch's days listed together, and what a failed put does to a commit.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::time::Duration;

use agentmeter_schemas::tables::{USAGE_EVENTS, USAGE_HOURLY};
use chrono::NaiveDate;

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::writer::tests::{DAY0, all_events, day, ev, six_days, small};
use crate::writer::{EventWriter, RollupsAhead, WriterOptions};

/// A lake whose store calls `hook` around its listings and puts.
fn hooked_lake(
    root: &std::path::Path,
    hook: impl Fn(crate::store::tests::Op<'_>) -> Result<()> + Send + Sync + 'static,
) -> Lake {
    let inner = crate::store::LocalStore::new(root);
    Lake::open(std::sync::Arc::new(crate::store::tests::Hooked::new(inner, hook))).unwrap()
}

/// A writer into `lake` that was given an event of tenant t1 for each `(id, day)`, days
/// counted from [`DAY0`] (full batches handed to its committer).
fn pushed(lake: &Lake, opts: WriterOptions, events: &[(&str, i64)]) -> EventWriter {
    let mut w = EventWriter::new(lake, opts);
    for &(id, d) in events {
        w.push(ev(id, "t1", DAY0 + d * 86_400_000, 1)).unwrap();
    }
    w
}

fn is_data_file(key: &str, dt: NaiveDate) -> bool {
    key.starts_with(&format!("{USAGE_EVENTS}/dt={dt}/"))
}

#[test]
fn the_next_batch_is_deduplicated_while_a_file_goes_up() {
    use crate::store::tests::Op;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let (listed, day2_listed) = mpsc::channel::<()>();
    let day2_listed = Mutex::new(day2_listed);
    let log = seen.clone();
    let lake = hooked_lake(dir.path(), move |op| {
        match op {
            Op::List(p) if is_data_file(p, day(2)) => {
                log.lock().unwrap().push("day 2 listed");
                let _ = listed.send(());
            }
            Op::Put(k) if is_data_file(k, day(1)) => {
                log.lock().unwrap().push("day 1 put begins");
                // Held until the committer has gone on to day 2; bounded, so that a committer
                // that waits for this put fails the test rather than hanging it.
                let _ = day2_listed.lock().unwrap().recv_timeout(Duration::from_secs(10));
            }
            Op::PutDone(k) if is_data_file(k, day(1)) => log.lock().unwrap().push("day 1 put"),
            _ => {}
        }
        Ok(())
    });
    // Two batches, a day each: the second is listed (and its ids read) after the first's file
    // is handed over.
    let w = pushed(
        &lake,
        WriterOptions { batch_rows: 2, ..small() },
        &[("a", 0), ("b", 0), ("c", 1), ("d", 1)],
    );
    let (stats, _) = w.finish_without_rollups().unwrap();
    assert_eq!((stats.written, stats.files), (4, 2));
    // A copy: the hook takes the same lock when the lake is read below.
    let seen = seen.lock().unwrap().clone();
    let at = |what| seen.iter().position(|s| *s == what).unwrap();
    assert!(
        at("day 2 listed") < at("day 1 put"),
        "day 2 is listed and deduplicated while day 1's file goes up: {seen:?}"
    );
    assert_eq!(all_events(&lake).len(), 4);
}

#[test]
fn where_puts_are_quick_the_committer_waits_for_each_before_going_on() {
    use crate::store::tests::{Hooked, Op};
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    let seen = Arc::new(Mutex::new(Vec::<&'static str>::new()));
    let log = seen.clone();
    let mut store = Hooked::new(crate::store::LocalStore::new(dir.path()), move |op| {
        match op {
            Op::List(p) if is_data_file(p, day(2)) => log.lock().unwrap().push("day 2 listed"),
            // Long enough for day 2 to be listed meanwhile, were the committer not waiting.
            Op::Put(k) if is_data_file(k, day(1)) => std::thread::sleep(Duration::from_millis(200)),
            Op::PutDone(k) if is_data_file(k, day(1)) => log.lock().unwrap().push("day 1 put"),
            _ => {}
        }
        Ok(())
    });
    // As a local directory: no encoded file is held while another goes up.
    store.round_trips = false;
    let lake = Lake::open(Arc::new(store)).unwrap();
    let w = pushed(
        &lake,
        WriterOptions { batch_rows: 2, ..small() },
        &[("a", 0), ("b", 0), ("c", 1), ("d", 1)],
    );
    w.finish_without_rollups().unwrap();
    assert_eq!(*seen.lock().unwrap(), ["day 1 put", "day 2 listed"]);
}

#[test]
fn the_days_of_a_batch_are_listed_together() {
    use crate::store::tests::{Op, Together};
    let dir = tempfile::tempdir().unwrap();
    let days = std::sync::Arc::new(Together::new(3));
    let meet = days.clone();
    let lake = hooked_lake(dir.path(), move |op| {
        if let Op::List(p) = op
            && p.starts_with(&format!("{USAGE_EVENTS}/dt="))
        {
            meet.arrive();
        }
        Ok(())
    });
    let w = pushed(
        &lake,
        WriterOptions { batch_rows: 5, ..small() },
        &[("a", 0), ("b", 1), ("c", 2), ("a", 0), ("d", 1)],
    );
    let (stats, touched) = w.finish_without_rollups().unwrap();
    assert_eq!(days.timed_out(), 0, "the three days' listings were in flight together");
    assert_eq!((stats.written, stats.duplicates, stats.files), (4, 1, 3));
    assert_eq!(touched, BTreeSet::from([day(1), day(2), day(3)]));
}

#[test]
fn a_commit_returns_once_every_file_is_in_the_store() {
    use crate::store::tests::Op;
    let dir = tempfile::tempdir().unwrap();
    let lake = hooked_lake(dir.path(), |op| {
        if let Op::Put(k) = op
            && k.starts_with(USAGE_EVENTS)
        {
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(())
    });
    let mut w = pushed(&lake, small(), &[("a", 0), ("b", 0), ("c", 1), ("d", 1), ("e", 2)]);
    w.commit().unwrap();
    // Read straight from the directory, as another process would.
    let other = Lake::existing_dir(dir.path()).unwrap();
    let files: usize = (1..=3).map(|d| other.files(USAGE_EVENTS, day(d)).unwrap().len()).sum();
    assert_eq!(files, 4, "a file for each day of the first batch, two for the second");
    assert_eq!(all_events(&other).len(), 5);
    drop(w);
}

#[test]
fn a_put_that_fails_fails_the_commit_with_the_stores_error() {
    use crate::store::tests::Op;
    let dir = tempfile::tempdir().unwrap();
    let lake = hooked_lake(dir.path(), |op| match op {
        Op::Put(k) if is_data_file(k, day(2)) => Err(Error::Store {
            uri: format!("file:///lake/{k}"),
            operation: "PutObject",
            detail: "refused".into(),
        }),
        _ => Ok(()),
    });
    let mut w = pushed(
        &lake,
        WriterOptions { batch_rows: 2, ..small() },
        &[("a", 0), ("b", 0), ("c", 1), ("d", 1)],
    );
    let err = w.commit().unwrap_err().to_string();
    assert!(
        err.starts_with("PutObject file:///lake/usage_events/dt=2026-10-02/part-")
            && err.ends_with(".parquet: refused"),
        "{err}"
    );
    // Day 1 is whole in the lake; nothing of day 2 is.
    assert_eq!(lake.events(day(1)).unwrap().len(), 2);
    assert!(lake.files(USAGE_EVENTS, day(2)).unwrap().is_empty());
    // The writer stays failed: nothing more is taken.
    assert!(w.push(ev("e", "t1", DAY0, 1)).is_ok(), "held in the open batch");
    assert!(w.commit().is_err());
}

#[test]
fn rollups_ahead_read_a_day_only_after_its_files_are_put() {
    use crate::store::tests::Op;
    use std::sync::{Arc, Mutex};
    let dir = tempfile::tempdir().unwrap();
    // Data files put, and rollups put before all of their day's data files were.
    let done = Arc::new(Mutex::new(BTreeSet::<String>::new()));
    let early = Arc::new(Mutex::new(Vec::<String>::new()));
    let (done_in, early_in) = (done.clone(), early.clone());
    let lake = hooked_lake(dir.path(), move |op| {
        match op {
            Op::Put(k) if k.starts_with(USAGE_EVENTS) => {
                // Slow puts: a rollup told too early would run before this one ends.
                std::thread::sleep(Duration::from_millis(30));
            }
            Op::PutDone(k) if k.starts_with(USAGE_EVENTS) => {
                done_in.lock().unwrap().insert(k.to_owned());
            }
            Op::Put(k) if k.starts_with(USAGE_HOURLY) => {
                let dt = k.split('/').nth(1).unwrap_or_default();
                let done = done_in.lock().unwrap();
                if done.iter().filter(|d| d.split('/').nth(1) == Some(dt)).count() < 2 {
                    early_in.lock().unwrap().push(k.to_owned());
                }
            }
            _ => {}
        }
        Ok(())
    });
    let ahead = RollupsAhead::new(&lake);
    let (_, days) = six_days(&lake, Some(&ahead));
    ahead.settle();
    let report = ahead.finish();
    assert_eq!(report.current, days);
    assert!(report.rolled >= 5, "{report:?}");
    assert_eq!(done.lock().unwrap().len(), 12, "two data files a day");
    assert!(early.lock().unwrap().is_empty(), "{:?}", early.lock().unwrap());
}

#[test]
fn several_files_go_up_at_once() {
    use crate::store::tests::{Op, Together};
    let dir = tempfile::tempdir().unwrap();
    let puts = std::sync::Arc::new(Together::new(3));
    let meet = puts.clone();
    let lake = hooked_lake(dir.path(), move |op| {
        if let Op::Put(k) = op
            && k.starts_with(USAGE_EVENTS)
        {
            meet.arrive();
        }
        Ok(())
    });
    // One batch over three days: three files, each put while the others are in flight.
    let w =
        pushed(&lake, WriterOptions { batch_rows: 3, ..small() }, &[("a", 0), ("b", 1), ("c", 2)]);
    let (stats, _) = w.finish_without_rollups().unwrap();
    assert_eq!(puts.timed_out(), 0, "the three puts were in flight together");
    assert_eq!((stats.written, stats.files), (3, 3));
    assert_eq!(all_events(&lake).len(), 3);
}

#[test]
fn the_next_batch_is_listed_while_the_one_before_is_committed() {
    use crate::store::tests::{Op, Together};
    let dir = tempfile::tempdir().unwrap();
    let listings = std::sync::Arc::new(Together::new(2));
    let meet = listings.clone();
    let lake = hooked_lake(dir.path(), move |op| {
        if let Op::List(p) = op
            && (is_data_file(p, day(1)) || is_data_file(p, day(2)))
        {
            meet.arrive();
        }
        Ok(())
    });
    // Two batches, a day each: the second's listing goes out while the first waits for its own.
    let w = pushed(
        &lake,
        WriterOptions { batch_rows: 2, ..small() },
        &[("a", 0), ("b", 0), ("c", 1), ("d", 1)],
    );
    let (stats, _) = w.finish_without_rollups().unwrap();
    assert_eq!(listings.timed_out(), 0, "both batches' days were listed together");
    assert_eq!((stats.written, stats.files), (4, 2));
}

#[test]
fn a_day_evicted_while_its_file_goes_up_is_listed_again_once_it_is_put() {
    use crate::store::tests::Op;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let first = AtomicBool::new(true);
    let lake = hooked_lake(dir.path(), move |op| {
        if let Op::Put(k) = op
            && is_data_file(k, day(1))
            && first.swap(false, Ordering::SeqCst)
        {
            // Still going up when the third batch comes back to day 1.
            std::thread::sleep(Duration::from_millis(500));
        }
        Ok(())
    });
    // Room for two ids: day 1's are evicted once day 2 is written, and read back for the third
    // batch, whose "a" is a duplicate of the first batch's.
    let opts = WriterOptions { batch_rows: 2, index_budget: 2, ..small() };
    let w = pushed(&lake, opts, &[("a", 0), ("b", 0), ("c", 1), ("d", 1), ("a", 0), ("e", 0)]);
    let (stats, _) = w.finish_without_rollups().unwrap();
    assert_eq!((stats.written, stats.duplicates), (5, 1));
    let ids: Vec<String> =
        lake.events(day(1)).unwrap().iter().map(|e| e.event_id.to_string()).collect();
    assert_eq!(ids.len(), 3, "{ids:?}");
}

#[test]
fn a_batch_is_reported_once_every_file_handed_over_before_it_is_put() {
    use super::State;
    let mut s = State { held: 3, handed: 3, ..State::default() };
    // Batch 1 handed over files 0 and 1, batch 2 file 2.
    s.notices.push_back((2, 1, BTreeSet::from([day(1)])));
    s.notices.push_back((3, 2, BTreeSet::from([day(2)])));
    s.put_done(2, 0, None);
    s.put_done(1, 0, None);
    assert_eq!(s.notices.len(), 2, "file 0 is still going up");
    s.put_done(0, 0, None);
    assert_eq!((s.put_below, s.notices.len(), s.held), (3, 0, 0));
}

/// A lake whose store counts the listings of day 1's data files.
fn lake_counting_day1_listings(
    root: &std::path::Path,
) -> (Lake, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    use crate::store::tests::Op;
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = count.clone();
    let lake = hooked_lake(root, move |op| {
        if let Op::List(p) = op
            && is_data_file(p, day(1))
        {
            counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
        Ok(())
    });
    (lake, count)
}

#[test]
fn a_day_listed_less_than_a_second_before_is_not_listed_again_for_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, count) = lake_counting_day1_listings(dir.path());
    // Three batches of day 1: one listing serves them all.
    let w = pushed(
        &lake,
        WriterOptions { batch_rows: 2, ..small() },
        &[("a", 0), ("b", 0), ("c", 0), ("d", 0), ("a", 0), ("e", 0)],
    );
    let (stats, _) = w.finish_without_rollups().unwrap();
    assert_eq!((stats.written, stats.duplicates), (5, 1));
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(all_events(&lake).len(), 5);
}

#[test]
fn a_listing_older_than_a_second_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, count) = lake_counting_day1_listings(dir.path());
    let opts = WriterOptions { batch_rows: 2, ..small() };
    let mut w = pushed(&lake, opts, &[("a", 0), ("b", 0)]);
    w.commit().unwrap();
    // Another writer stores "c" after that listing.
    let other = Lake::open_dir(dir.path()).unwrap();
    let (s, _) = pushed(&other, small(), &[("c", 0)]).finish_without_rollups().unwrap();
    assert_eq!(s.written, 1);
    std::thread::sleep(super::super::listing::LISTING_FRESH + Duration::from_millis(200));
    w.push(ev("c", "t1", DAY0 + 3, 1)).unwrap();
    w.push(ev("d", "t1", DAY0 + 4, 1)).unwrap();
    let (stats, _) = w.finish_without_rollups().unwrap();
    // Listed again, the other writer's file is seen: "c" is not stored twice.
    assert_eq!((stats.written, stats.duplicates), (3, 1));
    assert_eq!(count.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(all_events(&lake).len(), 4);
}

#[test]
fn row_keys_are_kept_only_for_a_file_the_put_created() {
    use super::{File, Uploads};
    use crate::row_keys::RowKeys;
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let keys = Arc::new(RowKeys::default());
    keys.set_budget(1 << 20);
    let mut uploads = Uploads::new(lake.store().clone(), None, keys.clone());
    let file = |bytes: &'static [u8], row_keys| File {
        key: "usage_events/dt=2026-10-01/part-ab.parquet".into(),
        bytes: bytes::Bytes::from_static(bytes),
        row_keys: Some(row_keys),
    };
    uploads.put(file(b"first", vec![1, 2])).unwrap();
    assert_eq!(keys.take("usage_events/dt=2026-10-01/part-ab.parquet"), Some(vec![1, 2]));
    // The name is taken: the object is another put's, whose rows may come in another order.
    uploads.put(file(b"second", vec![2, 1])).unwrap();
    assert_eq!(keys.take("usage_events/dt=2026-10-01/part-ab.parquet"), None);
    let stored =
        std::fs::read(dir.path().join("usage_events/dt=2026-10-01/part-ab.parquet")).unwrap();
    assert_eq!(stored, b"first");
}
