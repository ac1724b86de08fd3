//! The pure decoder: bytes of one record (a line, a log event, a payload) into outcomes.
//!
//! Nothing here reads files or clocks. Every record produces exactly one [`Outcome`]: an
//! event, a counted skip, or a quarantine entry carrying the record's exact bytes.

use std::io::Cursor;

use agentmeter_schemas::{
    EventId, Position, QuarantineEntry, RawFormat, Reason, SkipKind, SourceUri, UsageEvent,
};
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::cloudwatch::{Body, Payload, message_body};
use crate::config::DecodeConfig;
use crate::fields::{
    Fields, Got, Key, MessageBody, ParseError, Scalar, flat_object, flat_payload, parse_object,
    parse_object_by_serde, parse_object_prefix,
};
use crate::gzip::{Inflated, inflate_member};
use crate::limits::json_depth;
use crate::normalize::{Envelope, Refusal, check_time_ms, id_value, refuse, usage_event};

/// Where one input record ended.
// Events are nearly every outcome: boxing them would allocate once per event on the hot path,
// while the rare variants are boxed already.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A valid usage event, to be deduplicated and written.
    Event(UsageEvent),
    /// Not usage; counted and dropped.
    Skip(SkipKind),
    /// Refused; to be written to the quarantine. Boxed: refusals are rare and large.
    Reject(Box<QuarantineEntry>),
    /// A valid span of an agent runtime, to be deduplicated and written to `agent_spans`.
    Span(Box<agentmeter_schemas::AgentSpan>),
}

/// The outcomes of a unit of input, in input order.
#[derive(Debug, Default)]
pub struct Decoded {
    /// One outcome per record.
    pub outcomes: Vec<Outcome>,
    /// Original sources of replayed quarantine entries: their quarantine files are rewritten
    /// by this run even if every entry now passes.
    pub lineage: Vec<SourceUri>,
    /// The tenants and users met so far, for the per-batch limits.
    pub(crate) ids: crate::limits::BatchIds,
}

impl Decoded {
    /// Whether nothing was decoded into it yet.
    fn is_empty(&self) -> bool {
        self.outcomes.is_empty() && self.lineage.is_empty() && self.ids.is_empty()
    }
}

/// Where the record being decoded sits.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'s> {
    pub source: &'s SourceUri,
    pub pos: Position,
    /// Inside a replayed quarantine entry (entries do not nest).
    pub replay: bool,
}

impl<'s> Ctx<'s> {
    pub(crate) fn new(source: &'s SourceUri, pos: Position) -> Self {
        Self { source, pos, replay: false }
    }

    fn event(self, i: usize) -> Self {
        Self { pos: Position { event: Some(i as u64 + 1), ..self.pos }, ..self }
    }
}

/// The bytes to quarantine if a record is refused, and how to read them again.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Raw<'r> {
    pub bytes: &'r [u8],
    pub format: RawFormat,
}

/// Where the bytes of large quarantine entries are kept (see
/// [`RAW_DIR`](agentmeter_schemas::RAW_DIR)): read when such an entry is replayed.
pub trait RawStore: Send + Sync + std::fmt::Debug {
    /// The bytes named `name` kept beside the quarantine file `entry_source`, if readable.
    fn read(&self, entry_source: &SourceUri, name: &str) -> Option<Vec<u8>>;
}

/// Large entries' bytes in the `.raw` directory beside a local quarantine file: the one read
/// the decoder makes, confined to a name of 32 hex digits in that directory.
#[derive(Debug, Clone, Copy, Default)]
pub struct FileRawStore;

impl RawStore for FileRawStore {
    fn read(&self, entry_source: &SourceUri, name: &str) -> Option<Vec<u8>> {
        if !agentmeter_schemas::is_raw_ref(name) {
            return None;
        }
        let file = std::path::Path::new(entry_source.as_str().strip_prefix("file://")?);
        let path = file.parent()?.join(agentmeter_schemas::RAW_DIR).join(format!("{name}.bin"));
        std::fs::read(path).ok()
    }
}

/// Decodes records. Cheap to share between threads.
#[derive(Debug, Clone)]
pub struct Decoder {
    cfg: DecodeConfig,
    raw: std::sync::Arc<dyn RawStore>,
}

