//! The writer's Parquet encoding: which columns get a dictionary, rollups reading either kind
//! of page, and the order of rows within a file.

use super::*;

/// How each column of `table`'s first file in `dt` is written: its name, whether it has a
/// dictionary, the encoding of its values (other than the dictionary's), its codec, and
/// whether it has statistics.
fn column_plans(
    lake: &Lake,
    dir: &std::path::Path,
    table: &str,
    dt: NaiveDate,
) -> Vec<(String, bool, String, String, bool)> {
    use parquet::basic::Encoding;
    use parquet::file::reader::{FileReader, SerializedFileReader};
    let file = &lake.files(table, dt).unwrap()[0];
    let reader = SerializedFileReader::new(fs::File::open(dir.join(&file.key)).unwrap()).unwrap();
    let group = reader.metadata().row_group(0);
    group
        .columns()
        .iter()
        .map(|c| {
            // RLE is the levels' encoding, PLAIN a dictionary page's.
            let values: Vec<String> = c
                .encodings()
                .filter(|e| {
                    *e != Encoding::RLE
                        && !(*e == Encoding::PLAIN && c.dictionary_page_offset().is_some())
                })
                .map(|e| e.to_string())
                .collect();
            let codec = format!("{:?}", c.compression()).split('(').next().unwrap().to_owned();
            let dictionary = c.dictionary_page_offset().is_some();
            (
                c.column_path().string(),
                dictionary,
                values.join(","),
                codec,
                c.statistics().is_some(),
            )
        })
        .collect()
}

/// The columns of `table`'s first file in `dt` written with a dictionary.
fn dictionary_columns(
    lake: &Lake,
    dir: &std::path::Path,
    table: &str,
    dt: NaiveDate,
) -> Vec<String> {
    let plans = column_plans(lake, dir, table, dt);
    plans.into_iter().filter(|(_, dictionary, ..)| *dictionary).map(|(name, ..)| name).collect()
}

/// Strings with a dictionary; random ids without one or statistics, their lengths apart
/// from their bytes; times and token counts as deltas, not compressed; the counts that are
/// mostly zero plain; and every value reads back as written, through both the writer's
/// reader and the rollups.
#[test]
fn each_column_is_written_as_its_plan_says_and_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    let mut want = Vec::new();
    for i in 0..50 {
        let mut e = ev(&format!("e{i}"), "t1", DAY0 + i * 1000, i * 37 % 11);
        e.session_id = Some(agentmeter_schemas::SessionId::new(format!("s{i}")).unwrap());
        e.tokens.cache_read = i % 3 * 1_000_000;
        e.tokens.cache_write = i % 2 * 7;
        want.push(e.clone());
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let plan = |name: &str, values: &str, codec: &str, statistics| {
        let dictionary = values == "RLE_DICTIONARY";
        (name.to_owned(), dictionary, values.to_owned(), codec.to_owned(), statistics)
    };
    let (delta, id, strings) = ("DELTA_BINARY_PACKED", "DELTA_LENGTH_BYTE_ARRAY", "RLE_DICTIONARY");
    assert_eq!(
        column_plans(&lake, dir.path(), USAGE_EVENTS, day(1)),
        [
            plan("event_time", delta, "UNCOMPRESSED", true),
            plan("event_id", id, "ZSTD", false),
            plan("tier", strings, "ZSTD", true),
            plan("tenant_id", strings, "ZSTD", true),
            plan("user_id", strings, "ZSTD", true),
            plan("model_id", strings, "ZSTD", true),
            plan("source", strings, "ZSTD", true),
            plan("input_tokens", delta, "UNCOMPRESSED", true),
            plan("output_tokens", delta, "UNCOMPRESSED", true),
            plan("total_tokens", delta, "UNCOMPRESSED", true),
            plan("cache_read_tokens", "PLAIN", "ZSTD", true),
            plan("cache_write_tokens", "PLAIN", "ZSTD", true),
            plan("cache_write_1h_tokens", "PLAIN", "ZSTD", true),
            plan("session_id", id, "ZSTD", false),
            plan("service_tier", strings, "ZSTD", true),
        ]
    );
    let mut got = lake.events(day(1)).unwrap();
    got.sort_by_key(|e| e.event_time_ms);
    assert_eq!(got, want);
    let rows = lake.hourly(day(1)).unwrap();
    let sum =
        |f: fn(&agentmeter_schemas::Tokens) -> i64| want.iter().map(|e| f(&e.tokens)).sum::<i64>();
    assert_eq!(rows.iter().map(|(_, m)| m.tokens.input).sum::<i64>(), sum(|t| t.input));
    assert_eq!(rows.iter().map(|(_, m)| m.tokens.cache_read).sum::<i64>(), sum(|t| t.cache_read));
}

