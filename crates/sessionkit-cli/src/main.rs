//! The `sessionkit` command line: atomic file writes and JSONL appends from the shell.
//!
//! Each command lives in its own module under [`cmd`] and returns a [`Failure`] rather than
//! exiting, so this file is the one place that prints errors and picks exit statuses.
//! The statuses are listed in [`exit`] and in `docs/cli.md`.

mod cli;
mod cmd;
mod exit;
mod failure;

use std::io::{self, Write as _};
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::Cli;
use crate::failure::Failure;

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(err) => {
            // Help and version requests are "errors" to clap too; they go to stdout and succeed.
            let code = if err.use_stderr() {
                exit::USAGE
            } else {
                exit::SUCCESS
            };
            // Nothing sensible is left to do if the terminal is gone.
            let _ = err.print();
            return ExitCode::from(code);
        }
    };
    match cmd::run(cli.command) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(failure) => report(&failure),
    }
}

/// Prints the one-line error message and returns the failure's exit status.
fn report(failure: &Failure) -> ExitCode {
    // `eprintln!` would panic if stderr is a closed pipe; the exit status still tells the story.
    let _ = writeln!(
        io::stderr().lock(),
        "sessionkit: error: {}",
        failure.message()
    );
    ExitCode::from(failure.exit_code())
}
