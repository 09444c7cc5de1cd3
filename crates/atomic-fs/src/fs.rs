//! The file-system seam: every call an operation makes goes through [`FileSystem`].
//!
//! [`RealFs`] is the operating system. Tests wrap it to fail the N-th call of a step, record
//! the order of calls, or skip a sync on purpose (a mutant the crash tests must catch).

use std::fmt;
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::sys;
use crate::turn::in_turn_of_parent;

/// The file-system calls this crate makes, one method per step.
///
/// Every method has a default that performs the real call, so a wrapper overrides only what it
/// wants to observe or break. The `path` arguments name the file a handle belongs to, so a
/// wrapper can tell a temp file from a target.
pub trait FileSystem: fmt::Debug + Send + Sync {
    /// `lstat`: metadata of `path` without following a final symlink.
    fn symlink_metadata(&self, path: &Path) -> io::Result<fs::Metadata> {
        fs::symlink_metadata(path)
    }

    /// Reads the target of the symlink at `path`.
    fn read_link(&self, path: &Path) -> io::Result<PathBuf> {
        fs::read_link(path)
    }

    /// Creates one directory with `mode`.
    fn create_dir(&self, path: &Path, mode: u32) -> io::Result<()> {
        in_turn_of_parent(path, || sys::create_dir(path, mode))
    }

    /// Creates `path` exclusively (`O_CREAT | O_EXCL`), never following a symlink.
    fn create_new(&self, path: &Path, mode: u32) -> io::Result<File> {
        in_turn_of_parent(path, || sys::create_new(path, mode))
    }

    /// Opens `path` for appending (`O_APPEND`), creating it with `mode` if `create`.
    fn open_append(&self, path: &Path, mode: u32, create: bool) -> io::Result<File> {
        if create {
            in_turn_of_parent(path, || sys::open_append(path, mode, create))
        } else {
            sys::open_append(path, mode, create)
        }
    }

    /// One `write(2)` call; it may write fewer bytes than given.
    fn write(&self, file: &mut File, path: &Path, buf: &[u8]) -> io::Result<usize> {
        let _ = path;
        file.write(buf)
    }

    /// Sets the permission bits of an open file.
    fn set_mode(&self, file: &File, path: &Path, mode: u32) -> io::Result<()> {
        let _ = path;
        sys::set_mode(file, mode)
    }

    /// Gives the open file the owner of `like`, where permitted.
    fn copy_owner(&self, file: &File, path: &Path, like: &fs::Metadata) -> io::Result<()> {
        let _ = path;
        sys::copy_owner(file, like)
    }

    /// `fsync`: flushes data and metadata of an open file.
    fn sync_all(&self, file: &File, path: &Path) -> io::Result<()> {
        let _ = path;
        file.sync_all()
    }

    /// `fdatasync`: flushes the data (and the size) of an open file.
    fn sync_data(&self, file: &File, path: &Path) -> io::Result<()> {
        let _ = path;
        file.sync_data()
    }

    /// Starts writing `len` bytes at `offset` of an open file back to disk and, with `wait`,
    /// waits until they are written (`sync_file_range(2)` on Linux; nothing elsewhere). Never
    /// a durability point: [`sync_all`](FileSystem::sync_all) still is. An error from it is
    /// a failed sync (the kernel reports a writeback error once per open file), except
    /// [`ErrorKind::Unsupported`](io::ErrorKind::Unsupported) and
    /// [`ErrorKind::InvalidInput`](io::ErrorKind::InvalidInput), which mean the call cannot be
    /// made here.
    fn write_back(
        &self,
        file: &File,
        path: &Path,
        offset: u64,
        len: u64,
        wait: bool,
    ) -> io::Result<()> {
        let _ = path;
        sys::write_back(file, offset, len, wait)
    }

    /// Renames `from` over `to` (atomic on the same file system).
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        // This crate renames within one directory; the target's directory names the turn.
        in_turn_of_parent(to, || sys::rename(from, to))
    }

    /// Flushes the entries of directory `dir`.
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sys::sync_dir(dir)
    }

    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        in_turn_of_parent(path, || fs::remove_file(path))
    }

    /// Truncates an open file to `len` bytes.
    fn set_len(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        let _ = path;
        file.set_len(len)
    }
}

/// The operating system's file system, with no seams.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

impl FileSystem for RealFs {}

/// The shared real file system, so default writers allocate nothing.
pub(crate) fn real() -> Arc<dyn FileSystem> {
    static REAL: std::sync::OnceLock<Arc<dyn FileSystem>> = std::sync::OnceLock::new();
    REAL.get_or_init(|| Arc::new(RealFs)).clone()
}

/// Writes all of `buf` through `fs`, looping over short writes.
pub(crate) fn write_all(
    fs: &dyn FileSystem,
    file: &mut File,
    path: &Path,
    mut buf: &[u8],
) -> io::Result<()> {
    while !buf.is_empty() {
        match fs.write(file, path, buf) {
            Ok(0) => {
                return Err(io::Error::new(
                    io::ErrorKind::WriteZero,
                    "the file system accepted no more bytes",
                ));
            }
            Ok(n) => buf = &buf[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
