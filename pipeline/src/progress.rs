//! A progress bar over bytes read, shown only on a terminal and only for large inputs.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

/// Inputs smaller than this finish before a bar is worth drawing.
const MIN_BYTES: u64 = 16 << 20;

/// A progress bar over bytes read, fed by the readers through [`Progress::bytes`].
pub struct Progress {
    /// Bytes read so far.
    pub bytes: Arc<AtomicU64>,
    done: Arc<AtomicBool>,
    ticker: Option<JoinHandle<()>>,
}

impl Progress {
    /// Starts counting; a bar is drawn when `enabled`, on a terminal, for `total` of 16 MiB
    /// or more.
    pub fn start(total: u64, enabled: bool) -> Self {
        let bytes = Arc::new(AtomicU64::new(0));
        let done = Arc::new(AtomicBool::new(false));
        let show = enabled && total >= MIN_BYTES && std::io::stderr().is_terminal();
        let ticker = show.then(|| {
            let bar = ProgressBar::new(total);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} ({bytes_per_sec}, {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            let (bytes, done) = (bytes.clone(), done.clone());
            std::thread::spawn(move || {
                while !done.load(Ordering::Relaxed) {
                    bar.set_position(bytes.load(Ordering::Relaxed));
                    std::thread::sleep(Duration::from_millis(100));
                }
                bar.finish_and_clear();
            })
        });
        Self { bytes, done, ticker }
    }

    /// Stops the bar; returns the bytes read.
    pub fn finish(mut self) -> u64 {
        self.done.store(true, Ordering::Relaxed);
        if let Some(t) = self.ticker.take() {
            let _ = t.join();
        }
        self.bytes.load(Ordering::Relaxed)
    }
}

/// A progress bar over a time range (a CloudWatch Logs backfill), on a terminal only.
pub struct TimeBar {
    bar: Option<ProgressBar>,
    start_ms: i64,
}

impl TimeBar {
    /// A bar from `start_ms` to `end_ms`, drawn when `enabled` and on a terminal.
    pub fn start(start_ms: i64, end_ms: i64, enabled: bool) -> Self {
        let bar = (enabled && std::io::stderr().is_terminal()).then(|| {
            let len = u64::try_from((end_ms - start_ms) / 1000).unwrap_or(0).max(1);
            let bar = ProgressBar::new(len);
            bar.set_style(
                ProgressStyle::with_template(
                    "{spinner} [{elapsed_precise}] {wide_bar} {pos}/{len} s of log time ({eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar
        });
        Self { bar, start_ms }
    }

    /// Events up to `time_ms` are read.
    pub fn reached(&self, time_ms: i64) {
        if let Some(bar) = &self.bar {
            let pos = u64::try_from((time_ms - self.start_ms) / 1000).unwrap_or(0);
            if pos > bar.position() {
                bar.set_position(pos);
            }
        }
    }

    /// Clears the bar.
    pub fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
