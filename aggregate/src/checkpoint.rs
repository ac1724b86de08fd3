//! Source checkpoints kept with the lake, one object per shard or object, so that any number
//! of readers (workers on different shards, a backfill beside a stream) save theirs without
//! a lock and without overwriting each other's.
//!
//! Streams: per Kinesis shard, the last sequence number whose record is durable in the lake,
//! and whether the shard is read to its end (`_state/checkpoints/kinesis/<stream>/<shard>.json`).
//! A checkpoint is saved only after the events, spans and quarantine entries of the records
//! it covers are committed, so a restart re-reads at most what was not yet checkpointed; the
//! lake's dedup by event id drops what a re-read finds again. A checkpoint only moves forward:
//! it is replaced only from the version read, and when another reader of the same shard saved
//! a later one meanwhile, the later one stays.
//!
//! S3 sources: one empty record per object ingested, named by a digest of its key and its
//! ETag (`_state/checkpoints/s3/<source>/<key digest>-<etag>.json`), saved after its data is
//! committed: a listing tells what is done, and a replaced object (new ETag) is read again.
//!
//! Rollups owed: a checkpoint makes its records' data final for the source, so a run stopped
//! between a checkpoint and the rollup of the days written would leave those rollups stale
//! with nothing re-read to bring them back. So a checkpointed source records the days it
//! committed data for before saving a checkpoint that covers them
//! (`_state/rollups_owed/<source>.json`), clears them once rolled up, and rolls up whatever
//! an earlier run left there when it starts ([`OwedRollups`]).

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::lake::Lake;
use crate::layout;
use crate::store::{Condition, Put};

/// Attempts to save one shard's checkpoint while other readers save theirs.
const SAVE_ATTEMPTS: usize = 20;

/// Where one shard stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The last sequence number whose record is durable (compared numerically, as Kinesis
    /// sequence numbers are decimal integers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// The shard is closed and was read to its end: its children may be read.
    #[serde(default)]
    pub finished: bool,
}

impl ShardCheckpoint {
    /// The later of two checkpoints of one shard.
    fn max(self, other: ShardCheckpoint) -> ShardCheckpoint {
        let later = |a: &Option<String>, b: &Option<String>| match (a, b) {
            (Some(x), Some(y)) => {
                let key = |s: &str| {
                    (s.trim_start_matches('0').len(), s.trim_start_matches('0').to_owned())
                };
                if key(y) > key(x) { b.clone() } else { a.clone() }
            }
            (None, _) => b.clone(),
            (_, None) => a.clone(),
        };
        ShardCheckpoint {
            sequence: later(&self.sequence, &other.sequence),
            finished: self.finished || other.finished,
        }
    }
}

/// The checkpoints of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCheckpoint {
    /// The stream's name or ARN as given.
    pub stream: String,
    /// Per shard id.
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

/// One shard's saved object.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ShardFile {
    stream: String,
    shard: String,
    #[serde(flatten)]
    checkpoint: ShardCheckpoint,
}

/// Reads and saves the checkpoints of one stream of one lake.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    lake: Lake,
    stream: String,
    /// The version of each shard's object last read or written.
    versions: BTreeMap<String, String>,
}

impl CheckpointStore {
    /// The checkpoints of `stream` (a name or an ARN) in `lake`.
    pub fn kinesis(lake: &Lake, stream: &str) -> Self {
        Self { lake: lake.clone(), stream: stream.to_owned(), versions: BTreeMap::new() }
    }

    /// Where they are, for messages.
    pub fn location(&self) -> String {
        self.lake.store().uri_of(&layout::kinesis_checkpoints(&self.stream))
    }

