//! The S3 backend (aws-sdk-s3): keys live under `s3://bucket/prefix/`.
//!
//! Conditions map to S3's conditional writes: [`Condition::Absent`] is `If-None-Match: *`,
//! [`Condition::Matches`] is `If-Match: <etag>`; a 412, or a 409 from a concurrent conditional
//! write, is a [`Put::Conflict`]. Objects over 64 MiB go up as a multipart upload, completed
//! with the same condition. Retries (throttling, 5xx, timeouts) are the SDK's own, as configured
//! on the client.
//!
//! Reads fetch only what is needed: a footer is the end of an object (one ranged GET); a
//! [`Fetch::Ranged`] read takes the footer, then the byte ranges of the columns asked for (those
//! less than [`RANGE_GAP`] apart in one GET, the GETs of a row group side by side); a
//! [`Fetch::Whole`] read of an immutable data file keeps it in a local cache, so a process
//! that rolls up the same day again downloads only the files added since; a data file the
//! process writes goes into the cache as written, so its rollups download none of its own.

use std::fs;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use aws_sdk_s3::Client;
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::primitives::ByteStream;
use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{FutureExt as _, TryStreamExt as _};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions};
use parquet::arrow::async_reader::{AsyncFileReader, ParquetRecordBatchStreamBuilder};
use parquet::file::metadata::{ParquetMetaData, ParquetMetaDataReader};

use super::{
    Batches, Condition, Fetch, Object, ObjectMeta, Put, Store, decode_footer, decode_parquet,
    dictionary_hint, immutable_data_file,
};
use crate::error::{Error, Result};

/// Bytes read from the end of an object for its footer (a rollup's footer is a few KiB).
const FOOTER_GUESS: u64 = 64 << 10;

/// The most keys one `ListObjectsV2` request returns.
const LIST_PAGE_KEYS: usize = 1000;

/// Settings of an S3 lake.
#[derive(Debug, Clone)]
pub struct S3StoreOptions {
    /// Objects larger than this go up as a multipart upload.
    pub multipart_above: usize,
    /// Part size of a multipart upload (S3's minimum is 5 MiB).
    pub part_size: usize,
    /// Where immutable data files are cached, and how many bytes it may hold; `None` keeps
    /// nothing on disk.
    pub cache: Option<(PathBuf, u64)>,
}

impl Default for S3StoreOptions {
    fn default() -> Self {
        Self { multipart_above: 64 << 20, part_size: 16 << 20, cache: None }
    }
}

/// A lake under an S3 prefix.
#[derive(Debug, Clone)]
pub struct S3Store {
    client: Client,
    bucket: String,
    /// Without a trailing `/`; may be empty.
    prefix: String,
    handle: tokio::runtime::Handle,
    opts: S3StoreOptions,
    cache: Option<Arc<Cache>>,
}

/// Downloaded immutable data files, evicted oldest-used first past the size limit.
#[derive(Debug)]
struct Cache {
    dir: PathBuf,
    max_bytes: u64,
    /// Bytes added since the last eviction pass.
    added: AtomicU64,
}

impl Cache {
    /// The copy of version `etag` of `key`: the version is part of the name, so a copy is
    /// only ever used for the very object it was downloaded from.
    fn path(&self, key: &str, etag: &str) -> PathBuf {
        let etag: String =
            etag.chars().filter(|c| c.is_ascii_alphanumeric() || *c == '-').collect();
        self.dir.join(format!("{key}.{etag}"))
    }

    /// The cached copy of this version, if any.
    fn get(&self, key: &str, etag: &str) -> Option<PathBuf> {
        let path = self.path(key, etag);
        fs::metadata(&path).ok()?;
        // Marks it used, for the eviction order.
        let _ = fs::File::options()
            .append(true)
            .open(&path)
            .and_then(|f| f.set_modified(std::time::SystemTime::now()));
        Some(path)
    }

