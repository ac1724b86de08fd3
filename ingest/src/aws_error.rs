//! One reading of AWS SDK errors for every AWS reader: what to tell the user. Retrying is the
//! SDK's (standard mode: throttling codes, 5xx, timeouts and transport errors, with jitter, as
//! the client's configuration says), so an error that reaches a reader is final.

use aws_sdk_kinesis::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

/// `Code: message` of a service error, else the transport error. Every SDK crate's `SdkError`
/// is this one type.
pub(crate) fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(s) => {
            let code = s.err().code().unwrap_or("unknown");
            format!("{code}: {}", s.err().message().unwrap_or_default())
        }
        _ => DisplayErrorContext(err).to_string(),
    }
}