/// The rollup reads its grouped strings as dictionaries: over many batches, a column chunk
/// whose dictionary overflowed into plain pages, and values that repeat across files, its
/// sums and distinct users are those of the events.
#[test]
fn rollups_of_dictionary_and_plain_pages_agree_with_the_events() {
    use std::collections::{BTreeMap, BTreeSet};
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let opts = WriterOptions { max_rows_per_file: 30_000, ..WriterOptions::default() };
    let mut w = EventWriter::new(&lake, opts);
    let mut want: BTreeMap<(i64, String, String, String), (i64, i64)> = BTreeMap::new();
    let mut users: BTreeMap<(i64, String), BTreeSet<String>> = BTreeMap::new();
    // 40,000 users of about 40 bytes: more than a 1 MiB dictionary page holds.
    for i in 0..45_000_i64 {
        let mut e = ev(&format!("e{i}"), &format!("t{}", i % 7), DAY0 + i * 1_500, i % 500 + 1);
        let user = format!("user-{:05}@clinic-{}.example.org", i % 40_000, i % 7);
        e.user_id = UserId::new(&user).unwrap();
        e.model_id = ModelId::new(format!("m{}", i % 3)).unwrap();
        let hour = agentmeter_schemas::tables::hour_start_ms(e.event_time_ms);
        let key = (hour, e.tenant_id.to_string(), user.clone(), e.model_id.to_string());
        let slot = want.entry(key).or_default();
        slot.0 += 1;
        slot.1 += e.tokens.input;
        users.entry((hour, e.tenant_id.to_string())).or_default().insert(user);
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let files = lake.files(USAGE_EVENTS, day(1)).unwrap();
    assert_eq!(files.len(), 2, "two files of the one day");
    let plain_pages = files.iter().any(|f| {
        use parquet::basic::Encoding;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let reader = SerializedFileReader::new(fs::File::open(dir.path().join(&f.key)).unwrap());
        let reader = reader.unwrap();
        let group = reader.metadata().row_group(0);
        let users = group.columns().iter().find(|c| c.column_path().string() == "user_id");
        users.unwrap().encodings().any(|e| e == Encoding::PLAIN)
    });
    assert!(plain_pages, "the user_id dictionary overflowed into plain pages");
    let got: BTreeMap<(i64, String, String, String), (i64, i64)> = lake
        .hourly(day(1))
        .unwrap()
        .into_iter()
        .map(|(k, m)| {
            let key =
                (k.hour_ms, k.tenant_id.to_string(), k.user_id.to_string(), k.model_id.to_string());
            (key, (m.invocations, m.tokens.input))
        })
        .collect();
    assert_eq!(got, want);
    let got: BTreeMap<(i64, String), i64> = lake
        .tenant_hourly(day(1))
        .unwrap()
        .into_iter()
        .map(|t| ((t.hour_ms, t.tenant_id.to_string()), t.users))
        .collect();
    let want: BTreeMap<(i64, String), i64> =
        users.into_iter().map(|(k, u)| (k, u.len() as i64)).collect();
    assert_eq!(got, want);
}

/// `usage_hourly` rows come sorted by tenant, hour, tier, user, model, service tier and band
/// as strings, whatever order the day's values were met in (the rollup codes them as met).
#[test]
fn hourly_rows_are_sorted_by_their_strings_not_by_when_they_were_met() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    let (users, models, tiers) =
        (["u-c", "u-a", "u-10", "u-b", "u-9"], ["m-z", "m-a", "m-10"], ["premium", "basic"]);
    for i in 0..60_i64 {
        let mut e = ev(&format!("e{i}"), ["t-b", "t-a"][(i % 2) as usize], DAY0 + i * 90_000, 5);
        e.user_id = UserId::new(users[(i % 5) as usize]).unwrap();
        e.model_id = ModelId::new(models[(i % 3) as usize]).unwrap();
        e.tier = Tier::new(tiers[(i / 7 % 2) as usize]).unwrap();
        w.push(e).unwrap();
    }
    w.finish().unwrap();
    let rows: Vec<_> = lake
        .hourly(day(1))
        .unwrap()
        .into_iter()
        .map(|(k, _)| {
            let s = |v: &dyn std::fmt::Display| v.to_string();
            let band = k.prompt_band;
            (s(&k.tenant_id), k.hour_ms, s(&k.tier), s(&k.user_id), s(&k.model_id), band)
        })
        .collect();
    assert!(rows.len() > 30, "{} rows", rows.len());
    let mut sorted = rows.clone();
    sorted.sort();
    assert_eq!(rows, sorted);
}

