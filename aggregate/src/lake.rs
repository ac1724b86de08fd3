//! A lake: its store, its format marker, and reading its tables back.
//!
//! A lake takes no lock. Any number of processes write to it at once: data files are created
//! only if absent under names derived from their content, rollups and state are replaced only
//! from the version read (see [`store`](crate::store)), and readers see whole objects only.

use std::sync::Arc;

use agentmeter_schemas::tables::{AGENT_INVOCATIONS, InvocationRow, agent_invocations_from_batch};
use agentmeter_schemas::tables::{
    HourlyKey, HourlyMeasures, TENANT_HOURLY, TableDef, TenantHour, USAGE_HOURLY,
    hourly_from_batch, tenant_hourly_from_batch,
};
use agentmeter_schemas::{AgentSpan, QuarantineEntry, UsageEvent};
use arrow_array::RecordBatch;
use bytes::Bytes;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::layout::{self, parse_partition};
use crate::record::LakeRecord;
use crate::store::{Batches, Condition, Fetch, LocalStore, ObjectMeta, Put, Store};

/// The lake format this version writes and reads.
pub const LAKE_FORMAT_VERSION: u32 = 2;

#[derive(Debug, Serialize, Deserialize)]
struct LakeMarker {
    format: String,
    version: u32,
}

const MARKER_FORMAT: &str = "agentmeter-lake";

/// Files [`Lake::read_ahead`] reads ahead of the one taken where each read is a round trip.
pub(crate) const READ_AHEAD: usize = 4;

/// Bytes of data files [`Lake::read_ahead`] holds read or in flight at most, the one taken
/// included (which alone may hold more): a file read whole is in memory until taken.
pub(crate) const READ_AHEAD_BYTES: u64 = 16 << 20;

/// A lake. Cheap to clone; shared by every thread of a process.
#[derive(Debug, Clone)]
pub struct Lake {
    store: Arc<dyn Store>,
    /// The row keys of the data files this process put, for its own rollups.
    row_keys: Arc<crate::row_keys::RowKeys>,
}

/// The lake's name in messages.
fn not_a_lake(store: &dyn Store, reason: impl Into<String>) -> Error {
    Error::NotALake { root: store.uri().into(), reason: reason.into() }
}

/// Whether a listed object of a partition is one of its data files (not a writer's temporary
/// or hidden file).
pub(crate) fn is_data_file(o: &ObjectMeta) -> bool {
    o.key.ends_with(".parquet") && !o.name().starts_with(['.', '_'])
}

impl Lake {
    /// Opens the lake in `store` for reading and writing, creating it when the store is empty
    /// (another process creating it at the same moment writes the same marker).
    ///
    /// # Errors
    ///
    /// [`Error::NotALake`] when the store holds other things and no marker, or a marker of
    /// another version; a store error.
    pub fn open(store: Arc<dyn Store>) -> Result<Self> {
        let lake = Self { store, row_keys: Arc::default() };
        if !lake.check_marker()? {
            // Objects whose names start with `.` (a mirror's manifest, an editor's swap file)
            // are not data, nor is `_state/` of another process creating the lake right now.
            let foreign = lake
                .store
                .list("")?
                .into_iter()
                .any(|o| !o.key.starts_with('.') && !o.key.starts_with(layout::STATE_DIR));
            // Another process may have created the lake and written data between our two
            // reads: its marker precedes its data, so a second look finds it.
            if foreign && !lake.check_marker()? {
                return Err(not_a_lake(
                    &*lake.store,
                    "it is not empty and is not an agentmeter lake (no _state/lake.json); use a new or empty location",
                ));
            }
            let body = serde_json::to_vec_pretty(&LakeMarker {
                format: MARKER_FORMAT.into(),
                version: LAKE_FORMAT_VERSION,
            })
            .map_err(|e| not_a_lake(&*lake.store, e.to_string()))?;
            if lake.store.put(layout::MARKER, Bytes::from(body), Condition::Absent)?
                == Put::Conflict
                && !lake.check_marker()?
            {
                return Err(not_a_lake(&*lake.store, "its marker vanished while it was created"));
            }
        }
        Ok(lake)
    }

