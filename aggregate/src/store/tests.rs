//! The local backend's semantics; the S3 backend's are tested against moto in
//! `tests/store_s3.rs`, with the same assertions.

use bytes::Bytes;

use super::*;

/// The behaviour both backends must have (the S3 tests call it too).
pub fn conditional_writes_and_listings(store: &dyn Store) {
    let key = "usage_events/dt=2026-10-01/part-00000000000000000000000000000001.parquet";
    assert_eq!(store.get(key).unwrap().map(|o| o.bytes), None);
    let first = store.put(key, Bytes::from_static(b"one"), Condition::Absent).unwrap();
    let Put::Written { etag } = first else { panic!("{first:?}") };
    // Created only once: a retried or concurrent create finds the object.
    assert_eq!(
        store.put(key, Bytes::from_static(b"two"), Condition::Absent).unwrap(),
        Put::Conflict
    );
    let got = store.get(key).unwrap().unwrap();
    assert_eq!((got.bytes.as_ref(), got.etag.as_str()), (b"one".as_ref(), etag.as_str()));
    // Replaced only from the version read.
    let state = "_state/flags.json";
    let Put::Written { etag: v1 } =
        store.put(state, Bytes::from_static(b"{\"v\":1}"), Condition::Absent).unwrap()
    else {
        panic!()
    };
    let Put::Written { etag: v2 } =
        store.put(state, Bytes::from_static(b"{\"v\":2}"), Condition::Matches(v1.clone())).unwrap()
    else {
        panic!()
    };
    assert_ne!(v1, v2);
    assert_eq!(
        store.put(state, Bytes::from_static(b"{\"v\":3}"), Condition::Matches(v1)).unwrap(),
        Put::Conflict,
        "a writer that read the old version loses"
    );
    assert_eq!(store.get(state).unwrap().unwrap().bytes.as_ref(), b"{\"v\":2}");
    assert_eq!(
        store.put("_state/none.json", Bytes::new(), Condition::Matches(v2)).unwrap(),
        Put::Conflict,
        "no object, no match"
    );
    store.put("usage_events/dt=2026-10-02/b", Bytes::from_static(b"b"), Condition::Always).unwrap();
    let listed: Vec<String> =
        store.list("usage_events/").unwrap().into_iter().map(|o| o.key).collect();
    assert_eq!(listed, [key, "usage_events/dt=2026-10-02/b"]);
    assert_eq!(store.list_dirs("usage_events/").unwrap(), ["dt=2026-10-01", "dt=2026-10-02"]);
    assert_eq!(store.head(key).unwrap().unwrap().size, 3);
    // A page: the keys after the one given (a prefix of a key sorts before it), at most the
    // limit, and whether more follow.
    let page = |after: &str, limit| {
        let (objects, more) = store.list_after("usage_events/", after, limit).unwrap();
        (objects.into_iter().map(|o| o.key).collect::<Vec<_>>(), more)
    };
    let b = "usage_events/dt=2026-10-02/b";
    assert_eq!(page("usage_events/", 1), (vec![key.to_owned()], true));
    assert_eq!(page("usage_events/dt=2026-10-01", 5), (vec![key.to_owned(), b.to_owned()], false));
    assert_eq!(page(key, 5), (vec![b.to_owned()], false));
    assert_eq!(page(b, 5), (vec![], false));
    store.delete("usage_events/dt=2026-10-02/b").unwrap();
    store.delete("usage_events/dt=2026-10-02/b").unwrap();
    assert_eq!(store.head("usage_events/dt=2026-10-02/b").unwrap(), None);
    assert!(immutable_data_file(key));
    assert!(!immutable_data_file("usage_hourly/dt=2026-10-01/part-00000.parquet"));
}

