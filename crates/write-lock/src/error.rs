//! The crate's one error type.

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::record::OwnerRecord;

/// What the caller asked for when an [`Error`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Operation {
    /// Taking the lock.
    Acquire,
    /// Giving the lock back.
    Release,
    /// Looking at a lock without changing it.
    Inspect,
    /// Removing a stale lock.
    RemoveStale,
    /// Writing the target through a guard.
    Write,
    /// Re-taking a suspended lock.
    Resume,
    /// Checking the settings.
    Configure,
}

impl fmt::Display for Operation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Operation::Acquire => "acquire the lock on",
            Operation::Release => "release the lock on",
            Operation::Inspect => "inspect the lock on",
            Operation::RemoveStale => "remove the stale lock on",
            Operation::Write => "write",
            Operation::Resume => "resume the lock on",
            Operation::Configure => "configure the lock",
        })
    }
}

/// Why a guarded write was refused: the guard no longer owns the lock.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum FenceFailure {
    /// The guard was released (or suspended) before the write.
    Released,
    /// This process's watchdog revoked the guard after its max hold.
    Revoked,
    /// A controller abandoned the guard during cleanup.
    Abandoned,
    /// The sidecar on disk is gone or belongs to someone else.
    Superseded,
}

impl fmt::Display for FenceFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FenceFailure::Released => "the guard was already released",
            FenceFailure::Revoked => "the watchdog revoked the guard after its max hold",
            FenceFailure::Abandoned => "the guard was abandoned by its controller",
            FenceFailure::Superseded => "the lock file on disk is no longer this guard's",
        })
    }
}

/// Who held a lock when an acquire gave up, for the timeout message.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Holder {
    /// The owner record read from the sidecar, if it could be parsed.
    pub record: Option<OwnerRecord>,
    /// How long the lock had been held (from its record, else from the file's mtime).
    pub held_for: Option<Duration>,
    /// True if the holder is past the max hold it declared.
    pub past_max_hold: bool,
}

impl fmt::Display for Holder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.record {
            Some(r) => {
                match r.pid {
                    Some(pid) => write!(f, "pid {pid}")?,
                    None => f.write_str("an owner without a pid")?,
                }
                if let Some(label) = &r.label {
                    write!(f, " ({label})")?;
                }
            }
            None => f.write_str("an unknown owner")?,
        }
        if let Some(held) = self.held_for {
            write!(f, ", held for {} ms", held.as_millis())?;
        }
        if self.past_max_hold {
            f.write_str(", past its max hold")?;
        }
        Ok(())
    }
}

/// What changed in a suspended lock's target while it was released.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Takeover {
    /// The length the target had (plus this library's published writes).
    pub expected_len: Option<u64>,
    /// The length found on resume (`None`: the file is gone).
    pub found_len: Option<u64>,
    /// What differs, in words.
    pub detail: String,
}

impl fmt::Display for Takeover {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let len = |l: Option<u64>| l.map_or_else(|| "no file".to_owned(), |l| format!("{l} bytes"));
        write!(
            f,
            "expected {}, found {}: {}",
            len(self.expected_len),
            len(self.found_len),
            self.detail
        )
    }
}

