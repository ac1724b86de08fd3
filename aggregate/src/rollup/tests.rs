//! Rollup rebuilds: their requests side by side, the day gate, and the sums.

use super::*;

#[test]
fn a_rebuild_reads_the_footers_together_then_the_listings_then_puts_the_rollups_together() {
    use crate::store::tests::{Hooked, Op, Together};
    use std::sync::Arc;
    let dir = tempfile::tempdir().unwrap();
    let mut w =
        crate::writer::EventWriter::new(&Lake::open_dir(dir.path()).unwrap(), Default::default());
    for (id, t, n) in [("a", "t1", 5), ("b", "t2", 6), ("c", "t1", 7)] {
        w.push(crate::writer::tests::ev(id, t, crate::writer::tests::DAY0 + 10, n)).unwrap();
    }
    w.finish_without_rollups().unwrap();
    let (footers, listings) = (Arc::new(Together::new(3)), Arc::new(Together::new(2)));
    let puts = Arc::new(Together::new(3));
    let (f, l, p) = (footers.clone(), listings.clone(), puts.clone());
    let store = Hooked::new(crate::store::LocalStore::new(dir.path()), move |op| {
        match op {
            Op::Footer(k) if k.ends_with("/part-00000.parquet") => f.arrive(),
            Op::List(p) if p.contains("/dt=") => l.arrive(),
            Op::Put(k) if ROLLUP_TABLES.iter().any(|t| k.starts_with(t)) => p.arrive(),
            _ => {}
        }
        Ok(())
    });
    let lake = Lake::open(Arc::new(store)).unwrap();
    let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    assert_eq!(rebuild_hourly(&lake, dt).unwrap(), 2, "one row per tenant and hour");
    assert_eq!((footers.timed_out(), listings.timed_out(), puts.timed_out()), (0, 0, 0));
    assert_eq!(rollup_state(&lake, dt).unwrap(), RollupState::Current);
}

#[test]
fn where_reads_are_round_trips_a_day_s_files_are_read_ahead_and_summed_in_order() {
    use crate::store::tests::Op;
    use crate::writer::tests::{DAY0, ev};
    let dir = tempfile::tempdir().unwrap();
    let opts = crate::writer::WriterOptions { batch_rows: 1, ..Default::default() };
    let mut w = crate::writer::EventWriter::new(&Lake::open_dir(dir.path()).unwrap(), opts);
    // A file an event: seven files of one day, one tenant-hour.
    for n in 1..=7 {
        w.push(ev(&format!("e{n}"), "t1", DAY0 + n, n)).unwrap();
    }
    w.finish_without_rollups().unwrap();
    let (lake, reads) = crate::store::tests::lake_where_meet(
        dir.path(),
        crate::lake::READ_AHEAD + 1,
        |op| matches!(op, Op::Read(k) if k.starts_with("usage_events/")),
    );
    let dt = NaiveDate::from_ymd_opt(2026, 10, 1).unwrap();
    assert_eq!(lake.files(USAGE_EVENTS, dt).unwrap().len(), 7);
    assert_eq!(rebuild_hourly(&lake, dt).unwrap(), 1);
    assert_eq!(reads.timed_out(), 0, "the first five files' reads were in flight together");
    let [(_, m)] = <[_; 1]>::try_from(lake.hourly(dt).unwrap()).unwrap();
    assert_eq!((m.invocations, m.tokens.input), (7, 28));
}

