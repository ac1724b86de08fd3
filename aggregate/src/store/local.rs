//! The local-directory backend: keys are paths under the lake's root.
//!
//! Writes go to a hidden temporary file in the target directory, synced, then into place: a
//! rename for [`Condition::Always`], a hard link (which fails if the name exists) for
//! [`Condition::Absent`], and a rename under a short lock of the directory after checking the
//! version for [`Condition::Matches`]. A version is the file's inode, size and modification
//! time, which every replacement changes.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use parquet::file::metadata::ParquetMetaData;

use super::{Batches, Condition, Fetch, Object, ObjectMeta, Put, Store, decode_parquet};
use crate::error::{Error, Result, io_at};
use crate::fsio::{TEMP_PREFIX, TempFile, remove_if_exists, sync_dir};

/// The lock taken for a compare-and-swap (held for one comparison and one rename), one per
/// lake, kept with its state.
const CAS_LOCK: &str = "_state/.cas-lock";

/// Temporary files older than this are left by a writer that died.
const ABANDONED_AFTER: Duration = Duration::from_secs(3600);

/// A lake in a local directory.
#[derive(Debug, Clone)]
pub struct LocalStore {
    root: PathBuf,
}

fn etag(meta: &fs::Metadata) -> String {
    let mtime = meta.modified().ok().and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok());
    let nanos = mtime.map_or(0, |d| d.as_nanos());
    format!("{:x}-{:x}-{nanos:x}", meta.ino(), meta.len())
}

fn not_found(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::NotFound
}

/// A temporary file whose writer is gone: a process of this host that no longer runs, or any
/// writer an hour ago.
fn abandoned(name: &str, meta: &fs::Metadata) -> bool {
    if !name.starts_with(TEMP_PREFIX) {
        return false;
    }
    let old =
        meta.modified().ok().and_then(|t| t.elapsed().ok()).is_some_and(|a| a > ABANDONED_AFTER);
    let dead = crate::fsio::temp_writer(name).is_some_and(|(host, pid)| {
        host == crate::fsio::host() && !Path::new(&format!("/proc/{pid}")).exists()
    });
    old || dead
}

impl LocalStore {
    /// The lake at `root` (created on first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The lake's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The path of `key`. Keys come from the layout; a key that would leave the root is a bug.
    fn path(&self, key: &str) -> PathBuf {
        debug_assert!(
            !key.split('/').any(|p| p == ".." || p == "."),
            "lake key {key:?} is not a plain relative path"
        );
        self.root.join(key)
    }

    fn walk(&self, dir: &Path, out: &mut Vec<ObjectMeta>) -> Result<()> {
        let entries = match fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if not_found(&e) => return Ok(()),
            Err(e) => return Err(io_at(dir)(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io_at(dir))?;
            let name = entry.file_name();
            let name = name.to_string_lossy();
            let path = entry.path();
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Removed since the directory was read (a compaction, a replaced file).
                Err(e) if not_found(&e) => continue,
                Err(e) => return Err(io_at(&path)(e)),
            };
            if meta.is_dir() {
                self.walk(&path, out)?;
            } else if !name.starts_with(TEMP_PREFIX) && name != ".cas-lock" {
                let Ok(rel) = path.strip_prefix(&self.root) else { continue };
                let key = rel.to_string_lossy().replace('\\', "/");
                out.push(ObjectMeta { key, size: meta.len(), etag: etag(&meta) });
            }
        }
        Ok(())
    }

    /// Removes temporary files under `prefix` that a writer which died left behind: those of a
    /// process of this machine that is gone, and any older than an hour (a live writer's are
    /// seconds old). Returns how many.
    ///
    /// # Errors
    ///
    /// A directory cannot be listed or a file removed.
    pub fn remove_abandoned(&self, prefix: &str) -> Result<usize> {
        fn walk(dir: &Path, n: &mut usize) -> Result<()> {
            let entries = match fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) if not_found(&e) => return Ok(()),
                Err(e) => return Err(io_at(dir)(e)),
            };
            for entry in entries.flatten() {
                let path = entry.path();
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    walk(&path, n)?;
                } else if abandoned(&entry.file_name().to_string_lossy(), &meta) {
                    remove_if_exists(&path)?;
                    *n += 1;
                }
            }
            Ok(())
        }
        let mut n = 0;
        walk(&self.path(prefix), &mut n)?;
        Ok(n)
    }
}

