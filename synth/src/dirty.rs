//! Bad records of every kind, each with the one place it goes and the one reason the decoder
//! gives it (see `decode.rs`, `normalize.rs` and `source.rs` for the rules relied on).

use agentmeter_schemas::Reason;
use serde_json::{Map, Value, json};

/// Where a bad record is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Channel {
    /// A line of the day's plain NDJSON file.
    Ndjson,
    /// A line of the day's gzip CloudWatch export.
    CwExport,
    /// A log event inside a Firehose DATA_MESSAGE payload.
    FirehoseEvent,
    /// A whole gzip member of the day's Firehose file.
    FirehoseMember,
}

/// Padding of the one oversized line: a line over `DecodeConfig::max_record_bytes` (4 MiB by
/// default) is refused as `too_large`; this makes it about 100 kB longer than that.
const OVERSIZED_PAD: usize = (4 << 20) + 100_000;

/// Tenant ids that try to escape a directory, smuggle a separator, or break a log line.
pub(crate) fn hostile_tenant_ids() -> Vec<String> {
    let mut v: Vec<String> = [
        "../../etc/passwd",
        "/abs/path",
        "..",
        ".",
        "a%2fb",
        "clinic\\..\\x",
        "clinic-001\0",
        "clinic-001\nforged log line",
        "%2e%2e%2f",
        "C:\\Windows\\win.ini",
        "clinic 001",
        "",
    ]
    .map(String::from)
    .to_vec();
    v.push(format!("clinic-{}", "9".repeat(64)));
    v
}

/// A bad record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Bad {
    NonUtf8,
    Truncated,
    UnquotedValue,
    ArrayLine,
    StringLine,
    NoModel,
    NoOutputTokens,
    NoEvent,
    NegativeInput,
    StringOutput,
    NumericEvent,
    TenantConflict,
    TokenConflict,
    /// Index into [`hostile_tenant_ids`], in an NDJSON line.
    HostileTenant(usize),
    TraversalUser,
    ActorMismatch,
    SpacedTier,
    NumericTier,
    SpacedModel,
    EmptyModel,
    EmptyEventId,
    SpacedEventId,
    ObjectEventId,
    WrongTotal,
    NoTimestamp,
    WordTimestamp,
    NumericTimestamp,
    PreEpochTimestamp,
    Oversized,
    /// A field nested deeper than the default JSON depth limit.
    DeeplyNested,
    /// Token counts no call produces (they would overflow the day's sums).
    ImplausibleTokens,
    CwStringTimestamp,
    CwObjectId,
    CwNoTimestamp,
    CwBrokenUsage,
    CwIdConflict,
    CwNumericMessage,
    /// A hostile tenant inside a Lambda JSON-format message of the export.
    CwHostileTenant(usize),
    FhNumberEvent,
    FhNoMessage,
    /// A hostile tenant inside a Firehose log event.
    FhHostileTenant(usize),
    FhNegativeTimestamp,
    CorruptMember,
    NotAPayload,
    UnknownMessageType,
    EventsNotArray,
}

/// What a bad record is made from: a valid event of the day, in its two shapes.
pub(crate) struct BadCtx<'a> {
    /// The NDJSON object (with `timestamp` and `event_id`).
    pub line: Map<String, Value>,
    /// The object logged inside a CloudWatch message (neither time nor id).
    pub message: Map<String, Value>,
    pub tier: &'a str,
    pub tenant: &'a str,
    pub other_tenant: &'a str,
    pub cw_id: String,
    pub ts_ms: i64,
    pub iso: String,
    pub request_id: String,
}

fn with(mut m: Map<String, Value>, key: &str, v: Value) -> Map<String, Value> {
    m.insert(key.to_owned(), v);
    m
}

fn without(mut m: Map<String, Value>, key: &str) -> Map<String, Value> {
    m.remove(key);
    m
}

fn text(m: &Map<String, Value>) -> String {
    Value::Object(m.clone()).to_string()
}

fn num(m: &Map<String, Value>, key: &str) -> i64 {
    m.get(key).and_then(Value::as_i64).unwrap_or(0)
}

