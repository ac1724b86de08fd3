//! One reading of AWS SDK errors for every AWS reader: retry or not, and what to tell the user.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// Whether `err` is worth retrying (an error code in `throttled`, a 5xx, a transport failure
/// or a timeout), and its description (`Code: message`, or the transport error). Every SDK
/// crate's `SdkError` is this one type.
pub(crate) fn classify<E>(err: &SdkError<E>, throttled: &[&str]) -> (bool, String)
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("unknown");
            let retryable = throttled.contains(&code) || s.raw().status().as_u16() >= 500;
            (retryable, format!("{code}: {}", s.err().message().unwrap_or_default()))
        }
        SdkError::DispatchFailure(_) | SdkError::TimeoutError(_) | SdkError::ResponseError(_) => {
            (true, DisplayErrorContext(err).to_string())
        }
        _ => (false, DisplayErrorContext(err).to_string()),
    }
}
