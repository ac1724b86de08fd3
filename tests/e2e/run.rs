//! `agentmeter run --config`: the service on moto's Kinesis with the OTLP receiver, rollups
//! and the flags schedule in one process; SIGTERM commits and checkpoints everything.

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use crate::aws_sources::{Aws, count, lake_totals};
use crate::otlp_client::{STRANDS_FIXTURE, lake_span_keys, metric, request};

fn wait_for(what: &str, limit: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn the_service_follows_kinesis_receives_spans_evaluates_flags_and_stops_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let mut aws = Aws::start();
    for _ in 0..4 {
        aws.put_usage(25);
    }
    std::fs::write(
        dir.path().join("agentmeter.toml"),
        "lake = \"lake\"\n[http]\nlisten = \"127.0.0.1:0\"\n[otlp]\nflush_interval_ms = 100\n\
         [[kinesis]]\nstream = \"usage\"\n[rollups]\ncheckpoint_interval_ms = 100\ninterval_ms = 200\n\
         [flags]\nevery_minutes = 1\nout = \"out\"\nalerts = [\"stdout\"]\n\
         [api]\ntokens = \"api-tokens.toml\"\n",
    )
    .unwrap();
    // The usage API on the same listener, with one operator token ("ops").
    std::fs::write(
        dir.path().join("api-tokens.toml"),
        "[tokens]\n\"sha256:a92c36e66a25ee99ff862faa8e87987be6c7cd13c3ee661c400a45b0f1e3b132\" = \"*\"\n",
    )
    .unwrap();
    let config = dir.path().join("agentmeter.toml");
    let mut child = aws
        .cmd(&["run", "--config", config.to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    let port: u16 = line
        .trim()
        .strip_prefix("listening on http://127.0.0.1:")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    let metrics = || {
        let r = request(port, "GET", "/metrics", &[], b"").unwrap();
        String::from_utf8(r.body).unwrap()
    };
    let health = request(port, "GET", "/health", &[], b"").unwrap();
    assert_eq!(health.status, 200);
    let r = request(
        port,
        "POST",
        "/v1/traces",
        &[("Content-Type", "application/json")],
        STRANDS_FIXTURE.as_bytes(),
    )
    .unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    // The four PutLogEvents calls are four records; more arrive while it runs.
    wait_for("the first records", Duration::from_secs(60), || {
        metric(&metrics(), "agentmeter_stream_records_total") >= 4
    });
    for _ in 0..2 {
        aws.put_usage(25);
    }
    wait_for("the later records", Duration::from_secs(60), || {
        metric(&metrics(), "agentmeter_stream_records_total") >= 6
    });
    wait_for("a flag run", Duration::from_secs(60), || {
        metrics().contains("agentmeter_flag_runs_total{outcome=\"ok\"} 1")
    });
    wait_for("a checkpoint", Duration::from_secs(60), || {
        metric(&metrics(), "agentmeter_stream_checkpoints_total") >= 1
    });
    let m = metrics();
    assert_eq!(metric(&m, "agentmeter_otlp_spans_received_total"), 7, "{m}");
    let usage = "/v1/usage?tenant=clinic-a&from=2020-01-01&to=2020-02-01";
    assert_eq!(request(port, "GET", usage, &[], b"").unwrap().status, 401);
    let r = request(port, "GET", usage, &[("Authorization", "Bearer ops")], b"").unwrap();
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["totals"]["invocations"], 0);

    let pid = child.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "run did not stop");
        std::thread::sleep(Duration::from_millis(50));
    };
    let mut rest = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut rest);
    assert_eq!(status.code(), Some(0), "{rest}");
    assert!(rest.contains("stopped: 7 spans received, 7 written"), "{rest}");

    let lake = dir.path().join("lake");
    assert_eq!(lake_totals(&lake), aws.want());
    assert_eq!(lake_span_keys(&lake).len(), 7);
    assert!(dir.path().join("out/flags.jsonl").is_file());
    // Everything read is checkpointed: a later ingest of the stream reads nothing.
    let s = aws.ingest(&lake, &["kinesis://usage"]);
    assert_eq!(count(&s, "records_read"), 0, "{s}");

    // A bad configuration exits 2 naming the key.
    std::fs::write(&config, "lake = \"lake\"\n[flags]\nout = \"out\"\nevery_minutes = 0\n")
        .unwrap();
    let bad = aws.cmd(&["run", "--config", config.to_str().unwrap()]).output().unwrap();
    assert_eq!(bad.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("flags.every_minutes: must be at least 1")
    );
}
