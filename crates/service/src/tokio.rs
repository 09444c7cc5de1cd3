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

    /// [`wait_startup_sweep`](StateDir::wait_startup_sweep) on a blocking thread.
    pub async fn wait_startup_sweep_async(&self, timeout: Duration) -> SweepStatus {
        if self.sweep.wait(Duration::ZERO).is_finished() {
            return self.sweep.wait(Duration::ZERO);
        }
        let cell = std::sync::Arc::clone(&self.sweep);
        match tokio::task::spawn_blocking(move || cell.wait(timeout)).await {
            Ok(status) => status,
            Err(e) => SweepStatus::Failed(format!("the wait did not finish: {e}")),
        }
    }
}
