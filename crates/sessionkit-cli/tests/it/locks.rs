//! `sessionkit locks`: every lock listed with its status and reasons, nothing removed.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::Value;

use sessionkit_test_support::{wait_until, why_not_as_nobody};

use crate::util::{
    USAGE, assert_error_line, dead_pid, names, plant_legacy_record, run, run_as_nobody, run_env,
};

/// A directory with three planted locks: a dead owner's (`dead.jsonl.lock`), a live owner's
/// (`live.jsonl.lock`, owned by a `sleep` that is killed on drop) and a fresh `{}`
/// (`fresh.lock`), plus a file that is not a lock.
pub(crate) struct Planted {
    pub(crate) dir: tempfile::TempDir,
    pub(crate) live_pid: u32,
    pub(crate) dead_pid: u32,
    sleeper: Child,
}

impl Planted {
    pub(crate) fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let sleeper = Command::new("sleep")
            .arg("60")
            .spawn()
            .expect("spawn sleep");
        let live_pid = sleeper.id();
        // The parent may run on before the child's exec has set up its arguments; the
        // command line is what the foreign-owner tests judge, so wait for the real one.
        wait_until(
            &format!("sleep {live_pid} to show its command line"),
            || {
                fs::read(format!("/proc/{live_pid}/cmdline"))
                    .is_ok_and(|cmdline| cmdline.starts_with(b"sleep\0"))
            },
        );
        let dead_pid = dead_pid();
        plant_legacy_record(&dir.path().join("dead.jsonl.lock"), dead_pid);
        plant_legacy_record(&dir.path().join("live.jsonl.lock"), live_pid);
        fs::write(dir.path().join("fresh.lock"), "{}").expect("plant {}");
        fs::write(dir.path().join("notes.txt"), "not a lock").expect("plant a non-lock");
        Planted {
            dir,
            live_pid,
            dead_pid,
            sleeper,
        }
    }

    pub(crate) fn path(&self) -> &Path {
        self.dir.path()
    }

    pub(crate) fn lock(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub(crate) fn all_names() -> Vec<String> {
        [
            "dead.jsonl.lock",
            "fresh.lock",
            "live.jsonl.lock",
            "notes.txt",
        ]
        .map(str::to_owned)
        .to_vec()
    }
}

impl Drop for Planted {
    fn drop(&mut self) {
        let _ = self.sleeper.kill();
        let _ = self.sleeper.wait();
    }
}

/// Runs `sessionkit` with `args`, asserts exit 0 and an empty stderr, returns stdout.
pub(crate) fn stdout_ok(args: &[&std::ffi::OsStr]) -> String {
    let output = run(args, b"");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    String::from_utf8(output.stdout).expect("stdout is UTF-8")
}

fn line_of<'a>(out: &'a str, path: &Path) -> &'a str {
    let shown = format!(" {}  ", path.display());
    out.lines()
        .find(|line| line.contains(&shown))
        .unwrap_or_else(|| panic!("no line for {} in:\n{out}", path.display()))
}

#[test]
fn locks_are_listed_with_status_and_reasons_and_nothing_is_removed() {
    let planted = Planted::new();
    let out = stdout_ok(&["locks".as_ref(), planted.path().as_os_str()]);

    let dead = line_of(&out, &planted.lock("dead.jsonl.lock"));
    assert!(dead.starts_with("stale "), "{dead}");
    assert!(
        dead.contains(&format!("pid {}  ", planted.dead_pid)),
        "{dead}"
    );
    assert!(dead.contains("age 2"), "{dead}");
    assert!(dead.ends_with("reasons: dead-pid, too-old"), "{dead}");

    let live = line_of(&out, &planted.lock("live.jsonl.lock"));
    assert!(live.starts_with("held "), "{live}");
    assert!(
        live.contains(&format!("pid {}  ", planted.live_pid)),
        "{live}"
    );
    assert!(!live.contains("dead-pid"), "{live}");

    let fresh = line_of(&out, &planted.lock("fresh.lock"));
    assert!(fresh.starts_with("malformed "), "{fresh}");
    assert!(!fresh.contains("pid "), "{fresh}");

    assert_eq!(out.lines().count(), 4, "{out}");
    assert!(
        out.ends_with("\n3 locks: 1 held, 1 stale, 1 malformed\n"),
        "{out}"
    );
    assert_eq!(names(planted.path()), Planted::all_names());
}

