//! The handler fed KinesisEvents as Lambda delivers them (FORMATS.md 1.3), built from real
//! subscription payloads: a corrupt record is quarantined, not failed; a lake that cannot be
//! written fails the batch from its first record; the retry leaves exact totals; concurrent
//! invocations on an S3 lake (moto) are exact.

#![allow(clippy::unwrap_used)]

mod kinesis_event;
mod runtime_api;

use std::io::{BufReader, Write};
use std::net::TcpListener;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use agentmeter_aggregate::Lake;
use agentmeter_ingest::Decoder;
use agentmeter_lambda::{Handler, source};
use agentmeter_schemas::tables::USAGE_EVENTS;
use aws_lambda_events::event::kinesis::KinesisEvent;
use aws_lambda_events::event::streams::KinesisEventResponse;
use kinesis_event::event_json;
use serde_json::{Value, json};

/// A subscription payload of `n` usage events with ids `{prefix}-{i}`, `tokens` each.
fn payload(prefix: &str, n: usize, tokens: i64) -> Vec<u8> {
    let events: Vec<Value> = (0..n)
        .map(|i| {
            let line = json!({
                "event": "inference_usage", "tier": "basic", "clinic_id": "clinic-a",
                "user_id": "dr.lee", "model_id": "openai.gpt-oss-120b-1:0",
                "input_tokens": tokens - 2, "output_tokens": 2, "total_tokens": tokens,
            });
            json!({"id": format!("{prefix}-{i}"), "timestamp": 1_790_841_600_000i64 + i as i64,
                   "message": format!("2026-10-01T08:00:00.000Z\tr-{i}\tINFO\t{line}")})
        })
        .collect();
    kinesis_event::subscription_payload(events)
}

/// The same, deserialized as the runtime does.
fn event(records: &[(&str, Vec<u8>)]) -> KinesisEvent {
    serde_json::from_value(event_json(records)).unwrap()
}

fn handler(lake: &std::path::Path) -> Handler {
    Handler::new(Lake::open_dir(lake).unwrap(), Decoder::default(), Some(Duration::ZERO))
}

fn totals(lake: &std::path::Path) -> (usize, i64) {
    lake_totals(&Lake::open_dir(lake).unwrap())
}

/// Distinct events and their tokens, and the rollups' calls, which must agree.
fn lake_totals(r: &Lake) -> (usize, i64) {
    let mut n = 0;
    let mut t = 0;
    for dt in r.partitions(USAGE_EVENTS).unwrap() {
        for e in r.events(dt).unwrap() {
            n += 1;
            t += e.tokens.total;
        }
    }
    let (last, first) = (chrono::NaiveDate::MAX, chrono::NaiveDate::MIN);
    r.ensure_rollups(first, last).unwrap();
    let mut calls = 0;
    for dt in r.partitions(USAGE_EVENTS).unwrap() {
        calls += r.hourly(dt).unwrap().iter().map(|(_, m)| m.invocations).sum::<i64>();
    }
    assert_eq!(calls, n as i64, "rollups count each event once");
    (n, t)
}

fn failures(r: &KinesisEventResponse) -> Vec<String> {
    r.batch_item_failures.iter().map(|f| f.item_identifier.clone().unwrap_or_default()).collect()
}

const SEQ: [&str; 3] = [
    "49590338271490256608559692538361571095921575989136588898",
    "49590338271490256608559692540925702759324208523137515618",
    "49590338271490256608559692541973098157498125014812672098",
];

#[test]
fn a_corrupt_record_is_quarantined_and_the_batch_succeeds() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let mut corrupt = payload("bad", 3, 10);
    corrupt.truncate(corrupt.len() - 8);
    let ev =
        event(&[(SEQ[0], payload("a", 40, 10)), (SEQ[1], corrupt), (SEQ[2], payload("b", 60, 10))]);
    let acc = handler(&lake).write(&ev.records).unwrap();
    assert_eq!((acc.records_read, acc.events_written), (101, 100));
    assert_eq!(acc.quarantined_total(), 1);
    assert!(acc.balances());
    assert!(failures(&handler(&lake).handle(&ev)).is_empty(), "a retry is harmless too");
    assert_eq!(totals(&lake), (100, 1000));
    let q = Lake::open_dir(&lake).unwrap().quarantine_entries().unwrap();
    assert_eq!(q.len(), 1, "the quarantine file of that record is replaced, not appended");
    assert_eq!(
        q[0].source.as_str(),
        format!("kinesis://clinic-usage/shardId-000000000000/{}", SEQ[1])
    );
    assert_eq!(q[0].reason, agentmeter_schemas::Reason::InvalidGzip);
    // Rollups follow.
    let r = Lake::open_dir(&lake).unwrap();
    let dt = r.partitions(USAGE_EVENTS).unwrap()[0];
    let hourly: i64 = r.hourly(dt).unwrap().iter().map(|(_, m)| m.invocations).sum();
    assert_eq!(hourly, 100);
}

