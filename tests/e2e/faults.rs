//! Faults between agentmeter and what it talks to: a proxy (`testkit::faults`) in front of
//! moto and of a webhook receiver throttles, fails, delays, drops connections before and after
//! the request reached S3, Kinesis or the receiver, and cuts answers short, by a seeded plan
//! aimed at the calls that matter (data-file puts, checkpoint writes, Kinesis reads). A run
//! may stop, with an error the user can read (a storm that the SDK's retries cannot ride out
//! makes sure one does); runs go on until one completes. The lake then holds every record
//! exactly once, and every alert has arrived: nothing lost, nothing doubled, whatever the
//! retries did.

use std::collections::BTreeMap;
use std::process::Command;

use agentmeter_testkit::crash::Seeded;
use agentmeter_testkit::faults::{Fault, FaultProxy, Plan, Rule};

use crate::aws_sources::{Aws, lake_totals};
use crate::crash_matrix::reader_view;
use crate::s3_lake::download;
use crate::util::*;

/// Every fault but the slow answer, whose delay would only slow a storm down.
const HARD: [Fault; 5] =
    [Fault::Throttle, Fault::ServerError, Fault::DropBefore, Fault::DropAfter, Fault::Truncate];

/// How long a slow answer is held back (the runs make hundreds of requests, one at a time).
const SLOW: std::time::Duration = std::time::Duration::from_millis(100);

/// Runs `cmd()` until it succeeds (at most `max` times); every failure must be an error the
/// user can read, not a crash. Returns the failed runs.
fn until_it_completes(mut cmd: impl FnMut() -> Command, max: u32) -> u32 {
    for failed in 0..max {
        let out = cmd().output().unwrap();
        if out.status.success() {
            return failed;
        }
        assert_clean_failure(&out);
    }
    panic!("no run completed in {max} tries");
}

/// A run that stopped: exit status 1, an `error:` line, no panic. Returns the error line.
fn assert_clean_failure(out: &std::process::Output) -> String {
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{err}"));
    line.to_owned()
}

/// A storm: `permille` of every request gets one of the hard faults.
fn storm(name: &str, permille: u64) -> Plan {
    Plan::seeded(Seeded::new(name).seed).rule(Rule::each(&[], "", &HARD, permille / 5))
}

/// The faults `proxy` injected by kind, every kind present.
fn every_fault(proxy: &FaultProxy, what: &str) -> BTreeMap<Fault, u64> {
    let got = proxy.injected();
    for f in Fault::ALL {
        assert!(got.get(&f).copied().unwrap_or(0) > 0, "{what}: no {f:?} injected: {got:?}");
    }
    got
}

/// Faults of any kind injected on requests whose operation starts with `op`.
fn hit(proxy: &FaultProxy, op: &str) -> usize {
    Fault::ALL.iter().map(|f| proxy.injected_on(*f, op, "")).sum()
}

fn duplicate_ids(lake: &std::path::Path) -> i64 {
    let ev = table(lake, "usage_events");
    duckdb_int(&format!("SELECT count(*) - count(DISTINCT event_id) FROM {ev}"))
}