/// Columns asked for as dictionaries come as `Dictionary(Int32, Utf8)` with the values
/// written, whole or by ranges; others as written (the S3 tests call it too).
pub fn dictionary_reads(store: &dyn Store) {
    use arrow_array::cast::AsArray;
    use arrow_array::types::Int32Type;
    use arrow_array::{Array, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![
        Field::new("tenant_id", DataType::Utf8, false),
        Field::new("user_id", DataType::Utf8, true),
        Field::new("n", DataType::Int64, false),
    ]));
    let tenants: Vec<String> = (0..20_000).map(|i| format!("clinic-{}", i % 7)).collect();
    let users: Vec<Option<String>> =
        (0..20_000).map(|i| (i % 5 != 0).then(|| format!("u{}", i % 300))).collect();
    let buf = parquet_bytes(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from(tenants.clone())),
            std::sync::Arc::new(StringArray::from(users.clone())),
            std::sync::Arc::new(Int64Array::from((0..20_000).collect::<Vec<i64>>())),
        ],
    );
    let key = "usage_events/dt=2026-10-03/part-00000000000000000000000000000d1c.parquet";
    store.put(key, buf, Condition::Absent).unwrap();
    let listed = store.head(key).unwrap().unwrap();
    for fetch in [Fetch::Whole, Fetch::Ranged] {
        let dictionaries = ["tenant_id", "user_id", "n"];
        let batches = store.read_parquet(key, Some(&listed), None, &dictionaries, fetch);
        let batches = batches.unwrap().unwrap().collect::<Result<Vec<_>>>().unwrap();
        let (mut got_tenants, mut got_users) = (Vec::new(), Vec::new());
        for b in &batches {
            let dictionary =
                DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
            assert_eq!(b.schema().field(0).data_type(), &dictionary, "{fetch:?}");
            assert_eq!(b.schema().field(1).data_type(), &dictionary, "{fetch:?}");
            assert_eq!(b.schema().field(2).data_type(), &DataType::Int64, "not a string");
            let t = b.column(0).as_dictionary::<Int32Type>();
            let values = t.values().as_string::<i32>();
            got_tenants
                .extend(t.keys().values().iter().map(|&k| values.value(k as usize).to_owned()));
            let u = b.column(1).as_dictionary::<Int32Type>();
            let values = u.values().as_string::<i32>();
            got_users.extend((0..u.len()).map(|i| {
                u.is_valid(i).then(|| values.value(u.keys().value(i) as usize).to_owned())
            }));
        }
        assert_eq!(got_tenants, tenants, "{fetch:?}");
        assert_eq!(got_users, users, "{fetch:?}");
    }
    let plain = store.read_parquet(key, Some(&listed), Some(&["tenant_id"]), &[], Fetch::Whole);
    let plain = plain.unwrap().unwrap().next().unwrap().unwrap();
    assert_eq!(plain.schema().field(0).data_type(), &DataType::Utf8, "none asked for");
}

#[test]
fn local_dictionary_reads() {
    let dir = tempfile::tempdir().unwrap();
    dictionary_reads(&LocalStore::new(dir.path().join("lake")));
}

#[test]
fn local_directory() {
    let dir = tempfile::tempdir().unwrap();
    conditional_writes_and_listings(&LocalStore::new(dir.path().join("lake")));
}

#[test]
fn local_temporary_files_are_never_listed_and_abandoned_ones_are_removed() {
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    std::fs::create_dir_all(dir.path().join("t/dt=1")).unwrap();
    let host = crate::fsio::host();
    let me = std::process::id();
    // This process (alive), a process that is gone, another machine's, and an old one.
    let live = dir.path().join(format!("t/dt=1/.tmp-{host}~{me}-0-a.parquet.partial"));
    let dead = dir.path().join(format!("t/dt=1/.tmp-{host}~4294967294-0-b.parquet.partial"));
    let other = dir.path().join(format!("t/dt=1/.tmp-elsewhere~{me}-0-c.parquet.partial"));
    let old = dir.path().join("t/dt=1/.tmp-elsewhere~1-0-d.parquet.partial");
    for p in [&live, &dead, &other, &old] {
        std::fs::write(p, b"x").unwrap();
    }
    let f = std::fs::File::options().write(true).open(&old).unwrap();
    f.set_modified(std::time::SystemTime::now() - std::time::Duration::from_secs(7200)).unwrap();
    assert!(store.list("t/").unwrap().is_empty(), "never listed");
    assert_eq!(store.remove_abandoned("").unwrap(), 2);
    assert!(live.exists() && other.exists(), "a live writer's files stay");
    assert!(!dead.exists() && !old.exists());
}

