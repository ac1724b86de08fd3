//! The webhook sink against a real HTTP server on 127.0.0.1 in the test, which checks the
//! signature itself.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use super::tests::{SECRET, alert, alerts, assert_no_secret, capture_logs, fast_options};
use super::*;
use crate::flags::{Alert, Transition};

/// The longest a test server lives, and the bound on any one test's delivery.
pub(super) const LIMIT: Duration = Duration::from_secs(30);

/// One request as the server read it.
#[derive(Debug, Clone)]
pub(super) struct Received {
    pub method: String,
    pub path: String,
    /// Header names lowercased.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Received {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.as_str())
    }
}

/// How the server answers the `n`th request (0-based).
#[derive(Debug, Clone)]
pub(super) enum Reply {
    Status(u16, Vec<(&'static str, &'static str)>),
    /// Read the request, then answer nothing until the test ends.
    Hang,
}

pub(super) fn status(code: u16) -> Reply {
    Reply::Status(code, Vec::new())
}

/// An HTTP/1.1 server on 127.0.0.1:0: one thread accepting (non-blocking, so it can stop),
/// one per connection; every request is recorded before it is answered.
pub(super) struct TestServer {
    pub address: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
}

impl TestServer {
    pub fn start(reply: impl Fn(usize) -> Reply + Send + Sync + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let address = listener.local_addr().unwrap();
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (thread_received, thread_stop) = (Arc::clone(&received), Arc::clone(&stop));
        let reply = Arc::new(reply);
        let count = Arc::new(AtomicUsize::new(0));
        std::thread::spawn(move || {
            let deadline = Instant::now() + LIMIT;
            while !thread_stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => {
                        let (received, stop) =
                            (Arc::clone(&thread_received), Arc::clone(&thread_stop));
                        let (reply, count) = (Arc::clone(&reply), Arc::clone(&count));
                        std::thread::spawn(move || {
                            serve(stream, &received, &stop, |n| reply(n), &count);
                        });
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        std::thread::sleep(Duration::from_millis(2));
                    }
                    Err(_) => break,
                }
            }
        });
        Self { address, received, stop }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.address)
    }

    pub fn sink(&self) -> AlertSink {
        self.url("/hook").parse().unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

fn serve(
    stream: TcpStream,
    received: &Mutex<Vec<Received>>,
    stop: &AtomicBool,
    reply: impl Fn(usize) -> Reply,
    count: &AtomicUsize,
) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
        return;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_owned();
    let path = parts.next().unwrap_or_default().to_owned();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':').unwrap();
        headers.push((name.trim().to_ascii_lowercase(), value.trim().to_owned()));
    }
    let length: usize = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .map(|(_, v)| v.parse().unwrap())
        .unwrap_or(0);
    assert!(length <= 1 << 20, "body too large: {length}");
    let mut body = vec![0; length];
    reader.read_exact(&mut body).unwrap();
    received.lock().unwrap().push(Received { method, path, headers, body });

    let mut stream = stream;
    match reply(count.fetch_add(1, Ordering::SeqCst)) {
        Reply::Status(code, extra) => {
            let mut head =
                format!("HTTP/1.1 {code} Test\r\nContent-Length: 2\r\nConnection: close\r\n");
            for (name, value) in extra {
                head.push_str(&format!("{name}: {value}\r\n"));
            }
            head.push_str("\r\nok");
            let _ = stream.write_all(head.as_bytes());
        }
        Reply::Hang => {
            let deadline = Instant::now() + LIMIT;
            while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
    }
}

/// A loopback port nothing listens on: bound, then released.
fn closed_port_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap();
    drop(listener);
    format!("http://{address}/hook")
}

async fn bounded_deliver(
    alerts: &[Alert],
    sinks: &[AlertSink],
    opts: &DeliveryOptions,
) -> DeliveryReport {
    tokio::time::timeout(LIMIT, deliver(alerts, sinks, opts)).await.expect("delivery timed out")
}

/// What the receiver does: HMAC-SHA256 over "<timestamp>.<body>" with the shared secret.
fn receiver_signature(secret: &[u8], timestamp: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    format!("sha256={}", hex::encode(mac.finalize().into_bytes()))
}

fn now_seconds() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

#[tokio::test]
async fn signed_post_is_received_and_verified_by_the_receiver() {
    let server = TestServer::start(|_| status(200));
    let sent = vec![alert(1, Transition::Raised), alert(2, Transition::Resolved)];

    let report = bounded_deliver(&sent, &[server.sink()], &fast_options()).await;

    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.sinks[0].delivered, 2);
    let received = server.received();
    assert_eq!(received.len(), 2);
    for (request, alert) in received.iter().zip(&sent) {
        assert_eq!(request.method, "POST");
        assert_eq!(request.path, "/hook");
        assert_eq!(request.header("content-type"), Some("application/json"));
        assert_eq!(request.header("idempotency-key"), Some(alert.alert_id.as_str()));
        let timestamp = request.header("x-agentmeter-timestamp").unwrap();
        assert!(now_seconds().abs_diff(timestamp.parse().unwrap()) < 300, "{timestamp}");
        let signature = request.header("x-agentmeter-signature").unwrap();
        assert_eq!(signature, receiver_signature(SECRET.as_bytes(), timestamp, &request.body));
        assert!(Secret::new(SECRET).verify(timestamp, &request.body, signature));
        assert_eq!(request.body, serde_json::to_vec(alert).unwrap());
        assert_eq!(&serde_json::from_slice::<Alert>(&request.body).unwrap(), alert);
        assert!(request.headers.iter().all(|(_, v)| !v.contains(SECRET)));
    }
}

