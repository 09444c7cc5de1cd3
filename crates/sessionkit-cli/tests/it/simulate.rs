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

/// The counts that must be 0 in every run of ours.
const MUST_BE_ZERO: [&str; 6] = [
    "updatesLost",
    "orphanTranscripts",
    "tornFiles",
    "locksLeft",
    "runsFailed",
    "writesAfterLosingLock",
];

fn n(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} is not a count in {report:#}"))
}

/// Checks the promises of every run of ours, and the figures that must agree; says which
/// is broken first, naming its fields.
fn check_promises(r: &Value) -> Result<(), String> {
    let n = |field: &str| {
        r[field]
            .as_u64()
            .ok_or_else(|| format!("{field} is not a count"))
    };
    for zero in MUST_BE_ZERO {
        if n(zero)? != 0 {
            return Err(format!("{zero} is {}, not 0", n(zero)?));
        }
    }
    if n("hangsPlanted")? == 0 {
        return Err("hangsPlanted is 0: the run tested no hung holder".to_owned());
    }
    if n("revocations")? + n("hangsKilled")? != n("hangsPlanted")? {
        return Err("revocations + hangsKilled differs from hangsPlanted".to_owned());
    }
    if n("runsKilled")? != n("killedRunsRecovered")? {
        return Err("runsKilled differs from killedRunsRecovered".to_owned());
    }
    if n("runsCompleted")? + n("runsKilled")? != n("runsPlanned")? {
        return Err("runsCompleted + runsKilled differs from runsPlanned".to_owned());
    }
    // The registry started at its cap (200 in the quick run); every session created either
    // is still there or was evicted, and nothing else left it. A run killed between its
    // upsert and the acknowledgement's report may add an entry nobody counted as created.
    let accounted = n("evictions")? + n("registryEntries")?;
    let created = 200 + n("sessionsCreated")?;
    if !(created..=created + n("runsKilled")?).contains(&accounted) {
        return Err(format!(
            "evictions + registryEntries is {accounted}, but 200 + sessionsCreated is {created}"
        ));
    }
    // The 100 stale locks a crashed predecessor left were all recovered.
    if n("staleLocksRecovered")? < 100 {
        return Err("staleLocksRecovered is below 100".to_owned());
    }
    if n("bytesOnDisk")? == 0 {
        return Err("bytesOnDisk is 0".to_owned());
    }
    Ok(())
}

/// Fails the test, showing the report, if `r` breaks a promise.
fn assert_promises(r: &Value) {
    if let Err(broken) = check_promises(r) {
        panic!("{broken} in {r:#}");
    }
}

#[test]
fn the_quick_run_in_one_process_keeps_every_promise() {
    let (report, tmp) = simulate(&[]);
    let r = &report["sessionkit"];
    assert_promises(r);
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
    assert_promises(r);
    assert_eq!(n(r, "processes"), 3);
    assert_eq!(n(r, "workersKilled"), 2);
    assert!(n(r, "sessionsCreated") >= n(r, "runsCompleted"), "{r:#}");
}

#[test]
fn the_naive_baseline_runs_the_same_workload_and_shows_the_original_failures() {
    let (report, _tmp) = simulate(&["--baseline", "naive"]);
    let ours = &report["sessionkit"];
    let naive = &report["naive"];
    assert_promises(ours);
    assert_eq!(n(naive, "runsPlanned"), n(ours, "runsPlanned"));
    assert_eq!(n(naive, "hangsPlanted"), n(ours, "hangsPlanted"));
    // No fence: every hung holder's late write landed after the watchdog took its lock.
    assert_eq!(n(naive, "writesAfterLosingLock"), n(naive, "hangsPlanted"));
    // One lookup per stale lock at startup, and more for every contended attempt.
    assert!(n(naive, "ownerLookups") >= 100, "{naive:#}");
    assert_eq!(naive["design"], "naive");
}

/// Fields to set in a report, each to a count or, for `None`, removed.
type Edits<'a> = Vec<(&'a str, Option<u64>)>;

#[test]
fn the_promise_check_rejects_each_fault_planted_in_a_real_report() {
    let (report, _tmp) = simulate(&[]);
    let real = &report["sessionkit"];
    assert_eq!(check_promises(real), Ok(()));
    let count = |field: &str| n(real, field);
    // Each fault sets fields of the real report (None removes one), and the rejection must
    // name the field that makes it a fault.
    let mut faults: Vec<(&str, Edits<'_>)> = MUST_BE_ZERO
        .map(|zero| (zero, vec![(zero, Some(1))]))
        .into();
    faults.extend([
        ("updatesLost", vec![("updatesLost", None)]),
        (
            "hangsPlanted",
            vec![
                ("hangsPlanted", Some(0)),
                ("revocations", Some(0)),
                ("hangsKilled", Some(0)),
            ],
        ),
        (
            "revocations",
            vec![("revocations", Some(count("revocations") + 1))],
        ),
        (
            "hangsKilled",
            vec![("hangsKilled", Some(count("hangsKilled") + 1))],
        ),
        (
            "killedRunsRecovered",
            vec![(
                "killedRunsRecovered",
                Some(count("killedRunsRecovered") + 1),
            )],
        ),
        (
            "runsCompleted",
            vec![("runsCompleted", Some(count("runsCompleted") - 1))],
        ),
        (
            "sessionsCreated",
            vec![("sessionsCreated", Some(count("sessionsCreated") + 1))],
        ),
        (
            "registryEntries",
            vec![("registryEntries", Some(count("registryEntries") - 1))],
        ),
        (
            "registryEntries",
            vec![(
                "registryEntries",
                Some(count("registryEntries") + count("runsKilled") + 1),
            )],
        ),
        (
            "staleLocksRecovered",
            vec![("staleLocksRecovered", Some(99))],
        ),
        ("bytesOnDisk", vec![("bytesOnDisk", Some(0))]),
    ]);
    for (named, edits) in faults {
        let mut faulty = real.clone();
        for (field, value) in &edits {
            let object = faulty.as_object_mut().expect("the report is an object");
            match value {
                Some(value) => object.insert((*field).to_owned(), Value::from(*value)),
                None => object.remove(*field),
            };
        }
        assert_ne!(&faulty, real, "{edits:?} changed nothing");
        match check_promises(&faulty) {
            Ok(()) => panic!("{edits:?} was accepted"),
            Err(broken) => assert!(broken.contains(named), "{edits:?}: {broken}"),
        }
    }
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
