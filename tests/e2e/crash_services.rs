//! The crash matrix of the long-running writers: `serve` killed with SIGKILL under load and
//! restarted on its write-ahead log, `run` (Kinesis, the receiver, rollups and flags in one
//! process) killed as a whole while usage and spans arrive, and `push` killed in the middle of
//! sending an S3 lake's usage, then run again. Kill points are seeded (`util::Seeded`); every 200 is kept once,
//! and a billing system ends with exactly a clean run's events.
//!
//! `AGENTMETER_CRASH_TRIALS` sets the trials per test (2 in CI); a soak:
//! `AGENTMETER_CRASH_TRIALS=25 scripts/test -p agentmeter --test e2e crash_services`.
//! A failure names its seed; `AGENTMETER_CRASH_SEED=<hex>` replays the same kill points.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::process::ExitStatusExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::otlp_client::*;
use crate::util::*;

/// Client threads sending to the receiver.
const CLIENTS: usize = 2;
/// Pause between two requests of one client: a steady pace, not a flood.
const PACE: Duration = Duration::from_millis(3);
/// Attempts per request (an exporter retries a refused connection a few times, then drops
/// the batch).
const ATTEMPTS: u32 = 4;
/// Pause before a retry.
const RETRY_PAUSE: Duration = Duration::from_millis(30);
/// The receiver's flush interval: short, so kills land in flushes as well as in appends.
const FLUSH_MS: &str = "50";
/// Upper bound on one trial's load, whatever happens.
const TRIAL_LIMIT: Duration = Duration::from_secs(60);

/// What the client threads share with the test.
#[derive(Default)]
struct Load {
    /// The receiver's port (the old one while it is down: connections are refused).
    port: AtomicU16,
    /// The next request number.
    next: AtomicU32,
    /// Set to end the load.
    stop: AtomicBool,
    /// Requests answered 200.
    acked: Mutex<Vec<u32>>,
    /// `acked.len()`, without the lock.
    acked_count: AtomicUsize,
    /// Requests dropped after [`ATTEMPTS`] failed attempts.
    given_up: Mutex<Vec<u32>>,
    /// Attempts that failed (refused, reset, or cut off by the kill).
    failed_attempts: AtomicUsize,
}

/// One client: requests of run `run`, one after another at [`PACE`], until `stop`.
fn client(run: u32, load: &Load) {
    let headers = [("Content-Type", "application/json")];
    let started = Instant::now();
    while !load.stop.load(Ordering::SeqCst) {
        assert!(started.elapsed() < TRIAL_LIMIT, "the load ran past {TRIAL_LIMIT:?}");
        let n = load.next.fetch_add(1, Ordering::SeqCst);
        let (body, _) = load_request(run, n);
        let mut acked = false;
        for _ in 0..ATTEMPTS {
            let port = load.port.load(Ordering::SeqCst);
            match request(port, "POST", "/v1/traces", &headers, &body) {
                Ok(r) if r.status == 200 => {
                    assert_eq!(r.text(), "{}", "request {n}");
                    acked = true;
                    break;
                }
                // Busy (recovering, or the log behind): retried like a refused connection.
                Ok(r) if r.status == 503 => {}
                Ok(r) => panic!("request {n}: unexpected status {}: {}", r.status, r.text()),
                Err(_) => {
                    load.failed_attempts.fetch_add(1, Ordering::SeqCst);
                }
            }
            std::thread::sleep(RETRY_PAUSE);
        }
        if acked {
            load.acked.lock().unwrap().push(n);
            load.acked_count.fetch_add(1, Ordering::SeqCst);
        } else {
            load.given_up.lock().unwrap().push(n);
        }
        std::thread::sleep(PACE);
    }
}

/// Sets its flag when dropped.
struct StopOnDrop<'a>(&'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Waits until `more` requests beyond those acknowledged now are acknowledged.
fn wait_for_acks(load: &Load, more: usize) {
    let want = load.acked_count.load(Ordering::SeqCst) + more;
    eventually("requests acknowledged", || load.acked_count.load(Ordering::SeqCst) >= want);
}