/// An S3 lake under `prefix` on a moto server, with a runtime for its requests.
pub fn moto_store(
    moto: &agentmeter_testkit::moto::MotoServer,
    bucket: &str,
    prefix: &str,
    opts: S3StoreOptions,
) -> (S3Store, tokio::runtime::Runtime) {
    store_at(&moto.endpoint(), bucket, prefix, opts, true)
}

/// A store at `endpoint` (moto, or a proxy in front of it), creating the bucket if asked.
pub(crate) fn store_at(
    endpoint: &str,
    bucket: &str,
    prefix: &str,
    opts: S3StoreOptions,
    create: bool,
) -> (S3Store, tokio::runtime::Runtime) {
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(endpoint)
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load(),
    );
    let conf = aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build();
    let client = aws_sdk_s3::Client::from_conf(conf);
    if create {
        rt.block_on(client.create_bucket().bucket(bucket).send()).unwrap();
    }
    let store = S3Store::new(client, bucket, prefix, rt.handle().clone(), opts);
    (store, rt)
}

#[test]
fn s3_against_moto() {
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let (store, _rt) = moto_store(&moto, "lakes", "acme/prod", S3StoreOptions::default());
    assert_eq!(store.uri(), "s3://lakes/acme/prod");
    conditional_writes_and_listings(&store);
}

#[test]
fn s3_large_objects_go_up_in_parts_with_their_condition() {
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let opts = S3StoreOptions { multipart_above: 6 << 20, part_size: 5 << 20, cache: None };
    let (store, _rt) = moto_store(&moto, "lakes", "big", opts);
    let body: Vec<u8> = (0..12u32 << 20).map(|i| (i % 251) as u8).collect();
    let key = "usage_events/dt=2026-10-01/part-0123456789abcdef0123456789abcdef.parquet";
    assert!(matches!(
        store.put(key, Bytes::from(body.clone()), Condition::Absent).unwrap(),
        Put::Written { .. }
    ));
    assert_eq!(
        store.put(key, Bytes::from(body.clone()), Condition::Absent).unwrap(),
        Put::Conflict
    );
    assert_eq!(store.get(key).unwrap().unwrap().bytes.as_ref(), body.as_slice());
}

