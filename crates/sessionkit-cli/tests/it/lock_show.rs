//! `sessionkit lock show`: free, held, stale and malformed locks, for people and as JSON.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;
use sessionkit::lock::{LockConfig, Locker};

use crate::util::{IO_ERR, USAGE, assert_error, assert_error_line, dead_pid, names};
use crate::util::{plant_legacy_record, run, run_env};

/// A temp directory, by its real path (the lock names the target's real path).
fn real_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = fs::canonicalize(dir.path()).expect("real path");
    (dir, real)
}

/// Runs `lock show [--json] PATH` and returns its standard output; it must succeed silently
/// on stderr.
fn show(path: &Path, json: bool) -> String {
    let mut args = vec![OsStr::new("lock"), OsStr::new("show")];
    if json {
        args.push(OsStr::new("--json"));
    }
    args.push(path.as_os_str());
    let output = run(args, b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

fn show_json(path: &Path) -> Value {
    let text = show(path, true);
    assert!(text.ends_with("}\n"), "{text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

/// The value of the `field: value` line of a human report.
fn field<'a>(report: &'a str, name: &str) -> &'a str {
    let prefix = format!("{name}: ");
    report
        .lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("no `{name}` line in:\n{report}"))
}

#[test]
fn a_free_lock_shows_its_path_and_status_only() {
    let (_dir, real) = real_dir();
    let path = real.join("t");
    assert_eq!(
        show(&path, false),
        format!("lock: {}\nstatus: free\n", real.join("t.lock").display())
    );
    let json = show_json(&path);
    assert_eq!(json["status"], "free");
    assert_eq!(
        json["lockPath"],
        real.join("t.lock").to_str().expect("UTF-8")
    );
    assert_eq!(json["record"], Value::Null);
    // Looking created nothing.
    assert_eq!(names(&real), Vec::<String>::new());
}

#[test]
fn a_lock_held_by_another_process_shows_its_owner() {
    let (_dir, real) = real_dir();
    let path = real.join("t");
    let config = LockConfig::builder()
        .label("it-show")
        .max_hold(std::time::Duration::from_secs(300))
        .build()
        .expect("config");
    let guard = Locker::with_config(config)
        .acquire(&path)
        .expect("hold the lock");
    let pid = std::process::id();

    let report = show(&path, false);
    assert_eq!(
        field(&report, "lock"),
        real.join("t.lock").to_str().unwrap()
    );
    assert_eq!(field(&report, "status"), "held");
    assert!(
        field(&report, "owner").starts_with(&format!("pid {pid} (label it-show), program ")),
        "{report}"
    );
    assert!(!field(&report, "held for").is_empty(), "{report}");
    assert_eq!(field(&report, "reasons"), "none");
    assert_eq!(field(&report, "generation"), guard.generation().to_string());
    assert_eq!(field(&report, "max hold"), "300 s");

    let json = show_json(&path);
    assert_eq!(json["status"], "held");
    assert_eq!(json["record"]["pid"], pid);
    assert_eq!(json["record"]["label"], "it-show");
    assert_eq!(json["record"]["generation"], guard.generation());
    assert_eq!(json["reasons"], Value::Array(Vec::new()));
    assert_eq!(json["removable"], false);

    // Looking took nothing from the holder.
    guard.check_fence().expect("still held");
    guard.release().expect("release");
    assert_eq!(field(&show(&path, false), "status"), "free");
}

#[test]
fn a_stale_record_of_a_dead_pid_shows_why_and_is_left_alone() {
    let (_dir, real) = real_dir();
    let path = real.join("t");
    let lock = real.join("t.lock");
    let pid = dead_pid();
    let planted = plant_legacy_record(&lock, pid);

    let report = show(&path, false);
    assert_eq!(field(&report, "status"), "stale");
    assert_eq!(field(&report, "owner"), format!("pid {pid}"));
    assert_eq!(field(&report, "liveness"), "dead");
    // Created in 2020: years old.
    assert!(field(&report, "age").ends_with(" s"), "{report}");
    let reasons: Vec<&str> = field(&report, "reasons").split(", ").collect();
    assert!(reasons.contains(&"dead-pid"), "{report}");
    assert!(reasons.contains(&"too-old"), "{report}");
    assert!(!report.contains("held for"), "{report}");

    let json = show_json(&path);
    assert_eq!(json["status"], "stale");
    assert_eq!(json["record"]["pid"], pid);
    assert_eq!(json["liveness"], "dead");
    assert_eq!(json["removable"], true);
    let reasons = json["reasons"].as_array().expect("reasons array");
    assert!(reasons.contains(&Value::from("dead-pid")), "{json}");

    // Showing is not sweeping: the record is still there, byte for byte.
    assert_eq!(fs::read(&lock).expect("read back"), planted);
    assert_eq!(names(&real), ["t.lock"]);
}

#[test]
fn a_fresh_empty_lock_file_is_malformed_and_kept() {
    let (_dir, real) = real_dir();
    let path = real.join("t");
    let lock = real.join("t.lock");
    // Its owner may be writing the record right now.
    fs::write(&lock, "").expect("plant an empty lock file");
    let report = show(&path, false);
    assert_eq!(field(&report, "status"), "malformed");
    assert_eq!(
        field(&report, "owner"),
        "unknown (the lock file holds no owner record)"
    );
    let json = show_json(&path);
    assert_eq!(json["status"], "malformed");
    assert_eq!(json["record"], Value::Null);
    assert!(lock.exists());
}

#[test]
fn a_line_break_in_a_label_stays_on_its_line() {
    let (_dir, real) = real_dir();
    let path = real.join("t");
    let config = LockConfig::builder()
        .label("two\nlines")
        .build()
        .expect("config");
    let _guard = Locker::with_config(config)
        .acquire(&path)
        .expect("hold the lock");
    let report = show(&path, false);
    assert!(
        field(&report, "owner").contains("(label two\\nlines)"),
        "{report}"
    );
    assert!(report.lines().all(|line| line.contains(": ")), "{report}");
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let (_dir, real) = real_dir();
    let path = real.join("missing/t");
    for json in [false, true] {
        let mut args = vec![OsStr::new("lock"), OsStr::new("show"), path.as_os_str()];
        if json {
            args.push(OsStr::new("--json"));
        }
        let output = run(args, b"");
        assert_error(&output, IO_ERR, &path);
    }
}

#[test]
fn an_invalid_environment_value_is_a_usage_error() {
    let (_dir, real) = real_dir();
    let path = real.join("t");
    let output = run_env(
        [OsStr::new("lock"), OsStr::new("show"), path.as_os_str()],
        b"",
        &[("SESSIONKIT_LOCK_STALE_MS", "soon")],
    );
    let line = assert_error_line(&output, USAGE);
    assert!(line.contains("`SESSIONKIT_LOCK_STALE_MS`"), "{line}");
}