#[test]
fn json_is_the_dry_run_report() {
    let planted = Planted::new();
    let out = stdout_ok(&[
        "locks".as_ref(),
        "--json".as_ref(),
        planted.path().as_os_str(),
    ]);
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["dryRun"], true);
    assert_eq!(json["totals"]["scanned"], 3);
    assert_eq!(json["totals"]["stale"], 1);
    assert_eq!(json["totals"]["removed"], 0);
    let entries = json["entries"].as_array().expect("entries");
    let status = |name: &str| {
        let path = planted.lock(name);
        entries
            .iter()
            .find(|e| e["path"] == path.to_str().expect("UTF-8"))
            .unwrap_or_else(|| panic!("no entry for {name}: {out}"))["status"]
            .clone()
    };
    assert_eq!(status("dead.jsonl.lock"), "stale");
    assert_eq!(status("live.jsonl.lock"), "held");
    assert_eq!(status("fresh.lock"), "malformed");
    assert_eq!(names(planted.path()), Planted::all_names());
}

#[test]
fn a_missing_directory_has_no_locks() {
    let dir = tempfile::tempdir().expect("temp dir");
    let missing = dir.path().join("missing");
    let out = stdout_ok(&["locks".as_ref(), missing.as_os_str()]);
    assert_eq!(out, "0 locks: 0 held, 0 stale, 0 malformed\n");
    assert!(!missing.exists());
}

#[test]
fn usage_errors_exit_2() {
    let output = run(["locks"], b"");
    assert_eq!(output.status.code(), Some(USAGE));
    let dir = tempfile::tempdir().expect("temp dir");
    let output = run_env(
        ["locks".as_ref(), dir.path().as_os_str()],
        b"",
        &[("SESSIONKIT_LOCK_STALE_MS", "soon")],
    );
    let line = assert_error_line(&output, USAGE);
    assert!(line.contains("SESSIONKIT_LOCK_STALE_MS"), "{line}");
}

#[test]
fn another_users_locks_are_read_without_the_noatime_flag() {
    use std::os::unix::fs::PermissionsExt as _;
    // Linux refuses `O_NOATIME` on a file of another user (`EPERM`); the look must open the
    // file again without it rather than report an error.
    if let Some(why) = why_not_as_nobody() {
        println!("SKIP: another user's locks: {why}");
        return;
    }
    let planted = Planted::new();
    fs::set_permissions(planted.path(), fs::Permissions::from_mode(0o755))
        .expect("open the directory to all");
    for name in ["dead.jsonl.lock", "live.jsonl.lock", "fresh.lock"] {
        fs::set_permissions(planted.lock(name), fs::Permissions::from_mode(0o644))
            .expect("make the lock readable by all");
    }
    // The binary's link in the planted directory is not a lock and is never looked at.
    let output = run_as_nobody(
        planted.path(),
        [
            OsStr::new("locks"),
            OsStr::new("--json"),
            planted.path().as_os_str(),
        ],
    );
    let out = String::from_utf8_lossy(&output.stdout);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{out}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let json: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(json["totals"]["scanned"], 3, "{out}");
    assert_eq!(json["totals"]["errors"], 0, "{out}");
    assert_eq!(json["totals"]["stale"], 1, "{out}");
    let dead = json["entries"]
        .as_array()
        .expect("entries")
        .iter()
        .find(|e| e["path"] == planted.lock("dead.jsonl.lock").to_str().expect("UTF-8"))
        .unwrap_or_else(|| panic!("no entry for the dead owner's lock: {out}"));
    assert_eq!(dead["pid"], planted.dead_pid, "{out}");
    assert_eq!(names(planted.path()), Planted::all_names());
}
