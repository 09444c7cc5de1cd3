//! `sessionkit append`: records, newline handling and failures.

use std::ffi::OsStr;
use std::fs;

use crate::util::{DATA_ERR, IO_ERR, assert_error, run, run_ok};

#[test]
fn each_call_appends_exactly_one_line() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.jsonl");
    let args = [OsStr::new("append"), file.as_os_str()];
    run_ok(args, b"{\"a\":1}\n");
    run_ok(args, b"{\"b\":2}");
    run_ok(args, b"{\"c\":3}\r\n");
    assert_eq!(
        fs::read(&file).expect("read back"),
        b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}\n"
    );
}

#[test]
fn the_record_is_not_parsed_and_other_bytes_pass_through() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.jsonl");
    // A lone carriage return is not a line ending, so it is part of the record.
    run_ok(
        [OsStr::new("append"), file.as_os_str()],
        b"not json \x00\xff\r",
    );
    assert_eq!(
        fs::read(&file).expect("read back"),
        b"not json \x00\xff\r\n"
    );
}

#[test]
fn records_with_a_newline_inside_are_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.jsonl");
    fs::write(&file, "{\"a\":1}\n").expect("seed");
    // Only one trailing line ending is stripped, so a second one is a newline inside.
    for input in [
        &b"{\"b\":2}\n{\"c\":3}\n"[..],
        b"{\"b\":2}\n\n",
        b"{}\r\n\r\n",
    ] {
        let output = run([OsStr::new("append"), file.as_os_str()], input);
        let line = assert_error(&output, DATA_ERR, &file);
        assert!(line.ends_with("the record contains a newline"), "{line}");
        assert_eq!(fs::read(&file).expect("read back"), b"{\"a\":1}\n");
    }
}

#[test]
fn empty_records_are_refused() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.jsonl");
    for input in [&b""[..], b"\n", b"\r\n"] {
        let output = run([OsStr::new("append"), file.as_os_str()], input);
        let line = assert_error(&output, DATA_ERR, &file);
        assert!(line.ends_with("the record is empty"), "{line}");
        assert!(!file.exists(), "{input:?} created the file");
    }
}

#[test]
fn fsync_appends_and_creates_the_file() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("t.jsonl");
    let args = [
        OsStr::new("append"),
        OsStr::new("--fsync"),
        file.as_os_str(),
    ];
    run_ok(args, b"{\"a\":1}\n");
    run_ok(args, b"{\"b\":2}\n");
    assert_eq!(
        fs::read(&file).expect("read back"),
        b"{\"a\":1}\n{\"b\":2}\n"
    );
}

#[test]
fn mkdir_creates_missing_parents() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sessions/agent/t.jsonl");
    run_ok(
        [
            OsStr::new("append"),
            OsStr::new("--mkdir"),
            OsStr::new("--fsync"),
            file.as_os_str(),
        ],
        b"{}\n",
    );
    assert_eq!(fs::read(&file).expect("read back"), b"{}\n");
}

#[test]
fn a_missing_parent_without_mkdir_is_an_io_error() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("missing/t.jsonl");
    let output = run([OsStr::new("append"), file.as_os_str()], b"{}\n");
    let line = assert_error(&output, IO_ERR, &file);
    assert!(line.contains("parent directory does not exist"), "{line}");
    assert!(!dir.path().join("missing").exists());
}

#[test]
fn a_directory_target_is_an_io_error_with_the_os_reason() {
    let dir = tempfile::tempdir().expect("temp dir");
    let target = dir.path().join("t.jsonl");
    fs::create_dir(&target).expect("make the directory");
    let output = run([OsStr::new("append"), target.as_os_str()], b"{}\n");
    let line = assert_error(&output, IO_ERR, &target);
    // The library's message ends at the step; the OS error follows after one more ": ".
    let step = format!("could not open `{}`: ", target.display());
    let (_, os_error) = line
        .split_once(&step)
        .unwrap_or_else(|| panic!("{line} does not name the open step"));
    assert!(!os_error.is_empty(), "{line}");
    assert!(target.is_dir());
}
