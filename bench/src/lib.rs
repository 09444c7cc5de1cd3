//! Side-by-side benchmarks for sessionkit, run as `cargo xtask bench <suite>`.
//!
//! There are four suites, and `all` runs them all, in this order:
//!
//! - `atomic` measures whole-file atomic replacement against a hand-written floor and two
//!   other crates, all in one run and interleaved in rounds, then probes whether the async API
//!   stalls a tokio runtime, and how long another file's fsync waits behind a large durable
//!   write with write-behind and without.
//! - `lock` measures the write lock: its uncontended cost against two hand-written floors, how
//!   fast a release hands the lock to a waiter in the same process and in another one, and the
//!   throughput and fairness of eight contending processes. Its contenders are this binary,
//!   started again with the hidden first argument `lock-child`.
//! - `sweep` plants 10,000 stale and live lock sidecars and sweeps them with
//!   `sessionkit-lock-sweeper` and with a model of the original sweep, each with a 1 ms and a
//!   real `/proc` owner lookup, while a 1 ms ticker runs on the same runtime.
//! - `store` runs 64 tasks creating sessions against a registry at its cap: ours, a model of
//!   the original and SQLite, each row in a child process (this binary with
//!   `SESSIONKIT_BENCH_STORE_CHILD` set); then several processes writing one durable store at
//!   once, ours and SQLite, each process this binary with `SESSIONKIT_BENCH_STORE_WRITER` set.
//!
//! Everything a suite prints on stdout is Markdown, so a run can be pasted into
//! `docs/benchmarks.md`; progress goes to stderr. See `docs/benchmarks.md` for what each
//! number means.
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
mod behind;
#[cfg(unix)]
mod common;
#[cfg(unix)]
mod lock;
#[cfg(unix)]
mod machine;
#[cfg(unix)]
mod stall;
#[cfg(unix)]
mod stats;
#[cfg(unix)]
mod store;
#[cfg(unix)]
mod sweep;
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
        Ok(args::Parsed::LockChild(rest)) => return lock_child(&rest),
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
    if options.suite.runs_atomic() {
        atomic::run_suite(options, args)?;
    }
    if options.suite.runs_lock() {
        lock::run_suite(options, args)?;
    }
    if options.suite.runs_sweep() {
        sweep::run_suite(options, args)?;
    }
    if options.suite.runs_store() {
        store::run_suite(options, args)?;
    }
    Ok(())
}

#[cfg(not(unix))]
fn run_suite(options: &args::Options, args: &[OsString]) -> io::Result<()> {
    // The floors use Unix modes, directory fsync and flock, which other platforms do not have.
    let _ = args;
    if options.suite.runs_atomic() {
        println!("SKIP: atomic benchmark: needs a Unix file system (modes, directory fsync)");
    }
    if options.suite.runs_lock() {
        println!("SKIP: lock benchmark: the write lock supports Linux only");
    }
    if options.suite.runs_sweep() {
        println!("SKIP: sweep benchmark: owner lookups need Linux's /proc");
    }
    if options.suite.runs_store() {
        println!("SKIP: store benchmark: it reads /proc for memory and I/O");
    }
    Ok(())
}

/// A contender of the `lock` suite: runs the role its parent named, reporting on stdout.
#[cfg(unix)]
fn lock_child(args: &[OsString]) -> ExitCode {
    match lock::child(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: lock-child: {e}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(not(unix))]
fn lock_child(args: &[OsString]) -> ExitCode {
    let _ = args;
    eprintln!("error: lock-child: the write lock supports Linux only");
    ExitCode::FAILURE
}
