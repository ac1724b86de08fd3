//! The common record read without serde: one object whose values are strings without a
//! control character (and without an escape, but in a log event's `message`), numbers,
//! `true`, `false` or `null`. serde_json's visitor spends most of a usage line's parse on its
//! own machinery (the map access, the raw values, the scalar visitor); this reads the same
//! grammar in one loop and gives the same fields. Whatever it does not take (an escape
//! elsewhere, a nested value, anything malformed) it leaves whole to serde_json, which then
//! reads the text as before and words any error, so the fields of every text it takes are
//! exactly serde_json's (the property tests below, and the `ndjson` fuzz target). The same
//! loop reads a log event's message where it lies in its payload, still escaped, in a dialect
//! whose quote is `\"` (module `escaped`).

use std::borrow::Cow;
use std::cell::{Cell, RefCell};
use std::thread::LocalKey;

use super::{Fields, Key, MessageBody, RawSlot, Scalar, Slot, slot};

mod escaped;

/// The fields of `text` when it is a flat object this module reads, as
/// [`super::parse_serde`] would give them; `None` for any other text.
pub(super) fn parse<'a>(text: &'a str, tenant_field: &str, whole: bool) -> Option<Fields<'a>> {
    with_shape(&SHAPE, tenant_field, |shape| {
        parse_in::<Plain>(text, tenant_field, whole, Some(shape), None)
    })
    .map(|(fields, _)| fields)
}

/// Runs `f` with this thread's [`Shape`] `key`, forgotten first if learnt under another
/// tenant field.
fn with_shape<R>(
    key: &'static LocalKey<RefCell<Shape<Slot>>>,
    tenant_field: &str,
    f: impl FnOnce(&mut Shape<Slot>) -> R,
) -> R {
    key.with_borrow_mut(|shape| {
        if *shape.tenant_field != *tenant_field {
            // A key's slot depends on the tenant field: what was learnt under another is not.
            *shape = Shape { tenant_field: tenant_field.into(), ..Shape::default() };
        }
        f(shape)
    })
}

/// [`parse`] in dialect `D`, learning and recognising keys in `shape`, or not at all; with
/// the index just past the object's closing brace. With `body`, a `message` that can be is
/// read where it lies ([`escaped::message`]) into it, and is not among the fields.
fn parse_in<'a, D: Dialect>(
    text: &'a str,
    tenant_field: &str,
    whole: bool,
    shape: Option<&mut Shape<Slot>>,
    body: Option<&Cell<Option<MessageBody<'a>>>>,
) -> Option<(Fields<'a>, usize)> {
    let mut fields = Fields::with_capacity();
    let mut in_place = false;
    let slot_of = |name: &str| slot(name, tenant_field, false);
    // A message is read as it is found: in place where it can be, else unescaped (where this
    // dialect can), else as any other value.
    let read = |slot: &Slot, text: &'a str, i: usize| {
        if !matches!(slot, Slot::Raw(RawSlot::Message)) {
            return None;
        }
        if let Some(body) = body
            && let Some((end, b)) = D::in_place(text, i, tenant_field)
        {
            body.set(Some(b));
            return Some((end, Value::InPlace));
        }
        if !D::UNESCAPES {
            return None;
        }
        // One that cannot be unescaped is read as any value: an escaped string the member
        // below refuses, or no string at all.
        let (end, string) = super::message_string(text, i)?;
        Some((end, Value::Read(string)))
    };
    let end = members_in::<D, _>(text, whole, shape, slot_of, read, |name, slot, value| {
        let (raw, kind) = match value {
            // A message beside another is serde_json's to weigh against it.
            Value::Read(_) | Value::InPlace if in_place => return None,
            Value::InPlace if fields.has(Key::Message) => return None,
            Value::Read(text) => {
                fields.push(Key::Message, Cow::Borrowed(name), Scalar::Str(text));
                return Some(());
            }
            Value::InPlace => {
                in_place = true;
                return Some(());
            }
            Value::Raw(raw, kind) => (raw, kind),
        };
        match (slot, kind) {
            (Slot::Raw(RawSlot::Message), _) if in_place => return None,
            // Any value with an escape is serde_json's to check and to read.
            (_, Kind::Escaped) => return None,
            (Slot::Value(k), _) => fields.push(k, Cow::Borrowed(name), scalar::<D>(raw, kind)?),
            // A string without an escape needs no second look.
            (Slot::Raw(r), Kind::Str) => fields.push_raw_str(r, Cow::Borrowed(name), D::body(raw)),
            // Any other raw value (a log event's message that is no string, read by
            // `message_scalar` as serde_json reads it) is spelt the same in every dialect.
            (Slot::Raw(r), _) => fields.push_raw(r, Cow::Borrowed(name), raw)?,
            (Slot::Skip, _) => {}
            (Slot::Marker(m), _) => fields.markers.set(m),
        }
        Some(())
    })?;
    Some((fields, end))
}

