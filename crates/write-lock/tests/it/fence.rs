//! Fenced writes: a guard writes only while it owns the lock and its lock file.

use std::fs;
use std::time::Duration;

use sessionkit_atomic_fs::{AtomicWriter, Durability, RecordAppender};
use sessionkit_write_lock::{FenceFailure, LockController};

use crate::util::{Scratch, lock_of, quick_locker};

#[test]
fn writes_and_appends_go_through_while_held() {
    let dir = Scratch::new("fence-ok");
    let target = dir.join("s.jsonl");
    let guard = quick_locker(Duration::from_millis(50))
        .acquire(&target)
        .unwrap();
    let a = guard.append(b"{\"n\":1}").unwrap();
    let b = guard
        .append_with(RecordAppender::new().sync(true), b"{\"n\":2}")
        .unwrap();
    assert_eq!(b.offset, a.end());
    guard
        .write_with(
            AtomicWriter::new().durability(Durability::AtomicOnly),
            b"replaced",
        )
        .unwrap();
    assert_eq!(fs::read(&target).unwrap(), b"replaced");
}

#[test]
fn a_removed_or_replaced_lock_file_fences_the_guard_off() {
    let dir = Scratch::new("fence-superseded");
    let target = dir.join("t");
    fs::write(&target, b"old").unwrap();
    let guard = quick_locker(Duration::from_millis(50))
        .acquire(&target)
        .unwrap();
    fs::remove_file(lock_of(&target)).unwrap();
    assert_eq!(
        guard.check_fence().unwrap_err().fence_failure(),
        Some(FenceFailure::Superseded)
    );
    // Another holder's file at the path, with another inode.
    fs::write(lock_of(&target), b"{\"pid\": 1}").unwrap();
    let err = guard.write(b"new").unwrap_err();
    assert_eq!(err.fence_failure(), Some(FenceFailure::Superseded));
    assert!(err.to_string().contains("nothing was written"), "{err}");
    assert!(guard.append(b"{}").unwrap_err().is_fenced());
    assert_eq!(fs::read(&target).unwrap(), b"old");
}

#[test]
fn an_abandoned_guard_cannot_write_and_the_path_is_free_at_once() {
    let dir = Scratch::new("fence-abandon");
    let locker = quick_locker(Duration::from_millis(50));
    let controller = LockController::new(locker.clone()).with_label("run-7");
    let a = controller.acquire(dir.join("a")).unwrap();
    let b = controller.acquire(dir.join("b")).unwrap();
    let released = controller.acquire(dir.join("c")).unwrap();
    released.release().unwrap();
    assert_eq!(controller.held_count(), 2);
    let report = controller.cleanup();
    let mut abandoned = report.abandoned.clone();
    abandoned.sort();
    assert_eq!(abandoned, [dir.join("a"), dir.join("b")]);
    assert!(report.failed.is_empty());
    assert_eq!(a.revocation().reason(), Some(FenceFailure::Abandoned));
    assert_eq!(
        b.write(b"x").unwrap_err().fence_failure(),
        Some(FenceFailure::Abandoned)
    );
    assert!(!dir.join("b").exists());
    // Immediately acquirable, by anyone.
    locker.try_acquire(dir.join("a")).unwrap().unwrap();
    locker.try_acquire(dir.join("b")).unwrap().unwrap();
    assert_eq!(
        controller.cleanup().abandoned.len(),
        0,
        "cleanup is idempotent"
    );
}

#[test]
fn dropping_the_controller_cleans_up() {
    let dir = Scratch::new("fence-drop");
    let locker = quick_locker(Duration::from_millis(50));
    let guard = {
        let controller = LockController::new(locker.clone());
        controller.acquire(dir.join("t")).unwrap()
    };
    assert!(!guard.is_held());
    assert!(!lock_of(&dir.join("t")).exists());
}
