//! Fresh scratch directories that remove themselves when dropped.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::rng::seed_from_clock;

/// A directory made for one run and removed when dropped.
#[derive(Debug)]
pub struct ScratchDir {
    path: PathBuf,
}

impl ScratchDir {
    /// Creates a new, empty directory `sessionkit-torture-<label>-<pid>-<n>` under `base`.
    ///
    /// The name includes a per-process counter, so parallel tests in one process never share a
    /// directory.
    ///
    /// # Errors
    ///
    /// Fails if the directory cannot be created.
    pub fn new(base: &Path, label: &str) -> io::Result<ScratchDir> {
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        loop {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let salt = seed_from_clock() & 0xffff;
            let path = base.join(format!(
                "sessionkit-torture-{label}-{}-{n}-{salt:04x}",
                std::process::id()
            ));
            match std::fs::create_dir(&path) {
                Ok(()) => return Ok(ScratchDir { path }),
                // A leftover of an earlier process with the same pid; try the next name.
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        if let Err(e) = std::fs::remove_dir_all(&self.path)
            && e.kind() != io::ErrorKind::NotFound
        {
            eprintln!(
                "warning: could not remove scratch dir {}: {e}",
                self.path.display()
            );
        }
    }
}
