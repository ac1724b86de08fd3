//! Delivery of alerts to every sink, and the report of what arrived where.

use std::fmt;
use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::task::Poll;
use std::time::Duration;

use tokio::sync::OnceCell;
use tracing::{debug, warn};

use super::sink::AlertSink;
use super::{SECRET_ENV, SECRET_FILE_ENV, Secret, eventbridge, file, sns, webhook};
use crate::flags::Alert;

/// How alerts are delivered.
#[derive(Debug, Clone)]
pub struct DeliveryOptions {
    /// The webhook signing secret (see [`Secret::from_env`]); without one, webhooks are sent
    /// unsigned and a warning is logged once per [`deliver`] call.
    pub webhook_secret: Option<Secret>,
    /// Requests sent at most per alert and webhook (at least 1 is sent). Default 4.
    pub max_attempts: u32,
    /// The wait after a webhook's first failed attempt; it doubles after each further
    /// failure. Default 500 ms.
    pub initial_backoff: Duration,
    /// The longest wait between webhook attempts, also the cap on a `Retry-After` header.
    /// Default 30 s.
    pub max_backoff: Duration,
    /// Bound on one webhook request (connecting included) and on one SNS attempt. Default
    /// 10 s.
    pub timeout: Duration,
    /// The SNS client; when `None`, one is built on first use with
    /// [`sns_client_from_env`](super::sns_client_from_env). Either way each publish sets the
    /// region of its topic's ARN.
    pub sns_client: Option<aws_sdk_sns::Client>,
    /// The EventBridge client; when `None`, one is built on first use with
    /// [`eventbridge_client_from_env`](super::eventbridge_client_from_env).
    pub eventbridge_client: Option<aws_sdk_eventbridge::Client>,
}

impl Default for DeliveryOptions {
    fn default() -> Self {
        Self {
            webhook_secret: None,
            max_attempts: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(30),
            timeout: Duration::from_secs(10),
            sns_client: None,
            eventbridge_client: None,
        }
    }
}

/// What [`deliver`] did: per sink, how many alerts arrived, and every failure.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DeliveryReport {
    /// One entry per sink, in the order the sinks were given.
    pub sinks: Vec<SinkReport>,
    /// Every alert a sink did not take, by sink in the order given, then by alert.
    pub failures: Vec<DeliveryFailure>,
}

impl DeliveryReport {
    /// Deliveries that succeeded, over all sinks.
    pub fn delivered(&self) -> usize {
        self.sinks.iter().map(|s| s.delivered).sum()
    }

    /// Whether every alert reached every sink.
    pub fn is_complete(&self) -> bool {
        self.failures.is_empty()
    }
}

/// The deliveries to one sink.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SinkReport {
    /// The sink's display form (no credentials).
    pub sink: String,
    /// Alerts it took.
    pub delivered: usize,
    /// Alerts it did not take (each is in [`DeliveryReport::failures`]).
    pub failed: usize,
    /// Alerts not attempted because an earlier one failed at this sink in the same call (the
    /// circuit breaker, see [`deliver`]).
    pub held: usize,
}

/// One alert one sink did not take.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFailure {
    /// The sink's display form (no credentials).
    pub sink: String,
    /// The alert's id.
    pub alert_id: String,
    /// Attempts made: requests sent for a webhook (0 when none could be built), the SDK's
    /// HTTP attempts for SNS, 1 for a file or stdout.
    pub attempts: u32,
    /// The last error (never the secret, the alert's body or a URL's credentials).
    pub error: String,
}

impl fmt::Display for DeliveryFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let plural = if self.attempts == 1 { "" } else { "s" };
        write!(
            f,
            "alert {} not delivered to {} after {} attempt{plural}: {}",
            self.alert_id, self.sink, self.attempts, self.error
        )
    }
}

