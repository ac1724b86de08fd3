//! A fault-injecting HTTP proxy for tests: it sits on 127.0.0.1 in front of an upstream
//! (moto in server mode, a webhook receiver) and, by a seeded schedule, answers some requests
//! with throttling errors or 5xx, delays them, drops the connection before or after the
//! upstream applied them, or cuts the response body short. The code under test points its
//! endpoint (`AWS_ENDPOINT_URL`) at [`FaultProxy::endpoint`]; nothing else differs.
//!
//! Each request is forwarded on a connection of its own (`Connection: close`), so that a
//! dropped or cut response never leaves a half-read stream behind.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the proxy may do to one request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Fault {
    /// 503 SlowDown (S3) or 400 ThrottlingException (JSON protocols), upstream untouched.
    Throttle,
    /// 500 InternalError, upstream untouched.
    ServerError,
    /// Forwarded after a delay.
    Slow,
    /// The connection closed before the request reached the upstream.
    DropBefore,
    /// Forwarded (the upstream applied it), then the connection closed with no answer.
    DropAfter,
    /// Forwarded, then the answer's body cut short and the connection closed.
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

/// The schedule: in `permille` of requests one fault, chosen evenly among `faults`.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub seed: u64,
    pub permille: u64,
    pub faults: Vec<Fault>,
    /// Requests let through untouched before any fault (the test's own setup calls).
    pub grace: u64,
}

struct State {
    schedule: Schedule,
    rng: u64,
    seen: u64,
    injected: BTreeMap<Fault, u64>,
}

impl State {
    fn next(&mut self) -> Option<Fault> {
        self.seen += 1;
        self.rng = self
            .rng
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let r = self.rng >> 33;
        if self.seen <= self.schedule.grace
            || self.schedule.faults.is_empty()
            || r % 1000 >= self.schedule.permille
        {
            return None;
        }
        let f = self.schedule.faults[(r / 1000) as usize % self.schedule.faults.len()];
        *self.injected.entry(f).or_default() += 1;
        Some(f)
    }
}

