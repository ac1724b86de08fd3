//! HTTP/1.1 framing as the proxy needs it: heads and bodies (by length, by chunks, to the
//! end), requests named by their operation, answers re-framed for the client, and the
//! throttling and server errors in the protocol a request spoke.

use std::io::{BufRead, Read, Write};
use std::net::TcpStream;

/// Longest request or answer head.
const MAX_HEAD: usize = 64 << 10;
/// Largest body forwarded either way.
const MAX_BODY: usize = 256 << 20;
/// Most chunks in one chunked body.
const MAX_CHUNKS: usize = 1 << 20;

/// One request as the proxy sees it.
pub(super) struct Request {
    /// Head lines after the request line, as received (no blank line).
    pub(super) headers: Vec<String>,
    pub(super) method: String,
    /// The request target as sent (path and query).
    pub(super) target: String,
    /// The target without its query.
    pub(super) path: String,
    pub(super) op: String,
    pub(super) body: Vec<u8>,
    /// The client asked to close after this request.
    pub(super) close: bool,
}

pub(super) fn header<'a>(lines: &'a [String], name: &str) -> Option<&'a str> {
    lines.iter().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

pub(super) fn without(lines: Vec<String>, names: &[&str]) -> Vec<String> {
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
pub(super) fn read_head(r: &mut impl BufRead) -> Option<(String, Vec<String>)> {
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
pub(super) fn read_body(
    r: &mut impl BufRead,
    headers: &mut Vec<String>,
    to_end: bool,
) -> Option<Vec<u8>> {
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
pub(super) fn read_request(r: &mut impl BufRead, client: &mut TcpStream) -> Option<Request> {
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
pub(super) struct Answer {
    pub(super) status_line: String,
    pub(super) headers: Vec<String>,
    pub(super) body: Vec<u8>,
    /// It has no body whatever its headers say (a HEAD's answer, 1xx, 204, 304).
    pub(super) bodiless: bool,
}

impl Answer {
    /// The head as sent to the client: its own framing, no connection header of the
    /// upstream's, `Connection: close` if the proxy closes after it.
    pub(super) fn head(&self, close: bool) -> Vec<u8> {
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

/// The error a throttled or failed request gets, in the protocol it spoke.
pub(super) fn error_answer(req: &Request, throttle: bool) -> Answer {
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

/// Sends an answer whole; false if the client is gone.
pub(super) fn send(out: &mut TcpStream, answer: &Answer, close: bool) -> bool {
    out.write_all(&answer.head(close))
        .and_then(|()| if answer.bodiless { Ok(()) } else { out.write_all(&answer.body) })
        .and_then(|()| out.flush())
        .is_ok()
}
