//! The function killed with SIGKILL in the middle of a batch (a timeout, an out-of-memory
//! kill), as the bootstrap binary against a Lambda Runtime API on loopback: the event source
//! mapping delivers the same batch again to a new instance, then the rest. The lake ends with
//! every event once, the same as a run without kills, and every batch answered without
//! `batchItemFailures`.
//!
//! Kill points are seeded: `AGENTMETER_CRASH_SEED=<hex>` (default 5eed) replays them,
//! `AGENTMETER_CRASH_TRIALS` sets the trials (2 in CI); a soak:
//! `AGENTMETER_CRASH_TRIALS=25 scripts/test -p agentmeter-lambda --test crash`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod kinesis_event;
mod runtime_api;

use std::collections::BTreeMap;
use std::io::{BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use agentmeter_aggregate::Lake;
use serde_json::{Value, json};

/// Batches the event source mapping delivers, in order.
const BATCHES: usize = 6;
/// Records per batch: subscription payloads and NDJSON records, alternating.
const RECORDS: usize = 10;
/// Events per record.
const EVENTS: usize = 50;
/// Events of each batch that the one before carried too (a producer's retry).
const OVERLAP: usize = 7;
/// Deliveries of one batch before the test gives up.
const DELIVERIES: u32 = 8;
/// Longest wait for the function to take or answer a batch.
const WAIT: Duration = Duration::from_secs(60);
const TENANTS: [&str; 3] = ["clinic-a", "clinic-b", "hospital-c"];
/// 2026-10-01T00:00:00Z, ms.
const DAY0_MS: i64 = 1_790_812_800_000;

use agentmeter_testkit::crash::{Seeded, crash_trials};

/// One usage event of the input: its id, tenant, day and tokens.
#[derive(Clone)]
struct Usage {
    id: String,
    tenant: &'static str,
    ms: i64,
    input: i64,
    output: i64,
}

impl Usage {
    fn new(n: usize) -> Usage {
        Usage {
            id: format!("ev-{n:06}"),
            tenant: TENANTS[n % 3],
            // Three days, so a batch writes and rolls up several partitions.
            ms: DAY0_MS + (n % 3) as i64 * 86_400_000 + 3_600_000 * (n % 24) as i64 + n as i64,
            input: 100 + (n % 97) as i64,
            output: 10 + (n % 13) as i64,
        }
    }

    fn line(&self, with_id_and_time: bool) -> Value {
        let mut line = json!({
            "event": "inference_usage", "tier": "basic", "clinic_id": self.tenant,
            "user_id": "dr.lee", "model_id": "openai.gpt-oss-120b-1:0",
            "input_tokens": self.input, "output_tokens": self.output,
            "total_tokens": self.input + self.output,
        });
        if with_id_and_time {
            let t = chrono::DateTime::from_timestamp_millis(self.ms).unwrap();
            line["event_id"] = json!(self.id);
            line["timestamp"] = json!(t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true));
        }
        line
    }
}

/// A CloudWatch Logs subscription payload (gzip) of `events`, ids as CloudWatch's.
fn subscription_payload(events: &[Usage]) -> Vec<u8> {
    let log_events: Vec<Value> = events
        .iter()
        .map(|u| {
            let t = chrono::DateTime::from_timestamp_millis(u.ms).unwrap();
            let stamp = t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            json!({"id": u.id, "timestamp": u.ms,
                   "message": format!("{stamp}\tr-{}\tINFO\t{}", u.id, u.line(false))})
        })
        .collect();
    kinesis_event::subscription_payload(log_events)
}

/// An NDJSON record of `events`.
fn ndjson(events: &[Usage]) -> Vec<u8> {
    events.iter().map(|u| format!("{}\n", u.line(true))).collect::<String>().into_bytes()
}

/// The batches of the shard, and per tenant the (distinct events, input, output tokens) they
/// carry.
fn batches() -> (Vec<String>, BTreeMap<String, [i64; 3]>) {
    let mut out = Vec::new();
    let mut want: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    let mut next = 0;
    for b in 0..BATCHES {
        let mut records = Vec::new();
        for r in 0..RECORDS {
            let mut events: Vec<Usage> = (next..next + EVENTS).map(Usage::new).collect();
            for u in &events {
                let w = want.entry(u.tenant.to_owned()).or_default();
                w[0] += 1;
                w[1] += u.input;
                w[2] += u.output;
            }
            if r == 0 && b > 0 {
                // Delivered again: the last events of the batch before.
                events.extend((next - OVERLAP..next).map(Usage::new));
            }
            next += EVENTS;
            let seq = format!("4959033827149025660855969{:031}", b * 1000 + r);
            let data = if r % 2 == 0 { subscription_payload(&events) } else { ndjson(&events) };
            records.push((seq, data));
        }
        out.push(kinesis_event::event_json(&records).to_string());
    }
    (out, want)
}

