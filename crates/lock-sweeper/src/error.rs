//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

/// The sweeper's errors. Per-file and per-directory failures during a sweep are not errors of
/// the sweep: they are reported in its [`SweepReport`](crate::SweepReport) and the sweep goes on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A sweeper setting is invalid.
    #[error("invalid sweeper setting `{name}`: {reason}")]
    Config {
        /// The setting.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A directory exists but could not be listed.
    #[error("failed to list the directory `{}`", path.display())]
    ListDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// Judging or removing one lock file failed.
    #[error("failed to sweep the lock file `{}`", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// What write-lock reported.
        source: sessionkit_write_lock::Error,
    },
    /// Removing orphan temp files in a directory failed.
    #[error("failed to remove orphan temp files in `{}`", path.display())]
    Temps {
        /// The directory.
        path: PathBuf,
        /// What atomic-fs reported.
        source: sessionkit_atomic_fs::Error,
    },
    /// A blocking task of the async sweep panicked or was cancelled.
    #[error("a sweep task for `{}` did not finish", path.display())]
    Task {
        /// The directory the task was sweeping.
        path: PathBuf,
        /// Why it did not finish.
        reason: String,
    },
}

impl Error {
    /// True for an invalid setting.
    pub fn is_config(&self) -> bool {
        matches!(self, Error::Config { .. })
    }

    /// The path the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Config { .. } => None,
            Error::ListDir { path, .. }
            | Error::Lock { path, .. }
            | Error::Temps { path, .. }
            | Error::Task { path, .. } => Some(path),
        }
    }

    /// The operating system's error, if the failure was one.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Error::ListDir { source, .. } => Some(source),
            Error::Lock { source, .. } => source.io_error(),
            Error::Temps { source, .. } => source.io_error(),
            _ => None,
        }
    }

    /// The message with its chain of causes, as written into a report entry.
    pub(crate) fn chain(&self) -> String {
        let mut out = self.to_string();
        let mut source = std::error::Error::source(self);
        while let Some(cause) = source {
            out.push_str(": ");
            out.push_str(&cause.to_string());
            source = cause.source();
        }
        out
    }
}

/// The sweeper's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
