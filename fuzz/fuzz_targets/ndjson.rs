//! NDJSON lines and files: each line through `Decoder::line` (and its fields read both ways:
//! flat and by serde_json), and the whole input split as a file (NDJSON, detected,
//! `filter-log-events`) through windows of two sizes.
#![no_main]

use agentmeter_ingest::source::Format;
use agentmeter_ingest::source::fuzzing::{check_flat_fields, decode_source};
use agentmeter_ingest::{Decoded, Decoder};
use agentmeter_schemas::{Position, SourceUri};
use libfuzzer_sys::fuzz_target;

mod common;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let decoder = Decoder::default();
    let source = SourceUri::new("file:///fuzz/input");
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        if let Ok(text) = std::str::from_utf8(line) {
            check_flat_fields(text);
        }
        let mut out = Decoded::default();
        let pos = Position { line: Some(i as u64 + 1), ..Position::default() };
        decoder.line(line, &source, pos, &mut out);
        common::check_line(line, &out);
        lines.extend(out.outcomes);
    }
    let format = [Format::Ndjson, Format::Auto, Format::FilterLogEvents][usize::from(mode % 3)];
    let small = decode_source(&decoder, bytes, format, 16 + usize::from(mode / 3))
        .expect("splitting bytes in memory cannot fail");
    let large = decode_source(&decoder, bytes, format, 1 << 16).expect("in memory");
    common::check_rejects(&small);
    // The read buffer's size is no part of the outcome, a corrupt gzip stream's included.
    assert_eq!(small.outcomes, large.outcomes);
    assert_eq!(small.lineage, large.lineage);
    // A plain NDJSON file is its lines, one by one.
    if format == Format::Ndjson && !bytes.starts_with(&[0x1f, 0x8b]) {
        assert_eq!(small.outcomes, lines);
    }
});
