//! OTLP protobuf trace files: one bare request, or requests each behind a 4-byte big-endian
//! length (the OpenTelemetry Collector's file exporter with `format: proto`).

use std::io::{self, BufRead, Read};
use std::sync::Arc;

use agentmeter_schemas::{Position, QuarantineEntry, RawFormat, Reason, SourceUri};

use super::{Emit, Unit};
use crate::config::DecodeConfig;

/// The tag byte of field 1 (`resource_spans`), length-delimited: how every non-empty
/// encoded request starts.
const REQUEST_TAG: u8 = 0x0a;

/// Splits a protobuf trace file into one unit per request. `plain`: offsets are file offsets
/// (not for decompressed content).
pub(super) fn proto_file<R: BufRead>(
    mut r: R,
    source: &Arc<SourceUri>,
    cfg: &DecodeConfig,
    emit: &mut Emit<'_>,
    plain: bool,
) -> io::Result<()> {
    match r.fill_buf()?.first() {
        None => Ok(()),
        Some(&REQUEST_TAG) => bare(r, source, cfg, emit),
        Some(_) => delimited(r, source, cfg, emit, plain),
    }
}

fn refused(
    reason: Reason,
    detail: String,
    source: &Arc<SourceUri>,
    pos: Position,
    raw: &[u8],
    truncated: bool,
    cfg: &DecodeConfig,
) -> Unit {
    let mut entry = QuarantineEntry::new(
        reason,
        detail,
        SourceUri::clone(source),
        pos,
        RawFormat::Source,
        raw,
        cfg.max_quarantine_raw_bytes,
    );
    entry.raw_truncated |= truncated;
    Unit::Reject(Box::new(entry))
}

/// Reads at most `n` bytes.
pub(super) fn read_up_to<R: Read>(mut r: R, n: u64) -> io::Result<Vec<u8>> {
    let mut buf = Vec::new();
    (&mut r).take(n).read_to_end(&mut buf)?;
    Ok(buf)
}

/// The whole file is one request.
fn bare<R: BufRead>(
    mut r: R,
    source: &Arc<SourceUri>,
    cfg: &DecodeConfig,
    emit: &mut Emit<'_>,
) -> io::Result<()> {
    let cap = cfg.max_payload_bytes;
    let body = read_up_to(&mut r, cap as u64 + 1)?;
    if body.len() <= cap {
        return emit(Unit::OtlpProto { source: source.clone(), pos: Position::default(), body });
    }
    let rest = io::copy(&mut r, &mut io::sink())?;
    let detail =
        format!("request of {} bytes is over the {cap}-byte limit", body.len() as u64 + rest);
    emit(refused(Reason::TooLarge, detail, source, Position::default(), &body, true, cfg))
}

/// Length-prefixed requests; `member` in a position is the 1-based request index.
fn delimited<R: BufRead>(
    mut r: R,
    source: &Arc<SourceUri>,
    cfg: &DecodeConfig,
    emit: &mut Emit<'_>,
    plain: bool,
) -> io::Result<()> {
    let cap = cfg.max_payload_bytes as u64;
    let mut offset = 0u64;
    for index in 1.. {
        let prefix = read_up_to(&mut r, 4)?;
        if prefix.is_empty() {
            break;
        }
        let pos =
            Position { member: Some(index), offset: plain.then_some(offset), ..Default::default() };
        let Ok(prefix) = <[u8; 4]>::try_from(prefix.as_slice()) else {
            let detail = format!("request {index}: the file ends inside its 4-byte length prefix");
            return emit(refused(Reason::InvalidPayload, detail, source, pos, &prefix, true, cfg));
        };
        let len = u64::from(u32::from_be_bytes(prefix));
        if len > cap {
            let kept = read_up_to(&mut r, len.min(cfg.max_quarantine_raw_bytes as u64))?;
            let skipped = io::copy(&mut (&mut r).take(len - kept.len() as u64), &mut io::sink())?;
            let detail = format!("request {index} of {len} bytes is over the {cap}-byte limit");
            emit(refused(Reason::TooLarge, detail, source, pos, &kept, true, cfg))?;
            if kept.len() as u64 + skipped < len {
                break;
            }
        } else {
            let body = read_up_to(&mut r, len)?;
            if (body.len() as u64) < len {
                let detail = format!(
                    "request {index}: its length prefix says {len} bytes, the file ends after {}",
                    body.len()
                );
                return emit(refused(
                    Reason::InvalidPayload,
                    detail,
                    source,
                    pos,
                    &body,
                    true,
                    cfg,
                ));
            }
            emit(Unit::OtlpProto { source: source.clone(), pos, body })?;
        }
        offset += 4 + len;
    }
    Ok(())
}