/// The agent columns of `usage_hourly` summed, and the rows of `agent_invocations`.
fn agent_totals(lake: &std::path::Path) -> [i64; 4] {
    let h = duckdb(&format!(
        "SELECT sum(agent_invocations) AS ai, sum(tool_calls) AS tc, sum(tool_errors) AS te \
         FROM {}",
        table(lake, "usage_hourly")
    ));
    let n = |k: &str| h[0][k].as_i64().unwrap();
    let inv = duckdb_int(&format!("SELECT count(*) FROM {}", table(lake, "agent_invocations")));
    [n("ai"), n("tc"), n("te"), inv]
}

/// The spans of load run `run` in `lake`: every request answered 200 (`acked`) is there, no span
/// twice, each request whole (it is logged in one commit), none that was not sent (of the
/// first `n_sent`), and the rollups count each request once; no write-ahead log or temporary
/// file is left. Returns the requests kept.
fn assert_spans_once(
    lake: &std::path::Path,
    run: u32,
    n_sent: u32,
    acked: &[u32],
    ctx: &str,
) -> usize {
    let keys = lake_span_keys(lake);
    let (rows, distinct) = lake_span_counts(lake);
    assert_eq!(rows, distinct, "{ctx}: a span is in agent_spans twice");
    assert_eq!(rows as usize, keys.len());
    let in_lake: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    let mut missing = Vec::new();
    for n in acked {
        missing
            .extend(load_request(run, *n).1.into_iter().filter(|k| !in_lake.contains(k.as_str())));
    }
    assert!(missing.is_empty(), "{ctx}: acknowledged spans not in the lake: {missing:?}");
    let mut per_request: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &keys {
        *per_request.entry(k.split(':').next().unwrap()).or_default() += 1;
    }
    assert!(per_request.values().all(|&c| c == 5), "{ctx}: partial requests: {per_request:?}");
    let could_be: BTreeSet<String> = (0..n_sent)
        .map(|n| load_request(run, n).1[0].split(':').next().unwrap().to_owned())
        .collect();
    assert!(per_request.keys().all(|t| could_be.contains(*t)), "{ctx}: a span never sent");
    // The rollups of a lake written across kills count each request once.
    let requests = per_request.len() as i64;
    assert_eq!(agent_totals(lake), [requests, 2 * requests, requests, requests], "{ctx}");
    assert!(wal_files(lake).is_empty(), "{ctx}: {:?}", wal_files(lake));
    // A killed process's temporary files are removed by the next one.
    let left: Vec<String> = files_under(lake).into_iter().filter(|f| f.contains(".tmp-")).collect();
    assert!(left.is_empty(), "{ctx}: {left:?}");
    per_request.len()
}

