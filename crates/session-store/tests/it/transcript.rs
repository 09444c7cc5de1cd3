//! Transcripts: fenced appends with offsets, torn tails cut on open, suspend and resume with
//! takeover detection, the lock held against other holders, bad session ids.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use sessionkit_session_store::Store;
use sessionkit_write_lock::{LockConfig, Locker};

use crate::util::Scratch;

fn quick_locker() -> Locker {
    Locker::with_config(
        LockConfig::builder()
            .acquire_timeout(Duration::from_millis(50))
            .build()
            .unwrap(),
    )
}

#[test]
fn appends_return_offsets_and_the_file_holds_exactly_them() {
    let dir = Scratch::new("t-append");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    let locker = Locker::new();
    let mut t = store.open_transcript(&locker, "s1").unwrap();
    assert_eq!(t.path(), dir.join("s1.jsonl"));
    assert_eq!(t.end(), None);
    let a = t.append(br#"{"type":"session"}"#).unwrap();
    let b = t
        .append_json(&serde_json::json!({"type": "message", "n": 1}))
        .unwrap();
    assert_eq!((a.offset, a.end()), (0, 19));
    assert_eq!(b.offset, 19);
    assert_eq!(t.end(), Some(b.end()));
    t.release().unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("s1.jsonl")).unwrap(),
        "{\"type\":\"session\"}\n{\"n\":1,\"type\":\"message\"}\n"
    );
}

#[test]
fn a_torn_tail_is_cut_when_the_transcript_is_opened() {
    let dir = Scratch::new("t-torn");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    fs::write(dir.join("s.jsonl"), b"{\"a\":1}\n{\"b\":").unwrap();
    let locker = Locker::new();
    let mut t = store.open_transcript(&locker, "s").unwrap();
    assert_eq!(t.repaired_bytes(), Some(5));
    let next = t.append(b"{\"c\":3}").unwrap();
    assert_eq!(next.offset, 8);
    t.release().unwrap();
    assert_eq!(
        fs::read_to_string(dir.join("s.jsonl")).unwrap(),
        "{\"a\":1}\n{\"c\":3}\n"
    );
}

#[test]
fn a_second_holder_waits_and_times_out() {
    let dir = Scratch::new("t-held");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    let first = Locker::new();
    let t = store.open_transcript(&first, "s").unwrap();
    let err = store.open_transcript(&quick_locker(), "s").unwrap_err();
    assert!(err.lock_error().is_some_and(|e| e.is_timeout()), "{err}");
    assert!(err.to_string().contains("s.jsonl"), "{err}");
    t.release().unwrap();
    store
        .open_transcript(&quick_locker(), "s")
        .unwrap()
        .release()
        .unwrap();
}

#[test]
fn resume_accepts_own_appends_and_reports_a_foreign_one() {
    let dir = Scratch::new("t-resume");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    let locker = Locker::new();
    let mut t = store.open_transcript(&locker, "s").unwrap();
    t.append(b"{\"n\":1}").unwrap();
    let suspended = t.suspend().unwrap();
    let mut t = suspended.resume().unwrap();
    t.append(b"{\"n\":2}").unwrap();

    let suspended = t.suspend().unwrap();
    // Someone writes the transcript without the lock while it is suspended.
    OpenOptions::new()
        .append(true)
        .open(dir.join("s.jsonl"))
        .unwrap()
        .write_all(b"{\"intruder\":true}\n")
        .unwrap();
    let err = suspended.resume().unwrap_err();
    assert!(err.lock_error().is_some_and(|e| e.is_takeover()), "{err}");
}

#[test]
fn bad_session_ids_are_refused_before_any_file_is_touched() {
    let dir = Scratch::new("t-ids");
    let store = Store::open(dir.join("sessions.json")).unwrap();
    let locker = Locker::new();
    let long = "x".repeat(201);
    for bad in ["", ".", "..", "a/b", "a\\b", "a\0b", long.as_str()] {
        let err = store.open_transcript(&locker, bad).unwrap_err();
        assert!(err.is_bad_input(), "{bad:?}: {err}");
    }
    let before = dir.names();
    assert!(before.iter().all(|n| !n.ends_with(".jsonl")), "{before:?}");
}
