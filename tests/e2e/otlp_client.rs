//! Harness for `agentmeter serve`: the server process on 127.0.0.1:0, a small HTTP/1.1 client
//! over `TcpStream`, OTLP JSON request bodies, and the spans read back from the lake.
//!
//! Every wait is bounded: reads and writes time out, polls have a deadline, and a server that
//! does not exit after SIGTERM is killed and the test fails.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::util::{bin, duckdb, duckdb_int, files_under, table};

/// How long the server may take to start, and to exit after SIGTERM.
pub const PROCESS_WAIT: Duration = Duration::from_secs(60);
/// How long a condition polled by [`eventually`] may take to hold.
pub const POLL_WAIT: Duration = Duration::from_secs(30);
/// Timeout of each connect, read and write of one HTTP exchange.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// The whole of one HTTP exchange.
const EXCHANGE_WAIT: Duration = Duration::from_secs(60);
/// Largest response read.
const MAX_RESPONSE_BYTES: usize = 16 << 20;
/// Bytes of the server's stderr kept for failure messages.
const STDERR_KEPT: usize = 64 << 10;

/// The Strands trace fixture of the decoder's tests, in OTLP JSON (7 spans, 2 ids in upper case).
pub const STRANDS_FIXTURE: &str = include_str!("../../ingest/src/otlp/testdata/strands-trace.json");

