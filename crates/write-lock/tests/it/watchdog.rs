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
