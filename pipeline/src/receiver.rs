//! The OTLP/HTTP receiver's durable path: the write-ahead log on local disk, and the flusher
//! that moves it into the lake (local or S3) through the [`Router`].
//!
//! Three parts: the HTTP handlers (agentmeter-ingest) decode a request and hand its outcomes
//! to the log thread, which appends them with the outcomes of every other waiting request,
//! syncs once, and acknowledges them all (group commit); every flush interval it closes the
//! segment and passes it to the flusher thread, which routes its records into the lake
//! (dedup, Parquet, rollups, quarantine) and removes it. On shutdown the server stops
//! accepting, finishes the requests in flight, closes the last segment, flushes everything
//! acknowledged, and returns. Segments left by a crash are flushed before anything is
//! accepted. The log is this receiver's own (a lock on its directory), so receivers on any
//! number of machines share one lake, each with its log.

use std::fs::{File, OpenOptions};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use agentmeter_aggregate::wal::{Wal, WalRecord, read_segment, segments};
use agentmeter_aggregate::{Lake, WriterOptions};
use agentmeter_ingest::otlp_http::{DurableSink, Metrics, ServerConfig, serve};
use agentmeter_ingest::{DecodeConfig, Outcome};
use agentmeter_schemas::SourceUri;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::router::Router;

enum Msg {
    Append(Vec<WalRecord>, oneshot::Sender<Result<(), String>>),
    Shutdown,
}

/// The handlers' side of the log: a bounded queue to the log thread.
struct WalSink {
    tx: mpsc::SyncSender<Msg>,
}

impl DurableSink for WalSink {
    fn accept(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + '_>> {
        let records: Vec<WalRecord> = outcomes
            .into_iter()
            .filter_map(|o| match o {
                Outcome::Span(s) => Some(WalRecord::Span(s)),
                Outcome::Reject(q) => Some(WalRecord::Reject(q)),
                Outcome::Event(_) | Outcome::Skip(_) => None,
            })
            .collect();
        Box::pin(async move {
            let (ack, done) = oneshot::channel();
            // A full queue means the log is behind: the client is told to retry.
            self.tx
                .try_send(Msg::Append(records, ack))
                .map_err(|_| "the write-ahead log is behind".to_owned())?;
            done.await.map_err(|_| "the write-ahead log stopped".to_owned())?
        })
    }
}

/// Appends and syncs batches of requests; rotates segments to the flusher. While the log
/// cannot be written, `/health` says so, and a probe every second finds when it can again.
fn log_thread(
    mut wal: Wal,
    rx: mpsc::Receiver<Msg>,
    flush: mpsc::Sender<(PathBuf, u64)>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
    // A closed segment counts in the backlog until the flusher has written it.
    let rotate = |wal: &mut Wal| {
        let bytes = wal.current_bytes();
        let closed = wal.rotate()?;
        metrics.log_backlog_bytes.fetch_add(bytes, Ordering::Relaxed);
        Some((closed, bytes))
    };
    let mut last = Instant::now();
    let mut stop = false;
    let mut last_probe = Instant::now();
    while !stop {
        if metrics.unavailable().is_some() && last_probe.elapsed() >= Duration::from_secs(1) {
            last_probe = Instant::now();
            if wal.probe().is_ok() {
                tracing::info!("The write-ahead log can be written again; taking requests.");
                metrics.set_unavailable(None);
            }
        }
        let mut batch = Vec::new();
        match rx.recv_timeout(interval.min(Duration::from_millis(200))) {
            Ok(Msg::Append(r, ack)) => batch.push((r, ack)),
            Ok(Msg::Shutdown) | Err(mpsc::RecvTimeoutError::Disconnected) => stop = true,
            Err(mpsc::RecvTimeoutError::Timeout) => {}
        }
        // Group commit: everything already waiting goes in the same sync.
        while !stop {
            match rx.try_recv() {
                Ok(Msg::Append(r, ack)) => batch.push((r, ack)),
                Ok(Msg::Shutdown) | Err(mpsc::TryRecvError::Disconnected) => stop = true,
                Err(mpsc::TryRecvError::Empty) => break,
            }
        }
        if !batch.is_empty() {
            let records: Vec<WalRecord> =
                batch.iter_mut().flat_map(|(r, _)| std::mem::take(r)).collect();
            let result = wal.append(&records).map_err(|e| e.to_string());
            match &result {
                Ok(()) => metrics.set_unavailable(None),
                Err(e) => {
                    tracing::error!(error = %e, "The write-ahead log cannot be written; requests are refused.");
                    metrics.set_unavailable(Some(format!(
                        "the write-ahead log cannot be written: {e}"
                    )));
                    last_probe = Instant::now();
                    // The failed batch is after the segment's last commit line: close it
                    // there, so nothing after it can ever join that batch.
                    if let Some(closed) = rotate(&mut wal) {
                        let _ = flush.send(closed);
                    }
                }
            }
            for (_, ack) in batch {
                let _ = ack.send(result.clone());
            }
        }
        if stop || last.elapsed() >= interval {
            if let Some(closed) = rotate(&mut wal) {
                let _ = flush.send(closed);
            }
            last = Instant::now();
        }
    }
}

