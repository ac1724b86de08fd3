//! Where a lake's objects live: a local directory or an S3 prefix, behind one interface.
//!
//! Every key is a lake-relative path built by [`layout`](crate::layout) (`usage_events/dt=
//! 2026-10-01/part-<hex>.parquet`), never from an input string. The operations are the ones S3
//! offers, with the same meaning on both backends, so that any number of writers on any
//! number of machines share one lake without a lock:
//!
//! - [`Condition::Absent`] creates an object only if none exists (`If-None-Match: *`; a hard
//!   link locally): data files are written this way under deterministic names, so a retried
//!   write finds its own object and nothing overwrites another writer's data;
//! - [`Condition::Matches`] replaces an object only if it is still the version read
//!   (`If-Match: <etag>`; under a short lock of the directory locally): rollups and state files
//!   are compare-and-swapped, so a slower writer never replaces a newer version;
//! - listings and reads see whole objects only (a local write is a temporary file renamed into
//!   place; an S3 put is atomic).

mod local;
mod s3;

use std::fmt;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use bytes::Bytes;
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use parquet::file::metadata::ParquetMetaData;

use crate::error::{Error, Result};

pub use local::LocalStore;
pub use s3::{S3Store, S3StoreOptions};

/// One object as a listing or a `head` describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    /// The lake-relative key.
    pub key: String,
    /// Its size in bytes.
    pub size: u64,
    /// Its version: changes whenever the object is replaced.
    pub etag: String,
}

impl ObjectMeta {
    /// The last part of the key.
    pub fn name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

/// When a put may happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Condition {
    /// Always (replaces whatever is there).
    Always,
    /// Only if no object has the key.
    Absent,
    /// Only if the object is still this version (its etag).
    Matches(String),
}

impl Condition {
    /// `Absent` when nothing was read, else `Matches` the version read.
    pub fn replacing(read: Option<&str>) -> Self {
        match read {
            Some(etag) => Condition::Matches(etag.to_owned()),
            None => Condition::Absent,
        }
    }
}

/// What a conditional put did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Put {
    /// The object was written; its new version.
    Written {
        /// The new etag.
        etag: String,
    },
    /// The condition did not hold: another writer created or replaced the object first.
    Conflict,
}

/// An object read whole, with its version.
#[derive(Debug, Clone)]
pub struct Object {
    /// The content.
    pub bytes: Bytes,
    /// The version read.
    pub etag: String,
}

/// How a Parquet file is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fetch {
    /// Only the byte ranges of the columns asked for (footer, then column chunks): for a
    /// one-time read of a few columns, such as the ids a writer deduplicates against.
    Ranged,
    /// The whole object, kept in the local cache when it is an immutable data file: for
    /// rollups, which read most columns of the same files again and again.
    Whole,
}

/// A lake's objects. Cheap to share (`Arc`); every method may be called from any thread that
/// is not driving an async runtime.
pub trait Store: Send + Sync + fmt::Debug {
    /// `file:///abs/path` or `s3://bucket/prefix`: the lake, for messages.
    fn uri(&self) -> String;

    /// The full URI of `key`, for messages.
    fn uri_of(&self, key: &str) -> String {
        format!("{}/{key}", self.uri().trim_end_matches('/'))
    }

    /// Whether each request is a round trip (S3: tens of milliseconds, almost all of it
    /// waiting), worth overlapping with other requests and with encoding the next file, at
    /// the cost of threads and of holding files meanwhile. A local put is a write and an
    /// fsync: overlapping it saved 1 to 6 % of a log ingest's time and cost 9 MB at the peak
    /// of a month with spans (BENCHMARKS.md, "Levers"), so a local lake does not.
    fn round_trips(&self) -> bool {
        false
    }

    /// Every object under `prefix` (a "directory" ending in `/`, or `""` for all), in key
    /// order. Temporary files of writers in progress are never listed.
    ///
    /// # Errors
    ///
    /// The listing fails.
    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>>;

