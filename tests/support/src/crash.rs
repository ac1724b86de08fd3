//! Seeded kill points for the crash tests (`tests/e2e/crash_*.rs`, `lambda/tests/crash.rs`).

use std::time::Duration;

/// Trials per command of the crash matrix: `AGENTMETER_CRASH_TRIALS` (default 2, what CI
/// runs; a soak sets more).
pub fn crash_trials() -> u64 {
    std::env::var("AGENTMETER_CRASH_TRIALS").ok().and_then(|v| v.parse().ok()).unwrap_or(2)
}

/// A small deterministic generator (PCG-style) for kill points: `AGENTMETER_CRASH_SEED`
/// (default 0x5eed) mixed with a name, so each test has its own sequence and a failure
/// names the seed that reproduces it.
pub struct Seeded {
    pub seed: u64,
    state: u64,
}

impl Seeded {
    pub fn new(name: &str) -> Self {
        let base = std::env::var("AGENTMETER_CRASH_SEED")
            .ok()
            .and_then(|v| u64::from_str_radix(v.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0x5eed);
        let seed = name.bytes().fold(base, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
        Self { seed, state: seed }
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.state = self
            .state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.state >> 33) % n.max(1)
    }

    /// A duration in `[0, window)`, in milliseconds' steps.
    pub fn within(&mut self, window: Duration) -> Duration {
        Duration::from_millis(self.below(window.as_millis().max(1) as u64))
    }
}
