//! One reading of AWS SDK errors for every AWS reader: what to tell the user. Retrying is the
//! SDK's (standard mode: throttling codes, 5xx, timeouts and transport errors, with jitter, as
//! the client's configuration says), so an error that reaches a reader is final.

use aws_sdk_kinesis::error::{ProvideErrorMetadata, SdkError};

/// `Code: message` of a service error ([`agentmeter_schemas::service_error`]), else the
/// transport error. Every SDK crate's `SdkError`
/// is this one type.
pub(crate) fn describe<E>(err: &SdkError<E>) -> String
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
/// timeout): [`agentmeter_schemas::error_chain`] with the answer's status when one came.
fn transport_error<E: std::error::Error + 'static>(e: &SdkError<E>) -> String {
    agentmeter_schemas::error_chain(e, e.raw_response().map(|r| r.status().as_u16()))
}

#[cfg(test)]
mod tests {
    use aws_sdk_kinesis::config::http::HttpResponse;
    use aws_sdk_kinesis::error::ErrorMetadata;
    use aws_sdk_kinesis::operation::get_records::GetRecordsError;
    use aws_sdk_kinesis::types::error::ResourceNotFoundException;
    use aws_smithy_types::body::SdkBody;

    use super::*;

    #[test]
    fn service_errors_read_as_code_and_message() {
        let raw = || HttpResponse::new(400u16.try_into().unwrap(), SdkBody::empty());
        let refused = |message: Option<&str>| {
            let mut meta = ErrorMetadata::builder().code("ResourceNotFoundException");
            if let Some(message) = message {
                meta = meta.message(message);
            }
            let err = ResourceNotFoundException::builder()
                .set_message(message.map(str::to_owned))
                .meta(meta.build())
                .build();
            SdkError::service_error(GetRecordsError::ResourceNotFoundException(err), raw())
        };
        assert_eq!(
            describe(&refused(Some("Stream s not found"))),
            "ResourceNotFoundException: Stream s not found"
        );
        // No message: the code alone, not `Code: `.
        assert_eq!(describe(&refused(None)), "ResourceNotFoundException");
        let unhandled =
            GetRecordsError::generic(ErrorMetadata::builder().message("slow down").build());
        assert_eq!(describe(&SdkError::service_error(unhandled, raw())), "unknown: slow down");
    }

    #[test]
    fn transport_errors_read_as_their_causes_without_the_raw_answer() {
        let cut = std::io::Error::new(
            std::io::ErrorKind::UnexpectedEof,
            "end of file before message length reached",
        );
        let mut raw = HttpResponse::new(200u16.try_into().unwrap(), SdkBody::empty());
        raw.headers_mut().insert("x-amzn-requestid", "JMRCLRFDv7Ur");
        let e: SdkError<GetRecordsError> = SdkError::response_error(cut, raw);
        assert_eq!(
            describe(&e),
            "response error: end of file before message length reached (HTTP 200)"
        );
    }
}
