//! A run's delivery against the alert state, with the loopback server of the webhook tests:
//! no credentials in the state, retries only to the sink that missed an alert, the circuit
//! breaker over pending alerts, expiry, and state files of the older format.

use std::sync::Arc;
use std::sync::atomic::{AtomicU16, Ordering};

use chrono::{DateTime, TimeDelta, Utc};

use super::tests::{alert, alerts, capture_logs, fast_options, time};
use super::webhook_tests::{LIMIT, TestServer, status};
use super::*;
use crate::flags::Alert;
use crate::flags::Transition::Raised;
use crate::flags::state::{Backlog, FlagState, Pending};

/// What no state file may contain, from `http://user:pass@…/hook?token=s3cr3t`.
const CREDENTIALS: [&str; 3] = ["pass", "s3cr3t", "user:"];

fn now() -> DateTime<Utc> {
    time("2026-11-02T08:00:00Z")
}

/// A server answering every request with a status the test can change.
fn switchable(initial: u16) -> (TestServer, Arc<AtomicU16>) {
    let code = Arc::new(AtomicU16::new(initial));
    let current = Arc::clone(&code);
    (TestServer::start(move |_| status(current.load(Ordering::SeqCst))), code)
}

/// The webhook URL with credentials in user-info and query, on `server`.
fn secret_url(server: &TestServer) -> String {
    format!("http://user:pass@{}/hook?token=s3cr3t", server.address)
}

/// How [`secret_url`]'s sink is shown.
fn shown(server: &TestServer) -> String {
    format!("http://[redacted]@{}/hook?[redacted]", server.address)
}

async fn run(
    state: &mut FlagState,
    new_alerts: &[Alert],
    sinks: &[AlertSink],
    at: DateTime<Utc>,
) -> OutboxReport {
    let opts = fast_options();
    let delivery = deliver_with_state(state, new_alerts, sinks, &opts, at);
    tokio::time::timeout(LIMIT, delivery).await.expect("delivery timed out")
}

/// The state file's bytes, as `agentmeter flags` writes them.
fn saved(state: &FlagState) -> Vec<u8> {
    serde_json::to_vec_pretty(state).unwrap()
}

fn assert_no_credentials(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    for needle in CREDENTIALS {
        assert!(
            !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
            "{needle:?} in {text}"
        );
    }
}

fn keys_received(server: &TestServer) -> Vec<String> {
    let received = server.received();
    received.iter().map(|r| r.header("idempotency-key").unwrap().to_owned()).collect()
}

fn ids(alerts: &[Alert]) -> Vec<String> {
    alerts.iter().map(|a| a.alert_id.clone()).collect()
}

#[tokio::test]
async fn credentials_are_never_stored_and_the_sink_back_gets_each_pending_alert_once() {
    let (server, code) = switchable(500);
    let url = secret_url(&server);
    let sink: AlertSink = url.parse().unwrap();
    let sent = alerts(3);

    let mut state = FlagState::default();
    let report = run(&mut state, &sent, std::slice::from_ref(&sink), now()).await;

    // One alert tried (3 attempts), then the circuit opened: the other two not attempted.
    assert_eq!(server.received().len(), 3);
    assert_eq!(server.received()[0].path, "/hook?token=s3cr3t", "the receiver gets the token");
    assert_eq!(report.delivered, 0);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].sink, shown(&server));
    assert_eq!(report.circuits_open, [CircuitOpen { sink: shown(&server), kept: 3 }]);
    let expected: Vec<Pending> = sent
        .iter()
        .zip([3, 0, 0])
        .map(|(alert, attempts)| Pending {
            sink: shown(&server),
            sink_key: sink.key(),
            alert: alert.clone(),
            first_failed_at: now(),
            attempts,
        })
        .collect();
    assert_eq!(state.pending, expected);
    let bytes = saved(&state);
    assert_no_credentials(&bytes);
    assert_no_credentials(format!("{report:?}").as_bytes());

    // The next run, the same --alert, the receiver back: each pending alert once, in order.
    code.store(200, Ordering::SeqCst);
    let later = now() + TimeDelta::hours(1);
    let mut state = FlagState::from_json(&bytes, later).unwrap();
    let again: AlertSink = url.parse().unwrap();
    let report = run(&mut state, &[], std::slice::from_ref(&again), later).await;
    assert_eq!(report.delivered, 3);
    assert!(report.failures.is_empty() && report.circuits_open.is_empty(), "{report:?}");
    assert!(state.pending.is_empty());
    assert_eq!(keys_received(&server)[3..], ids(&sent));

    // Nothing is left to send.
    let report = run(&mut state, &[], &[again], later).await;
    assert_eq!(report.delivered, 0);
    assert_eq!(server.received().len(), 6);
}

