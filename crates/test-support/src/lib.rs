//! Helpers shared by the test suites of sessionkit's crates: scratch directories that remove
//! themselves, file ages, live and dead child processes, whether the tests run as root, and
//! mounts (a small tmpfs for a full disk) that undo themselves.
//!
//! It depends on std alone, so the tests of any crate in the workspace can use it without a
//! dependency pointing back up (atomic-fs's tests included). It is not published.
//!
//! The helpers panic on any failure: they set up tests, and a set-up that fails is a failed
//! test, with the panic's message saying which step.
//!
//! # Platform behavior
//!
//! Linux: [`Sleeper`] reads its child's start time from `/proc/<pid>/stat`, [`is_root`]
//! reads the effective user id from `/proc/self/status`, and [`Mount`] runs `mount` and
//! `umount`.
//!
//! # Example
//!
//! ```
//! use sessionkit_test_support::{Scratch, set_modified_ago};
//! use std::time::Duration;
//!
//! let scratch = Scratch::new("doc");
//! std::fs::write(scratch.join("a.lock"), "{}").unwrap();
//! set_modified_ago(&scratch.join("a.lock"), Duration::from_secs(60));
//! assert_eq!(scratch.names(), ["a.lock"]);
//! let dir = scratch.path().to_path_buf();
//! drop(scratch);
//! assert!(!dir.exists());
//! ```

use std::ffi::OsStr;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

/// The environment variable that makes [`is_root`] answer `false`, to run the tests' skip
/// paths as root.
pub const NO_ROOT_VAR: &str = "SESSIONKIT_TEST_NO_ROOT";

/// A fresh, empty directory under the system temp dir, removed with everything in it on drop.
#[derive(Debug)]
pub struct Scratch {
    path: PathBuf,
}

impl Scratch {
    /// Creates `<temp dir>/sk-<tag>-<pid>-<n>`, where `n` counts the scratch directories of
    /// this process, so parallel tests never share one. A leftover of an earlier process with
    /// the same pid is removed first.
    ///
    /// The path is canonical (symlinks in the temp dir resolved), so it compares equal with
    /// the paths that code under test resolves on its own.
    pub fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sk-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)
            .unwrap_or_else(|e| panic!("create scratch dir {}: {e}", path.display()));
        let path = fs::canonicalize(&path)
            .unwrap_or_else(|e| panic!("resolve scratch dir {}: {e}", path.display()));
        Scratch { path }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `name` inside the directory (not created).
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.path.join(name)
    }

    /// The subdirectory `name`, created if missing.
    pub fn dir(&self, name: impl AsRef<Path>) -> PathBuf {
        let dir = self.join(name);
        fs::create_dir_all(&dir)
            .unwrap_or_else(|e| panic!("create directory {}: {e}", dir.display()));
        dir
    }

    /// The names in the directory, sorted.
    pub fn names(&self) -> Vec<String> {
        names_in(&self.path)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// The file names of `paths`, sorted (lossily converted to UTF-8; empty for a path without
/// one).
pub fn file_names(paths: &[PathBuf]) -> Vec<String> {
    let mut names: Vec<String> = paths
        .iter()
        .map(|p| {
            p.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default()
        })
        .collect();
    names.sort();
    names
}

/// The names of the entries in `dir`, sorted (lossily converted to UTF-8).
pub fn names_in(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
        .map(|entry| {
            entry
                .unwrap_or_else(|e| panic!("list {}: {e}", dir.display()))
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    names
}

/// Sets the modification time of the file at `path` to `ago` before now.
pub fn set_modified_ago(path: &Path, ago: Duration) {
    File::options()
        .write(true)
        .open(path)
        .and_then(|file| file.set_modified(SystemTime::now() - ago))
        .unwrap_or_else(|e| panic!("set the modification time of {}: {e}", path.display()));
}

/// True when the tests run as root (effective user id 0) and [`NO_ROOT_VAR`] is not set.
///
/// Tests that need root (mounts, PID namespaces, another user) print `SKIP:` when this is
/// false.
pub fn is_root() -> bool {
    if std::env::var_os(NO_ROOT_VAR).is_some() {
        return false;
    }
    fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|line| line.strip_prefix("Uid:"))
                .map(|ids| ids.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

/// A file system mounted for a test (a small tmpfs, a bind mount), unmounted on drop.
///
/// Mounting needs root: a test that cannot mount prints `SKIP:` with the reason
/// [`Mount::new`] gives, and checks nothing else.
#[derive(Debug)]
#[must_use = "the mount is undone when this is dropped"]
pub struct Mount {
    target: PathBuf,
}

impl Mount {
    /// Runs `mount <args> <target>`. Fails, saying why, when the tests do not run as root
    /// ([`is_root`]) or `mount` fails (a container without the capability, no `mount`).
    pub fn new(args: &[&str], target: &Path) -> Result<Mount, String> {
        if !is_root() {
            return Err("mounting needs root".to_owned());
        }
        let output = Command::new("mount")
            .args(args)
            .arg(target)
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "mount {args:?} {} failed ({}): {}",
                target.display(),
                output.status,
                String::from_utf8_lossy(&output.stderr).trim()
            ));
        }
        Ok(Mount {
            target: target.to_path_buf(),
        })
    }

    /// A tmpfs mounted on the existing directory `target` with `options`, such as `size=64k`
    /// (the file system is full past it: `ENOSPC`) or `nr_inodes=8`.
    pub fn tmpfs(target: &Path, options: &str) -> Result<Mount, String> {
        Mount::new(&["-t", "tmpfs", "-o", options, "tmpfs"], target)
    }

    /// Mounts it again with `options`, such as `remount,bind,ro`; panics if that fails.
    pub fn remount(&self, options: &str) {
        let status = Command::new("mount")
            .args(["-o", options])
            .arg(&self.target)
            .status()
            .unwrap_or_else(|e| panic!("run mount: {e}"));
        assert!(
            status.success(),
            "mount -o {options} {} failed: {status}",
            self.target.display()
        );
    }

    /// Where it is mounted.
    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.target).status();
    }
}

