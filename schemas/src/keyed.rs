//! Keyed SipHash-1-3 for identities held in memory (the dedup index, the rollups' distinct
//! ids, content fingerprints): several times cheaper than a BLAKE3 digest on ids of a few
//! dozen bytes, and keyed at random per process, so no tenant can craft an id that collides
//! with another tenant's and have it dropped as a duplicate. Never written anywhere: what is
//! persisted (file names, quarantine ids, content-derived ids) stays BLAKE3.

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

/// The 128-bit keyed hash of `bytes`.
pub fn key128(bytes: &[u8]) -> u128 {
    let mut h = hasher();
    h.write(bytes);
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
}