/// Seeded trials of `serve` killed under load: `start(trial)` starts a receiver on the trial's
/// lake, `view(trial)` gives that lake as a local directory once the last receiver stopped.
fn serve_kills(
    what: &str,
    seed_name: &str,
    start: &dyn Fn(u64) -> Server,
    view: &dyn Fn(u64) -> std::path::PathBuf,
) {
    let mut rng = Seeded::new(seed_name);
    let seed = rng.seed;
    let trials = crash_trials();
    let (mut kills, mut sent, mut acked_total, mut given_up_total, mut unacked_kept) =
        (0, 0, 0, 0, 0);
    for trial in 0..trials {
        let ctx = format!("seed {seed:x}, trial {trial}");
        let run = 0xc5a5_0000 + trial as u32;
        let load = Load::default();
        let first = start(trial);
        load.port.store(first.port(), Ordering::SeqCst);
        let kills_now = 2 + rng.below(2);
        let server = std::thread::scope(|s| {
            let mut server = first;
            // Ends the load however this closure ends (a failed assertion included).
            let _stop = StopOnDrop(&load.stop);
            for _ in 0..CLIENTS {
                s.spawn(|| client(run, &load));
            }
            for _ in 0..kills_now {
                // Some load first, then a seeded moment: in an append, a group commit, a
                // flush into the lake or between them.
                wait_for_acks(&load, 5);
                std::thread::sleep(rng.within(Duration::from_millis(400)));
                server.signal("KILL");
                let stopped = server.wait();
                assert_eq!(stopped.status.signal(), Some(9), "{ctx}: {}", stopped.stderr);
                kills += 1;
                // Down for a seeded moment; clients meanwhile are refused.
                std::thread::sleep(rng.within(Duration::from_millis(100)));
                server = start(trial);
                load.port.store(server.port(), Ordering::SeqCst);
            }
            wait_for_acks(&load, 20);
            server
        });
        let stopped = server.stop();
        assert_eq!(stopped.counts()[3], 0, "{ctx}: nothing quarantined: {}", stopped.stdout);

        let n_sent = load.next.load(Ordering::SeqCst);
        let acked = load.acked.into_inner().unwrap();
        let given_up = load.given_up.into_inner().unwrap();
        let kept = assert_spans_once(&view(trial), run, n_sent, &acked, &ctx);

        sent += n_sent as usize;
        acked_total += acked.len();
        given_up_total += given_up.len();
        unacked_kept += kept - acked.len();
    }
    eprintln!(
        "crash figures: {what}: seed {seed:x}, {trials} trials, {kills} kills landed, \
         {sent} requests sent, {acked_total} acked, {given_up_total} given up \
         ({unacked_kept} of them kept), spans lost 0, doubled 0"
    );
}

#[test]
fn serve_killed_under_load_keeps_every_acknowledged_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let lake = |trial: u64| dir.path().join(format!("lake-{trial}"));
    let start = |trial: u64| Server::start(&lake(trial), &["--flush-interval-ms", FLUSH_MS]);
    serve_kills("serve", "serve_killed_under_load", &start, &lake);
}

/// The same on an S3 lake: the write-ahead log on the machine's disk, flushes into S3.
#[test]
fn serve_on_an_s3_lake_killed_under_load_keeps_every_acknowledged_span_once() {
    let dir = tempfile::tempdir().unwrap();
    let aws = crate::aws_sources::Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let start = |trial: u64| {
        let lake = format!("s3://lakes/serve-{trial}");
        let mut c = aws.cmd(&["serve", "--lake", &lake, "--otlp-http", "127.0.0.1:0"]);
        c.args(["--flush-interval-ms", FLUSH_MS])
            .env_remove("AGENTMETER_OTLP_TOKEN")
            .env("HOME", &home)
            .env("XDG_STATE_HOME", "");
        Server::spawn(c)
    };
    let view = |trial: u64| {
        let to = dir.path().join(format!("copy-{trial}"));
        crate::s3_lake::download(&aws, "lakes", &format!("serve-{trial}/"), &to);
        to
    };
    serve_kills("serve on an S3 lake", "serve_on_an_s3_lake_killed", &start, &view);
    // Every log segment flushed and removed from the machine's disk.
    let left: Vec<String> =
        files_under(&home).into_iter().filter(|f| f.ends_with(".ndjson")).collect();
    assert!(left.is_empty(), "{left:?}");
    assert!(files_under(&home).iter().any(|f| f.contains("wal")), "no log kept under HOME");
}

/// An OpenMeter-shaped billing system on loopback: keeps the body of every request it read
/// whole (what the system received, whether or not the sender lived to see the answer) and
/// answers 204 after [`BILLING_DELAY`], one connection at a time.
struct Billing {
    port: u16,
    received: std::sync::Arc<Mutex<Vec<String>>>,
}

/// The billing system's time per request: sending is a good part of a run, as against a
/// remote API.
const BILLING_DELAY: Duration = Duration::from_millis(8);