#[test]
fn an_s3_lake_behind_faults_ends_exactly_as_a_clean_local_run() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &dir.path().join("gen"),
        &["--tenants", "6", "--events", "3000", "--seed", "9", "--noisy", "1", "--dirty"],
    );
    let input = dir.path().join("gen/input");
    let clean = dir.path().join("clean");
    ingest(&clean, &[&input], &["--batch-rows", "500"]);
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("faulty").send()).unwrap();
    let run = |proxy: &FaultProxy, inputs: &[std::path::PathBuf]| {
        let mut c = aws.cmd(&[
            "ingest",
            "--lake",
            "s3://faulty/lake",
            "--batch-rows",
            "500",
            "--no-progress",
        ]);
        c.args(inputs).env("AWS_ENDPOINT_URL", proxy.endpoint());
        c
    };
    // Faults aimed at what makes duplicates: a data file's put-if-absent
    // applied by S3 whose answer never arrives, so the retry meets its own file.
    let plan = Plan::seeded(Seeded::new("faults s3 lake").seed)
        .rule(Rule {
            ops: vec!["PutObject(If-None-Match)"],
            path: "/usage_events/",
            permille: vec![
                (Fault::DropAfter, 200),
                (Fault::Truncate, 30),
                (Fault::Throttle, 30),
                (Fault::ServerError, 30),
                (Fault::DropBefore, 30),
                (Fault::Slow, 30),
            ],
        })
        // A run over few sources asks with a HEAD whether a clean one left a quarantine file
        // (over many it lists the quarantine instead): those HEADs meet faults often.
        .rule(Rule {
            ops: vec!["HeadObject"],
            path: "/_quarantine/",
            permille: vec![
                (Fault::Throttle, 100),
                (Fault::ServerError, 100),
                (Fault::DropBefore, 100),
                (Fault::Slow, 100),
            ],
        })
        // A run reads few objects (a rerun reads the ids of files another run put): reads
        // meet faults more often, or a run could read without one.
        .rule(Rule::each(&["GetObject"], "", &Fault::ALL, 40))
        .rule(Rule::each(&["PutObject", "ListObjectsV2", "HeadObject"], "", &Fault::ALL, 15))
        .rule(Rule::each(&[], "", &Fault::ALL, 10));
    let proxy = FaultProxy::start(aws.moto_port(), Plan { delay: SLOW, ..plan });
    let mut failed = until_it_completes(|| run(&proxy, std::slice::from_ref(&input)), 15);
    // Eight of those sources again, three of them clean: their quarantine files are asked for
    // one by one, and the rerun adds nothing.
    let few: Vec<std::path::PathBuf> = std::iter::once(input.join("export"))
        .chain((1..=5).map(|d| input.join(format!("ndjson/usage-2026-10-0{d}.ndjson"))))
        .collect();
    for _ in 0..8 {
        if hit(&proxy, "HeadObject") > 0 && hit(&proxy, "GetObject") > 0 {
            break;
        }
        failed += until_it_completes(|| run(&proxy, &few), 15);
    }
    let injected = every_fault(&proxy, "s3 lake");
    assert!(
        proxy.injected_on(Fault::DropAfter, "PutObject(If-None-Match)", "/usage_events/") > 0,
        "{}",
        proxy.summary()
    );
    for op in ["PutObject", "GetObject", "ListObjectsV2", "HeadObject"] {
        let (seen, summary) = (proxy.operations(), proxy.summary());
        assert!(hit(&proxy, op) > 0, "no fault on {op}: {summary}; requests {seen:?}");
    }
    let copy = dir.path().join("copy");
    download(&aws, "faulty", "lake/", &copy);
    assert_eq!(reader_view(&copy), reader_view(&clean));
    assert_eq!(duplicate_ids(&copy), 0);
    println!(
        "faults, S3 lake: {}\ninjected {injected:?}; {failed} runs stopped with an error; lost 0, doubled 0",
        proxy.summary()
    );
}

/// A storm the SDK's retries cannot ride out stops the run; what the user reads is the
/// operation, the object and the cause, not a dump of the raw answer. A rerun completes the
/// lake exactly.
#[test]
fn a_storm_of_faults_stops_an_s3_lake_ingest_with_a_clear_error_and_a_rerun_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    generate(
        &dir.path().join("gen"),
        &["--tenants", "4", "--events", "1500", "--seed", "11", "--noisy", "1"],
    );
    let input = dir.path().join("gen/input");
    let clean = dir.path().join("clean");
    ingest(&clean, &[&input], &["--batch-rows", "300"]);
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("stormy").send()).unwrap();
    // Through `proxy`, else straight to moto.
    let run = |proxy: Option<&FaultProxy>| {
        let mut c = aws.cmd(&[
            "ingest",
            "--lake",
            "s3://stormy/lake",
            "--batch-rows",
            "300",
            "--no-progress",
        ]);
        c.arg(&input);
        if let Some(p) = proxy {
            c.env("AWS_ENDPOINT_URL", p.endpoint());
        }
        c
    };
    let proxy = FaultProxy::start(aws.moto_port(), storm("faults s3 lake storm", 600));
    let out = run(Some(&proxy)).output().unwrap();
    let error = assert_clean_failure(&out);
    assert!(error.contains(" s3://stormy/lake/"), "{error}");
    // Each cause once (the lake error already shows the store's in its message).
    assert_eq!(error.matches(" s3://stormy/lake/").count(), 1, "{error}");
    for debris in ["Response {", "headers", "SdkBody", "HeaderValue", "ResponseError("] {
        assert!(!error.contains(debris), "{debris:?} in {error}");
    }
    let injected = proxy.injected();
    for f in HARD {
        assert!(injected.get(&f).copied().unwrap_or(0) > 0, "no {f:?}: {}", proxy.summary());
    }
    // The partial lake completed by a run without faults.
    ok(&mut run(None));
    let copy = dir.path().join("copy");
    download(&aws, "stormy", "lake/", &copy);
    assert_eq!(reader_view(&copy), reader_view(&clean));
    assert_eq!(duplicate_ids(&copy), 0);
    println!("faults, storm: {}; stopped with {error:?}; lost 0, doubled 0", proxy.summary());
}

