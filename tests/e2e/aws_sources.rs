//! The AWS sources against moto in server mode: a log group with a subscription filter to a
//! Kinesis stream, usage lines put with PutLogEvents, `ingest kinesis://` (exact totals,
//! checkpoints, a SIGKILL in the middle of `--follow`), and a `logs://` backfill of the same
//! events that adds nothing, and `s3://` objects read once each (by key and ETag).

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use agentmeter_testkit::moto::MotoServer;
use aws_config::{BehaviorVersion, Region};
use aws_sdk_cloudwatchlogs::types::InputLogEvent;
use serde_json::Value;

use crate::util::*;

const STREAM: &str = "usage";
const GROUP: &str = "/aws/lambda/clinic-agent";
const TENANTS: [(&str, &str); 3] =
    [("basic", "clinic-a"), ("basic", "clinic-b"), ("premium", "hospital-c")];

/// moto with the stream, the log group and the subscription filter between them.
pub(crate) struct Aws {
    moto: MotoServer,
    pub(crate) rt: tokio::runtime::Runtime,
    kinesis: aws_sdk_kinesis::Client,
    logs: aws_sdk_cloudwatchlogs::Client,
    pub(crate) s3: aws_sdk_s3::Client,
    /// Events put so far; also numbers the next one.
    put: usize,
    /// Per tenant: events and total tokens put.
    totals: BTreeMap<String, (i64, i64)>,
    /// Time of the first event, ms.
    t0: i64,
}