    /// At most `limit` objects under `prefix` whose keys sort after `after`, in key order, and
    /// whether more follow. On S3 this is one request (at most 1,000 keys): a way to learn
    /// which of many keys exist in fewer round trips than one `HEAD` each.
    ///
    /// # Errors
    ///
    /// The listing fails.
    fn list_after(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        let mut rest = self.list(prefix)?.into_iter().filter(|o| o.key.as_str() > after);
        let page: Vec<ObjectMeta> = rest.by_ref().take(limit).collect();
        Ok((page, rest.next().is_some()))
    }

    /// The names of the "directories" directly under `prefix` (ending in `/`), in order.
    ///
    /// # Errors
    ///
    /// The listing fails.
    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>>;

    /// The object, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// The read fails.
    fn get(&self, key: &str) -> Result<Option<Object>>;

    /// The object's size and version, or `None` when there is none.
    ///
    /// # Errors
    ///
    /// The request fails.
    fn head(&self, key: &str) -> Result<Option<ObjectMeta>>;

    /// Writes `body` under `key` if `cond` holds.
    ///
    /// # Errors
    ///
    /// The write fails (a condition that does not hold is [`Put::Conflict`], not an error).
    fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<Put>;

    /// Removes the object; removing one that is not there is not an error.
    ///
    /// # Errors
    ///
    /// The request fails.
    fn delete(&self, key: &str) -> Result<()>;

    /// The object's Parquet footer and version, or `None` when there is no object. Only the
    /// end of the object is read.
    ///
    /// # Errors
    ///
    /// The read fails or the object is not Parquet.
    fn parquet_footer(&self, key: &str) -> Result<Option<(Arc<ParquetMetaData>, String)>>;

    /// The named columns (all when `None`) of a Parquet object, or `None` when there is no
    /// object. `listed` is the object as a listing described it, when known: it spares a
    /// request, and lets a cached copy be used only if it is that very version. The string
    /// columns named in `dictionaries` are decoded as `Dictionary(Int32, Utf8)` arrays.
    ///
    /// # Errors
    ///
    /// The read fails or the object is not a Parquet file with those columns.
    fn read_parquet(
        &self,
        key: &str,
        listed: Option<&ObjectMeta>,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
        fetch: Fetch,
    ) -> Result<Option<Batches>>;
}

/// The record batches of a Parquet object, decoded one at a time as they are taken, so that a
/// reader holds one batch of a file rather than all of it.
pub type Batches = Box<dyn Iterator<Item = Result<RecordBatch>> + Send>;

/// Rows in one decoded batch.
pub(crate) const READ_ROWS: usize = 8192;

/// Decodes the named columns (all when `None`) of a Parquet file, lazily: `input` is the
/// file's bytes in memory, or the open file. The string columns named in `dictionaries` come
/// as dictionary arrays.
pub(crate) fn decode_parquet<T>(
    uri: &str,
    input: T,
    columns: Option<&[&str]>,
    dictionaries: &[&str],
) -> Result<Batches>
where
    T: parquet::file::reader::ChunkReader + 'static,
{
    let perr = |source| Error::Parquet { path: uri.into(), source };
    let mut meta = ArrowReaderMetadata::load(&input, ArrowReaderOptions::new()).map_err(perr)?;
    if let Some(hint) = dictionary_hint(meta.schema(), dictionaries) {
        let options = ArrowReaderOptions::new().with_schema(hint);
        meta = ArrowReaderMetadata::try_new(meta.metadata().clone(), options).map_err(perr)?;
    }
    let mut builder =
        ParquetRecordBatchReaderBuilder::new_with_metadata(input, meta).with_batch_size(READ_ROWS);
    if let Some(names) = columns {
        let mask = ProjectionMask::columns(builder.parquet_schema(), names.iter().copied());
        builder = builder.with_projection(mask);
    }
    let path = std::path::PathBuf::from(uri);
    let reader = builder.build().map_err(perr)?;
    Ok(Box::new(
        reader.map(move |b| b.map_err(|source| Error::Arrow { path: path.clone(), source })),
    ))
}

