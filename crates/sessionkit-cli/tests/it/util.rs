//! Shared helpers: run the built `sessionkit` binary and check what it reports.

use std::ffi::OsStr;
use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::thread;

// `names` lists a directory, sorted, so a test can see that no temp file was left behind.
pub(crate) use sessionkit_test_support::{dead_pid, names_in as names};

/// The exit statuses the binary promises; the tests spell them out rather than import them.
pub(crate) const USAGE: i32 = 2;
pub(crate) const DATA_ERR: i32 = 65;
pub(crate) const IO_ERR: i32 = 74;
pub(crate) const TEMP_FAIL: i32 = 75;
pub(crate) const CANNOT_RUN: i32 = 127;

/// The variables that change the lock's settings; every run starts without them, so a
/// developer's own settings cannot change what a test sees.
const LOCK_ENV: [&str; 3] = [
    "SESSIONKIT_LOCK_ACQUIRE_TIMEOUT_MS",
    "SESSIONKIT_LOCK_MAX_HOLD_MS",
    "SESSIONKIT_LOCK_STALE_MS",
];

/// Runs `sessionkit` with `args` as user 65534 (call `why_not_as_nobody` first), with the
/// lock variables unset as `run` does. The built binary may sit under a directory that user
/// cannot enter, so this runs a link to it (or a copy) at `dir/sessionkit-binary`, which it
/// removes again; `dir` must be open to all.
pub(crate) fn run_as_nobody<I, S>(dir: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    use std::os::unix::fs::PermissionsExt as _;
    let binary = dir.join("sessionkit-binary");
    if std::fs::hard_link(env!("CARGO_BIN_EXE_sessionkit"), &binary).is_err() {
        std::fs::copy(env!("CARGO_BIN_EXE_sessionkit"), &binary).expect("copy the binary");
    }
    std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755))
        .expect("make the binary runnable by all");
    let mut command = Command::new("setpriv");
    command
        .args(sessionkit_test_support::AS_NOBODY)
        .arg(&binary)
        .args(args);
    for var in LOCK_ENV {
        command.env_remove(var);
    }
    let output = command.output().expect("run sessionkit as user 65534");
    std::fs::remove_file(&binary).expect("remove the binary's link");
    output
}

/// Runs `sessionkit` with `args`, feeding it `stdin`, and waits for it.
pub(crate) fn run<I, S>(args: I, stdin: &[u8]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run_env(args, stdin, &[])
}

/// Runs `sessionkit` as [`run`] does, with the variables `env` set.
pub(crate) fn run_env<I, S>(args: I, stdin: &[u8], env: &[(&str, &str)]) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = sessionkit();
    command.envs(env.iter().copied()).args(args);
    finish(command, stdin)
}

/// Runs `sessionkit` as [`run`] does (with no input), in the working directory `cwd`.
pub(crate) fn run_in<I, S>(cwd: &Path, args: I) -> Output
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut command = sessionkit();
    command.current_dir(cwd).args(args);
    finish(command, b"")
}

/// The built `sessionkit`, without the lock variables.
fn sessionkit() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_sessionkit"));
    for name in LOCK_ENV {
        command.env_remove(name);
    }
    command
}

/// Runs `command`, feeding it `stdin`, and waits for it.
fn finish(mut command: Command, stdin: &[u8]) -> Output {
    let mut child = command
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
    let line = assert_error_line(output, code);
    assert!(output.stdout.is_empty(), "unexpected stdout");
    let shown = format!("`{}`", path.display());
    assert!(line.contains(&shown), "{line} does not name {shown}");
    line
}

/// Asserts that `output` is a failure with exit status `code` and exactly one line on stderr
/// that starts with `sessionkit: error: `; returns that line. Standard output is not checked:
/// under `lock run` it is the command's.
pub(crate) fn assert_error_line(output: &Output, code: i32) -> String {
    let stderr = String::from_utf8(output.stderr.clone()).expect("stderr is UTF-8");
    assert_eq!(output.status.code(), Some(code), "stderr: {stderr}");
    let line = stderr
        .strip_suffix('\n')
        .unwrap_or_else(|| panic!("stderr does not end in a newline: {stderr:?}"));
    assert!(!line.contains('\n'), "more than one line: {stderr:?}");
    assert!(line.starts_with("sessionkit: error: "), "{line}");
    line.to_owned()
}

/// Plants an old-format lock record (OpenClaw's: pid and creation time only) at `lock_path`,
/// naming `pid` and created in 2020; returns its bytes.
pub(crate) fn plant_legacy_record(lock_path: &Path, pid: u32) -> Vec<u8> {
    let record = format!("{{\"pid\": {pid}, \"createdAt\": \"2020-01-01T00:00:00.000Z\"}}\n");
    std::fs::write(lock_path, &record).expect("plant the lock record");
    record.into_bytes()
}