impl Bad {
    /// Every bad record of a dirty month: each reason (and each hostile tenant id) at least
    /// once.
    pub(crate) fn catalog() -> Vec<Bad> {
        use Bad::*;
        let mut v = vec![
            NonUtf8,
            Truncated,
            UnquotedValue,
            ArrayLine,
            StringLine,
            NoModel,
            NoOutputTokens,
            NoEvent,
            NegativeInput,
            StringOutput,
            NumericEvent,
            TenantConflict,
            TokenConflict,
            TraversalUser,
            ActorMismatch,
            SpacedTier,
            NumericTier,
            SpacedModel,
            EmptyModel,
            EmptyEventId,
            SpacedEventId,
            ObjectEventId,
            WrongTotal,
            NoTimestamp,
            WordTimestamp,
            NumericTimestamp,
            PreEpochTimestamp,
            Oversized,
            DeeplyNested,
            ImplausibleTokens,
            CwStringTimestamp,
            CwObjectId,
            CwNoTimestamp,
            CwBrokenUsage,
            CwIdConflict,
            CwNumericMessage,
            CwHostileTenant(1),
            FhNumberEvent,
            FhNoMessage,
            FhHostileTenant(0),
            FhNegativeTimestamp,
            CorruptMember,
            NotAPayload,
            UnknownMessageType,
            EventsNotArray,
        ];
        v.extend((0..hostile_tenant_ids().len()).map(HostileTenant));
        v
    }

    /// Where it goes.
    pub(crate) fn channel(&self) -> Channel {
        use Bad::*;
        match self {
            CwStringTimestamp | CwObjectId | CwNoTimestamp | CwBrokenUsage | CwIdConflict
            | CwNumericMessage | CwHostileTenant(_) => Channel::CwExport,
            FhNumberEvent | FhNoMessage | FhHostileTenant(_) | FhNegativeTimestamp => {
                Channel::FirehoseEvent
            }
            CorruptMember | NotAPayload | UnknownMessageType | EventsNotArray => {
                Channel::FirehoseMember
            }
            _ => Channel::Ndjson,
        }
    }

    /// The reason the decoder gives it.
    pub(crate) fn reason(&self) -> Reason {
        use Bad::*;
        match self {
            NonUtf8 => Reason::InvalidUtf8,
            Truncated | UnquotedValue | CwBrokenUsage => Reason::InvalidJson,
            ArrayLine | StringLine | FhNumberEvent => Reason::NotAnObject,
            NoModel | NoOutputTokens | NoEvent | FhNoMessage => Reason::MissingField,
            NegativeInput | StringOutput | NumericEvent | CwNumericMessage => Reason::InvalidField,
            TenantConflict | TokenConflict | CwIdConflict => Reason::ConflictingField,
            HostileTenant(_) | CwHostileTenant(_) | FhHostileTenant(_) => Reason::InvalidTenantId,
            TraversalUser | ActorMismatch => Reason::InvalidUserId,
            SpacedTier | NumericTier => Reason::InvalidTier,
            SpacedModel | EmptyModel => Reason::InvalidModelId,
            EmptyEventId | SpacedEventId | ObjectEventId | CwObjectId => Reason::InvalidEventId,
            WrongTotal => Reason::InconsistentTotal,
            NoTimestamp | CwNoTimestamp => Reason::MissingTimestamp,
            WordTimestamp | NumericTimestamp | PreEpochTimestamp | CwStringTimestamp
            | FhNegativeTimestamp => Reason::InvalidTimestamp,
            Oversized => Reason::TooLarge,
            DeeplyNested => Reason::OverLimit,
            ImplausibleTokens => Reason::ImplausibleValue,
            CorruptMember => Reason::InvalidGzip,
            NotAPayload | UnknownMessageType | EventsNotArray => Reason::InvalidPayload,
        }
    }

