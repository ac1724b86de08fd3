//! Local file sources: which files a path names, what format each is in, and how it splits
//! into units of work for the decoders.
//!
//! A file is read once, front to back, with bounded memory: lines are capped, payloads are
//! capped, and units are handed on as they fill. Formats (detected per file unless forced):
//!
//! - NDJSON, plain or gzip: one record per line.
//! - CloudWatch Logs subscription payloads: one or more concatenated gzip members (Firehose
//!   writes them so to S3), each a DATA_MESSAGE or CONTROL_MESSAGE.
//! - A `filter-log-events` document (`{"events":[...]}` as the AWS CLI prints it, possibly
//!   spread over many lines), streamed event by event.
//! - OTLP JSON trace requests, one per NDJSON line (the OpenTelemetry Collector's file
//!   exporter with `format: json`): read as NDJSON, each line decoded span by span. A file
//!   holding one pretty-printed request (opentelemetry-proto's `examples/trace.json`) is
//!   recognised by its top-level `resourceSpans` and read again whole (up to the payload
//!   limit).
//! - OTLP protobuf trace files ([`Format::OtlpProto`], detected by the extensions `.pb`,
//!   `.binpb` and `.otlp`, optionally followed by `.gz`; the content may be gzip): either one
//!   bare `ExportTraceServiceRequest` (or `TracesData`, the same message), or a sequence of
//!   requests each preceded by its length as 4 bytes big-endian (the Collector's file exporter
//!   with `format: proto`). A bare request starts with the tag byte `0x0a` of its first
//!   `resource_spans`; a length prefix starts with `0x0a` only for a request of 160 MiB or
//!   more, over any sensible payload limit, so the first byte tells them apart.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Cursor, Read, Seek};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use agentmeter_schemas::{Position, QuarantineEntry, RawFormat, Reason, SourceUri};
use serde::de::{self, DeserializeSeed, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::value::RawValue;

use crate::config::DecodeConfig;
use crate::decode::{Ctx, Decoded, Decoder, Outcome, Raw};
use crate::fields::parse_object;
use crate::gzip::{Inflated, Probe, inflate_member, is_gzip, multi_member, probe_member};
use crate::window::{GZIP_HEADER_LEN, Window, find_member_start, member_start};

#[doc(hidden)]
pub mod fuzzing;
mod proto;
use proto::{proto_file, read_up_to};

/// An input format, or `Auto` to detect it per file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Detect per file.
    #[default]
    Auto,
    /// Newline-delimited JSON, plain or gzip.
    Ndjson,
    /// Concatenated gzip CloudWatch Logs subscription payloads.
    CwlSubscription,
    /// One `aws logs filter-log-events` output document.
    FilterLogEvents,
    /// OTLP protobuf trace requests: one bare request, or length-prefixed requests.
    OtlpProto,
}

impl FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "auto" => Format::Auto,
            "ndjson" => Format::Ndjson,
            "cwl-subscription" => Format::CwlSubscription,
            "filter-log-events" => Format::FilterLogEvents,
            "otlp-proto" => Format::OtlpProto,
            other => {
                return Err(format!(
                    "unknown format {other:?}: use auto, ndjson, cwl-subscription, \
                     filter-log-events or otlp-proto"
                ));
            }
        })
    }
}

/// One input file to read.
#[derive(Debug, Clone)]
pub struct SourceSpec {
    /// Where it is.
    pub path: PathBuf,
    /// Its URI (`file:///abs/path`): its name in the lake and the quarantine.
    pub uri: SourceUri,
    /// Its format.
    pub format: Format,
    /// Its size in bytes, for progress.
    pub len: u64,
}

/// A source that cannot be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SourceError {
    /// A path given on the command line does not exist or cannot be inspected.
    #[error("cannot read source {}: {source}", path.display())]
    Io {
        /// The path.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A path is neither a file nor a directory.
    #[error("source {} is neither a file nor a directory", .0.display())]
    NotAFile(PathBuf),
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> SourceError + '_ {
    move |source| SourceError::Io { path: path.to_owned(), source }
}

/// The URI of a local file.
pub fn file_uri(path: &Path) -> Result<SourceUri, SourceError> {
    let abs = path.canonicalize().map_err(io_err(path))?;
    Ok(SourceUri::new(format!("file://{}", abs.display())))
}

