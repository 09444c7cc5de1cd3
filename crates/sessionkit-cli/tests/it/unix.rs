//! Unix-only behaviour: file modes, symlinks and unreadable standard input.
#![cfg(unix)]

use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::fs::{PermissionsExt as _, symlink};
use std::path::Path;
use std::process::{Command, Stdio};

use crate::util::{IO_ERR, names, run_ok};

fn mode_of(path: &Path) -> u32 {
    fs::metadata(path).expect("stat").permissions().mode() & 0o7777
}

#[test]
fn new_files_get_0600_by_default() {
    let dir = tempfile::tempdir().expect("temp dir");
    let written = dir.path().join("written");
    let appended = dir.path().join("appended.jsonl");
    run_ok([OsStr::new("write"), written.as_os_str()], b"x");
    run_ok([OsStr::new("append"), appended.as_os_str()], b"{}");
    assert_eq!(mode_of(&written), 0o600);
    assert_eq!(mode_of(&appended), 0o600);
}

#[test]
fn mode_sets_the_mode_in_every_spelling() {
    let dir = tempfile::tempdir().expect("temp dir");
    for (spelling, mode) in [("644", 0o644), ("0640", 0o640), ("0o604", 0o604)] {
        let file = dir.path().join(format!("f{spelling}"));
        run_ok(
            [
                OsStr::new("write"),
                OsStr::new("--mode"),
                OsStr::new(spelling),
                file.as_os_str(),
            ],
            b"x",
        );
        assert_eq!(mode_of(&file), mode, "--mode {spelling}");
    }
}

#[test]
fn mode_changes_an_existing_files_mode() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f");
    fs::write(&file, "old").expect("seed");
    fs::set_permissions(&file, fs::Permissions::from_mode(0o600)).expect("chmod");
    run_ok(
        [
            OsStr::new("write"),
            OsStr::new("--mode=644"),
            file.as_os_str(),
        ],
        b"new",
    );
    assert_eq!(mode_of(&file), 0o644);
}

#[test]
fn a_replaced_file_keeps_its_mode_without_the_option() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f");
    fs::write(&file, "old").expect("seed");
    // 0640 differs from both the default 0600 and what the umask would give.
    fs::set_permissions(&file, fs::Permissions::from_mode(0o640)).expect("chmod");
    run_ok([OsStr::new("write"), file.as_os_str()], b"new");
    assert_eq!(mode_of(&file), 0o640);
    assert_eq!(fs::read(&file).expect("read back"), b"new");
}

#[test]
fn a_symlink_is_followed_one_hop_and_kept() {
    let dir = tempfile::tempdir().expect("temp dir");
    let real = dir.path().join("real");
    let link = dir.path().join("link");
    fs::write(&real, "old").expect("seed");
    symlink("real", &link).expect("symlink");
    run_ok([OsStr::new("write"), link.as_os_str()], b"new");
    assert_eq!(fs::read(&real).expect("read back"), b"new");
    assert!(
        fs::symlink_metadata(&link)
            .expect("lstat")
            .file_type()
            .is_symlink()
    );
}

/// A standard input that cannot be read, and the error reading it gives: reading a directory
/// fails with EISDIR, which stands in for a broken input stream.
fn broken_stdin(dir: &Path) -> (File, std::io::Error) {
    let stdin = File::open(dir).expect("open the directory");
    let os_error = std::io::Read::read(&mut &stdin, &mut [0; 1]).expect_err("a directory");
    (stdin, os_error)
}

/// Runs `sessionkit args` with `stdin`, checks that it exits with `IO_ERR`, and returns its
/// standard error.
fn fails_reading(args: &[&OsStr], stdin: File) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_sessionkit"))
        .args(args)
        .stdin(Stdio::from(stdin))
        .output()
        .expect("run sessionkit");
    let stderr = String::from_utf8(output.stderr).expect("stderr is UTF-8");
    assert_eq!(output.status.code(), Some(IO_ERR), "{stderr}");
    stderr
}

#[test]
fn unreadable_standard_input_is_an_io_error_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f");
    let (stdin, os_error) = broken_stdin(dir.path());
    for command in ["write", "append"] {
        let args = [OsStr::new(command), file.as_os_str()];
        let stderr = fails_reading(&args, stdin.try_clone().expect("dup"));
        // The message names standard input, not the path, so check it in full.
        assert_eq!(
            stderr,
            format!("sessionkit: error: failed to read standard input: {os_error}\n")
        );
        assert_eq!(names(dir.path()), Vec::<String>::new());
    }
}

#[test]
fn unreadable_standard_input_for_store_set_names_the_key_and_the_store() {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("sessions.json");
    let (stdin, os_error) = broken_stdin(dir.path());
    let args = [
        OsStr::new("store"),
        OsStr::new("set"),
        path.as_os_str(),
        OsStr::new("agent:main:main"),
    ];
    let stderr = fails_reading(&args, stdin);
    assert_eq!(
        stderr,
        format!(
            "sessionkit: error: failed to read standard input to set `agent:main:main` in `{}`: \
             {os_error}\n",
            path.display()
        )
    );
    // The input is read before the store is opened: nothing is created.
    assert_eq!(names(dir.path()), Vec::<String>::new());
}
