//! Checks shared by the decoder targets: what must hold of any decoded input.

#![allow(dead_code)]

use agentmeter_ingest::{DecodeConfig, Decoded, Outcome, otlp};
use agentmeter_schemas::{RawFormat, SourceUri};

/// Every refusal names a reason with a detail, and keeps the record's bytes, a reference to
/// them, or says why it does not (withheld trace requests, truncated oversized records).
pub fn check_rejects(d: &Decoded) {
    for o in &d.outcomes {
        if let Outcome::Reject(q) = o {
            assert!(!q.detail.is_empty(), "a refusal without a detail: {q:?}");
            let kept = q.raw_bytes().is_ok() || q.raw_ref.is_some();
            assert!(kept || q.raw_withheld, "a refusal that keeps nothing: {q:?}");
            assert!(!(q.raw_withheld && kept), "withheld bytes kept: {q:?}");
        }
    }
}

/// Keys that turn one line into several records (or none): a subscription payload, a
/// `filter-log-events` document, a trace request, a quarantine entry. A line naming none of
/// them (not even through an escape) is exactly one record, or none when blank.
const MULTI: [&[u8]; 6] = [
    b"messageType",
    b"events",
    b"resourceSpans",
    b"resource_spans",
    b"agentmeter_quarantine",
    b"\\u",
];

/// How many outcomes a line must give, when that can be told from its bytes.
pub fn expected_outcomes(line: &[u8]) -> Option<usize> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Some(0);
    }
    let multi = MULTI.iter().any(|k| line.windows(k.len()).any(|w| w == *k));
    (!multi).then_some(1)
}

/// The outcomes of one line: as many as its bytes say, and refusals that keep them exactly.
pub fn check_line(line: &[u8], d: &Decoded) {
    check_rejects(d);
    if let Some(n) = expected_outcomes(line) {
        assert_eq!(
            d.outcomes.len(),
            n,
            "line {:?}: {:?}",
            String::from_utf8_lossy(line),
            d.outcomes
        );
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        for o in &d.outcomes {
            if let Outcome::Reject(q) = o {
                if !q.raw_truncated && q.raw_ref.is_none() {
                    assert_eq!(q.raw_bytes().ok().as_deref(), Some(line), "{q:?}");
                }
            }
        }
    }
}

/// A decoded trace request holds spans and refusals only, and each refused span's kept bytes
/// are an OTLP JSON request of that one span.
pub fn check_span_outcomes(d: &Decoded, source: &SourceUri, cfg: &DecodeConfig) {
    for o in &d.outcomes {
        match o {
            Outcome::Span(_) => {}
            Outcome::Reject(q) => {
                assert_eq!(q.format, RawFormat::OtlpJson);
                let raw = q.raw_bytes().expect("a refused span keeps its request");
                let again = otlp::decode_json(&raw, source, cfg).expect("a request");
                assert_eq!(again.outcomes.len(), 1);
            }
            other => panic!("not a span outcome: {other:?}"),
        }
    }
}
