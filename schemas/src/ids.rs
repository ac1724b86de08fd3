//! Validated identifiers.
//!
//! Tenant and user ids come from untrusted input and later become parts of paths, object keys
//! and file names (per-tenant invoices, exports). They are therefore checked once against a
//! fixed safe character set and a length limit, and only the newtypes travel further.

use std::fmt;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize};

/// Why an identifier was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid {kind} {shown}: {why}")]
pub struct IdError {
    /// Which identifier: `tenant_id`, `user_id`, `tier`, `model_id` or `event_id`.
    pub kind: &'static str,
    /// The refused value, escaped and shortened for display.
    pub shown: String,
    /// What rule it broke.
    pub why: &'static str,
}

impl IdError {
    fn new(kind: &'static str, value: &str, why: &'static str) -> Self {
        Self { kind, shown: shorten(value), why }
    }
}

/// Escapes and shortens an untrusted value so that it is safe to print in a message.
fn shorten(value: &str) -> String {
    const MAX: usize = 80;
    let mut cut: String = value.chars().take(MAX).collect();
    if cut.len() < value.len() {
        cut.push('…');
    }
    format!("{cut:?}")
}

/// The rules of one identifier kind: allowed bytes as lookup tables (checked for every id of
/// every event, so no per-byte call).
struct Rule {
    kind: &'static str,
    max_len: usize,
    first: [bool; 256],
    rest: Rest,
}

/// The bytes allowed after the first.
enum Rest {
    Table(&'static [bool; 256]),
    /// Printable ASCII (`!` to `~`): a range test over the whole id, which the compiler
    /// vectorises (event ids, one a record, are the longest ids checked).
    Graphic,
}

/// A byte table from a predicate on `b`, built at compile time.
macro_rules! table {
    (|$b:ident| $pred:expr) => {{
        let mut t = [false; 256];
        let mut i = 0;
        while i < 256 {
            let $b = i as u8;
            t[i] = $pred;
            i += 1;
        }
        t
    }};
}

impl Rule {
    fn check(&self, value: &str) -> Result<(), IdError> {
        let bytes = value.as_bytes();
        let Some(&first) = bytes.first() else {
            return Err(IdError::new(self.kind, value, "is empty"));
        };
        if bytes.len() > self.max_len {
            return Err(IdError::new(self.kind, value, "is too long"));
        }
        if !self.first[usize::from(first)] {
            return Err(IdError::new(
                self.kind,
                value,
                "starts with a character that is not allowed",
            ));
        }
        let allowed = match &self.rest {
            Rest::Table(t) => bytes[1..].iter().all(|&b| t[usize::from(b)]),
            Rest::Graphic => bytes[1..].iter().fold(true, |ok, b| ok & b.is_ascii_graphic()),
        };
        if !allowed {
            return Err(IdError::new(self.kind, value, "contains a character that is not allowed"));
        }
        Ok(())
    }
}

static TENANT: Rule = Rule {
    kind: "tenant_id",
    max_len: 64,
    first: table!(|b| b.is_ascii_alphanumeric()),
    rest: Rest::Table(&table!(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))),
};

static USER: Rule = Rule {
    kind: "user_id",
    max_len: 128,
    first: table!(|b| b.is_ascii_alphanumeric() || b == b'_'),
    rest: Rest::Table(&table!(|b| {
        b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@' | b'+' | b':')
    })),
};

static TIER: Rule = Rule {
    kind: "tier",
    max_len: 32,
    first: table!(|b| b.is_ascii_alphanumeric()),
    rest: Rest::Table(&table!(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))),
};

// Model ids never reach a path, but they do reach CSV cells and HTML: printable ASCII only.
static MODEL: Rule = Rule {
    kind: "model_id",
    max_len: 256,
    first: table!(|b| b.is_ascii_graphic()),
    rest: Rest::Graphic,
};

static EVENT: Rule = Rule {
    kind: "event_id",
    max_len: 256,
    first: table!(|b| b.is_ascii_graphic()),
    rest: Rest::Graphic,
};

/// Text nearly every record has its own of (an event id, an OTLP attribute's key and value):
/// held in the value itself up to [`InlineText::INLINE`] bytes, so that making one allocates
/// nothing, reading it follows no pointer and dropping it frees nothing. UUIDs (36), content
/// ids (34), CloudWatch log event ids (56), trace ids (32) and most attribute keys and values
/// fit; longer text is held in a shared `Arc<str>`.
#[derive(Clone)]
pub enum InlineText {
    /// Up to [`InlineText::INLINE`] bytes, in place.
    Inline(arrayvec::ArrayString<{ InlineText::INLINE }>),
    /// Longer text.
    Shared(Arc<str>),
}

