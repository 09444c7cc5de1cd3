//! Platform code: the same functions on every platform, one file per platform.
//!
//! The thread priority and memory hints are for the background threads (compaction,
//! maintenance): nothing depends on them for correctness, so where a platform lacks them they
//! do nothing. The journal's OS locks and the renames of quarantine and maintenance are std's
//! on every platform, and live here so that their platform semantics are written down once.
//! Where the platform offers it (Linux), maintenance archives with a rename that refuses to
//! replace its target ([`rename_no_replace`]); elsewhere it reserves the name first.

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
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

/// Opens a store file (the snapshot, the journal, its fence) with `options`, refusing
/// anything but a regular file with [`io::ErrorKind::InvalidInput`]: reading a FIFO, a device
/// or a directory in its place would block for ever or make no sense. The open itself does not
/// block where the platform allows ([`open_without_blocking`]).
pub(crate) fn open_regular(options: &mut std::fs::OpenOptions, path: &Path) -> io::Result<File> {
    let file = open_without_blocking(options, path)?;
    if file.metadata()?.is_file() {
        Ok(file)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ))
    }
}

/// How the journal is locked: writers append (and compaction swaps files) under the
/// exclusive lock; a read-only loader takes the shared one, so it never sees half a swap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JournalLock {
    /// Appends and the compaction's swap.
    Exclusive,
    /// Readers: catching up, and read-only loading.
    Shared,
}

/// Where a journal lock taken by [`lock_journal`] is held.
#[derive(Debug)]
#[must_use = "the lock is released by `unlock_journal`"]
pub(crate) enum Held {
    /// By the open file it was asked for.
    Own,
    /// By another open of the same file, which holds it until it is closed.
    Reopened(File),
}

/// Takes the journal's OS lock (std's, `flock(2)` on Linux: held by the open file, and
/// dropped by the kernel when the process dies), waiting while another open file holds it in
/// a conflicting mode, for at most `timeout`; then it fails with [`io::ErrorKind::TimedOut`].
/// `waiting` is called once if the lock is held.
///
/// The OS gives no timed wait for this lock. So a held lock is waited for by a short-lived
/// thread that blocks on it through another open of the same file (see [`reopen`]), while
/// the caller waits for that thread up to `timeout`. A blocked waiter is woken when the lock
/// is released; polling instead lost the lock to a busy holder that took it again between
/// polls (a p99 latency of 30 ms against 6 ms, four processes writing one store). If the
/// caller gives up, the thread lets go of the lock as soon as it gets it. Where no other open
/// can be made, or [`MOST_LOCK_WAITERS`] such threads are already blocked (holders that hang),
/// the lock is polled: every 50 µs at first, backing off to every 2 ms.
pub(crate) fn lock_journal(
    journal: &File,
    how: JournalLock,
    timeout: Duration,
    waiting: &dyn Fn(),
) -> io::Result<Held> {
    if try_lock(journal, how)? {
        return Ok(Held::Own);
    }
    waiting();
    if timeout.is_zero() {
        return Err(timed_out(timeout));
    }
    if let Some(outcome) = wait_in_background(journal, how, timeout) {
        return outcome;
    }
    poll(journal, how, timeout).map(|()| Held::Own)
}

/// Lets go of a lock [`lock_journal`] took on `journal`. The file stays open for the next
/// batch, so its own lock is released by hand rather than by closing it.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn unlock_journal(journal: &File, held: Held) -> io::Result<()> {
    match held {
        Held::Own => journal.unlock(),
        // Closing the only descriptor of that open file releases its lock.
        Held::Reopened(other) => {
            drop(other);
            Ok(())
        }
    }
}

/// The most threads [`lock_journal`] keeps blocked on held locks at once, in the process.
/// Each one whose caller gave up stays blocked until the holder lets go, so a holder that
/// hangs would otherwise leave one behind per timed-out operation.
pub(crate) const MOST_LOCK_WAITERS: usize = 16;

/// The threads blocked on a journal lock now.
static LOCK_WAITERS: AtomicUsize = AtomicUsize::new(0);

/// Counts a lock-waiting thread for as long as it lives.
struct Waiter;

impl Waiter {
    fn enlist() -> Option<Waiter> {
        LOCK_WAITERS
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < MOST_LOCK_WAITERS).then_some(n + 1)
            })
            .ok()
            .map(|_| Waiter)
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        LOCK_WAITERS.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Waits for the lock on a thread blocked in the OS's wait, up to `timeout`; `None` if that
/// cannot be done here (no other open of the file, too many such threads, no thread).
fn wait_in_background(
    journal: &File,
    how: JournalLock,
    timeout: Duration,
) -> Option<io::Result<Held>> {
    let waiter = Waiter::enlist()?;
    let other = reopen(journal).ok()?;
    let (tx, rx) = mpsc::sync_channel(1);
    let spawned = thread::Builder::new()
        .name("sessionkit-journal-lock".to_owned())
        .stack_size(64 * 1024)
        .spawn(move || {
            let _counted = waiter;
            let outcome = block_on(&other, how).map(|()| other);
            // If the caller has given up, the message is dropped, and with it the file and
            // its lock.
            let _ = tx.send(outcome);
        });
    if spawned.is_err() {
        return None;
    }
    Some(match rx.recv_timeout(timeout) {
        Ok(Ok(other)) => Ok(Held::Reopened(other)),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(timed_out(timeout)),
    })
}

