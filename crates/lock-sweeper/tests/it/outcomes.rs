//! The documented outcome for each kind of sidecar, and the report.

use std::fs;
use std::time::Duration;

use sessionkit_lock_sweeper::{Liveness, StaleReason, Status, Sweeper};
use sessionkit_write_lock::Locker;

use crate::util::{FRESH, HOUR, Scratch, Sleeper, names, openclaw, set_modified_ago};

fn sweeper() -> Sweeper {
    Sweeper::builder().build().unwrap()
}

#[test]
fn dead_owners_are_removed_with_dead_pid() {
    let scratch = Scratch::new("dead");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&dir.join("a.jsonl.lock"), pid, start, FRESH);
    openclaw(&dir.join("b.jsonl.lock"), pid, start, HOUR);
    let report = sweeper().sweep(&[&dir]).unwrap();
    assert_eq!(names(&report), ["a.jsonl.lock", "b.jsonl.lock"]);
    assert_eq!(report.entries[0].reasons, vec![StaleReason::DeadPid]);
    assert_eq!(
        report.entries[1].reasons,
        vec![StaleReason::DeadPid, StaleReason::TooOld]
    );
    for entry in &report.entries {
        assert!(entry.removed);
        assert_eq!(entry.pid, Some(pid));
        assert_eq!(entry.liveness, Some(Liveness::Dead));
        assert!(!entry.path.exists());
    }
    assert_eq!(report.totals.removed, 2);
    assert_eq!(report.totals.stale, 2);
}

#[test]
fn a_recycled_pid_is_removed() {
    let scratch = Scratch::new("recycled");
    let dir = scratch.dir("d");
    let live = Sleeper::spawn();
    // The pid is alive but started at another time: the record's owner is gone.
    openclaw(&dir.join("r.lock"), live.pid, live.start_time + 1, FRESH);
    let report = sweeper().sweep(&[&dir]).unwrap();
    assert_eq!(report.entries[0].reasons, vec![StaleReason::RecycledPid]);
    assert!(report.entries[0].removed);
}

#[test]
fn malformed_records_are_kept_while_fresh_and_removed_when_old() {
    let scratch = Scratch::new("malformed");
    let dir = scratch.dir("d");
    fs::write(dir.join("fresh.lock"), "{}").unwrap();
    fs::write(dir.join("old.lock"), "{}").unwrap();
    set_modified_ago(&dir.join("old.lock"), Duration::from_secs(120));
    fs::write(dir.join("empty.lock"), "").unwrap();
    let report = sweeper().sweep(&[&dir]).unwrap();
    assert_eq!(names(&report), ["empty.lock", "fresh.lock", "old.lock"]);
    let both = vec![StaleReason::MissingPid, StaleReason::InvalidCreatedAt];
    for entry in &report.entries[..2] {
        assert_eq!(entry.status, Some(Status::Malformed));
        assert_eq!(entry.reasons, both);
        assert!(!entry.removed);
        assert!(entry.kept_because.as_deref().unwrap().contains("malformed"));
        assert!(entry.path.exists());
    }
    assert_eq!(report.entries[2].status, Some(Status::Stale));
    assert_eq!(report.entries[2].reasons, both);
    assert!(report.entries[2].removed);
    assert!(!dir.join("old.lock").exists());
}

#[test]
fn a_foreign_lock_named_file_and_other_files_are_never_touched() {
    let scratch = Scratch::new("foreign");
    let dir = scratch.dir("d");
    fs::write(dir.join("notes.lock"), "remember the milk\n").unwrap();
    // Names that do not end in `.lock` are never candidates, however old or dead.
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&dir.join("x.jsonl.lock.gen"), pid, start, HOUR);
    openclaw(&dir.join("x.lock.bak"), pid, start, HOUR);
    fs::write(dir.join("notes.txt"), "hello").unwrap();
    set_modified_ago(&dir.join("notes.txt"), HOUR);
    fs::create_dir(dir.join("sub.lock")).unwrap();

    let report = sweeper().sweep(&[&dir]).unwrap();
    assert_eq!(names(&report), ["notes.lock"]);
    assert_eq!(report.entries[0].status, Some(Status::Malformed));
    assert!(!report.entries[0].removed);
    assert_eq!(
        fs::read_to_string(dir.join("notes.lock")).unwrap(),
        "remember the milk\n"
    );
    for kept in ["x.jsonl.lock.gen", "x.lock.bak", "notes.txt", "sub.lock"] {
        assert!(dir.join(kept).exists(), "{kept}");
    }
    // Old, it is still not a lock record: reported, never touched.
    set_modified_ago(&dir.join("notes.lock"), HOUR);
    let report = sweeper().sweep(&[&dir]).unwrap();
    assert!(!report.entries[0].removed);
    assert!(
        report.entries[0]
            .kept_because
            .as_deref()
            .is_some_and(|k| k.contains("not a lock record")),
        "{:?}",
        report.entries[0]
    );
    assert_eq!(
        fs::read_to_string(dir.join("notes.lock")).unwrap(),
        "remember the milk\n"
    );
}

#[test]
fn the_sidecar_filter_narrows_the_names_swept() {
    let scratch = Scratch::new("filter");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&dir.join("a.jsonl.lock"), pid, start, FRESH);
    openclaw(&dir.join("other.lock"), pid, start, FRESH);
    let report = Sweeper::builder()
        .sidecars(|name| name.to_string_lossy().ends_with(".jsonl.lock"))
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    assert_eq!(names(&report), ["a.jsonl.lock"]);
    assert!(dir.join("other.lock").exists());
}