#[tokio::test]
async fn a_dead_sink_with_many_pending_alerts_costs_one_alerts_attempts() {
    let dead = TestServer::start(|_| status(503));
    let sink = dead.sink();
    let since = now() - TimeDelta::hours(5);
    let earlier = alerts(63);
    let mut state = FlagState {
        pending: earlier.iter().map(|a| Pending::new(&sink, a.clone(), since, 4)).collect(),
        ..FlagState::default()
    };
    let new = vec![alert(64, Raised)];

    let report = run(&mut state, &new, std::slice::from_ref(&sink), now()).await;

    // fast_options: 3 attempts, all for the oldest pending alert.
    assert_eq!(keys_received(&dead), vec![earlier[0].alert_id.clone(); 3]);
    assert_eq!(report.delivered, 0);
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.circuits_open, [CircuitOpen { sink: sink.to_string(), kept: 64 }]);
    assert_eq!(
        report.circuits_open[0].to_string(),
        format!("circuit open for {sink}: 64 alerts kept for the next run")
    );
    // Everything stays pending, in order: the tried one with its attempts added and its
    // first failure kept, the held ones as they were, the new one since now, unattempted.
    assert_eq!(state.pending.len(), 64);
    assert_eq!(
        ids(&state.pending.iter().map(|p| p.alert.clone()).collect::<Vec<_>>())[..63],
        ids(&earlier)
    );
    assert_eq!((state.pending[0].attempts, state.pending[0].first_failed_at), (7, since));
    assert!(state.pending[1..63].iter().all(|p| p.attempts == 4 && p.first_failed_at == since));
    assert_eq!(state.pending[63], Pending::new(&sink, new[0].clone(), now(), 0));
}

#[tokio::test]
async fn pending_alerts_go_only_to_the_sink_with_their_key() {
    // Same host and path, another token: shown alike, but another sink.
    let server = TestServer::start(|_| status(200));
    let old: AlertSink = server.url("/hook?token=old").parse().unwrap();
    let new: AlertSink = server.url("/hook?token=new").parse().unwrap();
    assert_eq!(old.to_string(), new.to_string());
    let mut state = FlagState {
        pending: alerts(2).into_iter().map(|a| Pending::new(&old, a, now(), 1)).collect(),
        ..FlagState::default()
    };
    let before = state.pending.clone();
    let fresh = alert(9, Raised);

    let report =
        run(&mut state, std::slice::from_ref(&fresh), std::slice::from_ref(&new), now()).await;

    assert_eq!(report.delivered, 1);
    let received = server.received();
    let paths: Vec<&str> = received.iter().map(|r| r.path.as_str()).collect();
    assert_eq!(paths, ["/hook?token=new"]);
    assert_eq!(keys_received(&server), [fresh.alert_id]);
    assert_eq!(state.pending, before, "kept as they were, for a run with their sink");
    let backlog = state.backlog(std::slice::from_ref(&new));
    assert_eq!(backlog, [Backlog { sink: old.to_string(), alerts: 2 }]);
    assert!(state.backlog(&[new, old]).is_empty());
}

#[tokio::test]
async fn each_alert_goes_once_to_each_sink() {
    let server = TestServer::start(|_| status(200));
    let sink = server.sink();
    let mut state = FlagState {
        pending: vec![Pending::new(&sink, alert(1, Raised), now(), 2)],
        ..FlagState::default()
    };
    // The pending alert comes again as new, and the sink is given twice.
    let report =
        run(&mut state, &alerts(2), &[sink.clone(), server.url("/hook").parse().unwrap()], now())
            .await;

    assert_eq!(report.delivered, 2);
    assert_eq!(keys_received(&server), ids(&alerts(2)));
    assert!(state.pending.is_empty());
}

