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
use chrono::DateTime;

use crate::config::DecodeConfig;
use crate::fields::{Fields, Got, Key, Name, Scalar};

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

fn object_time(f: &Fields<'_>) -> Result<i64, Refusal> {
    match f.get(Key::Timestamp) {
        Got::Absent | Got::One(_, Scalar::Null) => Err(refuse(
            Reason::MissingTimestamp,
            "no CloudWatch event timestamp and no timestamp field",
        )),
        Got::Conflict(a, b) => Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ"))),
        Got::One(_, Scalar::Str(s)) => {
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

/// Canonical JSON (object keys sorted at every level) of `text`, for content-derived ids that
/// do not change with spacing or key order.
pub(crate) fn canonical_json(text: &str) -> Option<String> {
    let tree: Node<'_> = serde_json::from_str(text).ok()?;
    let mut out = Vec::with_capacity(text.len());
    tree.write_canonical(&mut out).ok()?;
    String::from_utf8(out).ok()
}

/// A JSON value as `serde_json::Value` reads it (the same numbers, the last of repeated keys),
/// but borrowing the input's strings and keeping objects as lists: the canonical form is
/// written without a map or an allocation per key and string (content ids took 4 % of an
/// ingest's CPU for the 5 % of lines without an id; BENCHMARKS.md).
enum Node<'a> {
    Null,
    Bool(bool),
    U64(u64),
    I64(i64),
    F64(f64),
    Str(Cow<'a, str>),
    Array(Vec<Node<'a>>),
    Object(Vec<(Cow<'a, str>, Node<'a>)>),
}

impl Node<'_> {
    /// Writes the value with object keys sorted at every level. Keys and scalars are written
    /// by serde_json's own serializer: the bytes `Value::to_string` gives them.
    fn write_canonical(&self, out: &mut Vec<u8>) -> serde_json::Result<()> {
        match self {
            Node::Null => out.extend_from_slice(b"null"),
            Node::Bool(b) => serde_json::to_writer(&mut *out, b)?,
            Node::U64(n) => serde_json::to_writer(&mut *out, n)?,
            Node::I64(n) => serde_json::to_writer(&mut *out, n)?,
            Node::F64(n) => serde_json::to_writer(&mut *out, n)?,
            Node::Str(s) => serde_json::to_writer(&mut *out, s)?,
            Node::Array(items) => {
                out.push(b'[');
                for (i, x) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    x.write_canonical(out)?;
                }
                out.push(b']');
            }
            Node::Object(members) => {
                // A stable sort keeps repeated keys in input order: the last one is the value.
                let mut order: Vec<usize> = (0..members.len()).collect();
                order.sort_by(|&a, &b| members[a].0.cmp(&members[b].0));
                out.push(b'{');
                for (i, run) in order.chunk_by(|&a, &b| members[a].0 == members[b].0).enumerate() {
                    let (key, value) = &members[run[run.len() - 1]];
                    if i > 0 {
                        out.push(b',');
                    }
                    serde_json::to_writer(&mut *out, key)?;
                    out.push(b':');
                    value.write_canonical(out)?;
                }
                out.push(b'}');
            }
        }
        Ok(())
    }
}

impl<'de> serde::Deserialize<'de> for Node<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(NodeVisitor)
    }
}

struct NodeVisitor;

