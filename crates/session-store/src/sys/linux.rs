//! Linux: per-thread nice values, glibc's `malloc_trim`, opening a file again through
//! `/proc/self/fd`, and a rename that never replaces its target.

/// The compaction thread runs at nice 10, so that a thread of the caller's (an async runtime's
/// worker, the writer) gets a CPU first when both want one.
const BACKGROUND_NICE: libc::c_int = 10;

/// Lowers the calling thread's scheduling priority to [`BACKGROUND_NICE`]. On Linux a nice
/// value belongs to one thread, not to the process. A failure (a sandbox that forbids it)
/// only leaves the thread at its priority.
pub(crate) fn lower_this_thread_priority() {
    // SAFETY: `gettid` has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    let tid = unsafe { libc::gettid() };
    let Ok(tid) = libc::id_t::try_from(tid) else {
        return;
    };
    // SAFETY: `setpriority` takes plain integers and touches no memory of ours.
    #[allow(unsafe_code)]
    let failed = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid, BACKGROUND_NICE) } != 0;
    if failed {
        tracing::debug!(error = %std::io::Error::last_os_error(),
            "could not lower a background thread's priority");
    }
}

/// Hands the allocator's free pages back to the kernel (glibc's `malloc_trim`, which also
/// trims the arenas of other threads). glibc keeps memory freed in the middle of its heaps
/// resident; after a pass that freed many entries, the process would otherwise keep their
/// pages as if the entries were still there. Other C libraries do nothing here.
pub(crate) fn return_free_memory() {
    #[cfg(target_env = "gnu")]
    {
        // SAFETY: `malloc_trim` only works on the allocator's own structures, under its locks.
        #[allow(unsafe_code)]
        unsafe {
            libc::malloc_trim(0);
        }
    }
}

/// Opens the file behind `file` again, as a new open file with a lock of its own, through
/// `/proc/self/fd`: the same file even if its path was renamed or removed since.
pub(crate) fn reopen(file: &std::fs::File) -> std::io::Result<std::fs::File> {
    use std::os::fd::AsRawFd;
    std::fs::File::open(format!("/proc/self/fd/{}", file.as_raw_fd()))
}

/// Opens `path` with `options` without blocking (`O_NONBLOCK`): a FIFO in a store file's place
/// would otherwise block the open until a peer came, for ever. For a regular file the flag
/// changes nothing; the caller refuses any other kind ([`super::open_regular`]).
pub(crate) fn open_without_blocking(
    options: &mut std::fs::OpenOptions,
    path: &std::path::Path,
) -> std::io::Result<std::fs::File> {
    use std::os::unix::fs::OpenOptionsExt;
    options.custom_flags(libc::O_NONBLOCK).open(path)
}

/// Renames `from` to `to` unless `to` exists (`renameat2(2)` with `RENAME_NOREPLACE`): one
/// atomic step, so nothing is reserved first and a crash leaves nothing behind. Fails with
/// [`std::io::ErrorKind::AlreadyExists`] if `to` exists, and with
/// [`std::io::ErrorKind::Unsupported`] where the file system, the kernel (before 3.15) or a
/// sandbox's system call filter refuses it, for the caller to fall back on a reservation.
pub(crate) fn rename_no_replace(
    from: &std::path::Path,
    to: &std::path::Path,
) -> std::io::Result<()> {
    use std::ffi::CString;
    use std::os::unix::ffi::OsStrExt;
    let c = |path: &std::path::Path| {
        CString::new(path.as_os_str().as_bytes())
            .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
    };
    let (from, to) = (c(from)?, c(to)?);
    // Through `syscall`, which every C library has, rather than a wrapper only glibc exports.
    // SAFETY: both paths are NUL-terminated strings that live across the call.
    #[allow(unsafe_code)]
    let done = unsafe {
        libc::syscall(
            libc::SYS_renameat2,
            libc::AT_FDCWD,
            from.as_ptr(),
            libc::AT_FDCWD,
            to.as_ptr(),
            libc::RENAME_NOREPLACE,
        )
    };
    if done == 0 {
        return Ok(());
    }
    let e = std::io::Error::last_os_error();
    // EPERM too: a seccomp filter that does not know the call may refuse it so. If it meant
    // that the rename is not allowed, the fallback's own rename says so.
    match e.raw_os_error() {
        Some(libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP | libc::EPERM) => {
            Err(std::io::Error::new(std::io::ErrorKind::Unsupported, e))
        }
        _ => Err(e),
    }
}
