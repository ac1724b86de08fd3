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
    let mut w =
        crate::writer::EventWriter::new(&Lake::open_dir(dir.path()).unwrap(), Default::default());
    for d in 0..4 {
        w.push(ev(&format!("e{d}"), "t1", DAY0 + d * 86_400_000, 1)).unwrap();
    }
    let (_, days) = w.finish_without_rollups().unwrap();
    // Four days, three footers each: all twelve in flight together on two threads' worth.
    let (lake, footers) = crate::store::tests::lake_where_rollup_footers_meet(dir.path(), 12);
    let days: Vec<NaiveDate> = days.into_iter().collect();
    let report = rebuild_hourly_all(&lake, &days, 2);
    assert_eq!(report.rebuilt, (1..=4).map(day).collect::<Vec<_>>());
    assert_eq!(footers.timed_out(), 0);
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
