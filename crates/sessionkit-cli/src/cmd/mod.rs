//! The commands, one module each, and the helpers they share.

pub(crate) mod append;
pub(crate) mod doctor;
pub(crate) mod lock;
pub(crate) mod locks;
pub(crate) mod simulate;
pub(crate) mod store;
pub(crate) mod sweep;
pub(crate) mod write;

use std::io::{self, Read as _};

use crate::cli::Command;
use crate::exit;
use crate::failure::Failure;

/// Runs one parsed command and returns its exit status: 0, except that `lock run` passes on
/// its command's status, `sweep` returns 74 when some files could not be handled,
/// `store check` 65 when it found problems, and `doctor` 65 or 74 when problems are left.
pub(crate) fn run(command: Command) -> Result<u8, Failure> {
    match command {
        Command::Write(args) => write::run(&args).map(|()| exit::SUCCESS),
        Command::Append(args) => append::run(&args).map(|()| exit::SUCCESS),
        Command::Lock(args) => lock::run(args),
        Command::Locks(args) => locks::run(&args).map(|()| exit::SUCCESS),
        Command::Sweep(args) => sweep::run(&args),
        Command::Store(args) => store::run(args),
        Command::Simulate(args) => simulate::run(&args),
        Command::Doctor(args) => doctor::run(&args),
    }
}

/// Reads all of standard input as bytes; nothing is decoded, so binary data passes through.
pub(crate) fn read_stdin() -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    io::stdin()
        .lock()
        .read_to_end(&mut bytes)
        .map_err(Failure::Stdin)?;
    Ok(bytes)
}