/// Makes the lake's `usage_events` unusable (a file where its directory goes) until undone.
fn break_lake(lake: &std::path::Path) -> impl FnOnce() {
    let table = lake.join("usage_events");
    let aside = lake.join("usage_events.aside");
    let had = table.is_dir();
    if had {
        std::fs::rename(&table, &aside).unwrap();
    }
    std::fs::write(&table, b"not a directory").unwrap();
    move || {
        std::fs::remove_file(&table).unwrap();
        if had {
            std::fs::rename(&aside, &table).unwrap();
        }
    }
}

#[test]
fn a_lake_that_cannot_be_written_fails_the_batch_from_its_first_record_and_the_retry_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let h = handler(&lake);
    let ev = event(&[(SEQ[1], payload("b", 20, 7)), (SEQ[2], payload("a", 10, 7))]);
    let repair = break_lake(&lake);
    assert_eq!(failures(&h.handle(&ev)), [SEQ[1]]);
    repair();
    assert_eq!(totals(&lake), (0, 0), "nothing of the failed batch");
    // Lambda retries from the reported record: the batch again.
    assert!(failures(&h.handle(&ev)).is_empty());
    assert_eq!(totals(&lake), (30, 210));
    let acc = h.write(&ev.records).unwrap();
    assert_eq!((acc.events_written, acc.duplicates), (0, 30));
    assert_eq!(totals(&lake), (30, 210));
}

/// An S3 lake on a moto server, opened as a function instance opens it.
fn s3_handler(
    moto: &agentmeter_testkit::moto::MotoServer,
    rt: &tokio::runtime::Runtime,
) -> Handler {
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("t", "t", None, None, "t"))
            .load(),
    );
    let loc = agentmeter_pipeline::LakeLocation::parse("s3://lakes/usage").unwrap();
    let lake = agentmeter_pipeline::env::open_lake_on(rt.handle(), Some(&config), &loc, true, None)
        .unwrap();
    Handler::new(lake, Decoder::default(), Some(Duration::ZERO))
}

#[test]
fn four_concurrent_invocations_on_an_s3_lake_and_a_retried_batch_are_exact() {
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    {
        let config = rt.block_on(
            aws_config::defaults(aws_config::BehaviorVersion::latest())
                .endpoint_url(moto.endpoint())
                .region(aws_config::Region::new("us-east-1"))
                .credentials_provider(aws_sdk_s3::config::Credentials::new(
                    "t", "t", None, None, "t",
                ))
                .load(),
        );
        let client = aws_sdk_s3::Client::from_conf(
            aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
        );
        rt.block_on(client.create_bucket().bucket("lakes").send()).unwrap();
    }
    // Four shards, each batch with its own events and 5 events every shard also carries (a
    // record delivered twice, as a reshard or a producer retry does).
    let batches: Vec<KinesisEvent> = (0..4)
        .map(|shard| {
            let mut ev = event(&[
                (SEQ[0], payload(&format!("s{shard}"), 50, 10)),
                (SEQ[1], payload("shared", 5, 10)),
            ]);
            for r in &mut ev.records {
                r.event_id = r.event_id.as_ref().map(|id| {
                    id.replace("shardId-000000000000", &format!("shardId-00000000000{shard}"))
                });
            }
            ev
        })
        .collect();
    std::thread::scope(|s| {
        for b in &batches {
            let h = s3_handler(&moto, &rt);
            s.spawn(move || assert!(failures(&h.handle(b)).is_empty()));
        }
    });
    let h = s3_handler(&moto, &rt);
    assert_eq!(lake_totals(&h_lake(&h)), (205, 2050));
    // Lambda retries a batch whose files were written (the function timed out after them).
    let acc = h.write(&batches[2].records).unwrap();
    assert_eq!((acc.events_written, acc.duplicates), (0, 55));
    assert!(failures(&h.handle(&batches[2])).is_empty());
    assert_eq!(lake_totals(&h_lake(&h)), (205, 2050));
}

fn h_lake(h: &Handler) -> Lake {
    h.lake().clone()
}

#[test]
fn an_empty_batch_answers_nothing_and_sources_name_shard_and_sequence() {
    let dir = tempfile::tempdir().unwrap();
    let h = handler(&dir.path().join("lake"));
    assert!(failures(&h.handle(&event(&[]))).is_empty());
    let ev = event(&[(SEQ[0], b"x".to_vec())]);
    assert_eq!(
        source(&ev.records[0]).as_str(),
        format!("kinesis://clinic-usage/shardId-000000000000/{}", SEQ[0])
    );
}

/// Events waiting for `GET .../invocation/next`.
type Queue = Arc<(Mutex<std::collections::VecDeque<String>>, Condvar)>;
/// What the function posted: (request id, `response` or `error`, body).
type Answers = Arc<(Mutex<Vec<(String, String, String)>>, Condvar)>;

