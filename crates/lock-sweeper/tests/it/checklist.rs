//! The sweeper items of OpenClaw's acceptance checklist (reference notes, section 6), adapted
//! where our semantics differ on purpose.
//!
//! The non-OpenClaw-owner rule and its argv items are in `owners.rs` (our rule is off by
//! default and its owners are configurable); `orphan-self-pid` is pinned by write-lock's own
//! tests.

use std::fs;
use std::time::Duration;

use sessionkit_lock_sweeper::{StaleReason, Status, Sweeper};

use crate::util::{FRESH, HOUR, Scratch, Sleeper, names, openclaw, set_modified_ago};

#[test]
fn three_locks_dead_old_fresh_live_old_live() {
    let scratch = Scratch::new("three");
    let dir = scratch.dir("d");
    let (dead, dead_start) = Sleeper::spawn().kill();
    let live = Sleeper::spawn();
    // Created out of name order, to see the output sorted.
    openclaw(
        &dir.join("c-old-live.jsonl.lock"),
        live.pid,
        live.start_time,
        HOUR,
    );
    openclaw(&dir.join("a-dead-old.jsonl.lock"), dead, dead_start, HOUR);
    openclaw(
        &dir.join("b-fresh-live.jsonl.lock"),
        live.pid,
        live.start_time,
        FRESH,
    );

    let report = Sweeper::builder().build().unwrap().sweep(&[&dir]).unwrap();
    assert_eq!(
        names(&report),
        [
            "a-dead-old.jsonl.lock",
            "b-fresh-live.jsonl.lock",
            "c-old-live.jsonl.lock"
        ]
    );
    let [dead_old, fresh_live, old_live] = &report.entries[..] else {
        panic!("three entries expected: {report:?}");
    };
    assert!(dead_old.removed);
    assert_eq!(dead_old.status, Some(Status::Stale));
    assert_eq!(
        dead_old.reasons,
        vec![StaleReason::DeadPid, StaleReason::TooOld]
    );
    assert!(!fresh_live.removed);
    assert_eq!(fresh_live.status, Some(Status::Held));
    assert!(fresh_live.reasons.is_empty());
    // Too old is report-only: the live owner keeps its lock.
    assert!(!old_live.removed);
    assert_eq!(old_live.status, Some(Status::Held));
    assert_eq!(old_live.reasons, vec![StaleReason::TooOld]);
    assert!(dir.join("c-old-live.jsonl.lock").exists());
    assert_eq!(report.lookups, 2);
}

#[test]
fn the_stale_age_setting_is_honoured_and_hold_exceeded_never_appears() {
    let scratch = Scratch::new("stale-age");
    let dir = scratch.dir("d");
    let live = Sleeper::spawn();
    let lock = dir.join("a.jsonl.lock");
    fs::write(
        &lock,
        format!(
            "{{\"pid\": {}, \"starttime\": {}, \"createdAt\": \"{}\", \"maxHoldMs\": 1000}}",
            live.pid,
            live.start_time,
            crate::util::iso_ago(Duration::from_secs(60))
        ),
    )
    .unwrap();
    let sweep = |stale: Duration| {
        Sweeper::builder()
            .stale_after(stale)
            .build()
            .unwrap()
            .sweep(&[&dir])
            .unwrap()
    };
    let short = sweep(Duration::from_secs(10));
    assert_eq!(short.entries[0].reasons, vec![StaleReason::TooOld]);
    assert!(!short.entries[0].removed);
    let long = sweep(Duration::from_secs(3600));
    assert!(long.entries[0].reasons.is_empty());
    assert!(lock.exists());
}

#[test]
fn a_fresh_empty_object_reports_both_malformed_reasons_and_is_kept() {
    let scratch = Scratch::new("fresh-empty");
    let dir = scratch.dir("d");
    fs::write(dir.join("e.jsonl.lock"), "{}").unwrap();
    set_modified_ago(&dir.join("e.jsonl.lock"), Duration::from_secs(10));
    let report = Sweeper::builder().build().unwrap().sweep(&[&dir]).unwrap();
    assert_eq!(
        report.entries[0].reasons,
        vec![StaleReason::MissingPid, StaleReason::InvalidCreatedAt]
    );
    assert!(!report.entries[0].removed);
    assert!(dir.join("e.jsonl.lock").exists());
}

#[test]
fn a_two_minute_old_empty_object_is_removed_when_the_stale_age_is_ten_seconds() {
    let scratch = Scratch::new("old-empty");
    let dir = scratch.dir("d");
    fs::write(dir.join("e.jsonl.lock"), "{}").unwrap();
    set_modified_ago(&dir.join("e.jsonl.lock"), Duration::from_secs(120));
    let report = Sweeper::builder()
        .stale_after(Duration::from_secs(10))
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    assert!(report.entries[0].removed);
    assert!(!dir.join("e.jsonl.lock").exists());
}

#[test]
fn memoisation_five_locks_of_one_pid_cost_one_lookup() {
    let scratch = Scratch::new("five");
    let dir = scratch.dir("d");
    let live = Sleeper::spawn();
    for i in 0..5 {
        openclaw(
            &dir.join(format!("{i}.jsonl.lock")),
            live.pid,
            live.start_time,
            FRESH,
        );
    }
    let report = Sweeper::builder().build().unwrap().sweep(&[&dir]).unwrap();
    assert_eq!(report.lookups, 1);
    assert_eq!(report.totals.kept, 5);
}