    fn put(&self, key: &str, etag: &str, bytes: &[u8]) {
        let path = self.path(key, etag);
        // A cache that cannot be written is only slower: never an error.
        if crate::fsio::write_atomic(&path, bytes).is_err() {
            return;
        }
        let added = self.added.fetch_add(bytes.len() as u64, Ordering::Relaxed);
        if added + bytes.len() as u64 > self.max_bytes / 8 {
            self.added.store(0, Ordering::Relaxed);
            self.evict();
        }
    }

    /// Removes the least recently used files until the cache is under 80% of its limit.
    fn evict(&self) {
        fn walk(dir: &std::path::Path, out: &mut Vec<(std::time::SystemTime, u64, PathBuf)>) {
            let Ok(entries) = fs::read_dir(dir) else { return };
            for e in entries.flatten() {
                let Ok(meta) = e.metadata() else { continue };
                if meta.is_dir() {
                    walk(&e.path(), out);
                } else {
                    let used = meta.modified().unwrap_or(std::time::UNIX_EPOCH);
                    out.push((used, meta.len(), e.path()));
                }
            }
        }
        let mut files = Vec::new();
        walk(&self.dir, &mut files);
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.max_bytes {
            return;
        }
        files.sort();
        for (_, len, path) in files {
            if total <= self.max_bytes / 10 * 8 {
                break;
            }
            if fs::remove_file(&path).is_ok() {
                total -= len;
            }
        }
    }
}

/// The HTTP status of S3's answer, if one arrived.
fn status<E>(e: &SdkError<E>) -> Option<u16> {
    // An answer cut off after its status line is a response error: its status still says
    // what S3 did (a 412 is a refused condition whatever became of its body).
    e.raw_response().map(|r| r.status().as_u16())
}

impl S3Store {
    /// The lake at `s3://bucket/prefix`, read and written with `client` from async tasks on
    /// `handle` (the calling thread blocks on them).
    pub fn new(
        client: Client,
        bucket: impl Into<String>,
        prefix: &str,
        handle: tokio::runtime::Handle,
        opts: S3StoreOptions,
    ) -> Self {
        let bucket = bucket.into();
        let prefix = prefix.trim_matches('/').to_owned();
        let cache = opts.cache.as_ref().map(|(root, max)| {
            // Named by a digest: the prefix is the user's text and must not become a path.
            let id =
                agentmeter_schemas::content_digest_hex(format!("{bucket}/{prefix}").as_bytes());
            Arc::new(Cache {
                dir: root.join(format!("{bucket}-{}", &id[..16])),
                max_bytes: *max,
                added: AtomicU64::new(0),
            })
        });
        Self { client, bucket, prefix, handle, opts, cache }
    }

    /// One PutObject (or multipart upload) under `cond`.
    fn put_object(&self, key: &str, body: Bytes, cond: Condition) -> Result<Put> {
        self.block_on(async {
            if body.len() > self.opts.multipart_above {
                return self.put_multipart(key, &body, &cond).await;
            }
            let mut put = self
                .client
                .put_object()
                .bucket(&self.bucket)
                .key(self.full(key))
                .body(ByteStream::from(body));
            put = match &cond {
                Condition::Always => put,
                Condition::Absent => put.if_none_match("*"),
                Condition::Matches(etag) => put.if_match(etag),
            };
            match put.send().await {
                Ok(out) => Ok(Put::Written {
                    etag: out.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                }),
                // 412: the condition failed; 409: a concurrent conditional write won; 404: an
                // If-Match on an object that is gone.
                Err(e)
                    if cond != Condition::Always && matches!(status(&e), Some(404 | 409 | 412)) =>
                {
                    Ok(Put::Conflict)
                }
                Err(e) => Err(self.error("PutObject", key, &e)),
            }
        })
    }

    fn full(&self, key: &str) -> String {
        if self.prefix.is_empty() { key.to_owned() } else { format!("{}/{key}", self.prefix) }
    }

    /// A listed object under the lake's prefix as [`ObjectMeta`]; `None` for a "directory"
    /// marker or a key outside the prefix.
    fn listed(&self, o: &aws_sdk_s3::types::Object) -> Option<ObjectMeta> {
        let key = o.key().and_then(|k| self.relative(k))?;
        (!key.ends_with('/')).then(|| ObjectMeta {
            key: key.to_owned(),
            size: u64::try_from(o.size().unwrap_or(0)).unwrap_or(0),
            etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
        })
    }