impl Aws {
    pub(crate) fn start() -> Aws {
        let moto = MotoServer::start();
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let config = rt.block_on(
            aws_config::defaults(BehaviorVersion::latest())
                .endpoint_url(moto.endpoint())
                .region(Region::new("us-east-1"))
                .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                    "test", "test", None, None, "test",
                ))
                .load(),
        );
        let kinesis = aws_sdk_kinesis::Client::new(&config);
        let logs = aws_sdk_cloudwatchlogs::Client::new(&config);
        let s3 = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
        );
        rt.block_on(async {
            kinesis.create_stream().stream_name(STREAM).shard_count(2).send().await.unwrap();
            let arn = kinesis
                .describe_stream_summary()
                .stream_name(STREAM)
                .send()
                .await
                .unwrap()
                .stream_description_summary()
                .unwrap()
                .stream_arn()
                .to_owned();
            logs.create_log_group().log_group_name(GROUP).send().await.unwrap();
            for s in ["2026/11/22/[$LATEST]a1", "2026/11/22/[$LATEST]b2"] {
                logs.create_log_stream()
                    .log_group_name(GROUP)
                    .log_stream_name(s)
                    .send()
                    .await
                    .unwrap();
            }
            logs.put_subscription_filter()
                .log_group_name(GROUP)
                .filter_name("usage-to-kinesis")
                .filter_pattern("{ $.event = \"inference_usage\" }")
                .destination_arn(arn)
                .role_arn("arn:aws:iam::123456789012:role/cwl-to-kinesis")
                .send()
                .await
                .unwrap();
        });
        // Recent times: CloudWatch refuses events older than 14 days.
        let t0 = chrono::Utc::now().timestamp_millis() - 3_600_000;
        Aws { moto, rt, kinesis, logs, s3, put: 0, totals: BTreeMap::new(), t0 }
    }

    /// One PutLogEvents call of `n` usage lines (one Kinesis record through the filter),
    /// alternating between the two log streams.
    pub(crate) fn put_usage(&mut self, n: usize) {
        let mut events = Vec::with_capacity(n);
        for _ in 0..n {
            let i = self.put;
            self.put += 1;
            let (tier, tenant) = TENANTS[i % 3];
            let (input, output) = (100 + (i % 50) as i64, 20 + (i % 7) as i64);
            let ts = self.t0 + i as i64;
            let time = chrono::DateTime::from_timestamp_millis(ts).unwrap();
            let line = serde_json::json!({
                "event": "inference_usage", "tier": tier, "clinic_id": tenant,
                "user_id": format!("dr.{}", i % 4), "model_id": "openai.gpt-oss-120b-1:0",
                "input_tokens": input, "output_tokens": output, "total_tokens": input + output,
                "timestamp": time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            });
            // As the Lambda Python runtime's text format writes it.
            let message = format!(
                "{}\t8f5a3c1e-0000-4000-8000-{i:012}\tINFO\t{line}",
                time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
            events.push(InputLogEvent::builder().timestamp(ts).message(message).build().unwrap());
            let t = self.totals.entry(tenant.to_owned()).or_default();
            t.0 += 1;
            t.1 += input + output;
        }
        let stream = ["2026/11/22/[$LATEST]a1", "2026/11/22/[$LATEST]b2"][self.put % 2];
        self.rt
            .block_on(
                self.logs
                    .put_log_events()
                    .log_group_name(GROUP)
                    .log_stream_name(stream)
                    .set_log_events(Some(events))
                    .send(),
            )
            .unwrap();
    }

    /// A record put on the stream directly.
    pub(crate) fn put_record(&self, key: &str, data: Vec<u8>) {
        self.rt
            .block_on(
                self.kinesis
                    .put_record()
                    .stream_name(STREAM)
                    .partition_key(key)
                    .data(aws_sdk_kinesis::primitives::Blob::new(data))
                    .send(),
            )
            .unwrap();
    }

    /// Puts an S3 object.
    pub(crate) fn put_object(&self, bucket: &str, key: &str, body: Vec<u8>) {
        self.rt
            .block_on(
                self.s3
                    .put_object()
                    .bucket(bucket)
                    .key(key)
                    .body(aws_sdk_s3::primitives::ByteStream::from(body))
                    .send(),
            )
            .unwrap();
    }

    /// `agentmeter ARGS` with the standard AWS environment pointed at moto.
    /// The moto server's port.
    pub(crate) fn moto_port(&self) -> u16 {
        self.moto.port()
    }

    pub(crate) fn cmd(&self, args: &[&str]) -> Command {
        let mut c = bin();
        c.args(args)
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env_remove("AWS_PROFILE")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        c
    }

    pub(crate) fn ingest(&self, lake: &Path, extra: &[&str]) -> Value {
        let lake = lake.to_str().unwrap();
        let mut args = vec!["ingest", "--lake", lake, "--json", "--no-progress"];
        args.extend_from_slice(extra);
        let out = ok(&mut self.cmd(&args));
        serde_json::from_slice(&out.stdout).expect("summary JSON")
    }

    /// A `logs://` backfill of every event put (the days around them).
    pub(crate) fn logs_source(&self) -> String {
        let day = chrono::DateTime::from_timestamp_millis(self.t0).unwrap().date_naive();
        format!(
            "logs://{GROUP}?start={}&end={}",
            day.pred_opt().unwrap(),
            day.succ_opt().unwrap().succ_opt().unwrap()
        )
    }

    /// Usage events put so far.
    pub(crate) fn put_count(&self) -> usize {
        self.put
    }

    /// Per tenant (events, total tokens) as put.
    pub(crate) fn want(&self) -> Vec<(String, i64, i64)> {
        self.totals.iter().map(|(t, (n, tok))| (t.clone(), *n, *tok)).collect()
    }
}

/// Per tenant (events, total tokens) in `usage_events`, and `usage_hourly` agreeing (tenants
/// with spans only have rows without invocations there).
pub(crate) fn lake_totals(lake: &Path) -> Vec<(String, i64, i64)> {
    let rows = |t: &str, n: &str| {
        duckdb(&format!(
            "SELECT tenant_id, {n} AS n, sum(total_tokens) AS t FROM {} GROUP BY 1 HAVING n > 0 ORDER BY 1",
            table(lake, t)
        ))
        .iter()
        .map(|r| {
            (
                r["tenant_id"].as_str().unwrap().to_owned(),
                r["n"].as_i64().unwrap(),
                r["t"].as_i64().unwrap(),
            )
        })
        .collect::<Vec<_>>()
    };
    let events = rows("usage_events", "count(*)");
    assert_eq!(rows("usage_hourly", "sum(invocations)"), events, "usage_hourly agrees");
    events
}

