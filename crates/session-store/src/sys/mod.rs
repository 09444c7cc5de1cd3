//! Platform code: the same functions on every platform, one file per platform.
//!
//! The thread priority and memory hints are for the background threads (compaction,
//! maintenance): nothing depends on them for correctness, so where a platform lacks them they
//! do nothing. The journal's OS locks and the renames of quarantine and maintenance are std's
//! on every platform, and live here so that their platform semantics are written down once.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::*;

use std::fs::File;
use std::io;
use std::path::Path;

/// How the journal is locked: writers append (and compaction swaps files) under the
/// exclusive lock; a read-only loader takes the shared one, so it never sees half a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JournalLock {
    /// Appends and the compaction's swap.
    Exclusive,
    /// Read-only loading.
    Shared,
    /// Release: the file stays open for the next batch, so its lock is let go by hand.
    Release,
}

/// Takes or releases the journal's OS lock (std's, `flock(2)` on Linux: held by the open
/// file, and dropped by the kernel when the process dies), waiting while another process
/// holds it in a conflicting mode.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn lock_journal(journal: &File, how: JournalLock) -> io::Result<()> {
    match how {
        JournalLock::Exclusive => journal.lock(),
        JournalLock::Shared => journal.lock_shared(),
        JournalLock::Release => journal.unlock(),
    }
}

/// Renames `from` to `to`, replacing `to` if it exists: `rename(2)` on Linux, atomic on one
/// file system. Callers that must not replace anything reserve `to` first.
#[allow(clippy::disallowed_methods, reason = "sys is where the crate renames")]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}
