//! Orphan temp-file cleanup: only our own old temp files go, everything else stays.

use std::fs::{self, File};
use std::os::unix::fs::symlink;
use std::time::{Duration, SystemTime};

use sessionkit_atomic_fs::{AtomicWriter, remove_orphan_temps};

use crate::util::Scratch;

fn age(path: &std::path::Path, by: Duration) {
    let f = File::options().write(true).open(path).unwrap();
    f.set_modified(SystemTime::now() - by).unwrap();
}

#[test]
fn removes_old_own_temps_and_nothing_else() {
    let dir = Scratch::new("orphans");
    let hour = Duration::from_secs(3600);
    let own_old = ".sessions.json.4242.0123456789abcdef.sktmp";
    let own_young = ".sessions.json.4242.fedcba9876543210.sktmp";
    let foreign = [
        "sessions.json",
        "sessions.json.tmp",
        ".fs-safe-replace.12.3e4f.tmp",
        "sessions.json.4242.0123456789abcdef.sktmp",
        ".x.12.0123456789abcdeF.sktmp",
    ];
    for name in foreign.iter().chain([&own_old, &own_young]) {
        fs::write(dir.join(name), b"data").unwrap();
    }
    for name in foreign.iter().chain([&own_old]) {
        age(&dir.join(name), hour);
    }
    // A directory and a symlink with our pattern are not regular files: left alone.
    fs::create_dir(dir.join(".d.1.0123456789abcdef.sktmp")).unwrap();
    symlink("sessions.json", dir.join(".l.1.0123456789abcdef.sktmp")).unwrap();

    let report = remove_orphan_temps(dir.path(), Duration::from_secs(60)).unwrap();
    let removed: Vec<_> = report.removed.iter().map(|r| r.path.clone()).collect();
    assert_eq!(removed, [dir.join(own_old)]);
    assert_eq!(report.removed[0].len, 4);
    assert!(report.removed[0].age >= hour);
    assert_eq!(report.kept_young, [dir.join(own_young)]);
    assert!(report.failed.is_empty());
    let mut expected: Vec<String> = foreign.iter().map(|s| s.to_string()).collect();
    expected.extend([
        own_young.to_string(),
        ".d.1.0123456789abcdef.sktmp".into(),
        ".l.1.0123456789abcdef.sktmp".into(),
    ]);
    expected.sort();
    assert_eq!(dir.names(), expected);
}

#[test]
fn temps_left_by_a_failed_write_are_found() {
    let dir = Scratch::new("orphans2");
    let writer = AtomicWriter::new();
    let pending = writer.prepare(dir.join("t"), b"x").unwrap();
    let temp = pending.temp_path().to_path_buf();
    // Simulate a crash between prepare and commit: the temp outlives its writer.
    std::mem::forget(pending);
    age(&temp, Duration::from_secs(10));
    let report = remove_orphan_temps(dir.path(), Duration::from_secs(1)).unwrap();
    assert_eq!(report.removed.len(), 1);
    assert!(dir.names().is_empty());
}

#[test]
fn missing_directory_is_an_empty_report() {
    let dir = Scratch::new("orphans3");
    let report = remove_orphan_temps(dir.join("nope"), Duration::ZERO).unwrap();
    assert!(report.removed.is_empty() && report.kept_young.is_empty() && report.failed.is_empty());
}

#[test]
fn a_file_path_is_an_error_naming_it() {
    let dir = Scratch::new("orphans4");
    fs::write(dir.join("f"), b"").unwrap();
    let err = remove_orphan_temps(dir.join("f"), Duration::ZERO).unwrap_err();
    assert_eq!(err.path(), dir.join("f"));
    assert!(
        err.to_string()
            .starts_with("failed to clean up temp files in"),
        "{err}"
    );
}