pub(crate) fn count(summary: &Value, key: &str) -> i64 {
    summary["accounting"][key].as_i64().unwrap_or_else(|| panic!("{key} in {summary}"))
}

fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// The saved checkpoint of every shard of the one stream checkpointed in `lake`, by shard id
/// (one object per shard under `_state/checkpoints/kinesis/<stream digest>/`).
fn shard_checkpoints(lake: &Path) -> BTreeMap<String, Value> {
    let root = lake.join("_state/checkpoints/kinesis");
    let streams: Vec<_> = std::fs::read_dir(&root).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(streams.len(), 1, "{streams:?}");
    std::fs::read_dir(&streams[0])
        .unwrap()
        .map(|e| {
            let v: Value =
                serde_json::from_slice(&std::fs::read(e.unwrap().path()).unwrap()).unwrap();
            (v["shard"].as_str().unwrap().to_owned(), v)
        })
        .collect()
}

#[test]
fn kinesis_lands_exact_totals_checkpoints_and_survives_a_kill_in_the_middle() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut aws = Aws::start();
    for _ in 0..8 {
        aws.put_usage(25);
    }
    // A corrupt record and a raw NDJSON record (two usage lines with their own ids).
    let mut corrupt = gzip(br#"{"messageType":"DATA_MESSAGE"}"#);
    corrupt.truncate(corrupt.len() - 6);
    aws.put_record("bad", corrupt);
    let raw = (0..2)
        .map(|k| {
            format!(
                r#"{{"event":"inference_usage","event_id":"raw-{k}","tier":"basic","clinic_id":"clinic-a","user_id":"nurse.x","model_id":"openai.gpt-oss-120b-1:0","input_tokens":5,"output_tokens":5,"total_tokens":10,"timestamp":"{}"}}"#,
                chrono::DateTime::from_timestamp_millis(aws.t0).unwrap().to_rfc3339()
            )
        })
        .collect::<Vec<_>>()
        .join("\n");
    aws.put_record("raw", raw.into_bytes());
    let a = aws.totals.get_mut("clinic-a").unwrap();
    (a.0, a.1) = (a.0 + 2, a.1 + 20);

    let s = aws.ingest(&lake, &["kinesis://usage"]);
    assert_eq!(count(&s, "records_read"), 203, "{s}");
    assert_eq!(count(&s, "events_written"), 202, "{s}");
    assert_eq!(s["accounting"]["quarantined"]["invalid_gzip"], 1, "{s}");
    assert_eq!(s["balanced"], true);
    assert_eq!(lake_totals(&lake), aws.want());
    // The corrupt record is quarantined under its shard and sequence number, bytes kept.
    let q = duckdb(&format!(
        "SELECT source, format FROM read_json_auto('{}/_quarantine/*.jsonl')",
        lake.display()
    ));
    assert_eq!(q.len(), 1);
    assert!(q[0]["source"].as_str().unwrap().starts_with("kinesis://usage/shardId-"), "{q:?}");
    assert_eq!(q[0]["format"], "cwl_payload_gzip");
    let cp = shard_checkpoints(&lake);
    assert_eq!(cp.len(), 2, "{cp:?}");
    assert!(cp.values().all(|c| c["stream"] == STREAM), "{cp:?}");

    // Nothing new: nothing read, nothing written.
    let s = aws.ingest(&lake, &["kinesis://usage"]);
    assert_eq!((count(&s, "records_read"), count(&s, "events_written")), (0, 0), "{s}");

    // --follow while usage keeps arriving; SIGKILL in the middle; the rest afterwards.
    let mut child = aws
        .cmd(&[
            "ingest",
            "--lake",
            lake.to_str().unwrap(),
            "--no-progress",
            "--follow",
            "--checkpoint-interval-ms",
            "50",
            "kinesis://usage",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let before = shard_checkpoints(&lake);
    for _ in 0..10 {
        aws.put_usage(30);
        std::thread::sleep(Duration::from_millis(40));
    }
    // Killed only once it has checkpointed some of the new records.
    let deadline = Instant::now() + Duration::from_secs(60);
    while shard_checkpoints(&lake) == before {
        assert!(Instant::now() < deadline, "no checkpoint while following");
        assert!(child.try_wait().unwrap().is_none(), "--follow exited");
        std::thread::sleep(Duration::from_millis(20));
    }
    for _ in 0..5 {
        aws.put_usage(30);
    }
    child.kill().unwrap();
    child.wait().unwrap();
    for _ in 0..5 {
        aws.put_usage(30);
    }
    let s = aws.ingest(&lake, &["kinesis://usage"]);
    assert_eq!(s["balanced"], true, "{s}");
    assert_eq!(lake_totals(&lake), aws.want());
    assert_eq!(aws.put, 200 + 600);
    let events = duckdb_int(&format!("SELECT count(*) FROM {}", table(&lake, "usage_events")));
    assert_eq!(events, 802);

    // Before each checkpoint the days committed are recorded as owing their rollups, and
    // cleared once rolled up. A run stopped after its last checkpoint, before its rollups,
    // leaves them owed: the next run rolls them up though it reads nothing new.
    let ledger = owed_ledger(&lake);
    let owed =
        |path: &Path| -> Value { serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap() };
    assert_eq!(owed(&ledger)["source"], "kinesis://usage");
    assert_eq!(owed(&ledger)["days"], serde_json::json!([]));
    let days: Vec<String> = files_under(&lake.join("usage_hourly"))
        .iter()
        .map(|f| f.split('/').next().unwrap().trim_start_matches("dt=").to_owned())
        .collect();
    assert!(!days.is_empty());
    for t in ["usage_hourly", "tenant_hourly", "agent_invocations"] {
        std::fs::remove_dir_all(lake.join(t)).unwrap();
    }
    std::fs::write(
        &ledger,
        serde_json::json!({"source": "kinesis://usage", "days": days}).to_string(),
    )
    .unwrap();
    let s = aws.ingest(&lake, &["kinesis://usage"]);
    assert_eq!(count(&s, "records_read"), 0, "{s}");
    assert_eq!(s["partitions_rolled_up"], days.len(), "{s}");
    assert_eq!(lake_totals(&lake), aws.want());
    assert_eq!(owed(&ledger)["days"], serde_json::json!([]));
}

/// The one rollups-owed ledger of `lake` (`_state/rollups_owed/<source digest>.json`).
fn owed_ledger(lake: &Path) -> std::path::PathBuf {
    let dir = lake.join("_state/rollups_owed");
    let files: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn a_logs_backfill_of_the_same_events_adds_nothing_and_pages() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut aws = Aws::start();
    // Over FilterLogEvents' 10,000 events per page.
    for _ in 0..11 {
        aws.put_usage(1000);
    }
    let s = aws.ingest(&lake, &["kinesis://usage"]);
    assert_eq!(count(&s, "events_written"), 11_000, "{s}");
    let day = chrono::DateTime::from_timestamp_millis(aws.t0).unwrap().date_naive();
    let logs = format!(
        "logs://{GROUP}?start={}&end={}",
        day.pred_opt().unwrap(),
        day.succ_opt().unwrap().succ_opt().unwrap()
    );
    let s = aws.ingest(&lake, &[&logs]);
    assert_eq!(count(&s, "records_read"), 11_000, "{s}");
    assert_eq!(count(&s, "events_written"), 0, "{s}");
    assert_eq!(count(&s, "duplicates"), 11_000, "{s}");
    assert_eq!(lake_totals(&lake), aws.want());

    // The backfill alone, into a new lake, gives the same totals.
    let fresh = dir.path().join("fresh");
    let s = aws.ingest(&fresh, &[&logs]);
    assert_eq!(count(&s, "events_written"), 11_000, "{s}");
    assert_eq!(lake_totals(&fresh), aws.want());

    // A window that holds none of them reads nothing.
    let before = format!("logs://{GROUP}?start=2020-01-01&end=2020-01-02");
    let s = aws.ingest(&fresh, &[&before]);
    assert_eq!(count(&s, "records_read"), 0, "{s}");
}

#[test]
fn aws_sources_fail_clearly_without_a_region_or_with_a_missing_stream() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let aws = Aws::start();
    let out = aws
        .cmd(&["ingest", "--lake", lake.to_str().unwrap(), "kinesis://usage"])
        .env_remove("AWS_REGION")
        .env_remove("AWS_DEFAULT_REGION")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no AWS region configured"));
    let out =
        aws.cmd(&["ingest", "--lake", lake.to_str().unwrap(), "kinesis://nope"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("kinesis://nope") && err.contains("ResourceNotFoundException"), "{err}");
    let out = aws
        .cmd(&["ingest", "--lake", lake.to_str().unwrap(), "--follow", "/tmp"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--follow needs a kinesis:// source"));
}

/// A gzip CloudWatch subscription payload of usage events with ids `{prefix}-{i}`.
pub(crate) fn firehose_payload(prefix: &str, n: usize, tokens: i64) -> Vec<u8> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let line = serde_json::json!({
                "event": "inference_usage", "tier": "premium", "clinic_id": "hospital-c",
                "user_id": "dr.s3", "model_id": "openai.gpt-oss-120b-1:0",
                "input_tokens": tokens - 1, "output_tokens": 1, "total_tokens": tokens,
            });
            serde_json::json!({"id": format!("{prefix}-{i}"), "timestamp": 1_790_841_600_000i64 + i as i64, "message": line.to_string()})
        })
        .collect();
    let payload = serde_json::json!({
        "messageType": "DATA_MESSAGE", "owner": "123456789012", "logGroup": GROUP,
        "logStream": "2026/10/01/[$LATEST]abc", "subscriptionFilters": ["usage"], "logEvents": events,
    });
    gzip(payload.to_string().as_bytes())
}

fn ndjson_lines(ids: std::ops::Range<usize>) -> String {
    ids.map(|i| {
        format!(
            r#"{{"event":"inference_usage","event_id":"nd-{i}","tier":"basic","clinic_id":"clinic-a","user_id":"nurse.x","model_id":"openai.gpt-oss-120b-1:0","input_tokens":7,"output_tokens":3,"total_tokens":10,"timestamp":"2026-10-01T09:00:00Z"}}"#
        ) + "\n"
    })
    .collect()
}

#[test]
fn s3_objects_are_read_once_each_and_a_replaced_object_again() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let aws = Aws::start();
    aws.rt.block_on(aws.s3.create_bucket().bucket("usage-logs").send()).unwrap();
    // Firehose output: concatenated gzip payloads, one object per delivery.
    let mut firehose = firehose_payload("fh-a", 40, 100);
    firehose.extend(firehose_payload("fh-b", 60, 100));
    aws.put_object(
        "usage-logs",
        "agents/firehose/2026/10/01/09/usage-1-2026-10-01-09-00-00.gz",
        firehose,
    );
    aws.put_object(
        "usage-logs",
        "agents/firehose/2026/10/01/10/usage-1-2026-10-01-10-00-00.gz",
        firehose_payload("fh-c", 25, 100),
    );
    aws.put_object(
        "usage-logs",
        "agents/ndjson/part-0001.ndjson",
        (ndjson_lines(0..5) + "{not json\n").into_bytes(),
    );
    aws.put_object(
        "usage-logs",
        "agents/otlp/strands-trace.json",
        crate::otlp_client::STRANDS_FIXTURE.as_bytes().to_vec(),
    );
    aws.put_object("usage-logs", "elsewhere/ignored.ndjson", ndjson_lines(100..110).into_bytes());

    let s = aws.ingest(&lake, &["s3://usage-logs/agents/"]);
    assert_eq!(count(&s, "events_written"), 130, "{s}");
    assert_eq!(count(&s, "spans_written"), 7, "{s}");
    assert_eq!(s["accounting"]["quarantined"]["invalid_json"], 1, "{s}");
    assert_eq!(count(&s, "records_read"), 130 + 7 + 1, "{s}");
    assert_eq!(s["balanced"], true);
    let per_tenant = duckdb(&format!(
        "SELECT tenant_id, count(*) AS n, sum(total_tokens) AS t, min(source) AS src FROM {} GROUP BY 1 ORDER BY 1",
        table(&lake, "usage_events")
    ));
    assert_eq!(per_tenant.len(), 2);
    assert_eq!((per_tenant[0]["n"].as_i64(), per_tenant[0]["t"].as_i64()), (Some(5), Some(50)));
    assert_eq!(per_tenant[0]["src"], "s3://usage-logs/agents/ndjson/part-0001.ndjson");
    assert_eq!(
        (per_tenant[1]["n"].as_i64(), per_tenant[1]["t"].as_i64()),
        (Some(125), Some(12_500))
    );
    let q = duckdb(&format!(
        "SELECT source FROM read_json_auto('{}/_quarantine/*.jsonl')",
        lake.display()
    ));
    assert_eq!(q.len(), 1);
    assert_eq!(q[0]["source"], "s3://usage-logs/agents/ndjson/part-0001.ndjson");
    assert!(!lake.join("_state/download").exists(), "downloads removed");

    // Nothing new: nothing read.
    let s = aws.ingest(&lake, &["s3://usage-logs/agents/"]);
    assert_eq!(count(&s, "records_read"), 0, "{s}");

    // The NDJSON object replaced (new ETag), its bad line fixed and one line added: read again,
    // one new event, the old ones duplicates, its quarantine file gone.
    aws.put_object("usage-logs", "agents/ndjson/part-0001.ndjson", ndjson_lines(0..6).into_bytes());
    let s = aws.ingest(&lake, &["s3://usage-logs/agents/"]);
    assert_eq!(
        (count(&s, "records_read"), count(&s, "events_written"), count(&s, "duplicates")),
        (6, 1, 5),
        "{s}"
    );
    assert_eq!(s["quarantine_files_removed"], 1, "{s}");
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {}", table(&lake, "usage_events"))), 131);
}