#[test]
fn s3_parquet_reads_take_only_the_columns_asked_for_and_cache_data_files() {
    use arrow_array::{Int64Array, StringArray};
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let cache = tempfile::tempdir().unwrap();
    let opts =
        S3StoreOptions { cache: Some((cache.path().to_owned(), 1 << 30)), ..Default::default() };
    let (store, _rt) = moto_store(&moto, "lakes", "", opts);
    // Another writer's store: what it writes reaches this one's cache only when read.
    let (writer, _rt3) = store_at(&moto.endpoint(), "lakes", "", S3StoreOptions::default(), false);
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        arrow_schema::Field::new("event_id", arrow_schema::DataType::Utf8, false),
        arrow_schema::Field::new("n", arrow_schema::DataType::Int64, false),
    ]));
    let ids: Vec<String> = (0..5000).map(|i| format!("id-{i}")).collect();
    let buf = parquet_bytes(
        schema,
        vec![
            std::sync::Arc::new(StringArray::from(ids.clone())),
            std::sync::Arc::new(Int64Array::from((0..5000).collect::<Vec<i64>>())),
        ],
    );
    let key = "usage_events/dt=2026-10-01/part-0123456789abcdef0123456789abcdef.parquet";
    writer.put(key, buf, Condition::Absent).unwrap();
    let listed = store.head(key).unwrap().unwrap();
    let got = store
        .read_parquet(key, Some(&listed), Some(&["event_id"]), &[], Fetch::Ranged)
        .unwrap()
        .unwrap()
        .collect::<Result<Vec<_>>>()
        .unwrap();
    assert_eq!(got[0].num_columns(), 1);
    assert_eq!(got.iter().map(|b| b.num_rows()).sum::<usize>(), 5000);
    assert!(files_under(cache.path()).is_empty(), "ranged reads keep nothing");
    let whole = store.read_parquet(key, Some(&listed), None, &[], Fetch::Whole).unwrap().unwrap();
    let whole = whole.collect::<Result<Vec<_>>>().unwrap();
    assert_eq!(whole[0].num_columns(), 2);
    assert_eq!(files_under(cache.path()).len(), 1, "an immutable data file is cached");
    // Read again from the cache, by version: same rows.
    let again =
        store.read_parquet(key, Some(&listed), Some(&["n"]), &[], Fetch::Ranged).unwrap().unwrap();
    let again = again.collect::<Result<Vec<_>>>().unwrap();
    assert_eq!(again.iter().map(|b| b.num_rows()).sum::<usize>(), 5000);
    let (footer, _) = store.parquet_footer(key).unwrap().unwrap();
    assert_eq!(footer.file_metadata().num_rows(), 5000);
    assert!(
        store
            .read_parquet(
                "usage_events/dt=2026-10-01/missing.parquet",
                None,
                None,
                &[],
                Fetch::Whole
            )
            .unwrap()
            .is_none()
    );
    assert!(
        store.parquet_footer("usage_hourly/dt=2026-10-01/part-00000.parquet").unwrap().is_none()
    );
    // Listed, then deleted before it is read (a compaction merged it away): gone, not an
    // error, so that a writer loading its ids lists the partition again.
    let other = "usage_events/dt=2026-10-01/part-fedcba9876543210fedcba9876543210.parquet";
    writer.put(other, store.get(key).unwrap().unwrap().bytes, Condition::Absent).unwrap();
    let listed = store.head(other).unwrap().unwrap();
    store.delete(other).unwrap();
    let read = store.read_parquet(other, Some(&listed), Some(&["event_id"]), &[], Fetch::Ranged);
    assert!(matches!(read, Ok(None)), "{:?}", read.map(|b| b.is_some()));
    // Without a cache, a ranged read goes through the async reader.
    let (uncached, _rt2) = moto_store(&moto, "dictionaries", "", S3StoreOptions::default());
    dictionary_reads(&uncached);
}

#[test]
fn s3_data_files_written_are_cached_as_written_and_nothing_else_is() {
    use arrow_array::Int64Array;
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let cache = tempfile::tempdir().unwrap();
    let opts =
        S3StoreOptions { cache: Some((cache.path().to_owned(), 1 << 30)), ..Default::default() };
    let (store, _rt) = moto_store(&moto, "lakes", "p", opts);
    let (other, _rt2) = store_at(&moto.endpoint(), "lakes", "p", S3StoreOptions::default(), false);
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "n",
        arrow_schema::DataType::Int64,
        false,
    )]));
    let file = |n: i64| {
        let rows: Vec<i64> = (0..n).collect();
        parquet_bytes(schema.clone(), vec![std::sync::Arc::new(Int64Array::from(rows))])
    };
    let rows = |batches: Batches| batches.map(|b| b.unwrap().num_rows()).sum::<usize>();
    let key = "usage_events/dt=2026-10-01/part-0123456789abcdef0123456789abcdef.parquet";
    let Put::Written { etag } = store.put(key, file(700), Condition::Absent).unwrap() else {
        panic!("not written")
    };
    let cached = files_under(cache.path());
    assert_eq!(cached.len(), 1, "the data file written is cached");
    assert_eq!(std::fs::read(&cached[0]).unwrap(), file(700).as_ref(), "as written");
    let listed = other.head(key).unwrap().unwrap();
    assert_eq!(listed.etag, etag, "under the version S3 lists");
    // Gone from S3 behind the store's back: the read is the copy written, not a request.
    other.delete(key).unwrap();
    let read = store.read_parquet(key, Some(&listed), None, &[], Fetch::Whole).unwrap();
    assert_eq!(read.map(rows), Some(700));

    // A key another writer created first: this store's bytes are not the object's.
    let taken = "usage_events/dt=2026-10-01/part-fedcba9876543210fedcba9876543210.parquet";
    other.put(taken, file(5), Condition::Absent).unwrap();
    assert_eq!(store.put(taken, file(9), Condition::Absent).unwrap(), Put::Conflict);
    let listed = store.head(taken).unwrap().unwrap();
    let read = store.read_parquet(taken, Some(&listed), None, &[], Fetch::Whole).unwrap();
    assert_eq!(read.map(rows), Some(5), "the other writer's file");
    // Rollups and state are replaced in place: never cached.
    store.put("usage_hourly/dt=2026-10-01/part-00000.parquet", file(3), Condition::Always).unwrap();
    store.put("_state/lake.json", Bytes::from_static(b"{}"), Condition::Always).unwrap();
    assert_eq!(files_under(cache.path()).len(), 2, "the written file and the one read");
}