#[tokio::test]
async fn without_a_secret_there_is_no_signature_and_one_warning() {
    let (_guard, logs) = capture_logs();
    let server = TestServer::start(|_| status(204));
    let second = TestServer::start(|_| status(200));
    let opts = DeliveryOptions { webhook_secret: None, ..fast_options() };

    let report = bounded_deliver(&alerts(2), &[server.sink(), second.sink()], &opts).await;

    assert!(report.is_complete(), "{report:?}");
    for request in server.received().iter().chain(&second.received()) {
        assert!(request.header("x-agentmeter-signature").is_none());
        assert!(request.header("x-agentmeter-timestamp").is_some());
    }
    let logs = logs.lock().unwrap();
    let warnings: Vec<&String> = logs.iter().filter(|l| l.contains("No webhook secret")).collect();
    assert_eq!(warnings.len(), 1, "{logs:?}");
    assert!(warnings[0].starts_with("WARN"));
    assert_eq!(logs.iter().filter(|l| l.contains("Alert delivered.")).count(), 4, "{logs:?}");
}

#[tokio::test]
async fn two_failures_then_success_is_delivered_on_the_third_attempt() {
    let server = TestServer::start(|n| if n < 2 { status(500) } else { status(200) });
    let sent = alerts(1);

    let report = bounded_deliver(&sent, &[server.sink()], &fast_options()).await;

    assert!(report.is_complete(), "{report:?}");
    assert_eq!(report.sinks[0].delivered, 1);
    let received = server.received();
    assert_eq!(received.len(), 3);
    for request in &received {
        assert_eq!(request.body, received[0].body, "every attempt sends the same body");
        assert_eq!(request.header("idempotency-key"), Some(sent[0].alert_id.as_str()));
        let timestamp = request.header("x-agentmeter-timestamp").unwrap();
        let signature = request.header("x-agentmeter-signature").unwrap();
        assert_eq!(signature, receiver_signature(SECRET.as_bytes(), timestamp, &request.body));
    }
}

#[tokio::test(flavor = "current_thread")]
async fn a_failing_webhook_is_recorded_and_the_rest_still_delivered() {
    let (_guard, logs) = capture_logs();
    let failing = TestServer::start(|_| status(500));
    let healthy = TestServer::start(|_| status(200));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let file: AlertSink = format!("file://{}", path.display()).parse().unwrap();
    let sinks = [failing.sink(), healthy.sink(), file];
    let sent = alerts(2);
    let opts = fast_options();

    let report = bounded_deliver(&sent, &sinks, &opts).await;

    // The first alert fails after its retries; the circuit opens and the second is held.
    assert_eq!(report.failures.len(), 1, "{report:?}");
    let failure = &report.failures[0];
    assert_eq!(failure.sink, failing.url("/hook"));
    assert_eq!(failure.alert_id, sent[0].alert_id);
    assert_eq!(failure.attempts, opts.max_attempts);
    assert_eq!(failure.error, "HTTP 500 Internal Server Error");
    assert_eq!(failing.received().len(), opts.max_attempts as usize);
    assert_eq!(healthy.received().len(), 2);
    assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 2);
    let counts: Vec<(usize, usize, usize)> =
        report.sinks.iter().map(|s| (s.delivered, s.failed, s.held)).collect();
    assert_eq!(counts, [(0, 1, 1), (2, 0, 0), (2, 0, 0)]);
    assert_eq!(report.delivered(), 4);
    assert_no_secret(&report);

    let logs = logs.lock().unwrap();
    let warnings: Vec<&String> = logs
        .iter()
        .filter(|l| l.starts_with("WARN") && l.contains("Alert not delivered."))
        .collect();
    assert_eq!(warnings.len(), 1, "{logs:?}");
    assert!(warnings[0].contains(&failing.url("/hook")) && warnings[0].contains(&sent[0].alert_id));
    let open: Vec<&String> = logs.iter().filter(|l| l.contains("Circuit open")).collect();
    assert_eq!(open.len(), 1, "{logs:?}");
    assert!(open[0].starts_with("WARN") && open[0].contains(&failing.url("/hook")));
    assert!(open[0].contains("held=1"), "{}", open[0]);
    assert!(logs.iter().all(|l| !l.contains(SECRET)), "the secret was logged: {logs:?}");
    assert!(logs.iter().all(|l| !l.contains("pool_share")), "an alert body was logged: {logs:?}");
}