/// How the text a reader walks spells JSON: as it is ([`Plain`]), or as it lies inside a JSON
/// string, every quote escaped ([`escaped::Escaped`]: a log event's message, read in place).
trait Dialect {
    /// The bytes of a quote: `"`, or `\"`.
    const QUOTE: usize;
    /// Whether a message's string is read with its escapes where it is found: in an
    /// escaped text, an escape there is one the reader in place gives up on.
    const UNESCAPES: bool;
    /// Whether a quote starts at `i`.
    fn quote(b: &[u8], i: usize) -> bool;
    /// The index of the quote that closes a string whose text starts at `i`; `None` at an
    /// escape, a control character or the end of the text.
    fn string_end(b: &[u8], i: usize) -> Option<usize>;
    /// The index of the first byte at or after `i` that is not whitespace.
    fn skip_ws(b: &[u8], i: usize) -> usize;
    /// [`value`] in this dialect.
    fn value(b: &[u8], i: &mut usize) -> Option<Kind>;
    /// The object of the message whose opening quote is at `i`, read in place one string
    /// deeper ([`escaped::message`]): the index past the message, and its object.
    fn in_place<'a>(
        text: &'a str,
        i: usize,
        tenant_field: &str,
    ) -> Option<(usize, MessageBody<'a>)>;
    /// The text between the quotes of `raw`, a string [`Dialect::value`] read as [`Kind::Str`].
    fn body(raw: &str) -> &str {
        &raw[Self::QUOTE..raw.len() - Self::QUOTE]
    }
}

/// JSON as it is.
struct Plain;

impl Dialect for Plain {
    const QUOTE: usize = 1;
    const UNESCAPES: bool = true;
    #[inline]
    fn quote(b: &[u8], i: usize) -> bool {
        b.get(i) == Some(&b'"')
    }
    #[inline]
    fn string_end(b: &[u8], i: usize) -> Option<usize> {
        string_end(b, i)
    }
    #[inline]
    fn skip_ws(b: &[u8], i: usize) -> usize {
        skip_ws(b, i)
    }
    #[inline]
    fn value(b: &[u8], i: &mut usize) -> Option<Kind> {
        value(b, i)
    }
    fn in_place<'a>(
        text: &'a str,
        i: usize,
        tenant_field: &str,
    ) -> Option<(usize, MessageBody<'a>)> {
        escaped::message::<1>(text, i, tenant_field)
    }
}

thread_local! {
    /// The keys this thread's records had, and which followed which: the lines of a file,
    /// and the log events of a payload, nearly all repeat a few shapes.
    static SHAPE: std::cell::RefCell<Shape<Slot>> = std::cell::RefCell::default();
}

/// Keys remembered, and the longest key text remembered.
const SHAPE_KEYS: usize = 64;
const SHAPE_KEY_BYTES: usize = 64;

/// No key: the start of an object, or a key not followed yet.
const NONE: u32 = u32::MAX;

/// The keys of the objects read before, each as its text from the opening quote to the colon
/// (`"tier":`) with what was made of its name (`T`), and the last two keys that followed each
/// (optional fields come and go between them). A key met again after the key it followed
/// before is recognised by one comparison, where reading it meant finding its closing quote,
/// the colon, and looking the name up (about a tenth of a usage line's reading).
struct Shape<T> {
    /// What the tags were made under ([`parse`]: the tenant field).
    tenant_field: Box<str>,
    keys: Vec<Known<T>>,
    /// The last two first keys.
    first: [u32; 2],
}

struct Known<T> {
    /// The key's first 16 bytes (to the colon), little-endian, and which of them there are.
    head: u128,
    mask: u128,
    text: Box<[u8]>,
    tag: T,
    /// The last two keys that followed it.
    next: [u32; 2],
}

impl<T> Known<T> {
    /// Whether `at` starts with the key's text.
    // Always: in each dialect's reader, where it is most of the work of a key met before.
    #[inline(always)]
    fn starts(&self, at: &[u8]) -> bool {
        match at.first_chunk::<16>() {
            Some(w) => {
                u128::from_le_bytes(*w) & self.mask == self.head
                    && (self.text.len() <= 16 || at[16..].starts_with(&self.text[16..]))
            }
            None => at.starts_with(&self.text),
        }
    }
}

