//! The OTLP/HTTP receiver: `POST /v1/traces` (protobuf or JSON, optionally gzip), answering
//! as the OTLP specification says, plus `GET /metrics` (Prometheus text) and `GET /health`.
//!
//! A request is answered 200 only after its spans (and its refused spans, bound for the
//! quarantine) are durable in the [`DurableSink`] (the write-ahead log): an acknowledged span
//! is never lost. Answers:
//!
//! | status | when |
//! |---|---|
//! | 200 | accepted; `partial_success` counts spans refused (quarantined, not retryable) |
//! | 400 | the body is not an `ExportTraceServiceRequest` (do not retry) |
//! | 401 | a bearer token is required and missing or wrong |
//! | 413 | the body, as sent or after decompression, is over the limit |
//! | 415 | the content type is neither `application/x-protobuf` nor `application/json` |
//! | 503 + `Retry-After` | too many requests in flight, the log is behind, or shutting down |
//!
//! Error bodies are `google.rpc.Status`, in the request's encoding.

use std::future::Future;
use std::io::Read;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use agentmeter_schemas::SourceUri;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use http_body_util::{BodyExt, LengthLimitError, Limited};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTracePartialSuccess, ExportTraceServiceResponse,
};
use prost::Message;
use tokio::sync::Semaphore;

use crate::config::DecodeConfig;
use crate::decode::{Decoded, Outcome};
use crate::otlp::{decode_json, decode_proto};

/// Where accepted outcomes go; `accept` returns once they are durable.
pub trait DurableSink: Send + Sync + 'static {
    /// Makes the outcomes of one request durable. An error means "not accepted, retry later".
    fn accept(
        &self,
        outcomes: Vec<Outcome>,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>>;
}

/// Receiver settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Bearer token required on `/v1/traces`, if any (never logged).
    pub auth_token: Option<String>,
    /// Largest body, after decompression, in bytes.
    pub max_body_bytes: usize,
    /// Requests decoded or waiting on the log at once; more get 503.
    pub max_in_flight: usize,
    /// Tenant field and limits of the decoder.
    pub decode: DecodeConfig,
    /// The source recorded on every span (`otlp-http://ADDR`).
    pub source: SourceUri,
}

/// The receiver's counters, shown at `/metrics`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Requests to `/v1/traces`, by status class.
    pub requests_ok: AtomicU64,
    /// Requests refused with 4xx.
    pub requests_client_error: AtomicU64,
    /// Requests refused with 5xx (busy, shutting down, log failure).
    pub requests_unavailable: AtomicU64,
    /// Body bytes received (before decompression).
    pub bytes_received: AtomicU64,
    /// Spans received in accepted requests.
    pub spans_received: AtomicU64,
    /// Spans refused (quarantined) in accepted requests.
    pub spans_rejected: AtomicU64,
    /// Spans written to the lake (set by the lake writer).
    pub spans_written: AtomicU64,
    /// Spans dropped as duplicates by the lake writer.
    pub spans_duplicate: AtomicU64,
    /// Records quarantined by the lake writer.
    pub spans_quarantined: AtomicU64,
    /// Bytes of closed log segments not yet flushed into the lake (set by the receiver):
    /// past [`Metrics::log_backlog_limit`], requests are answered 503 until the flushes catch
    /// up.
    pub log_backlog_bytes: AtomicU64,
    /// The most [`Metrics::log_backlog_bytes`] may be while requests are taken; 0: no limit.
    pub log_backlog_limit: AtomicU64,
    /// Set by `agentmeter run`: the stream and schedule counters below are rendered too.
    pub daemon: std::sync::atomic::AtomicBool,
    /// Kinesis records read (`agentmeter run`).
    pub stream_records: AtomicU64,
    /// Kinesis checkpoints saved.
    pub stream_checkpoints: AtomicU64,
    /// Flag evaluations run on the schedule.
    pub flag_runs: AtomicU64,
    /// Flag evaluations that failed.
    pub flag_failures: AtomicU64,
    /// Why the receiver cannot take requests now (its log cannot be written), if so: `/health`
    /// answers 503 with it until a write succeeds again.
    pub unavailable: std::sync::Mutex<Option<String>>,
}

impl Metrics {
    /// Marks the receiver unable (`Some(why)`) or able (`None`) to take requests.
    pub fn set_unavailable(&self, why: Option<String>) {
        *self.unavailable.lock().unwrap_or_else(std::sync::PoisonError::into_inner) = why;
    }

