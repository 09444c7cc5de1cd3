//! Acquire, release, try, timeouts, symlinks, reentrancy, generations and FIFO hand-off.

use std::fs;
use std::os::unix::fs::symlink;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use sessionkit_atomic_fs::directory_turns_taken;
use sessionkit_write_lock::{Locker, Payload, Status, parse_record};

use crate::util::{Scratch, lock_of, quick_locker};

#[test]
fn taking_and_releasing_a_lock_changes_its_directory_in_three_turns() {
    // The lock file's creation, the generation counter's open with `O_CREAT` and the lock
    // file's removal each wait for this process's turn in the directory, asleep, rather than
    // for the directory's lock in the kernel, spinning.
    let dir = Scratch::new("turns");
    let target = dir.join("t.jsonl");
    let locker = quick_locker(Duration::from_secs(5));
    let before = directory_turns_taken();
    let guard = locker.acquire(&target).unwrap();
    assert_eq!(directory_turns_taken() - before, 2);
    guard.release().unwrap();
    assert_eq!(directory_turns_taken() - before, 3);
    // A stale lock in the way costs four: the creation that fails, the stale file's removal,
    // then the creation and the counter.
    fs::write(lock_of(&target), b"").unwrap();
    crate::util::set_modified_ago(&lock_of(&target), Duration::from_secs(3600));
    let guard = locker.acquire(&target).unwrap();
    assert_eq!(directory_turns_taken() - before, 7);
    drop(guard);
}

#[test]
fn acquire_writes_a_record_and_release_removes_it() {
    let dir = Scratch::new("basic");
    let target = dir.join("0b7e.jsonl");
    let locker = Locker::with_config(
        sessionkit_write_lock::LockConfig::builder()
            .label("run-42")
            .watchdog(false)
            .build()
            .unwrap(),
    );
    let guard = locker.acquire(&target).unwrap();
    let Payload::Record(record) = parse_record(&fs::read(lock_of(&target)).unwrap()) else {
        panic!("no record")
    };
    assert_eq!(record.pid, Some(std::process::id()));
    assert_eq!(record.format, Some(sessionkit_write_lock::RECORD_FORMAT));
    assert!(record.os_lock && record.promises_os_lock());
    assert_eq!(record.label.as_deref(), Some("run-42"));
    assert_eq!(record.max_hold_ms, Some(300_000));
    assert!(record.token.as_ref().is_some_and(|t| t.len() == 32));
    assert!(record.starttime.is_some() && record.created_at_ms.is_some());
    assert_eq!(&record, guard.record());
    assert_eq!(guard.lock_path(), lock_of(&target));
    guard.release().unwrap();
    assert!(!lock_of(&target).exists());
    assert_eq!(locker.inspect(&target).unwrap().status, Status::Free);
}

#[test]
fn no_reentry_by_default_and_acquire_works_after_release() {
    // OpenClaw: the second acquire in the same process times out. Ours too, and the timeout
    // names this process as the holder.
    let dir = Scratch::new("noreentry");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_millis(150));
    let guard = locker.acquire(&target).unwrap();
    assert!(locker.try_acquire(&target).unwrap().is_none());
    let err = locker.acquire(&target).unwrap_err();
    assert!(err.is_timeout() && err.is_contended(), "{err}");
    let holder = err.holder().unwrap();
    assert_eq!(
        holder.record.as_ref().unwrap().pid,
        Some(std::process::id())
    );
    assert!(
        err.to_string()
            .contains(&format!("pid {}", std::process::id())),
        "{err}"
    );
    drop(guard);
    locker.acquire(&target).unwrap();
}

#[test]
fn a_symlink_and_its_real_path_share_one_lock() {
    let dir = Scratch::new("symlink");
    let real = dir.join("real.jsonl");
    fs::write(&real, b"").unwrap();
    let link = dir.join("link.jsonl");
    symlink(&real, &link).unwrap();
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire(&link).unwrap();
    assert_eq!(guard.lock_path(), lock_of(&real));
    assert!(locker.try_acquire(&real).unwrap().is_none());
    assert!(
        locker.acquire(&link).unwrap_err().is_timeout(),
        "no reentry via the symlink either"
    );
    drop(guard);
    assert!(locker.try_acquire(&real).unwrap().is_some());
}

/// A link whose target does not exist yet names where the target will be: locking the link
/// and locking the target's path must be one lock before the file exists as after.
#[test]
fn a_dangling_symlink_and_its_future_target_share_one_lock() {
    let dir = Scratch::new("dangling");
    fs::create_dir(dir.join("real")).unwrap();
    let real = dir.join("real/target.jsonl");
    // A relative link to a relative link, both dangling.
    let inner = dir.join("real/inner.jsonl");
    symlink("target.jsonl", &inner).unwrap();
    let link = dir.join("link.jsonl");
    symlink("real/inner.jsonl", &link).unwrap();
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire(&link).unwrap();
    assert_eq!(guard.lock_path(), lock_of(&real));
    assert!(locker.try_acquire(&real).unwrap().is_none());
    drop(guard);
    fs::write(&real, b"").unwrap();
    assert_eq!(locker.acquire(&link).unwrap().lock_path(), lock_of(&real));
}

