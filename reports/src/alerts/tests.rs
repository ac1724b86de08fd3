//! Parsing, the secret, the file and stdout sinks, and helpers the other test files share.

use std::collections::{BTreeMap, HashMap};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use agentmeter_schemas::{TenantId, Tier};
use chrono::{DateTime, Utc};

use super::*;
use crate::flags::{Alert, Evidence, Flag, FlagKind, FlagStatus, Severity, Transition};

/// A secret no output may contain.
pub(crate) const SECRET: &str = "whsec-Sup3r-S3cret-do-not-leak";

pub(crate) fn time(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

/// The `n`th noisy tenant's alert.
pub(crate) fn alert(n: u32, transition: Transition) -> Alert {
    let flag_id = format!("silo_migration/basic/clinic-{n:03}");
    let verb = match transition {
        Transition::Raised => "raised",
        Transition::Resolved => "resolved",
    };
    Alert {
        alert_id: format!("{flag_id}/{verb}/2026-10-07T00:00:00Z"),
        transition,
        at: time("2026-10-08T00:00:00Z"),
        flag: Flag {
            id: flag_id,
            kind: FlagKind::SiloMigration,
            tier: Tier::new("basic").unwrap(),
            tenant_id: Some(TenantId::new(format!("clinic-{n:03}")).unwrap()),
            window_start: time("2026-10-01T00:00:00Z"),
            window_end: time("2026-10-08T00:00:00Z"),
            metric: "pool_share".into(),
            value: 0.375,
            threshold: 0.2,
            evidence: Evidence {
                hours_over: Some(120),
                hours_active: Some(150),
                figures: BTreeMap::from([("requests".to_owned(), 1234.0)]),
                ..Evidence::default()
            },
            severity: Severity::Warning,
            recommended_action: format!(
                "move clinic-{n:03} from the basic pool to a silo — it used over 20% of the \
                 pool in 120 of its 150 active hours"
            ),
            status: FlagStatus::Active,
        },
    }
}

pub(crate) fn alerts(count: u32) -> Vec<Alert> {
    (1..=count).map(|n| alert(n, Transition::Raised)).collect()
}

/// Options with a secret and tiny waits.
pub(crate) fn fast_options() -> DeliveryOptions {
    DeliveryOptions {
        webhook_secret: Some(Secret::new(SECRET)),
        max_attempts: 3,
        initial_backoff: Duration::from_millis(1),
        max_backoff: Duration::from_millis(20),
        timeout: Duration::from_secs(5),
        sns_client: None,
        eventbridge_client: None,
    }
}

/// Asserts that the secret is in no part of a report.
pub(crate) fn assert_no_secret(report: &DeliveryReport) {
    let mut texts = vec![format!("{report:?}")];
    for failure in &report.failures {
        texts.push(failure.to_string());
        texts.push(failure.error.clone());
    }
    for text in texts {
        assert!(!text.contains(SECRET), "the secret leaked into {text}");
    }
}

/// Collects every tracing event emitted on this thread while the guard lives (the
/// workspace has no subscriber crate for tests; this one formats `field=value` pairs).
///
/// While at most one dispatcher is registered, tracing-core computes a call site's interest
/// from the default dispatcher of whichever thread hits the site first: a site first hit on
/// another test's thread would be cached as "never" and this test would miss its events.
/// A second dispatcher, registered for the whole process and never anyone's default, keeps
/// tracing-core asking every registered dispatcher instead.
pub(crate) fn capture_logs() -> (tracing::dispatcher::DefaultGuard, Arc<Mutex<Vec<String>>>) {
    static BYSTANDER: OnceLock<tracing::Dispatch> = OnceLock::new();
    BYSTANDER.get_or_init(|| tracing::Dispatch::new(Capture(Arc::default())));
    let lines = Arc::new(Mutex::new(Vec::new()));
    let dispatch = tracing::Dispatch::new(Capture(Arc::clone(&lines)));
    (tracing::dispatcher::set_default(&dispatch), lines)
}

struct Capture(Arc<Mutex<Vec<String>>>);

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} ", event.metadata().level());
        event.record(&mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
            let _ = write!(line, "{}={value:?} ", field.name());
        });
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

