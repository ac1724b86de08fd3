//! `agentmeter serve`: the OTLP/HTTP receiver, its write-ahead log, and the lake writer.
//!
//! Three parts: the HTTP handlers (agentmeter-ingest) decode a request and hand its outcomes
//! to the log thread, which appends them with the outcomes of every other waiting request,
//! syncs once, and acknowledges them all (group commit); every flush interval it closes the
//! segment and passes it to the flusher thread, which writes it into the lake (dedup, Parquet,
//! rollups, quarantine) and removes it. On SIGTERM or SIGINT the server stops accepting,
//! finishes the requests in flight, closes the last segment, flushes everything acknowledged,
//! and exits 0. Segments left by a crash are flushed before the server accepts anything.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use agentmeter_aggregate::wal::{Wal, WalRecord, flush_segments, recover_otlp, segments};
use agentmeter_aggregate::{Lake, WriterOptions};
use agentmeter_ingest::otlp_http::{DurableSink, Metrics, ServerConfig, serve};
use agentmeter_ingest::{DecodeConfig, Outcome};
use agentmeter_schemas::SourceUri;
use anyhow::Context;
use tokio::sync::oneshot;

use crate::UsageError;
use crate::cli::ServeArgs;

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
    flush: mpsc::Sender<PathBuf>,
    interval: Duration,
    metrics: Arc<Metrics>,
) {
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
                    if let Some(closed) = wal.rotate() {
                        let _ = flush.send(closed);
                    }
                }
            }
            for (_, ack) in batch {
                let _ = ack.send(result.clone());
            }
        }
        if stop || last.elapsed() >= interval {
            if let Some(closed) = wal.rotate() {
                let _ = flush.send(closed);
            }
            last = Instant::now();
        }
    }
}

/// Writes closed segments into the lake, in order; a failed flush is retried.
fn flush_thread(
    lake: Arc<Lake>,
    rx: mpsc::Receiver<PathBuf>,
    metrics: Arc<Metrics>,
    opts: WriterOptions,
) {
    let mut backlog: Vec<PathBuf> = Vec::new();
    let mut failures = 0;
    loop {
        match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(p) => backlog.push(p),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) if backlog.is_empty() => return,
            // Shutting down and the lake keeps failing: leave the segments for the next start.
            Err(mpsc::RecvTimeoutError::Disconnected) if failures >= 3 => return,
            Err(mpsc::RecvTimeoutError::Disconnected) => {}
        }
        while let Ok(p) = rx.try_recv() {
            backlog.push(p);
        }
        if backlog.is_empty() {
            continue;
        }
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
            }
        }
    }
}

/// The bearer token: from `file` (named `what` in errors), else `AGENTMETER_OTLP_TOKEN`.
pub(crate) fn token(file: Option<&std::path::Path>, what: &str) -> anyhow::Result<Option<String>> {
    if let Some(p) = file {
        let t = std::fs::read_to_string(p)
            .map_err(|e| UsageError(format!("{what} {}: {e}", p.display())))?;
        let t = t.trim_end_matches(['\n', '\r']).to_owned();
        if t.is_empty() {
            anyhow::bail!(UsageError(format!("{what} {} is empty", p.display())));
        }
        return Ok(Some(t));
    }
    Ok(std::env::var("AGENTMETER_OTLP_TOKEN").ok().filter(|t| !t.is_empty()))
}

pub(crate) async fn shutdown_signal() {
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

/// What the receiver needs besides the lake.
pub(crate) struct Receiver {
    pub listen: std::net::SocketAddr,
    pub auth_token: Option<String>,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub flush_interval: Duration,
    pub decode: DecodeConfig,
}

/// Runs the OTLP/HTTP receiver (with `/metrics` and `/health`) on `lake` until `shutdown`
/// resolves, then flushes everything it acknowledged. Prints `listening on http://ADDR` once
/// it listens.
pub(crate) fn run_receiver(
    lake: &Arc<Lake>,
    r: Receiver,
    metrics: &Arc<Metrics>,
    rt: &tokio::runtime::Runtime,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let opts = WriterOptions::default();
    let wal_dir = lake.layout().otlp_wal_dir();
    let wal = Wal::open(&wal_dir)?;
    let (tx, rx) = mpsc::sync_channel::<Msg>(4 * r.max_in_flight.max(1));
    let (flush_tx, flush_rx) = mpsc::channel::<PathBuf>();
    let interval = r.flush_interval.max(Duration::from_millis(10));
    let logger = {
        let metrics = Arc::clone(metrics);
        std::thread::spawn(move || log_thread(wal, rx, flush_tx, interval, metrics))
    };
    let flusher = {
        let lake = Arc::clone(lake);
        let metrics = Arc::clone(metrics);
        std::thread::spawn(move || flush_thread(lake, flush_rx, metrics, opts))
    };
    let served = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(r.listen)
            .await
            .map_err(|e| UsageError(format!("cannot listen on {}: {e}", r.listen)))?;
        let addr = listener.local_addr()?;
        if !addr.ip().is_loopback() {
            tracing::warn!(%addr, "Listening beyond loopback: put TLS and a bearer token in front.");
        }
        let cfg = ServerConfig {
            auth_token: r.auth_token,
            max_body_bytes: r.max_body_bytes,
            max_in_flight: r.max_in_flight,
            decode: r.decode,
            source: SourceUri::new(format!("otlp-http://{addr}")),
        };
        // Tests and supervisors read the address from this line.
        println!("listening on http://{addr}");
        use std::io::Write as _;
        let _ = std::io::stdout().flush();
        serve(listener, cfg, Arc::new(WalSink { tx: tx.clone() }), Arc::clone(metrics), shutdown)
            .await
            .context("serving OTLP/HTTP")?;
        anyhow::Ok(())
    });
    // The handlers are done: close the log, flush it all, then release the lake.
    let _ = tx.send(Msg::Shutdown);
    drop(tx);
    let _ = logger.join();
    let _ = flusher.join();
    served?;
    let left = segments(&wal_dir)?;
    if !left.is_empty() {
        anyhow::bail!(
            "{} write-ahead log segments could not be flushed; they will be on the next start",
            left.len()
        );
    }
    Ok(())
}

