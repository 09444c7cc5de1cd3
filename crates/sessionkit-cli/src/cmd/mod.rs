//! The commands, one module each, and the helpers they share.

pub(crate) mod append;
pub(crate) mod write;

use std::io::{self, Read as _};

use crate::cli::Command;
use crate::failure::Failure;

/// Runs one parsed command.
pub(crate) fn run(command: Command) -> Result<(), Failure> {
    match command {
        Command::Write(args) => write::run(&args),
        Command::Append(args) => append::run(&args),
    }
}

/// Reads all of standard input as bytes; nothing is decoded, so binary data passes through.
fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(Failure::Stdin)?;
    Ok(bytes)
}
