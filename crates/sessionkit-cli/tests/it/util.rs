//! Shared helpers: run the built `sessionkit` binary and check what it reports.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;

/// The exit statuses the binary promises; the tests spell them out rather than import them.
pub(crate) const USAGE: i32 = 2;
pub(crate) const DATA_ERR: i32 = 65;
pub(crate) const IO_ERR: i32 = 74;

/// Runs `sessionkit` with `args`, feeding it `stdin`, and waits for it.
pub(crate) fn run<I, S>(args: I, stdin: &[u8]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut child = Command::new(env!("CARGO_BIN_EXE_sessionkit"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn sessionkit");
    let mut pipe = child.stdin.take().expect("stdin is piped");
    let input = stdin.to_vec();
    // A separate writer keeps a large input from filling the pipe while we wait on the child;
    // a usage error exits without reading, so a broken pipe here is expected and ignored.
    let writer = thread::spawn(move || {
        let _ = pipe.write_all(&input);
    });
    let output = child.wait_with_output().expect("wait for sessionkit");
    writer.join().expect("the stdin writer does not panic");
    output
}

/// Runs `sessionkit` with `args` and `stdin` and asserts that it succeeded silently.
pub(crate) fn run_ok<I, S>(args: I, stdin: &[u8])
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let output = run(args, stdin);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(output.stdout.is_empty(), "unexpected stdout");
    assert!(output.stderr.is_empty(), "unexpected stderr");
}

/// Asserts that `output` is a failure with exit status `code` and exactly one line on stderr
/// that starts with `sessionkit: error: ` and names `path`; returns that line.
pub(crate) fn assert_error(output: &Output, code: i32, path: &Path) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8");
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    assert!(output.stdout.is_empty(), "unexpected stdout");
    let line = stderr
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stderr does not end in a newline: {stderr:?}"));
    assert!(!line.contains('\n'), "more than one line: {stderr:?}");
    assert!(line.starts_with("sessionkit: error: "), "{line}");
    let shown = format!("`{}`", path.display());
    assert!(line.contains(&shown), "{line} does not name {shown}");
    line.to_owned()
}

/// The names in `dir`, sorted, so a test can see that no temp file was left behind.
pub(crate) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .expect("list the test directory")
        .map(|entry| {
            entry
                .expect("read a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}
