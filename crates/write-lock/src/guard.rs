//! A held lock: the guard, its fence check, guarded writes, release and revocation.

use std::fmt;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use sessionkit_atomic_fs::{Appended, AtomicWriter, RecordAppender, in_turn_of_parent};

use crate::clock::Clock;
use crate::error::{Ctx, Error, FenceFailure, Operation, Result};
use crate::locker::Locker;
use crate::publish::{self, Fingerprint};
use crate::record::OwnerRecord;
use crate::registry::registry;

const HELD: u8 = 0;
const RELEASED: u8 = 1;
const REVOKED: u8 = 2;
const ABANDONED: u8 = 3;

/// Tells a holder that its lock was taken away (revoked by the watchdog or abandoned by a
/// controller). Cheap to clone; every clone sees the same signal.
#[derive(Clone, Debug, Default)]
pub struct Revocation {
    inner: Arc<RevocationInner>,
}

#[derive(Debug, Default)]
struct RevocationInner {
    fired: Mutex<Option<FenceFailure>>,
    cond: Condvar,
    #[cfg(feature = "tokio")]
    notify: ::tokio::sync::Notify,
}

impl Revocation {
    /// Why the lock was taken away, or `None` while it is still held (or was released
    /// normally).
    pub fn reason(&self) -> Option<FenceFailure> {
        *self.inner.fired.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// True once the lock was revoked or abandoned.
    pub fn is_revoked(&self) -> bool {
        self.reason().is_some()
    }

    /// Blocks until the lock is taken away or `timeout` passes; returns the reason, if any.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<FenceFailure> {
        let fired = self.inner.fired.lock().unwrap_or_else(|e| e.into_inner());
        let (fired, _) = self
            .inner
            .cond
            .wait_timeout_while(fired, timeout, |f| f.is_none())
            .unwrap_or_else(|e| e.into_inner());
        *fired
    }

    /// Waits asynchronously until the lock is taken away.
    #[cfg(feature = "tokio")]
    pub async fn revoked(&self) -> FenceFailure {
        loop {
            let notified = self.inner.notify.notified();
            if let Some(reason) = self.reason() {
                return reason;
            }
            notified.await;
        }
    }

    fn fire(&self, reason: FenceFailure) {
        let mut fired = self.inner.fired.lock().unwrap_or_else(|e| e.into_inner());
        if fired.is_none() {
            *fired = Some(reason);
        }
        drop(fired);
        self.inner.cond.notify_all();
        #[cfg(feature = "tokio")]
        self.inner.notify.notify_waiters();
    }
}

/// The lock as held by this process, shared by reentrant guards.
pub(crate) struct Held {
    pub(crate) id: u64,
    pub(crate) target: PathBuf,
    pub(crate) lock_path: PathBuf,
    /// The open lock file; its OS lock is the proof of life. `None` once let go.
    pub(crate) file: Mutex<Option<File>>,
    pub(crate) identity: (u64, u64),
    pub(crate) record: OwnerRecord,
    pub(crate) acquired: Instant,
    pub(crate) max_hold: Duration,
    pub(crate) holder_key: Option<String>,
    /// The clock the hold is timed with, and the hold past which a release warns.
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) warn_hold_after: Duration,
    /// Held by a guarded write from its last fence check until the target has changed, so a
    /// revocation can never fall between the check and the write.
    write_gate: Mutex<()>,
    state: AtomicU8,
    refs: AtomicUsize,
    pub(crate) revocation: Revocation,
}