// ---- parsing ----

fn refusal(value: &str) -> String {
    value.parse::<AlertSink>().unwrap_err().to_string()
}

fn expected(value: &str, reason: &str) -> String {
    format!("invalid alert sink {value:?}: {reason}; accepted: {ACCEPTED_FORMS}")
}

#[test]
fn accepted_forms_parse() {
    let cases = [
        ("stdout", AlertSink::Stdout),
        (
            "file:///var/lib/agentmeter/alerts.jsonl",
            AlertSink::File("/var/lib/agentmeter/alerts.jsonl".into()),
        ),
        ("FILE:///tmp/a%20b.jsonl", AlertSink::File("/tmp/a b.jsonl".into())),
        (
            "https://hooks.example.com/agentmeter",
            AlertSink::Webhook("https://hooks.example.com/agentmeter".into()),
        ),
        ("http://127.0.0.1:8080", AlertSink::Webhook("http://127.0.0.1:8080/".into())),
        (
            "HTTPS://Hooks.Example.com:8443/a?b=c",
            AlertSink::Webhook("https://hooks.example.com:8443/a?b=c".into()),
        ),
        (
            "arn:aws:sns:us-east-1:123456789012:agentmeter-alerts",
            AlertSink::Sns {
                topic_arn: "arn:aws:sns:us-east-1:123456789012:agentmeter-alerts".into(),
                region: "us-east-1".into(),
            },
        ),
        (
            "arn:aws-us-gov:sns:us-gov-west-1:123456789012:alerts_2.fifo",
            AlertSink::Sns {
                topic_arn: "arn:aws-us-gov:sns:us-gov-west-1:123456789012:alerts_2.fifo".into(),
                region: "us-gov-west-1".into(),
            },
        ),
        (
            "arn:aws-cn:sns:cn-north-1:000000000000:a",
            AlertSink::Sns {
                topic_arn: "arn:aws-cn:sns:cn-north-1:000000000000:a".into(),
                region: "cn-north-1".into(),
            },
        ),
    ];
    for (value, sink) in cases {
        assert_eq!(value.parse::<AlertSink>().unwrap(), sink, "{value}");
    }
    let longest = format!("arn:aws:sns:eu-west-1:123456789012:{}", "t".repeat(256));
    assert!(longest.parse::<AlertSink>().is_ok());
}

