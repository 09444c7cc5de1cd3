//! Linux: per-thread nice values, and glibc's `malloc_trim`.

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
