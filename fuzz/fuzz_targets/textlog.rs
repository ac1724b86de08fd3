//! Plain log files: lines with logging prefixes (Python's `asctime`, `LEVEL:logger:`, the
//! Lambda formats), read in a time zone the first byte picks, with or without a default time.
#![no_main]

use agentmeter_ingest::source::Format;
use agentmeter_ingest::source::fuzzing::decode_source;
use agentmeter_ingest::{DecodeConfig, Decoded, Decoder, LogTimezone};
use agentmeter_schemas::{Position, SourceUri};
use libfuzzer_sys::fuzz_target;

mod common;

const ZONES: [&str; 4] = ["UTC", "+05:30", "Europe/Berlin", "America/New_York"];

fuzz_target!(|data: &[u8]| {
    let Some((&mode, bytes)) = data.split_first() else { return };
    let zone: LogTimezone = ZONES[usize::from(mode % 4)].parse().expect("a known zone");
    let default_time = (mode & 4 != 0).then_some(1_790_841_600_000);
    let decoder = Decoder::new(DecodeConfig::default().with_log_times(zone, default_time));
    let source = SourceUri::new("file:///fuzz/input");
    let mut lines = Vec::new();
    for (i, line) in bytes.split(|b| *b == b'\n').enumerate() {
        let pos = Position { line: Some(i as u64 + 1), ..Position::default() };
        let mut a = Decoded::default();
        decoder.line(line, &source, pos, &mut a);
        common::check_line(line, &a);
        let mut b = Decoded::default();
        decoder.line(line, &source, pos, &mut b);
        assert_eq!(a.outcomes, b.outcomes);
        lines.extend(a.outcomes);
    }
    if !bytes.starts_with(&[0x1f, 0x8b]) {
        let file = decode_source(&decoder, bytes, Format::Ndjson, 64).expect("in memory");
        assert_eq!(file.outcomes, lines);
    }
});
