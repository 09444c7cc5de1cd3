//! Atomic and durable file writes, JSON and JSONL records, and orphan temp-file cleanup.
//!
//! `sessionkit-atomic-fs` is the bottom layer of [sessionkit]: every file the other crates
//! write goes through it. It knows nothing of locks or sessions and can be used alone.
//!
//! Use it when:
//!
//! - a file must change all at once or not at all, even if the process is killed mid-write
//!   ([`write()`], [`AtomicWriter`]);
//! - a change must also survive a power loss once the call returns ([`Durability::Durable`],
//!   the default), or you want to say plainly that it need not ([`Durability::AtomicOnly`]);
//! - you keep an append-only log of JSON records and need to read it back after a crash
//!   ([`RecordAppender`], [`read_records`], [`read_jsonl`], [`repair_torn_tail`]);
//! - a crash may have left temp files behind ([`remove_orphan_temps`]).
//!
//! # Guarantees
//!
//! - **All or nothing.** A replace writes a temp file beside the target and renames it over the
//!   target. Readers see the old contents or the new, never a mix. Any failure before the
//!   rename leaves the target byte for byte as it was and removes the temp file.
//! - **Durable when asked, and honest about it.** In durable mode the temp file is synced
//!   before the rename and the directory after it. A failed sync is final ([`Error::Sync`]):
//!   the temp file is never renamed into place, and the error says the data may not be on disk.
//!   (Linux may drop dirty pages after a write-back error, so a retried sync can "succeed"
//!   over lost data; this is PostgreSQL's *fsyncgate* rule.)
//! - **Large writes do not flood the disk.** A durable write is written back 2 MiB at a time
//!   as it goes ([`AtomicWriter::write_behind`]), so its final sync does not make every other
//!   file's sync wait behind the whole file.
//! - **Safe names.** Temp files are created exclusively, never through a planted symlink, and
//!   named `.<name>.<pid>.<random>.sktmp` so that cleanup never touches another program's file.
//! - **Modes kept.** New files get 0600 unless you say otherwise; a replaced file keeps its mode
//!   (and its owner, where the process may set it).
//! - **Whole records.** An appended record is one `write` of `record + "\n"` with `O_APPEND`;
//!   readers return whole records and report a torn last line instead of failing.
//! - **Errors are values.** One [`Error`] type; each variant names the [`Operation`], the
//!   [`Step`] that failed and the paths involved. Nothing here panics on bad input.
//!
//! # Platform behavior
//!
//! Linux is the tested platform, on ext4, xfs and tmpfs. Other Unix systems use the same code.
//! On other platforms the crate compiles, but keeps no file modes, cannot sync directories and
//! makes no durability claim; Windows and macOS support will be claimed once they are tested.
//! All file-system calls go through the [`FileSystem`] trait, so tests can inject faults.
//!
//! Within one process, the creations, renames and removals of entries in one directory are
//! made one at a time ([`in_directory_turn`]): the kernel serializes them on the directory's
//! lock anyway, and on Linux threads waiting there spin on their CPUs, while a thread waiting
//! for its turn here sleeps.
//!
//! # Async
//!
//! With the `tokio` feature, [`tokio`] has an async version of every operation.
//! Each runs whole on one `spawn_blocking` call; see its docs for what cancelling does.
//!
//! # Example
//!
//! ```
//! use sessionkit_atomic_fs::{self as afs, Durability, AtomicWriter};
//! use std::collections::BTreeMap;
//! # fn main() -> Result<(), afs::Error> {
//! # let dir = std::env::temp_dir().join(format!("sk-doc-lib-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir).unwrap();
//!
//! // Durable by default: on `Ok`, the file survives a power loss.
//! let registry = dir.join("sessions.json");
//! afs::write_json_pretty(&registry, &BTreeMap::from([("agent:main", 1)]))?;
//! let loaded: BTreeMap<String, u32> = afs::read_json(&registry)?;
//! assert_eq!(loaded["agent:main"], 1);
//!
//! // A cache you can rebuild: still atomic, without the two fsyncs.
//! AtomicWriter::new()
//!     .durability(Durability::AtomicOnly)
//!     .write(dir.join("cache.bin"), b"rebuildable")?;
//!
//! // An append-only transcript.
//! let transcript = dir.join("0b7e.jsonl");
//! afs::append_record(&transcript, br#"{"type":"session"}"#)?;
//! let read = afs::read_records(&transcript)?;
//! assert_eq!(read.records.len(), 1);
//! assert!(read.torn_tail.is_none());
//! # std::fs::remove_dir_all(&dir).unwrap();
//! # Ok(())
//! # }
//! ```
//!
//! [sessionkit]: https://docs.rs/sessionkit

#![deny(missing_docs)]

mod error;
mod fs;
mod json;
mod jsonl;
mod replace;
mod sys;
mod temp;
#[cfg(feature = "tokio")]
pub mod tokio;
mod turn;

pub use crate::error::{Error, Operation, Refusal, Result, Step};
pub use crate::fs::{FileSystem, RealFs};
pub use crate::json::read_json;
pub use crate::jsonl::{
    Appended, JsonlRecords, Record, RecordAppender, Records, Repair, TornTail, append_record,
    find_torn_tail, read_jsonl, read_records, read_records_from, repair_torn_tail, split_records,
};
pub use crate::replace::{
    AtomicWriter, DEFAULT_DIR_MODE, DEFAULT_FILE_MODE, DEFAULT_WRITE_BEHIND, Durability,
    PendingWrite, write, write_json, write_json_pretty,
};
pub use crate::temp::{
    OrphanReport, RemovedTemp, TEMP_SUFFIX, TempFailure, is_temp_file_name, remove_orphan_temps,
};
pub use crate::turn::{directory_turns_taken, in_directory_turn, in_turn_of_parent};

/// The identity of a file (device and inode on Unix), for telling a replaced file from the
/// original. Other crates use it to check that a file is still the one they opened.
pub fn file_identity(meta: &std::fs::Metadata) -> (u64, u64) {
    sys::identity(meta)
}

// The README's examples compile as doc tests, so they cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
