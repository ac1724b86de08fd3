//! Pushes against loopback servers that check each API's documented request (path, content
//! type, bearer token, fields, idempotency key), keep each event once by its key, and can
//! fail on cue: exact totals per customer and meter, nothing sent twice across reruns, late
//! usage sent as its difference, and events a crash left pending sent again and counted once.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use agentmeter_aggregate::{EventWriter, Lake, WriterOptions};
use agentmeter_schemas::{EventId, ModelId, SourceUri, TenantId, Tier, Tokens, UserId};
use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate};
use serde_json::Value;

use super::*;
use crate::invoice::roster::parse_roster;

const TOKEN: &str = "sk_test_push_token";

/// What the server does with the next request.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// Answer this status without taking the events.
    Before(u16),
    /// Take the events, then answer 500 (the client cannot know they were taken).
    After,
}

#[derive(Default)]
struct Seen {
    ids: BTreeSet<String>,
    /// (customer, event name) → quantity.
    totals: BTreeMap<(String, String), i64>,
    requests: usize,
    faults: VecDeque<Fault>,
}

struct Server {
    _rt: tokio::runtime::Runtime,
    base: String,
    seen: Arc<Mutex<Seen>>,
}

/// An event as the server read it: (id, customer, event name, quantity).
type Read = (String, String, String, i64);

fn form(body: &str) -> BTreeMap<String, String> {
    let decode = |s: &str| {
        let s = s.replace('+', " ");
        let mut out = Vec::new();
        let b = s.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' && i + 2 < b.len() {
                out.push(u8::from_str_radix(&s[i + 1..i + 3], 16).unwrap());
                i += 3;
            } else {
                out.push(b[i]);
                i += 1;
            }
        }
        String::from_utf8(out).unwrap()
    };
    body.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

fn field<'a>(v: &'a Value, name: &str) -> Result<&'a Value, String> {
    v.get(name).filter(|x| !x.is_null()).ok_or_else(|| format!("missing {name}: {v}"))
}

fn text(v: &Value, name: &str) -> Result<String, String> {
    field(v, name)?.as_str().map(str::to_owned).ok_or_else(|| format!("{name} is not a string"))
}

fn positive(v: &Value) -> Result<i64, String> {
    v.as_i64().filter(|n| *n > 0).ok_or_else(|| format!("{v} is not a positive integer"))
}

/// Checks a request as the system's documentation describes it.
fn read(system: System, uri: &Uri, headers: &HeaderMap, body: &[u8]) -> Result<Vec<Read>, String> {
    let header = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    if header("authorization") != format!("Bearer {TOKEN}") {
        return Err("401".into());
    }
    let body = std::str::from_utf8(body).map_err(|e| e.to_string())?;
    let json = || serde_json::from_str::<Value>(body).map_err(|e| e.to_string());
    let rfc3339 = |s: &str| DateTime::parse_from_rfc3339(s).map(|_| ()).map_err(|e| e.to_string());
    let (path, ctype) = match system {
        System::Stripe => ("/v1/billing/meter_events", "application/x-www-form-urlencoded"),
        System::Lago => ("/api/v1/events/batch", "application/json"),
        System::OpenMeter => ("/api/v1/events", "application/cloudevents-batch+json"),
        System::Metronome => ("/v1/ingest", "application/json"),
    };
    if uri.path() != path || header("content-type") != ctype {
        return Err(format!("wrong path or type: {} {}", uri.path(), header("content-type")));
    }
    match system {
        System::Stripe => {
            let f = form(body);
            let get = |k: &str| f.get(k).cloned().ok_or_else(|| format!("missing {k}: {body}"));
            let id = get("identifier")?;
            if header("idempotency-key") != id {
                return Err("Idempotency-Key is not the identifier".into());
            }
            let customer = get("payload[stripe_customer_id]")?;
            if !customer.starts_with("cus_") {
                return Err(format!("{customer} is not a Stripe customer"));
            }
            get("timestamp")?.parse::<i64>().map_err(|e| e.to_string())?;
            get("payload[model]")?;
            let value = get("payload[value]")?.parse::<i64>().map_err(|e| e.to_string())?;
            Ok(vec![(id, customer, get("event_name")?, value)])
        }
        System::Lago => {
            let v = json()?;
            let events = field(&v, "events")?.as_array().ok_or("events is not an array")?;
            if events.is_empty() || events.len() > 100 {
                return Err(format!("{} events in a batch", events.len()));
            }
            events
                .iter()
                .map(|e| {
                    field(e, "timestamp")?.as_i64().ok_or("timestamp is not a number")?;
                    let p = field(e, "properties")?;
                    Ok((
                        text(e, "transaction_id")?,
                        text(e, "external_subscription_id")?,
                        text(e, "code")?,
                        positive(field(p, "value")?)?,
                    ))
                })
                .collect()
        }
        System::OpenMeter => {
            let v = json()?;
            let events = v.as_array().ok_or("not a batch")?;
            events
                .iter()
                .map(|e| {
                    if text(e, "specversion")? != "1.0" || text(e, "source")?.is_empty() {
                        return Err("not a CloudEvent 1.0".into());
                    }
                    rfc3339(&text(e, "time")?)?;
                    Ok((
                        text(e, "id")?,
                        text(e, "subject")?,
                        text(e, "type")?,
                        positive(field(field(e, "data")?, "value")?)?,
                    ))
                })
                .collect()
        }
        System::Metronome => {
            let v = json()?;
            let events = v.as_array().ok_or("not an array")?;
            if events.len() > 100 {
                return Err("over 100 events".into());
            }
            events
                .iter()
                .map(|e| {
                    rfc3339(&text(e, "timestamp")?)?;
                    Ok((
                        text(e, "transaction_id")?,
                        text(e, "customer_id")?,
                        text(e, "event_type")?,
                        positive(field(field(e, "properties")?, "value")?)?,
                    ))
                })
                .collect()
        }
    }
}

