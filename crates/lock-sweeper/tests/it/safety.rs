//! Safety: a lock that changes before removal survives, symlinks are never followed, and
//! per-file errors do not stop the sweep.

use std::fs;
use std::os::unix::fs::chown;
use std::path::Path;
use std::process::Command;

use sessionkit_lock_sweeper::{Status, Sweeper};
use sessionkit_test_support::{CHECKED_AS_NOBODY, set_mode, why_not_as_nobody};

use crate::util::{FRESH, HOUR, Scratch, Sleeper, names, openclaw};

#[test]
fn a_lock_recreated_between_judgement_and_removal_survives() {
    let scratch = Scratch::new("recreated");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    let lock = dir.join("a.jsonl.lock");
    openclaw(&lock, pid, start, HOUR);
    openclaw(&dir.join("b.jsonl.lock"), pid, start, HOUR);
    let me = std::process::id();
    let replacement = format!("{{\"pid\": {me}}}");

    let mut sweeper = Sweeper::builder().build().unwrap();
    let target = lock.clone();
    let text = replacement.clone();
    sweeper.removal_hook(move |path| {
        if path == target {
            // Another process replaces the lock in the window between judgement and removal.
            let status = Command::new("sh")
                .arg("-c")
                .arg("printf '%s' \"$1\" > \"$2.new\" && mv \"$2.new\" \"$2\"")
                .arg("sh")
                .arg(&text)
                .arg(path)
                .status()
                .unwrap();
            assert!(status.success());
        }
    });
    let report = sweeper.sweep(&[&dir]).unwrap();
    assert_eq!(names(&report), ["a.jsonl.lock", "b.jsonl.lock"]);
    let a = &report.entries[0];
    assert_eq!(a.status, Some(Status::Stale));
    assert!(!a.removed);
    assert!(a.kept_because.as_deref().unwrap().contains("changed"));
    assert_eq!(fs::read_to_string(&lock).unwrap(), replacement);
    // The other stale lock went as usual.
    assert!(report.entries[1].removed);
    assert_eq!(report.totals.stale, 2);
    assert_eq!(report.totals.removed, 1);
    assert_eq!(report.totals.kept, 1);
}

#[test]
fn a_symlink_sidecar_is_never_followed() {
    let scratch = Scratch::new("symlink");
    let dir = scratch.dir("d");
    let elsewhere = scratch.dir("elsewhere");
    // The link points at a stale record: following it would remove that file.
    let (pid, start) = Sleeper::spawn().kill();
    let pointee = elsewhere.join("real.json");
    openclaw(&pointee, pid, start, HOUR);
    let before = fs::read(&pointee).unwrap();
    let link = dir.join("x.lock");
    std::os::unix::fs::symlink(&pointee, &link).unwrap();

    // A fresh link is a file without a record, in its grace period: kept.
    let report = Sweeper::builder().build().unwrap().sweep(&[&dir]).unwrap();
    let entry = &report.entries[0];
    assert!(entry.symlink);
    assert_eq!(entry.pid, None);
    assert_eq!(entry.status, Some(Status::Malformed));
    assert!(!entry.removed);
    assert!(fs::symlink_metadata(&link).is_ok());
    assert_eq!(report.lookups, 0);

    // An old link is removed, and only the link.
    let touched = Command::new("touch")
        .args(["-h", "-d", "2 minutes ago"])
        .arg(&link)
        .status()
        .unwrap();
    assert!(touched.success());
    let report = Sweeper::builder().build().unwrap().sweep(&[&dir]).unwrap();
    assert!(report.entries[0].symlink);
    assert!(report.entries[0].removed);
    assert!(fs::symlink_metadata(&link).is_err());
    assert_eq!(fs::read(&pointee).unwrap(), before);
}

/// Set (to the scratch directory) when this test binary runs again as user 65534.
const NOBODY_CHILD: &str = "SK_SW_TEST_AS_NOBODY";
/// What the child as user 65534 prints once its checks have passed.

