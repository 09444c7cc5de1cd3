//! `sessionkit write`: contents, options and failures.

use std::ffi::OsStr;
use std::fs;

use crate::util::{IO_ERR, assert_error, names, run, run_ok};

#[test]
fn writes_standard_input_byte_for_byte() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("state.bin");
    // NUL, invalid UTF-8 and no trailing newline must all pass through untouched.
    let contents = b"\x00head\xff\xfe\r\nmid\x00\x00tail";
    run_ok([OsStr::new("write"), file.as_os_str()], contents);
    assert_eq!(fs::read(&file).expect("read back"), contents);
    assert_eq!(names(dir.path()), ["state.bin"]);
}

#[test]
fn replaces_an_existing_file_and_leaves_no_temp_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sessions.json");
    fs::write(&file, "a much longer old version of the file\n").expect("seed");
    run_ok([OsStr::new("write"), file.as_os_str()], b"{}");
    assert_eq!(fs::read(&file).expect("read back"), b"{}");
    assert_eq!(names(dir.path()), ["sessions.json"]);
}

#[test]
fn empty_input_empties_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f");
    fs::write(&file, "old").expect("seed");
    run_ok([OsStr::new("write"), file.as_os_str()], b"");
    assert_eq!(fs::read(&file).expect("read back"), b"");
}

#[test]
fn no_fsync_still_replaces_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("cache.json");
    fs::write(&file, "old").expect("seed");
    run_ok(
        [
            OsStr::new("write"),
            OsStr::new("--no-fsync"),
            file.as_os_str(),
        ],
        b"new",
    );
    assert_eq!(fs::read(&file).expect("read back"), b"new");
    assert_eq!(names(dir.path()), ["cache.json"]);
}

#[test]
fn mkdir_creates_missing_parents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("a/b/c/state.json");
    run_ok(
        [OsStr::new("write"), OsStr::new("--mkdir"), file.as_os_str()],
        b"{}",
    );
    assert_eq!(fs::read(&file).expect("read back"), b"{}");
}

#[test]
fn a_missing_parent_without_mkdir_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("missing/state.json");
    let output = run([OsStr::new("write"), file.as_os_str()], b"{}");
    let line = assert_error(&output, IO_ERR, &file);
    assert!(line.contains("parent directory does not exist"), "{line}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn a_directory_target_is_an_io_error_and_stays_a_directory() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("sessions");
    fs::create_dir(&target).expect("make the directory");
    let output = run([OsStr::new("write"), target.as_os_str()], b"{}");
    let line = assert_error(&output, IO_ERR, &target);
    assert!(line.ends_with("it is a directory"), "{line}");
    assert!(target.is_dir());
    assert_eq!(names(dir.path()), ["sessions"]);
}

#[test]
fn the_os_error_is_appended_to_the_message() {
    let dir = tempfile::tempdir().expect("temp dir");
    let not_a_dir = dir.path().join("plain");
    fs::write(&not_a_dir, "a file, not a directory").expect("seed");
    let file = not_a_dir.join("child");
    // The library asks the OS about `file` first; ask the same question to learn its answer.
    let os_error = fs::symlink_metadata(&file).expect_err("a file has no children");
    let output = run([OsStr::new("write"), file.as_os_str()], b"{}");
    let line = assert_error(&output, IO_ERR, &file);
    assert_eq!(
        line,
        format!(
            "sessionkit: error: failed to replace `{0}`: could not inspect `{0}`: {os_error}",
            file.display()
        )
    );
    assert_eq!(
        fs::read(&not_a_dir).expect("read back"),
        b"a file, not a directory"
    );
}

#[test]
fn a_line_break_in_the_path_stays_on_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("two\nlines");
    fs::create_dir(&target).expect("make the directory");
    let output = run([OsStr::new("write"), target.as_os_str()], b"{}");
    let escaped = dir.path().join("two\\nlines");
    let line = assert_error(&output, IO_ERR, &escaped);
    assert!(line.ends_with("it is a directory"), "{line}");
}