/// kinesalite (npm), which closes a split shard as AWS does, on 127.0.0.1 and a free port.
struct Kinesalite {
    child: std::process::Child,
    port: u16,
}

impl Kinesalite {
    fn start() -> Kinesalite {
        use std::io::BufRead;
        let modules = std::env::var_os("AGENTMETER_KINESALITE")
            .map(std::path::PathBuf::from)
            .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/node"));
        assert!(
            modules.join("node_modules/kinesalite").is_dir(),
            "kinesalite not found in {}: run scripts/test, which installs it",
            modules.display()
        );
        let mut child = Command::new("node")
            .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/kinesalite/serve.js"))
            .env("KINESALITE_MODULES", &modules)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node");
        let mut line = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap()).read_line(&mut line).unwrap();
        let port = line.trim().strip_prefix("listening ").and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            panic!("kinesalite did not start: {line:?}");
        };
        Kinesalite { child, port }
    }

    fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}

impl Drop for Kinesalite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn raw_usage(id: &str, tokens: i64) -> Vec<u8> {
    format!(
        r#"{{"event":"inference_usage","event_id":"{id}","tier":"basic","clinic_id":"clinic-r","user_id":"dr.r","model_id":"openai.gpt-oss-120b-1:0","input_tokens":{},"output_tokens":1,"total_tokens":{tokens},"timestamp":"2026-10-01T09:00:00Z"}}"#,
        tokens - 1
    )
    .into_bytes()
}

