//! The receiver: it listens on 127.0.0.1:4318 by default (and beyond loopback only when told,
//! with a warning), and a request without the right bearer token is refused with nothing of it
//! written to the lake, the quarantine, the write-ahead log or the metrics.

use super::{Serve, raw_bin};
use crate::otlp_client::{STRANDS_FIXTURE, request};
use crate::util::*;

#[test]
fn the_receiver_listens_on_loopback_by_default_and_writes_nothing_unauthenticated() {
    let help = ok(bin().args(["serve", "--help"]));
    assert!(String::from_utf8_lossy(&help.stdout).contains("[default: 127.0.0.1:4318]"));
    let config = ok(bin().args(["example", "config"]));
    assert!(String::from_utf8_lossy(&config.stdout).contains("listen = \"127.0.0.1:4318\""));

    let dir = tempfile::tempdir().unwrap();
    let (lake, wal) = (dir.path().join("lake"), dir.path().join("wal"));
    let token = dir.path().join("token");
    std::fs::write(&token, "receiver-token-1c9e\n").unwrap();
    let mut cmd = raw_bin();
    cmd.args(["serve", "--flush-interval-ms", "100", "--lake"])
        .arg(&lake)
        .arg("--wal-dir")
        .arg(&wal)
        .arg("--auth-token-file")
        .arg(&token);
    // Without --otlp-http (the port must be free on this machine).
    let server = Serve::start(cmd);
    assert_eq!(server.addr, "127.0.0.1:4318".parse().unwrap());
    // The kernel's view: the one socket listening on 4318 is on 127.0.0.1 (0100007F).
    let tcp = std::fs::read_to_string("/proc/net/tcp").unwrap();
    let listening: Vec<&str> = tcp
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f[3] == "0A" && f[1].ends_with(":10DE")).then_some(f[1])
        })
        .collect();
    assert_eq!(listening, ["0100007F:10DE"]);
    let v6 = std::fs::read_to_string("/proc/net/tcp6").unwrap_or_default();
    assert!(!v6.lines().any(|l| l.split_whitespace().nth(1).is_some_and(|a| a.ends_with(":10DE"))));

    let json_body = STRANDS_FIXTURE.as_bytes();
    let gzipped = crate::otlp_client::gzip(json_body);
    let huge = vec![b'x'; 32 << 20];
    let ct = ("Content-Type", "application/json");
    let proto = ("Content-Type", "application/x-protobuf");
    let gz = ("Content-Encoding", "gzip");
    let wrong = ("Authorization", "Bearer receiver-token-1c9ex");
    let basic = ("Authorization", "Basic receiver-token-1c9e");
    let empty = ("Authorization", "Bearer ");
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let tries: Vec<(Headers, &[u8])> = vec![
        (vec![ct], json_body),
        (vec![ct, wrong], json_body),
        (vec![ct, basic], json_body),
        (vec![ct, empty], json_body),
        (vec![ct, gz, wrong], &gzipped),
        (vec![proto, wrong], b"\x0a\x00"),
        (vec![ct], &huge),
    ];
    for (headers, body) in &tries {
        let r = request(server.port(), "POST", "/v1/traces", headers, body).unwrap();
        assert_eq!(r.status, 401, "{headers:?}: {}", r.text());
    }
    let r = request(server.port(), "GET", "/metrics", &[], b"").unwrap();
    assert_eq!(r.status, 200);
    let metrics = r.text();
    assert_eq!(crate::otlp_client::metric(&metrics, "agentmeter_otlp_spans_received_total"), 0);
    assert_eq!(crate::otlp_client::metric(&metrics, "agentmeter_otlp_received_bytes_total"), 0);
    let (status, _) = server.stop();
    assert!(status.success());
    // Nothing of the requests anywhere: no table, no quarantine, nothing in the log.
    let written: Vec<String> =
        files_under(&lake).into_iter().filter(|f| !f.starts_with("_state/")).collect();
    assert_eq!(written, Vec::<String>::new());
    for f in files_under(&wal) {
        let bytes = std::fs::read(wal.join(&f)).unwrap();
        assert!(!bytes.windows(8).any(|w| w == b"clinic-a"), "{f} holds a span");
    }

    // Beyond loopback only when told, and then with a warning.
    let mut cmd = raw_bin();
    cmd.args(["--log-format", "text", "serve", "--otlp-http", "0.0.0.0:0", "--lake"])
        .arg(&lake)
        .arg("--wal-dir")
        .arg(&wal);
    let server = Serve::start(cmd);
    assert!(server.addr.ip().is_unspecified());
    let (_, printed) = server.stop();
    let printed = String::from_utf8_lossy(&printed);
    assert!(printed.contains("Listening beyond loopback: put TLS and a bearer token in front."));
}