fn server(system: System) -> Server {
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let state = Arc::clone(&seen);
    let handler = move |uri: Uri, headers: HeaderMap, body: Bytes| {
        let state = Arc::clone(&state);
        async move {
            let mut s = state.lock().unwrap();
            s.requests += 1;
            let fault = s.faults.pop_front();
            if let Some(Fault::Before(code)) = fault {
                return StatusCode::from_u16(code).unwrap().into_response();
            }
            let events = match read(system, &uri, &headers, &body) {
                Ok(e) => e,
                Err(e) if e == "401" => return StatusCode::UNAUTHORIZED.into_response(),
                Err(e) => return (StatusCode::BAD_REQUEST, e).into_response(),
            };
            let mut duplicate = false;
            for (id, customer, name, value) in events {
                if s.ids.insert(id) {
                    *s.totals.entry((customer, name)).or_default() += value;
                } else {
                    duplicate = true;
                }
            }
            if let Some(Fault::After) = fault {
                return StatusCode::INTERNAL_SERVER_ERROR.into_response();
            }
            let r: Response = match system {
                // Stripe refuses a second event with the same identifier.
                System::Stripe if duplicate => (
                    StatusCode::BAD_REQUEST,
                    r#"{"error":{"message":"An event with this identifier already exists."}}"#,
                )
                    .into_response(),
                System::OpenMeter => StatusCode::NO_CONTENT.into_response(),
                _ => (StatusCode::OK, "{}").into_response(),
            };
            r
        }
    };
    let rt =
        tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let app = axum::Router::new().fallback(axum::routing::post(handler));
    rt.spawn(async move { axum::serve(listener, app).await });
    Server { _rt: rt, base, seen }
}

fn day(d: u32) -> NaiveDate {
    NaiveDate::from_ymd_opt(2026, 11, d).unwrap()
}

fn write(lake: &Lake, events: &[(&str, &str, u32, u32, i64, &str)]) {
    let mut w = EventWriter::new(lake, WriterOptions::default());
    for (tenant, model, d, hour, input, tag) in events {
        let t = day(*d).and_hms_opt(*hour, 0, 0).unwrap().and_utc().timestamp_millis();
        for n in 0..2 {
            w.push(agentmeter_schemas::UsageEvent {
                event_time_ms: t + n,
                event_id: EventId::new(format!("{tenant}-{model}-{d}-{hour}-{n}-{tag}")).unwrap(),
                tier: Tier::new("basic").unwrap(),
                tenant_id: TenantId::new(*tenant).unwrap(),
                user_id: UserId::new("u1").unwrap(),
                model_id: ModelId::new(*model).unwrap(),
                source: SourceUri::new("file:///test"),
                tokens: Tokens {
                    input: *input,
                    output: 10,
                    total: input + 10,
                    ..Tokens::default()
                },
                session_id: None,
                service_tier: Default::default(),
            })
            .unwrap();
        }
    }
    w.finish().unwrap();
}

