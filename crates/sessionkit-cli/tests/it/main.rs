//! Integration tests of the `sessionkit` binary (one test binary; topics are modules).
//!
//! Every test runs the built binary as a user would, with its own temp directory.

/// `sessionkit append`: records, newline handling and failures.
mod append;
/// Parsing, help, version and usage errors.
mod cli;
/// `sessionkit doctor`: every kind of damage reported and repaired, and each kind alone.
mod doctor;
/// `sessionkit lock run`: the command's status, contention, revocation and settings.
mod lock_run;
/// `sessionkit lock show`: free, held, stale and malformed locks, for people and as JSON.
mod lock_show;
/// `sessionkit locks`: planted locks listed as held, stale and malformed; nothing removed.
mod locks;
/// `sessionkit simulate`: the quick run in one and three processes, and the naive baseline.
mod simulate;
/// `sessionkit store`: every subcommand, corrupt files left alone, and `check`'s problems.
mod store;
/// `sessionkit sweep`: dry runs, removals, the summary line, JSON and usage errors.
mod sweep;
/// Real system calls counted under strace.
mod syscalls;
/// Unix-only behaviour: file modes, symlinks and unreadable standard input.
mod unix;
/// Running the binary and checking its error messages.
mod util;
/// `sessionkit write`: contents, options and failures.
mod write;