impl InlineText {
    /// The most bytes held in place.
    pub const INLINE: usize = 56;

    /// The text.
    pub fn as_str(&self) -> &str {
        self
    }

    /// True when the text is held apart from the value (it is longer than
    /// [`InlineText::INLINE`]): a batch's memory estimate counts its heap then.
    pub fn is_held_apart(&self) -> bool {
        matches!(self, Self::Shared(_))
    }

    /// Lower-cases ASCII letters in place (a hex id's digits), allocating only for shared
    /// text that has any to change.
    pub fn make_ascii_lowercase(&mut self) {
        match self {
            Self::Inline(s) => s.as_mut_str().make_ascii_lowercase(),
            Self::Shared(s) if s.bytes().any(|b| b.is_ascii_uppercase()) => {
                *s = Arc::from(s.to_ascii_lowercase());
            }
            Self::Shared(_) => {}
        }
    }
}

impl Default for InlineText {
    fn default() -> Self {
        Self::Inline(arrayvec::ArrayString::new())
    }
}

impl From<&str> for InlineText {
    fn from(value: &str) -> Self {
        arrayvec::ArrayString::from(value)
            .map_or_else(|_| Self::Shared(Arc::from(value)), Self::Inline)
    }
}

impl From<String> for InlineText {
    fn from(value: String) -> Self {
        Self::from(value.as_str())
    }
}

impl std::ops::Deref for InlineText {
    type Target = str;

    fn deref(&self) -> &str {
        match self {
            Self::Inline(s) => s,
            Self::Shared(s) => s,
        }
    }
}

impl AsRef<str> for InlineText {
    fn as_ref(&self) -> &str {
        self
    }
}

impl PartialEq<str> for InlineText {
    fn eq(&self, other: &str) -> bool {
        **self == *other
    }
}

impl PartialEq<&str> for InlineText {
    fn eq(&self, other: &&str) -> bool {
        **self == **other
    }
}

impl fmt::Display for InlineText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self)
    }
}

impl serde::Serialize for InlineText {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self)
    }
}

impl<'de> serde::Deserialize<'de> for InlineText {
    /// From a string, borrowed or not, without allocating when it fits in place.
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = InlineText;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<InlineText, E> {
                Ok(InlineText::from(v))
            }
        }
        d.deserialize_str(V)
    }
}