/// How long [`wait_until`] waits before it calls the wait a hang. Only a hang takes this long:
/// the tests run on shared, busy machines, so no test asserts that anything is fast.
pub const HANG: Duration = Duration::from_secs(300);

/// Polls `condition` every millisecond until it holds, and panics, naming `what`, if it still
/// does not after [`HANG`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + HANG;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "hung: waited {HANG:?} for {what}"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// `setpriv` arguments that run a command as user and group 65534 (`nobody`), with no
/// supplementary groups.
pub const AS_NOBODY: [&str; 3] = ["--reuid=65534", "--regid=65534", "--clear-groups"];

/// Why this process cannot run commands as user 65534, or `None` when it can.
///
/// Root ignores file permissions, so a test of how code meets a file it may not read runs that
/// code as another user: a child started with `setpriv` and [`AS_NOBODY`], which needs root.
/// [`NO_ROOT_VAR`] makes this answer as for a user, to run the tests' skip paths.
pub fn why_not_as_nobody() -> Option<String> {
    if std::env::var_os(NO_ROOT_VAR).is_some() {
        return Some(format!("{NO_ROOT_VAR} is set"));
    }
    match Command::new("setpriv")
        .args(AS_NOBODY)
        .arg("true")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
    {
        Ok(status) if status.success() => None,
        Ok(_) => Some("setpriv cannot run as user 65534 (needs root)".to_owned()),
        Err(e) => Some(format!("setpriv cannot be run: {e}")),
    }
}

/// A command that runs this test binary again as user 65534, with only the test `test`
/// (`module::function`) selected and its output not captured, so that test can take a child
/// role.
///
/// The binary may sit under a directory user 65534 cannot enter, so the child runs a link to
/// it (or a copy) named `test-binary` in `dir`, which user 65534 must be able to enter.
/// Call [`why_not_as_nobody`] first.
pub fn rerun_as_nobody(test: &str, dir: &Path) -> Command {
    let exe = std::env::current_exe().unwrap_or_else(|e| panic!("find the test binary: {e}"));
    let link = dir.join("test-binary");
    if fs::hard_link(&exe, &link).is_err() {
        fs::copy(&exe, &link)
            .unwrap_or_else(|e| panic!("copy {} to {}: {e}", exe.display(), link.display()));
    }
    set_mode(&link, 0o755);
    let mut command = Command::new("setpriv");
    command
        .args(AS_NOBODY)
        .arg(link)
        .args([test, "--exact", "--nocapture", "--test-threads=1"]);
    command
}