/// The files that `paths` name: files as given, directories walked recursively in name order,
/// skipping hidden entries (names starting with `.`). A file named twice is read once.
///
/// # Errors
///
/// A path that does not exist or cannot be listed.
pub fn expand(paths: &[PathBuf], format: Format) -> Result<Vec<SourceSpec>, SourceError> {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for p in paths {
        walk(p, format, &mut out, &mut seen)?;
    }
    Ok(out)
}

fn walk(
    path: &Path,
    format: Format,
    out: &mut Vec<SourceSpec>,
    seen: &mut std::collections::HashSet<PathBuf>,
) -> Result<(), SourceError> {
    let meta = std::fs::metadata(path).map_err(io_err(path))?;
    let canon = path.canonicalize().map_err(io_err(path))?;
    if !seen.insert(canon.clone()) {
        return Ok(());
    }
    if meta.is_file() {
        out.push(SourceSpec {
            path: path.to_owned(),
            uri: SourceUri::new(format!("file://{}", canon.display())),
            format,
            len: meta.len(),
        });
        return Ok(());
    }
    if !meta.is_dir() {
        return Err(SourceError::NotAFile(path.to_owned()));
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(io_err(path))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(io_err(path))?;
    entries.sort();
    for e in entries {
        let hidden = e.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with('.'));
        if !hidden {
            walk(&e, format, out, seen)?;
        }
    }
    Ok(())
}

/// A piece of a source, decoded on a worker thread.
#[derive(Debug)]
pub(crate) enum Unit {
    /// Whole lines, each ending in `\n`; the first is line `first_line` (1-based).
    Lines { source: Arc<SourceUri>, first_line: u64, data: Vec<u8> },
    /// One inflated subscription payload and its compressed bytes.
    Payload { source: Arc<SourceUri>, pos: Position, compressed: Vec<u8>, body: Vec<u8> },
    /// Log events of a `filter-log-events` document; the first has index `first` (0-based).
    LogEvents { source: Arc<SourceUri>, first: u64, events: Vec<Box<RawValue>> },
    /// One protobuf `ExportTraceServiceRequest` of an OTLP protobuf file.
    OtlpProto { source: Arc<SourceUri>, pos: Position, body: Vec<u8> },
    /// A whole source that is one pretty-printed OTLP JSON request.
    OtlpJson { source: Arc<SourceUri>, body: Vec<u8> },
    /// A record already refused while splitting.
    Reject(Box<QuarantineEntry>),
}

impl Unit {
    /// Decodes the unit. `replay` is set inside a replayed quarantine entry.
    pub(crate) fn decode(self, decoder: &Decoder, replay: bool, out: &mut Decoded) {
        match self {
            Unit::Lines { source, first_line, data } => {
                // One outcome per line, almost always: no growth of the vector mid-unit.
                out.outcomes.reserve(memchr::memchr_iter(b'\n', &data).count() + 1);
                let mut start = 0;
                let ends = memchr::memchr_iter(b'\n', &data).chain(std::iter::once(data.len()));
                for (i, end) in ends.enumerate() {
                    let pos = Position { line: Some(first_line + i as u64), ..Default::default() };
                    decoder.line_in(&data[start..end], Ctx { source: &source, pos, replay }, out);
                    start = end + 1;
                }
            }
            Unit::Payload { source, pos, compressed, body } => {
                let raw = Raw { bytes: &compressed, format: RawFormat::CwlPayloadGzip };
                decoder.payload_json(&body, raw, Ctx { source: &source, pos, replay }, out);
            }
            Unit::LogEvents { source, first, events } => {
                for (i, ev) in events.iter().enumerate() {
                    let pos = Position { event: Some(first + i as u64 + 1), ..Default::default() };
                    decoder.log_event(
                        ev.get().as_bytes(),
                        Ctx { source: &source, pos, replay },
                        out,
                    );
                }
            }
            Unit::OtlpProto { source, pos, body } => {
                decoder.otlp_proto(&body, Ctx { source: &source, pos, replay }, out);
            }
            Unit::OtlpJson { source, body } => {
                let ctx = Ctx { source: &source, pos: Position::default(), replay };
                decoder.otlp_document(&body, ctx, out);
            }
            Unit::Reject(e) => out.outcomes.push(Outcome::Reject(e)),
        }
    }
}

/// Receives units as a source is split. An error stops the split.
pub(crate) type Emit<'e> = dyn FnMut(Unit) -> io::Result<()> + 'e;