    fn relative<'k>(&self, full: &'k str) -> Option<&'k str> {
        if self.prefix.is_empty() {
            Some(full)
        } else {
            full.strip_prefix(&self.prefix)?.strip_prefix('/')
        }
    }

    fn error<E>(&self, operation: &'static str, key: &str, e: &SdkError<E>) -> Error
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        Error::Store { uri: self.uri_of(key), operation, detail: crate::aws_error::describe(e) }
    }

    fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    async fn get_range(&self, key: &str, range: &str) -> Result<(Bytes, String, u64)> {
        self.get_range_attempt(key, range, 1).await
    }

    async fn get_range_attempt(
        &self,
        key: &str,
        range: &str,
        attempt: u32,
    ) -> Result<(Bytes, String, u64)> {
        let out = self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(self.full(key))
            .range(range)
            .send()
            .await
            .map_err(|e| {
                // Listed a moment ago, deleted since (a compaction): the caller lists again.
                if status(&e) == Some(404) {
                    Error::Vanished { uri: self.uri_of(key) }
                } else {
                    self.error("GetObject", key, &e)
                }
            })?;
        let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
        let total = out
            .content_range()
            .and_then(|r| r.rsplit('/').next())
            .and_then(|t| t.parse().ok())
            .unwrap_or_default();
        match out.body.collect().await {
            Ok(bytes) => Ok((bytes.into_bytes(), etag, total)),
            Err(e) if attempt < BODY_ATTEMPTS => {
                tracing::debug!(key, attempt, error = %e, "GetObject body cut off; reading again");
                tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                Box::pin(self.get_range_attempt(key, range, attempt + 1)).await
            }
            Err(e) => Err(Error::Store {
                uri: self.uri_of(key),
                operation: "GetObject",
                detail: e.to_string(),
            }),
        }
    }

    async fn put_multipart(&self, key: &str, body: &Bytes, cond: &Condition) -> Result<Put> {
        let full = self.full(key);
        let created = self
            .client
            .create_multipart_upload()
            .bucket(&self.bucket)
            .key(&full)
            .send()
            .await
            .map_err(|e| self.error("CreateMultipartUpload", key, &e))?;
        let upload = created.upload_id().unwrap_or_default().to_owned();
        let result: Result<Put> = async {
            let mut parts = Vec::new();
            for (i, chunk) in body.chunks(self.opts.part_size.max(5 << 20)).enumerate() {
                let n = i32::try_from(i + 1).unwrap_or(i32::MAX);
                let part = self
                    .client
                    .upload_part()
                    .bucket(&self.bucket)
                    .key(&full)
                    .upload_id(&upload)
                    .part_number(n)
                    .body(ByteStream::from(body.slice_ref(chunk)))
                    .send()
                    .await
                    .map_err(|e| self.error("UploadPart", key, &e))?;
                parts.push(
                    aws_sdk_s3::types::CompletedPart::builder()
                        .part_number(n)
                        .set_e_tag(part.e_tag().map(str::to_owned))
                        .build(),
                );
            }
            let mut complete = self
                .client
                .complete_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload)
                .multipart_upload(
                    aws_sdk_s3::types::CompletedMultipartUpload::builder()
                        .set_parts(Some(parts))
                        .build(),
                );
            complete = match cond {
                Condition::Always => complete,
                Condition::Absent => complete.if_none_match("*"),
                Condition::Matches(etag) => complete.if_match(etag),
            };
            match complete.send().await {
                Ok(out) => Ok(Put::Written {
                    etag: out.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                }),
                Err(e) if matches!(status(&e), Some(404 | 409 | 412)) => Ok(Put::Conflict),
                Err(e) => Err(self.error("CompleteMultipartUpload", key, &e)),
            }
        }
        .await;
        if !matches!(result, Ok(Put::Written { .. })) {
            // Parts of an upload that did not complete cost storage until aborted.
            let _ = self
                .client
                .abort_multipart_upload()
                .bucket(&self.bucket)
                .key(&full)
                .upload_id(&upload)
                .send()
                .await;
        }
        result
    }

    fn size_of(&self, key: &str, listed: Option<&ObjectMeta>) -> Result<Option<u64>> {
        match listed {
            Some(m) => Ok(Some(m.size)),
            None => Ok(self.head(key)?.map(|m| m.size)),
        }
    }
}

