//! `agentmeter push`: a generated month sent to an OpenMeter-shaped loopback server, equal to
//! DuckDB's sums over the raw events, sent once however often the command runs.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use crate::flags::hook;
use crate::util::*;

#[test]
fn push_sends_each_quantity_once_and_a_failure_waits_for_the_next_run() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    generate(
        &root.join("gen"),
        &["--tenants", "4", "--noisy", "1", "--events", "2000", "--seed", "13", "--ndjson-only"],
    );
    let lake = root.join("lake");
    ingest(&lake, &[&root.join("gen/input/ndjson")], &[]);
    let token = root.join("token");
    std::fs::write(&token, "om-secret-token\n").unwrap();
    let server = hook(503);
    let push = || {
        let mut c = bin();
        c.args(["push", "openmeter", "--period", "2026-10", "--lake"])
            .arg(&lake)
            .arg("--token-file")
            .arg(&token)
            .args(["--endpoint", &format!("http://127.0.0.1:{}", server.port)])
            .args(["--max-attempts", "2"]);
        c
    };
    // The server is down: exit 1, the events wait.
    let down = push().output().unwrap();
    assert_eq!(down.status.code(), Some(1), "{}", String::from_utf8_lossy(&down.stderr));
    let err = String::from_utf8_lossy(&down.stderr);
    assert!(err.contains("openmeter failed;") && err.contains("pending"), "{err}");
    assert!(!err.contains("om-secret-token"));
    server.status.store(204, std::sync::atomic::Ordering::SeqCst);
    let up = ok(&mut push());
    let said = String::from_utf8_lossy(&up.stdout);
    assert!(said.contains(", 0 pending"), "{said}");

    // What the server got: CloudEvents batches with the token, each event id once.
    let seen = server.seen.lock().unwrap().clone();
    let mut ids = BTreeSet::new();
    let mut input: BTreeMap<String, i64> = BTreeMap::new();
    for (headers, body) in seen.iter().skip(2) {
        let h: BTreeMap<&str, &str> =
            headers.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        assert_eq!(h["authorization"], "Bearer om-secret-token");
        assert_eq!(h["content-type"], "application/cloudevents-batch+json");
        let events: Vec<Value> = serde_json::from_str(body).unwrap();
        for e in events {
            assert_eq!(e["specversion"], "1.0");
            assert!(ids.insert(e["id"].as_str().unwrap().to_owned()), "sent twice: {e}");
            if e["type"] == "agentmeter_input_tokens" {
                *input.entry(e["subject"].as_str().unwrap().to_owned()).or_default() +=
                    e["data"]["value"].as_i64().unwrap();
            }
        }
    }
    let want: BTreeMap<String, i64> = duckdb(&format!(
        "SELECT tenant_id, sum(input_tokens)::BIGINT AS i FROM {} GROUP BY 1",
        table(&lake, "usage_events")
    ))
    .into_iter()
    .map(|r| (r["tenant_id"].as_str().unwrap().to_owned(), r["i"].as_i64().unwrap()))
    .collect();
    assert_eq!(input, want);

    // Again: nothing to send.
    let before = server.seen.lock().unwrap().len();
    let again = ok(&mut push());
    assert!(String::from_utf8_lossy(&again.stdout).starts_with("openmeter: 0 events sent"));
    assert_eq!(server.seen.lock().unwrap().len(), before);
}