#[test]
fn kinesis_and_its_checkpoints_behind_faults_land_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("faulty").send()).unwrap();
    let run = |aws: &Aws, proxy: &FaultProxy| {
        let mut c = aws.cmd(&[
            "ingest",
            "--lake",
            "s3://faulty/k",
            "--no-progress",
            "--checkpoint-interval-ms",
            "20",
            "kinesis://usage",
        ]);
        c.env("AWS_ENDPOINT_URL", proxy.endpoint());
        c
    };
    // Faults on the stream's reads and on the checkpoint writes, which are replaced
    // from the version read: a write applied whose answer is lost meets its own version.
    let plan = Plan::seeded(Seeded::new("faults kinesis").seed)
        // Listed once a run: often, so that it meets faults at all.
        .rule(Rule::each(&["ListShards"], "", &Fault::ALL, 100))
        .rule(Rule::each(&["GetRecords", "GetShardIterator"], "", &Fault::ALL, 50))
        .rule(Rule {
            ops: vec!["PutObject"],
            path: "/_state/checkpoints/",
            permille: vec![
                (Fault::DropAfter, 200),
                (Fault::Truncate, 50),
                (Fault::Throttle, 50),
                (Fault::ServerError, 50),
                (Fault::DropBefore, 50),
                (Fault::Slow, 50),
            ],
        })
        .rule(Rule::each(&[], "", &Fault::ALL, 20));
    let proxy = FaultProxy::start(aws.moto_port(), Plan { delay: SLOW, ..plan });
    // Usage arrives in rounds, each read through the faults until a run completes.
    let mut failed = 0;
    for _ in 0..6 {
        for _ in 0..3 {
            aws.put_usage(40);
        }
        failed += until_it_completes(|| run(&aws, &proxy), 20);
    }
    // Caught up: once more through the faults, nothing new lands.
    failed += until_it_completes(|| run(&aws, &proxy), 20);
    let injected = every_fault(&proxy, "kinesis");
    for op in ["GetRecords", "GetShardIterator", "ListShards"] {
        let (seen, summary) = (proxy.operations(), proxy.summary());
        assert!(hit(&proxy, op) > 0, "no fault on {op}: {summary}; requests {seen:?}");
    }
    assert!(
        proxy.injected_on(Fault::DropAfter, "PutObject", "/_state/checkpoints/") > 0,
        "{}",
        proxy.summary()
    );
    let copy = dir.path().join("copy");
    download(&aws, "faulty", "k/", &copy);
    assert_eq!(lake_totals(&copy), aws.want());
    assert_eq!(duplicate_ids(&copy), 0);
    println!(
        "faults, Kinesis: {}\ninjected {injected:?}; {failed} runs stopped with an error; lost 0, doubled 0",
        proxy.summary()
    );
}