/// Opens the lake for writing; a lock held elsewhere or a non-lake directory is the user's to
/// fix (exit 2).
pub(crate) fn open_lake(path: &std::path::Path) -> anyhow::Result<Lake> {
    Lake::open(path).map_err(|e| match e {
        agentmeter_aggregate::Error::Locked { .. }
        | agentmeter_aggregate::Error::NotALake { .. } => {
            anyhow::Error::new(UsageError(e.to_string()))
        }
        other => anyhow::Error::new(other).context("opening the lake"),
    })
}

/// Opens the lake, flushes what a crashed receiver left in its log (it was acknowledged, so it
/// goes to the lake first), and starts the async runtime.
pub(crate) fn start(
    path: &std::path::Path,
) -> anyhow::Result<(Arc<Lake>, tokio::runtime::Runtime)> {
    let lake = Arc::new(open_lake(path)?);
    let s = recover_otlp(&lake, WriterOptions::default())
        .context("flushing the write-ahead log left by an earlier run")?;
    if s.segments > 0 {
        tracing::info!(
            segments = s.segments,
            written = s.spans_written,
            "Recovered acknowledged spans from the write-ahead log."
        );
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok((lake, rt))
}

pub fn run(a: &ServeArgs) -> anyhow::Result<()> {
    let decode = DecodeConfig::new(&a.tenant_field, 4 << 20, a.max_body_bytes.max(1))
        .and_then(|c| c.with_max_tokens_per_call(a.max_tokens_per_call))
        .map_err(|e| UsageError(format!("--{e}")))?;
    let auth_token = token(a.auth_token_file.as_deref(), "--auth-token-file")?;
    let (lake, rt) = start(&a.lake)?;
    let metrics = Arc::new(Metrics::default());
    let receiver = Receiver {
        listen: a.otlp_http,
        auth_token,
        max_body_bytes: a.max_body_bytes,
        max_in_flight: a.max_in_flight,
        flush_interval: Duration::from_millis(a.flush_interval_ms),
        decode,
    };
    run_receiver(&lake, receiver, &metrics, &rt, shutdown_signal())?;
    println!(
        "stopped: {} spans received, {} written, {} duplicates, {} quarantined",
        metrics.spans_received.load(Ordering::Relaxed),
        metrics.spans_written.load(Ordering::Relaxed),
        metrics.spans_duplicate.load(Ordering::Relaxed),
        metrics.spans_quarantined.load(Ordering::Relaxed)
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use agentmeter_schemas::{Position, QuarantineEntry, RawFormat, Reason};

    use super::*;

    fn reject(n: u64) -> WalRecord {
        WalRecord::Reject(Box::new(QuarantineEntry::new(
            Reason::MissingField,
            "tier is missing",
            SourceUri::new("otlp-http://127.0.0.1:4318"),
            Position { event: Some(n), ..Default::default() },
            RawFormat::OtlpJson,
            b"{}",
            100,
        )))
    }

    fn append(tx: &mpsc::SyncSender<Msg>, n: u64) -> Result<(), String> {
        let (ack, done) = oneshot::channel();
        tx.send(Msg::Append(vec![reject(n)], ack)).unwrap();
        done.blocking_recv().unwrap()
    }

    #[test]
    fn an_unwritable_log_refuses_requests_says_so_at_health_and_recovers() {
        let dir = tempfile::tempdir().unwrap();
        let wal_dir = dir.path().join("wal");
        let wal = Wal::open(&wal_dir).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::sync_channel(8);
        let (flush_tx, flush_rx) = mpsc::channel();
        let m = Arc::clone(&metrics);
        let logger = std::thread::spawn(move || {
            log_thread(wal, rx, flush_tx, Duration::from_millis(100), m);
        });
        append(&tx, 1).unwrap();
        assert_eq!(metrics.unavailable(), None);
        // The log's directory goes away: once the segment is closed (every 100 ms), the next
        // append cannot create one.
        std::fs::remove_dir_all(&wal_dir).unwrap();
        let closed = flush_rx.recv_timeout(Duration::from_secs(10)).expect("segment closed");
        assert_eq!(agentmeter_aggregate::wal::read_segment(&closed).ok(), None, "it is gone");
        assert!(append(&tx, 2).is_err());
        let why = metrics.unavailable().expect("health reports the failure");
        assert!(why.starts_with("the write-ahead log cannot be written: "), "{why}");
        // Back: the probe clears the health within about a second, and requests are taken.
        std::fs::create_dir_all(&wal_dir).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        while metrics.unavailable().is_some() && Instant::now() < deadline {
            let (ack, _done) = oneshot::channel();
            // Wake the loop without waiting for an answer.
            let _ = tx.try_send(Msg::Append(Vec::new(), ack));
            std::thread::sleep(Duration::from_millis(100));
        }
        assert_eq!(metrics.unavailable(), None);
        append(&tx, 4).unwrap();
        tx.send(Msg::Shutdown).unwrap();
        logger.join().unwrap();
        let last = flush_rx.try_iter().last().expect("the last segment is closed on shutdown");
        assert_eq!(agentmeter_aggregate::wal::read_segment(&last).unwrap(), vec![reject(4)]);
    }
}
