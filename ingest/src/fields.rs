//! One pass over a JSON object that picks out the fields agentmeter reads.
//!
//! Parsing into a `serde_json::Value` would allocate a tree for every record; this visitor
//! borrows strings from the input where it can, skips unknown keys without building them, and
//! records every spelling of a field it saw so that normalisation can tell "absent" from
//! "present twice with different values".

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, Visitor};

pub(crate) mod flat;

/// A JSON value reduced to what validation needs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Scalar<'a> {
    Str(Cow<'a, str>),
    Int(i128),
    /// An integer literal kept as its digits (ids may exceed 64 bits and must stay exact).
    Digits(&'a str),
    Float(f64),
    /// A number that is not an integer (`10.0`, `1e3`), kept as written for error details.
    Number(&'a str),
    Bool(bool),
    Null,
    Compound,
}

impl Scalar<'_> {
    /// A short description for error details.
    pub(crate) fn describe(&self) -> String {
        match self {
            Scalar::Str(s) => {
                let cut: String = s.chars().take(40).collect();
                if cut.len() < s.len() { format!("{cut:?}…") } else { format!("{cut:?}") }
            }
            Scalar::Int(i) => i.to_string(),
            Scalar::Digits(d) => (*d).to_owned(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Number(n) => (*n).to_owned(),
            Scalar::Bool(b) => b.to_string(),
            Scalar::Null => "null".into(),
            Scalar::Compound => "an object or array".into(),
        }
    }
}

impl<'de> de::Deserialize<'de> for Scalar<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Scalar<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Scalar::Str(Cow::Owned(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Scalar::Int(v.into()))
            }
            fn visit_f64<E>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Scalar::Float(v))
            }
            fn visit_bool<E>(self, v: bool) -> Result<Self::Value, E> {
                Ok(Scalar::Bool(v))
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_none<E>(self) -> Result<Self::Value, E> {
                Ok(Scalar::Null)
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                while m.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
            fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
                while s.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Scalar::Compound)
            }
        }
        d.deserialize_any(V)
    }
}

/// An object key, borrowed from the input unless it holds an escape. (`Cow<str>`'s own
/// `Deserialize` always allocates: a `String` for every key of every record.)
pub(crate) struct Name<'a>(pub(crate) Cow<'a, str>);

impl<'de> de::Deserialize<'de> for Name<'de> {
    fn deserialize<D: de::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Name<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object key")
            }
            fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Borrowed(v)))
            }
            fn visit_str<E>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Self::Value, E> {
                Ok(Name(Cow::Owned(v)))
            }
        }
        d.deserialize_str(V)
    }
}

/// The logical fields, each with the spellings accepted for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Key {
    Event,
    Tier,
    /// The configured tenant field (default `clinic_id`).
    Tenant,
    /// `tenant_id`, always accepted as well.
    TenantAlt,
    UserId,
    ActorId,
    ModelId,
    Input,
    Output,
    Total,
    CacheRead,
    CacheWrite,
    Timestamp,
    EventId,
    /// CloudWatch log event id (`id` in subscriptions and exports, `eventId` in
    /// `filter-log-events`).
    CwId,
    Message,
    /// `session_id`, `sessionId` or `agent_instance_id`: the series a lifetime total repeats in.
    SessionId,
    /// Of the cache writes, those with a 1-hour lifetime (flat, or from a nested breakdown).
    CacheWrite1h,
    /// `service_tier` / `serviceTier`: a string, or the Converse object `{"type": ...}`.
    ServiceTier,
}

const KEY_COUNT: usize = 19;
// `Fields::repeated` holds a bit per key.
const _: () = assert!(KEY_COUNT <= 32);