#[test]
fn an_unreadable_lock_is_reported_and_the_sweep_goes_on() {
    const TEST: &str = "safety::an_unreadable_lock_is_reported_and_the_sweep_goes_on";
    if let Some(scratch) = std::env::var_os(NOBODY_CHILD) {
        sweep_past_an_unreadable_lock(&Path::new(&scratch).join("d"));
        println!("{CHECKED_AS_NOBODY}");
        return;
    }
    let scratch = Scratch::new("perm");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    let locked = dir.join("a.lock");
    openclaw(&locked, pid, start, FRESH);
    openclaw(&dir.join("b.lock"), pid, start, FRESH);
    set_mode(&locked, 0o000);
    if fs::read(&locked).is_err() {
        sweep_past_an_unreadable_lock(&dir);
        return;
    }
    // Root reads any file, so the sweep runs as another user, who may remove from the
    // directory but not read `a.lock`.
    if let Some(why) = why_not_as_nobody() {
        println!("SKIP: an unreadable lock: running as root, and {why}");
        return;
    }
    chown(&dir, Some(NOBODY), Some(NOBODY)).unwrap();
    run_as_nobody(TEST, &scratch);
    assert!(locked.exists());
    assert!(!dir.join("b.lock").exists());
}

/// Sweeps `dir`, where `a.lock` cannot be read and `b.lock` is a dead owner's lock.
fn sweep_past_an_unreadable_lock(dir: &Path) {
    assert!(fs::read(dir.join("a.lock")).is_err(), "a.lock is readable");
    let report = Sweeper::builder().build().unwrap().sweep(&[dir]).unwrap();
    assert_eq!(names(&report), ["a.lock", "b.lock"]);
    let a = &report.entries[0];
    assert_eq!(a.status, None);
    assert!(!a.removed);
    assert!(a.error.as_deref().unwrap().contains("a.lock"), "{a:?}");
    assert!(report.entries[1].removed);
    assert_eq!(report.totals.errors, 1);
    assert_eq!(report.totals.removed, 1);
}

#[test]
fn an_unlistable_directory_is_reported_and_the_others_are_swept() {
    const TEST: &str = "safety::an_unlistable_directory_is_reported_and_the_others_are_swept";
    if let Some(scratch) = std::env::var_os(NOBODY_CHILD) {
        let scratch = Path::new(&scratch);
        sweep_past_an_unlistable_directory(&scratch.join("closed"), &scratch.join("open"));
        println!("{CHECKED_AS_NOBODY}");
        return;
    }
    let scratch = Scratch::new("dirperm");
    let closed = scratch.dir("closed");
    let open = scratch.dir("open");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&open.join("a.lock"), pid, start, FRESH);
    set_mode(&closed, 0o000);
    if fs::read_dir(&closed).is_err() {
        sweep_past_an_unlistable_directory(&closed, &open);
        set_mode(&closed, 0o755);
        return;
    }
    // Root lists any directory, so the sweep runs as another user, who may remove from
    // `open` but not list `closed`.
    if let Some(why) = why_not_as_nobody() {
        set_mode(&closed, 0o755);
        println!("SKIP: an unlistable directory: running as root, and {why}");
        return;
    }
    chown(&open, Some(NOBODY), Some(NOBODY)).unwrap();
    run_as_nobody(TEST, &scratch);
    set_mode(&closed, 0o755);
    assert!(!open.join("a.lock").exists());
}

/// Sweeps `closed`, which cannot be listed, and `open`, which holds a dead owner's lock.
fn sweep_past_an_unlistable_directory(closed: &Path, open: &Path) {
    assert!(
        fs::read_dir(closed).is_err(),
        "the closed directory is listable"
    );
    let report = Sweeper::builder()
        .build()
        .unwrap()
        .sweep(&[closed, open])
        .unwrap();
    assert_eq!(report.dir_errors.len(), 1);
    assert_eq!(report.dir_errors[0].path, closed);
    assert_eq!(report.totals.errors, 1);
    assert_eq!(report.totals.removed, 1);
}

/// User and group `nobody`.
const NOBODY: u32 = 65534;

/// Runs `test` again as user 65534 with the scratch directory in [`NOBODY_CHILD`], and fails
/// unless the child ran it and its checks passed.
fn run_as_nobody(test: &str, scratch: &Scratch) {
    sessionkit_test_support::run_as_nobody(test, scratch.path(), NOBODY_CHILD, scratch.path());
}