/// Delivers every alert to every sink and reports what arrived where.
///
/// Sinks are served concurrently, each taking the alerts in order (so a flag's `raised`
/// arrives before its `resolved`). A failure at one sink never stops the others: it is logged
/// at warn and recorded in the report. It does stop that sink's remaining alerts (a circuit
/// breaker per sink and call): once one alert has failed after its retries, a dead webhook
/// would fail every other alert the same way, each after its own retries and backoff, so they
/// are not attempted and are counted in [`SinkReport::held`] instead. Each delivery is logged
/// at debug. Per sink:
/// - file: all alerts appended as JSON lines in one write, then synced (one result for all);
/// - stdout: one [`Alert::summary`] line per alert;
/// - webhook: one signed POST per alert, retried as [`DeliveryOptions`] say;
/// - SNS: one `Publish` per alert, retried by the SDK.
///
/// Every wait is bounded, and so is a call: a webhook alert takes at most `max_attempts ×
/// (timeout + max_backoff)`, and with the circuit breaker a failing sink costs at most one
/// failed alert's attempts per call.
pub async fn deliver(
    alerts: &[Alert],
    sinks: &[AlertSink],
    opts: &DeliveryOptions,
) -> DeliveryReport {
    let queues: Vec<(&AlertSink, &[Alert])> = sinks.iter().map(|sink| (sink, alerts)).collect();
    let outcomes = deliver_queues(&queues, opts).await;
    let mut report = DeliveryReport::default();
    for (sink, outcome) in sinks.iter().zip(outcomes) {
        report.sinks.push(SinkReport {
            sink: sink.to_string(),
            delivered: outcome.delivered,
            failed: outcome.failures.len(),
            held: outcome.held.len(),
        });
        report.failures.extend(outcome.failures);
    }
    report
}

/// Delivers each queue's alerts to its sink, as [`deliver`] does (concurrently per sink, in
/// order within one, with the circuit breaker), and returns each queue's outcome in order.
pub(crate) async fn deliver_queues(
    queues: &[(&AlertSink, &[Alert])],
    opts: &DeliveryOptions,
) -> Vec<Outcome> {
    let webhook_alerts =
        queues.iter().any(|(s, a)| matches!(s, AlertSink::Webhook(_)) && !a.is_empty());
    if webhook_alerts && opts.webhook_secret.is_none() {
        warn!("No webhook secret ({SECRET_ENV} or {SECRET_FILE_ENV}): webhooks are sent unsigned.");
    }
    let has_webhook = queues.iter().any(|(s, _)| matches!(s, AlertSink::Webhook(_)));
    let shared = Shared {
        opts,
        http: if has_webhook { Some(webhook::client(opts)) } else { None },
        sns: OnceCell::new(),
        eventbridge: OnceCell::new(),
    };
    join_all(queues.iter().map(|(sink, alerts)| deliver_to(sink, alerts, &shared))).await
}

/// What all sinks of one [`deliver`] call share.
struct Shared<'a> {
    opts: &'a DeliveryOptions,
    /// The webhooks' client (`None` without webhook sinks), or why it cannot be built.
    http: Option<Result<reqwest::Client, String>>,
    /// The SNS client: the configured one or, on first use, one from the environment.
    sns: OnceCell<aws_sdk_sns::Client>,
    /// The EventBridge client, likewise.
    eventbridge: OnceCell<aws_sdk_eventbridge::Client>,
}

/// The deliveries to one sink.
pub(crate) struct Outcome {
    /// Alerts it took.
    pub delivered: usize,
    /// Alerts it did not take, in order.
    pub failures: Vec<DeliveryFailure>,
    /// Ids of the alerts not attempted after a failure (circuit open), in order.
    pub held: Vec<String>,
}

/// Records deliveries and failures to one sink, logging each.
struct Recorder {
    sink: String,
    outcome: Outcome,
}

impl Recorder {
    fn new(sink: &AlertSink) -> Self {
        Self {
            sink: sink.to_string(),
            outcome: Outcome { delivered: 0, failures: Vec::new(), held: Vec::new() },
        }
    }

    /// Whether an alert to this sink has failed: the circuit is open, the rest are held.
    fn is_open(&self) -> bool {
        !self.outcome.failures.is_empty()
    }

    /// Records `rest` as not attempted, and logs the circuit opening (once: the caller stops).
    fn hold(&mut self, rest: &[Alert]) {
        if rest.is_empty() {
            return;
        }
        warn!(sink = %self.sink, held = rest.len(),
            "Circuit open: an alert to this sink failed; its remaining alerts are not attempted.");
        self.outcome.held.extend(rest.iter().map(|a| a.alert_id.clone()));
    }

    fn record(&mut self, alert: &Alert, attempts: u32, result: Result<(), String>) {
        match result {
            Ok(()) => {
                debug!(sink = %self.sink, alert_id = %alert.alert_id, attempts, "Alert delivered.");
                self.outcome.delivered += 1;
            }
            Err(error) => {
                warn!(sink = %self.sink, alert_id = %alert.alert_id, attempts, error = %error,
                    "Alert not delivered.");
                self.outcome.failures.push(DeliveryFailure {
                    sink: self.sink.clone(),
                    alert_id: alert.alert_id.clone(),
                    attempts,
                    error,
                });
            }
        }
    }
}