impl fmt::Debug for Held {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Held")
            .field("lock_path", &self.lock_path)
            .field("generation", &self.record.generation)
            .field("state", &self.state.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl Held {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        id: u64,
        target: PathBuf,
        lock_path: PathBuf,
        file: File,
        identity: (u64, u64),
        record: OwnerRecord,
        acquired: Instant,
        max_hold: Duration,
        holder_key: Option<String>,
        clock: Arc<dyn Clock>,
        warn_hold_after: Duration,
    ) -> Held {
        Held {
            id,
            target,
            lock_path,
            file: Mutex::new(Some(file)),
            identity,
            record,
            acquired,
            max_hold,
            holder_key,
            clock,
            warn_hold_after,
            write_gate: Mutex::new(()),
            state: AtomicU8::new(HELD),
            refs: AtomicUsize::new(0),
            revocation: Revocation::default(),
        }
    }

    pub(crate) fn is_held(&self) -> bool {
        self.state.load(Ordering::SeqCst) == HELD
    }

    pub(crate) fn add_ref(&self) {
        self.refs.fetch_add(1, Ordering::SeqCst);
    }

    /// Checks, right before a write, that this lock is still held and that the lock file on
    /// disk is still the one whose OS lock we hold.
    pub(crate) fn check_fence(&self, op: Operation) -> Result<()> {
        let ctx = Ctx::new(op, &self.target);
        match self.state.load(Ordering::SeqCst) {
            HELD => {}
            REVOKED => return Err(ctx.fenced(FenceFailure::Revoked)),
            ABANDONED => return Err(ctx.fenced(FenceFailure::Abandoned)),
            _ => return Err(ctx.fenced(FenceFailure::Released)),
        }
        // The file stays open while held, so its inode cannot be reused by another lock file:
        // the same identity at the path means the path still names our file.
        match std::fs::symlink_metadata(&self.lock_path) {
            Ok(meta) if sessionkit_atomic_fs::file_identity(&meta) == self.identity => Ok(()),
            Ok(_) => Err(ctx.fenced(FenceFailure::Superseded)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                Err(ctx.fenced(FenceFailure::Superseded))
            }
            Err(e) => Err(ctx.io("inspect the lock file", &self.lock_path, e)),
        }
    }

    /// Lets the lock go: removes the lock file if it is still ours, closes it (dropping the OS
    /// lock), and wakes the next waiter in this process. Idempotent.
    pub(crate) fn finish(&self, how: u8) -> Result<()> {
        // Wait for a guarded write in flight: the lock is given up only between writes.
        let _gate = self.write_gate.lock().unwrap_or_else(|e| e.into_inner());
        self.finish_gated(how)
    }

    /// Revokes unless a guarded write is in flight; `None` means "try again later".
    pub(crate) fn try_revoke(&self) -> Option<Result<()>> {
        let _gate = match self.write_gate.try_lock() {
            Ok(gate) => gate,
            Err(std::sync::TryLockError::Poisoned(e)) => e.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return None,
        };
        Some(self.finish_gated(REVOKED))
    }

    /// Takes the write gate for one guarded write.
    pub(crate) fn gate(&self) -> std::sync::MutexGuard<'_, ()> {
        self.write_gate.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish_gated(&self, how: u8) -> Result<()> {
        if self
            .state
            .compare_exchange(HELD, how, Ordering::SeqCst, Ordering::SeqCst)
            .is_err()
        {
            return Ok(());
        }
        let result = self.remove_lock_file();
        registry().release(&self.lock_path, self.id);
        let held_for = self
            .clock
            .instant()
            .saturating_duration_since(self.acquired);
        if how == RELEASED && held_for > self.warn_hold_after {
            tracing::warn!(path = %self.target.display(), "lock held for {} ms", held_for.as_millis());
        } else {
            tracing::debug!(path = %self.target.display(), held_ms = held_for.as_millis() as u64, "lock released");
        }
        match how {
            REVOKED => self.revocation.fire(FenceFailure::Revoked),
            ABANDONED => self.revocation.fire(FenceFailure::Abandoned),
            _ => {}
        }
        result
    }

    fn remove_lock_file(&self) -> Result<()> {
        let ctx = Ctx::new(Operation::Release, &self.target);
        let mut file = self.file.lock().unwrap_or_else(|e| e.into_inner());
        let Some(open) = file.take() else {
            return Ok(());
        };
        // Unlink while the OS lock is still held, so no contender can judge the file free and
        // remove someone else's in between; then close, which drops the OS lock.
        let result = match std::fs::symlink_metadata(&self.lock_path) {
            Ok(meta) if sessionkit_atomic_fs::file_identity(&meta) == self.identity => {
                let lock_path = &self.lock_path;
                match in_turn_of_parent(lock_path, || std::fs::remove_file(lock_path)) {
                    Ok(()) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                    Err(e) => Err(ctx.io("remove the lock file", &self.lock_path, e)),
                }
            }
            // Someone else's file now, or none: never remove a newer holder's lock.
            Ok(_) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(ctx.io("inspect the lock file", &self.lock_path, e)),
        };
        drop(open);
        result
    }

    /// Drops one guard's reference; the last one releases.
    fn drop_ref(&self) -> Result<()> {
        if self.refs.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.finish(RELEASED)
        } else {
            Ok(())
        }
    }