const CHUNK_BYTES: usize = 1 << 20;
const CHUNK_LINES: u64 = 8192;
const EVENTS_PER_UNIT: usize = 4096;

/// Opens and splits one file.
pub(crate) fn read_file(
    spec: &SourceSpec,
    cfg: &DecodeConfig,
    progress: Option<&AtomicU64>,
    emit: &mut Emit<'_>,
) -> io::Result<()> {
    let file = File::open(&spec.path)?;
    let source = Arc::new(spec.uri.clone());
    let format = match spec.format {
        Format::Auto if spec.path.to_str().is_some_and(otlp_proto_name) => Format::OtlpProto,
        other => other,
    };
    split(Window::new(file, 256 << 10, progress), &source, format, cfg, emit)
}

/// Whether a file name (or URI) names an OTLP protobuf file: `.pb`, `.binpb` or `.otlp`,
/// optionally followed by `.gz`, in any case.
pub fn otlp_proto_name(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    let stem = lower.strip_suffix(".gz").unwrap_or(&lower);
    [".pb", ".binpb", ".otlp"].iter().any(|ext| stem.ends_with(ext))
}

/// Decodes a whole source held in memory (a replayed `source` quarantine entry).
///
/// Entries of OTLP protobuf files hold one bare request (the splitter never keeps a whole
/// length-prefixed file): they are recognised by their source's name, or, whatever the name,
/// by content that starts like a request (`0x0a`), is not UTF-8 text, and decodes as one.
pub(crate) fn decode_bytes(decoder: &Decoder, bytes: &[u8], ctx: Ctx<'_>, out: &mut Decoded) {
    if otlp_proto_name(ctx.source.as_str()) {
        return decoder.otlp_proto(bytes, ctx, out);
    }
    let looks_like_request = bytes.first() == Some(&0x0a) && std::str::from_utf8(bytes).is_err();
    if looks_like_request && crate::otlp::proto_in(bytes, ctx, decoder.config(), out).is_ok() {
        return;
    }
    let source = Arc::new(ctx.source.clone());
    let window = Window::new(Cursor::new(bytes), 64 << 10, None);
    let mut emit = |u: Unit| {
        u.decode(decoder, ctx.replay, out);
        Ok(())
    };
    // Reading from memory cannot fail.
    let _ = split(window, &source, Format::Auto, decoder.config(), &mut emit);
}

/// What is left to do with a whole source once it has been read.
enum WholeSource {
    /// Refuse it whole.
    Refuse { reason: Reason, detail: String },
    /// Read it again as one (pretty-printed) OTLP JSON trace request.
    OtlpJson,
}

fn split<R: Read + Seek>(
    mut w: Window<'_, R>,
    source: &Arc<SourceUri>,
    format: Format,
    cfg: &DecodeConfig,
    emit: &mut Emit<'_>,
) -> io::Result<()> {
    let head = w.ensure(2)?;
    if head.is_empty() {
        return Ok(());
    }
    let gz = is_gzip(head);
    let broken = std::cell::RefCell::new(None);
    let refused = match format {
        Format::OtlpProto if gz => {
            let r = BufReader::new(CutShort { inner: multi_member(w.chunked()), broken: &broken });
            proto_file(r, source, cfg, emit, false)?;
            None
        }
        Format::OtlpProto => {
            proto_file(&mut w, source, cfg, emit, true)?;
            None
        }
        Format::CwlSubscription => {
            subscription(&mut w, source, cfg, emit, 0)?;
            None
        }
        Format::Auto if gz => {
            let first = first_member(&mut w, source, cfg)?;
            match first {
                Some(unit) => {
                    emit(unit)?;
                    subscription(&mut w, source, cfg, emit, 1)?;
                    None
                }
                None => {
                    w.rewind()?;
                    let r = CutShort { inner: multi_member(w.chunked()), broken: &broken };
                    text(BufReader::new(r), source, format, cfg, emit)?
                }
            }
        }
        _ if gz => {
            let r = CutShort { inner: multi_member(w.chunked()), broken: &broken };
            text(BufReader::new(r), source, format, cfg, emit)?
        }
        _ => text(&mut w, source, format, cfg, emit)?,
    };
    // The records before a corrupt or truncated stretch are read; the source is then refused
    // whole (replaying it adds only what is missing: the records read now are duplicates).
    let refused = match broken.into_inner() {
        Some(e) => Some(WholeSource::Refuse {
            reason: Reason::InvalidGzip,
            detail: format!("the gzip stream is corrupt or ends early: {e}"),
        }),
        None => refused,
    };
    if let Some(WholeSource::OtlpJson) = refused {
        w.rewind()?;
        let cap = cfg.max_payload_bytes as u64 + 1;
        let body =
            if gz { read_up_to(multi_member(w.chunked()), cap)? } else { read_up_to(&mut w, cap)? };
        let unit = if body.len() > cfg.max_payload_bytes {
            let mut entry = QuarantineEntry::new(
                Reason::TooLarge,
                format!("OTLP JSON document is over {} bytes", cfg.max_payload_bytes),
                SourceUri::clone(source),
                Position::default(),
                RawFormat::Source,
                &body,
                cfg.max_quarantine_raw_bytes,
            );
            entry.raw_truncated = true;
            Unit::Reject(Box::new(entry))
        } else {
            Unit::OtlpJson { source: source.clone(), body }
        };
        emit(unit)?;
    } else if let Some(WholeSource::Refuse { reason, detail }) = refused {
        // Position information is lost: keep the whole source, replayable as such.
        w.rewind()?;
        let cap = cfg.max_quarantine_raw_bytes;
        let mut raw = Vec::new();
        (&mut w).take(cap as u64 + 1).read_to_end(&mut raw)?;
        let entry = QuarantineEntry::new(
            reason,
            detail,
            SourceUri::clone(source),
            Position::default(),
            RawFormat::Source,
            &raw,
            cap,
        );
        emit(Unit::Reject(Box::new(entry)))?;
    }
    Ok(())
}