impl Billing {
    fn start() -> Billing {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let received = std::sync::Arc::new(Mutex::new(Vec::new()));
        let keep = std::sync::Arc::clone(&received);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { break };
                // A killed sender leaves a connection cut short: it is dropped, not waited on.
                let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut len = None;
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 {
                    continue;
                }
                loop {
                    line.clear();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        break;
                    }
                    let l = line.trim_end();
                    if l.is_empty() {
                        break;
                    }
                    if let Some((k, v)) = l.split_once(':')
                        && k.trim().eq_ignore_ascii_case("content-length")
                    {
                        len = v.trim().parse::<usize>().ok();
                    }
                }
                let Some(len) = len else { continue };
                let mut body = vec![0; len];
                if reader.read_exact(&mut body).is_err() {
                    continue;
                }
                keep.lock().unwrap().push(String::from_utf8(body).unwrap());
                std::thread::sleep(BILLING_DELAY);
                let _ = stream.write_all(
                    b"HTTP/1.1 204 No Content\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                );
            }
        });
        Billing { port, received }
    }

    /// Every event received, in order (resends included).
    fn events(&self) -> Vec<serde_json::Value> {
        self.received
            .lock()
            .unwrap()
            .iter()
            .flat_map(|b| serde_json::from_str::<Vec<serde_json::Value>>(b).unwrap())
            .collect()
    }
}

/// Keys of every object under `prefix` of bucket `lakes`.
fn keys_under(aws: &crate::aws_sources::Aws, prefix: &str) -> Vec<String> {
    aws.rt.block_on(async {
        let mut keys = Vec::new();
        let mut token = None;
        loop {
            let mut req = aws.s3.list_objects_v2().bucket("lakes").prefix(prefix);
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let page = req.send().await.unwrap();
            keys.extend(page.contents().iter().filter_map(|o| o.key().map(str::to_owned)));
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return keys;
            }
        }
    })
}

/// Deletes every object under `prefix` of bucket `lakes`.
fn delete_under(aws: &crate::aws_sources::Aws, prefix: &str) {
    for k in keys_under(aws, prefix) {
        aws.rt.block_on(aws.s3.delete_object().bucket("lakes").key(k).send()).unwrap();
    }
}

