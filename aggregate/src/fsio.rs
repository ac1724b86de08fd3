//! Files that appear only complete: written under a hidden temporary name in the same
//! directory, flushed to disk, then renamed over the final name (and the directory synced),
//! so a reader or a crash never sees half a file and a retried write replaces the old one.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Result, io_at};

/// Prefix of temporary files. Athena and Hive ignore names starting with `.` or `_`, and the
/// lake's readers skip them; the suffix [`TEMP_SUFFIX`] keeps them out of `*.parquet` globs
/// (DuckDB's, Spark's) too.
pub const TEMP_PREFIX: &str = ".tmp-";

/// Suffix of temporary files.
pub const TEMP_SUFFIX: &str = ".partial";

/// This machine's name, as temporary files record their writer (`/proc/sys/kernel/hostname`,
/// else `localhost`): a directory shared by machines never sees one clean up another's.
pub fn host() -> &'static str {
    static HOST: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HOST.get_or_init(|| {
        let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        let safe: String = name
            .trim()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || c == '-' { c } else { '_' })
            .take(64)
            .collect();
        if safe.is_empty() { "localhost".into() } else { safe }
    })
}

/// The writer of a temporary file named by [`TempFile`]: its host and process id.
pub fn temp_writer(name: &str) -> Option<(&str, u32)> {
    let rest = name.strip_prefix(TEMP_PREFIX)?;
    let (host, rest) = rest.split_once('~')?;
    let pid = rest.split('-').next()?.parse().ok()?;
    Some((host, pid))
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A temporary file that becomes `final_path` on [`TempFile::commit`], or disappears when
/// dropped uncommitted.
pub struct TempFile {
    temp: PathBuf,
    final_path: PathBuf,
    file: Option<File>,
}

impl TempFile {
    /// Creates the temporary file beside `final_path` (creating the directory).
    ///
    /// # Errors
    ///
    /// The directory or file cannot be created.
    pub fn create(final_path: &Path) -> Result<Self> {
        let dir = parent_dir(final_path);
        fs::create_dir_all(dir).map_err(io_at(dir))?;
        let name = final_path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let temp = dir.join(format!(
            "{TEMP_PREFIX}{}~{}-{n}-{name}{TEMP_SUFFIX}",
            host(),
            std::process::id()
        ));
        let file =
            OpenOptions::new().write(true).create_new(true).open(&temp).map_err(io_at(&temp))?;
        Ok(Self { temp, final_path: final_path.to_owned(), file: Some(file) })
    }

    /// The open file.
    ///
    /// # Panics
    ///
    /// Never: the file is only taken by `commit`, which consumes `self`.
    pub fn file(&mut self) -> &mut File {
        self.file.as_mut().expect("file is open until commit")
    }

    /// The temporary path (for error messages).
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// The final path.
    pub fn final_path(&self) -> &Path {
        &self.final_path
    }

    /// Syncs the data, renames the file into place and syncs the directory.
    ///
    /// # Errors
    ///
    /// Any I/O error; the temporary file is then removed.
    pub fn commit(mut self) -> Result<PathBuf> {
        let file = self.file.take().expect("file is open until commit");
        file.sync_all().map_err(io_at(&self.temp))?;
        drop(file);
        fs::rename(&self.temp, &self.final_path).map_err(io_at(&self.final_path))?;
        sync_dir(&self.final_path)?;
        Ok(std::mem::take(&mut self.final_path))
    }
}

impl TempFile {
    /// Syncs and closes the file but keeps it under its temporary name, to be committed later
    /// without holding a file descriptor meanwhile.
    ///
    /// # Errors
    ///
    /// The sync fails; the temporary file is then removed.
    pub fn close(mut self) -> Result<ClosedTemp> {
        let file = self.file.take().expect("file is open until closed");
        if let Err(e) = file.sync_all() {
            let _ = fs::remove_file(&self.temp);
            return Err(io_at(&self.temp)(e));
        }
        Ok(ClosedTemp {
            temp: std::mem::take(&mut self.temp),
            final_path: std::mem::take(&mut self.final_path),
            committed: false,
        })
    }
}

/// A complete temporary file waiting to be renamed into place; removed if dropped.
#[derive(Debug)]
pub struct ClosedTemp {
    temp: PathBuf,
    final_path: PathBuf,
    committed: bool,
}

impl ClosedTemp {
    /// The temporary path.
    pub fn temp_path(&self) -> &Path {
        &self.temp
    }

    /// Renames the file into place and syncs the directory.
    ///
    /// # Errors
    ///
    /// Any I/O error.
    pub fn commit(mut self) -> Result<PathBuf> {
        fs::rename(&self.temp, &self.final_path).map_err(io_at(&self.final_path))?;
        self.committed = true;
        sync_dir(&self.final_path)?;
        Ok(self.final_path.clone())
    }
}

impl Drop for ClosedTemp {
    fn drop(&mut self) {
        if !self.committed {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

impl Write for TempFile {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.file().write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file().flush()
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.temp);
        }
    }
}

/// Syncs the directory containing `path`, so that a rename or removal survives a crash.
pub(crate) fn sync_dir(path: &Path) -> Result<()> {
    let dir = parent_dir(path);
    File::open(dir).and_then(|d| d.sync_all()).map_err(io_at(dir))
}

/// The directory holding `path`: `.` for a bare file name (whose parent is the empty path,
/// which cannot be opened).
fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically.
///
/// # Errors
///
/// Any I/O error.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut t = TempFile::create(path)?;
    t.write_all(bytes).map_err(io_at(t.temp_path()))?;
    t.commit().map(|_| ())
}