impl<T> Default for Shape<T> {
    fn default() -> Self {
        Self { tenant_field: Box::default(), keys: Vec::new(), first: [NONE; 2] }
    }
}

impl<T: Copy> Shape<T> {
    /// The key after `prev` ([`NONE`]: the first) that `at` starts with: its number, its
    /// text's length and its tag.
    #[inline(always)]
    fn recognise(&self, prev: u32, at: &[u8]) -> Option<(u32, usize, T)> {
        let next = match self.keys.get(prev as usize) {
            Some(k) => &k.next,
            None => &self.first,
        };
        next.iter().find_map(|&n| {
            let k = self.keys.get(n as usize).filter(|k| k.starts(at))?;
            Some((n, k.text.len(), k.tag))
        })
    }

    /// Remembers `text` (a key from its opening quote to its colon) as following `prev`;
    /// its number, or [`NONE`] when it is not remembered (too long). Past [`SHAPE_KEYS`]
    /// keys it starts afresh, so that keys met once (a file's odd lines) cannot keep the
    /// keys of the lines after them from being remembered.
    fn learn(&mut self, mut prev: u32, text: &[u8], tag: T) -> u32 {
        let n = match self.keys.iter().position(|k| *k.text == *text) {
            Some(n) => n as u32,
            None if text.len() <= SHAPE_KEY_BYTES => {
                if self.keys.len() == SHAPE_KEYS {
                    self.keys.clear();
                    self.first = [NONE; 2];
                    prev = NONE;
                }
                let mut word = [0u8; 16];
                let len = text.len().min(16);
                word[..len].copy_from_slice(&text[..len]);
                let mask = if len == 16 { u128::MAX } else { (1u128 << (8 * len)) - 1 };
                self.keys.push(Known {
                    head: u128::from_le_bytes(word),
                    mask,
                    text: text.into(),
                    tag,
                    next: [NONE; 2],
                });
                (self.keys.len() - 1) as u32
            }
            None => return NONE,
        };
        let next = match self.keys.get_mut(prev as usize) {
            Some(k) => &mut k.next,
            None => &mut self.first,
        };
        if next[0] != n {
            next[1] = next[0];
            next[0] = n;
        }
        n
    }
}

/// Hands `member` each key and value (its text, and its kind) of `text` when it is one flat
/// object: values that are strings without a control character (with escapes, as
/// [`Kind::Escaped`], unchecked), numbers, `true`, `false` or `null`; keys without an escape
/// or a control character; with only whitespace after it if `whole`.
/// `None` as soon as the text is anything else or `member` says `None`.
pub(crate) fn members<'a>(
    text: &'a str,
    whole: bool,
    mut member: impl FnMut(&'a str, &'a str, Kind) -> Option<()>,
) -> Option<()> {
    let raw = |name, (), value| match value {
        Value::Raw(raw, kind) => member(name, raw, kind),
        Value::Read(_) | Value::InPlace => None,
    };
    members_in::<Plain, _>(text, whole, None, |_| (), |_: &(), _, _| None, raw).map(|_| ())
}