/// What the function posted for an invocation: `response` or `error`, and the body.
type Answer = (String, String);

#[derive(Default)]
struct State {
    /// The invocation waiting for `GET .../invocation/next`: request id and event.
    offered: Option<(String, String)>,
    /// Request ids handed out, with when.
    handed: BTreeMap<String, Instant>,
    answers: BTreeMap<String, Answer>,
    /// Bodies of `POST .../init/error`.
    init_errors: Vec<String>,
    closed: bool,
}

/// A Lambda Runtime API on 127.0.0.1, as the event source mapping drives it: the test offers
/// one invocation at a time and waits for its answer. A connection per thread, so a killed
/// instance's pending `next` never takes an event meant for its successor.
struct RuntimeApi {
    port: u16,
    shared: Arc<(Mutex<State>, Condvar)>,
    ids: u32,
}

/// Whether the peer has closed `stream` (a killed instance's connection).
fn closed(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let gone = matches!(stream.peek(&mut [0u8; 1]), Ok(0));
    let _ = stream.set_nonblocking(false);
    gone
}

fn serve_connection(stream: TcpStream, shared: &(Mutex<State>, Condvar)) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    while let Some((method, path, body)) = runtime_api::read_request(&mut reader) {
        let body = String::from_utf8_lossy(&body).into_owned();
        let (lock, cv) = shared;
        if method == "GET" && path == "/2018-06-01/runtime/invocation/next" {
            let (id, event) = {
                let mut st = lock.lock().unwrap();
                loop {
                    // Checked before taking an event: a dead instance must not take it.
                    if st.closed || closed(&out) {
                        return;
                    }
                    if let Some((id, event)) = st.offered.take() {
                        st.handed.insert(id.clone(), Instant::now());
                        cv.notify_all();
                        break (id, event);
                    }
                    st = cv.wait_timeout(st, Duration::from_millis(20)).unwrap().0;
                }
            };
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_millis()
                + 120_000;
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                 Lambda-Runtime-Aws-Request-Id: {id}\r\nLambda-Runtime-Deadline-Ms: {deadline}\r\n\
                 Lambda-Runtime-Invoked-Function-Arn: arn:aws:lambda:us-east-1:123456789012:function:agentmeter\r\n\
                 Lambda-Runtime-Trace-Id: Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1\r\n\
                 Content-Length: {}\r\n\r\n",
                event.len()
            );
            if out
                .write_all(head.as_bytes())
                .and_then(|()| out.write_all(event.as_bytes()))
                .is_err()
            {
                return;
            }
        } else if method == "POST" {
            let mut st = lock.lock().unwrap();
            if path == "/2018-06-01/runtime/init/error" {
                st.init_errors.push(body);
            } else if let Some(rest) = path.strip_prefix("/2018-06-01/runtime/invocation/")
                && let Some((id, kind)) = rest.split_once('/')
            {
                st.answers.insert(id.to_owned(), (kind.to_owned(), body));
            } else {
                panic!("unexpected POST {path}");
            }
            cv.notify_all();
            drop(st);
            let ok = "HTTP/1.1 202 Accepted\r\nContent-Type: application/json\r\n\
                      Content-Length: 16\r\n\r\n{\"status\":\"OK\"}";
            if out.write_all(ok.as_bytes()).is_err() {
                return;
            }
        } else {
            panic!("unexpected {method} {path}");
        }
        let _ = out.flush();
    }
}