impl<'de> serde::de::Visitor<'de> for NodeVisitor {
    type Value = Node<'de>;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_unit<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'de>, E> {
        Ok(Node::Null)
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'de>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'de>, E> {
        Ok(Node::U64(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'de>, E> {
        Ok(Node::I64(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'de>, E> {
        // As `Value`: a float JSON cannot hold is null.
        Ok(if v.is_finite() { Node::F64(v) } else { Node::Null })
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'de>, E> {
        Ok(Node::Str(Cow::Owned(v)))
    }

    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Node<'de>, A::Error> {
        let mut items = Vec::new();
        while let Some(x) = seq.next_element()? {
            items.push(x);
        }
        Ok(Node::Array(items))
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Node<'de>, A::Error> {
        let mut members = Vec::new();
        while let Some(Name(key)) = map.next_key::<Name<'de>>()? {
            members.push((key, map.next_value()?));
        }
        Ok(Node::Object(members))
    }
}

/// The content-derived id of a record that carries none: `h:` and 32 hex digits.
pub(crate) fn content_id(text: &str) -> Option<EventId> {
    let canon = canonical_json(text)?;
    let hex = agentmeter_schemas::content_digest_hex(canon.as_bytes());
    EventId::new(format!("h:{hex}")).ok()
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

    /// Content ids are persisted: the canonical text must stay byte for byte what it was
    /// (keys sorted, serde_json's escapes and number forms, the last of duplicate keys).
    #[test]
    fn canonical_text_is_pinned() {
        let text = "{\"z\":[1.50,-0,2e3,18446744073709551615,-9223372036854775808,true,null],\
            \"a\":{\"k\\u00e9\":\"caf\u{e9} \\\"q\\\" \\n\\u0001 \\/\",\"b\":{}},\"d\":1,\"d\":2,\"\":[]}";
        assert_eq!(
            canonical_json(text).unwrap(),
            "{\"\":[],\"a\":{\"b\":{},\"k\u{e9}\":\"caf\u{e9} \\\"q\\\" \\n\\u0001 /\"},\"d\":2,\
             \"z\":[1.5,-0.0,2000.0,18446744073709551615,-9223372036854775808,true,null]}"
        );
        assert_eq!(content_id(text).unwrap().as_str(), "h:6529b684d6d5dbd04ce24665fcb2369c");
    }

    /// The canonical text as it was first written: through a `serde_json::Value`.
    fn canonical_through_value(text: &str) -> Option<String> {
        fn write(v: &serde_json::Value, out: &mut String) {
            match v {
                serde_json::Value::Object(m) => {
                    let mut keys: Vec<&String> = m.keys().collect();
                    keys.sort();
                    let members: Vec<String> = keys
                        .into_iter()
                        .map(|k| {
                            let mut s = serde_json::to_string(k).unwrap();
                            s.push(':');
                            write(&m[k], &mut s);
                            s
                        })
                        .collect();
                    out.push_str(&format!("{{{}}}", members.join(",")));
                }
                serde_json::Value::Array(a) => {
                    let items: Vec<String> = a
                        .iter()
                        .map(|x| {
                            let mut s = String::new();
                            write(x, &mut s);
                            s
                        })
                        .collect();
                    out.push_str(&format!("[{}]", items.join(",")));
                }
                other => out.push_str(&other.to_string()),
            }
        }
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        let mut out = String::new();
        write(&v, &mut out);
        Some(out)
    }

    #[test]
    fn canonical_text_is_the_one_a_json_value_gives() {
        let deep = format!("{}1{}", "[".repeat(200), "]".repeat(200));
        let cases = [
            r#"{"event":"inference_usage","tier":"basic","input_tokens":3,"request_id":"r-1"}"#,
            r#"{"b":{"y":[{"q":1,"p":2}],"x":null},"a":[],"c":{}}"#,
            r#"{"d":1,"d":{"z":1,"a":2},"e":[1,{"k":2,"k":3}],"d":[3]}"#,
            r#"{"k\u0000":"\ud83d\ude00","k":"\t","\u00e9":"\\\/","é":1}"#,
            r#"{"n":[0,-0,0.0,-0.0,1e0,1E2,1.5e-7,123456789012345678901234567890]}"#,
            r#"{"n":[9223372036854775807,9223372036854775808,-9223372036854775808]}"#,
            r#"{"n":[-9223372036854775809,18446744073709551616,1.7976931348623157e308]}"#,
            r#"{"n":[5e-324,0.1,0.30000000000000004,-1.0,100,-7,true,false,null]}"#,
            " { \"spaced\" : [ 1 , 2 ] , \"t\" : \"a b\" } ",
            "[1,\"two\",{\"b\":1,\"a\":2}]",
            "\"just a string\"",
            "42",
            deep.as_str(),
            // Not JSON, or not one value: neither reading gives a text.
            "{\"a\":1} trailing",
            "{\"a\":1e400}",
            "{\"a\":}",
            r#"{"a":"\ud800"}"#,
            "",
        ];
        for text in cases {
            assert_eq!(canonical_json(text), canonical_through_value(text), "{text}");
        }
        assert_eq!(canonical_json(&deep), None, "past serde_json's depth limit");
        assert_eq!(
            canonical_json(r#"{"d":1,"d":{"z":1,"a":2}}"#).unwrap(),
            r#"{"d":{"a":2,"z":1}}"#
        );
    }

    #[test]
    fn content_ids_ignore_spacing_and_key_order() {
        let a = content_id(r#"{"a":1,"b":[{"y":2,"x":1}]}"#).unwrap();
        let b = content_id("{ \"b\" : [ {\"x\":1, \"y\":2} ],\n \"a\":1 }").unwrap();
        assert_eq!(a, b);
        assert_ne!(a, content_id(r#"{"a":2,"b":[{"y":2,"x":1}]}"#).unwrap());
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
}
