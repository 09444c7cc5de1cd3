//! `sessionkit-torture`: crash and power-loss torture for sessionkit. See `--help`.

use std::ffi::OsString;
use std::process::ExitCode;

use sessionkit_tests::cli::{self, Invocation, USAGE};

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().skip(1).collect();
    match cli::parse(&args) {
        Ok(Invocation::Help) => {
            println!("{USAGE}");
            ExitCode::SUCCESS
        }
        Ok(Invocation::Suite(options)) => {
            if cli::run_suite(&options) {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Ok(Invocation::ChildWriter(args)) => match sessionkit_tests::child::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("child-writer: {e}");
                ExitCode::from(3)
            }
        },
        Ok(Invocation::StoreChild(args)) => match sessionkit_tests::store_child::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("store-child: {e}");
                ExitCode::from(3)
            }
        },
        Err(e) => {
            eprintln!("sessionkit-torture: {e}\n\n{USAGE}");
            ExitCode::from(2)
        }
    }
}
