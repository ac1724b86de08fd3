//! The strings of a day's rollup: coded as met, so that grouping hashes integers, and ranked
//! once, so that rows holding codes sort as their strings would.

use super::HashMap;

/// Small integer codes for the strings of a partition, so that grouping hashes integers.
#[derive(Default)]
pub(crate) struct Interner {
    codes: HashMap<String, u32>,
    /// The strings, by code.
    pub(crate) values: Vec<String>,
}

impl Interner {
    pub(crate) fn code(&mut self, s: &str) -> u32 {
        if let Some(&c) = self.codes.get(s) {
            return c;
        }
        let c = self.values.len() as u32;
        self.values.push(s.to_owned());
        self.codes.insert(s.to_owned(), c);
        c
    }
}

/// Each value's place in the sorted order of `values` (equal values share one), so that rows
/// holding codes of `values` sort by integers as they would by the strings.
pub(super) fn string_ranks<T: AsRef<str>>(values: &[T]) -> Vec<u32> {
    let mut order: Vec<u32> = (0..values.len() as u32).collect();
    order.sort_unstable_by(|&a, &b| values[a as usize].as_ref().cmp(values[b as usize].as_ref()));
    let mut ranks = vec![0; values.len()];
    let mut rank = 0;
    for (i, w) in order.iter().enumerate() {
        if i > 0 && values[order[i - 1] as usize].as_ref() != values[*w as usize].as_ref() {
            rank += 1;
        }
        ranks[*w as usize] = rank;
    }
    ranks
}