/// Accepted token spellings (FORMATS.md sections 3, 4.2 and 6.3).
fn token_key(name: &str) -> Option<Key> {
    Some(match name {
        "input_tokens" | "inputTokens" | "prompt_tokens" => Key::Input,
        "output_tokens" | "outputTokens" | "completion_tokens" => Key::Output,
        "total_tokens" | "totalTokens" => Key::Total,
        "cache_read_tokens"
        | "cache_read_input_tokens"
        | "cacheReadInputTokens"
        | "cacheReadInputTokenCount"
        | "cache_read.input_tokens" => Key::CacheRead,
        "cache_write_tokens"
        | "cache_write_input_tokens"
        | "cache_creation_input_tokens"
        | "cacheWriteInputTokens"
        | "cacheWriteInputTokenCount"
        | "cache_creation.input_tokens" => Key::CacheWrite,
        "cache_write_1h_tokens"
        | "cache_write_1h_input_tokens"
        | "ephemeral_1h_input_tokens"
        | "cache_creation.ephemeral_1h_input_tokens" => Key::CacheWrite1h,
        _ => return None,
    })
}

/// Markers of structures that are not a single usage record.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Markers {
    /// `messageType`: a CloudWatch Logs subscription payload.
    pub message_type: bool,
    /// `events`: a `filter-log-events` document.
    pub events: bool,
    /// `resourceSpans`: an OTLP JSON trace request (a line of the Collector's file exporter).
    pub resource_spans: bool,
    /// The quarantine envelope marker.
    pub quarantine: bool,
}

/// One field read: its key, the spelling it came under and its value.
type Entry<'a> = (Key, Cow<'a, str>, Scalar<'a>);

/// Entries reserved for a record: a usage line has about a dozen known fields, and 16 entries
/// (1 KiB) stay within the allocator's per-thread cache.
const ENTRIES: usize = 16;

/// The fields of one JSON object: the known keys' entries in the order read, and where each
/// key's first entry is. Flat, so that a record costs one small allocation and its drop
/// visits only the fields it has (a slot per key was nearly 2 KB, allocated, touched and
/// dropped whole for every record).
#[derive(Debug, Default, PartialEq)]
pub(crate) struct Fields<'a> {
    entries: Vec<Entry<'a>>,
    /// For each key, 1 + the index of its first entry; 0 when absent. 32 bits (a record is
    /// far smaller than 4G entries), so that the whole struct is moved inline, not by a call
    /// to `memcpy` as each record's fields are handed on.
    first: [u32; KEY_COUNT],
    /// Keys read more than once (one bit per key).
    repeated: u32,
    pub markers: Markers,
}

/// A log event's message read where it lies in its payload (see [`flat_payload`]): its
/// object's text as it lies there (escaped), and the object's fields, those the message
/// unescaped would give.
#[derive(Debug, PartialEq)]
pub(crate) struct MessageBody<'a> {
    pub text: &'a str,
    pub fields: Fields<'a>,
    /// The object of the object's own `message`, read in place too (a Lambda JSON log
    /// record's, its usage line escaped twice): then that message is not among the fields,
    /// and the object has no `event`.
    pub inner: Option<Box<MessageBody<'a>>>,
}

/// What [`Fields::get`] found.
pub(crate) enum Got<'f, 'a> {
    Absent,
    One(&'f str, &'f Scalar<'a>),
    /// Two spellings (or a repeated key) with different values.
    Conflict(&'f str, &'f str),
}

impl<'a> Fields<'a> {
    fn with_capacity() -> Self {
        Self { entries: Vec::with_capacity(ENTRIES), ..Self::default() }
    }

    #[inline]
    fn push(&mut self, key: Key, name: Cow<'a, str>, value: Scalar<'a>) {
        let at = &mut self.first[key as usize];
        if *at == 0 {
            *at = self.entries.len() as u32 + 1;
        } else {
            self.repeated |= 1 << key as u32;
        }
        self.entries.push((key, name, value));
    }

