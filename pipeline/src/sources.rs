//! The AWS sources: `kinesis://STREAM` (every shard, checkpointed in the lake, optionally
//! followed), `logs://LOG_GROUP?start=..&end=..` (a CloudWatch Logs backfill) and
//! `s3://BUCKET/PREFIX` (objects not read before), decoded by the same `Decoder` and routed by
//! the same [`Router`] as files.
//!
//! The durable point: a checkpoint is saved only after [`Router::commit`] has made the events,
//! spans and quarantine entries of every record it covers durable. A crash after a commit and
//! before the save re-reads those records next time, and the lake's dedup drops them again;
//! nothing is ever checkpointed before it is in the lake. Checkpoints are one object per shard
//! (or per S3 object), only ever moved forward, so several readers of one lake never undo
//! each other's.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use agentmeter_aggregate::Lake;
use agentmeter_aggregate::checkpoint::{
    CheckpointStore, ObjectsStore, ShardCheckpoint, StreamCheckpoint,
};
use agentmeter_ingest::cwlogs::{LogsQuery, LogsReader};
use agentmeter_ingest::kinesis::{KinesisReader, SavedShard, StartPosition};
use agentmeter_ingest::s3::{self, S3Location, S3Object};
use agentmeter_ingest::source::{Format, SourceSpec};
use agentmeter_ingest::{Decoded, Decoder};
use agentmeter_schemas::SourceUri;
use aws_config::SdkConfig;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result, lake};
use crate::router::Router;

/// Re-list the shards this often while following (children appear after a reshard).
const REFRESH_EVERY: Duration = Duration::from_secs(30);
/// Wait between polls of a caught-up stream (AWS: at least 1 s between empty polls).
const IDLE_POLL: Duration = Duration::from_secs(1);
/// Least time between two rounds of `GetRecords` (5 calls per second per shard).
const ROUND_MIN: Duration = Duration::from_millis(200);

/// An AWS source named on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AwsSource {
    /// A Kinesis stream, by name or ARN.
    Kinesis(String),
    /// A CloudWatch Logs backfill.
    Logs(LogsQuery),
    /// The objects under an S3 prefix.
    S3(S3Location),
}

/// How to read the AWS sources.
#[derive(Debug, Clone, Copy)]
pub struct StreamOptions {
    /// Where shards without a checkpoint start.
    pub start: StartPosition,
    /// Keep reading at the tip until stopped.
    pub follow: bool,
    /// Commit, then checkpoint, this often.
    pub checkpoint_interval: Duration,
    /// While following: rebuild the rollups of the days written this often.
    pub rollup_interval: Duration,
}

/// Recognises `kinesis://`, `logs://` and `s3://` sources; `None` for a file path. Other
/// schemes are refused with what to do instead.
///
/// # Errors
///
/// [`Error::Usage`] naming what is wrong.
pub fn parse_source(text: &str) -> Result<Option<AwsSource>> {
    if let Some(stream) = text.strip_prefix("kinesis://") {
        let ok = !stream.is_empty()
            && !stream.contains(['?', '#'])
            && (stream.starts_with("arn:") || !stream.contains('/'));
        if !ok {
            return Err(Error::Usage(format!(
                "{text}: expected kinesis://STREAM_NAME or kinesis://STREAM_ARN"
            )));
        }
        return Ok(Some(AwsSource::Kinesis(stream.to_owned())));
    }
    if text.starts_with("logs://") {
        return LogsQuery::parse(text, chrono::Utc::now())
            .map(|q| Some(AwsSource::Logs(q)))
            .map_err(Error::Usage);
    }
    if text.starts_with("s3://") {
        return S3Location::parse(text).map(|l| Some(AwsSource::S3(l))).map_err(Error::Usage);
    }
    if let Some((scheme, _)) = text.split_once("://") {
        return Err(Error::Usage(format!(
            "{text}: unknown source scheme {scheme}:// (files, kinesis://, logs://, s3://)"
        )));
    }
    Ok(None)
}

