//! The command line grammar, parsed by clap.
//!
//! Each command's arguments live beside its code in [`crate::cmd`]; this file only lists the
//! commands, so adding one is a new module plus one variant here.

use clap::{Parser, Subcommand};

use crate::cmd::append::AppendArgs;
use crate::cmd::doctor::DoctorArgs;
use crate::cmd::lock::LockArgs;
use crate::cmd::locks::LocksArgs;
use crate::cmd::simulate::SimulateArgs;
use crate::cmd::store::StoreArgs;
use crate::cmd::sweep::SweepArgs;
use crate::cmd::write::WriteArgs;

/// Atomic file writes, JSONL appends, write locks, lock sweeps, session stores and a doctor
/// for sessionkit state on disk.
///
/// Exit status: 0 success, 1 no such entry (`store get`), 2 usage error, 65 bad input data
/// or a corrupt file, 74 I/O error, 75 temporary failure (a lock timeout or revocation);
/// `lock run` passes on its command's status; `sweep` exits 74 when some files could not be
/// judged or removed, `store check` 65 when it found problems, `simulate` 70 when a promise
/// was broken (an update lost, an orphan, a torn file, a lock left), and `doctor` 0 when
/// nothing is left to fix, 65 when problems are left (always without --fix, if it found any)
/// and 74 after an I/O error. See docs/cli.md for details.
#[derive(Debug, Parser)]
#[command(name = "sessionkit", version)]
pub(crate) struct Cli {
    /// The command to run.
    #[command(subcommand)]
    pub(crate) command: Command,
}

/// The commands `sessionkit` knows.
#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Replace a file atomically with the bytes of standard input.
    Write(WriteArgs),
    /// Append standard input to a JSONL file as one record.
    Append(AppendArgs),
    /// Run a command under a file's write lock, or show the state of that lock.
    Lock(LockArgs),
    /// List every lock in the directories with its status and reasons, changing nothing.
    Locks(LocksArgs),
    /// Remove the stale locks in the directories and print a summary.
    Sweep(SweepArgs),
    /// Read, change, compact or check a session store (sessions.json and its journal).
    Store(StoreArgs),
    /// Run the load that broke the original system (agents, cron storms, hung holders,
    /// killed workers, a registry at its cap) and report what happened.
    Simulate(SimulateArgs),
    /// Report on a state directory (locks, registry, transcripts, temp files, disk use) and
    /// with --fix repair it, printing each action.
    Doctor(DoctorArgs),
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory as _;

    #[test]
    fn the_grammar_is_consistent() {
        // Clap checks its own invariants (duplicate flags, bad defaults) only in this call.
        Cli::command().debug_assert();
    }
}