    /// The value of `key`; several spellings with equal values count as one.
    // Inlined: validation asks for about sixteen keys a record, nearly all read once.
    #[inline]
    pub(crate) fn get(&self, key: Key) -> Got<'_, 'a> {
        let Some(i) = self.first[key as usize].checked_sub(1) else {
            return Got::Absent;
        };
        let i = i as usize;
        if self.repeated & (1 << key as u32) != 0 {
            return self.get_repeated(key, i);
        }
        let (_, name, value) = &self.entries[i];
        Got::One(name, value)
    }

    /// [`Fields::get`] of a key read more than once: its later entries against its first.
    #[inline(never)]
    fn get_repeated(&self, key: Key, first: usize) -> Got<'_, 'a> {
        let (_, name, value) = &self.entries[first];
        for (_, other_name, other) in self.entries[first + 1..].iter().filter(|e| e.0 == key) {
            if other != value {
                return Got::Conflict(name, other_name);
            }
        }
        Got::One(name, value)
    }

    /// True if `key` was present under any spelling.
    pub(crate) fn has(&self, key: Key) -> bool {
        self.first[key as usize] != 0
    }
}

/// A marker key (see [`Markers`]).
#[derive(Debug, Clone, Copy)]
pub(crate) enum Marker {
    MessageType,
    Events,
    ResourceSpans,
    Quarantine,
}

impl Markers {
    fn set(&mut self, m: Marker) {
        match m {
            Marker::MessageType => self.message_type = true,
            Marker::Events => self.events = true,
            Marker::ResourceSpans => self.resource_spans = true,
            Marker::Quarantine => self.quarantine = true,
        }
    }
}

/// How an object's entry is read, by its key: one table for serde_json's reading and the
/// flat objects' ([`flat`]), so that both give the same fields.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Slot {
    /// Any JSON value, as [`Scalar`] reads it.
    Value(Key),
    /// Read from the value's text ([`Fields::push_raw`]).
    Raw(RawSlot),
    /// The value is skipped; the key marks a structure.
    Marker(Marker),
    /// The value is skipped.
    Skip,
}

/// The fields read from their value's text.
#[derive(Debug, Clone, Copy)]
pub(crate) enum RawSlot {
    /// An id ([`id_scalar`]).
    Id(Key),
    /// A count ([`count_scalar`]).
    Count(Key),
    /// [`tier_scalar`].
    ServiceTier,
    /// The cache writes and their 1-hour part ([`cache_breakdown`]).
    Breakdown,
    /// [`message_scalar`].
    Message,
}

/// The slot of key `name`; `exact` when every `message` is read by serde_json.
pub(crate) fn slot(name: &str, tenant_field: &str, exact: bool) -> Slot {
    let key = match name {
        n if n == tenant_field => Key::Tenant,
        "event" => Key::Event,
        "tier" => Key::Tier,
        "tenant_id" => Key::TenantAlt,
        "user_id" => Key::UserId,
        "actor_id" => Key::ActorId,
        "model_id" => Key::ModelId,
        "timestamp" => Key::Timestamp,
        "event_id" => return Slot::Raw(RawSlot::Id(Key::EventId)),
        "session_id" | "sessionId" | "agent_instance_id" => Key::SessionId,
        "service_tier" | "serviceTier" => return Slot::Raw(RawSlot::ServiceTier),
        // Breakdowns of the cache writes by lifetime: Converse's `cacheDetails` array and
        // the Anthropic API's `cache_creation` object.
        "cacheDetails" | "cache_creation" => return Slot::Raw(RawSlot::Breakdown),
        "id" | "eventId" => return Slot::Raw(RawSlot::Id(Key::CwId)),
        "message" if !exact => return Slot::Raw(RawSlot::Message),
        "message" => Key::Message,
        "messageType" => return Slot::Marker(Marker::MessageType),
        "events" => return Slot::Marker(Marker::Events),
        "resourceSpans" | "resource_spans" => return Slot::Marker(Marker::ResourceSpans),
        agentmeter_schemas::QUARANTINE_MARKER => return Slot::Marker(Marker::Quarantine),
        other => return token_key(other).map_or(Slot::Skip, |k| Slot::Raw(RawSlot::Count(k))),
    };
    Slot::Value(key)
}

