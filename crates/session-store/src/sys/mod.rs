//! Platform code: the same functions on every platform, one file per platform.
//!
//! The thread priority and memory hints are for the background threads (compaction,
//! maintenance): nothing depends on them for correctness, so where a platform lacks them they
//! do nothing. The journal's OS locks and the renames of quarantine and maintenance are std's
//! on every platform, and live here so that their platform semantics are written down once.

#[cfg(target_os = "linux")]
mod linux;
#[cfg(target_os = "linux")]
pub(crate) use linux::*;

#[cfg(not(target_os = "linux"))]
mod other;
#[cfg(not(target_os = "linux"))]
pub(crate) use other::*;

use std::fs::File;
use std::io;
use std::path::Path;

/// Takes the exclusive OS lock on `file`, waiting for it: std's `File::lock`, `flock(2)` on
/// Linux, which the kernel drops when the last descriptor of the open file closes.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn lock(file: &File) -> io::Result<()> {
    file.lock()
}

/// Takes a shared OS lock on `file`, waiting while an exclusive one is held.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn lock_shared(file: &File) -> io::Result<()> {
    file.lock_shared()
}

/// Releases this open file's OS lock.
#[allow(
    clippy::disallowed_methods,
    reason = "sys is where the crate takes OS locks"
)]
pub(crate) fn unlock(file: &File) -> io::Result<()> {
    file.unlock()
}

/// Renames `from` to `to`, replacing `to` if it exists: `rename(2)` on Linux, atomic on one
/// file system. Callers that must not replace anything reserve `to` first.
#[allow(clippy::disallowed_methods, reason = "sys is where the crate renames")]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    std::fs::rename(from, to)
}
