//! A load generator for `agentmeter serve`: OTLP/HTTP protobuf requests sent at a fixed rate
//! of spans per second, each answer's latency measured from the moment the request was due
//! (so a server that falls behind shows it in the tail, instead of slowing the generator
//! down: no coordinated omission). `bench/serve` runs it against a receiver on loopback.
//!
//! ```sh
//! cargo run --profile dist -p agentmeter-ingest --example otlp_load -- \
//!     --url http://127.0.0.1:4318/v1/traces --spans DIR [--rate 50000] [--seconds 10] \
//!     [--batch 512] [--connections 32] [--token-file FILE]
//! ```
//!
//! `DIR` holds OTLP JSON span files (`agentmeter gen`'s `input/otlp/*.ndjson.gz`, one
//! request per line). Their spans are read in file order, each (trace id, span id) once,
//! regrouped into requests of `--batch` spans (whole resource groups, as an SDK's batch
//! processor exports), and encoded before the clock starts, `rate × seconds` spans in all:
//! every run is bounded in count and in time (it stops sending after twice `--seconds`).
//!
//! Prints one JSON line: requests and spans sent and acknowledged (HTTP 200), the answers by
//! status, the achieved rate and the latency percentiles in milliseconds.

use std::collections::{BTreeMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::trace::v1::ResourceSpans;
use prost::Message as _;

struct Args {
    url: String,
    spans: PathBuf,
    rate: f64,
    seconds: f64,
    batch: usize,
    connections: usize,
    token: Option<String>,
}

fn usage() -> ! {
    eprintln!(
        "usage: otlp_load --url URL --spans DIR [--rate SPANS_PER_S] [--seconds S] [--batch SPANS] \
         [--connections N] [--token-file FILE]"
    );
    std::process::exit(2)
}

fn parse_args() -> Args {
    let mut a = Args {
        url: String::new(),
        spans: PathBuf::new(),
        rate: 50_000.0,
        seconds: 10.0,
        batch: 512,
        connections: 32,
        token: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(k) = it.next() {
        let v = it.next().unwrap_or_else(|| usage());
        let num = |v: &str| v.parse::<f64>().ok().filter(|x| *x > 0.0).unwrap_or_else(|| usage());
        match k.as_str() {
            "--url" => a.url = v,
            "--spans" => a.spans = PathBuf::from(v),
            "--rate" => a.rate = num(&v),
            "--seconds" => a.seconds = num(&v),
            "--batch" => a.batch = num(&v) as usize,
            "--connections" => a.connections = num(&v) as usize,
            "--token-file" => {
                let t = std::fs::read_to_string(&v).unwrap_or_else(|e| {
                    eprintln!("otlp_load: reading {v}: {e}");
                    std::process::exit(2)
                });
                a.token = Some(t.trim().to_owned());
            }
            _ => usage(),
        }
    }
    if a.url.is_empty() || a.spans.as_os_str().is_empty() || a.batch == 0 || a.connections == 0 {
        usage()
    }
    a
}

/// The span files of `dir`, sorted by name.
fn span_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            let n = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            n.ends_with(".ndjson") || n.ends_with(".ndjson.gz") || n.ends_with(".jsonl")
        })
        .collect();
    files.sort();
    Ok(files)
}

/// One request body and the spans it holds.
struct Body {
    bytes: bytes::Bytes,
    spans: usize,
}

/// Reads distinct spans until `want` are held, grouped into encoded requests of about `batch`.
fn load(dir: &Path, want: usize, batch: usize) -> Result<Vec<Body>, String> {
    let mut seen: HashSet<(Vec<u8>, Vec<u8>)> = HashSet::new();
    let mut bodies = Vec::new();
    let mut group: Vec<ResourceSpans> = Vec::new();
    let mut in_group = 0usize;
    let mut total = 0usize;
    let flush = |group: &mut Vec<ResourceSpans>, in_group: &mut usize, bodies: &mut Vec<Body>| {
        if *in_group > 0 {
            let req = ExportTraceServiceRequest { resource_spans: std::mem::take(group) };
            bodies.push(Body { bytes: req.encode_to_vec().into(), spans: *in_group });
            *in_group = 0;
        }
    };
    'files: for path in span_files(dir).map_err(|e| format!("{}: {e}", dir.display()))? {
        let file = std::fs::File::open(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let reader: Box<dyn BufRead> = if path.extension().is_some_and(|x| x == "gz") {
            Box::new(BufReader::new(flate2::read::MultiGzDecoder::new(file)))
        } else {
            Box::new(BufReader::new(file))
        };
        for (n, line) in reader.lines().enumerate() {
            let line = line.map_err(|e| format!("{}: {e}", path.display()))?;
            if line.trim().is_empty() {
                continue;
            }
            let req: ExportTraceServiceRequest = serde_json::from_str(&line)
                .map_err(|e| format!("{} line {}: {e}", path.display(), n + 1))?;
            for mut rs in req.resource_spans {
                let mut kept = 0;
                for ss in &mut rs.scope_spans {
                    ss.spans.retain(|s| seen.insert((s.trace_id.clone(), s.span_id.clone())));
                    kept += ss.spans.len();
                }
                if kept == 0 {
                    continue;
                }
                group.push(rs);
                in_group += kept;
                total += kept;
                if in_group >= batch {
                    flush(&mut group, &mut in_group, &mut bodies);
                }
                if total >= want {
                    break 'files;
                }
            }
        }
    }
    flush(&mut group, &mut in_group, &mut bodies);
    Ok(bodies)
}

