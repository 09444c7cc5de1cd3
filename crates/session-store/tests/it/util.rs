//! Test fixtures, and the workspace's scratch directories, re-exported.

use std::path::{Path, PathBuf};

pub(crate) use sessionkit_test_support::Scratch;

/// The fixtures directory.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Waits until a thread of this process (`tid`, or any) sleeps in `flock(2)`, and returns
/// `None`; or until `done` delivers a value first, and returns it. A thread that should wait
/// for another's lock shows that it does, without the test guessing how long to sleep.
#[cfg(target_os = "linux")]
pub(crate) fn wait_until_in_flock_or_done<T>(
    tid: Option<i32>,
    done: &std::sync::mpsc::Receiver<T>,
) -> Option<T> {
    let flock = libc::SYS_flock.to_string();
    let in_flock = |task: &Path| {
        std::fs::read_to_string(task.join("syscall"))
            .is_ok_and(|now| now.split_whitespace().next() == Some(flock.as_str()))
    };
    loop {
        if let Ok(answer) = done.try_recv() {
            return Some(answer);
        }
        let found = match tid {
            Some(tid) => in_flock(&Path::new("/proc/self/task").join(tid.to_string())),
            None => std::fs::read_dir("/proc/self/task")
                .into_iter()
                .flatten()
                .flatten()
                .any(|task| in_flock(&task.path())),
        };
        if found {
            return None;
        }
        std::thread::yield_now();
    }
}

/// Opens `journal` for appending and takes its exclusive lock, as another process's writer
/// does for a batch.
#[allow(
    clippy::disallowed_methods,
    reason = "the test plays another process's writer"
)]
pub(crate) fn lock_like_another_writer(journal: &Path) -> std::fs::File {
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(journal)
        .unwrap();
    file.lock().unwrap();
    file
}

/// Lets go of [`lock_like_another_writer`]'s lock.
#[allow(
    clippy::disallowed_methods,
    reason = "the test plays another process's writer"
)]
pub(crate) fn unlock(file: &std::fs::File) {
    file.unlock().unwrap();
}
