//! Faults between agentmeter and AWS: a proxy in front of moto (`testkit::faults`) throttles,
//! fails, delays, drops connections before and after the request reached S3 or Kinesis, and
//! cuts response bodies, by a seeded schedule. A run may stop with a clear error; run again
//! until one completes, the lake holds every record exactly once: nothing lost, nothing
//! doubled, whatever the retries did.

use std::process::Command;

use agentmeter_testkit::faults::{Fault, FaultProxy, Schedule};

use crate::aws_sources::{Aws, lake_totals};
use crate::crash_matrix::reader_view;
use crate::s3_lake::download;
use crate::util::*;

/// Runs `cmd()` until it succeeds (at most `max` times); every failure must be an error the
/// user can read, not a crash. Returns the failed runs.
fn until_it_completes(mut cmd: impl FnMut() -> Command, max: u32) -> u32 {
    for failed in 0..max {
        let out = cmd().output().unwrap();
        if out.status.success() {
            return failed;
        }
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains("error: ") && !err.contains("panicked"), "{err}");
    }
    panic!("no run completed in {max} tries");
}

fn schedule(name: &str, permille: u64) -> Schedule {
    Schedule { seed: Seeded::new(name).seed, permille, faults: Fault::ALL.to_vec(), grace: 0 }
}

fn assert_every_fault(proxy: &FaultProxy, what: &str) {
    let got = proxy.injected();
    for f in Fault::ALL {
        assert!(got.get(&f).copied().unwrap_or(0) > 0, "{what}: no {f:?} injected: {got:?}");
    }
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
    let proxy = FaultProxy::start(aws.moto_port(), schedule("faults s3 lake", 100));
    let failed = until_it_completes(
        || {
            let mut c = aws.cmd(&[
                "ingest",
                "--lake",
                "s3://faulty/lake",
                "--batch-rows",
                "500",
                "--no-progress",
            ]);
            c.arg(&input).env("AWS_ENDPOINT_URL", proxy.endpoint());
            c
        },
        15,
    );
    assert_every_fault(&proxy, "s3 lake");
    let copy = dir.path().join("copy");
    download(&aws, "faulty", "lake/", &copy);
    assert_eq!(reader_view(&copy), reader_view(&clean));
    let ev = table(&copy, "usage_events");
    assert_eq!(duckdb_int(&format!("SELECT count(*) - count(DISTINCT event_id) FROM {ev}")), 0);
    println!(
        "faults, S3 lake: {} requests, injected {:?}, {failed} runs stopped with an error, lost 0, doubled 0",
        proxy.requests(),
        proxy.injected()
    );
}

#[test]
fn kinesis_and_its_checkpoints_behind_faults_land_every_record_once() {
    let dir = tempfile::tempdir().unwrap();
    let mut aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("faulty").send()).unwrap();
    let proxy = FaultProxy::start(aws.moto_port(), schedule("faults kinesis", 300));
    let endpoint = proxy.endpoint();
    let run = |aws: &Aws| {
        let mut c = aws.cmd(&[
            "ingest",
            "--lake",
            "s3://faulty/k",
            "--no-progress",
            "--checkpoint-interval-ms",
            "20",
            "kinesis://usage",
        ]);
        c.env("AWS_ENDPOINT_URL", &endpoint);
        c
    };
    // Usage arrives in rounds, each read through the faults until a run completes.
    let mut failed = 0;
    for _ in 0..6 {
        for _ in 0..3 {
            aws.put_usage(40);
        }
        failed += until_it_completes(|| run(&aws), 20);
    }
    // Caught up: once more through the faults, nothing new lands.
    failed += until_it_completes(|| run(&aws), 20);
    assert_every_fault(&proxy, "kinesis");
    let copy = dir.path().join("copy");
    download(&aws, "faulty", "k/", &copy);
    assert_eq!(lake_totals(&copy), aws.want());
    let ev = table(&copy, "usage_events");
    assert_eq!(duckdb_int(&format!("SELECT count(*) - count(DISTINCT event_id) FROM {ev}")), 0);
    println!(
        "faults, Kinesis: {} requests, injected {:?}, {failed} runs stopped with an error, lost 0, doubled 0",
        proxy.requests(),
        proxy.injected()
    );
}

#[test]
fn alerts_behind_faults_reach_the_webhook_each_under_one_key_until_none_is_pending() {
    let m = crate::flags::month();
    let receiver = crate::flags::hook(200);
    let proxy = FaultProxy::start(receiver.port, schedule("faults webhook", 400));
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
    let mut bodies: std::collections::BTreeMap<String, String> = Default::default();
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
    let injected = proxy.injected();
    assert!(injected.values().sum::<u64>() > 0, "{injected:?}");
    println!(
        "faults, webhook: {} alerts, {} deliveries ({} resent under the same key), {runs} runs, injected {injected:?}",
        bodies.len(),
        seen.len(),
        seen.len() - bodies.len()
    );
}
