//! Writing and reading the lake's Parquet files.

use std::path::Path;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, SchemaRef};
use parquet::arrow::arrow_writer::{ArrowColumnWriter, ArrowRowGroupWriterFactory, compute_leaves};
use parquet::arrow::{ArrowSchemaConverter, ArrowWriter, add_encoded_arrow_schema_to_metadata};
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::errors::ParquetError;
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::file::writer::SerializedFileWriter;
use parquet::schema::types::ColumnPath;

use crate::error::{Error, Result, io_at};
use crate::fsio::TempFile;

mod coded;

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
    how: How,
}

enum How {
    /// Every column by the `parquet` crate's writer.
    Arrow(Box<ArrowWriter<Vec<u8>>>),
    /// Some string columns from their codes ([`coded`]), the rest by the crate's writer.
    Coded(Box<CodedWriter>),
}

impl Encoder {
    pub(crate) fn new(what: &str, schema: SchemaRef, props: WriterProperties) -> Result<Self> {
        let writer = ArrowWriter::try_new(Vec::new(), schema, Some(props))
            .map_err(|source| Error::Parquet { path: what.into(), source })?;
        Ok(Self { what: what.to_owned(), how: How::Arrow(Box::new(writer)) })
    }

    /// An encoder of a file of `schema` whose columns named in `coded` (UTF-8) are
    /// written from codes: [`Self::write`] takes them as `Dictionary(UInt32, Utf8)` (or as
    /// plain strings, each row then looked up).
    pub(crate) fn coded(
        what: &str,
        schema: SchemaRef,
        props: WriterProperties,
        coded: &[&str],
    ) -> Result<Self> {
        if coded.is_empty() {
            return Self::new(what, schema, props);
        }
        let writer = CodedWriter::new(schema, props, coded)
            .map_err(|source| Error::Parquet { path: what.into(), source })?;
        Ok(Self { what: what.to_owned(), how: How::Coded(Box::new(writer)) })
    }

    pub(crate) fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        match &mut self.how {
            How::Arrow(w) => w.write(batch),
            How::Coded(w) => w.write(batch),
        }
        .map_err(|source| Error::Parquet { path: self.what.as_str().into(), source })
    }

    /// The file's bytes, footer included.
    pub(crate) fn finish(self) -> Result<bytes::Bytes> {
        let buf = match self.how {
            How::Arrow(w) => w.into_inner(),
            How::Coded(w) => w.finish(),
        }
        .map_err(|source| Error::Parquet { path: self.what.into(), source })?;
        Ok(bytes::Bytes::from(buf))
    }
}

/// The file writer of [`Encoder::coded`]: row groups of [`ROW_GROUP_ROWS`] as the crate's
/// `ArrowWriter` cuts them, each column's chunk appended in the schema's order.
struct CodedWriter {
    file: SerializedFileWriter<Vec<u8>>,
    factory: ArrowRowGroupWriterFactory,
    schema: SchemaRef,
    coded: Vec<bool>,
    group: Option<Vec<Column>>,
    group_rows: usize,
    groups: usize,
    zstd: coded::Zstd,
}

enum Column {
    Arrow(Box<ArrowColumnWriter>),
    Coded(coded::CodedColumn),
}

impl CodedWriter {
    fn new(
        schema: SchemaRef,
        mut props: WriterProperties,
        coded: &[&str],
    ) -> parquet::errors::Result<Self> {
        let parquet = ArrowSchemaConverter::new().convert(&schema)?;
        add_encoded_arrow_schema_to_metadata(&schema, &mut props);
        let file =
            SerializedFileWriter::new(Vec::new(), parquet.root_schema_ptr(), Arc::new(props))?;
        let factory = ArrowRowGroupWriterFactory::new(&file, schema.clone());
        let coded: Vec<bool> =
            schema.fields().iter().map(|f| coded.contains(&f.name().as_str())).collect();
        // One leaf a field: the lake's tables are flat.
        if parquet.num_columns() != coded.len() {
            return Err(ParquetError::General("a coded file's schema must be flat".into()));
        }
        for (field, &c) in schema.fields().iter().zip(&coded) {
            if c && field.data_type() != &DataType::Utf8 {
                return Err(ParquetError::General(format!(
                    "coded column {} must be UTF-8",
                    field.name()
                )));
            }
        }
        Ok(Self {
            file,
            factory,
            schema,
            coded,
            group: None,
            group_rows: 0,
            groups: 0,
            zstd: coded::Zstd::new()?,
        })
    }

