//! The sync sweep shares its batches among threads, and its report does not show how.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use sessionkit_lock_sweeper::Sweeper;

use crate::util::{HOUR, Scratch, Sleeper, mixed_dirs, names, openclaw, outline};

#[test]
fn the_report_is_the_same_on_one_thread_and_on_many() {
    let scratch = Scratch::new("threads");
    let live = Sleeper::spawn();
    let dead = Sleeper::spawn().kill();
    let dirs = mixed_dirs(&scratch, &live, dead, 4, 40);
    let mut all = dirs.clone();
    all.insert(1, scratch.join("missing"));
    let sweeper = |dry_run: bool, threads: usize| {
        Sweeper::builder()
            .dry_run(dry_run)
            .concurrency(threads)
            .batch_size(3)
            .build()
            .unwrap()
    };

    let one = sweeper(true, 1).sweep(&all).unwrap();
    let many = sweeper(true, 6).sweep(&all).unwrap();
    assert_eq!(outline(&one), outline(&many));
    assert_eq!(one.totals, many.totals);
    assert_eq!((one.lookups, many.lookups), (2, 2));
    // Every directory in the order given, each sorted by name.
    let first: Vec<String> = (0..40).map(|i| format!("{i:03}.jsonl.lock")).collect();
    assert_eq!(names(&one)[..40], first[..]);
    assert_eq!(one.totals.scanned, 160);
    let stale = one.totals.stale;
    assert_eq!(stale, 54);

    let swept = sweeper(false, 6).sweep(&all).unwrap();
    assert_eq!(swept.totals.removed, stale);
    assert_eq!(swept.lookups, 2);
    let left: usize = dirs
        .iter()
        .map(|d| std::fs::read_dir(d).unwrap().count())
        .sum();
    assert_eq!(left as u64, 160 - stale);
}

/// Who is inside the removal hook, and whether two ever were at once.
#[derive(Default)]
struct Meeting {
    inside: u32,
    met: bool,
}

#[test]
fn batches_are_judged_on_several_threads_at_once() {
    let scratch = Scratch::new("threads-meet");
    let (dead, dead_start) = Sleeper::spawn().kill();
    let dir = scratch.dir("d");
    for name in ["a.jsonl.lock", "b.jsonl.lock"] {
        openclaw(&dir.join(name), dead, dead_start, HOUR);
    }
    // A removal inside the hook waits for another to be inside it too; on a single thread none
    // ever is, and each wait ends at the deadline instead.
    let state = Arc::new((Mutex::new(Meeting::default()), Condvar::new()));
    let mut sweeper = Sweeper::builder()
        .concurrency(2)
        .batch_size(1)
        .build()
        .unwrap();
    let hook_state = state.clone();
    sweeper.removal_hook(move |_| {
        let (meeting, changed) = &*hook_state;
        let mut meeting = meeting.lock().unwrap();
        meeting.inside += 1;
        if meeting.inside >= 2 {
            meeting.met = true;
        }
        changed.notify_all();
        let (mut meeting, _) = changed
            .wait_timeout_while(meeting, Duration::from_secs(30), |m| !m.met)
            .unwrap();
        meeting.inside -= 1;
    });
    let report = sweeper.sweep(&[&dir]).unwrap();
    assert_eq!(report.totals.removed, 2);
    assert!(
        state.0.lock().unwrap().met,
        "the two batches never ran at once"
    );
}