#[test]
fn reentrancy_is_opt_in_per_holder_and_the_file_goes_at_the_last_release() {
    let dir = Scratch::new("reentrant");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_millis(100));
    let first = locker.acquire_as(&target, "run-1").unwrap();
    let second = locker.acquire_as(&target, "run-1").unwrap();
    assert_eq!(first.generation(), second.generation(), "the same lock");
    assert!(
        locker
            .acquire_as(&target, "run-2")
            .unwrap_err()
            .is_timeout()
    );
    assert!(
        locker.try_acquire(&target).unwrap().is_none(),
        "plain acquires are not the holder"
    );
    first.release().unwrap();
    assert!(lock_of(&target).exists(), "still held by the second guard");
    second.check_fence().unwrap();
    second.release().unwrap();
    assert!(!lock_of(&target).exists());
}

#[test]
fn release_is_idempotent_and_never_removes_a_newer_lock() {
    let dir = Scratch::new("idempotent");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_millis(100));
    let old = locker.acquire(&target).unwrap();
    // Our lock file is removed behind our back and another process's appears in its place.
    fs::remove_file(lock_of(&target)).unwrap();
    fs::write(lock_of(&target), b"{\"pid\": 1}").unwrap();
    assert!(old.check_fence().unwrap_err().is_fenced());
    old.release().unwrap();
    assert_eq!(
        fs::read(lock_of(&target)).unwrap(),
        b"{\"pid\": 1}",
        "the newer lock file survives"
    );
    // Releasing a guard twice (explicitly, then on drop) removes nothing else either.
    fs::remove_file(lock_of(&target)).unwrap();
    let guard = locker.acquire(&target).unwrap();
    let generation = guard.generation();
    guard.release().unwrap();
    let next = locker.acquire(&target).unwrap();
    assert!(next.generation() > generation);
}

#[test]
fn generations_strictly_increase() {
    let dir = Scratch::new("generation");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_millis(100));
    let mut last = 0;
    for _ in 0..20 {
        let guard = locker.acquire(&target).unwrap();
        assert!(
            guard.generation() > last,
            "{} after {last}",
            guard.generation()
        );
        last = guard.generation();
    }
    // A stale record with a higher generation lifts the floor.
    fs::write(lock_of(&target), format!("{{\"pid\": {}, \"createdAt\": \"2020-01-01T00:00:00.000Z\", \"sessionkit\": 1, \"generation\": 1000}}", crate::util::dead_pid())).unwrap();
    let guard = locker.acquire(&target).unwrap();
    assert_eq!(guard.generation(), 1001);
}

#[test]
fn in_process_waiters_are_served_in_fifo_order() {
    let dir = Scratch::new("fifo");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_secs(30));
    let order = Arc::new(Mutex::new(Vec::new()));
    let guard = locker.acquire(&target).unwrap();
    let mut threads = Vec::new();
    for i in 0..6 {
        let (l, t, o) = (locker.clone(), target.clone(), order.clone());
        threads.push(std::thread::spawn(move || {
            let g = l.acquire(&t).unwrap();
            o.lock().unwrap().push(i);
            drop(g);
        }));
        // Start the next waiter only once this one is queued: the order is then known.
        while locker.inspect(&target).unwrap().waiters_here < i + 1 {
            std::thread::yield_now();
        }
    }
    drop(guard);
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(*order.lock().unwrap(), [0, 1, 2, 3, 4, 5]);
    assert_eq!(locker.inspect(&target).unwrap().waiters_here, 0);
}

#[test]
fn a_timed_out_waiter_leaves_the_queue() {
    let dir = Scratch::new("leave");
    let target = dir.join("t");
    let locker = quick_locker(Duration::from_millis(30));
    let guard = locker.acquire(&target).unwrap();
    for _ in 0..3 {
        assert!(locker.acquire(&target).unwrap_err().is_timeout());
    }
    assert_eq!(locker.inspect(&target).unwrap().waiters_here, 0);
    drop(guard);
    locker.try_acquire(&target).unwrap().unwrap();
}

#[test]
fn a_missing_directory_is_an_io_error_naming_it() {
    let dir = Scratch::new("nodir");
    let err = Locker::new().acquire(dir.join("no/such/t")).unwrap_err();
    assert!(err.to_string().contains("no/such"), "{err}");
    assert!(err.io_error().is_some());
}