    /// The state in words, for logs.
    pub(crate) fn state_name(&self) -> &'static str {
        match self.state.load(Ordering::SeqCst) {
            HELD => "held",
            RELEASED => "released",
            REVOKED => "revoked",
            _ => "abandoned",
        }
    }

    pub(crate) fn release_now(&self) -> Result<()> {
        self.finish(RELEASED)
    }

    pub(crate) fn abandon(&self) -> Result<()> {
        self.finish(ABANDONED)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        // A hold that never reached a guard (an async acquire dropped mid-attempt) still
        // removes its lock file.
        if let Err(e) = self.finish(RELEASED) {
            tracing::warn!(error = %e, "failed to release an unused lock");
        }
    }
}

/// A held write lock. Released on drop; [`release`](LockGuard::release) reports errors.
///
/// Writes through the guard ([`write`](LockGuard::write), [`append`](LockGuard::append)) are
/// *fenced*: right before touching the target they check that the guard was not released,
/// revoked or abandoned and that the lock file on disk is still its own, and otherwise fail
/// with [`Error::Fenced`] without writing anything.
pub struct LockGuard {
    pub(crate) held: Arc<Held>,
    locker: Locker,
    released: bool,
}

impl fmt::Debug for LockGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LockGuard")
            .field("target", &self.held.target)
            .field("generation", &self.generation())
            .field("released", &self.released)
            .finish_non_exhaustive()
    }
}

impl LockGuard {
    pub(crate) fn new(held: Arc<Held>, locker: Locker) -> LockGuard {
        held.add_ref();
        LockGuard {
            held,
            locker,
            released: false,
        }
    }

    /// The file this lock protects (after resolving symlinks).
    pub fn target(&self) -> &Path {
        &self.held.target
    }

    /// The lock file (`<target>.lock`).
    pub fn lock_path(&self) -> &Path {
        &self.held.lock_path
    }

    /// The fencing generation of this acquisition: strictly greater than every earlier
    /// acquisition's of the same target (see `docs/formats.md`).
    pub fn generation(&self) -> u64 {
        self.held.record.generation.unwrap_or(0)
    }

    /// The owner record written into the lock file.
    pub fn record(&self) -> &OwnerRecord {
        &self.held.record
    }

    /// How long the lock has been held (by the wall clock of this process).
    pub fn held_for(&self) -> Duration {
        self.held.acquired.elapsed()
    }

    /// True while the lock is held by this guard (not released, revoked or abandoned).
    pub fn is_held(&self) -> bool {
        !self.released && self.held.is_held()
    }

    /// The signal that fires if the lock is revoked or abandoned while held.
    pub fn revocation(&self) -> Revocation {
        self.held.revocation.clone()
    }

    /// Checks that the guard still owns the lock (see [`LockGuard`]).
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] naming why it does not.
    pub fn check_fence(&self) -> Result<()> {
        if self.released {
            return Err(
                Ctx::new(Operation::Write, &self.held.target).fenced(FenceFailure::Released)
            );
        }
        self.held.check_fence(Operation::Write)
    }

    /// Replaces the target atomically and durably, if the guard still owns the lock.
    ///
    /// # Errors
    ///
    /// As [`write_with`](LockGuard::write_with).
    pub fn write(&self, contents: &[u8]) -> Result<()> {
        self.write_with(&AtomicWriter::new(), contents)
    }

    /// Replaces the target with `writer`'s options, if the guard still owns the lock. The fence
    /// is checked before the temp file is written and again right before the rename; from that
    /// second check until the rename is done, the lock cannot be revoked (the watchdog waits
    /// for the write), so a write that returns `Ok` was made while the lock was held.
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] (nothing written) or [`Error::Write`].
    pub fn write_with(&self, writer: &AtomicWriter, contents: &[u8]) -> Result<()> {
        self.check_fence()?;
        let target = &self.held.target;
        let before = publish::before_write(target);
        let pending = writer
            .prepare(target, contents)
            .map_err(|source| write_error(target, source))?;
        let gate = self.held.gate();
        self.check_fence()?;
        pending
            .commit()
            .map_err(|source| write_error(target, source))?;
        drop(gate);
        publish::after_write(target, before);
        Ok(())
    }

    /// Appends one record (and a newline) to the target with default options (no sync), if
    /// the guard still owns the lock.
    ///
    /// # Errors
    ///
    /// As [`append_with`](LockGuard::append_with).
    pub fn append(&self, record: &[u8]) -> Result<Appended> {
        self.append_with(&RecordAppender::new(), record)
    }

    /// Appends one record with `appender`'s options, if the guard still owns the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] (nothing written) or [`Error::Write`].
    pub fn append_with(&self, appender: &RecordAppender, record: &[u8]) -> Result<Appended> {
        let target = &self.held.target;
        let before = publish::before_write(target);
        let gate = self.held.gate();
        self.check_fence()?;
        let appended = appender
            .append(target, record)
            .map_err(|source| write_error(target, source))?;
        drop(gate);
        publish::after_write(target, before);
        Ok(appended)
    }

    /// Releases this guard. The lock file goes when the last guard of a reentrant holder is
    /// released; it is removed only if it is still this lock's, never a newer holder's.
    /// Releasing twice is a no-op.
    ///
    /// # Errors
    ///
    /// [`Error::Io`] if the lock file could not be removed (the OS lock is dropped anyway, so
    /// the next contender will find the owner gone).
    pub fn release(mut self) -> Result<()> {
        self.release_ref()
    }

    fn release_ref(&mut self) -> Result<()> {
        if std::mem::replace(&mut self.released, true) {
            return Ok(());
        }
        self.held.drop_ref()
    }

    pub(crate) fn held(&self) -> &Arc<Held> {
        &self.held
    }

    /// Releases the lock around slow work (a model call, say), remembering the target's state:
    /// its identity, its length and a checksum of its last 4 KiB.
    /// [`Suspended::resume`] takes the lock again and checks that the target changed only
    /// through writes published by this process's guards.
    ///
    /// # Errors
    ///
    /// [`Error::Fenced`] if the guard no longer owns the lock, [`Error::Io`] if the target
    /// cannot be read.
    pub fn suspend(mut self) -> Result<Suspended> {
        self.check_fence()?;
        let target = self.held.target.clone();
        let since = publish::watch(&target);
        let state = match publish::fingerprint(&target) {
            Ok(state) => state,
            Err(e) => {
                publish::unwatch(&target);
                return Err(Ctx::new(Operation::Release, &target).io("read", &target, e));
            }
        };
        let holder = self.held.holder_key.clone();
        let locker = self.locker.clone();
        let released = self.release_ref();
        let suspended = Suspended {
            locker,
            target,
            holder,
            state,
            since,
            done: false,
        };
        released.map(|()| suspended)
    }
}