#[test]
fn refusals_name_the_value_and_the_rule() {
    let cases = [
        ("", "it is empty"),
        ("  ", "it is empty"),
        (" stdout", "it has leading or trailing whitespace"),
        ("STDOUT", "it is not one of the accepted forms"),
        ("alerts.jsonl", "it is not one of the accepted forms"),
        ("/tmp/alerts.jsonl", "it is not one of the accepted forms"),
        ("ftp://example.com/alerts", "it is not one of the accepted forms"),
        ("file:alerts.jsonl", "a file sink is written file:///ABSOLUTE/PATH (with three slashes)"),
        (
            "file://alerts.jsonl",
            "a file sink needs an absolute path: file:///ABSOLUTE/PATH \
             (a host or a relative path is not accepted)",
        ),
        (
            "file://host/tmp/alerts.jsonl",
            "a file sink needs an absolute path: file:///ABSOLUTE/PATH \
             (a host or a relative path is not accepted)",
        ),
        ("file:///tmp/../etc/alerts.jsonl", "the path must not contain . or .. segments"),
        ("file:///tmp/alerts/", "the path names a directory, not a file"),
        ("http://", "it is not a valid URL (empty host)"),
        ("https://exa mple.com/", "it is not a valid URL (invalid international domain name)"),
        (
            "arn:aws:sns:us-east-1:123456789012",
            "an ARN sink has six parts: arn:aws:sns:REGION:ACCOUNT_ID:TOPIC or \
             arn:aws:events:REGION:ACCOUNT_ID:event-bus/NAME",
        ),
        (
            "arn:aws:sns:us-east-1:123456789012:alerts:0b6941c5-f68f-4b5a-a3a6-5d1e5e0c7ab4",
            "an ARN sink has six parts: arn:aws:sns:REGION:ACCOUNT_ID:TOPIC or \
             arn:aws:events:REGION:ACCOUNT_ID:event-bus/NAME",
        ),
        (
            "arn:aws:sqs:us-east-1:123456789012:alerts",
            "only SNS topic and EventBridge bus ARNs are accepted, not service \"sqs\"",
        ),
        (
            "arn:azure:sns:us-east-1:123456789012:alerts",
            "unknown partition \"azure\" (accepted: aws, aws-cn, aws-us-gov)",
        ),
        (
            "arn:aws:sns:useast1:123456789012:alerts",
            "invalid region \"useast1\" (expected e.g. us-east-1)",
        ),
        (
            "arn:aws:sns:us-east-1:12345:alerts",
            "invalid account id \"12345\": it must be 12 digits",
        ),
        (
            "arn:aws:sns:us-east-1:123456789012:bad.name",
            "invalid topic name \"bad.name\": 1 to 256 letters, digits, - and _ \
             (a FIFO topic ends in .fifo)",
        ),
        (
            "arn:aws:sns:us-east-1:123456789012:.fifo",
            "invalid topic name \".fifo\": 1 to 256 letters, digits, - and _ \
             (a FIFO topic ends in .fifo)",
        ),
    ];
    for (value, reason) in cases {
        assert_eq!(refusal(value), expected(value, reason), "{value:?}");
    }
    let long_topic = format!("arn:aws:sns:us-east-1:123456789012:{}", "t".repeat(257));
    assert!(refusal(&long_topic).contains("invalid topic name"));
}

#[test]
fn refusals_redact_url_credentials_and_shorten() {
    let message = refusal("ftp://alice:hunter2@example.com/alerts");
    assert_eq!(
        message,
        expected("ftp://[redacted]@example.com/alerts", "it is not one of the accepted forms")
    );
    // Queries and fragments may carry tokens too: a refused value never shows them.
    let cases = [
        ("file:///tmp/alerts.jsonl?x=1", "file:///tmp/alerts.jsonl?[redacted]"),
        ("file:///tmp/alerts.jsonl#x", "file:///tmp/alerts.jsonl#[redacted]"),
        ("ftp://example.com/a?token=s3cr3t#f", "ftp://example.com/a?[redacted]"),
        ("ftp://u:p@example.com?token=s3cr3t", "ftp://[redacted]@example.com?[redacted]"),
    ];
    for (value, shown) in cases {
        let message = refusal(value);
        assert!(message.starts_with(&format!("invalid alert sink {shown:?}: ")), "{message}");
    }
    let message = refusal("https://user:pass@hooks.example.com:99999/h?token=s3cr3t#frag");
    assert_eq!(
        message,
        expected(
            "https://[redacted]@hooks.example.com:99999/h?[redacted]",
            "it is not a valid URL (invalid port number)"
        )
    );
    let long = "x".repeat(500);
    let message = refusal(&long);
    assert!(message.contains(&format!("{:?}…", "x".repeat(200))), "{message}");
}

