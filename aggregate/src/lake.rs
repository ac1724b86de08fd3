//! A lake directory: opening it (one writer at a time), recovering from a crashed writer, and
//! reading its tables back.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use agentmeter_schemas::tables::{AGENT_INVOCATIONS, InvocationRow, agent_invocations_from_batch};
use agentmeter_schemas::tables::{
    HourlyKey, HourlyMeasures, TENANT_HOURLY, TableDef, TenantHour, USAGE_EVENTS, USAGE_HOURLY,
    hourly_from_batch, tenant_hourly_from_batch,
};
use agentmeter_schemas::{AgentSpan, QuarantineEntry, UsageEvent};
use arrow_array::RecordBatch;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result, io_at};
use crate::fsio::{TEMP_PREFIX, remove_temporaries, write_atomic};
use crate::layout::{Layout, parse_partition};
use crate::parquet_io::read_file;
use crate::record::LakeRecord;

/// The lake format this version writes and reads.
pub const LAKE_FORMAT_VERSION: u32 = 1;

#[derive(Debug, Serialize, Deserialize)]
struct LakeMarker {
    format: String,
    version: u32,
}

const MARKER_FORMAT: &str = "agentmeter-lake";

/// Read access to a lake. Cheap; takes no lock (files appear only complete).
#[derive(Debug, Clone)]
pub struct LakeReader {
    layout: Layout,
}

/// Write access to a lake: holds the lake's lock for its lifetime.
#[derive(Debug)]
pub struct Lake {
    reader: LakeReader,
    _lock: File,
}

impl Lake {
    /// Opens (creating if needed) the lake at `root` for writing: takes the lock and removes
    /// temporary files of a crashed writer. Rollups a crashed writer left stale are found by
    /// [`LakeReader::stale_rollups`] and rebuilt by [`Lake::ensure_rollups`].
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another process holds the lake, [`Error::NotALake`] if `root`
    /// is a non-empty directory that is not a lake, or an I/O error.
    pub fn open(root: &Path) -> Result<Self> {
        let layout = Layout::new(root);
        let marker = layout.state_dir().join("lake.json");
        match fs::read(&marker) {
            Ok(bytes) => check_marker(root, &bytes)?,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                // Hidden names (an S3 mirror's manifest and lock) are not data, nor is the
                // `_state` of another process creating the same lake right now: both write
                // the same marker, and the lock then decides who writes.
                let non_empty = fs::read_dir(root).is_ok_and(|d| {
                    d.flatten().any(|e| {
                        let name = e.file_name();
                        let name = name.to_string_lossy();
                        !name.starts_with('.') && name != crate::layout::STATE_DIR
                    })
                });
                if non_empty {
                    return Err(Error::NotALake {
                        root: root.to_owned(),
                        reason: "directory is not empty and is not an agentmeter lake \
                                 (no _state/lake.json); use a new or empty directory"
                            .into(),
                    });
                }
                let body = serde_json::to_vec_pretty(&LakeMarker {
                    format: MARKER_FORMAT.into(),
                    version: LAKE_FORMAT_VERSION,
                })
                .map_err(|e| io_at(&marker)(io::Error::other(e)))?;
                write_atomic(&marker, &body)?;
            }
            Err(e) => return Err(io_at(&marker)(e)),
        }
        let lock_path = layout.state_dir().join("lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io_at(&lock_path))?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(fs::TryLockError::WouldBlock) => {
                return Err(Error::Locked { root: root.to_owned(), lock: lock_path });
            }
            Err(fs::TryLockError::Error(e)) => return Err(io_at(&lock_path)(e)),
        }
        let lake = Self { reader: LakeReader { layout }, _lock: lock };
        lake.remove_temporaries()?;
        // Markers of earlier versions: staleness is now read from the rollups' footers.
        let markers = lake.layout().state_dir().join("rollup-pending");
        if markers.exists() {
            fs::remove_dir_all(&markers).map_err(io_at(&markers))?;
        }
        crate::compact::recover(lake.layout())?;
        Ok(lake)
    }

    /// The read side.
    pub fn reader(&self) -> &LakeReader {
        &self.reader
    }

    /// The lake's paths.
    pub fn layout(&self) -> &Layout {
        &self.reader.layout
    }

    fn remove_temporaries(&self) -> Result<usize> {
        let l = self.layout();
        let mut n = remove_temporaries(&l.quarantine_dir())?;
        n += remove_temporaries(&l.state_dir())?;
        for table in [
            USAGE_EVENTS,
            USAGE_HOURLY,
            TENANT_HOURLY,
            agentmeter_schemas::tables::AGENT_SPANS,
            AGENT_INVOCATIONS,
        ] {
            for dt in self.reader.partitions(table)? {
                n += remove_temporaries(&l.partition(table, dt))?;
            }
        }
        if n > 0 {
            tracing::info!(files = n, "Removed temporary files of an interrupted run.");
        }
        Ok(n)
    }

    /// Replaces one partition of a derived table (such as `invoice_lines`) with a single file
    /// holding `batch`, atomically; an empty batch removes the partition's file.
    ///
    /// # Errors
    ///
    /// The file cannot be written.
    pub fn replace_partition(
        &self,
        table: &TableDef,
        at: NaiveDate,
        batch: &RecordBatch,
        sorted_by: &[usize],
    ) -> Result<PathBuf> {
        let path = self.layout().partition_of(table, at).join(crate::rollup::HOURLY_FILE);
        if batch.num_rows() == 0 {
            crate::fsio::remove_if_exists(&path)?;
        } else {
            crate::parquet_io::write_file(
                &path,
                (table.schema)(),
                crate::parquet_io::properties(sorted_by, &[]),
                std::slice::from_ref(batch),
            )?;
        }
        Ok(path)
    }
}

