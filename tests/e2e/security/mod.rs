//! Security, one module per concern:
//!
//! - [`isolation`]: every per-tenant artefact of every command, and every answer of the usage
//!   API to a tenant's token, holds that tenant alone;
//! - [`secrets`]: secrets appear in no log line, error, answer or file, whatever the log level;
//! - [`receiver`]: the receiver binds to loopback and writes nothing unauthenticated;
//! - [`hostile_ids`]: hostile ids are refused or escaped wherever an id enters.
//!
//! The helpers they share (the binary without log options, `serve` run by hand, an
//! authenticated `GET`, a token's key in a token file) are here.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::otlp_client::{PROCESS_WAIT, request};

mod hostile_ids;
mod isolation;
mod receiver;
mod secrets;

/// How a token file names `token`: its SHA-256 digest.
fn sha256_key(token: &str) -> String {
    use sha2::Digest;
    format!("sha256:{}", hex::encode(sha2::Sha256::digest(token.as_bytes())))
}

/// The binary with no log options set: each test chooses the level and format itself.
fn raw_bin() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_agentmeter"));
    c.env_remove("AGENTMETER_LOG")
        .env_remove("AGENTMETER_OTLP_TOKEN")
        .env_remove("AGENTMETER_PUSH_TOKEN")
        .env_remove("AGENTMETER_WEBHOOK_SECRET")
        .env_remove("AGENTMETER_WEBHOOK_SECRET_FILE");
    c
}

/// `agentmeter serve` started by hand (its address, log options and environment are the
/// test's), stopped with SIGTERM; stdout and stderr kept whole.
struct Serve {
    child: Child,
    addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
}

impl Serve {
    fn start(mut cmd: Command) -> Serve {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn agentmeter serve");
        let out = child.stdout.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut err = child.stderr.take().unwrap();
        let stderr = std::thread::spawn(move || {
            let mut s = Vec::new();
            let _ = std::io::Read::read_to_end(&mut err, &mut s);
            String::from_utf8_lossy(&s).into_owned()
        });
        let deadline = Instant::now() + PROCESS_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(addr) = line.strip_prefix("listening on http://") {
                        let addr = addr.trim().parse().unwrap();
                        return Serve { child, addr, lines, stderr: Some(stderr) };
                    }
                }
                Err(e) => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!("serve printed no address ({e:?}): {}", stderr.join().unwrap());
                }
            }
        }
    }

    fn port(&self) -> u16 {
        self.addr.port()
    }

    /// SIGTERM; the exit status and everything printed.
    fn stop(mut self) -> (std::process::ExitStatus, Vec<u8>) {
        let pid = self.child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
        let deadline = Instant::now() + PROCESS_WAIT;
        let status = loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                break s;
            }
            assert!(Instant::now() < deadline, "serve did not stop");
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut printed: Vec<u8> = Vec::new();
        while let Ok(l) = self.lines.recv_timeout(Duration::from_secs(5)) {
            printed.extend(l.as_bytes());
            printed.push(b'\n');
        }
        printed.extend(self.stderr.take().unwrap().join().unwrap().into_bytes());
        (status, printed)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `GET path` with `token` as the bearer token: the status and body.
fn get(port: u16, path: &str, token: &str) -> (u16, Vec<u8>) {
    let auth = format!("Bearer {token}");
    let r = request(port, "GET", path, &[("Authorization", &auth)], b"").unwrap();
    (r.status, r.body)
}
