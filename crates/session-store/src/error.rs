//! The crate's one error type, the operations it names and the problems it reports.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What the caller asked for when an [`Error`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Loading the snapshot (`sessions.json`).
    LoadSnapshot,
    /// Reading the journal (`sessions.json.journal`).
    ReadJournal,
    /// Renaming a damaged file aside.
    Quarantine,
    /// Opening a store.
    Open,
    /// Appending a batch of updates to the journal (and syncing it).
    WriteJournal,
    /// Compacting: writing a new snapshot and a fresh journal.
    Compact,
    /// Flushing: making every acknowledged update durable now.
    Flush,
    /// A maintenance pass.
    Maintain,
    /// Reading a store without changing it.
    Read,
    /// Opening or appending to a transcript.
    Transcript,
    /// Closing the store's last handle ([`Store::close`](crate::Store::close)).
    Close,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::LoadSnapshot => "load the snapshot",
            Operation::ReadJournal => "read the journal",
            Operation::Quarantine => "quarantine",
            Operation::Open => "open the store",
            Operation::WriteJournal => "write to the journal",
            Operation::Compact => "compact the store",
            Operation::Flush => "flush the store",
            Operation::Maintain => "maintain the store",
            Operation::Read => "read the store",
            Operation::Transcript => "use the transcript",
            Operation::Close => "close the store",
        })
    }
}

/// What kind of caller input was refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Input {
    /// A session entry.
    Entry,
    /// A merge patch for an entry.
    Patch,
    /// A writer id (16 hexadecimal digits).
    WriterId,
    /// A session id naming a transcript file.
    SessionId,
    /// A transcript record.
    Record,
    /// A setting of [`StoreBuilder`](crate::StoreBuilder) or [`Maintenance`](crate::Maintenance),
    /// refused when the store is opened.
    Setting,
}

impl fmt::Display for Input {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Input::Entry => "session entry",
            Input::Patch => "entry patch",
            Input::WriterId => "writer id",
            Input::SessionId => "session id",
            Input::Record => "transcript record",
            Input::Setting => "store setting",
        })
    }
}

/// Why a snapshot is corrupt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SnapshotProblem {
    /// The file is empty. OpenClaw and sessionkit both replace the file atomically, so an empty
    /// file is damage (a truncation, a disk-full copy), not an empty registry (`{}`).
    Empty,
    /// The file is not valid JSON (the parser's error is the source).
    InvalidJson,
    /// The file is not UTF-8, which JSON requires (RFC 8259); the line and column are those of
    /// the first byte that is not.
    InvalidUtf8,
    /// The top level is valid JSON but not an object.
    NotAnObject,
    /// The entry under this session key is not an object.
    EntryNotAnObject {
        /// The session key.
        key: String,
    },
}

impl fmt::Display for SnapshotProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SnapshotProblem::Empty => f.write_str("the file is empty"),
            SnapshotProblem::InvalidJson => f.write_str("invalid JSON"),
            SnapshotProblem::InvalidUtf8 => f.write_str("the bytes are not UTF-8"),
            SnapshotProblem::NotAnObject => f.write_str("the top level is not a JSON object"),
            SnapshotProblem::EntryNotAnObject { key } => {
                write!(f, "the entry {key:?} is not a JSON object")
            }
        }
    }
}

/// A corrupt snapshot's problem with its place. An empty file has no place to name.
fn snapshot_damage(problem: &SnapshotProblem, line: usize, column: usize) -> String {
    match problem {
        SnapshotProblem::Empty => problem.to_string(),
        _ => format!("{problem} at line {line}, column {column}"),
    }
}

/// Why a journal is corrupt.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum JournalProblem {
    /// The first line is not a journal header.
    BadHeader,
    /// A whole line is not a valid record (the parser's error, if any, is the source).
    BadRecord,
    /// A record names an operation this version does not know.
    UnknownOp {
        /// The operation's name.
        op: String,
    },
    /// An `evict` record names a reason this version does not know.
    UnknownReason {
        /// The reason as written.
        reason: String,
    },
    /// The `writer` of a record is not 16 lowercase hexadecimal digits.
    BadWriter,
    /// The `entry` of an upsert is not a JSON object.
    EntryNotAnObject,
    /// The `patch` of a patch record is not a JSON object.
    PatchNotAnObject,
    /// The journal's fence file (`<journal>.fence`) is not a fence.
    BadFence,
}

