//! Capped gzip decompression: the only place that touches flate2's decoders, so that no
//! decompressed size is ever unbounded (a small gzip bomb must not exhaust memory).

use std::cell::RefCell;
use std::io::{self, BufRead, Read};

use flate2::{Decompress, FlushDecompress, Status};

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

thread_local! {
    /// A raw-deflate inflater per thread, reset for each member: a subscription payload is a
    /// member of a few KiB, and setting an inflater up (its state and 32 KiB window) cost more
    /// than inflating one.
    static INFLATER: RefCell<Decompress> = RefCell::new(Decompress::new(false));
}

/// Inflates the gzip member at the reader's position, leaving the reader just after it.
pub(crate) fn inflate_member<R: BufRead>(mut reader: R, cap: usize) -> Inflated {
    INFLATER.with_borrow_mut(|inflater| match member(&mut reader, inflater, cap) {
        Ok(Some(content)) => Inflated::Ok(content),
        Ok(None) => Inflated::TooLarge,
        Err(e) => Inflated::Corrupt(e.to_string()),
    })
}

/// One member (RFC 1952): its header, its deflate stream, then its CRC-32 and size, checked.
/// `None` when the content is over `cap` bytes (read to the member's end all the same). The
/// errors are worded as flate2's gzip decoder words them.
fn member<R: BufRead>(
    r: &mut R,
    inflater: &mut Decompress,
    cap: usize,
) -> io::Result<Option<Vec<u8>>> {
    read_header(r)?;
    inflater.reset(false);
    let mut out: Vec<u8> = Vec::new();
    let mut crc = crc32fast::Hasher::new();
    // Bytes inflated and hashed, those past the cap included (then dropped as they come).
    let (mut size, mut over) = (0u64, false);
    loop {
        if out.capacity() - out.len() < SPARE {
            out.reserve(out.capacity().max(SPARE));
        }
        let (status, read, consumed, eof);
        {
            let input = r.fill_buf()?;
            eof = input.is_empty();
            let flush = if eof { FlushDecompress::Finish } else { FlushDecompress::None };
            let (before_in, before_out) = (inflater.total_in(), out.len());
            status = inflater.decompress_vec(input, &mut out, flush).map_err(|_| corrupt_deflate());
            read = out.len() - before_out;
            consumed = usize::try_from(inflater.total_in() - before_in).unwrap_or(usize::MAX);
        }
        r.consume(consumed);
        crc.update(&out[out.len() - read..]);
        size += read as u64;
        if size > cap as u64 {
            over = true;
            out.clear();
        }
        match status? {
            Status::StreamEnd => break,
            Status::Ok | Status::BufError if read == 0 && consumed == 0 && eof => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "incomplete deflate stream",
                ));
            }
            Status::Ok | Status::BufError => {}
        }
    }
    let mut trailer = [0u8; 8];
    read_exact(r, &mut trailer)?;
    let [c0, c1, c2, c3, s0, s1, s2, s3] = trailer;
    // ISIZE is the size modulo 2^32.
    if u32::from_le_bytes([c0, c1, c2, c3]) != crc.finalize()
        || u32::from_le_bytes([s0, s1, s2, s3]) != size as u32
    {
        return Err(checksum_mismatch());
    }
    Ok(if over { None } else { Some(out) })
}

/// `read_exact`, its end of input worded as flate2 words it.
fn read_exact<R: Read>(r: &mut R, buf: &mut [u8]) -> io::Result<()> {
    r.read_exact(buf).map_err(|e| match e.kind() {
        io::ErrorKind::UnexpectedEof => io::ErrorKind::UnexpectedEof.into(),
        _ => e,
    })
}

/// The longest name or comment a member header may have (flate2's bound), its zero excluded.
const MAX_HEADER_FIELD: usize = 65_535;

/// Output room kept free for the inflater (grown by doubling, as `read_to_end` would).
const SPARE: usize = 32 << 10;

