//! Suspend and resume: changes are accepted only if they came through this process's guards.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use crate::util::{Scratch, lock_of, quick_locker};

fn external_append(path: &std::path::Path, bytes: &[u8]) {
    OpenOptions::new()
        .append(true)
        .open(path)
        .unwrap()
        .write_all(bytes)
        .unwrap();
}

#[test]
fn unchanged_target_resumes_and_the_lock_is_free_while_suspended() {
    let dir = Scratch::new("suspend-same");
    let target = dir.join("s.jsonl");
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire(&target).unwrap();
    guard.append(b"{\"n\":1}").unwrap();
    let suspended = guard.suspend().unwrap();
    assert!(!lock_of(&target).exists(), "released while suspended");
    let other = locker.try_acquire(&target).unwrap().unwrap();
    drop(other);
    let guard = suspended.resume().unwrap();
    guard.append(b"{\"n\":2}").unwrap();
}

#[test]
fn an_external_append_while_suspended_is_a_takeover() {
    let dir = Scratch::new("suspend-external");
    let target = dir.join("s.jsonl");
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire(&target).unwrap();
    guard.append(b"{\"n\":1}").unwrap();
    let suspended = guard.suspend().unwrap();
    external_append(&target, b"{\"from\":\"elsewhere\"}\n");
    let err = suspended.resume().unwrap_err();
    assert!(err.is_takeover(), "{err}");
    let msg = err.to_string();
    assert!(msg.contains("expected 8 bytes, found 29 bytes"), "{msg}");
    assert!(
        !lock_of(&target).exists(),
        "a failed resume gives the lock back"
    );
}

#[test]
fn our_own_published_appends_are_not_a_takeover() {
    let dir = Scratch::new("suspend-own");
    let target = dir.join("s.jsonl");
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire(&target).unwrap();
    guard.append(b"{\"turn\":0}").unwrap();
    let suspended = guard.suspend().unwrap();
    // Another part of this process writes through its own guards: three published turns.
    for turn in 1..=3 {
        let g = locker.acquire(&target).unwrap();
        g.append(format!("{{\"turn\":{turn}}}").as_bytes()).unwrap();
    }
    let guard = suspended.resume().unwrap();
    guard.append(b"{\"turn\":4}").unwrap();
}

#[test]
fn external_then_published_is_still_a_takeover() {
    let dir = Scratch::new("suspend-mixed");
    let target = dir.join("s.jsonl");
    let locker = quick_locker(Duration::from_millis(50));
    let guard = locker.acquire(&target).unwrap();
    guard.append(b"{\"turn\":0}").unwrap();
    let suspended = guard.suspend().unwrap();
    external_append(&target, b"{\"x\":1}\n");
    locker
        .acquire(&target)
        .unwrap()
        .append(b"{\"turn\":1}")
        .unwrap();
    assert!(suspended.resume().unwrap_err().is_takeover());
}

#[test]
fn a_replaced_or_removed_target_is_a_takeover_naming_it() {
    let dir = Scratch::new("suspend-replaced");
    let target = dir.join("sessions.json");
    fs::write(&target, b"{}").unwrap();
    let locker = quick_locker(Duration::from_millis(50));
    let suspended = locker.acquire(&target).unwrap().suspend().unwrap();
    sessionkit_atomic_fs::write(&target, b"{}").unwrap();
    let err = suspended.resume().unwrap_err();
    assert!(err.to_string().contains("replaced"), "{err}");

    let suspended = locker.acquire(&target).unwrap().suspend().unwrap();
    fs::remove_file(&target).unwrap();
    let err = suspended.resume().unwrap_err();
    assert!(
        err.to_string().contains("removed") && err.to_string().contains("found no file"),
        "{err}"
    );
}

#[test]
fn a_replace_through_a_guard_is_accepted() {
    let dir = Scratch::new("suspend-guarded-replace");
    let target = dir.join("sessions.json");
    fs::write(&target, b"{}").unwrap();
    let locker = quick_locker(Duration::from_millis(50));
    let suspended = locker.acquire(&target).unwrap().suspend().unwrap();
    locker
        .acquire(&target)
        .unwrap()
        .write(b"{\"a\":1}")
        .unwrap();
    suspended.resume().unwrap();
}
