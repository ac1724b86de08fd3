//! The decode stage on several threads, delivering outcomes in input order.
//!
//! One reader thread splits the sources into units; `workers` threads decode units; the
//! caller's thread receives the results in input order and hands them to a [`Sink`]. Channels
//! are bounded, so memory stays bounded however large the input: a slow sink slows the workers,
//! which slows the reader.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use agentmeter_schemas::SourceUri;
use crossbeam_channel::bounded;

use crate::decode::{Decoded, Decoder, Outcome};
use crate::source::{SourceSpec, Unit, read_file};

/// Receives the outcomes of a run, in input order.
pub trait Sink {
    /// The sink's own error, which stops the run.
    type Error;

    /// A source is about to be read.
    fn source_started(&mut self, source: &SourceSpec) -> Result<(), Self::Error>;

    /// A replayed quarantine entry came from `source`.
    fn lineage(&mut self, source: &SourceUri) -> Result<(), Self::Error>;

    /// One record's outcome.
    fn outcome(&mut self, outcome: Outcome) -> Result<(), Self::Error>;

    /// A source was read to its end.
    fn source_finished(&mut self, source: &SourceSpec) -> Result<(), Self::Error>;
}

/// Why a run stopped.
#[derive(Debug, thiserror::Error)]
pub enum RunError<E> {
    /// A source could not be read.
    #[error("cannot read {}: {error}", agentmeter_schemas::SourceUri::escape(&path.to_string_lossy()))]
    Read {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        error: io::Error,
    },
    /// The sink failed.
    #[error(transparent)]
    Sink(E),
}

enum Job {
    Start(usize),
    Unit(Unit),
    Finish(usize),
    Failed(usize, io::Error),
}

enum Done {
    Start(usize),
    Decoded(Decoded),
    Finish(usize),
    Failed(usize, io::Error),
}

/// Runs the decode stage over `sources`, adding bytes read to `progress`.
///
/// # Errors
///
/// The first source that cannot be read, or the first sink error. Outcomes before it have
/// been delivered.
pub fn run<S: Sink>(
    sources: &[SourceSpec],
    decoder: &Decoder,
    workers: usize,
    progress: &AtomicU64,
    sink: &mut S,
) -> Result<(), RunError<S::Error>> {
    let workers = workers.max(1);
    let (job_tx, job_rx) = bounded::<(u64, Job)>(workers * 4);
    let (done_tx, done_rx) = bounded::<(u64, Done)>(workers * 4);
    let stop = AtomicBool::new(false);
    std::thread::scope(|scope| {
        scope.spawn(|| {
            let mut seq = 0u64;
            let mut send = |job: Job| -> io::Result<()> {
                if stop.load(Ordering::Relaxed) {
                    return Err(io::Error::other("stopped"));
                }
                job_tx.send((seq, job)).map_err(|_| io::Error::other("stopped"))?;
                seq += 1;
                Ok(())
            };
            for (i, spec) in sources.iter().enumerate() {
                if send(Job::Start(i)).is_err() {
                    return;
                }
                let result =
                    read_file(spec, decoder.config(), Some(progress), &mut |u| send(Job::Unit(u)));
                let last = match result {
                    Ok(()) => Job::Finish(i),
                    Err(_) if stop.load(Ordering::Relaxed) => return,
                    Err(e) => Job::Failed(i, e),
                };
                let failed = matches!(last, Job::Failed(..));
                if send(last).is_err() || failed {
                    return;
                }
            }
            drop(job_tx);
        });
        for _ in 0..workers {
            let job_rx = job_rx.clone();
            let done_tx = done_tx.clone();
            scope.spawn(move || {
                for (seq, job) in job_rx {
                    let done = match job {
                        Job::Start(i) => Done::Start(i),
                        Job::Finish(i) => Done::Finish(i),
                        Job::Failed(i, e) => Done::Failed(i, e),
                        Job::Unit(u) => {
                            let mut out = Decoded::default();
                            u.decode(decoder, false, &mut out);
                            Done::Decoded(out)
                        }
                    };
                    if done_tx.send((seq, done)).is_err() {
                        return;
                    }
                }
            });
        }
        drop(job_rx);
        drop(done_tx);
        let result = deliver(&done_rx, sources, sink);
        if result.is_err() {
            stop.store(true, Ordering::Relaxed);
        }
        // Unblock and end the other threads.
        drop(done_rx);
        result
    })
}

fn deliver<S: Sink>(
    done_rx: &crossbeam_channel::Receiver<(u64, Done)>,
    sources: &[SourceSpec],
    sink: &mut S,
) -> Result<(), RunError<S::Error>> {
    let mut pending = BTreeMap::new();
    let mut next = 0u64;
    for (seq, done) in done_rx {
        pending.insert(seq, done);
        while let Some(done) = pending.remove(&next) {
            next += 1;
            match done {
                Done::Start(i) => sink.source_started(&sources[i]).map_err(RunError::Sink)?,
                Done::Finish(i) => sink.source_finished(&sources[i]).map_err(RunError::Sink)?,
                Done::Failed(i, error) => {
                    return Err(RunError::Read { path: sources[i].path.clone(), error });
                }
                Done::Decoded(d) => {
                    for s in &d.lineage {
                        sink.lineage(s).map_err(RunError::Sink)?;
                    }
                    for o in d.outcomes {
                        sink.outcome(o).map_err(RunError::Sink)?;
                    }
                }
            }
        }
    }
    Ok(())
}