impl<'a> Fields<'a> {
    /// Adds the entry of a field read from its value's text `raw` (a JSON value checked by
    /// the caller). `None` for a `message` that only serde_json can read (its error's words).
    fn push_raw(&mut self, slot: RawSlot, name: Cow<'a, str>, raw: &'a str) -> Option<()> {
        match slot {
            RawSlot::Id(k) => self.push(k, name, id_scalar(raw)),
            RawSlot::Count(k) => self.push(k, name, count_scalar(raw)),
            RawSlot::ServiceTier => self.push(Key::ServiceTier, name, tier_scalar(raw)),
            RawSlot::Breakdown => {
                let (all, one_hour) = cache_breakdown(raw);
                self.push(Key::CacheWrite, name.clone(), all);
                self.push(Key::CacheWrite1h, name, one_hour);
            }
            RawSlot::Message => self.push(Key::Message, name, message_scalar(raw)?),
        }
        Some(())
    }

    /// [`Fields::push_raw`] of a string without an escape, from its text between the quotes:
    /// what each reading makes of such a string, without looking at it again.
    fn push_raw_str(&mut self, slot: RawSlot, name: Cow<'a, str>, body: &'a str) {
        let text = Scalar::Str(Cow::Borrowed(body));
        match slot {
            RawSlot::Id(k) | RawSlot::Count(k) => self.push(k, name, text),
            RawSlot::ServiceTier => self.push(Key::ServiceTier, name, text),
            RawSlot::Breakdown => {
                self.push(Key::CacheWrite, name.clone(), Scalar::Compound);
                self.push(Key::CacheWrite1h, name, Scalar::Compound);
            }
            RawSlot::Message => self.push(Key::Message, name, text),
        }
    }
}

/// Parses one JSON object into [`Fields`].
pub(crate) struct FieldsSeed<'c> {
    /// The configured tenant field name.
    pub tenant_field: &'c str,
    /// Set when a `message` needs serde_json's own reading (see [`message_scalar`]); the
    /// parse then fails and is done again with `exact`.
    pub retry: &'c std::cell::Cell<bool>,
    /// Every `message` read by serde_json.
    pub exact: bool,
}

impl<'de> DeserializeSeed<'de> for FieldsSeed<'_> {
    type Value = Option<Fields<'de>>;

    /// `Ok(None)` when the JSON value is not an object.
    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for FieldsSeed<'_> {
    type Value = Option<Fields<'de>>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut fields = Fields::with_capacity();
        while let Some(Name(name)) = map.next_key::<Name<'de>>()? {
            match slot(&name, self.tenant_field, self.exact) {
                Slot::Value(k) => {
                    let value: Scalar<'de> = map.next_value()?;
                    fields.push(k, name, value);
                }
                Slot::Skip => {
                    map.next_value::<IgnoredAny>()?;
                }
                Slot::Marker(m) => {
                    fields.markers.set(m);
                    map.next_value::<IgnoredAny>()?;
                }
                Slot::Raw(r) => {
                    let raw: &'de serde_json::value::RawValue = map.next_value()?;
                    if fields.push_raw(r, name, raw.get()).is_none() {
                        self.retry.set(true);
                        return Err(de::Error::custom("a message to read again"));
                    }
                }
            }
        }
        Ok(Some(fields))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut s: A) -> Result<Self::Value, A::Error> {
        while s.next_element::<IgnoredAny>()?.is_some() {}
        Ok(None)
    }

    fn visit_borrowed_str<E>(self, _: &'de str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_str<E>(self, _: &str) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Self::Value, E> {
        Ok(None)
    }
    fn visit_unit<E>(self) -> Result<Self::Value, E> {
        Ok(None)
    }
}

