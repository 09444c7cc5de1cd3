//! Which owners count as ours, and OpenClaw's non-owner rule (`foreign-owner`): the argv items
//! of the reference checklist, the memo's counts with command lines, and real processes.

use std::collections::HashMap;
use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use sessionkit_lock_sweeper::{
    Liveness, OwnerLookup, OwnerRule, ProcessProbe, StaleReason, Status, SweepReport, Sweeper,
};
use sessionkit_write_lock::Locker;

use crate::util::{FRESH, HOUR, Scratch, Sleeper, openclaw};

/// The start time every fake owner has, and every planted record names.
const START: u64 = 4242;

/// A lookup where every pid is alive with [`START`], and command lines come from a table
/// (`Err` for pids marked as failing).
#[derive(Debug, Default)]
struct Argv {
    lines: HashMap<u32, Option<Vec<String>>>,
    failing: Vec<u32>,
    probes: AtomicU64,
    cmdlines: AtomicU64,
}

impl Argv {
    fn with(mut self, pid: u32, line: Option<&str>) -> Argv {
        self.lines
            .insert(pid, line.map(|l| l.split(' ').map(str::to_owned).collect()));
        self
    }
}

impl OwnerLookup for Argv {
    fn probe(&self, _pid: u32) -> io::Result<ProcessProbe> {
        self.probes.fetch_add(1, Ordering::SeqCst);
        Ok(ProcessProbe::new(Liveness::Alive, Some(START)))
    }

    fn cmdline(&self, pid: u32) -> io::Result<Option<Vec<String>>> {
        self.cmdlines.fetch_add(1, Ordering::SeqCst);
        if self.failing.contains(&pid) {
            return Err(io::Error::new(io::ErrorKind::PermissionDenied, "no access"));
        }
        Ok(self.lines.get(&pid).cloned().flatten())
    }
}

fn sweep(dir: &std::path::Path, lookup: Arc<Argv>, foreign: bool) -> SweepReport {
    let mut builder = Sweeper::builder();
    builder
        .lookup(lookup)
        .ours(OwnerRule::openclaw())
        .foreign_owners_stale(foreign);
    builder.build().unwrap().sweep(&[dir]).unwrap()
}

fn entry<'a>(report: &'a SweepReport, name: &str) -> &'a sessionkit_lock_sweeper::SweepEntry {
    report
        .entries
        .iter()
        .find(|e| e.path.file_name().unwrap() == name)
        .unwrap_or_else(|| panic!("no entry {name} in {report:?}"))
}

#[test]
fn live_foreign_argv_is_removed_whether_old_or_fresh() {
    let scratch = Scratch::new("foreign");
    let dir = scratch.dir("d");
    let lookup = Arc::new(
        Argv::default()
            .with(101, Some("python worker.py"))
            .with(102, Some("node /srv/app/dist/index.js")),
    );
    openclaw(&dir.join("a-python-old.jsonl.lock"), 101, START, HOUR);
    openclaw(&dir.join("b-python-fresh.jsonl.lock"), 101, START, FRESH);
    openclaw(&dir.join("c-node-no-token.jsonl.lock"), 102, START, FRESH);

    let report = sweep(&dir, lookup, true);
    let old = entry(&report, "a-python-old.jsonl.lock");
    assert!(old.removed, "{old:?}");
    assert_eq!(old.status, Some(Status::Stale));
    assert_eq!(
        old.reasons,
        vec![StaleReason::TooOld, StaleReason::ForeignOwner]
    );
    for name in ["b-python-fresh.jsonl.lock", "c-node-no-token.jsonl.lock"] {
        let fresh = entry(&report, name);
        assert!(fresh.removed, "{fresh:?}");
        assert_eq!(fresh.reasons, vec![StaleReason::ForeignOwner], "{name}");
        assert!(!dir.join(name).exists());
    }
    assert_eq!(report.totals.removed, 3);
}

#[test]
fn openclaw_argv_null_argv_and_blank_argv_are_kept() {
    let scratch = Scratch::new("kept");
    let dir = scratch.dir("d");
    let lookup = Arc::new(
        Argv::default()
            .with(201, Some("node /usr/lib/openclaw/openclaw.mjs agent"))
            .with(202, Some("node dist/index.js gateway run"))
            .with(203, None)
            .with(204, Some("  ")),
    );
    for pid in 201..=204 {
        openclaw(&dir.join(format!("{pid}.jsonl.lock")), pid, START, HOUR);
    }
    let report = sweep(&dir, lookup, true);
    for pid in 201..=204 {
        let kept = entry(&report, &format!("{pid}.jsonl.lock"));
        assert!(!kept.removed, "{kept:?}");
        assert_eq!(kept.status, Some(Status::Held), "{kept:?}");
        assert_eq!(kept.reasons, vec![StaleReason::TooOld], "{kept:?}");
    }
    assert_eq!(report.totals.removed, 0);
}

