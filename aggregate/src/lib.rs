//! The lake: exactly-once writes of usage events into Hive-partitioned Parquet, the rollups
//! derived from them, the quarantine, and reading it all back.
//!
//! - [`store`]: where the lake's objects live, a local directory or an S3 prefix, with the
//!   conditional writes that let any number of writers share it without a lock.
//! - [`Lake`] opens a lake (creating it when new) and reads its tables back.
//! - [`EventWriter`] deduplicates events against the lake by event id and writes them as
//!   objects created only if absent; its `finish` rebuilds the rollups of the days written.
//! - [`rollup`](rebuild_hourly): rollups that record the data files they cover, rebuilt on
//!   demand when stale, replaced only from the version read.
//! - [`QuarantineWriter`] keeps refused records, one replayable file per source.
//! - [`layout`] is the single place where lake keys are built.
//! - [`aws_credentials`] and [`aws_error`]: AWS credentials checked once, and SDK errors in
//!   words, for the S3 store and the reports' AWS calls.
#![deny(missing_docs)]

pub mod aws_credentials;
pub mod aws_error;
pub mod checkpoint;
pub mod compact;
mod error;
pub mod fsio;
mod lake;
pub mod layout;
mod parquet_io;
pub mod priority;
mod quarantine;
mod record;
mod rollup;
mod row_keys;
mod sessions;
mod span_rollup;
pub mod store;
pub mod wal;
mod writer;

pub use error::{Error, Result};
pub use lake::{LAKE_FORMAT_VERSION, Lake};
pub use parquet_io::ColumnPlan;
pub use quarantine::{QuarantineReport, QuarantineWriter};
pub use record::{Identity, LakeRecord, partition_of_ms};
pub use rollup::{
    COVERS_KEY, Coverage, HOURLY_FILE, ROLLUP_TABLES, RollupReport, RollupState, rebuild_hourly,
    rebuild_hourly_all, rollup_state,
};
pub use span_rollup::UNKNOWN;
pub use writer::{
    AheadReport, DEFAULT_BATCH_BYTES, EventWriter, RollupsAhead, WriteStats, WriterOptions,
};

/// Writes one Parquet file atomically with the lake's writer settings (ZSTD, statistics,
/// declared sort order), for exports kept outside the lake's tables.
///
/// # Errors
///
/// The file cannot be written.
pub fn write_parquet_file(
    path: &std::path::Path,
    batch: &arrow_array::RecordBatch,
    sorted_by: &[usize],
) -> Result<()> {
    parquet_io::write_file(
        path,
        batch.schema(),
        parquet_io::properties(sorted_by, &[]),
        std::slice::from_ref(batch),
    )
}