/// The text of `raw`, a JSON value serde_json has checked, when it is a string without an
/// escape: then it is exactly what lies between its quotes (serde_json refuses a quote or a
/// control character unescaped), with no second parse.
pub(crate) fn unescaped_string(raw: &str) -> Option<&str> {
    let body = raw.strip_prefix('"')?.strip_suffix('"')?;
    memchr::memchr(b'\\', body.as_bytes()).is_none().then_some(body)
}

/// An id value: a string, or an integer literal kept digit for digit.
fn id_scalar(raw: &str) -> Scalar<'_> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        return Scalar::Digits(raw);
    }
    // No second parse of every id.
    if let Some(body) = unescaped_string(raw) {
        return Scalar::Str(Cow::Borrowed(body));
    }
    serde_json::from_str::<Scalar<'_>>(raw).unwrap_or(Scalar::Compound)
}

/// A `message` value (usually a whole log line as an escaped JSON string): borrowed when it
/// holds no escape, else unescaped here into a string of its final size, where serde_json
/// grows a scratch buffer from nothing and copies it out again for every log event (a tenth
/// of a subscription payload's decoding). `raw` is a JSON value serde_json has checked.
/// `None` for a `\u` escape that is no character: only serde_json can word that error.
fn message_scalar(raw: &str) -> Option<Scalar<'_>> {
    if raw.starts_with('"') {
        let (end, text) = message_string(raw, 0)?;
        return (end == raw.len()).then_some(Scalar::Str(text));
    }
    serde_json::from_str::<Scalar<'_>>(raw).ok()
}

/// The JSON string whose opening quote is at `i` in `text`, its escapes read (as serde_json
/// reads them) in the same pass that finds its closing quote: the index past that quote, and
/// the string, borrowed when it holds no escape. `None` for an escape JSON does not have, a
/// `\u` escape that is no character, a control character or no closing quote.
pub(crate) fn message_string(text: &str, i: usize) -> Option<(usize, Cow<'_, str>)> {
    let b = text.as_bytes();
    // The plain text from `at` to the next quote, backslash or control character `j`.
    let mut at = i + 1;
    let mut j = flat::string_stop(b, at);
    let mut out: Option<String> = None;
    loop {
        match *b.get(j)? {
            b'"' => {
                let text = match out {
                    None => Cow::Borrowed(&text[at..j]),
                    Some(mut out) => {
                        out.push_str(&text[at..j]);
                        Cow::Owned(out)
                    }
                };
                return Some((j + 1, text));
            }
            b'\\' => {
                // Room for a log line (`text` may be a whole payload of them): escapes only
                // shorten what is left.
                let room = || String::with_capacity((text.len() - at).min(MESSAGE_ROOM));
                let out = out.get_or_insert_with(room);
                out.push_str(&text[at..j]);
                if let Some(b'"' | b'\\' | b'/') = b.get(j + 1) {
                    // The character is the byte after the backslash (in a log line of JSON,
                    // nearly every escape): the plain text goes on from it, copied with what
                    // follows rather than pushed alone.
                    at = j + 1;
                    j = flat::string_stop(b, j + 2);
                } else {
                    let (c, len) = escape_at(&text[j..])?;
                    out.push(c);
                    at = j + len;
                    j = flat::string_stop(b, at);
                }
            }
            _ => return None,
        }
    }
}

/// The room first made for an unescaped message: a log line, most of them shorter.
const MESSAGE_ROOM: usize = 1024;