/// One answer: when it was due, how long it took from then and from the send, its status.
struct Answer {
    late_ms: f64,
    service_ms: f64,
    status: String,
    spans: usize,
    done: Duration,
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[i.clamp(1, sorted.len()) - 1]
}

fn main() {
    let args = parse_args();
    let want = (args.rate * args.seconds).round() as usize;
    let bodies = match load(&args.spans, want, args.batch) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("otlp_load: {e}");
            std::process::exit(1)
        }
    };
    let loaded: usize = bodies.iter().map(|b| b.spans).sum();
    if loaded < want {
        eprintln!(
            "otlp_load: {} holds {loaded} distinct spans, fewer than the {want} asked for; sending those",
            args.spans.display()
        );
    }
    // When each request is due: its first span's place in the stream at the asked rate.
    let mut due = Vec::with_capacity(bodies.len());
    let mut before = 0usize;
    for b in &bodies {
        due.push(Duration::from_secs_f64(before as f64 / args.rate));
        before += b.spans;
    }
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let answers = rt.block_on(run(&args, Arc::new(bodies), Arc::new(due)));

    let mut by_status: BTreeMap<String, usize> = BTreeMap::new();
    let (mut acked_spans, mut acked) = (0usize, 0usize);
    let mut late: Vec<f64> = Vec::new();
    let mut service: Vec<f64> = Vec::new();
    let mut last = Duration::ZERO;
    for a in &answers {
        *by_status.entry(a.status.clone()).or_default() += 1;
        if a.status == "200" {
            acked += 1;
            acked_spans += a.spans;
        }
        late.push(a.late_ms);
        service.push(a.service_ms);
        last = last.max(a.done);
    }
    late.sort_by(f64::total_cmp);
    service.sort_by(f64::total_cmp);
    let secs = last.as_secs_f64();
    let out = serde_json::json!({
        "rate_asked": args.rate,
        "batch": args.batch,
        "connections": args.connections,
        "requests": answers.len(),
        "requests_acked": acked,
        "spans_sent": answers.iter().map(|a| a.spans).sum::<usize>(),
        "spans_acked": acked_spans,
        "status": by_status,
        "seconds": secs,
        "spans_per_s": if secs > 0.0 { acked_spans as f64 / secs } else { 0.0 },
        "latency_ms": {
            "p50": percentile(&late, 50.0),
            "p90": percentile(&late, 90.0),
            "p99": percentile(&late, 99.0),
            "p999": percentile(&late, 99.9),
            "max": late.last().copied().unwrap_or(f64::NAN),
        },
        "service_ms": {
            "p50": percentile(&service, 50.0),
            "p99": percentile(&service, 99.0),
        },
    });
    println!("{out}");
}

async fn run(args: &Args, bodies: Arc<Vec<Body>>, due: Arc<Vec<Duration>>) -> Vec<Answer> {
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(args.connections)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client");
    let next = Arc::new(AtomicUsize::new(0));
    let start = tokio::time::Instant::now();
    let deadline = Duration::from_secs_f64(args.seconds * 2.0);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (client, bodies, due, next) =
            (client.clone(), bodies.clone(), due.clone(), next.clone());
        let (url, token) = (args.url.clone(), args.token.clone());
        tasks.push(tokio::spawn(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= bodies.len() || due[i] > deadline {
                    break;
                }
                tokio::time::sleep_until(start + due[i]).await;
                let sent = Instant::now();
                let mut req = client
                    .post(&url)
                    .header("content-type", "application/x-protobuf")
                    .body(bodies[i].bytes.clone());
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                }
                let status = match req.send().await {
                    Ok(r) => {
                        let s = r.status().as_u16().to_string();
                        // The whole answer read, so the connection goes back to the pool.
                        let _ = r.bytes().await;
                        s
                    }
                    Err(e) if e.is_timeout() => "timeout".to_owned(),
                    Err(_) => "connection error".to_owned(),
                };
                let now = tokio::time::Instant::now();
                mine.push(Answer {
                    late_ms: (now - (start + due[i])).as_secs_f64() * 1e3,
                    service_ms: sent.elapsed().as_secs_f64() * 1e3,
                    status,
                    spans: bodies[i].spans,
                    done: now - start,
                });
            }
            mine
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await.expect("load task"));
    }
    all
}