/// Downloads every object under `prefix` of bucket `lakes` into `to`.
fn download_under(aws: &crate::aws_sources::Aws, prefix: &str, to: &std::path::Path) {
    for k in keys_under(aws, prefix) {
        let obj = aws.rt.block_on(aws.s3.get_object().bucket("lakes").key(&k).send()).unwrap();
        let bytes = aws.rt.block_on(obj.body.collect()).unwrap().into_bytes();
        let path = to.join(k.strip_prefix(prefix).unwrap());
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
}

#[test]
fn push_killed_mid_run_sends_exactly_a_clean_runs_events() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(
        &root.join("gen"),
        &["--tenants", "4", "--noisy", "1", "--events", "3000", "--seed", "17", "--ndjson-only"],
    );
    let aws = crate::aws_sources::Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("lakes").send()).unwrap();
    let lake = "s3://lakes/push";
    let cmd = |args: &[&str]| {
        let mut c = aws.cmd(args);
        c.env("HOME", root).env("AGENTMETER_CACHE_DIR", root.join("cache"));
        c
    };
    let input = root.join("gen/input/ndjson");
    ok(cmd(&["ingest", "--lake", lake, "--no-progress"]).arg(&input));
    let token = root.join("token");
    std::fs::write(&token, "om-token\n").unwrap();
    let push = |billing: &Billing| {
        let mut c = cmd(&["push", "openmeter", "--period", "2026-10", "--lake", lake]);
        c.arg("--token-file")
            .arg(&token)
            .args(["--endpoint", &format!("http://127.0.0.1:{}", billing.port)]);
        c
    };
    let ledgers = "push/_state/push/";

    // The clean run: what the system must end with, and the window kills are drawn in.
    let billing = Billing::start();
    let window = timed(&mut push(&billing));
    let clean: BTreeMap<String, serde_json::Value> =
        billing.events().into_iter().map(|e| (e["id"].as_str().unwrap().to_owned(), e)).collect();
    assert_eq!(clean.len(), billing.events().len(), "a clean run sends each event once");
    let totals = |events: &BTreeMap<String, serde_json::Value>| {
        let mut t: BTreeMap<(String, String), i64> = BTreeMap::new();
        for e in events.values() {
            let k = (e["subject"].as_str().unwrap().to_owned(), e["type"].as_str().unwrap().into());
            *t.entry(k).or_default() += e["data"]["value"].as_i64().unwrap();
        }
        t
    };
    // The tokens pushed are the lake's.
    let input_tokens: i64 = totals(&clean)
        .iter()
        .filter(|((_, ty), _)| ty == "agentmeter_input_tokens")
        .map(|(_, v)| v)
        .sum();
    let tmp = root.join("lake-copy");
    download_under(&aws, "push/", &tmp);
    let want = duckdb_int(&format!(
        "SELECT sum(input_tokens)::BIGINT FROM {}",
        table(&tmp, "usage_events")
    ));
    assert_eq!(input_tokens, want);

    let mut rng = Seeded::new("push_killed_mid_run");
    let seed = rng.seed;
    let trials = crash_trials();
    let (mut landed, mut runs, mut resent) = (0, 0, 0);
    for trial in 0..trials {
        let ctx = format!("seed {seed:x}, trial {trial}");
        // A fresh ledger: the lake's usage has not been pushed yet.
        delete_under(&aws, ledgers);
        let billing = Billing::start();
        for _ in 0..1 + rng.below(3) {
            runs += 1;
            if kill_after(&mut push(&billing), rng.within(window)) {
                landed += 1;
            }
        }
        let last = ok(&mut push(&billing));
        let said = String::from_utf8_lossy(&last.stdout);
        assert!(said.contains(", 0 pending"), "{ctx}: {said}");
        // Once complete, nothing more is sent.
        let before = billing.received.lock().unwrap().len();
        let again = ok(&mut push(&billing));
        assert!(String::from_utf8_lossy(&again.stdout).starts_with("openmeter: 0 events sent"));
        assert_eq!(billing.received.lock().unwrap().len(), before, "{ctx}");

        let got = billing.events();
        let mut by_id: BTreeMap<String, serde_json::Value> = BTreeMap::new();
        for e in &got {
            let id = e["id"].as_str().unwrap();
            // A resend carries the same identifier and the same content.
            assert_eq!(Some(e), clean.get(id), "{ctx}: an event no clean run sends");
            by_id.insert(id.to_owned(), e.clone());
        }
        let missing: Vec<&String> = clean.keys().filter(|k| !by_id.contains_key(*k)).collect();
        assert!(missing.is_empty(), "{ctx}: {} events never received", missing.len());
        assert_eq!(totals(&by_id), totals(&clean), "{ctx}");
        resent += got.len() - by_id.len();
    }
    eprintln!(
        "crash figures: push: seed {seed:x}, {trials} trials, {landed} kills landed of {runs} \
         runs, {} events a clean run sends, {resent} resent under the same identifier, \
         events lost 0, doubled 0",
        clean.len()
    );
}

/// `run`'s configuration for the crash test: Kinesis, the receiver, rollups and flags in one
/// process, each on a short interval so that kills land in all of them.
const RUN_CONFIG: &str = "lake = \"lake\"\n[http]\nlisten = \"127.0.0.1:0\"\n\
    [otlp]\nflush_interval_ms = 50\n[[kinesis]]\nstream = \"usage\"\n\
    [rollups]\ncheckpoint_interval_ms = 50\ninterval_ms = 150\n\
    [flags]\nevery_minutes = 1\nout = \"out\"\nalerts = [\"stdout\"]\n";

/// `agentmeter run --config CONFIG` against moto, once it listens.
fn start_run(aws: &crate::aws_sources::Aws, config: &std::path::Path) -> Server {
    Server::spawn(aws.cmd(&["run", "--config", config.to_str().unwrap()]))
}