    /// The bytes of an NDJSON line (without its newline).
    pub(crate) fn ndjson_line(&self, c: &BadCtx<'_>) -> Vec<u8> {
        use Bad::*;
        let l = c.line.clone();
        let s = match self {
            NonUtf8 => {
                let t = text(&l);
                let mut bytes = t.into_bytes();
                // A Latin-1 "é" in the tenant id, as a mis-encoded log line would have it.
                let at = bytes.len() / 2;
                bytes.splice(at..at, [0xe9, 0xff]);
                return bytes;
            }
            Truncated => {
                let t = text(&l);
                t[..t.len() / 2].to_owned()
            }
            UnquotedValue => format!(
                "{{\"event\": inference_usage, \"tier\": \"{}\", \"clinic_id\": \"{}\"}}",
                c.tier, c.tenant
            ),
            ArrayLine => json!(["inference_usage", c.tenant, 812, 97]).to_string(),
            StringLine => json!("inference_usage").to_string(),
            NoModel => text(&without(l, "model_id")),
            NoOutputTokens => text(&without(l, "output_tokens")),
            NoEvent => text(&without(l, "event")),
            NegativeInput => text(&with(l, "input_tokens", json!(-5))),
            StringOutput => {
                let out = num(&l, "output_tokens").to_string();
                text(&with(l, "output_tokens", json!(out)))
            }
            NumericEvent => text(&with(l, "event", json!(7))),
            TenantConflict => text(&with(l, "tenant_id", json!(c.other_tenant))),
            TokenConflict => {
                let p = num(&l, "input_tokens") + 1;
                text(&with(l, "prompt_tokens", json!(p)))
            }
            HostileTenant(i) => {
                let hostile = &hostile_tenant_ids()[*i];
                text(&with(l, "clinic_id", json!(hostile)))
            }
            TraversalUser => text(&with(l, "user_id", json!("../admin"))),
            ActorMismatch => {
                let other = if c.tier == "basic" { "premium" } else { "basic" };
                let user = l.get("user_id").and_then(Value::as_str).unwrap_or("x").to_owned();
                let actor = format!("{other}-{}-{user}", c.tenant);
                text(&with(without(l, "user_id"), "actor_id", json!(actor)))
            }
            SpacedTier => text(&with(l, "tier", json!("gold plan"))),
            NumericTier => text(&with(l, "tier", json!(2))),
            SpacedModel => text(&with(l, "model_id", json!("mistral ministral 3"))),
            EmptyModel => text(&with(l, "model_id", json!(""))),
            EmptyEventId => text(&with(l, "event_id", json!(""))),
            SpacedEventId => text(&with(l, "event_id", json!("evt 42"))),
            ObjectEventId => text(&with(l, "event_id", json!({"v": 1}))),
            WrongTotal => {
                let t = num(&l, "total_tokens") + 1;
                text(&with(l, "total_tokens", json!(t)))
            }
            NoTimestamp => text(&without(l, "timestamp")),
            WordTimestamp => text(&with(l, "timestamp", json!("yesterday"))),
            NumericTimestamp => text(&with(l, "timestamp", json!(c.ts_ms))),
            PreEpochTimestamp => text(&with(l, "timestamp", json!("1969-12-31T23:59:59.999Z"))),
            Oversized => text(&with(l, "debug_context", json!("x".repeat(OVERSIZED_PAD)))),
            DeeplyNested => {
                // 100 levels: over the decoder's default limit of 64, under serde_json's 128.
                let nested = (0..100).fold(json!(1), |v, _| json!({ "a": v }));
                text(&with(l, "debug_context", nested))
            }
            ImplausibleTokens => {
                let huge: i64 = 5_000_000_000_000_000_000;
                let total = huge + num(&l, "output_tokens");
                text(&with(with(l, "input_tokens", json!(huge)), "total_tokens", json!(total)))
            }
            _ => text(&l),
        };
        s.into_bytes()
    }

