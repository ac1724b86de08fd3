//! No free text from spans or usage logs anywhere.
//!
//! Spans whose status message, events, trace state and unknown span, resource and scope
//! attributes carry patient-like text are received by `serve`, ingested from a file (one of
//! them refused, one request malformed around the text), then reconciled, invoiced and
//! reported. No file any command wrote (lake, write-ahead log, quarantine, outputs) and nothing
//! any command printed holds the text.
//!
//! Usage log lines carry the text in unknown and nested fields, before their JSON and in known
//! fields (refused), as NDJSON, a log file and subscription payloads; ingested and replayed at
//! debug and trace level, then reconciled, invoiced, flagged and reported. The quarantine keeps
//! each refused line byte for byte (it is replayable, so the text is there); nothing else does.

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
    assert_parquet_clean(&[&lake, &out]);
}

/// Reads every value of every Parquet file under `dirs` back with DuckDB (the pages are
/// compressed: the bytes would not show the text), failing the test if one holds a needle;
/// returns the rows read.
fn assert_parquet_clean(dirs: &[&Path]) -> i64 {
    let files: Vec<String> = dirs
        .iter()
        .flat_map(|d| {
            files_under(d)
                .into_iter()
                .filter(|f| f.ends_with(".parquet"))
                .map(|f| format!("'{}'", d.join(f).display()))
        })
        .collect();
    assert!(!files.is_empty(), "no Parquet file");
    let all = format!("read_parquet([{}], union_by_name = true)", files.join(", "));
    let hits: Vec<String> =
        NEEDLES.iter().map(|n| format!("to_json(t)::VARCHAR LIKE '%{n}%'")).collect();
    let sql = format!("SELECT count(*) FROM {all} t WHERE {}", hits.join(" OR "));
    assert_eq!(duckdb_int(&sql), 0, "a Parquet value holds the text");
    duckdb_int(&format!("SELECT count(*) FROM {all} t"))
}

fn assert_tree_clean_or_empty(dir: &Path) {
    for f in files_under(dir) {
        let path = dir.join(&f);
        assert_clean(&path.display().to_string(), &std::fs::read(&path).unwrap());
    }
}

// ---------------------------------------------------------------------------------------
// Usage logs

/// The most verbose logging in both formats.
const VERBOSE: [[&str; 4]; 2] = [
    ["--log-level", "debug", "--log-format", "json"],
    ["--log-level", "trace", "--log-format", "text"],
];

/// The binary with the log options `log` alone (none from the environment).
fn verbose_bin(log: &[&str]) -> std::process::Command {
    let mut c = std::process::Command::new(env!("CARGO_BIN_EXE_agentmeter"));
    c.env_remove("AGENTMETER_LOG").args(log);
    c
}

/// A usage object of `clinic-a-north` at second `n` after 08:00 on 2026-10-01 (id `log-{n}`),
/// with the fields of `set` added or replaced (a null removes one).
fn usage(n: u32, set: &Value) -> Value {
    let u = json!({"event": "inference_usage", "event_id": format!("log-{n}"),
        "timestamp": format!("2026-10-01T08:{:02}:{:02}Z", n / 60, n % 60), "tier": "basic",
        "clinic_id": "clinic-a-north", "user_id": "dr.lee@clinic-a.example",
        "model_id": "mistral.ministral-3-8b-instruct", "input_tokens": 100 + n,
        "output_tokens": 10, "total_tokens": 110 + n});
    with(u, set)
}

/// The same with neither time nor id, as agents log it: the log line or event gives the time,
/// and the id is a digest of the line or the log event's own.
fn bare(set: &Value) -> Value {
    with(usage(0, &json!({"timestamp": null, "event_id": null})), set)
}

/// `u` with the fields of `set` added or replaced (a null removes one).
fn with(mut u: Value, set: &Value) -> Value {
    for (k, v) in set.as_object().unwrap() {
        if v.is_null() {
            u.as_object_mut().unwrap().remove(k);
        } else {
            u[k] = v.clone();
        }
    }
    u
}

