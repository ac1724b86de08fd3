//! The log thread: refusal, health and recovery when its disk fails; the flush backlog's
//! bound.

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

/// A log thread on `dir` closing its segment every 100 ms, and the ends of its channels.
struct Logger {
    tx: mpsc::SyncSender<Msg>,
    flush_rx: mpsc::Receiver<(PathBuf, u64)>,
    metrics: Arc<Metrics>,
    logger: std::thread::JoinHandle<()>,
}

impl Logger {
    fn start(dir: &Path) -> Self {
        let wal = Wal::open(dir).unwrap();
        let metrics = Arc::new(Metrics::default());
        let (tx, rx) = mpsc::sync_channel(8);
        let (flush_tx, flush_rx) = mpsc::channel();
        let m = Arc::clone(&metrics);
        let logger = std::thread::spawn(move || {
            log_thread(wal, rx, flush_tx, Duration::from_millis(100), m);
        });
        Self { tx, flush_rx, metrics, logger }
    }
}

#[test]
fn an_unwritable_log_refuses_requests_says_so_at_health_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let Logger { tx, flush_rx, metrics, logger } = Logger::start(&wal_dir);
    append(&tx, 1).unwrap();
    assert_eq!(metrics.unavailable(), None);
    // The log's directory goes away: once the segment is closed (every 100 ms), the next
    // append cannot create one.
    std::fs::remove_dir_all(&wal_dir).unwrap();
    let (closed, _) = flush_rx.recv_timeout(Duration::from_secs(10)).expect("segment closed");
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
    let (last, _) = flush_rx.try_iter().last().expect("the last segment is closed on shutdown");
    assert_eq!(agentmeter_aggregate::wal::read_segment(&last).unwrap(), vec![reject(4)]);
}

#[test]
fn closed_segments_count_in_the_backlog_until_flushed_and_past_its_limit_the_lake_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    let wal_dir = dir.path().join("wal");
    let lake = Lake::open_dir(dir.path().join("lake")).unwrap();
    let Logger { tx, flush_rx, metrics, logger } = Logger::start(&wal_dir);
    append(&tx, 1).unwrap();
    append(&tx, 2).unwrap();
    let (closed, bytes) = flush_rx.recv_timeout(Duration::from_secs(10)).expect("closed");
    assert_eq!(bytes, std::fs::metadata(&closed).unwrap().len());
    assert!(bytes > 0);
    assert_eq!(metrics.log_backlog_bytes.load(Ordering::Relaxed), bytes);
    assert!(metrics.render().contains(&format!("\nagentmeter_otlp_log_backlog_bytes {bytes}\n")));

    // One byte over the limit: the lake is behind (the handlers refuse requests).
    metrics.log_backlog_limit.store(bytes - 1, Ordering::Relaxed);
    let why = metrics.behind().expect("behind");
    assert!(why.starts_with("the lake is behind: 0 MiB of acknowledged spans "), "{why}");
    // At the limit: not.
    metrics.log_backlog_limit.store(bytes, Ordering::Relaxed);
    assert_eq!(metrics.behind(), None);
    append(&tx, 3).unwrap();
    tx.send(Msg::Shutdown).unwrap();
    logger.join().unwrap();
    let rest: Vec<(PathBuf, u64)> = flush_rx.try_iter().collect();
    let logged: Vec<WalRecord> = std::iter::once(&closed)
        .chain(rest.iter().map(|(p, _)| p))
        .flat_map(|p| read_segment(p).unwrap())
        .collect();
    assert_eq!(logged, vec![reject(1), reject(2), reject(3)]);
    let all: u64 = bytes + rest.iter().map(|(_, b)| b).sum::<u64>();
    assert_eq!(metrics.log_backlog_bytes.load(Ordering::Relaxed), all);

    // The flusher writes them into the lake and takes them off the backlog.
    let (to_flusher, from_log) = mpsc::channel();
    to_flusher.send((closed.clone(), bytes)).unwrap();
    for r in rest {
        to_flusher.send(r).unwrap();
    }
    drop(to_flusher);
    flush_thread(lake, from_log, Arc::clone(&metrics), WriterOptions::default());
    assert_eq!(metrics.log_backlog_bytes.load(Ordering::Relaxed), 0);
    assert_eq!(metrics.spans_quarantined.load(Ordering::Relaxed), 3);
    assert!(!closed.exists());
    // Drained: behind no more, whatever the limit.
    metrics.log_backlog_limit.store(1, Ordering::Relaxed);
    assert_eq!(metrics.behind(), None);
}