#[test]
fn where_requests_are_round_trips_twice_as_many_days_are_rolled_up_at_once() {
    use crate::writer::tests::{DAY0, day, ev};
    let dir = tempfile::tempdir().unwrap();
    // Rolled up once, then each day given one more event: every rollup is there to be read.
    for round in 0..2 {
        let mut w = crate::writer::EventWriter::new(
            &Lake::open_dir(dir.path()).unwrap(),
            Default::default(),
        );
        for d in 0..4 {
            w.push(ev(&format!("e{round}-{d}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
        }
        if round == 0 {
            w.finish().unwrap();
        } else {
            w.finish_without_rollups().unwrap();
        }
    }
    let days: Vec<NaiveDate> = (1..=4).map(day).collect();
    // Four days, three footers each: all twelve in flight together on two threads' worth.
    let (lake, footers) = crate::store::tests::lake_where_rollup_footers_meet(dir.path(), 12);
    let report = rebuild_hourly_all(&lake, &days, 2);
    assert_eq!(report.rebuilt, days);
    assert_eq!(footers.timed_out(), 0);
    for dt in days {
        let [(_, m)] = <[_; 1]>::try_from(lake.hourly(dt).unwrap()).unwrap();
        assert_eq!(m.invocations, 2);
    }
}

/// Operations of each kind that a [`crate::store::tests::Hooked`] store was asked for.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct Counts {
    footers: usize,
    range_listings: usize,
    day_listings: usize,
    rollup_puts: usize,
}

/// A lake over `root` as S3 (or, without `round_trips`, as a local directory) that counts
/// its operations; `also` runs before each.
fn counted_lake(
    root: &std::path::Path,
    round_trips: bool,
    also: impl Fn(crate::store::tests::Op<'_>) + Send + Sync + 'static,
) -> (Lake, Arc<std::sync::Mutex<Counts>>) {
    use crate::store::tests::{Hooked, Op};
    let counts = Arc::new(std::sync::Mutex::new(Counts::default()));
    let c = counts.clone();
    let mut store = Hooked::new(crate::store::LocalStore::new(root), move |op| {
        also(op);
        let mut c = c.lock().unwrap();
        match op {
            Op::Footer(k) if k.ends_with("/part-00000.parquet") => c.footers += 1,
            Op::ListAfter(_) => c.range_listings += 1,
            Op::List(p) if p.contains("/dt=") => c.day_listings += 1,
            Op::Put(k) if ROLLUP_TABLES.iter().any(|t| k.starts_with(t)) => c.rollup_puts += 1,
            _ => {}
        }
        Ok(())
    });
    store.round_trips = round_trips;
    (Lake::open(Arc::new(store)).unwrap(), counts)
}

/// Four days of one event each (input 1 to 4), committed without their rollups.
fn four_days(root: &std::path::Path, round: u32) -> Vec<NaiveDate> {
    use crate::writer::tests::{DAY0, day, ev};
    let mut w = crate::writer::EventWriter::new(&Lake::open_dir(root).unwrap(), Default::default());
    for d in 0..4 {
        let id = format!("r{round}-d{d}");
        w.push(ev(&id, "t1", DAY0 + d * 86_400_000 + 1000, d + 1)).unwrap();
    }
    w.finish_without_rollups().unwrap();
    (1..=4).map(day).collect()
}

#[test]
fn where_requests_are_round_trips_rollups_never_written_are_not_read() {
    let dir = tempfile::tempdir().unwrap();
    let days = four_days(dir.path(), 0);
    let (lake, counts) = counted_lake(dir.path(), true, |_| {});
    // Four days, two at a time (one core's two where requests are round trips).
    assert_eq!(rebuild_hourly_all(&lake, &days, 1).rebuilt, days);
    // One listing of each rollup table and of each data table for the four days, where
    // twelve footers were read and eight listings made.
    let first = Counts { footers: 0, range_listings: 5, day_listings: 0, rollup_puts: 12 };
    assert_eq!(*counts.lock().unwrap(), first);
    for (input, &dt) in (1..).zip(&days) {
        assert_eq!(rollup_state(&lake, dt).unwrap(), RollupState::Current);
        let [(_, m)] = <[_; 1]>::try_from(lake.hourly(dt).unwrap()).unwrap();
        assert_eq!((m.invocations, m.tokens.input), (1, input));
    }
    // Stale rollups that are there are read as before; current ones are left alone.
    four_days(dir.path(), 1);
    *counts.lock().unwrap() = Counts::default();
    assert_eq!(rebuild_hourly_all(&lake, &days[..3], 1).rebuilt, days[..3]);
    let stale = Counts { footers: 9, range_listings: 5, day_listings: 6, rollup_puts: 9 };
    assert_eq!(*counts.lock().unwrap(), stale);
    // Days that all go at once read their footers at once: nothing is listed first.
    *counts.lock().unwrap() = Counts::default();
    assert_eq!(rebuild_hourly_all(&lake, &days[3..], 1).rebuilt, days[3..]);
    let at_once = Counts { footers: 3, range_listings: 0, day_listings: 2, rollup_puts: 3 };
    assert_eq!(*counts.lock().unwrap(), at_once);
    let [(_, m)] = <[_; 1]>::try_from(lake.hourly(days[1]).unwrap()).unwrap();
    assert_eq!((m.invocations, m.tokens.input), (2, 4));
    // A local lake lists nothing ahead: a footer read is a file opened.
    four_days(dir.path(), 2);
    let (local, counts) = counted_lake(dir.path(), false, |_| {});
    assert_eq!(rebuild_hourly_all(&local, &days, 1).rebuilt, days);
    let local_counts = Counts { footers: 12, range_listings: 0, day_listings: 8, rollup_puts: 12 };
    assert_eq!(*counts.lock().unwrap(), local_counts);
}

#[test]
fn a_rollup_written_after_the_listing_makes_the_rebuild_read_the_footers_again() {
    use crate::store::tests::Op;
    use std::sync::atomic::{AtomicBool, Ordering};
    let dir = tempfile::tempdir().unwrap();
    let days = four_days(dir.path(), 0);
    let dt = days[2];
    // Another writer rolls a day up between the listings and the day's put: as its data
    // file is read.
    let root = dir.path().to_owned();
    let raced = Arc::new(AtomicBool::new(false));
    let r = raced.clone();
    let (lake, counts) = counted_lake(dir.path(), true, move |op| {
        let events = crate::layout::partition(USAGE_EVENTS, dt);
        if matches!(op, Op::Read(k) if k.starts_with(&events)) && !r.swap(true, Ordering::SeqCst) {
            let other = Lake::open_dir(&root).unwrap();
            assert_eq!(rebuild_hourly(&other, dt).unwrap(), 1);
        }
    });
    assert_eq!(rebuild_hourly_all(&lake, &days, 1).rebuilt, days);
    assert!(raced.load(Ordering::SeqCst));
    // The day's three puts refused (only where no rollup was), then its footers read and its
    // data files listed: current. The other days' nine puts went through.
    let c = *counts.lock().unwrap();
    let raced_day = Counts { footers: 3, range_listings: 5, day_listings: 2, rollup_puts: 12 };
    assert_eq!(c, raced_day);
    assert_eq!(rollup_state(&lake, dt).unwrap(), RollupState::Current);
    let [(_, m)] = <[_; 1]>::try_from(lake.hourly(dt).unwrap()).unwrap();
    assert_eq!((m.invocations, m.tokens.input), (1, 3));
}

#[test]
fn days_beyond_one_a_core_start_only_within_the_memory_bound() {
    let gate = DayGate::new(1);
    let big = gate.enter(EXTRA_DAY_BYTES + 1);
    std::thread::scope(|s| {
        let (entered, seen) = std::sync::mpsc::channel();
        let gate = &gate;
        s.spawn(move || {
            let _pass = gate.enter(1);
            entered.send(()).unwrap();
        });
        let wait = std::time::Duration::from_millis(200);
        assert!(seen.recv_timeout(wait).is_err(), "waits while the big day is in flight");
        drop(big);
        seen.recv_timeout(std::time::Duration::from_secs(10)).unwrap();
    });
    // Small days go together beyond the core's one.
    let passes: Vec<_> = (0..8).map(|_| gate.enter(EXTRA_DAY_BYTES / 8)).collect();
    assert_eq!(gate.in_flight.lock().unwrap().0, passes.len());
    drop(passes);
    assert_eq!(*gate.in_flight.lock().unwrap(), (0, 0));
}

#[test]
fn a_session_line_takes_112_bytes() {
    assert_eq!(std::mem::size_of::<SessionLine>(), 112);
}

#[test]
fn the_peak_second_of_each_tenant_hour_is_counted_from_every_request() {
    let hour = 1_790_000_000 / 3600 * 3600; // a whole hour, in seconds
    let seconds = vec![
        (hour + 5, 0, 1),
        (hour + 7, 0, 1),
        (hour + 5, 0, 1),
        (hour + 5, 0, 2), // another tenant in the same second
        (hour + 7, 0, 1),
        (hour + 7, 0, 1),
        (hour + 3600, 0, 1), // the next hour
    ];
    let peaks = peak_seconds(seconds);
    let ms = |s: i64| s * 1000;
    assert_eq!(peaks.len(), 3);
    assert_eq!(peaks[&(ms(hour), 0, 1)], 3);
    assert_eq!(peaks[&(ms(hour), 0, 2)], 1);
    assert_eq!(peaks[&(ms(hour + 3600), 0, 1)], 1);
}

/// The counting the rollup replaced: every line sorted by series, time and id, then each
/// series in turn (the reference for [`Sessions::apply`]).
fn apply_by_sorting(
    mut lines: Vec<SessionLine>,
    groups: &mut HashMap<Group, HourlyMeasures>,
) -> std::result::Result<(), String> {
    lines.sort_unstable_by_key(|l| (l.series(), l.time_ms, l.id));
    for chain in lines.chunk_by(|a, b| a.series() == b.series()) {
        let tokens: Vec<Tokens> = chain.iter().map(|l| l.tokens).collect();
        if !crate::sessions::is_lifetime_series(&tokens) {
            continue;
        }
        for (prev, line) in chain.iter().zip(&chain[1..]) {
            let increment = line.tokens.checked_sub(&prev.tokens).ok_or("overflow")?;
            let mut group = line.group();
            let m = groups.get_mut(&group).ok_or("a session line without its group")?;
            m.tokens = m.tokens.checked_sub(&line.tokens).ok_or("overflow")?;
            m.invocations -= 1;
            group.6 = prompt_band(&increment);
            let m = groups.entry(group).or_default();
            m.tokens = m.tokens.checked_add(&increment).ok_or("overflow")?;
            m.invocations += 1;
            m.cumulative_lines += 1;
        }
    }
    groups.retain(|_, m| *m != HourlyMeasures::default());
    Ok(())
}

proptest::proptest! {
    // A failure prints its input; no regression file is written (README, "Property tests").
    #![proptest_config(proptest::prelude::ProptestConfig {
        failure_persistence: None,
        ..proptest::prelude::ProptestConfig::default()
    })]
    /// Series found by a counting sort of indices count exactly as a sort of the lines did:
    /// series of several tenants and sessions interleaved, lines out of time order, equal
    /// times told apart by id, hours crossed, and running totals mixed with per-call lines.
    #[test]
    fn sessions_count_as_the_sorted_lines_did(
        raw in proptest::collection::vec(
            (0u32..3, 0u128..5, 0i64..8, 1i64..6, 0i64..3, 0u32..2),
            0..120,
        ),
    ) {
        let hour = 1_790_812_800_000_i64;
        let lines = || -> Vec<SessionLine> {
            raw.iter()
                .enumerate()
                .map(|(i, &(tenant, session, slot, step, extra, user))| {
                    // Steps of 655 input tokens: a session's lines, in time order, often form a
                    // running total, and a repeated or smaller step breaks one.
                    let input = 655 * step + extra;
                    let tokens = Tokens {
                        input,
                        output: 40 * step,
                        total: input + 40 * step,
                        ..Tokens::default()
                    };
                    SessionLine {
                        session: session * 7919,
                        // Distinct ids, not in time order.
                        id: (i as u128).wrapping_mul(0x9e37_79b9_7f4a_7c15) % 1_000_003,
                        time_ms: hour + slot * 15 * 60_000,
                        tokens,
                        codes: [0, tenant, user, 0],
                        service_tier: ServiceTier::Standard,
                    }
                })
                .collect()
        };
        let mut read: HashMap<Group, HourlyMeasures> = HashMap::default();
        for l in lines() {
            let m = read.entry(l.group()).or_default();
            m.invocations += 1;
            m.tokens = m.tokens.checked_add(&l.tokens).unwrap();
        }
        let (mut got, mut want) = (read.clone(), read);
        Sessions { lines: lines() }.apply(&mut got).unwrap();
        apply_by_sorting(lines(), &mut want).unwrap();
        proptest::prop_assert_eq!(got, want);
    }

    /// Ranks order codes exactly as their strings: shared prefixes, digits, repeats.
    #[test]
    fn string_ranks_order_as_the_strings(
        values in proptest::collection::vec("[ab1]{0,4}", 0..40),
    ) {
        let ranks = string_ranks(&values);
        for (i, a) in values.iter().enumerate() {
            for (j, b) in values.iter().enumerate() {
                proptest::prop_assert_eq!(ranks[i].cmp(&ranks[j]), a.cmp(b), "{:?} {:?}", a, b);
            }
        }
    }
}