#[test]
fn pending_alerts_older_than_the_maximum_age_are_dropped_and_logged() {
    let (_guard, logs) = capture_logs();
    let sink: AlertSink = "http://user:pass@hooks.example.com/h?token=s3cr3t".parse().unwrap();
    let max_age = TimeDelta::hours(168);
    let ages = [max_age + TimeDelta::seconds(1), max_age, TimeDelta::hours(1)];
    let kept: Vec<Pending> = (1..=3)
        .zip(ages)
        .map(|(n, age)| Pending::new(&sink, alert(n, Raised), now() - age, 2))
        .collect();
    let mut state = FlagState { pending: kept.clone(), ..FlagState::default() };

    let expired = state.expire(now(), max_age);

    assert_eq!(expired, kept[..1]);
    assert_eq!(state.pending, kept[1..], "exactly the maximum age is still kept");
    assert!(state.expire(now(), max_age).is_empty());
    let logs = logs.lock().unwrap();
    let lines: Vec<&String> = logs.iter().filter(|l| l.contains("maximum age")).collect();
    assert_eq!(lines.len(), 1, "{logs:?}");
    assert!(lines[0].starts_with("WARN"), "{}", lines[0]);
    assert!(lines[0].contains("sink=http://[redacted]@hooks.example.com/h?[redacted]"));
    assert!(lines[0].contains(&format!("alert_id={}", kept[0].alert.alert_id)), "{}", lines[0]);
    assert_no_credentials(lines[0].as_bytes());
}

#[tokio::test]
async fn an_old_state_file_is_migrated_redacted_and_still_matches_its_sink() {
    let server = TestServer::start(|_| status(200));
    let url = secret_url(&server);
    let sink: AlertSink = url.parse().unwrap();
    // The format before sink keys: the sink as given, nothing else.
    let old = serde_json::json!({
        "evaluated_through": "2026-10-31T00:00:00Z",
        "active": {},
        "pending": [
            {"sink": url, "alert": alert(1, Raised)},
            {"sink": "gopher://user:pass@example.com/?token=s3cr3t", "alert": alert(2, Raised)},
        ],
    });

    let mut state = FlagState::from_json(&serde_json::to_vec(&old).unwrap(), now()).unwrap();

    assert_eq!(state.evaluated_through, Some(time("2026-10-31T00:00:00Z")));
    assert_eq!(
        state.pending[0],
        Pending {
            sink: shown(&server),
            sink_key: sink.key(),
            alert: alert(1, Raised),
            first_failed_at: now(),
            attempts: 0,
        }
    );
    // A sink that no longer parses keeps neither its text nor a key any sink can have.
    assert_eq!(state.pending[1].sink, "[unrecognized sink]");
    assert_eq!(state.pending[1].sink_key.len(), 64);
    assert_ne!(state.pending[1].sink_key, sink.key());
    let rewritten = saved(&state);
    assert_no_credentials(&rewritten);
    // The new format reads back as it is, whenever it is read.
    assert_eq!(FlagState::from_json(&rewritten, now() + TimeDelta::days(3)).unwrap(), state);

    // The sink given again gets its alert, once; the other waits until it expires.
    let report = run(&mut state, &[], &[sink], now()).await;
    assert_eq!(report.delivered, 1);
    assert_eq!(keys_received(&server), [alert(1, Raised).alert_id]);
    assert_eq!(state.pending.len(), 1);
    assert_eq!(state.pending[0].sink, "[unrecognized sink]");
}

#[test]
fn a_state_file_without_pending_alerts_still_reads() {
    let bytes = br#"{"evaluated_through":null,"active":{}}"#;
    assert_eq!(FlagState::from_json(bytes, now()).unwrap(), FlagState::default());
    let error = FlagState::from_json(b"{\"active\":3}", now()).unwrap_err();
    assert!(error.to_string().contains("invalid type"), "{error}");
}
