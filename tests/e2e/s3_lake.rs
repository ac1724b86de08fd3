//! One lake in S3 (moto) that many writers share, with no lock and no mirror: four ingest
//! processes at once, each as on a machine of its own (its own home, cache and temporary
//! directory), every event delivered by two of them and one killed and rerun; `invoice` on a
//! fresh machine reading a small fraction of the lake; `rollup` and `compact` racing a
//! writer. Totals are checked with DuckDB over the downloaded objects.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentmeter_synth::Expected;

use crate::aws_sources::Aws;
use crate::util::*;

/// Every object under `prefix`, with its size.
fn objects(aws: &Aws, bucket: &str, prefix: &str) -> Vec<(String, i64)> {
    let pages: Vec<_> = aws.rt.block_on(async {
        let mut out = Vec::new();
        let mut token = None;
        loop {
            let mut req = aws.s3.list_objects_v2().bucket(bucket).prefix(prefix);
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let page = req.send().await.unwrap();
            token = page.next_continuation_token().map(str::to_owned);
            out.push(page);
            if token.is_none() {
                return out;
            }
        }
    });
    pages
        .iter()
        .flat_map(|p| p.contents())
        .map(|o| (o.key().unwrap().to_owned(), o.size().unwrap_or(0)))
        .collect()
}

/// Downloads every object under `prefix` into `to` (keys relative to `prefix`).
pub(crate) fn download(aws: &Aws, bucket: &str, prefix: &str, to: &Path) -> Vec<String> {
    let mut keys = Vec::new();
    for (key, _) in objects(aws, bucket, prefix) {
        let obj = aws.rt.block_on(aws.s3.get_object().bucket(bucket).key(&key).send()).unwrap();
        let bytes = aws.rt.block_on(obj.body.collect()).unwrap().into_bytes();
        let path = to.join(key.strip_prefix(prefix).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
        keys.push(key);
    }
    keys
}

/// `agentmeter` as on a machine of its own: its own home, object cache and temporary files.
pub(crate) fn machine(aws: &Aws, root: &Path, name: &str, args: &[&str]) -> Command {
    let home = root.join(format!("machine-{name}"));
    for d in ["home", "cache", "tmp"] {
        std::fs::create_dir_all(home.join(d)).unwrap();
    }
    let mut c = aws.cmd(args);
    c.env("HOME", home.join("home"))
        .env("AGENTMETER_CACHE_DIR", home.join("cache"))
        .env("TMPDIR", home.join("tmp"));
    c
}

/// Per tenant: (events, total tokens) as the generator expects them.
fn expected_per_tenant(e: &Expected) -> Vec<(String, i64, i64)> {
    e.tenants
        .iter()
        .map(|(t, x)| (t.clone(), x.totals.invocations, x.totals.total_tokens))
        .collect()
}

/// Per tenant: (rows counted, total tokens) of `sql_from` (a DuckDB table expression).
fn per_tenant(sql_from: &str, count: &str) -> Vec<(String, i64, i64)> {
    duckdb(&format!(
        "SELECT tenant_id, {count}::BIGINT AS n, sum(total_tokens)::BIGINT AS t FROM {sql_from} GROUP BY 1 ORDER BY 1"
    ))
    .iter()
    .map(|r| (r["tenant_id"].as_str().unwrap().to_owned(), r["n"].as_i64().unwrap(), r["t"].as_i64().unwrap()))
    .collect()
}

/// The generated input files, in order.
fn input_files(dir: &Path) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = files_under(dir).iter().map(|f| dir.join(f)).collect();
    out.sort();
    out
}

