//! `agentmeter serve` under load: a fixed number of requests at a fixed concurrency loses and
//! duplicates nothing, a saturated receiver answers 503 with `Retry-After`, and a SIGTERM in
//! the middle of the load loses nothing it acknowledged.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Barrier;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::time::Duration;

use crate::otlp_client::*;
use crate::util::*;

/// Client threads.
const THREADS: u32 = 8;
/// Attempts per request when the server answers 503.
const ATTEMPTS: u32 = 200;
/// Pause before a retry after a 503 (shorter than its `Retry-After`, to keep the test short).
const PAUSE: Duration = Duration::from_millis(20);

/// What the client threads share.
#[derive(Default)]
struct Load {
    /// The next request number to send.
    next: AtomicU32,
    /// Requests answered 200.
    acked: Mutex<Vec<u32>>,
    /// `acked.len()`, readable without the lock.
    acked_count: AtomicUsize,
    /// 503 answers seen.
    busy: AtomicUsize,
    /// Requests given up after SIGTERM: the error or status of each.
    given_up: Mutex<Vec<String>>,
    /// Requests answered 200 after SIGTERM was sent (they were in flight).
    acked_after_sigterm: AtomicUsize,
}

/// Asserts a 503 carries `Retry-After` (whole seconds) and a `google.rpc.Status` UNAVAILABLE.
fn assert_busy(r: &Response) {
    let after = r.header("retry-after").unwrap_or_else(|| panic!("503 without Retry-After: {r:?}"));
    assert!(after.parse::<u32>().is_ok_and(|s| s >= 1), "Retry-After: {after}");
    assert_eq!(r.json()["code"], 14, "{}", r.text());
}

/// One client thread: sends requests `next..requests` of run `run`, each until it is answered
/// 200 (a 503 is retried after [`PAUSE`], at most [`ATTEMPTS`] times). Once `stopping` is set
/// (SIGTERM sent), a connection error or a 503 ends the thread; before, either fails the test.
fn client(port: u16, run: u32, requests: u32, load: &Load, stopping: &AtomicBool) {
    let headers = [("Content-Type", "application/json")];
    loop {
        let n = load.next.fetch_add(1, Ordering::SeqCst);
        if n >= requests {
            return;
        }
        let (body, _) = load_request(run, n);
        let mut attempt = 0;
        loop {
            attempt += 1;
            assert!(attempt <= ATTEMPTS, "request {n}: still refused after {ATTEMPTS} attempts");
            match request(port, "POST", "/v1/traces", &headers, &body) {
                Ok(r) if r.status == 200 => {
                    assert_eq!(r.text(), "{}");
                    load.acked.lock().unwrap().push(n);
                    load.acked_count.fetch_add(1, Ordering::SeqCst);
                    if stopping.load(Ordering::SeqCst) {
                        load.acked_after_sigterm.fetch_add(1, Ordering::SeqCst);
                    }
                    break;
                }
                Ok(r) if r.status == 503 => {
                    assert_busy(&r);
                    load.busy.fetch_add(1, Ordering::SeqCst);
                    if stopping.load(Ordering::SeqCst) {
                        load.given_up.lock().unwrap().push("503".to_owned());
                        return;
                    }
                    std::thread::sleep(PAUSE);
                }
                Ok(r) => panic!("request {n}: unexpected status {}: {}", r.status, r.text()),
                Err(e) => {
                    assert!(stopping.load(Ordering::SeqCst), "request {n} before SIGTERM: {e}");
                    load.given_up.lock().unwrap().push(format!("{:?}", e.kind()));
                    return;
                }
            }
        }
    }
}

/// The span keys of requests `ns` of run `run`, sorted.
fn keys_of(run: u32, ns: impl IntoIterator<Item = u32>) -> Vec<String> {
    let mut keys: Vec<String> = ns.into_iter().flat_map(|n| load_request(run, n).1).collect();
    keys.sort();
    keys
}

/// The agent columns of `usage_hourly` summed, and the rows of `agent_invocations`.
fn agent_totals(lake: &Path) -> [i64; 4] {
    let h = duckdb(&format!(
        "SELECT sum(agent_invocations) AS ai, sum(tool_calls) AS tc, sum(tool_errors) AS te \
         FROM {}",
        table(lake, "usage_hourly")
    ));
    let n = |k: &str| h[0][k].as_i64().unwrap();
    let inv = duckdb_int(&format!("SELECT count(*) FROM {}", table(lake, "agent_invocations")));
    [n("ai"), n("tc"), n("te"), inv]
}

