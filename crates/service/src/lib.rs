//! One call that opens a service's session state directory: the startup sweep, the registry
//! with maintenance, and transcripts whose appends are fenced by the write lock.
//!
//! An agent gateway, bot or job runner keeps one directory of session state: the registry
//! `sessions.json` (with its journal), one `<sessionId>.jsonl` transcript per session, and the
//! lock sidecars of both. [`StateDir::open`] sets all of it up the way such a service needs it:
//!
//! 1. creates the directory if needed and opens the registry (durable group commit, and
//!    maintenance on by default: prune after 30 days, cap at 500 entries, archive the
//!    transcripts of evicted sessions, all in the background);
//! 2. starts a sweep of stale locks and old temp files that crashed predecessors left, on a
//!    background thread, and returns without waiting for it ([`StateDir::startup_sweep`]
//!    says where it is);
//! 3. hands out transcripts ([`StateDir::transcript`]) under each session's write lock, with
//!    appends fenced, and tracks them so [`StateDir::cleanup`] can abandon what a unit of work
//!    left held.
//!
//! # Guarantees
//!
//! - **The caller never waits for the sweep.** It is safe to run beside the service: a lock
//!   is removed only if it is stale and unchanged, judged while holding its OS lock, so the
//!   service's own live locks are never touched.
//! - **Nothing blocks an async worker** in the `_async` calls (feature `tokio`): the open and
//!   every file step run on blocking threads, lock waits are async.
//! - **Bad settings fail the open**, naming the variable, before anything on disk changes.
//!
//! # Configuration
//!
//! Every setting has a builder method ([`StateDirBuilder`]) and a variable, read by
//! [`StateDirBuilder::from_env`] (and by [`StateDir::open`]); setters called after
//! `from_env` win.
//!
//! | variable | meaning | default |
//! | --- | --- | --- |
//! | `SESSIONKIT_SYNC` | `every-batch`, `never`, or a number of ms: fsync the journal at most that often | `every-batch` |
//! | `SESSIONKIT_MAINTENANCE` | `enforce`, `warn` (log what it would do) or `off` | `enforce` |
//! | `SESSIONKIT_MAX_ENTRIES` | the registry's entry cap, or `none` | `500` |
//! | `SESSIONKIT_PRUNE_AFTER_MS` | prune entries not updated for this long, or `none` | 30 days |
//! | `SESSIONKIT_TRANSCRIPTS` | what happens to an evicted session's transcript: `archive` or `delete` | `archive` |
//! | `SESSIONKIT_ARCHIVE_RETENTION_MS` | delete archives older than this, or `none` | 30 days |
//! | `SESSIONKIT_ORPHAN_GRACE_MS` | remove transcripts no entry references once older than this | 1 hour |
//! | `SESSIONKIT_MAX_DISK_BYTES` | the directory's disk budget (high water 80 %), or `none` | `none` |
//! | `SESSIONKIT_STARTUP_SWEEP` | `on` or `off` | `on` |
//! | `SESSIONKIT_TEMP_OLDER_THAN_MS` | the startup sweep removes temp files older than this, or `none` | 1 hour |
//! | `SESSIONKIT_RECOVER` | `on`: rename a corrupt registry file aside and go on | `off` |
//! | `SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS` | how long a transcript lock is waited for | 60 s |
//! | `SESSIONKIT_LOCK_MAX_HOLD_MS` | the watchdog revokes a hold longer than this | 5 min |
//! | `SESSIONKIT_LOCK_STALE_MS` | other programs' lock records older than this are reported too old | 30 min |
//!
//! Numbers are whole decimal numbers above zero; anything else is an error naming the
//! variable.
//!
//! # Platform behavior
//!
//! Linux is the tested platform (see each part's crate). Other platforms compile; the
//! startup sweep keeps other programs' locks there, since their owners cannot be looked up.
//!
//! # Example
//!
//! ```
//! use sessionkit_service::StateDir;
//! use sessionkit_session_store::{Activity, Entry, Patch};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = std::env::temp_dir().join(format!("sk-doc-service-{}", std::process::id()));
//! let state = StateDir::builder().open(&dir)?;
//!
//! // A new session: its registry entry, then its transcript under the session's lock.
//! state.store().upsert("agent:main:cron:1", Entry::parse(r#"{"sessionId":"s1"}"#)?)?;
//! let mut transcript = state.transcript("s1")?;
//! transcript.append(br#"{"role":"user","text":"hi"}"#)?;
//!
//! // Release the lock around a slow call, then take it back.
//! let suspended = transcript.suspend()?;
//! let mut transcript = state.resume(suspended)?;
//! transcript.append(br#"{"role":"assistant","text":"hello"}"#)?;
//! transcript.release()?;
//! state
//!     .store()
//!     .patch("agent:main:cron:1", Patch::parse(r#"{"status":"done"}"#)?, Activity::Advance)?;
//!
//! // Before the directory is looked at or removed: waits for the registry's threads.
//! state.close();
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod env;
mod error;
mod state_dir;
#[cfg(feature = "tokio")]
mod tokio;

pub use crate::error::{Error, Result};
pub use crate::state_dir::{
    DEFAULT_TEMP_OLDER_THAN, REGISTRY_FILE, StateDir, StateDirBuilder, SweepStatus,
};

// The README's example compiles as a doc test, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
