//! Writing and reading the lake's Parquet files.

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result, io_at};
use crate::fsio::TempFile;

/// Rows per row group: large groups read fastest in Athena; a file holds at most a few.
const ROW_GROUP_ROWS: usize = 1 << 20;

/// How a column is written where the writer's defaults (a dictionary, zstd, page statistics)
/// serve it badly (measured: BENCHMARKS.md, "Levers").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnPlan {
    /// No dictionary: about as many distinct values as rows (one would fill up and be dropped
    /// for every page), or counts mostly zero (zstd makes a run of zeros almost nothing, where
    /// a dictionary interns every row).
    NoDictionary,
    /// A random id: no dictionary, no statistics (the least and greatest of a page of random
    /// ids span nearly all ids, so they prune nothing and cost two comparisons a row), and the
    /// lengths apart from the bytes (`DELTA_LENGTH_BYTE_ARRAY`: zstd no longer meets a length
    /// between every two ids, and the column is smaller and cheaper to compress).
    RandomId,
    /// Times and counts that differ little from row to row: `DELTA_BINARY_PACKED`, not
    /// compressed (zstd finds nothing more in bit-packed deltas).
    Delta,
    /// An id that may be a CloudWatch Logs event id (a usage event's): a [`ColumnPlan::RandomId`],
    /// but in a file whose first id is one, `DELTA_BYTE_ARRAY` (chosen per file). Those ids are
    /// numbers of 56 digits whose leading ones come from the event's time, so in a file sorted
    /// by tenant and time an id shares most of them with the id before it: stored once as a
    /// length, they no longer give zstd a long match to find at every row (on the Firehose
    /// files its search a fifth of what it was, `usage_events` 2.8 % smaller). Hexadecimal ids
    /// share no prefix: so stored, they took 1 to 5 % more room and more time (BENCHMARKS.md,
    /// "Levers").
    LogEventId,
}

/// What the ids of a file are like, for [`ColumnPlan::LogEventId`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum IdShape {
    /// Random text (UUIDs, hashes, request ids): nothing shared from one id to the next.
    Random,
    /// CloudWatch Logs event ids.
    LogEvents,
}

impl IdShape {
    /// The shape of a file's ids, told from its first (files hold one source's ids in
    /// nearly every case; either shape reads the same, only size and time differ).
    pub(crate) fn of(first: &[u8]) -> Self {
        // A CloudWatch Logs event id is 56 decimal digits; no UUID or hash is 32 digits long.
        if first.len() >= 32 && first.iter().all(u8::is_ascii_digit) {
            Self::LogEvents
        } else {
            Self::Random
        }
    }
}

/// Writer settings for one table: ZSTD, statistics per page, the declared sort order, the
/// writing version recorded in the footer, and each of `columns` as its plan says (for a file
/// of random ids: [`properties_for`]).
pub(crate) fn properties(sorted_by: &[usize], columns: &[(&str, ColumnPlan)]) -> WriterProperties {
    properties_for(sorted_by, columns, IdShape::Random)
}

/// [`properties`] for a file whose ids are shaped as `ids` says.
pub(crate) fn properties_for(
    sorted_by: &[usize],
    columns: &[(&str, ColumnPlan)],
    ids: IdShape,
) -> WriterProperties {
    let sorting = sorted_by
        .iter()
        .map(|&i| SortingColumn { column_idx: i as i32, descending: false, nulls_first: false })
        .collect();
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_sorting_columns(Some(sorting))
        .set_created_by(format!("agentmeter {}", env!("CARGO_PKG_VERSION")));
    for &(name, plan) in columns {
        let path = || ColumnPath::from(name);
        b = b.set_column_dictionary_enabled(path(), false);
        match plan {
            ColumnPlan::NoDictionary => {}
            ColumnPlan::RandomId | ColumnPlan::LogEventId => {
                let encoding = match (plan, ids) {
                    (ColumnPlan::LogEventId, IdShape::LogEvents) => Encoding::DELTA_BYTE_ARRAY,
                    _ => Encoding::DELTA_LENGTH_BYTE_ARRAY,
                };
                b = b
                    .set_column_statistics_enabled(path(), EnabledStatistics::None)
                    .set_column_encoding(path(), encoding);
            }
            ColumnPlan::Delta => {
                b = b
                    .set_column_encoding(path(), Encoding::DELTA_BINARY_PACKED)
                    .set_column_compression(path(), Compression::UNCOMPRESSED);
            }
        }
    }
    b.build()
}

