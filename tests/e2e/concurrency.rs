//! Several writers, compaction and rollups at once on one lake, local and in S3 (moto), in a
//! seeded schedule, while a reader looks at the lake again and again: the reader never sees a
//! day's events (counted by id, as the `_unique` views and every command count them) or its
//! rollup go down, vanish or exceed what the day finally holds; afterwards every event is
//! there once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use agentmeter_synth::Expected;

use crate::aws_sources::Aws;
use crate::s3_lake::machine;
use crate::util::*;

/// Per day: (distinct events, invocations in usage_hourly).
type View = BTreeMap<String, (i64, i64)>;

/// What a reader sees of `lake` (a local lake directory, or a copy of an S3 lake).
fn view(lake: &Path) -> Option<View> {
    let q = |sql: String| agentmeter_testkit::duckdb::try_query(&sql).ok();
    let ev = q(format!(
        "SELECT dt::VARCHAR AS dt, count(DISTINCT event_id) AS n FROM {} GROUP BY 1",
        table(lake, "usage_events")
    ))?;
    let mut v: View = ev
        .iter()
        .map(|r| {
            (r["dt"].as_str().unwrap_or_default().to_owned(), (r["n"].as_i64().unwrap_or(0), 0))
        })
        .collect();
    if lake.join("usage_hourly").exists() {
        let hourly = q(format!(
            "SELECT dt::VARCHAR AS dt, sum(invocations)::BIGINT AS n FROM {} GROUP BY 1",
            table(lake, "usage_hourly")
        ))?;
        for r in &hourly {
            let dt = r["dt"].as_str().unwrap_or_default().to_owned();
            v.entry(dt).or_default().1 = r["n"].as_i64().unwrap_or(0);
        }
    }
    Some(v)
}

/// An S3 lake copied as a reader lists and reads it; `None` when an object listed was gone
/// by the time it was read (a compaction), as an Athena query would be retried.
fn s3_copy(aws: &Aws, prefix: &str, to: &Path) -> Option<PathBuf> {
    let _ = std::fs::remove_dir_all(to);
    let list = aws.rt.block_on(async {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let mut req = aws.s3.list_objects_v2().bucket("lakes").prefix(prefix);
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let page = req.send().await.ok()?;
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return Some(keys);
            }
        }
    })?;
    // Read 16 at a time: the sooner a copy is done, the less a compaction meanwhile spoils it
    // (on a loaded machine, one object at a time left the reader without a single view).
    let keys: Vec<&String> = list.iter().filter(|k| k.ends_with(".parquet")).collect();
    let objects = aws.rt.block_on(async {
        let mut objects = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(16) {
            let mut reads = tokio::task::JoinSet::new();
            for &key in chunk {
                let (s3, key) = (aws.s3.clone(), key.clone());
                reads.spawn(async move {
                    let obj = s3.get_object().bucket("lakes").key(&key).send().await.ok()?;
                    Some((key, obj.body.collect().await.ok()?.into_bytes()))
                });
            }
            while let Some(read) = reads.join_next().await {
                objects.push(read.ok()??);
            }
        }
        Some(objects)
    })?;
    for (key, bytes) in objects {
        let path = to.join(key.strip_prefix(prefix)?);
        std::fs::create_dir_all(path.parent()?).ok()?;
        std::fs::write(path, bytes).ok()?;
    }
    Some(to.to_owned())
}