/// [`NOTE`] where a valid usage line may carry anything: unknown fields, nested objects and
/// arrays, the parts of a known field that are not read.
fn kept_shapes() -> Vec<Value> {
    vec![
        json!({"note": NOTE, "error": NOTE, "prompt": NOTE, "message": NOTE}),
        json!({"metadata": {"note": NOTE, "history": [{"role": "user", "content": NOTE}]}}),
        json!({"service_tier": {"type": "standard", "reason": NOTE}}),
        json!({"session_id": "s-1", "request": {"body": NOTE, "headers": [[NOTE, NOTE]]}}),
    ]
}

/// [`NOTE`] in known fields, or around them in another type: each line is refused.
fn refused_shapes() -> Vec<Value> {
    vec![
        json!({"model_id": NOTE}),
        json!({"user_id": NOTE}),
        json!({"clinic_id": NOTE}),
        json!({"tenant_id": NOTE}),
        json!({"tier": NOTE}),
        json!({"event_id": NOTE}),
        json!({"user_id": null, "actor_id": NOTE}),
        json!({"session_id": NOTE}),
        json!({"input_tokens": NOTE}),
        json!({"total_tokens": NOTE}),
        json!({"cache_read_tokens": NOTE}),
        json!({"timestamp": NOTE}),
        json!({"service_tier": NOTE}),
        json!({"service_tier": {"type": NOTE}}),
        json!({"model_id": {"name": NOTE}}),
        json!({"user_id": [NOTE]}),
        json!({"cache_creation": {"ephemeral_1h_input_tokens": 0, "note": NOTE}}),
    ]
}

/// What [`write_log_inputs`] wrote.
#[derive(Default)]
struct LogInputs {
    /// Usage events that pass.
    kept: u64,
    /// Other logs of the application (skipped).
    skipped: u64,
    /// The exact bytes of each record refused, as the quarantine must keep them.
    refused: Vec<Vec<u8>>,
}

impl LogInputs {
    fn refuse(&mut self, bytes: impl Into<Vec<u8>>) {
        self.refused.push(bytes.into());
    }
}

