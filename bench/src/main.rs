//! The `sessionkit-bench` binary; `cargo xtask bench` runs it. Usage: `sessionkit-bench --help`.

use std::ffi::OsString;
use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    sessionkit_bench::run(&args)
}
