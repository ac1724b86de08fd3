//! Validation: the fields of one usage object into a [`UsageEvent`], or a reason to refuse it.
//!
//! The checks run in a fixed order (identity fields, tokens, totals, time, id) so that a record
//! with several faults always gets the same reason.

use std::borrow::Cow;
use std::cell::RefCell;

use agentmeter_schemas::{
    EventId, IdCache, IdError, ModelId, Reason, ServiceTier, SessionId, SourceUri, TenantId, Tier,
    Tokens, UsageEvent, UserId,
};
use chrono::{DateTime, Datelike};

use crate::canonical::content_id;
use crate::config::DecodeConfig;
use crate::fields::{Fields, Got, Key, Scalar};

/// A refusal: the reason code and a detail naming the field and value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Refusal {
    pub reason: Reason,
    pub detail: String,
}

pub(crate) fn refuse(reason: Reason, detail: impl Into<String>) -> Refusal {
    Refusal { reason, detail: detail.into() }
}

/// The tiers, tenants, users and models a decoder thread met recently: a stream has few of
/// each, so each is validated and allocated once and every record shares it.
#[derive(Default)]
struct RecentIds {
    tiers: IdCache<Tier>,
    tenants: IdCache<TenantId>,
    users: IdCache<UserId>,
    models: IdCache<ModelId>,
}

thread_local! {
    static RECENT: RefCell<RecentIds> = RefCell::new(RecentIds::default());
}

macro_rules! recent {
    ($(#[$doc:meta])* $fn:ident, $ty:ty, $field:ident) => {
        $(#[$doc])*
        pub(crate) fn $fn(value: &str) -> Result<$ty, IdError> {
            RECENT.with_borrow_mut(|r| r.$field.get(value, |v| <$ty>::new(v)))
        }
    };
}

recent!(
    /// `Tier::new`, shared with the records before.
    tier_id, Tier, tiers
);
recent!(
    /// `TenantId::new`, shared with the records before.
    tenant_id, TenantId, tenants
);
recent!(
    /// `UserId::new`, shared with the records before.
    user_id, UserId, users
);
recent!(
    /// `ModelId::new`, shared with the records before.
    model_id, ModelId, models
);

/// What the CloudWatch log event around the object says, if there is one.
#[derive(Debug, Default)]
pub(crate) struct Envelope<'e> {
    /// The log event id.
    pub id: Option<EventId>,
    /// The log event timestamp, milliseconds.
    pub timestamp_ms: Option<i64>,
    /// The text hashed for an id when neither the envelope nor the object has one.
    pub identity_text: Option<&'e str>,
}

/// Earliest and latest accepted event times: years 1970 to 9999, so that every `dt`
/// partition is a plain `YYYY-MM-DD`.
const MIN_MS: i64 = 0;
const MAX_MS: i64 = 253_402_300_799_999;

pub(crate) fn check_time_ms(ms: i64, what: &str) -> Result<i64, Refusal> {
    if (MIN_MS..=MAX_MS).contains(&ms) {
        Ok(ms)
    } else {
        Err(refuse(Reason::InvalidTimestamp, format!("{what} {ms} is outside years 1970 to 9999")))
    }
}

fn string<'f>(
    f: &'f Fields<'_>,
    key: Key,
    name: &str,
    invalid: Reason,
) -> Result<Option<&'f str>, Refusal> {
    match f.get(key) {
        Got::Absent => Ok(None),
        Got::Conflict(a, b) => Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ"))),
        Got::One(_, Scalar::Str(s)) => Ok(Some(s.as_ref())),
        Got::One(_, other) => Err(refuse(
            if matches!(other, Scalar::Null) { Reason::MissingField } else { invalid },
            format!("{name} must be a string, got {}", other.describe()),
        )),
    }
}

fn required<'f>(
    f: &'f Fields<'_>,
    key: Key,
    name: &str,
    invalid: Reason,
) -> Result<&'f str, Refusal> {
    string(f, key, name, invalid)?
        .ok_or_else(|| refuse(Reason::MissingField, format!("{name} is missing")))
}

