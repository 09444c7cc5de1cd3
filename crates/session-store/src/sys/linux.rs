//! Linux: per-thread nice values, glibc's `malloc_trim`, and opening a file again through
//! `/proc/self/fd`.

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