    /// Why the receiver cannot take requests, if so.
    pub fn unavailable(&self) -> Option<String> {
        self.unavailable.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Why requests are refused while the lake is behind the log (its backlog over its
    /// limit), if they are.
    pub fn behind(&self) -> Option<String> {
        let limit = self.log_backlog_limit.load(Ordering::Relaxed);
        let backlog = self.log_backlog_bytes.load(Ordering::Relaxed);
        (limit > 0 && backlog > limit).then(|| {
            format!(
                "the lake is behind: {} MiB of acknowledged spans wait in the write-ahead log \
                 to be flushed (the limit is {} MiB)",
                backlog >> 20,
                limit >> 20
            )
        })
    }
}

impl Metrics {
    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut out = String::new();
        let mut metric = |kind: &str, name: &str, help: &str, lines: &[(&str, u64)]| {
            out.push_str(&format!("# HELP {name} {help}\n# TYPE {name} {kind}\n"));
            for (labels, v) in lines {
                out.push_str(&format!("{name}{labels} {v}\n"));
            }
        };
        metric(
            "counter",
            "agentmeter_otlp_requests_total",
            "OTLP/HTTP trace export requests by outcome.",
            &[
                ("{outcome=\"ok\"}", g(&self.requests_ok)),
                ("{outcome=\"client_error\"}", g(&self.requests_client_error)),
                ("{outcome=\"unavailable\"}", g(&self.requests_unavailable)),
            ],
        );
        metric(
            "counter",
            "agentmeter_otlp_received_bytes_total",
            "Request body bytes read (as sent; bodies of requests refused on their headers are not read).",
            &[("", g(&self.bytes_received))],
        );
        metric(
            "counter",
            "agentmeter_otlp_spans_received_total",
            "Spans in accepted requests.",
            &[("", g(&self.spans_received))],
        );
        metric(
            "counter",
            "agentmeter_otlp_spans_rejected_total",
            "Spans refused (quarantined) in accepted requests.",
            &[("", g(&self.spans_rejected))],
        );
        metric(
            "counter",
            "agentmeter_otlp_spans_written_total",
            "Spans written to the lake.",
            &[("", g(&self.spans_written))],
        );
        metric(
            "counter",
            "agentmeter_otlp_spans_duplicate_total",
            "Spans dropped as duplicates.",
            &[("", g(&self.spans_duplicate))],
        );
        metric(
            "counter",
            "agentmeter_otlp_spans_quarantined_total",
            "Spans written to the quarantine.",
            &[("", g(&self.spans_quarantined))],
        );
        metric(
            "gauge",
            "agentmeter_otlp_log_backlog_bytes",
            "Acknowledged spans waiting in the write-ahead log to be flushed into the lake, bytes.",
            &[("", g(&self.log_backlog_bytes))],
        );
        if self.daemon.load(Ordering::Relaxed) {
            metric(
                "counter",
                "agentmeter_stream_records_total",
                "Kinesis records read.",
                &[("", g(&self.stream_records))],
            );
            metric(
                "counter",
                "agentmeter_stream_checkpoints_total",
                "Kinesis checkpoints saved (after the data they cover was committed).",
                &[("", g(&self.stream_checkpoints))],
            );
            metric(
                "counter",
                "agentmeter_flag_runs_total",
                "Scheduled flag evaluations, by outcome.",
                &[
                    ("{outcome=\"ok\"}", g(&self.flag_runs)),
                    ("{outcome=\"failed\"}", g(&self.flag_failures)),
                ],
            );
        }
        out
    }
}

/// `google.rpc.Status` (code and message), the body of OTLP error responses.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Encoding {
    Proto,
    Json,
}

impl Encoding {
    fn content_type(self) -> &'static str {
        match self {
            Encoding::Proto => "application/x-protobuf",
            Encoding::Json => "application/json",
        }
    }
}

struct AppState<S> {
    cfg: ServerConfig,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    permits: Semaphore,
}

fn error(
    encoding: Encoding,
    status: StatusCode,
    grpc: i32,
    message: &str,
    retry_after: Option<u32>,
) -> Response {
    let body = match encoding {
        Encoding::Proto => RpcStatus { code: grpc, message: message.to_owned() }.encode_to_vec(),
        Encoding::Json => {
            serde_json::json!({ "code": grpc, "message": message }).to_string().into_bytes()
        }
    };
    let mut r = (status, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    if let Some(s) = retry_after {
        r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(s));
    }
    r
}

