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

use std::fs::{File, TryLockError};
use std::io;
use std::path::Path;
use std::time::{Duration, Instant};

/// How the journal is locked: writers append (and compaction swaps files) under the
/// exclusive lock; a read-only loader takes the shared one, so it never sees half a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JournalLock {
    /// Appends and the compaction's swap.
    Exclusive,
    /// Readers: catching up, and read-only loading.
    Shared,
}

/// Takes the journal's OS lock (std's, `flock(2)` on Linux: held by the open
/// file, and dropped by the kernel when the process dies), waiting while another process
/// holds it in a conflicting mode, for at most `timeout`; then it fails with
/// [`io::ErrorKind::TimedOut`]. `waiting` is called once if the lock is held.
///
/// The OS gives no timed wait for this lock, so a held lock is polled: every 50 µs at first,
/// backing off to every 2 ms. A batch holds the lock for one write and fsync, so a waiter
/// usually gets it within a poll or two of its release.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn lock_journal(
    journal: &File,
    how: JournalLock,
    timeout: Duration,
    waiting: &dyn Fn(),
) -> io::Result<()> {
    let attempt = || match how {
        JournalLock::Exclusive => journal.try_lock(),
        JournalLock::Shared => journal.try_lock_shared(),
    };
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        match attempt() {
            Ok(()) => return Ok(()),
            Err(TryLockError::Error(e)) => return Err(e),
            Err(TryLockError::WouldBlock) => {}
        }
        if pause == FIRST_PAUSE {
            waiting();
        }
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "another process held the journal's lock for longer than the lock timeout \
                     ({} ms)",
                    timeout.as_millis()
                ),
            ));
        }
        std::thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(LAST_PAUSE);
    }
}

/// How long [`lock_journal`] first sleeps between attempts on a held lock.
const FIRST_PAUSE: Duration = Duration::from_micros(50);
/// The longest [`lock_journal`] sleeps between attempts.
const LAST_PAUSE: Duration = Duration::from_millis(2);

/// Lets go of the journal's OS lock: the file stays open for the next batch, so its lock is
/// released by hand rather than by closing it.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn unlock_journal(journal: &File) -> io::Result<()> {
    journal.unlock()
}

/// Renames `from` to `to`, replacing `to` if it exists: `rename(2)` on Linux, atomic on one
/// file system. Callers that must not replace anything reserve `to` first.
#[allow(clippy::disallowed_methods, reason = "sys is where the crate renames")]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}