/// A member's value as [`members_in`] hands it over.
enum Value<'a> {
    /// Its text, and what kind of value it is.
    Raw(&'a str, Kind),
    /// A string read with its escapes ([`super::message_string`]), where the key asked for it.
    Read(Cow<'a, str>),
    /// A message read where it lies ([`escaped::message`]), where the key asked for it: its
    /// object is where [`parse_in`] was asked to put it.
    InPlace,
}

/// [`members`] in dialect `D`, each key with its tag: `tag` of its name, or what `shape`
/// remembers of the key (which `tag` made of the same name); a string value is first offered
/// to `read` with its key's tag (from its opening quote: the index past it and the value, or
/// `None` to read it as any value), which reads a log event's message, a log line whose
/// every quote is escaped, in the pass that finds its end. The index just past the closing
/// brace.
fn members_in<'a, D: Dialect, T: Copy>(
    text: &'a str,
    whole: bool,
    mut shape: Option<&mut Shape<T>>,
    mut tag: impl FnMut(&'a str) -> T,
    mut read: impl FnMut(&T, &'a str, usize) -> Option<(usize, Value<'a>)>,
    mut member: impl FnMut(&'a str, T, Value<'a>) -> Option<()>,
) -> Option<usize> {
    let b = text.as_bytes();
    let q = D::QUOTE;
    let mut i = D::skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    i = D::skip_ws(b, i + 1);
    if b.get(i) == Some(&b'}') {
        i += 1;
    } else {
        // The key before, as `shape` numbers it.
        let mut prev = NONE;
        loop {
            if !D::quote(b, i) {
                return None;
            }
            let known = shape.as_deref().and_then(|s| s.recognise(prev, &b[i..]));
            let (name, t) = match known {
                // `"name":` as remembered: a name without a quote, backslash or control
                // character (it was read as one), so its closing quote is where it was.
                Some((n, len, t)) => {
                    let name = &text[i + q..i + len - q - 1];
                    i += len;
                    prev = n;
                    (name, t)
                }
                None => {
                    let end = D::string_end(b, i + q)?;
                    // Quotes are ASCII: every index here is a character boundary.
                    let name = &text[i + q..end];
                    let t = tag(name);
                    prev = match shape.as_deref_mut() {
                        Some(s) if b.get(end + q) == Some(&b':') => {
                            s.learn(prev, &b[i..end + q + 1], t)
                        }
                        _ => NONE,
                    };
                    i = D::skip_ws(b, end + q);
                    if b.get(i) != Some(&b':') {
                        return None;
                    }
                    i += 1;
                    (name, t)
                }
            };
            i = D::skip_ws(b, i);
            let start = i;
            let v = match D::quote(b, i).then(|| read(&t, text, i)).flatten() {
                Some((end, v)) => {
                    i = end;
                    v
                }
                None => {
                    let kind = D::value(b, &mut i)?;
                    Value::Raw(&text[start..i], kind)
                }
            };
            member(name, t, v)?;
            let more;
            (i, more) = separator::<D>(b, i, b'}')?;
            if !more {
                break;
            }
        }
    }
    if whole && D::skip_ws(b, i) != b.len() {
        return None;
    }
    Some(i)
}

/// A CloudWatch Logs subscription payload read flat: an object whose `messageType` is
/// `"DATA_MESSAGE"` and comes before its `logEvents` (one of each at most), whose log events
/// are objects this module reads, and whose other members are strings without an escape,
/// integers of at most 18 digits, `true`, `false`, `null` or arrays of those (nothing
/// serde_json could refuse); only whitespace after it. It nests 3 levels at most. Hands
/// `event` each log event (its number, text and fields, and its message's object where it was
/// read in place: [`escaped::message`]) as soon as it is read, and says `None`, whatever it has handed over, as soon as the text is anything else.
pub(crate) fn payload<'a>(
    text: &'a str,
    tenant_field: &str,
    mut event: impl FnMut(usize, &'a str, Fields<'a>, Option<&MessageBody<'a>>),
) -> Option<()> {
    let b = text.as_bytes();
    let mut i = skip_ws(b, 0);
    if b.get(i) != Some(&b'{') {
        return None;
    }
    let (mut data, mut events) = (false, false);
    i = skip_ws(b, i + 1);
    loop {
        if b.get(i) != Some(&b'"') {
            return None;
        }
        let end = string_end(b, i + 1)?;
        let name = &text[i + 1..end];
        i = skip_ws(b, end + 1);
        if b.get(i) != Some(&b':') {
            return None;
        }
        i = skip_ws(b, i + 1);
        match name {
            "messageType" if !data => {
                let start = i;
                if value(b, &mut i)? != Kind::Str || &text[start..i] != "\"DATA_MESSAGE\"" {
                    return None;
                }
                data = true;
            }
            // A second `messageType` or `logEvents` is serde_json's to refuse.
            "messageType" => return None,
            "logEvents" if data && !events => {
                events = true;
                i = log_events(text, i, tenant_field, &mut event)?;
            }
            "logEvents" => return None,
            _ => ignored(b, &mut i)?,
        }
        let more;
        (i, more) = separator::<Plain>(b, i, b'}')?;
        if !more {
            break;
        }
    }
    (data && skip_ws(b, i) == b.len()).then_some(())
}

/// The array of log events at `i`, each handed to `event` as it is read; the index past it.
fn log_events<'a>(
    text: &'a str,
    i: usize,
    tenant_field: &str,
    event: &mut impl FnMut(usize, &'a str, Fields<'a>, Option<&MessageBody<'a>>),
) -> Option<usize> {
    let mut n = 0;
    let body = Cell::new(None);
    array(text.as_bytes(), i, |i| {
        // Not borrowed while `event` runs: a message is read by this thread's `parse` too.
        let (fields, len) = with_shape(&SHAPE, tenant_field, |shape| {
            parse_in::<Plain>(&text[i..], tenant_field, false, Some(shape), Some(&body))
        })?;
        event(n, &text[i..i + len], fields, body.take().as_ref());
        n += 1;
        Some(i + len)
    })
}

/// Moves `*i` past a value serde_json ignores without a doubt: a string without an escape, an
/// integer of at most 18 digits, `true`, `false`, `null`, or an array of those.
fn ignored(b: &[u8], i: &mut usize) -> Option<()> {
    let one = |mut i: usize| {
        let start = i;
        match value(b, &mut i)? {
            Kind::Str | Kind::True | Kind::False | Kind::Null => Some(i),
            Kind::Integer => (i - start <= 18).then_some(i),
            Kind::Escaped | Kind::Number => None,
        }
    };
    *i = if b.get(*i) == Some(&b'[') { array(b, *i, one)? } else { one(*i)? };
    Some(())
}

/// The array whose `[` is at `i`, each item read by `item` (from its first byte to the index
/// past it); the index past the `]`.
fn array(b: &[u8], i: usize, mut item: impl FnMut(usize) -> Option<usize>) -> Option<usize> {
    if b.get(i) != Some(&b'[') {
        return None;
    }
    let mut i = skip_ws(b, i + 1);
    if b.get(i) == Some(&b']') {
        return Some(i + 1);
    }
    loop {
        let more;
        (i, more) = separator::<Plain>(b, item(i)?, b']')?;
        if !more {
            return Some(i);
        }
    }
}

/// After an item that ends before `i`: past a comma and the whitespace after it (`true`: an
/// item follows), or past `close` (`false`); `None` at anything else.
fn separator<D: Dialect>(b: &[u8], i: usize, close: u8) -> Option<(usize, bool)> {
    let i = D::skip_ws(b, i);
    match *b.get(i)? {
        b',' => Some((D::skip_ws(b, i + 1), true)),
        c if c == close => Some((i + 1, false)),
        _ => None,
    }
}

/// What kind of value [`value`] read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// A string without an escape.
    Str,
    /// A string with escapes, which nothing here has checked.
    Escaped,
    /// A number without a fraction or an exponent.
    Integer,
    /// A number with either.
    Number,
    True,
    False,
    Null,
}

