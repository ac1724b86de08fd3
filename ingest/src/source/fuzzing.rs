//! The entry point of the fuzz targets (`fuzz/` at the root of the repository): splitting a
//! whole source is crate-private, and the targets must reach it over bytes in memory. Not an
//! API: hidden from the documentation and free to change.

use std::io::{self, Cursor};
use std::sync::Arc;

use agentmeter_schemas::SourceUri;

use super::{Format, Unit, split};
use crate::decode::{Decoded, Decoder};
use crate::window::Window;

/// Splits `bytes` as a file in `format` is split, reading through a window of `window` bytes
/// (small windows put records across refills), and decodes every unit in order.
///
/// # Errors
///
/// Whatever the split returns; reading from memory gives none, so an error is a finding.
pub fn decode_source(
    decoder: &Decoder,
    bytes: &[u8],
    format: Format,
    window: usize,
) -> io::Result<Decoded> {
    let source = Arc::new(SourceUri::new("file:///fuzz/input"));
    let mut out = Decoded::default();
    let mut emit = |u: Unit| {
        u.decode(decoder, false, &mut out);
        Ok(())
    };
    split(
        Window::new(Cursor::new(bytes), window, None),
        &source,
        format,
        decoder.config(),
        &mut emit,
    )?;
    Ok(out)
}

/// Panics unless the flat reading of `text` (the common record's, without serde), wherever it
/// gives fields, gives serde_json's, both as a whole line and as a message's prefix.
pub fn check_flat_fields(text: &str) {
    for whole in [true, false] {
        assert!(crate::fields::flat_agrees(text, "clinic_id", whole), "{text:?} (whole: {whole})");
    }
}

/// Panics unless the flat reading of an OTLP JSON request (without serde), wherever it gives a
/// request, gives serde_json's.
pub fn check_flat_request(text: &str) {
    assert!(crate::otlp::flat_agrees(text), "{text:?}");
}

/// Panics unless a subscription payload's text `body` decodes alike in one pass (its log
/// events, and their messages where they can be, read where they lie) and in two (its depth
/// checked, then serde_json, each message unescaped before it is read): the one-pass reading
/// must never give an outcome the general one would not.
pub fn check_payload_passes(decoder: &Decoder, body: &[u8]) {
    use agentmeter_schemas::{Position, RawFormat, SkipKind};

    use crate::decode::{Ctx, Outcome, Raw};
    let source = SourceUri::new("kinesis://fuzz/0");
    let ctx = Ctx::new(&source, Position::default());
    let raw = Raw { bytes: b"gz", format: RawFormat::CwlPayloadGzip };
    let mut one = Decoded::default();
    decoder.payload_json(body, raw, ctx, &mut one);
    // A batch that holds something already is read in two passes.
    let mut two = Decoded::default();
    two.outcomes.push(Outcome::Skip(SkipKind::PlatformLine));
    decoder.payload_json(body, raw, ctx, &mut two);
    two.outcomes.remove(0);
    assert_eq!(one.outcomes, two.outcomes, "{:?}", String::from_utf8_lossy(body));
}
