//! Errors of the pipeline's services.

/// Why a service stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The user's to fix before running again: a bad option, a missing source, no region, a
    /// location that is not a lake.
    #[error("{0}")]
    Usage(String),
    /// The lake could not be read or written.
    #[error("{what}: {source}")]
    Lake {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: agentmeter_aggregate::Error,
    },
    /// A source (files, Kinesis, CloudWatch Logs, S3) failed after its retries.
    #[error("{what}: {detail}")]
    Source {
        /// What was being read.
        what: String,
        /// What went wrong.
        detail: String,
    },
    /// A local file or the runtime failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Stopped by a signal with work left; what was done is kept, and running the same
    /// command again does the rest.
    #[error("{0}")]
    Interrupted(String),
}

/// Result with the pipeline's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds what was being done to a lake error.
pub(crate) fn lake(what: impl Into<String>) -> impl FnOnce(agentmeter_aggregate::Error) -> Error {
    let what = what.into();
    move |source| Error::Lake { what, source }
}
