//! String columns written from codes: a UTF-8 column whose rows come as an Arrow
//! dictionary (a slice's distinct values once, a code a row) is dictionary-encoded from those
//! codes. The `parquet` crate's writer hashes and compares every row's text again to build its
//! own dictionary and statistics (about a tenth of an ingest's instructions for the lake's
//! tier, tenant, user, model, source and service tier columns: BENCHMARKS.md, "Levers"); here a
//! slice's distinct values are looked up once and each row costs an array lookup.
//!
//! A chunk is what the crate's writer would make of the same rows: a PLAIN dictionary page,
//! then `RLE_DICTIONARY` data pages of [`PAGE_ROWS`] rows, zstd, the chunk's and each page's
//! least and greatest value (the page index), or PLAIN pages where the dictionary would pass
//! [`DICTIONARY_LIMIT`].

use arrow_array::cast::AsArray;
use arrow_array::types::UInt32Type;
use arrow_array::{Array, ArrayRef, StringArray};
use arrow_schema::DataType;
use bytes::Bytes;
use parquet::basic::{
    BoundaryOrder, Compression, Encoding, PageType, Type as PhysicalType, ZstdLevel,
};
use parquet::column::page::{CompressedPage, Page, PageWriter};
use parquet::column::writer::ColumnCloseResult;
use parquet::errors::{ParquetError, Result};
use parquet::file::metadata::{
    ColumnChunkMetaData, ColumnIndexBuilder, OffsetIndexBuilder, PageEncodingStats,
};
use parquet::file::statistics::{Statistics, ValueStatistics};
use parquet::file::writer::{SerializedPageWriter, TrackedWrite};
use parquet::schema::types::ColumnDescPtr;
use rustc_hash::FxHashMap;

/// Rows per data page: where the crate's writer ends a page (its 20,000-row limit, checked
/// every 1,024 rows), so that the pages of every column of a file begin at the same rows.
pub(crate) const PAGE_ROWS: usize = 20 * 1024;

/// The dictionary's largest size, as the crate's writer's default: past it a chunk is PLAIN.
pub(crate) const DICTIONARY_LIMIT: usize = 1024 * 1024;

/// Largest PLAIN page, as the crate's writer's default page size.
const PLAIN_PAGE_BYTES: usize = 1024 * 1024;

/// The zstd level of every lake file (the lowest the format allows).
const ZSTD_LEVEL: i32 = 1;

/// A null row's code.
const NULL: u32 = u32::MAX;

/// A slice's value not coded yet.
const UNSEEN: u32 = u32::MAX;

/// One row group's rows of a coded column.
pub(crate) struct CodedColumn {
    descr: ColumnDescPtr,
    /// The column's name, for errors.
    name: String,
    /// Whether the column may hold nulls: its pages then begin with definition levels.
    optional: bool,
    /// The chunk's distinct values, in order of first appearance; a row's code indexes them
    /// ([`NULL`]: none).
    values: Vec<Box<[u8]>>,
    lookup: FxHashMap<Box<[u8]>, u32>,
    /// The dictionary page's bytes so far (a value's length and its bytes).
    dictionary_bytes: usize,
    codes: Vec<u32>,
    /// Scratch: a slice's codes to the chunk's.
    slice: Vec<u32>,
}

impl CodedColumn {
    pub(crate) fn new(descr: ColumnDescPtr) -> Self {
        Self {
            name: descr.name().to_owned(),
            optional: descr.max_def_level() > 0,
            descr,
            values: Vec::new(),
            lookup: FxHashMap::default(),
            dictionary_bytes: 0,
            codes: Vec::new(),
            slice: Vec::new(),
        }
    }

    fn code(&mut self, value: &[u8]) -> u32 {
        if let Some(&code) = self.lookup.get(value) {
            return code;
        }
        let code = self.values.len() as u32;
        self.values.push(value.into());
        self.lookup.insert(value.into(), code);
        self.dictionary_bytes += 4 + value.len();
        code
    }

    /// An error about this column: its name, then `what`.
    fn fail(&self, what: impl std::fmt::Display) -> ParquetError {
        ParquetError::General(format!("column {}{what}", self.name))
    }