/// Polls `cond` every 20 ms until it holds; fails the test naming `what` after [`POLL_WAIT`].
pub fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + POLL_WAIT;
    while !cond() {
        assert!(Instant::now() < deadline, "gave up after {POLL_WAIT:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A running `agentmeter serve`, killed on drop if it is still running.
pub struct Server {
    child: Child,
    port: u16,
    stdout: mpsc::Receiver<String>,
    stderr: Arc<Mutex<String>>,
}

/// How a server ended.
pub struct Stopped {
    /// Its exit status.
    pub status: ExitStatus,
    /// Its stdout after the `listening on` line.
    pub stdout: String,
    /// The end of its stderr.
    pub stderr: String,
}

impl Stopped {
    /// The counts of the `stopped: R spans received, W written, D duplicates, Q quarantined`
    /// line (of `run`'s, its receiver's part).
    pub fn counts(&self) -> [u64; 4] {
        let line = self
            .stdout
            .lines()
            .find_map(|l| l.strip_prefix("stopped: "))
            .unwrap_or_else(|| panic!("no `stopped:` line in stdout:\n{}", self.stdout));
        // `run` goes on with its other parts after a `;`.
        let line = line.split(';').next().unwrap_or(line);
        let n: Vec<u64> = line
            .split(", ")
            .map(|part| part.split(' ').next().and_then(|n| n.parse().ok()).expect(line))
            .collect();
        n.try_into().unwrap_or_else(|_| panic!("four counts expected: {line}"))
    }
}

impl Server {
    /// `agentmeter serve --lake LAKE --otlp-http 127.0.0.1:0 ARGS`; returns once it listens.
    pub fn start(lake: &Path, args: &[&str]) -> Server {
        Self::start_with_env(lake, args, &[])
    }

    /// [`Server::start`] with extra environment variables.
    pub fn start_with_env(lake: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = bin();
        cmd.arg("serve")
            .arg("--lake")
            .arg(lake)
            .args(["--otlp-http", "127.0.0.1:0"])
            .args(args)
            .env_remove("AGENTMETER_OTLP_TOKEN")
            .envs(env.iter().copied());
        Self::spawn(cmd)
    }

    /// Spawns `cmd` (`serve`, or `run` with a receiver on an ephemeral port); returns once it
    /// prints the address it listens on.
    pub fn spawn(mut cmd: Command) -> Server {
        cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn agentmeter");
        let (tx, stdout) = mpsc::channel();
        let out = child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Drained all along, so the server never blocks on a full pipe.
        let stderr = Arc::new(Mutex::new(String::new()));
        let err = child.stderr.take().expect("piped stderr");
        let keep = Arc::clone(&stderr);
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut s = keep.lock().unwrap();
                s.push_str(&line);
                s.push('\n');
                if s.len() > 2 * STDERR_KEPT {
                    let cut = s.len() - STDERR_KEPT;
                    let cut = (cut..s.len()).find(|&i| s.is_char_boundary(i)).unwrap_or(0);
                    s.drain(..cut);
                }
            }
        });
        let mut server = Server { child, port: 0, stdout, stderr };
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match server.stdout.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        let addr: SocketAddr = addr.trim().parse().expect("listening address");
                        assert!(addr.ip().is_loopback(), "{addr}");
                        server.port = addr.port();
                        return server;
                    }
                }
                Err(e) => panic!(
                    "agentmeter did not print its address ({e:?}); stderr:\n{}",
                    server.stderr()
                ),
            }
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The end of its stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// `POST /v1/traces` with `headers` and `body`.
    pub fn post(&self, headers: &[(&str, &str)], body: &[u8]) -> std::io::Result<Response> {
        request(self.port, "POST", "/v1/traces", headers, body)
    }

    /// `POST /v1/traces` of an OTLP JSON body; fails the test on a connection error.
    pub fn post_json(&self, body: &[u8]) -> Response {
        self.post(&[("Content-Type", "application/json")], body).expect("POST /v1/traces")
    }

    /// `GET path`; fails the test on a connection error.
    pub fn get(&self, path: &str) -> Response {
        request(self.port, "GET", path, &[], b"").unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `GET /metrics`, as Prometheus text.
    pub fn metrics(&self) -> String {
        let r = self.get("/metrics");
        assert_eq!(r.status, 200, "{}", r.text());
        r.text()
    }

    /// Sends SIGTERM.
    pub fn sigterm(&self) {
        self.signal("TERM");
    }

    /// Sends signal `name` (`TERM`, `INT`) with `kill`.
    pub fn signal(&self, name: &str) {
        let pid = self.child.id().to_string();
        let status =
            Command::new("kill").arg(format!("-{name}")).arg(&pid).status().expect("run kill");
        assert!(status.success(), "kill -{name} {pid} failed");
    }

    /// Waits (bounded) for the process to exit after [`Server::sigterm`].
    pub fn wait(mut self) -> Stopped {
        let deadline = Instant::now() + PROCESS_WAIT;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                break status;
            }
            if Instant::now() >= deadline {
                let _ = self.child.kill();
                let _ = self.child.wait();
                panic!(
                    "agentmeter serve did not exit within {PROCESS_WAIT:?}; stderr:\n{}",
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        // The process is gone: the reader ends at end of file.
        let mut stdout = String::new();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.stdout.recv_timeout(left) {
                Ok(line) => {
                    stdout.push_str(&line);
                    stdout.push('\n');
                }
                Err(_) => break,
            }
        }
        Stopped { status, stdout, stderr: self.stderr() }
    }

    /// SIGTERM, then [`Server::wait`]; fails the test unless it exits 0.
    pub fn stop(self) -> Stopped {
        self.sigterm();
        let stopped = self.wait();
        assert_eq!(
            stopped.status.code(),
            Some(0),
            "agentmeter serve exited with {} after SIGTERM\nstdout:\n{}\nstderr:\n{}",
            stopped.status,
            stopped.stdout,
            stopped.stderr
        );
        stopped
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// One HTTP response.
#[derive(Debug)]
pub struct Response {
    /// The status code.
    pub status: u16,
    /// Headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (de-chunked).
    pub body: Vec<u8>,
}

impl Response {
    /// The first value of header `name` (any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    /// The body as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON; fails the test if it is not.
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| {
            panic!("status {} body is not JSON ({e}): {}", self.status, self.text())
        })
    }
}

/// One HTTP/1.1 exchange with 127.0.0.1:`port` (`Connection: close`), bounded in time.
///
/// A failed write is not an error if a response can still be read (a server may answer
/// before it has read the whole body).
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<Response> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
    stream.set_read_timeout(Some(IO_TIMEOUT))?;
    stream.set_write_timeout(Some(IO_TIMEOUT))?;
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n");
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!("Content-Length: {}\r\nConnection: close\r\n\r\n", body.len()));
    let written = stream.write_all(head.as_bytes()).and_then(|()| stream.write_all(body));
    let read = read_response(&mut stream);
    match (read, written) {
        (Ok(r), _) => Ok(r),
        (Err(e), Ok(())) => Err(e),
        (Err(_), Err(w)) => Err(w),
    }
}