/// Runs three writers (each input file given to two of them), `compact` and `rollup` in a
/// seeded order with seeded pauses, and a reader; checks every view the reader took against
/// the final lake. Returns (views taken, maintenance rounds).
fn contend(
    aws: &Aws,
    root: &Path,
    lake: &str,
    input: &Path,
    expected: &Expected,
    read: &(dyn Fn(u64) -> Option<PathBuf> + Sync),
) -> (usize, usize) {
    let mut rng = Seeded::new(&format!("concurrency {lake}"));
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&mut machine(aws, root, "w0", &["ingest", "--lake", lake, empty.to_str().unwrap()]));
    let mut files: Vec<PathBuf> = files_under(input).iter().map(|f| input.join(f)).collect();
    files.sort();
    let mut writers: Vec<Child> = Vec::new();
    for w in 0..3usize {
        let mine: Vec<&PathBuf> =
            files.iter().enumerate().filter(|(i, _)| i % 3 != w).map(|(_, f)| f).collect();
        let mut c = machine(
            aws,
            root,
            &format!("w{w}"),
            &["ingest", "--lake", lake, "--no-progress", "--batch-rows", "150"],
        );
        c.args(mine).stdout(Stdio::null()).stderr(Stdio::piped());
        std::thread::sleep(Duration::from_millis(rng.below(400)));
        writers.push(c.spawn().unwrap());
    }
    let done = AtomicBool::new(false);
    let writing = AtomicBool::new(true);
    let (views, rounds) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let mut views = Vec::new();
            let mut n = 0;
            while !done.load(Ordering::Relaxed) && n < 200 {
                n += 1;
                if let Some(v) = read(n).and_then(|p| view(&p)) {
                    views.push(v);
                }
            }
            views
        });
        // Compaction and rollups each on a thread of their own, from the writers' start to
        // their end, with seeded pauses: both run beside the writers however slow a run is.
        let maintain = |cmd: &'static str| {
            let (writing, mut rng) = (&writing, Seeded::new(&format!("concurrency {lake} {cmd}")));
            s.spawn(move || {
                let mut rounds = 0;
                while writing.load(Ordering::Relaxed) && rounds < 60 {
                    let out = machine(aws, root, cmd, &[cmd, "--lake", lake]).output().unwrap();
                    // Beside three writers, `rollup` may find a day changed on every one of
                    // its tries: it names the day and fails, and a later run (the maintenance
                    // run below) rebuilds it. Any other failure is one.
                    let err = String::from_utf8_lossy(&out.stderr);
                    let contended = cmd == "rollup"
                        && err
                            .lines()
                            .filter(|l| l.contains("ERROR") || l.starts_with("error:"))
                            .all(|l| l.contains("kept changing through"));
                    assert!(out.status.success() || contended, "{cmd}: {err}");
                    std::thread::sleep(Duration::from_millis(rng.below(300)));
                    rounds += 1;
                }
                rounds
            })
        };
        let (compacts, rollups) = (maintain("compact"), maintain("rollup"));
        let deadline = Instant::now() + Duration::from_secs(300);
        for mut w in writers.drain(..) {
            while w.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "the writers did not finish");
                std::thread::sleep(Duration::from_millis(20));
            }
            let out = w.wait_with_output().unwrap();
            // Under this much contention a writer's closing rollup may find the day changed
            // on every try: its events are durable, it says so, and the rollups are rebuilt
            // by the next reader (below, `rollup`). Any other failure is one.
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                out.status.success()
                    || err.contains("the events are in the lake, but the rollups of"),
                "{err}"
            );
        }
        writing.store(false, Ordering::Relaxed);
        let rounds = compacts.join().unwrap() + rollups.join().unwrap();
        done.store(true, Ordering::Relaxed);
        (reader.join().unwrap(), rounds)
    });
    ok(&mut machine(aws, root, "maintenance", &["rollup", "--lake", lake]));
    ok(&mut machine(aws, root, "maintenance", &["compact", "--lake", lake]));
    let last = read(10_000).expect("the final lake");
    let fin = view(&last).expect("a view of the final lake");
    // Every event once, in the raw table as in the rollup.
    let ev = table(&last, "usage_events");
    let events = expected.accounting.events_written as i64;
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {ev}")), events);
    assert_eq!(fin.values().map(|v| v.0).sum::<i64>(), events);
    assert_eq!(fin.values().map(|v| v.1).sum::<i64>(), events);
    // No view went down, lost a day, or exceeded the final lake.
    let mut seen: View = BTreeMap::new();
    for (i, v) in views.iter().enumerate() {
        for (dt, &(n, h)) in v {
            let (fin_n, fin_h) = fin.get(dt).copied().unwrap_or_default();
            assert!(
                n <= fin_n && h <= fin_h,
                "view {i}: {dt} holds ({n}, {h}) of ({fin_n}, {fin_h})"
            );
        }
        for (dt, &(n, h)) in &seen {
            let (now_n, now_h) = v.get(dt).copied().unwrap_or_default();
            assert!(
                now_n >= n && now_h >= h,
                "view {i}: {dt} went from ({n}, {h}) to ({now_n}, {now_h})"
            );
        }
        for (dt, &x) in v {
            seen.insert(dt.clone(), x);
        }
    }
    assert!(rounds >= 2 && !views.is_empty(), "{rounds} maintenance rounds, {} views", views.len());
    (views.len(), rounds)
}

#[test]
fn writers_compaction_and_rollups_at_once_never_show_a_reader_less_or_more() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let expected = generate(
        &root.join("gen"),
        &[
            "--tenants",
            "6",
            "--events",
            "8000",
            "--noisy",
            "1",
            "--seed",
            "21",
            "--span-permille",
            "0",
        ],
    );
    let input = root.join("gen/input");
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let local = root.join("lake");
    let (views, rounds) =
        contend(&aws, root, local.to_str().unwrap(), &input, &expected, &|_| Some(local.clone()));
    println!(
        "concurrency, local lake: 3 writers, {rounds} maintenance rounds, {views} reader views"
    );
    let (views, rounds) = contend(&aws, root, "s3://lakes/shared", &input, &expected, &|n| {
        s3_copy(&aws, "shared/", &root.join(format!("view-{n}")))
    });
    println!("concurrency, S3 lake: 3 writers, {rounds} maintenance rounds, {views} reader views");
}