    /// Adds `array`'s rows: a dictionary of `u32` codes over UTF-8 values (each distinct value
    /// looked up once), or plain UTF-8 (each row looked up). Only an optional column's rows
    /// may be null (a null key, or a key naming a null value).
    pub(crate) fn push(&mut self, array: &ArrayRef) -> Result<()> {
        // A dictionary's logical nulls are its null keys and the keys naming null values.
        let nulls = array.logical_nulls();
        if nulls.is_some() && !self.optional {
            return Err(self.fail(" has nulls"));
        }
        let is_null = |row: usize| nulls.as_ref().is_some_and(|n| n.is_null(row));
        match array.data_type() {
            DataType::Dictionary(key, value)
                if **key == DataType::UInt32 && **value == DataType::Utf8 =>
            {
                let dict = array.as_dictionary::<UInt32Type>();
                let values: &StringArray =
                    dict.values().as_string_opt::<i32>().ok_or_else(|| self.fail(": not utf8"))?;
                let mut slice = std::mem::take(&mut self.slice);
                slice.clear();
                // Coded when first referred to: a value no row names stays out of the
                // dictionary.
                slice.resize(values.len(), UNSEEN);
                self.codes.reserve(dict.len());
                for (row, &key) in dict.keys().values().iter().enumerate() {
                    if is_null(row) {
                        self.codes.push(NULL);
                        continue;
                    }
                    let at = slice
                        .get_mut(key as usize)
                        .ok_or_else(|| self.fail(format_args!(": code {key} out of range")))?;
                    if *at == UNSEEN {
                        *at = self.code(values.value(key as usize).as_bytes());
                    }
                    self.codes.push(*at);
                }
                self.slice = slice;
            }
            DataType::Utf8 => {
                let strings = array.as_string::<i32>();
                self.codes.reserve(strings.len());
                for i in 0..strings.len() {
                    let code =
                        if is_null(i) { NULL } else { self.code(strings.value(i).as_bytes()) };
                    self.codes.push(code);
                }
            }
            other => {
                return Err(self.fail(format_args!(": {other} rows for a string column")));
            }
        }
        Ok(())
    }

