//! The proxy itself: a listener on a loopback port, a thread per client connection serving
//! its requests in turn (each forwarded to the upstream on a connection of its own), and the
//! faults applied where the plan says.

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::http::{
    Answer, Request, error_answer, read_body, read_head, read_request, send, without,
};
use super::plan::{Counts, DEFAULT_DELAY, Fault, Injection, Plan, State};

/// Most requests on one client connection.
const MAX_REQUESTS_PER_CONNECTION: usize = 10_000;
/// Most client connections over the proxy's life.
const MAX_CONNECTIONS: usize = 100_000;
/// The longest a proxy accepts connections (a test that runs longer is broken anyway).
const MAX_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// The longest a client connection may sit idle, and an upstream may take to answer.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

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

    /// Requests seen so far by [`operation`](super::operation).
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