fn count(f: &Fields<'_>, key: Key, name: &str, need: bool) -> Result<Option<i64>, Refusal> {
    match f.get(key) {
        Got::Absent if need => Err(refuse(Reason::MissingField, format!("{name} is missing"))),
        Got::Absent => Ok(None),
        Got::Conflict(a, b) => Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ"))),
        Got::One(spelled, Scalar::Int(i)) => match i64::try_from(*i) {
            Ok(v) if v >= 0 => Ok(Some(v)),
            _ if *i < 0 => Err(refuse(Reason::InvalidField, format!("{spelled} is negative: {i}"))),
            _ => Err(refuse(Reason::InvalidField, format!("{spelled} is too large: {i}"))),
        },
        Got::One(spelled, Scalar::Null) if !need => {
            let _ = spelled;
            Ok(None)
        }
        Got::One(spelled, other) => Err(refuse(
            Reason::InvalidField,
            format!("{spelled} must be a non-negative integer, got {}", other.describe()),
        )),
    }
}

/// The tenant from the configured field or `tenant_id`.
fn tenant(f: &Fields<'_>, field: &str) -> Result<TenantId, Refusal> {
    let primary = string(f, Key::Tenant, field, Reason::InvalidTenantId)?;
    let alt = string(f, Key::TenantAlt, "tenant_id", Reason::InvalidTenantId)?;
    let value = match (primary, alt) {
        (Some(a), Some(b)) if a != b => {
            return Err(refuse(
                Reason::ConflictingField,
                format!("{field} {a:?} and tenant_id {b:?} differ"),
            ));
        }
        (Some(a), _) => a,
        (None, Some(b)) => b,
        (None, None) => {
            return Err(refuse(Reason::MissingField, format!("{field} (or tenant_id) is missing")));
        }
    };
    tenant_id(value).map_err(|e| refuse(Reason::InvalidTenantId, e.to_string()))
}

/// `actor` without its `{tier}-{tenant}-` prefix, if it has it (without building the prefix:
/// half of the agents' lines name their user this way).
pub(crate) fn strip_actor_prefix<'s>(
    actor: &'s str,
    tier: &Tier,
    tenant: &TenantId,
) -> Option<&'s str> {
    actor
        .strip_prefix(tier.as_str())?
        .strip_prefix('-')?
        .strip_prefix(tenant.as_str())?
        .strip_prefix('-')
}

/// The user from `user_id`, else from `actor_id` = `{tier}-{tenant}-{user}`. Tenant ids
/// contain hyphens, so the known prefix is removed rather than splitting on `-`.
fn user(f: &Fields<'_>, tier: &Tier, tenant: &TenantId) -> Result<UserId, Refusal> {
    if let Some(u) = string(f, Key::UserId, "user_id", Reason::InvalidUserId)? {
        return user_id(u).map_err(|e| refuse(Reason::InvalidUserId, e.to_string()));
    }
    let Some(actor) = string(f, Key::ActorId, "actor_id", Reason::InvalidUserId)? else {
        return Err(refuse(Reason::MissingField, "user_id (or actor_id) is missing"));
    };
    let rest = strip_actor_prefix(actor, tier, tenant).ok_or_else(|| {
        let prefix = format!("{tier}-{tenant}-");
        refuse(Reason::InvalidUserId, format!("actor_id {actor:?} does not start with {prefix:?}"))
    })?;
    user_id(rest).map_err(|e| refuse(Reason::InvalidUserId, format!("from actor_id: {e}")))
}