/// The file's Arrow schema with the UTF-8 columns named in `names` as `Dictionary(Int32,
/// Utf8)`, or `None` when none is. Read so, a dictionary-encoded column chunk gives its
/// distinct values once and a key per row, rather than a copy of the value per row.
pub(crate) fn dictionary_hint(schema: &SchemaRef, names: &[&str]) -> Option<SchemaRef> {
    let dictionary =
        |f: &Field| *f.data_type() == DataType::Utf8 && names.contains(&f.name().as_str());
    if !schema.fields().iter().any(|f| dictionary(f)) {
        return None;
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if dictionary(&f) {
                let t = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
                f.with_data_type(t)
            } else {
                f
            }
        })
        .collect();
    Some(Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone())))
}

/// Decodes a Parquet footer from the last bytes of a file (`tail` holds at least the footer).
pub(crate) fn decode_footer(uri: &str, tail: &[u8]) -> Result<ParquetMetaData> {
    let bad = |detail: String| Error::Corrupt { path: uri.into(), detail };
    let n = tail.len();
    if n < 8 || &tail[n - 4..] != b"PAR1" {
        return Err(bad("not a Parquet file (no PAR1 footer)".into()));
    }
    let len = u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as usize;
    if len + 8 > n {
        return Err(bad(format!("footer of {len} bytes is longer than the {n} bytes read")));
    }
    parquet::file::metadata::ParquetMetaDataReader::decode_metadata(&tail[n - 8 - len..n - 8])
        .map_err(|source| Error::Parquet { path: uri.into(), source })
}

/// True for the names of immutable data files (`part-<32 hex>.parquet`): written once under a
/// name derived from their content, never replaced, so a local copy is always current.
pub fn immutable_data_file(key: &str) -> bool {
    let name = key.rsplit('/').next().unwrap_or_default();
    name.strip_prefix("part-")
        .and_then(|n| n.strip_suffix(".parquet"))
        .is_some_and(|hex| hex.len() == 32 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// Independent requests sent side by side at most, per call of [`concurrently`]: each waits
/// a round trip on S3 (tens of milliseconds), little of it CPU.
pub(crate) const REQUESTS_AT_ONCE: usize = 16;

/// `f` applied to every item, from up to `limit` threads; the outputs in the items' order, or
/// the first item's error (in that order) once every call has returned. A store's calls block
/// until answered, so requests that do not depend on each other go out together instead of
/// one round trip after another.
pub(crate) fn concurrently<T, O, F>(items: Vec<T>, limit: usize, f: F) -> Result<Vec<O>>
where
    T: Send,
    O: Send,
    F: Fn(T) -> Result<O> + Sync,
{
    let n = items.len();
    if n <= 1 || limit <= 1 {
        return items.into_iter().map(f).collect();
    }
    let queue = std::sync::Mutex::new(items.into_iter().enumerate());
    let mut done: Vec<(usize, Result<O>)> = std::thread::scope(|s| {
        let workers: Vec<_> = (0..limit.min(n))
            .map(|_| {
                s.spawn(|| {
                    let mut out = Vec::new();
                    loop {
                        // Taken under the lock, called outside it.
                        let next = queue.lock().unwrap_or_else(|p| p.into_inner()).next();
                        let Some((i, item)) = next else { break out };
                        out.push((i, f(item)));
                    }
                })
            })
            .collect();
        workers
            .into_iter()
            .flat_map(|w| w.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
            .collect()
    });
    done.sort_unstable_by_key(|(i, _)| *i);
    done.into_iter().map(|(_, r)| r).collect()
}

#[cfg(test)]
pub(crate) mod tests;