/// The character of the escape at the start of `s` (its backslash first) and the bytes it
/// takes: a `\u` escape of a leading surrogate takes its trailing one with it.
fn escape_at(s: &str) -> Option<(char, usize)> {
    let hex4 = |s: &str| {
        let h = s.get(..4).filter(|h| h.bytes().all(|b| b.is_ascii_hexdigit()))?;
        u32::from_str_radix(h, 16).ok()
    };
    let c = match *s.as_bytes().get(1)? {
        b'"' => '"',
        b'\\' => '\\',
        b'/' => '/',
        b'b' => '\u{8}',
        b'f' => '\u{c}',
        b'n' => '\n',
        b'r' => '\r',
        b't' => '\t',
        b'u' => {
            let n = hex4(&s[2..])?;
            if (0xD800..0xDC00).contains(&n) {
                // A leading surrogate: its trailing one must follow.
                let tail = s[6..].strip_prefix("\\u")?;
                let m = hex4(tail).filter(|m| (0xDC00..0xE000).contains(m))?;
                let c = char::from_u32(0x10000 + ((n - 0xD800) << 10) + (m - 0xDC00))?;
                return Some((c, 12));
            }
            return Some((char::from_u32(n)?, 6));
        }
        _ => return None,
    };
    Some((c, 2))
}

/// A count value: integers exactly (past 64 bits too, so the refusal names the number as
/// written), other numbers as written (`10.0` stays `10.0`, not `10`).
fn count_scalar(raw: &str) -> Scalar<'_> {
    let digits = raw.strip_prefix('-').unwrap_or(raw);
    if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
        // Counts fit 18 digits: summed in an `i64` that cannot overflow, where `i128`'s
        // parser costs about as much as the rest of the field.
        if raw.len() <= 18 {
            let n = digits.bytes().fold(0i64, |n, b| n * 10 + i64::from(b - b'0'));
            return Scalar::Int(if digits.len() < raw.len() { -n } else { n }.into());
        }
        return raw.parse::<i128>().map_or(Scalar::Digits(raw), Scalar::Int);
    }
    match serde_json::from_str::<Scalar<'_>>(raw) {
        Ok(Scalar::Float(_)) => Scalar::Number(raw),
        Ok(other) => other,
        Err(_) => Scalar::Compound,
    }
}

/// The total and the 1-hour part of a cache-write breakdown: Converse's `cacheDetails`
/// (`[{"ttl": "1h", "inputTokens": N}, {"ttl": "5m", ...}]`) or Anthropic's `cache_creation`
/// (`{"ephemeral_5m_input_tokens": N, "ephemeral_1h_input_tokens": M}`). A shape that is
/// neither gives [`Scalar::Compound`] for both, which validation refuses with the field's name.
fn cache_breakdown(raw: &str) -> (Scalar<'static>, Scalar<'static>) {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Detail {
        ttl: String,
        #[serde(rename = "inputTokens")]
        input_tokens: u64,
    }
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Creation {
        #[serde(default)]
        ephemeral_5m_input_tokens: u64,
        #[serde(default)]
        ephemeral_1h_input_tokens: u64,
    }
    let parts: Option<(u64, u64)> = if let Ok(d) = serde_json::from_str::<Vec<Detail>>(raw) {
        d.iter().try_fold((0u64, 0u64), |(five, hour), x| match x.ttl.as_str() {
            "5m" => Some((five.checked_add(x.input_tokens)?, hour)),
            "1h" => Some((five, hour.checked_add(x.input_tokens)?)),
            _ => None,
        })
    } else if let Ok(c) = serde_json::from_str::<Creation>(raw) {
        Some((c.ephemeral_5m_input_tokens, c.ephemeral_1h_input_tokens))
    } else {
        None
    };
    match parts.and_then(|(five, hour)| Some((five.checked_add(hour)?, hour))) {
        Some((all, hour)) => (Scalar::Int(all.into()), Scalar::Int(hour.into())),
        None => (Scalar::Compound, Scalar::Compound),
    }
}

/// A service tier value: a string, or the `type` of a Converse `serviceTier` object.
fn tier_scalar(raw: &str) -> Scalar<'_> {
    #[derive(serde::Deserialize)]
    struct Typed<'a> {
        #[serde(borrow, rename = "type")]
        kind: Cow<'a, str>,
    }
    if let Ok(t) = serde_json::from_str::<Typed<'_>>(raw) {
        return Scalar::Str(t.kind);
    }
    serde_json::from_str::<Scalar<'_>>(raw).unwrap_or(Scalar::Compound)
}