/// What flushing segments did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushStats {
    /// Segments written to the lake and removed.
    pub segments: u64,
    /// Spans newly written.
    pub spans_written: u64,
    /// Spans already in the lake.
    pub span_duplicates: u64,
    /// Records quarantined.
    pub quarantined: u64,
    /// Days whose rollup failed (logged; they stay stale for readers to rebuild).
    pub rollups_failed: u64,
}

/// Routes the records of `segments` (closed, oldest first) into the lake, rebuilds the
/// rollups of the days they touch, then removes them. A crash at any point leaves the
/// segments to be flushed again, which writes nothing twice.
///
/// # Errors
///
/// A segment cannot be read or the lake cannot be written (the segments stay).
pub fn flush_segments(
    lake: &Lake,
    segments: &[PathBuf],
    opts: WriterOptions,
) -> Result<FlushStats> {
    let mut stats = FlushStats::default();
    if segments.is_empty() {
        return Ok(stats);
    }
    let mut router = Router::appending(lake, opts);
    for path in segments {
        let records = read_segment(path).map_err(|source| Error::Lake {
            what: format!("reading the write-ahead log segment {}", path.display()),
            source,
        })?;
        for record in records {
            match record {
                WalRecord::Span(s) => router.route(Outcome::Span(s))?,
                WalRecord::Reject(q) => router.route(Outcome::Reject(q))?,
            }
        }
    }
    let done = router.finish()?;
    // The spans are durable now: a failed rollup leaves its day stale for the readers to
    // rebuild (and report), and must not keep the segments, which would be flushed again.
    for (dt, e) in &done.rollups.failed {
        tracing::error!(%dt, error = %e, "Rollup failed; the day stays stale until rebuilt.");
    }
    for path in segments {
        agentmeter_aggregate::fsio::remove_if_exists(path).map_err(|source| Error::Lake {
            what: format!("removing the flushed segment {}", path.display()),
            source,
        })?;
        stats.segments += 1;
    }
    stats.spans_written = done.acc.spans_written;
    stats.span_duplicates = done.acc.span_duplicates;
    stats.quarantined = done.acc.quarantined_total();
    stats.rollups_failed = done.rollups.failed.len() as u64;
    Ok(stats)
}

/// How much lower than the threads that answer requests the flushes run (and the writer and
/// rollup threads they start): on 2 cores at 200,000 spans/s, flushes at the same priority took
/// the cores from the answering threads (p50 39 to 338 ms against 9 ms: BENCHMARKS.md,
/// "Levers"); the acknowledged spans are durable in the log meanwhile, a spare core runs the
/// flush as fast as before, and the backlog's limit bounds how far it may fall behind.
const FLUSH_NICE: i32 = 10;

/// Writes closed segments into the lake, in order; a failed flush is retried.
fn flush_thread(
    lake: Lake,
    rx: mpsc::Receiver<(PathBuf, u64)>,
    metrics: Arc<Metrics>,
    opts: WriterOptions,
) {
    agentmeter_aggregate::priority::lower_this_thread(FLUSH_NICE);
    let mut backlog: Vec<PathBuf> = Vec::new();
    // The bytes of the segments in `backlog`, off the metrics' backlog once written.
    let mut pending = 0;
    let mut failures = 0;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok((p, bytes)) => {
                backlog.push(p);
                pending += bytes;
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if backlog.is_empty() => return,
            // Shutting down and the lake keeps failing: leave the segments for the next start.
            Err(mpsc::RecvTimeoutError::Disconnected) if failures >= 3 => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        while let Ok((p, bytes)) = rx.try_recv() {
            backlog.push(p);
            pending += bytes;
        }
        // A segment the log closed without a record (an empty rotation) is skipped.
        backlog.retain(|p| p.exists());
        if !backlog.is_empty() {
            match flush_segments(&lake, &backlog, opts) {
                Ok(s) => {
                    metrics.spans_written.fetch_add(s.spans_written, Ordering::Relaxed);
                    metrics.spans_duplicate.fetch_add(s.span_duplicates, Ordering::Relaxed);
                    metrics.spans_quarantined.fetch_add(s.quarantined, Ordering::Relaxed);
                    tracing::info!(
                        segments = s.segments,
                        written = s.spans_written,
                        duplicates = s.span_duplicates,
                        quarantined = s.quarantined,
                        "Spans flushed to the lake."
                    );
                    backlog.clear();
                    failures = 0;
                }
                Err(e) => {
                    failures += 1;
                    tracing::error!(error = %e, "Flushing spans to the lake failed; retrying.");
                    std::thread::sleep(Duration::from_secs(1));
                    continue;
                }
            }
        }
        // Every segment received is written (or was never there): none waits now.
        metrics.log_backlog_bytes.fetch_sub(std::mem::take(&mut pending), Ordering::Relaxed);
    }
}

