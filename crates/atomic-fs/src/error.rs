//! The crate's one error type, the operations it names and the steps that can fail.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

/// What the caller asked for when an [`Error`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Replacing a file atomically ([`AtomicWriter::write`](crate::AtomicWriter::write) and friends).
    Replace,
    /// Reading a JSON or JSONL file.
    Read,
    /// Appending one record to a JSONL file.
    Append,
    /// Truncating a torn tail off a JSONL file.
    Repair,
    /// Removing orphan temp files from a directory.
    Cleanup,
}

impl Operation {
    fn verb(self) -> &'static str {
        match self {
            Operation::Replace => "replace",
            Operation::Read => "read",
            Operation::Append => "append to",
            Operation::Repair => "repair",
            Operation::Cleanup => "clean up temp files in",
        }
    }
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.verb())
    }
}

/// The file-system step that failed inside an [`Operation`].
///
/// The steps of an atomic replace, in order, are [`Inspect`](Step::Inspect),
/// [`CreateParent`](Step::CreateParent) (only when asked), [`CreateTemp`](Step::CreateTemp),
/// [`Write`](Step::Write), [`SetPermissions`](Step::SetPermissions), [`SyncTemp`](Step::SyncTemp)
/// (durable mode), [`Rename`](Step::Rename) and [`SyncDir`](Step::SyncDir) (durable mode).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Step {
    /// Looking at the target (`lstat`) to learn its kind and mode.
    Inspect,
    /// Reading the target of a symlink.
    ReadLink,
    /// Creating a missing parent directory.
    CreateParent,
    /// Creating the temp file exclusively.
    CreateTemp,
    /// Writing the contents.
    Write,
    /// Setting the mode or owner of the temp file.
    SetPermissions,
    /// Flushing the temp file to disk (`fsync`).
    SyncTemp,
    /// Renaming the temp file over the target.
    Rename,
    /// Flushing the directory entry to disk (`fsync` of the parent directory).
    SyncDir,
    /// Removing a temp file.
    RemoveTemp,
    /// Opening a file.
    Open,
    /// Reading a file.
    Read,
    /// Flushing an appended record to disk (`fdatasync`).
    SyncData,
    /// Truncating a file.
    Truncate,
    /// Listing a directory.
    ReadDir,
}

impl Step {
    fn phrase(self) -> &'static str {
        match self {
            Step::Inspect => "inspect",
            Step::ReadLink => "read the symlink",
            Step::CreateParent => "create the parent directory",
            Step::CreateTemp => "create the temp file",
            Step::Write => "write",
            Step::SetPermissions => "set the permissions of",
            Step::SyncTemp => "fsync the temp file",
            Step::Rename => "rename the temp file over the target, from",
            Step::SyncDir => "fsync the directory",
            Step::RemoveTemp => "remove the temp file",
            Step::Open => "open",
            Step::Read => "read",
            Step::SyncData => "fdatasync",
            Step::Truncate => "truncate",
            Step::ReadDir => "list the directory",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.phrase())
    }
}

/// Why a path or record was refused before anything was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Refusal {
    /// The path names no file (it is empty, `/`, or ends in `..`).
    NoFileName,
    /// The path names a directory.
    IsDirectory,
    /// The path names something other than a regular file or a symlink (a FIFO, socket or device).
    NotRegularFile,
    /// The path is a symlink to another symlink; only one hop is followed.
    SymlinkChain,
    /// The parent directory does not exist and creating it was not asked for.
    ParentMissing,
    /// A JSONL record contains a newline, which would split it in two.
    RecordHasNewline,
    /// A JSONL record is empty.
    RecordEmpty,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Refusal::NoFileName => "the path does not name a file",
            Refusal::IsDirectory => "it is a directory",
            Refusal::NotRegularFile => "it is not a regular file",
            Refusal::SymlinkChain => {
                "it is a symlink to another symlink (only one hop is followed)"
            }
            Refusal::ParentMissing => {
                "its parent directory does not exist (ask for parents to be created)"
            }
            Refusal::RecordHasNewline => "the record contains a newline",
            Refusal::RecordEmpty => "the record is empty",
        })
    }
}

