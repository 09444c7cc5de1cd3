//! Memoization: one real owner lookup per pid per sweep; failed lookups are retried and keep
//! their lock.

use std::collections::HashSet;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use sessionkit_lock_sweeper::{
    MemoLookup, OwnerLookup, ProcLookup, ProcessProbe, StaleReason, Status, Sweeper,
};

use crate::util::{FRESH, Scratch, Sleeper, openclaw};

/// The real lookup, counting its calls, failing the first probe of each pid if asked (or
/// every probe).
#[derive(Debug, Default)]
struct Flaky {
    fail_first: bool,
    fail_all: bool,
    seen: Mutex<HashSet<u32>>,
    probes: AtomicU64,
}

impl OwnerLookup for Flaky {
    fn probe(&self, pid: u32) -> io::Result<ProcessProbe> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        let first = self.seen.lock().unwrap().insert(pid);
        if self.fail_all || (self.fail_first && first) {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "flaky"));
        }
        ProcLookup.probe(pid)
    }

    fn cmdline(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        ProcLookup.cmdline(pid)
    }
}

#[test]
fn memo_caches_answers_and_counts_real_lookups() {
    let flaky = Arc::new(Flaky {
        fail_first: true,
        ..Flaky::default()
    });
    let memo = MemoLookup::new(flaky.clone());
    let me = std::process::id();
    assert!(memo.probe(me).is_err());
    assert_eq!(memo.lookups(), 1);
    let a = memo.probe(me).unwrap();
    let b = memo.probe(me).unwrap();
    assert_eq!(a, b);
    assert_eq!(memo.lookups(), 2);
    assert!(memo.cmdline(me).unwrap().is_some());
    assert!(memo.cmdline(me).unwrap().is_some());
    assert_eq!(memo.lookups(), 3);
    assert_eq!(flaky.probes.load(Ordering::SeqCst), 2);
}

#[test]
fn eighteen_hundred_locks_of_three_live_owners_cost_three_lookups() {
    let scratch = Scratch::new("memo");
    let owners: Vec<Sleeper> = (0..3).map(|_| Sleeper::spawn()).collect();
    let dirs: Vec<_> = (0..6).map(|d| scratch.dir(format!("d{d}"))).collect();
    for (d, dir) in dirs.iter().enumerate() {
        for i in 0..300 {
            let owner = &owners[(d * 300 + i) % 3];
            openclaw(
                &dir.join(format!("s{i:04}.jsonl.lock")),
                owner.pid,
                owner.start_time,
                FRESH,
            );
        }
    }
    let counting = Arc::new(Flaky::default());
    let sweeper = Sweeper::builder().lookup(counting.clone()).build().unwrap();
    let report = sweeper.sweep(&dirs).unwrap();

    assert_eq!(report.totals.scanned, 1800);
    assert_eq!(report.lookups, 3);
    assert_eq!(counting.probes.load(Ordering::SeqCst), 3);
    assert_eq!(report.totals.removed, 0);
    assert_eq!(report.totals.kept, 1800);
    assert!(
        report
            .entries
            .iter()
            .all(|e| e.status == Some(Status::Held) && e.reasons.is_empty() && !e.removed)
    );
    for dir in &dirs {
        assert_eq!(std::fs::read_dir(dir).unwrap().count(), 300);
    }
    drop(owners);
}

#[test]
fn a_failed_lookup_is_retried_for_the_next_lock_of_that_pid_and_keeps_its_lock() {
    let scratch = Scratch::new("flaky");
    let dead: Vec<(u32, u64)> = (0..3).map(|_| Sleeper::spawn().kill()).collect();
    let dirs = [scratch.dir("a"), scratch.dir("b")];
    for (d, dir) in dirs.iter().enumerate() {
        for i in 0..6 {
            let (pid, start) = dead[i % 3];
            openclaw(&dir.join(format!("{d}-{i}.jsonl.lock")), pid, start, FRESH);
        }
    }
    let flaky = Arc::new(Flaky {
        fail_first: true,
        ..Flaky::default()
    });
    let sweeper = Sweeper::builder().lookup(flaky.clone()).build().unwrap();
    let report = sweeper.sweep(&dirs).unwrap();

    // Per pid: one failed probe, then one that succeeds and is remembered.
    assert_eq!(report.lookups, 6);
    assert_eq!(flaky.probes.load(Ordering::SeqCst), 6);
    assert_eq!(report.totals.scanned, 12);
    assert_eq!(report.totals.removed, 9);
    assert_eq!(report.totals.kept, 3);
    // One lock of each pid met the failed lookup: it is kept, with no liveness and no reason.
    // Which one depends on which thread asked first (the two directories' batches may run at
    // once), so the check is per pid, not per position.
    let mut kept_pids = Vec::new();
    for entry in &report.entries {
        if entry.removed {
            assert_eq!(entry.reasons, vec![StaleReason::DeadPid], "{entry:?}");
            assert!(!entry.path.exists(), "{entry:?}");
        } else {
            assert_eq!(entry.liveness, None, "{entry:?}");
            assert_eq!(entry.status, Some(Status::Held), "{entry:?}");
            assert!(entry.reasons.is_empty(), "{entry:?}");
            assert!(entry.path.exists(), "{entry:?}");
            kept_pids.push(entry.pid.expect("an OpenClaw record names its pid"));
        }
    }
    kept_pids.sort_unstable();
    let mut dead_pids: Vec<u32> = dead.iter().map(|(pid, _)| *pid).collect();
    dead_pids.sort_unstable();
    assert_eq!(kept_pids, dead_pids, "one kept lock per pid");
}

#[test]
fn a_lookup_that_always_fails_is_asked_once_per_lock_and_removes_nothing() {
    let scratch = Scratch::new("failing");
    let (pid, start) = Sleeper::spawn().kill();
    let dir = scratch.dir("d");
    for i in 0..5 {
        openclaw(&dir.join(format!("{i}.jsonl.lock")), pid, start, FRESH);
    }
    let failing = Arc::new(Flaky {
        fail_all: true,
        ..Flaky::default()
    });
    let report = Sweeper::builder()
        .lookup(failing.clone())
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    assert_eq!(report.lookups, 5);
    assert_eq!(failing.probes.load(Ordering::SeqCst), 5);
    assert_eq!(report.totals.removed, 0);
    assert_eq!(report.totals.kept, 5);
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 5);
}

#[test]
fn each_sweep_starts_with_an_empty_memo() {
    let scratch = Scratch::new("fresh-memo");
    let owner = Sleeper::spawn();
    let dir = scratch.dir("d");
    for i in 0..5 {
        openclaw(
            &dir.join(format!("{i}.lock")),
            owner.pid,
            owner.start_time,
            FRESH,
        );
    }
    let sweeper = Sweeper::builder().build().unwrap();
    assert_eq!(sweeper.sweep(&[&dir]).unwrap().lookups, 1);
    assert_eq!(sweeper.sweep(&[&dir]).unwrap().lookups, 1);
}