/// Against S3's protocol (moto, through a proxy counting the requests): a first rebuild puts
/// the rollups without reading a footer, and a later one reads the footers of those there.
#[test]
fn on_s3_rollups_never_written_cost_one_listing_a_table_not_three_reads_a_day() {
    use crate::writer::tests::{DAY0, ev};
    use agentmeter_testkit::faults::{FaultProxy, Plan};
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let (_bucket, _rt) = crate::store::tests::moto_store(&moto, "lakes", "", Default::default());
    let proxy = FaultProxy::start(moto.port(), Plan::seeded(0));
    let endpoint = proxy.endpoint();
    let (store, _rt2) =
        crate::store::tests::store_at(&endpoint, "lakes", "acme/prod", Default::default(), false);
    let lake = Lake::open(Arc::new(store)).unwrap();
    let write = |round: i64| {
        let mut w = crate::writer::EventWriter::new(&lake, Default::default());
        for d in 0..3 {
            w.push(ev(&format!("r{round}-d{d}"), "t1", DAY0 + d * 86_400_000, d + 1)).unwrap();
        }
        w.finish_without_rollups().unwrap().1.into_iter().collect::<Vec<_>>()
    };
    let rebuild = |days: &[NaiveDate]| {
        let before = proxy.operations();
        assert_eq!(rebuild_hourly_all(&lake, days, 1).rebuilt, days);
        let after = proxy.operations();
        let ops = [
            "GetObject(Range)",
            "ListObjectsV2",
            "PutObject(If-None-Match)",
            "PutObject(If-Match)",
        ];
        ops.map(|op| after.get(op).unwrap_or(&0) - before.get(op).unwrap_or(&0))
    };
    let days = write(0);
    // Three days, two at a time: a listing of each rollup table and of each data table over
    // the three days, where nine footers were read and six listings made; nine puts.
    assert_eq!(rebuild(&days), [0, 5, 9, 0]);
    write(1);
    // Two days, both at once, their rollups there: the footers read, nothing listed first,
    // each rollup replaced only as the version read.
    assert_eq!(rebuild(&days[..2]), [6, 4, 0, 6]);
    for (input, &dt) in (1..).zip(&days) {
        let [(_, m)] = <[_; 1]>::try_from(lake.hourly(dt).unwrap()).unwrap();
        let expected = if input < 3 { (2, 2 * input) } else { (1, input) };
        assert_eq!((m.invocations, m.tokens.input), expected);
    }
    assert_eq!(rollup_state(&lake, days[1]).unwrap(), RollupState::Current);
    assert_ne!(rollup_state(&lake, days[2]).unwrap(), RollupState::Current);
}