/// A gzip stream's content that ends, instead of failing, where the stream is corrupt or cut
/// short (a file still being copied, a damaged object), recording why in `broken`: what was
/// read before is kept, and the caller refuses the rest. Errors of the file itself pass.
struct CutShort<'b, R> {
    inner: R,
    broken: &'b std::cell::RefCell<Option<String>>,
}

impl<R: Read> Read for CutShort<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.broken.borrow().is_some() {
            return Ok(0);
        }
        match self.inner.read(buf) {
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof
                        | io::ErrorKind::InvalidData
                        | io::ErrorKind::InvalidInput
                ) =>
            {
                *self.broken.borrow_mut() = Some(e.to_string());
                Ok(0)
            }
            other => other,
        }
    }
}

/// Looks at the first gzip member. `Some(unit)` if the file is a subscription-payload file:
/// the member is a payload, or a single line followed by another member (a payload file
/// whose first payload is bad), or a payload over the size limit, or corrupt (only that mode
/// can step over it). `None` for a gzip text file: the member has lines, or is one line alone.
fn first_member<R: Read + Seek>(
    w: &mut Window<'_, R>,
    source: &Arc<SourceUri>,
    cfg: &DecodeConfig,
) -> io::Result<Option<Unit>> {
    let offset = w.offset();
    w.start_capture(cfg.max_quarantine_raw_bytes);
    match probe_member(w.chunked(), cfg.max_payload_bytes) {
        Probe::Single(Inflated::Ok(body)) => {
            let (compressed, _) = w.take_capture();
            let is_payload = std::str::from_utf8(&body)
                .ok()
                .and_then(|t| parse_object(t, &cfg.tenant_field).ok())
                .is_some_and(|f| f.markers.message_type);
            let more_members = member_start(w.ensure(GZIP_HEADER_LEN)?);
            Ok((is_payload || more_members).then(|| Unit::Payload {
                source: source.clone(),
                pos: member_pos(1, offset),
                compressed,
                body,
            }))
        }
        Probe::Single(Inflated::Corrupt(e)) => {
            Ok(Some(corrupt_member(w, source, cfg, 1, offset, e)?))
        }
        Probe::Single(Inflated::TooLarge) => {
            let (raw, truncated) = w.take_capture();
            let mut entry = QuarantineEntry::new(
                Reason::TooLarge,
                format!("payload inflates to over {} bytes", cfg.max_payload_bytes),
                SourceUri::clone(source),
                member_pos(1, offset),
                RawFormat::CwlPayloadGzip,
                &raw,
                cfg.max_quarantine_raw_bytes,
            );
            entry.raw_truncated |= truncated;
            Ok(Some(Unit::Reject(Box::new(entry))))
        }
        Probe::Text => {
            w.take_capture();
            Ok(None)
        }
    }
}