fn check_marker(root: &Path, bytes: &[u8]) -> Result<()> {
    let bad = |reason: String| Error::NotALake { root: root.to_owned(), reason };
    let m: LakeMarker = serde_json::from_slice(bytes)
        .map_err(|e| bad(format!("_state/lake.json is unreadable: {e}")))?;
    if m.format != MARKER_FORMAT {
        return Err(bad(format!("_state/lake.json names format {:?}", m.format)));
    }
    if m.version != LAKE_FORMAT_VERSION {
        return Err(bad(format!(
            "lake format version {} is not the version {} this agentmeter writes",
            m.version, LAKE_FORMAT_VERSION
        )));
    }
    Ok(())
}

/// Names in `dir`, or none if it does not exist.
pub(crate) fn list_names(dir: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io_at(dir)(e)),
    };
    let mut names = Vec::new();
    for e in entries {
        let e = e.map_err(io_at(dir))?;
        names.push(e.file_name().to_string_lossy().into_owned());
    }
    names.sort();
    Ok(names)
}

impl LakeReader {
    /// A reader of the lake at `root` (which need not exist yet).
    pub fn new(root: &Path) -> Self {
        Self { layout: Layout::new(root) }
    }

    /// The lake's paths.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The partitions of `table`, in date order.
    ///
    /// # Errors
    ///
    /// The table directory cannot be listed.
    pub fn partitions(&self, table: &'static str) -> Result<Vec<NaiveDate>> {
        Ok(list_names(&self.layout.table(table))?
            .iter()
            .filter_map(|n| parse_partition(n))
            .collect())
    }

    /// The complete Parquet files of one partition, in name order.
    ///
    /// # Errors
    ///
    /// The partition directory cannot be listed.
    pub fn files(&self, table: &'static str, dt: NaiveDate) -> Result<Vec<PathBuf>> {
        let dir = self.layout.partition(table, dt);
        Ok(list_names(&dir)?
            .into_iter()
            .filter(|n| {
                n.ends_with(".parquet") && !n.starts_with(TEMP_PREFIX) && !n.starts_with('.')
            })
            .map(|n| dir.join(n))
            .collect())
    }