#[test]
fn four_writers_on_one_s3_lake_every_event_twice_one_killed_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let expected = generate(
        &root.join("gen"),
        &["--tenants", "8", "--events", "12000", "--noisy", "1", "--seed", "5"],
    );
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let files = input_files(&root.join("gen/input"));
    assert!(files.len() >= 8, "{files:?}");
    // Writer w reads the files i with i % 4 == w or i % 4 == w + 1: every file twice.
    let share = |w: usize| -> Vec<String> {
        files
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 4 == w || i % 4 == (w + 1) % 4)
            .map(|(_, p)| p.display().to_string())
            .collect()
    };
    let spawn = |w: usize| -> Child {
        let mut args =
            vec!["ingest", "--lake", "s3://lakes/shared", "--no-progress", "--batch-rows", "400"];
        let mine = share(w);
        args.extend(mine.iter().map(String::as_str));
        machine(&aws, root, &w.to_string(), &args)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let mut writers: Vec<Child> = (0..4).map(spawn).collect();
    // Writer 2 is killed once some of its data is in the lake.
    let deadline = Instant::now() + Duration::from_secs(120);
    while objects(&aws, "lakes", "shared/usage_events/").len() < 6 {
        assert!(Instant::now() < deadline, "no data files appeared");
        std::thread::sleep(Duration::from_millis(20));
    }
    writers[2].kill().unwrap();
    let killed = writers.remove(2).wait_with_output().unwrap();
    assert_eq!(killed.status.signal(), Some(9));
    for w in writers {
        let out = w.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let mut args = vec!["ingest", "--lake", "s3://lakes/shared", "--no-progress"];
    let mine = share(2);
    args.extend(mine.iter().map(String::as_str));
    ok(&mut machine(&aws, root, "2", &args));

    // Before compaction: an event two writers stored may be in two files, and the rollups
    // count it once. A fresh machine rolls up whatever is stale, then DuckDB reads them.
    ok(&mut machine(&aws, root, "reader", &["rollup", "--lake", "s3://lakes/shared"]));
    let copy = root.join("copy");
    download(&aws, "lakes", "shared/", &copy);
    let want = expected_per_tenant(&expected);
    let hourly = per_tenant(&table(&copy, "usage_hourly"), "sum(invocations)");
    assert_eq!(hourly, want, "rollups count every event once");
    let raw = duckdb_int(&format!("SELECT count(*) FROM {}", table(&copy, "usage_events")));
    // The shipped Athena view, with DuckDB's file name for Athena's "$path": each event once.
    let view = format!(
        "SELECT * FROM (SELECT *, row_number() OVER (PARTITION BY dt, event_id ORDER BY filename) AS copy_rank \
         FROM read_parquet('{}/usage_events/*/*.parquet', hive_partitioning = true, filename = true)) WHERE copy_rank = 1",
        copy.display()
    );
    assert_eq!(
        per_tenant(&format!("({view})"), "count(*)"),
        want,
        "the view shows each event once"
    );
    eprintln!(
        "before compaction: {raw} rows in usage_events for {} events",
        expected.accounting.events_written
    );
    assert!(raw >= expected.accounting.events_written as i64);

    // After compaction: every event once, with exactly the generator's totals.
    ok(&mut machine(&aws, root, "maintenance", &["compact", "--lake", "s3://lakes/shared"]));
    let copy = root.join("copy-compacted");
    download(&aws, "lakes", "shared/", &copy);
    let ev = table(&copy, "usage_events");
    let events = expected.accounting.events_written as i64;
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {ev}")), events);
    assert_eq!(duckdb_int(&format!("SELECT count(DISTINCT event_id) FROM {ev}")), events);
    assert_eq!(per_tenant(&ev, "count(*)"), want);
    assert_eq!(per_tenant(&table(&copy, "usage_hourly"), "sum(invocations)"), want);
    let spans = duckdb_int(&format!("SELECT count(*) FROM {}", table(&copy, "agent_spans")));
    assert_eq!(spans, expected.accounting.spans_written as i64, "spans once too");
    // The lake holds data and state only: no lease, no lock, no mirror files.
    let keys: Vec<String> = objects(&aws, "lakes", "shared/").into_iter().map(|(k, _)| k).collect();
    assert!(
        keys.iter().all(|k| !k.contains("lease") && !k.ends_with("/lock") && !k.contains(".s3-")),
        "{keys:?}"
    );
}

/// A TCP proxy in front of `upstream` that counts the bytes it passes back to clients.
struct CountingProxy {
    port: u16,
    down: Arc<AtomicU64>,
}

impl CountingProxy {
    fn start(upstream: u16) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let down = Arc::new(AtomicU64::new(0));
        let counter = Arc::clone(&down);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { break };
                let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)) else { continue };
                let pipe =
                    |mut from: TcpStream, mut to: TcpStream, count: Option<Arc<AtomicU64>>| {
                        std::thread::spawn(move || {
                            let mut buf = [0u8; 64 << 10];
                            loop {
                                let n = match from.read(&mut buf) {
                                    Ok(0) | Err(_) => break,
                                    Ok(n) => n,
                                };
                                if let Some(c) = &count {
                                    c.fetch_add(n as u64, Ordering::Relaxed);
                                }
                                if to.write_all(&buf[..n]).is_err() {
                                    break;
                                }
                            }
                            let _ = to.shutdown(std::net::Shutdown::Write);
                        });
                    };
                pipe(client.try_clone().unwrap(), server.try_clone().unwrap(), None);
                pipe(server, client, Some(Arc::clone(&counter)));
            }
        });
        CountingProxy { port, down }
    }
}

