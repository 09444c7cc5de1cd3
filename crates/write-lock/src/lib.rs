//! A cross-process write lock that survives crashes, hung holders and slow I/O.
//!
//! `sessionkit-write-lock` guards a file (a session transcript, a registry) against concurrent
//! writers in any number of processes. It replaces the session write lock of OpenClaw and fixes
//! its failures: locks left behind by crashed processes, hung holders that froze sessions, and
//! holders that were robbed (or wrote on) after losing the lock.
//!
//! Use it when:
//!
//! - several processes write the same file and must take turns ([`Locker::acquire`]);
//! - a holder may crash or hang, and the lock must not outlive it ([the watchdog](#watchdog-and-fence));
//! - a holder must never write after losing the lock ([`LockGuard::write`] is fenced);
//! - a holder releases around slow work and must notice if someone else wrote meanwhile
//!   ([`LockGuard::suspend`], [`Suspended::resume`]).
//!
//! # Usage
//!
//! ```
//! use sessionkit_write_lock::Locker;
//! # fn main() -> Result<(), sessionkit_write_lock::Error> {
//! # let dir = std::env::temp_dir().join(format!("sk-doc-lock-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let transcript = dir.join("0b7e.jsonl");
//! let locker = Locker::from_env()?; // defaults plus SESSIONKIT_LOCK_* overrides
//!
//! let guard = locker.acquire(&transcript)?; // waits up to 60 s by default
//! guard.append(br#"{"type":"message"}"#)?; // fenced: fails if the lock was lost
//!
//! // Release around slow work, then take the lock back and verify nobody else wrote.
//! let suspended = guard.suspend()?;
//! // ... a model call ...
//! let guard = suspended.resume()?;
//! guard.append(br#"{"type":"reply"}"#)?;
//! guard.release()?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # Lock states
//!
//! The lock on `<target>` is the file `<target>.lock`, created exclusively. It holds a JSON
//! owner record (format in `docs/formats.md`): pid, start time, creation time, max hold, a
//! random owner token, host name, boot id, program, the caller's label, the fencing
//! generation, and `osLock: true`, the promise that the owner holds an OS lock (`flock`) on
//! the file for as long as it lives. [`Locker::inspect`] reports one of:
//!
//! - **free**: no lock file;
//! - **held**: a live owner; for our records the kernel says so (the OS lock cannot be taken);
//! - **stale**: removable, with [`StaleReason`]s: the owner is gone (its OS lock could be taken:
//!   certain, whatever its pid names now), its machine rebooted, its pid is dead or a zombie,
//!   its pid was reused (start time differs), it is a leftover of this very process, or the
//!   record is malformed and older than a grace period;
//! - **malformed**: no valid record yet, but younger than the grace period (its owner may be
//!   writing it); kept.
//!
//! Records of other programs (OpenClaw's) make no OS-lock promise and are judged by OpenClaw's
//! rules. Two reasons are **report-only**: *too old* and *hold exceeded*. A live holder is never
//! robbed for being slow: a contender waits, and its timeout error names the holder, how long it
//! has held the lock, and whether it is past its max hold. A stale lock is removed only if the
//! file is unchanged since it was judged (same identity and bytes), while holding its OS lock.
//!
//! # Watchdog and fence
//!
//! Every hold is bounded by the max hold (5 min by default). A watchdog thread, started on the
//! first acquire, revokes any guard of this process held longer: it removes the lock file if it
//! is still the guard's, fires the guard's [`Revocation`] signal (which the holder can poll or
//! await), and logs `lock held for N ms (max M ms)`. After that the guard's writes fail with
//! [`Error::Fenced`]. Writes through a guard check, right before they touch the target, that
//! the guard still owns the lock and that the lock file at the path is still its own. A
//! [`LockController`] abandons everything it handed out on cleanup in the same way.
//!
//! The fencing generation strictly increases for each acquisition of a target. It is kept in
//! `<target>.lock.gen`, advanced by each new holder under the lock (and never below the
//! generation of a stale record it replaced). It is not synced unless
//! [`sync_lock_file`](LockConfigBuilder::sync_lock_file) is on; after a power loss it resumes
//! from the last value that reached the disk.
//!
//! # Ordering and reentrancy
//!
//! Waiters in one process are served first come, first served and woken by the release
//! itself. Across processes, the first waiter polls with a short doubling pause (1 ms to 8 ms
//! by default). Locks are not reentrant by default, not even within one thread: a second
//! [`acquire`](Locker::acquire) of a held lock waits. [`Locker::acquire_as`] makes them
//! reentrant for one holder identity the caller names.
//!
//! # Mixed versions
//!
//! OpenClaw processes see our lock files as ordinary locks (the same name, and a superset of
//! their record), and our contenders judge theirs by their rules. Their removals do not take
//! the OS lock, so a removal by an OpenClaw process can race with ours exactly as two OpenClaw
//! processes race with each other.
//!
//! # Platform behavior
//!
//! Linux is the tested platform. The OS lock is [`std::fs::File::lock`] (`flock`); liveness,
//! start times and command lines come from `/proc`. On network file systems that do not
//! support `flock`, the OS lock cannot be taken or tested, and records are judged by the pid
//! rules alone (scoped by host name); this is reported, not hidden. Looking at a lock file
//! (inspect, a contender's judgement, a sweep) opens it with `O_NOATIME`, so it does not dirty
//! the inode with a new access time; on a file of another user, which Linux refuses that flag
//! for, it opens it again without. Other platforms compile but are not supported yet.
//!
//! # Async
//!
//! With the `tokio` feature, [`Locker::acquire_async`] waits without blocking a worker and is
//! cancel-safe: dropping the future leaves no lock file and no waiter behind. A lock won by a
//! blocking task whose future was dropped is released on a blocking thread, not on the worker
//! (unless the runtime is shutting down, when it is released in place); `OffWorker` does the
//! same for guards an application carries through async code.

