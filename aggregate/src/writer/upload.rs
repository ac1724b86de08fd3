//! The committer's data files on their way into the store, put from threads of their own: the
//! committer lists, deduplicates and encodes the next day or batch while files go up. An S3
//! put waits on the network and on S3 (tens of milliseconds, almost none of it CPU), and the
//! committer is the one thread every record goes through, so a wait there held up the whole
//! run; in batches of a Lambda's size a file is encoded faster than one put answers, so
//! several go up at once.
//!
//! Up to [`PUTS_AT_ONCE`] files go up at once and one more waits, within [`HELD_BYTES`]
//! (a larger file alone is allowed): the committer hands over the next only when there is
//! room. Where puts are quick ([`Store::round_trips`]: a local directory) there are no threads:
//! the committer puts each file itself, holding none while it encodes the next. A batch is
//! reported committed (to the rollups ahead) only once every file handed over before its
//! report is put, whatever order the puts end in, and [`Uploads::flush`] returns only once
//! every file handed over is durable: a commit, and the checkpoint saved after it, never run
//! ahead of the store.

use std::collections::{BTreeSet, VecDeque};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;

use bytes::Bytes;
use chrono::NaiveDate;

use super::ahead::AheadLink;
use crate::error::{Error, Result};
use crate::row_keys::RowKeys;
use crate::store::{Condition, Put, Store};

/// Most files going up at once where puts are slow. Measured against moto answering 20 ms
/// late (BENCHMARKS.md, "Levers"): one at a time, 10,000-row batches were bound by their puts.
pub(crate) const PUTS_AT_ONCE: usize = 4;

/// Most bytes of encoded files handed over and not yet put (a larger file is let through
/// alone): what the uploads add to a writer's memory.
pub(crate) const HELD_BYTES: usize = 64 << 20;

/// What the committer and the upload threads share.
#[derive(Default)]
struct State {
    /// Files handed over and not started, each with its number (from 0, in hand-over order).
    waiting: VecDeque<(u64, File)>,
    /// Files handed over and not yet put, and their bytes.
    held: usize,
    held_bytes: usize,
    /// Files handed over so far.
    handed: u64,
    /// Every file numbered below this is put.
    put_below: u64,
    /// Files put, numbered above `put_below`.
    put_after: BTreeSet<u64>,
    /// Batches reported committed, each waiting for `put_below` to reach its mark, in order.
    notices: VecDeque<(u64, u64, BTreeSet<NaiveDate>)>,
    /// The first failed put's error, until the committer takes it.
    error: Option<Error>,
    /// A put failed: nothing more is started, and the committer's next call fails.
    broken: bool,
    /// The committer is gone: the threads put what is waiting, then end.
    hung_up: bool,
}

impl State {
    /// Records file `n` put, and tells the rollups ahead of each batch whose files are now all
    /// put, in order.
    fn put_done(&mut self, n: u64, len: usize, ahead: Option<&AheadLink>) {
        self.held -= 1;
        self.held_bytes -= len;
        self.put_after.insert(n);
        while self.put_after.remove(&self.put_below) {
            self.put_below += 1;
        }
        self.notify(ahead);
    }

    fn notify(&mut self, ahead: Option<&AheadLink>) {
        while self.notices.front().is_some_and(|(mark, ..)| *mark <= self.put_below) {
            if let (Some((_, seq, days)), Some(ahead)) = (self.notices.pop_front(), ahead) {
                ahead.committed(seq, days);
            }
        }
    }
}

type Shared = Arc<(Mutex<State>, Condvar)>;

/// A data file to put: its key, its bytes, and its rows' keys to keep once it is put.
pub(super) struct File {
    pub(super) key: String,
    pub(super) bytes: Bytes,
    pub(super) row_keys: Option<Vec<u128>>,
}

impl File {
    /// What it adds to the writer's memory until it is put.
    fn held(&self) -> usize {
        self.bytes.len() + self.row_keys.as_deref().map_or(0, std::mem::size_of_val)
    }
}

fn lock(shared: &(Mutex<State>, Condvar)) -> MutexGuard<'_, State> {
    shared.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The committer's end of the uploads.
pub(super) struct Uploads {
    uri: String,
    /// Where puts are quick: the store, called on the committer's thread.
    inline: Option<Arc<dyn Store>>,
    ahead: Option<AheadLink>,
    row_keys: Arc<RowKeys>,
    shared: Shared,
    workers: Vec<JoinHandle<()>>,
}

impl Uploads {
    pub(super) fn new(
        store: Arc<dyn Store>,
        ahead: Option<AheadLink>,
        row_keys: Arc<RowKeys>,
    ) -> Self {
        let uri = store.uri();
        let shared: Shared = Arc::default();
        if !store.round_trips() {
            let workers = Vec::new();
            return Self { uri, inline: Some(store), ahead, row_keys, shared, workers };
        }
        let workers = (0..PUTS_AT_ONCE)
            .map(|_| {
                let (store, shared, ahead) = (store.clone(), shared.clone(), ahead.clone());
                let row_keys = row_keys.clone();
                std::thread::spawn(move || {
                    let _stopping = Stopping(&shared);
                    upload(&*store, &shared, ahead.as_ref(), &row_keys);
                })
            })
            .collect();
        Self { uri, inline: None, ahead, row_keys, shared, workers }
    }

