//! Transcripts: `<sessionId>.jsonl` beside the registry, appended under the session's write
//! lock.
//!
//! Each append is one fenced `write` through write-lock's guard: if the guard was revoked (its
//! max hold passed) or another holder took the lock, nothing is written and the append fails.
//! An append costs O(1): the file is never scanned; its offset comes back from the kernel.
//! Suspending releases the lock around slow work (a model call) and resuming verifies, by the
//! tail's position and content, that only this process's published appends changed the file.

use std::fmt;
use std::path::{Path, PathBuf};

use sessionkit_atomic_fs::{Appended, Durability, RecordAppender, repair_torn_tail};
use sessionkit_write_lock::{LockGuard, Locker, Suspended};

use crate::error::{Error, Input, Operation, Result};
use crate::store::{Store, dir_of};

/// Why a session id cannot name a transcript file, if it cannot.
pub(crate) fn check_session_id(id: &str) -> std::result::Result<(), &'static str> {
    if id.is_empty() {
        return Err("is empty");
    }
    if id == "." || id == ".." {
        return Err("is a relative directory name");
    }
    if id.len() > 200 {
        return Err("is longer than 200 bytes");
    }
    if id.contains(['/', '\\', '\0']) {
        return Err("contains a path separator or NUL");
    }
    Ok(())
}

pub(crate) fn lock_error(
    path: &Path,
    step: &'static str,
    source: sessionkit_write_lock::Error,
) -> Error {
    Error::Lock {
        op: Operation::Transcript,
        step,
        path: path.to_path_buf(),
        source: Box::new(source),
    }
}

impl Store {
    /// The transcript file of `session_id`: `<sessionId>.jsonl` in the store's directory.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if the id is empty, `.` or `..`, longer than 200 bytes, or holds a
    /// path separator or NUL.
    pub fn transcript_path(&self, session_id: &str) -> Result<PathBuf> {
        check_session_id(session_id).map_err(|reason| Error::invalid(Input::SessionId, reason))?;
        Ok(dir_of(self.path()).join(format!("{session_id}.jsonl")))
    }

    /// Takes the write lock of `session_id`'s transcript through `locker` (waiting up to its
    /// acquire timeout), cuts a torn tail a crash left (reported by
    /// [`Transcript::repaired_bytes`]), and returns the transcript ready for appends. Blocks;
    /// run it on a blocking thread from async code.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] for a bad session id; [`Error::Lock`] if the lock cannot be had
    /// (its `source` says whether it timed out); [`Error::AtomicWrite`] if the tail cannot be
    /// repaired.
    pub fn open_transcript(&self, locker: &Locker, session_id: &str) -> Result<Transcript> {
        let path = self.transcript_path(session_id)?;
        let guard = locker
            .acquire(&path)
            .map_err(|e| lock_error(&path, "take the lock of", e))?;
        let repaired = repair(&path)?;
        Ok(Transcript::new(path, guard, repaired))
    }
}

