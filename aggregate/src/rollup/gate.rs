//! How many days a rebuild of several sums at once.

/// Bytes of data files that the days rolled up beyond one a core may hold together: a day's
/// rollup holds about its files' size in memory (its ids, groups and spans).
pub(super) const EXTRA_DAY_BYTES: u64 = 64 << 20;

/// Admits the days of a rebuild of several: one a core at any time, and more (where each
/// day mostly waits on round trips) while the days in flight hold at most [`EXTRA_DAY_BYTES`]
/// of data files.
#[derive(Debug)]
pub(crate) struct DayGate {
    /// Days in flight, and their data files' bytes.
    pub(super) in_flight: std::sync::Mutex<(usize, u64)>,
    cv: std::sync::Condvar,
    cores: usize,
}

impl DayGate {
    pub(crate) fn new(cores: usize) -> Self {
        Self { in_flight: Default::default(), cv: Default::default(), cores: cores.max(1) }
    }

    /// Waits until a day of `bytes` may start; it counts as in flight until the pass drops.
    pub(super) fn enter(&self, bytes: u64) -> DayPass<'_> {
        let held = self.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let mut held = self
            .cv
            .wait_while(held, |(days, b)| {
                *days >= self.cores && b.saturating_add(bytes) > EXTRA_DAY_BYTES
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        held.0 += 1;
        held.1 += bytes;
        DayPass { gate: self, bytes }
    }
}

pub(super) struct DayPass<'a> {
    gate: &'a DayGate,
    bytes: u64,
}

impl Drop for DayPass<'_> {
    fn drop(&mut self) {
        let mut held =
            self.gate.in_flight.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        held.0 -= 1;
        held.1 -= self.bytes;
        self.gate.cv.notify_all();
    }
}