#[test]
fn display_and_debug_hide_credentials() {
    let sink: AlertSink =
        "https://bot:pa55word@hooks.example.com:8443/services/T1?token=abc#frag".parse().unwrap();
    let shown = sink.to_string();
    assert_eq!(shown, "https://[redacted]@hooks.example.com:8443/services/[redacted]?[redacted]");
    assert_eq!(format!("{sink:?}"), format!("AlertSink({shown})"));
    // Slack-style webhooks carry their secret in the path.
    let slack: AlertSink =
        "https://hooks.slack.com/services/T000/B000/XXXXsecretXXXX".parse().unwrap();
    assert_eq!(slack.to_string(), "https://hooks.slack.com/services/[redacted]");
    let plain: AlertSink = "http://127.0.0.1:9/hook".parse().unwrap();
    assert_eq!(plain.to_string(), "http://127.0.0.1:9/hook");
    assert_eq!(sink.kind(), "webhook");
    let file: AlertSink = "file:///tmp/alerts.jsonl".parse().unwrap();
    assert_eq!(file.to_string(), "file:///tmp/alerts.jsonl");
    assert_eq!(AlertSink::Stdout.to_string(), "stdout");
    let arn = "arn:aws:sns:us-east-1:123456789012:alerts";
    assert_eq!(arn.parse::<AlertSink>().unwrap().to_string(), arn);
}

#[test]
fn keys_identify_the_sink_as_configured_without_holding_it() {
    let key = |value: &str| value.parse::<AlertSink>().unwrap().key();
    let with_token = key("https://bot:pa55word@hooks.example.com/h?token=abc");
    assert_eq!(with_token.len(), 64);
    assert!(with_token.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
    // The same sink however it is spelled; another token, user or path is another sink.
    assert_eq!(with_token, key("HTTPS://bot:pa55word@Hooks.Example.com/h?token=abc"));
    assert_ne!(with_token, key("https://bot:pa55word@hooks.example.com/h?token=abd"));
    assert_ne!(with_token, key("https://bot:other@hooks.example.com/h?token=abc"));
    assert_ne!(with_token, key("https://hooks.example.com/h"));
    // Every kind has a key of its own.
    let kinds = [
        key("stdout"),
        key("file:///tmp/alerts.jsonl"),
        key("file:///tmp/other.jsonl"),
        key("arn:aws:sns:us-east-1:123456789012:alerts"),
        key("https://hooks.example.com/h"),
    ];
    let distinct: std::collections::BTreeSet<&String> = kinds.iter().collect();
    assert_eq!(distinct.len(), kinds.len());
    // Known value: SHA-256 of "stdout\0".
    assert_eq!(key("stdout"), hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"stdout\0")));
}

// ---- the secret ----

fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> + use<> {
    let vars: HashMap<String, OsString> =
        vars.iter().map(|(k, v)| ((*k).to_owned(), OsString::from(v))).collect();
    move |name| vars.get(name).cloned()
}

fn same_secret(a: &Secret, b: &str) -> bool {
    a.signature("1", b"x") == Secret::new(b).signature("1", b"x")
}

#[test]
fn secret_comes_from_the_variable_then_the_file() {
    assert!(Secret::from_lookup(lookup(&[])).unwrap().is_none());

    let secret = Secret::from_lookup(lookup(&[(SECRET_ENV, SECRET)])).unwrap().unwrap();
    assert!(same_secret(&secret, SECRET));

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("secret");
    std::fs::write(&path, format!("{SECRET}\r\n\n")).unwrap();
    let path_text = path.to_str().unwrap();
    let secret = Secret::from_lookup(lookup(&[(SECRET_FILE_ENV, path_text)])).unwrap().unwrap();
    assert!(same_secret(&secret, SECRET));

    // The variable wins over the file.
    let both = lookup(&[(SECRET_ENV, "from-variable"), (SECRET_FILE_ENV, path_text)]);
    assert!(same_secret(&Secret::from_lookup(both).unwrap().unwrap(), "from-variable"));
}

