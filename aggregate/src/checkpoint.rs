//! Source checkpoints kept with the lake. Streams: per Kinesis stream, the last sequence number of
//! each shard whose data is durable in the lake, and which shards are read to their end.
//!
//! A checkpoint is saved only after the events, spans and quarantine entries of the records
//! it covers are committed, so a restart re-reads at most what was not yet checkpointed; the
//! lake's dedup by event id drops what a re-read finds again. The file is replaced atomically
//! (`_state/checkpoints/kinesis-<stream>-<digest>.json`). S3 sources: the objects (key and
//! ETag) already ingested, saved after their data is committed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_at};
use crate::layout::Layout;

/// Where one shard stands.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardCheckpoint {
    /// The last sequence number whose record is durable (opaque: compared only by the API).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<String>,
    /// The shard is closed and was read to its end: its children may be read.
    #[serde(default)]
    pub finished: bool,
}

/// The checkpoints of one stream.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamCheckpoint {
    /// The stream's name or ARN as given.
    pub stream: String,
    /// Per shard id.
    pub shards: BTreeMap<String, ShardCheckpoint>,
}

/// Reads and saves the checkpoints of one stream of one lake.
#[derive(Debug, Clone)]
pub struct CheckpointStore {
    path: PathBuf,
    stream: String,
}

impl CheckpointStore {
    /// The store of `stream` (a name or an ARN) in the lake laid out as `layout`.
    pub fn kinesis(layout: &Layout, stream: &str) -> Self {
        Self { path: layout.kinesis_checkpoint(stream), stream: stream.to_owned() }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The saved checkpoints, or empty ones when none were saved.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not a checkpoint of this stream.
    pub fn load(&self) -> Result<StreamCheckpoint> {
        let cp = read_json::<StreamCheckpoint>(&self.path, "a stream checkpoint")?.unwrap_or_else(
            || StreamCheckpoint { stream: self.stream.clone(), ..Default::default() },
        );
        owned_by(&self.path, "stream", &cp.stream, &self.stream)?;
        Ok(cp)
    }

    /// Replaces the saved checkpoints (temporary file, fsync, rename).
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn save(&self, cp: &StreamCheckpoint) -> Result<()> {
        write_json(&self.path, cp)
    }
}

/// The parsed file, or `None` when there is none.
fn read_json<T: serde::de::DeserializeOwned>(
    path: &std::path::Path,
    what: &str,
) -> Result<Option<T>> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_at(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| Error::Corrupt { path: path.to_owned(), detail: format!("not {what}: {e}") })
}

/// Refuses a state file of another stream or source (a copied or renamed file).
fn owned_by(path: &std::path::Path, kind: &str, holds: &str, wanted: &str) -> Result<()> {
    if holds == wanted {
        return Ok(());
    }
    Err(Error::Corrupt {
        path: path.to_owned(),
        detail: format!("holds {kind} {holds:?}, not {wanted:?}"),
    })
}

/// Replaces the file atomically (temporary file, fsync, rename).
fn write_json<T: Serialize>(path: &std::path::Path, value: &T) -> Result<()> {
    let body = serde_json::to_vec_pretty(value).map_err(|e| io_at(path)(e.into()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_at(dir))?;
    }
    crate::fsio::write_atomic(path, &body)
}

/// The objects of one S3 source already ingested: key to ETag.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectsDone {
    /// `s3://bucket/prefix` as given.
    pub source: String,
    /// Key to the ETag that was ingested (a replaced object has another ETag and is read
    /// again).
    pub objects: BTreeMap<String, String>,
}

/// Reads and saves which objects of one S3 source are done
/// (`_state/checkpoints/s3-<prefix>-<digest>.json`).
#[derive(Debug, Clone)]
pub struct ObjectsStore {
    path: PathBuf,
    source: String,
}

impl ObjectsStore {
    /// The store of `source` (`s3://bucket/prefix`) in the lake laid out as `layout`.
    pub fn s3(layout: &Layout, source: &str) -> Self {
        Self { path: layout.s3_checkpoint(source), source: source.to_owned() }
    }

    /// The file.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The objects done, or none.
    ///
    /// # Errors
    ///
    /// The file cannot be read or belongs to another source.
    pub fn load(&self) -> Result<ObjectsDone> {
        let done = read_json::<ObjectsDone>(&self.path, "a list of S3 objects done")?
            .unwrap_or_else(|| ObjectsDone { source: self.source.clone(), ..Default::default() });
        owned_by(&self.path, "source", &done.source, &self.source)?;
        Ok(done)
    }

    /// Replaces the saved list (temporary file, fsync, rename).
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn save(&self, done: &ObjectsDone) -> Result<()> {
        write_json(&self.path, done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_checkpoints_load_back_and_belong_to_their_stream() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let store = CheckpointStore::kinesis(&layout, "usage/../../etc");
        assert!(store.path().starts_with(dir.path().join("_state/checkpoints")));
        assert_eq!(store.path().parent().unwrap(), dir.path().join("_state/checkpoints"));
        assert_eq!(store.load().unwrap().shards.len(), 0);
        let mut cp = store.load().unwrap();
        cp.shards.insert(
            "shardId-000000000001".into(),
            ShardCheckpoint { sequence: Some("4960".into()), finished: true },
        );
        store.save(&cp).unwrap();
        assert_eq!(store.load().unwrap(), cp);
        let other = CheckpointStore::kinesis(&layout, "other");
        assert_ne!(other.path(), store.path());
        std::fs::copy(store.path(), other.path()).unwrap();
        let err = other.load().unwrap_err().to_string();
        assert!(err.contains("holds stream \"usage/../../etc\", not \"other\""), "{err}");
    }

    #[test]
    fn objects_done_load_back_and_belong_to_their_source() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let store = ObjectsStore::s3(&layout, "s3://usage/firehose/");
        assert_eq!(store.path().parent().unwrap(), dir.path().join("_state/checkpoints"));
        let mut done = store.load().unwrap();
        assert!(done.objects.is_empty());
        done.objects.insert("firehose/a.gz".into(), "9b2cf535f27731c974343645a3985328".into());
        store.save(&done).unwrap();
        assert_eq!(store.load().unwrap(), done);
        let other = ObjectsStore::s3(&layout, "s3://usage/other/");
        std::fs::copy(store.path(), other.path()).unwrap();
        assert!(other.load().unwrap_err().to_string().contains("holds source"));
    }
}
