//! A lake whose disk fills up, or turns read-only, in the middle of an ingest: the run stops
//! with a clear error naming the cause, and a later run completes the lake exactly as an
//! uninterrupted one. The lake sits on a tmpfs of its own (mounting needs root, as CI runs;
//! elsewhere the test says it did not run).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::util::*;

/// A tmpfs mounted at a directory of its own, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, size: &str) -> Option<Self> {
        std::fs::create_dir_all(at).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(at)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(at.to_owned()))
    }

    /// Remounts with `opts`. Turning read-only is refused (busy) while a file on it is open
    /// for writing, as the writer's file being written is for a moment: tried again for up to
    /// 10 s.
    fn remount(&self, opts: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = Command::new("mount")
                .args(["-o", &format!("remount,{opts}")])
                .arg(&self.0)
                .stderr(Stdio::null())
                .status();
            if s.unwrap().success() {
                return;
            }
            assert!(Instant::now() < deadline, "remount {opts}");
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

fn month(dir: &Path) -> PathBuf {
    generate(
        &dir.join("gen"),
        &["--tenants", "6", "--events", "12000", "--seed", "5", "--noisy", "1", "--dirty"],
    );
    dir.join("gen/input")
}

fn ingest_cmd(lake: &Path, input: &Path) -> Command {
    let mut c = bin();
    c.arg("ingest")
        .arg("--lake")
        .arg(lake)
        .args(["--batch-rows", "500", "--no-progress"])
        .arg(input);
    c
}

/// Runs `cmd`, expecting it to fail with `cause` in its error; returns its stderr.
fn fails_with(cmd: &mut Command, cause: &str) -> String {
    let out = cmd.output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{cmd:?} succeeded");
    assert!(!err.contains("panicked"), "{err}");
    assert!(err.contains(cause), "{err}");
    err
}

#[test]
fn a_full_disk_stops_the_run_clearly_and_a_later_run_completes_the_lake() {
    let dir = tempfile::tempdir().unwrap();
    let input = month(dir.path());
    let clean = dir.path().join("clean");
    ok(&mut ingest_cmd(&clean, &input));
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "1m") else {
        println!("disk test not run: mounting a tmpfs needs root");
        return;
    };
    let lake = disk.0.join("lake");
    let err = fails_with(&mut ingest_cmd(&lake, &input), "No space left on device");
    assert!(err.contains(lake.to_str().unwrap()), "the error names where: {err}");
    disk.remount("size=512m");
    ok(&mut ingest_cmd(&lake, &input));
    assert_eq!(crate::crash_matrix::reader_view(&lake), crate::crash_matrix::reader_view(&clean));
    println!("disk full: stopped with {:?}", err.lines().last().unwrap_or_default());
}

#[test]
fn a_lake_turned_read_only_mid_run_stops_it_clearly_and_a_later_run_completes_it() {
    let dir = tempfile::tempdir().unwrap();
    let input = month(dir.path());
    let clean = dir.path().join("clean");
    ok(&mut ingest_cmd(&clean, &input));
    let Some(disk) = Tmpfs::mount(&dir.path().join("disk"), "512m") else {
        println!("disk test not run: mounting a tmpfs needs root");
        return;
    };
    let lake = disk.0.join("lake");
    let mut child =
        ingest_cmd(&lake, &input).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap();
    let deadline = Instant::now() + Duration::from_secs(120);
    while files_under(&lake.join("usage_events")).len() < 2 {
        assert!(child.try_wait().unwrap().is_none(), "the ingest ended before the disk turned");
        assert!(Instant::now() < deadline, "no data file within 120 s");
        std::thread::sleep(Duration::from_millis(2));
    }
    disk.remount("ro");
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && !err.contains("panicked"), "{err}");
    assert!(err.contains("Read-only file system"), "{err}");
    disk.remount("rw");
    ok(&mut ingest_cmd(&lake, &input));
    assert_eq!(crate::crash_matrix::reader_view(&lake), crate::crash_matrix::reader_view(&clean));
}