/// The error type of every operation in this crate.
///
/// Each variant names the [`Operation`] and the path the caller gave; I/O variants also name the
/// [`Step`] that failed and the path that step touched (the temp file, the directory, ...).
/// Use the predicates ([`is_not_found`](Error::is_not_found), [`is_corrupt`](Error::is_corrupt),
/// [`is_sync_failure`](Error::is_sync_failure), ...) rather than matching on messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The request was refused before anything on disk changed.
    #[error("failed to {op} `{path}`: {reason}", path = path.display())]
    Refused {
        /// What was asked for.
        op: Operation,
        /// The path the caller gave.
        path: PathBuf,
        /// Why it was refused.
        reason: Refusal,
    },

    /// A file-system step failed. For [`Operation::Replace`] the target is unchanged and the temp
    /// file has been removed.
    #[error("failed to {op} `{path}`: could not {step} `{subject}`",
        path = path.display(), subject = subject.display())]
    Io {
        /// What was asked for.
        op: Operation,
        /// The step that failed.
        step: Step,
        /// The path the caller gave.
        path: PathBuf,
        /// The path the failing step touched.
        subject: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// An `fsync` (or `fdatasync`) failed: the data may not be on disk.
    ///
    /// This is final. A failed sync is never retried as if nothing happened, because the kernel
    /// may already have dropped the dirty pages. If `renamed` is false the temp file was never
    /// renamed into place and the target is unchanged; if it is true (the directory sync after
    /// the rename failed) the new contents are visible but may not survive a crash.
    #[error("failed to {op} `{path}`: could not {step} `{subject}`; the data may not be on disk{note}",
        path = path.display(), subject = subject.display(),
        note = if *renamed { " (the new contents are visible but may not survive a crash)" }
        else if matches!(op, Operation::Replace) { " and the target was left unchanged" }
        else { "" })]
    Sync {
        /// What was asked for.
        op: Operation,
        /// [`Step::SyncTemp`], [`Step::SyncDir`] or [`Step::SyncData`].
        step: Step,
        /// The path the caller gave.
        path: PathBuf,
        /// The file or directory whose sync failed.
        subject: PathBuf,
        /// Whether the temp file had already been renamed over the target.
        renamed: bool,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// The file to read does not exist.
    #[error("failed to {op} `{path}`: no such file", path = path.display())]
    NotFound {
        /// What was asked for.
        op: Operation,
        /// The missing file.
        path: PathBuf,
    },

    /// The file is not valid JSON, or not of the expected shape.
    #[error("`{path}` is corrupt: invalid JSON at line {line}, column {column}", path = path.display())]
    Corrupt {
        /// The corrupt file.
        path: PathBuf,
        /// The 1-based line of the error (for JSONL, the line of the record in the file).
        line: usize,
        /// The 1-based column of the error within that line.
        column: usize,
        /// The byte offset in the file where the bad JSON document (or JSONL record) starts.
        offset: u64,
        /// The parser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The value could not be serialised to JSON.
    #[error("failed to {op} `{path}`: could not serialise the value to JSON", path = path.display())]
    Serialize {
        /// What was asked for.
        op: Operation,
        /// The path the caller gave.
        path: PathBuf,
        /// The serialiser's error.
        #[source]
        source: serde_json::Error,
    },

    /// The blocking task that ran the operation was cancelled because the runtime shut down.
    /// Whether the operation completed is unknown; a replace is still all-or-nothing.
    #[error("failed to {op} `{path}`: the blocking task was cancelled", path = path.display())]
    Cancelled {
        /// What was asked for.
        op: Operation,
        /// The path the caller gave.
        path: PathBuf,
    },
}

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            Error::Refused { op, .. }
            | Error::Io { op, .. }
            | Error::Sync { op, .. }
            | Error::NotFound { op, .. }
            | Error::Serialize { op, .. }
            | Error::Cancelled { op, .. } => *op,
            Error::Corrupt { .. } => Operation::Read,
        }
    }

    /// The path the caller gave.
    pub fn path(&self) -> &Path {
        match self {
            Error::Refused { path, .. }
            | Error::Io { path, .. }
            | Error::Sync { path, .. }
            | Error::NotFound { path, .. }
            | Error::Corrupt { path, .. }
            | Error::Serialize { path, .. }
            | Error::Cancelled { path, .. } => path,
        }
    }

    /// The step that failed, for I/O and sync failures.
    pub fn step(&self) -> Option<Step> {
        match self {
            Error::Io { step, .. } | Error::Sync { step, .. } => Some(*step),
            _ => None,
        }
    }

    /// The operating system's error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } | Error::Sync { source, .. } => Some(source),
            _ => None,
        }
    }

    /// The reason a request was refused, if it was.
    pub fn refusal(&self) -> Option<Refusal> {
        match self {
            Error::Refused { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// True if the file to read did not exist.
    pub fn is_not_found(&self) -> bool {
        matches!(self, Error::NotFound { .. })
    }

    /// True if the file's contents could not be parsed.
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Corrupt { .. })
    }

    /// True if the caller's input (a record, a value) was at fault rather than the disk.
    pub fn is_bad_input(&self) -> bool {
        matches!(
            self,
            Error::Serialize { .. }
                | Error::Refused {
                    reason: Refusal::RecordHasNewline | Refusal::RecordEmpty,
                    ..
                }
        )
    }

    /// True if an `fsync` failed, so the data may not be on disk.
    pub fn is_sync_failure(&self) -> bool {
        matches!(self, Error::Sync { .. })
    }

    /// True if the failure happened after the target was replaced: the new contents are
    /// visible, but their durability is unknown.
    pub fn target_replaced(&self) -> bool {
        matches!(self, Error::Sync { renamed: true, .. })
    }
}

/// Builds [`Error`]s for one operation on one path, so call sites stay short.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) op: Operation,
    pub(crate) path: &'a Path,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(op: Operation, path: &'a Path) -> Self {
        Ctx { op, path }
    }

    pub(crate) fn refused(self, reason: Refusal) -> Error {
        Error::Refused {
            op: self.op,
            path: self.path.to_path_buf(),
            reason,
        }
    }

    pub(crate) fn io(self, step: Step, subject: &Path, source: io::Error) -> Error {
        Error::Io {
            op: self.op,
            step,
            path: self.path.to_path_buf(),
            subject: subject.to_path_buf(),
            source,
        }
    }

    pub(crate) fn sync(
        self,
        step: Step,
        subject: &Path,
        renamed: bool,
        source: io::Error,
    ) -> Error {
        Error::Sync {
            op: self.op,
            step,
            path: self.path.to_path_buf(),
            subject: subject.to_path_buf(),
            renamed,
            source,
        }
    }

    pub(crate) fn not_found(self) -> Error {
        Error::NotFound {
            op: self.op,
            path: self.path.to_path_buf(),
        }
    }

    /// Maps a read-side I/O error, keeping "not found" apart.
    pub(crate) fn read_io(self, step: Step, source: io::Error) -> Error {
        if source.kind() == io::ErrorKind::NotFound {
            self.not_found()
        } else {
            self.io(step, self.path, source)
        }
    }
}