    /// The row group's chunk, its bytes and what the file writer needs to append them; the
    /// column is empty again after.
    pub(crate) fn finish(&mut self, zstd: &mut Zstd) -> Result<(Bytes, ColumnCloseResult)> {
        let codes = std::mem::take(&mut self.codes);
        let values = std::mem::take(&mut self.values);
        self.lookup.clear();
        let dictionary = std::mem::take(&mut self.dictionary_bytes) <= DICTIONARY_LIMIT;
        // Each value's rank in byte order: a page's least and greatest values are those of
        // its least and greatest rank.
        let mut by_bytes: Vec<u32> = (0..values.len() as u32).collect();
        by_bytes.sort_unstable_by(|&a, &b| values[a as usize].cmp(&values[b as usize]));
        let mut rank = vec![0u32; values.len()];
        for (r, &code) in by_bytes.iter().enumerate() {
            rank[code as usize] = r as u32;
        }

        let mut sink = TrackedWrite::new(Vec::new());
        let mut pages = SerializedPageWriter::new(&mut sink);
        let (mut compressed, mut uncompressed) = (0i64, 0i64);
        let mut dictionary_offset = None;
        let mut page_stats = Vec::new();
        if dictionary {
            let mut buf = Vec::with_capacity(values.iter().map(|v| 4 + v.len()).sum());
            for v in &values {
                plain(&mut buf, v);
            }
            let page = zstd.page(buf, |buf| Page::DictionaryPage {
                buf,
                num_values: values.len() as u32,
                encoding: Encoding::PLAIN,
                is_sorted: false,
            })?;
            let spec = pages.write_page(page)?;
            dictionary_offset = Some(spec.offset as i64);
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            page_stats.push(PageEncodingStats {
                page_type: PageType::DICTIONARY_PAGE,
                encoding: Encoding::PLAIN,
                count: 1,
            });
        }

        let mut index = ColumnIndexBuilder::new(PhysicalType::BYTE_ARRAY);
        let mut offsets = OffsetIndexBuilder::new();
        let mut data_offset = None;
        let mut data_pages = 0;
        // Each page's least and greatest ranks; `None` for a page of nulls only.
        let mut page_ranks: Vec<Option<(u32, u32)>> = Vec::new();
        let mut nulls = 0;
        let mut present = Vec::new();
        let mut at = 0;
        while at < codes.len() {
            let rows = if dictionary {
                PAGE_ROWS.min(codes.len() - at)
            } else {
                plain_rows(&values, &codes[at..])
            };
            let mut page_codes = &codes[at..at + rows];
            let mut buf = Vec::new();
            let mut page_nulls = 0;
            if self.optional {
                page_nulls = page_codes.iter().filter(|&&c| c == NULL).count();
                levels(&mut buf, page_codes);
            }
            if page_nulls > 0 {
                present.clear();
                present.extend(page_codes.iter().copied().filter(|&c| c != NULL));
                page_codes = &present;
            }
            let (least, greatest, most) =
                page_codes.iter().fold((u32::MAX, 0, 0), |(lo, hi, most), &c| {
                    let r = rank[c as usize];
                    (lo.min(r), hi.max(r), most.max(c))
                });
            let encoding = if dictionary {
                // Each page's own width: codes come in order of first appearance, so the
                // first pages of a sorted chunk need fewer bits (as the crate's writer, whose
                // dictionary grows page by page, gives them).
                let bit_width = bits(most);
                buf.push(bit_width);
                hybrid(&mut buf, page_codes, bit_width);
                Encoding::RLE_DICTIONARY
            } else {
                for &c in page_codes {
                    plain(&mut buf, &values[c as usize]);
                }
                Encoding::PLAIN
            };
            let page = zstd.page(buf, |buf| Page::DataPage {
                buf,
                num_values: rows as u32,
                encoding,
                def_level_encoding: Encoding::RLE,
                rep_level_encoding: Encoding::RLE,
                statistics: None,
            })?;
            let spec = pages.write_page(page)?;
            data_offset.get_or_insert(spec.offset as i64);
            compressed += spec.compressed_size as i64;
            uncompressed += spec.uncompressed_size as i64;
            if page_codes.is_empty() {
                // A page of nulls: empty bounds, as the format asks.
                page_ranks.push(None);
                index.append(true, Vec::new(), Vec::new(), page_nulls as i64);
            } else {
                page_ranks.push(Some((least, greatest)));
                let value = |r: u32| &*values[by_bytes[r as usize] as usize];
                let (least, greatest) = (lower(value(least)).0, upper(value(greatest)).0);
                index.append(false, least, greatest, page_nulls as i64);
            }
            nulls += page_nulls;
            offsets.append_row_count(rows as i64);
            offsets.append_offset_and_size(spec.offset as i64, spec.compressed_size as i32);
            data_pages += 1;
            at += rows;
        }
        pages.close()?;
        page_stats.push(PageEncodingStats {
            page_type: PageType::DATA_PAGE,
            encoding: if dictionary { Encoding::RLE_DICTIONARY } else { Encoding::PLAIN },
            count: data_pages,
        });
        // Pages of nulls are passed over, as the crate's writer passes them over.
        let page_ranks: Vec<(u32, u32)> = page_ranks.into_iter().flatten().collect();
        index.set_boundary_order(boundary(&page_ranks));

        let chunk_ranks =
            page_ranks.iter().copied().reduce(|(lo, hi), (l, h)| (lo.min(l), hi.max(h)));
        let mut meta = ColumnChunkMetaData::builder(self.descr.clone())
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(ZSTD_LEVEL)?))
            .set_encodings(if dictionary {
                vec![Encoding::PLAIN, Encoding::RLE, Encoding::RLE_DICTIONARY]
            } else {
                vec![Encoding::PLAIN, Encoding::RLE]
            })
            .set_page_encoding_stats(page_stats)
            .set_num_values(codes.len() as i64)
            .set_total_compressed_size(compressed)
            .set_total_uncompressed_size(uncompressed)
            .set_data_page_offset(data_offset.unwrap_or(0))
            .set_dictionary_page_offset(dictionary_offset);
        if let Some((least, greatest)) = chunk_ranks {
            let value = |r: u32| &*values[by_bytes[r as usize] as usize];
            let (least, least_exact) = lower(value(least));
            let (greatest, greatest_exact) = upper(value(greatest));
            let stats = ValueStatistics::new(
                Some(least.into()),
                Some(greatest.into()),
                None,
                Some(nulls as u64),
                false,
            )
            .with_min_is_exact(least_exact)
            .with_max_is_exact(greatest_exact);
            meta = meta.set_statistics(Statistics::ByteArray(stats));
        } else if !codes.is_empty() {
            // Nulls only: a count and no bounds.
            let stats = ValueStatistics::<parquet::data_type::ByteArray>::new(
                None,
                None,
                None,
                Some(nulls as u64),
                false,
            );
            meta = meta.set_statistics(Statistics::ByteArray(stats));
        }
        let metadata = meta.build()?;
        let close = ColumnCloseResult {
            bytes_written: sink.bytes_written() as u64,
            rows_written: codes.len() as u64,
            metadata,
            bloom_filter: None,
            column_index: (data_pages > 0).then(|| index.build()).transpose()?,
            offset_index: (data_pages > 0).then(|| offsets.build()),
        };
        let bytes = Bytes::from(sink.into_inner()?);
        Ok((bytes, close))
    }
}

