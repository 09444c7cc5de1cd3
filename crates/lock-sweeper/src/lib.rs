//! Sweeps directories for stale lock sidecars and removes them: safely, with one owner lookup
//! per pid, and (with the `tokio` feature) without stalling an async runtime.
//!
//! `sessionkit-lock-sweeper` replaces OpenClaw's startup sweep of session locks, which looked
//! up an owner's command line once per lock instead of once per pid and never yielded (it once
//! stalled a gateway for 87 s). It has no stale rules of its own: every lock is judged by
//! [`sessionkit_write_lock`]'s judge, the one place that judges a lock.
//!
//! Use it when:
//!
//! - a service starts and must clear the locks its crashed predecessors left
//!   ([`Sweeper::sweep`]);
//! - an operator wants to see what is locked and why, changing nothing
//!   ([`SweeperBuilder::dry_run`]);
//! - an async service sweeps at startup and must stay responsive (`Sweeper::sweep_async`,
//!   feature `tokio`);
//! - crashes also left atomic-fs temp files behind ([`SweeperBuilder::temp_older_than`]).
//!
//! # Guarantees
//!
//! - **One judge.** Each sidecar goes through [`Locker::remove_if_stale`]
//!   (or [`Locker::inspect_lock_file`] in a dry run). Report-only reasons (too old, hold
//!   exceeded) never remove a lock; a live owner is never robbed.
//! - **Unchanged or kept.** A lock is removed only if, judged again while holding its OS
//!   lock, it is still stale and still the same file with the same bytes. A lock re-created or
//!   rewritten between listing and removal survives.
//! - **Only sidecars.** Only regular files and symlinks whose names end in `.lock` are
//!   candidates (`sessions.json.lock` included). A symlink is never followed: it is judged as
//!   a file without a record, and only the link itself is removed once it is older than the
//!   grace period. `<target>.lock.gen` counters and all other files are never touched.
//! - **One lookup per pid.** Each sweep wraps the owner lookup in a fresh [`MemoLookup`],
//!   shared by all its directories; a failed lookup is not cached, and the lock it concerned
//!   is kept. [`SweepReport::lookups`] is the exact number of real lookups.
//! - **Ours, optionally.** Which owners count as ours is configurable
//!   ([`SweeperBuilder::ours`]: program names, OpenClaw's rule, or a predicate). An owner
//!   holding the OS lock on its sidecar is ours by definition. With
//!   [`SweeperBuilder::foreign_owners_stale`] (off by default) a live owner whose command line
//!   is not ours is judged stale, as OpenClaw's non-owner rule does.
//! - **Goes on.** A missing directory is empty; a file that cannot be read or removed
//!   (permissions, I/O) is reported in its entry, a directory that cannot be listed in
//!   [`SweepReport::dir_errors`], and the sweep goes on.
//!
//! What happens to each kind of file, by default:
//!
//! | sidecar | outcome |
//! | --- | --- |
//! | our record, owner alive (holds its OS lock) | kept, `held` |
//! | our record, owner gone | removed, `owner-gone` |
//! | OpenClaw record, dead or zombie pid | removed, `dead-pid` (+ `too-old` if old) |
//! | OpenClaw record, pid reused | removed, `recycled-pid` |
//! | OpenClaw record, live owner, old | kept, `held` with `too-old` |
//! | OpenClaw record, lookup failed | kept, `held`, no liveness |
//! | OpenClaw record, live owner not [ours](SweeperBuilder::ours), with [`SweeperBuilder::foreign_owners_stale`] | removed, `foreign-owner` |
//! | `{}` or empty, younger than the grace | kept, `malformed` |
//! | the same, older than the grace (30 s) | removed, `missing-pid`, `invalid-created-at` |
//! | a regular file that is not a JSON object (another program's `notes.lock`) | kept, never touched |
//! | a symlink | as a file without a record, by the link's own age; only the link goes |
//!
//! Use [`SweeperBuilder::sidecars`] to narrow the names swept further (to `*.jsonl.lock` and
//! `sessions.json.lock`, say).
//!
//! # Platform behavior
//!
//! Linux is the tested platform: owners are looked up in `/proc` ([`ProcLookup`]). Elsewhere
//! the lookup answers "unsupported", so OpenClaw-format locks are never judged dead by pid
//! (they are kept), while records of ours are still judged by their OS lock. macOS and
//! Windows lookups belong behind [`OwnerLookup`].
//!
//! # Example
//!
//! ```
//! use sessionkit_lock_sweeper::Sweeper;
//! # fn main() -> Result<(), sessionkit_lock_sweeper::Error> {
//! # let dir = std::env::temp_dir().join(format!("sk-doc-sweep-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! // A lock left by a process that no longer exists (pid 4194304 is above Linux's maximum).
//! std::fs::write(dir.join("a.jsonl.lock"), r#"{"pid": 4194304, "createdAt": "2020-01-01T00:00:00.000Z"}"#).unwrap();
//!
//! let sweeper = Sweeper::builder().build()?;
//! let report = sweeper.sweep(&[&dir])?;
//! assert_eq!(report.totals.scanned, 1);
//! # #[cfg(target_os = "linux")]
//! assert_eq!(report.totals.removed, 1);
//! println!("{}", serde_json::to_string_pretty(&report).unwrap());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! # Threads
//!
//! [`Sweeper::sweep`] blocks its caller, and shares the files among up to
//! [`concurrency`](SweeperBuilder::concurrency) threads (8 by default, the caller's included),
//! so that their waits on the disk overlap: removing a file that is on disk waits for the file
//! system, and a sweep of thousands of locks is mostly such waits.
//!
//! # Async
//!
//! With the `tokio` feature, `Sweeper::sweep_async` sweeps directories with bounded
//! concurrency, does its file work on blocking threads in batches, and yields between
//! batches, so other tasks on the runtime keep running.

#![deny(missing_docs)]

mod error;
mod memo;
mod report;
mod sweeper;
#[cfg(feature = "tokio")]
mod tokio;

pub use crate::error::{Error, Result};
pub use crate::memo::MemoLookup;
pub use crate::report::{DirError, SweepEntry, SweepReport, TempEntry, TempReport, Totals};
pub use crate::sweeper::{SweepProgress, Sweeper, SweeperBuilder};

pub use sessionkit_write_lock::{
    Liveness, OwnerLookup, OwnerRule, ProcLookup, ProcessProbe, StaleReason, Status,
};

#[cfg(doc)]
use sessionkit_write_lock::Locker;

// The README's example compiles as a doc test, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