/// One attempt: true if the lock was taken.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
fn try_lock(journal: &File, how: JournalLock) -> io::Result<bool> {
    let attempt = match how {
        JournalLock::Exclusive => journal.try_lock(),
        JournalLock::Shared => journal.try_lock_shared(),
    };
    match attempt {
        Ok(()) => Ok(true),
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Blocks until the lock is taken: only ever on a thread of [`wait_in_background`].
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
fn block_on(journal: &File, how: JournalLock) -> io::Result<()> {
    match how {
        JournalLock::Exclusive => journal.lock(),
        JournalLock::Shared => journal.lock_shared(),
    }
}

/// Polls the lock until it is taken or `timeout` has passed.
fn poll(journal: &File, how: JournalLock, timeout: Duration) -> io::Result<()> {
    let started = Instant::now();
    let mut pause = FIRST_PAUSE;
    loop {
        let waited = started.elapsed();
        if waited >= timeout {
            return Err(timed_out(timeout));
        }
        thread::sleep(pause.min(timeout - waited));
        pause = (pause * 2).min(LAST_PAUSE);
        if try_lock(journal, how)? {
            return Ok(());
        }
    }
}

fn timed_out(timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!(
            "another process held the journal's lock for longer than the lock timeout ({} ms)",
            timeout.as_millis()
        ),
    )
}

/// How long [`poll`] first sleeps between attempts on a held lock.
const FIRST_PAUSE: Duration = Duration::from_micros(50);
/// The longest [`poll`] sleeps between attempts.
const LAST_PAUSE: Duration = Duration::from_millis(2);

/// Renames `from` to `to`, replacing `to` if it exists: `rename(2)` on Linux, atomic on one
/// file system. Callers that must not replace anything reserve `to` first.
#[allow(clippy::disallowed_methods, reason = "sys is where the crate renames")]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}

#[cfg(test)]
mod tests {
    use std::fs::File;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    use sessionkit_test_support::{HANG, Scratch, wait_until};

    use super::{Held, JournalLock, LOCK_WAITERS, MOST_LOCK_WAITERS, lock_journal, try_lock};

    /// Three opens of one file: each has a lock of its own.
    fn three_opens(dir: &Scratch) -> (File, File, File) {
        let path = dir.join("journal");
        std::fs::write(&path, b"").unwrap();
        let open = || File::open(&path).unwrap();
        (open(), open(), open())
    }

    /// Takes the exclusive lock through `journal` while `holder` holds it: `holder` lets go
    /// only once the caller has found it held.
    fn taken_once_released(holder: &File, journal: &File) -> Held {
        let waiting = AtomicBool::new(false);
        thread::scope(|s| {
            let waiter = s.spawn(|| {
                lock_journal(journal, JournalLock::Exclusive, HANG, &|| {
                    waiting.store(true, Ordering::SeqCst);
                })
            });
            wait_until("the waiter to find the lock held", || {
                waiting.load(Ordering::SeqCst)
            });
            super::unlock_journal(holder, Held::Own).unwrap();
            waiter.join().unwrap().unwrap()
        })
    }

    /// A held lock is waited for by a thread blocked in the OS's wait, through another open
    /// of the file, which then holds the lock for the caller until it is unlocked.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_held_lock_is_waited_for_in_the_os_not_polled() {
        let dir = Scratch::new("lock-wait");
        let (holder, journal, third) = three_opens(&dir);
        assert!(try_lock(&holder, JournalLock::Exclusive).unwrap());
        let held = taken_once_released(&holder, &journal);
        assert!(matches!(held, Held::Reopened(_)), "{held:?}");
        // The other open holds the lock for the caller, until it is unlocked.
        assert!(!try_lock(&third, JournalLock::Shared).unwrap());
        super::unlock_journal(&journal, held).unwrap();
        assert!(try_lock(&third, JournalLock::Shared).unwrap());
    }

    /// A caller that gives up leaves a thread blocked on the lock; once the holder lets go,
    /// that thread takes the lock and lets go of it at once, instead of keeping it.
    #[cfg(target_os = "linux")]
    #[test]
    fn a_waiter_that_gave_up_lets_go_of_the_lock_it_gets() {
        let dir = Scratch::new("lock-give-up");
        let (holder, journal, third) = three_opens(&dir);
        assert!(try_lock(&holder, JournalLock::Exclusive).unwrap());
        let outcome = lock_journal(
            &journal,
            JournalLock::Exclusive,
            Duration::from_millis(20),
            &|| {},
        );
        let err = outcome.unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        assert_eq!(LOCK_WAITERS.load(Ordering::SeqCst), 1);
        super::unlock_journal(&holder, Held::Own).unwrap();
        wait_until("the abandoned waiter to end", || {
            LOCK_WAITERS.load(Ordering::SeqCst) == 0
        });
        assert!(try_lock(&third, JournalLock::Exclusive).unwrap());
    }

    /// With as many threads blocked as allowed (a holder that hangs, and callers that gave
    /// up), no more are started: the lock is polled instead, and still taken once free.
    #[test]
    fn past_the_most_blocked_waiters_the_lock_is_polled() {
        let dir = Scratch::new("lock-poll");
        let (holder, journal, _) = three_opens(&dir);
        assert!(try_lock(&holder, JournalLock::Exclusive).unwrap());
        let brief = Duration::from_millis(5);
        for _ in 0..MOST_LOCK_WAITERS + 2 {
            let err = lock_journal(&journal, JournalLock::Shared, brief, &|| {}).unwrap_err();
            assert_eq!(err.kind(), std::io::ErrorKind::TimedOut, "{err}");
        }
        if cfg!(target_os = "linux") {
            assert_eq!(LOCK_WAITERS.load(Ordering::SeqCst), MOST_LOCK_WAITERS);
        }
        let held = taken_once_released(&holder, &journal);
        assert!(matches!(held, Held::Own), "{held:?}");
    }
}