/// A lock released around slow work, to be [`resume`](Suspended::resume)d.
///
/// Dropping it without resuming just forgets the recorded state.
pub struct Suspended {
    locker: Locker,
    target: PathBuf,
    holder: Option<String>,
    state: Fingerprint,
    since: u64,
    done: bool,
}

impl fmt::Debug for Suspended {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Suspended")
            .field("target", &self.target)
            .field("len", &self.state.len)
            .finish_non_exhaustive()
    }
}

impl Suspended {
    /// The target whose lock is suspended.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Takes the lock again (waiting up to the acquire timeout) and verifies the target: it
    /// must be unchanged, or changed only by writes published through this process's guards
    /// since the suspension.
    ///
    /// # Errors
    ///
    /// [`Error::Takeover`] saying what changed (the lock is released again), [`Error::Timeout`]
    /// if the lock could not be had, [`Error::Io`].
    pub fn resume(mut self) -> Result<LockGuard> {
        let guard = match &self.holder {
            Some(holder) => self.locker.acquire_as(&self.target, holder)?,
            None => self.locker.acquire(&self.target)?,
        };
        self.finish_resume(guard)
    }

    pub(crate) fn finish_resume(&mut self, guard: LockGuard) -> Result<LockGuard> {
        let ctx = Ctx::new(Operation::Resume, &self.target);
        let current =
            publish::fingerprint(&self.target).map_err(|e| ctx.io("read", &self.target, e))?;
        let verdict = publish::verify(&self.target, self.state, self.since, current);
        self.done = true;
        publish::unwatch(&self.target);
        match verdict {
            Ok(()) => Ok(guard),
            Err(takeover) => {
                tracing::warn!(path = %self.target.display(), %takeover, "takeover while the lock was suspended");
                drop(guard);
                Err(Error::Takeover {
                    op: Operation::Resume,
                    path: self.target.clone(),
                    takeover,
                })
            }
        }
    }

    #[cfg(feature = "tokio")]
    pub(crate) fn parts(&self) -> (Locker, PathBuf, Option<String>) {
        (
            self.locker.clone(),
            self.target.clone(),
            self.holder.clone(),
        )
    }
}

impl Drop for Suspended {
    fn drop(&mut self) {
        if !self.done {
            publish::unwatch(&self.target);
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        if let Err(e) = self.release_ref() {
            tracing::warn!(error = %e, "failed to release a lock on drop");
        }
    }
}

fn write_error(target: &Path, source: sessionkit_atomic_fs::Error) -> Error {
    Error::Write {
        op: Operation::Write,
        path: target.to_path_buf(),
        source,
    }
}