fn corrupt_deflate() -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, "corrupt deflate stream")
}

/// A header or trailer CRC (or the trailer's size) that does not match.
fn checksum_mismatch() -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        "corrupt gzip stream does not have a matching checksum",
    )
}

/// Reads a member header (RFC 1952 2.3): the magic, deflate, no reserved flag, then the
/// optional extra field, name, comment and header CRC (checked).
fn read_header<R: BufRead>(r: &mut R) -> io::Result<()> {
    const FHCRC: u8 = 1 << 1;
    const FEXTRA: u8 = 1 << 2;
    const FNAME: u8 = 1 << 3;
    const FCOMMENT: u8 = 1 << 4;
    const FRESERVED: u8 = 0xe0;
    let bad = || io::Error::new(io::ErrorKind::InvalidInput, "invalid gzip header");
    let mut fixed = [0u8; 10];
    read_exact(r, &mut fixed)?;
    if fixed[..3] != [0x1f, 0x8b, 8] || fixed[3] & FRESERVED != 0 {
        return Err(bad());
    }
    let flags = fixed[3];
    // The header CRC covers every byte before it.
    let mut crc = crc32fast::Hasher::new();
    crc.update(&fixed);
    if flags & FEXTRA != 0 {
        let mut len = [0u8; 2];
        read_exact(r, &mut len)?;
        crc.update(&len);
        let mut extra = vec![0u8; usize::from(u16::from_le_bytes(len))];
        read_exact(r, &mut extra)?;
        crc.update(&extra);
    }
    for flag in [FNAME, FCOMMENT] {
        if flags & flag != 0 {
            // Zero-terminated, and held to flate2's bound, so that a hostile header cannot
            // make us buffer a whole file.
            let mut text = Vec::new();
            (&mut *r).take(MAX_HEADER_FIELD as u64 + 1).read_until(0, &mut text)?;
            match text.last() {
                Some(0) => crc.update(&text),
                _ if text.len() > MAX_HEADER_FIELD => {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "gzip header field too long",
                    ));
                }
                _ => return Err(io::ErrorKind::UnexpectedEof.into()),
            }
        }
    }
    if flags & FHCRC != 0 {
        let mut stored = [0u8; 2];
        read_exact(r, &mut stored)?;
        if u16::from_le_bytes(stored) != crc.finalize() as u16 {
            return Err(checksum_mismatch());
        }
    }
    Ok(())
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

    /// flate2's own gzip decoder, for comparison: the content, or the error's text.
    fn flate2_member(bytes: &[u8]) -> Result<Vec<u8>, String> {
        let mut out = Vec::new();
        flate2::bufread::GzDecoder::new(bytes).read_to_end(&mut out).map_err(|e| e.to_string())?;
        Ok(out)
    }

    /// Members of every size (past the output reserve, over many small reads) inflate to
    /// what flate2's gzip decoder gives, and leave the reader just after themselves.
    #[test]
    fn members_inflate_as_flate2_inflates_them() {
        let mut seed = 7u64;
        for len in [0, 1, 100, 32 << 10, (32 << 10) + 1, 100_000, 300_000] {
            let data: Vec<u8> = (0..len)
                .map(|i| {
                    seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    // Compressible, not trivially so.
                    if i % 3 == 0 { (seed >> 59) as u8 + b'a' } else { b"{\"id\": 1}"[i % 9] }
                })
                .collect();
            let member = gzip_bytes(&data);
            let file = [member.clone(), gzip_bytes(b"next")].concat();
            let mut r = io::BufReader::with_capacity(7, &file[..]);
            match inflate_member(&mut r, usize::MAX) {
                Inflated::Ok(v) => assert!(v == data && flate2_member(&member) == Ok(v), "{len}"),
                other => panic!("{len}: {other:?}"),
            }
            assert!(matches!(inflate_member(&mut r, 100), Inflated::Ok(v) if v == b"next"));
        }
    }

    /// A header's optional fields (extra, name, comment, header CRC) are read past, and a
    /// header CRC that does not match is refused.
    #[test]
    fn optional_header_fields() {
        let member = flate2::GzBuilder::new()
            .extra(vec![1, 2, 3])
            .filename("usage.json")
            .comment("from the test")
            .buf_read(&b"payload"[..], flate2::Compression::default());
        let mut bytes = Vec::new();
        io::BufReader::new(member).read_to_end(&mut bytes).unwrap();
        // The flags byte also announces a header CRC: the CRC-32 of the header, low 16 bits.
        let header_len = 10 + 2 + 3 + "usage.json\0".len() + "from the test\0".len();
        bytes[3] |= 1 << 1;
        let crc = crc32fast::hash(&bytes[..header_len]) as u16;
        bytes.splice(header_len..header_len, crc.to_le_bytes());
        assert_eq!(flate2_member(&bytes), Ok(b"payload".to_vec()));
        assert!(matches!(inflate_member(&bytes[..], 100), Inflated::Ok(v) if v == b"payload"));
        bytes[header_len] ^= 1;
        let want = "corrupt gzip stream does not have a matching checksum";
        assert_eq!(flate2_member(&bytes), Err(want.to_owned()));
        assert!(matches!(inflate_member(&bytes[..], 100), Inflated::Corrupt(e) if e == want));
    }

    /// A name in the header is read up to flate2's bound and no further: longer is refused
    /// in its words, without buffering the rest of the input.
    #[test]
    fn a_header_name_is_bounded() {
        let named = |name_len: usize, terminated: bool| {
            let mut m = gzip_bytes(b"x");
            m[3] |= 1 << 3;
            let mut name = vec![b'n'; name_len];
            if terminated {
                name.push(0);
            }
            m.splice(10..10, name);
            m
        };
        let ok = named(MAX_HEADER_FIELD, true);
        assert_eq!(flate2_member(&ok), Ok(b"x".to_vec()));
        assert!(matches!(inflate_member(&ok[..], 100), Inflated::Ok(v) if v == b"x"));
        for bad in [named(MAX_HEADER_FIELD + 1, true), named(1 << 20, false)] {
            let want = flate2_member(&bad).unwrap_err();
            assert_eq!(want, "gzip header field too long");
            let mut r = &bad[..];
            assert!(matches!(inflate_member(&mut r, 100), Inflated::Corrupt(e) if e == want));
            assert!(r.len() >= bad.len() - 10 - MAX_HEADER_FIELD - 1, "read past the bound");
        }
        let cut = named(100, false);
        assert!(matches!(inflate_member(&cut[..40], 100), Inflated::Corrupt(e)
            if e == flate2_member(&cut[..40]).unwrap_err()));
    }

    /// A trailer whose CRC or size does not match, a bad header and a cut stream are refused
    /// in flate2's words.
    #[test]
    fn damaged_members_are_refused_as_flate2_refuses_them() {
        let good = gzip_bytes(b"hello, trailer");
        let n = good.len();
        let mut cases = Vec::new();
        for at in [n - 8, n - 1, 0, 2, 3] {
            let mut bad = good.clone();
            bad[at] ^= if at == 3 { 0x80 } else { 1 };
            cases.push(bad);
        }
        cases.push(good[..n - 8].to_vec());
        cases.push(good[..12].to_vec());
        for bad in cases {
            let want = flate2_member(&bad).unwrap_err();
            match inflate_member(&bad[..], 100) {
                Inflated::Corrupt(e) => assert_eq!(e, want),
                other => panic!("{other:?}"),
            }
        }
    }

    /// Content of exactly the cap passes; a byte more is too large.
    #[test]
    fn the_cap_is_inclusive() {
        let member = gzip_bytes(&[b'x'; 1000]);
        assert!(matches!(inflate_member(&member[..], 1000), Inflated::Ok(v) if v.len() == 1000));
        assert!(matches!(inflate_member(&member[..], 999), Inflated::TooLarge));
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
