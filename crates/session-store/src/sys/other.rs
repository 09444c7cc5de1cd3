//! Fallback for platforms that are not tested yet: the hints do nothing.

/// Does nothing on this platform.
pub(crate) fn lower_this_thread_priority() {}

/// Does nothing on this platform.
pub(crate) fn return_free_memory() {}