impl RuntimeApi {
    fn start() -> RuntimeApi {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let shared: Arc<(Mutex<State>, Condvar)> = Arc::default();
        let s = Arc::clone(&shared);
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { break };
                if s.0.lock().unwrap().closed {
                    break;
                }
                let s = Arc::clone(&s);
                std::thread::spawn(move || serve_connection(stream, &s));
            }
        });
        RuntimeApi { port, shared, ids: 0 }
    }

    /// Offers `event` to the next `GET .../next`; returns its request id once an instance has
    /// taken it, with when.
    fn deliver(&mut self, event: &str) -> (String, Instant) {
        self.ids += 1;
        let id = format!("req-{:04}", self.ids);
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        assert!(st.offered.is_none());
        st.offered = Some((id.clone(), event.to_owned()));
        cv.notify_all();
        let (st, _) = cv.wait_timeout_while(st, WAIT, |st| !st.handed.contains_key(&id)).unwrap();
        let at = *st.handed.get(&id).unwrap_or_else(|| {
            panic!(
                "no instance took invocation {id} within {WAIT:?}; init errors: {:?}",
                st.init_errors
            )
        });
        (id, at)
    }

    /// The answer to `id`, waiting until `until` at most.
    fn answer(&self, id: &str, until: Instant) -> Option<Answer> {
        let (lock, cv) = &*self.shared;
        let mut st = lock.lock().unwrap();
        loop {
            if let Some(a) = st.answers.get(id) {
                return Some(a.clone());
            }
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            st = cv.wait_timeout(st, left).unwrap().0;
        }
    }
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.shared.0.lock().unwrap().closed = true;
        self.shared.1.notify_all();
        // Wakes the accepting thread so it sees `closed`.
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// A function instance: the bootstrap binary, as `provided.al2023` starts it.
struct Instance {
    child: Child,
}

impl Instance {
    fn start(api: &RuntimeApi, lake: &Lakes, name: &str, cache: &Path, log: &Path) -> Instance {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log).unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_agentmeter-lambda"));
        if let Lakes::S3(moto) = lake {
            cmd.env("AWS_ENDPOINT_URL", moto.endpoint())
                .env("AWS_REGION", "us-east-1")
                .env("AWS_ACCESS_KEY_ID", "test")
                .env("AWS_SECRET_ACCESS_KEY", "test")
                .env_remove("AWS_PROFILE")
                .env("AWS_CONFIG_FILE", "/nonexistent")
                .env("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent")
                .env("AWS_EC2_METADATA_DISABLED", "true");
        }
        let child = cmd
            .env("AWS_LAMBDA_RUNTIME_API", format!("127.0.0.1:{}", api.port))
            .env("AWS_LAMBDA_FUNCTION_NAME", "agentmeter")
            .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024")
            .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
            .env("AWS_LAMBDA_LOG_GROUP_NAME", "/aws/lambda/agentmeter")
            .env("AWS_LAMBDA_LOG_STREAM_NAME", "2026/11/22/[$LATEST]0")
            .env("AGENTMETER_LAKE", lake.location(name))
            .env("AGENTMETER_CACHE_DIR", cache)
            // Every batch rolls its days up: kills land in rollups too.
            .env("AGENTMETER_ROLLUP_EVERY_SECONDS", "0")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        Instance { child }
    }

    /// SIGKILL; `true` if it was still running.
    fn kill(mut self) -> bool {
        let running = self.child.try_wait().unwrap().is_none();
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        running && status.signal() == Some(9)
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// How a shard's batches went.
#[derive(Default)]
struct Run {
    /// Per batch: how long the answered delivery took, from hand-out to answer.
    took: Vec<Duration>,
    /// Kills that landed before the batch's answer.
    kills: usize,
    /// Deliveries, redeliveries included.
    deliveries: usize,
}

/// Delivers every batch in order to instances of the function on `lake`; with `rng`, kills the
/// instance at a seeded moment within `windows[b]` of some deliveries and delivers the batch
/// again to a new instance, as the event source mapping retries a batch that got no answer.
fn run_shard(
    batches: &[String],
    lake: &Lakes,
    name: &str,
    work: &Path,
    mut kills: Option<(&mut Seeded, &[Duration])>,
    ctx: &str,
) -> Run {
    std::fs::create_dir_all(work).unwrap();
    let mut api = RuntimeApi::start();
    let cache = work.join("cache");
    let log = work.join("function.log");
    let stderr = || std::fs::read_to_string(&log).unwrap_or_default();
    let mut instance = Instance::start(&api, lake, name, &cache, &log);
    let mut run = Run::default();
    for (b, batch) in batches.iter().enumerate() {
        let mut delivery = 0;
        loop {
            delivery += 1;
            assert!(delivery <= DELIVERIES, "{ctx}: batch {b} delivered {DELIVERIES} times");
            run.deliveries += 1;
            // Half the deliveries, at most two of a batch, are cut short.
            let kill_after = match &mut kills {
                Some((rng, windows)) if delivery <= 2 => {
                    (rng.below(2) == 0).then(|| rng.within(windows[b]))
                }
                _ => None,
            };
            let (id, at) = api.deliver(batch);
            let answer = api.answer(&id, at + kill_after.unwrap_or(WAIT));
            let answer = match (answer, kill_after) {
                (Some(a), _) => a,
                (None, Some(_)) => {
                    let landed = instance.kill();
                    assert!(landed, "{ctx}: the function exited by itself:\n{}", stderr());
                    instance = Instance::start(&api, lake, name, &cache, &log);
                    // An answer posted just before the kill counts; else the batch again.
                    match api.answer(&id, Instant::now()) {
                        Some(a) => a,
                        None => {
                            run.kills += 1;
                            continue;
                        }
                    }
                }
                (None, None) => {
                    panic!("{ctx}: batch {b} not answered within {WAIT:?}:\n{}", stderr())
                }
            };
            assert_eq!(
                (answer.0.as_str(), serde_json::from_str::<Value>(&answer.1).unwrap()),
                ("response", json!({"batchItemFailures": []})),
                "{ctx}: batch {b}:\n{}",
                stderr()
            );
            run.took.push(at.elapsed());
            break;
        }
    }
    let init_errors = api.shared.0.lock().unwrap().init_errors.clone();
    assert!(init_errors.is_empty(), "{ctx}: {init_errors:?}");
    run
}

/// Files under `dir` named as a writer's temporary files.
fn temporary_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                todo.push(p);
            } else if p.to_string_lossy().contains(".tmp-") {
                out.push(p);
            }
        }
    }
    out
}