#![deny(missing_docs)]

mod clock;
mod config;
mod controller;
mod error;
mod guard;
mod judge;
mod locker;
pub mod lookup;
mod owners;
mod publish;
pub mod record;
mod registry;
mod sys;
mod time;
#[cfg(feature = "tokio")]
mod tokio;
mod watchdog;

pub use crate::clock::{Clock, ManualClock, SystemClock};
pub use crate::config::{
    DEFAULT_ACQUIRE_TIMEOUT, DEFAULT_MAX_HOLD, DEFAULT_STALE_AFTER, DEFAULT_WARN_HOLD_AFTER,
    ENV_ACQUIRE_TIMEOUT_MS, ENV_MAX_HOLD_MS, ENV_STALE_MS, LockConfig, LockConfigBuilder,
};
pub use crate::controller::{CleanupReport, LockController};
pub use crate::error::{Error, FenceFailure, Holder, Operation, Result, Takeover};
pub use crate::guard::{LockGuard, Revocation, Suspended};
pub use crate::judge::{StaleReason, Status};
pub use crate::locker::{Inspection, Locker, WatchdogReport};
pub use crate::lookup::{Liveness, OwnerLookup, ProcLookup, ProcessProbe};
pub use crate::owners::OwnerRule;
pub use crate::record::{OwnerRecord, Payload, RECORD_FORMAT, format_created_at, parse_record};
pub use crate::time::{format_iso8601_ms, parse_iso8601_ms};

#[cfg(feature = "tokio")]
pub use crate::tokio::{OffWorker, release_on_signals};

/// Releases every lock this process holds through any [`Locker`] (removing each lock file that
/// is still its own) and returns how many it released. Their guards' later writes fail as
/// released. For signal handlers and shutdown paths; see also `release_on_signals` (feature
/// `tokio`).
pub fn release_all_held() -> usize {
    registry::registry().release_all()
}

/// The lock file that guards `target`: its real path with `.lock` appended.
///
/// # Errors
///
/// [`Error::Io`] if the target's directory cannot be resolved.
pub fn lock_path_for(target: impl AsRef<std::path::Path>) -> Result<std::path::PathBuf> {
    locker::resolve(target.as_ref(), Operation::Inspect).map(|p| p.lock_path)
}

// The README's example compiles as a doc test, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
