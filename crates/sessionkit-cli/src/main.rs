//! The `sessionkit` command line: atomic file writes, JSONL appends and write locks from the
//! shell.
//!
//! Each command lives in its own module under [`cmd`] and returns a [`Failure`] rather than
//! exiting, so this file is the one place that turns results into exit statuses (the one
//! exception: `lock run` reports a revoked lock at once, while its command is still stopping).
//! The statuses are listed in [`exit`] and in `docs/cli.md`.

mod cli;
mod cmd;
mod duration;
mod exit;
mod failure;

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
        Ok(code) => ExitCode::from(code),
        Err(failure) => ExitCode::from(Failure::report(&failure)),
    }
}
