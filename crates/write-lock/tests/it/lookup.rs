//! Process lookup through `/proc`: this process, a child through its life, and an absent pid.
//!
//! Only Linux can look up processes; elsewhere every lookup must say so with `Unsupported`.

#[cfg(target_os = "linux")]
use std::process::{Command, Stdio};
#[cfg(target_os = "linux")]
use std::thread;
#[cfg(target_os = "linux")]
use std::time::Duration;

#[cfg(target_os = "linux")]
use sessionkit_write_lock::ProcessProbe;
use sessionkit_write_lock::{Liveness, OwnerLookup, ProcLookup};

#[cfg(target_os = "linux")]
/// A pid above the kernel's largest `pid_max` (2^22), so no process can have it.
const ABSENT_PID: u32 = 0x7fff_fff0;

#[cfg(target_os = "linux")]
/// True if this process ignores SIGCHLD, in which case the kernel reaps children at once and
/// they never become zombies.
fn ignores_sigchld() -> bool {
    const SIGCHLD: u32 = 17;
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let mask = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .map(|m| u64::from_str_radix(m.trim(), 16).unwrap())
        .unwrap();
    mask & (1 << (SIGCHLD - 1)) != 0
}

#[cfg(target_os = "linux")]
/// Polls `pid` until its liveness is `want` or the attempts run out; returns the last probe.
fn probe_until(lookup: &ProcLookup, pid: u32, want: Liveness) -> ProcessProbe {
    let mut probe = lookup.probe(pid).unwrap();
    for _ in 0..1000 {
        if probe.liveness == want {
            break;
        }
        thread::sleep(Duration::from_millis(5));
        probe = lookup.probe(pid).unwrap();
    }
    probe
}

#[cfg(target_os = "linux")]
#[test]
fn this_process_is_alive_with_a_start_time() {
    let probe = ProcLookup.probe(std::process::id()).unwrap();
    assert_eq!(probe.liveness, Liveness::Alive);
    assert!(probe.start_time.is_some(), "{probe:?}");
    let cmdline = ProcLookup.cmdline(std::process::id()).unwrap().unwrap();
    assert!(!cmdline.is_empty());
}

#[cfg(target_os = "linux")]
#[test]
fn an_absent_pid_is_dead() {
    assert_eq!(
        ProcLookup.probe(ABSENT_PID).unwrap(),
        ProcessProbe::new(Liveness::Dead, None)
    );
    assert_eq!(ProcLookup.cmdline(ABSENT_PID).unwrap(), None);
}

#[cfg(target_os = "linux")]
#[test]
fn a_child_is_alive_then_a_zombie_then_dead() {
    let lookup = ProcLookup;
    let own = lookup
        .probe(std::process::id())
        .unwrap()
        .start_time
        .unwrap();
    let mut child = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid = child.id();

    let alive = lookup.probe(pid).unwrap();
    assert_eq!(alive.liveness, Liveness::Alive);
    // Start times are clock ticks since boot: the child cannot have started before us.
    let started = alive.start_time.unwrap();
    assert!(started >= own, "child {started} < parent {own}");
    // `spawn` returns once the child has begun its exec, which may be before the kernel has
    // set up the new command line; until then it reads as none.
    let mut cmdline = lookup.cmdline(pid).unwrap();
    for _ in 0..1000 {
        if cmdline.is_some() {
            break;
        }
        thread::sleep(Duration::from_millis(5));
        cmdline = lookup.cmdline(pid).unwrap();
    }
    assert_eq!(cmdline, Some(vec!["sleep".to_owned(), "30".to_owned()]));

    child.kill().unwrap();
    let reaped_by_kernel = ignores_sigchld();
    if !reaped_by_kernel {
        // Killed but not reaped: a zombie that keeps its start time but has no command line.
        let zombie = probe_until(&lookup, pid, Liveness::Zombie);
        assert_eq!(zombie, ProcessProbe::new(Liveness::Zombie, Some(started)));
        assert_eq!(lookup.cmdline(pid).unwrap(), None);
    }
    // When the kernel reaped the child itself, waiting reports that there is no child.
    let waited = child.wait();
    assert!(reaped_by_kernel || waited.is_ok(), "{waited:?}");
    assert_eq!(
        probe_until(&lookup, pid, Liveness::Dead),
        ProcessProbe::new(Liveness::Dead, None)
    );
    assert_eq!(lookup.cmdline(pid).unwrap(), None);
}

#[test]
fn liveness_serialises_in_kebab_case() {
    let names: Vec<String> = [Liveness::Alive, Liveness::Zombie, Liveness::Dead]
        .iter()
        .map(|l| serde_json::to_string(l).unwrap())
        .collect();
    assert_eq!(names, ["\"alive\"", "\"zombie\"", "\"dead\""]);
}

#[cfg(not(target_os = "linux"))]
#[test]
fn lookups_are_unsupported_elsewhere() {
    let probe = ProcLookup.probe(std::process::id()).unwrap_err();
    assert_eq!(probe.kind(), std::io::ErrorKind::Unsupported);
    let cmdline = ProcLookup.cmdline(std::process::id()).unwrap_err();
    assert_eq!(cmdline.kind(), std::io::ErrorKind::Unsupported);
}
