//! Async entry points for tokio (feature `tokio`).
//!
//! Operating systems seldom offer asynchronous file I/O, so each function here runs its whole
//! operation (every step, every `fsync`) as one closure on tokio's blocking pool with
//! [`spawn_blocking`](::tokio::task::spawn_blocking). An async worker thread never waits on the
//! disk.
//!
//! # How many at once
//!
//! At most [`blocking_limit`] operations of this module run on the blocking pool at once; the
//! others wait for a slot asynchronously, first come first served. Without a cap, 64 tasks
//! writing at once become 64 threads each spending kernel CPU on its write, and on a 2-core
//! machine they crowd out the async workers: the benchmark's 1 ms ticker ran up to 15 ms late
//! that way, and at its idle baseline with 8 writes in flight (`docs/benchmarks.md`). By
//! default the cap is four per CPU; [`set_blocking_limit`] changes it.
//!
//! # Cancellation
//!
//! Dropping the future while it waits for a slot means the operation never starts. Once it has
//! started, dropping the future does **not** stop it: it runs to the end on its blocking thread
//! and completes or fails whole. A replace is still all-or-nothing, and an append still writes
//! its whole record or nothing new; only the result is lost. If the runtime shuts down before
//! the task starts, the call returns [`Error::Cancelled`].
//!
//! # Example
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), sessionkit_atomic_fs::Error> {
//! # let path = std::env::temp_dir().join(format!("sk-doc-tokio-{}.json", std::process::id()));
//! use sessionkit_atomic_fs::tokio as afs;
//!
//! afs::write(&path, b"{\"ok\":true}".to_vec()).await?;
//! let value: serde_json::Value = afs::read_json(&path).await?;
//! assert_eq!(value["ok"], true);
//! # std::fs::remove_file(&path).unwrap();
//! # Ok(())
//! # }
//! ```

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock, RwLock};
use std::time::Duration;

use ::tokio::sync::Semaphore;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::error::{Error, Operation, Result};
use crate::{
    Appended, AtomicWriter, Durability, JsonlRecords, OrphanReport, RecordAppender, Records, Repair,
};

/// The current cap and the semaphore that enforces it.
fn slots() -> &'static RwLock<(usize, Arc<Semaphore>)> {
    static SLOTS: OnceLock<RwLock<(usize, Arc<Semaphore>)>> = OnceLock::new();
    SLOTS.get_or_init(|| {
        let limit = default_blocking_limit();
        RwLock::new((limit, Arc::new(Semaphore::new(limit))))
    })
}

/// The default cap on operations running at once: four per CPU (at least four).
pub fn default_blocking_limit() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()) * 4
}

/// How many operations of this module may run on the blocking pool at once.
///
/// By default, [`default_blocking_limit`].
pub fn blocking_limit() -> usize {
    slots().read().unwrap_or_else(|e| e.into_inner()).0
}

/// Sets how many operations of this module may run on the blocking pool at once (at least 1).
///
/// Operations that start afterwards use the new cap; those already running or waiting keep
/// the slot they have or wait for, so for a moment the old and the new cap both apply.
pub fn set_blocking_limit(limit: usize) {
    let limit = limit.clamp(1, Semaphore::MAX_PERMITS);
    *slots().write().unwrap_or_else(|e| e.into_inner()) = (limit, Arc::new(Semaphore::new(limit)));
}

/// Runs `f` on the blocking pool once a slot is free; a panic inside is resumed here, a
/// cancellation is an error.
async fn blocking<T, F>(op: Operation, path: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    let semaphore = slots().read().unwrap_or_else(|e| e.into_inner()).1.clone();
    let Ok(permit) = semaphore.acquire_owned().await else {
        // Never closed; treat it like a runtime that stopped before the task could start.
        return Err(Error::Cancelled {
            op,
            path: path.to_path_buf(),
        });
    };
    // The permit moves into the closure, so the slot stays taken until the work itself ends,
    // even if this future is dropped meanwhile.
    let task = move || {
        let _permit = permit;
        f()
    };
    match ::tokio::task::spawn_blocking(task).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Cancelled {
            op,
            path: path.to_path_buf(),
        }),
    }
}

impl AtomicWriter {
    /// [`write`](AtomicWriter::write) on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`AtomicWriter::write`], or [`Error::Cancelled`].
    pub async fn write_async(
        &self,
        path: impl Into<PathBuf>,
        contents: impl Into<Vec<u8>>,
    ) -> Result<()> {
        let path = path.into();
        let contents = contents.into();
        let writer = self.clone();
        let p = path.clone();
        blocking(Operation::Replace, &path, move || {
            writer.write(&p, &contents)
        })
        .await
    }