fn member_pos(member: u64, offset: u64) -> Position {
    Position { member: Some(member), offset: Some(offset), ..Default::default() }
}

/// A corrupt member: keeps its bytes up to the next member header and refuses them as one
/// record, so that the members after it are still read. The decoder may have read past the
/// corrupt member's real end (a truncated member followed by another): a header among the
/// bytes it consumed is where reading resumes.
fn corrupt_member<R: Read + Seek>(
    w: &mut Window<'_, R>,
    source: &Arc<SourceUri>,
    cfg: &DecodeConfig,
    member: u64,
    offset: u64,
    error: String,
) -> io::Result<Unit> {
    // The decoder may have stopped inside the next member's header (its first bytes read as
    // the end of this member's stream): a header that starts among the bytes consumed counts,
    // read on past them. Only when the record holds every byte consumed.
    let mut consumed = w.captured().to_vec();
    let complete = w.offset() - offset == consumed.len() as u64;
    let within = consumed.len();
    if complete {
        let ahead = w.ensure(GZIP_HEADER_LEN - 1)?;
        let ahead = &ahead[..ahead.len().min(GZIP_HEADER_LEN - 1)];
        consumed.extend_from_slice(ahead);
    }
    let inside =
        consumed.get(1..).and_then(find_member_start).map(|k| k + 1).filter(|&k| k < within);
    let (raw, truncated) = match inside {
        Some(k) => {
            let (mut raw, _) = w.take_capture();
            raw.truncate(k);
            w.seek_to(offset + k as u64)?;
            (raw, false)
        }
        None => {
            if w.offset() == offset {
                // Make progress even if the decoder consumed nothing.
                w.consume(1);
            }
            w.skip_to_member()?;
            w.take_capture()
        }
    };
    let mut entry = QuarantineEntry::new(
        Reason::InvalidGzip,
        format!("gzip member is corrupt: {error}"),
        SourceUri::clone(source),
        member_pos(member, offset),
        RawFormat::CwlPayloadGzip,
        &raw,
        cfg.max_quarantine_raw_bytes,
    );
    entry.raw_truncated |= truncated;
    Ok(Unit::Reject(Box::new(entry)))
}

fn subscription<R: Read + Seek>(
    w: &mut Window<'_, R>,
    source: &Arc<SourceUri>,
    cfg: &DecodeConfig,
    emit: &mut Emit<'_>,
    mut member: u64,
) -> io::Result<()> {
    while !w.fill_buf()?.is_empty() {
        member += 1;
        let offset = w.offset();
        w.start_capture(cfg.max_quarantine_raw_bytes);
        let unit = match inflate_member(w.chunked(), cfg.max_payload_bytes) {
            Inflated::Ok(body) => {
                let (compressed, _) = w.take_capture();
                Unit::Payload {
                    source: source.clone(),
                    pos: member_pos(member, offset),
                    compressed,
                    body,
                }
            }
            Inflated::TooLarge => {
                let (raw, truncated) = w.take_capture();
                let mut entry = QuarantineEntry::new(
                    Reason::TooLarge,
                    format!("payload inflates to over {} bytes", cfg.max_payload_bytes),
                    SourceUri::clone(source),
                    member_pos(member, offset),
                    RawFormat::CwlPayloadGzip,
                    &raw,
                    cfg.max_quarantine_raw_bytes,
                );
                entry.raw_truncated |= truncated;
                Unit::Reject(Box::new(entry))
            }
            Inflated::Corrupt(e) => corrupt_member(w, source, cfg, member, offset, e)?,
        };
        emit(unit)?;
    }
    Ok(())
}

/// What one capped line read found.
enum Line {
    Eof,
    /// A line (without `\n`) is in the buffer.
    Ok,
    /// A line longer than the cap: its first bytes are in the buffer; the rest was skipped.
    TooLong(u64),
}