/// Two tenants over Nov 1 and 2, two models; each line is two calls.
fn lake() -> (tempfile::TempDir, Lake) {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open_dir(dir.path()).unwrap();
    write(
        &lake,
        &[
            ("clinic-a", "m1", 1, 9, 1000, "x"),
            ("clinic-a", "m2", 1, 9, 500, "x"),
            ("clinic-a", "m1", 2, 14, 300, "x"),
            ("clinic-b", "m1", 1, 10, 7000, "x"),
        ],
    );
    (dir, lake)
}

fn roster() -> Roster {
    parse_roster(
        "[tenants.clinic-a]\ntier = \"basic\"\ncustomer_ids = { stripe = \"cus_A\", lago = \"sub-a\", \
         openmeter = \"subject-a\", metronome = \"alias-a\" }\n\
         [tenants]\nclinic-b = \"basic\"\n",
    )
    .unwrap()
}

fn options(system: System, s: &Server) -> PushOptions {
    PushOptions {
        system,
        endpoint: s.base.clone(),
        token: TOKEN.into(),
        event_prefix: "agentmeter".into(),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        timeout: Duration::from_secs(5),
    }
}

fn totals(s: &Server) -> BTreeMap<(String, String), i64> {
    s.seen.lock().unwrap().totals.clone()
}

fn requests(s: &Server) -> usize {
    s.seen.lock().unwrap().requests
}

/// The totals a system should hold: the lake's usage per customer and meter.
fn expected(lake: &Lake, system: System) -> BTreeMap<(String, String), i64> {
    let mut out = BTreeMap::new();
    for d in [day(1), day(2)] {
        for (k, q) in day_usage(lake, d).unwrap() {
            if let Some(c) = system.customer(&roster(), &k.tenant_id) {
                *out.entry((c, format!("agentmeter_{}", k.component))).or_default() += q;
            }
        }
    }
    out
}

#[test]
fn each_system_gets_the_usage_once_in_its_own_shape() {
    for system in System::ALL {
        let (_dir, lake) = lake();
        let s = server(system);
        let r = push(&lake, &roster(), &[day(1), day(2), day(3)], &options(system, &s)).unwrap();
        assert_eq!(r.failure, None, "{system:?}");
        assert_eq!(totals(&s), expected(&lake, system), "{system:?}");
        // clinic-a: 2 calls × (1000 + 500 + 300) input tokens.
        let want_a = match system {
            System::Stripe => "cus_A",
            System::Lago => "sub-a",
            System::OpenMeter => "subject-a",
            System::Metronome => "alias-a",
        };
        assert_eq!(totals(&s)[&(want_a.to_owned(), "agentmeter_input_tokens".to_owned())], 3_600);
        assert_eq!(totals(&s)[&(want_a.to_owned(), "agentmeter_invocations".to_owned())], 6);
        match system {
            // Stripe needs a customer id: clinic-b has none and is reported, not sent.
            System::Stripe => {
                assert_eq!(r.tenants_without_customer, [TenantId::new("clinic-b").unwrap()]);
            }
            _ => {
                assert!(r.tenants_without_customer.is_empty());
                assert_eq!(
                    totals(&s)[&("clinic-b".to_owned(), "agentmeter_input_tokens".to_owned())],
                    14_000
                );
            }
        }
        assert_eq!(
            r.quantities["input_tokens"],
            expected(&lake, system)
                .iter()
                .filter(|((_, n), _)| n == "agentmeter_input_tokens")
                .map(|(_, q)| q)
                .sum::<i64>()
        );
        // A rerun sends nothing.
        let before = requests(&s);
        let again = push(&lake, &roster(), &[day(1), day(2)], &options(system, &s)).unwrap();
        assert_eq!((again.sent, requests(&s)), (0, before), "{system:?}");
    }
}

#[test]
fn late_usage_is_sent_as_its_difference_under_a_new_identifier() {
    let system = System::Metronome;
    let (_dir, lake) = lake();
    let s = server(system);
    push(&lake, &roster(), &[day(1), day(2)], &options(system, &s)).unwrap();
    // Two more calls of clinic-a, m1, Nov 1 09:00: an hour already sent.
    write(&lake, &[("clinic-a", "m1", 1, 9, 250, "late")]);
    let r = push(&lake, &roster(), &[day(1), day(2)], &options(system, &s)).unwrap();
    // input, output, invocations of that one key: three events.
    assert_eq!(r.sent, 3);
    assert_eq!(r.quantities["input_tokens"], 500);
    assert_eq!(r.quantities["invocations"], 2);
    assert_eq!(totals(&s), expected(&lake, system));
    let ledger: Ledger = serde_json::from_slice(
        &lake
            .store()
            .get(&agentmeter_aggregate::layout::push_ledger("metronome", day(1)))
            .unwrap()
            .unwrap()
            .bytes,
    )
    .unwrap();
    let key = "clinic-a/2026-11-01T09:00:00Z/m1/input_tokens";
    assert_eq!(ledger.sent[key], ledger::Sent { quantity: 2_500, events: 2 });
    assert!(ledger.pending.is_empty());
}

