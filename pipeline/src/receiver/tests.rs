//! The log thread: refusal, health and recovery when its disk fails.

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
