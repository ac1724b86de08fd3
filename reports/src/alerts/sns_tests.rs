//! The SNS sink with the real `aws-sdk-sns` client against moto in server mode; what moto
//! received is read back from its backend state (`GET /moto-api/data.json`, where each
//! topic lists its `sent_notifications` as `[message_id, message, subject, attributes,
//! group_id]`).

use std::time::Duration;

use aws_sdk_sns::config::Region;
use serde_json::{Value, json};

use super::tests::{alert, alerts, fast_options};
use super::*;
use crate::costs::moto::{MotoClients, MotoServer};
use crate::flags::{Alert, Transition};

/// Bound on any one delivery or call against moto.
const LIMIT: Duration = Duration::from_secs(30);

async fn sns_client(moto: &MotoServer) -> aws_sdk_sns::Client {
    aws_sdk_sns::Client::new(&moto.sdk_config().await)
}

async fn create_topic(client: &aws_sdk_sns::Client, name: &str, fifo: bool) -> String {
    let mut request = client.create_topic().name(name);
    if fifo {
        request = request.attributes("FifoTopic", "true");
    }
    let created = tokio::time::timeout(LIMIT, request.send()).await.unwrap().unwrap();
    created.topic_arn().unwrap().to_owned()
}

/// The notifications moto's backend holds for `topic_arn`.
fn sent_notifications(moto: &MotoServer, topic_arn: &str) -> Vec<Value> {
    let (status, body) = moto.request("GET", "/moto-api/data.json", b"");
    assert_eq!(status, 200, "{body}");
    let data: Value = serde_json::from_str(&body).unwrap();
    let topics = data["sns"]["Topic"].as_array().unwrap();
    let topic = topics.iter().find(|t| t["arn"] == topic_arn).unwrap();
    topic["sent_notifications"].as_array().unwrap().clone()
}

fn options_with(client: aws_sdk_sns::Client) -> DeliveryOptions {
    DeliveryOptions { sns_client: Some(client), ..fast_options() }
}

async fn bounded_deliver(
    alerts: &[Alert],
    sinks: &[AlertSink],
    opts: &DeliveryOptions,
) -> DeliveryReport {
    tokio::time::timeout(LIMIT, deliver(alerts, sinks, opts)).await.expect("delivery timed out")
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_are_published_with_subject_and_attributes() {
    let moto = MotoServer::start();
    let client = sns_client(&moto).await;
    let topic_arn = create_topic(&client, "agentmeter-alerts", false).await;
    let sink: AlertSink = topic_arn.parse().unwrap();
    let sent = vec![alert(1, Transition::Raised), alert(2, Transition::Resolved)];

    let report = bounded_deliver(&sent, &[sink], &options_with(client)).await;

    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.sinks[0].sink, topic_arn);
    assert_eq!(report.sinks[0].delivered, 2);
    let notifications = sent_notifications(&moto, &topic_arn);
    assert_eq!(notifications.len(), 2);
    for (notification, alert) in notifications.iter().zip(&sent) {
        let message = notification[1].as_str().unwrap();
        assert_eq!(message, serde_json::to_string(alert).unwrap());
        assert_eq!(&serde_json::from_str::<Alert>(message).unwrap(), alert);
        let subject = notification[2].as_str().unwrap();
        assert_eq!(subject, super::subject(&alert.summary()));
        assert!(subject.is_ascii() && subject.len() <= MAX_SUBJECT_CHARS, "{subject}");
        let transition = match alert.transition {
            Transition::Raised => "raised",
            Transition::Resolved => "resolved",
        };
        assert_eq!(
            notification[3],
            json!({
                "kind": {"Type": "String", "Value": "silo_migration"},
                "severity": {"Type": "String", "Value": "warning"},
                "transition": {"Type": "String", "Value": transition},
            })
        );
        assert_eq!(notification[4], Value::Null, "no message group on a standard topic");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn each_publish_goes_to_the_region_of_its_topic() {
    let moto = MotoServer::start();
    let us_east = sns_client(&moto).await;
    let topic_arn = create_topic(&us_east, "alerts", false).await;
    assert!(topic_arn.starts_with("arn:aws:sns:us-east-1:"), "{topic_arn}");
    // A client configured for another region still publishes to the topic's own region.
    let config = aws_sdk_sns::config::Builder::from(&moto.sdk_config().await)
        .region(Region::new("eu-west-1"))
        .build();
    let eu_west = aws_sdk_sns::Client::from_conf(config);

    let report =
        bounded_deliver(&alerts(1), &[topic_arn.parse().unwrap()], &options_with(eu_west)).await;

    assert!(report.is_complete(), "{report:?}");
    assert_eq!(sent_notifications(&moto, &topic_arn).len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fifo_topic_gets_the_flag_as_group_and_the_alert_as_deduplication_id() {
    let moto = MotoServer::start();
    let client = sns_client(&moto).await;
    let topic_arn = create_topic(&client, "agentmeter-alerts.fifo", true).await;
    let sent = alerts(2);

    let report = bounded_deliver(&sent, &[topic_arn.parse().unwrap()], &options_with(client)).await;

    assert!(report.is_complete(), "{report:?}");
    let notifications = sent_notifications(&moto, &topic_arn);
    let groups: Vec<&str> = notifications.iter().map(|n| n[4].as_str().unwrap()).collect();
    assert_eq!(groups, [sent[0].flag.id.as_str(), sent[1].flag.id.as_str()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_topic_is_recorded_and_the_other_sinks_still_deliver() {
    let moto = MotoServer::start();
    let client = sns_client(&moto).await;
    let topic_arn = create_topic(&client, "present", false).await;
    let missing = "arn:aws:sns:us-east-1:123456789012:missing";
    let dir = tempfile::tempdir().unwrap();
    let file: AlertSink = format!("file://{}/alerts.jsonl", dir.path().display()).parse().unwrap();
    let sinks = [missing.parse().unwrap(), topic_arn.parse().unwrap(), file];
    let sent = alerts(2);

    let report = bounded_deliver(&sent, &sinks, &options_with(client)).await;

    // The first publish fails; the circuit opens and the second alert is not attempted.
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let failure = &report.failures[0];
    assert_eq!(failure.sink, missing);
    assert_eq!(failure.alert_id, sent[0].alert_id);
    assert_eq!(failure.attempts, 1, "NotFound is not retried");
    assert!(failure.error.starts_with("SNS Publish failed: NotFound"), "{}", failure.error);
    let counts: Vec<(usize, usize, usize)> =
        report.sinks.iter().map(|s| (s.delivered, s.failed, s.held)).collect();
    assert_eq!(counts, [(0, 1, 1), (2, 0, 0), (2, 0, 0)]);
    assert_eq!(sent_notifications(&moto, &topic_arn).len(), 2);
}