fn tokens(f: &Fields<'_>, max: i64) -> Result<Tokens, Refusal> {
    let input = count(f, Key::Input, "input_tokens", true)?.unwrap_or_default();
    let output = count(f, Key::Output, "output_tokens", true)?.unwrap_or_default();
    let total = count(f, Key::Total, "total_tokens", true)?.unwrap_or_default();
    let cache_read = count(f, Key::CacheRead, "cache_read_tokens", false)?.unwrap_or_default();
    let cache_write = count(f, Key::CacheWrite, "cache_write_tokens", false)?.unwrap_or_default();
    let cache_write_1h =
        count(f, Key::CacheWrite1h, "cache_write_1h_tokens", false)?.unwrap_or_default();
    if cache_write_1h > cache_write {
        return Err(refuse(
            Reason::InvalidField,
            format!(
                "cache_write_1h_tokens {cache_write_1h} is more than cache_write_tokens \
                 {cache_write}, of which it is a part"
            ),
        ));
    }
    // One absurd call must not overflow everyone's sums (nor bill a tenant for it).
    for (name, n) in [
        ("input_tokens", input),
        ("output_tokens", output),
        ("total_tokens", total),
        ("cache_read_tokens", cache_read),
        ("cache_write_tokens", cache_write),
    ] {
        if n > max {
            return Err(implausible_tokens(name, n, max));
        }
    }
    let io = i128::from(input) + i128::from(output);
    let all = io + i128::from(cache_read) + i128::from(cache_write);
    if i128::from(total) != io && i128::from(total) != all {
        let detail = if cache_read == 0 && cache_write == 0 {
            format!("total_tokens {total} != input {input} + output {output} (= {io})")
        } else {
            format!(
                "total_tokens {total} is neither input {input} + output {output} (= {io}) nor \
                 that + cache read {cache_read} + cache write {cache_write} (= {all})"
            )
        };
        return Err(refuse(Reason::InconsistentTotal, detail));
    }
    Ok(Tokens { input, output, total, cache_read, cache_write, cache_write_1h })
}

/// The service tier the call ran in: standard when the line names none.
fn service_tier(f: &Fields<'_>) -> Result<ServiceTier, Refusal> {
    match f.get(Key::ServiceTier) {
        Got::Absent | Got::One(_, Scalar::Null) => Ok(ServiceTier::Standard),
        Got::Conflict(a, b) => Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ"))),
        Got::One(name, Scalar::Str(s)) => ServiceTier::from_logged(s).ok_or_else(|| {
            refuse(
                Reason::InvalidField,
                format!(
                    "{name} {s:?} is not a known service tier (standard or default, priority, \
                     flex, batch)"
                ),
            )
        }),
        Got::One(name, other) => Err(refuse(
            Reason::InvalidField,
            format!("{name} must be a string or {{\"type\": ...}}, got {}", other.describe()),
        )),
    }
}

/// The refusal of a token count over the plausible maximum of one call.
pub(crate) fn implausible_tokens(name: &str, n: i64, max: i64) -> Refusal {
    refuse(
        Reason::ImplausibleValue,
        format!("{name} {n} is over the plausible maximum of {max} tokens per call"),
    )
}

/// The milliseconds of `YYYY-MM-DDTHH:MM:SS[.f{1,9}]Z`, the form loggers write, read without
/// chrono's general RFC 3339 parser (a ninth of a usage line's validation); `None` for any
/// other text, which chrono then reads (or refuses in its words). Only values chrono reads
/// the same are taken: a valid date, hours to 23, seconds to 59 (a leap second is chrono's).
fn utc_millis(s: &str) -> Option<i64> {
    // 1970-01-01 counted from 0001-01-01 as day 1.
    const UNIX_EPOCH_DAYS_FROM_CE: i64 = 719_163;
    let b = s.as_bytes();
    let frac = match b.len() {
        20 => &b[19..19],
        22..=30 if b[19] == b'.' => &b[20..b.len() - 1],
        _ => return None,
    };
    let head: &[u8; 20] = b[..20].try_into().ok()?;
    if head[4] != b'-' || head[7] != b'-' || head[10] != b'T' || head[13] != b':' {
        return None;
    }
    if head[16] != b':' || *b.last()? != b'Z' {
        return None;
    }
    // Every digit place tested without a branch, then the fields summed.
    const DIGITS: [usize; 14] = [0, 1, 2, 3, 5, 6, 8, 9, 11, 12, 14, 15, 17, 18];
    if !DIGITS.iter().fold(true, |ok, &i| ok & head[i].is_ascii_digit()) {
        return None;
    }
    let d = |i: usize| i64::from(head[i] - b'0');
    let two = |i: usize| d(i) * 10 + d(i + 1);
    let (year, month, day) = (two(0) * 100 + two(2), two(5), two(8));
    let (hour, minute, second) = (two(11), two(14), two(17));
    if hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    // chrono's own calendar: an invalid date (30 February) is `None`, left to its parser.
    let (m, d) = (u32::try_from(month).ok()?, u32::try_from(day).ok()?);
    let date = chrono::NaiveDate::from_ymd_opt(i32::try_from(year).ok()?, m, d)?;
    // Milliseconds are the first three digits of the fraction; finer ones are dropped.
    let mut millis = 0;
    for (i, &c) in frac.iter().enumerate() {
        if !c.is_ascii_digit() {
            return None;
        }
        if i < 3 {
            millis = millis * 10 + i64::from(c - b'0');
        }
    }
    for _ in frac.len()..3 {
        millis *= 10;
    }
    let days = i64::from(date.num_days_from_ce()) - UNIX_EPOCH_DAYS_FROM_CE;
    Some(((days * 24 + hour) * 60 + minute) * 60_000 + second * 1000 + millis)
}

