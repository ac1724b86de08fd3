//! The handler fed KinesisEvents as Lambda delivers them (FORMATS.md 1.3), built from real
//! subscription payloads: a corrupt record is quarantined, not failed; a busy lake fails the
//! batch from its first record; the retry leaves exact totals.

use std::io::Write;

use agentmeter_aggregate::LakeReader;
use agentmeter_schemas::tables::USAGE_EVENTS;
use serde_json::{Value, json};

use super::*;

const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clinic-usage";

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

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
    gzip(
        json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
               "logGroup": "/aws/lambda/clinic-agent", "logStream": "2026/10/01/[$LATEST]a",
               "subscriptionFilters": ["usage"], "logEvents": events})
        .to_string()
        .as_bytes(),
    )
}

/// The event JSON Lambda sends for these records of shard 0, deserialized as the runtime does.
fn event(records: &[(&str, Vec<u8>)]) -> KinesisEvent {
    use base64::Engine;
    let records: Vec<Value> = records
        .iter()
        .map(|(seq, data)| {
            json!({
                "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "p", "sequenceNumber": seq,
                            "data": base64::engine::general_purpose::STANDARD.encode(data),
                            "approximateArrivalTimestamp": 1_790_841_600.477},
                "eventSource": "aws:kinesis", "eventVersion": "1.0",
                "eventID": format!("shardId-000000000000:{seq}"), "eventName": "aws:kinesis:record",
                "invokeIdentityArn": "arn:aws:iam::123456789012:role/agentmeter-lambda",
                "awsRegion": "us-east-1", "eventSourceARN": ARN,
            })
        })
        .collect();
    serde_json::from_value(json!({ "Records": records })).unwrap()
}

fn handler(lake: &std::path::Path) -> Handler {
    Handler {
        lake: lake.to_owned(),
        decoder: Decoder::default(),
        lock_wait: Duration::from_millis(200),
    }
}

fn totals(lake: &std::path::Path) -> (usize, i64) {
    let r = LakeReader::new(lake);
    let mut n = 0;
    let mut t = 0;
    for dt in r.partitions(USAGE_EVENTS).unwrap() {
        for e in r.events(dt).unwrap() {
            n += 1;
            t += e.tokens.total;
        }
    }
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
    let q = LakeReader::new(&lake).quarantine_entries().unwrap();
    assert_eq!(q.len(), 1, "the quarantine file of that record is replaced, not appended");
    assert_eq!(
        q[0].source.as_str(),
        format!("kinesis://clinic-usage/shardId-000000000000/{}", SEQ[1])
    );
    assert_eq!(q[0].reason, agentmeter_schemas::Reason::InvalidGzip);
    // Rollups follow.
    let r = LakeReader::new(&lake);
    let dt = r.partitions(USAGE_EVENTS).unwrap()[0];
    let hourly: i64 = r.hourly(dt).unwrap().iter().map(|(_, m)| m.invocations).sum();
    assert_eq!(hourly, 100);
}

#[test]
fn a_busy_lake_fails_the_batch_from_its_first_record_and_the_retry_is_exact() {
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let h = handler(&lake);
    assert!(failures(&h.handle(&event(&[(SEQ[0], payload("a", 10, 7))]))).is_empty());
    let ev = event(&[(SEQ[1], payload("b", 20, 7)), (SEQ[2], payload("a", 10, 7))]);
    {
        // Another invocation holds the lake past the lock wait.
        let _other = Lake::open(&lake).unwrap();
        assert_eq!(failures(&h.handle(&ev)), [SEQ[1]]);
    }
    assert_eq!(totals(&lake), (10, 70), "nothing of the failed batch");
    // Lambda retries from the reported record: the batch again.
    assert!(failures(&h.handle(&ev)).is_empty());
    assert_eq!(totals(&lake), (30, 210));
    let acc = h.write(&ev.records).unwrap();
    assert_eq!((acc.events_written, acc.duplicates), (0, 30));
    assert_eq!(totals(&lake), (30, 210));
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
