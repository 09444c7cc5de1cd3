//! `sessionkit sweep`: stale locks removed, live and fresh ones kept, the summary line.

use std::fs;
use std::path::Path;

use serde_json::Value;

use crate::locks::{Planted, stdout_ok};
use crate::util::{USAGE, names, run};

/// Checks the summary line (`scanned N, removed N, kept N, errors N, lookups N, in T`) and
/// returns its numbers: scanned, removed, kept, errors, lookups.
fn summary(line: &str) -> [u64; 5] {
    let (counts, time) = line
        .split_once(", in ")
        .unwrap_or_else(|| panic!("no time in {line:?}"));
    assert!(
        time.ends_with(" ms") || time.ends_with(" s"),
        "bad time in {line:?}"
    );
    let mut numbers = [0; 5];
    let fields: Vec<&str> = counts.split(", ").collect();
    assert_eq!(fields.len(), 5, "{line:?}");
    for ((field, name), number) in fields
        .iter()
        .zip(["scanned", "removed", "kept", "errors", "lookups"])
        .zip(&mut numbers)
    {
        let value = field
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no `{name}` in {line:?}"));
        *number = value.parse().unwrap_or_else(|_| panic!("{line:?}"));
    }
    numbers
}

fn last_line(out: &str) -> &str {
    out.lines().last().unwrap_or_else(|| panic!("no output"))
}

#[test]
fn a_dry_run_removes_nothing() {
    let planted = Planted::new();
    let out = stdout_ok(&[
        "sweep".as_ref(),
        "--dry-run".as_ref(),
        planted.path().as_os_str(),
    ]);
    let [scanned, removed, kept, errors, _] = summary(last_line(&out));
    assert_eq!((scanned, removed, kept, errors), (3, 0, 3, 0), "{out}");
    let dead = planted.lock("dead.jsonl.lock");
    assert!(
        out.starts_with(&format!(
            "would remove {} (dead-pid, too-old)\n",
            dead.display()
        )),
        "{out}"
    );
    assert_eq!(names(planted.path()), Planted::all_names());
}

#[test]
fn a_sweep_removes_exactly_the_dead_owners_lock() {
    let planted = Planted::new();
    let out = stdout_ok(&["sweep".as_ref(), planted.path().as_os_str()]);
    let dead = planted.lock("dead.jsonl.lock");
    assert_eq!(
        out.lines().next(),
        Some(format!("removed {} (dead-pid, too-old)", dead.display()).as_str()),
        "{out}"
    );
    assert_eq!(out.lines().count(), 2, "{out}");
    let [scanned, removed, kept, errors, lookups] = summary(last_line(&out));
    assert_eq!((scanned, removed, kept, errors), (3, 1, 2, 0), "{out}");
    assert!(lookups >= 2, "{out}");
    assert_eq!(
        names(planted.path()),
        ["fresh.lock", "live.jsonl.lock", "notes.txt"]
    );
}

#[test]
fn json_prints_the_report() {
    let planted = Planted::new();
    let out = stdout_ok(&[
        "sweep".as_ref(),
        "--json".as_ref(),
        planted.path().as_os_str(),
    ]);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["dryRun"], false);
    assert_eq!(json["totals"]["removed"], 1);
    assert_eq!(json["totals"]["kept"], 2);
    assert!(!planted.lock("dead.jsonl.lock").exists());
}

#[test]
fn old_temp_files_go_only_when_asked() {
    let dir = tempfile::tempdir().expect("temp dir");
    let temp = dir.path().join(".state.json.4242.00c0ffee00c0ffee.sktmp");
    fs::write(&temp, "half").expect("plant a temp file");
    let out = stdout_ok(&["sweep".as_ref(), dir.path().as_os_str()]);
    assert_eq!(summary(last_line(&out))[0], 0, "{out}");
    assert!(temp.exists());
    let out = stdout_ok(&[
        "sweep".as_ref(),
        "--temp-older-than".as_ref(),
        "0ms".as_ref(),
        dir.path().as_os_str(),
    ]);
    assert!(
        out.contains(&format!("removed {}", temp.display())),
        "{out}"
    );
    assert!(!temp.exists(), "{out}");
}

#[test]
fn a_missing_directory_is_an_empty_sweep() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let out = stdout_ok(&["sweep".as_ref(), missing.as_os_str()]);
    assert_eq!(out.lines().count(), 1, "{out}");
    assert_eq!(summary(last_line(&out)), [0, 0, 0, 0, 0]);
    assert!(!Path::new(&missing).exists());
}

#[test]
fn a_bad_temp_age_is_a_usage_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    for bad in ["5", "1.5s", "5d"] {
        let output = run(
            [
                "sweep".as_ref(),
                "--temp-older-than".as_ref(),
                bad.as_ref(),
                dir.path().as_os_str(),
            ],
            b"",
        );
        assert_eq!(output.status.code(), Some(USAGE), "{bad}");
        assert!(output.stdout.is_empty());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--temp-older-than"), "{bad}: {stderr}");
    }
    // No directory at all is a usage error too.
    let output = run(["sweep"], b"");
    assert_eq!(output.status.code(), Some(USAGE));
}

#[test]
fn foreign_owners_are_removed_only_with_the_rule_and_an_ours_list() {
    let planted = Planted::new();
    let dir = planted.path().as_os_str();
    let output = run(
        ["sweep".as_ref(), "--foreign-owners-stale".as_ref(), dir],
        b"",
    );
    assert_eq!(output.status.code(), Some(USAGE), "{output:?}");
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("--ours"),
        "{output:?}"
    );

    // `sleep` is ours: the live sleeper keeps its lock.
    let out = stdout_ok(&[
        "sweep".as_ref(),
        "--ours".as_ref(),
        "sleep".as_ref(),
        "--foreign-owners-stale".as_ref(),
        dir,
    ]);
    assert!(planted.lock("live.jsonl.lock").exists(), "{out}");
    assert!(!planted.lock("dead.jsonl.lock").exists(), "{out}");

    // Only `gateway` is ours: the sleeper is a foreign owner and its lock goes.
    let out = stdout_ok(&[
        "sweep".as_ref(),
        "--ours".as_ref(),
        "gateway".as_ref(),
        "--ours-openclaw".as_ref(),
        "--foreign-owners-stale".as_ref(),
        dir,
    ]);
    let live = planted.lock("live.jsonl.lock");
    assert!(
        out.contains(&format!(
            "removed {} (too-old, foreign-owner)",
            live.display()
        )),
        "{out}"
    );
    assert!(!live.exists(), "{out}");
}

#[test]
fn the_progress_bar_goes_to_stderr_when_asked() {
    let planted = Planted::new();
    let dir = planted.path().as_os_str();
    let output = run(
        [
            "sweep".as_ref(),
            "--dry-run".as_ref(),
            "--progress".as_ref(),
            "always".as_ref(),
            dir,
        ],
        b"",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.starts_with('\r'), "{err:?}");
    assert!(
        err.ends_with("[##############################] 3 of 3 locks, 1 of 1 dirs listed\n"),
        "{err:?}"
    );
    // The report on stdout is untouched by the bar.
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(summary(last_line(&out))[0], 3, "{out}");

    // `auto` draws nothing when stderr is not a terminal, and `never` never draws.
    for when in ["auto", "never"] {
        let output = run(
            [
                "sweep".as_ref(),
                "--dry-run".as_ref(),
                "--progress".as_ref(),
                when.as_ref(),
                dir,
            ],
            b"",
        );
        assert_eq!(output.status.code(), Some(0), "{output:?}");
        assert!(output.stderr.is_empty(), "{when}: {output:?}");
    }
}
