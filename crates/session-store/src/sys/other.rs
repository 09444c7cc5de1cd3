//! Fallback for platforms that are not tested yet: the hints do nothing, a file cannot be
//! opened again by its descriptor (so a held journal lock is polled), and a rename that must
//! not replace its target reserves the name first.

/// Does nothing on this platform.
pub(crate) fn lower_this_thread_priority() {}

/// Does nothing on this platform.
pub(crate) fn return_free_memory() {}

/// Cannot be done here without a path: fails with [`std::io::ErrorKind::Unsupported`].
pub(crate) fn reopen(_file: &std::fs::File) -> std::io::Result<std::fs::File> {
    Err(std::io::ErrorKind::Unsupported.into())
}

/// Opens `path` with `options`; no platform flag keeps a FIFO's open from blocking here.
pub(crate) fn open_without_blocking(
    options: &mut std::fs::OpenOptions,
    path: &std::path::Path,
) -> std::io::Result<std::fs::File> {
    options.open(path)
}

/// Not offered here: fails with [`std::io::ErrorKind::Unsupported`], so that the caller
/// reserves the name first.
pub(crate) fn rename_no_replace(
    _from: &std::path::Path,
    _to: &std::path::Path,
) -> std::io::Result<()> {
    Err(std::io::ErrorKind::Unsupported.into())
}