/// The error type of every operation in this crate.
///
/// Use the predicates ([`is_timeout`](Error::is_timeout), [`is_contended`](Error::is_contended),
/// [`is_fenced`](Error::is_fenced), [`is_takeover`](Error::is_takeover)) rather than matching on
/// messages.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The lock stayed held by a live owner until the deadline.
    #[error("failed to {op} `{path}`: timed out after {} ms; held by {holder}", waited.as_millis(), path = path.display())]
    Timeout {
        /// [`Operation::Acquire`] or [`Operation::Resume`].
        op: Operation,
        /// The locked target.
        path: PathBuf,
        /// How long the call waited.
        waited: Duration,
        /// Who held it when the call gave up.
        holder: Box<Holder>,
    },

    /// A write through a guard was refused because the guard no longer owns the lock; nothing
    /// was written.
    #[error("failed to {op} `{path}`: {reason}; nothing was written", path = path.display())]
    Fenced {
        /// What was asked for.
        op: Operation,
        /// The locked target.
        path: PathBuf,
        /// Why the guard no longer owns the lock.
        reason: FenceFailure,
    },

    /// Resuming a suspended lock found the target changed by someone else.
    #[error("failed to {op} `{path}`: the file changed while the lock was suspended ({takeover})", path = path.display())]
    Takeover {
        /// [`Operation::Resume`].
        op: Operation,
        /// The locked target.
        path: PathBuf,
        /// What changed.
        takeover: Takeover,
    },

    /// The same holder asked again for a lock it holds, without reentrancy.
    #[error("failed to {op} `{path}`: this holder already holds it (reentrancy is off)", path = path.display())]
    AlreadyHeld {
        /// [`Operation::Acquire`].
        op: Operation,
        /// The locked target.
        path: PathBuf,
    },

    /// A file-system call failed.
    #[error("failed to {op} `{path}`: could not {what} `{subject}`", path = path.display(), subject = subject.display())]
    Io {
        /// What was asked for.
        op: Operation,
        /// The locked target.
        path: PathBuf,
        /// What the failing call did, in words.
        what: &'static str,
        /// The path the failing call touched (the sidecar, usually).
        subject: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// A guarded write failed in the file layer.
    #[error("failed to {op} `{path}` under its lock", path = path.display())]
    Write {
        /// [`Operation::Write`].
        op: Operation,
        /// The locked target.
        path: PathBuf,
        /// The file layer's error.
        #[source]
        source: sessionkit_atomic_fs::Error,
    },

    /// A setting, from the builder or from a `SESSIONKIT_LOCK_*` variable, is invalid.
    #[error("invalid lock setting `{name}`: {reason}")]
    Config {
        /// The setting: a builder method or an environment variable.
        name: String,
        /// What is wrong with it.
        reason: String,
    },

    /// The async acquire's task was cancelled because the runtime shut down.
    #[error("failed to {op} `{path}`: the blocking task was cancelled", path = path.display())]
    Cancelled {
        /// What was asked for.
        op: Operation,
        /// The locked target.
        path: PathBuf,
    },
}

/// A specialised `Result` for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The operation that failed.
    pub fn operation(&self) -> Operation {
        match self {
            Error::Timeout { op, .. }
            | Error::Fenced { op, .. }
            | Error::Takeover { op, .. }
            | Error::AlreadyHeld { op, .. }
            | Error::Io { op, .. }
            | Error::Write { op, .. }
            | Error::Cancelled { op, .. } => *op,
            Error::Config { .. } => Operation::Configure,
        }
    }

    /// The locked target (none for a [`Error::Config`]).
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Timeout { path, .. }
            | Error::Fenced { path, .. }
            | Error::Takeover { path, .. }
            | Error::AlreadyHeld { path, .. }
            | Error::Io { path, .. }
            | Error::Write { path, .. }
            | Error::Cancelled { path, .. } => Some(path),
            Error::Config { .. } => None,
        }
    }

    /// True if a setting was invalid.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    /// True if the deadline passed while someone else held the lock.
    pub fn is_timeout(&self) -> bool {
        matches!(self, Error::Timeout { .. })
    }

    /// True if the lock was held by someone else (a timeout) or by this same holder.
    pub fn is_contended(&self) -> bool {
        matches!(self, Error::Timeout { .. } | Error::AlreadyHeld { .. })
    }

    /// True if a write was refused because the guard no longer owns the lock.
    pub fn is_fenced(&self) -> bool {
        matches!(self, Error::Fenced { .. })
    }

    /// The reason a write was fenced off, if it was.
    pub fn fence_failure(&self) -> Option<FenceFailure> {
        match self {
            Error::Fenced { reason, .. } => Some(*reason),
            _ => None,
        }
    }

    /// True if a resume found the file changed by someone else.
    pub fn is_takeover(&self) -> bool {
        matches!(self, Error::Takeover { .. })
    }

    /// The holder named by a timeout.
    pub fn holder(&self) -> Option<&Holder> {
        match self {
            Error::Timeout { holder, .. } => Some(holder),
            _ => None,
        }
    }

    /// The operating system's error, if there is one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::Io { source, .. } => Some(source),
            Error::Write { source, .. } => source.io_error(),
            _ => None,
        }
    }
}

/// Builds [`Error`]s for one operation on one target.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ctx<'a> {
    pub(crate) op: Operation,
    pub(crate) path: &'a Path,
}

impl<'a> Ctx<'a> {
    pub(crate) fn new(op: Operation, path: &'a Path) -> Self {
        Ctx { op, path }
    }

    pub(crate) fn io(self, what: &'static str, subject: &Path, source: io::Error) -> Error {
        Error::Io {
            op: self.op,
            path: self.path.to_path_buf(),
            what,
            subject: subject.to_path_buf(),
            source,
        }
    }

    pub(crate) fn fenced(self, reason: FenceFailure) -> Error {
        Error::Fenced {
            op: self.op,
            path: self.path.to_path_buf(),
            reason,
        }
    }
}