impl Store for LocalStore {
    fn uri(&self) -> String {
        let abs = std::path::absolute(&self.root).unwrap_or_else(|_| self.root.clone());
        format!("file://{}", abs.display())
    }

    fn uri_of(&self, key: &str) -> String {
        self.path(key).display().to_string()
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectMeta>> {
        let mut out = Vec::new();
        self.walk(&self.path(prefix), &mut out)?;
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn list_dirs(&self, prefix: &str) -> Result<Vec<String>> {
        let dir = self.path(prefix);
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if not_found(&e) => return Ok(Vec::new()),
            Err(e) => return Err(io_at(&dir)(e)),
        };
        let mut out = Vec::new();
        for entry in entries {
            let entry = entry.map_err(io_at(&dir))?;
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        out.sort();
        Ok(out)
    }

    fn get(&self, key: &str) -> Result<Option<Object>> {
        let path = self.path(key);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        // The version of exactly the bytes read: the open file keeps its inode.
        let meta = file.metadata().map_err(io_at(&path))?;
        let mut buf = Vec::with_capacity(meta.len() as usize);
        io::Read::read_to_end(&mut file, &mut buf).map_err(io_at(&path))?;
        Ok(Some(Object { bytes: Bytes::from(buf), etag: etag(&meta) }))
    }

    fn head(&self, key: &str) -> Result<Option<ObjectMeta>> {
        let path = self.path(key);
        match fs::metadata(&path) {
            Ok(m) => Ok(Some(ObjectMeta { key: key.to_owned(), size: m.len(), etag: etag(&m) })),
            Err(e) if not_found(&e) => Ok(None),
            Err(e) => Err(io_at(&path)(e)),
        }
    }

    fn put(&self, key: &str, body: Bytes, cond: Condition) -> Result<Put> {
        let path = self.path(key);
        let mut temp = TempFile::create(&path)?;
        temp.write_all(&body).map_err(io_at(temp.temp_path()))?;
        let closed = temp.close()?;
        let written = |path: &Path| -> Result<Put> {
            let meta = fs::metadata(path).map_err(io_at(path))?;
            Ok(Put::Written { etag: etag(&meta) })
        };
        match cond {
            Condition::Always => {
                closed.commit()?;
                written(&path)
            }
            Condition::Absent => match fs::hard_link(closed.temp_path(), &path) {
                Ok(()) => {
                    sync_dir(&path)?;
                    written(&path)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(Put::Conflict),
                Err(e) => Err(io_at(&path)(e)),
            },
            Condition::Matches(expected) => {
                let lock_path = self.root.join(CAS_LOCK);
                if let Some(dir) = lock_path.parent() {
                    fs::create_dir_all(dir).map_err(io_at(dir))?;
                }
                let lock = OpenOptions::new()
                    .create(true)
                    .truncate(false)
                    .write(true)
                    .open(&lock_path)
                    .map_err(io_at(&lock_path))?;
                // Held for one comparison and one rename: writers never wait for each other
                // longer than that.
                lock.lock().map_err(io_at(&lock_path))?;
                let current = match fs::metadata(&path) {
                    Ok(m) => Some(etag(&m)),
                    Err(e) if not_found(&e) => None,
                    Err(e) => return Err(io_at(&path)(e)),
                };
                if current.as_deref() != Some(expected.as_str()) {
                    return Ok(Put::Conflict);
                }
                closed.commit()?;
                written(&path)
            }
        }
    }

    fn delete(&self, key: &str) -> Result<()> {
        remove_if_exists(&self.path(key)).map(|_| ())
    }

    fn parquet_footer(&self, key: &str) -> Result<Option<(Arc<ParquetMetaData>, String)>> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        let meta = file.metadata().map_err(io_at(&path))?;
        let footer = parquet::file::metadata::ParquetMetaDataReader::new()
            .parse_and_finish(&file)
            .map_err(|source| Error::Parquet { path: path.clone(), source })?;
        Ok(Some((Arc::new(footer), etag(&meta))))
    }

    fn read_parquet(
        &self,
        key: &str,
        _listed: Option<&ObjectMeta>,
        columns: Option<&[&str]>,
        dictionaries: &[&str],
        _fetch: Fetch,
    ) -> Result<Option<Batches>> {
        let path = self.path(key);
        let file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if not_found(&e) => return Ok(None),
            Err(e) => return Err(io_at(&path)(e)),
        };
        // The open file, not its bytes: pages are read as the batches are taken.
        decode_parquet(&path.to_string_lossy(), file, columns, dictionaries).map(Some)
    }
}