/// The index of the first byte at or after `i` that is not JSON whitespace.
#[inline]
pub(crate) fn skip_ws(b: &[u8], mut i: usize) -> usize {
    // Most calls meet no whitespace at all (compact JSON): one comparison for them.
    if b.get(i).is_none_or(|&c| c > b' ') {
        return i;
    }
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = b.get(i) {
        i += 1;
    }
    i
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// The index of the quote that closes a string whose text starts at `i`; `None` at an
/// escape, a control character (which JSON refuses unescaped) or the end of the text.
pub(crate) fn string_end(b: &[u8], i: usize) -> Option<usize> {
    let at = string_stop(b, i);
    (b.get(at) == Some(&b'"')).then_some(at)
}

/// [`string_end`] of a string that may hold escapes, and whether it does: each backslash
/// and the byte after it are passed over (a `\"` ends nothing); what they mean is not checked.
fn escaped_string_end(b: &[u8], mut i: usize) -> Option<(usize, bool)> {
    let mut escaped = false;
    loop {
        let at = string_stop(b, i);
        match *b.get(at)? {
            b'"' => return Some((at, escaped)),
            b'\\' => {
                escaped = true;
                i = at + 2;
            }
            _ => return None,
        }
    }
}

/// The index of the first quote, backslash or control character at or after `i` (at least
/// the text's length when there is none).
pub(crate) fn string_stop(b: &[u8], mut i: usize) -> usize {
    while let Some(chunk) = b.get(i..i + 8) {
        let flags = stop_flags(u64::from_le_bytes(chunk.try_into().unwrap_or_default()));
        if flags != 0 {
            return i + (flags.trailing_zeros() / 8) as usize;
        }
        i += 8;
    }
    while b.get(i).is_some_and(|&c| !stops(c)) {
        i += 1;
    }
    i
}

/// Whether a string's plain text stops at `c`: a quote, a backslash or a control character.
fn stops(c: u8) -> bool {
    c == b'"' || c == b'\\' || c < 0x20
}

/// The high bit of each byte of the eight in `w` (little-endian) where a string's plain text
/// stops ([`stops`]), and maybe of bytes after the first such: the lowest flag of each test
/// is exact, so the lowest of all three is the first stop.
#[inline]
fn stop_flags(w: u64) -> u64 {
    let zero = |x: u64| x.wrapping_sub(LO) & !x & HI;
    zero(w ^ (LO * u64::from(b'"')))
        | zero(w ^ (LO * u64::from(b'\\')))
        | (w.wrapping_sub(LO * 0x20) & !w & HI)
}

/// Reads the scalar value at `*i`, moving `*i` past it; `None` for a nested value or text
/// that is not JSON.
pub(crate) fn value(b: &[u8], i: &mut usize) -> Option<Kind> {
    let literal = |i: &mut usize, word: &[u8], kind| {
        b.get(*i..*i + word.len()).filter(|w| *w == word)?;
        *i += word.len();
        Some(kind)
    };
    match *b.get(*i)? {
        b'"' => {
            let (end, escaped) = escaped_string_end(b, *i + 1)?;
            *i = end + 1;
            Some(if escaped { Kind::Escaped } else { Kind::Str })
        }
        b't' => literal(i, b"true", Kind::True),
        b'f' => literal(i, b"false", Kind::False),
        b'n' => literal(i, b"null", Kind::Null),
        b'-' | b'0'..=b'9' => number(b, i),
        _ => None,
    }
}

/// Reads a number as JSON's grammar has it: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
fn number(b: &[u8], i: &mut usize) -> Option<Kind> {
    let digits = |i: &mut usize| {
        let start = *i;
        while b.get(*i).is_some_and(u8::is_ascii_digit) {
            *i += 1;
        }
        *i > start
    };
    if b.get(*i) == Some(&b'-') {
        *i += 1;
    }
    match b.get(*i)? {
        b'0' => *i += 1,
        b'1'..=b'9' => {
            digits(i);
        }
        _ => return None,
    }
    let mut kind = Kind::Integer;
    if b.get(*i) == Some(&b'.') {
        *i += 1;
        if !digits(i) {
            return None;
        }
        kind = Kind::Number;
    }
    if let Some(b'e' | b'E') = b.get(*i) {
        *i += 1;
        if let Some(b'+' | b'-') = b.get(*i) {
            *i += 1;
        }
        if !digits(i) {
            return None;
        }
        kind = Kind::Number;
    }
    Some(kind)
}

/// The value of a field read as any JSON value, as [`Scalar`]'s visitor has serde_json give
/// it; `None` for the numbers whose reading is serde_json's own (past 18 digits, `-0`, a
/// fraction or an exponent).
fn scalar<D: Dialect>(raw: &str, kind: Kind) -> Option<Scalar<'_>> {
    Some(match kind {
        Kind::Str => Scalar::Str(Cow::Borrowed(D::body(raw))),
        Kind::True => Scalar::Bool(true),
        Kind::False => Scalar::Bool(false),
        Kind::Null => Scalar::Null,
        Kind::Integer => {
            let digits = raw.strip_prefix('-').unwrap_or(raw);
            if digits.len() > 18 || (digits.starts_with('0') && raw.len() > 1) {
                return None;
            }
            let n = digits.bytes().fold(0i64, |n, d| n * 10 + i64::from(d - b'0'));
            Scalar::Int(if digits.len() < raw.len() { -n } else { n }.into())
        }
        Kind::Number | Kind::Escaped => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::super::parse_serde;
    use super::*;

    const LINE: &str = r#"{"event":"inference_usage","tier":"basic","clinic_id":"clinic-079","actor_id":"basic-clinic-079-nurse.dubois@clinic-079.example","model_id":"mistral.ministral-3-8b-instruct","input_tokens":299,"output_tokens":414,"total_tokens":713,"timestamp":"2026-10-01T00:00:00.418Z","event_id":"14fef12a-9e92-414f-8762-6b02e34a36c3","session_id":"sess-7206543eb689cf18"}"#;

    /// A CloudWatch log event: its message a usage line as an escaped string.
    const LOG_EVENT: &str = r#"{"id":"37850426195880961806327858651412497328564791337766977536","timestamp":1790841600000,"message":"{\"event\":\"inference_usage\",\"tier\":\"basic\",\"clinic_id\":\"clinic-a\",\"note\":\"caf\u00e9 \\ \ud83d\ude00\",\"input_tokens\":3}"}"#;

    /// The flat reading of `text`, checked against serde_json's wherever it gives one.
    fn agree(text: &str, whole: bool) -> Option<Fields<'_>> {
        let fast = parse(text, "clinic_id", whole);
        if let Some(f) = &fast {
            let slow = parse_serde(text, "clinic_id", whole);
            assert_eq!(slow.as_ref().ok(), Some(f), "{text:?} (whole: {whole})");
        }
        fast
    }

    #[test]
    fn a_usage_line_is_read_flat_with_serde_jsons_fields() {
        let f = agree(LINE, true).expect("a usage line is flat");
        assert_eq!(f.entries.len(), 11);
        assert!(matches!(f.entries[7], (_, Cow::Borrowed("total_tokens"), Scalar::Int(713))));
        assert!(agree(&format!(" \t{LINE}\r\n "), true).is_some());
        assert!(agree(&format!("{LINE} and a logger's tail"), false).is_some());
        assert!(agree("{}", true).is_some_and(|f| f.entries.is_empty()));
        assert!(agree(r#"{"messageType":null,"events":1e5,"x":-0.5}"#, true).is_some());
    }

    #[test]
    fn a_log_events_escaped_message_is_read_flat_and_unescaped() {
        let f = agree(LOG_EVENT, true).expect("a log event is flat");
        let message = &f.entries[2].2;
        assert!(
            matches!(message, Scalar::Str(Cow::Owned(m)) if m.starts_with(r#"{"event":"inference_usage","#)
                && m.contains("café \\ 😀"))
        );
        // Escapes that are no character, or no escape, are serde_json's to word.
        for bad in [r#"\ud800"#, r#"\x"#, r#"\u12"#, "\\\u{1}"] {
            let text = format!(r#"{{"id":"1","message":"a{bad}b"}}"#);
            assert!(agree(&text, true).is_none(), "{text}");
        }
        // An escape anywhere else is left to serde_json as well.
        for text in [r#"{"id":"a\u0031"}"#, r#"{"skipped":"\n"}"#, r#"{"input_tokens":"\u0031"}"#] {
            assert!(agree(text, true).is_none(), "{text}");
        }
    }

    #[test]
    fn what_it_does_not_take_is_left_to_serde_json() {
        for text in [
            r#"{"tier":"a\"b"}"#,
            "{\"tier\":\"a\tb\"}",
            r#"{"tier":{"a":1}}"#,
            r#"{"x":[1]}"#,
            r#"{"input_tokens":1,}"#,
            r#"{"input_tokens":01}"#,
            r#"{"input_tokens":1.}"#,
            r#"{"input_tokens":1e}"#,
            r#"{"input_tokens":-}"#,
            r#"{"tier":tru}"#,
            r#"{"tier":"a""#,
            r#"{"tier" "a"}"#,
            r#"{"timestamp":-0}"#,
            r#"{"timestamp":1.5}"#,
            r#"{"timestamp":1234567890123456789}"#,
            r#"{"a":1} x"#,
            "[1]",
            "",
            "\"s\"",
        ] {
            assert!(agree(text, true).is_none(), "{text}");
        }
        // A logger's tail after the object is no concern of a prefix's.
        assert!(agree(r#"{"a":1} x"#, false).is_some());
    }

    #[test]
    fn strings_end_at_their_quote_whatever_the_word_it_falls_in() {
        for n in 0..24 {
            let body = "é".repeat(n / 2) + &"a".repeat(n % 2);
            let text = format!("\"{body}\" tail");
            assert_eq!(string_end(text.as_bytes(), 1), Some(body.len() + 1), "{n}");
            for stop in ["\\", "\u{1}", "\u{1f}"] {
                let text = format!("\"{body}{stop}x\"");
                assert_eq!(string_end(text.as_bytes(), 1), None, "{n} {stop:?}");
            }
        }
        // A quote, a backslash and a control character are each found past the bytes of
        // their word that only look like them (0x7f and bytes of 0x80 and over are text).
        assert_eq!(string_end(b"\"\x7f\x80\xa2\xdc\xff\x21\x23\x5b\"", 1), Some(9));
    }

    /// Keys remembered are recognised only as the same bytes: another
    /// spelling, spacing or key is read afresh, and a key's slot is not kept
    /// from under another tenant field.
    #[test]
    fn remembered_keys_read_as_serde_json_reads_them() {
        let learnt = agree(LINE, true).expect("a usage line is flat");
        let seen = SHAPE.with_borrow(|s| {
            let (event, ..) = s.recognise(NONE, br#""event":"inference_usage""#)?;
            s.recognise(event, br#""tier":"basic""#).map(|(_, len, _)| len)
        });
        assert_eq!(seen, Some(7), "the key after the first is remembered, quotes and colon too");
        assert_eq!(agree(LINE, true), Some(learnt), "read again from what was remembered");
        for (from, to) in [
            (r#""tier":"#, r#""tier" :"#),
            (r#""tier":"#, r#""t\u0069er":"#),
            (r#""tier":"#, r#""tiers":"#),
            (r#""tier":"#, r#""tie":"#),
            (r#""clinic_id":"#, r#""user_id":"#),
            (r#""event":"#, r#""event":{"#),
        ] {
            let text = LINE.replacen(from, to, 1);
            agree(&text, true);
            agree(LINE, true).expect("the usage line again");
        }
        // Past the bound, keys met once make way for those met after them.
        for k in 0..SHAPE_KEYS + 5 {
            agree(&format!(r#"{{"odd_{k}":1}}"#), true).expect("flat");
        }
        agree(r#"{"fresh":2}"#, true).expect("flat");
        let first = SHAPE.with_borrow(|s| s.recognise(NONE, br#""fresh":3"#).map(|(_, n, _)| n));
        assert_eq!(first, Some(8), "a key met after them is remembered");
        // `clinic_id` is the tenant under one field and nothing under another.
        let other = parse(LINE, "tier", true).expect("flat");
        assert_eq!(Some(&other), parse_serde(LINE, "tier", true).as_ref().ok());
        assert_ne!(Some(other), agree(LINE, true));
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig {
            cases: 3000,
            failure_persistence: None,
            ..proptest::prelude::ProptestConfig::default()
        })]

        /// Objects built from pieces that JSON allows and pieces it does not: wherever the
        /// flat reading takes one, its fields are serde_json's.
        #[test]
        fn every_object_it_takes_reads_as_serde_json_reads_it(
            members in proptest::collection::vec((0usize..16, 0usize..29, 0usize..6), 0..8),
            whole in proptest::bool::ANY,
            tail in 0usize..4,
        ) {
            const KEYS: [&str; 16] = [
                "tier", "clinic_id", "input_tokens", "event_id", "id", "message", "timestamp",
                "service_tier", "cacheDetails", "messageType", "other", "t\\u0069er", "",
                "é", "tier\u{1}", "input_tokens",
            ];
            const VALUES: [&str; 29] = [
                "\"basic\"", "\"\"", "12", "-7", "0", "-0", "1.5", "1e400", "-2E+3",
                "123456789012345678", "1234567890123456789", "true", "false", "null", "\"a\\\"b\"",
                "{\"type\":\"flex\"}", "[{\"ttl\":\"1h\",\"inputTokens\":3}]", "01", "1.", "tru",
                "\"{\\\"event\\\":1}\"", "\"\\ud800\"", "\"caf\u{e9}\"", "\"x\ty\"",
                "\"\\x\"", "\"a\\\\\"", "\"\\u00e9\\ud83d\\ude00\"", "\"\\\"\"", "\"\\u12\"",
            ];
            const SPACES: [&str; 6] = ["", " ", "\n\t", ",", ":", "\r "];
            let mut text = String::from("{");
            for (n, (k, v, s)) in members.iter().enumerate() {
                if n > 0 {
                    text.push(',');
                }
                text.push_str(SPACES[*s]);
                text.push('"');
                text.push_str(KEYS[*k]);
                text.push_str("\":");
                text.push_str(SPACES[(*s + 1) % 6]);
                text.push_str(VALUES[*v]);
            }
            text.push_str(["}", "} ", "} x", ""][tail]);
            agree(&text, whole);
        }

        /// A usage line or a log event with a byte changed, dropped or doubled anywhere.
        #[test]
        fn a_damaged_line_reads_as_serde_json_reads_it(
            at in 0usize..1000,
            edit in 0u8..3,
            byte in proptest::sample::select(b"\"\\{}[],:0-9.eE tn\x01a".to_vec()),
        ) {
            let line = if at % 2 == 0 { LINE } else { LOG_EVENT };
            let at = at % line.len();
            let mut bytes = line.as_bytes().to_vec();
            match edit {
                0 => bytes[at] = byte,
                1 => { bytes.remove(at); }
                _ => bytes.insert(at, bytes[at]),
            }
            if let Ok(text) = std::str::from_utf8(&bytes) {
                agree(text, true);
                agree(text, false);
            }
        }
    }
}