#[test]
fn run_killed_as_a_whole_keeps_every_record_and_acknowledged_span_once() {
    let mut rng = Seeded::new("run_killed_as_a_whole");
    let seed = rng.seed;
    let trials = crash_trials();
    let dir = tempfile::tempdir().unwrap();
    let mut aws = crate::aws_sources::Aws::start();
    let (mut kills, mut acked_total, mut unacked_kept) = (0, 0, 0);
    for trial in 0..trials {
        let ctx = format!("seed {seed:x}, trial {trial}");
        let run = 0x7a5_0000 + trial as u32;
        let home = dir.path().join(format!("trial-{trial}"));
        std::fs::create_dir_all(&home).unwrap();
        let config = home.join("agentmeter.toml");
        std::fs::write(&config, RUN_CONFIG).unwrap();
        let load = Load::default();
        let first = start_run(&aws, &config);
        load.port.store(first.port(), Ordering::SeqCst);
        let server = std::thread::scope(|s| {
            let mut server = first;
            let _stop = StopOnDrop(&load.stop);
            s.spawn(|| client(run, &load));
            for _ in 0..1 + rng.below(2) {
                // Usage arriving on the stream and spans on the receiver, then a seeded moment:
                // in a Kinesis commit or checkpoint, a span flush, a rollup or a flag run.
                aws.put_usage(40);
                wait_for_acks(&load, 5);
                aws.put_usage(40);
                std::thread::sleep(rng.within(Duration::from_millis(500)));
                server.signal("KILL");
                let stopped = server.wait();
                assert_eq!(stopped.status.signal(), Some(9), "{ctx}: {}", stopped.stderr);
                kills += 1;
                aws.put_usage(40);
                std::thread::sleep(rng.within(Duration::from_millis(100)));
                server = start_run(&aws, &config);
                load.port.store(server.port(), Ordering::SeqCst);
            }
            wait_for_acks(&load, 10);
            server
        });
        // Every record on the stream is read before the stop; the stop commits, rolls up and
        // checkpoints.
        let lake = home.join("lake");
        let events = || match lake.join("usage_events").is_dir() {
            true => duckdb_int(&format!("SELECT count(*) FROM {}", table(&lake, "usage_events"))),
            false => 0,
        };
        eventually("every record on the stream in the lake", || events() >= aws.put_count() as i64);
        let stopped = server.stop();
        assert_eq!(stopped.counts()[3], 0, "{ctx}: nothing quarantined: {}", stopped.stdout);
        assert_eq!(crate::aws_sources::lake_totals(&lake), aws.want(), "{ctx}");
        assert_eq!(
            duckdb_int(&format!(
                "SELECT count(DISTINCT event_id) FROM {}",
                table(&lake, "usage_events")
            )),
            aws.put_count() as i64,
            "{ctx}: an event twice"
        );
        let s = aws.ingest(&lake, &["kinesis://usage"]);
        assert_eq!(
            crate::aws_sources::count(&s, "records_read"),
            0,
            "{ctx}: not checkpointed: {s}"
        );
        // Flag runs cut off by a kill leave no torn line.
        let flags = std::fs::read_to_string(home.join("out/flags.jsonl")).unwrap_or_default();
        for l in flags.lines() {
            serde_json::from_str::<serde_json::Value>(l)
                .unwrap_or_else(|e| panic!("{ctx}: a torn flags line ({e}): {l}"));
        }
        let acked = load.acked.into_inner().unwrap();
        let kept = assert_spans_once(&lake, run, load.next.load(Ordering::SeqCst), &acked, &ctx);
        acked_total += acked.len();
        unacked_kept += kept - acked.len();
    }
    eprintln!(
        "crash figures: run: seed {seed:x}, {trials} trials, {kills} kills landed, {} events \
         on the stream, {acked_total} span requests acked ({unacked_kept} more kept), \
         events and spans lost 0, doubled 0",
        aws.put_count()
    );
}