impl Default for Decoder {
    fn default() -> Self {
        Self::new(DecodeConfig::default())
    }
}

#[derive(Deserialize)]
struct EventsDoc<'a> {
    #[serde(borrow)]
    events: Vec<&'a RawValue>,
}

impl Decoder {
    /// A decoder with these settings.
    pub fn new(cfg: DecodeConfig) -> Self {
        Self { cfg, raw: std::sync::Arc::new(FileRawStore) }
    }

    /// The same decoder, reading large quarantine entries' bytes from `raw`.
    pub fn with_raw_store(mut self, raw: std::sync::Arc<dyn RawStore>) -> Self {
        self.raw = raw;
        self
    }

    /// The settings.
    pub fn config(&self) -> &DecodeConfig {
        &self.cfg
    }

    pub(crate) fn reject(&self, out: &mut Decoded, r: Refusal, ctx: Ctx<'_>, raw: Raw<'_>) {
        out.outcomes.push(Outcome::Reject(Box::new(QuarantineEntry::new(
            r.reason,
            r.detail,
            ctx.source.clone(),
            ctx.pos,
            raw.format,
            raw.bytes,
            self.cfg.max_quarantine_raw_bytes,
        ))));
    }

    fn skip(out: &mut Decoded, kind: SkipKind) {
        out.outcomes.push(Outcome::Skip(kind));
    }

    /// Decodes one line of an NDJSON file (without its `\n`). A blank line is not a record
    /// and produces nothing; a line holding a subscription payload or a `filter-log-events`
    /// document produces one outcome per log event.
    pub fn line(&self, line: &[u8], source: &SourceUri, pos: Position, out: &mut Decoded) {
        self.line_in(line, Ctx::new(source, pos), out);
    }

    /// Decodes the data of one stream record (a Kinesis record, a Firehose record): a
    /// gzip-compressed CloudWatch Logs subscription payload (one or more gzip members), or
    /// else NDJSON, one record per line. Positions count gzip members and lines within the
    /// record; `source` names the record itself.
    pub fn stream_record(&self, data: &[u8], source: &SourceUri, out: &mut Decoded) {
        if data.starts_with(&[0x1f, 0x8b]) {
            // Usually one member; Firehose-style concatenations are split at member ends.
            let mut cursor = Cursor::new(data);
            let mut member = 0u64;
            while (cursor.position() as usize) < data.len() {
                member += 1;
                let start = cursor.position() as usize;
                let pos = Position {
                    member: Some(member),
                    offset: Some(start as u64),
                    ..Position::default()
                };
                let end = match inflate_member(&mut cursor, self.cfg.max_payload_bytes) {
                    // A corrupt member has no known end: the rest is one refused record.
                    Inflated::Corrupt(_) => data.len(),
                    _ => (cursor.position() as usize).clamp(start + 1, data.len()),
                };
                self.payload_gzip(&data[start..end], Ctx::new(source, pos), out);
                cursor.set_position(end as u64);
            }
            return;
        }
        for (i, line) in data.split(|b| *b == b'\n').enumerate() {
            let pos = Position { line: Some(i as u64 + 1), ..Position::default() };
            self.line_in(line, Ctx::new(source, pos), out);
        }
    }

    /// Decodes one CloudWatch log event as the Logs API returns it (`FilterLogEvents`,
    /// `GetLogEvents`): the same rules as a log event inside a subscription payload, so its
    /// identity is its CloudWatch event id.
    pub fn api_log_event(
        &self,
        id: &str,
        timestamp_ms: i64,
        message: &str,
        source: &SourceUri,
        out: &mut Decoded,
    ) {
        let doc = serde_json::json!({ "id": id, "timestamp": timestamp_ms, "message": message });
        let bytes = doc.to_string();
        self.log_event(bytes.as_bytes(), Ctx::new(source, Position::default()), out);
    }

