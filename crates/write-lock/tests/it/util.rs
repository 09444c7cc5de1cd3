//! Shared helpers: planted lock records and a child process that holds a lock (this test
//! binary, run again in a child role), beside the workspace's own (scratch directories, file
//! ages, live and dead pids), re-exported.

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, SystemTime};

use sessionkit_write_lock::{LockConfig, Locker};

pub(crate) use sessionkit_test_support::{Scratch, Sleeper, dead_pid, set_modified_ago};

/// `<target>.lock`.
pub(crate) fn lock_of(target: &Path) -> PathBuf {
    let mut p = target.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// An ISO-8601 time `ago` in the past, as JavaScript writes it.
pub(crate) fn iso_ago(ago: Duration) -> String {
    let ms = (SystemTime::now() - ago)
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    let out = Command::new("date")
        .args([
            "-u",
            "-d",
            &format!("@{}.{:03}", ms / 1000, ms % 1000),
            "+%Y-%m-%dT%H:%M:%S.%3NZ",
        ])
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// Plants an OpenClaw-style record (no OS-lock promise) as the lock of `target`.
pub(crate) fn plant_legacy(
    target: &Path,
    pid: Option<u32>,
    created_ago: Option<Duration>,
    starttime: Option<u64>,
    max_hold_ms: Option<u64>,
) {
    let mut fields = Vec::new();
    if let Some(pid) = pid {
        fields.push(format!("  \"pid\": {pid}"));
    }
    if let Some(ago) = created_ago {
        fields.push(format!("  \"createdAt\": \"{}\"", iso_ago(ago)));
    }
    if let Some(st) = starttime {
        fields.push(format!("  \"starttime\": {st}"));
    }
    if let Some(max) = max_hold_ms {
        fields.push(format!("  \"maxHoldMs\": {max}"));
    }
    fs::write(lock_of(target), format!("{{\n{}\n}}", fields.join(",\n"))).unwrap();
}

/// A locker without the watchdog thread, with a short acquire timeout.
pub(crate) fn quick_locker(timeout: Duration) -> Locker {
    Locker::with_config(
        LockConfig::builder()
            .acquire_timeout(timeout)
            .watchdog(false)
            .build()
            .unwrap(),
    )
}

/// Set (to the target) in this test binary when it runs again as a [`ChildHolder`].
const HOLD_CHILD: &str = "SK_WL_TEST_HOLD";

/// A child process (this test binary) that holds the lock on a target until killed.
pub(crate) struct ChildHolder {
    pub(crate) child: Child,
}

impl ChildHolder {
    /// Runs `test` (the calling test's own name, `module::function`) again in a child that
    /// holds the lock on `target`, and returns once it does. The test must call
    /// [`holder_role`] first.
    pub(crate) fn hold(target: &Path, test: &str) -> ChildHolder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([test, "--exact", "--nocapture", "--test-threads=1"])
            .env(HOLD_CHILD, target)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines
                .next()
                .unwrap_or_else(|| panic!("the child ran no test named {test}"))
                .unwrap();
            // libtest prints "test <name> ... " on the same line before our output.
            if line.contains("HELD ") {
                break;
            }
        }
        ChildHolder { child }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the holder with SIGKILL, so nothing of it runs any more.
    pub(crate) fn kill9(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for ChildHolder {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The child side of [`ChildHolder`]: in the child, takes the lock, says so and sleeps until
/// killed, never returning; in an ordinary test run, returns at once.
///
/// The role is not a test of its own, which the test runner would count as passed; the child
/// runs the test that made it again, and that test calls this first.
pub(crate) fn holder_role() {
    let Some(target) = std::env::var_os(HOLD_CHILD) else {
        return;
    };
    let guard = Locker::new().acquire(PathBuf::from(target)).unwrap();
    println!("HELD {}", guard.generation());
    std::thread::sleep(Duration::from_secs(600));
    // The parent always kills the child; one left behind must not go on with the test.
    std::process::exit(1);
}