fn object_time(f: &Fields<'_>) -> Result<i64, Refusal> {
    match f.get(Key::Timestamp) {
        Got::Absent | Got::One(_, Scalar::Null) => Err(refuse(
            Reason::MissingTimestamp,
            "no CloudWatch event timestamp and no timestamp field",
        )),
        Got::Conflict(a, b) => Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ"))),
        Got::One(_, Scalar::Str(s)) => {
            if let Some(ms) = utc_millis(s) {
                return check_time_ms(ms, "timestamp");
            }
            let t = DateTime::parse_from_rfc3339(s).map_err(|e| {
                refuse(Reason::InvalidTimestamp, format!("timestamp {s:?} is not RFC 3339: {e}"))
            })?;
            // Athena keeps milliseconds; finer digits are dropped, never rounded up into
            // the next millisecond (or the next day's partition).
            check_time_ms(t.timestamp_millis(), "timestamp")
        }
        Got::One(_, other) => Err(refuse(
            Reason::InvalidTimestamp,
            format!("timestamp must be an RFC 3339 string, got {}", other.describe()),
        )),
    }
}

/// An id value (string or integer literal) as an [`EventId`].
pub(crate) fn id_value(value: &Scalar<'_>, name: &str) -> Result<EventId, Refusal> {
    let text: Cow<'_, str> = match value {
        Scalar::Str(s) => Cow::Borrowed(s.as_ref()),
        Scalar::Digits(d) => Cow::Borrowed(d),
        Scalar::Int(i) => Cow::Owned(i.to_string()),
        other => {
            return Err(refuse(
                Reason::InvalidEventId,
                format!("{name} must be a string or an integer, got {}", other.describe()),
            ));
        }
    };
    EventId::new(text.as_ref()).map_err(|e| refuse(Reason::InvalidEventId, e.to_string()))
}

fn object_id(f: &Fields<'_>) -> Result<Option<EventId>, Refusal> {
    match f.get(Key::EventId) {
        Got::Absent | Got::One(_, Scalar::Null) => Ok(None),
        Got::Conflict(a, b) => Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ"))),
        Got::One(name, v) => id_value(v, name).map(Some),
    }
}