/// Cuts a torn tail off a transcript whose lock the caller holds; the bytes cut, if any.
pub(crate) fn repair(path: &Path) -> Result<Option<u64>> {
    match repair_torn_tail(path, Durability::AtomicOnly) {
        Ok(repair) => Ok((repair.removed > 0).then_some(repair.removed)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(source) => Err(Error::AtomicWrite {
            op: Operation::Transcript,
            step: "cut the torn tail of the transcript",
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// The error of a transcript whose guard was lost to a cancelled async append.
pub(crate) fn lost(path: &Path) -> Error {
    Error::TranscriptLost {
        path: path.to_path_buf(),
    }
}

/// A session's transcript, held under its write lock; appends are fenced.
///
/// Dropping it releases the lock on the dropping thread, which removes the lock file: in
/// async code, end it with `release_async` (feature `tokio`, on by default)
/// rather than dropping it on a worker.
pub struct Transcript {
    pub(crate) path: PathBuf,
    /// `None` only if an async append was cancelled while the guard was on a blocking thread;
    /// the lock is then released, and every later call fails as fenced.
    pub(crate) guard: Option<LockGuard>,
    pub(crate) appender: RecordAppender,
    pub(crate) end: Option<u64>,
    pub(crate) repaired: Option<u64>,
}

impl fmt::Debug for Transcript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Transcript")
            .field("path", &self.path)
            .field("end", &self.end)
            .field("repaired", &self.repaired)
            .finish_non_exhaustive()
    }
}

impl Transcript {
    pub(crate) fn new(path: PathBuf, guard: LockGuard, repaired: Option<u64>) -> Transcript {
        Transcript {
            path,
            guard: Some(guard),
            appender: RecordAppender::new(),
            end: None,
            repaired,
        }
    }

    fn held(&self) -> Result<&LockGuard> {
        self.guard.as_ref().ok_or_else(|| lost(&self.path))
    }

    fn take(&mut self) -> Result<LockGuard> {
        self.guard.take().ok_or_else(|| lost(&self.path))
    }

    /// The transcript file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The bytes of a torn tail cut when it was opened, if there was one.
    pub fn repaired_bytes(&self) -> Option<u64> {
        self.repaired
    }

    /// The offset just past the last record this handle appended (`None` before the first).
    pub fn end(&self) -> Option<u64> {
        self.end
    }

    /// The lock guard (to watch for revocation, say); `None` after a cancelled async append.
    pub fn guard(&self) -> Option<&LockGuard> {
        self.guard.as_ref()
    }

    /// Syncs each append before it returns.
    ///
    /// By default, off: a crash of the process loses nothing appended, a power loss may lose
    /// the last appends (the journal of the registry is what must survive).
    pub fn sync_appends(&mut self, yes: bool) -> &mut Self {
        self.appender.sync(yes);
        self
    }

    /// Appends one record (a line without its newline) if this handle still owns the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`]: fenced (the guard was revoked or superseded; nothing was written), or
    /// the write failed.
    pub fn append(&mut self, record: &[u8]) -> Result<Appended> {
        let appended = self
            .held()?
            .append_with(&self.appender, record)
            .map_err(|e| lock_error(&self.path, "append to", e))?;
        self.end = Some(appended.end());
        Ok(appended)
    }

    /// Appends `value` as one JSON line.
    ///
    /// # Errors
    ///
    /// [`Error::Invalid`] if it cannot be serialized; as [`append`](Transcript::append).
    pub fn append_json<T: serde::Serialize + ?Sized>(&mut self, value: &T) -> Result<Appended> {
        let line = serde_json::to_vec(value).map_err(|e| Error::Invalid {
            input: Input::Record,
            reason: "cannot be serialized as JSON",
            source: Some(e),
        })?;
        self.append(&line)
    }

    /// Releases the lock around slow work, remembering the file's tail.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`] if the guard no longer owns the lock.
    pub fn suspend(mut self) -> Result<SuspendedTranscript> {
        let guard = self.take()?;
        let Transcript {
            path,
            appender,
            end,
            repaired,
            ..
        } = self;
        let suspended = guard
            .suspend()
            .map_err(|e| lock_error(&path, "suspend the lock of", e))?;
        Ok(SuspendedTranscript {
            path,
            suspended,
            appender,
            end,
            repaired,
        })
    }

    /// Releases the lock.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`] if the lock file could not be removed.
    pub fn release(mut self) -> Result<()> {
        self.take()?
            .release()
            .map_err(|e| lock_error(&self.path, "release the lock of", e))
    }
}

/// A transcript whose lock is released around slow work.
pub struct SuspendedTranscript {
    pub(crate) path: PathBuf,
    pub(crate) suspended: Suspended,
    pub(crate) appender: RecordAppender,
    pub(crate) end: Option<u64>,
    pub(crate) repaired: Option<u64>,
}

impl fmt::Debug for SuspendedTranscript {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SuspendedTranscript")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl SuspendedTranscript {
    /// Takes the lock again and verifies that the transcript changed only through appends
    /// published by this process's guards meanwhile.
    ///
    /// # Errors
    ///
    /// [`Error::Lock`] whose source is a takeover (someone else wrote the file; the lock is
    /// released again) or a timeout.
    pub fn resume(self) -> Result<Transcript> {
        let guard = self
            .suspended
            .resume()
            .map_err(|e| lock_error(&self.path, "resume the lock of", e))?;
        Ok(Transcript {
            path: self.path,
            guard: Some(guard),
            appender: self.appender,
            end: self.end,
            repaired: self.repaired,
        })
    }
}