/// The receiver's settings.
#[derive(Debug, Clone)]
pub struct ReceiverOptions {
    /// The address to listen on (loopback by default; port 0 picks one).
    pub listen: SocketAddr,
    /// The bearer token clients must send, if any.
    pub auth_token: Option<String>,
    /// Largest body after decompression.
    pub max_body_bytes: usize,
    /// Requests decoded or waiting on the log at once; more get 503.
    pub max_in_flight: usize,
    /// How often acknowledged spans move from the log into the lake.
    pub flush_interval: Duration,
    /// Bytes of closed log segments waiting to be flushed beyond which requests are answered
    /// 503 (the lake is behind: slow, unreachable, or the flushes starved of CPU).
    pub max_log_backlog_bytes: u64,
    /// Decoder settings.
    pub decode: DecodeConfig,
    /// The write-ahead log's directory, on local disk.
    pub wal_dir: PathBuf,
    /// Writer settings.
    pub writer: WriterOptions,
    /// Routes served beside the receiver's (the usage API; empty when it is off).
    pub routes: axum::Router,
}

/// The default log directory of a receiver on `lake`: `LAKE/_wal/otlp` for a local lake;
/// under `$XDG_STATE_HOME/agentmeter/wal/` (`~/.local/state/...`) for an S3 lake.
pub fn default_wal_dir(loc: &crate::env::LakeLocation) -> PathBuf {
    match loc {
        crate::env::LakeLocation::Dir(p) => p.join("_wal").join("otlp"),
        crate::env::LakeLocation::S3 { bucket, prefix } => {
            let state =
                // An empty XDG variable counts as unset (the XDG Base Directory spec).
                std::env::var_os("XDG_STATE_HOME")
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
                    .unwrap_or_else(|| {
                    std::env::var_os("HOME")
                        .map(|h| PathBuf::from(h).join(".local/state"))
                        .unwrap_or_else(std::env::temp_dir)
                });
            let id = agentmeter_schemas::content_digest_hex(
                format!("s3://{bucket}/{prefix}").as_bytes(),
            );
            state.join("agentmeter/wal").join(format!("{bucket}-{}", &id[..16]))
        }
    }
}

/// The receiver's hold on its log directory: one receiver per log.
pub struct WalLock {
    _file: File,
}

