//! The EventBridge sink with the real `aws-sdk-eventbridge` client against moto in server
//! mode: a rule on the bus sends the events to a CloudWatch Logs group (a target moto
//! delivers to), read back with `aws-sdk-cloudwatchlogs`.

use std::time::Duration;

use aws_sdk_eventbridge::types::Target;
use serde_json::Value;

use super::tests::{alert, alerts, fast_options};
use super::*;
use crate::costs::moto::{MotoClients, MotoServer};
use crate::flags::{Alert, Transition};

/// Bound on any one delivery or call against moto.
const LIMIT: Duration = Duration::from_secs(30);
const GROUP: &str = "/agentmeter/alerts";

async fn clients(
    moto: &MotoServer,
) -> (aws_sdk_eventbridge::Client, aws_sdk_cloudwatchlogs::Client) {
    let config = moto.sdk_config().await;
    (aws_sdk_eventbridge::Client::new(&config), aws_sdk_cloudwatchlogs::Client::new(&config))
}

/// A bus (or the default one) whose `source: agentmeter` events go to the log group.
async fn route_to_logs(
    events: &aws_sdk_eventbridge::Client,
    logs: &aws_sdk_cloudwatchlogs::Client,
    bus: &str,
) -> String {
    if bus != "default" {
        tokio::time::timeout(LIMIT, events.create_event_bus().name(bus).send())
            .await
            .unwrap()
            .unwrap();
    }
    let _ = tokio::time::timeout(LIMIT, logs.create_log_group().log_group_name(GROUP).send())
        .await
        .unwrap();
    tokio::time::timeout(
        LIMIT,
        events
            .put_rule()
            .name("agentmeter-alerts")
            .event_bus_name(bus)
            .event_pattern(r#"{"source":["agentmeter"]}"#)
            .send(),
    )
    .await
    .unwrap()
    .unwrap();
    let target = Target::builder()
        .id("logs")
        .arn(format!("arn:aws:logs:us-east-1:123456789012:log-group:{GROUP}"))
        .build()
        .unwrap();
    tokio::time::timeout(
        LIMIT,
        events.put_targets().rule("agentmeter-alerts").event_bus_name(bus).targets(target).send(),
    )
    .await
    .unwrap()
    .unwrap();
    format!("arn:aws:events:us-east-1:123456789012:event-bus/{bus}")
}

/// The events the rule delivered to the log group, oldest first. Read with a raw
/// `FilterLogEvents` call: moto answers fractional timestamps, which the SDK refuses.
async fn delivered(moto: &MotoServer) -> Vec<Value> {
    let response = reqwest::Client::new()
        .post(moto.endpoint())
        .header("X-Amz-Target", "Logs_20140328.FilterLogEvents")
        // moto routes by the credential scope's service; the signature is not checked.
        .header(
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20261001/us-east-1/logs/aws4_request, \
             SignedHeaders=host, Signature=0",
        )
        .header("Content-Type", "application/x-amz-json-1.1")
        .body(serde_json::json!({ "logGroupName": GROUP }).to_string())
        .send();
    let body: Value =
        tokio::time::timeout(LIMIT, response).await.unwrap().unwrap().json().await.unwrap();
    let mut events: Vec<(f64, Value)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let message = serde_json::from_str(e["message"].as_str().unwrap()).unwrap();
            (e["timestamp"].as_f64().unwrap(), message)
        })
        .collect();
    events.sort_by(|a, b| a.0.total_cmp(&b.0));
    events.into_iter().map(|(_, v)| v).collect()
}

fn options_with(client: aws_sdk_eventbridge::Client) -> DeliveryOptions {
    DeliveryOptions { eventbridge_client: Some(client), ..fast_options() }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_alert_is_one_event_with_the_alert_as_detail() {
    let moto = MotoServer::start();
    let (events, logs) = clients(&moto).await;
    let bus_arn = route_to_logs(&events, &logs, "agentmeter").await;
    let sink: AlertSink = bus_arn.parse().unwrap();
    assert_eq!(sink.kind(), "eventbridge");
    let sent = vec![alert(1, Transition::Raised), alert(2, Transition::Resolved)];

    let report =
        tokio::time::timeout(LIMIT, deliver(&sent, &[sink], &options_with(events))).await.unwrap();

    assert!(report.is_complete(), "{report:?}");
    assert_eq!((report.sinks[0].sink.as_str(), report.sinks[0].delivered), (bus_arn.as_str(), 2));
    let got = delivered(&moto).await;
    assert_eq!(got.len(), 2, "{got:?}");
    let mut by_id: Vec<(String, Value)> = got
        .into_iter()
        .map(|e| (e["detail"]["alert_id"].as_str().unwrap().to_owned(), e))
        .collect();
    by_id.sort_by(|a, b| a.0.cmp(&b.0));
    for ((_, event), alert) in by_id.iter().zip(&sent) {
        assert_eq!(event["source"], "agentmeter");
        assert_eq!(
            event["detail-type"],
            match alert.transition {
                Transition::Raised => "Flag Raised",
                Transition::Resolved => "Flag Resolved",
            }
        );
        // The event time is the evaluation time the alert was seen at.
        assert_eq!(event["time"], alert.at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
        let detail: Alert = serde_json::from_value(event["detail"].clone()).unwrap();
        assert_eq!(&detail, alert);
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_bus_is_recorded_and_the_other_sinks_still_deliver() {
    let moto = MotoServer::start();
    let (events, logs) = clients(&moto).await;
    let bus_arn = route_to_logs(&events, &logs, "default").await;
    let missing = "arn:aws:events:us-east-1:123456789012:event-bus/missing";
    let sinks = [missing.parse().unwrap(), bus_arn.parse().unwrap()];
    let sent = alerts(2);

    let report =
        tokio::time::timeout(LIMIT, deliver(&sent, &sinks, &options_with(events))).await.unwrap();

    // The first put fails; the circuit opens and the second alert waits for the next run.
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let f = &report.failures[0];
    assert_eq!((f.sink.as_str(), f.alert_id.as_str()), (missing, sent[0].alert_id.as_str()));
    assert!(f.error.starts_with("EventBridge PutEvents"), "{}", f.error);
    assert!(f.error.contains("ResourceNotFound"), "{}", f.error);
    let counts: Vec<(usize, usize, usize)> =
        report.sinks.iter().map(|s| (s.delivered, s.failed, s.held)).collect();
    assert_eq!(counts, [(0, 1, 1), (2, 0, 0)]);
    assert_eq!(delivered(&moto).await.len(), 2);
}

#[test]
fn bus_arns_are_checked_like_topic_arns() {
    let ok: AlertSink = "arn:aws:events:eu-west-1:123456789012:event-bus/default".parse().unwrap();
    assert_eq!(ok.to_string(), "arn:aws:events:eu-west-1:123456789012:event-bus/default");
    let refused = |v: &str| v.parse::<AlertSink>().unwrap_err().to_string();
    assert!(refused("arn:aws:events:eu-west-1:123456789012:rule/x").contains("event-bus/NAME"));
    assert!(
        refused("arn:aws:events:eu-west-1:123456789012:event-bus/")
            .contains("invalid event bus name")
    );
    assert!(refused("arn:aws:events:eu-west-1:12345:event-bus/b").contains("12 digits"));
    assert!(refused("arn:aws:sqs:eu-west-1:123456789012:q").contains("EventBridge bus ARNs"));
}
