//! Attributes: a span's tenant context, its GenAI fields and its token counts.
//!
//! Tenant context (`tier`, the tenant, the user) is looked up in the span's attributes, then
//! in its resource's: Strands' baggage processor stamps it on every span, while a service that
//! serves one tenant may set it on the resource. Everything else is read from the span alone.
//! The same newtypes and reason codes as for the logs apply.

use agentmeter_schemas::{InlineText, ModelId, Reason, SpanTokens, TenantId, Tier, UserId};

use super::model::{KeyValue, Value};
use crate::normalize::{Refusal, refuse};

/// The longest operation or tool name accepted, in characters.
const MAX_NAME_CHARS: usize = 256;

/// Spellings of the user id, in order of preference.
const USER_KEYS: [&str; 3] = ["user_id", "user.id", "enduser.id"];

/// What one attribute list holds for a key.
#[derive(Debug, Clone, Copy)]
enum Found<'a> {
    Absent,
    One(&'a Value),
    /// The key is repeated with different values.
    Conflict,
}

/// The value of `key` in `list`. An empty value counts as absent; a key repeated with equal
/// values counts once.
fn find<'a>(list: &'a [KeyValue], key: &str) -> Found<'a> {
    let mut found: Option<&Value> = None;
    for kv in list {
        if kv.key != key || matches!(kv.value, Value::Empty) {
            continue;
        }
        match found {
            None => found = Some(&kv.value),
            Some(v) if *v != kv.value => return Found::Conflict,
            Some(_) => {}
        }
    }
    found.map_or(Found::Absent, Found::One)
}

/// A short, escaped description of a value for error details.
pub(super) fn describe(v: &Value) -> String {
    match v {
        Value::Empty => "no value".into(),
        Value::String(s) => {
            let cut: String = s.chars().take(40).collect();
            if cut.len() < s.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
        }
        Value::Bool(b) => b.to_string(),
        Value::Int(i) => i.to_string(),
        Value::Double(d) => d.to_string(),
        Value::Array(_) => "an array".into(),
        Value::Kvlist(_) => "a key-value list".into(),
        Value::Bytes(_) => "bytes".into(),
    }
}

/// The attributes the decoder reads ([`is_read`]), each with its slot in an [`Index`].
const KEYS: [&str; 19] = [
    "tier",
    "tenant_id",
    "actor_id",
    USER_KEYS[0],
    USER_KEYS[1],
    USER_KEYS[2],
    "gen_ai.operation.name",
    "gen_ai.tool.name",
    "gen_ai.request.model",
    "gen_ai.response.model",
    INPUT[0],
    INPUT[1],
    OUTPUT[0],
    OUTPUT[1],
    TOTAL[0],
    CACHE_READ[0],
    CACHE_READ[1],
    CACHE_WRITE[0],
    CACHE_WRITE[1],
];

/// The slot of the configured tenant attribute when it is none of [`KEYS`].
const TENANT_FIELD: usize = KEYS.len();

/// The slot of `key` in [`KEYS`]: one match on the text, where a scan of the list per key
/// looked at every attribute two dozen times a span.
fn slot(key: &str) -> Option<usize> {
    Some(match key {
        "tier" => 0,
        "tenant_id" => 1,
        "actor_id" => 2,
        "user_id" => 3,
        "user.id" => 4,
        "enduser.id" => 5,
        "gen_ai.operation.name" => 6,
        "gen_ai.tool.name" => 7,
        "gen_ai.request.model" => 8,
        "gen_ai.response.model" => 9,
        "gen_ai.usage.input_tokens" => 10,
        "gen_ai.usage.prompt_tokens" => 11,
        "gen_ai.usage.output_tokens" => 12,
        "gen_ai.usage.completion_tokens" => 13,
        "gen_ai.usage.total_tokens" => 14,
        "gen_ai.usage.cache_read.input_tokens" => 15,
        "gen_ai.usage.cache_read_input_tokens" => 16,
        "gen_ai.usage.cache_creation.input_tokens" => 17,
        "gen_ai.usage.cache_write_input_tokens" => 18,
        _ => return None,
    })
}

/// One attribute list read once: what it holds for each key the decoder reads, as [`find`]
/// would give it.
#[derive(Debug, Clone, Copy)]
pub(super) struct Index<'a>([Found<'a>; KEYS.len() + 1]);

