//! The EventBridge sink: `PutEvents` through `aws-sdk-eventbridge`, one event per alert on the
//! configured bus, so that rules route alerts to any of EventBridge's targets.

use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_eventbridge::Client;
use aws_sdk_eventbridge::config::Region;
use aws_sdk_eventbridge::config::timeout::TimeoutConfig;
use aws_sdk_eventbridge::primitives::DateTime;
use aws_sdk_eventbridge::types::PutEventsRequestEntry;

use crate::flags::{Alert, Transition};

/// The `source` of every event.
pub const SOURCE: &str = "agentmeter";

/// EventBridge refuses entries over 256 KiB (detail, detail-type, source and resources).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// An EventBridge client configured the standard way (credential chain, `AWS_ENDPOINT_URL`
/// or `AWS_ENDPOINT_URL_EVENTBRIDGE`), in the bus's region.
pub async fn eventbridge_client_from_env(region: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .load()
        .await;
    Client::new(&config)
}

/// The `detail-type` of an alert's event: what a rule matches on first.
pub fn detail_type(alert: &Alert) -> &'static str {
    match alert.transition {
        Transition::Raised => "Flag Raised",
        Transition::Resolved => "Flag Resolved",
    }
}

/// Puts one alert as an event on `bus_arn`: source [`SOURCE`], [`detail_type`], the alert's
/// JSON as detail, the evaluation time as the event time. EventBridge has no idempotency key:
/// a target drops redeliveries by `detail.alert_id`. The SDK retries as configured on the
/// client (throttling and 5xx); an entry the service refuses is an error naming its code.
pub(crate) async fn put(
    client: &Client,
    bus_arn: &str,
    region: &str,
    alert: &Alert,
    detail: String,
    timeout: Duration,
) -> (u32, Result<(), String>) {
    let size = detail.len() + detail_type(alert).len() + SOURCE.len();
    if size > MAX_ENTRY_BYTES {
        return (
            0,
            Err(format!("the alert is {size} bytes, over EventBridge's {MAX_ENTRY_BYTES}")),
        );
    }
    let entry = PutEventsRequestEntry::builder()
        .event_bus_name(bus_arn)
        .source(SOURCE)
        .detail_type(detail_type(alert))
        .detail(detail)
        .time(DateTime::from_millis(alert.at.timestamp_millis()))
        .build();
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .build();
    let overrides = aws_sdk_eventbridge::config::Builder::new()
        .region(Region::new(region.to_owned()))
        .timeout_config(timeouts);
    let result =
        client.put_events().entries(entry).customize().config_override(overrides).send().await;
    match result {
        Ok(out) if out.failed_entry_count() == 0 => (1, Ok(())),
        Ok(out) => {
            let why = out
                .entries()
                .iter()
                .find_map(|e| {
                    e.error_code().map(|c| agentmeter_schemas::service_error(c, e.error_message()))
                })
                .unwrap_or_else(|| "the entry was not accepted".to_owned());
            (1, Err(format!("EventBridge PutEvents refused the alert: {why}")))
        }
        Err(e) => {
            let error = agentmeter_aggregate::aws_error::describe(&e);
            (1, Err(format!("EventBridge PutEvents failed: {error}")))
        }
    }
}