    pub(crate) fn line_in(&self, line: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return;
        }
        let raw = Raw { bytes: line, format: RawFormat::NdjsonLine };
        // A quarantine entry is the pipeline's own output: it must read back as itself.
        let entry = line.len() <= agentmeter_schemas::ENTRY_LINE_MAX
            && line.starts_with(b"{\"agentmeter_quarantine\":");
        if line.len() > self.cfg.max_record_bytes && !entry {
            let detail = format!(
                "line of {} bytes is over the {}-byte limit",
                line.len(),
                self.cfg.max_record_bytes
            );
            return self.reject(out, refuse(Reason::TooLarge, detail), ctx, raw);
        }
        let text = match utf8(line) {
            Ok(t) => t,
            Err(e) => {
                let detail = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                return self.reject(out, refuse(Reason::InvalidUtf8, detail), ctx, raw);
            }
        };
        // Trace requests are most of a month's bytes: read them once, not for their fields
        // first (the general path below gives the same outcome, and takes what this refuses).
        let t = text.trim_start();
        if (t.starts_with("{\"resourceSpans\"") || t.starts_with("{\"resource_spans\""))
            && crate::otlp::request_line(text, ctx, &self.cfg, out)
        {
            return;
        }
        // A flat object (nearly every usage line) nests one level, within any depth limit (at
        // least 1), and is no log line: read at once, not scanned for its depth first.
        let f = match flat_object(text, &self.cfg.tenant_field) {
            Some(f) => f,
            None => {
                // After the trace requests' path: scanning every span line again would cost a
                // span ingest about 6 %; those are bounded by the parser's own 128 levels.
                if let Err(r) = json_depth(line, self.cfg.limits.json_depth) {
                    return self.reject(out, r, ctx, raw);
                }
                // Lambda's `[INFO]\t<time>\t...` starts as a JSON array would: the prefix is
                // tried first there too (`[INFO]` is no JSON, so no JSON line is read as a log
                // line).
                let t = text.trim_start();
                if !t.starts_with(['{', '"']) {
                    if let Some(p) = crate::textlog::split(text.trim()) {
                        return self.text_line(&p, text.trim(), raw, ctx, out);
                    }
                    if !t.starts_with('[') {
                        let r = refuse(
                            Reason::InvalidJson,
                            "neither JSON nor a line with a known logging prefix",
                        );
                        return self.reject(out, r, ctx, raw);
                    }
                }
                match parse_object_by_serde(text, &self.cfg.tenant_field) {
                    Ok(f) => f,
                    Err(e) => return self.reject(out, parse_refusal(&e), ctx, raw),
                }
            }
        };
        if f.markers.quarantine {
            return self.envelope(text, ctx, out, raw);
        }
        match f.get(Key::Event) {
            Got::Absent if f.markers.resource_spans => self.otlp_line(line, ctx, out, raw),
            Got::Absent if f.markers.message_type => self.payload_json(line, raw, ctx, out),
            Got::Absent if f.markers.events => self.events_line(text, ctx, out, raw),
            Got::Absent if f.has(Key::Message) && (f.has(Key::CwId) || f.has(Key::Timestamp)) => {
                self.log_event_fields(&f, text, raw, ctx, out);
            }
            Got::Absent => {
                let r =
                    refuse(Reason::MissingField, "event is missing: not an inference_usage record");
                self.reject(out, r, ctx, raw);
            }
            _ => self.object(&f, text, &Envelope::default(), raw, ctx, out, false),
        }
    }

    /// A line of a log file as an application writes it: a logging prefix, then its message.
    /// Like a CloudWatch message, a message without JSON is another log of the application
    /// (skipped, counted; a line with no known prefix is not JSON and is quarantined); a usage object takes its time from its `timestamp` field, else from
    /// the prefix (`asctime` read in the configured zone), else from `--default-time`. Its id,
    /// unless it has one, is a digest of the whole line: the same line read twice is one event.
    fn text_line(
        &self,
        p: &crate::textlog::Prefixed<'_>,
        line: &str,
        raw: Raw<'_>,
        ctx: Ctx<'_>,
        out: &mut Decoded,
    ) {
        let text = match message_body(p.message) {
            Body::Platform => return Self::skip(out, SkipKind::PlatformLine),
            Body::Text => return Self::skip(out, SkipKind::NonJsonMessage),
            Body::Json(text) => text,
        };
        let f = match parse_object_prefix(text, &self.cfg.tenant_field) {
            Ok(f) => f,
            Err(e) if line.contains("inference_usage") => {
                return self.reject(out, parse_refusal(&e), ctx, raw);
            }
            Err(_) => return Self::skip(out, SkipKind::NonJsonMessage),
        };
        let usage =
            matches!(f.get(Key::Event), Got::One(_, Scalar::Str(e)) if e == "inference_usage");
        let mut env = Envelope::default();
        if usage && !f.has(Key::Timestamp) {
            let time = match p.time.map(|t| t.to_ms(self.cfg.log_timezone)) {
                Some(Ok(ms)) => Some(ms),
                Some(Err(why)) => {
                    return self.reject(out, refuse(Reason::InvalidTimestamp, why), ctx, raw);
                }
                None => self.cfg.default_time_ms,
            };
            let Some(ms) = time else {
                let r = refuse(
                    Reason::MissingTimestamp,
                    "no time in the line's logging prefix and no timestamp field (give --default-time)",
                );
                return self.reject(out, r, ctx, raw);
            };
            match check_time_ms(ms, "time") {
                Ok(ms) => env.timestamp_ms = Some(ms),
                Err(r) => return self.reject(out, r, ctx, raw),
            }
        }
        if usage && !f.has(Key::EventId) {
            let hex = agentmeter_schemas::content_digest_hex(line.as_bytes());
            env.id = EventId::new(format!("h:{hex}")).ok();
        }
        self.object(&f, text, &env, raw, ctx, out, true);
    }

    /// A parsed object that has (or, inside a CloudWatch message, may lack) `event`.
    #[allow(clippy::too_many_arguments)]
    fn object(
        &self,
        f: &Fields<'_>,
        text: &str,
        env: &Envelope<'_>,
        raw: Raw<'_>,
        ctx: Ctx<'_>,
        out: &mut Decoded,
        in_message: bool,
    ) {
        match f.get(Key::Event) {
            Got::One(_, Scalar::Str(e)) if e == "inference_usage" => {
                match usage_event(f, text, &self.cfg, ctx.source, env) {
                    Ok(ev) => {
                        match out.ids.admit(&ev.tenant_id, Some(&ev.user_id), &self.cfg.limits) {
                            Ok(()) => out.outcomes.push(Outcome::Event(ev)),
                            Err(r) => self.reject(out, r, ctx, raw),
                        }
                    }
                    Err(r) => self.reject(out, r, ctx, raw),
                }
            }
            Got::One(_, Scalar::Str(_)) => Self::skip(out, SkipKind::OtherEvent),
            Got::One(_, other) => {
                let r = refuse(
                    Reason::InvalidField,
                    format!("event must be a string, got {}", other.describe()),
                );
                self.reject(out, r, ctx, raw);
            }
            Got::Conflict(a, b) => {
                self.reject(
                    out,
                    refuse(Reason::ConflictingField, format!("{a} and {b} differ")),
                    ctx,
                    raw,
                );
            }
            Got::Absent if in_message => Self::skip(out, SkipKind::OtherEvent),
            Got::Absent => {
                let r =
                    refuse(Reason::MissingField, "event is missing: not an inference_usage record");
                self.reject(out, r, ctx, raw);
            }
        }
    }

    /// One CloudWatch log event object (`id`/`eventId`, `timestamp`, `message`).
    pub(crate) fn log_event(&self, bytes: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
        let raw = Raw { bytes, format: RawFormat::CwlLogEvent };
        if self.log_event_too_large(raw, ctx, out) {
            return;
        }
        let text = match utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let detail = format!("invalid UTF-8 at byte {}", e.valid_up_to());
                return self.reject(out, refuse(Reason::InvalidUtf8, detail), ctx, raw);
            }
        };
        if let Err(r) = json_depth(bytes, self.cfg.limits.json_depth) {
            return self.reject(out, r, ctx, raw);
        }
        self.log_event_text(text, raw, ctx, out);
    }

    /// A log event of a document (a subscription payload, a `filter-log-events` line) already
    /// read as UTF-8 and held to the depth limit whole: neither is checked again per event.
    fn log_event_within(&self, text: &str, ctx: Ctx<'_>, out: &mut Decoded) {
        let raw = Raw { bytes: text.as_bytes(), format: RawFormat::CwlLogEvent };
        if !self.log_event_too_large(raw, ctx, out) {
            self.log_event_text(text, raw, ctx, out);
        }
    }

    /// Refuses a log event over the record limit; whether it did.
    fn log_event_too_large(&self, raw: Raw<'_>, ctx: Ctx<'_>, out: &mut Decoded) -> bool {
        if raw.bytes.len() <= self.cfg.max_record_bytes {
            return false;
        }
        let detail = format!(
            "log event of {} bytes is over the {}-byte limit",
            raw.bytes.len(),
            self.cfg.max_record_bytes
        );
        self.reject(out, refuse(Reason::TooLarge, detail), ctx, raw);
        true
    }

    fn log_event_text(&self, text: &str, raw: Raw<'_>, ctx: Ctx<'_>, out: &mut Decoded) {
        match parse_object(text, &self.cfg.tenant_field) {
            Ok(f) => self.log_event_fields(&f, text, raw, ctx, out),
            Err(e) => self.reject(out, parse_refusal(&e), ctx, raw),
        }
    }

    fn log_event_fields(
        &self,
        f: &Fields<'_>,
        text: &str,
        raw: Raw<'_>,
        ctx: Ctx<'_>,
        out: &mut Decoded,
    ) {
        let env = match cw_envelope(f, text) {
            Ok(env) => env,
            Err(r) => return self.reject(out, r, ctx, raw),
        };
        match f.get(Key::Message) {
            Got::One(_, Scalar::Str(m)) => self.message(m, &env, 0, raw, ctx, out),
            Got::Conflict(a, b) => {
                self.reject(
                    out,
                    refuse(Reason::ConflictingField, format!("{a} and {b} differ")),
                    ctx,
                    raw,
                );
            }
            Got::Absent => self.reject(
                out,
                refuse(Reason::MissingField, "log event message is missing"),
                ctx,
                raw,
            ),
            Got::One(_, other) => {
                let r = refuse(
                    Reason::InvalidField,
                    format!("log event message must be a string, got {}", other.describe()),
                );
                self.reject(out, r, ctx, raw);
            }
        }
    }

    /// A log event whose message's object was read in place ([`flat_payload`]). The object's
    /// text there is escaped, which matters not: a log event's own id or text is its identity
    /// ([`cw_envelope`]), never its message's.
    fn log_event_body(
        &self,
        f: &Fields<'_>,
        text: &str,
        body: &MessageBody<'_>,
        raw: Raw<'_>,
        ctx: Ctx<'_>,
        out: &mut Decoded,
    ) {
        let env = match cw_envelope(f, text) {
            Ok(env) => env,
            Err(r) => return self.reject(out, r, ctx, raw),
        };
        // A Lambda JSON log record (without an event: `message_object`'s test) is its usage
        // line, one message deeper.
        let (object, depth) = match &body.inner {
            Some(inner) => (&**inner, 1),
            None => (body, 0),
        };
        self.message_object(&object.fields, object.text, &env, depth, raw, ctx, out);
    }

    /// A CloudWatch message: strip the logger prefix, then decide.
    fn message(
        &self,
        msg: &str,
        env: &Envelope<'_>,
        depth: u8,
        raw: Raw<'_>,
        ctx: Ctx<'_>,
        out: &mut Decoded,
    ) {
        let text = match message_body(msg) {
            Body::Platform => return Self::skip(out, SkipKind::PlatformLine),
            Body::Text => return Self::skip(out, SkipKind::NonJsonMessage),
            Body::Json(text) => text,
        };
        // A message that is one flat object (nearly every usage line) nests one level, within
        // any depth limit (at least 1): read at once, not scanned for its depth first.
        let f = match flat_object(text, &self.cfg.tenant_field) {
            Some(f) => f,
            None => {
                if let Err(r) = json_depth(text.as_bytes(), self.cfg.limits.json_depth) {
                    if msg.contains("inference_usage") {
                        return self.reject(out, r, ctx, raw);
                    }
                    return Self::skip(out, SkipKind::NonJsonMessage);
                }
                match parse_object_prefix(text, &self.cfg.tenant_field) {
                    Ok(f) => f,
                    // Log groups carry every log of the application; broken JSON is worth a
                    // look only when it is (or claims to be) usage.
                    Err(e) if msg.contains("inference_usage") => {
                        return self.reject(out, parse_refusal(&e), ctx, raw);
                    }
                    Err(_) => return Self::skip(out, SkipKind::NonJsonMessage),
                }
            }
        };
        self.message_object(&f, text, env, depth, raw, ctx, out);
    }

    /// The object a message holds (`f`, read from `text`), its logger prefix stripped.
    #[allow(clippy::too_many_arguments)]
    fn message_object(
        &self,
        f: &Fields<'_>,
        text: &str,
        env: &Envelope<'_>,
        depth: u8,
        raw: Raw<'_>,
        ctx: Ctx<'_>,
        out: &mut Decoded,
    ) {
        if !f.has(Key::Event) && depth == 0 {
            // Lambda JSON log format and the AgentCore SDK logger: the application's
            // message is a JSON string inside the log record.
            if let Got::One(_, Scalar::Str(inner)) = f.get(Key::Message) {
                return self.message(inner, env, 1, raw, ctx, out);
            }
        }
        self.object(f, text, env, raw, ctx, out, true);
    }

    /// A decompressed subscription payload.
    pub(crate) fn payload_json(&self, body: &[u8], raw: Raw<'_>, ctx: Ctx<'_>, out: &mut Decoded) {
        let text = match utf8(body) {
            Ok(t) => t,
            Err(e) => {
                let detail = format!("payload is not UTF-8 at byte {}", e.valid_up_to());
                return self.reject(out, refuse(Reason::InvalidPayload, detail), ctx, raw);
            }
        };
        if self.payload_flat(text, ctx, out) {
            return;
        }
        if let Err(r) = json_depth(body, self.cfg.limits.json_depth) {
            return self.reject(out, r, ctx, raw);
        }
        let payload: Payload<'_> = match serde_json::from_str(text) {
            Ok(p) => p,
            Err(e) => {
                let detail = format!("not a CloudWatch Logs subscription payload: {e}");
                return self.reject(out, refuse(Reason::InvalidPayload, detail), ctx, raw);
            }
        };
        match payload.message_type.as_ref() {
            "CONTROL_MESSAGE" => Self::skip(out, SkipKind::ControlMessage),
            "DATA_MESSAGE" => {
                for (i, ev) in payload.log_events.iter().enumerate() {
                    self.log_event_within(ev.get(), ctx.event(i), out);
                }
            }
            other => {
                let detail = format!("unknown messageType {other:?}");
                self.reject(out, refuse(Reason::InvalidPayload, detail), ctx, raw);
            }
        }
    }

    /// A data payload read in one pass ([`flat_payload`]), each log event decoded as it is
    /// read, as [`Decoder::payload_json`] would decode it after its depth check and
    /// serde_json's reading, two passes over every byte (a fifth of a Firehose file's
    /// ingest). Taken only into a batch that holds nothing yet, which is given back empty
    /// when the payload turns out to be one for those passes (whose outcome may be the
    /// payload's refusal): whether it was taken.
    fn payload_flat(&self, text: &str, ctx: Ctx<'_>, out: &mut Decoded) -> bool {
        // Three levels: the payload, its log events, each event.
        if self.cfg.limits.json_depth < 3 || !out.is_empty() {
            return false;
        }
        let read = flat_payload(text, &self.cfg.tenant_field, |n, event, fields, body| {
            let raw = Raw { bytes: event.as_bytes(), format: RawFormat::CwlLogEvent };
            if self.log_event_too_large(raw, ctx.event(n), out) {
                return;
            }
            match body {
                Some(body) => self.log_event_body(&fields, event, body, raw, ctx.event(n), out),
                None => self.log_event_fields(&fields, event, raw, ctx.event(n), out),
            }
        });
        if read.is_none() {
            *out = Decoded::default();
        }
        read.is_some()
    }

    /// A gzip-compressed subscription payload (one member).
    pub(crate) fn payload_gzip(&self, compressed: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
        let raw = Raw { bytes: compressed, format: RawFormat::CwlPayloadGzip };
        match inflate_member(Cursor::new(compressed), self.cfg.max_payload_bytes) {
            Inflated::Ok(body) => self.payload_json(&body, raw, ctx, out),
            Inflated::TooLarge => {
                let detail =
                    format!("payload inflates to over {} bytes", self.cfg.max_payload_bytes);
                self.reject(out, refuse(Reason::TooLarge, detail), ctx, raw);
            }
            Inflated::Corrupt(e) => self.reject(out, refuse(Reason::InvalidGzip, e), ctx, raw),
        }
    }

    /// A one-line `filter-log-events` document.
    fn events_line(&self, text: &str, ctx: Ctx<'_>, out: &mut Decoded, raw: Raw<'_>) {
        match serde_json::from_str::<EventsDoc<'_>>(text) {
            Ok(doc) => {
                for (i, ev) in doc.events.iter().enumerate() {
                    self.log_event_within(ev.get(), ctx.event(i), out);
                }
            }
            Err(e) => {
                let detail = format!("not a filter-log-events document: {e}");
                self.reject(out, refuse(Reason::InvalidPayload, detail), ctx, raw);
            }
        }
    }

    /// A line that is an OTLP JSON trace request: one outcome per span.
    fn otlp_line(&self, line: &[u8], ctx: Ctx<'_>, out: &mut Decoded, raw: Raw<'_>) {
        if let Err(e) = crate::otlp::json_in(line, ctx, &self.cfg, out, false) {
            self.refuse_request(out, e, ctx, raw.format);
        }
    }

    /// A protobuf `ExportTraceServiceRequest` (one request of a protobuf file): one outcome
    /// per span, or one refusal of the request.
    pub(crate) fn otlp_proto(&self, body: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
        if let Err(e) = crate::otlp::proto_in(body, ctx, &self.cfg, out) {
            self.refuse_request(out, e, ctx, RawFormat::Source);
        }
    }

    /// A whole source that is one (pretty-printed) OTLP JSON request: one outcome per span, or
    /// one refusal of the request.
    pub(crate) fn otlp_document(&self, body: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
        if let Err(e) = crate::otlp::json_in(body, ctx, &self.cfg, out, false) {
            self.refuse_request(out, e, ctx, RawFormat::Source);
        }
    }

    /// A trace request that is not one as a whole. Its bytes are not kept: they hold the
    /// spans' events, status messages and content attributes (patient text), and nothing can
    /// be scrubbed from what does not parse. The entry names the source and position, to be
    /// ingested again once the exporter is fixed.
    fn refuse_request(
        &self,
        out: &mut Decoded,
        e: crate::otlp::OtlpError,
        ctx: Ctx<'_>,
        format: RawFormat,
    ) {
        let detail = format!("{} (not kept: a trace request may hold free text)", e.detail());
        out.outcomes.push(Outcome::Reject(Box::new(QuarantineEntry::withheld(
            Reason::InvalidPayload,
            detail,
            ctx.source.clone(),
            ctx.pos,
            format,
        ))));
    }

    /// The raw bytes of a quarantined span: a one-span OTLP JSON request.
    fn otlp_span_entry(&self, bytes: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
        if let Err(e) = crate::otlp::json_in(bytes, ctx, &self.cfg, out, true) {
            let raw = Raw { bytes, format: RawFormat::OtlpJson };
            self.reject(out, refuse(Reason::InvalidPayload, e.detail()), ctx, raw);
        }
    }

    /// A quarantine entry: decode its raw bytes again, with its original lineage.
    fn envelope(&self, text: &str, ctx: Ctx<'_>, out: &mut Decoded, raw: Raw<'_>) {
        if ctx.replay {
            let r = refuse(Reason::InvalidPayload, "a quarantine entry inside a quarantine entry");
            return self.reject(out, r, ctx, raw);
        }
        let entry: QuarantineEntry = match serde_json::from_str(text) {
            Ok(e) => e,
            Err(e) => {
                let r = refuse(Reason::InvalidPayload, format!("unreadable quarantine entry: {e}"));
                return self.reject(out, r, ctx, raw);
            }
        };
        out.lineage.push(entry.source.clone());
        if entry.raw_truncated || entry.raw_withheld {
            // Only a prefix or nothing was kept: it cannot pass, so it stays as it was.
            out.outcomes.push(Outcome::Reject(Box::new(entry)));
            return;
        }
        let bytes = match (&entry.raw_ref, entry.raw_bytes()) {
            (Some(name), _) => {
                let kept = self.raw.read(ctx.source, name).filter(|b| {
                    agentmeter_schemas::raw_ref(b) == *name
                        && entry.raw_len.is_none_or(|n| n == b.len() as u64)
                });
                match kept {
                    Some(b) => b,
                    None => {
                        // The bytes are not beside this file (copied elsewhere, or removed):
                        // the entry stays as it was rather than nesting a refusal of it.
                        tracing::warn!(source = %entry.source.shown(), raw_ref = %name, "The bytes of a quarantine entry are missing; it stays quarantined.");
                        out.outcomes.push(Outcome::Reject(Box::new(entry)));
                        return;
                    }
                }
            }
            (None, Ok(b)) => b,
            (None, Err(e)) => {
                let r = refuse(Reason::InvalidPayload, format!("unreadable quarantine entry: {e}"));
                return self.reject(out, r, ctx, raw);
            }
        };
        let inner = Ctx { source: &entry.source, pos: entry.position, replay: true };
        match entry.format {
            RawFormat::NdjsonLine => self.line_in(&bytes, inner, out),
            RawFormat::CwlLogEvent => self.log_event(&bytes, inner, out),
            RawFormat::CwlPayloadGzip => self.payload_gzip(&bytes, inner, out),
            RawFormat::Source => crate::source::decode_bytes(self, &bytes, inner, out),
            RawFormat::OtlpJson => self.otlp_span_entry(&bytes, inner, out),
        }
    }
}

