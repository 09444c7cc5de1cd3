//! Side-by-side benchmarks for sessionkit, run as `cargo xtask bench <suite>`.
//!
//! There is one suite, `atomic` (`all` runs it too). It measures whole-file atomic replacement
//! against a hand-written floor and two other crates, all in one run and interleaved in
//! rounds, then probes whether the async API stalls a tokio runtime. Everything it prints on
//! stdout is Markdown, so a run can be pasted into `docs/benchmarks.md`; progress goes to
//! stderr. See `docs/benchmarks.md` for what each number means.
//!
//! A missed goal is reported, not fatal: the process fails only on bad arguments (exit 2) or an
//! I/O error (exit 1).

use std::ffi::OsString;
use std::io;
use std::process::ExitCode;

mod args;
#[cfg(unix)]
mod atomic;
#[cfg(unix)]
mod machine;
#[cfg(unix)]
mod stall;
#[cfg(unix)]
mod stats;
#[cfg(unix)]
mod table;

pub use args::USAGE;

/// Runs the benchmark binary with `args` (without the program name) and returns its exit code.
pub fn run(args: &[OsString]) -> ExitCode {
    let options = match args::parse(args) {
        Ok(args::Parsed::Run(options)) => options,
        Ok(args::Parsed::Help) => {
            print!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    match run_suite(&options, args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(unix)]
fn run_suite(options: &args::Options, args: &[OsString]) -> io::Result<()> {
    // `atomic` is the only suite so far, so `all` is the same run.
    let _ = options.suite;
    atomic::run_suite(options, args)
}

#[cfg(not(unix))]
fn run_suite(options: &args::Options, args: &[OsString]) -> io::Result<()> {
    // The floor uses Unix modes and directory fsync, which other platforms do not have.
    let _ = (options, args);
    println!("SKIP: atomic benchmark: needs a Unix file system (modes, directory fsync)");
    Ok(())
}