fn files_under(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() { stack.push(e.path()) } else { out.push(e.path()) }
        }
    }
    out
}

#[test]
fn a_parquet_file_is_read_a_batch_of_read_rows_at_a_time() {
    use arrow_array::Int64Array;
    // Whole files are decoded as they are taken, never all at once: a reader holds one batch.
    let dir = tempfile::tempdir().unwrap();
    let store = LocalStore::new(dir.path());
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "n",
        arrow_schema::DataType::Int64,
        false,
    )]));
    let rows = 2 * READ_ROWS + 1234;
    let buf = parquet_bytes(
        schema,
        vec![std::sync::Arc::new(Int64Array::from_iter_values(0..rows as i64))],
    );
    let key = "usage_events/dt=2026-10-01/part-00.parquet";
    store.put(key, buf, Condition::Absent).unwrap();
    let sizes: Vec<usize> = store
        .read_parquet(key, None, None, &[], Fetch::Whole)
        .unwrap()
        .unwrap()
        .map(|b| b.unwrap().num_rows())
        .collect();
    assert_eq!(sizes, [READ_ROWS, READ_ROWS, 1234]);
}

/// One Parquet file of the given columns.
fn parquet_bytes(schema: arrow_schema::SchemaRef, columns: Vec<arrow_array::ArrayRef>) -> Bytes {
    let batch = arrow_array::RecordBatch::try_new(schema.clone(), columns).unwrap();
    let mut buf = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut buf, schema, None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    Bytes::from(buf)
}

/// A ranged read fetches a row group's columns in one GET where they lie near each other, and
/// in GETs side by side where a column not asked for (larger than `RANGE_GAP`) lies between:
/// before, one GET after another per column.
#[test]
fn s3_ranged_reads_fetch_nearby_columns_in_one_get() {
    use agentmeter_testkit::faults::{FaultProxy, Plan};
    use arrow_array::cast::AsArray;
    use arrow_array::{Int64Array, StringArray};
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let (direct, _rt) = moto_store(&moto, "lakes", "", S3StoreOptions::default());
    let field = |n: &str, t| arrow_schema::Field::new(n, t, false);
    let (int, text) = (arrow_schema::DataType::Int64, arrow_schema::DataType::Utf8);
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![
        field("a", int.clone()),
        field("big", text),
        field("c", int.clone()),
        field("d", int),
    ]));
    // 4,000 distinct 600-byte strings: about 2.4 MB, more than the gap, stored plain.
    let big: Vec<String> = (0..4000u64)
        .map(|i| {
            (0..40)
                .map(|j| format!("{:015x}", (i * 40 + j).wrapping_mul(0x9e37_79b9_7f4a_7c15)))
                .collect()
        })
        .collect();
    let n = |k: i64| {
        std::sync::Arc::new(Int64Array::from((0..4000).map(|i| i * k).collect::<Vec<i64>>()))
    };
    let buf =
        parquet_bytes(schema, vec![n(1), std::sync::Arc::new(StringArray::from(big)), n(2), n(3)]);
    assert!(buf.len() as u64 > 2 * super::s3::RANGE_GAP);
    let key = "usage_events/dt=2026-10-01/part-0123456789abcdef0123456789abcdef.parquet";
    direct.put(key, buf, Condition::Absent).unwrap();
    let listed = direct.head(key).unwrap().unwrap();
    let proxy = FaultProxy::start(moto.port(), Plan::seeded(0));
    let (store, _rt2) = store_at(&proxy.endpoint(), "lakes", "", S3StoreOptions::default(), false);
    let read = |columns: &[&str]| {
        let before = proxy.operations().get("GetObject(Range)").copied().unwrap_or(0);
        let batches: Vec<_> = store
            .read_parquet(key, Some(&listed), Some(columns), &[], Fetch::Ranged)
            .unwrap()
            .unwrap()
            .collect::<Result<_>>()
            .unwrap();
        let sums: Vec<i64> = (0..batches[0].num_columns())
            .map(|c| {
                batches
                    .iter()
                    .map(|b| {
                        b.column(c)
                            .as_primitive::<arrow_array::types::Int64Type>()
                            .iter()
                            .flatten()
                            .sum::<i64>()
                    })
                    .sum()
            })
            .collect();
        (proxy.operations()["GetObject(Range)"] - before, sums)
    };
    let total = 4000 * 3999 / 2;
    // The footer, then c and d together.
    assert_eq!(read(&["c", "d"]), (2, vec![2 * total, 3 * total]));
    // The footer, then a and c apart, side by side.
    assert_eq!(read(&["a", "c", "d"]), (3, vec![total, 2 * total, 3 * total]));
}