/// Rollup files give their strings (and hours) a dictionary, and their counts and sums none:
/// each of a day's rows is a different group, so a sum repeats little, and a column of zeros
/// is a run zstd takes in one step. Smaller files for less work (BENCHMARKS.md, "Levers").
#[test]
fn rollups_write_their_integer_columns_without_a_dictionary() {
    use agentmeter_schemas::tables::TENANT_HOURLY;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let mut w = EventWriter::new(&lake, WriterOptions::default());
    for i in 0..50 {
        w.push(ev(&format!("e{i}"), ["t-a", "t-b"][i as usize % 2], DAY0 + i * 60_000, i)).unwrap();
    }
    w.finish().unwrap();
    let with_dictionary = |table| dictionary_columns(&lake, dir.path(), table, day(1));
    assert_eq!(
        with_dictionary(USAGE_HOURLY),
        ["hour", "tier", "tenant_id", "user_id", "model_id", "service_tier"]
    );
    assert_eq!(with_dictionary(TENANT_HOURLY), ["hour", "tier", "tenant_id"]);
    // The sums read back as written.
    let rows = lake.hourly(day(1)).unwrap();
    assert_eq!(rows.iter().map(|(_, m)| m.tokens.input).sum::<i64>(), (0..50).sum::<i64>());
    assert_eq!(rows.iter().map(|(_, m)| m.invocations).sum::<i64>(), 50);
}

/// A file whose first id is a CloudWatch Logs event id stores its event ids as prefixes
/// shared with the id before (`DELTA_BYTE_ARRAY`), as the writer and compaction write it; a
/// file of other ids (a UUID, or 31 digits) keeps their lengths apart from their bytes; the
/// session ids never change; every id reads back as written.
#[test]
fn log_event_ids_are_stored_as_shared_prefixes_and_other_ids_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    let opts = WriterOptions { max_rows_per_file: 1000, ..WriterOptions::default() };
    // Day 1: CloudWatch ids of consecutive events, in two commits (two files) to compact.
    // Day 2: UUIDs. Day 3: ids of 31 digits.
    let cw = |i: i64| format!("3779184000{:046}", 4_186_302_785_123_i64 * (i + 1));
    let mut want = Vec::new();
    let mut w = EventWriter::new(&lake, opts);
    for i in 0..40_i64 {
        let id = match i % 4 {
            0 | 1 => cw(i),
            2 => format!("5f2b0c1e-{:04}-4a6b-9c1d-2e3f4a5b6c7d", i),
            _ => format!("{:031}", i),
        };
        let day = [0, 0, 1, 2][(i % 4) as usize];
        let mut e = ev(&id, "t1", DAY0 + day * 86_400_000 + i * 1000, 1);
        e.session_id = Some(agentmeter_schemas::SessionId::new(format!("{:040}", i)).unwrap());
        want.push(e.clone());
        w.push(e).unwrap();
        if i == 20 {
            w.commit().unwrap();
        }
    }
    w.finish().unwrap();
    let event_ids = |dt| {
        let plans = column_plans(&lake, dir.path(), USAGE_EVENTS, dt);
        let of = |name: &str| plans.iter().find(|p| p.0 == name).unwrap().2.clone();
        (of("event_id"), of("session_id"))
    };
    let (shared, apart) = ("DELTA_BYTE_ARRAY", "DELTA_LENGTH_BYTE_ARRAY");
    assert_eq!(lake.files(USAGE_EVENTS, day(1)).unwrap().len(), 2);
    assert_eq!(event_ids(day(1)), (shared.to_owned(), apart.to_owned()));
    assert_eq!(event_ids(day(2)), (apart.to_owned(), apart.to_owned()));
    assert_eq!(event_ids(day(3)), (apart.to_owned(), apart.to_owned()));
    let stats = crate::compact::compact::<UsageEvent>(&lake, &Default::default(), 1000).unwrap();
    assert_eq!((stats.files_before, stats.files_after), (6, 3));
    assert_eq!(event_ids(day(1)), (shared.to_owned(), apart.to_owned()));
    let mut got = all_events(&lake);
    got.sort_by_key(|e| e.event_time_ms);
    want.sort_by_key(|e| e.event_time_ms);
    assert_eq!(got, want);
}
