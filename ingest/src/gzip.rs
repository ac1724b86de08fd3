//! Capped gzip decompression: the only place that touches flate2's decoders, so that no
//! decompressed size is ever unbounded (a small gzip bomb must not exhaust memory).

use std::io::{self, BufRead, Read};

/// True if `prefix` starts with the gzip magic bytes.
pub(crate) fn is_gzip(prefix: &[u8]) -> bool {
    prefix.starts_with(&[0x1f, 0x8b])
}

/// The result of inflating one gzip member.
#[derive(Debug)]
pub(crate) enum Inflated {
    /// The member's content.
    Ok(Vec<u8>),
    /// The member inflates to more than the cap; it was read to its end and discarded.
    TooLarge,
    /// The member is corrupt; the reader is somewhere inside it.
    Corrupt(String),
}

/// Inflates the gzip member at the reader's position, leaving the reader just after it.
pub(crate) fn inflate_member<R: BufRead>(reader: R, cap: usize) -> Inflated {
    let mut dec = flate2::bufread::GzDecoder::new(reader);
    let mut out = Vec::new();
    let limit = u64::try_from(cap).unwrap_or(u64::MAX).saturating_add(1);
    match (&mut dec).take(limit).read_to_end(&mut out) {
        Err(e) => Inflated::Corrupt(e.to_string()),
        Ok(_) if out.len() > cap => {
            drop(out);
            // Read to the member's end so that the next member starts where it should.
            match io::copy(&mut dec, &mut io::sink()) {
                Ok(_) => Inflated::TooLarge,
                Err(e) => Inflated::Corrupt(e.to_string()),
            }
        }
        Ok(_) => Inflated::Ok(out),
    }
}

/// What the first member of a gzip file says about the file.
#[derive(Debug)]
pub(crate) enum Probe {
    /// The member's content holds a newline: a compressed text file.
    Text,
    /// A member without a newline (as every subscription payload is), inflated.
    Single(Inflated),
}

/// Inflates the first member, stopping early at the first newline. Subscription payloads are
/// single-line JSON; text files have lines. Stopping early keeps a large compressed text
/// file from being inflated twice.
pub(crate) fn probe_member<R: BufRead>(reader: R, cap: usize) -> Probe {
    let mut dec = flate2::bufread::GzDecoder::new(reader);
    let mut out = Vec::new();
    let mut chunk = vec![0u8; 64 << 10];
    loop {
        match dec.read(&mut chunk) {
            Ok(0) => return Probe::Single(Inflated::Ok(out)),
            Ok(n) => {
                if memchr::memchr(b'\n', &chunk[..n]).is_some() {
                    return Probe::Text;
                }
                if out.len() + n > cap {
                    let head = if out.is_empty() { &chunk[..n] } else { &out[..] };
                    if !names_message_type(head) {
                        return Probe::Text;
                    }
                    // An oversized subscription payload: read to its end, so that the file
                    // is still read payload by payload and the members after it are kept.
                    drop(out);
                    return match io::copy(&mut dec, &mut io::sink()) {
                        Ok(_) => Probe::Single(Inflated::TooLarge),
                        Err(e) => Probe::Single(Inflated::Corrupt(e.to_string())),
                    };
                }
                out.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Probe::Single(Inflated::Corrupt(e.to_string())),
        }
    }
}

/// True if `head`, the start of a member's content, opens a JSON object whose first key is
/// one of a subscription payload's (CloudWatch Logs writes `messageType` first; a payload
/// re-serialized with sorted keys starts with `logEvents`).
fn names_message_type(head: &[u8]) -> bool {
    const KEYS: [&[u8]; 6] = [
        b"\"messageType\"",
        b"\"logEvents\"",
        b"\"owner\"",
        b"\"logGroup\"",
        b"\"logStream\"",
        b"\"subscriptionFilters\"",
    ];
    let t = head.trim_ascii_start();
    t.strip_prefix(b"{")
        .map(<[u8]>::trim_ascii_start)
        .is_some_and(|r| KEYS.iter().any(|k| r.starts_with(k)))
}

/// A reader over the concatenated content of every gzip member of `reader` (gzip-compressed
/// text files). Lines are capped by the line reader above it, not here.
pub(crate) fn multi_member<R: BufRead>(reader: R) -> impl Read {
    flate2::bufread::MultiGzDecoder::new(reader)
}

#[cfg(test)]
pub(crate) fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::new(6));
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn members_are_read_one_at_a_time() {
        let mut file = gzip_bytes(b"first");
        file.extend(gzip_bytes(b"second"));
        let mut r = io::Cursor::new(file);
        assert!(matches!(inflate_member(&mut r, 100), Inflated::Ok(v) if v == b"first"));
        assert!(matches!(inflate_member(&mut r, 100), Inflated::Ok(v) if v == b"second"));
        assert!(r.fill_buf().unwrap().is_empty());
    }

    #[test]
    fn over_the_cap_is_refused_and_the_next_member_still_reads() {
        let mut file = gzip_bytes(&[b'a'; 10_000]);
        file.extend(gzip_bytes(b"ok"));
        let mut r = io::Cursor::new(file);
        assert!(matches!(inflate_member(&mut r, 9_999), Inflated::TooLarge));
        assert!(matches!(inflate_member(&mut r, 9_999), Inflated::Ok(v) if v == b"ok"));
    }

    #[test]
    fn corrupt_member() {
        let mut bad = gzip_bytes(b"hello world");
        let n = bad.len();
        bad[n / 2] ^= 0xff;
        bad.truncate(n - 3);
        assert!(matches!(inflate_member(io::Cursor::new(bad), 100), Inflated::Corrupt(_)));
    }
}
