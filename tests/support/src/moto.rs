//! moto in server mode, the local AWS, for tests of the real AWS clients (FORMATS.md
//! appendix A).
//!
//! Each test starts its own server on a free loopback port; it is killed when the
//! [`MotoServer`] is dropped, so tests run in parallel without sharing state. Clients are
//! built as in production with only the endpoint changed (`endpoint_url(moto.endpoint())` or
//! `AWS_ENDPOINT_URL` in a child process's environment).
//!
//! The executable is `$AGENTMETER_MOTO_SERVER` (set by `scripts/test`), else
//! `<workspace>/.venv/bin/moto_server`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// How long moto may take to start and answer.
const START_TIMEOUT: Duration = Duration::from_secs(15);
/// How long one HTTP exchange with moto may take.
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of moto's stderr kept for diagnostics.
const LOG_LINES: usize = 2000;

/// A running `moto_server` on 127.0.0.1, killed on drop.
pub struct MotoServer {
    port: u16,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl MotoServer {
    /// The `moto_server` executable: `$AGENTMETER_MOTO_SERVER`, else the workspace's `.venv`.
    ///
    /// # Panics
    ///
    /// When it does not exist.
    pub fn executable() -> PathBuf {
        let path =
            std::env::var_os("AGENTMETER_MOTO_SERVER").map(PathBuf::from).unwrap_or_else(|| {
                PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
            });
        assert!(
            path.is_file(),
            "moto_server not found at {}: run scripts/test, which installs moto into .venv",
            path.display()
        );
        path
    }

    /// Starts `moto_server -H 127.0.0.1 -p 0` and waits (at most 15 s) until it answers.
    ///
    /// # Panics
    ///
    /// When moto is not installed, exits, or does not answer in time (with its output).
    pub fn start() -> Self {
        let executable = Self::executable();
        let mut child = Command::new(&executable)
            .args(["-H", "127.0.0.1", "-p", "0"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", executable.display()));
        let stderr = child.stderr.take().expect("stderr is piped");
        let log = Arc::new(Mutex::new(Vec::new()));
        let (port_tx, port_rx) = mpsc::sync_channel(1);
        // Drains stderr for the server's whole life (a full pipe would block moto, which logs
        // every request there) and reports the port from `Running on http://127.0.0.1:PORT`.
        let thread_log = Arc::clone(&log);
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                let line = strip_ansi(&line);
                if let Some(port) = line
                    .split_once("Running on http://127.0.0.1:")
                    .and_then(|(_, rest)| rest.trim().parse::<u16>().ok())
                {
                    let _ = port_tx.try_send(port);
                }
                let mut log = thread_log.lock().expect("log lock");
                if log.len() < LOG_LINES {
                    log.push(line);
                }
            }
        });

        let deadline = Instant::now() + START_TIMEOUT;
        let port = match port_rx.recv_timeout(START_TIMEOUT) {
            Ok(port) => port,
            Err(e) => {
                let _ = child.kill();
                let status = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                panic!(
                    "moto_server printed no port ({e}; exit: {status:?}); its output:\n{}",
                    log.lock().expect("log lock").join("\n")
                );
            }
        };
        let server = Self { port, child, log };
        server.wait_until_answering(deadline);
        server
    }

    fn wait_until_answering(&self, deadline: Instant) {
        loop {
            let answer = self.try_request("POST", "/moto-api/reset", b"");
            match answer {
                Ok((200, _)) => return,
                other if Instant::now() >= deadline => panic!(
                    "moto_server on port {} does not answer: {other:?}; its output:\n{}",
                    self.port,
                    self.log().join("\n")
                ),
                _ => std::thread::sleep(Duration::from_millis(50)),
            }
        }
    }

    /// The port moto listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `http://127.0.0.1:PORT`, for `endpoint_url` or `AWS_ENDPOINT_URL`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// moto's stderr so far (one line per request after the start-up banner).
    pub fn log(&self) -> Vec<String> {
        self.log.lock().expect("log lock").clone()
    }

    /// Queues `GetCostAndUsage` responses: each answers the next request whose body moto has
    /// not seen before (so one per page, in order); a request seen before gets the same
    /// answer again; when the queue is empty the answer is an empty result.
    ///
    /// # Panics
    ///
    /// When moto does not accept them.
    pub fn queue_cost_and_usage(&self, responses: &[Value]) {
        let (status, body) = self.post_json(
            "/moto-api/static/ce/cost-and-usage-results",
            &json!({ "results": responses }),
        );
        assert_eq!(status, 201, "moto refused the queued results: {body}");
    }

    /// Clears all of moto's state.
    pub fn reset(&self) {
        let (status, body) = self.request("POST", "/moto-api/reset", b"");
        assert_eq!(status, 200, "moto reset failed: {body}");
    }

    /// POSTs `body` as JSON to `path`; returns the status and the response body.
    ///
    /// # Panics
    ///
    /// On a connection or protocol failure.
    pub fn post_json(&self, path: &str, body: &Value) -> (u16, String) {
        self.request("POST", path, body.to_string().as_bytes())
    }

    /// One HTTP/1.1 exchange; panics on failure.
    pub fn request(&self, method: &str, path: &str, body: &[u8]) -> (u16, String) {
        self.try_request(method, path, body)
            .unwrap_or_else(|e| panic!("{method} {path} to moto failed: {e}"))
    }

    /// A tiny blocking HTTP/1.1 client (`Connection: close`, whole response read), so that
    /// tests need no HTTP crate.
    fn try_request(&self, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
        let address = SocketAddr::from(([127, 0, 0, 1], self.port));
        let mut stream = TcpStream::connect_timeout(&address, HTTP_TIMEOUT)?;
        stream.set_read_timeout(Some(HTTP_TIMEOUT))?;
        stream.set_write_timeout(Some(HTTP_TIMEOUT))?;
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n",
            self.port,
            body.len()
        );
        stream.write_all(head.as_bytes())?;
        stream.write_all(body)?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response)?;
        let response = String::from_utf8_lossy(&response);
        let invalid = || std::io::Error::new(std::io::ErrorKind::InvalidData, "not HTTP");
        let (head, body) = response.split_once("\r\n\r\n").ok_or_else(invalid)?;
        let status =
            head.split(' ').nth(1).and_then(|code| code.parse::<u16>().ok()).ok_or_else(invalid)?;
        Ok((status, body.to_owned()))
    }
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Removes terminal colour codes (`ESC [ ... m`), which werkzeug adds to its banner.
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starts_answers_and_stops() {
        let moto = MotoServer::start();
        assert!(moto.port() > 0);
        moto.reset();
        let (status, _) = moto.request("GET", "/moto-api/data.json", b"");
        assert_eq!(status, 200);
        let port = moto.port();
        drop(moto);
        let gone =
            TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), HTTP_TIMEOUT);
        assert!(gone.is_err(), "moto still listens on {port} after drop");
    }

    #[test]
    fn colour_codes_are_stripped() {
        assert_eq!(strip_ansi("\u{1b}[31m\u{1b}[1mWARNING\u{1b}[0m x"), "WARNING x");
    }
}