    /// Every event of one `usage_events` partition.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn events(&self, dt: NaiveDate) -> Result<Vec<UsageEvent>> {
        let mut out = Vec::new();
        self.for_each_event_batch(dt, |events| {
            out.extend(events);
            Ok(())
        })?;
        Ok(out)
    }

    /// Calls `f` with the events of each file of one partition, a file at a time (memory stays
    /// bounded by the largest file).
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table, or `f` fails.
    pub fn for_each_event_batch(
        &self,
        dt: NaiveDate,
        f: impl FnMut(Vec<UsageEvent>) -> Result<()>,
    ) -> Result<()> {
        self.for_each_batch::<UsageEvent>(dt, f)
    }

    /// Calls `f` with the records of each file of one partition of `R`'s table, a file at a
    /// time.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table, or `f` fails.
    pub fn for_each_batch<R: LakeRecord>(
        &self,
        dt: NaiveDate,
        mut f: impl FnMut(Vec<R>) -> Result<()>,
    ) -> Result<()> {
        for path in self.files(R::TABLE, dt)? {
            for batch in read_file(&path)? {
                let records = R::from_batch(&batch)
                    .map_err(|source| Error::Arrow { path: path.clone(), source })?;
                f(records)?;
            }
        }
        Ok(())
    }

    /// Every span of one `agent_spans` partition.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn spans(&self, dt: NaiveDate) -> Result<Vec<AgentSpan>> {
        let mut out = Vec::new();
        self.for_each_batch::<AgentSpan>(dt, |s| {
            out.extend(s);
            Ok(())
        })?;
        Ok(out)
    }

    /// Every row of one `agent_invocations` partition.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn invocations(&self, dt: NaiveDate) -> Result<Vec<InvocationRow>> {
        let mut out = Vec::new();
        for path in self.files(AGENT_INVOCATIONS, dt)? {
            for batch in read_file(&path)? {
                out.extend(
                    agent_invocations_from_batch(&batch)
                        .map_err(|source| Error::Arrow { path: path.clone(), source })?,
                );
            }
        }
        Ok(out)
    }

    /// Every row of one `usage_hourly` partition.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn hourly(&self, dt: NaiveDate) -> Result<Vec<(HourlyKey, HourlyMeasures)>> {
        let mut out = Vec::new();
        for path in self.files(USAGE_HOURLY, dt)? {
            for batch in read_file(&path)? {
                out.extend(
                    hourly_from_batch(&batch)
                        .map_err(|source| Error::Arrow { path: path.clone(), source })?,
                );
            }
        }
        Ok(out)
    }

    /// Every row of one partition of a table with its own partitioning, as record batches.
    ///
    /// # Errors
    ///
    /// A file cannot be read.
    pub fn read_partition(&self, table: &TableDef, at: NaiveDate) -> Result<Vec<RecordBatch>> {
        let dir = self.layout.partition_of(table, at);
        let mut out = Vec::new();
        for name in list_names(&dir)? {
            if name.ends_with(".parquet") && !name.starts_with('.') {
                out.extend(read_file(&dir.join(name))?);
            }
        }
        Ok(out)
    }

    /// Every row of one `tenant_hourly` partition.
    ///
    /// # Errors
    ///
    /// A file cannot be read or does not match the table.
    pub fn tenant_hourly(&self, dt: NaiveDate) -> Result<Vec<TenantHour>> {
        let mut out = Vec::new();
        for path in self.files(TENANT_HOURLY, dt)? {
            for batch in read_file(&path)? {
                out.extend(
                    tenant_hourly_from_batch(&batch)
                        .map_err(|source| Error::Arrow { path: path.clone(), source })?,
                );
            }
        }
        Ok(out)
    }

    /// The quarantine files, in name order.
    ///
    /// # Errors
    ///
    /// The quarantine directory cannot be listed.
    pub fn quarantine_files(&self) -> Result<Vec<PathBuf>> {
        let dir = self.layout.quarantine_dir();
        Ok(list_names(&dir)?
            .into_iter()
            .filter(|n| n.ends_with(".jsonl") && !n.starts_with('.'))
            .map(|n| dir.join(n))
            .collect())
    }

    /// Every quarantine entry.
    ///
    /// # Errors
    ///
    /// A file cannot be read or holds a line that is not an entry.
    pub fn quarantine_entries(&self) -> Result<Vec<QuarantineEntry>> {
        let mut out = Vec::new();
        for path in self.quarantine_files()? {
            let text = fs::read_to_string(&path).map_err(io_at(&path))?;
            for line in text.lines().filter(|l| !l.trim().is_empty()) {
                let entry = serde_json::from_str(line)
                    .map_err(|e| io_at(&path)(io::Error::new(io::ErrorKind::InvalidData, e)))?;
                out.push(entry);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_writer_at_a_time_and_foreign_directories_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        let lake = Lake::open(&root).unwrap();
        let err = Lake::open(&root).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        drop(lake);
        Lake::open(&root).unwrap();

        let foreign = dir.path().join("home");
        fs::create_dir_all(&foreign).unwrap();
        fs::write(foreign.join("notes.txt"), "x").unwrap();
        let err = Lake::open(&foreign).unwrap_err();
        assert!(err.to_string().contains("is not an agentmeter lake"), "{err}");
        assert_eq!(fs::read_dir(&foreign).unwrap().count(), 1, "nothing created");
    }

    #[test]
    fn losing_the_race_to_create_a_lake_says_in_use_not_foreign() {
        // The winner has made `_state/` and holds the lock, but has not written the marker yet.
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("lake");
        fs::create_dir_all(root.join("_state")).unwrap();
        let held = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(root.join("_state/lock"))
            .unwrap();
        held.try_lock().unwrap();
        let err = Lake::open(&root).unwrap_err();
        assert!(matches!(err, Error::Locked { .. }), "{err}");
        drop(held);
        Lake::open(&root).unwrap();
    }

    #[test]
    fn a_lake_of_another_version_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir_all(dir.path().join("_state")).unwrap();
        fs::write(
            dir.path().join("_state/lake.json"),
            r#"{"format":"agentmeter-lake","version":99}"#,
        )
        .unwrap();
        let err = Lake::open(dir.path()).unwrap_err();
        assert!(err.to_string().contains("lake format version 99"), "{err}");
    }
}