/// The lake as a reader sees it: per tenant (rows, distinct ids, input and output tokens) of
/// `usage_events`, and (calls, input, output) of `usage_hourly` after the reader's rebuild of
/// stale days; with the number of days it rebuilt.
fn reader_view(lake: &Path) -> (Vec<Value>, Vec<Value>, usize) {
    let rebuilt = Lake::open_dir(lake)
        .unwrap()
        .ensure_rollups(chrono::NaiveDate::MIN, chrono::NaiveDate::MAX)
        .unwrap()
        .len();
    let t = |name: &str| {
        format!("read_parquet('{}/{name}/*/*.parquet', hive_partitioning = true)", lake.display())
    };
    let q = |sql: String| -> Vec<Value> {
        agentmeter_testkit::duckdb::query(&sql).into_iter().map(Value::Object).collect()
    };
    let events = q(format!(
        "SELECT tenant_id, count(*) AS n, count(DISTINCT event_id) AS d, \
         sum(input_tokens)::BIGINT AS i, sum(output_tokens)::BIGINT AS o \
         FROM {} GROUP BY ALL ORDER BY ALL",
        t("usage_events")
    ));
    let hourly = q(format!(
        "SELECT tenant_id, sum(invocations)::BIGINT AS n, sum(input_tokens)::BIGINT AS i, \
         sum(output_tokens)::BIGINT AS o FROM {} GROUP BY ALL ORDER BY ALL",
        t("usage_hourly")
    ));
    (events, hourly, rebuilt)
}

/// Where the function's lakes are: directories under one, or prefixes of bucket `lakes` of
/// a moto server.
enum Lakes {
    Dir(std::path::PathBuf),
    S3(agentmeter_testkit::moto::MotoServer),
}

impl Lakes {
    /// `AGENTMETER_LAKE` of the lake `name`.
    fn location(&self, name: &str) -> String {
        match self {
            Lakes::Dir(root) => root.join(name).display().to_string(),
            Lakes::S3(_) => format!("s3://lakes/{name}"),
        }
    }