impl<'a> Index<'a> {
    /// `list` read with `tenant_field` as the tenant attribute.
    pub(super) fn new(list: &'a [KeyValue], tenant_field: &str) -> Self {
        let mut found = [Found::Absent; KEYS.len() + 1];
        for kv in list {
            if matches!(kv.value, Value::Empty) {
                continue;
            }
            let Some(i) = slot(&kv.key).or((kv.key == tenant_field).then_some(TENANT_FIELD)) else {
                continue;
            };
            found[i] = match found[i] {
                Found::Absent => Found::One(&kv.value),
                Found::One(v) if *v != kv.value => Found::Conflict,
                same => same,
            };
        }
        Self(found)
    }

    /// What the list holds for `key`: one of [`KEYS`], or else the tenant attribute.
    fn find(&self, key: &str) -> Found<'a> {
        self.0[slot(key).unwrap_or(TENANT_FIELD)]
    }
}

/// The attributes a span's context is read from.
#[derive(Debug, Clone, Copy)]
pub(super) struct Attrs<'a> {
    /// The span's own attributes.
    pub span: Index<'a>,
    /// Its resource's attributes.
    pub resource: Index<'a>,
}

impl<'a> Attrs<'a> {
    /// The attributes of a span, with `tenant_field` as the tenant attribute, and its
    /// resource's, indexed once for all its spans.
    pub(super) fn new(span: &'a [KeyValue], resource: Index<'a>, tenant_field: &str) -> Self {
        Self { span: Index::new(span, tenant_field), resource }
    }

    /// `key` from the span's attributes, else from the resource's.
    fn context(&self, key: &str) -> Result<Option<&'a Value>, Refusal> {
        for (list, level) in [(&self.span, "span"), (&self.resource, "resource")] {
            match list.find(key) {
                Found::Absent => {}
                Found::One(v) => return Ok(Some(v)),
                Found::Conflict => return Err(repeated(level, key)),
            }
        }
        Ok(None)
    }

    /// The first of `keys` present in the span's attributes, else in the resource's.
    fn first_context(
        &self,
        keys: &[&'static str],
    ) -> Result<Option<(&'static str, &'a Value)>, Refusal> {
        for (list, level) in [(&self.span, "span"), (&self.resource, "resource")] {
            for key in keys {
                match list.find(key) {
                    Found::Absent => {}
                    Found::One(v) => return Ok(Some((key, v))),
                    Found::Conflict => return Err(repeated(level, key)),
                }
            }
        }
        Ok(None)
    }
}

fn repeated(level: &str, key: &str) -> Refusal {
    refuse(
        Reason::ConflictingField,
        format!("{level} attribute {key:?} is repeated with different values"),
    )
}

/// The string in `v`, or `invalid` naming the attribute.
fn text<'a>(v: &'a Value, name: &str, invalid: Reason) -> Result<&'a str, Refusal> {
    match v {
        Value::String(s) => Ok(s),
        other => Err(refuse(invalid, format!("{name} must be a string, got {}", describe(other)))),
    }
}

/// The tier (`tier`).
pub(super) fn tier(a: &Attrs<'_>) -> Result<Tier, Refusal> {
    let v = a.context("tier")?.ok_or_else(|| refuse(Reason::MissingField, "tier is missing"))?;
    let s = text(v, "tier", Reason::InvalidTier)?;
    crate::normalize::tier_id(s).map_err(|e| refuse(Reason::InvalidTier, e.to_string()))
}

/// The tenant from the configured field or `tenant_id`, which must agree if both are present.
pub(super) fn tenant(a: &Attrs<'_>, field: &str) -> Result<TenantId, Refusal> {
    let primary = match a.context(field)? {
        Some(v) => Some(text(v, field, Reason::InvalidTenantId)?),
        None => None,
    };
    let alt = if field == "tenant_id" {
        None
    } else {
        match a.context("tenant_id")? {
            Some(v) => Some(text(v, "tenant_id", Reason::InvalidTenantId)?),
            None => None,
        }
    };
    let value = match (primary, alt) {
        (Some(p), Some(t)) if p != t => {
            return Err(refuse(
                Reason::ConflictingField,
                format!("{field} {p:?} and tenant_id {t:?} differ"),
            ));
        }
        (Some(p), _) => p,
        (None, Some(t)) => t,
        (None, None) => {
            return Err(refuse(Reason::MissingField, format!("{field} (or tenant_id) is missing")));
        }
    };
    crate::normalize::tenant_id(value).map_err(|e| refuse(Reason::InvalidTenantId, e.to_string()))
}

