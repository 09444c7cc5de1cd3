//! The async acquire (feature `tokio`): waits without blocking a worker, cancel-safe.
//!
//! In-process waiting is a future woken by the release itself; each cross-process attempt
//! (create the lock file, or judge the one there) runs on the blocking pool, and the pause
//! between attempts is a tokio sleep. Dropping the future at any point leaves no waiter in the
//! queue, and an attempt that succeeds after the drop releases its lock at once, so no lock file
//! is left behind.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use crate::error::{Error, Holder, Operation, Result};
use crate::guard::{LockGuard, Suspended};
use crate::locker::{Attempt, Locker, Ticket, resolve, timeout_error};
use crate::registry::{Turn, Wake, registry};

/// Runs `f` on the blocking pool; a panic inside is resumed here.
async fn blocking<T, F>(path: &Path, f: F) -> Result<T>
where
    T: Send + 'static,
    F: FnOnce() -> Result<T> + Send + 'static,
{
    match ::tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(_) => Err(Error::Cancelled {
            op: Operation::Acquire,
            path: path.to_path_buf(),
        }),
    }
}

/// A value whose drop does file I/O (a [`LockGuard`]: its release removes the lock file) that,
/// if dropped on a tokio runtime's thread, is dropped on the blocking pool instead.
///
/// Use it for a guard that comes out of a blocking task: if the future awaiting the task is
/// dropped after the task finished but before it was polled again, the task's output is
/// dropped where the future is, on a worker. Outside a runtime it drops in place, and so it
/// does when the runtime is shutting down and takes no more blocking work.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> Result<(), Box<dyn std::error::Error>> {
/// use sessionkit_write_lock::{Locker, OffWorker};
///
/// # let dir = std::env::temp_dir().join(format!("sk-doc-offworker-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let target = dir.join("session.jsonl");
/// let locker = Locker::new();
/// let held = tokio::task::spawn_blocking(move || locker.acquire(&target).map(OffWorker::new))
///     .await??;
/// // Had this future been dropped before this line, `held` would have been released on a
/// // blocking thread.
/// let guard = held.into_inner();
/// guard.release_async().await?;
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok(())
/// # }
/// ```
#[derive(Debug)]
pub struct OffWorker<T: Send + 'static>(Option<T>);

impl<T: Send + 'static> OffWorker<T> {
    /// Wraps `value`.
    pub fn new(value: T) -> OffWorker<T> {
        OffWorker(Some(value))
    }

    /// The value, to be dropped wherever the caller drops it.
    pub fn into_inner(mut self) -> T {
        self.0
            .take()
            .expect("only `into_inner`, which takes `self`, empties it")
    }
}

impl<T: Send + 'static> Drop for OffWorker<T> {
    fn drop(&mut self) {
        if let Some(value) = self.0.take() {
            match ::tokio::runtime::Handle::try_current() {
                Ok(runtime) => drop(runtime.spawn_blocking(move || drop(value))),
                Err(_) => drop(value),
            }
        }
    }
}

/// Resolves when `ticket` is first in line and nobody in this process holds the lock.
struct MyTurn<'a> {
    lock_path: &'a Path,
    ticket: u64,
}

impl Future for MyTurn<'_> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match registry().poll(self.lock_path, self.ticket, Wake::Task(cx.waker().clone())) {
            Turn::Mine => Poll::Ready(()),
            Turn::Wait => Poll::Pending,
        }
    }
}

impl Locker {
    /// Takes the lock on `target` without blocking an async worker, waiting up to the
    /// configured acquire timeout. Cancel-safe: see the [module docs](crate#async).
    ///
    /// # Errors
    ///
    /// As [`Locker::acquire`], or [`Error::Cancelled`] if the runtime shuts down.
    pub async fn acquire_async(&self, target: impl Into<PathBuf>) -> Result<LockGuard> {
        let timeout = self.config().acquire_timeout;
        self.acquire_async_with(target.into(), None, timeout).await
    }

    /// As [`acquire_async`](Locker::acquire_async), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Locker::acquire_async).
    pub async fn acquire_async_timeout(
        &self,
        target: impl Into<PathBuf>,
        timeout: Duration,
    ) -> Result<LockGuard> {
        self.acquire_async_with(target.into(), None, timeout).await
    }

