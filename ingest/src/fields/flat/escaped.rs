//! A log event's message read where it lies in its subscription payload, every quote of it
//! escaped, where unescaping it first (a copy with a push at each of its thirty-odd escapes)
//! cost more than reading it (over a quarter of the decoders' instructions on a month's
//! Firehose files). Only what reads exactly as the unescaped message reads is taken: a logger
//! prefix of plain text and escaped tabs, one flat object whose keys and strings hold no
//! escape, then spaces and escaped line ends; in a Lambda JSON log record, its message the
//! same way one string deeper. Any other message is unescaped and read as before, so every
//! message taken gives the fields that [`crate::cloudwatch::message_body`] then
//! [`super::parse`] give of its unescaped text (the tests below, the decoder's one-pass
//! property test, and the `subscription` fuzz target).

use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

use super::{Dialect, Kind, MessageBody, Plain, Shape, Slot, parse_in, string_stop, with_shape};
use crate::cloudwatch::{Body, message_body};
use crate::fields::Key;

thread_local! {
    /// The keys of the messages read in place (`\"tier\":`), apart from those of the payload
    /// around them, and of the messages inside those (`\\\"tier\\\":`).
    static SHAPE_1: RefCell<Shape<Slot>> = RefCell::default();
    static SHAPE_2: RefCell<Shape<Slot>> = RefCell::default();
    /// A prefix with escaped tabs, unescaped.
    static PREFIX: RefCell<String> = const { RefCell::new(String::new()) };
}

/// The longest logger prefix read in place: Lambda's is about 70 bytes.
const PREFIX_BYTES: usize = 256;

/// JSON as it lies `L` strings deep: in a log event's message (1), or in the message of a
/// Lambda JSON log record inside that (2). A quote is then 2^L - 1 backslashes and `"`, a
/// tab or line end 2^(L-1) backslashes and its letter; whitespace is only spaces (an escaped
/// tab or line end inside the object is left to the unescaped reading), and any other escape
/// (of a quote or backslash inside a string, or of a character) ends the reading.
pub(super) struct Escaped<const L: u32>;

impl<const L: u32> Escaped<L> {
    /// The backslashes before the letter of an escape (`\t`, `\\t`).
    const SLASHES: usize = 1 << (L - 1);

    /// Whether the escape of `letter` at this depth starts at `i`.
    #[inline]
    fn escape(b: &[u8], i: usize, letter: u8) -> bool {
        b.get(i..=i + Self::SLASHES)
            .is_some_and(|e| e[Self::SLASHES] == letter && slashes(&e[..Self::SLASHES]))
    }

    /// The thread's shape of keys at this depth.
    fn shape() -> &'static LocalKey<RefCell<Shape<Slot>>> {
        if L == 1 { &SHAPE_1 } else { &SHAPE_2 }
    }
}

/// Whether `b` is all backslashes.
fn slashes(b: &[u8]) -> bool {
    b.iter().all(|&c| c == b'\\')
}

/// Whether a quote `len` bytes long (its backslashes, then `"`) starts at `i`.
#[inline]
fn quote_of(b: &[u8], i: usize, len: usize) -> bool {
    b.get(i..i + len).is_some_and(|q| q[len - 1] == b'"' && slashes(&q[..len - 1]))
}

impl<const L: u32> Dialect for Escaped<L> {
    const QUOTE: usize = 1 << L;
    const UNESCAPES: bool = false;
    #[inline]
    fn quote(b: &[u8], i: usize) -> bool {
        quote_of(b, i, Self::QUOTE)
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
            *i = Self::string_end(b, *i + Self::QUOTE)? + Self::QUOTE;
            return Some(Kind::Str);
        }
        match *b.get(*i)? {
            // The message's own end, or an escape that is no quote.
            b'"' | b'\\' => None,
            _ => Plain::value(b, i),
        }
    }
    fn in_place<'a>(
        text: &'a str,
        i: usize,
        tenant_field: &str,
    ) -> Option<(usize, MessageBody<'a>)> {
        // A Lambda JSON record's message; no deeper.
        if L == 1 { message::<2>(text, i, tenant_field) } else { None }
    }
}

/// The message of depth `L` whose opening quote (of depth `L - 1`) is at `i` in `text`, when
/// it reads in place: the index past its closing quote, and its object (its text as it lies,
/// its fields, and the object of its own message where that was read in place too).
pub(super) fn message<'a, const L: u32>(
    text: &'a str,
    i: usize,
    tenant_field: &str,
) -> Option<(usize, MessageBody<'a>)> {
    let b = text.as_bytes();
    // The quote that opens and closes the message, one string shallower.
    let outer = Escaped::<L>::QUOTE / 2;
    let brace = prefix::<L>(text, i + outer)?;
    let inner = Cell::new(None);
    let (fields, len) = with_shape(Escaped::<L>::shape(), tenant_field, |shape| {
        let inner = (L == 1).then_some(&inner);
        parse_in::<Escaped<L>>(&text[brace..], tenant_field, false, Some(shape), inner)
    })?;
    let inner = inner.into_inner().map(Box::new);
    // A record with an event of its own is read as it is, its message text to it.
    if inner.is_some() && fields.has(Key::Event) {
        return None;
    }
    let end = brace + len;
    // After the object, what `message_body` trims or a whole object may have after it.
    let mut j = end;
    loop {
        if b.get(j) == Some(&b' ') {
            j += 1;
        } else if Escaped::<L>::escape(b, j, b'n') || Escaped::<L>::escape(b, j, b'r') {
            j += Escaped::<L>::SLASHES + 1;
        } else if quote_of(b, j, outer) {
            let body = MessageBody { text: &text[brace..end], fields, inner };
            return Some((j + outer, body));
        } else {
            return None;
        }
    }
}

/// The index of the message's first `{` when the logger rules find its JSON there: the text
/// before it (from `start`) holds no quote, control character or escape but a tab's, and
/// `message_body` of it unescaped with the brace gives the brace alone. Nothing after the
/// brace can change that: what is taken after it holds no tab, so a Lambda prefix's fields
/// (tab-separated) all lie before it; and a prefix with a tab is at least 11 bytes, so the
/// date a prefix may start with (11 bytes) lies before it too.
fn prefix<const L: u32>(text: &str, start: usize) -> Option<usize> {
    let b = text.as_bytes();
    let limit = b.len().min(start + PREFIX_BYTES);
    let json_at_brace = |s: &str| matches!(message_body(s), Body::Json(m) if m.len() == 1);
    PREFIX.with_borrow_mut(|unescaped| {
        // The prefix unescaped, once a tab is met.
        unescaped.clear();
        let mut j = start;
        let brace = loop {
            let at = j + memchr::memchr3(b'{', b'"', b'\\', b.get(j..limit)?)?;
            if b[at] == b'{' {
                break at;
            }
            if !Escaped::<L>::escape(b, at, b't') {
                return None;
            }
            unescaped.push_str(&text[j..at]);
            unescaped.push('\t');
            j = at + Escaped::<L>::SLASHES + 1;
        };
        if b[start..brace].iter().fold(false, |control, &c| control | (c < 0x20)) {
            return None;
        }
        if unescaped.is_empty() {
            return json_at_brace(&text[start..=brace]).then_some(brace);
        }
        unescaped.push_str(&text[j..=brace]);
        // At least 11 bytes before the brace.
        (unescaped.len() > 11 && json_at_brace(unescaped)).then_some(brace)
    })
}

#[cfg(test)]
mod tests;