    /// A line of the CloudWatch export.
    pub(crate) fn cw_line(&self, c: &BadCtx<'_>) -> String {
        let msg = text(&c.message);
        let id = &c.cw_id;
        match self {
            Bad::CwStringTimestamp => {
                json!({"id": id, "timestamp": c.iso, "message": msg}).to_string()
            }
            Bad::CwObjectId => {
                json!({"id": {"n": id}, "timestamp": c.ts_ms, "message": msg}).to_string()
            }
            Bad::CwNoTimestamp => json!({"id": id, "message": msg}).to_string(),
            Bad::CwBrokenUsage => {
                let broken = format!(
                    "[INFO]\t{}\t{}\t{{\"event\":\"inference_usage\",\"tier\":\"{}\",\"clinic_id\":",
                    c.iso, c.request_id, c.tier
                );
                json!({"id": id, "timestamp": c.ts_ms, "message": broken}).to_string()
            }
            Bad::CwIdConflict => {
                let last = if id.ends_with('1') { '2' } else { '1' };
                let other = format!("{}{last}", &id[..id.len() - 1]);
                format!(
                    "{{\"id\":\"{id}\",\"eventId\":\"{other}\",\"timestamp\":{},\"message\":{}}}",
                    c.ts_ms,
                    Value::String(msg)
                )
            }
            Bad::CwNumericMessage => {
                json!({"id": id, "timestamp": c.ts_ms, "message": 42}).to_string()
            }
            Bad::CwHostileTenant(i) => {
                let hostile = &hostile_tenant_ids()[*i];
                let inner = text(&with(c.message.clone(), "clinic_id", json!(hostile)));
                let wrapped = json!({"timestamp": c.iso, "level": "INFO", "message": inner,
                    "logger": "root", "requestId": c.request_id})
                .to_string();
                json!({"id": id, "timestamp": c.ts_ms, "message": wrapped}).to_string()
            }
            _ => json!({"id": id, "timestamp": c.ts_ms, "message": msg}).to_string(),
        }
    }

    /// A log event of a Firehose payload.
    pub(crate) fn fh_event(&self, c: &BadCtx<'_>) -> String {
        let id = &c.cw_id;
        match self {
            Bad::FhNumberEvent => "42".into(),
            Bad::FhNoMessage => json!({"id": id, "timestamp": c.ts_ms}).to_string(),
            Bad::FhHostileTenant(i) => {
                let hostile = &hostile_tenant_ids()[*i];
                let inner = text(&with(c.message.clone(), "clinic_id", json!(hostile)));
                let msg = format!("INFO:root:{inner}");
                json!({"id": id, "timestamp": c.ts_ms, "message": msg}).to_string()
            }
            Bad::FhNegativeTimestamp => {
                json!({"id": id, "timestamp": -1000, "message": text(&c.message)}).to_string()
            }
            _ => json!({"id": id, "timestamp": c.ts_ms, "message": text(&c.message)}).to_string(),
        }
    }

    /// The uncompressed body of a bad Firehose member (not for [`Bad::CorruptMember`], whose
    /// body is a good payload compressed and then damaged).
    pub(crate) fn member_body(&self, group: &str, stream: &str, event: &str) -> String {
        match self {
            Bad::NotAPayload => json!({"hello": "world", "logGroup": group}).to_string(),
            Bad::UnknownMessageType => format!(
                "{{\"messageType\":\"HEARTBEAT_MESSAGE\",\"owner\":\"123456789012\",\"logGroup\":\"{group}\",\"logStream\":\"{stream}\",\"subscriptionFilters\":[],\"logEvents\":[]}}"
            ),
            Bad::EventsNotArray => format!(
                "{{\"messageType\":\"DATA_MESSAGE\",\"owner\":\"123456789012\",\"logGroup\":\"{group}\",\"logStream\":\"{stream}\",\"subscriptionFilters\":[\"agentmeter-usage\"],\"logEvents\":{{\"0\":{event}}}}}"
            ),
            _ => String::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reason_is_in_the_catalog_but_unrecognized_format() {
        let reasons: std::collections::BTreeSet<Reason> =
            Bad::catalog().iter().map(Bad::reason).collect();
        for r in Reason::ALL {
            assert_eq!(
                reasons.contains(&r),
                r != Reason::UnrecognizedFormat,
                "{r} (unrecognized_format is a whole file, written once per month)"
            );
        }
    }

    #[test]
    fn hostile_ids_are_all_refused() {
        for id in hostile_tenant_ids() {
            assert!(agentmeter_schemas::TenantId::new(id.as_str()).is_err(), "{id:?}");
        }
        assert!(hostile_tenant_ids().iter().any(|s| s.len() > 64));
    }
}