/// Writes usage logs into `input`: an NDJSON file, a log file in the Lambda runtime's and
/// Python's text formats, and a Firehose file of CloudWatch Logs subscription payloads; with
/// [`NOTE`] in unknown and nested fields, in the text before a line's JSON, as a log message of
/// its own, in known fields (refused) and as a payload's type.
fn write_log_inputs(input: &Path) -> LogInputs {
    std::fs::create_dir_all(input.join("firehose")).unwrap();
    let mut w = LogInputs::default();

    // NDJSON: usage objects, a line that is only the note, a line of broken JSON.
    let mut lines: Vec<String> = Vec::new();
    let shapes = kept_shapes().into_iter().map(|s| (s, true));
    for (n, (set, keep)) in
        shapes.chain(refused_shapes().into_iter().map(|s| (s, false))).enumerate()
    {
        let line = usage(n as u32 + 1, &set).to_string();
        if keep {
            w.kept += 1;
        } else {
            w.refuse(line.clone());
        }
        lines.push(line);
    }
    for line in [NOTE.to_owned(), format!(r#"{{"event":"inference_usage","note":"{NOTE}","#)] {
        w.refuse(line.clone());
        lines.push(line);
    }
    std::fs::write(input.join("usage.ndjson"), lines.join("\n") + "\n").unwrap();

    // A log file: the note before the JSON under each prefix, alone as a message (another log
    // of the application), and in known fields.
    let mut lines: Vec<String> = Vec::new();
    for (i, set) in kept_shapes().iter().enumerate() {
        lines.push(format!("2026-10-01T09:00:0{i}.000Z\treq-{i}\tINFO\t{NOTE}: {}", bare(set)));
    }
    lines.push(format!("2026-10-01 09:02:00,123 ERROR clinic_agent {NOTE} {}", bare(&json!({}))));
    let timed = bare(&json!({"timestamp": "2026-10-01T09:03:00Z"}));
    lines.push(format!("WARNING:clinic_agent:{NOTE} {timed}"));
    w.kept += lines.len() as u64;
    lines.push(format!("2026-10-01T09:04:00.000Z\treq-8\tERROR\t{NOTE}"));
    lines.push(format!("2026-10-01 09:05:00,000 - clinic_agent - ERROR - {NOTE}"));
    w.skipped += 2;
    for (i, set) in refused_shapes().iter().enumerate() {
        let line = format!("2026-10-01T09:10:{i:02}.000Z\treq-r{i}\tINFO\t{NOTE} {}", bare(set));
        w.refuse(line.clone());
        lines.push(line);
    }
    std::fs::write(input.join("agent.log"), lines.join("\n") + "\n").unwrap();

    // Subscription payloads, two gzip members as Firehose writes them: the note in log
    // events' messages (bare, after a Lambda prefix, inside the Lambda JSON log format), a log
    // event id holding it, and a payload whose type is the note.
    let mut events: Vec<Value> = Vec::new();
    let mut event = |id: String, msg: String| {
        let at = 1_790_848_800_000i64 + 1000 * events.len() as i64; // 2026-10-01T10:00:00Z
        let ev = json!({"id": id, "timestamp": at, "message": msg});
        events.push(ev.clone());
        ev.to_string()
    };
    let mut n = 0;
    let mut id = || {
        n += 1;
        format!("{:056}", 37_000_000 + n)
    };
    for set in kept_shapes() {
        let u = bare(&set);
        event(id(), u.to_string());
        event(id(), format!("2026-10-01T10:00:00.000Z\treq\tINFO\t{NOTE} {u}\n"));
        let record = json!({"timestamp": "2026-10-01T10:00:00Z", "level": "INFO",
            "message": format!("{NOTE} {u}"), "logger": "root", "requestId": "req"});
        event(id(), record.to_string());
        w.kept += 3;
    }
    event(id(), NOTE.to_owned());
    event(id(), format!("[ERROR]\t2026-10-01T10:00:00.000Z\treq\t{NOTE}\n"));
    event(id(), json!({"level": "ERROR", "message": NOTE, "requestId": "req"}).to_string());
    w.skipped += 3;
    for set in refused_shapes() {
        let ev = event(id(), format!("INFO:root:{NOTE} {}", bare(&set)));
        // A log event's time is its own: a `timestamp` in its message is not read.
        if set.get("timestamp").is_some() {
            w.kept += 1;
        } else {
            w.refuse(ev);
        }
    }
    let ev = event(id(), format!(r#"{{"event":"inference_usage","note":"{NOTE}""#));
    w.refuse(ev);
    let ev = event(NOTE.to_owned(), bare(&json!({"note": NOTE})).to_string());
    w.refuse(ev);
    let payload = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/aws/lambda/clinic-agent", "logStream": "2026/10/01/[$LATEST]abc",
        "subscriptionFilters": ["agentmeter-usage"], "logEvents": events});
    let strange = json!({"messageType": NOTE, "logEvents": [{"id": "1", "timestamp": 0,
        "message": NOTE}]});
    let strange = gzip(strange.to_string().as_bytes());
    w.refuse(strange.clone());
    let mut file = gzip(payload.to_string().as_bytes());
    file.extend(strange);
    std::fs::write(input.join("firehose/part-0001"), file).unwrap();
    w
}

/// Every file under `dir` with its bytes.
fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    files_under(dir)
        .into_iter()
        .map(|f| {
            let bytes = std::fs::read(dir.join(&f)).unwrap();
            (f, bytes)
        })
        .collect()
}

fn holds_needle(bytes: &[u8]) -> bool {
    NEEDLES.iter().any(|n| bytes.windows(n.len()).any(|w| w == n.as_bytes()))
}