#[test]
fn invoice_on_a_fresh_machine_downloads_a_small_fraction_of_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let small = generate(
        &root.join("small"),
        &["--month", "2026-10", "--tenants", "8", "--events", "2000", "--noisy", "1"],
    );
    generate(&root.join("big"), &["--month", "2026-11", "--tenants", "50", "--events", "200000"]);
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    for month in ["small", "big"] {
        let input = root.join(month).join("input");
        ok(&mut machine(
            &aws,
            root,
            "writer",
            &["ingest", "--lake", "s3://lakes/acme", "--no-progress", input.to_str().unwrap()],
        ));
    }
    let lake_bytes: i64 = objects(&aws, "lakes", "acme/").iter().map(|(_, s)| s).sum();
    std::fs::write(root.join("prices.toml"), crate::crash::PRICES).unwrap();

    let proxy = CountingProxy::start(aws.moto_port());
    let mut c = machine(
        &aws,
        root,
        "finance",
        &[
            "invoice",
            "--lake",
            "s3://lakes/acme",
            "--period",
            "2026-10",
            "--prices",
            root.join("prices.toml").to_str().unwrap(),
            "--out",
            root.join("out").to_str().unwrap(),
        ],
    );
    c.env("AWS_ENDPOINT_URL", format!("http://127.0.0.1:{}", proxy.port));
    ok(&mut c);
    let down = proxy.down.load(Ordering::Relaxed) as i64;
    eprintln!("invoice of the small month: {down} bytes read of a {lake_bytes}-byte lake");
    assert!(down * 20 < lake_bytes, "{down} bytes read of {lake_bytes}: more than 5%");
    let invoices = files_under(&root.join("out/invoices/2026-10/tenants"));
    assert_eq!(invoices.iter().filter(|f| f.ends_with(".json")).count(), small.tenants.len());
}

/// A writer ingests `input` in small batches while `rollup` and `compact` run again and again
/// beside it on `lake`; afterwards every event is there once and the rollups agree.
fn race(
    aws: &Aws,
    root: &Path,
    lake: &str,
    input: &Path,
    expected: &Expected,
    read_back: impl Fn() -> PathBuf,
) {
    // The lake exists before maintenance starts (it refuses a location with no lake).
    let empty = root.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&mut machine(aws, root, "writer", &["ingest", "--lake", lake, empty.to_str().unwrap()]));
    let mut writer = machine(
        aws,
        root,
        "writer",
        &[
            "ingest",
            "--lake",
            lake,
            "--no-progress",
            "--batch-rows",
            "300",
            input.to_str().unwrap(),
        ],
    )
    .stdout(Stdio::null())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    let mut rounds = 0;
    let deadline = Instant::now() + Duration::from_secs(300);
    while writer.try_wait().unwrap().is_none() && rounds < 40 {
        assert!(Instant::now() < deadline, "the writer did not finish");
        let cmd = if rounds % 2 == 0 { "compact" } else { "rollup" };
        ok(&mut machine(aws, root, "maintenance", &[cmd, "--lake", lake]));
        rounds += 1;
    }
    let out = writer.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(rounds >= 2, "maintenance ran {rounds} times beside the writer");
    // Rollups first (stale ones rebuilt): each event once before the last compaction...
    ok(&mut machine(aws, root, "reader", &["rollup", "--lake", lake]));
    let copy = read_back();
    let want = expected_per_tenant(expected);
    assert_eq!(per_tenant(&table(&copy, "usage_hourly"), "sum(invocations)"), want);
    // ...and after it, in the raw table too.
    ok(&mut machine(aws, root, "maintenance", &["compact", "--lake", lake]));
    let copy = read_back();
    let ev = table(&copy, "usage_events");
    assert_eq!(
        duckdb_int(&format!("SELECT count(*) FROM {ev}")),
        expected.accounting.events_written as i64
    );
    assert_eq!(per_tenant(&ev, "count(*)"), want);
    assert_eq!(per_tenant(&table(&copy, "usage_hourly"), "sum(invocations)"), want);
}

#[test]
fn rollup_and_compact_racing_a_writer_lose_and_double_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let expected = generate(
        &root.join("gen"),
        &["--tenants", "6", "--events", "8000", "--noisy", "1", "--seed", "12"],
    );
    let input = root.join("gen/input");
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    // In S3, read back by download.
    let n = std::cell::Cell::new(0);
    race(&aws, root, "s3://lakes/race", &input, &expected, || {
        n.set(n.get() + 1);
        let to = root.join(format!("copy-{}", n.get()));
        download(&aws, "lakes", "race/", &to);
        to
    });
    // In a directory: the same code with another backend.
    let local = root.join("lake");
    race(&aws, root, local.to_str().unwrap(), &input, &expected, || local.clone());
}

