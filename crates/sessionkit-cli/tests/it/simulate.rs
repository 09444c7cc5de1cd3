//! `sessionkit simulate`: the quick run in one process, in three (with kills), and beside the
//! naive baseline; every promise kept and the report's figures consistent with each other.

use serde_json::Value;

use crate::util::run;

/// Runs `sessionkit simulate --quick --json` with `extra`, in a fresh directory that is
/// kept for the checks; returns the JSON report.
fn simulate(extra: &[&str]) -> (Value, tempfile::TempDir) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("sim");
    let mut args = vec!["simulate", "--quick", "--json", "--dir"];
    let dir_arg = dir.to_str().unwrap().to_owned();
    args.push(&dir_arg);
    args.extend_from_slice(extra);
    let out = run(&args, b"");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    let report: Value = serde_json::from_str(&stdout).expect("one JSON object");
    (report, tmp)
}

fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {report:#}"))
}

/// The promises of every run of ours, and the figures that must agree.
fn check_promises(r: &Value) {
    for zero in [
        "updatesLost",
        "orphanTranscripts",
        "tornFiles",
        "locksLeft",
        "runsFailed",
        "writesAfterLosingLock",
    ] {
        assert_eq!(n(r, zero), 0, "{zero} in {r:#}");
    }
    assert!(n(r, "hangsPlanted") > 0, "{r:#}");
    assert_eq!(
        n(r, "revocations") + n(r, "hangsKilled"),
        n(r, "hangsPlanted"),
        "{r:#}"
    );
    assert_eq!(n(r, "runsKilled"), n(r, "killedRunsRecovered"), "{r:#}");
    assert_eq!(
        n(r, "runsCompleted") + n(r, "runsKilled"),
        n(r, "runsPlanned"),
        "{r:#}"
    );
    // The registry started at its cap (200 in the quick run); every session created either
    // is still there or was evicted, and nothing else left it. A run killed between its
    // upsert and the acknowledgement's report may add an entry nobody counted as created.
    let accounted = n(r, "evictions") + n(r, "registryEntries");
    let created = 200 + n(r, "sessionsCreated");
    assert!(
        (created..=created + n(r, "runsKilled")).contains(&accounted),
        "{r:#}"
    );
    // The 100 stale locks a crashed predecessor left were all recovered.
    assert!(n(r, "staleLocksRecovered") >= 100, "{r:#}");
    assert!(n(r, "bytesOnDisk") > 0, "{r:#}");
}

#[test]
fn the_quick_run_in_one_process_keeps_every_promise() {
    let (report, tmp) = simulate(&[]);
    let r = &report["sessionkit"];
    check_promises(r);
    assert!(report["naive"].is_null());
    assert_eq!(n(r, "processes"), 0);
    assert_eq!(n(r, "runsPlanned"), 120);
    assert_eq!(n(r, "runsCompleted"), 120);
    assert_eq!(n(r, "sessionsCreated"), n(r, "runsCompleted"));
    assert_eq!(n(r, "evictions") + n(r, "registryEntries"), 200 + 120);
    // An upsert and a patch per run, each acknowledged.
    assert_eq!(n(r, "updatesAcked"), 2 * n(r, "sessionsCreated"));
    // One owner lookup per dead pid (4 crashed predecessors), not per lock (100).
    assert_eq!(n(r, "ownerLookups"), 4);
    assert_eq!(n(r, "workersKilled"), 0);
    assert_eq!(n(r, "hangsKilled"), 0);
    // The directory was kept and holds the registry.
    assert!(tmp.path().join("sim/sessionkit/sessions.json").exists());
}

#[test]
fn the_quick_run_in_three_processes_recovers_from_killed_workers() {
    let (report, _tmp) = simulate(&["--processes", "3"]);
    let r = &report["sessionkit"];
    check_promises(r);
    assert_eq!(n(r, "processes"), 3);
    assert_eq!(n(r, "workersKilled"), 2);
    assert!(n(r, "sessionsCreated") >= n(r, "runsCompleted"), "{r:#}");
}

#[test]
fn the_naive_baseline_runs_the_same_workload_and_shows_the_original_failures() {
    let (report, _tmp) = simulate(&["--baseline", "naive"]);
    let ours = &report["sessionkit"];
    let naive = &report["naive"];
    check_promises(ours);
    assert_eq!(n(naive, "runsPlanned"), n(ours, "runsPlanned"));
    assert_eq!(n(naive, "hangsPlanted"), n(ours, "hangsPlanted"));
    // No fence: every hung holder's late write landed after the watchdog took its lock.
    assert_eq!(n(naive, "writesAfterLosingLock"), n(naive, "hangsPlanted"));
    // One lookup per stale lock at startup, and more for every contended attempt.
    assert!(n(naive, "ownerLookups") >= 100, "{naive:#}");
    assert_eq!(naive["design"], "naive");
}

#[test]
fn a_directory_that_is_not_empty_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("keep.txt"), b"mine").unwrap();
    let out = run(
        ["simulate", "--quick", "--dir", tmp.path().to_str().unwrap()],
        b"",
    );
    assert_eq!(out.status.code(), Some(crate::util::IO_ERR));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not empty"), "{stderr}");
    assert_eq!(std::fs::read(tmp.path().join("keep.txt")).unwrap(), b"mine");
}