/// Writes `batches` to `path` atomically (temporary file, sync, rename).
pub(crate) fn write_file(
    path: &Path,
    schema: SchemaRef,
    props: WriterProperties,
    batches: &[RecordBatch],
) -> Result<()> {
    let mut temp = TempFile::create(path)?;
    let perr = |p: &Path| {
        let p = p.to_owned();
        move |source| Error::Parquet { path: p, source }
    };
    let file = temp.file().try_clone().map_err(io_at(temp.temp_path()))?;
    let mut writer =
        ArrowWriter::try_new(file, schema, Some(props)).map_err(perr(temp.temp_path()))?;
    for b in batches {
        writer.write(b).map_err(perr(temp.temp_path()))?;
    }
    // The footer is written here: a file that was never closed is not a Parquet file.
    writer.close().map_err(perr(temp.temp_path()))?;
    temp.commit()?;
    Ok(())
}

/// Encodes `batches` as one Parquet file in memory (an object to put in the lake).
pub(crate) fn encode(
    what: &str,
    schema: SchemaRef,
    props: WriterProperties,
    batches: &[RecordBatch],
) -> Result<bytes::Bytes> {
    let mut e = Encoder::new(what, schema, props)?;
    for b in batches {
        e.write(b)?;
    }
    e.finish()
}

/// Rows per Arrow batch handed to an [`Encoder`] by callers that build a file's rows in slices:
/// a multiple of the Parquet writer's mini-batch (1,024 rows), so that pages end where they
/// would if the whole file had been one batch, and the bytes are the same. A slice's records
/// (a usage event is at most 224 bytes: 0.9 MB) stay in a core's second-level cache between the
/// writer's pass for the file name and its pass for the Arrow arrays; 16,384 rows (3.7 MB) did
/// not, and cost the committer a tenth more CPU time (BENCHMARKS.md, "Levers").
pub(crate) const ENCODE_ROWS: usize = 4 * 1024;

/// A Parquet file encoded in memory from Arrow batches written one after another, so that a
/// file's rows need not all be held as Arrow arrays at once.
pub(crate) struct Encoder {
    what: String,
    writer: ArrowWriter<Vec<u8>>,
}

impl Encoder {
    pub(crate) fn new(what: &str, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))
            .map_err(|source| Error::Parquet { path: what.into(), source })?;
        Ok(Self { what: what.to_owned(), writer })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer
            .write(batch)
            .map_err(|source| Error::Parquet { path: self.what.as_str().into(), source })
    }

    /// The file's bytes, footer included.
    pub(crate) fn finish(self) -> Result<bytes::Bytes> {
        let buf = self
            .writer
            .into_inner()
            .map_err(|source| Error::Parquet { path: self.what.into(), source })?;
        Ok(bytes::Bytes::from(buf))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};
    use arrow_schema::{DataType, Field, Schema};

    use super::*;

    /// A file encoded in slices of `ENCODE_ROWS` is byte for byte the file of one batch (so
    /// that content-named files stay the same), and a slice size that is not a multiple of
    /// the writer's mini-batch would not be: the test can fail.
    #[test]
    fn a_file_encoded_in_slices_is_the_file_of_one_batch() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
        ]));
        // Several pages of 20,000 rows at most, whose ends another slicing would move.
        let rows = (3 * ENCODE_ROWS).max(48 * 1024) + 777;
        let tenants: Vec<String> = (0..rows).map(|i| format!("tenant-{}", i / 5000)).collect();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(tenants)) as ArrayRef,
                Arc::new(Int64Array::from_iter_values((0..rows as i64).map(|i| i * 7919 % 1000))),
            ],
        )
        .unwrap();
        let props = || properties(&[0], &[]);
        let whole = encode("t", schema.clone(), props(), std::slice::from_ref(&batch)).unwrap();
        let sliced = |size: usize| {
            let mut e = Encoder::new("t", schema.clone(), props()).unwrap();
            let mut at = 0;
            while at < rows {
                let n = size.min(rows - at);
                e.write(&batch.slice(at, n)).unwrap();
                at += n;
            }
            e.finish().unwrap()
        };
        assert_eq!(sliced(ENCODE_ROWS), whole);
        assert_ne!(sliced(1000), whole);
    }
}