#[test]
fn nearby_byte_ranges_are_coalesced_in_order() {
    use super::s3::coalesce;
    assert_eq!(coalesce(&[], 10), Vec::<std::ops::Range<u64>>::new());
    assert_eq!(coalesce(&[30..40, 0..10, 12..20], 2), [0..20, 30..40]);
    assert_eq!(coalesce(&[30..40, 0..10, 12..20], 1), [0..10, 12..20, 30..40]);
    assert_eq!(
        coalesce(&[0..50, 10..20, 45..60, 70..70], 10),
        vec![std::ops::Range { start: 0, end: 70 }]
    );
}

#[test]
fn s3_bodies_cut_off_mid_transfer_are_read_again() {
    use agentmeter_testkit::faults::{Fault, FaultProxy, Schedule};
    use arrow_array::Int64Array;
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let (direct, _rt) = moto_store(&moto, "lakes", "", S3StoreOptions::default());
    let schema = std::sync::Arc::new(arrow_schema::Schema::new(vec![arrow_schema::Field::new(
        "n",
        arrow_schema::DataType::Int64,
        false,
    )]));
    let buf = parquet_bytes(
        schema,
        vec![std::sync::Arc::new(Int64Array::from((0..50_000).collect::<Vec<i64>>()))],
    );
    let key = "usage_events/dt=2026-10-01/part-0123456789abcdef0123456789abcdef.parquet";
    direct.put(key, buf.clone(), Condition::Absent).unwrap();
    // Half the answers cut off mid-body: the SDK does not retry those, the store does.
    let schedule = Schedule { seed: 7, permille: 500, faults: vec![Fault::Truncate], grace: 0 };
    let proxy = FaultProxy::start(moto.port(), schedule);
    let (store, _rt2) = store_at(&proxy.endpoint(), "lakes", "", S3StoreOptions::default(), false);
    let listed = direct.head(key).unwrap().unwrap();
    for _ in 0..6 {
        assert_eq!(store.get(key).unwrap().unwrap().bytes, buf);
        let rows: usize = store
            .read_parquet(key, Some(&listed), None, &[], Fetch::Ranged)
            .unwrap()
            .unwrap()
            .map(|b| b.unwrap().num_rows())
            .sum();
        assert_eq!(rows, 50_000);
    }
    assert!(proxy.injected()[&Fault::Truncate] >= 3, "{:?}", proxy.injected());
}