    fn write(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        if batch.num_columns() != self.coded.len() {
            return Err(ParquetError::General(format!(
                "a batch of {} columns for a file of {}",
                batch.num_columns(),
                self.coded.len()
            )));
        }
        let mut at = 0;
        while at < batch.num_rows() {
            let n = (ROW_GROUP_ROWS - self.group_rows).min(batch.num_rows() - at);
            self.write_rows(&batch.slice(at, n))?;
            at += n;
            if self.group_rows == ROW_GROUP_ROWS {
                self.close_group()?;
            }
        }
        Ok(())
    }

    fn write_rows(&mut self, batch: &RecordBatch) -> parquet::errors::Result<()> {
        let group = match &mut self.group {
            Some(group) => group,
            None => {
                let writers = self.factory.create_column_writers(self.groups)?;
                let columns = writers
                    .into_iter()
                    .zip(&self.coded)
                    .zip(self.file.schema_descr().columns())
                    .map(|((w, &c), d)| {
                        if c {
                            Column::Coded(coded::CodedColumn::new(d.clone()))
                        } else {
                            Column::Arrow(Box::new(w))
                        }
                    })
                    .collect();
                self.group.insert(columns)
            }
        };
        for ((column, field), array) in
            group.iter_mut().zip(self.schema.fields()).zip(batch.columns())
        {
            match column {
                Column::Coded(c) => c.push(array)?,
                Column::Arrow(w) => {
                    for leaf in compute_leaves(field, array)? {
                        w.write(&leaf)?;
                    }
                }
            }
        }
        self.group_rows += batch.num_rows();
        Ok(())
    }

    fn close_group(&mut self) -> parquet::errors::Result<()> {
        let Some(columns) = self.group.take() else { return Ok(()) };
        let mut group = self.file.next_row_group()?;
        for column in columns {
            match column {
                Column::Arrow(w) => w.close()?.append_to_row_group(&mut group)?,
                Column::Coded(mut c) => {
                    let (bytes, close) = c.finish(&mut self.zstd)?;
                    group.append_column(&bytes, close)?;
                }
            }
        }
        group.close()?;
        self.groups += 1;
        self.group_rows = 0;
        Ok(())
    }

    fn finish(mut self) -> parquet::errors::Result<Vec<u8>> {
        self.close_group()?;
        self.file.into_inner()
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
        // Encoded in slices of `size` rows, the columns named in `coded` from their codes.
        let sliced = |coded: &[&str], size: usize| {
            let mut e = Encoder::coded("t", schema.clone(), props(), coded).unwrap();
            let mut at = 0;
            while at < rows {
                let n = size.min(rows - at);
                e.write(&batch.slice(at, n)).unwrap();
                at += n;
            }
            e.finish().unwrap()
        };
        assert_eq!(sliced(&[], ENCODE_ROWS), whole);
        assert_ne!(sliced(&[], 1000), whole);

        // The same of a file whose tenant column is coded, the slices each coded apart.
        let tenant = ["tenant_id"];
        let coded = sliced(&tenant, rows);
        assert_eq!(sliced(&tenant, ENCODE_ROWS), coded);
        assert_ne!(sliced(&tenant, 1000), coded);
        assert_eq!(read_back(&coded), read_back(&whole));
    }