#[test]
fn secret_errors_name_the_variable_never_the_value() {
    let empty = Secret::from_lookup(lookup(&[(SECRET_ENV, "")])).unwrap_err();
    assert_eq!(empty.to_string(), "webhook secret AGENTMETER_WEBHOOK_SECRET is set but empty");

    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing");
    let missing_text = missing.to_str().unwrap();
    let error = Secret::from_lookup(lookup(&[(SECRET_FILE_ENV, missing_text)])).unwrap_err();
    assert_eq!(
        error.to_string(),
        format!(
            "cannot read the webhook secret file {missing_text} named by \
             AGENTMETER_WEBHOOK_SECRET_FILE"
        )
    );
    assert!(std::error::Error::source(&error).is_some());

    let blank = dir.path().join("blank");
    std::fs::write(&blank, "\n").unwrap();
    let error =
        Secret::from_lookup(lookup(&[(SECRET_FILE_ENV, blank.to_str().unwrap())])).unwrap_err();
    assert_eq!(
        error.to_string(),
        "webhook secret AGENTMETER_WEBHOOK_SECRET_FILE names an empty file (after trimming the \
         trailing newline)"
    );

    let big = dir.path().join("big");
    std::fs::write(&big, format!("{SECRET}{}", "x".repeat(70_000))).unwrap();
    let error =
        Secret::from_lookup(lookup(&[(SECRET_FILE_ENV, big.to_str().unwrap())])).unwrap_err();
    let text = format!("{error} {error:?}");
    assert!(text.contains("larger than 64 KiB"), "{text}");
    assert!(!text.contains(SECRET), "{text}");
}

#[test]
fn secret_is_redacted_and_signs_timestamp_dot_body() {
    let secret = Secret::new(SECRET);
    assert_eq!(format!("{secret:?}"), "[redacted]");
    assert_eq!(secret.to_string(), "[redacted]");
    let options = format!("{:?}", fast_options());
    assert!(options.contains("[redacted]") && !options.contains(SECRET), "{options}");

    // Computed with Python: hmac.new(SECRET, b"1767225600." + body, hashlib.sha256).
    assert_eq!(
        secret.signature("1767225600", br#"{"alert_id":"a"}"#),
        "sha256=96c2a88a0ae8be4dda2c5ec1725df3070fc031c63798dd283c6b335c671962d5"
    );

    let body = br#"{"alert_id":"a"}"#;
    let signature = secret.signature("1767225600", body);
    assert!(secret.verify("1767225600", body, &signature));
    assert!(!secret.verify("1767225601", body, &signature));
    assert!(!secret.verify("1767225600", br#"{"alert_id":"b"}"#, &signature));
    assert!(!Secret::new("other").verify("1767225600", body, &signature));
    assert!(!secret.verify("1767225600", body, signature.trim_start_matches("sha256=")));
}

// ---- file and stdout ----

fn read_alerts(path: &std::path::Path) -> Vec<Alert> {
    let text = std::fs::read_to_string(path).unwrap();
    assert!(text.ends_with('\n'));
    text.lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[tokio::test]
async fn file_sink_appends_one_json_line_per_alert() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("nested/deeper/alerts.jsonl");
    let sink: AlertSink = format!("file://{}", path.display()).parse().unwrap();
    let opts = DeliveryOptions::default();

    let first = alerts(2);
    let report = deliver(&first, std::slice::from_ref(&sink), &opts).await;
    assert!(report.is_complete(), "{report:?}");
    let second = vec![alert(1, Transition::Resolved)];
    let report = deliver(&second, std::slice::from_ref(&sink), &opts).await;
    assert_eq!(
        report.sinks,
        vec![SinkReport { sink: sink.to_string(), delivered: 1, failed: 0, held: 0 }]
    );

    let all: Vec<Alert> = first.into_iter().chain(second).collect();
    assert_eq!(read_alerts(&path), all);
    let raw = std::fs::read_to_string(&path).unwrap();
    let expected: String = all.iter().map(|a| serde_json::to_string(a).unwrap() + "\n").collect();
    assert_eq!(raw, expected);
}

#[tokio::test]
async fn a_failing_file_sink_is_recorded_and_the_others_still_deliver() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("blocker"), "a file, not a directory").unwrap();
    let bad: AlertSink =
        format!("file://{}/blocker/alerts.jsonl", dir.path().display()).parse().unwrap();
    let good_path = dir.path().join("good.jsonl");
    let good: AlertSink = format!("file://{}", good_path.display()).parse().unwrap();

    let sent = alerts(2);
    let report = deliver(&sent, &[bad.clone(), good.clone()], &DeliveryOptions::default()).await;

    assert_eq!(report.delivered(), 2);
    assert_eq!(report.failures.len(), 2);
    for (failure, alert) in report.failures.iter().zip(&sent) {
        assert_eq!(failure.sink, bad.to_string());
        assert_eq!(failure.alert_id, alert.alert_id);
        assert_eq!(failure.attempts, 1);
        assert!(failure.error.starts_with("cannot create directory"), "{}", failure.error);
    }
    assert_eq!(report.sinks[0].failed, 2);
    assert_eq!(report.sinks[1].delivered, 2);
    assert_eq!(read_alerts(&good_path), sent);
}

#[tokio::test]
async fn stdout_sink_prints_one_summary_line_per_alert() {
    let mut alert_with_newline = alert(2, Transition::Resolved);
    alert_with_newline.flag.recommended_action = "first line\nsecond line".into();
    let sent = vec![alert(1, Transition::Raised), alert_with_newline];

    let mut out = Vec::new();
    let results = file::write_summaries(&mut out, &sent);
    assert!(results.iter().all(Result::is_ok));
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    assert_eq!(lines[0], sent[0].summary());
    assert_eq!(lines[1], sent[1].summary().replace('\n', " "));

    let report = deliver(&sent, &[AlertSink::Stdout], &DeliveryOptions::default()).await;
    assert_eq!(
        report.sinks,
        vec![SinkReport { sink: "stdout".into(), delivered: 2, failed: 0, held: 0 }]
    );
}

#[tokio::test]
async fn nothing_to_deliver_touches_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alerts.jsonl");
    let sink: AlertSink = format!("file://{}", path.display()).parse().unwrap();
    let report = deliver(&[], &[sink, AlertSink::Stdout], &DeliveryOptions::default()).await;
    assert!(report.is_complete());
    assert_eq!(report.delivered(), 0);
    assert_eq!(report.sinks.len(), 2);
    assert!(!path.exists());
}

