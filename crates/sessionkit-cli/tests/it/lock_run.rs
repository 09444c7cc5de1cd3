//! `sessionkit lock run`: the command's status, contention, revocation and settings.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

use sessionkit::lock::{LockConfig, Locker};

use crate::util::{
    CANNOT_RUN, TEMP_FAIL, USAGE, assert_error, assert_error_line, dead_pid, names,
    plant_legacy_record, run, run_env,
};

/// `<path>.lock`, the lock file of `path`.
fn lock_file(path: &Path) -> PathBuf {
    let mut lock = path.as_os_str().to_owned();
    lock.push(".lock");
    PathBuf::from(lock)
}

/// `sessionkit lock run <options> <path> -- <command>`.
fn lock_run<'a>(options: &[&'a str], path: &'a Path, command: &[&'a str]) -> Vec<&'a OsStr> {
    let mut args: Vec<&OsStr> = vec![OsStr::new("lock"), OsStr::new("run")];
    args.extend(options.iter().map(|option| OsStr::new(*option)));
    args.push(path.as_os_str());
    args.push(OsStr::new("--"));
    args.extend(command.iter().map(|word| OsStr::new(*word)));
    args
}

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("stdout is UTF-8")
}

#[test]
fn a_command_runs_and_no_lock_file_is_left() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.json");
    let output = run(lock_run(&[], &path, &["true"]), b"");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty() && output.stderr.is_empty());
    // The target is not created; only the generation counter stays, by design.
    assert_eq!(names(dir.path()), ["sessions.json.lock.gen"]);
}

#[test]
fn the_commands_exit_status_is_passed_on() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    for (script, code) in [
        ("exit 3", 3),
        ("exit 0", 0),
        ("exit 255", 255),
        ("exit 75", 75),
        // Killed by a signal: 128 plus its number, as shells report it.
        ("kill -TERM $$", 128 + 15),
        ("kill -KILL $$", 128 + 9),
    ] {
        let output = run(lock_run(&[], &path, &["sh", "-c", script]), b"");
        assert_eq!(output.status.code(), Some(code), "{script}");
        assert!(output.stderr.is_empty(), "{script}");
        assert!(!lock_file(&path).exists(), "{script} left the lock file");
    }
}

#[test]
fn the_command_gets_its_arguments_and_standard_streams() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    // Words that look like options belong to the command once they follow `--`.
    let output = run(
        lock_run(
            &[],
            &path,
            &[
                "sh",
                "-c",
                "printf '%s|' \"$@\"; cat; echo oops >&2",
                "sh",
                "--timeout",
                "-x",
            ],
        ),
        b"from stdin",
    );
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(stdout_of(&output), "--timeout|-x|from stdin");
    assert_eq!(output.stderr, b"oops\n");
}

#[test]
fn the_command_runs_while_the_lock_is_held() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    let show = env!("CARGO_BIN_EXE_sessionkit");
    let output = run(
        lock_run(
            &["--label", "job-7"],
            &path,
            &[
                show,
                "lock",
                "show",
                path.to_str().expect("UTF-8 temp path"),
            ],
        ),
        b"",
    );
    assert_eq!(output.status.code(), Some(0));
    let shown = stdout_of(&output);
    assert!(shown.contains("\nstatus: held\n"), "{shown}");
    assert!(
        shown.contains(" (label job-7), program sessionkit"),
        "{shown}"
    );
    assert!(!lock_file(&path).exists());
}

#[test]
fn a_command_that_cannot_start_exits_127() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    let missing = dir.path().join("no-such-command");
    let output = run(
        lock_run(&[], &path, &[missing.to_str().expect("UTF-8 temp path")]),
        b"",
    );
    let line = assert_error_line(&output, CANNOT_RUN);
    assert!(
        line.starts_with(&format!(
            "sessionkit: error: could not run `{}`: ",
            missing.display()
        )),
        "{line}"
    );
    assert!(!lock_file(&path).exists());
}

#[test]
fn a_held_lock_times_out_with_75_naming_the_holder() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    let marker = dir.path().join("ran");
    let config = LockConfig::builder()
        .label("it-holder")
        .build()
        .expect("config");
    let guard = Locker::with_config(config)
        .acquire(&path)
        .expect("hold the lock");
    // `0s` tries once without waiting.
    for timeout in ["200ms", "0s"] {
        let output = run(
            lock_run(
                &["--timeout", timeout],
                &path,
                &["touch", marker.to_str().expect("UTF-8 temp path")],
            ),
            b"",
        );
        let line = assert_error(&output, TEMP_FAIL, &path);
        let holder = format!("held by pid {} (it-holder), held for ", std::process::id());
        assert!(line.contains(&holder), "{line}");
        assert!(!marker.exists(), "the command ran without the lock");
    }
    // The holder was not robbed.
    guard.check_fence().expect("the lock is still the test's");
    guard.release().expect("release");
    assert!(!lock_file(&path).exists());
}

