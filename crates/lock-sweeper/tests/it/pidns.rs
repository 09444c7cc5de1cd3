//! Recycled pids for real: in a new PID namespace, a dead owner's pid is handed to a new process
//! (through `ns_last_pid`), and a sweep must remove the dead owner's OpenClaw-format locks as
//! `recycled-pid` while keeping a lock whose record names the new process (same pid, same start
//! time) and a lock of another live process, with one owner lookup per distinct pid.
//!
//! Needs root for `unshare --pid`; without it (or with `SESSIONKIT_TEST_NO_ROOT` set) the test
//! prints one `SKIP:` line and passes.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use sessionkit_lock_sweeper::{Liveness, StaleReason, Status, Sweeper};
use sessionkit_test_support::{NO_ROOT_VAR, is_root};

use crate::util::{FRESH, Scratch, Sleeper, names, openclaw};

/// Set (to the scratch directory) in the re-executed test binary inside the namespace.
const CHILD: &str = "SK_SW_TEST_PIDNS";
/// The prefix of every finding the child prints for the parent.
const SAYS: &str = "PIDNS-CHILD";
const TEST: &str = "pidns::pid_namespace_recycled_pids_are_swept_and_live_owners_kept";

#[test]
fn pid_namespace_recycled_pids_are_swept_and_live_owners_kept() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child_side(Path::new(&dir));
        return;
    }
    if !is_root() {
        let why = if std::env::var_os(NO_ROOT_VAR).is_some() {
            "SESSIONKIT_TEST_NO_ROOT is set"
        } else {
            "not running as root"
        };
        println!("SKIP: lock-sweeper pid reuse: unshare --pid needs root ({why})");
        return;
    }
    let scratch = Scratch::new("pidns");
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, scratch.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() && stderr.contains("unshare failed") {
        println!("SKIP: lock-sweeper pid reuse: this machine refuses new PID namespaces");
        return;
    }
    assert!(out.status.success(), "{stdout}{stderr}");
    // libtest prints `test <name> ... ` without a newline before the test's own output, so a
    // finding may start mid-line.
    let said: Vec<&str> = stdout
        .lines()
        .filter_map(|l| l.split_once(SAYS))
        .map(|(_, finding)| finding.trim())
        .collect();
    for finding in &said {
        println!("{SAYS} {finding}");
    }
    let all = format!("{stdout}{stderr}");
    assert!(
        said.iter().any(|l| l.starts_with("reused pid ")),
        "the child never reused a pid:\n{all}"
    );
    for expected in [
        "entry d1/a.jsonl.lock owner=recycled liveness=Some(Alive) status=Some(Stale) reasons=[RecycledPid] removed=true",
        "entry d1/reuser.jsonl.lock owner=reuser liveness=Some(Alive) status=Some(Held) reasons=[] removed=false",
        "entry d2/b.jsonl.lock owner=recycled liveness=Some(Alive) status=Some(Stale) reasons=[RecycledPid] removed=true",
        "entry d2/other.jsonl.lock owner=other liveness=Some(Alive) status=Some(Held) reasons=[] removed=false",
        "entry d2/sessions.json.lock owner=recycled liveness=Some(Alive) status=Some(Stale) reasons=[RecycledPid] removed=true",
        "lookups=2 scanned=5 stale=3 removed=3 kept=2 errors=0",
        "done",
    ] {
        assert!(
            said.contains(&expected),
            "missing child finding {expected:?}:\n{all}"
        );
    }
    assert_eq!(said.len(), 8, "unexpected child findings:\n{all}");
    // What the child's sweep did is on the shared disk too.
    for (name, kept) in [
        ("d1/a.jsonl.lock", false),
        ("d1/reuser.jsonl.lock", true),
        ("d2/b.jsonl.lock", false),
        ("d2/other.jsonl.lock", true),
        ("d2/sessions.json.lock", false),
    ] {
        assert_eq!(scratch.join(name).exists(), kept, "{name}:\n{all}");
    }
}

