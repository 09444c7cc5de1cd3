//! The exit statuses of `sessionkit`, shared by every command.
//!
//! The values follow BSD `sysexits.h` where one fits, so scripts can tell "fix your input"
//! from "the disk said no" from "try again later". `docs/cli.md` lists them for users; keep the
//! two in step.

/// The command did what it was asked.
pub(crate) const SUCCESS: u8 = 0;

/// The answer is no: `store get` found no entry under the key. Like `grep` finding no match,
/// this is not a failure of the command, but scripts must be able to tell it from success.
pub(crate) const NOT_FOUND: u8 = 1;

/// The command line was wrong: an unknown command or option, a missing argument, or a bad
/// value such as `--mode 9`, `--timeout 5` or `--temp-older-than 5`; or a `SESSIONKIT_LOCK_*` variable holds an
/// invalid value. Nothing was read or written.
pub(crate) const USAGE: u8 = 2;

/// The input data was refused (`EX_DATAERR`): a record that is empty or has a newline in it, a
/// session entry or patch that is not a JSON object, or a file whose contents are corrupt (a
/// store's snapshot or journal). Retrying with the same input fails the same way. `store check`
/// also uses it when it found problems (they are listed).
pub(crate) const DATA_ERR: u8 = 65;

/// Internal software error (`EX_SOFTWARE`): `simulate` ran, and its report shows a broken
/// promise (an acknowledged update lost, an orphan transcript, a torn file, a lock left
/// behind, a hung holder not revoked).
pub(crate) const SOFTWARE: u8 = 70;

/// An input or output error (`EX_IOERR`): every other failure of the library, including a
/// target that is a directory or whose parent is missing, a failed `fsync`, and a failure to
/// read standard input. `sweep` also uses it when the sweep completed but some lock files or
/// directories could not be judged or removed (they are listed).
pub(crate) const IO_ERR: u8 = 74;

/// A temporary failure (`EX_TEMPFAIL`): retrying later may succeed. `lock run` uses it when
/// the lock stayed held until the timeout, and when the lock was revoked after its max hold
/// while the command ran; the `store` commands when another process held the store's journal
/// lock past the store's lock timeout.
pub(crate) const TEMP_FAIL: u8 = 75;

/// The command given to `lock run` could not be started (not found, not executable): the
/// status a shell gives for a command it cannot find.
pub(crate) const CANNOT_RUN: u8 = 127;

/// Added to a signal's number for a command that `lock run` ran and that a signal killed, as
/// shells do.
pub(crate) const SIGNAL_BASE: u8 = 128;