/// A Lambda Runtime API on 127.0.0.1 (the protocol `provided.al2023` speaks to `bootstrap`):
/// hands out the queued events on `GET .../invocation/next` and keeps what the function posts.
struct RuntimeApi {
    port: u16,
    queue: Queue,
    answers: Answers,
}

impl RuntimeApi {
    fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let queue: Queue = Arc::default();
        let answers: Answers = Arc::default();
        let (q, a) = (Arc::clone(&queue), Arc::clone(&answers));
        std::thread::spawn(move || {
            let next_id = Arc::new(std::sync::atomic::AtomicU32::new(0));
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                // Each connection on a thread of its own, as the service answers them: the
                // runtime client may post an answer on a new connection while the one that
                // fetched the event is still open.
                let (q, a, next_id) = (Arc::clone(&q), Arc::clone(&a), Arc::clone(&next_id));
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream.try_clone().unwrap());
                    let mut out = stream;
                    while let Some((method, path, body)) = runtime_api::read_request(&mut reader) {
                        if method == "GET" && path.ends_with("/runtime/invocation/next") {
                            let (lock, cv) = &*q;
                            let mut events = lock.lock().unwrap();
                            while events.is_empty() {
                                events = cv.wait(events).unwrap();
                            }
                            let ev = events.pop_front().unwrap();
                            let next_id =
                                next_id.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
                            let deadline = std::time::SystemTime::now()
                                .duration_since(std::time::UNIX_EPOCH)
                                .unwrap()
                                .as_millis()
                                + 120_000;
                            write!(
                            out,
                            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nLambda-Runtime-Aws-Request-Id: req-{next_id}\r\n\
                             Lambda-Runtime-Deadline-Ms: {deadline}\r\nLambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:agentmeter\r\n\
                             Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1\r\nContent-Length: {}\r\n\r\n{ev}",
                            ev.len()
                        )
                        .unwrap();
                        } else {
                            let tail: Vec<&str> = path.rsplitn(3, '/').collect();
                            let (kind, id) =
                                (tail[0].to_owned(), tail.get(1).copied().unwrap_or("").to_owned());
                            let (lock, cv) = &*a;
                            lock.lock().unwrap().push((
                                id,
                                kind,
                                String::from_utf8_lossy(&body).into_owned(),
                            ));
                            cv.notify_all();
                            write!(out, "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\nContent-Length: 16\r\n\r\n{{\"status\":\"OK\"}}").unwrap();
                        }
                        out.flush().unwrap();
                    }
                });
            }
        });
        RuntimeApi { port, queue, answers }
    }

    /// Queues `event` and waits for the function's answer to it.
    fn invoke(&self, event: &Value) -> (String, Value) {
        let before = self.answers.0.lock().unwrap().len();
        {
            let (lock, cv) = &*self.queue;
            lock.lock().unwrap().push_back(event.to_string());
            cv.notify_all();
        }
        let (lock, cv) = &*self.answers;
        let (answers, timeout) = cv
            .wait_timeout_while(lock.lock().unwrap(), Duration::from_secs(60), |a| {
                a.len() == before
            })
            .unwrap();
        assert!(!timeout.timed_out(), "no answer from the function");
        let (_, kind, body) = answers[before].clone();
        (kind, serde_json::from_str(&body).unwrap())
    }
}

#[test]
fn the_bootstrap_binary_answers_the_runtime_api_with_batch_item_failures() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let api = RuntimeApi::start();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_agentmeter-lambda"))
        .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
        .env("AWS_LAMBDA_FUNCTION_NAME", "agentmeter")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/agentmeter")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]0")
        .env("AGENTMETER_LAKE", &lake)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut corrupt = payload("bad", 2, 10);
    corrupt.truncate(corrupt.len() - 8);
    let (kind, answer) =
        api.invoke(&event_json(&[(SEQ[0], payload("a", 30, 10)), (SEQ[1], corrupt)]));
    assert_eq!((kind.as_str(), answer), ("response", json!({"batchItemFailures": []})));
    let batch = event_json(&[(SEQ[2], payload("b", 20, 10))]);
    let (kind, answer) = {
        let repair = break_lake(&lake);
        let answer = api.invoke(&batch);
        repair();
        answer
    };
    assert_eq!(
        (kind.as_str(), answer),
        ("response", json!({"batchItemFailures": [{"itemIdentifier": SEQ[2]}]}))
    );
    let (_, answer) = api.invoke(&batch);
    assert_eq!(answer, json!({"batchItemFailures": []}));
    let _ = child.kill();
    let _ = child.wait();
    assert_eq!(totals(&lake), (50, 500));
    assert_eq!(Lake::open_dir(&lake).unwrap().quarantine_entries().unwrap().len(), 1);
}