    /// Opens a lake that must exist already (a command that reads it).
    ///
    /// # Errors
    ///
    /// [`Error::NotALake`] when there is no lake there.
    pub fn existing(store: Arc<dyn Store>) -> Result<Self> {
        let lake = Self { store, row_keys: Arc::default() };
        if lake.check_marker()? {
            Ok(lake)
        } else {
            Err(not_a_lake(&*lake.store, "no agentmeter lake is there (no _state/lake.json)"))
        }
    }

    /// A lake in a local directory (created when new or empty).
    ///
    /// # Errors
    ///
    /// As [`Lake::open`].
    pub fn open_dir(root: impl Into<std::path::PathBuf>) -> Result<Self> {
        let store = LocalStore::new(root);
        sweep(&store)?;
        Self::open(Arc::new(store))
    }

    /// A lake that must exist already in a local directory. Temporary files of writers that
    /// died are removed, as by [`Lake::open_dir`]: whichever command comes next (a `rollup`,
    /// a `compact`, an `invoice`) cleans up after a killed one.
    ///
    /// # Errors
    ///
    /// As [`Lake::existing`]; a temporary file that cannot be removed.
    pub fn existing_dir(root: impl Into<std::path::PathBuf>) -> Result<Self> {
        let store = LocalStore::new(root);
        let lake = Self::existing(Arc::new(store.clone()))?;
        sweep(&store)?;
        Ok(lake)
    }

    /// True when the marker is there and of this version.
    fn check_marker(&self) -> Result<bool> {
        let Some(marker) = self.store.get(layout::MARKER)? else { return Ok(false) };
        let bad = |reason: String| not_a_lake(&*self.store, reason);
        let m: LakeMarker = serde_json::from_slice(&marker.bytes)
            .map_err(|e| bad(format!("_state/lake.json is unreadable: {e}")))?;
        if m.format != MARKER_FORMAT {
            return Err(bad(format!("_state/lake.json names format {:?}", m.format)));
        }
        // Version 1 lakes have the same tables; what changed is how rollups are tracked,
        // which version 2 reads from the rollups themselves.
        if !(1..=LAKE_FORMAT_VERSION).contains(&m.version) {
            return Err(bad(format!(
                "lake format version {} is not one this agentmeter reads (1 to {})",
                m.version, LAKE_FORMAT_VERSION
            )));
        }
        Ok(true)
    }

    /// The store.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Keeps, within `bytes`, the identity keys of the rows of the `usage_events` files this
    /// process puts (16 bytes a row), so that its own rollups of those files take them rather
    /// than reading and hashing every `event_id` again: for a run that rolls up what it
    /// writes. Shared by every clone of this lake.
    pub fn keep_row_keys(&self, bytes: usize) {
        self.row_keys.set_budget(bytes);
    }

    pub(crate) fn row_keys(&self) -> &Arc<crate::row_keys::RowKeys> {
        &self.row_keys
    }

    /// The lake's URI, for messages.
    pub fn uri(&self) -> String {
        self.store.uri()
    }

    /// The partitions of `table`, in date order.
    ///
    /// # Errors
    ///
    /// The table cannot be listed.
    pub fn partitions(&self, table: &str) -> Result<Vec<NaiveDate>> {
        Ok(self
            .store
            .list_dirs(&layout::table(table))?
            .iter()
            .filter_map(|n| parse_partition(n))
            .collect())
    }