    /// Reads `bytes` back with the `parquet` crate's reader: each column's values as strings
    /// (numbers as their text).
    fn read_back(bytes: &bytes::Bytes) -> Vec<Vec<String>> {
        use arrow_array::cast::AsArray;
        use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
        let reader =
            ParquetRecordBatchReaderBuilder::try_new(bytes.clone()).unwrap().build().unwrap();
        let mut columns: Vec<Vec<String>> = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            columns.resize(batch.num_columns(), Vec::new());
            for (c, array) in columns.iter_mut().zip(batch.columns()) {
                match array.data_type() {
                    DataType::Utf8 => c.extend(
                        array.as_string::<i32>().iter().map(|v| v.unwrap_or("<null>").to_owned()),
                    ),
                    _ => {
                        let ints = array.as_primitive::<arrow_array::types::Int64Type>();
                        c.extend(ints.values().iter().map(|v| v.to_string()));
                    }
                }
            }
        }
        columns
    }

    /// A string column as a dictionary coded by `codes` (the slice's own codes: any order).
    fn dictionary(codes: &[u32], values: &[String]) -> ArrayRef {
        let keys = arrow_array::UInt32Array::from(codes.to_vec());
        let values = Arc::new(StringArray::from(values.to_vec()));
        Arc::new(arrow_array::DictionaryArray::try_new(keys, values).unwrap())
    }

    /// Codes with runs of every length from 1 to 20 and stretches without runs, over
    /// `distinct` values.
    fn runs_and_noise(rows: usize, distinct: u32) -> Vec<u32> {
        let mut codes = Vec::with_capacity(rows);
        let mut x = 7u32;
        let mut len = 1;
        while codes.len() < rows {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            let v = (x >> 8) % distinct;
            let n = if len % 5 == 0 { 1 } else { len % 21 };
            codes.extend(std::iter::repeat_n(v, n.min(rows - codes.len())));
            len += 1;
        }
        codes
    }

    /// The coded writer's file holds the rows written, in several row groups and pages, for
    /// dictionaries of every bit width from 0 to 12 and one too large to be a dictionary;
    /// its statistics and page index are the crate's writer's for the same rows.
    #[test]
    fn coded_columns_read_back_and_index_as_the_crates_writer_does() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = Arc::new(Schema::new(vec![
            Field::new("tenant_id", DataType::Utf8, false),
            Field::new("n", DataType::Int64, false),
            Field::new("user_id", DataType::Utf8, false),
        ]));
        for (rows, distinct, long) in [
            (5, 1, 3),
            (70_000, 1, 3),
            (70_000, 2, 5),
            (70_000, 300, 9),
            (3 * PAGE + 11, 4_000, 12),
            (30_000, 9_000, 400),
        ] {
            let values: Vec<String> = (0..distinct).map(|i| format!("{i:0long$}-value")).collect();
            let tenant = runs_and_noise(rows, distinct);
            let user: Vec<u32> = tenant.iter().map(|&c| (c * 7 + 3) % distinct).collect();
            let text = |codes: &[u32]| -> Vec<String> {
                codes.iter().map(|&c| values[c as usize].clone()).collect()
            };
            let n = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 31 % 1000));
            let coded = {
                let mut e = Encoder::coded(
                    "t",
                    schema.clone(),
                    properties(&[0], &[]),
                    &["tenant_id", "user_id"],
                )
                .unwrap();
                // Slices of a few sizes, each coded on its own, the user column as plain text.
                let mut at = 0;
                for size in [1000, 4096, 333].into_iter().cycle() {
                    if at >= rows {
                        break;
                    }
                    let k = size.min(rows - at);
                    let slice = &tenant[at..at + k];
                    // Codes local to the slice, reversed, to be remapped by the writer.
                    let local: Vec<u32> = slice.iter().map(|&c| distinct - 1 - c).collect();
                    let local_values: Vec<String> = (0..distinct)
                        .map(|c| values[(distinct - 1 - c) as usize].clone())
                        .collect();
                    let batch = RecordBatch::try_new(
                        coded_test_schema(),
                        vec![
                            dictionary(&local, &local_values),
                            Arc::new(n.slice(at, k)),
                            Arc::new(StringArray::from(text(&user[at..at + k]))),
                        ],
                    )
                    .unwrap();
                    e.write(&batch).unwrap();
                    at += k;
                }
                e.finish().unwrap()
            };
            let plain = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(text(&tenant))),
                    Arc::new(n.clone()),
                    Arc::new(StringArray::from(text(&user))),
                ],
            )
            .unwrap();
            let crates = encode("t", schema.clone(), properties(&[0], &[]), &[plain]).unwrap();
            assert_eq!(read_back(&coded), read_back(&crates), "{rows} rows, {distinct} values");
            assert_eq!(read_back(&coded)[0], text(&tenant));
            // Rows found through the page index (its offsets into the file), as a reader
            // skipping pages finds them.
            if rows > PAGE + 200 {
                let skip = PAGE + 57;
                assert_eq!(selected(&coded, skip, 100), text(&tenant[skip..skip + 100]));
            }

            let mut plain_chunks = 0;
            let ours = SerializedFileReader::new(coded.clone()).unwrap();
            let theirs = SerializedFileReader::new(crates.clone()).unwrap();
            let (ours, theirs) = (ours.metadata(), theirs.metadata());
            assert_eq!(ours.num_row_groups(), theirs.num_row_groups());
            for (g, (a, b)) in ours.row_groups().iter().zip(theirs.row_groups()).enumerate() {
                assert_eq!(a.num_rows(), b.num_rows(), "row group {g}");
                for (c, (x, y)) in a.columns().iter().zip(b.columns()).enumerate() {
                    let what = format!("{rows} rows, {distinct} values, group {g}, column {c}");
                    assert_eq!(x.num_values(), y.num_values(), "{what}");
                    assert_eq!(x.statistics(), y.statistics(), "{what}");
                    if c != 1 {
                        // A dictionary while its values (and their lengths) fit in 1 MiB.
                        let codes = if c == 0 { &tenant } else { &user };
                        let used: std::collections::BTreeSet<u32> = codes.iter().copied().collect();
                        let bytes: usize = used.iter().map(|&v| 4 + values[v as usize].len()).sum();
                        let dictionary = x.dictionary_page_offset().is_some();
                        assert_eq!(dictionary, bytes <= coded::DICTIONARY_LIMIT, "{what}");
                        plain_chunks += usize::from(!dictionary);
                    }
                }
            }
            assert_eq!(plain_chunks > 0, distinct == 9_000, "{rows} rows, {distinct} values");
            // The page index of the dictionary-encoded chunks: each page's first row, least
            // and greatest values, and the chunk's boundary order (plain pages are cut by
            // bytes, differently).
            if distinct < 9_000 {
                assert_eq!(
                    page_index(&coded),
                    page_index(&crates),
                    "{rows} rows, {distinct} values"
                );
            }
        }
    }

    const PAGE: usize = coded::PAGE_ROWS;

    /// Each data page of a coded chunk is packed at its own codes' width: the first page of
    /// a chunk whose later pages bring more values needs fewer bits, and the chunk is no
    /// larger than the crate's writer makes it (whose dictionary grows page by page).
    #[test]
    fn coded_pages_are_packed_at_their_own_width() {
        use parquet::column::page::Page;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = Arc::new(Schema::new(vec![Field::new("tenant_id", DataType::Utf8, false)]));
        // Four values on the first page, then 4,000 (no run long enough to be a run).
        let rows = 3 * PAGE;
        let text = |i: usize| {
            let v = if i < PAGE { i % 4 } else { i * 7 % 4_000 };
            format!("tenant-{v:04}")
        };
        let tenants = StringArray::from_iter_values((0..rows).map(text));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(tenants)]).unwrap();
        let props = || properties(&[], &[]);
        let mut e = Encoder::coded("t", schema.clone(), props(), &["tenant_id"]).unwrap();
        e.write(&batch).unwrap();
        let coded = e.finish().unwrap();
        let crates = encode("t", schema, props(), std::slice::from_ref(&batch)).unwrap();
        assert_eq!(read_back(&coded), read_back(&crates));

        let reader = SerializedFileReader::new(coded.clone()).unwrap();
        let mut widths = Vec::new();
        for page in reader.get_row_group(0).unwrap().get_column_page_reader(0).unwrap() {
            if let Page::DataPage { buf, .. } = page.unwrap() {
                widths.push(buf[0]);
            }
        }
        assert_eq!(widths, [2, 12, 12]);
        let size = |b: &bytes::Bytes| {
            let r = SerializedFileReader::new(b.clone()).unwrap();
            r.metadata().row_group(0).column(0).uncompressed_size()
        };
        assert!(size(&coded) <= size(&crates), "{} > {}", size(&coded), size(&crates));
    }

    /// The first column's rows `skip..skip + take`, read with the page index: pages before
    /// them are skipped by their offsets.
    fn selected(bytes: &bytes::Bytes, skip: usize, take: usize) -> Vec<String> {
        use arrow_array::cast::AsArray;
        use parquet::arrow::arrow_reader::{
            ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector,
        };
        // Required: a file without the index would read every page and prove nothing.
        let required = parquet::file::metadata::PageIndexPolicy::Required;
        let options = ArrowReaderOptions::new().with_page_index_policy(required);
        let selection =
            RowSelection::from(vec![RowSelector::skip(skip), RowSelector::select(take)]);
        let reader = ParquetRecordBatchReaderBuilder::try_new_with_options(bytes.clone(), options)
            .unwrap()
            .with_row_selection(selection)
            .build()
            .unwrap();
        let mut rows = Vec::new();
        for batch in reader {
            let batch = batch.unwrap();
            rows.extend(batch.column(0).as_string::<i32>().iter().map(|v| v.unwrap().to_owned()));
        }
        rows
    }

    /// A schema of the named string columns as dictionaries.
    fn coded_test_schema_of(names: &[&str]) -> SchemaRef {
        let dict = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
        Arc::new(Schema::new(
            names.iter().map(|n| Field::new(*n, dict.clone(), false)).collect::<Vec<_>>(),
        ))
    }

    fn coded_test_schema() -> SchemaRef {
        let dict = DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8));
        Arc::new(Schema::new(vec![
            Field::new("tenant_id", dict, false),
            Field::new("n", DataType::Int64, false),
            Field::new("user_id", DataType::Utf8, false),
        ]))
    }

    /// A data page in the page index: (row group, column, first row, least, greatest, the
    /// chunk's boundary order, nulls only, nulls).
    type PageEntry = (usize, usize, i64, Vec<u8>, Vec<u8>, String, bool, Option<i64>);

    /// Each data page of each string column.
    fn page_index(bytes: &bytes::Bytes) -> Vec<PageEntry> {
        use parquet::file::page_index::column_index::ColumnIndexMetaData;
        use parquet::file::reader::{FileReader, SerializedFileReader};
        use parquet::file::serialized_reader::ReadOptionsBuilder;
        let options = ReadOptionsBuilder::new().with_page_index().build();
        let reader = SerializedFileReader::new_with_options(bytes.clone(), options).unwrap();
        let meta = reader.metadata();
        let (columns, offsets) = (meta.column_index().unwrap(), meta.offset_index().unwrap());
        let mut pages = Vec::new();
        for (g, (columns, offsets)) in columns.iter().zip(offsets).enumerate() {
            for (c, (index, offsets)) in columns.iter().zip(offsets).enumerate() {
                let order = format!("{:?}", index.get_boundary_order());
                let ColumnIndexMetaData::BYTE_ARRAY(index) = index else { continue };
                for (p, location) in offsets.page_locations().iter().enumerate() {
                    let least = index.min_value(p).map_or(Vec::new(), <[u8]>::to_vec);
                    let greatest = index.max_value(p).map_or(Vec::new(), <[u8]>::to_vec);
                    let (order, first) = (order.clone(), location.first_row_index);
                    let (empty, nulls) = (index.is_null_page(p), index.null_count(p));
                    pages.push((g, c, first, least, greatest, order, empty, nulls));
                }
            }
        }
        pages
    }

    /// More rows than a row group holds: the coded writer cuts groups where the crate's
    /// writer does.
    #[test]
    fn coded_files_cut_row_groups_where_the_crates_writer_does() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = Arc::new(Schema::new(vec![Field::new("tenant_id", DataType::Utf8, false)]));
        let rows = ROW_GROUP_ROWS + 5_000;
        let tenants = StringArray::from_iter_values((0..rows).map(|i| format!("t{}", i / 70_000)));
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(tenants)]).unwrap();
        let props = || properties(&[0], &[]);
        let mut e = Encoder::coded("t", schema.clone(), props(), &["tenant_id"]).unwrap();
        e.write(&batch.slice(0, 1000)).unwrap();
        e.write(&batch.slice(1000, rows - 1000)).unwrap();
        let coded = e.finish().unwrap();
        let crates = encode("t", schema, props(), &[batch]).unwrap();
        let groups = |b: &bytes::Bytes| {
            let r = SerializedFileReader::new(b.clone()).unwrap();
            r.metadata().row_groups().iter().map(|g| g.num_rows()).collect::<Vec<_>>()
        };
        assert_eq!(groups(&coded), [ROW_GROUP_ROWS as i64, 5_000]);
        assert_eq!(groups(&coded), groups(&crates));
        assert_eq!(read_back(&coded), read_back(&crates));
    }

    /// A coded column refuses nulls and rows of another type, naming the column.
    #[test]
    fn coded_columns_refuse_nulls_and_other_types() {
        let schema = Arc::new(Schema::new(vec![Field::new("tenant_id", DataType::Utf8, false)]));
        let mut e =
            Encoder::coded("t.parquet", schema.clone(), properties(&[], &[]), &["tenant_id"])
                .unwrap();
        let nullable = Arc::new(Schema::new(vec![Field::new("tenant_id", DataType::Utf8, true)]));
        let batch = RecordBatch::try_new(
            nullable,
            vec![Arc::new(StringArray::from(vec![Some("a"), None]))],
        )
        .unwrap();
        let err = e.write(&batch).unwrap_err().to_string();
        assert!(err.contains("t.parquet") && err.contains("column tenant_id has nulls"), "{err}");
        // A dictionary whose key names a null value.
        let values = Arc::new(StringArray::from(vec![Some("a"), None]));
        let keys = arrow_array::UInt32Array::from(vec![0, 1]);
        let dict: ArrayRef = Arc::new(arrow_array::DictionaryArray::try_new(keys, values).unwrap());
        let batch = RecordBatch::try_new(coded_test_schema_of(&["tenant_id"]), vec![dict]).unwrap();
        let err = e.write(&batch).unwrap_err().to_string();
        assert!(err.contains("column tenant_id has nulls"), "{err}");
        let ints = Arc::new(Schema::new(vec![Field::new("tenant_id", DataType::Int64, false)]));
        let batch =
            RecordBatch::try_new(ints.clone(), vec![Arc::new(Int64Array::from(vec![1]))]).unwrap();
        let err = e.write(&batch).unwrap_err().to_string();
        assert!(err.contains("column tenant_id: Int64 rows for a string column"), "{err}");
        let err = Encoder::coded("t", ints, properties(&[], &[]), &["tenant_id"]).err().unwrap();
        assert!(err.to_string().contains("coded column tenant_id must be UTF-8"), "{err}");
    }

    /// An optional coded column's nulls (null keys, keys naming a null value, null strings)
    /// read back as nulls, in pages with some nulls, pages and chunks of nulls only, and PLAIN
    /// chunks: its statistics and null count are the crate's writer's, and its page index
    /// holds each page's least and greatest value and nulls. (The crate's writer cuts the
    /// pages of a column written without nulls, or with nulls only, at 20,000 rows, and others
    /// at 20,480: where both cut alike, the indexes are the same.)
    #[test]
    fn optional_coded_columns_hold_nulls_as_the_crates_writer_does() {
        use parquet::file::reader::{FileReader, SerializedFileReader};
        let schema = Arc::new(Schema::new(vec![
            Field::new("service", DataType::Utf8, true),
            Field::new("n", DataType::Int64, false),
        ]));
        let coded_schema = Arc::new(Schema::new(vec![
            Field::new(
                "service",
                DataType::Dictionary(Box::new(DataType::UInt32), Box::new(DataType::Utf8)),
                true,
            ),
            Field::new("n", DataType::Int64, false),
        ]));
        // (rows, which rows are null, distinct values, their length, pages cut as the
        // crate's writer cuts them)
        type Nulls = fn(usize) -> bool;
        let cases: [(usize, Nulls, u32, usize, bool); 5] = [
            (50_000, |i| i % 3 == 0, 40, 8, true),
            // The second page nulls only.
            (3 * PAGE, |i| (PAGE..2 * PAGE).contains(&i), 300, 8, true),
            (PAGE + 9, |_| true, 5, 8, false),
            (7, |i| i != 3, 2, 8, true),
            // A PLAIN chunk.
            (30_000, |i| i % 4 == 1, 9_000, 400, false),
        ];
        for (rows, null, distinct, long, same_pages) in cases {
            let values: Vec<String> = (0..distinct).map(|i| format!("{i:0long$}-svc")).collect();
            let codes = runs_and_noise(rows, distinct);
            let text: Vec<Option<&str>> =
                (0..rows).map(|i| (!null(i)).then(|| values[codes[i] as usize].as_str())).collect();
            let n = Int64Array::from_iter_values((0..rows as i64).map(|i| i * 17 % 1000));
            let what = format!("{rows} rows, {distinct} values");
            let mut e =
                Encoder::coded("t", schema.clone(), properties(&[], &[]), &["service"]).unwrap();
            let mut at = 0;
            for (round, size) in [1000, 4096, 333].into_iter().cycle().enumerate() {
                if at >= rows {
                    break;
                }
                let k = size.min(rows - at);
                // Slices as null keys, as keys naming a null value, and as plain strings.
                let column: ArrayRef = match round % 3 {
                    0 => {
                        let keys: Vec<Option<u32>> =
                            (at..at + k).map(|i| (!null(i)).then_some(codes[i])).collect();
                        let keys = arrow_array::UInt32Array::from(keys);
                        let dict = StringArray::from(values.clone());
                        Arc::new(
                            arrow_array::DictionaryArray::try_new(keys, Arc::new(dict)).unwrap(),
                        )
                    }
                    1 => {
                        // Code `distinct` names a null value.
                        let keys: Vec<u32> = (at..at + k)
                            .map(|i| if null(i) { distinct } else { codes[i] })
                            .collect();
                        let keys = arrow_array::UInt32Array::from(keys);
                        let mut dict: Vec<Option<&str>> =
                            values.iter().map(|v| Some(v.as_str())).collect();
                        dict.push(None);
                        let dict = Arc::new(StringArray::from(dict));
                        Arc::new(arrow_array::DictionaryArray::try_new(keys, dict).unwrap())
                    }
                    _ => Arc::new(StringArray::from(text[at..at + k].to_vec())),
                };
                let schema = if round % 3 == 2 { schema.clone() } else { coded_schema.clone() };
                let batch =
                    RecordBatch::try_new(schema, vec![column, Arc::new(n.slice(at, k))]).unwrap();
                e.write(&batch).unwrap();
                at += k;
            }
            let coded = e.finish().unwrap();
            let plain = RecordBatch::try_new(
                schema.clone(),
                vec![Arc::new(StringArray::from(text.clone())), Arc::new(n.clone())],
            )
            .unwrap();
            let crates = encode("t", schema.clone(), properties(&[], &[]), &[plain]).unwrap();
            assert_eq!(read_back(&coded), read_back(&crates), "{what}");
            let nulls = read_back(&coded)[0].iter().filter(|v| *v == "<null>").count();
            assert_eq!(nulls, (0..rows).filter(|&i| null(i)).count(), "{what}");
            if same_pages {
                assert_eq!(page_index(&coded), page_index(&crates), "{what}");
            }
            // Each page's bounds and nulls, from the rows it holds.
            let pages = page_index(&coded);
            assert!(!pages.is_empty(), "{what}");
            for (p, page) in pages.iter().enumerate() {
                let end = pages.get(p + 1).map_or(rows, |next| next.2 as usize);
                let held = &text[page.2 as usize..end];
                let present: Vec<&[u8]> = held.iter().flatten().map(|v| v.as_bytes()).collect();
                // Bounds past 64 bytes truncated, as the crate's writer truncates them.
                let least = present.iter().min().map_or(Vec::new(), |v| coded::lower(v).0);
                let greatest = present.iter().max().map_or(Vec::new(), |v| coded::upper(v).0);
                let nulls = (held.len() - present.len()) as i64;
                let want = (least, greatest, present.is_empty(), Some(nulls));
                assert_eq!(
                    (page.3.clone(), page.4.clone(), page.6, page.7),
                    want,
                    "{what}, page {p}"
                );
            }
            let ours = SerializedFileReader::new(coded.clone()).unwrap();
            let theirs = SerializedFileReader::new(crates.clone()).unwrap();
            let (x, y) =
                (ours.metadata().row_group(0).column(0), theirs.metadata().row_group(0).column(0));
            assert_eq!(x.statistics(), y.statistics(), "{what}");
            // A dictionary unless its values pass 1 MiB (the crate's writer then keeps the
            // dictionary of its first pages and writes the rest PLAIN).
            assert_eq!(x.dictionary_page_offset().is_none(), distinct == 9_000, "{what}");
            if distinct < 9_000 {
                assert!(y.dictionary_page_offset().is_some(), "{what}");
            }
        }
    }
}