#[test]
fn sessions_json_lock_is_swept_like_any_other() {
    let scratch = Scratch::new("store");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&dir.join("sessions.json.lock"), pid, start, FRESH);
    let report = sweeper().sweep(&[&dir]).unwrap();
    assert_eq!(names(&report), ["sessions.json.lock"]);
    assert!(report.entries[0].removed);
    assert!(!dir.join("sessions.json.lock").exists());
}

#[test]
fn our_own_held_lock_is_held_and_judged_without_a_lookup() {
    let scratch = Scratch::new("ours");
    let target = scratch.join("t.jsonl");
    let guard = Locker::new().acquire(&target).unwrap();
    let report = sweeper().sweep(&[&scratch.path()]).unwrap();
    assert_eq!(names(&report), ["t.jsonl.lock"]);
    assert_eq!(report.entries[0].status, Some(Status::Held));
    assert!(!report.entries[0].removed);
    assert_eq!(report.lookups, 0);
    guard.release().unwrap();
}

#[test]
fn a_missing_directory_is_an_empty_result() {
    let scratch = Scratch::new("missing");
    let report = sweeper().sweep(&[scratch.join("nope")]).unwrap();
    assert!(report.entries.is_empty());
    assert!(report.dir_errors.is_empty());
    assert_eq!(report.totals, Default::default());
}

#[test]
fn a_dry_run_removes_nothing_and_reports_what_it_would() {
    let scratch = Scratch::new("dry");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&dir.join("dead.lock"), pid, start, HOUR);
    let live = Sleeper::spawn();
    openclaw(&dir.join("live.lock"), live.pid, live.start_time, FRESH);
    let report = Sweeper::builder()
        .dry_run(true)
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    assert!(report.dry_run);
    assert_eq!(names(&report), ["dead.lock", "live.lock"]);
    assert_eq!(report.entries[0].status, Some(Status::Stale));
    assert_eq!(
        report.entries[0].reasons,
        vec![StaleReason::DeadPid, StaleReason::TooOld]
    );
    assert!(!report.entries[0].removed);
    assert_eq!(report.entries[0].kept_because.as_deref(), Some("dry run"));
    assert_eq!(report.entries[1].status, Some(Status::Held));
    assert_eq!(report.totals.stale, 1);
    assert_eq!(report.totals.removed, 0);
    assert!(dir.join("dead.lock").exists());
    assert!(dir.join("live.lock").exists());
}

#[test]
fn orphan_temps_are_removed_only_when_asked_and_reported_apart() {
    let scratch = Scratch::new("temps");
    let dir = scratch.dir("d");
    let old = dir.join(".sessions.json.4242.00c0ffee00c0ffee.sktmp");
    let young = dir.join(".sessions.json.4242.00c0ffee00c0ffef.sktmp");
    fs::write(&old, "x").unwrap();
    fs::write(&young, "y").unwrap();
    set_modified_ago(&old, HOUR);

    let report = sweeper().sweep(&[&dir]).unwrap();
    assert!(report.temps.is_none());
    assert!(old.exists());

    let dry = Sweeper::builder()
        .temp_older_than(Some(Duration::from_secs(60)))
        .dry_run(true)
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    let temps = dry.temps.unwrap();
    assert_eq!(temps.removed.len(), 1);
    assert_eq!(temps.removed[0].path, old);
    assert!(old.exists());

    let report = Sweeper::builder()
        .temp_older_than(Some(Duration::from_secs(60)))
        .build()
        .unwrap()
        .sweep(&[&dir])
        .unwrap();
    let temps = report.temps.unwrap();
    assert_eq!(temps.removed.len(), 1);
    assert_eq!(temps.removed[0].path, old);
    assert_eq!(temps.kept_young, 1);
    assert!(report.entries.is_empty());
    assert!(!old.exists());
    assert!(young.exists());
}

#[test]
fn the_report_serialises_to_json() {
    let scratch = Scratch::new("json");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&dir.join("a.lock"), pid, start, HOUR);
    let report = sweeper().sweep(&[&dir]).unwrap();
    let json: serde_json::Value = serde_json::to_value(&report).unwrap();
    let entry = &json["entries"][0];
    assert_eq!(entry["pid"], pid);
    assert_eq!(entry["liveness"], "dead");
    assert_eq!(entry["status"], "stale");
    assert_eq!(entry["reasons"], serde_json::json!(["dead-pid", "too-old"]));
    assert_eq!(entry["removed"], true);
    assert!(entry["ageMs"].as_u64().unwrap() >= 3_600_000);
    assert_eq!(json["totals"]["removed"], 1);
    assert_eq!(json["lookups"], 1);
    assert!(json["elapsedMs"].is_u64());
}

#[test]
fn invalid_settings_are_config_errors() {
    let err = Sweeper::builder().concurrency(0).build().unwrap_err();
    assert!(err.is_config());
    let err = Sweeper::builder()
        .stale_after(Duration::ZERO)
        .build()
        .unwrap_err();
    assert!(err.is_config());
    assert!(err.to_string().contains("stale_after"), "{err}");
}