#[test]
fn a_lock_revoked_after_its_max_hold_stops_the_command_and_exits_75() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    // The command says when it gets SIGTERM; it stops its sleep so that nothing outlives it.
    let script = "trap 'echo got SIGTERM; kill $!; exit 0' TERM; sleep 30 & wait";
    let output = run(
        lock_run(&["--max-hold", "300ms"], &path, &["sh", "-c", script]),
        b"",
    );
    let line = assert_error_line(&output, TEMP_FAIL);
    assert!(line.contains(&format!("`{}`", path.display())), "{line}");
    assert!(
        line.contains("was revoked after its max hold of 300 ms while `sh` (pid "),
        "{line}"
    );
    assert!(line.ends_with("; sent it SIGTERM"), "{line}");
    assert_eq!(stdout_of(&output), "got SIGTERM\n");
    // The watchdog removed the lock file when it revoked the lock.
    assert!(!lock_file(&path).exists());
}

#[test]
fn the_max_hold_comes_from_the_environment_and_the_flag_wins() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    let env = [("SESSIONKIT_LOCK_MAX_HOLD_MS", "300")];
    let output = run_env(lock_run(&[], &path, &["sleep", "30"]), b"", &env);
    let line = assert_error_line(&output, TEMP_FAIL);
    assert!(
        line.contains("revoked after its max hold of 300 ms"),
        "{line}"
    );
    // A max hold longer than the 30 min stale age also works: the stale age follows it. The
    // command prints the lock's record, which holds the max hold the lock was taken with.
    let lock = lock_file(&path);
    let cat = ["cat", lock.to_str().expect("UTF-8 temp path")];
    let output = run_env(lock_run(&["--max-hold", "1h"], &path, &cat), b"", &env);
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let record: serde_json::Value =
        serde_json::from_str(&stdout_of(&output)).expect("the record is JSON");
    // The flag won over the environment's 300 ms.
    assert_eq!(record["maxHoldMs"], 3_600_000, "{record}");
}

#[test]
fn an_invalid_environment_value_is_a_usage_error_naming_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    let marker = dir.path().join("ran");
    for (name, value) in [
        ("SESSIONKIT_LOCK_MAX_HOLD_MS", "5m"),
        ("SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS", "-1"),
        ("SESSIONKIT_LOCK_STALE_MS", "0"),
    ] {
        let output = run_env(
            lock_run(
                &["--timeout", "1s", "--max-hold", "1s"],
                &path,
                &["touch", marker.to_str().expect("UTF-8 temp path")],
            ),
            b"",
            &[(name, value)],
        );
        let line = assert_error_line(&output, USAGE);
        assert!(line.contains(&format!("`{name}`")), "{line}");
        assert!(!marker.exists(), "{name}={value} ran the command");
    }
}

#[test]
fn bad_durations_and_a_missing_command_are_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    let marker = dir.path().join("ran");
    let touch = ["touch", marker.to_str().expect("UTF-8 temp path")];
    for (flag, value) in [
        ("--timeout", "5"),
        ("--timeout", "-5s"),
        ("--timeout", "1.5s"),
        ("--timeout", "1d"),
        ("--max-hold", "0s"),
        ("--max-hold", "5 m"),
        ("--max-hold", ""),
    ] {
        let option = format!("{flag}={value}");
        let output = run(lock_run(&[&option], &path, &touch), b"");
        assert_eq!(output.status.code(), Some(USAGE), "{option}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(flag), "{option}: {stderr}");
        assert!(!marker.exists(), "{option} ran the command");
    }
    // Without `--`, or with nothing after it, there is no command to run.
    let cases: [&[&OsStr]; 3] = [
        &[OsStr::new("lock"), OsStr::new("run"), path.as_os_str()],
        &[
            OsStr::new("lock"),
            OsStr::new("run"),
            path.as_os_str(),
            OsStr::new("--"),
        ],
        &[
            OsStr::new("lock"),
            OsStr::new("run"),
            path.as_os_str(),
            OsStr::new(touch[0]),
            OsStr::new(touch[1]),
        ],
    ];
    for args in cases {
        let output = run(args, b"");
        assert_eq!(output.status.code(), Some(USAGE), "{args:?}");
        assert!(!marker.exists(), "{args:?} ran the command");
    }
    assert!(!lock_file(&path).exists());
}

#[test]
fn a_stale_lock_of_a_dead_process_is_recovered() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    plant_legacy_record(&lock_file(&path), dead_pid());
    let output = run(lock_run(&["--timeout", "0s"], &path, &["true"]), b"");
    assert_eq!(
        output.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(!lock_file(&path).exists());
}

#[test]
fn a_missing_directory_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("missing/t");
    let output = run(lock_run(&[], &path, &["true"]), b"");
    assert_error(&output, crate::util::IO_ERR, &path);
    assert_eq!(names(dir.path()), Vec::<String>::new());
}

#[test]
fn the_lock_file_is_removed_even_if_the_target_exists() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("t");
    fs::write(&path, "state").expect("seed");
    let output = run(lock_run(&[], &path, &["true"]), b"");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(fs::read(&path).expect("read back"), b"state");
    assert_eq!(names(dir.path()), ["t", "t.lock.gen"]);
}
