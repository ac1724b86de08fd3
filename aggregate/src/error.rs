//! Errors of the lake.

use std::io;
use std::path::PathBuf;

/// What went wrong with the lake. Bad input never gets here: it is quarantined upstream.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A file or directory could not be read or written.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("{}: {source}", path.display())]
    Parquet {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: parquet::errors::ParquetError,
    },
    /// A Parquet file's content does not match its table.
    #[error("{}: {source}", path.display())]
    Arrow {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: arrow_schema::ArrowError,
    },
    /// A request to the lake's object store failed (after the client's own retries).
    #[error("{operation} {uri}: {detail}")]
    Store {
        /// The object or prefix.
        uri: String,
        /// The operation (`PutObject`, ...).
        operation: &'static str,
        /// What the store said.
        detail: String,
    },
    /// A file listed a moment ago is gone (a compaction merged it away): list again.
    #[error("{uri} is gone since it was listed (compacted away)")]
    Vanished {
        /// The object.
        uri: String,
    },
    /// Another process is writing to the lake.
    #[error(
        "lake {} is in use by another agentmeter process (lock {}); wait for it to finish",
        root.display(),
        lock.display()
    )]
    Locked {
        /// The lake.
        root: PathBuf,
        /// The lock file.
        lock: PathBuf,
    },
    /// The directory is not a lake this version can use.
    #[error("{}: {reason}", root.display())]
    NotALake {
        /// The directory.
        root: PathBuf,
        /// Why.
        reason: String,
    },
    /// A state file of the lake cannot be used.
    #[error("{}: {detail}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        detail: String,
    },
    /// A sum went past `i64`, which Athena's `bigint` cannot hold.
    #[error("usage sums overflow a 64-bit integer in {table} partition dt={dt}")]
    Overflow {
        /// Table.
        table: &'static str,
        /// Partition.
        dt: String,
    },
    /// Rollups of some partitions could not be rebuilt: their usage cannot be read.
    #[error("the rollups of {} could not be rebuilt: {}", plural_days(days.len()), list_days(days))]
    RollupsFailed {
        /// Each failed partition and why.
        days: Vec<(chrono::NaiveDate, String)>,
    },
}

fn plural_days(n: usize) -> String {
    if n == 1 { "1 day".into() } else { format!("{n} days") }
}

fn list_days(days: &[(chrono::NaiveDate, String)]) -> String {
    days.iter().map(|(d, why)| format!("dt={d} ({why})")).collect::<Vec<_>>().join("; ")
}

/// Result with the lake's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Adds the path to an I/O error.
pub(crate) fn io_at(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
    let path = path.into();
    move |source| Error::Io { path, source }
}
