//! The `--alert` values: where alerts go, parsed and checked before anything is sent.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use reqwest::Url;

use super::AlertError;
use super::error::quoted;

/// The accepted `--alert` forms, as refusals list them.
pub const ACCEPTED_FORMS: &str = "file:///ABSOLUTE/PATH.jsonl, stdout, an http:// or https:// \
     webhook URL, an SNS topic ARN arn:aws:sns:REGION:ACCOUNT_ID:TOPIC, or an EventBridge bus ARN \
     arn:aws:events:REGION:ACCOUNT_ID:event-bus/NAME";

/// The ARN partitions accepted for SNS topics.
const PARTITIONS: [&str; 3] = ["aws", "aws-cn", "aws-us-gov"];

/// SNS topic names: at most 256 characters, `.fifo` included.
const MAX_TOPIC_NAME: usize = 256;

/// Where alerts go: one `--alert` value.
///
/// Parse one with [`str::parse`]; [`Display`](fmt::Display) gives the form used in logs and
/// in [`DeliveryReport`](super::DeliveryReport)s, which never carries credentials (see
/// below). `Debug` shows the same redacted form.
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum AlertSink {
    /// Appends one JSON line per alert to this absolute path (`file:///abs/path/alerts.jsonl`).
    File(PathBuf),
    /// Prints one summary line per alert (`stdout`).
    Stdout,
    /// POSTs each alert as signed JSON to this `http://` or `https://` URL (normalized by
    /// URL parsing). Shown without its user-info and query, which may hold credentials.
    Webhook(String),
    /// Publishes each alert to an SNS topic.
    Sns {
        /// `arn:aws:sns:REGION:ACCOUNT_ID:TOPIC`.
        topic_arn: String,
        /// The region part of the ARN: where the topic lives, and so where to publish.
        region: String,
    },
    /// Puts each alert as an event on an EventBridge bus.
    EventBridge {
        /// `arn:aws:events:REGION:ACCOUNT_ID:event-bus/NAME`.
        bus_arn: String,
        /// The region part of the ARN.
        region: String,
    },
}

impl AlertSink {
    /// The sink's kind: `file`, `stdout`, `webhook`, `sns` or `eventbridge`.
    pub fn kind(&self) -> &'static str {
        match self {
            AlertSink::File(_) => "file",
            AlertSink::Stdout => "stdout",
            AlertSink::Webhook(_) => "webhook",
            AlertSink::Sns { .. } => "sns",
            AlertSink::EventBridge { .. } => "eventbridge",
        }
    }

    /// The sink's identity as configured, credentials and query included, as a lowercase hex
    /// SHA-256: what the alert state keeps to match a pending alert with the same `--alert`
    /// of a later run, since the configured form itself may carry secrets and is never
    /// stored. Computed from the parsed form, so spellings that parse the same (`HTTPS://Host`
    /// and `https://host/`) have the same key.
    pub fn key(&self) -> String {
        use sha2::{Digest, Sha256};
        let mut hash = Sha256::new();
        // The kind first, then a separator no form contains, so no two kinds can collide.
        hash.update(self.kind().as_bytes());
        hash.update([0]);
        match self {
            AlertSink::File(path) => hash.update(path.as_os_str().as_encoded_bytes()),
            AlertSink::Stdout => {}
            AlertSink::Webhook(url) => hash.update(url.as_bytes()),
            AlertSink::Sns { topic_arn, .. } => hash.update(topic_arn.as_bytes()),
            AlertSink::EventBridge { bus_arn, .. } => hash.update(bus_arn.as_bytes()),
        }
        hex::encode(hash.finalize())
    }
}

impl FromStr for AlertSink {
    type Err = AlertError;

    /// Parses an `--alert` value.
    ///
    /// - `stdout`;
    /// - `file:///ABSOLUTE/PATH`: an absolute path only (a host or a relative path is
    ///   refused), percent-decoded, naming a file (no trailing `/`, no `.` or `..` segment,
    ///   no query or fragment);
    /// - an `http://` or `https://` URL with a host;
    /// - `arn:PARTITION:sns:REGION:ACCOUNT_ID:TOPIC` with partition `aws`, `aws-cn` or
    ///   `aws-us-gov`, a region such as `us-east-1`, a 12-digit account id and a topic name of
    ///   1 to 256 letters, digits, `-` and `_` (a FIFO topic's name ends in `.fifo`);
    /// - `arn:PARTITION:events:REGION:ACCOUNT_ID:event-bus/NAME`, the same parts, and a bus
    ///   name of 1 to 256 letters, digits, `.`, `-`, `_` and `/`.
    ///
    /// # Errors
    ///
    /// [`AlertError::Sink`] naming the value and the rule it breaks, and listing
    /// [`ACCEPTED_FORMS`].
    fn from_str(value: &str) -> Result<Self, AlertError> {
        let refuse =
            |reason: &str| AlertError::Sink { value: quoted(value), reason: reason.into() };
        if value == "stdout" {
            return Ok(AlertSink::Stdout);
        }
        if value.trim().is_empty() {
            return Err(refuse("it is empty"));
        }
        if value.trim() != value {
            return Err(refuse("it has leading or trailing whitespace"));
        }
        let scheme = value.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
        match scheme.as_deref() {
            Some("file") => parse_file(value).map_err(refuse),
            Some("http" | "https") => parse_webhook(value).map_err(|r| refuse(&r)),
            Some("arn") => parse_arn(value).map_err(|r| refuse(&r)),
            _ => Err(refuse("it is not one of the accepted forms")),
        }
    }
}