/// A running proxy; stopped on drop.
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
    /// If no loopback port can be bound.
    pub fn start(upstream: u16, schedule: Schedule) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1");
        let port = listener.local_addr().expect("address").port();
        listener.set_nonblocking(true).expect("non-blocking listener");
        let state = Arc::new(Mutex::new(State {
            rng: schedule.seed,
            schedule,
            seen: 0,
            injected: BTreeMap::new(),
        }));
        let stop = Arc::new(AtomicBool::new(false));
        let (st, stp) = (Arc::clone(&state), Arc::clone(&stop));
        let accept = std::thread::spawn(move || {
            while !stp.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((client, _)) => {
                        let st = Arc::clone(&st);
                        std::thread::spawn(move || serve(client, upstream, &st));
                    }
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

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<Fault, u64> {
        self.state.lock().map(|s| s.injected.clone()).unwrap_or_default()
    }

    /// Requests seen so far.
    pub fn requests(&self) -> u64 {
        self.state.lock().map(|s| s.seen).unwrap_or_default()
    }

    /// Turns faults off (or on again) for the requests that follow.
    pub fn set_permille(&self, permille: u64) {
        if let Ok(mut s) = self.state.lock() {
            s.schedule.permille = permille;
        }
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

/// One HTTP/1.1 message read whole: the head (without its blank line) and the body.
struct Message {
    head: String,
    body: Vec<u8>,
}

fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

/// Reads one message; a body by `Content-Length`, by chunks, or (for a response) to the end.
/// A request's `Expect: 100-continue` is answered on `client` before its body is read, and the
/// header dropped (the upstream gets the body at once).
fn read_message(
    r: &mut BufReader<TcpStream>,
    response: bool,
    client: Option<&mut TcpStream>,
) -> Option<Message> {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        if line == "\r\n" || line == "\n" {
            break;
        }
        head.push_str(&line);
        if head.len() > 1 << 20 {
            return None;
        }
    }
    if let Some(c) = client
        && header(&head, "expect").is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
    {
        c.write_all(b"HTTP/1.1 100 Continue\r\n\r\n").ok()?;
        head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("expect:"))
            .map(|l| format!("{l}\r\n"))
            .collect();
    }
    let mut body = Vec::new();
    if let Some(n) = header(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(n, 0);
        r.read_exact(&mut body).ok()?;
    } else if header(&head, "transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim().split(';').next()?, 16).ok()?;
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
        // Re-sent with a length: drop the chunked framing from the head.
        head = head
            .lines()
            .filter(|l| !l.to_ascii_lowercase().starts_with("transfer-encoding"))
            .map(|l| format!("{l}\r\n"))
            .collect::<String>()
            + &format!("Content-Length: {}\r\n", body.len());
    } else if response {
        r.read_to_end(&mut body).ok()?;
    }
    Some(Message { head, body })
}

/// The head with `Connection: close` in place of any connection header.
fn closing(head: &str) -> String {
    let mut out: String = head
        .lines()
        .filter(|l| !l.to_ascii_lowercase().starts_with("connection:"))
        .map(|l| format!("{l}\r\n"))
        .collect();
    out.push_str("Connection: close\r\n");
    out
}

fn forward(req: &Message, upstream: u16) -> Option<Message> {
    let mut up = TcpStream::connect(("127.0.0.1", upstream)).ok()?;
    up.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    up.write_all(closing(&req.head).as_bytes()).ok()?;
    up.write_all(b"\r\n").ok()?;
    up.write_all(&req.body).ok()?;
    read_message(&mut BufReader::new(up), true, None)
}

fn respond(client: &mut TcpStream, status: &str, content_type: &str, extra: &str, body: &str) {
    let _ = write!(
        client,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n{body}",
        body.len()
    );
}

/// The error a throttled or failed request gets, in the protocol it spoke.
fn error(client: &mut TcpStream, req: &Message, throttle: bool) {
    if header(&req.head, "x-amz-target").is_some() {
        let kind = if throttle { "ThrottlingException" } else { "InternalFailure" };
        let status = if throttle { "400 Bad Request" } else { "500 Internal Server Error" };
        let body = format!(r#"{{"__type":"{kind}","message":"injected"}}"#);
        let extra = format!("x-amzn-ErrorType: {kind}\r\n");
        respond(client, status, "application/x-amz-json-1.1", &extra, &body);
    } else {
        let (status, code) = if throttle {
            ("503 Slow Down", "SlowDown")
        } else {
            ("500 Internal Server Error", "InternalError")
        };
        let body = format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected</Message></Error>"
        );
        respond(client, status, "application/xml", "", &body);
    }
}

fn serve(client: TcpStream, upstream: u16, state: &Mutex<State>) {
    let _ = client.set_read_timeout(Some(Duration::from_secs(30)));
    let Ok(mut out) = client.try_clone() else { return };
    let mut reader = BufReader::new(client);
    let Some(req) = read_message(&mut reader, false, Some(&mut out)) else { return };
    let fault = state.lock().ok().and_then(|mut s| s.next());
    match fault {
        Some(Fault::Throttle) => error(&mut out, &req, true),
        Some(Fault::ServerError) => error(&mut out, &req, false),
        Some(Fault::DropBefore) => {}
        Some(f) => {
            if f == Fault::Slow {
                std::thread::sleep(Duration::from_millis(300));
            }
            let Some(resp) = forward(&req, upstream) else { return };
            match f {
                Fault::DropAfter => {}
                Fault::Truncate if !resp.body.is_empty() => {
                    let _ = out.write_all(closing(&resp.head).as_bytes());
                    let _ = out.write_all(b"\r\n");
                    let _ = out.write_all(&resp.body[..resp.body.len() / 2]);
                }
                _ => write_back(&mut out, &resp),
            }
        }
        None => {
            if let Some(resp) = forward(&req, upstream) {
                write_back(&mut out, &resp);
            }
        }
    }
    let _ = out.flush();
    let _ = out.shutdown(Shutdown::Both);
}

fn write_back(out: &mut TcpStream, resp: &Message) {
    let mut head = closing(&resp.head);
    if header(&head, "content-length").is_none() {
        head.push_str(&format!("Content-Length: {}\r\n", resp.body.len()));
    }
    let _ = out.write_all(head.as_bytes());
    let _ = out.write_all(b"\r\n");
    let _ = out.write_all(&resp.body);
}
