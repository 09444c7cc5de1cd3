//! The crate's one error type.

use std::io;
use std::path::{Path, PathBuf};

/// Errors of opening and using a state directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A setting (from the builder or a `SESSIONKIT_*` variable) is invalid.
    #[error("invalid state directory setting `{name}`: {reason}")]
    Config {
        /// The setting or variable.
        name: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The state directory could not be created.
    #[error("failed to create the state directory `{}`", path.display())]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// The operating system's error.
        source: io::Error,
    },
    /// The registry (or a transcript) reported an error.
    #[error("failed to {op} in the state directory `{}`", path.display())]
    Store {
        /// What was being done: `open the registry`, `open a transcript`, ...
        op: &'static str,
        /// The state directory.
        path: PathBuf,
        /// What session-store reported; it names the file. Boxed: it is large.
        #[source]
        source: Box<sessionkit_session_store::Error>,
    },
    /// The lock settings were refused.
    #[error("invalid lock settings for the state directory `{}`", path.display())]
    Lock {
        /// The state directory.
        path: PathBuf,
        /// What write-lock reported. Boxed: it is large.
        #[source]
        source: Box<sessionkit_write_lock::Error>,
    },
    /// The startup sweep's settings were refused.
    #[error("invalid startup sweep settings for the state directory `{}`", path.display())]
    Sweep {
        /// The state directory.
        path: PathBuf,
        /// What lock-sweeper reported. Boxed: it is large.
        #[source]
        source: Box<sessionkit_lock_sweeper::Error>,
    },
    /// A blocking task panicked or was cancelled.
    #[error("failed to {op} in the state directory `{}`: the blocking task did not finish ({reason})", path.display())]
    Task {
        /// What the task was doing.
        op: &'static str,
        /// The state directory.
        path: PathBuf,
        /// Why it did not finish.
        reason: String,
    },
}

impl Error {
    /// True for an invalid setting or environment variable.
    pub fn is_config(&self) -> bool {
        match self {
            Error::Config { .. } => true,
            Error::Lock { source, .. } => source.is_config(),
            Error::Sweep { source, .. } => source.is_config(),
            _ => false,
        }
    }

    /// True if a lock could not be had in time (a transcript held by a live owner).
    pub fn is_timeout(&self) -> bool {
        match self {
            Error::Store { source, .. } => lock_source(source).is_some_and(|e| e.is_timeout()),
            _ => false,
        }
    }

    /// True if the registry files are damaged (and recovery was not asked for).
    pub fn is_corrupt(&self) -> bool {
        matches!(self, Error::Store { source, .. } if source.is_corrupt())
    }

    /// The state directory the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        match self {
            Error::Config { .. } => None,
            Error::CreateDir { path, .. }
            | Error::Store { path, .. }
            | Error::Lock { path, .. }
            | Error::Sweep { path, .. }
            | Error::Task { path, .. } => Some(path),
        }
    }
}

/// The write-lock error of a store error, if there is one.
fn lock_source(e: &sessionkit_session_store::Error) -> Option<&sessionkit_write_lock::Error> {
    match e {
        sessionkit_session_store::Error::Lock { source, .. } => Some(source),
        _ => None,
    }
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