/// A zstd compressor kept for every page of a file (the crate's writer makes one a column
/// chunk, each costing a context).
pub(crate) struct Zstd(zstd::bulk::Compressor<'static>);

impl Zstd {
    pub(crate) fn new() -> Result<Self> {
        zstd::bulk::Compressor::new(ZSTD_LEVEL)
            .map(Self)
            .map_err(|e| ParquetError::External(Box::new(e)))
    }

    /// `buf` compressed into the page `make` makes of it.
    fn page(&mut self, buf: Vec<u8>, make: impl FnOnce(Bytes) -> Page) -> Result<CompressedPage> {
        let size = buf.len();
        let packed = self.0.compress(&buf).map_err(|e| ParquetError::External(Box::new(e)))?;
        Ok(CompressedPage::new(make(Bytes::from(packed)), size))
    }
}

/// A PLAIN byte array: its length (4 bytes, little-endian), then its bytes.
fn plain(buf: &mut Vec<u8>, value: &[u8]) {
    buf.extend_from_slice(&(value.len() as u32).to_le_bytes());
    buf.extend_from_slice(value);
}

/// How many of `codes` go in one PLAIN page: [`PAGE_ROWS`], fewer if their values would pass
/// [`PLAIN_PAGE_BYTES`] (at least one).
fn plain_rows(values: &[Box<[u8]>], codes: &[u32]) -> usize {
    let mut bytes = 0;
    for (n, &c) in codes.iter().take(PAGE_ROWS).enumerate() {
        bytes += values.get(c as usize).map_or(0, |v| 4 + v.len());
        if bytes > PLAIN_PAGE_BYTES {
            return n.max(1);
        }
    }
    codes.len().min(PAGE_ROWS)
}

/// The longest least and greatest values kept in statistics, as the crate's writer's default.
const TRUNCATE: usize = 64;

/// A lower bound of `value` for statistics: itself, or its first [`TRUNCATE`] bytes (whole
/// characters); and whether it is the value itself.
pub(super) fn lower(value: &[u8]) -> (Vec<u8>, bool) {
    if value.len() > TRUNCATE
        && let Ok(text) = std::str::from_utf8(value)
        && let Some(cut) = (1..=TRUNCATE).rfind(|&n| text.is_char_boundary(n))
    {
        return (value[..cut].to_vec(), false);
    }
    (value.to_vec(), true)
}

/// An upper bound of `value` for statistics: itself, or its first [`TRUNCATE`] bytes (whole
/// characters, at least `TRUNCATE - 3`) with the last character that can be incremented
/// without growing incremented (what follows it dropped); and whether it is the value itself.
pub(super) fn upper(value: &[u8]) -> (Vec<u8>, bool) {
    if value.len() > TRUNCATE
        && let Ok(text) = std::str::from_utf8(value)
    {
        let cut = (TRUNCATE - 3..=TRUNCATE).rfind(|&n| text.is_char_boundary(n));
        for (at, c) in cut.map_or("", |n| &text[..n]).char_indices().rev() {
            let next = char::from_u32(c as u32 + 1).filter(|n| n.len_utf8() == c.len_utf8());
            if let Some(next) = next {
                let mut bound = value[..at + c.len_utf8()].to_vec();
                next.encode_utf8(&mut bound[at..]);
                return (bound, false);
            }
        }
    }
    (value.to_vec(), true)
}

/// Bits needed for `max` (0 for 0).
fn bits(max: u32) -> u8 {
    (32 - max.leading_zeros()) as u8
}

/// Whether the pages' ranges rise, fall, or neither, as the column index records it.
fn boundary(pages: &[(u32, u32)]) -> BoundaryOrder {
    let rising = pages.windows(2).all(|w| w[0].0 <= w[1].0 && w[0].1 <= w[1].1);
    let falling = pages.windows(2).all(|w| w[0].0 >= w[1].0 && w[0].1 >= w[1].1);
    match (rising, falling) {
        (true, _) => BoundaryOrder::ASCENDING,
        (false, true) => BoundaryOrder::DESCENDING,
        _ => BoundaryOrder::UNORDERED,
    }
}

/// The shortest run of one value written as a run: shorter ones are bit-packed.
const MIN_RUN: usize = 8;

/// `codes` in Parquet's RLE / bit-packing hybrid at `width` bits (the bit width itself not
/// included): a run of [`MIN_RUN`] or more of one value as a run, the rest bit-packed eight
/// values at a time (the last group padded with zeros: a page's value count ends it).
fn hybrid(buf: &mut Vec<u8>, codes: &[u32], width: u8) {
    let run_at = |i: usize| {
        let v = codes[i];
        codes[i..].iter().take_while(|&&c| c == v).count()
    };
    let mut i = 0;
    while i < codes.len() {
        let run = run_at(i);
        if run >= MIN_RUN {
            varint(buf, (run as u64) << 1);
            let bytes = codes[i].to_le_bytes();
            buf.extend_from_slice(&bytes[..usize::from(width).div_ceil(8)]);
            i += run;
            continue;
        }
        // Groups of eight until one begins a run (or the codes end): eight values tell, the
        // run's length is counted once, when the loop above writes it.
        let begins_run = |i: usize| {
            codes.get(i..i + MIN_RUN).is_some_and(|group| group.iter().all(|&c| c == group[0]))
        };
        let start = i;
        i += MIN_RUN;
        while i < codes.len() && !begins_run(i) {
            i += MIN_RUN;
        }
        let end = i.min(codes.len());
        let groups = (end - start).div_ceil(MIN_RUN);
        varint(buf, ((groups as u64) << 1) | 1);
        pack(buf, &codes[start..end], width, groups * MIN_RUN);
    }
}

/// `values` bit-packed at `width` bits each, least significant bit first, padded with zeros to
/// `count` values.
fn pack(buf: &mut Vec<u8>, values: &[u32], width: u8, count: usize) {
    let (mut acc, mut held) = (0u64, 0u8);
    for n in 0..count {
        let v = values.get(n).copied().unwrap_or(0);
        acc |= u64::from(v) << held;
        held += width;
        while held >= 8 {
            buf.push(acc as u8);
            acc >>= 8;
            held -= 8;
        }
    }
    if held > 0 {
        buf.push(acc as u8);
    }
}

/// The definition levels of an optional column's page (1 for a value, 0 for a null) as a
/// data page of version 1 holds them: their length (4 bytes, little-endian), then the
/// hybrid at 1 bit.
fn levels(buf: &mut Vec<u8>, codes: &[u32]) {
    let defined: Vec<u32> = codes.iter().map(|&c| u32::from(c != NULL)).collect();
    let start = buf.len();
    buf.extend_from_slice(&[0; 4]);
    hybrid(buf, &defined, 1);
    let len = (buf.len() - start - 4) as u32;
    buf[start..start + 4].copy_from_slice(&len.to_le_bytes());
}

/// An unsigned LEB128 number.
fn varint(buf: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        buf.push((v as u8) | 0x80);
        v >>= 7;
    }
    buf.push(v as u8);
}