/// Validates a usage object (its `event` already known to be `inference_usage`).
pub(crate) fn usage_event(
    f: &Fields<'_>,
    object_text: &str,
    cfg: &DecodeConfig,
    source: &SourceUri,
    env: &Envelope<'_>,
) -> Result<UsageEvent, Refusal> {
    let tenant_field = cfg.tenant_field.as_str();
    let tier = required(f, Key::Tier, "tier", Reason::InvalidTier)?;
    let tier = tier_id(tier).map_err(|e| refuse(Reason::InvalidTier, e.to_string()))?;
    let tenant_id = tenant(f, tenant_field)?;
    let user_id = user(f, &tier, &tenant_id)?;
    let model = required(f, Key::ModelId, "model_id", Reason::InvalidModelId)?;
    let model_id = model_id(model).map_err(|e| refuse(Reason::InvalidModelId, e.to_string()))?;
    let tokens = tokens(f, cfg.max_tokens_per_call)?;
    let service_tier = service_tier(f)?;
    let event_time_ms = match env.timestamp_ms {
        Some(ms) => ms,
        None => object_time(f)?,
    };
    let event_id = match (&env.id, object_id(f)?) {
        (Some(id), _) => id.clone(),
        (None, Some(id)) => id,
        (None, None) => {
            let text = env.identity_text.unwrap_or(object_text);
            content_id(text)
                .ok_or_else(|| refuse(Reason::InvalidJson, "record cannot be re-read for its id"))?
        }
    };
    let session_id = match f.get(Key::SessionId) {
        Got::Absent | Got::One(_, Scalar::Null) => None,
        _ => match string(f, Key::SessionId, "session_id", Reason::InvalidField)? {
            None | Some("") => None,
            Some(s) => {
                Some(SessionId::new(s).map_err(|e| refuse(Reason::InvalidField, e.to_string()))?)
            }
        },
    };
    Ok(UsageEvent {
        event_time_ms,
        event_id,
        tier,
        tenant_id,
        user_id,
        model_id,
        source: source.clone(),
        tokens,
        session_id,
        service_tier,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fields::parse_object;

    const BASE: &str = r#""event":"inference_usage","tier":"basic","clinic_id":"clinic-a","user_id":"dr.lee@clinic-a.example","model_id":"mistral.ministral-3-8b-instruct","input_tokens":812,"output_tokens":97,"total_tokens":909,"timestamp":"2026-10-01T12:00:00.123456Z""#;

    fn run(extra: &str) -> Result<UsageEvent, Refusal> {
        let text =
            if extra.is_empty() { format!("{{{BASE}}}") } else { format!("{{{BASE},{extra}}}") };
        let f = parse_object(&text, "clinic_id").unwrap();
        usage_event(
            &f,
            &text,
            &DecodeConfig::default(),
            &SourceUri::new("file:///x"),
            &Envelope::default(),
        )
    }

    fn without(field: &str) -> Result<UsageEvent, Refusal> {
        let mut v: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(&format!("{{{BASE}}}")).unwrap();
        v.remove(field);
        let text = serde_json::to_string(&v).unwrap();
        let f = parse_object(&text, "clinic_id").unwrap();
        usage_event(
            &f,
            &text,
            &DecodeConfig::default(),
            &SourceUri::new("file:///x"),
            &Envelope::default(),
        )
    }

    #[test]
    fn the_seed_record_is_valid_and_time_is_truncated_to_ms() {
        let e = run("").unwrap();
        assert_eq!(e.tenant_id.as_str(), "clinic-a");
        assert_eq!(e.tokens, Tokens { input: 812, output: 97, total: 909, ..Tokens::default() });
        assert_eq!(e.service_tier, ServiceTier::Standard);
        assert_eq!(e.event_time_ms, 1_790_856_000_123);
        assert!(e.event_id.as_str().starts_with("h:"));
        assert_eq!(e.event_id.as_str().len(), 34);
    }

    #[test]
    fn cache_writes_by_lifetime_from_every_shape() {
        let want = |all, hour| (all, hour);
        for (extra, got) in [
            // Flat: the 1-hour part beside the total.
            (r#""cache_write_input_tokens":30,"cache_write_1h_tokens":20"#, want(30, 20)),
            // Converse's breakdown, alone or beside an equal total.
            (
                r#""cacheDetails":[{"ttl":"1h","inputTokens":20},{"ttl":"5m","inputTokens":10}]"#,
                want(30, 20),
            ),
            (
                r#""cacheWriteInputTokens":30,"cacheDetails":[{"ttl":"1h","inputTokens":20},{"ttl":"5m","inputTokens":10}]"#,
                want(30, 20),
            ),
            // Anthropic's object, beside its total.
            (
                r#""cache_creation_input_tokens":30,"cache_creation":{"ephemeral_5m_input_tokens":10,"ephemeral_1h_input_tokens":20}"#,
                want(30, 20),
            ),
            // No lifetime said: all 5-minute.
            (r#""cache_write_input_tokens":30"#, want(30, 0)),
        ] {
            let e = run(extra).unwrap_or_else(|r| panic!("{extra}: {r:?}"));
            assert_eq!((e.tokens.cache_write, e.tokens.cache_write_1h), got, "{extra}");
        }
    }

    #[test]
    fn bad_cache_breakdowns_are_refused_by_name() {
        for (extra, reason, detail) in [
            (
                r#""cache_write_input_tokens":10,"cache_write_1h_tokens":20"#,
                Reason::InvalidField,
                "cache_write_1h_tokens 20 is more than cache_write_tokens 10, of which it is a part",
            ),
            (
                r#""cacheWriteInputTokens":31,"cacheDetails":[{"ttl":"1h","inputTokens":20},{"ttl":"5m","inputTokens":10}]"#,
                Reason::ConflictingField,
                "cacheWriteInputTokens and cacheDetails differ",
            ),
            (
                r#""cacheDetails":[{"ttl":"2h","inputTokens":20}]"#,
                Reason::InvalidField,
                "cacheDetails must be a non-negative integer, got an object or array",
            ),
        ] {
            let r = run(extra).unwrap_err();
            assert_eq!((r.reason, r.detail.as_str()), (reason, detail), "{extra}");
        }
    }

    #[test]
    fn service_tiers_as_logged() {
        for (extra, tier) in [
            (r#""service_tier":"priority""#, ServiceTier::Priority),
            (r#""serviceTier":{"type":"flex"}"#, ServiceTier::Flex),
            (r#""serviceTier":{"type":"default"}"#, ServiceTier::Standard),
            (r#""service_tier":"batch""#, ServiceTier::Batch),
            (r#""service_tier":null"#, ServiceTier::Standard),
        ] {
            assert_eq!(run(extra).unwrap().service_tier, tier, "{extra}");
        }
        let r = run(r#""service_tier":"reserved""#).unwrap_err();
        assert_eq!(r.reason, Reason::InvalidField);
        assert_eq!(
            r.detail,
            "service_tier \"reserved\" is not a known service tier (standard or default, \
             priority, flex, batch)"
        );
        let r = run(r#""service_tier":"priority","serviceTier":{"type":"flex"}"#).unwrap_err();
        assert_eq!(r.reason, Reason::ConflictingField);
    }

    #[test]
    fn each_missing_field_is_named() {
        for (field, detail) in [
            ("tier", "tier is missing"),
            ("clinic_id", "clinic_id (or tenant_id) is missing"),
            ("user_id", "user_id (or actor_id) is missing"),
            ("model_id", "model_id is missing"),
            ("input_tokens", "input_tokens is missing"),
            ("output_tokens", "output_tokens is missing"),
            ("total_tokens", "total_tokens is missing"),
        ] {
            assert_eq!(
                without(field).unwrap_err(),
                refuse(Reason::MissingField, detail),
                "{field}"
            );
        }
        assert_eq!(without("timestamp").unwrap_err().reason, Reason::MissingTimestamp);
    }

    #[test]
    fn implausible_token_counts_are_refused_before_they_can_overflow_a_sum() {
        let text = format!("{{{BASE}}}");
        let f = parse_object(&text, "clinic_id").unwrap();
        let env = Envelope::default();
        let src = SourceUri::new("x");
        let cfg = DecodeConfig::default().with_max_tokens_per_call(900).unwrap();
        assert_eq!(
            usage_event(&f, &text, &cfg, &src, &env).unwrap_err(),
            refuse(
                Reason::ImplausibleValue,
                "total_tokens 909 is over the plausible maximum of 900 tokens per call"
            )
        );
        let cfg = DecodeConfig::default().with_max_tokens_per_call(909).unwrap();
        assert!(usage_event(&f, &text, &cfg, &src, &env).is_ok(), "the maximum itself passes");
        let huge = text.replace("812", "5000000000000000000").replace("909", "5000000000000000097");
        let f = parse_object(&huge, "clinic_id").unwrap();
        assert_eq!(
            usage_event(&f, &huge, &DecodeConfig::default(), &src, &env).unwrap_err(),
            refuse(
                Reason::ImplausibleValue,
                "input_tokens 5000000000000000000 is over the plausible maximum of 100000000 \
                 tokens per call"
            )
        );
    }

    #[test]
    fn bad_token_values() {
        let cases = [
            (r#""cache_read_tokens":-1"#, "cache_read_tokens is negative: -1"),
            (
                r#""cache_read_input_tokens":"5""#,
                "cache_read_input_tokens must be a non-negative integer, got \"5\"",
            ),
            (
                r#""cacheWriteInputTokens":1.0"#,
                "cacheWriteInputTokens must be a non-negative integer, got 1.0",
            ),
            (
                r#""cache_read_tokens":10.0"#,
                "cache_read_tokens must be a non-negative integer, got 10.0",
            ),
            (
                r#""cache_read_tokens":1e3"#,
                "cache_read_tokens must be a non-negative integer, got 1e3",
            ),
            (
                r#""cache_write_tokens":9223372036854775808"#,
                "cache_write_tokens is too large: 9223372036854775808",
            ),
            (
                r#""cache_write_tokens":18446744073709551616"#,
                "cache_write_tokens is too large: 18446744073709551616",
            ),
            (
                r#""cache_write_tokens":123456789012345678901234567890123456789012"#,
                "cache_write_tokens must be a non-negative integer, got \
                 123456789012345678901234567890123456789012",
            ),
        ];
        for (extra, detail) in cases {
            assert_eq!(run(extra).unwrap_err(), refuse(Reason::InvalidField, detail), "{extra}");
        }
        assert_eq!(
            run(r#""prompt_tokens":1"#).unwrap_err(),
            refuse(Reason::ConflictingField, "input_tokens and prompt_tokens differ")
        );
        assert!(run(r#""prompt_tokens":812"#).is_ok());
    }

    #[test]
    fn totals_with_and_without_cache() {
        assert_eq!(
            run(r#""cache_read_tokens":10"#).unwrap().tokens.cache_read,
            10,
            "total = input + output is accepted with cache counts present"
        );
        let text = BASE.replace("\"total_tokens\":909", "\"total_tokens\":919");
        let bad = format!("{{{text}}}");
        let f = parse_object(&bad, "clinic_id").unwrap();
        let err = usage_event(
            &f,
            &bad,
            &DecodeConfig::default(),
            &SourceUri::new("x"),
            &Envelope::default(),
        )
        .unwrap_err();
        assert_eq!(
            err,
            refuse(Reason::InconsistentTotal, "total_tokens 919 != input 812 + output 97 (= 909)")
        );
        let ok = format!("{{{text},\"cache_write_input_tokens\":10}}");
        let f = parse_object(&ok, "clinic_id").unwrap();
        assert!(
            usage_event(
                &f,
                &ok,
                &DecodeConfig::default(),
                &SourceUri::new("x"),
                &Envelope::default()
            )
            .is_ok()
        );
    }

    #[test]
    fn tenant_rules() {
        assert_eq!(run(r#""tenant_id":"clinic-a""#).unwrap().tenant_id.as_str(), "clinic-a");
        assert_eq!(run(r#""tenant_id":"clinic-b""#).unwrap_err().reason, Reason::ConflictingField);
        let bad = format!("{{{}}}", BASE.replace("\"clinic-a\"", "\"../../etc\""));
        let f = parse_object(&bad, "clinic_id").unwrap();
        let err = usage_event(
            &f,
            &bad,
            &DecodeConfig::default(),
            &SourceUri::new("x"),
            &Envelope::default(),
        )
        .unwrap_err();
        assert_eq!(err.reason, Reason::InvalidTenantId);
        assert!(err.detail.contains("\"../../etc\""), "{}", err.detail);
    }

    #[test]
    fn user_from_actor_id_removes_the_known_prefix() {
        let text = BASE.replace(
            "\"user_id\":\"dr.lee@clinic-a.example\"",
            "\"actor_id\":\"basic-clinic-a-dr-lee\"",
        );
        let text = format!("{{{text}}}");
        let f = parse_object(&text, "clinic_id").unwrap();
        let e = usage_event(
            &f,
            &text,
            &DecodeConfig::default(),
            &SourceUri::new("x"),
            &Envelope::default(),
        )
        .unwrap();
        assert_eq!(e.user_id.as_str(), "dr-lee");
        let text = text.replace("basic-clinic-a-dr-lee", "premium-clinic-a-dr-lee");
        let f = parse_object(&text, "clinic_id").unwrap();
        let err = usage_event(
            &f,
            &text,
            &DecodeConfig::default(),
            &SourceUri::new("x"),
            &Envelope::default(),
        )
        .unwrap_err();
        assert_eq!(err.reason, Reason::InvalidUserId);
    }

    #[test]
    fn envelope_time_and_id_win() {
        let text = format!("{{{BASE},\"event_id\":\"own\"}}");
        let f = parse_object(&text, "clinic_id").unwrap();
        let env = Envelope {
            id: Some(EventId::new("cw-1").unwrap()),
            timestamp_ms: Some(5),
            identity_text: None,
        };
        let e =
            usage_event(&f, &text, &DecodeConfig::default(), &SourceUri::new("x"), &env).unwrap();
        assert_eq!((e.event_id.as_str(), e.event_time_ms), ("cw-1", 5));
        let e = usage_event(
            &f,
            &text,
            &DecodeConfig::default(),
            &SourceUri::new("x"),
            &Envelope::default(),
        )
        .unwrap();
        assert_eq!(e.event_id.as_str(), "own");
    }

    #[test]
    fn bad_timestamps() {
        for (ts, reason) in [
            ("\"yesterday\"", Reason::InvalidTimestamp),
            ("1760000000000", Reason::InvalidTimestamp),
            ("\"1969-12-31T23:59:59Z\"", Reason::InvalidTimestamp),
            ("null", Reason::MissingTimestamp),
        ] {
            let text = format!("{{{}}}", BASE.replace("\"2026-10-01T12:00:00.123456Z\"", ts));
            let f = parse_object(&text, "clinic_id").unwrap();
            let err = usage_event(
                &f,
                &text,
                &DecodeConfig::default(),
                &SourceUri::new("x"),
                &Envelope::default(),
            )
            .unwrap_err();
            assert_eq!(err.reason, reason, "{ts}");
        }
    }

    fn chrono_millis(s: &str) -> Option<i64> {
        DateTime::parse_from_rfc3339(s).ok().map(|t| t.timestamp_millis())
    }

    /// The fast path reads exactly what chrono reads, and leaves to chrono what it does not.
    #[test]
    fn utc_millis_agrees_with_chrono() {
        for s in [
            "2026-10-01T00:00:00.418Z",
            "2026-10-01T12:00:00.123456Z",
            "2026-10-01T12:00:00.123456789Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999Z",
            "0000-01-01T00:00:00Z",
            "9999-12-31T23:59:59.9Z",
            "2000-02-29T10:00:00Z",
            "2024-02-29T23:59:59.5Z",
            "1600-03-01T00:00:00Z",
        ] {
            assert_eq!(utc_millis(s), chrono_millis(s), "{s}");
            assert!(utc_millis(s).is_some(), "{s} takes the fast path");
        }
        // Left to chrono: other zones, separators, leap seconds, invalid dates, odd fractions.
        for s in [
            "2026-10-01T00:00:00+02:00",
            "2026-10-01t00:00:00Z",
            "2026-10-01 00:00:00Z",
            "2026-10-01T00:00:60Z",
            "2026-10-01T24:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-00-10T00:00:00Z",
            "2026-10-00T00:00:00Z",
            "2026-10-01T00:00:00.Z",
            "2026-10-01T00:00:00.1234567891Z",
            "2026-10-01T00:00:00z",
            "+2026-10-01T00:00:00Z",
            "2026-1a-01T00:00:00Z",
        ] {
            assert_eq!(utc_millis(s), None, "{s}");
        }
        // A leap second chrono reads, and so keeps it.
        assert!(chrono_millis("2026-10-01T00:00:60Z").is_some());
    }

    proptest::proptest! {
        // A failure prints its input; no regression file is written (README, "Property tests").
        #![proptest_config(proptest::prelude::ProptestConfig {
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]
        /// Every field around and past its bounds, and fractions of every length: wherever
        /// the fast path reads a value, chrono reads the same one, and where it does not,
        /// chrono refuses too (but for a leap second and fractions past nanoseconds).
        #[test]
        fn utc_millis_never_disagrees_with_chrono(
            (year, month, day) in (0u32..10_000, 0u32..14, 0u32..33),
            (hour, minute, second) in (0u32..25, 0u32..61, 0u32..61),
            frac in 0usize..11,
            frac_digits in proptest::collection::vec(0u8..10, 10),
        ) {
            let mut s =
                format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}");
            if frac > 0 {
                s.push('.');
                s.extend(frac_digits[..frac].iter().map(|&x| char::from(b'0' + x)));
            }
            s.push('Z');
            if let Some(ms) = utc_millis(&s) {
                proptest::prop_assert_eq!(Some(ms), chrono_millis(&s), "{}", s);
            } else if frac <= 9 && second != 60 {
                proptest::prop_assert_eq!(chrono_millis(&s), None, "{} refused by chrono too", s);
            }
        }
    }
}