    /// [`write_json`](AtomicWriter::write_json) on the blocking pool. The value is serialised
    /// on the calling task first (CPU work, no I/O).
    ///
    /// # Errors
    ///
    /// As [`AtomicWriter::write_json`], or [`Error::Cancelled`].
    pub async fn write_json_async<T: Serialize + ?Sized>(
        &self,
        path: impl Into<PathBuf>,
        value: &T,
    ) -> Result<()> {
        let path = path.into();
        let bytes = serde_json::to_vec(value).map_err(|source| Error::Serialize {
            op: Operation::Replace,
            path: path.clone(),
            source,
        })?;
        self.write_async(path, bytes).await
    }
}

impl RecordAppender {
    /// [`append`](RecordAppender::append) on the blocking pool.
    ///
    /// # Errors
    ///
    /// As [`RecordAppender::append`], or [`Error::Cancelled`].
    pub async fn append_async(
        &self,
        path: impl Into<PathBuf>,
        record: impl Into<Vec<u8>>,
    ) -> Result<Appended> {
        let path = path.into();
        let record = record.into();
        let appender = self.clone();
        let p = path.clone();
        blocking(Operation::Append, &path, move || {
            appender.append(&p, &record)
        })
        .await
    }
}

/// [`crate::write`] on the blocking pool: atomic and durable.
///
/// # Errors
///
/// As [`AtomicWriter::write`], or [`Error::Cancelled`].
pub async fn write(path: impl Into<PathBuf>, contents: impl Into<Vec<u8>>) -> Result<()> {
    AtomicWriter::new().write_async(path, contents).await
}

/// [`crate::write_json`] on the blocking pool.
///
/// # Errors
///
/// As [`AtomicWriter::write_json`], or [`Error::Cancelled`].
pub async fn write_json<T: Serialize + ?Sized>(path: impl Into<PathBuf>, value: &T) -> Result<()> {
    AtomicWriter::new().write_json_async(path, value).await
}

/// [`crate::read_json`] on the blocking pool.
///
/// # Errors
///
/// As [`crate::read_json`], or [`Error::Cancelled`].
pub async fn read_json<T: DeserializeOwned + Send + 'static>(
    path: impl Into<PathBuf>,
) -> Result<T> {
    let path = path.into();
    let p = path.clone();
    blocking(Operation::Read, &path, move || crate::read_json(&p)).await
}

/// [`crate::append_record`] on the blocking pool.
///
/// # Errors
///
/// As [`RecordAppender::append`], or [`Error::Cancelled`].
pub async fn append_record(
    path: impl Into<PathBuf>,
    record: impl Into<Vec<u8>>,
) -> Result<Appended> {
    RecordAppender::new().append_async(path, record).await
}

/// [`crate::read_records_from`] on the blocking pool (offset 0 reads the whole file).
///
/// # Errors
///
/// As [`crate::read_records_from`], or [`Error::Cancelled`].
pub async fn read_records_from(path: impl Into<PathBuf>, offset: u64) -> Result<Records> {
    let path = path.into();
    let p = path.clone();
    blocking(Operation::Read, &path, move || {
        crate::read_records_from(&p, offset)
    })
    .await
}

/// [`crate::read_jsonl`] on the blocking pool (parsing happens there too).
///
/// # Errors
///
/// As [`crate::read_jsonl`], or [`Error::Cancelled`].
pub async fn read_jsonl<T: DeserializeOwned + Send + 'static>(
    path: impl Into<PathBuf>,
) -> Result<JsonlRecords<T>> {
    let path = path.into();
    let p = path.clone();
    blocking(Operation::Read, &path, move || crate::read_jsonl(&p)).await
}

/// [`crate::repair_torn_tail`] on the blocking pool.
///
/// # Errors
///
/// As [`crate::repair_torn_tail`], or [`Error::Cancelled`].
pub async fn repair_torn_tail(path: impl Into<PathBuf>, durability: Durability) -> Result<Repair> {
    let path = path.into();
    let p = path.clone();
    blocking(Operation::Repair, &path, move || {
        crate::repair_torn_tail(&p, durability)
    })
    .await
}

/// [`crate::remove_orphan_temps`] on the blocking pool.
///
/// # Errors
///
/// As [`crate::remove_orphan_temps`], or [`Error::Cancelled`].
pub async fn remove_orphan_temps(
    dir: impl Into<PathBuf>,
    older_than: Duration,
) -> Result<OrphanReport> {
    let dir = dir.into();
    let d = dir.clone();
    blocking(Operation::Cleanup, &dir, move || {
        crate::remove_orphan_temps(&d, older_than)
    })
    .await
}
