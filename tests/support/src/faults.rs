//! A fault-injecting HTTP/1.1 proxy for tests: it sits on 127.0.0.1 in front of an upstream
//! on 127.0.0.1 (moto in server mode, a webhook receiver) and, by a seeded [`Plan`], answers
//! some requests with throttling errors or 5xx, delays their answers, drops the connection
//! before or after the upstream applied them, or cuts the answer short. The code under test
//! points its endpoint (`AWS_ENDPOINT_URL`, a webhook URL) at [`FaultProxy::endpoint`];
//! nothing else differs.
//!
//! Each request is named by its operation ([`operation`]: `GetRecords`,
//! `PutObject(If-None-Match)`, `ListObjectsV2`, `POST /hook`...), so a plan can aim at some
//! operations and a test can check that a fault really hit them ([`FaultProxy::injections`]).
//! Only faults actually applied are counted: a cut answer is one the client saw cut.
//!
//! Clients keep their connections alive (as the SDKs do); the proxy forwards each request to
//! the upstream on a connection of its own (`Connection: close`), so a dropped or cut answer
//! never leaves a half-read upstream stream behind. Request bodies framed by chunks are
//! forwarded with a length; `aws-chunked` content (a `Content-Encoding` with a length) passes
//! byte for byte; `Expect: 100-continue` is answered by the proxy.
//!
//! The draws follow the order requests arrive in: a sequential client sees the same faults
//! on every run; concurrent requests may take each other's draws, and the plan's totals stay
//! the same in expectation.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Longest request or answer head.
const MAX_HEAD: usize = 64 << 10;
/// Largest body forwarded either way.
const MAX_BODY: usize = 256 << 20;
/// Most chunks in one chunked body.
const MAX_CHUNKS: usize = 1 << 20;
/// Most requests on one client connection.
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// Most client connections over the proxy's life.
const MAX_CONNECTIONS: usize = 100_000;
/// The longest a proxy accepts connections (a test that runs longer is broken anyway).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The longest a client connection may sit idle, and an upstream may take to answer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// Injections kept in the log.
const MAX_LOGGED: usize = 100_000;

/// What the proxy may do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Fault {
    /// Throttled, upstream untouched: `503 SlowDown` for S3 (REST-XML) and other HTTP;
    /// `400` with `ProvisionedThroughputExceededException` (Kinesis reads and puts) or
    /// `ThrottlingException` (other JSON protocols: CloudWatch Logs, Cost Explorer...).
    Throttle,
    /// `500 InternalError` (`InternalFailure` for JSON protocols), upstream untouched.
    ServerError,
    /// Forwarded; the answer held back by [`Plan::delay`].
    Slow,
    /// The connection closed before the request reached the upstream.
    DropBefore,
    /// Forwarded (the upstream applied it), then the connection closed with no answer: a
    /// retry is a second request for something already done.
    DropAfter,
    /// Forwarded, then the answer cut short and the connection closed: the head promises a
    /// `Content-Length` the body does not reach (a bodiless answer is cut inside its head).
    Truncate,
}

impl Fault {
    /// Every fault, in order.
    pub const ALL: [Fault; 6] = [
        Fault::Throttle,
        Fault::ServerError,
        Fault::Slow,
        Fault::DropBefore,
        Fault::DropAfter,
        Fault::Truncate,
    ];
}

/// The simplest plan: in `permille` of requests one fault, chosen evenly among `faults`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    pub permille: u64,
    pub faults: Vec<Fault>,
    /// Requests let through untouched before any fault (the test's own setup calls).
    pub grace: u64,
}

/// Which requests a rule applies to, and the chance of each fault for them.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    /// Requests whose [`operation`] starts with one of these (`"PutObject"` takes every
    /// conditional form too); empty: every request.
    pub ops: Vec<&'static str>,
    /// ...and whose path contains this (`"/_state/checkpoints/"`); empty: any path.
    pub path: &'static str,
    /// Per fault, its chance per request in permille; at most one fault a request, so the
    /// sum is at most 1000.
    pub permille: Vec<(Fault, u64)>,
}