async fn deliver_to(sink: &AlertSink, alerts: &[Alert], shared: &Shared<'_>) -> Outcome {
    let mut recorder = Recorder::new(sink);
    if alerts.is_empty() {
        return recorder.outcome;
    }
    match sink {
        AlertSink::File(path) => {
            let mut bytes = Vec::new();
            let mut written = Vec::new();
            for alert in alerts {
                match serde_json::to_string(alert) {
                    Ok(line) => {
                        bytes.extend_from_slice(line.as_bytes());
                        bytes.push(b'\n');
                        written.push(alert);
                    }
                    Err(e) => recorder.record(alert, 1, Err(json_error(&e))),
                }
            }
            if !written.is_empty() {
                let result = file::append(path, bytes).await;
                for alert in written {
                    recorder.record(alert, 1, result.clone());
                }
            }
        }
        AlertSink::Stdout => {
            let results = file::write_summaries(&mut std::io::stdout().lock(), alerts);
            for (alert, result) in alerts.iter().zip(results) {
                let result = result.map_err(|e| format!("cannot write to stdout: {e}"));
                recorder.record(alert, 1, result);
            }
        }
        AlertSink::Webhook(url) => {
            for (i, alert) in alerts.iter().enumerate() {
                if recorder.is_open() {
                    recorder.hold(&alerts[i..]);
                    break;
                }
                let (attempts, result) = match (&shared.http, serde_json::to_vec(alert)) {
                    (Some(Ok(client)), Ok(body)) => {
                        let secret = shared.opts.webhook_secret.as_ref();
                        let posted =
                            webhook::post(client, url, &body, &alert.alert_id, secret, shared.opts)
                                .await;
                        (posted.attempts, posted.result)
                    }
                    (Some(Err(e)), _) => (0, Err(e.clone())),
                    (None, _) => (0, Err("no HTTP client (internal error)".to_owned())),
                    (_, Err(e)) => (0, Err(json_error(&e))),
                };
                recorder.record(alert, attempts, result);
            }
        }
        AlertSink::Sns { topic_arn, region } => {
            let client = match &shared.opts.sns_client {
                Some(client) => client,
                None => shared.sns.get_or_init(|| sns::sns_client_from_env(region)).await,
            };
            for (i, alert) in alerts.iter().enumerate() {
                if recorder.is_open() {
                    recorder.hold(&alerts[i..]);
                    break;
                }
                let (attempts, result) = match serde_json::to_string(alert) {
                    Ok(message) => {
                        let timeout = shared.opts.timeout;
                        let published =
                            sns::publish(client, topic_arn, region, alert, message, timeout).await;
                        (published.attempts, published.result)
                    }
                    Err(e) => (0, Err(json_error(&e))),
                };
                recorder.record(alert, attempts, result);
            }
        }
        AlertSink::EventBridge { bus_arn, region } => {
            let client = match &shared.opts.eventbridge_client {
                Some(client) => client,
                None => {
                    shared
                        .eventbridge
                        .get_or_init(|| eventbridge::eventbridge_client_from_env(region))
                        .await
                }
            };
            for (i, alert) in alerts.iter().enumerate() {
                if recorder.is_open() {
                    recorder.hold(&alerts[i..]);
                    break;
                }
                let (attempts, result) = match serde_json::to_string(alert) {
                    Ok(detail) => {
                        let timeout = shared.opts.timeout;
                        eventbridge::put(client, bus_arn, region, alert, detail, timeout).await
                    }
                    Err(e) => (0, Err(json_error(&e))),
                };
                recorder.record(alert, attempts, result);
            }
        }
    }
    recorder.outcome
}

fn json_error(e: &serde_json::Error) -> String {
    format!("cannot serialize the alert as JSON: {e}")
}

/// Runs futures concurrently on the current task and returns their outputs in order (a
/// minimal `join_all`: no spawning, so borrowed sinks and options need no `'static`).
async fn join_all<F: Future>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output> {
    let mut futures: Vec<Pin<Box<F>>> = futures.into_iter().map(Box::pin).collect();
    let mut outputs: Vec<Option<F::Output>> = futures.iter().map(|_| None).collect();
    poll_fn(|cx| {
        let mut pending = false;
        for (future, output) in futures.iter_mut().zip(outputs.iter_mut()) {
            if output.is_none() {
                match future.as_mut().poll(cx) {
                    Poll::Ready(value) => *output = Some(value),
                    Poll::Pending => pending = true,
                }
            }
        }
        if pending { Poll::Pending } else { Poll::Ready(()) }
    })
    .await;
    outputs.into_iter().flatten().collect()
}
