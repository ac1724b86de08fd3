//! The lake: exactly-once writes of usage events into Hive-partitioned Parquet, the rollups
//! derived from them, the quarantine, and reading it all back.
//!
//! - [`Lake`] opens a lake directory for writing (one writer at a time, enforced by a lock;
//!   leftovers of a crashed writer cleaned up); [`LakeReader`] reads one.
//! - [`EventWriter`] deduplicates events against the lake by event id and writes them as
//!   complete files (temporary name, sync, rename); its `finish` rebuilds `usage_hourly`.
//! - [`QuarantineWriter`] keeps refused records, one replayable file per source.
//! - [`layout`] is the single place where lake paths are built.
#![deny(missing_docs)]

pub mod checkpoint;
pub mod compact;
mod error;
pub mod fsio;
mod lake;
pub mod layout;
mod parquet_io;
mod quarantine;
mod record;
mod rollup;
mod span_rollup;
pub mod store;
pub mod wal;
mod writer;

pub use error::{Error, Result};
pub use lake::{LAKE_FORMAT_VERSION, Lake, LakeReader};
pub use quarantine::{QuarantineReport, QuarantineWriter};
pub use record::LakeRecord;
pub use rollup::{
    COVERS_KEY, Coverage, HOURLY_FILE, ROLLUP_TABLES, RollupReport, RollupState, rebuild_hourly,
    rebuild_hourly_all, rollup_state,
};
pub use span_rollup::UNKNOWN;
pub use writer::{EventWriter, WriteStats, WriterOptions};

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