impl Rule {
    /// Every fault in `faults` with the same chance, on the requests `ops` and `path` name.
    pub fn each(ops: &[&'static str], path: &'static str, faults: &[Fault], permille: u64) -> Self {
        Rule { ops: ops.to_vec(), path, permille: faults.iter().map(|f| (*f, permille)).collect() }
    }

    fn matches(&self, req: &Request) -> bool {
        (self.ops.is_empty() || self.ops.iter().any(|o| req.op.starts_with(o)))
            && req.path.contains(self.path)
    }
}

/// What the proxy does: by the first rule a request matches, drawn from a generator seeded
/// with `seed`, or by `at` for the n-th request.
#[derive(Debug, Clone)]
pub struct Plan {
    pub seed: u64,
    /// Requests let through untouched before any fault (setup calls through the proxy).
    pub grace: u64,
    /// Tried in order; the first that matches a request decides it. A request no rule
    /// matches goes through untouched.
    pub rules: Vec<Rule>,
    /// Explicit faults by request number (1-based, in arrival order), before any rule.
    pub at: BTreeMap<u64, Fault>,
    /// How long a [`Fault::Slow`] answer is held back.
    pub delay: Duration,
}

impl Plan {
    /// A plan with no faults yet: add rules or explicit faults.
    pub fn seeded(seed: u64) -> Self {
        Plan { seed, grace: 0, rules: Vec::new(), at: BTreeMap::new(), delay: DEFAULT_DELAY }
    }

    /// The plan with `rule` tried after the rules it has.
    pub fn rule(mut self, rule: Rule) -> Self {
        self.rules.push(rule);
        self
    }
}

/// The delay of a slow answer unless the plan says otherwise.
const DEFAULT_DELAY: Duration = Duration::from_millis(300);

impl From<Schedule> for Plan {
    fn from(s: Schedule) -> Self {
        let n = s.faults.len().max(1) as u64;
        let mut permille: Vec<(Fault, u64)> =
            s.faults.iter().map(|f| (*f, s.permille / n)).collect();
        // The remainder to the first, so the total is the schedule's.
        if let Some(first) = permille.first_mut() {
            first.1 += s.permille % n;
        }
        Plan {
            seed: s.seed,
            grace: s.grace,
            rules: vec![Rule { ops: Vec::new(), path: "", permille }],
            at: BTreeMap::new(),
            delay: DEFAULT_DELAY,
        }
    }
}

/// One fault applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    /// The request's number, 1-based, in arrival order.
    pub request: u64,
    pub fault: Fault,
    /// The request's [`operation`].
    pub op: String,
    /// The request's path, without its query.
    pub path: String,
}

#[derive(Default)]
struct Counts {
    /// Requests seen.
    seen: u64,
    /// Requests seen by operation.
    ops: BTreeMap<String, u64>,
    /// Faults applied, first [`MAX_LOGGED`] of them.
    log: Vec<Injection>,
    /// Faults applied by kind (all of them).
    injected: BTreeMap<Fault, u64>,
    /// Requests the upstream did not answer (not a planned fault; the client saw a drop).
    upstream_failures: u64,
}

struct State {
    plan: Plan,
    active: bool,
    rng: u64,
    counts: Counts,
}

impl State {
    /// The request's number and the fault drawn for it.
    fn draw(&mut self, req: &Request) -> (u64, Option<Fault>) {
        self.counts.seen += 1;
        let n = self.counts.seen;
        *self.counts.ops.entry(req.op.clone()).or_default() += 1;
        // One draw per request whatever happens, so a plan's faults do not shift when a rule
        // changes.
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = (self.rng >> 33) % 1000;
        if !self.active || n <= self.plan.grace {
            return (n, None);
        }
        if let Some(f) = self.plan.at.get(&n) {
            return (n, Some(*f));
        }
        let Some(rule) = self.plan.rules.iter().find(|rule| rule.matches(req)) else {
            return (n, None);
        };
        let mut upto = 0;
        for (f, p) in &rule.permille {
            upto += p;
            if r < upto {
                return (n, Some(*f));
            }
        }
        (n, None)
    }

