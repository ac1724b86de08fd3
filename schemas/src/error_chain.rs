//! An error in words for the user: its message and its causes', each once, or a service's
//! refusal as `Code: message`.

use std::error::Error;

/// `error`'s message and its causes' (`a: b: c`), then `(HTTP status)` when an answer came.
///
/// The AWS readers and the S3 store describe an SDK transport error (a connection dropped, an
/// answer cut off, a timeout) with it, instead of `DisplayErrorContext`, which appends a debug
/// dump of the whole raw answer (every header, the body's internals) to what the user reads.
/// A message that an earlier one already holds is left out (some errors repeat their cause in
/// their own message); at most 8 are shown.
pub fn error_chain(error: &(dyn Error + 'static), http_status: Option<u16>) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = Some(error);
    // Bounded: a cause chain is a few links long.
    while let Some(err) = next.take()
        && parts.len() < 8
    {
        let message = err.to_string();
        // Some errors repeat their cause in their own message.
        if !parts.iter().any(|p| p.contains(&message)) {
            parts.push(message);
        }
        next = err.source();
    }
    let text = parts.join(": ");
    match http_status {
        Some(status) => format!("{text} (HTTP {status})"),
        None => text,
    }
}

/// A service's refusal in words: `Code: message`, or `Code` alone when the answer carried no
/// message (or an empty one).
///
/// The AWS readers, the S3 store and the alert sinks describe an SDK service error (and
/// EventBridge a refused entry) with it; the caller passes `unknown` when the answer had no
/// code.
pub fn service_error(code: &str, message: Option<&str>) -> String {
    match message {
        Some(message) if !message.is_empty() => format!("{code}: {message}"),
        _ => code.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An error with a message and an optional cause.
    #[derive(Debug)]
    struct Link(String, Option<Box<Link>>);

    impl std::fmt::Display for Link {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(&self.0)
        }
    }

    impl Error for Link {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    fn chain(messages: &[&str]) -> Link {
        messages
            .iter()
            .rev()
            .fold(None, |cause, m| Some(Link((*m).to_owned(), cause.map(Box::new))))
            .unwrap()
    }

    #[test]
    fn causes_are_named_once_and_the_chain_is_bounded() {
        let e = chain(&["dispatch failure", "io error: connection reset", "connection reset"]);
        assert_eq!(error_chain(&e, None), "dispatch failure: io error: connection reset");
        assert_eq!(
            error_chain(&e, Some(503)),
            "dispatch failure: io error: connection reset (HTTP 503)"
        );
        let long: Vec<String> = (0..20).map(|i| format!("cause {i}")).collect();
        let e = chain(&long.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(error_chain(&e, None).matches("cause").count(), 8);
    }

    #[test]
    fn a_cause_repeated_inside_its_wrappers_text_is_named_once() {
        // hyper and reqwest put their cause's text in the middle of their own.
        let e = chain(&["error sending request", "client error (Connect): refused", "refused"]);
        assert_eq!(error_chain(&e, None), "error sending request: client error (Connect): refused");
    }

    #[test]
    fn service_errors_read_as_code_and_message() {
        assert_eq!(
            service_error("NoSuchBucket", Some("The specified bucket does not exist")),
            "NoSuchBucket: The specified bucket does not exist"
        );
        assert_eq!(service_error("NotFound", None), "NotFound");
        assert_eq!(service_error("NotFound", Some("")), "NotFound");
        assert_eq!(service_error("unknown", Some("slow down")), "unknown: slow down");
    }
}
