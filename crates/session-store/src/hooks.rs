//! Hooks for the crate's unit tests that must act at one point of an operation, by path.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where an operation stops to run a hook.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Point {
    /// Opening: a damaged journal has been copied aside and is about to be replaced (its
    /// lock still held). Keyed by the journal's path.
    JournalRecovery,
    /// Compaction: its starting offset is taken and its snapshot written, and it is about to
    /// take the journal's lock. Keyed by the snapshot's path.
    CompactionStarted,
    /// Compaction: the new snapshot and the new journal are both renamed into place, and the
    /// journal's lock is still held. Keyed by the snapshot's path.
    FilesReplaced,
    /// After another process's compaction, the view is about to follow it or reload the
    /// store: the new journal is open and locked, and the files are about to be read. Keyed by
    /// the journal's path.
    Reloading,
    /// A batch: the journal file the writer locked turned out to be replaced, and the lock
    /// is let go again. Keyed by the journal's path.
    WriterFoundJournalReplaced,
    /// A reader found the journal's exclusive lock held by this process and is about to read
    /// without an OS lock of its own. Keyed by the journal's path.
    ReadingWhileHeld,
    /// A batch is appended to the journal and not yet synced. Keyed by the journal's path.
    BatchAppended,
    /// A maintenance pass that may change something has started (and holds the store's
    /// one-pass lock). Keyed by the snapshot's path.
    PassStarted,
    /// A maintenance pass has planned what to do with files and is about to do it. Keyed by
    /// the snapshot's path.
    FilesPlanned,
    /// A maintenance pass has checked a run of files and is about to take the directory's
    /// turn to change them. Keyed by the store's directory as the snapshot's path gives it.
    FilesChecked,
    /// An open or a reload has parsed the snapshot, before it takes the journal's lock.
    /// Keyed by the snapshot's path.
    SnapshotParsed,
}

type Hook = Box<dyn FnOnce() + Send>;

static HOOKS: Mutex<Vec<(Point, PathBuf, Hook)>> = Mutex::new(Vec::new());

/// Runs `hook` once, the next time an operation on `path` reaches `point`.
pub(crate) fn on(point: Point, path: &Path, hook: impl FnOnce() + Send + 'static) {
    let mut hooks = HOOKS.lock().unwrap();
    hooks.push((point, path.to_path_buf(), Box::new(hook)));
}

/// Runs the hook waiting for `point` on `path`, if there is one.
pub(crate) fn reached(point: Point, path: &Path) {
    let hook = {
        let mut hooks = HOOKS.lock().unwrap();
        let at = hooks.iter().position(|(p, q, _)| *p == point && q == path);
        at.map(|at| hooks.remove(at).2)
    };
    if let Some(hook) = hook {
        hook();
    }
}
