//! Checks of [`RecordLimits`](crate::RecordLimits) that are not a record's size.

use std::hash::{BuildHasher, BuildHasherDefault};

use agentmeter_schemas::{Reason, TenantId, UserId};
use rustc_hash::{FxHashSet, FxHasher};

use crate::config::RecordLimits;
use crate::normalize::{Refusal, refuse};

/// Refuses JSON text nested deeper than `max` levels (objects and arrays; brackets inside
/// strings do not count). Runs before parsing, so the parser never recurses further.
pub(crate) fn json_depth(text: &[u8], max: usize) -> Result<(), Refusal> {
    // Most records open a handful of brackets: fewer than `max` in all cannot nest deeper.
    if memchr::memchr2_iter(b'{', b'[', text).nth(max).is_none() {
        return Ok(());
    }
    let mut depth = 0usize;
    let mut i = 0;
    while i < text.len() {
        match text[i] {
            // Strings are most of a record's bytes: jump over them, eight bytes at a time (a
            // log line in a message stops the jump at each of its escaped quotes: a call to
            // a search function each time cost a subscription payload 7 % of its ingest).
            b'"' => {
                i += 1;
                loop {
                    let j = crate::fields::flat::string_stop(text, i);
                    match text.get(j) {
                        Some(b'\\') => i = j + 2,
                        Some(b'"') => {
                            i = j + 1;
                            break;
                        }
                        // A control character: no concern of the depth's.
                        Some(_) => i = j + 1,
                        None => return Ok(()),
                    }
                }
                continue;
            }
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(refuse(
                        Reason::OverLimit,
                        format!("JSON nested deeper than the limit of {max} levels"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
        i += 1;
    }
    Ok(())
}

/// The distinct tenants and users of one batch as delivered (one [`Decoded`](crate::Decoded)),
/// as hashes: a collision would let one more through, never refuse one too many.
#[derive(Debug, Default)]
pub(crate) struct BatchIds {
    tenants: Distinct,
    users: Distinct,
}

/// Hashes seen, kept in a plain list while there are fewer than the limit (no batch that
/// small can be over it) and in a set from then on: most batches never need the set.
#[derive(Debug, Default)]
struct Distinct {
    seen: Vec<u64>,
    set: Option<FxHashSet<u64>>,
}

impl Distinct {
    /// Whether `h` would be over `limit`; `false` leaves it unrecorded.
    fn admits(&mut self, h: u64, limit: usize) -> bool {
        if self.set.is_none() && self.seen.len() < limit {
            return true;
        }
        let set = self.set.get_or_insert_with(|| self.seen.drain(..).collect());
        set.contains(&h) || set.len() < limit
    }

    fn record(&mut self, h: u64) {
        match &mut self.set {
            Some(set) => {
                set.insert(h);
            }
            None => self.seen.push(h),
        }
    }
}

impl BatchIds {
    /// Whether no record was admitted yet.
    pub(crate) fn is_empty(&self) -> bool {
        [&self.tenants, &self.users].iter().all(|d| d.seen.is_empty() && d.set.is_none())
    }

    /// Admits a record of `tenant` and `user` (a span may name none), or refuses it when
    /// either is new to the batch and the batch already holds as many as the limit allows.
    pub(crate) fn admit(
        &mut self,
        tenant: &TenantId,
        user: Option<&UserId>,
        limits: &RecordLimits,
    ) -> Result<(), Refusal> {
        let hash = |s: &str| BuildHasherDefault::<FxHasher>::default().hash_one(s);
        let t = hash(tenant.as_str());
        if !self.tenants.admits(t, limits.tenants_per_batch) {
            return Err(refuse(
                Reason::OverLimit,
                format!(
                    "the batch names more than {} tenants (the limit per batch)",
                    limits.tenants_per_batch
                ),
            ));
        }
        let u = user.map(|u| hash(u.as_str()));
        if u.is_some_and(|u| !self.users.admits(u, limits.users_per_batch)) {
            return Err(refuse(
                Reason::OverLimit,
                format!(
                    "the batch names more than {} users (the limit per batch)",
                    limits.users_per_batch
                ),
            ));
        }
        self.tenants.record(t);
        if let Some(u) = u {
            self.users.record(u);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(depth: usize) -> String {
        format!("{}{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn depth_counts_brackets_outside_strings() {
        assert!(json_depth(nested(64).as_bytes(), 64).is_ok());
        let r = json_depth(nested(65).as_bytes(), 64).unwrap_err();
        assert_eq!(r.reason, Reason::OverLimit);
        assert_eq!(r.detail, "JSON nested deeper than the limit of 64 levels");
        // Siblings do not add up; brackets in strings, escaped quotes included, do not count.
        let wide = format!("{{\"a\":[{}]}}", vec!["{}"; 500].join(","));
        assert!(json_depth(wide.as_bytes(), 3).is_ok());
        assert!(json_depth(wide.as_bytes(), 2).is_err());
        let quoted = format!("{{\"a\":\"\\\"{}\"}}", "[{".repeat(200));
        assert!(json_depth(quoted.as_bytes(), 1).is_ok());
        assert!(json_depth(b"{\"a\":{\"b\":1}}", 1).is_err());
        // Control characters and escapes at every place in a word of the jump: a log line
        // escaped in a message, with brackets in it, is one level however long.
        for n in 0..20 {
            let body = format!("{}\\\"[\u{1}{{\\\\\\\"]\t", "x".repeat(n));
            let text = format!("{{\"message\":\"{}\",\"b\":[1]}}", body.repeat(5));
            assert!(json_depth(text.as_bytes(), 2).is_ok(), "{text}");
            assert!(json_depth(text.as_bytes(), 1).is_err(), "{text}");
        }
        // An escape at the very end, or a string never closed: nothing to read past the end.
        let open = format!("{}\"{}\\", "[".repeat(60), "[".repeat(10));
        assert!(json_depth(open.as_bytes(), 64).is_ok());
        let open = format!("{}\"ab\\", "[".repeat(60));
        assert!(json_depth(format!("{open}{}", "[".repeat(10)).as_bytes(), 64).is_ok());
    }

    #[test]
    fn a_batch_admits_known_ids_past_the_limit_and_refuses_new_ones() {
        let limits =
            RecordLimits { tenants_per_batch: 2, users_per_batch: 3, ..Default::default() };
        let (t, u) = (|s: &str| TenantId::new(s).unwrap(), |s: &str| UserId::new(s).unwrap());
        let mut b = BatchIds::default();
        assert!(b.admit(&t("a"), Some(&u("1")), &limits).is_ok());
        assert!(b.admit(&t("b"), Some(&u("2")), &limits).is_ok());
        let r = b.admit(&t("c"), Some(&u("1")), &limits).unwrap_err();
        assert_eq!(r.detail, "the batch names more than 2 tenants (the limit per batch)");
        assert!(b.admit(&t("a"), Some(&u("3")), &limits).is_ok());
        let r = b.admit(&t("b"), Some(&u("4")), &limits).unwrap_err();
        assert_eq!(r.detail, "the batch names more than 3 users (the limit per batch)");
        // A refused record adds nothing: known ids still pass, and a span without a user.
        assert!(b.admit(&t("b"), Some(&u("1")), &limits).is_ok());
        assert!(b.admit(&t("a"), None, &limits).is_ok());
    }
}