/// A refused condition whose answer is cut off after its status line is still a refusal: the
/// status says what S3 did, the body only repeats it.
#[test]
fn s3_conditional_puts_refused_with_a_cut_answer_are_conflicts() {
    use agentmeter_testkit::faults::{Fault, FaultProxy, Plan};
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let (direct, _rt) = moto_store(&moto, "lakes", "", S3StoreOptions::default());
    let key = "_state/checkpoints/kinesis/0123456789abcdef/shardId-000000000000.json";
    let Put::Written { etag } = direct.put(key, Bytes::from("1"), Condition::Absent).unwrap()
    else {
        panic!("not written")
    };
    // Every answer through the proxy cut off inside its body, so each put's last attempt too.
    let mut plan = Plan::seeded(7);
    plan.at = (1..=100).map(|n| (n, Fault::Truncate)).collect();
    let proxy = FaultProxy::start(moto.port(), plan);
    let (store, _rt2) = store_at(&proxy.endpoint(), "lakes", "", S3StoreOptions::default(), false);
    assert_eq!(store.put(key, Bytes::from("2"), Condition::Absent).unwrap(), Put::Conflict);
    let stale = Condition::Matches(format!("{etag}0"));
    assert_eq!(store.put(key, Bytes::from("3"), stale).unwrap(), Put::Conflict);
    assert!(proxy.injected()[&Fault::Truncate] >= 2, "{}", proxy.summary());
    assert_eq!(direct.get(key).unwrap().unwrap().bytes, Bytes::from("1"));
}

#[test]
fn s3_transport_errors_read_as_their_causes_without_the_raw_answer() {
    use aws_sdk_s3::config::http::HttpResponse;
    use aws_sdk_s3::error::SdkError;
    use aws_sdk_s3::primitives::SdkBody;
    let cut = std::io::Error::new(
        std::io::ErrorKind::UnexpectedEof,
        "end of file before message length reached",
    );
    let mut raw = HttpResponse::new(412u16.try_into().unwrap(), SdkBody::empty());
    raw.headers_mut().insert("x-amzn-requestid", "JMRCLRFDv7Ur");
    let e: SdkError<aws_sdk_s3::operation::put_object::PutObjectError> =
        SdkError::response_error(cut, raw);
    assert_eq!(
        crate::aws_error::describe(&e),
        "response error: end of file before message length reached (HTTP 412)"
    );
}

#[test]
fn concurrently_returns_the_outputs_in_the_items_order() {
    let out = concurrently((0..100u64).collect(), 8, |x| Ok(x * 2)).unwrap();
    assert_eq!(out, (0..100u64).map(|x| x * 2).collect::<Vec<_>>());
    // One item, or a limit of one: called on this thread.
    let here = std::thread::current().id();
    let out = concurrently(vec![1, 2], 1, |x| Ok((x, std::thread::current().id()))).unwrap();
    assert_eq!(out, [(1, here), (2, here)]);
}

#[test]
fn concurrently_calls_every_item_and_returns_the_first_items_error() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let called = AtomicUsize::new(0);
    let e = concurrently((0..10).collect(), 4, |x| {
        called.fetch_add(1, Ordering::SeqCst);
        if x == 3 || x == 7 {
            Err(Error::Store {
                operation: "PutObject",
                uri: format!("item {x}"),
                detail: "no".into(),
            })
        } else {
            Ok(x)
        }
    })
    .unwrap_err();
    assert_eq!(e.to_string(), "PutObject item 3: no");
    assert_eq!(called.load(Ordering::SeqCst), 10);
}

/// A meeting point for `n` calls: each waits (up to 10 s) until `n` have arrived; later ones
/// pass at once. Calls made one after another wait out the timeout, which a test sees.
pub(crate) struct Together {
    n: usize,
    arrived: std::sync::Mutex<usize>,
    cv: std::sync::Condvar,
    late: std::sync::atomic::AtomicUsize,
}

impl Together {
    pub(crate) fn new(n: usize) -> Self {
        Self { n, arrived: Default::default(), cv: Default::default(), late: Default::default() }
    }

