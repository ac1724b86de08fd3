//! A log event's message read where it lies in its subscription payload, every quote of it
//! escaped, where unescaping it first (a copy with a push at each of its thirty-odd escapes)
//! cost more than reading it (a seventh of a payload's decoding). Only what reads exactly as
//! the unescaped message reads is taken: a logger prefix of plain text and escaped tabs, one
//! flat object whose keys and strings hold no escape, then spaces and escaped line ends. Any
//! other message is unescaped and read as before, so every message taken gives the fields
//! that [`crate::cloudwatch::message_body`] then [`super::parse`] give of its unescaped text
//! (the tests below, and the decoder's one-pass property test).

use std::cell::RefCell;

use super::{Dialect, Kind, MessageBody, Plain, Shape, Slot, parse_in, string_stop, with_shape};
use crate::cloudwatch::{Body, message_body};

thread_local! {
    /// The keys of the messages read in place (`\"tier\":`), apart from those of the payload
    /// being read around them.
    static SHAPE: RefCell<Shape<Slot>> = RefCell::default();
    /// A prefix with escaped tabs, unescaped.
    static PREFIX: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The longest logger prefix read in place: Lambda's is about 70 bytes.
const PREFIX_BYTES: usize = 256;

/// JSON as it lies inside a JSON string: a quote is `\"`, whitespace only spaces (an escaped
/// tab or line end inside the object is left to the unescaped reading), and any other escape
/// (of a quote or backslash inside a string, or a character) ends the reading.
pub(super) struct Escaped;

impl Dialect for Escaped {
    const QUOTE: usize = 2;
    const UNESCAPES: bool = false;
    #[inline]
    fn quote(b: &[u8], i: usize) -> bool {
        b.get(i..i + 2) == Some(b"\\\"")
    }
    #[inline]
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        let at = string_stop(b, i);
        Self::quote(b, at).then_some(at)
    }
    #[inline]
    fn skip_ws(b: &[u8], mut i: usize) -> usize {
        while b.get(i) == Some(&b' ') {
            i += 1;
        }
        i
    }
    #[inline]
    fn value(b: &[u8], i: &mut usize) -> Option<Kind> {
        if Self::quote(b, *i) {
            *i = Self::string_end(b, *i + 2)? + 2;
            return Some(Kind::Str);
        }
        match *b.get(*i)? {
            // The message's own end, or an escape that is no quote.
            b'"' | b'\\' => None,
            _ => Plain::value(b, i),
        }
    }
}

/// The message whose opening quote is at `i` in `text`, when it reads in place: the index
/// past its closing quote, and its object (its text as it lies, and its fields).
pub(super) fn message<'a>(
    text: &'a str,
    i: usize,
    tenant_field: &str,
) -> Option<(usize, MessageBody<'a>)> {
    let b = text.as_bytes();
    let start = i + 1;
    let brace = prefix(text, start)?;
    let (fields, len) = with_shape(&SHAPE, tenant_field, |shape| {
        parse_in::<Escaped>(&text[brace..], tenant_field, false, Some(shape), None)
    })?;
    let end = brace + len;
    // After the object, what `message_body` trims or a whole object may have after it.
    let mut j = end;
    loop {
        match *b.get(j)? {
            b' ' => j += 1,
            b'\\' if matches!(b.get(j + 1), Some(b'n' | b'r')) => j += 2,
            b'"' => return Some((j + 1, MessageBody { text: &text[brace..end], fields })),
            _ => return None,
        }
    }
}

/// The index of the message's first `{` when the logger rules find its JSON there: the text
/// before it (from `start`) holds no quote, control character or escape but `\t`, and
/// `message_body` of it unescaped with the brace gives the brace alone. Nothing after the
/// brace can change that: what is taken after it holds no tab, so a Lambda prefix's fields
/// (tab-separated) all lie before it; and a prefix with a tab is at least 11 bytes, so the
/// date a prefix may start with (11 bytes) lies before it too.
fn prefix(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let limit = b.len().min(start + PREFIX_BYTES);
    let (mut j, mut tabs) = (start, false);
    let brace = loop {
        let at = j + memchr::memchr3(b'{', b'"', b'\\', b.get(j..limit)?)?;
        match (b[at], b.get(at + 1)) {
            (b'{', _) => break at,
            (b'\\', Some(b't')) => (tabs, j) = (true, at + 2),
            _ => return None,
        }
    };
    let before = &text[start..brace];
    if before.bytes().fold(false, |control, c| control | (c < 0x20)) {
        return None;
    }
    let json_at_brace = |s: &str| matches!(message_body(s), Body::Json(m) if m.len() == 1);
    if !tabs {
        return json_at_brace(&text[start..=brace]).then_some(brace);
    }
    PREFIX.with_borrow_mut(|s| {
        s.clear();
        for (n, piece) in before.split("\\t").enumerate() {
            if n > 0 {
                s.push('\t');
            }
            s.push_str(piece);
        }
        let long = s.len() >= 11;
        s.push('{');
        (long && json_at_brace(s)).then_some(brace)
    })
}

#[cfg(test)]
mod tests;