fn read_response(stream: &mut TcpStream) -> std::io::Result<Response> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let deadline = Instant::now() + EXCHANGE_WAIT;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 << 10];
    loop {
        if Instant::now() >= deadline {
            return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "response too slow"));
        }
        let n = stream.read(&mut buf)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if raw.len() > MAX_RESPONSE_BYTES {
            return Err(bad("response too large"));
        }
    }
    let end = raw.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| bad("no header end"))?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|_| bad("head is not UTF-8"))?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| bad("no status code"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let r = Response { status, headers, body: Vec::new() };
    if r.header("transfer-encoding").is_some_and(|t| t.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body).ok_or_else(|| bad("bad chunked body"))?;
    } else if let Some(len) = r.header("content-length") {
        let len: usize = len.parse().map_err(|_| bad("bad content-length"))?;
        if body.len() < len {
            return Err(bad("body shorter than its content-length"));
        }
        body.truncate(len);
    }
    Ok(Response { body, ..r })
}

fn dechunk(mut data: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let eol = data.windows(2).position(|w| w == b"\r\n")?;
        let size = std::str::from_utf8(&data[..eol]).ok()?.split(';').next()?.trim();
        let size = usize::from_str_radix(size, 16).ok()?;
        data = &data[eol + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(data.get(..size)?);
        data = data.get(size + 2..)?;
    }
}

/// The value of the sample `name` (with its labels, e.g. `x_total{outcome="ok"}`) in Prometheus
/// text; fails the test when it is missing.
pub fn metric(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no sample {name} in:\n{text}"))
}

/// Gzip of `data`.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// An OTLP JSON string attribute.
pub fn kv_str(key: &str, value: &str) -> Value {
    json!({ "key": key, "value": { "stringValue": value } })
}

/// An OTLP JSON integer attribute (64-bit integers are decimal strings).
pub fn kv_int(key: &str, value: i64) -> Value {
    json!({ "key": key, "value": { "intValue": value.to_string() } })
}

/// One OTLP JSON span (INTERNAL, status OK unless `error`).
#[allow(clippy::too_many_arguments)]
pub fn span(
    trace_id: &str,
    span_id: &str,
    parent: Option<&str>,
    name: &str,
    start_ns: u64,
    duration_ms: u64,
    error: bool,
    attributes: Vec<Value>,
) -> Value {
    json!({
        "traceId": trace_id,
        "spanId": span_id,
        "parentSpanId": parent.unwrap_or(""),
        "name": name,
        "kind": 1,
        "startTimeUnixNano": start_ns.to_string(),
        "endTimeUnixNano": (start_ns + duration_ms * 1_000_000).to_string(),
        "attributes": attributes,
        "status": { "code": if error { 2 } else { 1 } },
    })
}

/// An `ExportTraceServiceRequest` in OTLP JSON: one resource, one Strands scope.
pub fn export_request(resource: Vec<Value>, spans: Vec<Value>) -> Value {
    json!({
        "resourceSpans": [{
            "resource": { "attributes": resource },
            "scopeSpans": [{ "scope": { "name": "strands.telemetry.tracer" }, "spans": spans }],
        }]
    })
}

/// 2026-10-02T00:00:00Z in nanoseconds.
const DAY_NS: u64 = 1_790_899_200_000_000_000;