    /// As [`acquire_as`](Locker::acquire_as), asynchronously.
    ///
    /// # Errors
    ///
    /// As [`acquire_async`](Locker::acquire_async).
    pub async fn acquire_as_async(
        &self,
        target: impl Into<PathBuf>,
        holder: &str,
    ) -> Result<LockGuard> {
        let timeout = self.config().acquire_timeout;
        self.acquire_async_with(target.into(), Some(holder.to_owned()), timeout)
            .await
    }

    async fn acquire_async_with(
        &self,
        target: PathBuf,
        holder: Option<String>,
        timeout: Duration,
    ) -> Result<LockGuard> {
        let started = Instant::now();
        let deadline = ::tokio::time::Instant::now() + timeout;
        let t = target.clone();
        let paths = blocking(&target, move || resolve(&t, Operation::Acquire)).await?;
        if let Some(guard) = self.reenter_pub(&paths, holder.as_deref()) {
            return Ok(guard);
        }
        let ticket = Ticket::join(&paths.lock_path);
        let config = self.config().clone();
        let mut pause = config.poll_min;
        let mut last_holder: Option<Holder> = None;
        let mut floor = 0;
        loop {
            let turn = MyTurn {
                lock_path: &paths.lock_path,
                ticket: ticket.id,
            };
            if ::tokio::time::timeout_at(deadline, turn).await.is_err() {
                let holder = crate::locker::in_process_holder(&paths.lock_path).or(last_holder);
                return Err(timeout_error(&target, started, holder));
            }
            let locker = self.clone();
            let (t, p, h) = (target.clone(), paths.clone(), holder.clone());
            // A lock the attempt wins after this future is dropped is released off the worker.
            let (attempt, new_floor) = blocking(&target, move || {
                let (attempt, floor) = locker.attempt_once(&t, &p, h.as_deref(), floor)?;
                Ok((OffWorker::new(attempt), floor))
            })
            .await?;
            floor = new_floor;
            match attempt.into_inner() {
                Attempt::Acquired(held) => return Ok(self.install(held, &ticket)),
                Attempt::Retry => continue,
                Attempt::Busy(who) => {
                    last_holder = Some(who);
                    let now = ::tokio::time::Instant::now();
                    if now >= deadline {
                        return Err(timeout_error(&target, started, last_holder));
                    }
                    ::tokio::time::sleep(pause.min(deadline - now)).await;
                    pause = (pause * 2).min(config.poll_max);
                }
            }
        }
    }
}

impl LockGuard {
    /// As [`release`](LockGuard::release), on the blocking pool: releasing removes the lock
    /// file, which is file I/O. (Dropping a guard on an async worker releases it there.)
    ///
    /// # Errors
    ///
    /// As [`release`](LockGuard::release).
    pub async fn release_async(self) -> Result<()> {
        let target = self.target().to_path_buf();
        blocking(&target, move || self.release()).await
    }
}

impl Suspended {
    /// As [`resume`](Suspended::resume), without blocking an async worker.
    ///
    /// # Errors
    ///
    /// As [`resume`](Suspended::resume).
    pub async fn resume_async(mut self) -> Result<LockGuard> {
        let (locker, target, holder) = self.parts();
        let guard = match holder {
            Some(holder) => locker.acquire_as_async(target, &holder).await?,
            None => locker.acquire_async(target).await?,
        };
        let target = self.target().to_path_buf();
        // Reading the fingerprint is a little file I/O; keep it off the worker too, and the
        // guard's release if this future is dropped once that is done.
        let resumed = blocking(&target, move || {
            self.finish_resume(guard).map(OffWorker::new)
        });
        Ok(resumed.await?.into_inner())
    }
}

