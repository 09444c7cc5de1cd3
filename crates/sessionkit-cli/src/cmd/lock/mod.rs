//! `sessionkit lock`: run a command under a file's write lock, or show the state of that lock.
//!
//! Both commands use the lock library's settings: its defaults, then the `SESSIONKIT_LOCK_*`
//! environment variables, then the command's own flags, each overriding the one before.

pub(crate) mod run;
pub(crate) mod show;

use std::time::Duration;

use clap::{Args, Subcommand};
use sessionkit::lock::{DEFAULT_STALE_AFTER, ENV_STALE_MS, LockConfig};

use crate::exit;
use crate::failure::Failure;

/// Arguments of `sessionkit lock`.
#[derive(Debug, Args)]
pub(crate) struct LockArgs {
    /// What to do with the lock.
    #[command(subcommand)]
    pub(crate) command: LockCommand,
}

/// The `lock` commands.
#[derive(Debug, Subcommand)]
pub(crate) enum LockCommand {
    /// Take the lock on PATH, run a command, give the lock back and exit with the command's
    /// status.
    Run(run::RunArgs),
    /// Print the state of the lock on PATH (free, held, stale or malformed), changing nothing.
    Show(show::ShowArgs),
}

/// Runs one `lock` command.
pub(crate) fn run(args: LockArgs) -> Result<u8, Failure> {
    match args.command {
        LockCommand::Run(args) => run::run(&args),
        LockCommand::Show(args) => show::run(&args).map(|()| exit::SUCCESS),
    }
}

/// The flags that override the lock settings; `None` keeps the environment's or the default.
#[derive(Debug, Default)]
struct Overrides<'a> {
    timeout: Option<Duration>,
    max_hold: Option<Duration>,
    label: Option<&'a str>,
}

/// The lock settings: the library's defaults, then `SESSIONKIT_LOCK_*`, then `overrides`.
///
/// The library wants the stale age at least the max hold. Unless `SESSIONKIT_LOCK_STALE_MS`
/// sets it, the stale age is raised to the max hold when that is longer than the default 30
/// min, so `--max-hold 1h` works on its own; a stale age set explicitly below the max hold is
/// an error for the caller to fix.
fn config(overrides: &Overrides<'_>) -> Result<LockConfig, Failure> {
    let mut builder = LockConfig::builder();
    // A bad variable is an error even when a flag overrides it, as in the library.
    builder.from_env();
    if let Some(timeout) = overrides.timeout {
        builder.acquire_timeout(timeout);
    }
    if let Some(max_hold) = overrides.max_hold {
        builder.max_hold(max_hold);
    }
    if let Some(label) = overrides.label {
        builder.label(label);
    }
    if std::env::var_os(ENV_STALE_MS).is_none() {
        // Learn the max hold that applies (flag, variable or default) with the check that it
        // fits under the stale age out of the way, then fit the stale age to it.
        builder.stale_after(Duration::MAX);
        let max_hold = builder.build()?.max_hold();
        builder.stale_after(DEFAULT_STALE_AFTER.max(max_hold));
    }
    Ok(builder.build()?)
}
