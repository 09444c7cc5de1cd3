//! PID reuse for real: in a new PID namespace, a dead owner's pid is given to a new process
//! (through `ns_last_pid`), and the judge must see the different start time.
//!
//! Needs root for `unshare --pid`; without it the test prints `SKIP:`.

use std::process::Command;
use std::time::Duration;

use sessionkit_test_support::is_root;
use sessionkit_write_lock::{Locker, OwnerLookup, ProcLookup, StaleReason, Status};

use crate::util::{Scratch, plant_legacy};

const CHILD: &str = "SK_WL_TEST_PIDNS";

#[test]
fn pid_namespace_recycled_pid_is_judged_stale() {
    if let Some(dir) = std::env::var_os(CHILD) {
        child_side(std::path::Path::new(&dir));
        return;
    }
    if !is_root() {
        println!("SKIP: write-lock pid reuse: unshare --pid needs root");
        return;
    }
    let dir = Scratch::new("pidns");
    let out = Command::new("unshare")
        .args(["--pid", "--fork", "--mount-proc", "--"])
        .arg(std::env::current_exe().unwrap())
        .args([
            "pidns::pid_namespace_recycled_pid_is_judged_stale",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, dir.join(""))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("unshare failed") {
        println!("SKIP: write-lock pid reuse: this machine refuses new PID namespaces");
        return;
    }
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("CHILD reused pid"), "{stdout}");
    assert!(
        stdout.contains("CHILD status=Stale reasons=[RecycledPid]"),
        "{stdout}"
    );
}

/// Runs inside the namespace, where this process is pid 1 and `/proc` is the namespace's.
fn child_side(dir: &std::path::Path) {
    let target = dir.join("t");
    let mut first = Command::new("sleep").arg("60").spawn().unwrap();
    let pid = first.id();
    let start = ProcLookup.probe(pid).unwrap().start_time.unwrap();
    plant_legacy(&target, Some(pid), Some(Duration::ZERO), Some(start), None);
    first.kill().unwrap();
    first.wait().unwrap();
    // Start times count clock ticks; let one pass so the new process cannot share it.
    std::thread::sleep(Duration::from_millis(50));
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).unwrap();
    let mut second = Command::new("sleep").arg("60").spawn().unwrap();
    assert_eq!(
        second.id(),
        pid,
        "ns_last_pid did not hand out the same pid"
    );
    println!("CHILD reused pid {pid}");
    let inspection = Locker::new().inspect(&target).unwrap();
    println!(
        "CHILD status={:?} reasons={:?}",
        inspection.status, inspection.reasons
    );
    assert_eq!(inspection.status, Status::Stale);
    assert_eq!(inspection.reasons, [StaleReason::RecycledPid]);
    second.kill().unwrap();
    second.wait().unwrap();
}