    /// The saved checkpoints of every shard (none when nothing was saved).
    ///
    /// # Errors
    ///
    /// They cannot be read, or one belongs to another stream (a copied object).
    pub fn load(&mut self) -> Result<StreamCheckpoint> {
        let mut cp = StreamCheckpoint { stream: self.stream.clone(), ..Default::default() };
        for meta in self.lake.store().list(&layout::kinesis_checkpoints(&self.stream))? {
            let Some((file, etag)) = self.lake.read_state::<ShardFile>(&meta.key)? else {
                continue;
            };
            self.check(&meta.key, &file)?;
            self.versions.insert(file.shard.clone(), etag);
            cp.shards.insert(file.shard, file.checkpoint);
        }
        Ok(cp)
    }

    fn check(&self, key: &str, file: &ShardFile) -> Result<()> {
        if file.stream == self.stream
            && layout::kinesis_checkpoint(&self.stream, &file.shard) == key
        {
            return Ok(());
        }
        Err(Error::Corrupt {
            path: self.lake.store().uri_of(key).into(),
            detail: format!(
                "holds stream {:?} shard {:?}, not a shard of {:?}",
                file.stream, file.shard, self.stream
            ),
        })
    }

    /// Saves the checkpoints of `shards`, each only forward: when another reader saved a later
    /// one meanwhile, the later one stays.
    ///
    /// # Errors
    ///
    /// They cannot be written.
    pub fn save(&mut self, shards: &BTreeMap<String, ShardCheckpoint>) -> Result<()> {
        for (shard, cp) in shards {
            self.save_one(shard, cp.clone())?;
        }
        Ok(())
    }

    fn save_one(&mut self, shard: &str, mut cp: ShardCheckpoint) -> Result<()> {
        let key = layout::kinesis_checkpoint(&self.stream, shard);
        for _ in 0..SAVE_ATTEMPTS {
            let file = ShardFile {
                stream: self.stream.clone(),
                shard: shard.to_owned(),
                checkpoint: cp.clone(),
            };
            let cond = Condition::replacing(self.versions.get(shard).map(String::as_str));
            match self.lake.write_state(&key, &file, cond)? {
                Put::Written { etag } => {
                    self.versions.insert(shard.to_owned(), etag);
                    return Ok(());
                }
                Put::Conflict => {
                    // Another reader of this shard saved: keep the later of the two.
                    match self.lake.read_state::<ShardFile>(&key)? {
                        Some((theirs, etag)) => {
                            self.check(&key, &theirs)?;
                            self.versions.insert(shard.to_owned(), etag);
                            let merged = cp.clone().max(theirs.checkpoint.clone());
                            if merged == theirs.checkpoint {
                                return Ok(());
                            }
                            cp = merged;
                        }
                        None => {
                            self.versions.remove(shard);
                        }
                    }
                }
            }
        }
        Err(Error::Corrupt {
            path: self.lake.store().uri_of(&key).into(),
            detail: format!("other readers kept saving it through {SAVE_ATTEMPTS} attempts"),
        })
    }
}

/// Reads and records which objects of one S3 source are ingested.
#[derive(Debug, Clone)]
pub struct ObjectsStore {
    lake: Lake,
    source: String,
}

impl ObjectsStore {
    /// The records of `source` (`s3://bucket/prefix`) in `lake`.
    pub fn s3(lake: &Lake, source: &str) -> Self {
        Self { lake: lake.clone(), source: source.to_owned() }
    }

    /// The objects done, as `(key digest, etag)` names: see [`ObjectsStore::is_done`].
    ///
    /// # Errors
    ///
    /// The records cannot be listed.
    pub fn load(&self) -> Result<BTreeSet<String>> {
        let prefix = layout::s3_objects_done(&self.source);
        Ok(self
            .lake
            .store()
            .list(&prefix)?
            .into_iter()
            .filter_map(|o| o.key.strip_prefix(&prefix)?.strip_suffix(".json").map(str::to_owned))
            .collect())
    }

    /// True when `done` (from [`ObjectsStore::load`]) records the object `key` at `etag`.
    pub fn is_done(done: &BTreeSet<String>, key: &str, etag: &str) -> bool {
        done.contains(&layout::s3_object_done_name(key, etag))
    }