#[tokio::test]
async fn a_client_error_is_recorded_after_one_attempt() {
    let server = TestServer::start(|_| status(400));
    let report = bounded_deliver(&alerts(1), &[server.sink()], &fast_options()).await;

    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].attempts, 1);
    assert_eq!(report.failures[0].error, "HTTP 400 Bad Request");
    assert_eq!(server.received().len(), 1);
    assert_no_secret(&report);
}

#[tokio::test]
async fn a_redirect_is_not_followed() {
    let server =
        TestServer::start(|_| Reply::Status(302, vec![("Location", "http://127.0.0.1:9/")]));
    let report = bounded_deliver(&alerts(1), &[server.sink()], &fast_options()).await;

    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].attempts, 1);
    assert_eq!(report.failures[0].error, "HTTP 302 Found (redirects are not followed)");
}

#[tokio::test]
async fn an_unreachable_webhook_is_retried_then_recorded() {
    let url = closed_port_url();
    let sink: AlertSink = url.parse().unwrap();
    let healthy = TestServer::start(|_| status(200));
    let opts = fast_options();
    let report = bounded_deliver(&alerts(2), &[sink, healthy.sink()], &opts).await;

    assert_eq!(report.failures.len(), 1, "{report:?}");
    let failure = &report.failures[0];
    assert_eq!(failure.sink, url);
    assert_eq!(failure.attempts, opts.max_attempts);
    assert!(failure.error.starts_with("error sending request"), "{}", failure.error);
    assert!(!failure.error.contains(&url), "{}", failure.error);
    assert_eq!(report.sinks[0].held, 1, "the second alert is not attempted");
    assert_eq!(report.sinks[1].delivered, 2);
    assert_no_secret(&report);
}

#[tokio::test]
async fn a_server_that_never_answers_times_out_and_is_retried() {
    let server = TestServer::start(|_| Reply::Hang);
    let opts =
        DeliveryOptions { timeout: Duration::from_millis(200), max_attempts: 2, ..fast_options() };

    let report = bounded_deliver(&alerts(1), &[server.sink()], &opts).await;

    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].attempts, 2);
    assert_eq!(report.failures[0].error, "timed out after 200ms");
    assert_eq!(server.received().len(), 2);
}

#[tokio::test]
async fn too_many_requests_honours_retry_after_capped_at_max_backoff() {
    // An hour's Retry-After, capped at 20 ms: the test's bound would fire if it were not.
    let server = TestServer::start(|n| {
        if n == 0 { Reply::Status(429, vec![("Retry-After", "3600")]) } else { status(200) }
    });
    let started = Instant::now();
    let report = bounded_deliver(&alerts(1), &[server.sink()], &fast_options()).await;

    assert!(report.is_complete(), "{report:?}");
    assert_eq!(server.received().len(), 2);
    assert!(started.elapsed() < LIMIT);
}

#[tokio::test]
async fn url_credentials_stay_out_of_the_report() {
    let server = TestServer::start(|_| status(403));
    let url = format!("http://bot:pa55word@{}/hook?token=t0k3n", server.address);
    let sink: AlertSink = url.parse().unwrap();

    let report = bounded_deliver(&alerts(1), &[sink], &fast_options()).await;

    let shown = format!("http://[redacted]@{}/hook?[redacted]", server.address);
    assert_eq!(report.failures[0].sink, shown);
    assert_eq!(report.sinks[0].sink, shown);
    let text = format!("{report:?}");
    assert!(!text.contains("pa55word") && !text.contains("t0k3n"), "{text}");
    assert_eq!(server.received()[0].path, "/hook?token=t0k3n");
}

#[tokio::test]
async fn a_dead_webhook_costs_one_alerts_attempts_and_the_rest_are_held() {
    let dead = TestServer::start(|_| status(503));
    let healthy = TestServer::start(|_| status(200));
    let sent = alerts(63);
    let opts = fast_options();

    let report = bounded_deliver(&sent, &[dead.sink(), healthy.sink()], &opts).await;

    // Exactly the first alert's attempts reach the dead sink, all with its key.
    let received = dead.received();
    assert_eq!(received.len(), opts.max_attempts as usize);
    assert!(received.iter().all(|r| r.header("idempotency-key") == Some(&sent[0].alert_id)));
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].attempts, opts.max_attempts);
    let counts: Vec<(usize, usize, usize)> =
        report.sinks.iter().map(|s| (s.delivered, s.failed, s.held)).collect();
    assert_eq!(counts, [(0, 1, 62), (63, 0, 0)], "the other sink is not affected");
    assert_eq!(healthy.received().len(), 63);
}

#[tokio::test]
async fn a_refused_alert_opens_the_circuit_too() {
    // A 401 is not retried, and the next alert would get the same answer.
    let server = TestServer::start(|_| status(401));
    let report = bounded_deliver(&alerts(3), &[server.sink()], &fast_options()).await;

    assert_eq!(server.received().len(), 1);
    assert_eq!((report.sinks[0].failed, report.sinks[0].held), (1, 2));
}
