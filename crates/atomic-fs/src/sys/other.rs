//! Fallback for platforms that are not tested yet: it compiles and works, but keeps no
//! permissions and cannot sync directories. No durability claim is made here.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::Path;

/// Creates `path` exclusively; `mode` is ignored.
pub(crate) fn create_new(path: &Path, _mode: u32) -> io::Result<File> {
    OpenOptions::new().write(true).create_new(true).open(path)
}

/// Opens `path` for appending, creating it if asked; `mode` is ignored.
pub(crate) fn open_append(path: &Path, _mode: u32, create: bool) -> io::Result<File> {
    OpenOptions::new().append(true).create(create).open(path)
}

/// Renames `from` over `to` with std's rename, which replaces an existing `to` (on Windows,
/// `MoveFileExW` with `MOVEFILE_REPLACE_EXISTING`); whether readers can see neither file is
/// not claimed here.
#[allow(clippy::disallowed_methods, reason = "sys is where the crate renames")]
pub(crate) fn rename(from: &Path, to: &Path) -> io::Result<()> {
    fs::rename(from, to)
}

/// Creates one directory; `mode` is ignored.
pub(crate) fn create_dir(path: &Path, _mode: u32) -> io::Result<()> {
    fs::create_dir(path)
}

/// Keeps no mode on this platform.
pub(crate) fn set_mode(_file: &File, _mode: u32) -> io::Result<()> {
    Ok(())
}

/// No mode bits on this platform.
pub(crate) fn mode_of(_meta: &fs::Metadata) -> u32 {
    0o600
}

/// No umask on this platform.
pub(crate) fn mode_after_umask(requested: u32) -> u32 {
    requested
}

/// Owners are not copied on this platform.
pub(crate) fn copy_owner(_file: &File, _like: &fs::Metadata) -> io::Result<()> {
    Ok(())
}

/// Directories cannot be opened for syncing on this platform; nothing to wait for.
pub(crate) fn sync_dir(_dir: &Path) -> io::Result<()> {
    Ok(())
}

/// No ranged write-back on this platform: the final sync writes everything.
pub(crate) fn write_back(_file: &File, _offset: u64, _len: u64, _wait: bool) -> io::Result<()> {
    Ok(())
}

/// No stable identity is exposed on this platform; the length stands in.
pub(crate) fn identity(meta: &fs::Metadata) -> (u64, u64) {
    (0, meta.len())
}
