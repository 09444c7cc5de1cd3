//! Safe, fast per-session state on local disk, for agent gateways, bots and job runners.
//!
//! Services like these keep an append-only transcript per session and one registry of all
//! sessions, and several processes touch them at once. `sessionkit` is the persistence layer
//! for that: writes that are atomic (and durable when asked), and, as the workspace grows, a
//! cross-process write lock that survives crashes and hung holders, a stale-lock sweeper, and a
//! session registry whose maintenance never stalls an async runtime.
//!
//! This crate is a facade: documentation and re-exports, no logic. Each part is its own crate
//! and can be used alone:
//!
//! - [`atomic_fs`] (`sessionkit-atomic-fs`): atomic and durable file replacement, JSON and
//!   JSONL records with torn-tail repair, and orphan temp-file cleanup.
//! - [`lock`] (`sessionkit-write-lock`): a cross-process write lock with kernel-verified
//!   liveness, a max-hold watchdog, fenced writes, and suspend/resume around slow work.
//! - [`sweeper`] (`sessionkit-lock-sweeper`): sweeps directories for stale locks, judged by the
//!   lock's own rules, with one owner lookup per pid per sweep.
//! - [`store`] (`sessionkit-session-store`): the session registry, `sessions.json` updated
//!   through a journal with group commit, background compaction and maintenance (caps,
//!   pruning, transcripts of evicted sessions, orphans, a disk budget), and fenced transcripts.
//! - [`service`] (`sessionkit-service`): [`StateDir`], one call that opens a service's state
//!   directory: a startup sweep in the background, the registry with maintenance on, and
//!   tracked transcript handles; configured by a builder or `SESSIONKIT_*` variables (the
//!   table is in [`service`]).
//!
//! # Features
//!
//! All on by default; turn the default off to leave parts out.
//!
//! - `tokio`: async entry points that run each blocking step on a blocking thread and wait
//!   for locks asynchronously, so no async worker ever waits on the disk.
//! - `lock`: [`lock`]. `sweeper`: [`sweeper`] (needs `lock`). `store`: [`store`] (needs
//!   `lock`). `service`: [`service`] and [`StateDir`] (needs `store` and `sweeper`).
//!   [`atomic_fs`] is always there.
//!
//! # Platform behavior
//!
//! Linux is the tested platform. Other platforms compile but make no durability claim yet.
//!
//! # Example
//!
//! ```
//! use sessionkit::atomic_fs::{self, Durability, AtomicWriter};
//! # fn main() -> Result<(), atomic_fs::Error> {
//! # let dir = std::env::temp_dir().join(format!("sk-doc-facade-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! // Durable by default: once this returns, the file survives a power loss.
//! atomic_fs::write(dir.join("sessions.json"), b"{}")?;
//!
//! // Say plainly when durability is not needed; the write stays atomic.
//! AtomicWriter::new()
//!     .durability(Durability::AtomicOnly)
//!     .write(dir.join("cache.json"), b"{}")?;
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

#[doc(inline)]
pub use sessionkit_atomic_fs as atomic_fs;
#[cfg(feature = "sweeper")]
#[doc(inline)]
pub use sessionkit_lock_sweeper as sweeper;
#[cfg(feature = "service")]
#[doc(inline)]
pub use sessionkit_service as service;
#[cfg(feature = "service")]
#[doc(no_inline)]
pub use sessionkit_service::{StateDir, StateDirBuilder};
#[cfg(feature = "store")]
#[doc(inline)]
pub use sessionkit_session_store as store;
#[cfg(feature = "lock")]
#[doc(inline)]
pub use sessionkit_write_lock as lock;

// The workspace README's examples compile as doc tests, so they cannot drift from the API.
#[cfg(all(doctest, feature = "service"))]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