    /// Puts `file` (if absent), and keeps its rows' keys once its put created it: where puts
    /// are slow, on an upload thread once there is room, returning at once; else here.
    ///
    /// # Errors
    ///
    /// This file (where puts are quick) or one handed over before could not be put.
    pub(super) fn put(&mut self, file: File) -> Result<()> {
        if let Some(store) = &self.inline {
            return put_file(&**store, file, &self.row_keys);
        }
        let (_, cv) = &*self.shared;
        let len = file.held();
        let state = lock(&self.shared);
        let mut state = cv
            .wait_while(state, |s| {
                !s.broken
                    && s.held > 0
                    && (s.held > PUTS_AT_ONCE || s.held_bytes + len > HELD_BYTES)
            })
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.broken {
            return Err(self.failure(state));
        }
        let n = state.handed;
        state.handed += 1;
        state.held += 1;
        state.held_bytes += len;
        state.waiting.push_back((n, file));
        cv.notify_all();
        Ok(())
    }

    /// Reports batch `seq`, which wrote `days`, committed once every file handed over so far
    /// is put.
    ///
    /// # Errors
    ///
    /// A file handed over before could not be put.
    pub(super) fn committed(&mut self, seq: u64, days: BTreeSet<NaiveDate>) -> Result<()> {
        let Some(ahead) = &self.ahead else { return Ok(()) };
        if self.inline.is_some() {
            ahead.committed(seq, days);
            return Ok(());
        }
        let mut state = lock(&self.shared);
        if state.broken {
            return Err(self.failure(state));
        }
        let mark = state.handed;
        state.notices.push_back((mark, seq, days));
        state.notify(self.ahead.as_ref());
        Ok(())
    }

    /// Waits until every file handed over is in the store.
    ///
    /// # Errors
    ///
    /// One of them could not be put.
    pub(super) fn flush(&mut self) -> Result<()> {
        if self.inline.is_some() {
            return Ok(());
        }
        let (_, cv) = &*self.shared;
        let state = lock(&self.shared);
        let state = cv
            .wait_while(state, |s| !s.broken && s.put_below < s.handed)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if state.broken {
            return Err(self.failure(state));
        }
        Ok(())
    }

    /// The failed put's error (once; later calls get a general one).
    fn failure(&self, mut state: MutexGuard<'_, State>) -> Error {
        state.error.take().unwrap_or_else(|| Error::NotALake {
            root: self.uri.clone().into(),
            reason: "the lake writer's uploads stopped".into(),
        })
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // The files handed over are still put (each object appears whole or not at all);
        // nothing is handed over after them.
        lock(&self.shared).hung_up = true;
        self.shared.1.notify_all();
        for w in self.workers.drain(..) {
            if let Err(panic) = w.join()
                && !std::thread::panicking()
            {
                std::panic::resume_unwind(panic);
            }
        }
    }
}

/// Marks the uploads broken if an upload thread panics, waking a committer waiting for room
/// or a flush: it then fails rather than waiting for a put that will never end.
struct Stopping<'a>(&'a (Mutex<State>, Condvar));

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            lock(self.0).broken = true;
            self.0.1.notify_all();
        }
    }
}

/// An upload thread: puts the files waiting, in order of hand-over, until the committer hangs
/// up and none is left, or until a put fails (here or on another thread).
fn upload(
    store: &dyn Store,
    shared: &(Mutex<State>, Condvar),
    ahead: Option<&AheadLink>,
    row_keys: &RowKeys,
) {
    let cv = &shared.1;
    loop {
        let (n, file) = {
            let state = lock(shared);
            let mut state = cv
                .wait_while(state, |s| !s.broken && !s.hung_up && s.waiting.is_empty())
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if state.broken {
                return;
            }
            match state.waiting.pop_front() {
                Some(job) => job,
                None => return,
            }
        };
        let len = file.held();
        let result = put_file(store, file, row_keys);
        let mut state = lock(shared);
        match result {
            Ok(()) => state.put_done(n, len, ahead),
            Err(e) => {
                if !state.broken {
                    state.error = Some(e);
                    state.broken = true;
                }
            }
        }
        drop(state);
        cv.notify_all();
    }
}

/// Creates `file` if absent. A name taken already holds exactly these ids (a retried batch,
/// or another writer that read the same input), so they are in the lake; its rows' keys are
/// kept only when this put created it, the rows then in the order they were encoded.
fn put_file(store: &dyn Store, file: File, row_keys: &RowKeys) -> Result<()> {
    match store.put(&file.key, file.bytes, Condition::Absent)? {
        Put::Written { .. } => {
            if let Some(keys) = file.row_keys {
                row_keys.keep(&file.key, keys);
            }
        }
        Put::Conflict => {
            tracing::debug!(key = file.key, "Data file already in the lake (a retried write).");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
