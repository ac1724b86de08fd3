//! What to tell the user of an AWS SDK error, for the S3 store and the reports' AWS calls
//! (Bedrock, SNS, EventBridge). Every SDK crate's `SdkError` is the one type used here.

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};

/// `Code: message` of a service error ([`agentmeter_schemas::service_error`], `unknown` when
/// the answer had no code), else the transport error ([`transport_error`]).
pub fn describe<E>(err: &SdkError<E>) -> String
where
    E: ProvideErrorMetadata + std::error::Error + 'static,
{
    match err {
        SdkError::ServiceError(s) => agentmeter_schemas::service_error(
            s.err().code().unwrap_or("unknown"),
            s.err().message(),
        ),
        _ => transport_error(err),
    }
}

/// An error that is not the service's answer (a connection dropped, an answer cut off, a
/// timeout): [`agentmeter_schemas::error_chain`] with the answer's status when one came,
/// instead of `DisplayErrorContext`'s debug dump of the raw answer.
pub fn transport_error<E: std::error::Error + 'static>(e: &SdkError<E>) -> String {
    agentmeter_schemas::error_chain(e, e.raw_response().map(|r| r.status().as_u16()))
}
