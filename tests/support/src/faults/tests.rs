//! The proxy's unit tests: operation names, chunked framing, the seeded draw, and one
//! kept-alive connection through a real proxy.

use std::collections::BTreeMap;
use std::io::{BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::http::{Request, header, read_body, read_head};
use super::plan::{Counts, State};
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
        let mut s = State { rng: 7, plan: plan.clone(), active: true, counts: Counts::default() };
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
                let mut a = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", body.len())
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
    assert_eq!(answer(&mut r, false).unwrap(), ("HTTP/1.1 200 OK".to_owned(), b"abcde".to_vec()));
    // 2: Expect: 100-continue, answered by the proxy before the body is sent.
    client
        .write_all(
            b"POST /hook HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
        )
        .unwrap();
    assert_eq!(read_head(&mut r).unwrap().0, "HTTP/1.1 100 Continue");
    client.write_all(b"hi").unwrap();
    assert_eq!(answer(&mut r, false).unwrap().1, b"hi");
    // 3: a HEAD: a length, no body, and the connection still usable.
    client.write_all(b"HEAD /b/k HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
    assert_eq!(answer(&mut r, true).unwrap().0, "HTTP/1.1 200 OK");
    // 4: cut: the head promises 6 bytes, 3 come, then the end.
    client.write_all(b"PUT /b/k HTTP/1.1\r\nHost: x\r\nContent-Length: 6\r\n\r\nabcdef").unwrap();
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