fn parse_file(value: &str) -> Result<AlertSink, &'static str> {
    // The scheme is `file` (any case); what follows must be `///` and an absolute path.
    let after_scheme = &value["file:".len()..];
    let Some(path) = after_scheme.strip_prefix("//") else {
        return Err("a file sink is written file:///ABSOLUTE/PATH (with three slashes)");
    };
    if !path.starts_with('/') {
        return Err("a file sink needs an absolute path: file:///ABSOLUTE/PATH \
                    (a host or a relative path is not accepted)");
    }
    if path.contains(['?', '#']) {
        return Err("a file sink takes no query or fragment");
    }
    if path.split('/').any(|segment| segment == "." || segment == "..") {
        return Err("the path must not contain . or .. segments");
    }
    if path.ends_with('/') {
        return Err("the path names a directory, not a file");
    }
    let url = Url::parse(value).map_err(|_| "the path is not a valid file URL")?;
    let path = url.to_file_path().map_err(|()| "the path is not a valid file URL")?;
    Ok(AlertSink::File(path))
}

fn parse_webhook(value: &str) -> Result<AlertSink, String> {
    let url = Url::parse(value).map_err(|e| format!("it is not a valid URL ({e})"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err("a webhook URL must use http:// or https://".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err("a webhook URL needs a host".into());
    }
    Ok(AlertSink::Webhook(url.into()))
}

fn parse_arn(value: &str) -> Result<AlertSink, String> {
    let parts: Vec<&str> = value.split(':').collect();
    let [_, partition, service, region, account, topic] = parts[..] else {
        return Err("an ARN sink has six parts: arn:aws:sns:REGION:ACCOUNT_ID:TOPIC or \
                    arn:aws:events:REGION:ACCOUNT_ID:event-bus/NAME"
            .into());
    };
    if service != "sns" && service != "events" {
        return Err(format!(
            "only SNS topic and EventBridge bus ARNs are accepted, not service {}",
            quoted(service)
        ));
    }
    if !PARTITIONS.contains(&partition) {
        return Err(format!(
            "unknown partition {} (accepted: {})",
            quoted(partition),
            PARTITIONS.join(", ")
        ));
    }
    if !valid_region(region) {
        return Err(format!("invalid region {} (expected e.g. us-east-1)", quoted(region)));
    }
    if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("invalid account id {}: it must be 12 digits", quoted(account)));
    }
    if service == "events" {
        let Some(bus) = topic.strip_prefix("event-bus/") else {
            return Err(format!(
                "an EventBridge ARN must name a bus: event-bus/NAME, not {}",
                quoted(topic)
            ));
        };
        let ok = !bus.is_empty()
            && bus.len() <= 256
            && bus.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-/".contains(&b));
        if !ok {
            return Err(format!(
                "invalid event bus name {}: 1 to 256 letters, digits, ., -, _ and /",
                quoted(bus)
            ));
        }
        return Ok(AlertSink::EventBridge { bus_arn: value.to_owned(), region: region.to_owned() });
    }
    if !valid_topic_name(topic) {
        return Err(format!(
            "invalid topic name {}: 1 to 256 letters, digits, - and _ (a FIFO topic ends in .fifo)",
            quoted(topic)
        ));
    }
    Ok(AlertSink::Sns { topic_arn: value.to_owned(), region: region.to_owned() })
}

/// `us-east-1`, `us-gov-west-1`, `cn-north-1`: two lowercase letters, one or more lowercase
/// words, then a number, joined by `-`.
fn valid_region(region: &str) -> bool {
    let words: Vec<&str> = region.split('-').collect();
    let [first, middle @ .., last] = &words[..] else {
        return false;
    };
    first.len() == 2
        && first.bytes().all(|b| b.is_ascii_lowercase())
        && !middle.is_empty()
        && middle.iter().all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase()))
        && !last.is_empty()
        && last.bytes().all(|b| b.is_ascii_digit())
}

fn valid_topic_name(topic: &str) -> bool {
    let stem = topic.strip_suffix(".fifo").unwrap_or(topic);
    !stem.is_empty()
        && topic.len() <= MAX_TOPIC_NAME
        && stem.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl fmt::Display for AlertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AlertSink::File(path) => write!(f, "file://{}", path.display()),
            AlertSink::Stdout => f.write_str("stdout"),
            AlertSink::Webhook(url) => f.write_str(&display_url(url)),
            AlertSink::Sns { topic_arn, .. } => f.write_str(topic_arn),
            AlertSink::EventBridge { bus_arn, .. } => f.write_str(bus_arn),
        }
    }
}

impl fmt::Debug for AlertSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AlertSink({self})")
    }
}

/// A webhook URL for logs, reports and the alert state: scheme, host, port and the first
/// path segment; user-info, query and any further path segments (Slack, Discord and Teams
/// webhooks carry their secret there) replaced by `[redacted]`, fragment dropped.
pub(crate) fn display_url(url: &str) -> String {
    let Ok(url) = Url::parse(url) else {
        return "[invalid URL]".to_owned();
    };
    let userinfo =
        if url.username().is_empty() && url.password().is_none() { "" } else { "[redacted]@" };
    let host = url.host_str().unwrap_or_default();
    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
    let query = if url.query().is_some() { "?[redacted]" } else { "" };
    let path = url.path();
    let path = match path.trim_start_matches('/').split_once('/') {
        Some((first, rest)) if !rest.is_empty() => format!("/{first}/[redacted]"),
        _ => path.to_owned(),
    };
    format!("{}://{userinfo}{host}{port}{path}{query}", url.scheme())
}
