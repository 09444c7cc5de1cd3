//! Safety: a lock that changes before removal survives, symlinks are never followed, and
//! per-file errors do not stop the sweep.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

use sessionkit_lock_sweeper::{Status, Sweeper};

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

#[test]
fn an_unreadable_lock_is_reported_and_the_sweep_goes_on() {
    let scratch = Scratch::new("perm");
    let dir = scratch.dir("d");
    let (pid, start) = Sleeper::spawn().kill();
    let locked = dir.join("a.lock");
    openclaw(&locked, pid, start, FRESH);
    openclaw(&dir.join("b.lock"), pid, start, FRESH);
    fs::set_permissions(&locked, fs::Permissions::from_mode(0o000)).unwrap();
    if fs::read(&locked).is_ok() {
        println!("SKIP: running as root, file permissions do not deny reads");
        return;
    }
    let report = Sweeper::builder().build().unwrap().sweep(&[&dir]).unwrap();
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
    let scratch = Scratch::new("dirperm");
    let closed = scratch.dir("closed");
    let open = scratch.dir("open");
    let (pid, start) = Sleeper::spawn().kill();
    openclaw(&open.join("a.lock"), pid, start, FRESH);
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o000)).unwrap();
    let listable = fs::read_dir(&closed).is_ok();
    if listable {
        fs::set_permissions(&closed, fs::Permissions::from_mode(0o755)).unwrap();
        println!("SKIP: running as root, directory permissions do not deny listing");
        return;
    }
    let report = Sweeper::builder()
        .build()
        .unwrap()
        .sweep(&[&closed, &open])
        .unwrap();
    fs::set_permissions(&closed, fs::Permissions::from_mode(0o755)).unwrap();
    assert_eq!(report.dir_errors.len(), 1);
    assert_eq!(report.dir_errors[0].path, closed);
    assert_eq!(report.totals.errors, 1);
    assert_eq!(report.totals.removed, 1);
}