/// Removes `path` if it exists, syncing its directory.
///
/// # Errors
///
/// Any I/O error other than "not found".
pub fn remove_if_exists(path: &Path) -> Result<bool> {
    match fs::remove_file(path) {
        Ok(()) => {
            sync_dir(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_at(path)(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_committed_file_replaces_and_a_dropped_one_vanishes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/x.txt");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        let mut t = TempFile::create(&p).unwrap();
        t.write_all(b"three").unwrap();
        let temp = t.temp_path().to_owned();
        assert!(temp.exists());
        drop(t);
        assert!(!temp.exists());
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);

        let mut t = TempFile::create(&p).unwrap();
        t.write_all(b"four").unwrap();
        let closed = t.close().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        closed.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"four");
        let t = TempFile::create(&p).unwrap();
        drop(t.close().unwrap());
        assert_eq!(fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn a_bare_file_name_is_written_in_the_current_directory() {
        // `Path::new("x.csv").parent()` is the empty path: syncing it failed after the write.
        let dir = tempfile::tempdir().unwrap();
        let name = format!("bare-{}.txt", std::process::id());
        let cwd = std::env::current_dir().unwrap();
        let target = cwd.join(&name);
        write_atomic(Path::new(&name), b"one").unwrap();
        assert_eq!(fs::read(&target).unwrap(), b"one");
        assert!(remove_if_exists(Path::new(&name)).unwrap());
        assert_eq!(parent_dir(Path::new("x.csv")), Path::new("."));
        assert_eq!(parent_dir(&dir.path().join("x.csv")), dir.path());
    }

    #[test]
    fn temporary_names_record_their_writer_and_never_end_in_parquet() {
        let dir = tempfile::tempdir().unwrap();
        let t = TempFile::create(&dir.path().join("part-x.parquet")).unwrap();
        let name = t.temp_path().file_name().unwrap().to_string_lossy().into_owned();
        assert!(name.starts_with(TEMP_PREFIX) && name.ends_with(TEMP_SUFFIX), "{name}");
        assert_eq!(temp_writer(&name), Some((host(), std::process::id())));
        assert!(remove_if_exists(t.temp_path()).unwrap());
        assert!(!remove_if_exists(t.temp_path()).unwrap());
    }
}