/// The two other ingestion sources through the faults: S3 objects (listed, then each
/// downloaded and recorded as done in the lake) and a CloudWatch Logs backfill (FilterLogEvents
/// pages). Runs go on until one completes; every event is in the lake once, and a further run
/// reads no object again.
#[test]
fn s3_objects_and_a_logs_backfill_behind_faults_land_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("usage-logs").send()).unwrap();
    for i in 0..12 {
        let key = format!("firehose/2026/10/01/{i:02}/usage-{i}.gz");
        let body = crate::aws_sources::firehose_payload(&format!("fh-{i}"), 50, 100);
        aws.put_object("usage-logs", &key, body);
    }
    for _ in 0..8 {
        aws.put_usage(150);
    }
    let plan = Plan::seeded(Seeded::new("faults sources").seed)
        .rule(Rule::each(&["GetObject", "ListObjectsV2"], "/usage-logs", &Fault::ALL, 60))
        .rule(Rule::each(&["FilterLogEvents"], "", &Fault::ALL, 120))
        .rule(Rule::each(&[], "", &Fault::ALL, 20));
    let proxy = FaultProxy::start(aws.moto_port(), Plan { delay: SLOW, ..plan });
    let run = |lake: &std::path::Path, source: &str| {
        let mut c = aws.cmd(&["ingest", "--lake", lake.to_str().unwrap(), "--no-progress"]);
        c.arg(source).env("AWS_ENDPOINT_URL", proxy.endpoint());
        c
    };
    let (s3_lake, logs_lake) = (dir.path().join("s3"), dir.path().join("logs"));
    let mut failed = 0;
    for _ in 0..2 {
        failed += until_it_completes(|| run(&s3_lake, "s3://usage-logs/firehose/"), 20);
        failed += until_it_completes(|| run(&logs_lake, &aws.logs_source()), 20);
    }
    for op in ["GetObject", "ListObjectsV2", "FilterLogEvents"] {
        let (seen, summary) = (proxy.operations(), proxy.summary());
        assert!(hit(&proxy, op) > 0, "no fault on {op}: {summary}; requests {seen:?}");
    }
    let events = |lake: &std::path::Path| {
        duckdb_int(&format!("SELECT count(*) FROM {}", table(lake, "usage_events")))
    };
    assert_eq!(events(&s3_lake), 600);
    assert_eq!(duplicate_ids(&s3_lake), 0);
    assert_eq!(lake_totals(&logs_lake), aws.want());
    assert_eq!(duplicate_ids(&logs_lake), 0);
    // Every object recorded as done: a run without faults reads none again.
    let out = ok(aws
        .cmd(&["ingest", "--lake", s3_lake.to_str().unwrap(), "--json", "--no-progress"])
        .arg("s3://usage-logs/firehose/"));
    let s: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(s["accounting"]["records_read"], 0, "{s}");
    println!(
        "faults, S3 objects and a logs backfill: {}; {failed} runs stopped with an error; lost 0, doubled 0",
        proxy.summary()
    );
}

/// The webhook contract is at least once under a stable key (`Idempotency-Key`, the alert
/// id): a resend is the same alert, byte for byte, and comes only from a request the
/// receiver took whose answer was lost.
#[test]
fn alerts_behind_faults_reach_the_webhook_each_under_one_key_until_none_is_pending() {
    let m = crate::flags::month();
    let receiver = crate::flags::hook(200);
    // Each fault once at fixed places (the deliveries are sequential), and on about a quarter
    // of the other requests by the seed.
    let mut plan = Plan::seeded(Seeded::new("faults webhook").seed).rule(Rule::each(
        &["POST /hook"],
        "",
        &Fault::ALL,
        40,
    ));
    plan.at = Fault::ALL.iter().enumerate().map(|(i, f)| (2 + 2 * i as u64, *f)).collect();
    let proxy = FaultProxy::start(receiver.port, plan);
    let url = format!("{}/hook", proxy.endpoint());
    let state_file = m.lake.join("_state/flags.json");
    let pending = || {
        let state: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&state_file).unwrap()).unwrap();
        state["pending"].as_array().map_or(0, Vec::len)
    };
    // A failed delivery is kept for the next run: run until nothing is pending.
    let mut runs = 0;
    loop {
        runs += 1;
        ok(&mut crate::flags::flags(&m, "2026-10", &["--alert", &url, "--alert-backoff-ms", "5"]));
        if pending() == 0 {
            break;
        }
        assert!(runs < 30, "alerts still pending after {runs} runs");
    }
    let seen = receiver.seen.lock().unwrap().clone();
    let mut bodies: BTreeMap<String, String> = BTreeMap::new();
    for (headers, body) in &seen {
        let key = headers.iter().find(|(h, _)| h == "idempotency-key").map(|(_, v)| v.clone());
        let key = key.expect("an Idempotency-Key on every delivery");
        let alert: serde_json::Value = serde_json::from_str(body).unwrap();
        assert_eq!(alert["alert_id"].as_str(), Some(key.as_str()));
        // A resend is the same alert, byte for byte, under the same key.
        let first = bodies.entry(key).or_insert_with(|| body.clone());
        assert_eq!(first, body);
    }
    assert_eq!(bodies.len(), m.noisy.len() + 2 * m.runaways.len(), "every alert, none invented");
    let injected = every_fault(&proxy, "webhook");
    // Exactly one resend per request the receiver took but whose answer was lost.
    let lost_answers = injected[&Fault::DropAfter] + injected[&Fault::Truncate];
    assert_eq!(seen.len() as u64, bodies.len() as u64 + lost_answers, "{}", proxy.summary());
    assert_eq!(proxy.upstream_failures(), 0);
    println!(
        "faults, webhook: {} alerts, {} deliveries ({} resent under the same key), {runs} runs, {}",
        bodies.len(),
        seen.len(),
        seen.len() - bodies.len(),
        proxy.summary()
    );
}