/// Constant-time comparison, so a wrong token reveals nothing by timing.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn inflate(body: &[u8], cap: usize) -> Result<Vec<u8>, bool> {
    let mut out = Vec::new();
    let mut dec = flate2::read::MultiGzDecoder::new(body).take(cap as u64 + 1);
    dec.read_to_end(&mut out).map_err(|_| false)?;
    if out.len() > cap {
        return Err(true);
    }
    Ok(out)
}

async fn traces<S: DurableSink>(
    State(st): State<Arc<AppState<S>>>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let m = &st.metrics;
    let ct = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or("");
    let mime = ct.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    let encoding = match mime.as_str() {
        "application/x-protobuf" | "application/protobuf" => Some(Encoding::Proto),
        "application/json" => Some(Encoding::Json),
        _ => None,
    };
    if let Some(token) = &st.cfg.auth_token {
        let given = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if !given.is_some_and(|g| same(g.as_bytes(), token.as_bytes())) {
            m.requests_client_error.fetch_add(1, Ordering::Relaxed);
            let mut r = error(
                encoding.unwrap_or(Encoding::Json),
                StatusCode::UNAUTHORIZED,
                16,
                "missing or wrong bearer token",
                None,
            );
            r.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return r;
        }
    }
    // After authentication: an unauthenticated client learns nothing about the body.
    let Some(encoding) = encoding else {
        m.requests_client_error.fetch_add(1, Ordering::Relaxed);
        return error(
            Encoding::Json,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            3,
            &format!(
                "unsupported content type {ct:?}: use application/x-protobuf or application/json"
            ),
            None,
        );
    };
    let Ok(_permit) = st.permits.try_acquire() else {
        m.requests_unavailable.fetch_add(1, Ordering::Relaxed);
        return error(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            14,
            "too many requests in flight",
            Some(1),
        );
    };
    // Acknowledged spans the lake cannot take yet fill the log's disk: refused before the body
    // is read, until the flushes catch up.
    if let Some(why) = m.behind() {
        m.requests_unavailable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %why, "Spans not accepted; the client will retry.");
        return error(encoding, StatusCode::SERVICE_UNAVAILABLE, 14, &why, Some(1));
    }
    // Read only now (after authentication and admission), and never past the limit: a
    // compressed body may not exceed it either.
    let body: Bytes = match Limited::new(body, st.cfg.max_body_bytes).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            m.requests_client_error.fetch_add(1, Ordering::Relaxed);
            let (status, code, msg) = if e.downcast_ref::<LengthLimitError>().is_some() {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    8,
                    format!("body is over {} bytes", st.cfg.max_body_bytes),
                )
            } else {
                (StatusCode::BAD_REQUEST, 3, format!("reading the body: {e}"))
            };
            return error(encoding, status, code, &msg, None);
        }
    };
    m.bytes_received.fetch_add(body.len() as u64, Ordering::Relaxed);
    let gzip = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("gzip"));
    let cap = st.cfg.max_body_bytes;
    let st2 = Arc::clone(&st);
    let decoded =
        tokio::task::spawn_blocking(move || -> Result<Decoded, (StatusCode, i32, String)> {
            let raw = if gzip {
                inflate(&body, cap).map_err(|too_big| {
                    if too_big {
                        (
                            StatusCode::PAYLOAD_TOO_LARGE,
                            8,
                            format!("body inflates to over {cap} bytes"),
                        )
                    } else {
                        (StatusCode::BAD_REQUEST, 3, "body is not valid gzip".to_owned())
                    }
                })?
            } else if body.len() > cap {
                return Err((
                    StatusCode::PAYLOAD_TOO_LARGE,
                    8,
                    format!("body is over {cap} bytes"),
                ));
            } else {
                body.to_vec()
            };
            let cfg = &st2.cfg;
            match encoding {
                Encoding::Proto => decode_proto(&raw, &cfg.source, &cfg.decode),
                Encoding::Json => decode_json(&raw, &cfg.source, &cfg.decode),
            }
            .map_err(|e| (StatusCode::BAD_REQUEST, 3, e.detail()))
        })
        .await;
    let decoded = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err((status, grpc, msg))) => {
            m.requests_client_error.fetch_add(1, Ordering::Relaxed);
            return error(encoding, status, grpc, &msg, None);
        }
        Err(_) => {
            m.requests_unavailable.fetch_add(1, Ordering::Relaxed);
            return error(encoding, StatusCode::SERVICE_UNAVAILABLE, 14, "decoder failed", Some(1));
        }
    };
    let rejected =
        decoded.outcomes.iter().filter(|o| matches!(o, Outcome::Reject(_))).count() as u64;
    let total = decoded.outcomes.len() as u64;
    let first_reason = decoded.outcomes.iter().find_map(|o| match o {
        Outcome::Reject(q) => Some(format!("{}: {}", q.reason, q.detail)),
        _ => None,
    });
    if let Err(e) = st.sink.accept(decoded.outcomes).await {
        m.requests_unavailable.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(error = %e, "Spans not accepted; the client will retry.");
        return error(
            encoding,
            StatusCode::SERVICE_UNAVAILABLE,
            14,
            "not accepted now, retry later",
            Some(1),
        );
    }
    m.requests_ok.fetch_add(1, Ordering::Relaxed);
    m.spans_received.fetch_add(total, Ordering::Relaxed);
    m.spans_rejected.fetch_add(rejected, Ordering::Relaxed);
    let response = ExportTraceServiceResponse {
        partial_success: (rejected > 0).then(|| ExportTracePartialSuccess {
            rejected_spans: rejected as i64,
            error_message: format!(
                "{rejected} of {total} spans refused and quarantined (first: {})",
                first_reason.unwrap_or_default()
            ),
        }),
    };
    let body = match (encoding, &response.partial_success) {
        (Encoding::Proto, _) => response.encode_to_vec(),
        // Full success is an empty response object.
        (Encoding::Json, None) => b"{}".to_vec(),
        (Encoding::Json, Some(_)) => {
            serde_json::to_vec(&response).unwrap_or_else(|_| b"{}".to_vec())
        }
    };
    let mut r = (StatusCode::OK, body).into_response();
    r.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(encoding.content_type()));
    r
}

