//! Keyed SipHash-1-3 for identities held in memory (the dedup index, the rollups' distinct
//! ids; content fingerprints use a faster hash, [`fingerprint_hasher`]): several times cheaper
//! than a BLAKE3 digest on ids of a few dozen bytes, and keyed at random per process, so no
//! tenant can craft an id that collides with another tenant's and have it dropped as a
//! duplicate. Never written anywhere: what is persisted (file names, quarantine ids,
//! content-derived ids) stays BLAKE3.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::LazyLock;

use siphasher::sip128::{Hasher128, SipHasher13};

static KEYS: LazyLock<(u64, u64)> = LazyLock::new(|| {
    // The standard library's per-process random keys, drawn from the OS.
    let s = RandomState::new();
    (s.hash_one(0x243f_6a88_85a3_08d3_u64), s.hash_one(0x1319_8a2e_0370_7344_u64))
});

/// A keyed hasher; feed it with [`Hasher::write`] (and finish with [`Hasher::finish`] for 64
/// bits).
pub fn hasher() -> SipHasher13 {
    SipHasher13::new_with_keys(KEYS.0, KEYS.1)
}

/// The hasher of content fingerprints
/// ([`UsageEvent::content_fingerprint`](crate::UsageEvent::content_fingerprint),
/// [`AgentSpan::content_fingerprint`](crate::AgentSpan::content_fingerprint)): foldhash,
/// seeded at random per process. A fingerprint only tells a conflicting duplicate delivery (reported,
/// the first copy kept either way), so two contents that hash alike cost a warning, never a
/// record; a record's 150-odd bytes take SipHash about four times as long.
pub fn fingerprint_hasher() -> impl Hasher {
    FINGERPRINTS.build_hasher()
}

static FINGERPRINTS: LazyLock<foldhash::fast::RandomState> =
    LazyLock::new(foldhash::fast::RandomState::default);

/// The 128-bit keyed hash of `bytes`.
pub fn key128(bytes: &[u8]) -> u128 {
    key128_of_parts([bytes])
}

/// [`key128`] of the bytes of `parts` one after another, without joining them: SipHash reads
/// its input as one stream, however it is fed.
pub fn key128_of_parts<'a>(parts: impl IntoIterator<Item = &'a [u8]>) -> u128 {
    let mut h = hasher();
    for p in parts {
        h.write(p);
    }
    h.finish128().as_u128()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_inputs_hash_equal_and_others_do_not() {
        assert_eq!(key128(b"req-1"), key128(b"req-1"));
        assert_ne!(key128(b"req-1"), key128(b"req-2"));
        assert_ne!(key128(b""), key128(b"\0"));
        // Keyed: not the unkeyed SipHash-1-3 of the same bytes.
        let mut plain = SipHasher13::new();
        plain.write(b"req-1");
        assert_ne!(plain.finish128().as_u128(), key128(b"req-1"));
    }

    #[test]
    fn fingerprints_are_stable_within_a_process_and_tell_contents_apart() {
        let of = |parts: &[&[u8]]| {
            let mut h = fingerprint_hasher();
            for p in parts {
                h.write_u64(p.len() as u64);
                h.write(p);
            }
            h.finish()
        };
        assert_eq!(of(&[b"clinic-a", b"812"]), of(&[b"clinic-a", b"812"]));
        assert_ne!(of(&[b"clinic-a", b"812"]), of(&[b"clinic-a", b"813"]));
        assert_ne!(of(&[b"clinic-a8", b"12"]), of(&[b"clinic-a", b"812"]));
    }

    #[test]
    fn the_parts_of_an_input_hash_as_the_whole_does() {
        let whole = b"0123456789abcdef0123456789abcdef:0123456789abcdef";
        for cut in [0, 1, 7, 8, 9, 32, 33, whole.len()] {
            let (a, b) = whole.split_at(cut);
            assert_eq!(key128_of_parts([a, b]), key128(whole), "cut at {cut}");
        }
        let three: [&[u8]; 3] = [b"trace", b":", b"span"];
        assert_eq!(key128_of_parts(three), key128(b"trace:span"));
        assert_ne!(key128_of_parts(three), key128(b"tracespan"));
    }
}