/// Everything the AWS sources of one run share.
pub struct AwsRun<'r> {
    /// The lake written to.
    pub lake: &'r Lake,
    /// The decoder.
    pub decoder: &'r Decoder,
    /// How streams are read.
    pub opts: StreamOptions,
    /// The runtime the SDK calls run on (the reading thread blocks on them).
    pub rt: tokio::runtime::Handle,
    /// The SDK configuration.
    pub config: &'r SdkConfig,
    /// Cancelled by SIGTERM or SIGINT (or the service stopping).
    pub stop: CancellationToken,
    /// Bytes read, for progress.
    pub bytes: &'r AtomicU64,
    /// Show progress bars on a terminal.
    pub progress: bool,
    /// For S3 objects, read as files.
    pub format: Format,
    /// Decoder threads for S3 objects.
    pub workers: usize,
    /// Counters of a long-running reader (`agentmeter run`'s `/metrics`).
    pub counters: Option<Arc<agentmeter_ingest::otlp_http::Metrics>>,
}

impl AwsRun<'_> {
    /// Sleeps up to `d`, waking early when asked to stop.
    fn nap(&self, d: Duration) {
        let end = Instant::now() + d;
        while !self.stop.is_cancelled() {
            let left = end.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(Duration::from_millis(100)));
        }
    }

    fn route(sink: &mut Router, out: Decoded) -> Result<()> {
        for o in out.outcomes {
            sink.route(o)?;
        }
        Ok(())
    }

    /// Reads every shard of each stream from its checkpoint: to the tip, or until stopped with
    /// `--follow`. Several streams are read in turns on this thread, into one router, so that
    /// one dedup index sees them all.
    ///
    /// # Errors
    ///
    /// A stream cannot be read after the SDK's retries, or the lake cannot be written; what
    /// was checkpointed before is kept.
    pub fn kinesis(&self, sink: &mut Router, streams: &[String]) -> Result<()> {
        let mut follows = Vec::with_capacity(streams.len());
        for stream in streams {
            sink.owe_rollups_to(&format!("kinesis://{stream}"))?;
            let mut store = CheckpointStore::kinesis(self.lake, stream);
            let saved = store
                .load()
                .map_err(lake(format!("kinesis://{stream}: reading the checkpoints")))?;
            let resume: BTreeMap<String, SavedShard> = saved
                .shards
                .iter()
                .map(|(id, c)| {
                    (id.clone(), SavedShard { sequence: c.sequence.clone(), finished: c.finished })
                })
                .collect();
            let client = aws_sdk_kinesis::Client::new(self.config);
            let reader = self
                .rt
                .block_on(KinesisReader::open(client, stream, self.opts.start, &resume))
                .map_err(|e| source_error(format!("kinesis://{stream}: opening the stream"), e))?;
            tracing::info!(stream, shards = reader.readable().len(), checkpoints = %store.location(), "Reading Kinesis.");
            follows.push(Follow {
                stream: stream.clone(),
                store,
                saved,
                pending: BTreeMap::new(),
                reader,
                last_refresh: Instant::now(),
                done: false,
            });
        }
        let (mut last_save, mut last_rollup) = (Instant::now(), Instant::now());
        let mut records = 0u64;
        // Days whose rollup failed: tried again at the next rollup.
        let mut retry = BTreeSet::new();
        loop {
            if self.stop.is_cancelled() {
                break;
            }
            let round = Instant::now();
            let (mut got, mut idle) = (0usize, true);
            for f in follows.iter_mut().filter(|f| !f.done) {
                let (n, caught_up) = self.round(sink, f)?;
                got += n;
                idle &= caught_up;
            }
            records += got as u64;
            if let Some(c) = &self.counters {
                c.stream_records.fetch_add(got as u64, Ordering::Relaxed);
            }
            let all_done = follows.iter().all(|f| f.done);
            if all_done || last_save.elapsed() >= self.opts.checkpoint_interval {
                self.checkpoint(sink, &mut follows)?;
                last_save = Instant::now();
                tracing::debug!(records, "Checkpoints saved.");
                if self.opts.follow && last_rollup.elapsed() >= self.opts.rollup_interval {
                    let mut days = sink.take_touched()?;
                    days.append(&mut retry);
                    let report = self.lake.rebuild_rollups(&days);
                    sink.rolled_up(&days, &report);
                    for (dt, e) in report.failed {
                        tracing::error!(%dt, error = %e, "Rollup failed; retried at the next rollup, and readers see the day as stale.");
                        retry.insert(dt);
                    }
                    last_rollup = Instant::now();
                }
            }
            if all_done {
                break;
            }
            if got == 0 && idle {
                self.nap(IDLE_POLL);
            } else {
                self.nap(ROUND_MIN.saturating_sub(round.elapsed()));
            }
        }
        self.checkpoint(sink, &mut follows)?;
        tracing::info!(records, "Kinesis read; checkpoints saved.");
        Ok(())
    }

    /// One `GetRecords` per readable shard of one stream. Returns the records read and whether
    /// every shard was at its tip.
    fn round(&self, sink: &mut Router, f: &mut Follow) -> Result<(usize, bool)> {
        let stream = f.stream.clone();
        let shards = f.reader.readable();
        let (mut got, mut caught_up, mut closed) = (0usize, true, false);
        for id in &shards {
            let fetched = self
                .rt
                .block_on(f.reader.fetch(id))
                .map_err(|e| source_error(format!("kinesis://{stream}"), e))?;
            for rec in &fetched.records {
                let uri = SourceUri::new(format!("kinesis://{stream}/{id}/{}", rec.sequence));
                let mut out = Decoded::default();
                self.decoder.stream_record(&rec.data, &uri, &mut out);
                Self::route(sink, out)?;
                self.bytes.fetch_add(rec.data.len() as u64, Ordering::Relaxed);
            }
            got += fetched.records.len();
            let saved = &f.saved;
            let p = f
                .pending
                .entry(id.clone())
                .or_insert_with(|| saved.shards.get(id).cloned().unwrap_or_default());
            if let Some(r) = fetched.records.last() {
                p.sequence = Some(r.sequence.clone());
            }
            if fetched.closed {
                p.finished = true;
                closed = true;
            }
            caught_up &= fetched.caught_up;
        }
        if closed || (self.opts.follow && f.last_refresh.elapsed() >= REFRESH_EVERY) {
            self.rt
                .block_on(f.reader.refresh())
                .map_err(|e| source_error(format!("kinesis://{stream}: listing the shards"), e))?;
            f.last_refresh = Instant::now();
        }
        // Done when every readable shard is at its tip and no closed shard opened children.
        f.done = !self.opts.follow && ((caught_up && !closed) || f.reader.readable().is_empty());
        Ok((got, caught_up && !closed))
    }

    /// Commits what was read, then saves the checkpoints that cover it.
    fn checkpoint(&self, sink: &mut Router, follows: &mut [Follow]) -> Result<()> {
        sink.commit()?;
        for f in follows.iter_mut().filter(|f| !f.pending.is_empty()) {
            let pending = std::mem::take(&mut f.pending);
            f.store
                .save(&pending)
                .map_err(lake(format!("kinesis://{}: saving the checkpoints", f.stream)))?;
            f.saved.shards.extend(pending);
            if let Some(c) = &self.counters {
                c.stream_checkpoints.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// Backfills one `logs://` query, every page.
    ///
    /// # Errors
    ///
    /// A page cannot be read after the SDK's retries, the lake cannot be written, or the run
    /// was stopped with pages left.
    pub fn logs(&self, sink: &mut Router, query: &LogsQuery) -> Result<()> {
        let client = aws_sdk_cloudwatchlogs::Client::new(self.config);
        let mut reader = LogsReader::new(client, query.clone());
        let bar = crate::progress::TimeBar::start(query.start_ms, query.end_ms, self.progress);
        let mut events = 0u64;
        loop {
            let page = self
                .rt
                .block_on(reader.next_page())
                .map_err(|e| source_error(format!("logs://{}", query.group), e))?;
            let Some(page) = page else { break };
            for ev in &page {
                let uri = SourceUri::new(format!("logs://{}/{}/{}", query.group, ev.stream, ev.id));
                let mut out = Decoded::default();
                self.decoder.api_log_event(&ev.id, ev.timestamp_ms, &ev.message, &uri, &mut out);
                Self::route(sink, out)?;
                self.bytes.fetch_add(ev.message.len() as u64, Ordering::Relaxed);
                bar.reached(ev.timestamp_ms);
            }
            events += page.len() as u64;
            if self.stop.is_cancelled() {
                bar.finish();
                return Err(Error::Interrupted(format!(
                    "interrupted after {events} events of {}; what was read is kept, and running the same backfill again completes it",
                    query.group
                )));
            }
        }
        bar.finish();
        tracing::info!(group = %query.group, events, "CloudWatch Logs backfill read.");
        Ok(())
    }
}

/// A source's failure after the SDK's retries.
fn source_error(what: String, e: impl std::fmt::Display) -> Error {
    Error::Source { what, detail: e.to_string() }
}

/// One stream being read.
struct Follow {
    stream: String,
    store: CheckpointStore,
    saved: StreamCheckpoint,
    /// Read but not yet checkpointed, per shard.
    pending: BTreeMap<String, ShardCheckpoint>,
    reader: KinesisReader,
    last_refresh: Instant,
    /// Caught up (without `--follow`).
    done: bool,
}

/// Objects downloaded and read between two saves of the objects done: bounds the disk used.
const S3_CHUNK_BYTES: u64 = 256 << 20;
const S3_CHUNK_OBJECTS: usize = 256;

/// A local file name for an object: its position, then the key's last part made safe (the
/// name keeps extensions such as `.pb` or `.gz` that format detection looks at).
fn download_name(i: usize, key: &str) -> String {
    let last = key.rsplit('/').next().unwrap_or_default();
    let safe: String = last
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') { c } else { '_' })
        .collect();
    let safe = safe.trim_start_matches('.');
    let tail = safe.len().saturating_sub(80);
    format!("{i:06}-{}", &safe[tail..])
}

impl AwsRun<'_> {
    /// Reads the objects under `loc` not read before (by key and ETag), in chunks: download to
    /// a local temporary directory, decode as files, commit, then record them as done.
    ///
    /// # Errors
    ///
    /// An object cannot be listed or read after the SDK's retries, the lake cannot be
    /// written, or the run was stopped with objects left.
    pub fn s3(&self, sink: &mut Router, loc: &S3Location) -> Result<()> {
        let client = s3::client(self.config);
        sink.owe_rollups_to(&loc.uri())?;
        let store = ObjectsStore::s3(self.lake, &loc.uri());
        let done =
            store.load().map_err(lake(format!("{}: reading the objects done", loc.uri())))?;
        let listed =
            self.rt.block_on(s3::list(&client, loc)).map_err(|e| source_error(loc.uri(), e))?;
        let todo: Vec<S3Object> = listed
            .iter()
            .filter(|o| !ObjectsStore::is_done(&done, &o.key, &o.etag))
            .cloned()
            .collect();
        tracing::info!(source = %loc.uri(), listed = listed.len(), to_read = todo.len(), "Reading S3 objects.");
        // Local scratch space of this process only: other writers of the lake have their own.
        let dir = tempfile_dir()?;
        let total: u64 = todo.iter().map(|o| o.size).sum();
        let progress = crate::progress::Progress::start(total, self.progress);
        let mut rest = todo.as_slice();
        while !rest.is_empty() {
            let mut n = 0;
            let mut size = 0;
            while n < rest.len()
                && n < S3_CHUNK_OBJECTS
                && (n == 0 || size + rest[n].size <= S3_CHUNK_BYTES)
            {
                size += rest[n].size;
                n += 1;
            }
            let (chunk, tail) = rest.split_at(n);
            rest = tail;
            let mut specs = Vec::with_capacity(chunk.len());
            for (i, o) in chunk.iter().enumerate() {
                let path = dir.path().join(download_name(i, &o.key));
                let len = self.rt.block_on(s3::download(&client, loc, o, &path)).map_err(|e| {
                    source_error(SourceUri::escape(&loc.object_uri(&o.key)).into_owned(), e)
                })?;
                specs.push(SourceSpec {
                    path,
                    uri: SourceUri::new(loc.object_uri(&o.key)),
                    format: self.format,
                    len,
                });
            }
            agentmeter_ingest::pipeline::run(
                &specs,
                self.decoder,
                self.workers,
                &progress.bytes,
                sink,
            )
            .map_err(|e| match e {
                agentmeter_ingest::pipeline::RunError::Sink(e) => e,
                other => Error::Source { what: loc.uri(), detail: other.to_string() },
            })?;
            sink.commit()?;
            for o in chunk {
                store
                    .save(&o.key, &o.etag)
                    .map_err(lake(format!("{}: recording the objects done", loc.uri())))?;
            }
            for s in &specs {
                let _ = std::fs::remove_file(&s.path);
            }
            if self.stop.is_cancelled() && !rest.is_empty() {
                progress.finish();
                return Err(Error::Interrupted(format!(
                    "interrupted with {} objects left; the objects read are recorded, and running the same ingest again reads the rest",
                    rest.len()
                )));
            }
        }
        self.bytes.fetch_add(progress.finish(), Ordering::Relaxed);
        Ok(())
    }
}

/// A fresh local temporary directory (removed when dropped).
fn tempfile_dir() -> Result<tempfile::TempDir> {
    tempfile::Builder::new()
        .prefix("agentmeter-s3-")
        .tempdir()
        .map_err(|e| Error::Io { what: "creating a temporary directory".into(), source: e })
}

/// A token cancelled on SIGTERM or SIGINT.
pub fn stop_on_signal(rt: &tokio::runtime::Runtime) -> CancellationToken {
    let token = CancellationToken::new();
    let child = token.clone();
    // Registered before returning, not when the task first runs: a SIGTERM that comes as soon
    // as the caller says it is listening is caught instead of killing the process.
    let _entered = rt.enter();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{Signal, SignalKind, signal};
        async fn on(s: Option<Signal>) {
            match s {
                Some(mut s) => {
                    s.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        }
        let term = signal(SignalKind::terminate()).ok();
        let int = signal(SignalKind::interrupt()).ok();
        rt.spawn(async move {
            tokio::select! {
                () = on(term) => {}
                () = on(int) => {}
            }
            tracing::info!("Shutting down: no new requests; flushing what was acknowledged.");
            child.cancel();
        });
    }
    #[cfg(not(unix))]
    rt.spawn(async move {
        shutdown_signal().await;
        child.cancel();
    });
    token
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("Shutting down: no new requests; flushing what was acknowledged.");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_are_recognised_and_bad_ones_refused_with_what_to_do() {
        assert_eq!(parse_source("/data/in").unwrap(), None);
        assert_eq!(
            parse_source("kinesis://usage").unwrap(),
            Some(AwsSource::Kinesis("usage".into()))
        );
        let arn = "arn:aws:kinesis:us-east-1:123456789012:stream/usage";
        assert_eq!(
            parse_source(&format!("kinesis://{arn}")).unwrap(),
            Some(AwsSource::Kinesis(arn.into()))
        );
        let Some(AwsSource::Logs(q)) =
            parse_source("logs:///aws/lambda/agent?start=2026-10-01&end=2026-10-02").unwrap()
        else {
            panic!("a logs source")
        };
        assert_eq!(q.group, "/aws/lambda/agent");
        let err = |s: &str| parse_source(s).unwrap_err().to_string();
        assert!(err("kinesis://").contains("expected kinesis://STREAM_NAME"));
        assert!(err("kinesis://a/b").contains("expected kinesis://STREAM_NAME"));
        assert_eq!(
            parse_source("s3://usage-logs/firehose/").unwrap(),
            Some(AwsSource::S3(S3Location {
                bucket: "usage-logs".into(),
                prefix: "firehose/".into()
            }))
        );
        assert!(err("s3://Bad/x").contains("not an S3 bucket name"));
        assert_eq!(download_name(7, "a/b/../x y.ndjson.gz"), "000007-x_y.ndjson.gz");
        assert_eq!(download_name(0, "dir/"), "000000-");
        assert!(err("ftp://x").contains("unknown source scheme ftp://"));
        assert!(err("logs://g").contains("start=... is required"));
    }
}
