//! The watchdog, driven by a manual clock: no sleeps decide anything here.

use std::fs;
use std::sync::Arc;
use std::time::Duration;

use sessionkit_write_lock::{FenceFailure, LockConfig, Locker, ManualClock};

use crate::util::{Scratch, lock_of};

fn manual(max_hold: Duration) -> (Arc<ManualClock>, Locker) {
    let clock = Arc::new(ManualClock::new());
    let locker = Locker::with_config(
        LockConfig::builder()
            .max_hold(max_hold)
            .acquire_timeout(Duration::from_millis(50))
            .watchdog(false)
            .clock(clock.clone())
            .build()
            .unwrap(),
    );
    (clock, locker)
}

#[test]
fn an_overdue_guard_is_revoked_its_file_removed_and_its_writes_fenced() {
    let dir = Scratch::new("wd");
    let target = dir.join("t");
    let (clock, locker) = manual(Duration::from_secs(10));
    let guard = locker.acquire(&target).unwrap();
    let revocation = guard.revocation();

    clock.advance(Duration::from_secs(10));
    assert!(
        locker.watchdog_pass().revoked.is_empty(),
        "exactly at the max hold: kept"
    );
    assert!(!revocation.is_revoked());

    clock.advance(Duration::from_millis(1));
    let report = locker.watchdog_pass();
    assert_eq!(report.revoked, std::slice::from_ref(&target));
    assert!(report.failed.is_empty());
    assert!(!lock_of(&target).exists());
    assert_eq!(revocation.reason(), Some(FenceFailure::Revoked));
    assert_eq!(
        revocation.wait_timeout(Duration::ZERO),
        Some(FenceFailure::Revoked)
    );
    let err = guard.write(b"late").unwrap_err();
    assert_eq!(err.fence_failure(), Some(FenceFailure::Revoked));
    assert!(!target.exists(), "nothing was written");

    // The path is free at once, and the old guard cannot free the new lock.
    let new = locker.acquire(&target).unwrap();
    drop(guard);
    assert!(lock_of(&target).exists());
    new.check_fence().unwrap();
    assert!(
        locker.watchdog_pass().revoked.is_empty(),
        "a second pass does nothing new"
    );
}

#[test]
fn one_pass_revokes_every_overdue_guard() {
    let dir = Scratch::new("wd2");
    let (clock, locker) = manual(Duration::from_secs(5));
    let a = locker.acquire(dir.join("a")).unwrap();
    clock.advance(Duration::from_secs(3));
    let b = locker.acquire(dir.join("b")).unwrap();
    let c = locker.acquire(dir.join("c")).unwrap();
    // `c`'s lock file vanishes behind its back: revoking it has nothing to remove, and the
    // pass goes on.
    fs::remove_file(c.lock_path()).unwrap();
    clock.advance(Duration::from_secs(3));
    let report = locker.watchdog_pass();
    assert_eq!(report.revoked, [dir.join("a")]);
    clock.advance(Duration::from_secs(3));
    let mut revoked = locker.watchdog_pass().revoked;
    revoked.sort();
    assert_eq!(revoked, [dir.join("b"), dir.join("c")]);
    for g in [&a, &b, &c] {
        assert!(!g.is_held());
    }
}

#[test]
fn the_watchdog_thread_revokes_on_its_own() {
    let dir = Scratch::new("wdthread");
    let locker = Locker::with_config(
        LockConfig::builder()
            .max_hold(Duration::from_millis(100))
            .build()
            .unwrap(),
    );
    let guard = locker.acquire(dir.join("t")).unwrap();
    // A generous bound, not a timing assertion: the signal must come at all.
    assert_eq!(
        guard.revocation().wait_timeout(Duration::from_secs(30)),
        Some(FenceFailure::Revoked)
    );
    assert!(!lock_of(&dir.join("t")).exists());
}

/// Lets a held rename go when dropped.
struct LetGo<'a>(&'a std::sync::Barrier);

impl Drop for LetGo<'_> {
    fn drop(&mut self) {
        self.0.wait();
    }
}

/// Holds the rename of a guarded write until the test lets it go.
#[derive(Debug)]
struct HeldRename(Arc<std::sync::Barrier>, Arc<std::sync::Barrier>);

impl sessionkit_atomic_fs::FileSystem for HeldRename {
    fn rename(&self, from: &std::path::Path, to: &std::path::Path) -> std::io::Result<()> {
        self.0.wait();
        self.1.wait();
        sessionkit_atomic_fs::RealFs.rename(from, to)
    }
}

#[test]
fn a_write_in_flight_defers_revocation_until_it_has_landed() {
    // The race the lock checker found: revoked between the fence check and the rename, the
    // write used to land after the next holder's. Now the watchdog waits for it.
    let dir = Scratch::new("wd-race");
    let target = dir.join("counter");
    let (clock, locker) = manual(Duration::from_secs(10));
    let guard = locker.acquire(&target).unwrap();
    let (entered, release) = (
        Arc::new(std::sync::Barrier::new(2)),
        Arc::new(std::sync::Barrier::new(2)),
    );
    let mut writer = sessionkit_atomic_fs::AtomicWriter::new();
    writer
        .durability(sessionkit_atomic_fs::Durability::AtomicOnly)
        .file_system(Arc::new(HeldRename(entered.clone(), release.clone())));
    std::thread::scope(|s| {
        let write = s.spawn(|| guard.write_with(&writer, b"written while held"));
        entered.wait();
        // If an assertion fails, still let the write go, so the test fails instead of hanging.
        let let_go = LetGo(&release);
        clock.advance(Duration::from_secs(11));
        let report = locker.watchdog_pass();
        assert_eq!(report.deferred, std::slice::from_ref(&target));
        assert!(report.revoked.is_empty());
        assert!(lock_of(&target).exists(), "not given up during the write");
        drop(let_go);
        write.join().unwrap().unwrap();
    });
    assert_eq!(fs::read(&target).unwrap(), b"written while held");
    let report = locker.watchdog_pass();
    assert_eq!(report.revoked, std::slice::from_ref(&target));
    assert!(guard.write(b"late").unwrap_err().is_fenced());
    assert_eq!(fs::read(&target).unwrap(), b"written while held");
}
