//! The webhook sink: each alert POSTed as signed JSON, with bounded retries.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::StatusCode;
use reqwest::header::{CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use tracing::debug;

use super::{DeliveryOptions, Secret};

/// The header carrying the alert id, the same on every attempt and every run.
pub const IDEMPOTENCY_HEADER: &str = "Idempotency-Key";

/// The header carrying the send time in Unix seconds (part of the signed string).
pub const TIMESTAMP_HEADER: &str = "X-Agentmeter-Timestamp";

/// The header carrying `sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">`.
pub const SIGNATURE_HEADER: &str = "X-Agentmeter-Signature";

/// What became of one alert at one webhook.
#[derive(Debug)]
pub(crate) struct Posted {
    /// Requests sent (0 when the request could not even be built).
    pub attempts: u32,
    /// `Err` with the last error when it was not delivered.
    pub result: Result<(), String>,
}

/// The HTTP client all webhooks of one delivery share: `timeout` per request and for
/// connecting, redirects not followed (a redirect is a failure: following one would resend
/// the signed alert to another place, and turn the POST into a GET).
pub(crate) fn client(opts: &DeliveryOptions) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(opts.timeout)
        .connect_timeout(opts.timeout)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("agentmeter/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {}", describe(e, opts.timeout)))
}

/// What to do after a failed attempt.
enum Verdict {
    /// Try again after the backoff, or after `after` when the server said so.
    Retry { error: String, after: Option<Duration> },
    /// Give up now.
    Fail(String),
}

/// POSTs `body` (the alert's JSON) to `url` until it is accepted (any 2xx), a permanent
/// failure is seen, or `opts.max_attempts` requests were sent.
///
/// Retried: connection errors, timeouts and other transport errors, 429 and 5xx; the wait
/// doubles from `opts.initial_backoff` up to `opts.max_backoff`, or follows a `Retry-After`
/// header in seconds (capped at `opts.max_backoff`). Not retried: other statuses (4xx, and
/// 3xx since redirects are not followed). Every attempt sends the same body and
/// idempotency key, with a fresh timestamp and signature.
pub(crate) async fn post(
    client: &reqwest::Client,
    url: &str,
    body: &[u8],
    alert_id: &str,
    secret: Option<&Secret>,
    opts: &DeliveryOptions,
) -> Posted {
    let Ok(idempotency_key) = HeaderValue::from_str(alert_id) else {
        return Posted {
            attempts: 0,
            result: Err("the alert id is not a valid HTTP header value".to_owned()),
        };
    };
    let max_attempts = opts.max_attempts.max(1);
    let mut attempts = 0;
    loop {
        attempts += 1;
        let timestamp = unix_seconds().to_string();
        let mut request = client
            .post(url)
            .header(CONTENT_TYPE, "application/json")
            .header(IDEMPOTENCY_HEADER, idempotency_key.clone())
            .header(TIMESTAMP_HEADER, &timestamp)
            .body(body.to_vec());
        if let Some(secret) = secret {
            request = request.header(SIGNATURE_HEADER, secret.signature(&timestamp, body));
        }
        let verdict = match request.send().await {
            Ok(response) if response.status().is_success() => {
                return Posted { attempts, result: Ok(()) };
            }
            Ok(response) => judge_status(response.status(), response.headers(), opts),
            Err(e) if e.is_builder() => Verdict::Fail(describe(e, opts.timeout)),
            Err(e) => Verdict::Retry { error: describe(e, opts.timeout), after: None },
        };
        match verdict {
            Verdict::Fail(error) => return Posted { attempts, result: Err(error) },
            Verdict::Retry { error, .. } if attempts >= max_attempts => {
                return Posted { attempts, result: Err(error) };
            }
            Verdict::Retry { error, after } => {
                let wait = after.unwrap_or_else(|| backoff(opts, attempts)).min(opts.max_backoff);
                debug!(alert_id, attempts, wait_ms = wait.as_millis() as u64, error = %error,
                    "Webhook attempt failed; retrying.");
                tokio::time::sleep(wait).await;
            }
        }
    }
}

fn judge_status(status: StatusCode, headers: &HeaderMap, opts: &DeliveryOptions) -> Verdict {
    let error = match status.canonical_reason() {
        Some(reason) => format!("HTTP {} {reason}", status.as_u16()),
        None => format!("HTTP {}", status.as_u16()),
    };
    if status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error() {
        let after = retry_after(headers).map(|after| after.min(opts.max_backoff));
        Verdict::Retry { error, after }
    } else if status.is_redirection() {
        Verdict::Fail(format!("{error} (redirects are not followed)"))
    } else {
        Verdict::Fail(error)
    }
}

/// A `Retry-After` header in delay-seconds form; the HTTP-date form is ignored (the
/// exponential backoff applies).
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?;
    value.trim().parse::<u64>().ok().map(Duration::from_secs)
}

/// The wait after failed attempt `attempt` (1-based): `initial_backoff × 2^(attempt-1)`,
/// at most `max_backoff`.
pub(crate) fn backoff(opts: &DeliveryOptions, attempt: u32) -> Duration {
    let factor = 1u32.checked_shl(attempt.saturating_sub(1)).unwrap_or(u32::MAX);
    opts.initial_backoff.saturating_mul(factor).min(opts.max_backoff)
}

/// A transport error with its causes, without the URL (which may carry credentials).
fn describe(error: reqwest::Error, timeout: Duration) -> String {
    if error.is_timeout() {
        return format!("timed out after {timeout:?}");
    }
    // hyper and reqwest repeat a cause's text in the wrapper's; error_chain keeps each once.
    agentmeter_schemas::error_chain(&error.without_url(), None)
}

/// Now, in Unix seconds: the send time a receiver compares with its clock to reject replays.
/// 0 if the clock is before 1970.
fn unix_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}