#[test]
fn a_split_shard_is_read_to_its_end_before_its_children() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let k = Kinesalite::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let config = rt.block_on(
        aws_config::defaults(BehaviorVersion::latest())
            .endpoint_url(k.endpoint())
            .region(Region::new("us-east-1"))
            .credentials_provider(aws_sdk_kinesis::config::Credentials::new(
                "test", "test", None, None, "test",
            ))
            .load(),
    );
    let client = aws_sdk_kinesis::Client::new(&config);
    let put = |key: String, data: Vec<u8>| {
        rt.block_on(
            client
                .put_record()
                .stream_name("resharded")
                .partition_key(key)
                .data(aws_sdk_kinesis::primitives::Blob::new(data))
                .send(),
        )
        .unwrap();
    };
    rt.block_on(client.create_stream().stream_name("resharded").shard_count(1).send()).unwrap();
    let ingest = || {
        let mut c = bin();
        c.args(["ingest", "--lake", lake.to_str().unwrap(), "--json", "--no-progress"])
            .arg("kinesis://resharded")
            .env("AWS_ENDPOINT_URL", k.endpoint())
            .env("AWS_REGION", "us-east-1")
            .env("AWS_ACCESS_KEY_ID", "test")
            .env("AWS_SECRET_ACCESS_KEY", "test")
            .env("AWS_CONFIG_FILE", "/nonexistent")
            .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        let out = ok(&mut c);
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    for i in 0..50 {
        put(format!("k{i}"), raw_usage(&format!("p-{i}"), 10));
    }
    assert_eq!(count(&ingest(), "events_written"), 50);
    // Unread records in the parent, more than one GetRecords returns, the last sharing an id
    // with a later child record: the parent is read to its end first, so its copy is kept.
    for chunk in 0..21 {
        let entries: Vec<_> = (0..500)
            .map(|j| {
                let i = 50 + chunk * 500 + j;
                aws_sdk_kinesis::types::PutRecordsRequestEntry::builder()
                    .partition_key(format!("k{i}"))
                    .data(aws_sdk_kinesis::primitives::Blob::new(raw_usage(&format!("p-{i}"), 10)))
                    .build()
                    .unwrap()
            })
            .collect();
        let out = rt
            .block_on(
                client.put_records().stream_name("resharded").set_records(Some(entries)).send(),
            )
            .unwrap();
        assert_eq!(out.failed_record_count(), Some(0));
    }
    put("same".into(), raw_usage("shared", 10));
    rt.block_on(
        client
            .split_shard()
            .stream_name("resharded")
            .shard_to_split("shardId-000000000000")
            .new_starting_hash_key("170141183460469231731687303715884105728")
            .send(),
    )
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s =
            rt.block_on(client.describe_stream_summary().stream_name("resharded").send()).unwrap();
        let d = s.stream_description_summary().unwrap();
        if d.stream_status().as_str() == "ACTIVE" && d.open_shard_count() == 2 {
            break;
        }
        assert!(Instant::now() < deadline, "split not done");
        std::thread::sleep(Duration::from_millis(50));
    }
    put("same".into(), raw_usage("shared", 99));
    for i in 0..60 {
        put(format!("c{i}"), raw_usage(&format!("c-{i}"), 20));
    }
    let s = ingest();
    assert_eq!(
        (count(&s, "events_written"), count(&s, "duplicates"), count(&s, "conflicting_duplicates")),
        (10_500 + 61, 1, 1),
        "{s}"
    );
    let shared = duckdb_int(&format!(
        "SELECT total_tokens FROM {} WHERE event_id = 'shared'",
        table(&lake, "usage_events")
    ));
    assert_eq!(shared, 10, "the parent's record came first");
    let shards = shard_checkpoints(&lake);
    assert_eq!(shards.len(), 3, "{shards:?}");
    assert_eq!(shards["shardId-000000000000"]["finished"], true, "{shards:?}");
    assert_eq!(shards.values().filter(|s| s["finished"] == false).count(), 2, "{shards:?}");

    // After the split: new records on the children only, read once.
    for i in 60..80 {
        put(format!("c{i}"), raw_usage(&format!("c-{i}"), 20));
    }
    let s = ingest();
    assert_eq!((count(&s, "records_read"), count(&s, "events_written")), (20, 20), "{s}");
    let t = table(&lake, "usage_events");
    assert_eq!(duckdb_int(&format!("SELECT count(*) FROM {t}")), 10_631);
    assert_eq!(duckdb_int(&format!("SELECT sum(total_tokens) FROM {t}")), 10_551 * 10 + 80 * 20);
}