/// Takes the log directory `dir` for this receiver.
///
/// # Errors
///
/// [`Error::Usage`] when another receiver holds it.
pub fn lock_wal(dir: &Path) -> Result<WalLock> {
    let io =
        |e| Error::Io { what: format!("opening the write-ahead log {}", dir.display()), source: e };
    std::fs::create_dir_all(dir).map_err(io)?;
    let path = dir.join("lock");
    let file =
        OpenOptions::new().create(true).truncate(false).write(true).open(&path).map_err(io)?;
    match file.try_lock() {
        Ok(()) => Ok(WalLock { _file: file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::Usage(format!(
            "the write-ahead log {} is in use by another receiver; give each receiver its own --wal-dir",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(e)) => Err(io(e)),
    }
}

/// Flushes what a crashed receiver left in the log `dir` (acknowledged, so it goes to the lake
/// before anything else).
///
/// # Errors
///
/// The log cannot be read or the lake cannot be written.
pub fn recover(lake: &Lake, dir: &Path, opts: WriterOptions) -> Result<FlushStats> {
    let leftovers = segments(dir).map_err(|source| Error::Lake {
        what: format!("listing the write-ahead log {}", dir.display()),
        source,
    })?;
    let s = flush_segments(lake, &leftovers, opts)?;
    if s.segments > 0 {
        tracing::info!(
            segments = s.segments,
            written = s.spans_written,
            "Recovered acknowledged spans from the write-ahead log."
        );
    }
    Ok(s)
}

/// Binds the receiver's address: before anything is created, so a busy port changes nothing.
///
/// # Errors
///
/// [`Error::Usage`] when the address cannot be bound.
pub fn bind(rt: &tokio::runtime::Runtime, addr: SocketAddr) -> Result<tokio::net::TcpListener> {
    let listener = rt
        .block_on(tokio::net::TcpListener::bind(addr))
        .map_err(|e| Error::Usage(format!("cannot listen on {addr}: {e}")))?;
    // Tokio listeners belong to the runtime that made them; it stays alive until served.
    Ok(listener)
}

/// Runs the OTLP/HTTP receiver (with `/metrics` and `/health`) on `listener` into `lake` until
/// `shutdown` is cancelled, then flushes everything it acknowledged. Prints `listening on
/// http://ADDR` once it listens. The log in `opts.wal_dir` must be locked ([`lock_wal`]) and
/// recovered ([`recover`]) first.
///
/// # Errors
///
/// The server fails, or segments could not be flushed at the end (they stay for the next
/// start).
pub fn run_receiver(
    rt: &tokio::runtime::Runtime,
    listener: tokio::net::TcpListener,
    lake: &Lake,
    opts: ReceiverOptions,
    metrics: &Arc<Metrics>,
    shutdown: CancellationToken,
) -> Result<()> {
    let wal = Wal::open(&opts.wal_dir).map_err(|source| Error::Lake {
        what: format!("opening the write-ahead log {}", opts.wal_dir.display()),
        source,
    })?;
    metrics.log_backlog_limit.store(opts.max_log_backlog_bytes, Ordering::Relaxed);
    let (tx, rx) = mpsc::sync_channel::<Msg>(4 * opts.max_in_flight.max(1));
    let (flush_tx, flush_rx) = mpsc::channel::<(PathBuf, u64)>();
    let interval = opts.flush_interval.max(Duration::from_millis(10));
    let logger = {
        let metrics = Arc::clone(metrics);
        std::thread::spawn(move || log_thread(wal, rx, flush_tx, interval, metrics))
    };
    let flusher = {
        let (lake, metrics, writer) = (lake.clone(), Arc::clone(metrics), opts.writer);
        std::thread::spawn(move || flush_thread(lake, flush_rx, metrics, writer))
    };
    let served = rt.block_on(async {
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Io { what: "reading the listening address".into(), source: e })?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "Listening beyond loopback: put TLS and a bearer token in front.");
        }
        let cfg = ServerConfig {
            auth_token: opts.auth_token,
            max_body_bytes: opts.max_body_bytes,
            max_in_flight: opts.max_in_flight,
            decode: opts.decode,
            source: SourceUri::new(format!("otlp-http://{addr}")),
        };
        // Tests and supervisors read the address from this line.
        println!("listening on http://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        let stop = async move { shutdown.cancelled().await };
        let sink = Arc::new(WalSink { tx: tx.clone() });
        serve(listener, cfg, sink, Arc::clone(metrics), opts.routes, stop)
            .await
            .map_err(|e| Error::Io { what: "serving OTLP/HTTP".into(), source: e })
    });
    // The handlers are done: close the log, flush it all, then return.
    let _ = tx.send(Msg::Shutdown);
    drop(tx);
    let _ = logger.join();
    let _ = flusher.join();
    served?;
    let left = segments(&opts.wal_dir)
        .map_err(|source| Error::Lake { what: "listing the write-ahead log".into(), source })?;
    if !left.is_empty() {
        return Err(Error::Source {
            what: format!("{} write-ahead log segments could not be flushed", left.len()),
            detail: "they will be on the next start".into(),
        });
    }
    Ok(())
}

/// The bearer token: from `file` (named `what` in errors), else `AGENTMETER_OTLP_TOKEN`.
///
/// # Errors
///
/// [`Error::Usage`] when the file cannot be read or is empty.
pub fn token(file: Option<&Path>, what: &str) -> Result<Option<String>> {
    if let Some(p) = file {
        let t = std::fs::read_to_string(p)
            .map_err(|e| Error::Usage(format!("{what} {}: {e}", p.display())))?;
        let t = t.trim_end_matches(['\n', '\r']).to_owned();
        if t.is_empty() {
            return Err(Error::Usage(format!("{what} {} is empty", p.display())));
        }
        return Ok(Some(t));
    }
    Ok(std::env::var("AGENTMETER_OTLP_TOKEN").ok().filter(|t| !t.is_empty()))
}

#[cfg(test)]
mod tests;