/// Polls `future` until `seen()` holds (the blocking work it started has left its trace),
/// and never after, then gives its blocking task 50 ms to hand its output over; true if the
/// future finished first, which spoils the attempt. Dropping the future afterwards drops
/// that output where the future is: how a test checks that a value coming back from a
/// blocking task (a lock) is not released on an async worker. Were the task slower than
/// the 50 ms, it would drop the output itself, off the worker, and the test would pass
/// without having checked anything, never fail.
pub async fn poll_until_then_settle<F: std::future::Future>(
    mut future: std::pin::Pin<&mut F>,
    mut seen: impl FnMut() -> bool,
) -> bool {
    use std::task::Poll;
    while !seen() {
        let ready = std::future::poll_fn(|cx| Poll::Ready(future.as_mut().poll(cx).is_ready()));
        if ready.await {
            return true;
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    std::thread::sleep(Duration::from_millis(50));
    false
}

/// What a test run again as another user prints once its checks have passed, for
/// [`run_as_nobody`].
pub const CHECKED_AS_NOBODY: &str = "CHECKED AS ANOTHER USER";

/// Runs the test `test` again as user 65534 ([`rerun_as_nobody`], in `dir`) with the variable
/// `var` set to `value`, which tells it to take its child role, and panics, with the child's
/// output, unless the child succeeded and printed [`CHECKED_AS_NOBODY`]: a misnamed test
/// would run nothing and still succeed.
pub fn run_as_nobody(test: &str, dir: &Path, var: &str, value: impl AsRef<OsStr>) {
    let out = rerun_as_nobody(test, dir)
        .env(var, value)
        .output()
        .unwrap_or_else(|e| panic!("run {test} as user 65534: {e}"));
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{all}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(CHECKED_AS_NOBODY),
        "{all}"
    );
}

/// Sets the permission bits of `path` to `mode`.
pub fn set_mode(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt as _;
    fs::set_permissions(path, fs::Permissions::from_mode(mode))
        .unwrap_or_else(|e| panic!("set the mode of {} to {mode:o}: {e}", path.display()));
}

/// The pid of a process that has exited and been reaped (a `true` child).
///
/// Linux gives pids out in turn, so the pid stays dead for a while; a test that must be sure
/// checks the start time too (see [`Sleeper::kill`]).
pub fn dead_pid() -> u32 {
    let mut child = Command::new("true")
        .spawn()
        .unwrap_or_else(|e| panic!("spawn true: {e}"));
    let pid = child.id();
    child
        .wait()
        .unwrap_or_else(|e| panic!("wait for true ({pid}): {e}"));
    pid
}

/// A `sleep 600` child, alive until [`kill`](Sleeper::kill)ed or dropped (then killed and
/// reaped).
#[derive(Debug)]
pub struct Sleeper {
    child: Child,
    /// The child's pid.
    pub pid: u32,
    /// The child's start time, in clock ticks since boot, as `/proc/<pid>/stat` gives it.
    pub start_time: u64,
}

impl Sleeper {
    /// Spawns the child and returns once its command line reads `sleep 600`: before its exec,
    /// a child's `/proc/<pid>/cmdline` is its parent's, and tests judge command lines.
    pub fn spawn() -> Sleeper {
        let child = Command::new("sleep")
            .arg("600")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sleep: {e}"));
        let pid = child.id();
        wait_until(&format!("sleep {pid} to show its command line"), || {
            fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|line| line == b"sleep\x00600\x00")
        });
        let start_time = start_time_of(pid);
        Sleeper {
            child,
            pid,
            start_time,
        }
    }

    /// Kills and reaps the child, and returns its pid and start time, now a dead owner's.
    pub fn kill(mut self) -> (u32, u64) {
        self.child
            .kill()
            .unwrap_or_else(|e| panic!("kill sleep {}: {e}", self.pid));
        self.child
            .wait()
            .unwrap_or_else(|e| panic!("reap sleep {}: {e}", self.pid));
        (self.pid, self.start_time)
    }
}

impl Drop for Sleeper {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Field 22 of `/proc/<pid>/stat`, counted after the command name's closing parenthesis (the
/// name may hold spaces and parentheses).
fn start_time_of(pid: u32) -> u64 {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat"))
        .unwrap_or_else(|e| panic!("read /proc/{pid}/stat: {e}"));
    let after_name = &stat[stat.rfind(')').expect("a stat line names its command") + 1..];
    after_name
        .split_whitespace()
        .nth(19)
        .and_then(|field| field.parse().ok())
        .unwrap_or_else(|| panic!("no start time in /proc/{pid}/stat: {stat}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_dirs_differ_and_are_removed() {
        let (a, b) = (Scratch::new("t"), Scratch::new("t"));
        assert_ne!(a.path(), b.path());
        fs::write(a.dir("sub").join("f"), "x").unwrap();
        assert_eq!(a.names(), ["sub"]);
        let path = a.path().to_path_buf();
        drop(a);
        assert!(!path.exists());
        assert!(b.path().is_dir());
    }

    #[test]
    fn modification_times_move_back() {
        let scratch = Scratch::new("t");
        let file = scratch.join("f");
        fs::write(&file, "x").unwrap();
        let hour = Duration::from_secs(3600);
        // The time is taken during the call, so it lies an hour before some moment between
        // these two readings of the clock, however slowly the call ran.
        let before = SystemTime::now();
        set_modified_ago(&file, hour);
        let after = SystemTime::now();
        let modified = fs::metadata(&file).unwrap().modified().unwrap();
        assert!(modified >= before - hour, "{modified:?} < {before:?} - 1 h");
        assert!(modified <= after - hour, "{modified:?} > {after:?} - 1 h");
    }

    #[test]
    fn a_sleeper_lives_until_killed_and_keeps_its_start_time() {
        let sleeper = Sleeper::spawn();
        let (pid, start) = (sleeper.pid, sleeper.start_time);
        assert_eq!(start, start_time_of(pid));
        assert!(
            start >= start_time_of(std::process::id()),
            "a child starts after its parent"
        );
        assert_eq!(sleeper.kill(), (pid, start));
        assert!(!Path::new(&format!("/proc/{pid}/stat")).exists());
    }

    #[test]
    fn a_reaped_pid_is_dead() {
        let pid = dead_pid();
        assert!(!Path::new(&format!("/proc/{pid}/stat")).exists());
    }
}
