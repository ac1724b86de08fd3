//! Alert sinks: where raised and resolved flags are sent.
//!
//! - [`AlertSink`]: one `--alert` value, parsed with [`str::parse`]: `file:///abs/path.jsonl`,
//!   `stdout`, an `http://` or `https://` webhook URL, an SNS topic ARN
//!   `arn:aws:sns:REGION:ACCOUNT_ID:TOPIC`, or an EventBridge bus ARN
//!   `arn:aws:events:REGION:ACCOUNT_ID:event-bus/NAME`. Anything else is an [`AlertError::Sink`] naming
//!   the value and listing [`ACCEPTED_FORMS`].
//! - [`deliver`]: sends each [`Alert`](crate::flags::Alert) to each sink with the
//!   [`DeliveryOptions`] and returns a [`DeliveryReport`]. A sink that fails never stops the
//!   run or the other sinks; each [`DeliveryFailure`] names the sink (display form, no
//!   credentials), the alert id, the attempts and the last error. Once an alert has failed at
//!   a sink, that sink's remaining alerts are not attempted in the same call (circuit breaker,
//!   [`SinkReport::held`]).
//! - [`deliver_with_state`]: a run's delivery against the alert state
//!   ([`FlagState`](crate::flags::FlagState)): each configured sink gets its pending alerts
//!   first, then the new ones; what it does not take stays pending, under the sink's redacted
//!   form and key ([`AlertSink::key`]), never the configured form.
//! - [`Secret`]: the webhook signing secret, from `AGENTMETER_WEBHOOK_SECRET` or the file
//!   named by `AGENTMETER_WEBHOOK_SECRET_FILE` ([`Secret::from_env`]). It is never logged,
//!   never in an error and never in a report; its `Debug` and `Display` print `[redacted]`.
//!
//! # Sinks
//!
//! - **File**: each alert is one line, `serde_json::to_string(&alert)` and `\n`, appended (the
//!   parent directories are created); the file is flushed and synced once per [`deliver`]
//!   call.
//! - **Stdout**: one line per alert, [`Alert::summary`](crate::flags::Alert::summary).
//! - **Webhook**: one `POST` per alert, described below. Retried on connection errors,
//!   timeouts, 429 and 5xx, at most [`DeliveryOptions::max_attempts`] requests, waiting
//!   [`DeliveryOptions::initial_backoff`] and doubling up to
//!   [`DeliveryOptions::max_backoff`] (a `Retry-After: <seconds>` answer sets the wait,
//!   capped at the same maximum). Other statuses, redirects included, are failures at once.
//! - **SNS**: one `Publish` per alert: `Message` is the alert JSON, `Subject` the summary
//!   made ASCII and cut to 100 characters ([`subject`]), String message attributes `kind`
//!   (`silo_migration`...), `severity` (`info`, `warning`, `critical`) and `transition`
//!   (`raised`, `resolved`) for subscription filter policies. On a FIFO topic, the message
//!   group is the flag id and the deduplication id a digest of the alert id. The SDK retries
//!   (its standard retry policy); the client is [`DeliveryOptions::sns_client`] or one built
//!   from the environment ([`sns_client_from_env`]: standard credential chain,
//!   `AWS_ENDPOINT_URL`), and every publish goes to the region of its topic's ARN.
//! - **EventBridge**: one `PutEvents` entry per alert on the bus: source `agentmeter`,
//!   detail-type `Flag Raised` or `Flag Resolved` ([`detail_type`]), the alert JSON as detail
//!   (rules match `detail.flag.kind`, `detail.flag.severity`...), the evaluation time as the
//!   event time. EventBridge keeps no idempotency key: targets drop redeliveries by
//!   `detail.alert_id`. An entry the bus refuses is a failure naming its error code.
//!
//! # Webhook signatures
//!
//! Each webhook request is
//!
//! ```text
//! POST <url>
//! Content-Type: application/json
//! Idempotency-Key: <alert_id>
//! X-Agentmeter-Timestamp: <unix seconds when sent, decimal>
//! X-Agentmeter-Signature: sha256=<lowercase hex HMAC-SHA256(secret, "<timestamp>.<body>")>
//!
//! <body: the alert JSON, exactly the bytes that were signed>
//! ```
//!
//! The signed string is the `X-Agentmeter-Timestamp` header value, one `.`, and the raw
//! request body. Without a secret the signature header is left out (and a warning logged).
//! To verify, a receiver:
//!
//! 1. takes the raw body bytes, before any JSON parsing;
//! 2. computes HMAC-SHA256 with the shared secret over `timestamp + "." + body`, and compares
//!    its lowercase hex with the part after `sha256=` in constant time;
//! 3. rejects a timestamp too far from its own clock (say more than 5 minutes): a captured
//!    request cannot then be replayed later;
//! 4. drops an `Idempotency-Key` it has already processed: retries and later runs resend the
//!    same alert with the same key and body (only the timestamp and signature change).
//!
//! In Python:
//!
//! ```text
//! import hashlib, hmac, time
//!
//! def verify(secret: bytes, headers, body: bytes, tolerance: int = 300) -> bool:
//!     timestamp = headers["X-Agentmeter-Timestamp"]
//!     digest = hmac.new(secret, timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
//!     return (hmac.compare_digest("sha256=" + digest, headers["X-Agentmeter-Signature"])
//!             and abs(time.time() - int(timestamp)) <= tolerance)
//! ```
//!
//! In Rust, [`Secret::verify`] does steps 1 and 2.
//!
//! # Example
//!
//! ```
//! use agentmeter_reports::alerts::{AlertSink, Secret};
//!
//! let sink: AlertSink = "arn:aws:sns:eu-west-1:123456789012:agentmeter-alerts".parse()?;
//! assert_eq!(sink.kind(), "sns");
//! assert!("ftp://example.com/alerts".parse::<AlertSink>().is_err());
//!
//! let secret = Secret::new("s3cr3t");
//! assert_eq!(format!("{secret:?}"), "[redacted]");
//! let signature = secret.signature("1767225600", br#"{"alert_id":"a"}"#);
//! assert!(secret.verify("1767225600", br#"{"alert_id":"a"}"#, &signature));
//! # Ok::<(), agentmeter_reports::alerts::AlertError>(())
//! ```

mod deliver;
mod error;
mod eventbridge;
#[cfg(test)]
mod eventbridge_tests;
mod file;
mod outbox;
mod secret;
mod sink;
mod sns;
mod webhook;

#[cfg(test)]
mod outbox_tests;
#[cfg(test)]
mod sns_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod webhook_tests;

pub use deliver::{DeliveryFailure, DeliveryOptions, DeliveryReport, SinkReport, deliver};
pub use error::AlertError;
pub use eventbridge::{SOURCE as EVENTBRIDGE_SOURCE, detail_type, eventbridge_client_from_env};
pub use outbox::{CircuitOpen, OutboxReport, deliver_with_state};
pub use secret::{SECRET_ENV, SECRET_FILE_ENV, SIGNATURE_PREFIX, Secret};
pub use sink::{ACCEPTED_FORMS, AlertSink};
pub use sns::{MAX_SUBJECT_CHARS, sns_client_from_env, subject};
pub use webhook::{IDEMPOTENCY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER};