fn read_line_capped<R: BufRead>(r: &mut R, cap: usize, buf: &mut Vec<u8>) -> io::Result<Line> {
    buf.clear();
    let mut len: u64 = 0;
    let mut any = false;
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            break;
        }
        any = true;
        let (take, done) = match memchr::memchr(b'\n', avail) {
            Some(i) => (i, true),
            None => (avail.len(), false),
        };
        let room = (cap + 1).saturating_sub(buf.len());
        buf.extend_from_slice(&avail[..take.min(room)]);
        len += take as u64;
        r.consume(take + usize::from(done));
        if done {
            break;
        }
    }
    if !any {
        return Ok(Line::Eof);
    }
    if len > cap as u64 {
        buf.truncate(cap);
        return Ok(Line::TooLong(len));
    }
    Ok(Line::Ok)
}

/// The longest line read whole: the record limit, or longer for quarantine entries (which
/// the decoder tells apart and lets through; other lines over the limit it refuses).
fn line_cap(cfg: &DecodeConfig) -> usize {
    cfg.max_record_bytes.max(agentmeter_schemas::ENTRY_LINE_MAX)
}

/// A text source: NDJSON, or a multi-line `filter-log-events` document.
fn text<R: BufRead>(
    mut r: R,
    source: &Arc<SourceUri>,
    format: Format,
    cfg: &DecodeConfig,
    emit: &mut Emit<'_>,
) -> io::Result<Option<WholeSource>> {
    let mut chunk = Chunk::new(source.clone());
    let mut line = Vec::new();
    let mut line_no = 0;
    // Leading blank lines, then the first line decides.
    let first = loop {
        match read_line_capped(&mut r, line_cap(cfg), &mut line)? {
            Line::Eof => return Ok(None),
            Line::Ok if line.iter().all(u8::is_ascii_whitespace) => line_no += 1,
            other => break other,
        }
    };
    line_no += 1;
    let first_is_object = matches!(first, Line::Ok)
        && std::str::from_utf8(&line).is_ok_and(|t| parse_object(t, &cfg.tenant_field).is_ok());
    let document = match format {
        Format::FilterLogEvents => true,
        Format::Ndjson => false,
        _ => !first_is_object && opens_document(&line) && matches!(first, Line::Ok),
    };
    if document {
        let mut prefix = vec![b'\n'; line_no as usize - 1];
        prefix.extend_from_slice(&line);
        prefix.push(b'\n');
        return events_document(Cursor::new(prefix).chain(r), source, emit);
    }
    chunk.skip_to(line_no);
    let cap = line_cap(cfg);
    let mut state = first;
    loop {
        match state {
            Line::Eof => break,
            Line::Ok => {
                chunk.push(&line);
                if chunk.full() {
                    emit(chunk.take())?;
                }
            }
            Line::TooLong(len) => {
                if !chunk.is_empty() {
                    emit(chunk.take())?;
                }
                let mut entry = QuarantineEntry::new(
                    Reason::TooLarge,
                    format!("line of {len} bytes is over the {}-byte limit", cfg.max_record_bytes),
                    SourceUri::clone(source),
                    Position { line: Some(chunk.next_line), ..Default::default() },
                    RawFormat::NdjsonLine,
                    &line,
                    cfg.max_quarantine_raw_bytes,
                );
                entry.raw_truncated = true;
                emit(Unit::Reject(Box::new(entry)))?;
                chunk.skip_to(chunk.next_line + 1);
            }
        }
        // Whole lines already in the reader's buffer go straight into the chunk: copying each
        // into `line` first costs a pass over every byte of the file.
        loop {
            let avail = r.fill_buf()?;
            let mut used = 0;
            while let Some(i) = memchr::memchr(b'\n', &avail[used..]) {
                if i > cap {
                    break;
                }
                chunk.push(&avail[used..used + i]);
                used += i + 1;
                if chunk.full() {
                    emit(chunk.take())?;
                }
            }
            if used == 0 {
                break;
            }
            r.consume(used);
        }
        state = read_line_capped(&mut r, cap, &mut line)?;
    }
    if !chunk.is_empty() {
        emit(chunk.take())?;
    }
    Ok(None)
}

/// Whether a first line that is not a whole JSON object opens a multi-line document: `{` or
/// `[` alone (as the AWS CLI and `jq` print), or `{"events": [` and more. Any other broken
/// first line is one bad NDJSON record, not a reason to read the file as a document.
fn opens_document(line: &[u8]) -> bool {
    let t = line.trim_ascii();
    if t == b"{" || t == b"[" {
        return true;
    }
    t.strip_prefix(b"{").is_some_and(|rest| rest.trim_ascii_start().starts_with(b"\"events\""))
}

