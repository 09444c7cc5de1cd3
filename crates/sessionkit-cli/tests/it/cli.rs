//! Parsing, help, version and usage errors.

use std::ffi::OsStr;

use crate::util::{USAGE, run};

#[test]
fn help_lists_the_commands_and_succeeds() {
    let output = run(["--help"], b"");
    assert_eq!(output.status.code(), Some(0));
    let help = String::from_utf8(output.stdout).expect("help is UTF-8");
    assert!(help.contains("write"), "{help}");
    assert!(help.contains("append"), "{help}");
    assert!(help.contains("lock"), "{help}");
    assert!(output.stderr.is_empty());
}

#[test]
fn version_prints_the_package_version() {
    let output = run(["--version"], b"");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        String::from_utf8(output.stdout).expect("version is UTF-8"),
        format!("sessionkit {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn usage_errors_exit_2_and_write_nothing() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f");
    let cases: [&[&str]; 9] = [
        &[],
        &["frobnicate"],
        &["write"],
        &["append", "--no-fsync"],
        &["write", "--fsync"],
        &["lock"],
        &["lock", "frobnicate"],
        &["lock", "show", "--fsync"],
        &["lock", "run", "--json"],
    ];
    for args in cases {
        let mut args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        // A case with an option also gets a path, so only the option can be at fault.
        if args.len() > 1 {
            args.push(file.as_os_str());
        }
        let output = run(&args, b"data");
        assert_eq!(output.status.code(), Some(USAGE), "{args:?}");
        assert!(!output.stderr.is_empty(), "{args:?}");
        assert!(!file.exists(), "{args:?} wrote the file");
    }
}

#[test]
fn bad_modes_are_usage_errors() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("f");
    for mode in ["9", "10000", "0o17777", "rw-r--r--", "", "-1"] {
        let mode_arg = format!("--mode={mode}");
        let output = run(
            [OsStr::new("write"), OsStr::new(&mode_arg), file.as_os_str()],
            b"data",
        );
        assert_eq!(output.status.code(), Some(USAGE), "--mode={mode}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("--mode"), "{stderr}");
        assert!(!file.exists(), "--mode={mode} wrote the file");
    }
}