/// The user, when there is one: `user_id` (or `user.id`, `enduser.id`), else `actor_id` =
/// `{tier}-{tenant}-{user}`. Tenant ids contain hyphens, so the known prefix is removed
/// rather than splitting on `-`.
pub(super) fn user(
    a: &Attrs<'_>,
    tier: &Tier,
    tenant: &TenantId,
) -> Result<Option<UserId>, Refusal> {
    if let Some((key, v)) = a.first_context(&USER_KEYS)? {
        let s = text(v, key, Reason::InvalidUserId)?;
        return crate::normalize::user_id(s)
            .map(Some)
            .map_err(|e| refuse(Reason::InvalidUserId, e.to_string()));
    }
    let Some(v) = a.context("actor_id")? else { return Ok(None) };
    let actor = text(v, "actor_id", Reason::InvalidUserId)?;
    let rest = crate::normalize::strip_actor_prefix(actor, tier, tenant).ok_or_else(|| {
        let prefix = format!("{tier}-{tenant}-");
        refuse(Reason::InvalidUserId, format!("actor_id {actor:?} does not start with {prefix:?}"))
    })?;
    crate::normalize::user_id(rest)
        .map(Some)
        .map_err(|e| refuse(Reason::InvalidUserId, format!("from actor_id: {e}")))
}

/// A span attribute that must be a string when present.
fn span_string<'a>(
    span: &Index<'a>,
    key: &str,
    invalid: Reason,
) -> Result<Option<&'a str>, Refusal> {
    match span.find(key) {
        Found::Absent => Ok(None),
        Found::One(v) => text(v, key, invalid).map(Some),
        Found::Conflict => Err(repeated("span", key)),
    }
}

/// A name kept as given: 1 to 256 characters, none of them a control character.
fn name(span: &Index<'_>, key: &str) -> Result<Option<InlineText>, Refusal> {
    let Some(s) = span_string(span, key, Reason::InvalidField)? else { return Ok(None) };
    let why = if s.is_empty() {
        "is empty"
    } else if s.chars().any(char::is_control) {
        "has a control character"
    } else if s.chars().nth(MAX_NAME_CHARS).is_some() {
        "is over 256 characters"
    } else {
        return Ok(Some(s.into()));
    };
    let shown = describe(&Value::String(s.into()));
    Err(refuse(Reason::InvalidField, format!("{key} {shown} {why}")))
}

/// `gen_ai.operation.name`.
pub(super) fn operation(span: &Index<'_>) -> Result<Option<InlineText>, Refusal> {
    name(span, "gen_ai.operation.name")
}

/// `gen_ai.tool.name`.
pub(super) fn tool(span: &Index<'_>) -> Result<Option<InlineText>, Refusal> {
    name(span, "gen_ai.tool.name")
}

/// `gen_ai.request.model`, else `gen_ai.response.model`.
pub(super) fn model(span: &Index<'_>) -> Result<Option<ModelId>, Refusal> {
    let mut value = None;
    for key in ["gen_ai.request.model", "gen_ai.response.model"] {
        if let Some(s) = span_string(span, key, Reason::InvalidModelId)? {
            value = Some(s);
            break;
        }
    }
    value
        .map(|s| {
            crate::normalize::model_id(s).map_err(|e| refuse(Reason::InvalidModelId, e.to_string()))
        })
        .transpose()
}

/// A resource's `service.name`, when it is a string.
pub(super) fn service(resource: &[KeyValue]) -> Option<InlineText> {
    match find(resource, "service.name") {
        Found::One(Value::String(s)) => Some(truncate(s)),
        _ => None,
    }
}

/// At most 256 characters of `s`.
pub(super) fn truncate(s: &str) -> InlineText {
    match s.char_indices().nth(MAX_NAME_CHARS) {
        Some((cut, _)) => s[..cut].into(),
        None => s.into(),
    }
}

const INPUT: &[&str] = &["gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens"];
const OUTPUT: &[&str] = &["gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens"];
const TOTAL: &[&str] = &["gen_ai.usage.total_tokens"];
const CACHE_READ: &[&str] =
    &["gen_ai.usage.cache_read.input_tokens", "gen_ai.usage.cache_read_input_tokens"];
const CACHE_WRITE: &[&str] =
    &["gen_ai.usage.cache_creation.input_tokens", "gen_ai.usage.cache_write_input_tokens"];

