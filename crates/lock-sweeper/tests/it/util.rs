//! Shared helpers: OpenClaw-format records and planted directories, beside the workspace's own
//! (scratch directories, file ages, live child processes), re-exported.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

pub(crate) use sessionkit_test_support::{Scratch, Sleeper, set_modified_ago};

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
    let dirs: Vec<_> = (0..dirs).map(|d| scratch.dir(format!("d{d}"))).collect();
    for (d, dir) in dirs.iter().enumerate() {
        for i in 0..per_dir {
            let name = dir.join(format!("{i:03}.jsonl.lock"));
            if (i + d) % 3 == 0 {
                openclaw(&name, dead, dead_start, HOUR);
            } else {
                openclaw(&name, live.pid, live.start_time, FRESH);
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
