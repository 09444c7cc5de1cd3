//! Shared helpers: scratch directories, OpenClaw-format records, live and dead child processes.

use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit_lock_sweeper::{OwnerLookup, ProcLookup};

/// A scratch directory removed on drop.
#[derive(Debug)]
pub(crate) struct Scratch {
    pub(crate) path: PathBuf,
}

impl Scratch {
    pub(crate) fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sk-sw-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        Scratch {
            path: fs::canonicalize(path).unwrap(),
        }
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// A subdirectory, created.
    pub(crate) fn dir(&self, name: &str) -> PathBuf {
        let dir = self.join(name);
        fs::create_dir_all(&dir).unwrap();
        dir
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// A `sleep 600` child, killed and reaped on drop.
#[derive(Debug)]
pub(crate) struct Sleeper {
    child: Child,
    pub(crate) pid: u32,
    pub(crate) starttime: u64,
}

impl Sleeper {
    pub(crate) fn spawn() -> Sleeper {
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        // The parent may run on before the child's exec has set up its arguments, and until
        // then `/proc/<pid>/cmdline` is empty; wait for the real one.
        let mut tries = 0;
        loop {
            if let Ok(Some(argv)) = ProcLookup.cmdline(pid)
                && argv.first().is_some_and(|a| a == "sleep")
            {
                break;
            }
            tries += 1;
            assert!(tries < 5000, "child {pid} never showed its command line");
            std::thread::sleep(Duration::from_millis(1));
        }
        let starttime = ProcLookup
            .probe(pid)
            .unwrap()
            .start_time
            .expect("a live child has a start time");
        Sleeper {
            child,
            pid,
            starttime,
        }
    }

    /// Kills and reaps the child; its pid is then dead.
    pub(crate) fn kill(mut self) -> (u32, u64) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
        (self.pid, self.starttime)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An OpenClaw record's `createdAt`, `ago` in the past.
pub(crate) fn iso_ago(ago: Duration) -> String {
    sessionkit_write_lock::format_created_at(SystemTime::now() - ago)
}

/// Writes an OpenClaw-format record (no `sessionkit` key).
pub(crate) fn openclaw(path: &Path, pid: u32, starttime: u64, ago: Duration) {
    fs::write(
        path,
        format!(
            "{{\n  \"pid\": {pid},\n  \"createdAt\": \"{}\",\n  \"starttime\": {starttime}\n}}\n",
            iso_ago(ago)
        ),
    )
    .unwrap();
}

/// Sets a file's modification time `ago` in the past.
pub(crate) fn age(path: &Path, ago: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

/// Paths of a report's entries, as file names.
pub(crate) fn names(report: &sessionkit_lock_sweeper::SweepReport) -> Vec<String> {
    report
        .entries
        .iter()
        .map(|e| e.path.file_name().unwrap().to_string_lossy().into_owned())
        .collect()
}

/// Fills `dirs` new directories `d0`, `d1`, ... with `per_dir` OpenClaw-format locks each,
/// `000.jsonl.lock` on: a dead owner's, an hour old, wherever `(i + d) % 3 == 0`, else a fresh
/// one of `live`. Returns the directories.
pub(crate) fn mixed_dirs(
    scratch: &Scratch,
    live: &Sleeper,
    (dead, dead_start): (u32, u64),
    dirs: usize,
    per_dir: usize,
) -> Vec<PathBuf> {
    let dirs: Vec<_> = (0..dirs).map(|d| scratch.dir(&format!("d{d}"))).collect();
    for (d, dir) in dirs.iter().enumerate() {
        for i in 0..per_dir {
            let name = dir.join(format!("{i:03}.jsonl.lock"));
            if (i + d) % 3 == 0 {
                openclaw(&name, dead, dead_start, HOUR);
            } else {
                openclaw(&name, live.pid, live.starttime, FRESH);
            }
        }
    }
    dirs
}

/// What must agree between two sweeps of the same files (ages and timings differ).
pub(crate) fn outline(report: &sessionkit_lock_sweeper::SweepReport) -> Vec<String> {
    report
        .entries
        .iter()
        .map(|e| {
            format!(
                "{} {:?} {:?} {:?} {:?} {} {:?}",
                e.path.display(),
                e.pid,
                e.liveness,
                e.status,
                e.reasons,
                e.removed,
                e.kept_because
            )
        })
        .collect()
}

pub(crate) const FRESH: Duration = Duration::ZERO;
pub(crate) const HOUR: Duration = Duration::from_secs(3600);