#[test]
fn where_puts_are_round_trips_a_day_s_rollups_are_put_while_the_next_day_is_summed() {
    use crate::store::tests::{Op, lake_where_meet};
    let dir = tempfile::tempdir().unwrap();
    let days = four_days(dir.path(), 0);
    // The first day's put of its hourly rollup and the read of the second day's file meet:
    // on one thread, only if the put is in flight while the next day is summed.
    let first_put = crate::layout::partition(USAGE_HOURLY, days[0]);
    let second_read = crate::layout::partition(USAGE_EVENTS, days[1]);
    let (lake, meet) = lake_where_meet(dir.path(), 2, move |op| match op {
        Op::Put(k) => k.starts_with(&first_put),
        Op::Read(k) => k.starts_with(&second_read),
        _ => false,
    });
    // No threads asked for: one.
    assert_eq!(rebuild_hourly_all(&lake, &days, 0).rebuilt, days);
    assert_eq!(meet.timed_out(), 0);
    for (input, &dt) in (1..).zip(&days) {
        assert_eq!(rollup_state(&lake, dt).unwrap(), RollupState::Current);
        let [(_, m)] = <[_; 1]>::try_from(lake.hourly(dt).unwrap()).unwrap();
        assert_eq!((m.invocations, m.tokens.input), (1, input));
    }
}