/// Runs inside the namespace, where this process is pid 1 and `/proc` is the namespace's.
/// Every child is a [`Sleeper`], killed and reaped on drop, also when an assertion fails.
fn child_side(scratch: &Path) {
    let d1 = scratch.join("d1");
    let d2 = scratch.join("d2");
    fs::create_dir_all(&d1).unwrap();
    fs::create_dir_all(&d2).unwrap();

    // Another live process, spawned before `ns_last_pid` is touched: its lock is kept.
    let other = Sleeper::spawn();
    openclaw(
        &d2.join("other.jsonl.lock"),
        other.pid,
        other.start_time,
        FRESH,
    );

    // The owner of three locks in two directories dies...
    let (pid, dead_start) = Sleeper::spawn().kill();
    for lock in [
        d1.join("a.jsonl.lock"),
        d2.join("b.jsonl.lock"),
        d2.join("sessions.json.lock"),
    ] {
        openclaw(&lock, pid, dead_start, FRESH);
    }
    // ...and its pid goes to a new process. Start times count clock ticks (1/100 s); let a few
    // pass so the new process cannot share the dead one's.
    std::thread::sleep(Duration::from_millis(50));
    fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
    let reuser = Sleeper::spawn();
    assert_eq!(reuser.pid, pid, "ns_last_pid did not hand out the same pid");
    assert_ne!(
        reuser.start_time, dead_start,
        "the new process shares the dead one's start time"
    );
    println!(
        "{SAYS} reused pid {pid}: start time {dead_start} -> {}",
        reuser.start_time
    );
    // The new process's own lock: same pid, same start time.
    openclaw(&d1.join("reuser.jsonl.lock"), pid, reuser.start_time, FRESH);

    let report = Sweeper::builder()
        .build()
        .unwrap()
        .sweep(&[&d1, &d2])
        .unwrap();
    let owner = |p: Option<u32>, name: &str| match (p, name) {
        (Some(p), "reuser.jsonl.lock") if p == pid => "reuser",
        (Some(p), _) if p == pid => "recycled",
        (Some(p), _) if p == other.pid => "other",
        _ => "unknown",
    };
    for (entry, name) in report.entries.iter().zip(names(&report)) {
        println!(
            "{SAYS} entry {} owner={} liveness={:?} status={:?} reasons={:?} removed={}",
            entry.path.strip_prefix(scratch).unwrap().display(),
            owner(entry.pid, &name),
            entry.liveness,
            entry.status,
            entry.reasons,
            entry.removed
        );
    }
    let t = report.totals;
    println!(
        "{SAYS} lookups={} scanned={} stale={} removed={} kept={} errors={}",
        report.lookups, t.scanned, t.stale, t.removed, t.kept, t.errors
    );

    // Fail here too, with the report, if an outcome is wrong.
    assert_eq!(
        names(&report),
        [
            "a.jsonl.lock",
            "reuser.jsonl.lock",
            "b.jsonl.lock",
            "other.jsonl.lock",
            "sessions.json.lock"
        ],
        "{report:#?}"
    );
    for (i, recycled) in [true, false, true, false, true].into_iter().enumerate() {
        let entry = &report.entries[i];
        assert_eq!(entry.liveness, Some(Liveness::Alive), "{entry:?}");
        if recycled {
            assert_eq!(entry.pid, Some(pid), "{entry:?}");
            assert_eq!(entry.status, Some(Status::Stale), "{entry:?}");
            assert_eq!(entry.reasons, [StaleReason::RecycledPid], "{entry:?}");
            assert!(entry.removed, "{entry:?}");
            assert!(!entry.path.exists(), "{entry:?}");
        } else {
            assert_eq!(entry.status, Some(Status::Held), "{entry:?}");
            assert!(entry.reasons.is_empty(), "{entry:?}");
            assert!(!entry.removed, "{entry:?}");
            assert!(entry.path.exists(), "{entry:?}");
        }
    }
    assert_eq!(report.entries[1].pid, Some(pid));
    assert_eq!(report.entries[3].pid, Some(other.pid));
    // One real lookup per distinct pid (the reused one and the other), across both directories
    // and both judgements of each removed lock.
    assert_eq!(report.lookups, 2, "{report:#?}");
    assert_eq!(
        (t.scanned, t.stale, t.removed, t.kept, t.errors),
        (5, 3, 3, 2, 0),
        "{report:#?}"
    );
    drop(reuser);
    drop(other);
    println!("{SAYS} done");
}