#[test]
fn no_log_text_reaches_any_file_or_output_but_the_quarantine() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (input, lake) = (root.join("input"), root.join("lake"));
    let inputs = write_log_inputs(&input);
    let refused = inputs.refused.len() as u64;
    let prices = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/prices.toml");
    let mut printed: Vec<(String, Vec<u8>)> = Vec::new();
    let mut first_quarantine = Vec::new();

    for (i, log) in VERBOSE.iter().enumerate() {
        let label = log.join(" ");
        // The first run writes; the second finds every event in the lake and refuses the same
        // records again; then the quarantine is replayed.
        for (what, source) in [("ingest", input.clone()), ("replay", lake.join("_quarantine"))] {
            let o = verbose_bin(log)
                .args(["ingest", "--json", "--no-progress", "--lake"])
                .arg(&lake)
                .arg(&source)
                .output()
                .unwrap();
            assert!(o.status.success(), "{label} {what}: {}", String::from_utf8_lossy(&o.stderr));
            let summary: Value = serde_json::from_slice(&o.stdout).unwrap();
            let a = accounting(&summary);
            assert!(a.balances(), "{summary}");
            assert_eq!(a.quarantined_total(), refused, "{label} {what}: {summary}");
            if what == "ingest" {
                let written = if i == 0 { inputs.kept } else { 0 };
                let got = (a.events_written, a.duplicates, a.skipped_total());
                assert_eq!(got, (written, inputs.kept - written, inputs.skipped), "{summary}");
            }
            // Verbose indeed: each refusal logged.
            let logged = o.stderr.windows(19).filter(|w| w == b"Record quarantined.").count();
            assert_eq!(logged as u64, refused, "{label} {what}");
            printed.push((format!("{label}: {what}"), [o.stdout, o.stderr].concat()));
            if i == 0 && what == "ingest" {
                first_quarantine = tree(&lake.join("_quarantine"));
            }
        }

        let out = root.join(format!("out-{i}"));
        let commands: Vec<(&str, Vec<std::ffi::OsString>)> = vec![
            ("reconcile", vec!["--out".into(), out.join("reconcile.csv").into()]),
            (
                "invoice",
                vec!["--prices".into(), prices.clone().into(), "--out".into(), out.clone().into()],
            ),
            ("flags", vec!["--out".into(), out.clone().into()]),
            ("report", vec!["--out".into(), out.join("report.html").into()]),
        ];
        for (name, args) in commands {
            let o = verbose_bin(log)
                .arg(name)
                .arg("--lake")
                .arg(&lake)
                .args(["--period", "2026-10"])
                .args(&args)
                .output()
                .unwrap();
            assert!(matches!(o.status.code(), Some(0 | 1)), "{label} {name}: {o:?}");
            printed.push((format!("{label}: {name}"), [o.stdout, o.stderr].concat()));
        }
    }

    // Nothing printed holds the text.
    let mut lines = 0;
    for (name, bytes) in &printed {
        assert_clean(name, bytes);
        lines += bytes.split(|b| *b == b'\n').count();
    }
    // The quarantine keeps each refused record byte for byte, replays leave it as it was, and
    // it is the one place the text is.
    let quarantine = tree(&lake.join("_quarantine"));
    assert!(quarantine == first_quarantine, "replaying changed the quarantine");
    let mut kept: Vec<Vec<u8>> = quarantine
        .iter()
        .filter(|(f, _)| f.ends_with(".jsonl"))
        .flat_map(|(_, text)| text.split(|b| *b == b'\n').filter(|l| !l.is_empty()))
        .map(|l| {
            let e: agentmeter_schemas::QuarantineEntry = serde_json::from_slice(l).unwrap();
            e.raw_bytes().unwrap()
        })
        .collect();
    let mut want = inputs.refused.clone();
    kept.sort();
    want.sort();
    assert!(kept == want, "the quarantine keeps other bytes than the records refused");
    let mut scanned = 0;
    for f in files_under(root) {
        if !(f.starts_with("input/") || f.starts_with("lake/_quarantine/")) {
            assert_clean(&f, &std::fs::read(root.join(&f)).unwrap());
            scanned += 1;
        }
    }
    let outs: Vec<_> = (0..VERBOSE.len()).map(|i| root.join(format!("out-{i}"))).collect();
    let rows = assert_parquet_clean(&[&lake, &outs[0], &outs[1]]);
    let holding = quarantine.iter().filter(|(_, b)| holds_needle(b)).count();
    println!(
        "log text: {} records kept, {refused} refused (in the quarantine byte for byte; {holding} \
         of its {} files hold the text); {} runs, {lines} printed lines, {scanned} files and \
         {rows} Parquet rows without it",
        inputs.kept,
        quarantine.len(),
        printed.len()
    );
}
