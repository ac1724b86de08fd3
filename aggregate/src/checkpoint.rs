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

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
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
}
