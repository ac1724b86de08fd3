//! The SNS sink: `Publish` through `aws-sdk-sns`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aws_config::BehaviorVersion;
use aws_sdk_sns::Client;
use aws_sdk_sns::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_sns::config::timeout::TimeoutConfig;
use aws_sdk_sns::config::{ConfigBag, Intercept, Region, RuntimeComponents};
use aws_sdk_sns::error::BoxError;
use aws_sdk_sns::types::MessageAttributeValue;

use crate::flags::{Alert, Severity, Transition};

/// SNS refuses subjects of more than 100 characters.
pub const MAX_SUBJECT_CHARS: usize = 100;

/// An SNS client configured the standard way, as [`costs::client_from_env`] does:
/// `aws_config::defaults` with the latest behaviour version, so the usual credential chain,
/// `AWS_ENDPOINT_URL` (or `AWS_ENDPOINT_URL_SNS`), and `region` (take it from the topic
/// ARN; each publish also sets the region of its topic).
///
/// [`costs::client_from_env`]: crate::costs::client_from_env
pub async fn sns_client_from_env(region: &str) -> Client {
    let config = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new(region.to_owned()))
        .load()
        .await;
    Client::new(&config)
}

/// What became of one alert at one topic.
#[derive(Debug)]
pub(crate) struct Published {
    /// HTTP attempts the SDK made (its retries included).
    pub attempts: u32,
    /// `Err` with the service's error code and message, or the SDK's error text.
    pub result: Result<(), String>,
}

/// Publishes `message` (the alert's JSON) to `topic_arn` in `region`.
///
/// `Subject` is [`subject`] of the summary; message attributes `kind`, `severity` and
/// `transition` are Strings (for subscription filter policies). On a FIFO topic (name ending
/// in `.fifo`) the message group is the flag id and the deduplication id is derived from the
/// alert id, so SNS itself drops a redelivered alert. The SDK retries as configured on the
/// client; each attempt is bounded by `timeout`.
pub(crate) async fn publish(
    client: &Client,
    topic_arn: &str,
    region: &str,
    alert: &Alert,
    message: String,
    timeout: Duration,
) -> Published {
    let counter = AttemptCounter::default();
    let attributes = [
        ("kind", alert.flag.kind.code()),
        ("severity", severity_code(alert.flag.severity)),
        ("transition", transition_code(alert.transition)),
    ];
    let mut request = client.publish().topic_arn(topic_arn).message(message);
    let subject = subject(&alert.summary());
    if !subject.is_empty() {
        request = request.subject(subject);
    }
    for (name, value) in attributes {
        match MessageAttributeValue::builder().data_type("String").string_value(value).build() {
            Ok(attribute) => request = request.message_attributes(name, attribute),
            Err(e) => {
                return Published {
                    attempts: 0,
                    result: Err(format!("cannot build message attribute {name}: {e}")),
                };
            }
        }
    }
    if topic_arn.ends_with(".fifo") {
        request = request
            .message_group_id(fifo_id(&alert.flag.id))
            .message_deduplication_id(blake3::hash(alert.alert_id.as_bytes()).to_hex().as_str());
    }
    let timeouts = TimeoutConfig::builder()
        .connect_timeout(timeout)
        .operation_attempt_timeout(timeout)
        .build();
    let overrides = aws_sdk_sns::config::Builder::new()
        .region(Region::new(region.to_owned()))
        .timeout_config(timeouts)
        .interceptor(counter.clone());
    let result = request.customize().config_override(overrides).send().await;
    let attempts = counter.0.load(Ordering::Relaxed);
    match result {
        Ok(_) => Published { attempts, result: Ok(()) },
        Err(e) => {
            let error =
                format!("SNS Publish failed: {}", agentmeter_aggregate::aws_error::describe(&e));
            Published { attempts, result: Err(error) }
        }
    }
}

/// A message subject from a summary: ASCII only (dashes for `—` and `–`, `?` for other
/// non-ASCII characters, spaces for control characters, which SNS refuses), at most
/// [`MAX_SUBJECT_CHARS`] characters, ending in `...` when cut.
pub fn subject(summary: &str) -> String {
    let ascii: String = summary
        .chars()
        .map(|c| match c {
            '—' | '–' => '-',
            c if c.is_control() => ' ',
            c if c.is_ascii() => c,
            _ => '?',
        })
        .collect();
    let ascii = ascii.trim();
    if ascii.len() <= MAX_SUBJECT_CHARS {
        ascii.to_owned()
    } else {
        // All ASCII, so byte offsets are character offsets.
        format!("{}...", ascii[..MAX_SUBJECT_CHARS - 3].trim_end())
    }
}

/// A FIFO message group id: the flag id when SNS accepts it (1 to 128 printable ASCII
/// characters), else its BLAKE3 hex digest.
fn fifo_id(id: &str) -> String {
    if !id.is_empty() && id.len() <= 128 && id.bytes().all(|b| b.is_ascii_graphic()) {
        id.to_owned()
    } else {
        blake3::hash(id.as_bytes()).to_hex().to_string()
    }
}

fn severity_code(severity: Severity) -> &'static str {
    match severity {
        Severity::Info => "info",
        Severity::Warning => "warning",
        Severity::Critical => "critical",
    }
}

fn transition_code(transition: Transition) -> &'static str {
    match transition {
        Transition::Raised => "raised",
        Transition::Resolved => "resolved",
    }
}

/// Counts the SDK's attempts of one operation (retries included), for the report.
#[derive(Debug, Clone, Default)]
struct AttemptCounter(Arc<AtomicU32>);

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_before_attempt(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}