    fn applied(&mut self, request: u64, fault: Fault, req: &Request) {
        *self.counts.injected.entry(fault).or_default() += 1;
        if self.counts.log.len() < MAX_LOGGED {
            self.counts.log.push(Injection {
                request,
                fault,
                op: req.op.clone(),
                path: req.path.clone(),
            });
        }
    }
}

/// A running proxy; it stops accepting on drop.
pub struct FaultProxy {
    port: u16,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    accept: Option<JoinHandle<()>>,
}

impl FaultProxy {
    /// A proxy on a free loopback port in front of `127.0.0.1:upstream`.
    ///
    /// # Panics
    ///
    /// If no loopback port can be bound, or a rule's chances add up to more than 1000.
    pub fn start(upstream: u16, plan: impl Into<Plan>) -> Self {
        let plan = plan.into();
        for rule in &plan.rules {
            let total: u64 = rule.permille.iter().map(|(_, p)| p).sum();
            assert!(total <= 1000, "a rule's chances add up to {total} permille: {rule:?}");
        }
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let state = Arc::new(Mutex::new(State {
            rng: plan.seed,
            plan,
            active: true,
            counts: Counts::default(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (Arc::clone(&state), Arc::clone(&stop));
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream));
        let accept = std::thread::spawn(move || {
            let started = Instant::now();
            let mut connections = 0;
            while !stp.load(Ordering::Relaxed)
                && connections < MAX_CONNECTIONS
                && started.elapsed() < MAX_LIFETIME
            {
                match listener.accept() {
                    Ok((client, peer)) if peer.ip().is_loopback() => {
                        connections += 1;
                        let st = Arc::clone(&st);
                        std::thread::spawn(move || serve(client, upstream, &st));
                    }
                    Ok(_) => {}
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        Self { port, state, stop, accept: Some(accept) }
    }

    /// `http://127.0.0.1:PORT`, for `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Faults applied so far, by kind.
    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        self.with(|c| c.injected.clone())
    }

    /// Faults applied so far, each with its request (the first 100,000).
    pub fn injections(&self) -> Vec<Injection> {
        self.with(|c| c.log.clone())
    }

    /// Faults of kind `fault` applied to requests whose operation starts with `op` and whose
    /// path contains `path`.
    pub fn injected_on(&self, fault: Fault, op: &str, path: &str) -> usize {
        self.with(|c| {
            c.log
                .iter()
                .filter(|i| i.fault == fault && i.op.starts_with(op) && i.path.contains(path))
                .count()
        })
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.with(|c| c.seen)
    }

    /// Requests seen so far by [`operation`].
    pub fn operations(&self) -> BTreeMap<String, u64> {
        self.with(|c| c.ops.clone())
    }

    /// Requests the upstream failed to answer (not planned: the client saw a drop).
    pub fn upstream_failures(&self) -> u64 {
        self.with(|c| c.upstream_failures)
    }

    /// Turns faults off (or on again) for the requests that follow; draws go on.
    pub fn set_active(&self, active: bool) {
        if let Ok(mut s) = self.state.lock() {
            s.active = active;
        }
    }

    /// One line for a test's output: requests, and faults by kind and by operation.
    pub fn summary(&self) -> String {
        self.with(|c| {
            let mut by_op: BTreeMap<(&str, Fault), u64> = BTreeMap::new();
            for i in &c.log {
                *by_op.entry((i.op.as_str(), i.fault)).or_default() += 1;
            }
            let ops: Vec<String> =
                by_op.iter().map(|((op, f), n)| format!("{op} {f:?} {n}")).collect();
            format!(
                "{} requests, injected {:?} (by operation: {}), upstream failures {}",
                c.seen,
                c.injected,
                ops.join(", "),
                c.upstream_failures
            )
        })
    }

    fn with<T: Default>(&self, f: impl FnOnce(&Counts) -> T) -> T {
        self.state.lock().map(|s| f(&s.counts)).unwrap_or_default()
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
    }
}

/// One request as the proxy sees it.
struct Request {
    /// Head lines after the request line, as received (no blank line).
    headers: Vec<String>,
    method: String,
    /// The request target as sent (path and query).
    target: String,
    /// The target without its query.
    path: String,
    op: String,
    body: Vec<u8>,
    /// The client asked to close after this request.
    close: bool,
}

fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn without(lines: Vec<String>, names: &[&str]) -> Vec<String> {
    lines
        .into_iter()
        .filter(|l| {
            let name = l.split_once(':').map_or("", |(k, _)| k.trim());
            !names.iter().any(|n| name.eq_ignore_ascii_case(n))
        })
        .collect()
}

/// The operation a request stands for: the JSON protocols' `X-Amz-Target` action
/// (`GetRecords`); for S3 (signed, no target) the API call, a conditional put with its
/// condition (`PutObject(If-None-Match)`, `PutObject(If-Match)`); else `METHOD /path`.
pub fn operation(method: &str, target: &str, headers: &[String]) -> String {
    if let Some(t) = header(headers, "x-amz-target") {
        return t.rsplit('.').next().unwrap_or(t).to_owned();
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let signed = header(headers, "authorization").is_some_and(|a| a.starts_with("AWS4-"));
    if !signed {
        return format!("{method} {path}");
    }
    let has = |q: &str| query.split('&').any(|p| p == q || p.starts_with(&format!("{q}=")));
    // Path style: `/bucket` or `/bucket/` is the bucket, `/bucket/key` an object.
    let object =
        path.trim_start_matches('/').split_once('/').is_some_and(|(_, key)| !key.is_empty());
    let cond = |op: &str| {
        if header(headers, "if-none-match").is_some() {
            format!("{op}(If-None-Match)")
        } else if header(headers, "if-match").is_some() {
            format!("{op}(If-Match)")
        } else {
            op.to_owned()
        }
    };
    match (method, object) {
        ("GET", false) if has("list-type") => "ListObjectsV2".into(),
        ("GET", false) => "GetBucket".into(),
        ("GET", true) if header(headers, "range").is_some() => "GetObject(Range)".into(),
        ("GET", true) => "GetObject".into(),
        ("HEAD", false) => "HeadBucket".into(),
        ("HEAD", true) => "HeadObject".into(),
        ("PUT", false) => "CreateBucket".into(),
        ("PUT", true) if has("partNumber") => "UploadPart".into(),
        ("PUT", true) if header(headers, "x-amz-copy-source").is_some() => "CopyObject".into(),
        ("PUT", true) => cond("PutObject"),
        ("POST", _) if has("uploads") => "CreateMultipartUpload".into(),
        ("POST", _) if has("uploadId") => cond("CompleteMultipartUpload"),
        ("POST", false) if has("delete") => "DeleteObjects".into(),
        ("DELETE", true) if has("uploadId") => "AbortMultipartUpload".into(),
        ("DELETE", true) => "DeleteObject".into(),
        _ => format!("{method} {path}"),
    }
}

/// Reads a head: the first line and the header lines, up to the blank line. `None` at the
/// end of the stream or on anything malformed or too long.
fn read_head(r: &mut impl BufRead) -> Option<(String, Vec<String>)> {
    let mut first = String::new();
    let mut lines = Vec::new();
    let mut size = 0;
    loop {
        let mut line = String::new();
        let n = r.by_ref().take((MAX_HEAD + 1 - size) as u64).read_line(&mut line).ok()?;
        size += n;
        if n == 0 || size > MAX_HEAD {
            return None;
        }
        let line = line.trim_end_matches(['\r', '\n']).to_owned();
        if first.is_empty() {
            first = line;
        } else if line.is_empty() {
            return Some((first, lines));
        } else {
            lines.push(line);
        }
    }
}

/// Reads a body framed by `headers`: by length, by chunks (trailer fields appended to
/// `headers`), or else, if `to_end`, up to the end of the stream. `headers` loses its chunked
/// framing and gains the length.
fn read_body(r: &mut impl BufRead, headers: &mut Vec<String>, to_end: bool) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    if let Some(v) = header(headers, "content-length") {
        let n: usize = v.parse().ok()?;
        if n > MAX_BODY {
            return None;
        }
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if header(headers, "transfer-encoding")
        .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
    {
        let mut chunks = 0;
        loop {
            chunks += 1;
            let (size, _) = read_line_bounded(r)?;
            let n = usize::from_str_radix(size.split(';').next()?.trim(), 16).ok()?;
            if chunks > MAX_CHUNKS || body.len() + n > MAX_BODY {
                return None;
            }
            if n == 0 {
                break;
            }
            let start = body.len();
            body.resize(start + n, 0);
            r.read_exact(&mut body[start..]).ok()?;
            let mut crlf = [0; 2];
            r.read_exact(&mut crlf).ok()?;
        }
        let mut trailers = Vec::new();
        loop {
            let (line, _) = read_line_bounded(r)?;
            if line.is_empty() {
                break;
            }
            trailers.push(line);
            if trailers.len() > 100 {
                return None;
            }
        }
        let mut kept = without(std::mem::take(headers), &["transfer-encoding", "trailer"]);
        kept.extend(trailers);
        kept.push(format!("Content-Length: {}", body.len()));
        *headers = kept;
    } else if to_end {
        r.by_ref().take(MAX_BODY as u64 + 1).read_to_end(&mut body).ok()?;
        if body.len() > MAX_BODY {
            return None;
        }
    }
    Some(body)
}

/// One line, without its end, at most [`MAX_HEAD`] bytes.
fn read_line_bounded(r: &mut impl BufRead) -> Option<(String, usize)> {
    let mut line = String::new();
    let n = r.by_ref().take(MAX_HEAD as u64).read_line(&mut line).ok()?;
    if n == 0 || !line.ends_with('\n') {
        return None;
    }
    Some((line.trim_end_matches(['\r', '\n']).to_owned(), n))
}

/// Reads one request from the client, answering `Expect: 100-continue` itself.
fn read_request(r: &mut impl BufRead, client: &mut TcpStream) -> Option<Request> {
    let (first, headers) = read_head(r)?;
    let mut parts = first.split(' ');
    let (method, target) = (parts.next()?.to_owned(), parts.next()?.to_owned());
    let close = header(&headers, "connection").is_some_and(|v| v.eq_ignore_ascii_case("close"))
        || first.ends_with("HTTP/1.0");
    let mut headers =
        if header(&headers, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue")) {
            client.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
            without(headers, &["expect"])
        } else {
            headers
        };
    let op = operation(&method, &target, &headers);
    let body = read_body(r, &mut headers, false)?;
    let path = target.split('?').next().unwrap_or_default().to_owned();
    Some(Request { headers, method, target, path, op, body, close })
}

/// An answer read from the upstream.
struct Answer {
    status_line: String,
    headers: Vec<String>,
    body: Vec<u8>,
    /// It has no body whatever its headers say (a HEAD's answer, 1xx, 204, 304).
    bodiless: bool,
}

impl Answer {
    /// The head as sent to the client: its own framing, no connection header of the
    /// upstream's, `Connection: close` if the proxy closes after it.
    fn head(&self, close: bool) -> Vec<u8> {
        let mut out = format!("{}\r\n", self.status_line);
        for l in without(self.headers.clone(), &["connection", "keep-alive"]) {
            out.push_str(&l);
            out.push_str("\r\n");
        }
        if !self.bodiless && header(&self.headers, "content-length").is_none() {
            out.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if close {
            out.push_str("Connection: close\r\n");
        }
        out.push_str("\r\n");
        out.into_bytes()
    }
}

fn forward(req: &Request, upstream: SocketAddr) -> Option<Answer> {
    let mut up = TcpStream::connect_timeout(&upstream, IO_TIMEOUT).ok()?;
    up.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    up.set_write_timeout(Some(IO_TIMEOUT)).ok()?;
    let mut head = format!("{} {} HTTP/1.1\r\n", req.method, req.target);
    for l in without(req.headers.clone(), &["connection", "keep-alive"]) {
        head.push_str(&l);
        head.push_str("\r\n");
    }
    head.push_str("Connection: close\r\n\r\n");
    up.write_all(head.as_bytes()).ok()?;
    up.write_all(&req.body).ok()?;
    let mut r = BufReader::new(up);
    // A 100 Continue the upstream sends anyway is skipped (the body went with the head).
    for _ in 0..3 {
        let (status_line, mut headers) = read_head(&mut r)?;
        let status: u16 = status_line.split(' ').nth(1)?.parse().ok()?;
        if (100..200).contains(&status) {
            continue;
        }
        let bodiless = req.method == "HEAD" || status == 204 || status == 304;
        let body = if bodiless { Vec::new() } else { read_body(&mut r, &mut headers, true)? };
        return Some(Answer { status_line, headers, body, bodiless });
    }
    None
}

/// The error a throttled or failed request gets, in the protocol it spoke.
fn error_answer(req: &Request, throttle: bool) -> Answer {
    let (status, content_type, extra, body) = if header(&req.headers, "x-amz-target").is_some() {
        let kind = match (throttle, req.op.as_str()) {
            (true, "GetRecords" | "PutRecord" | "PutRecords") => {
                "ProvisionedThroughputExceededException"
            }
            (true, _) => "ThrottlingException",
            (false, _) => "InternalFailure",
        };
        let status = if throttle { "400 Bad Request" } else { "500 Internal Server Error" };
        let body = format!(r#"{{"__type":"{kind}","message":"injected by the test proxy"}}"#);
        (status, "application/x-amz-json-1.1", Some(format!("x-amzn-ErrorType: {kind}")), body)
    } else {
        let (status, code) = if throttle {
            ("503 Slow Down", "SlowDown")
        } else {
            ("500 Internal Server Error", "InternalError")
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>{code}</Code><Message>injected by the test proxy</Message><RequestId>fault</RequestId></Error>"
        );
        (status, "application/xml", None, body)
    };
    let mut headers =
        vec![format!("Content-Type: {content_type}"), format!("Content-Length: {}", body.len())];
    headers.extend(extra);
    Answer {
        status_line: format!("HTTP/1.1 {status}"),
        headers,
        bodiless: req.method == "HEAD",
        body: body.into_bytes(),
    }
}

/// Serves one client connection: its requests in turn, until it closes, a fault closes it,
/// or the bounds are reached.
fn serve(client: TcpStream, upstream: SocketAddr, state: &Mutex<State>) {
    if client.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || client.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let Ok(mut out) = client.try_clone() else { return };
    let mut reader = BufReader::new(client);
    for _ in 0..MAX_REQUESTS_PER_CONNECTION {
        let Some(req) = read_request(&mut reader, &mut out) else { break };
        let Ok((n, fault)) = state.lock().map(|mut s| s.draw(&req)) else { break };
        let applied = |f: Fault| {
            if let Ok(mut s) = state.lock() {
                s.applied(n, f, &req);
            }
        };
        let upstream_failed = || {
            if let Ok(mut s) = state.lock() {
                s.counts.upstream_failures += 1;
            }
        };
        let keep = match fault {
            Some(f @ (Fault::Throttle | Fault::ServerError)) => {
                let answer = error_answer(&req, f == Fault::Throttle);
                let sent = send(&mut out, &answer, req.close);
                applied(f);
                sent && !req.close
            }
            Some(Fault::DropBefore) => {
                applied(Fault::DropBefore);
                false
            }
            Some(f) => {
                let Some(answer) = forward(&req, upstream) else {
                    upstream_failed();
                    break;
                };
                match f {
                    Fault::DropAfter => {
                        applied(f);
                        false
                    }
                    Fault::Truncate => {
                        let head = answer.head(true);
                        let _ = if answer.body.is_empty() {
                            // Nothing to cut but the head: stop in its middle.
                            out.write_all(&head[..head.len() / 2])
                        } else {
                            out.write_all(&head)
                                .and_then(|()| out.write_all(&answer.body[..answer.body.len() / 2]))
                        };
                        applied(f);
                        false
                    }
                    _ => {
                        std::thread::sleep(state.lock().map_or(DEFAULT_DELAY, |s| s.plan.delay));
                        let sent = send(&mut out, &answer, req.close);
                        applied(f);
                        sent && !req.close
                    }
                }
            }
            None => {
                let Some(answer) = forward(&req, upstream) else {
                    upstream_failed();
                    break;
                };
                send(&mut out, &answer, req.close) && !req.close
            }
        };
        if !keep {
            break;
        }
    }
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
}

/// Sends an answer whole; false if the client is gone.
fn send(out: &mut TcpStream, answer: &Answer, close: bool) -> bool {
    out.write_all(&answer.head(close))
        .and_then(|()| if answer.bodiless { Ok(()) } else { out.write_all(&answer.body) })
        .and_then(|()| out.flush())
        .is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(lines: &[&str]) -> Vec<String> {
        lines.iter().map(|l| (*l).to_owned()).collect()
    }

    #[test]
    fn operations_are_named_as_the_apis_name_them() {
        let signed = "Authorization: AWS4-HMAC-SHA256 Credential=test";
        assert_eq!(
            operation("POST", "/", &h(&["X-Amz-Target: Kinesis_20131202.GetRecords", signed])),
            "GetRecords"
        );
        assert_eq!(operation("GET", "/b?list-type=2&prefix=x", &h(&[signed])), "ListObjectsV2");
        assert_eq!(operation("GET", "/b/?list-type=2", &h(&[signed])), "ListObjectsV2");
        assert_eq!(
            operation("PUT", "/b/k/x.parquet?x-id=PutObject", &h(&[signed, "If-None-Match: *"])),
            "PutObject(If-None-Match)"
        );
        assert_eq!(
            operation("PUT", "/b/_state/c.json", &h(&[signed, "If-Match: \"e\""])),
            "PutObject(If-Match)"
        );
        assert_eq!(operation("HEAD", "/b/k", &h(&[signed])), "HeadObject");
        assert_eq!(operation("GET", "/b/k", &h(&[signed, "Range: bytes=-10"])), "GetObject(Range)");
        assert_eq!(operation("POST", "/hook?token=x", &h(&[])), "POST /hook");
    }

    #[test]
    fn chunked_bodies_are_read_whole_and_forwarded_with_a_length() {
        let raw = b"4\r\nabcd\r\n3;ext=1\r\nefg\r\n0\r\nx-amz-checksum-crc32: AAAAAA==\r\n\r\nnext";
        let mut r = std::io::Cursor::new(&raw[..]);
        let mut headers = h(&["Host: x", "Transfer-Encoding: chunked"]);
        assert_eq!(read_body(&mut r, &mut headers, false).unwrap(), b"abcdefg");
        assert_eq!(headers, h(&["Host: x", "x-amz-checksum-crc32: AAAAAA==", "Content-Length: 7"]));
        let mut rest = String::new();
        r.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "next");
    }

    #[test]
    fn the_draws_follow_the_seed_and_the_rules() {
        let plan = Plan::seeded(7)
            .rule(Rule::each(&["GetRecords"], "", &[Fault::Throttle], 500))
            .rule(Rule::each(&["PutObject"], "/_state/", &[Fault::DropAfter], 1000));
        let req = |op: &str, path: &str| Request {
            headers: Vec::new(),
            method: "POST".into(),
            target: path.into(),
            path: path.into(),
            op: op.into(),
            body: Vec::new(),
            close: false,
        };
        let run = || {
            let mut s =
                State { rng: 7, plan: plan.clone(), active: true, counts: Counts::default() };
            (0..200)
                .map(|i| match i % 3 {
                    0 => s.draw(&req("GetRecords", "/")).1,
                    1 => s.draw(&req("PutObject(If-Match)", "/b/_state/x")).1,
                    _ => s.draw(&req("PutObject(If-Match)", "/b/usage_events/x")).1,
                })
                .collect::<Vec<_>>()
        };
        let draws = run();
        assert_eq!(draws, run(), "the same seed, the same faults");
        let of = |k: usize| draws.iter().skip(k).step_by(3).collect::<Vec<_>>();
        let throttled = of(0).iter().filter(|f| f.is_some()).count();
        assert!((20..=47).contains(&throttled), "{throttled} of 67 at 50 %");
        assert!(of(1).iter().all(|f| **f == Some(Fault::DropAfter)));
        assert!(of(2).iter().all(|f| f.is_none()));
    }

    /// Requests an upstream got: request line, headers, body.
    type Got = Arc<Mutex<Vec<(String, Vec<String>, Vec<u8>)>>>;

    /// An upstream that echoes each request's body (a HEAD gets a length and no body), one
    /// request per connection; it records what it got.
    fn echo() -> (u16, Got) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let got = Arc::new(Mutex::new(Vec::new()));
        let keep = Arc::clone(&got);
        std::thread::spawn(move || {
            for stream in listener.incoming().take(100) {
                let mut stream = stream.unwrap();
                let mut r = BufReader::new(stream.try_clone().unwrap());
                let (first, mut headers) = read_head(&mut r).unwrap();
                let body = read_body(&mut r, &mut headers, false).unwrap();
                let answer = if first.starts_with("HEAD") {
                    b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\n".to_vec()
                } else {
                    let mut a =
                        format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
                            .into_bytes();
                    a.extend_from_slice(&body);
                    a
                };
                keep.lock().unwrap().push((first, headers, body));
                stream.write_all(&answer).unwrap();
            }
        });
        (port, got)
    }

    /// Reads one answer off a client connection: its status line, headers and body.
    fn answer(r: &mut BufReader<TcpStream>, head_request: bool) -> Option<(String, Vec<u8>)> {
        let (status, mut headers) = read_head(r)?;
        let body = if head_request { Vec::new() } else { read_body(r, &mut headers, false)? };
        Some((status, body))
    }

    #[test]
    fn one_kept_alive_connection_carries_chunks_expectations_and_heads_until_a_fault_cuts_it() {
        let (port, got) = echo();
        let mut plan = Plan::seeded(1);
        plan.at.insert(4, Fault::Truncate);
        let proxy = FaultProxy::start(port, plan);
        let mut client = TcpStream::connect(("127.0.0.1", proxy.port())).unwrap();
        client.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut r = BufReader::new(client.try_clone().unwrap());
        // 1: a chunked body, forwarded with its length.
        client
            .write_all(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n")
            .unwrap();
        assert_eq!(
            answer(&mut r, false).unwrap(),
            ("HTTP/1.1 200 OK".to_owned(), b"abcde".to_vec())
        );
        // 2: Expect: 100-continue, answered by the proxy before the body is sent.
        client
            .write_all(b"POST /hook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n")
            .unwrap();
        assert_eq!(read_head(&mut r).unwrap().0, "HTTP/1.1 100 Continue");
        client.write_all(b"hi").unwrap();
        assert_eq!(answer(&mut r, false).unwrap().1, b"hi");
        // 3: a HEAD: a length, no body, and the connection still usable.
        client.write_all(b"HEAD /b/k HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert_eq!(answer(&mut r, true).unwrap().0, "HTTP/1.1 200 OK");
        // 4: cut: the head promises 6 bytes, 3 come, then the end.
        client
            .write_all(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef")
            .unwrap();
        let (_, mut headers) = read_head(&mut r).unwrap();
        assert_eq!(header(&headers, "content-length"), Some("6"));
        assert!(read_body(&mut r, &mut headers, false).is_none());
        let seen = got.lock().unwrap().clone();
        assert_eq!(seen.len(), 4, "the cut request reached the upstream");
        assert_eq!(header(&seen[0].1, "content-length"), Some("5"));
        assert_eq!(header(&seen[0].1, "transfer-encoding"), None);
        assert_eq!(header(&seen[1].1, "expect"), None);
        assert_eq!(proxy.requests(), 4);
        assert_eq!(proxy.injected(), BTreeMap::from([(Fault::Truncate, 1)]));
        assert_eq!(
            proxy.injections(),
            vec![Injection {
                request: 4,
                fault: Fault::Truncate,
                op: "PUT /b/k".into(),
                path: "/b/k".into()
            }]
        );
    }
}