#[test]
fn bounded_load_loses_and_duplicates_nothing() {
    const REQUESTS: u32 = 200;
    const RUN: u32 = 0x10ad_0001;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    // Fewer permits than client threads: some requests may be answered 503 and retried.
    let server = Server::start(&lake, &["--flush-interval-ms", "100", "--max-in-flight", "4"]);
    let load = Load::default();
    let stopping = AtomicBool::new(false);
    let port = server.port();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| client(port, RUN, REQUESTS, &load, &stopping));
        }
    });
    let mut acked = load.acked.into_inner().unwrap();
    acked.sort_unstable();
    assert_eq!(acked, (0..REQUESTS).collect::<Vec<_>>(), "every request acknowledged once");
    eprintln!("load: {REQUESTS} requests, {} answers 503", load.busy.load(Ordering::SeqCst));

    let stopped = server.stop();
    let spans = u64::from(REQUESTS) * 5;
    assert_eq!(stopped.counts(), [spans, spans, 0, 0], "{}", stopped.stdout);
    assert_eq!(lake_span_counts(&lake), (spans as i64, spans as i64));
    assert_eq!(lake_span_keys(&lake), keys_of(RUN, 0..REQUESTS));
    let r = i64::from(REQUESTS);
    assert_eq!(agent_totals(&lake), [r, 2 * r, r, r]);
    assert!(wal_files(&lake).is_empty(), "{:?}", wal_files(&lake));
}

/// A request of `spans` tool spans (about 400 bytes each) for run `run`, request `n`.
fn heavy_request(run: u32, n: u32, spans: u32) -> (Vec<u8>, Vec<String>) {
    let trace = format!("{run:08x}{:024x}", u64::from(n) + 1);
    let t = 1_790_985_600_000_000_000u64 + u64::from(n) * 1_000_000_000;
    let mut list = Vec::new();
    let mut keys = Vec::new();
    for k in 0..spans {
        let id = format!("{:016x}", u64::from(k) + 1);
        let attrs = vec![
            kv_str("tier", "basic"),
            kv_str("clinic_id", "clinic-busy"),
            kv_str("actor_id", "basic-clinic-busy-u1"),
            kv_str("gen_ai.operation.name", "execute_tool"),
            kv_str("gen_ai.tool.name", "lookup"),
        ];
        list.push(span(
            &trace,
            &id,
            None,
            "execute_tool lookup",
            t + u64::from(k),
            5,
            false,
            attrs,
        ));
        keys.push(format!("{trace}:{id}"));
    }
    let body = export_request(vec![kv_str("service.name", "busy")], list);
    (serde_json::to_vec(&body).unwrap(), keys)
}