/// The receiver's routes.
pub fn router<S: DurableSink>(cfg: ServerConfig, sink: Arc<S>, metrics: Arc<Metrics>) -> Router {
    let permits = Semaphore::new(cfg.max_in_flight.max(1));
    let state = Arc::new(AppState { cfg, sink, metrics: Arc::clone(&metrics), permits });
    let health = Arc::clone(&metrics);
    Router::new()
        .route("/v1/traces", post(traces::<S>))
        .with_state(state)
        .route(
            "/metrics",
            get(move || {
                let m = Arc::clone(&metrics);
                async move {
                    let mut r = m.render().into_response();
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("text/plain; version=0.0.4"),
                    );
                    r
                }
            }),
        )
        .route(
            "/health",
            get(move || async move {
                match health.unavailable().or_else(|| health.behind()) {
                    None => (StatusCode::OK, "ok\n".to_owned()),
                    Some(why) => (StatusCode::SERVICE_UNAVAILABLE, format!("unavailable: {why}\n")),
                }
            }),
        )
}

/// Serves on `listener` until `shutdown` resolves; in-flight requests finish first. `extra`
/// routes (the usage API) are served beside the receiver's.
///
/// # Errors
///
/// The listener fails.
pub async fn serve<S: DurableSink>(
    listener: tokio::net::TcpListener,
    cfg: ServerConfig,
    sink: Arc<S>,
    metrics: Arc<Metrics>,
    extra: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router(cfg, sink, metrics).merge(extra))
        .with_graceful_shutdown(shutdown)
        .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_render_prometheus_text() {
        let m = Metrics::default();
        m.requests_ok.store(3, Ordering::Relaxed);
        m.spans_written.store(7, Ordering::Relaxed);
        let text = m.render();
        assert!(text.contains("# TYPE agentmeter_otlp_requests_total counter\n"));
        assert!(text.contains("agentmeter_otlp_requests_total{outcome=\"ok\"} 3\n"));
        assert!(text.contains("agentmeter_otlp_spans_written_total 7\n"));
        assert!(text.contains("# TYPE agentmeter_otlp_log_backlog_bytes gauge\n"));
    }

    #[test]
    fn tokens_compare_in_constant_time_and_correctly() {
        assert!(same(b"abc", b"abc"));
        assert!(!same(b"abc", b"abd"));
        assert!(!same(b"abc", b"abcd"));
    }

    struct Accept;

    impl DurableSink for Accept {
        fn accept(
            &self,
            _: Vec<Outcome>,
        ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + '_>> {
            Box::pin(async { Ok(()) })
        }
    }

    /// A server with token `s3cret` on a free loopback port, for the life of the test.
    fn server() -> std::net::SocketAddr {
        server_with(Arc::new(Metrics::default()))
    }

    fn server_with(m: Arc<Metrics>) -> std::net::SocketAddr {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
        let addr = listener.local_addr().unwrap();
        let cfg = ServerConfig {
            auth_token: Some("s3cret".into()),
            max_body_bytes: 1 << 20,
            max_in_flight: 4,
            decode: DecodeConfig::new("clinic_id", 1 << 20, 1 << 20).unwrap(),
            source: SourceUri::new("otlp-http://test"),
        };
        std::thread::spawn(move || {
            let _ = rt.block_on(serve(
                listener,
                cfg,
                Arc::new(Accept),
                m,
                Router::new(),
                std::future::pending(),
            ));
        });
        addr
    }

    /// The status code of one request.
    fn status(addr: std::net::SocketAddr, headers: &str, body: &[u8]) -> u16 {
        use std::io::{Read as _, Write as _};
        let mut c = std::net::TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/traces HTTP/1.1\r\nHost: test\r\nConnection: close\r\nContent-Length: {}\r\n{headers}\r\n",
            body.len()
        );
        c.write_all(head.as_bytes()).unwrap();
        c.write_all(body).unwrap();
        let mut answer = String::new();
        c.read_to_string(&mut answer).unwrap();
        answer.split(' ').nth(1).unwrap().parse().unwrap()
    }

    #[test]
    fn authentication_comes_before_anything_about_the_body() {
        let addr = server();
        let json = "Content-Type: application/json\r\n";
        let text = "Content-Type: text/plain\r\n";
        let token = "Authorization: Bearer s3cret\r\n";
        // Without the token, a wrong content type or a bad body still gets 401.
        assert_eq!(status(addr, text, b"x"), 401);
        assert_eq!(status(addr, json, b"{not json"), 401);
        assert_eq!(status(addr, &format!("{json}Authorization: Bearer wrong\r\n"), b"{}"), 401);
        assert_eq!(status(addr, &format!("{text}{token}"), b"x"), 415);
        assert_eq!(status(addr, &format!("{json}{token}"), b"{not json"), 400);
        assert_eq!(status(addr, &format!("{json}{token}"), b"{}"), 200);
    }

    #[test]
    fn health_says_when_requests_cannot_be_taken() {
        use std::io::{Read as _, Write as _};
        let m = Arc::new(Metrics::default());
        let addr = server_with(Arc::clone(&m));
        let get = || {
            let mut c = std::net::TcpStream::connect(addr).unwrap();
            c.write_all(b"GET /health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n").unwrap();
            let mut answer = String::new();
            c.read_to_string(&mut answer).unwrap();
            let code: u16 = answer.split(' ').nth(1).unwrap().parse().unwrap();
            (code, answer.rsplit("\r\n\r\n").next().unwrap().to_owned())
        };
        assert_eq!(get(), (200, "ok\n".into()));
        m.set_unavailable(Some("the write-ahead log cannot be written: disk full".into()));
        assert_eq!(
            get(),
            (503, "unavailable: the write-ahead log cannot be written: disk full\n".into())
        );
        m.set_unavailable(None);
        assert_eq!(get().0, 200);
        // The lake behind the log: health says so, and a request is refused before its body
        // is read (this one would be a 400), until the backlog is back within its limit.
        m.log_backlog_limit.store(1 << 20, Ordering::Relaxed);
        m.log_backlog_bytes.store(3 << 20, Ordering::Relaxed);
        let behind = "the lake is behind: 3 MiB of acknowledged spans wait in the write-ahead \
                      log to be flushed (the limit is 1 MiB)";
        assert_eq!(get(), (503, format!("unavailable: {behind}\n")));
        let post = "Content-Type: application/json\r\nAuthorization: Bearer s3cret\r\n";
        assert_eq!(status(addr, post, b"{not json"), 503);
        assert_eq!(m.requests_unavailable.load(Ordering::Relaxed), 1);
        m.log_backlog_bytes.store(1 << 20, Ordering::Relaxed);
        assert_eq!(get().0, 200);
        assert_eq!(status(addr, post, b"{not json"), 400);
    }

    #[test]
    fn gzip_bodies_are_capped() {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(&[b'x'; 1000]).unwrap();
        let gz = e.finish().unwrap();
        assert_eq!(inflate(&gz, 1000).unwrap().len(), 1000);
        assert_eq!(inflate(&gz, 999), Err(true));
        assert_eq!(inflate(b"nope", 10), Err(false));
    }
}
