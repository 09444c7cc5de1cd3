//! A journaled session registry: OpenClaw's `sessions.json`, updated through an append-only
//! journal with group commit instead of being rewritten per update.
//!
//! `sessionkit-session-store` keeps the registry of sessions (`{sessionKey: entry}`) that agent
//! gateways, CLIs and workers share. OpenClaw rewrote the whole file, with fsync, under a lock
//! for every update; at a few hundred cron jobs that meant lock holds of 15-66 s. Here an update
//! is one line appended to `sessions.json.journal`, many callers' updates share one write and
//! one fsync, and the snapshot is rewritten only by background compaction.
//!
//! Use it when:
//!
//! - many tasks or processes update one registry of sessions and each update must be durable
//!   when its call returns, without a lock held across a whole-file rewrite ([`Store`],
//!   [`SyncMode`]);
//! - the registry must stay readable by OpenClaw's format, unknown fields included
//!   ([`load_snapshot`], [`Entry`]);
//! - it must stay bounded (a cap, pruning, a disk budget) without a stall when it reaches the
//!   cap, and without losing a running session or leaving orphan transcripts ([`Maintenance`]);
//! - each session has an append-only transcript that a crash may leave torn
//!   ([`Store::open_transcript`]).
//!
//! For a whole state directory with its startup sweep, `sessionkit-service`'s `StateDir` opens
//! a store for you.
//!
//! # Guarantees
//!
//! - **Acknowledged means durable, as promised.** An update's call returns once its batch is
//!   written and, with [`SyncMode::EveryBatch`] (the default), fsynced. A batch that fails is
//!   taken back out of the journal, and every caller in it gets the error; if the disk refuses
//!   even that, a fence file beside the journal keeps every reader, in every process, from the
//!   batch until the next writer or open cuts it (and if the fence cannot be written either,
//!   the callers hear that the outcome is unknown: [`Error::is_outcome_unknown`]). A full disk
//!   fails a batch the same way ([`Error::is_storage_full`]), and reads go on. After any failed
//!   fsync of the journal the store compacts by itself, because the kernel may have dropped
//!   what it failed to write; [`Store::flush`] makes everything acknowledged durable on
//!   demand, in any mode.
//! - **Many processes.** Each batch is appended under the journal's exclusive OS lock, after
//!   reading what other processes appended, so every process's state is the replay of one
//!   file in one order. Reads see this process's acknowledged updates and, for the price of a
//!   `stat`, what others appended. Another process's compaction is followed by reading the
//!   journals, not the snapshot: the new journal names the one it replaced.
//! - **Compaction never loses anything.** The new snapshot is written beside the old one
//!   before the journal is locked; the lock is held only to move the few records appended
//!   meanwhile into a fresh journal and rename both files into place. A crash at any point
//!   leaves files that replay to the same state (see the `compact` notes in
//!   `docs/ARCHITECTURE.md`).
//! - **Nothing is lost silently.** A torn journal tail (a crash mid-append) is cut at open and
//!   reported in [`OpenReport`]. A corrupt snapshot or journal record fails the open; with
//!   [`StoreBuilder::recover`] the damaged file is renamed aside (`.corrupt.<timestamp>`) and
//!   reported, never replaced by an empty store without a word.
//! - **Unknown fields survive.** Entries keep every field's value byte for byte (whitespace
//!   outside strings aside); `sessionId` and `updatedAt` are indexed.
//! - **A close that means it.** Dropping a handle never blocks; [`Store::close`] on the last
//!   handle returns once the writer has committed what was queued and no background
//!   compaction or maintenance pass (hook included) is left running.
//!
//! # Layers
//!
//! - [`Store`], [`StoreBuilder`]: the files, the writer thread, compaction, the sync API and
//!   (feature `tokio`, on by default) the async API, which never blocks a worker.
//! - [`Entry`], [`Patch`], [`resolve_updated_at`], [`Activity`]: one session entry and
//!   RFC 7396 merge patches, with OpenClaw's `updatedAt` rule (for patches, touches and
//!   [`Store::upsert_with`]; a plain [`Store::upsert`] writes the entry as given).
//! - [`Record`], [`parse_journal`]: the journal format ([`journal`]), one JSON record per
//!   line with its writer and sequence number.
//! - [`State`]: the registry in memory, with an index by `updatedAt` (oldest first in
//!   O(log n) per entry) and `sessionId` reference counts; applying a journal twice gives the
//!   same state as once.
//! - [`load_snapshot`], [`encode_snapshot`], [`quarantine`]: the OpenClaw-compatible
//!   `sessions.json` and what to do with a damaged one.
//!
//! # Platform behavior
//!
//! Linux is the tested platform. The journal lock is `flock` through `std::fs::File::lock`;
//! on network file systems that do not honour it, do not share a store between machines.
//! `flock` has no timed wait, so on Linux a held lock is waited for by a short-lived thread
//! blocked in it through another open of the file (by `/proc/self/fd`), which the kernel wakes
//! when the lock is released; the caller waits for that thread up to
//! [`StoreBuilder::lock_timeout`]. Where `/proc` is missing, on other platforms, and past 16
//! such threads in a process (holders that hang), a held lock is polled every 50 µs to 2 ms.
//!
//! # Example
//!
//! ```
//! use sessionkit_session_store::{Activity, Entry, ListOrder, ListQuery, Patch, Store};
//! # fn main() -> Result<(), sessionkit_session_store::Error> {
//! # let dir = std::env::temp_dir().join(format!("sk-doc-store-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//! let store = Store::open(dir.join("sessions.json"))?;
//! store.upsert(
//!     "cron:nightly",
//!     Entry::parse(r#"{"sessionId":"0b7e","updatedAt":1000,"x-plugin":{"n":1.0}}"#)?,
//! )?;
//! // A merge patch; `updatedAt` moves to now by OpenClaw's rule.
//! store.patch("cron:nightly", Patch::parse(r#"{"label":"nightly"}"#)?, Activity::Advance)?;
//!
//! let entry = store.get("cron:nightly")?.unwrap();
//! assert_eq!(entry.get("x-plugin").unwrap().get(), r#"{"n":1.0}"#);
//! assert_eq!(entry.session_id(), Some("0b7e"));
//! let newest = store.list(&ListQuery::all().order(ListOrder::NewestFirst).limit(10))?;
//! assert_eq!(newest.len(), 1);
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```

#![deny(missing_docs)]

mod compact;
mod entry;
mod error;
mod fence;
mod files;
#[cfg(test)]
mod hooks;
pub mod journal;
mod maintain;
mod open;
mod raw;
mod readonly;
mod schedule;
mod snapshot;
mod state;
mod store;
mod sys;
#[cfg(test)]
mod testing;
#[cfg(feature = "tokio")]
mod tokio;
mod transcript;
mod writer;

pub use crate::entry::{
    Activity, Entry, Patch, SESSION_FILE, SESSION_ID, UPDATED_AT, is_transcript_name,
    resolve_updated_at, transcript_sessions,
};
pub use crate::error::{Error, Input, JournalProblem, Operation, Result, SnapshotProblem};
pub use crate::fence::FencedBatch;
pub use crate::journal::{
    EvictReason, JOURNAL_SUFFIX, JOURNAL_VERSION, JournalBase, JournalHeader, JournalRecord, Op,
    ParsedJournal, Record, SeqCheck, SeqTracker, TornTail, WriterId, parse_journal, parse_records,
};
pub use crate::maintain::{
    DEFAULT_HIGH_WATER, DEFAULT_INTERVAL, DEFAULT_MAX_ENTRIES, DEFAULT_ORPHAN_GRACE,
    DEFAULT_PRUNE_AFTER, DEFAULT_TIME_BUDGET, Maintenance, MaintenanceMode, MaintenanceReport,
    PassHook, Protection, TranscriptDisposal, plan_maintenance,
};
pub use crate::readonly::{LoadedStore, StoreFiles, load_store, read_store_files};
pub use crate::snapshot::{
    encode_snapshot, load_snapshot, parse_snapshot, quarantine, quarantine_at,
};
pub use crate::state::{Applied, ReplayReport, Skipped, State, Stats};
pub use crate::store::{
    Ack, ActiveMark, CompactReport, DEFAULT_COMPACT_MIN_BYTES, DEFAULT_COMPACT_RATIO,
    DEFAULT_LOCK_TIMEOUT, DEFAULT_MAX_BATCH, IoCounters, ListOrder, ListQuery, OpenReport, Store,
    StoreBuilder, StoreStats, SyncMode, journal_path_for,
};
pub use crate::transcript::{SuspendedTranscript, Transcript};
pub use sessionkit_write_lock::{Clock, ManualClock, SystemClock};

// The README's example compiles as a doc test, so it cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
