//! What a sweep found and did, serialisable to JSON.

use std::path::PathBuf;
use std::time::Duration;

use serde::Serialize;
use sessionkit_write_lock::{Liveness, StaleReason, Status};

/// What one sweep found and did. Serialises to JSON (camelCase keys).
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SweepReport {
    /// True if the sweep was a dry run (nothing was removed).
    pub dry_run: bool,
    /// One entry per lock sidecar, directory by directory in the order given, each directory's
    /// sidecars sorted by name.
    pub entries: Vec<SweepEntry>,
    /// The counts over `entries` and `dir_errors`.
    pub totals: Totals,
    /// Directories that exist but could not be listed; the sweep went on with the others.
    pub dir_errors: Vec<DirError>,
    /// How many real owner lookups the sweep made (one per pid at most, plus failed ones).
    pub lookups: u64,
    /// How long the sweep took, in milliseconds.
    pub elapsed_ms: u64,
    /// Orphan temp files of atomic-fs, if the sweep was asked to remove them.
    pub temps: Option<TempReport>,
}

/// One lock sidecar in a [`SweepReport`].
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct SweepEntry {
    /// The lock file.
    pub path: PathBuf,
    /// True if the sidecar is a symlink (never followed; only the link is removed).
    pub symlink: bool,
    /// The owner's pid, if the file held a record with one.
    pub pid: Option<u32>,
    /// The owner's liveness, if it was looked up (records of ours are judged by their OS lock).
    pub liveness: Option<Liveness>,
    /// The lock's age in milliseconds: from the record's `createdAt`, else the file's mtime.
    pub age_ms: Option<u64>,
    /// The verdict of write-lock's judge; `None` if the file could not be judged (see `error`).
    pub status: Option<Status>,
    /// True if the sidecar is a regular file whose content is not a lock record (another
    /// program's `notes.lock`, say): a sweep never touches it, whatever its status.
    pub not_a_record: bool,
    /// Every stale reason found, report-only ones included, sorted.
    pub reasons: Vec<StaleReason>,
    /// True if this sweep removed the file.
    pub removed: bool,
    /// Why a file that was judged was not removed.
    pub kept_because: Option<String>,
    /// Why the file could not be judged or removed (permission, I/O); the sweep went on.
    pub error: Option<String>,
}

impl SweepEntry {
    /// True if the judge found the lock stale, whether or not it was removed. An old file with
    /// a `.lock` name that holds no lock record is stale to the judge too, but a sweep never
    /// removes it (it may be another program's file; see `kept_because`).
    pub fn is_stale(&self) -> bool {
        self.status == Some(Status::Stale)
    }

    /// True if a sweep removes the file, or, in a dry run, would: it was removed, or it is
    /// stale and a lock record (see [`not_a_record`](SweepEntry::not_a_record)). A real sweep
    /// may still keep such a file if it changed before the removal.
    pub fn is_removable(&self) -> bool {
        self.removed || (self.is_stale() && !self.not_a_record)
    }
}

/// The counts of a [`SweepReport`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct Totals {
    /// Lock sidecars looked at.
    pub scanned: u64,
    /// Sidecars judged stale (removed or, in a dry run, after a change, or for another
    /// program's old `.lock` file, not).
    pub stale: u64,
    /// Sidecars removed.
    pub removed: u64,
    /// Sidecars judged and left in place.
    pub kept: u64,
    /// Sidecars that could not be judged or removed, plus directories that could not be listed.
    pub errors: u64,
}

/// A directory that could not be listed.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct DirError {
    /// The directory.
    pub path: PathBuf,
    /// What went wrong.
    pub error: String,
}

/// Orphan temp files of atomic-fs handled by a sweep, reported apart from the locks.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TempReport {
    /// The temp files removed (in a dry run: those that would be).
    pub removed: Vec<TempEntry>,
    /// How many temp files were kept because they are younger than the age limit.
    pub kept_young: u64,
    /// Temp files or directories that could not be handled.
    pub errors: Vec<DirError>,
}

/// One orphan temp file.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
#[non_exhaustive]
pub struct TempEntry {
    /// The temp file.
    pub path: PathBuf,
    /// Its size in bytes.
    pub len: u64,
    /// How long ago it was last modified, in milliseconds.
    pub age_ms: u64,
}

pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