#[test]
fn events_a_failure_left_pending_are_sent_again_and_counted_once() {
    let system = System::Stripe;
    let (_dir, lake) = lake();
    let s = server(system);
    // Two 503s are retried within the run; then a request taken but answered 500 three
    // times (the client cannot tell it was taken), which stops the run.
    s.seen.lock().unwrap().faults =
        [Fault::Before(503), Fault::Before(503), Fault::After, Fault::After, Fault::After].into();
    let first = push(&lake, &roster(), &[day(1), day(2)], &options(system, &s)).unwrap();
    let failure = first.failure.clone().unwrap();
    assert!(failure.starts_with("stripe answered 500"), "{failure}");
    assert!(!failure.contains(TOKEN));
    assert!(first.pending > 0);
    assert!(totals(&s) != expected(&lake, system));
    // The next run sends what was pending, under the same identifiers: the event the server
    // took is refused as a duplicate, counted as sent, and never counted twice.
    let second = push(&lake, &roster(), &[day(1), day(2)], &options(system, &s)).unwrap();
    assert_eq!(second.failure, None);
    assert_eq!(second.resent, first.pending);
    assert_eq!(second.pending, 0);
    assert_eq!(totals(&s), expected(&lake, system));
    let seen = s.seen.lock().unwrap();
    let identifiers = seen.ids.len();
    drop(seen);
    let events: usize = [day(1), day(2)]
        .iter()
        .map(|d| {
            day_usage(&lake, *d)
                .unwrap()
                .keys()
                .filter(|k| k.tenant_id.as_str() == "clinic-a")
                .count()
        })
        .sum();
    assert_eq!(identifiers, events);
}

#[test]
fn a_wrong_token_fails_without_losing_anything() {
    let system = System::Lago;
    let (_dir, lake) = lake();
    let s = server(system);
    let mut bad = options(system, &s);
    bad.token = "wrong".into();
    let r = push(&lake, &roster(), &[day(1), day(2)], &bad).unwrap();
    assert_eq!(r.failure.as_deref(), Some("lago answered 401 Unauthorized: "));
    assert_eq!(requests(&s), 1, "a 401 is not retried, and the next day waits");
    let r = push(&lake, &roster(), &[day(1), day(2)], &options(system, &s)).unwrap();
    assert_eq!(r.failure, None);
    // Day 1's events were recorded before the refusal: they are sent as pending ones.
    assert!(r.resent > 0 && r.resent < r.sent, "{r:?}");
    assert_eq!(totals(&s), expected(&lake, system));
}

#[test]
fn identifiers_are_stable_and_distinct_per_system_key_and_event() {
    let a = ledger::identifier(System::Stripe, "t/h/m/input_tokens", 0);
    assert_eq!(a, ledger::identifier(System::Stripe, "t/h/m/input_tokens", 0));
    assert_ne!(a, ledger::identifier(System::Stripe, "t/h/m/input_tokens", 1));
    assert_ne!(a, ledger::identifier(System::Lago, "t/h/m/input_tokens", 0));
    assert!(a.starts_with("am-") && a.len() <= 100, "{a}");
    assert_eq!("openmeter".parse::<System>().unwrap(), System::OpenMeter);
    assert!(
        "chargebee".parse::<System>().unwrap_err().contains("stripe, lago, openmeter or metronome")
    );
}

#[test]
fn a_ledger_key_reads_back_even_with_a_slash_in_the_model() {
    let key = UsageKey {
        tenant_id: TenantId::new("clinic-a").unwrap(),
        hour: day(3).and_hms_opt(7, 0, 0).unwrap().and_utc(),
        model_id: "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.model-v1".into(),
        component: "cache_read_tokens",
    };
    assert_eq!(ledger::parse_key(&key.text()), Some(key));
    assert_eq!(ledger::parse_key("clinic-a/not-a-time/m/input_tokens"), None);
    assert_eq!(ledger::parse_key("clinic-a/2026-11-03T07:00:00Z/m/other"), None);
}