    /// Records the object `key` at `etag` as ingested.
    ///
    /// # Errors
    ///
    /// The record cannot be written.
    pub fn save(&self, key: &str, etag: &str) -> Result<()> {
        let name = layout::s3_object_done_name(key, etag);
        let record = format!("{}{name}.json", layout::s3_objects_done(&self.source));
        let body =
            serde_json::json!({ "source": self.source, "key": key, "etag": etag }).to_string();
        self.lake.store().put(&record, Bytes::from(body), Condition::Always)?;
        Ok(())
    }
}

/// The saved object of [`OwedRollups`].
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct OwedFile {
    source: String,
    days: BTreeSet<NaiveDate>,
}

/// The days one checkpointed source (a Kinesis stream, an S3 prefix) committed data for and
/// has not rolled up yet. Written only when the set grows or shrinks, replaced only from the
/// version read (a conflict reads the other run's days and keeps both).
#[derive(Debug, Clone)]
pub struct OwedRollups {
    lake: Lake,
    source: String,
    key: String,
    /// The version last read or written.
    version: Option<String>,
    /// The days as last read or written.
    saved: BTreeSet<NaiveDate>,
}

impl OwedRollups {
    /// The ledger of `source` (`kinesis://stream`, `s3://bucket/prefix`) in `lake`.
    pub fn new(lake: &Lake, source: &str) -> Self {
        Self {
            lake: lake.clone(),
            source: source.to_owned(),
            key: layout::rollups_owed(source),
            version: None,
            saved: BTreeSet::new(),
        }
    }

    /// The days an earlier run owes.
    ///
    /// # Errors
    ///
    /// The ledger cannot be read.
    pub fn load(&mut self) -> Result<BTreeSet<NaiveDate>> {
        let read = self.lake.read_state::<OwedFile>(&self.key)?;
        (self.saved, self.version) = match read {
            Some((f, etag)) => (f.days, Some(etag)),
            None => (BTreeSet::new(), None),
        };
        Ok(self.saved.clone())
    }

    /// Records `days` as owed (before a checkpoint that covers their data is saved); writes
    /// only when one is not recorded yet.
    ///
    /// # Errors
    ///
    /// The ledger cannot be written.
    pub fn owe(&mut self, days: &BTreeSet<NaiveDate>) -> Result<()> {
        if days.is_subset(&self.saved) {
            return Ok(());
        }
        self.update(|saved| saved.extend(days.iter().copied()))
    }

    /// Clears `days`, whose rollups are current now.
    ///
    /// # Errors
    ///
    /// The ledger cannot be written.
    pub fn settle(&mut self, days: &BTreeSet<NaiveDate>) -> Result<()> {
        if self.saved.is_disjoint(days) {
            return Ok(());
        }
        self.update(|saved| saved.retain(|d| !days.contains(d)))
    }