/// Reads of an object's body: the SDK retries a request, not a body cut off after the answer's
/// headers (a dropped connection mid-transfer), so the GET is made again, this many times.
const BODY_ATTEMPTS: u32 = 5;

/// Byte ranges of one object at most this far apart are read in one GET: the bytes between
/// cost less than another round trip (tens of milliseconds, where 1 MiB takes about 10 ms).
pub(crate) const RANGE_GAP: u64 = 1 << 20;

/// `ranges` (in any order) merged where they overlap or are at most `gap` apart, in order.
pub(crate) fn coalesce(ranges: &[Range<u64>], gap: u64) -> Vec<Range<u64>> {
    let mut sorted = ranges.to_vec();
    sorted.sort_unstable_by_key(|r| r.start);
    let mut out: Vec<Range<u64>> = Vec::with_capacity(sorted.len());
    for r in sorted {
        match out.last_mut() {
            Some(last) if r.start <= last.end.saturating_add(gap) => last.end = last.end.max(r.end),
            _ => out.push(r),
        }
    }
    out
}

/// One object read by byte ranges, for the async Parquet reader (which needs to own it).
struct RangedObject {
    store: S3Store,
    key: String,
    size: u64,
}

impl AsyncFileReader for RangedObject {
    fn get_bytes(&mut self, range: Range<u64>) -> BoxFuture<'_, parquet::errors::Result<Bytes>> {
        async move {
            let header = format!("bytes={}-{}", range.start, range.end.saturating_sub(1));
            self.store
                .get_range(&self.key, &header)
                .await
                .map(|(b, _, _)| b)
                .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))
        }
        .boxed()
    }

    /// The column chunks of a row group: one GET per run of nearby ranges ([`coalesce`]), all
    /// side by side, rather than one round trip after another per column.
    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<Bytes>>> {
        async move {
            let merged = coalesce(&ranges, RANGE_GAP);
            let store = &self.store;
            let key = self.key.as_str();
            let fetched = futures::future::try_join_all(merged.iter().map(|m| async move {
                let header = format!("bytes={}-{}", m.start, m.end.saturating_sub(1));
                store.get_range(key, &header).await.map(|(b, _, _)| b)
            }))
            .await
            .map_err(|e| parquet::errors::ParquetError::External(Box::new(e)))?;
            ranges
                .iter()
                .map(|r| {
                    let i = merged.partition_point(|m| m.end < r.end);
                    let (m, bytes) = (&merged[i], &fetched[i]);
                    let from = r.start.saturating_sub(m.start) as usize;
                    let to = r.end.saturating_sub(m.start) as usize;
                    if r.start < m.start || to > bytes.len() {
                        return Err(parquet::errors::ParquetError::EOF(format!(
                            "{}: bytes {}..{} asked, the object ends at {}",
                            self.key,
                            r.start,
                            r.end,
                            m.start + bytes.len() as u64
                        )));
                    }
                    Ok(bytes.slice(from..to))
                })
                .collect()
        }
        .boxed()
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a parquet::arrow::arrow_reader::ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            let size = self.size;
            let meta = ParquetMetaDataReader::new()
                .with_prefetch_hint(Some(FOOTER_GUESS as usize))
                .load_and_finish(&mut *self, size)
                .await?;
            Ok(Arc::new(meta))
        }
        .boxed()
    }
}

impl Store for S3Store {
    fn uri(&self) -> String {
        format!("s3://{}/{}", self.bucket, self.prefix)
    }