/// `serve` on an S3 lake: its write-ahead log on its own machine's disk, its commits straight
/// to S3, and readers on other machines running while it writes. After SIGTERM every
/// acknowledged span is in the lake once, rolled up, and the log is empty.
#[test]
fn serve_logs_on_local_disk_and_commits_to_s3_while_readers_read() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let lake = "s3://lakes/otlp";
    let mut receiver = machine(
        &aws,
        root,
        "receiver",
        &["serve", "--lake", lake, "--otlp-http", "127.0.0.1:0", "--flush-interval-ms", "200"],
    );
    receiver.env_remove("AGENTMETER_OTLP_TOKEN").env("XDG_STATE_HOME", "");
    let server = crate::otlp_client::Server::spawn(receiver);
    // `machine`'s HOME for this name.
    let home = root.join("machine-receiver/home");
    let headers = [("Content-Type", "application/json")];
    let requests = 20u32;
    for n in 0..requests {
        let (body, _) = crate::otlp_client::load_request(7, n);
        let r = server.post(&headers, &body).unwrap();
        assert_eq!(r.status, 200, "{}", r.text());
    }
    // Readers elsewhere run while the receiver writes: none waits, none fails.
    for (name, args) in [
        ("analyst", vec!["reconcile", "--lake", lake, "--period", "2026-10"]),
        ("operator", vec!["rollup", "--lake", lake]),
    ] {
        ok(&mut machine(&aws, root, name, &args));
    }
    let stopped = server.stop();
    let spans = u64::from(requests) * 5;
    assert_eq!(stopped.counts(), [spans, spans, 0, 0], "{}", stopped.stdout);

    // The log was on the receiver's disk, and is empty now.
    let wal = home.join(".local/state/agentmeter/wal");
    assert!(wal.is_dir(), "no write-ahead log under {}", wal.display());
    let left: Vec<String> =
        files_under(&wal).into_iter().filter(|f| f.ends_with(".ndjson")).collect();
    assert!(left.is_empty(), "segments left: {left:?}");

    let copy = root.join("copy");
    download(&aws, "lakes", "otlp/", &copy);
    let mut want: Vec<String> =
        (0..requests).flat_map(|n| crate::otlp_client::load_request(7, n).1).collect();
    want.sort();
    assert_eq!(crate::otlp_client::lake_span_keys(&copy), want);
    let invocations = table(&copy, "agent_invocations");
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {invocations}")), i64::from(requests));
}

/// Two machines close one period of an S3 lake at once: one issues, the other is told or
/// writes the winner's documents; a third machine later writes them again, byte for byte.
#[test]
fn closing_a_period_from_two_machines_at_once_issues_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(&root.join("gen"), &["--tenants", "6", "--events", "1500", "--noisy", "1"]);
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let input = root.join("gen/input");
    ok(&mut machine(
        &aws,
        root,
        "writer",
        &["ingest", "--lake", "s3://lakes/close", "--no-progress", input.to_str().unwrap()],
    ));
    std::fs::write(root.join("prices.toml"), crate::crash::PRICES).unwrap();
    let prices = root.join("prices.toml");
    let close = |name: &str, day: &str| {
        let out = root.join(format!("out-{name}"));
        let mut c = machine(
            &aws,
            root,
            name,
            &[
                "invoice",
                "--lake",
                "s3://lakes/close",
                "--period",
                "2026-10",
                "--prices",
                prices.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
                "--close",
                "--issue-date",
                day,
            ],
        );
        c.stdout(Stdio::piped()).stderr(Stdio::piped());
        (c.spawn().unwrap(), out)
    };
    let (a, out_a) = close("finance-a", "2026-11-01");
    let (b, out_b) = close("finance-b", "2026-11-02");
    let (a, b) = (a.wait_with_output().unwrap(), b.wait_with_output().unwrap());
    let said = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let issued: Vec<_> = [(&a, &out_a), (&b, &out_b)]
        .into_iter()
        .filter(|(o, _)| o.status.success() && said(o).contains("2026-10 closed:"))
        .collect();
    assert_eq!(issued.len(), 1, "exactly one issues:\n{}\n{}", said(&a), said(&b));
    for o in [&a, &b] {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            o.status.success() || err.contains("closed or changed by another run meanwhile"),
            "{err}"
        );
    }
    let winner = issued[0].1.join("invoices/2026-10");
    let docs = |d: &Path| -> Vec<(String, Vec<u8>)> {
        files_under(d)
            .into_iter()
            .filter(|f| f.starts_with("tenants/") || f == "invoices.csv")
            .map(|f| {
                let b = std::fs::read(d.join(&f)).unwrap();
                (f, b)
            })
            .collect()
    };
    let auditor = root.join("out-auditor");
    let o = ok(&mut machine(
        &aws,
        root,
        "auditor",
        &[
            "invoice",
            "--lake",
            "s3://lakes/close",
            "--period",
            "2026-10",
            "--prices",
            prices.to_str().unwrap(),
            "--out",
            auditor.to_str().unwrap(),
        ],
    ));
    assert!(said(&o).contains("2026-10 is closed"), "{}", said(&o));
    let written = docs(&winner);
    assert!(written.len() > 3);
    assert_eq!(docs(&auditor.join("invoices/2026-10")), written);
}