/// A Strands-shaped request of 5 spans for load tests: an `invoke_agent` root, an event loop
/// cycle, a `chat` and two `execute_tool` spans (the second failing). Ids come from `run`
/// (distinct per test) and `n` (distinct per request). Returns the body and the spans'
/// `trace_id:span_id` keys.
pub fn load_request(run: u32, n: u32) -> (Vec<u8>, Vec<String>) {
    let trace = format!("{run:08x}{:024x}", u64::from(n) + 1);
    let id = |k: u32| format!("{:08x}{:08x}", n + 1, k + 1);
    let tenant = format!("clinic-load-{}", n % 4);
    let ctx = |attrs: &mut Vec<Value>| {
        attrs.push(kv_str("tier", "basic"));
        attrs.push(kv_str("clinic_id", &tenant));
        attrs.push(kv_str("actor_id", &format!("basic-{tenant}-user-{}", n % 7)));
    };
    let start = DAY_NS + u64::from(n) * 10_000_000_000;
    /// Span number, parent's number, operation, tool, start offset and duration (ms), error.
    struct Part(u32, Option<u32>, &'static str, Option<&'static str>, u64, u64, bool);
    // Children first, the root last, as Strands exports them.
    let parts = [
        Part(1, Some(0), "chat", None, 5, 400, false),
        Part(2, Some(0), "execute_tool", Some("lookup"), 410, 30, false),
        Part(3, Some(0), "execute_tool", Some("notify"), 450, 20, true),
        Part(0, Some(4), "execute_event_loop_cycle", None, 2, 480, false),
        Part(4, None, "invoke_agent", None, 0, 500, false),
    ];
    let mut spans = Vec::new();
    let mut keys = Vec::new();
    for Part(k, parent, op, tool, offset_ms, duration_ms, error) in parts {
        let mut attrs = Vec::new();
        ctx(&mut attrs);
        attrs.push(kv_str("gen_ai.operation.name", op));
        let name = match (op, tool) {
            (_, Some(tool)) => {
                attrs.push(kv_str("gen_ai.tool.name", tool));
                format!("{op} {tool}")
            }
            ("invoke_agent", None) => "invoke_agent Load Agent".to_owned(),
            _ => op.to_owned(),
        };
        if op == "chat" || op == "invoke_agent" {
            attrs.push(kv_str("gen_ai.request.model", "mistral.ministral-3-8b-instruct"));
            attrs.push(kv_int("gen_ai.usage.input_tokens", 100));
            attrs.push(kv_int("gen_ai.usage.output_tokens", 10));
        }
        let parent = parent.map(id);
        let t = start + offset_ms * 1_000_000;
        spans.push(span(&trace, &id(k), parent.as_deref(), &name, t, duration_ms, error, attrs));
        keys.push(format!("{trace}:{}", id(k)));
    }
    let body = export_request(vec![kv_str("service.name", "load")], spans);
    (serde_json::to_vec(&body).unwrap(), keys)
}

/// Whether the lake has written any `agent_spans` file.
fn has_spans(lake: &Path) -> bool {
    files_under(&lake.join("agent_spans")).iter().any(|f| f.ends_with(".parquet"))
}

/// `trace_id:span_id` of every row of `agent_spans`, sorted (repeats kept).
pub fn lake_span_keys(lake: &Path) -> Vec<String> {
    if !has_spans(lake) {
        return Vec::new();
    }
    let sql = format!(
        "SELECT trace_id || ':' || span_id AS k FROM {} ORDER BY k",
        table(lake, "agent_spans")
    );
    duckdb(&sql).into_iter().map(|r| r["k"].as_str().unwrap().to_owned()).collect()
}

/// Rows of `agent_spans` and distinct (trace id, span id) among them.
pub fn lake_span_counts(lake: &Path) -> (i64, i64) {
    if !has_spans(lake) {
        return (0, 0);
    }
    let t = table(lake, "agent_spans");
    (
        duckdb_int(&format!("SELECT count(*) FROM {t}")),
        duckdb_int(&format!("SELECT count(DISTINCT trace_id || ':' || span_id) FROM {t}")),
    )
}

/// Files left in the write-ahead log directory.
/// The write-ahead log's segments (the receiver's lock file aside).
pub fn wal_files(lake: &Path) -> Vec<String> {
    files_under(&lake.join("_wal")).into_iter().filter(|f| f.ends_with(".ndjson")).collect()
}

/// The lake's quarantine entries (every line of `_quarantine/*.jsonl`).
pub fn quarantine_entries(lake: &Path) -> Vec<Value> {
    let dir = lake.join("_quarantine");
    files_under(&dir)
        .iter()
        .filter(|f| f.ends_with(".jsonl"))
        .flat_map(|f| {
            let text = std::fs::read_to_string(dir.join(f)).unwrap();
            text.lines().map(|l| serde_json::from_str(l).unwrap()).collect::<Vec<Value>>()
        })
        .collect()
}

/// Every file of the lake, with its bytes.
pub fn lake_files(lake: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    files_under(lake).iter().map(|f| (lake.join(f), std::fs::read(lake.join(f)).unwrap())).collect()
}
