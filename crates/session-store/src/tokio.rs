//! The async API (feature `tokio`): the same operations, never blocking a worker thread.
//!
//! Updates are queued to the store's writer thread and awaited on a oneshot channel; reads
//! and opening, which touch the files, run on `spawn_blocking`.

use std::path::PathBuf;

use sessionkit_write_lock::OffWorker;

use crate::entry::{Activity, Entry, Patch};
use crate::error::{Error, Operation, Result};
use crate::journal::EvictReason;
use crate::store::{Ack, CompactReport, ListQuery, Store, StoreBuilder, StoreStats};
use crate::writer::{self, Reply, Request, Update};

impl StoreBuilder {
    /// Opens the store as [`open`](StoreBuilder::open) does, on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`open`](StoreBuilder::open); [`Error::Task`] if the blocking task could not run.
    pub async fn open_async(&self, path: impl Into<PathBuf>) -> Result<Store> {
        let builder = self.clone();
        let path = path.into();
        let task_path = path.clone();
        tokio::task::spawn_blocking(move || builder.open(&task_path))
            .await
            .map_err(|e| task_error(path, Operation::Open, &e))?
    }
}

fn task_error(path: PathBuf, op: Operation, e: &tokio::task::JoinError) -> Error {
    Error::Task {
        op,
        path,
        reason: e.to_string(),
    }
}

impl Store {
    async fn submit_async(&self, update: Update) -> Result<Ack> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.tx.send(Request::new(update, Reply::Async(reply)))?;
        answer
            .await
            .unwrap_or_else(|_| Err(writer::stopped(&self.shared)))
    }

    async fn blocking<T: Send + 'static>(
        &self,
        op: Operation,
        f: impl FnOnce(&Store) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let store = self.clone();
        tokio::task::spawn_blocking(move || f(&store))
            .await
            .map_err(|e| task_error(self.path().to_path_buf(), op, &e))?
    }

    /// [`upsert`](Store::upsert), awaiting the writer instead of blocking.
    ///
    /// Cancel-safe in the sense that matters: dropping the future does not take the update
    /// back (it may still be written), and nothing else is disturbed.
    ///
    /// # Errors
    ///
    /// As [`upsert`](Store::upsert).
    pub async fn upsert_async(&self, key: impl Into<String>, entry: Entry) -> Result<Ack> {
        self.submit_async(Update::Upsert {
            key: key.into(),
            entry,
            activity: None,
        })
        .await
    }

    /// [`upsert_with`](Store::upsert_with), awaiting the writer instead of blocking.
    ///
    /// # Errors
    ///
    /// As [`upsert`](Store::upsert).
    pub async fn upsert_with_async(
        &self,
        key: impl Into<String>,
        entry: Entry,
        activity: Activity,
    ) -> Result<Ack> {
        self.submit_async(Update::Upsert {
            key: key.into(),
            entry,
            activity: Some(activity),
        })
        .await
    }

    /// [`patch`](Store::patch), awaiting the writer instead of blocking.
    ///
    /// # Errors
    ///
    /// As [`patch`](Store::patch).
    pub async fn patch_async(
        &self,
        key: impl Into<String>,
        patch: Patch,
        activity: Activity,
    ) -> Result<Ack> {
        self.submit_async(Update::Patch {
            key: key.into(),
            patch,
            activity,
        })
        .await
    }

    /// [`touch`](Store::touch), awaiting the writer instead of blocking.
    ///
    /// # Errors
    ///
    /// As [`touch`](Store::touch).
    pub async fn touch_async(&self, key: impl Into<String>) -> Result<Ack> {
        self.submit_async(Update::Touch { key: key.into() }).await
    }

    /// [`delete`](Store::delete), awaiting the writer instead of blocking.
    ///
    /// # Errors
    ///
    /// As [`delete`](Store::delete).
    pub async fn delete_async(&self, key: impl Into<String>) -> Result<Ack> {
        self.submit_async(Update::Delete {
            key: key.into(),
            reason: None,
            if_updated_at: None,
        })
        .await
    }

    /// [`evict`](Store::evict), awaiting the writer instead of blocking.
    ///
    /// # Errors
    ///
    /// As [`evict`](Store::evict).
    pub async fn evict_async(&self, key: impl Into<String>, reason: EvictReason) -> Result<Ack> {
        self.submit_async(Update::Delete {
            key: key.into(),
            reason: Some(reason),
            if_updated_at: None,
        })
        .await
    }

    /// [`get`](Store::get) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`get`](Store::get).
    pub async fn get_async(&self, key: impl Into<String>) -> Result<Option<Entry>> {
        let key = key.into();
        self.blocking(Operation::ReadJournal, move |s| s.get(&key))
            .await
    }

    /// [`list`](Store::list) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`list`](Store::list).
    pub async fn list_async(&self, query: ListQuery) -> Result<Vec<(String, Entry)>> {
        self.blocking(Operation::ReadJournal, move |s| s.list(&query))
            .await
    }

    /// [`count`](Store::count) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`count`](Store::count).
    pub async fn count_async(&self) -> Result<usize> {
        self.blocking(Operation::ReadJournal, Store::count).await
    }

    /// [`stats`](Store::stats) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`stats`](Store::stats).
    pub async fn stats_async(&self) -> Result<StoreStats> {
        self.blocking(Operation::ReadJournal, Store::stats).await
    }

    /// [`maintain`](Store::maintain) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`maintain`](Store::maintain).
    pub async fn maintain_async(&self, dry_run: bool) -> Result<crate::MaintenanceReport> {
        self.blocking(Operation::Maintain, move |s| s.maintain(dry_run))
            .await
    }

    /// [`compact`](Store::compact) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`compact`](Store::compact).
    pub async fn compact_async(&self) -> Result<CompactReport> {
        self.blocking(Operation::Compact, Store::compact).await
    }

    /// [`flush`](Store::flush) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`flush`](Store::flush).
    pub async fn flush_async(&self) -> Result<()> {
        self.blocking(Operation::Flush, Store::flush).await
    }

    /// [`close`](Store::close) on a blocking thread: true if this was the last handle and
    /// the store's threads are done, false if other handles are left. Dropping the future
    /// does not stop the close.
    ///
    /// # Errors
    ///
    /// [`Error::Task`] with [`Operation::Close`] if the runtime is shutting down and would
    /// not run the close: the handle was then only dropped, without waiting.
    pub async fn close_async(self) -> Result<bool> {
        let path = self.path().to_path_buf();
        tokio::task::spawn_blocking(move || self.close())
            .await
            .map_err(|e| task_error(path, Operation::Close, &e))
    }
}

