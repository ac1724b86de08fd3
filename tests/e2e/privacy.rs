//! No free text from spans anywhere: spans whose status message, events, trace state and
//! unknown span, resource and scope attributes carry patient-like text are received by
//! `serve`, ingested from a file (one of them refused, one request malformed around the
//! text), then reconciled, invoiced and reported. No file any command wrote (lake, write-ahead
//! log, quarantine, outputs) and nothing any command printed holds the text.

use std::path::Path;

use serde_json::{Value, json};

use crate::otlp_client::*;
use crate::util::*;

const NOTE: &str = "Patient Jane Doe (DOB 1980-01-01) not found for clinic-a-north";
/// Pieces of [`NOTE`] and of the fixture's own events that must appear nowhere.
const NEEDLES: [&str; 6] =
    ["Jane Doe", "1980-01-01", "DOB", "chest pain", "SECRET-STACK", "LINK-SECRET"];

fn attr(key: &str, v: &str) -> Value {
    json!({"key": key, "value": {"stringValue": v}})
}

/// The Strands fixture with [`NOTE`] in every free-text place; the span at `refused` loses its
/// tenant, so it is quarantined.
fn request(refused: Option<usize>) -> Value {
    let mut req: Value = serde_json::from_str(STRANDS_FIXTURE).unwrap();
    let rs = &mut req["resourceSpans"][0];
    rs["resource"]["attributes"].as_array_mut().unwrap().push(attr("host.note", NOTE));
    rs["scopeSpans"][0]["scope"]["attributes"] = json!([attr("scope.note", NOTE)]);
    for (i, sp) in rs["scopeSpans"][0]["spans"].as_array_mut().unwrap().iter_mut().enumerate() {
        sp["status"] = json!({"code": 2, "message": NOTE});
        sp["traceState"] = json!("vendor=Jane Doe");
        let attrs = sp["attributes"].as_array_mut().unwrap();
        attrs.push(attr("app.note", NOTE));
        attrs.push(attr("gen_ai.tool.call.result", NOTE));
        if refused == Some(i) {
            attrs.retain(|a| a["key"] != "clinic_id");
        }
        let events = sp.as_object_mut().unwrap().entry("events").or_insert(json!([]));
        events.as_array_mut().unwrap().push(json!({
            "timeUnixNano": "1790841600100000000", "name": "exception",
            "attributes": [attr("exception.message", NOTE), attr("exception.type", "LookupError")]
        }));
    }
    req
}

/// Fails the test naming the place if `bytes` holds a needle.
fn assert_clean(place: &str, bytes: &[u8]) {
    for n in NEEDLES {
        assert!(!bytes.windows(n.len()).any(|w| w == n.as_bytes()), "{place} holds {n:?}");
    }
}

fn assert_tree_clean(dir: &Path) {
    let files = files_under(dir);
    assert!(!files.is_empty(), "{} is empty", dir.display());
    for f in files {
        let path = dir.join(&f);
        assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
    }
}

#[test]
fn no_span_text_reaches_any_file_or_output() {
    let dir = tempfile::tempdir().unwrap();
    let (lake, wal, out) =
        (dir.path().join("lake"), dir.path().join("wal"), dir.path().join("out"));
    let mut printed: Vec<(String, Vec<u8>)> = Vec::new();

    // Received over OTLP/HTTP: six spans kept, one quarantined.
    let server =
        Server::start(&lake, &["--flush-interval-ms", "100", "--wal-dir", wal.to_str().unwrap()]);
    let body = request(Some(2)).to_string();
    let resp = server.post_json(body.as_bytes());
    assert_eq!(resp.status, 200, "{}", String::from_utf8_lossy(&resp.body));
    let stopped = server.stop();
    assert_eq!(stopped.counts(), [7, 6, 0, 1], "{}", stopped.stdout);
    printed.push(("serve".into(), format!("{}{}", stopped.stdout, stopped.stderr).into_bytes()));

    // Ingested from a file: the same spans (duplicates), another refused span, and a request
    // that does not parse around the text.
    let input = dir.path().join("input");
    std::fs::create_dir_all(&input).unwrap();
    let bad = json!({"resourceSpans": [{"scopeSpans": [{"spans": [{"status": {"code": NOTE}}]}]}]});
    let usage = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-a-north","user_id":"dr.lee@clinic-a.example","model_id":"mistral.ministral-3-8b-instruct","input_tokens":9664,"output_tokens":805,"total_tokens":10469,"timestamp":"2026-10-01T08:00:05Z"}"#;
    std::fs::write(
        input.join("spans.json"),
        format!("{}\n{}\n{bad}\n{usage}\n", request(None), request(Some(4))),
    )
    .unwrap();
    let o = ok(bin().arg("ingest").arg("--lake").arg(&lake).arg("--json").arg(&input));
    let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
    let a = accounting(&summary);
    assert_eq!((a.events_written, a.spans_written, a.span_duplicates), (1, 1, 12), "{summary}");
    assert_eq!(a.quarantined_total(), 2, "{summary}");
    printed.push(("ingest".into(), [o.stdout, o.stderr].concat()));

    // Replaying the quarantine keeps it quarantined, and as clean.
    let o = ok(bin().arg("ingest").arg("--lake").arg(&lake).arg(lake.join("_quarantine")));
    printed.push(("replay".into(), [o.stdout, o.stderr].concat()));

    let period = ["--period", "2026-10"];
    let prices = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let commands: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
        ("reconcile", vec!["--out".into(), out.join("reconcile.csv").into()]),
        ("invoice", vec!["--prices".into(), prices.into(), "--out".into(), out.clone().into()]),
        ("flags", vec!["--out".into(), out.clone().into()]),
        ("report", vec!["--out".into(), out.join("report.html").into()]),
    ];
    for (name, args) in commands {
        let o = bin().arg(name).arg("--lake").arg(&lake).args(period).args(&args).output().unwrap();
        assert!(matches!(o.status.code(), Some(0 | 1)), "{name}: {o:?}");
        printed.push((name.into(), [o.stdout, o.stderr].concat()));
    }

    // The quarantine holds both refused spans and the refused request, without the text.
    let q: Vec<Value> = files_under(&lake.join("_quarantine"))
        .iter()
        .filter(|f| f.ends_with(".jsonl"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(lake.join("_quarantine").join(f)).unwrap();
            text.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).collect::<Vec<_>>()
        })
        .collect();
    let mut reasons: Vec<&str> = q.iter().map(|e| e["reason"].as_str().unwrap()).collect();
    reasons.sort();
    assert_eq!(reasons, ["invalid_payload", "missing_field", "missing_field"], "{q:?}");

    for (name, bytes) in &printed {
        assert_clean(name, bytes);
    }
    for d in [&lake, &out] {
        assert_tree_clean(d);
    }
    if wal.exists() {
        assert_tree_clean_or_empty(&wal);
    }
    // The Parquet pages are compressed: read every value back too.
    let all = format!("read_parquet('{}/*/*/*.parquet', union_by_name = true)", lake.display());
    let hits: Vec<String> =
        NEEDLES.iter().map(|n| format!("to_json(t)::VARCHAR LIKE '%{n}%'")).collect();
    let sql = format!("SELECT count(*) FROM {all} t WHERE {}", hits.join(" OR "));
    assert_eq!(duckdb_int(&sql), 0);
}

fn assert_tree_clean_or_empty(dir: &Path) {
    for f in files_under(dir) {
        let path = dir.join(&f);
        assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
    }
}