    /// The Parquet files of one partition, in name order.
    ///
    /// # Errors
    ///
    /// The partition cannot be listed.
    pub fn files(&self, table: &str, dt: NaiveDate) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .store
            .list(&layout::partition(table, dt))?
            .into_iter()
            .filter(is_data_file)
            .collect())
    }

    /// The named columns of one Parquet file (the string columns in `dictionaries` as
    /// dictionary arrays), a batch at a time as they are taken; a file gone since it was
    /// listed (compacted away) is [`Error::Vanished`], for the caller to list again.
    ///
    /// # Errors
    ///
    /// The file cannot be read (and each batch, when it cannot be decoded).
    pub fn read(
        &self,
        file: &ObjectMeta,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
        fetch: Fetch,
    ) -> Result<Batches> {
        self.store
            .read_parquet(&file.key, Some(file), columns, dictionaries, fetch)?
            .ok_or_else(|| Error::Vanished { uri: self.store.uri_of(&file.key) })
    }

    /// `read` (a [`Lake::read`], and what goes with it) of each of `files`, handed to `f` in
    /// their order. Where each read is a round trip (S3), the reads of the next files are in
    /// flight while `f` takes one: up to `READ_AHEAD` files beyond it, within
    /// `READ_AHEAD_BYTES`, so a day of many files waits about a round trip per few files
    /// rather than one per file. The first error `f` returns ends the reading (reads in
    /// flight are finished and dropped).
    ///
    /// # Errors
    ///
    /// What `f` returns; a read's own error is `f`'s to handle.
    pub fn read_ahead<'f, O: Send>(
        &self,
        files: &'f [ObjectMeta],
        read: impl Fn(&'f ObjectMeta) -> O + Sync,
        mut f: impl FnMut(&'f ObjectMeta, O) -> Result<()>,
    ) -> Result<()> {
        if !self.store.round_trips() || files.len() < 2 {
            return files.iter().try_for_each(|file| f(file, read(file)));
        }
        std::thread::scope(|s| {
            let read = &read;
            let mut ahead = std::collections::VecDeque::new();
            let (mut next, mut bytes) = (0, 0u64);
            for file in files {
                // The current file's read, then the next ones within the bounds, are sent
                // before `f` takes the current one.
                while let Some(more) = files.get(next).filter(|m| {
                    ahead.is_empty()
                        || (ahead.len() <= READ_AHEAD
                            && bytes.saturating_add(m.size) <= READ_AHEAD_BYTES)
                }) {
                    bytes += more.size;
                    ahead.push_back((more.size, s.spawn(move || read(more))));
                    next += 1;
                }
                let (size, done) = ahead.pop_front().expect("the current file's read was sent");
                bytes -= size;
                let done = done.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
                f(file, done)?;
            }
            Ok(())
        })
    }

    /// Every event of one `usage_events` partition (each id once).
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn events(&self, dt: NaiveDate) -> Result<Vec<UsageEvent>> {
        self.records(dt)
    }

    /// Every span of one `agent_spans` partition (each span once).
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn spans(&self, dt: NaiveDate) -> Result<Vec<AgentSpan>> {
        self.records(dt)
    }

    /// Every record of one partition of `R`'s table, each identity once: a copy another
    /// writer stored too is counted once, the copy in the first file by name kept.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn records<R: LakeRecord>(&self, dt: NaiveDate) -> Result<Vec<R>> {
        let mut seen = crate::writer::DigestSet::default();
        let mut out = Vec::new();
        self.for_each_batch::<R>(dt, |records| {
            out.extend(records.into_iter().filter(|r| seen.insert(r.identity().key())));
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with the records of each file of one partition of `R`'s table, a file at a
    /// time, as stored (a record two writers stored is in two files until compaction).
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table, or `f` fails.
    pub fn for_each_batch<R: LakeRecord>(
        &self,
        dt: NaiveDate,
        mut f: impl FnMut(Vec<R>) -> Result<()>,
    ) -> Result<()> {
        let files = self.files(R::TABLE, dt)?;
        self.read_ahead(
            &files,
            |file| self.read(file, None, &[], Fetch::Whole),
            |file, batches| {
                for batch in batches? {
                    let batch = batch?;
                    let records = R::from_batch(&batch)
                        .map_err(|source| Error::Arrow { path: file.key.clone().into(), source })?;
                    f(records)?;
                }
                Ok(())
            },
        )
    }

    /// The batches of a one-file partition (rollups, derived tables), or none.
    fn partition_batches(&self, key: &str) -> Result<Vec<RecordBatch>> {
        match self.store.read_parquet(key, None, None, &[], Fetch::Whole)? {
            Some(batches) => batches.collect(),
            None => Ok(Vec::new()),
        }
    }

    /// Every row of one `agent_invocations` partition.
    ///
    /// # Errors
    ///
    /// The file cannot be read or does not match the table.
    pub fn invocations(&self, dt: NaiveDate) -> Result<Vec<InvocationRow>> {
        let key = layout::partition_file(AGENT_INVOCATIONS, dt);
        let mut out = Vec::new();
        for batch in self.partition_batches(&key)? {
            out.extend(
                agent_invocations_from_batch(&batch)
                    .map_err(|source| Error::Arrow { path: key.clone().into(), source })?,
            );
        }
        Ok(out)
    }

    /// Every row of one `usage_hourly` partition.
    ///
    /// # Errors
    ///
    /// The file cannot be read or does not match the table.
    pub fn hourly(&self, dt: NaiveDate) -> Result<Vec<(HourlyKey, HourlyMeasures)>> {
        let key = layout::partition_file(USAGE_HOURLY, dt);
        let mut out = Vec::new();
        for batch in self.partition_batches(&key)? {
            out.extend(
                hourly_from_batch(&batch)
                    .map_err(|source| Error::Arrow { path: key.clone().into(), source })?,
            );
        }
        Ok(out)
    }

    /// Every row of one `tenant_hourly` partition.
    ///
    /// # Errors
    ///
    /// The file cannot be read or does not match the table.
    pub fn tenant_hourly(&self, dt: NaiveDate) -> Result<Vec<TenantHour>> {
        let key = layout::partition_file(TENANT_HOURLY, dt);
        let mut out = Vec::new();
        for batch in self.partition_batches(&key)? {
            out.extend(
                tenant_hourly_from_batch(&batch)
                    .map_err(|source| Error::Arrow { path: key.clone().into(), source })?,
            );
        }
        Ok(out)
    }

    /// Every row of one partition of a table with its own partitioning, as record batches.
    ///
    /// # Errors
    ///
    /// The file cannot be read.
    pub fn read_partition(&self, table: &TableDef, at: NaiveDate) -> Result<Vec<RecordBatch>> {
        self.partition_batches(&layout::partition_file_of(table, at))
    }

    /// Replaces one partition of a derived table (such as `invoice_lines`) with a single file
    /// holding `batch`; an empty batch removes it. Returns the object's URI. The content is
    /// a function of what the command read, so the last writer's is as good as any.
    ///
    /// # Errors
    ///
    /// The object cannot be written.
    pub fn replace_partition(
        &self,
        table: &TableDef,
        at: NaiveDate,
        batch: &RecordBatch,
        sorted_by: &[usize],
    ) -> Result<String> {
        let key = layout::partition_file_of(table, at);
        if batch.num_rows() == 0 {
            self.store.delete(&key)?;
        } else {
            let bytes = crate::parquet_io::encode(
                &key,
                (table.schema)(),
                crate::parquet_io::properties(sorted_by, &[]),
                std::slice::from_ref(batch),
            )?;
            self.store.put(&key, bytes, Condition::Always)?;
        }
        Ok(self.store.uri_of(&key))
    }

    /// The quarantine files, in name order.
    ///
    /// # Errors
    ///
    /// The quarantine cannot be listed.
    pub fn quarantine_files(&self) -> Result<Vec<ObjectMeta>> {
        Ok(self
            .store
            .list(&layout::quarantine())?
            .into_iter()
            .filter(|o| !o.key[layout::quarantine().len()..].contains('/'))
            .filter(|o| o.key.ends_with(".jsonl") && !o.name().starts_with('.'))
            .collect())
    }

    /// Every quarantine entry.
    ///
    /// # Errors
    ///
    /// A file cannot be read or holds a line that is not an entry.
    pub fn quarantine_entries(&self) -> Result<Vec<QuarantineEntry>> {
        let mut out = Vec::new();
        for file in self.quarantine_files()? {
            let Some(object) = self.store.get(&file.key)? else { continue };
            for line in object.bytes.split(|b| *b == b'\n').filter(|l| !l.trim_ascii().is_empty()) {
                let entry = serde_json::from_slice(line).map_err(|e| Error::Corrupt {
                    path: self.store.uri_of(&file.key).into(),
                    detail: format!("not a quarantine entry: {e}"),
                })?;
                out.push(entry);
            }
        }
        Ok(out)
    }

    /// A JSON state object and its version, or `None`.
    ///
    /// # Errors
    ///
    /// It cannot be read, or is not `T`.
    pub fn read_state<T: serde::de::DeserializeOwned>(
        &self,
        key: &str,
    ) -> Result<Option<(T, String)>> {
        let Some(object) = self.store.get(key)? else { return Ok(None) };
        let value = serde_json::from_slice(&object.bytes).map_err(|e| Error::Corrupt {
            path: self.store.uri_of(key).into(),
            detail: e.to_string(),
        })?;
        Ok(Some((value, object.etag)))
    }

    /// Writes a JSON state object if `cond` holds.
    ///
    /// # Errors
    ///
    /// It cannot be written.
    pub fn write_state<T: Serialize>(&self, key: &str, value: &T, cond: Condition) -> Result<Put> {
        let body = serde_json::to_vec_pretty(value).map_err(|e| Error::Corrupt {
            path: self.store.uri_of(key).into(),
            detail: e.to_string(),
        })?;
        self.store.put(key, Bytes::from(body), cond)
    }
}

/// Removes the temporary files of writers that died; a live one's are seconds old.
fn sweep(store: &LocalStore) -> Result<()> {
    let removed = store.remove_abandoned("")?;
    if removed > 0 {
        tracing::info!(files = removed, "Removed temporary files of writers that stopped.");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `n` files of `size` bytes each, named `f0`, `f1`, …
    fn files(n: usize, size: u64) -> Vec<ObjectMeta> {
        (0..n).map(|i| ObjectMeta { key: format!("f{i}"), size, etag: String::new() }).collect()
    }

    /// The most reads `read_ahead` had in flight at once over `files` on a lake whose requests
    /// are round trips (or not), with the order `f` took the files in. The first `together`
    /// reads wait for each other (a test fails by timing out if they were not all sent).
    fn most_in_flight(
        files: &[ObjectMeta],
        round_trips: bool,
        together: usize,
    ) -> (usize, Vec<String>) {
        use std::sync::atomic::{AtomicUsize, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let mut store = crate::store::tests::Hooked::new(LocalStore::new(dir.path()), |_| Ok(()));
        store.round_trips = round_trips;
        let lake = Lake::open(Arc::new(store)).unwrap();
        let (now, most) = (AtomicUsize::new(0), AtomicUsize::new(0));
        let (mut taken, meet) = (Vec::new(), crate::store::tests::Together::new(together));
        let read = |file: &ObjectMeta| {
            most.fetch_max(now.fetch_add(1, Ordering::SeqCst) + 1, Ordering::SeqCst);
            meet.arrive();
            now.fetch_sub(1, Ordering::SeqCst);
            file.key.clone()
        };
        lake.read_ahead(files, read, |file, key| {
            assert_eq!(key, file.key, "each file is handed over with its own read");
            taken.push(key);
            Ok(())
        })
        .unwrap();
        assert_eq!(meet.timed_out(), 0, "the first {together} reads were in flight together");
        (most.into_inner(), taken)
    }

    #[test]
    fn where_reads_are_round_trips_the_next_files_are_read_while_one_is_taken_in_order() {
        let names = |n: usize| (0..n).map(|i| format!("f{i}")).collect::<Vec<_>>();
        let ahead = READ_AHEAD + 1;
        assert_eq!(most_in_flight(&files(9, 1), true, ahead), (ahead, names(9)));
        // Within the bytes: two files of half the bound each, then one at a time beyond it.
        let half = READ_AHEAD_BYTES / 2;
        assert_eq!(most_in_flight(&files(5, half), true, 2), (2, names(5)));
        assert_eq!(most_in_flight(&files(3, READ_AHEAD_BYTES + 1), true, 1), (1, names(3)));
        // A local lake reads each file as it is taken.
        assert_eq!(most_in_flight(&files(9, 1), false, 1), (1, names(9)));
        assert_eq!(most_in_flight(&[], true, 0), (0, vec![]));
    }

    #[test]
    fn read_ahead_stops_at_the_first_error_of_what_takes_the_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = crate::store::tests::Hooked::new(LocalStore::new(dir.path()), |_| Ok(()));
        let lake = Lake::open(Arc::new(store)).unwrap();
        let mut taken = Vec::new();
        let err = lake
            .read_ahead(
                &files(9, 1),
                |f| f.key.clone(),
                |_, key| {
                    taken.push(key.clone());
                    match key.as_str() {
                        "f2" => Err(Error::Vanished { uri: key }),
                        _ => Ok(()),
                    }
                },
            )
            .unwrap_err();
        assert!(matches!(&err, Error::Vanished { uri } if uri == "f2"), "{err}");
        assert_eq!(taken, ["f0", "f1", "f2"]);
    }

    #[test]
    fn any_command_opening_a_local_lake_removes_a_dead_writer_s_temporary_files() {
        let dir = tempfile::tempdir().unwrap();
        Lake::open_dir(dir.path()).unwrap();
        let host = crate::fsio::host();
        let name = format!(".tmp-{host}~4294967294-7-part-00000.parquet.partial");
        let dead = dir.path().join("tenant_hourly/dt=2026-10-23").join(name);
        std::fs::create_dir_all(dead.parent().unwrap()).unwrap();
        std::fs::write(&dead, b"half a file").unwrap();
        Lake::existing_dir(dir.path()).unwrap();
        assert!(!dead.exists());
        assert!(Lake::existing_dir(dir.path().join("none")).is_err());
    }

    #[test]
    fn a_new_lake_is_created_and_foreign_or_other_version_locations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        Lake::open_dir(&root).unwrap();
        // Several writers at once: no lock, no "in use".
        Lake::open_dir(&root).unwrap();
        Lake::existing(Arc::new(LocalStore::new(&root))).unwrap();

        let foreign = dir.path().join("home");
        std::fs::create_dir_all(&foreign).unwrap();
        std::fs::write(foreign.join("notes.txt"), "x").unwrap();
        let err = Lake::open_dir(&foreign).unwrap_err();
        assert!(err.to_string().contains("is not an agentmeter lake"), "{err}");
        assert_eq!(std::fs::read_dir(&foreign).unwrap().count(), 1, "nothing created");
        let err = Lake::existing(Arc::new(LocalStore::new(dir.path().join("none")))).unwrap_err();
        assert!(err.to_string().contains("no agentmeter lake is there"), "{err}");

        let other = dir.path().join("v99");
        std::fs::create_dir_all(other.join("_state")).unwrap();
        std::fs::write(
            other.join("_state/lake.json"),
            r#"{"format":"agentmeter-lake","version":99}"#,
        )
        .unwrap();
        let err = Lake::open_dir(&other).unwrap_err();
        assert!(err.to_string().contains("lake format version 99"), "{err}");
    }

    /// Another process creates the lake and writes a data file just before our first
    /// listing: the interleaving that four writers starting at once on S3 hit.
    #[test]
    fn a_lake_another_process_created_and_wrote_to_meanwhile_is_joined_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let other = LocalStore::new(dir.path().join("lake"));
        let raced = std::sync::atomic::AtomicBool::new(false);
        let store = crate::store::tests::Hooked::new(other.clone(), move |op| {
            if matches!(op, crate::store::tests::Op::List(_))
                && !raced.swap(true, std::sync::atomic::Ordering::SeqCst)
            {
                Lake::open(Arc::new(other.clone())).unwrap();
                let key = "usage_events/dt=2026-10-23/part-0.parquet";
                other.put(key, Bytes::from_static(b"PAR1"), Condition::Absent).unwrap();
            }
            Ok(())
        });
        Lake::open(Arc::new(store)).unwrap();
        Lake::existing_dir(dir.path().join("lake")).unwrap();
    }

    #[test]
    fn a_lake_being_created_by_another_process_is_joined_not_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        // The other process has made `_state/` but not written the marker yet.
        std::fs::create_dir_all(root.join("_state")).unwrap();
        std::fs::write(root.join("_state/.tmp-1-0-lake.json"), b"{").unwrap();
        Lake::open_dir(&root).unwrap();
    }
}
