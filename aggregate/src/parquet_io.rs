//! Writing and reading the lake's Parquet files.

use std::path::Path;

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result, io_at};
use crate::fsio::TempFile;

/// Rows per row group: large groups read fastest in Athena; a file holds at most a few.
const ROW_GROUP_ROWS: usize = 1 << 20;

/// Writer settings for one table: ZSTD, statistics per page, the declared sort order, the
/// writing version recorded in the footer, and no dictionary for `unique` columns (a
/// dictionary of unique values costs time and saves nothing).
pub(crate) fn properties(sorted_by: &[usize], unique: &[&str]) -> WriterProperties {
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
    for c in unique {
        b = b.set_column_dictionary_enabled(ColumnPath::from(*c), false);
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
    let perr = |source| Error::Parquet { path: what.into(), source };
    let mut buf = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut buf, schema, Some(props)).map_err(perr)?;
    for b in batches {
        writer.write(b).map_err(perr)?;
    }
    writer.close().map_err(perr)?;
    Ok(bytes::Bytes::from(buf))
}