impl Store {
    /// [`open_transcript`](Store::open_transcript), waiting for the lock without blocking a
    /// worker (write-lock's `acquire_async`) and cutting a torn tail on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`open_transcript`](Store::open_transcript).
    pub async fn open_transcript_async(
        &self,
        locker: &sessionkit_write_lock::Locker,
        session_id: &str,
    ) -> Result<crate::Transcript> {
        let path = self.transcript_path(session_id)?;
        let guard = locker
            .acquire_async(&path)
            .await
            .map_err(|e| crate::transcript::lock_error(&path, "take the lock of", e))?;
        let p = path.clone();
        // The guard goes with the repair, so that if the repair fails or this future is
        // dropped meanwhile, the release (which removes the lock file) runs on a blocking
        // thread rather than on this worker.
        let held = OffWorker::new(guard);
        let (held, repaired) =
            tokio::task::spawn_blocking(move || match crate::transcript::repair(&p) {
                Ok(repaired) => Ok((held, repaired)),
                Err(e) => {
                    drop(held.into_inner());
                    Err(e)
                }
            })
            .await
            .map_err(|e| task_error(path.clone(), Operation::Transcript, &e))??;
        Ok(crate::Transcript::new(path, held.into_inner(), repaired))
    }
}

impl crate::Transcript {
    /// [`append`](crate::Transcript::append) on a blocking thread.
    ///
    /// The guard travels to the blocking thread and back. If this future is dropped before it
    /// finishes, the append still completes (or fails) there, the lock is then released, and
    /// this transcript answers [`Error::TranscriptLost`] from then on.
    ///
    /// # Errors
    ///
    /// As [`append`](crate::Transcript::append).
    pub async fn append_async(
        &mut self,
        record: impl Into<Vec<u8>>,
    ) -> Result<sessionkit_atomic_fs::Appended> {
        let guard = self
            .guard
            .take()
            .ok_or_else(|| crate::transcript::lost(&self.path))?;
        let appender = self.appender.clone();
        let record = record.into();
        // Back in a wrapper: if this future is dropped once the append is done, the guard's
        // release runs on a blocking thread, not on this worker.
        let (guard, appended) = tokio::task::spawn_blocking(move || {
            let appended = guard.append_with(&appender, &record);
            (OffWorker::new(guard), appended)
        })
        .await
        .map_err(|e| task_error(self.path.clone(), Operation::Transcript, &e))?;
        self.guard = Some(guard.into_inner());
        let appended =
            appended.map_err(|e| crate::transcript::lock_error(&self.path, "append to", e))?;
        self.end = Some(appended.end());
        Ok(appended)
    }

    /// [`suspend`](crate::Transcript::suspend) without blocking a worker.
    ///
    /// # Errors
    ///
    /// As [`suspend`](crate::Transcript::suspend).
    pub async fn suspend_async(self) -> Result<crate::SuspendedTranscript> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || self.suspend())
            .await
            .map_err(|e| task_error(path, Operation::Transcript, &e))?
    }

    /// [`release`](crate::Transcript::release) without blocking a worker.
    ///
    /// # Errors
    ///
    /// As [`release`](crate::Transcript::release).
    pub async fn release_async(self) -> Result<()> {
        let path = self.path.clone();
        tokio::task::spawn_blocking(move || self.release())
            .await
            .map_err(|e| task_error(path, Operation::Transcript, &e))?
    }
}

impl crate::SuspendedTranscript {
    /// [`resume`](crate::SuspendedTranscript::resume), waiting for the lock without blocking
    /// a worker.
    ///
    /// # Errors
    ///
    /// As [`resume`](crate::SuspendedTranscript::resume).
    pub async fn resume_async(self) -> Result<crate::Transcript> {
        let guard = self
            .suspended
            .resume_async()
            .await
            .map_err(|e| crate::transcript::lock_error(&self.path, "resume the lock of", e))?;
        Ok(crate::Transcript {
            path: self.path,
            guard: Some(guard),
            appender: self.appender,
            end: self.end,
            repaired: self.repaired,
        })
    }
}
