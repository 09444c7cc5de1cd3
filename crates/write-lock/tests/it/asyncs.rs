//! The async acquire: it never blocks a worker, and it is cancel-safe.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::ThreadId;
use std::time::{Duration, Instant, SystemTime};

use sessionkit_write_lock::{Clock, LockConfig, Locker};

use crate::util::{ChildHolder, Scratch, lock_of, quick_locker};

/// A system clock that notes the threads that read the wall time (only the blocking attempts
/// do).
#[derive(Debug, Default)]
struct ThreadNotingClock(Mutex<Vec<ThreadId>>);

impl Clock for ThreadNotingClock {
    fn now(&self) -> SystemTime {
        self.0.lock().unwrap().push(std::thread::current().id());
        SystemTime::now()
    }
    fn instant(&self) -> Instant {
        Instant::now()
    }
}

#[tokio::test(flavor = "current_thread")]
async fn attempts_run_off_the_runtime_thread() {
    let dir = Scratch::new("async-thread");
    let clock = Arc::new(ThreadNotingClock::default());
    let locker = Locker::with_config(
        LockConfig::builder()
            .clock(clock.clone())
            .watchdog(false)
            .build()
            .unwrap(),
    );
    let runtime_thread = std::thread::current().id();
    for i in 0..5 {
        let guard = locker
            .acquire_async(dir.join(format!("t{i}")))
            .await
            .unwrap();
        guard.release().unwrap();
    }
    // A contended acquire: the stale judgement reads the clock too.
    std::fs::write(lock_of(&dir.join("s")), b"{}").unwrap();
    crate::util::set_modified_ago(&lock_of(&dir.join("s")), Duration::from_secs(120));
    locker.acquire_async(dir.join("s")).await.unwrap();
    let threads = clock.0.lock().unwrap().clone();
    assert!(threads.len() >= 6, "{}", threads.len());
    assert_eq!(threads.iter().filter(|t| **t == runtime_thread).count(), 0);
}

#[tokio::test(flavor = "current_thread")]
async fn release_async_removes_the_lock_file_and_frees_the_lock() {
    let dir = Scratch::new("async-release");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire_async(target.clone()).await.unwrap();
    assert!(lock_of(&target).exists());
    guard.release_async().await.unwrap();
    assert!(!lock_of(&target).exists());
    locker.try_acquire(&target).unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_waiting_acquire_leaves_no_waiter_and_no_lock_file() {
    let dir = Scratch::new("async-cancel");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_secs(60));
    let guard = locker.acquire(&target).unwrap();
    let waiter = {
        let locker = locker.clone();
        let target = target.clone();
        tokio::spawn(async move { locker.acquire_async(target).await })
    };
    while locker.inspect(&target).unwrap().waiters_here == 0 {
        tokio::task::yield_now().await;
    }
    waiter.abort();
    assert!(waiter.await.unwrap_err().is_cancelled());
    assert_eq!(locker.inspect(&target).unwrap().waiters_here, 0);
    drop(guard);
    assert!(!lock_of(&target).exists());
    // Nobody is left in line: the next acquire succeeds at once.
    locker.try_acquire(&target).unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_an_acquire_waiting_on_another_process_leaves_its_lock_alone() {
    crate::util::holder_role();
    let dir = Scratch::new("async-cancel-xproc");
    let target = dir.join("t");
    let mut holder = ChildHolder::hold(
        &target,
        "asyncs::dropping_an_acquire_waiting_on_another_process_leaves_its_lock_alone",
    );
    let locker = quick_locker(Duration::from_secs(60));
    let attempt = tokio::time::timeout(
        Duration::from_millis(100),
        locker.acquire_async(target.clone()),
    )
    .await;
    assert!(attempt.is_err(), "the child holds it");
    assert_eq!(locker.inspect(&target).unwrap().waiters_here, 0);
    let record = locker.inspect(&target).unwrap().record.unwrap();
    assert_eq!(
        record.pid,
        Some(holder.pid()),
        "still the child's lock file"
    );
    holder.kill9();
    let guard = locker.acquire_async(target.clone()).await.unwrap();
    assert_eq!(guard.record().pid, Some(std::process::id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_few_locks_never_lose_an_update() {
    let dir = Scratch::new("async-many");
    let locker = quick_locker(Duration::from_secs(120));
    let counters: Vec<_> = (0..8).map(|i| dir.join(format!("counter{i}"))).collect();
    for c in &counters {
        std::fs::write(c, b"0").unwrap();
    }
    let rounds = 25;
    let tasks: Vec<_> = (0..64)
        .map(|t| {
            let locker = locker.clone();
            let counter = counters[t % 8].clone();
            tokio::spawn(async move {
                for _ in 0..rounds {
                    let guard = locker.acquire_async(counter.clone()).await.unwrap();
                    let value: u64 = read(&counter);
                    tokio::task::yield_now().await;
                    guard
                        .write_with(
                            sessionkit_atomic_fs::AtomicWriter::new()
                                .durability(sessionkit_atomic_fs::Durability::AtomicOnly),
                            (value + 1).to_string().as_bytes(),
                        )
                        .unwrap();
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for c in &counters {
        assert_eq!(read(c), 8 * rounds as u64, "{}", c.display());
        assert!(!lock_of(c).exists());
    }
}

fn read(path: &Path) -> u64 {
    std::fs::read_to_string(path)
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}
