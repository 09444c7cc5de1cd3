//! The exit statuses of `sessionkit`, shared by every command.
//!
//! The values follow BSD `sysexits.h` where one fits, so scripts can tell "fix your input"
//! from "the disk said no" from "try again later". `docs/cli.md` lists them for users; keep the
//! two in step.

/// The command did what it was asked.
pub(crate) const SUCCESS: u8 = 0;

/// The command line was wrong: an unknown command or option, a missing argument, or a bad
/// value such as `--mode 9`. Nothing was read or written.
pub(crate) const USAGE: u8 = 2;

/// The input data was refused (`EX_DATAERR`): a record that is empty or has a newline in it, or
/// a file whose contents are corrupt. Retrying with the same input fails the same way.
pub(crate) const DATA_ERR: u8 = 65;

/// An input or output error (`EX_IOERR`): every other failure of the library, including a
/// target that is a directory or whose parent is missing, a failed `fsync`, and a failure to
/// read standard input.
pub(crate) const IO_ERR: u8 = 74;

/// A temporary failure (`EX_TEMPFAIL`): retrying later may succeed. Reserved for lock timeouts.
#[expect(
    dead_code,
    reason = "reserved for the `lock` command's timeouts; documented in docs/cli.md already"
)]
pub(crate) const TEMP_FAIL: u8 = 75;