    fn update(&mut self, change: impl Fn(&mut BTreeSet<NaiveDate>)) -> Result<()> {
        for _ in 0..SAVE_ATTEMPTS {
            let mut days = self.saved.clone();
            change(&mut days);
            let file = OwedFile { source: self.source.clone(), days };
            let cond = Condition::replacing(self.version.as_deref());
            match self.lake.write_state(&self.key, &file, cond)? {
                Put::Written { etag } => {
                    (self.saved, self.version) = (file.days, Some(etag));
                    return Ok(());
                }
                // Another run of the same source changed it: start from its days.
                Put::Conflict => {
                    self.load()?;
                }
            }
        }
        Err(Error::Corrupt {
            path: self.lake.store().uri_of(&self.key).into(),
            detail: format!("other runs kept changing it through {SAVE_ATTEMPTS} attempts"),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_checkpoints_load_back_and_only_move_forward() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let mut a = CheckpointStore::kinesis(&lake, "usage/../../etc");
        assert!(a.load().unwrap().shards.is_empty());
        let cp = |seq: &str, finished| ShardCheckpoint { sequence: Some(seq.into()), finished };
        let mut shards = BTreeMap::new();
        shards.insert("shardId-000000000001".to_owned(), cp("4960", false));
        shards.insert("shardId-000000000002".to_owned(), cp("17", true));
        a.save(&shards).unwrap();
        // A second reader of the same shards loads them, then the first moves shard 1 on.
        let mut b = CheckpointStore::kinesis(&lake, "usage/../../etc");
        assert_eq!(b.load().unwrap().shards, shards);
        let mut later = BTreeMap::new();
        later.insert("shardId-000000000001".to_owned(), cp("10000", false));
        a.save(&later).unwrap();
        // b's save of an older position loses to a's later one.
        let mut older = BTreeMap::new();
        older.insert("shardId-000000000001".to_owned(), cp("5000", false));
        b.save(&older).unwrap();
        let mut fresh = CheckpointStore::kinesis(&lake, "usage/../../etc");
        let got = fresh.load().unwrap();
        assert_eq!(got.shards["shardId-000000000001"], cp("10000", false));
        assert_eq!(got.shards["shardId-000000000002"], cp("17", true));
        // Another stream's checkpoints are elsewhere.
        assert!(CheckpointStore::kinesis(&lake, "other").load().unwrap().shards.is_empty());
        assert!(a.location().contains("_state/checkpoints/kinesis/"));
    }

    #[test]
    fn objects_done_are_recorded_by_key_and_etag() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let store = ObjectsStore::s3(&lake, "s3://usage/firehose/");
        assert!(store.load().unwrap().is_empty());
        store.save("firehose/a.gz", "9b2cf535f27731c974343645a3985328").unwrap();
        let done = store.load().unwrap();
        assert!(ObjectsStore::is_done(&done, "firehose/a.gz", "9b2cf535f27731c974343645a3985328"));
        assert!(
            !ObjectsStore::is_done(&done, "firehose/a.gz", "other-etag"),
            "replaced: read again"
        );
        assert!(ObjectsStore::s3(&lake, "s3://usage/other/").load().unwrap().is_empty());
    }

    #[test]
    fn owed_rollups_grow_shrink_and_keep_another_runs_days() {
        let dir = tempfile::tempdir().unwrap();
        let lake = Lake::open_dir(dir.path()).unwrap();
        let d = |n: u32| NaiveDate::from_ymd_opt(2026, 11, n).unwrap();
        let set = |v: &[u32]| v.iter().map(|&n| d(n)).collect::<BTreeSet<_>>();
        let mut a = OwedRollups::new(&lake, "kinesis://usage");
        assert!(a.load().unwrap().is_empty());
        a.owe(&set(&[1, 2])).unwrap();
        // Another run of the same source, started meanwhile, owes day 3.
        let mut b = OwedRollups::new(&lake, "kinesis://usage");
        assert_eq!(b.load().unwrap(), set(&[1, 2]));
        b.owe(&set(&[3])).unwrap();
        // a's write conflicts, reads b's days and keeps them.
        a.owe(&set(&[4])).unwrap();
        a.settle(&set(&[1, 3])).unwrap();
        let mut fresh = OwedRollups::new(&lake, "kinesis://usage/");
        assert_eq!(fresh.load().unwrap(), set(&[2, 4]));
        // Nothing new: nothing written (the version stays).
        let v = fresh.version.clone();
        fresh.owe(&set(&[2])).unwrap();
        fresh.settle(&set(&[9])).unwrap();
        assert_eq!(fresh.version, v);
        assert!(OwedRollups::new(&lake, "s3://usage/x").load().unwrap().is_empty());
        assert!(layout::rollups_owed("kinesis://usage").starts_with("_state/rollups_owed/"));
    }
}