#[test]
fn deliver_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let opts = DeliveryOptions::default();
    assert_send(&deliver(&[], &[], &opts));
}

// ---- helpers of the remote sinks ----

#[test]
fn backoff_doubles_and_is_capped() {
    let opts = DeliveryOptions::default();
    let waits: Vec<Duration> =
        [1, 2, 3, 6, 7, 40].iter().map(|&a| webhook::backoff(&opts, a)).collect();
    let ms = Duration::from_millis;
    assert_eq!(waits, [ms(500), ms(1000), ms(2000), ms(16_000), ms(30_000), ms(30_000)]);
}

#[test]
fn subjects_are_ascii_and_at_most_100_characters() {
    let short = alert(1, Transition::Raised);
    let mut short_summary = short.summary();
    short_summary.truncate(60);
    assert_eq!(subject(&short_summary), short_summary);

    let long = alert(7, Transition::Raised).summary();
    assert!(long.contains('—') && long.chars().count() > MAX_SUBJECT_CHARS);
    let cut = subject(&long);
    assert_eq!(cut.len(), MAX_SUBJECT_CHARS, "{cut}");
    assert!(cut.is_ascii() && cut.ends_with("..."), "{cut}");
    assert!(cut.starts_with("[warning] silo_migration raised: tier basic tenant clinic-007"));

    assert_eq!(subject("a — b – c\té ✓"), "a - b - c ? ?");
    assert_eq!(subject(&"é".repeat(150)).len(), MAX_SUBJECT_CHARS);
}

#[test]
fn failures_display_sink_alert_attempts_and_error() {
    let failure = DeliveryFailure {
        sink: "https://hooks.example.com/x".into(),
        alert_id: "a1".into(),
        attempts: 4,
        error: "HTTP 503 Service Unavailable".into(),
    };
    assert_eq!(
        failure.to_string(),
        "alert a1 not delivered to https://hooks.example.com/x after 4 attempts: \
         HTTP 503 Service Unavailable"
    );
}