/// The first spelling present decides; aliases are never summed (Strands writes both).
fn count(span: &Index<'_>, spellings: &[&str]) -> Option<i64> {
    for key in spellings {
        match span.find(key) {
            Found::Absent => {}
            Found::One(Value::Int(n)) if *n >= 0 => return Some(*n),
            Found::One(_) | Found::Conflict => return None,
        }
    }
    None
}

/// The span's token attributes, for reconciliation: a malformed count is `None`, never a
/// reason to refuse the span; a count over the plausible maximum of one call refuses it (it
/// would overflow everyone's sums).
pub(super) fn tokens(span: &Index<'_>, max: i64) -> Result<SpanTokens, Refusal> {
    let t = SpanTokens {
        input: count(span, INPUT),
        output: count(span, OUTPUT),
        total: count(span, TOTAL),
        cache_read: count(span, CACHE_READ),
        cache_write: count(span, CACHE_WRITE),
    };
    for (names, n) in [
        (INPUT, t.input),
        (OUTPUT, t.output),
        (TOTAL, t.total),
        (CACHE_READ, t.cache_read),
        (CACHE_WRITE, t.cache_write),
    ] {
        if let Some(n) = n.filter(|n| *n > max) {
            return Err(crate::normalize::implausible_tokens(names[0], n, max));
        }
    }
    Ok(t)
}

/// Whether the decoder reads `key` (with `tenant_field` as the tenant attribute): the
/// documented list, and the only attributes a quarantined span keeps. Everything else may be
/// free text (prompts, tool arguments, exception messages, host details) and is left out, so
/// that no patient text reaches the quarantine, the write-ahead log or a replay.
pub(super) fn is_read(key: &str, tenant_field: &str) -> bool {
    key == tenant_field || key == "service.name" || slot(key).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every key read has its own slot, found by its text, and is one the quarantine keeps;
    /// no other text has a slot.
    #[test]
    fn each_key_read_has_its_slot() {
        for (i, key) in KEYS.iter().enumerate() {
            assert_eq!(slot(key), Some(i), "{key}");
            assert!(is_read(key, "clinic_id"), "{key}");
        }
        for key in ["service.name", "clinic_id", "tier ", "Tier", "gen_ai.usage", ""] {
            assert_eq!(slot(key), None, "{key:?}");
        }
        // Read besides: the resource's service and the configured tenant attribute, and
        // nothing else (free text never reaches the quarantine).
        assert!(is_read("service.name", "clinic_id") && is_read("clinic_id", "clinic_id"));
        assert!(!is_read("clinic_id", "tenant_id") && !is_read("gen_ai.prompt", "clinic_id"));
    }

    fn kv(key: &str, value: Value) -> KeyValue {
        KeyValue { key: key.into(), value }
    }

    /// The index gives what a scan of the list gives: an empty value is absent, a key
    /// repeated with one value is that value, with two a conflict, whatever the order; the
    /// tenant attribute has a slot of its own, or a known key's when it is one.
    #[test]
    fn an_index_finds_what_a_scan_finds() {
        let s = |t: &str| Value::String(t.into());
        let lists = [
            vec![kv("tier", s("basic")), kv("clinic_id", s("c-1")), kv("x", s("y"))],
            vec![kv("tier", Value::Empty), kv("tier", s("basic")), kv("tier", s("basic"))],
            vec![kv("tier", s("basic")), kv("tier", s("premium")), kv("tier", s("basic"))],
            vec![kv("clinic_id", s("c-1")), kv("clinic_id", s("c-2"))],
            vec![kv("gen_ai.usage.input_tokens", Value::Int(3)), kv("tenant_id", s("t"))],
            vec![],
        ];
        let same = |a: Found<'_>, b: Found<'_>| match (a, b) {
            (Found::Absent, Found::Absent) | (Found::Conflict, Found::Conflict) => true,
            (Found::One(x), Found::One(y)) => std::ptr::eq(x, y),
            _ => false,
        };
        for list in &lists {
            for tenant_field in ["clinic_id", "tenant_id", "tier"] {
                let index = Index::new(list, tenant_field);
                for key in KEYS.iter().chain([&tenant_field]) {
                    let (got, want) = (index.find(key), find(list, key));
                    assert!(same(got, want), "{key} in {list:?}: {got:?}, {want:?}");
                }
            }
        }
    }
}
