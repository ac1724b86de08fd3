//! The one error type of the alerts module.
//!
//! Delivery itself never fails as a whole: a sink that cannot take an alert becomes a
//! [`DeliveryFailure`](super::DeliveryFailure) in the report. These errors are for what must
//! be right before a run starts: the `--alert` values and the webhook secret.

use std::path::PathBuf;

use super::sink::ACCEPTED_FORMS;

/// A refused `--alert` value or an unusable webhook secret.
///
/// No message ever carries the secret itself: secret errors name the environment variable
/// (and the file it names), never the value.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AlertError {
    /// An `--alert` value is none of the accepted forms.
    #[error("invalid alert sink {value}: {reason}; accepted: {ACCEPTED_FORMS}")]
    Sink {
        /// The refused value, quoted, escaped and shortened (credentials in a URL redacted).
        value: String,
        /// The rule it breaks.
        reason: String,
    },
    /// The webhook secret variable is set but unusable (empty, not UTF-8).
    #[error("webhook secret {variable} {reason}")]
    Secret {
        /// `AGENTMETER_WEBHOOK_SECRET` or `AGENTMETER_WEBHOOK_SECRET_FILE`.
        variable: &'static str,
        /// What is wrong with it (never the value).
        reason: &'static str,
    },
    /// The file named by `AGENTMETER_WEBHOOK_SECRET_FILE` cannot be read.
    #[error("cannot read the webhook secret file {} named by {variable}", path.display())]
    SecretFile {
        /// `AGENTMETER_WEBHOOK_SECRET_FILE`.
        variable: &'static str,
        /// The file it names.
        path: PathBuf,
        /// Why it cannot be read.
        #[source]
        source: std::io::Error,
    },
}

/// Shows an untrusted value in a message: quoted, escaped, at most 200 characters, with the
/// user-info, query and fragment of anything URL-like (`scheme://user:password@host?token=…`)
/// redacted.
pub(crate) fn quoted(value: &str) -> String {
    const MAX: usize = 200;
    let redacted = redact_url(value);
    let cut: String = redacted.chars().take(MAX).collect();
    if cut.len() < redacted.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
}

/// Replaces `user:password@` after `://` (up to the first `/`, `?` or `#`) with
/// `[redacted]@`, and everything from the first `?` or `#` with `?[redacted]` or
/// `#[redacted]`: a refused URL is never parsed, so this works on the text, and credentials
/// hide in any of the three parts.
fn redact_url(value: &str) -> String {
    let Some((scheme, rest)) = value.split_once("://") else {
        return value.to_owned();
    };
    let (rest, tail) = match rest.find(['?', '#']) {
        Some(at) => {
            (&rest[..at], if rest[at..].starts_with('?') { "?[redacted]" } else { "#[redacted]" })
        }
        None => (rest, ""),
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://[redacted]@{}{tail}", &rest[at + 1..]),
        None => format!("{scheme}://{rest}{tail}"),
    }
}