/// Lines gathered for one unit.
struct Chunk {
    source: Arc<SourceUri>,
    first_line: u64,
    next_line: u64,
    data: Vec<u8>,
}

impl Chunk {
    fn new(source: Arc<SourceUri>) -> Self {
        Self { source, first_line: 1, next_line: 1, data: Vec::new() }
    }

    fn is_empty(&self) -> bool {
        self.next_line == self.first_line
    }

    fn skip_to(&mut self, line: u64) {
        debug_assert!(self.is_empty());
        self.first_line = line;
        self.next_line = line;
    }

    fn push(&mut self, line: &[u8]) {
        self.data.extend_from_slice(line);
        self.data.push(b'\n');
        self.next_line += 1;
    }

    fn full(&self) -> bool {
        self.data.len() >= CHUNK_BYTES || self.next_line - self.first_line >= CHUNK_LINES
    }

    fn take(&mut self) -> Unit {
        // The next unit will be about as large: allocate it once, not by doubling, with room
        // for the line that takes it past `CHUNK_BYTES` (a unit ends on the line that fills
        // it; sized to this one alone, every other unit was copied into one twice as large).
        let size = self.data.len().min(CHUNK_BYTES);
        let next = Vec::with_capacity(size + size / 8);
        let data = std::mem::replace(&mut self.data, next);
        let unit = Unit::Lines { source: self.source.clone(), first_line: self.first_line, data };
        self.first_line = self.next_line;
        unit
    }
}

/// Streams the `events` array of one `filter-log-events` document.
fn events_document<R: Read>(
    r: R,
    source: &Arc<SourceUri>,
    emit: &mut Emit<'_>,
) -> io::Result<Option<WholeSource>> {
    let mut de = serde_json::Deserializer::from_reader(r);
    let mut state = DocState {
        source: source.clone(),
        emit,
        batch: Vec::new(),
        next: 0,
        saw_events: false,
        saw_resource_spans: false,
        io: None,
    };
    let parsed = (&mut state).deserialize(&mut de).and_then(|()| de.end());
    if let Some(e) = state.io.take() {
        return Err(e);
    }
    state.flush()?;
    Ok(match parsed {
        Err(e) => Some(WholeSource::Refuse {
            reason: Reason::InvalidJson,
            detail: format!("document: {e}"),
        }),
        Ok(()) if !state.saw_events && state.saw_resource_spans => Some(WholeSource::OtlpJson),
        Ok(()) if !state.saw_events => Some(WholeSource::Refuse {
            reason: Reason::UnrecognizedFormat,
            detail: "not NDJSON, a subscription payload file, or a filter-log-events document"
                .into(),
        }),
        Ok(()) => None,
    })
}

struct DocState<'s, 'e> {
    source: Arc<SourceUri>,
    emit: &'s mut Emit<'e>,
    batch: Vec<Box<RawValue>>,
    next: u64,
    saw_events: bool,
    /// `resourceSpans`: a pretty-printed OTLP JSON request, read again whole.
    saw_resource_spans: bool,
    io: Option<io::Error>,
}

impl DocState<'_, '_> {
    fn flush(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let events = std::mem::take(&mut self.batch);
        let first = self.next;
        self.next += events.len() as u64;
        (self.emit)(Unit::LogEvents { source: self.source.clone(), first, events })
    }
}

impl<'de> DeserializeSeed<'de> for &mut DocState<'_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_map(self)
    }
}

impl<'de> Visitor<'de> for &mut DocState<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a filter-log-events document")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            if key == "events" && !self.saw_events {
                self.saw_events = true;
                map.next_value_seed(EventsSeed(&mut *self))?;
            } else {
                self.saw_resource_spans |= key == "resourceSpans" || key == "resource_spans";
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(())
    }
}

struct EventsSeed<'a, 's, 'e>(&'a mut DocState<'s, 'e>);

impl<'de> DeserializeSeed<'de> for EventsSeed<'_, '_, '_> {
    type Value = ();

    fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_seq(self)
    }
}

impl<'de> Visitor<'de> for EventsSeed<'_, '_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("an array of log events")
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while let Some(ev) = seq.next_element::<Box<RawValue>>()? {
            self.0.batch.push(ev);
            if self.0.batch.len() >= EVENTS_PER_UNIT
                && let Err(e) = self.0.flush()
            {
                let msg = e.to_string();
                self.0.io = Some(e);
                return Err(de::Error::custom(msg));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
