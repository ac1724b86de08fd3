//! `agentmeter.toml`, the configuration of `agentmeter run`: parsed strictly (unknown keys are
//! errors) and validated before anything starts, every error naming its key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use agentmeter_ingest::kinesis::StartPosition;
use agentmeter_pipeline::LakeLocation;
use serde::Deserialize;

/// The documented example, with every key at its default (README "Running as a service").
#[cfg(test)]
pub const EXAMPLE: &str = include_str!("../examples/agentmeter.toml");

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    lake: Option<String>,
    #[serde(default = "default_tenant_field")]
    tenant_field: String,
    #[serde(default = "default_max_tokens")]
    max_tokens_per_call: i64,
    #[serde(default)]
    http: RawHttp,
    #[serde(default)]
    otlp: RawOtlp,
    #[serde(default)]
    kinesis: Vec<RawKinesis>,
    #[serde(default)]
    rollups: RawRollups,
    #[serde(default)]
    flags: RawFlags,
    #[serde(default)]
    api: RawApi,
    #[serde(default)]
    limits: RawLimits,
}

/// `[limits]`: as `agentmeter ingest --max-json-depth` and the others.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_json_depth")]
    json_depth: u64,
    #[serde(default = "default_attributes")]
    attributes: u64,
    #[serde(default = "default_tenants_per_batch")]
    tenants_per_batch: u64,
    #[serde(default = "default_users_per_batch")]
    users_per_batch: u64,
}

impl Default for RawLimits {
    fn default() -> Self {
        Self {
            json_depth: default_json_depth(),
            attributes: default_attributes(),
            tenants_per_batch: default_tenants_per_batch(),
            users_per_batch: default_users_per_batch(),
        }
    }
}

fn default_json_depth() -> u64 {
    agentmeter_ingest::RecordLimits::default().json_depth as u64
}
fn default_attributes() -> u64 {
    agentmeter_ingest::RecordLimits::default().attributes as u64
}
fn default_tenants_per_batch() -> u64 {
    agentmeter_ingest::RecordLimits::default().tenants_per_batch as u64
}
fn default_users_per_batch() -> u64 {
    agentmeter_ingest::RecordLimits::default().users_per_batch as u64
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    tokens: Option<PathBuf>,
    prices: Option<PathBuf>,
    tenants: Option<PathBuf>,
}

fn default_tenant_field() -> String {
    "clinic_id".into()
}

fn default_max_tokens() -> i64 {
    agentmeter_ingest::DEFAULT_MAX_TOKENS_PER_CALL
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_listen")]
    listen: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        Self { listen: default_listen() }
    }
}

