//! Fallback for platforms that are not tested yet: it compiles, but cannot look at other
//! processes, so no lock is ever judged dead by its pid here.

use std::io;
use std::sync::OnceLock;

use crate::lookup::ProcessProbe;

/// No open flag leaves the access time alone here.
pub(crate) const OPEN_NOATIME: i32 = 0;

/// Not supported on this platform: always an [`Unsupported`](io::ErrorKind::Unsupported) error,
/// which callers read as "unknown, keep the lock".
pub(crate) fn process_probe(_pid: u32) -> io::Result<ProcessProbe> {
    Err(unsupported())
}

/// Not supported on this platform: always an [`Unsupported`](io::ErrorKind::Unsupported) error.
pub(crate) fn process_cmdline(_pid: u32) -> io::Result<Option<Vec<String>>> {
    Err(unsupported())
}

/// Unknown on this platform.
pub(crate) fn own_start_time() -> Option<u64> {
    None
}

/// Unknown on this platform.
pub(crate) fn boot_id() -> Option<String> {
    None
}

/// Unknown on this platform.
pub(crate) fn hostname() -> Option<String> {
    None
}

/// The file name of the running executable, read once (the standard library knows it
/// everywhere).
pub(crate) fn program_name() -> Option<String> {
    static PROGRAM: OnceLock<Option<String>> = OnceLock::new();
    PROGRAM.get_or_init(super::current_program_name).clone()
}

/// 32 lowercase hex characters: from `/dev/urandom` where it exists (other Unix systems), else
/// the documented fallback in `sys`.
pub(crate) fn random_token() -> String {
    super::token_from_urandom_or_fallback()
}

fn unsupported() -> io::Error {
    io::Error::new(
        io::ErrorKind::Unsupported,
        "looking up processes is only supported on Linux",
    )
}
