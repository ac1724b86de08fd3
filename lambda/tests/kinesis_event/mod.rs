//! Kinesis events as the event source mapping delivers them to the function (FORMATS.md 1.3),
//! and the CloudWatch Logs subscription payloads they carry: shared by the handler and crash
//! tests.

use std::io::Write;

use base64::Engine;
use serde_json::{Value, json};

/// The stream every event comes from.
const ARN: &str = "arn:aws:kinesis:us-east-1:123456789012:stream/clinic-usage";

/// The event JSON Lambda sends for `records` (sequence number, data) of shard 0.
pub fn event_json<S: AsRef<str>>(records: &[(S, Vec<u8>)]) -> Value {
    let records: Vec<Value> = records
        .iter()
        .map(|(seq, data)| {
            let seq = seq.as_ref();
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
    json!({ "Records": records })
}

/// A CloudWatch Logs subscription payload (gzip) of `log_events` (each `id`, `timestamp`,
/// `message`), from the agents' log group.
pub fn subscription_payload(log_events: Vec<Value>) -> Vec<u8> {
    let payload = json!({"messageType": "DATA_MESSAGE", "owner": "123456789012",
        "logGroup": "/aws/lambda/clinic-agent", "logStream": "2026/10/01/[$LATEST]a",
        "subscriptionFilters": ["usage"], "logEvents": log_events});
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(payload.to_string().as_bytes()).unwrap();
    e.finish().unwrap()
}