#[test]
fn a_saturated_receiver_answers_503_with_retry_after() {
    const RUN: u32 = 0x5a7_0001;
    const ROUNDS: u32 = 10;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "100", "--max-in-flight", "1"]);
    let mut acked: Vec<String> = Vec::new();
    let mut busy = 0;
    // Rounds of THREADS large requests released together; one permit, so while one is decoded
    // and logged the others are refused. Bounded: at most ROUNDS rounds.
    for round in 0..ROUNDS {
        let barrier = Barrier::new(THREADS as usize);
        let answers: Vec<(Vec<String>, Response)> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..THREADS)
                .map(|t| {
                    let barrier = &barrier;
                    let port = server.port();
                    s.spawn(move || {
                        let (body, keys) = heavy_request(RUN, round * THREADS + t, 2000);
                        barrier.wait();
                        let headers = [("Content-Type", "application/json")];
                        (keys, request(port, "POST", "/v1/traces", &headers, &body).unwrap())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (keys, r) in answers {
            match r.status {
                200 => acked.extend(keys),
                503 => {
                    assert_busy(&r);
                    busy += 1;
                }
                other => panic!("status {other}: {}", r.text()),
            }
        }
        if busy > 0 {
            eprintln!("saturation: {busy} answers 503 in round {round}");
            break;
        }
    }
    assert!(busy > 0, "no 503 in {ROUNDS} rounds of {THREADS} concurrent requests");
    let m = server.metrics();
    assert_eq!(metric(&m, "agentmeter_otlp_requests_total{outcome=\"unavailable\"}"), busy);
    // Refused requests left nothing behind; accepted ones are in the lake once.
    let stopped = server.stop();
    let n = acked.len() as u64;
    assert_eq!(stopped.counts(), [n, n, 0, 0], "{}", stopped.stdout);
    acked.sort();
    assert_eq!(lake_span_keys(&lake), acked);
}

#[test]
fn sigterm_in_the_middle_of_the_load_keeps_every_acknowledged_span_once() {
    const REQUESTS: u32 = 2000;
    const RUN: u32 = 0x516e_0001;
    const ACKED_BEFORE_SIGTERM: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let lake = dir.path().join("lake");
    let server = Server::start(&lake, &["--flush-interval-ms", "100"]);
    let load = Load::default();
    let stopping = AtomicBool::new(false);
    let port = server.port();
    std::thread::scope(|s| {
        for _ in 0..THREADS {
            s.spawn(|| client(port, RUN, REQUESTS, &load, &stopping));
        }
        eventually("requests acknowledged before SIGTERM", || {
            load.acked_count.load(Ordering::SeqCst) >= ACKED_BEFORE_SIGTERM
        });
        // Set first: from now on the clients expect errors.
        stopping.store(true, Ordering::SeqCst);
        server.sigterm();
    });
    let stopped = server.wait();
    assert_eq!(
        stopped.status.code(),
        Some(0),
        "exit after SIGTERM: {}\nstdout:\n{}\nstderr:\n{}",
        stopped.status,
        stopped.stdout,
        stopped.stderr
    );
    let acked = load.acked.into_inner().unwrap();
    let sent = load.next.load(Ordering::SeqCst).min(REQUESTS);
    eprintln!(
        "sigterm: {} of {sent} requests acknowledged ({} after SIGTERM), {} answers 503, \
         given up: {:?}",
        acked.len(),
        load.acked_after_sigterm.load(Ordering::SeqCst),
        load.busy.load(Ordering::SeqCst),
        load.given_up.lock().unwrap()
    );
    assert!(acked.len() >= ACKED_BEFORE_SIGTERM);

    let [received, written, duplicates, quarantined] = stopped.counts();
    assert_eq!((duplicates, quarantined), (0, 0), "{}", stopped.stdout);
    assert_eq!(written, received, "everything accepted was written: {}", stopped.stdout);
    let keys = lake_span_keys(&lake);
    assert_eq!(lake_span_counts(&lake), (keys.len() as i64, keys.len() as i64), "no duplicates");
    assert_eq!(keys.len() as u64, written);
    let in_lake: BTreeSet<&str> = keys.iter().map(String::as_str).collect();
    for k in keys_of(RUN, acked.iter().copied()) {
        assert!(in_lake.contains(k.as_str()), "acknowledged span {k} is not in the lake");
    }
    let could_be: BTreeSet<String> = keys_of(RUN, 0..sent).into_iter().collect();
    assert!(in_lake.iter().all(|k| could_be.contains(*k)), "only spans that were sent");
    // A request is logged whole: each trace in the lake has its 5 spans.
    let mut per_trace: BTreeMap<&str, usize> = BTreeMap::new();
    for k in &keys {
        *per_trace.entry(k.split(':').next().unwrap()).or_default() += 1;
    }
    assert!(per_trace.values().all(|&n| n == 5), "partial requests: {per_trace:?}");
    let traces = per_trace.len() as i64;
    eprintln!("sigterm: {} requests in the lake without a 200", per_trace.len() - acked.len());
    assert_eq!(agent_totals(&lake), [traces, 2 * traces, traces, traces]);

    // Nothing is left to recover, and a restart on the same lake changes nothing.
    assert!(wal_files(&lake).is_empty(), "{:?}", wal_files(&lake));
    let again = Server::start(&lake, &["--flush-interval-ms", "100"]);
    assert!(wal_files(&lake).is_empty(), "{:?}", wal_files(&lake));
    let r = again.get("/health");
    assert_eq!(r.status, 200);
    assert_eq!(metric(&again.metrics(), "agentmeter_otlp_spans_received_total"), 0);
    assert_eq!(again.stop().counts(), [0, 0, 0, 0]);
    assert_eq!(lake_span_keys(&lake), keys);
}
