//! Shared helpers: scratch directories, planted lock records, live and dead pids, and a child
//! process that holds a lock (this test binary, run again in a child role).

use std::fs::{self, File};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime};

use sessionkit_write_lock::{LockConfig, Locker, OwnerLookup, ProcLookup};

/// A scratch directory removed on drop.
#[derive(Debug)]
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub(crate) fn new(tag: &str) -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "sk-wl-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path).unwrap();
        // Resolve symlinks in the temp dir itself, so paths compare with the lock's real paths.
        Scratch {
            path: fs::canonicalize(path).unwrap(),
        }
    }

    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.path);
    }
}

/// `<target>.lock`.
pub(crate) fn lock_of(target: &Path) -> PathBuf {
    let mut p = target.as_os_str().to_owned();
    p.push(".lock");
    PathBuf::from(p)
}

/// Sets a file's modification time `ago` in the past.
pub(crate) fn age(path: &Path, ago: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
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

/// A live process (`sleep 600`) and its start time; killed on drop.
pub(crate) struct LiveProcess {
    pub(crate) child: Child,
    pub(crate) start_time: u64,
}

impl LiveProcess {
    pub(crate) fn spawn() -> LiveProcess {
        let child = Command::new("sleep").arg("600").spawn().unwrap();
        // The parent may run on before the child's exec has set up its arguments, and until
        // then `/proc/<pid>/cmdline` is empty; wait for the real one.
        for tries in 0.. {
            if let Ok(Some(argv)) = ProcLookup.cmdline(child.id())
                && argv.first().is_some_and(|a| a == "sleep")
            {
                break;
            }
            assert!(
                tries < 5000,
                "child {} never showed its command line",
                child.id()
            );
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let start_time = ProcLookup.probe(child.id()).unwrap().start_time.unwrap();
        LiveProcess { child, start_time }
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for LiveProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The pid of a process that has exited and been reaped.
pub(crate) fn dead_pid() -> u32 {
    let mut child = Command::new("true").spawn().unwrap();
    let pid = child.id();
    child.wait().unwrap();
    pid
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

const HOLD_CHILD: &str = "SK_WL_TEST_HOLD";

/// A child process (this test binary) that holds the lock on a target until killed.
pub(crate) struct ChildHolder {
    pub(crate) child: Child,
}

impl ChildHolder {
    pub(crate) fn hold(target: &Path) -> ChildHolder {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args([
                "util::child_holder_role",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(HOLD_CHILD, target)
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        loop {
            let line = lines.next().expect("the child printed nothing").unwrap();
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

/// The child side of [`ChildHolder`]: a no-op when run as an ordinary test.
#[test]
fn child_holder_role() {
    let Some(target) = std::env::var_os(HOLD_CHILD) else {
        return;
    };
    let guard = Locker::new().acquire(PathBuf::from(target)).unwrap();
    println!("HELD {}", guard.generation());
    std::thread::sleep(Duration::from_secs(600));
}