/// Releases every lock this process holds when it gets SIGINT or SIGTERM, then exits with
/// status 128 + the signal number, as the default action would have. Spawns one task on the
/// current runtime.
///
/// Without it, a signal that kills the process still frees its locks for everyone (the kernel
/// drops the OS locks and contenders find the owner gone); the hook only removes the lock files
/// at once instead of at the next contender's look.
///
/// # Errors
///
/// [`Error::Io`] if the signal handlers cannot be installed.
pub fn release_on_signals() -> Result<()> {
    use ::tokio::signal::unix::{SignalKind, signal};
    let io = |e| Error::Io {
        op: Operation::Release,
        path: PathBuf::new(),
        what: "install a handler for",
        subject: PathBuf::from("SIGINT/SIGTERM"),
        source: e,
    };
    let mut interrupt = signal(SignalKind::interrupt()).map_err(io)?;
    let mut terminate = signal(SignalKind::terminate()).map_err(io)?;
    ::tokio::spawn(async move {
        let code = ::tokio::select! {
            _ = interrupt.recv() => 2,
            _ = terminate.recv() => 15,
        };
        let released = crate::release_all_held();
        tracing::warn!(
            released,
            signal = code,
            "released held locks on signal; exiting"
        );
        std::process::exit(128 + code);
    });
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::future::Future;
    use std::path::Path;
    use std::sync::{Arc, Mutex};
    use std::thread::ThreadId;
    use std::time::{Instant, SystemTime};

    use sessionkit_test_support::{Scratch, poll_until_then_settle, wait_until};

    use crate::{Clock, LockConfig, Locker};

    /// Notes the threads that read the monotonic clock: a release does, for how long it held.
    #[derive(Debug, Default)]
    struct ReleaseNotingClock(Mutex<Vec<ThreadId>>);

    impl Clock for ReleaseNotingClock {
        fn now(&self) -> SystemTime {
            SystemTime::now()
        }
        fn instant(&self) -> Instant {
            self.0.lock().unwrap().push(std::thread::current().id());
            Instant::now()
        }
    }

    /// Drops a future of `start(&locker, target)` (a lock on `dir/t`, which exists) after
    /// its blocking work finished, before it was polled again, and asserts that the lock that
    /// work handed back was released on a blocking thread, not on the worker that dropped the
    /// future. `done(target)` tells when the work has finished (the helper then gives its
    /// task time to hand the lock over). On a current-thread runtime the worker is this
    /// thread. A try is spoiled if the future finished first; it is then made again.
    fn dropped_after_its_work_releases_off_the_worker<F: Future>(
        dir: &Path,
        start: impl Fn(&Locker, &Path) -> F,
        done: impl Fn(&Path) -> bool,
    ) {
        let target = dir.join("t");
        std::fs::write(&target, b"x").unwrap();
        let clock = Arc::new(ReleaseNotingClock::default());
        let config = LockConfig::builder()
            .clock(clock.clone())
            .watchdog(false)
            .build()
            .unwrap();
        let locker = Locker::with_config(config);
        let runtime = ::tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let worker = std::thread::current().id();
        let released = || locker.try_acquire(&target).unwrap().is_some();
        for _ in 0..20 {
            let spoiled = runtime.block_on(async {
                let future = std::pin::pin!(start(&locker, &target));
                let spoiled = poll_until_then_settle(future, || done(&target)).await;
                clock.0.lock().unwrap().clear();
                spoiled
            });
            if spoiled {
                wait_until("the lock's release", released);
                continue;
            }
            let on_worker = clock
                .0
                .lock()
                .unwrap()
                .iter()
                .filter(|t| **t == worker)
                .count();
            assert_eq!(on_worker, 0, "the lock was released on the worker");
            // Released all the same, on a blocking thread.
            wait_until("the lock's release", released);
            // A release on this thread is noted, without which this test could not fail.
            let guard = locker.acquire(dir.join("other")).unwrap();
            clock.0.lock().unwrap().clear();
            drop(guard);
            assert!(clock.0.lock().unwrap().contains(&worker));
            return;
        }
        panic!("every try's future finished before this test could drop it");
    }

    /// An acquire dropped after its blocking attempt won the lock: the attempt has made the
    /// lock file when it has won.
    #[test]
    fn an_acquire_dropped_after_its_attempt_won_releases_off_the_worker() {
        let dir = Scratch::new("acquire-dropped");
        dropped_after_its_work_releases_off_the_worker(
            dir.path(),
            |locker, target| {
                let (locker, target) = (locker.clone(), target.to_path_buf());
                async move { locker.acquire_async(target).await }
            },
            |target| crate::lock_path_for(target).unwrap().exists(),
        );
    }

    /// A resume dropped after its check of the target: the check ends the suspension's watch
    /// of the target.
    #[test]
    fn a_resume_dropped_after_its_check_releases_off_the_worker() {
        let dir = Scratch::new("resume-dropped");
        dropped_after_its_work_releases_off_the_worker(
            dir.path(),
            |locker, target| {
                let suspended = locker.acquire(target).unwrap().suspend().unwrap();
                assert!(crate::publish::is_watched(target));
                suspended.resume_async()
            },
            |target| !crate::publish::is_watched(target),
        );
    }
}