/// The id and time a CloudWatch log event gives its message.
/// `bytes` as text. Checked by simdutf8, several times faster than the standard library on
/// the long ASCII lines input mostly is; invalid input is checked again by the standard
/// library, for its error's place.
pub(crate) fn utf8(bytes: &[u8]) -> Result<&str, std::str::Utf8Error> {
    match simdutf8::basic::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(_) => std::str::from_utf8(bytes),
    }
}

fn cw_envelope<'t>(f: &Fields<'_>, text: &'t str) -> Result<Envelope<'t>, Refusal> {
    let id = match f.get(Key::CwId) {
        Got::Absent | Got::One(_, Scalar::Null) => None,
        Got::Conflict(a, b) => {
            return Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ")));
        }
        Got::One(name, v) => Some(id_value(v, name)?),
    };
    let timestamp_ms = match f.get(Key::Timestamp) {
        Got::Absent | Got::One(_, Scalar::Null) => None,
        Got::Conflict(a, b) => {
            return Err(refuse(Reason::ConflictingField, format!("{a} and {b} differ")));
        }
        Got::One(_, Scalar::Int(ms)) => {
            let ms = i64::try_from(*ms).map_err(|_| {
                refuse(
                    Reason::InvalidTimestamp,
                    format!("log event timestamp {ms} is out of range"),
                )
            })?;
            Some(check_time_ms(ms, "log event timestamp")?)
        }
        Got::One(_, other) => {
            return Err(refuse(
                Reason::InvalidTimestamp,
                format!("log event timestamp must be epoch milliseconds, got {}", other.describe()),
            ));
        }
    };
    Ok(Envelope { id, timestamp_ms, identity_text: Some(text) })
}

fn parse_refusal(e: &ParseError) -> Refusal {
    match e {
        ParseError::Json(e) => refuse(Reason::InvalidJson, e.to_string()),
        ParseError::NotAnObject => refuse(Reason::NotAnObject, "JSON value is not an object"),
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
#[cfg(test)]
#[path = "decode/tests_textlog.rs"]
mod tests_textlog;