impl fmt::Display for JournalProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            JournalProblem::BadHeader => f.write_str("the first line is not a journal header"),
            JournalProblem::BadRecord => f.write_str("the line is not a valid record"),
            JournalProblem::UnknownOp { op } => write!(f, "unknown op {op:?}"),
            JournalProblem::UnknownReason { reason } => {
                write!(f, "unknown evict reason {reason:?}")
            }
            JournalProblem::BadWriter => f.write_str("the writer is not 16 lowercase hex digits"),
            JournalProblem::EntryNotAnObject => f.write_str("the entry is not a JSON object"),
            JournalProblem::PatchNotAnObject => f.write_str("the patch is not a JSON object"),
            JournalProblem::BadFence => f.write_str("the journal's fence file is not a fence"),
        }
    }
}

/// The error type of this crate.
///
/// Variants about files name the [`Operation`] and the path; corruption variants say where the
/// damage is. Use the predicates ([`is_corrupt`](Error::is_corrupt),
/// [`is_not_found`](Error::is_not_found), [`is_bad_input`](Error::is_bad_input), ...) rather
/// than matching on messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A value given as an entry, a patch, a writer id or a setting was refused; nothing
    /// changed.
    #[error("invalid {input}: {reason}")]
    Invalid {
        /// What kind of input it was.
        input: Input,
        /// What is wrong with it, in a few words.
        reason: &'static str,
        /// The JSON parser's error, when the input was not valid JSON.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// The snapshot cannot be read as a session registry. The file is left as it is; quarantine
    /// it ([`quarantine`](crate::quarantine)) rather than overwrite it.
    #[error("`{}` is corrupt: {}", .path.display(), snapshot_damage(.problem, *.line, *.column))]
    CorruptSnapshot {
        /// The snapshot file.
        path: PathBuf,
        /// The 1-based line of the damage.
        line: usize,
        /// The 1-based column (in bytes) of the damage within that line; 0 for an empty file.
        column: usize,
        /// What is wrong.
        problem: SnapshotProblem,
        /// The JSON parser's error, if it found the problem.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// A whole line of the journal is not a valid record (or the header is missing). Records
    /// are never skipped: everything after the damage would be replayed out of context.
    #[error("`{path}` is corrupt: {problem} at line {line} (byte offset {offset})", path = path.display())]
    CorruptJournal {
        /// The journal file.
        path: PathBuf,
        /// The 1-based line of the bad record (the header is line 1).
        line: usize,
        /// The byte offset where that line starts.
        offset: u64,
        /// What is wrong.
        problem: JournalProblem,
        /// The JSON parser's error, if it found the problem.
        #[source]
        source: Option<serde_json::Error>,
    },

    /// The journal, or its fence file, was written by a newer format version. It is not
    /// damaged and must not be quarantined or rewritten; upgrade instead. (Both formats are at
    /// version 1.)
    #[error("`{path}` has format version {version}; this version reads only version {supported}",
        path = path.display(), supported = crate::journal::JOURNAL_VERSION)]
    UnsupportedJournal {
        /// The journal file, or its fence file.
        path: PathBuf,
        /// The version its header names.
        version: u64,
    },

    /// The snapshot is missing, but the journal was written by a compaction, which wrote a
    /// snapshot before it: the snapshot was lost (deleted, or never restored from a backup).
    /// Loading the journal alone would give a store without most of its entries, and the next
    /// compaction would make that final. With [`StoreBuilder::recover`](crate::StoreBuilder)
    /// an open goes on with the journal's entries and reports it
    /// ([`OpenReport::snapshot_lost`](crate::OpenReport)).
    #[error("`{path}` is missing, but `{journal}` continues a snapshot that a compaction wrote \
        (journal epoch {epoch}): the snapshot was lost", path = path.display(), journal = journal.display())]
    MissingSnapshot {
        /// The snapshot path.
        path: PathBuf,
        /// The journal beside it.
        journal: PathBuf,
        /// The journal's epoch.
        epoch: u64,
    },

    /// Neither the snapshot nor its journal exists (and the store was not to be created).
    #[error("failed to {op} `{path}`: there is no store there (neither it nor `{journal}` exists)",
        path = path.display(), journal = journal.display())]
    NoStore {
        /// What was asked for: [`Operation::Open`] or [`Operation::Read`].
        op: Operation,
        /// The snapshot path.
        path: PathBuf,
        /// The journal beside it.
        journal: PathBuf,
    },

    /// `touch` named a key that has no entry; nothing was written.
    #[error("no entry `{key}` in `{path}`", path = path.display())]
    NoSuchEntry {
        /// The snapshot of the store.
        path: PathBuf,
        /// The key asked for.
        key: String,
    },

    /// The update was in a batch that could not be written or synced; none of that batch's
    /// updates is in the store. Every caller of the batch gets the same cause. If the batch
    /// could not be cut back out of the journal, a fence keeps every reader from it until the
    /// next writer or open cuts it ([`OpenReport::fenced_batch_bytes`](crate::OpenReport)).
    #[error("failed to write a batch of updates to `{path}`", path = path.display())]
    Batch {
        /// The snapshot of the store.
        path: PathBuf,
        /// Why the batch failed.
        #[source]
        source: std::sync::Arc<Error>,
    },

    /// The update was in a batch that could not be written or synced, and whose bytes could be
    /// neither cut back out of the journal nor fenced off (the disk refuses writes): any
    /// reader, in this process or another, may find the batch's updates from now on, as may
    /// the next open. See [`is_outcome_unknown`](Error::is_outcome_unknown).
    #[error("failed to write a batch of updates to `{path}`, and could not take it back out: \
        its updates may reappear", path = path.display())]
    BatchOutcomeUnknown {
        /// The snapshot of the store.
        path: PathBuf,
        /// Why the batch failed.
        #[source]
        source: std::sync::Arc<Error>,
    },

    /// The store's writer thread is gone (it panicked, or the process is shutting down).
    #[error("the writer of `{path}` has stopped", path = path.display())]
    WriterStopped {
        /// The snapshot of the store.
        path: PathBuf,
    },

    /// A file could not be replaced atomically.
    #[error("failed to {op} `{path}`: could not {step}", path = path.display())]
    AtomicWrite {
        /// What was asked for.
        op: Operation,
        /// The step that failed, in a few words.
        step: &'static str,
        /// The snapshot of the store.
        path: PathBuf,
        /// atomic-fs's error, which names the file and the step.
        #[source]
        source: sessionkit_atomic_fs::Error,
    },

    /// A transcript's write lock refused (a timeout, a fence, a takeover) or failed.
    #[error("failed to {op} `{path}`: could not {step} it", path = path.display())]
    Lock {
        /// What was asked for.
        op: Operation,
        /// The step that failed, in a few words.
        step: &'static str,
        /// The transcript file.
        path: PathBuf,
        /// write-lock's error: use its predicates (`is_timeout`, `is_fenced`, `is_takeover`).
        /// Boxed: it is large, and every other result of this crate would pay for it.
        #[source]
        source: Box<sessionkit_write_lock::Error>,
    },

    /// The transcript's lock guard was lost: an async append was cancelled while it ran on a
    /// blocking thread (the lock was released when it finished). Open the transcript again.
    #[error("the transcript `{path}` lost its lock to a cancelled append", path = path.display())]
    TranscriptLost {
        /// The transcript file.
        path: PathBuf,
    },

    /// A blocking task of the async API could not run (the runtime is shutting down) or
    /// panicked.
    #[error("failed to {op} `{path}`: {reason}", path = path.display())]
    Task {
        /// What was asked for.
        op: Operation,
        /// The snapshot of the store.
        path: PathBuf,
        /// The runtime's message.
        reason: String,
    },

    /// A file-system call failed.
    #[error("failed to {op} `{path}`: could not {step} `{subject}`",
        path = path.display(), subject = subject.display())]
    Io {
        /// What was asked for.
        op: Operation,
        /// The failed call, in a few words ("read", "rename to").
        step: &'static str,
        /// The path the caller gave.
        path: PathBuf,
        /// The path the failing call touched.
        subject: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },
}

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The path the error is about, if it is about a file.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::CorruptSnapshot { path, .. }
            | Error::CorruptJournal { path, .. }
            | Error::UnsupportedJournal { path, .. }
            | Error::Io { path, .. }
            | Error::NoSuchEntry { path, .. }
            | Error::NoStore { path, .. }
            | Error::MissingSnapshot { path, .. }
            | Error::Batch { path, .. }
            | Error::BatchOutcomeUnknown { path, .. }
            | Error::WriterStopped { path }
            | Error::AtomicWrite { path, .. }
            | Error::Lock { path, .. }
            | Error::TranscriptLost { path }
            | Error::Task { path, .. } => Some(path),
            Error::Invalid { .. } => None,
        }
    }

    /// The operating system's error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Batch { source, .. } | Error::BatchOutcomeUnknown { source, .. } => {
                source.io_error()
            }
            Error::AtomicWrite { source, .. } => source.io_error(),
            _ => None,
        }
    }

    /// The write lock's error, if a transcript's lock refused or failed.
    pub fn lock_error(&self) -> Option<&sessionkit_write_lock::Error> {
        match self {
            Error::Lock { source, .. } => Some(&**source),
            _ => None,
        }
    }

    /// True if the operation gave up waiting: for the journal's OS lock
    /// ([`StoreBuilder::lock_timeout`](crate::StoreBuilder::lock_timeout)), or for a
    /// transcript's write lock.
    pub fn is_timeout(&self) -> bool {
        self.io_error()
            .is_some_and(|e| e.kind() == io::ErrorKind::TimedOut)
            || self.lock_error().is_some_and(|e| e.is_timeout())
    }

    /// True if a failed batch could not be taken back out of the journal
    /// ([`Error::BatchOutcomeUnknown`]): its updates may be read back, here, in another process
    /// or at the next open. For [`Error::Batch`] this is false: none of the batch's updates is anywhere.
    pub fn is_outcome_unknown(&self) -> bool {
        matches!(self, Error::BatchOutcomeUnknown { .. })
    }

    /// True if the file system had no room for what the operation wrote: a full disk
    /// (`ENOSPC`), a used-up quota (`EDQUOT`) or the process's file size limit (`EFBIG`).
    /// Reading goes on working; writes work again once there is room. Whether a failed
    /// batch's updates are in the store is [`Error::is_outcome_unknown`]'s to say.
    pub fn is_storage_full(&self) -> bool {
        self.io_error().is_some_and(|e| {
            matches!(
                e.kind(),
                io::ErrorKind::StorageFull
                    | io::ErrorKind::QuotaExceeded
                    | io::ErrorKind::FileTooLarge
            )
        })
    }

    /// True if `touch` named a key without an entry.
    pub fn is_no_such_entry(&self) -> bool {
        matches!(self, Error::NoSuchEntry { .. })
    }

    /// True if a snapshot or journal is damaged ([`Error::CorruptSnapshot`],
    /// [`Error::CorruptJournal`]): quarantine it and report it; or if the snapshot is lost
    /// ([`Error::MissingSnapshot`]): report it. A journal of a newer version is not corrupt.
    pub fn is_corrupt(&self) -> bool {
        matches!(
            self,
            Error::CorruptSnapshot { .. }
                | Error::CorruptJournal { .. }
                | Error::MissingSnapshot { .. }
        )
    }

    /// True if a file to read or rename did not exist, or there is no store at all.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NoStore { .. })
            || self
                .io_error()
                .is_some_and(|e| e.kind() == io::ErrorKind::NotFound)
    }

    /// True if the caller's input (an entry, a patch, a writer id) was refused.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::Invalid { .. })
    }

    /// True if the file is in a format version this crate does not read.
    pub fn is_unsupported(&self) -> bool {
        matches!(self, Error::UnsupportedJournal { .. })
    }

    pub(crate) fn invalid(input: Input, reason: &'static str) -> Error {
        Error::Invalid {
            input,
            reason,
            source: None,
        }
    }

    pub(crate) fn io(
        op: Operation,
        step: &'static str,
        path: &Path,
        subject: &Path,
        source: io::Error,
    ) -> Error {
        Error::Io {
            op,
            step,
            path: path.to_path_buf(),
            subject: subject.to_path_buf(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::sync::Arc;

    use super::*;

    fn io_error(errno: i32) -> Error {
        let path = Path::new("/s/sessions.json");
        Error::io(
            Operation::WriteJournal,
            "append to",
            path,
            Path::new("/s/sessions.json.journal"),
            io::Error::from_raw_os_error(errno),
        )
    }

    /// A full disk, a used-up quota and the file size limit count as no room; other I/O
    /// errors do not, also inside a failed batch.
    #[test]
    fn storage_full_is_enospc_edquot_or_efbig() {
        for (errno, full) in [
            (libc::ENOSPC, true),
            (libc::EDQUOT, true),
            (libc::EFBIG, true),
            (libc::EIO, false),
            (libc::EROFS, false),
        ] {
            assert_eq!(io_error(errno).is_storage_full(), full, "errno {errno}");
            let batch = Error::Batch {
                path: "/s/sessions.json".into(),
                source: Arc::new(io_error(errno)),
            };
            assert_eq!(
                batch.is_storage_full(),
                full,
                "a batch failed with errno {errno}"
            );
        }
    }
}
