//! The async sweep (feature `tokio`): the same work as [`Sweeper::sweep`], on blocking threads
//! in batches, with yields in between and bounded concurrency across directories.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;

use crate::error::{Error, Result};
use crate::report::SweepReport;
use crate::sweeper::{DirResult, Run, Sweeper};

impl Sweeper {
    /// Sweeps `dirs` as [`sweep`](Sweeper::sweep) does, without blocking the runtime's workers.
    ///
    /// Up to [`concurrency`](crate::SweeperBuilder::concurrency) directories are swept at
    /// once. Each directory is listed on a blocking thread, then its sidecars are judged and
    /// removed on blocking threads, [`batch_size`](crate::SweeperBuilder::batch_size) files per
    /// `spawn_blocking` call, with at most `concurrency` batches in flight across the sweep and
    /// a yield to the runtime after starting each. The report is the
    /// same as the sync sweep's: entries in the order of `dirs`, each directory sorted by name,
    /// and one [`MemoLookup`](crate::MemoLookup) across all directories.
    ///
    /// # Cancellation
    ///
    /// Dropping the future stops the sweep between batches; a batch already running on a
    /// blocking thread finishes (each of its removals is still the checked
    /// [`remove_if_stale`](sessionkit_write_lock::Locker::remove_if_stale)), and nothing is
    /// left half-removed.
    ///
    /// # Errors
    ///
    /// [`Error::Task`] if a blocking task panicked or the runtime is shutting down.
    pub async fn sweep_async<P: AsRef<Path>>(&self, dirs: &[P]) -> Result<SweepReport> {
        let started = Instant::now();
        let run = Arc::new(self.start(dirs.len())?);
        let limit = Arc::new(Semaphore::new(self.config.concurrency));
        let blocking = Arc::new(Semaphore::new(self.config.concurrency));
        let batch = self.config.batch;
        // A `JoinSet` aborts its tasks when dropped, so dropping this future stops the sweep.
        let mut tasks = tokio::task::JoinSet::new();
        for (index, dir) in dirs.iter().enumerate() {
            let dir = dir.as_ref().to_path_buf();
            let run = run.clone();
            let (limit, blocking) = (limit.clone(), blocking.clone());
            tasks.spawn(async move {
                let _permit = limit.acquire_owned().await;
                (index, sweep_dir(run, dir, batch, blocking).await)
            });
        }
        let mut results: Vec<Option<DirResult>> = dirs.iter().map(|_| None).collect();
        while let Some(joined) = tasks.join_next().await {
            let (index, result) = joined.map_err(|e| task_error(Path::new(""), &e))?;
            results[index] = Some(result?);
        }
        Ok(run.report(results.into_iter().flatten().collect(), started))
    }
}

async fn sweep_dir(
    run: Arc<Run>,
    dir: PathBuf,
    batch: usize,
    blocking: Arc<Semaphore>,
) -> Result<DirResult> {
    let mut out = DirResult::default();
    let listed = {
        let (run, listed_dir) = (run.clone(), dir.clone());
        tokio::task::spawn_blocking(move || run.list(&listed_dir))
            .await
            .map_err(|e| task_error(&dir, &e))?
    };
    match listed {
        Ok(candidates) => {
            // The batches of a directory run side by side too (its unlinks queue on the
            // directory in the kernel, but the reads and judgements around them overlap),
            // bounded by the sweep's limit on blocking tasks.
            let mut batches = tokio::task::JoinSet::new();
            let mut rest = candidates;
            let mut index = 0;
            while !rest.is_empty() {
                let tail = rest.split_off(rest.len().min(batch));
                let chunk = std::mem::replace(&mut rest, tail);
                let run = run.clone();
                let permit = blocking.clone().acquire_owned().await;
                batches.spawn_blocking(move || {
                    let _permit = permit;
                    let done = chunk
                        .into_iter()
                        .map(|(path, link)| run.sweep_file(path, link))
                        .collect::<Vec<_>>();
                    (index, done)
                });
                index += 1;
                tokio::task::yield_now().await;
            }
            let mut done = Vec::with_capacity(index);
            while let Some(joined) = batches.join_next().await {
                done.push(joined.map_err(|e| task_error(&dir, &e))?);
            }
            done.sort_by_key(|(i, _)| *i);
            out.entries
                .extend(done.into_iter().flat_map(|(_, entries)| entries));
        }
        Err(e) => {
            out.error = Some(crate::report::DirError {
                path: dir.clone(),
                error: e.chain(),
            });
        }
    }
    if run.temp_older_than.is_some() {
        let run2 = run.clone();
        let d = dir.clone();
        out.temps = tokio::task::spawn_blocking(move || run2.temps(&d))
            .await
            .map_err(|e| task_error(&dir, &e))?;
    }
    Ok(out)
}

fn task_error(dir: &Path, e: &tokio::task::JoinError) -> Error {
    Error::Task {
        path: dir.to_path_buf(),
        reason: e.to_string(),
    }
}