    /// The lake `name` as a local directory (an S3 lake downloaded into `work`).
    fn local(&self, name: &str, work: &Path) -> std::path::PathBuf {
        let Lakes::S3(moto) = self else { return self.location(name).into() };
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let s3 = s3_client(moto, &rt);
        let to = work.join(format!("{name}-copy"));
        let prefix = format!("{name}/");
        let mut token = None;
        loop {
            let mut req = s3.list_objects_v2().bucket("lakes").prefix(&prefix);
            if let Some(t) = token.take() {
                req = req.continuation_token(t);
            }
            let page = rt.block_on(req.send()).unwrap();
            for key in page.contents().iter().filter_map(|o| o.key()) {
                let obj = rt.block_on(s3.get_object().bucket("lakes").key(key).send()).unwrap();
                let bytes = rt.block_on(obj.body.collect()).unwrap().into_bytes();
                let path = to.join(key.strip_prefix(&prefix).unwrap());
                std::fs::create_dir_all(path.parent().unwrap()).unwrap();
                std::fs::write(path, bytes).unwrap();
            }
            token = page.next_continuation_token().map(str::to_owned);
            if token.is_none() {
                return to;
            }
        }
    }
}

fn s3_client(
    moto: &agentmeter_testkit::moto::MotoServer,
    rt: &tokio::runtime::Runtime,
) -> aws_sdk_s3::Client {
    let config = rt.block_on(
        aws_config::defaults(aws_config::BehaviorVersion::latest())
            .endpoint_url(moto.endpoint())
            .region(aws_config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new("t", "t", None, None, "t"))
            .load(),
    );
    aws_sdk_s3::Client::from_conf(
        aws_sdk_s3::config::Builder::from(&config).force_path_style(true).build(),
    )
}

/// A clean run, then the seeded trials, each on a lake of its own in `lakes`; prints the
/// figures under `label`.
fn killed_mid_batch(lakes: &Lakes, label: &str) {
    let dir = tempfile::tempdir().unwrap();
    let (batches, want) = batches();
    // What the input holds, per tenant: each event once.
    let want_events: Vec<Value> = want
        .iter()
        .map(|(t, [n, i, o])| json!({"tenant_id": t, "n": n, "d": n, "i": i, "o": o}))
        .collect();
    let want_hourly: Vec<Value> =
        want.iter().map(|(t, [n, i, o])| json!({"tenant_id": t, "n": n, "i": i, "o": o})).collect();

    // A clean run: the reference, and how long each batch takes (the kill windows).
    let clean = dir.path().join("clean");
    let clean_run = run_shard(&batches, lakes, "clean", &clean, None, "clean run");
    let clean_view = reader_view(&lakes.local("clean", &clean));
    assert_eq!((&clean_view.0, &clean_view.1), (&want_events, &want_hourly), "clean run");

    let mut rng = Seeded::new(&format!("lambda_killed_mid_batch_{label}"));
    let seed = rng.seed;
    let trials = crash_trials();
    let (mut kills, mut deliveries, mut rebuilt) = (0, 0, 0);
    for trial in 0..trials {
        let ctx = format!("{label}: seed {seed:x}, trial {trial}");
        let work = dir.path().join(format!("trial-{trial}"));
        let name = format!("trial-{trial}");
        let run = run_shard(&batches, lakes, &name, &work, Some((&mut rng, &clean_run.took)), &ctx);
        let local = lakes.local(&name, &work);
        // A killed instance's temporary files are removed by the next one to open the lake.
        let left = temporary_files(&local);
        assert!(left.is_empty(), "{ctx}: {left:?}");
        let view = reader_view(&local);
        assert_eq!((&view.0, &view.1), (&clean_view.0, &clean_view.1), "{ctx}");
        kills += run.kills;
        deliveries += run.deliveries;
        rebuilt += view.2;
    }
    let events: i64 = want.values().map(|w| w[0]).sum();
    eprintln!(
        "crash figures: lambda ({label}): seed {seed:x}, {trials} trials, {kills} kills landed \
         mid-batch, {deliveries} deliveries of {BATCHES} batches a trial ({events} events), \
         each batch answered without batchItemFailures, {rebuilt} stale days rebuilt by the \
         reader, events lost 0, doubled 0"
    );
}

#[test]
fn the_function_killed_mid_batch_then_redelivered_writes_every_event_once() {
    let dir = tempfile::tempdir().unwrap();
    killed_mid_batch(&Lakes::Dir(dir.path().to_owned()), "directory lake");
}

#[test]
fn on_an_s3_lake_the_function_killed_mid_batch_writes_every_event_once() {
    let moto = agentmeter_testkit::moto::MotoServer::start();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(s3_client(&moto, &rt).create_bucket().bucket("lakes").send()).unwrap();
    killed_mid_batch(&Lakes::S3(moto), "S3 lake");
}