fn default_listen() -> String {
    "127.0.0.1:4318".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawOtlp {
    auth_token_file: Option<PathBuf>,
    wal_dir: Option<PathBuf>,
    #[serde(default = "default_max_body")]
    max_body_bytes: u64,
    #[serde(default = "default_in_flight")]
    max_in_flight: u64,
    #[serde(default = "default_flush")]
    flush_interval_ms: u64,
    #[serde(default = "default_backlog")]
    max_log_backlog_mib: u64,
}

impl Default for RawOtlp {
    fn default() -> Self {
        Self {
            auth_token_file: None,
            wal_dir: None,
            max_body_bytes: default_max_body(),
            max_in_flight: default_in_flight(),
            flush_interval_ms: default_flush(),
            max_log_backlog_mib: default_backlog(),
        }
    }
}

fn default_backlog() -> u64 {
    1024
}
fn default_max_body() -> u64 {
    16 << 20
}
fn default_in_flight() -> u64 {
    64
}
fn default_flush() -> u64 {
    2000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKinesis {
    stream: Option<String>,
    #[serde(default = "default_start")]
    start: String,
}

fn default_start() -> String {
    "trim-horizon".into()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRollups {
    #[serde(default = "default_checkpoint")]
    checkpoint_interval_ms: u64,
    #[serde(default = "default_rollup")]
    interval_ms: u64,
}

impl Default for RawRollups {
    fn default() -> Self {
        Self { checkpoint_interval_ms: default_checkpoint(), interval_ms: default_rollup() }
    }
}

fn default_checkpoint() -> u64 {
    5000
}
fn default_rollup() -> u64 {
    60_000
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFlags {
    #[serde(default = "default_true")]
    enabled: bool,
    #[serde(default = "default_every")]
    every_minutes: u64,
    policy: Option<PathBuf>,
    prices: Option<PathBuf>,
    out: Option<PathBuf>,
    #[serde(default)]
    alerts: Vec<String>,
    #[serde(default = "default_alert_max_age")]
    alert_max_age_hours: u64,
}

impl Default for RawFlags {
    fn default() -> Self {
        Self {
            enabled: true,
            every_minutes: default_every(),
            policy: None,
            prices: None,
            out: None,
            alerts: Vec::new(),
            alert_max_age_hours: default_alert_max_age(),
        }
    }
}

fn default_alert_max_age() -> u64 {
    u64::from(crate::cli::DEFAULT_ALERT_MAX_AGE_HOURS)
}

fn default_true() -> bool {
    true
}
fn default_every() -> u64 {
    60
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct RunConfig {
    pub lake: LakeLocation,
    pub tenant_field: String,
    pub max_tokens_per_call: i64,
    pub limits: agentmeter_ingest::RecordLimits,
    /// The receiver's write-ahead log (`None`: the default for the lake).
    pub wal_dir: Option<PathBuf>,
    pub listen: SocketAddr,
    pub auth_token_file: Option<PathBuf>,
    pub max_body_bytes: usize,
    pub max_in_flight: usize,
    pub flush_interval: Duration,
    /// Acknowledged spans waiting for the lake beyond which requests get 503, bytes.
    pub max_log_backlog_bytes: u64,
    /// Kinesis streams, with where a shard without a checkpoint starts.
    pub streams: Vec<String>,
    pub start: StartPosition,
    pub checkpoint_interval: Duration,
    pub rollup_interval: Duration,
    /// `None` when flags are off.
    pub flags: Option<FlagsConfig>,
    /// The usage API's token file (`None`: the API is off), price book and roster.
    pub api_tokens: Option<PathBuf>,
    pub api_prices: Option<PathBuf>,
    pub api_tenants: Option<PathBuf>,
}

/// The scheduled flags.
#[derive(Debug, Clone)]
pub struct FlagsConfig {
    pub every: Duration,
    pub policy: Option<PathBuf>,
    /// Price book of the policy's usd budgets.
    pub prices: Option<PathBuf>,
    pub out: PathBuf,
    pub alerts: Vec<String>,
    /// Hours an undelivered alert is kept and retried (`flags --alert-max-age-hours`).
    pub alert_max_age_hours: u32,
}

/// Reads and validates `path`; relative paths in it are relative to the file's directory.
///
/// # Errors
///
/// A message naming the file and the key at fault.
pub fn load(path: &Path) -> Result<RunConfig, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    parse(&text, path.parent().unwrap_or(Path::new(".")))
        .map_err(|e| format!("{}: {e}", path.display()))
}

/// Parses and validates a configuration; `base` resolves relative paths.
///
/// # Errors
///
/// A message naming the key at fault.
pub fn parse(text: &str, base: &Path) -> Result<RunConfig, String> {
    let raw: Raw = toml::from_str(text).map_err(|e| e.to_string().trim().replace('\n', " "))?;
    let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
    let lake = raw.lake.ok_or("lake: required (a directory or s3://BUCKET/PREFIX)")?;
    let lake = match LakeLocation::parse(&lake).map_err(|e| format!("lake: {e}"))? {
        LakeLocation::Dir(p) => LakeLocation::Dir(resolve(p)),
        s3 => s3,
    };
    agentmeter_ingest::DecodeConfig::default()
        .with_max_tokens_per_call(raw.max_tokens_per_call)
        .map_err(|e| format!("max_tokens_per_call: {e}"))?;
    let l = &raw.limits;
    for (key, v, max) in [
        ("json_depth", l.json_depth, agentmeter_ingest::MAX_JSON_DEPTH_CEILING as u64),
        ("attributes", l.attributes, 10_000_000),
        ("tenants_per_batch", l.tenants_per_batch, 10_000_000),
        ("users_per_batch", l.users_per_batch, 10_000_000),
    ] {
        if !(1..=max).contains(&v) {
            return Err(format!("limits.{key}: must be between 1 and {max}, got {v}"));
        }
    }
    let n = |v: u64| usize::try_from(v).unwrap_or(usize::MAX);
    let limits = agentmeter_ingest::RecordLimits {
        json_depth: n(l.json_depth),
        attributes: n(l.attributes),
        tenants_per_batch: n(l.tenants_per_batch),
        users_per_batch: n(l.users_per_batch),
    };
    if raw.tenant_field.is_empty() {
        return Err("tenant_field: must not be empty".into());
    }
    let listen: SocketAddr = raw.http.listen.parse().map_err(|e| {
        format!("http.listen: {:?} is not an address and port ({e})", raw.http.listen)
    })?;
    let positive = |key: &str, v: u64| {
        if v == 0 { Err(format!("{key}: must be at least 1")) } else { Ok(v) }
    };
    let max_body_bytes = positive("otlp.max_body_bytes", raw.otlp.max_body_bytes)?;
    let max_in_flight = positive("otlp.max_in_flight", raw.otlp.max_in_flight)?;
    let flush = positive("otlp.flush_interval_ms", raw.otlp.flush_interval_ms)?;
    let backlog = positive("otlp.max_log_backlog_mib", raw.otlp.max_log_backlog_mib)?;
    let mut streams = Vec::new();
    let mut start = None;
    for (i, k) in raw.kinesis.iter().enumerate() {
        let stream = k.stream.clone().ok_or(format!("kinesis[{i}].stream: required"))?;
        match agentmeter_pipeline::sources::parse_source(&format!("kinesis://{stream}")) {
            Ok(Some(_)) => {}
            _ => {
                return Err(format!("kinesis[{i}].stream: {stream:?} is not a stream name or ARN"));
            }
        }
        if streams.contains(&stream) {
            return Err(format!("kinesis[{i}].stream: {stream:?} is listed twice"));
        }
        let s: StartPosition = k.start.parse().map_err(|e| format!("kinesis[{i}].start: {e}"))?;
        if start.is_some_and(|p| p != s) {
            return Err(format!(
                "kinesis[{i}].start: every stream must start the same way (one reader, one start position)"
            ));
        }
        start = Some(s);
        streams.push(stream);
    }
    let checkpoint =
        positive("rollups.checkpoint_interval_ms", raw.rollups.checkpoint_interval_ms)?;
    let rollup = positive("rollups.interval_ms", raw.rollups.interval_ms)?;
    let flags =
        if raw.flags.enabled {
            let every = positive("flags.every_minutes", raw.flags.every_minutes)?;
            let max_age = positive("flags.alert_max_age_hours", raw.flags.alert_max_age_hours)?;
            let alert_max_age_hours = u32::try_from(max_age).map_err(|_| {
                format!("flags.alert_max_age_hours: must be at most {}, got {max_age}", u32::MAX)
            })?;
            for (i, a) in raw.flags.alerts.iter().enumerate() {
                a.parse::<agentmeter_reports::alerts::AlertSink>()
                    .map_err(|e| format!("flags.alerts[{i}]: {e}"))?;
            }
            let policy = raw.flags.policy.map(resolve);
            let prices = raw.flags.prices.map(resolve);
            if let Some(p) = &policy {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| format!("flags.policy: {}: {e}", p.display()))?;
                let parsed = agentmeter_reports::flags::Policy::from_toml_str(&text)
                    .map_err(|e| format!("flags.policy: {}: {e}", p.display()))?;
                if parsed.budgets.needs_prices() && prices.is_none() {
                    return Err(format!(
                        "flags.prices: required: the policy {} has usd budgets",
                        p.display()
                    ));
                }
            }
            if let Some(p) = &prices {
                agentmeter_reports::prices::PriceBook::load(p)
                    .map_err(|e| format!("flags.prices: {}: {e}", p.display()))?;
            }
            Some(FlagsConfig {
                every: Duration::from_secs(every * 60),
                policy,
                prices,
                out: resolve(raw.flags.out.ok_or(
                    "flags.out: required when flags are enabled (where flags.jsonl goes)",
                )?),
                alerts: raw.flags.alerts,
                alert_max_age_hours,
            })
        } else {
            None
        };
    if raw.api.tokens.is_none() && (raw.api.prices.is_some() || raw.api.tenants.is_some()) {
        return Err("api.tokens: required when api.prices or api.tenants is set (the API is off without tokens)".into());
    }
    if raw.api.prices.is_none() && raw.api.tenants.is_some() {
        return Err(
            "api.prices: required when api.tenants is set (the roster serves invoice previews)"
                .into(),
        );
    }
    Ok(RunConfig {
        lake,
        tenant_field: raw.tenant_field,
        max_tokens_per_call: raw.max_tokens_per_call,
        limits,
        wal_dir: raw.otlp.wal_dir.map(resolve),
        listen,
        auth_token_file: raw.otlp.auth_token_file.map(resolve),
        max_body_bytes: usize::try_from(max_body_bytes).unwrap_or(usize::MAX),
        max_in_flight: usize::try_from(max_in_flight).unwrap_or(usize::MAX),
        flush_interval: Duration::from_millis(flush),
        max_log_backlog_bytes: backlog.saturating_mul(1 << 20),
        streams,
        start: start.unwrap_or(StartPosition::TrimHorizon),
        checkpoint_interval: Duration::from_millis(checkpoint),
        rollup_interval: Duration::from_millis(rollup),
        flags,
        api_tokens: raw.api.tokens.map(resolve),
        api_prices: raw.api.prices.map(resolve),
        api_tenants: raw.api.tenants.map(resolve),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_example_is_valid_and_holds_the_defaults() {
        let c = parse(EXAMPLE, Path::new("/etc/agentmeter")).unwrap();
        assert_eq!(c.lake, LakeLocation::Dir("/var/lib/agentmeter/lake".into()));
        assert_eq!(c.listen, "127.0.0.1:4318".parse().unwrap());
        assert_eq!(c.streams, ["clinic-usage"]);
        assert_eq!(c.start, StartPosition::TrimHorizon);
        assert_eq!((c.max_body_bytes, c.max_in_flight), (16 << 20, 64));
        assert_eq!(c.flush_interval, Duration::from_millis(2000));
        assert_eq!(c.checkpoint_interval, Duration::from_millis(5000));
        assert_eq!(c.rollup_interval, Duration::from_secs(60));
        assert_eq!(c.max_log_backlog_bytes, 1 << 30);
        let f = c.flags.unwrap();
        assert_eq!(f.every, Duration::from_secs(3600));
        assert_eq!(f.out, Path::new("/var/lib/agentmeter/out"));
        assert_eq!(f.alert_max_age_hours, 168);
        assert_eq!(c.limits, agentmeter_ingest::RecordLimits::default());
        // The minimal file: only the lake, flags off.
        let c = parse("lake = \"lake\"\n[flags]\nenabled = false\n", Path::new("/srv")).unwrap();
        assert_eq!(c.lake, LakeLocation::Dir("/srv/lake".into()));
        assert!(c.streams.is_empty() && c.flags.is_none());
    }

    #[test]
    fn errors_name_the_key() {
        let err = |t: &str| parse(t, Path::new("/srv")).unwrap_err();
        assert!(err("").contains("lake: required"));
        assert!(err("lake = \"l\"\nlakes = 1\n").contains("unknown field `lakes`"));
        assert!(err("lake = \"l\"\n[http]\nlisten = \"localhost\"\n").contains("http.listen"));
        assert!(
            err("lake = \"l\"\n[otlp]\nmax_in_flight = 0\n")
                .contains("otlp.max_in_flight: must be at least 1")
        );
        assert!(
            err("lake = \"l\"\n[otlp]\nmax_log_backlog_mib = 0\n")
                .contains("otlp.max_log_backlog_mib: must be at least 1")
        );
        assert_eq!(
            err("lake = \"l\"\n[limits]\njson_depth = 129\n"),
            "limits.json_depth: must be between 1 and 128, got 129"
        );
        assert!(err("lake = \"l\"\n[limits]\ndepth = 3\n").contains("unknown field `depth`"));
        assert!(
            err("lake = \"l\"\n[[kinesis]]\nstart = \"latest\"\n")
                .contains("kinesis[0].stream: required")
        );
        assert!(err("lake = \"l\"\n[[kinesis]]\nstream = \"a/b\"\n").contains("kinesis[0].stream"));
        assert!(
            err("lake = \"l\"\n[[kinesis]]\nstream = \"s\"\nstart = \"oldest\"\n")
                .contains("kinesis[0].start")
        );
        assert!(
            err("lake = \"l\"\n[[kinesis]]\nstream = \"s\"\n[[kinesis]]\nstream = \"s\"\n")
                .contains("listed twice")
        );
        assert!(err("lake = \"l\"\n").contains("flags.out: required"));
        assert!(
            err("lake = \"l\"\n[flags]\nenabled = false\n[api]\nprices = \"p.toml\"\n")
                .starts_with("api.tokens: required when api.prices or api.tenants is set")
        );
        assert!(
            err("lake = \"l\"\n[flags]\nenabled = false\n[api]\ntokens = \"t\"\ntenants = \"r\"\n")
                .starts_with("api.prices: required when api.tenants is set")
        );
        assert!(err("lake = \"l\"\n[api]\ntoken = \"t\"\n").contains("unknown field `token`"));
        assert!(
            err("lake = \"l\"\n[flags]\nout = \"o\"\nalerts = [\"ftp://x\"]\n")
                .contains("flags.alerts[0]")
        );
        assert!(
            err("lake = \"l\"\n[flags]\nout = \"o\"\npolicy = \"/nonexistent.toml\"\n")
                .contains("flags.policy")
        );
        assert!(
            err("lake = \"l\"\n[flags]\nout = \"o\"\nalert_max_age_hours = 0\n")
                .contains("flags.alert_max_age_hours: must be at least 1")
        );
        assert!(
            err("lake = \"l\"\n[flags]\nout = \"o\"\nalert_max_age_hours = 4294967296\n")
                .contains("flags.alert_max_age_hours: must be at most 4294967295")
        );
        // A sink's credentials never reach the error (user-info, query and fragment).
        let e = err(
            "lake = \"l\"\n[flags]\nout = \"o\"\nalerts = [\"https://u:pw@h:99999/x?token=t0k#f\"]\n",
        );
        assert!(e.contains("flags.alerts[0]") && e.contains("[redacted]"), "{e}");
        assert!(!e.contains("pw") && !e.contains("t0k") && !e.contains("#f"), "{e}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 128, failure_persistence: None, ..Default::default()
        })]

        /// Any change to the example, or any text, gives a configuration or an error with a
        /// message; never a panic.
        #[test]
        fn any_text_is_a_configuration_or_an_error(
            at in 0..EXAMPLE.len(),
            len in 0..24usize,
            with in "[ -~\n]{0,16}",
            noise in "[ -~\n]{0,200}",
        ) {
            let b = EXAMPLE.as_bytes();
            let end = (at + len).min(b.len());
            let mut text = b[..at].to_vec();
            text.extend_from_slice(with.as_bytes());
            text.extend_from_slice(&b[end..]);
            for t in [String::from_utf8_lossy(&text).into_owned(), noise] {
                if let Err(e) = parse(&t, Path::new("/srv")) {
                    proptest::prop_assert!(!e.is_empty());
                }
            }
        }
    }
}