    pub(crate) fn arrive(&self) {
        let mut arrived = self.arrived.lock().unwrap();
        *arrived += 1;
        self.cv.notify_all();
        let wait = std::time::Duration::from_secs(10);
        let (_arrived, timeout) =
            self.cv.wait_timeout_while(arrived, wait, |a| *a < self.n).unwrap();
        if timeout.timed_out() {
            self.late.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// Calls that waited out the timeout.
    pub(crate) fn timed_out(&self) -> usize {
        self.late.load(std::sync::atomic::Ordering::SeqCst)
    }
}

#[test]
fn concurrently_has_up_to_its_limit_in_flight_at_once() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let first_four = Together::new(4);
    let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
    concurrently((0..8).collect(), 4, |_: i32| {
        most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
        first_four.arrive();
        now.fetch_sub(1, Ordering::SeqCst);
        Ok(())
    })
    .unwrap();
    assert_eq!(first_four.timed_out(), 0, "the first four calls were in flight together");
    assert_eq!(most.load(Ordering::SeqCst), 4);
}

/// What a [`Hooked`] store is about to do, or has done.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Op<'a> {
    List(&'a str),
    /// A page of a listing under this prefix.
    ListAfter(&'a str),
    Head(&'a str),
    Footer(&'a str),
    Put(&'a str),
    PutDone(&'a str),
    /// A read of a Parquet file's rows.
    Read(&'a str),
    Delete(&'a str),
}

/// A local store that calls a hook around its listings, heads, footers, puts, reads and deletes, for tests of interleavings
/// (another process racing a writer, a slow or failing put). An error from the hook is the
/// operation's.
pub(crate) struct Hooked {
    pub(crate) inner: LocalStore,
    hook: Box<dyn Fn(Op<'_>) -> Result<()> + Send + Sync>,
    /// What [`Store::round_trips`] answers: true (as S3) unless a test says otherwise.
    pub(crate) round_trips: bool,
}

impl Hooked {
    pub(crate) fn new(
        inner: LocalStore,
        hook: impl Fn(Op<'_>) -> Result<()> + Send + Sync + 'static,
    ) -> Self {
        Self { inner, hook: Box::new(hook), round_trips: true }
    }
}

impl fmt::Debug for Hooked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Hooked").field("inner", &self.inner).finish_non_exhaustive()
    }
}

impl Store for Hooked {
    fn uri(&self) -> String {
        self.inner.uri()
    }
    fn round_trips(&self) -> bool {
        self.round_trips
    }
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        (self.hook)(Op::List(prefix))?;
        self.inner.list(prefix)
    }
    fn list_after(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        (self.hook)(Op::ListAfter(prefix))?;
        self.inner.list_after(prefix, after, limit)
    }
    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        self.inner.list_dirs(prefix)
    }
    fn get(&self, key: &str) -> Result<Option<Object>> {
        self.inner.get(key)
    }
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        (self.hook)(Op::Head(key))?;
        self.inner.head(key)
    }
    fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<Put> {
        (self.hook)(Op::Put(key))?;
        let put = self.inner.put(key, body, cond)?;
        (self.hook)(Op::PutDone(key))?;
        Ok(put)
    }
    fn delete(&self, key: &str) -> Result<()> {
        (self.hook)(Op::Delete(key))?;
        self.inner.delete(key)
    }
    fn parquet_footer(&self, key: &str) -> Result<Option<(Arc<ParquetMetaData>, String)>> {
        (self.hook)(Op::Footer(key))?;
        self.inner.parquet_footer(key)
    }
    fn read_parquet(
        &self,
        key: &str,
        listed: Option<&ObjectMeta>,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
        fetch: Fetch,
    ) -> Result<Option<Batches>> {
        (self.hook)(Op::Read(key))?;
        self.inner.read_parquet(key, listed, columns, dictionaries, fetch)
    }
}

/// A lake over the local directory `root`, as S3 (each request a round trip), where every
/// operation `meets` picks waits until `n` are in flight together (see [`Together`]).
pub(crate) fn lake_where_meet(
    root: &std::path::Path,
    n: usize,
    meets: impl Fn(Op<'_>) -> bool + Send + Sync + 'static,
) -> (crate::lake::Lake, std::sync::Arc<Together>) {
    let together = std::sync::Arc::new(Together::new(n));
    let meet = together.clone();
    let store = Hooked::new(LocalStore::new(root), move |op| {
        if meets(op) {
            meet.arrive();
        }
        Ok(())
    });
    (crate::lake::Lake::open(std::sync::Arc::new(store)).unwrap(), together)
}

/// [`lake_where_meet`] for the reads of rollup footers.
pub(crate) fn lake_where_rollup_footers_meet(
    root: &std::path::Path,
    n: usize,
) -> (crate::lake::Lake, std::sync::Arc<Together>) {
    lake_where_meet(root, n, |op| matches!(op, Op::Footer(k) if k.ends_with("/part-00000.parquet")))
}
