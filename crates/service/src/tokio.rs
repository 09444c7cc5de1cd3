//! The async entry points (feature `tokio`): each blocking step on a blocking thread, lock
//! waits through write-lock's async acquire.

use std::path::{Path, PathBuf};
use std::time::Duration;

use sessionkit_session_store::{SuspendedTranscript, Transcript};

use crate::error::{Error, Result};
use crate::state_dir::{StateDir, StateDirBuilder, SweepStatus};

fn task_error(op: &'static str, path: &Path, e: &tokio::task::JoinError) -> Error {
    Error::Task {
        op,
        path: path.to_path_buf(),
        reason: e.to_string(),
    }
}

impl StateDirBuilder {
    /// [`open`](StateDirBuilder::open) on a blocking thread.
    ///
    /// # Errors
    ///
    /// As [`open`](StateDirBuilder::open), or [`Error::Task`] if the blocking task panicked.
    pub async fn open_async(&self, dir: impl Into<PathBuf>) -> Result<StateDir> {
        let dir = dir.into();
        let builder = self.clone();
        let d = dir.clone();
        tokio::task::spawn_blocking(move || builder.open(&d))
            .await
            .map_err(|e| task_error("open", &dir, &e))?
    }
}

impl StateDir {
    /// [`transcript`](StateDir::transcript), waiting for the lock without blocking a worker.
    ///
    /// # Errors
    ///
    /// As [`transcript`](StateDir::transcript).
    pub async fn transcript_async(&self, session_id: &str) -> Result<Transcript> {
        let transcript = self
            .store
            .open_transcript_async(&self.locker, session_id)
            .await
            .map_err(|source| self.store_error("open a transcript", source))?;
        self.track(&transcript);
        Ok(transcript)
    }

    /// [`resume`](StateDir::resume), waiting for the lock without blocking a worker.
    ///
    /// # Errors
    ///
    /// As [`resume`](StateDir::resume).
    pub async fn resume_async(&self, suspended: SuspendedTranscript) -> Result<Transcript> {
        let transcript = suspended
            .resume_async()
            .await
            .map_err(|source| self.store_error("resume a transcript", source))?;
        self.track(&transcript);
        Ok(transcript)
    }

    /// Waits up to `timeout` for the startup sweep to finish and returns where it is then,
    /// as [`wait_startup_sweep`](StateDir::wait_startup_sweep) does, but without holding a
    /// thread: the task sleeps until the sweep's thread wakes it or the timeout passes.
    ///
    /// The timeout needs the runtime's time driver (`enable_time`, or `enable_all`), as
    /// the lock waits of [`transcript_async`](StateDir::transcript_async) do.
    pub async fn wait_startup_sweep_async(&self, timeout: Duration) -> SweepStatus {
        let finished = std::future::poll_fn(|cx| self.sweep.poll_finished(cx));
        match tokio::time::timeout(timeout, finished).await {
            Ok(status) => status,
            Err(_) => self.sweep.wait(Duration::ZERO),
        }
    }

    /// [`close`](StateDir::close) on a blocking thread: true if this held the registry's
    /// last handle and its threads are done, false if other handles are left.
    ///
    /// # Errors
    ///
    /// [`Error::Store`] if the runtime is shutting down and would not run the close (the
    /// handle was then only dropped); see the registry's `close_async`.
    pub async fn close_async(self) -> Result<bool> {
        let dir = self.dir.clone();
        self.store
            .close_async()
            .await
            .map_err(|source| Error::Store {
                op: "close the registry",
                path: dir,
                source: Box::new(source),
            })
    }
}
