//! The committer's data files on their way into the store, put from a thread of their own:
//! the committer lists, deduplicates and encodes the next day or batch while a file goes up.
//! An S3 put waits on the network and on S3 (a local one on its fsync), and the committer is
//! the one thread every record goes through, so a wait there held up the whole run.
//!
//! Files are put one at a time and in order; the committer hands over the next only once the
//! one before is put, so at most one encoded file waits beside the batch in work. Where puts
//! are quick ([`Store::slow_puts`]: a local directory) there is no thread: the committer puts
//! each file itself, holding none while it encodes the next. A batch is reported committed
//! (to the rollups ahead) only after its files are put, and [`Uploads::flush`] returns only
//! once every file handed over is durable: a commit, and the checkpoint saved after it, never
//! run ahead of the store.

use std::collections::BTreeSet;
use std::sync::mpsc;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

use bytes::Bytes;
use chrono::NaiveDate;

use super::ahead::AheadLink;
use crate::error::{Error, Result};
use crate::store::{Condition, Put, Store};

enum Job {
    /// Create the object if absent.
    Put { key: String, bytes: Bytes },
    /// Every file of batch `seq` is put: tell the rollups ahead.
    Committed { seq: u64, days: BTreeSet<NaiveDate> },
    /// Reply once every job before is done.
    Flush(mpsc::SyncSender<()>),
}

/// Files handed over and not yet put, and whether the thread has stopped taking jobs.
#[derive(Default)]
struct Queue {
    files: usize,
    stopped: bool,
}

/// The committer's end of the upload thread.
pub(super) struct Uploads {
    uri: String,
    /// Where puts are quick: the store and the rollups ahead, called on the committer's thread.
    inline: Option<(Arc<dyn Store>, Option<AheadLink>)>,
    /// Unbounded: only files are limited (by `queue`); a batch's notice or a flush never waits
    /// behind a put to be handed over.
    tx: Option<mpsc::Sender<Job>>,
    queue: Arc<(Mutex<Queue>, Condvar)>,
    worker: Option<JoinHandle<Option<Error>>>,
}

impl Uploads {
    pub(super) fn new(store: Arc<dyn Store>, ahead: Option<AheadLink>) -> Self {
        let uri = store.uri();
        let queue = Arc::new((Mutex::new(Queue::default()), Condvar::new()));
        if !store.slow_puts() {
            return Self { uri, inline: Some((store, ahead)), tx: None, queue, worker: None };
        }
        let (tx, rx) = mpsc::channel::<Job>();
        let shared = queue.clone();
        let worker = std::thread::spawn(move || {
            let _stopping = Stopping(&shared);
            upload(&*store, rx, ahead.as_ref(), &shared)
        });
        Self { uri, inline: None, tx: Some(tx), queue, worker: Some(worker) }
    }

    /// Puts `bytes` under `key` (if absent): where puts are slow, on the thread once the file
    /// before is put, returning at once; else here.
    ///
    /// # Errors
    ///
    /// This file (where puts are quick) or one handed over before could not be put.
    pub(super) fn put(&mut self, key: String, bytes: Bytes) -> Result<()> {
        if let Some((store, _)) = &self.inline {
            return put_absent(&**store, &key, bytes);
        }
        let stopped = {
            let (lock, cv) = &*self.queue;
            let queue = lock.lock().unwrap_or_else(|p| p.into_inner());
            let mut queue = cv
                .wait_while(queue, |q| q.files > 0 && !q.stopped)
                .unwrap_or_else(|p| p.into_inner());
            queue.files += 1;
            queue.stopped
        };
        if stopped {
            return Err(self.failure());
        }
        self.send(Job::Put { key, bytes })
    }

    /// Reports batch `seq`, which wrote `days`, committed once its files are put.
    ///
    /// # Errors
    ///
    /// A file handed over before could not be put.
    pub(super) fn committed(&mut self, seq: u64, days: BTreeSet<NaiveDate>) -> Result<()> {
        if let Some((_, ahead)) = &self.inline {
            if let Some(ahead) = ahead {
                ahead.committed(seq, days);
            }
            return Ok(());
        }
        self.send(Job::Committed { seq, days })
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
        let (reply, done) = mpsc::sync_channel(1);
        self.send(Job::Flush(reply))?;
        done.recv().map_err(|_| self.failure())
    }

    fn send(&mut self, job: Job) -> Result<()> {
        let sent = self.tx.as_ref().is_some_and(|tx| tx.send(job).is_ok());
        if sent { Ok(()) } else { Err(self.failure()) }
    }

    /// The thread's error, once it has stopped.
    fn failure(&mut self) -> Error {
        self.tx = None;
        match self.worker.take().map(JoinHandle::join) {
            Some(Ok(Some(e))) => e,
            Some(Err(panic)) => std::panic::resume_unwind(panic),
            _ => Error::NotALake {
                root: self.uri.clone().into(),
                reason: "the lake writer's uploads stopped".into(),
            },
        }
    }
}

impl Drop for Uploads {
    fn drop(&mut self) {
        // The file being put is finished (an object appears whole or not at all); nothing
        // is handed over after it.
        self.tx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}

/// Marks the thread stopped however it ends (a panic too), waking a committer waiting to hand
/// over a file: it then finds the thread's error.
struct Stopping<'a>(&'a (Mutex<Queue>, Condvar));

impl Drop for Stopping<'_> {
    fn drop(&mut self) {
        let (lock, cv) = self.0;
        lock.lock().unwrap_or_else(|p| p.into_inner()).stopped = true;
        cv.notify_all();
    }
}

/// The upload thread: runs the jobs in order until the committer hangs up, or until a put
/// fails (its error returned; the committer's next hand-over or flush fails with it).
fn upload(
    store: &dyn Store,
    jobs: mpsc::Receiver<Job>,
    ahead: Option<&AheadLink>,
    queue: &(Mutex<Queue>, Condvar),
) -> Option<Error> {
    for job in jobs {
        match job {
            Job::Put { key, bytes } => {
                if let Err(e) = put_absent(store, &key, bytes) {
                    return Some(e);
                }
                let (lock, cv) = queue;
                lock.lock().unwrap_or_else(|p| p.into_inner()).files -= 1;
                cv.notify_all();
            }
            Job::Committed { seq, days } => {
                if let Some(ahead) = ahead {
                    ahead.committed(seq, days);
                }
            }
            Job::Flush(reply) => {
                let _ = reply.send(());
            }
        }
    }
    None
}

/// Creates `key` if absent. A name taken already holds exactly these ids (a retried batch, or
/// another writer that read the same input), so they are in the lake.
fn put_absent(store: &dyn Store, key: &str, bytes: Bytes) -> Result<()> {
    if let Put::Conflict = store.put(key, bytes, Condition::Absent)? {
        tracing::debug!(key, "Data file already in the lake (a retried write).");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