// Compared, ordered and hashed as its text, whichever way it is held (as `Arc<str>` is), so
// that an id held inline equals the same id held shared and a set can be looked up by `&str`.
impl PartialEq for InlineText {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for InlineText {}

impl PartialOrd for InlineText {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InlineText {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (**self).cmp(&**other)
    }
}

impl std::hash::Hash for InlineText {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for InlineText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&**self, f)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $rule:expr) => {
        id_type!($(#[$doc])* $name, $rule, Arc<str>);
    };
    ($(#[$doc:meta])* $name:ident, $rule:expr, $text:ty) => {
        $(#[$doc])*
        // Shared, not copied (`Arc<str>`): the few distinct values of a stream are made once
        // (`IdCache`) and every record holds a reference. Ids of one record each are held
        // inline instead (`InlineText`).
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name($text);

        impl Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(&self.0)
            }
        }

        impl $name {
            /// Validates `value` and wraps it.
            ///
            /// # Errors
            ///
            /// Returns an [`IdError`] naming the rule the value breaks.
            pub fn new(value: impl AsRef<str>) -> Result<Self, IdError> {
                let value = value.as_ref();
                $rule.check(value)?;
                Ok(Self(<$text>::from(value)))
            }

            /// The identifier as a string slice.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        // Hashes and compares as its text (the derived impls do), so a set of ids can be
        // looked up by a `&str`.
        impl std::borrow::Borrow<str> for $name {
            fn borrow(&self) -> &str {
                &self.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;

            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::new(s)
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let s = String::deserialize(d)?;
                Self::new(s).map_err(serde::de::Error::custom)
            }
        }
    };
}

id_type!(
    /// A tenant (in the seeds, a clinic): 1 to 64 characters from `A-Z a-z 0-9 - _ .`,
    /// starting with a letter or digit. Never `.`, `..`, a path, or anything with `/`, `\`,
    /// `%`, whitespace or control characters, so it is safe as a path component.
    TenantId,
    TENANT
);

id_type!(
    /// A user of a tenant: 1 to 128 characters from `A-Z a-z 0-9 - _ . @ + :`, starting with a
    /// letter, digit or `_` (so e-mail addresses and most identity-provider subjects pass).
    UserId,
    USER
);

id_type!(
    /// A pricing tier (`basic`, `premium`, ...): 1 to 32 characters from `A-Z a-z 0-9 - _`,
    /// starting with a letter or digit.
    Tier,
    TIER
);

id_type!(
    /// A model or inference-profile id as the agent logged it (may be an ARN): 1 to 256
    /// printable ASCII characters, no whitespace.
    ModelId,
    MODEL
);

id_type!(
    /// The identity of a usage event: the CloudWatch log event id, the record's own
    /// `event_id`, or a digest of its content (`h:` and 32 hex digits). 1 to 256 printable ASCII
    /// characters.
    EventId,
    EVENT,
    InlineText
);

impl EventId {
    /// True when the id's text is held apart from it (longer than the inline room), as
    /// memory that an estimate of a record's bytes must count.
    pub fn is_held_apart(&self) -> bool {
        self.0.is_held_apart()
    }
}

id_type!(
    /// The session or Agent-object instance a usage line belongs to (`session_id`,
    /// `sessionId` or `agent_instance_id`): the series in which a lifetime total repeats.
    /// 1 to 256 printable ASCII characters.
    SessionId,
    EVENT
);

/// Ids seen recently, so that the few distinct values of a stream are validated and
/// allocated once rather than per record. Bounded: past `LIMIT` values it starts afresh, so
/// a stream of distinct ids costs what it would without it.
#[derive(Debug)]
pub struct IdCache<T> {
    seen: std::collections::HashSet<T, std::hash::BuildHasherDefault<rustc_hash::FxHasher>>,
}

impl<T> Default for IdCache<T> {
    fn default() -> Self {
        Self { seen: Default::default() }
    }
}

impl<T: Clone + Eq + std::hash::Hash + std::borrow::Borrow<str>> IdCache<T> {
    const LIMIT: usize = 4096;

    /// The id of `value`: a copy of the one seen before, or `make(value)`.
    ///
    /// # Errors
    ///
    /// `make`'s error (refused values are not kept).
    pub fn get<E>(&mut self, value: &str, make: impl FnOnce(&str) -> Result<T, E>) -> Result<T, E> {
        if let Some(id) = self.seen.get(value) {
            return Ok(id.clone());
        }
        let id = make(value)?;
        if self.seen.len() >= Self::LIMIT {
            self.seen.clear();
        }
        self.seen.insert(id.clone());
        Ok(id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cache_gives_the_same_id_and_refuses_as_new_does() {
        let make = |v: &str| TenantId::new(v);
        let mut cache = IdCache::<TenantId>::default();
        let a = cache.get("clinic-a", make).unwrap();
        let b = cache.get("clinic-a", make).unwrap();
        assert!(Arc::ptr_eq(&a.0, &b.0), "made twice");
        assert_eq!(cache.get("../x", make), Err(TenantId::new("../x").unwrap_err()));
        // Full, it starts afresh rather than growing.
        for i in 0..IdCache::<TenantId>::LIMIT + 10 {
            cache.get(&format!("t{i}"), make).unwrap();
        }
        assert!(cache.seen.len() <= IdCache::<TenantId>::LIMIT);
        assert_eq!(cache.get("clinic-a", make).unwrap(), a);
    }

    #[test]
    fn event_ids_are_one_value_whether_held_inline_or_shared() {
        use std::hash::BuildHasher;
        let h = std::hash::RandomState::new();
        let uuid = "14fef12a-9e92-414f-8762-6b02e34a36c3";
        let cloudwatch = "3".repeat(InlineText::INLINE);
        let long = "x".repeat(InlineText::INLINE + 1);
        for text in [uuid, &cloudwatch, &long] {
            let id = EventId::new(text).unwrap();
            let inline = matches!(id.0, InlineText::Inline(_));
            assert_eq!(inline, text.len() <= InlineText::INLINE, "{text}");
            assert_eq!(id.is_held_apart(), !inline);
            let shared = EventId(InlineText::Shared(Arc::from(text)));
            assert_eq!(id, shared);
            assert_eq!(h.hash_one(&id), h.hash_one(text), "hashed as its text");
            assert_eq!(h.hash_one(&id), h.hash_one(&shared));
            assert_eq!((id.as_str(), id.to_string()), (text, text.to_owned()));
            assert_eq!(format!("{id:?}"), format!("EventId({text:?})"));
        }
        let (a, b) = (EventId::new("a").unwrap(), EventId(InlineText::Shared(Arc::from("b"))));
        assert!(a < b, "ordered by their text, however held");
        assert!(EventId::new("x".repeat(257)).is_err());
    }

    /// Event and model ids: printable ASCII at every place, whatever its length (the range
    /// test runs over whole vectors of bytes, then the rest one by one).
    #[test]
    fn event_and_model_ids_allow_exactly_printable_ascii_anywhere() {
        for len in [1, 2, 15, 16, 17, 36, 64, 256] {
            for at in [0, len / 2, len - 1] {
                for b in 0..=127u8 {
                    let mut id = vec![b'a'; len];
                    id[at] = b;
                    let text = std::str::from_utf8(&id).unwrap();
                    let want = b.is_ascii_graphic();
                    assert_eq!(EventId::new(text).is_ok(), want, "{len} {at} {b}");
                    assert_eq!(ModelId::new(text).is_ok(), want, "{len} {at} {b}");
                }
            }
        }
        let with = |c: &str| format!("ab{c}cd");
        assert!(EventId::new(with("\u{e9}")).is_err(), "not ASCII");
        assert!(EventId::new("x".repeat(256)).is_ok());
    }

    #[test]
    fn inline_text_reads_json_strings_in_place_and_lower_cases_either_form() {
        let long = "A".repeat(InlineText::INLINE + 1);
        let json = format!(r#"["5B8E", "a\"b", "", "{long}"]"#);
        let texts: Vec<InlineText> = serde_json::from_str(&json).unwrap();
        let held: Vec<(&str, bool)> =
            texts.iter().map(|t| (t.as_str(), matches!(t, InlineText::Inline(_)))).collect();
        assert_eq!(held, [("5B8E", true), ("a\"b", true), ("", true), (long.as_str(), false)]);
        assert_eq!(serde_json::to_string(&texts[1]).unwrap(), r#""a\"b""#);
        let mut lowered = texts.clone();
        lowered.iter_mut().for_each(InlineText::make_ascii_lowercase);
        assert_eq!(lowered[0], "5b8e");
        assert_eq!(lowered[3], long.to_ascii_lowercase().as_str());
        assert!(matches!(lowered[3], InlineText::Shared(_)), "long text stays shared");
        assert_eq!(InlineText::default(), "");
        assert_eq!(InlineText::from(long.clone()), texts[3]);
        assert!(serde_json::from_str::<InlineText>("7").is_err(), "a number is not text");
    }

    #[test]
    fn tenant_ids_that_could_escape_a_directory_never_pass() {
        for bad in [
            "", ".", "..", "../x", "a/b", "a\\b", "a%2fb", "%2e%2e", "-a", ".hidden", "a b",
            "a\nb", "a\0b", "é", "a\u{7f}", "/abs", "C:", "a:b",
        ] {
            assert!(TenantId::new(bad).is_err(), "{bad:?} passed");
        }
        assert!(TenantId::new("x".repeat(65)).is_err());
        for good in ["clinic-a", "hospital_7", "a", "A.b-c_d", &"x".repeat(64)] {
            assert_eq!(TenantId::new(good).unwrap().as_str(), good);
        }
    }

    #[test]
    fn user_ids_accept_emails_and_refuse_separators() {
        assert!(UserId::new("dr.lee@clinic-a.example").is_ok());
        assert!(UserId::new("us-east-1:0f1e").is_ok());
        assert!(UserId::new("_svc").is_ok());
        for bad in ["", ".", "..", ".a", "a/b", "a\\b", "a%b", "a b", "a\tb", "-x"] {
            assert!(UserId::new(bad).is_err(), "{bad:?} passed");
        }
    }

    #[test]
    fn error_message_names_the_kind_and_escapes_the_value() {
        let err = TenantId::new("../etc\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid tenant_id \"../etc\\n\": starts with a character that is not allowed"
        );
        let long = "a/".repeat(100);
        let shown = TenantId::new(long).unwrap_err().shown;
        assert!(shown.ends_with("…\""), "{shown}");
    }

    #[test]
    fn model_ids_allow_arns_and_refuse_whitespace() {
        assert!(ModelId::new("arn:aws:bedrock:us-east-1:123:inference-profile/us.x-v1:0").is_ok());
        assert!(ModelId::new("a b").is_err());
        assert!(ModelId::new("").is_err());
    }

    #[test]
    fn deserialize_validates() {
        assert!(serde_json::from_str::<TenantId>("\"../x\"").is_err());
        assert_eq!(serde_json::from_str::<Tier>("\"basic\"").unwrap().as_str(), "basic");
    }
}