/// How a JSON text failed to give an object.
#[derive(Debug)]
pub(crate) enum ParseError {
    /// Not JSON, or JSON followed by more than whitespace (when `whole` was asked).
    Json(serde_json::Error),
    /// Valid JSON, not an object.
    NotAnObject,
}

/// Parses `text` as exactly one JSON object (trailing whitespace allowed).
pub(crate) fn parse_object<'a>(
    text: &'a str,
    tenant_field: &str,
) -> Result<Fields<'a>, ParseError> {
    parse(text, tenant_field, true)
}

/// Parses the JSON value at the start of `text`, and checks that only whitespace follows if
/// `whole`. A message that [`message_scalar`] leaves to serde_json has the value read again
/// with serde_json reading every message, so that an error is worded as it words it.
fn parse<'a>(text: &'a str, tenant_field: &str, whole: bool) -> Result<Fields<'a>, ParseError> {
    // Nearly every record is a flat object, read without serde's machinery; anything else,
    // errors included, is serde_json's to read and to word.
    match flat::parse(text, tenant_field, whole) {
        Some(fields) => Ok(fields),
        None => parse_serde(text, tenant_field, whole),
    }
}

/// Whether the flat reading of `text`, where it gives one, is serde_json's (for the fuzz
/// targets: [`crate::source::fuzzing`]).
pub(crate) fn flat_agrees(text: &str, tenant_field: &str, whole: bool) -> bool {
    flat::parse(text, tenant_field, whole)
        .is_none_or(|f| parse_serde(text, tenant_field, whole).ok() == Some(f))
}

/// [`parse`] by serde_json alone.
fn parse_serde<'a>(
    text: &'a str,
    tenant_field: &str,
    whole: bool,
) -> Result<Fields<'a>, ParseError> {
    let retry = std::cell::Cell::new(false);
    let once = |exact: bool| {
        let mut de = serde_json::Deserializer::from_str(text);
        let seed = FieldsSeed { tenant_field, retry: &retry, exact };
        let fields = seed.deserialize(&mut de)?;
        if whole {
            de.end()?;
        }
        Ok(fields)
    };
    let fields = match once(false) {
        Err(_) if retry.get() => once(true),
        other => other,
    };
    fields.map_err(ParseError::Json)?.ok_or(ParseError::NotAnObject)
}

/// The fields of `text` when it is one flat object (see [`flat`]) and only whitespace follows
/// it: then it nests exactly one level. `None` for any other text, which
/// [`parse_object_by_serde`] reads.
pub(crate) fn flat_object<'a>(text: &'a str, tenant_field: &str) -> Option<Fields<'a>> {
    flat::parse(text, tenant_field, true)
}

/// Each log event of a subscription data payload read in one pass, handed to `event` with
/// its number and text as [`parse_object`] reads that text, but for its message where that
/// was read in place: then the message is not among the fields, and its object is handed
/// over beside them. `None` (whatever was handed over) for a payload that only serde_json
/// reads, or refuses. See [`flat::payload`].
pub(crate) fn flat_payload<'a>(
    text: &'a str,
    tenant_field: &str,
    event: impl FnMut(usize, &'a str, Fields<'a>, Option<&MessageBody<'a>>),
) -> Option<()> {
    flat::payload(text, tenant_field, event)
}

/// [`parse_object`] by serde_json alone: for a text [`flat_object`] did not take.
pub(crate) fn parse_object_by_serde<'a>(
    text: &'a str,
    tenant_field: &str,
) -> Result<Fields<'a>, ParseError> {
    parse_serde(text, tenant_field, true)
}

/// Parses the first JSON value at the start of `text`, ignoring what follows it. Used for log
/// messages, where a logger may append text after the JSON.
pub(crate) fn parse_object_prefix<'a>(
    text: &'a str,
    tenant_field: &str,
) -> Result<Fields<'a>, ParseError> {
    parse(text, tenant_field, false)
}

#[cfg(test)]
mod tests;
