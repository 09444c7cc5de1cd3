//! Test fixtures, and the workspace's scratch directories, re-exported.

use std::path::{Path, PathBuf};

pub(crate) use sessionkit_test_support::Scratch;

/// The fixtures directory.
pub(crate) fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

/// Waits until `store` counts one more wait for the journal's lock than `before`, and returns
/// `None`; or until `done` delivers a value first, and returns it. A thread that should wait
/// for another's lock shows that it does, without the test guessing how long to sleep.
pub(crate) fn wait_until_lock_wait_or_done<T>(
    store: &sessionkit_session_store::Store,
    before: u64,
    done: &std::sync::mpsc::Receiver<T>,
) -> Option<T> {
    loop {
        if let Ok(answer) = done.try_recv() {
            return Some(answer);
        }
        if store.counters().journal_lock_waits > before {
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