    fn round_trips(&self) -> bool {
        true
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let full = self.full(prefix);
        let pages: Vec<_> = self
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .into_paginator()
                    .send()
                    .try_collect(),
            )
            .map_err(|e| self.error("ListObjectsV2", prefix, &e))?;
        let mut out: Vec<ObjectMeta> =
            pages.iter().flat_map(|p| p.contents()).filter_map(|o| self.listed(o)).collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_after(
        &self,
        prefix: &str,
        after: &str,
        limit: usize,
    ) -> Result<(Vec<ObjectMeta>, bool)> {
        let max_keys = i32::try_from(limit.min(LIST_PAGE_KEYS)).unwrap_or(1).max(1);
        let page = self
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(self.full(prefix))
                    .start_after(self.full(after))
                    .max_keys(max_keys)
                    .send(),
            )
            .map_err(|e| self.error("ListObjectsV2", prefix, &e))?;
        let objects = page.contents().iter().filter_map(|o| self.listed(o)).collect();
        Ok((objects, page.is_truncated().unwrap_or(false)))
    }

    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let full = self.full(prefix);
        let pages: Vec<_> = self
            .block_on(
                self.client
                    .list_objects_v2()
                    .bucket(&self.bucket)
                    .prefix(&full)
                    .delimiter("/")
                    .into_paginator()
                    .send()
                    .try_collect(),
            )
            .map_err(|e| self.error("ListObjectsV2", prefix, &e))?;
        let mut out: Vec<String> = pages
            .iter()
            .flat_map(|p| p.common_prefixes())
            .filter_map(|c| c.prefix())
            .filter_map(|p| p.strip_prefix(&full))
            .map(|p| p.trim_end_matches('/').to_owned())
            .filter(|p| !p.is_empty())
            .collect();
        out.sort();
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<Object>> {
        self.block_on(async {
            let mut attempt = 1;
            loop {
                let out = match self
                    .client
                    .get_object()
                    .bucket(&self.bucket)
                    .key(self.full(key))
                    .send()
                    .await
                {
                    Ok(o) => o,
                    Err(e) if status(&e) == Some(404) => return Ok(None),
                    Err(e) => return Err(self.error("GetObject", key, &e)),
                };
                let etag = out.e_tag().unwrap_or_default().trim_matches('"').to_owned();
                match out.body.collect().await {
                    Ok(bytes) => return Ok(Some(Object { bytes: bytes.into_bytes(), etag })),
                    Err(e) if attempt < BODY_ATTEMPTS => {
                        tracing::debug!(key, attempt, error = %e, "GetObject body cut off; reading again");
                        tokio::time::sleep(Duration::from_millis(50 << attempt)).await;
                        attempt += 1;
                    }
                    Err(e) => {
                        return Err(Error::Store {
                            uri: self.uri_of(key),
                            operation: "GetObject",
                            detail: e.to_string(),
                        });
                    }
                }
            }
        })
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        self.block_on(async {
            match self.client.head_object().bucket(&self.bucket).key(self.full(key)).send().await {
                Ok(o) => Ok(Some(ObjectMeta {
                    key: key.to_owned(),
                    size: u64::try_from(o.content_length().unwrap_or(0)).unwrap_or(0),
                    etag: o.e_tag().unwrap_or_default().trim_matches('"').to_owned(),
                })),
                Err(e) if status(&e) == Some(404) => Ok(None),
                Err(e) => Err(self.error("HeadObject", key, &e)),
            }
        })
    }

    fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<Put> {
        // A data file this process writes is cached as written: the rollups read the day's
        // files right after, and would otherwise download what was just uploaded. Only a
        // write that took place is: on a conflict the object is another writer's bytes.
        let through =
            self.cache.as_ref().filter(|_| immutable_data_file(key)).map(|c| (c, body.clone()));
        let put = self.put_object(key, body, cond)?;
        if let (Some((cache, body)), Put::Written { etag }) = (through, &put) {
            cache.put(key, etag, &body);
        }
        Ok(put)
    }

    fn delete(&self, key: &str) -> Result<()> {
        self.block_on(async {
            match self.client.delete_object().bucket(&self.bucket).key(self.full(key)).send().await
            {
                Ok(_) => Ok(()),
                Err(e) if status(&e) == Some(404) => Ok(()),
                Err(e) => Err(self.error("DeleteObject", key, &e)),
            }
        })
    }

    fn parquet_footer(&self, key: &str) -> Result<Option<(Arc<ParquetMetaData>, String)>> {
        self.block_on(async {
            let (tail, etag, total) =
                match self.get_range(key, &format!("bytes=-{FOOTER_GUESS}")).await {
                    Ok(t) => t,
                    Err(Error::Vanished { .. }) => return Ok(None),
                    Err(e) => return Err(e),
                };
            let n = tail.len();
            let needed = if n >= 8 && &tail[n - 4..] == b"PAR1" {
                u32::from_le_bytes([tail[n - 8], tail[n - 7], tail[n - 6], tail[n - 5]]) as u64 + 8
            } else {
                0
            };
            let tail = if needed > n as u64 && needed <= total {
                self.get_range(key, &format!("bytes=-{needed}")).await?.0
            } else {
                tail
            };
            Ok(Some((Arc::new(decode_footer(&self.uri_of(key), &tail)?), etag)))
        })
    }

    fn read_parquet(
        &self,
        key: &str,
        listed: Option<&ObjectMeta>,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
        fetch: Fetch,
    ) -> Result<Option<Batches>> {
        let uri = self.uri_of(key);
        let cache = self.cache.as_ref().filter(|_| immutable_data_file(key));
        if let (Some(cache), Some(meta)) = (cache, listed)
            && let Some(path) = cache.get(key, &meta.etag)
        {
            let bytes = fs::read(&path).map_err(crate::error::io_at(&path))?;
            return decode_parquet(&uri, Bytes::from(bytes), columns, dictionaries).map(Some);
        }
        match fetch {
            Fetch::Whole => {
                let Some(object) = self.get(key)? else { return Ok(None) };
                if let Some(cache) = cache {
                    cache.put(key, &object.etag, &object.bytes);
                }
                decode_parquet(&uri, object.bytes, columns, dictionaries).map(Some)
            }
            Fetch::Ranged => {
                let Some(size) = self.size_of(key, listed)? else { return Ok(None) };
                let perr = |source| Error::Parquet { path: uri.clone().into(), source };
                // The object may be deleted between its listing and these reads.
                let gone = |e: &parquet::errors::ParquetError| {
                    matches!(e, parquet::errors::ParquetError::External(inner)
                        if matches!(inner.downcast_ref::<Error>(), Some(Error::Vanished { .. })))
                };
                self.block_on(async {
                    let reader = RangedObject { store: self.clone(), key: key.to_owned(), size };
                    let mut builder = match ParquetRecordBatchStreamBuilder::new(reader).await {
                        Ok(b) => b.with_batch_size(64 << 10),
                        Err(e) if gone(&e) => return Ok(None),
                        Err(e) => return Err(perr(e)),
                    };
                    if let Some(hint) = dictionary_hint(builder.schema(), dictionaries) {
                        let options = ArrowReaderOptions::new().with_schema(hint);
                        let meta =
                            ArrowReaderMetadata::try_new(builder.metadata().clone(), options)
                                .map_err(perr)?;
                        let reader =
                            RangedObject { store: self.clone(), key: key.to_owned(), size };
                        builder = ParquetRecordBatchStreamBuilder::new_with_metadata(reader, meta)
                            .with_batch_size(64 << 10);
                    }
                    if let Some(names) = columns {
                        let mask = ProjectionMask::columns(
                            builder.parquet_schema(),
                            names.iter().copied(),
                        );
                        builder = builder.with_projection(mask);
                    }
                    let stream = builder.build().map_err(perr)?;
                    // Ranged reads fetch only some columns (ids), so the batches are small.
                    let batches = match stream.try_collect::<Vec<_>>().await {
                        Ok(b) => b,
                        Err(e) if gone(&e) => return Ok(None),
                        Err(e) => return Err(perr(e)),
                    };
                    Ok(Some(Box::new(batches.into_iter().map(Ok)) as Batches))
                })
            }
        }
    }
}
