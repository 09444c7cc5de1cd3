//! Unix implementation of the platform functions.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::sync::OnceLock;

/// Creates `path` exclusively with `mode` (less the umask).
///
/// `O_CREAT | O_EXCL` never follows a symlink at the final component: a planted link makes the
/// call fail with `EEXIST`.
pub(crate) fn create_new(path: &Path, mode: u32) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
}

/// Opens `path` for appending, creating it with `mode` if asked.
pub(crate) fn open_append(path: &Path, mode: u32, create: bool) -> io::Result<File> {
    OpenOptions::new()
        .append(true)
        .create(create)
        .mode(mode)
        .open(path)
}

/// Renames `from` over `to`: `rename(2)`, which replaces `to` atomically on one file system.
#[allow(clippy::disallowed_methods, reason = "sys is where the crate renames")]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// Creates one directory with `mode` (less the umask).
pub(crate) fn create_dir(path: &Path, mode: u32) -> io::Result<()> {
    fs::DirBuilder::new().mode(mode).create(path)
}

/// Sets the permission bits of an open file; `fchmod` is not subject to the umask.
pub(crate) fn set_mode(file: &File, mode: u32) -> io::Result<()> {
    file.set_permissions(Permissions::from_mode(mode))
}

/// The permission bits of a file.
pub(crate) fn mode_of(meta: &fs::Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// The mode a newly created file gets from `requested` after the umask.
pub(crate) fn mode_after_umask(requested: u32) -> u32 {
    requested & !umask()
}

/// Gives `file` the owner of `like` when it differs from ours (best effort: without the
/// privilege to change owners the file stays ours, as it would with any editor).
pub(crate) fn copy_owner(file: &File, like: &fs::Metadata) -> io::Result<()> {
    let (uid, gid) = process_ids();
    if like.uid() == uid && like.gid() == gid {
        return Ok(());
    }
    match std::os::unix::fs::fchown(file, Some(like.uid()), Some(like.gid())) {
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Ok(()),
        other => other,
    }
}

/// Flushes a directory's entries to disk.
///
/// File systems that cannot sync a directory answer `EINVAL` (or `ENOTSUP`); they offer no
/// directory durability to wait for, so that answer counts as done, as in PostgreSQL.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    let file = File::open(dir)?;
    match file.sync_all() {
        Err(e)
            if e.kind() == io::ErrorKind::InvalidInput
                || e.kind() == io::ErrorKind::Unsupported =>
        {
            Ok(())
        }
        other => other,
    }
}

/// Starts writing `len` bytes at `offset` of `file` back to disk and, with `wait`, waits
/// until they are written, some of them perhaps by an earlier call: `sync_file_range(2)`.
/// It syncs no metadata and flushes no disk cache, so it is never a durability point; it
/// only leaves less for the final `fsync` to do.
///
/// A writeback error it reports is reported once per open file, like `fsync`'s: the caller
/// must treat it as a failed sync.
#[cfg(target_os = "linux")]
pub(crate) fn write_back(file: &File, offset: u64, len: u64, wait: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;

    let (Ok(offset), Ok(len)) = (
        libc::off64_t::try_from(offset),
        libc::off64_t::try_from(len),
    ) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    let flags = if wait {
        libc::SYNC_FILE_RANGE_WAIT_BEFORE
            | libc::SYNC_FILE_RANGE_WRITE
            | libc::SYNC_FILE_RANGE_WAIT_AFTER
    } else {
        libc::SYNC_FILE_RANGE_WRITE
    };
    loop {
        // SAFETY: the descriptor stays open while `file` is borrowed, and the call reads and
        // writes no memory of ours.
        #[allow(unsafe_code)]
        let done = unsafe { libc::sync_file_range(file.as_raw_fd(), offset, len, flags) } == 0;
        if done {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Other Unix systems have no `sync_file_range`: the final `fsync` writes everything.
#[cfg(not(target_os = "linux"))]
pub(crate) fn write_back(_file: &File, _offset: u64, _len: u64, _wait: bool) -> io::Result<()> {
    Ok(())
}

/// The file's identity: device and inode.
pub(crate) fn identity(meta: &fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// The process umask, read once from `/proc/self/status` (calling `umask(2)` to read it would
/// briefly change it for every thread).
fn umask() -> u32 {
    static UMASK: OnceLock<u32> = OnceLock::new();
    *UMASK.get_or_init(|| {
        fs::read_to_string("/proc/self/status")
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|line| line.strip_prefix("Umask:"))
                    .and_then(|v| u32::from_str_radix(v.trim(), 8).ok())
            })
            // Unknown umask: assume the common one, so a mode with group or other bits is
            // still set exactly by the explicit `fchmod` that follows.
            .unwrap_or(0o022)
    })
}

/// The effective uid and gid, read once from the owner of `/proc/self`.
fn process_ids() -> (u32, u32) {
    static IDS: OnceLock<(u32, u32)> = OnceLock::new();
    *IDS.get_or_init(|| {
        fs::metadata("/proc/self")
            .map(|m| (m.uid(), m.gid()))
            // Without /proc, assume a different owner so `copy_owner` always tries.
            .unwrap_or((u32::MAX, u32::MAX))
    })
}