#[test]
fn the_rule_is_off_by_default_and_reads_no_command_line() {
    let scratch = Scratch::new("off");
    let dir = scratch.dir("d");
    let lookup = Arc::new(Argv::default().with(301, Some("python worker.py")));
    openclaw(&dir.join("w.jsonl.lock"), 301, START, FRESH);

    let report = Sweeper::builder()
        .lookup(lookup.clone())
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    assert_eq!(report.entries[0].status, Some(Status::Held));
    assert!(!report.entries[0].removed);
    assert_eq!(lookup.cmdlines.load(Ordering::SeqCst), 0);
    assert_eq!(report.lookups, 1);

    // An `ours` rule alone still reads nothing: the rule only matters with the flag on.
    let report = sweep(&dir, lookup.clone(), false);
    assert!(!report.entries[0].removed);
    assert_eq!(lookup.cmdlines.load(Ordering::SeqCst), 0);
}

#[test]
fn five_locks_of_one_pid_read_its_command_line_once() {
    let scratch = Scratch::new("memo-argv");
    let dir = scratch.dir("d");
    let lookup = Arc::new(Argv::default().with(401, Some("python worker.py")));
    for i in 0..5 {
        openclaw(&dir.join(format!("{i}.jsonl.lock")), 401, START, FRESH);
    }
    let report = sweep(&dir, lookup.clone(), true);
    assert_eq!(report.totals.removed, 5);
    assert_eq!(lookup.probes.load(Ordering::SeqCst), 1);
    assert_eq!(lookup.cmdlines.load(Ordering::SeqCst), 1);
    // One probe and one command line: both are real lookups.
    assert_eq!(report.lookups, 2);
}

#[test]
fn a_failing_command_line_reader_is_asked_per_lock_and_removes_nothing() {
    let scratch = Scratch::new("argv-fails");
    let dir = scratch.dir("d");
    let lookup = Arc::new(Argv {
        failing: vec![501],
        ..Argv::default()
    });
    for i in 0..5 {
        openclaw(&dir.join(format!("{i}.jsonl.lock")), 501, START, FRESH);
    }
    let report = sweep(&dir, lookup.clone(), true);
    assert_eq!(report.totals.removed, 0);
    assert_eq!(report.totals.kept, 5);
    assert!(
        report
            .entries
            .iter()
            .all(|e| e.status == Some(Status::Held) && e.reasons.is_empty())
    );
    assert_eq!(lookup.cmdlines.load(Ordering::SeqCst), 5);
    assert_eq!(report.lookups, 1 + 5);
}

#[test]
fn foreign_rule_without_ours_is_a_config_error() {
    let err = Sweeper::builder()
        .foreign_owners_stale(true)
        .build()
        .unwrap_err();
    assert!(err.to_string().contains("foreign_owners_stale"), "{err}");
}

#[test]
fn real_processes_are_judged_by_their_real_command_lines() {
    let scratch = Scratch::new("real-argv");
    let dir = scratch.dir("d");
    let sleeper = Sleeper::spawn();
    openclaw(
        &dir.join("s.jsonl.lock"),
        sleeper.pid,
        sleeper.start_time,
        FRESH,
    );
    let sweep_with = |rule: OwnerRule| {
        Sweeper::builder()
            .ours(rule)
            .foreign_owners_stale(true)
            .build()
            .unwrap()
            .sweep(&[&dir])
            .unwrap()
    };
    // `sleep 600` is ours when `sleep` is one of our programs.
    let report = sweep_with(OwnerRule::programs(["sleep"]));
    assert_eq!(report.entries[0].status, Some(Status::Held));
    assert!(dir.join("s.jsonl.lock").exists());
    // And foreign when only `gateway` is.
    let report = sweep_with(OwnerRule::programs(["gateway"]));
    assert_eq!(
        report.entries[0].reasons,
        vec![StaleReason::ForeignOwner],
        "{report:?} {:?}",
        sessionkit_lock_sweeper::ProcLookup.cmdline(sleeper.pid)
    );
    assert!(report.entries[0].removed);
    assert!(!dir.join("s.jsonl.lock").exists());
}

#[test]
fn an_owner_holding_the_os_lock_is_ours_whatever_its_command_line() {
    let scratch = Scratch::new("oslock-ours");
    let dir = scratch.dir("d");
    let guard = Locker::new().acquire(dir.join("t.jsonl")).unwrap();
    let report = Sweeper::builder()
        .ours(OwnerRule::programs(["no-such-program"]))
        .foreign_owners_stale(true)
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    assert_eq!(report.entries.len(), 1, "{report:?}");
    assert_eq!(report.entries[0].status, Some(Status::Held));
    assert!(report.entries[0].reasons.is_empty());
    assert!(!report.entries[0].removed);
    assert!(dir.join("t.jsonl.lock").exists());
    guard.release().unwrap();
}
