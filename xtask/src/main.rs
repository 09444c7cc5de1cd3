//! The project's task runner: `cargo xtask <command>` (the alias lives in `.cargo/config.toml`).
//!
//! It only starts `cargo` with the right arguments and checks files, so it needs no dependencies and none of our crates.
//! Run `cargo xtask help` for the commands.

mod ci;
mod cmd;
mod tidy;
mod tools;

use std::env;
use std::ffi::OsString;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

const USAGE: &str = "\
usage: cargo xtask <command> [args...]

commands:
  ci [--skip-slow]                         run `tools`, then every CI check in order, stop at the first failure, print a summary;
                                           --skip-slow leaves out the quick torture and benchmark runs and the README run
  torture [atomic|lock|store|all] [--quick] [args...] run the torture suite (default all); without --quick it is the long soak
  bench <atomic|lock|sweep|store|all> [--quick] [args...] run the benchmark suite (all: every suite)
  tidy                                     check that every .rs file starts with //! and has no forbidden macros or attributes
  tools                                    check for the programs the tests start and install the missing ones (as root,
                                           with apt-get); `ci` does this first
  help                                     print this text

Extra arguments after the suite are passed to the torture or benchmark binary unchanged.
";

/// The suites the torture binary accepts.
const TORTURE_SUITES: [&str; 4] = ["atomic", "lock", "store", "all"];

/// The suites the benchmark binary accepts; `all` runs every other one.
const BENCH_SUITES: [&str; 5] = ["atomic", "lock", "sweep", "store", "all"];

/// A parsed command line.
#[derive(Debug, PartialEq, Eq)]
enum Task {
    Ci { skip_slow: bool },
    Torture { suite: String, rest: Vec<OsString> },
    Bench { suite: String, rest: Vec<OsString> },
    Tidy,
    Tools,
    Help,
}

fn main() -> ExitCode {
    let args: Vec<OsString> = env::args_os().skip(1).collect();
    let task = match parse(&args) {
        Ok(task) => task,
        Err(message) => {
            eprintln!("error: {message}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if task == Task::Help {
        // If nobody reads our stdout, there is nobody to show the help to.
        let _ = io::stdout().write_all(USAGE.as_bytes());
        return ExitCode::SUCCESS;
    }
    match run(task) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(task: Task) -> Result<(), String> {
    let root = workspace_root()?;
    match task {
        Task::Ci { skip_slow } => {
            if ci::run(&root, skip_slow) {
                Ok(())
            } else {
                Err("ci failed; the summary above names the step".to_owned())
            }
        }
        Task::Torture { suite, rest } => {
            if !rest.iter().any(|arg| arg == "--quick") {
                eprintln!("note: this is the long soak; add --quick for a short run");
            }
            let mut command = cmd::cargo(&root);
            command.args(cmd::TORTURE).arg(suite).args(rest);
            cmd::run(command)
        }
        Task::Bench { suite, rest } => {
            let mut command = cmd::cargo(&root);
            command.args(cmd::BENCH).arg(suite).args(rest);
            cmd::run(command)
        }
        Task::Tidy => tidy::run(&root),
        Task::Tools => {
            tools::run();
            Ok(())
        }
        Task::Help => Ok(()),
    }
}

/// Parses the arguments after `cargo xtask`; an error means the usage text should be shown.
fn parse(args: &[OsString]) -> Result<Task, String> {
    let Some((command, rest)) = args.split_first() else {
        return Ok(Task::Help);
    };
    let command = command
        .to_str()
        .ok_or_else(|| format!("unknown command `{}`", command.to_string_lossy()))?;
    match command {
        "help" | "-h" | "--help" => Ok(Task::Help),
        "ci" => match rest {
            [] => Ok(Task::Ci { skip_slow: false }),
            [flag] if flag == "--skip-slow" => Ok(Task::Ci { skip_slow: true }),
            _ => Err(format!("`ci` takes only --skip-slow, not {}", listed(rest))),
        },
        "tidy" if rest.is_empty() => Ok(Task::Tidy),
        "tidy" => Err(format!("`tidy` takes no arguments, not {}", listed(rest))),
        "tools" if rest.is_empty() => Ok(Task::Tools),
        "tools" => Err(format!("`tools` takes no arguments, not {}", listed(rest))),
        "torture" => {
            let (suite, rest) = suite(rest, &TORTURE_SUITES, Some("all"))?;
            Ok(Task::Torture { suite, rest })
        }
        "bench" => {
            let (suite, rest) = suite(rest, &BENCH_SUITES, None)?;
            Ok(Task::Bench { suite, rest })
        }
        other => Err(format!("unknown command `{other}`")),
    }
}

/// Splits off the suite name, one of `suites`; an argument starting with `-` is an option, so the
/// suite was left out.
fn suite(
    args: &[OsString],
    suites: &[&str],
    default: Option<&str>,
) -> Result<(String, Vec<OsString>), String> {
    let named = args
        .first()
        .filter(|arg| !arg.to_string_lossy().starts_with('-'));
    match (named, default) {
        (Some(name), _) => match suites.iter().find(|&&suite| name == suite) {
            Some(suite) => Ok((suite.to_string(), args[1..].to_vec())),
            None => Err(format!(
                "unknown suite `{}`; the suites are {}",
                name.to_string_lossy(),
                suites.join(", ")
            )),
        },
        (None, Some(default)) => Ok((default.to_owned(), args.to_vec())),
        (None, None) => Err(format!(
            "name a suite first; the suites are {}",
            suites.join(", ")
        )),
    }
}

/// Lists arguments for an error message, each in backquotes.
fn listed(args: &[OsString]) -> String {
    args.iter()
        .map(|arg| format!("`{}`", arg.to_string_lossy()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The workspace root, which is the parent of the xtask package's directory.
fn workspace_root() -> Result<PathBuf, String> {
    // Cargo sets `CARGO_MANIFEST_DIR` when it runs us; the value from build time covers running the binary directly.
    let manifest_dir = env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    manifest_dir.parent().map(Path::to_path_buf).ok_or_else(|| {
        format!(
            "cannot find the workspace root: `{}` has no parent directory",
            manifest_dir.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn parse_words(words: &[&str]) -> Result<Task, String> {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse(&args)
    }

    fn os(words: &[&str]) -> Vec<OsString> {
        words.iter().map(OsString::from).collect()
    }

    /// What the usage text says `words` mean, written out rather than taken from the
    /// parser's tables; an error carries the text its message must contain.
    fn model(words: &[String]) -> Result<Task, String> {
        let torture = ["atomic", "lock", "store", "all"];
        let bench = ["atomic", "lock", "sweep", "store", "all"];
        let Some((command, rest)) = words.split_first() else {
            return Ok(Task::Help);
        };
        let rest_os: Vec<OsString> = rest.iter().map(OsString::from).collect();
        let listed = || {
            rest.iter()
                .map(|w| format!("`{w}`"))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let named = rest.first().filter(|w| !w.starts_with('-'));
        match command.as_str() {
            "help" | "-h" | "--help" => Ok(Task::Help),
            "ci" if rest.is_empty() => Ok(Task::Ci { skip_slow: false }),
            "ci" if rest == ["--skip-slow"] => Ok(Task::Ci { skip_slow: true }),
            "ci" | "tidy" | "tools" if !rest.is_empty() => Err(listed()),
            "tidy" => Ok(Task::Tidy),
            "tools" => Ok(Task::Tools),
            "torture" => match named {
                None => Ok(Task::Torture {
                    suite: "all".to_owned(),
                    rest: rest_os,
                }),
                Some(suite) if torture.contains(&suite.as_str()) => Ok(Task::Torture {
                    suite: suite.clone(),
                    rest: rest_os[1..].to_vec(),
                }),
                Some(other) => Err(format!("`{other}`")),
            },
            "bench" => match named {
                None => Err(bench.join(", ")),
                Some(suite) if bench.contains(&suite.as_str()) => Ok(Task::Bench {
                    suite: suite.clone(),
                    rest: rest_os[1..].to_vec(),
                }),
                Some(other) => Err(format!("`{other}`")),
            },
            other => Err(format!("`{other}`")),
        }
    }

    /// Command words and near misses of them.
    const COMMANDS: [&str; 14] = [
        "help",
        "-h",
        "--help",
        "ci",
        "tidy",
        "tools",
        "torture",
        "bench",
        "lint",
        "Ci",
        "bench ",
        "atomic",
        "--skip-slow",
        "",
    ];

    /// Arguments after the command: suites, options and near misses of each.
    const ARGUMENTS: [&str; 15] = [
        "atomic",
        "lock",
        "sweep",
        "store",
        "all",
        "--skip-slow",
        "--quick",
        "--seed",
        "7",
        "-x",
        "-",
        "atomc",
        "sweeps",
        "--skip_slow",
        "",
    ];

    /// Checks one word list against the model.
    fn check(words: &[String]) -> Result<(), String> {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        match (parse(&args), model(words)) {
            (Ok(task), Ok(expected)) if task == expected => Ok(()),
            (Err(err), Err(must_name)) if err.contains(&must_name) => Ok(()),
            (got, expected) => Err(format!("{words:?}: got {got:?}, expected {expected:?}")),
        }
    }

    #[test]
    fn every_short_word_list_of_the_vocabulary_means_what_the_usage_says() {
        // All of them, so that no combination depends on a random draw.
        let mut lists: Vec<Vec<String>> = vec![Vec::new()];
        for command in COMMANDS {
            lists.push(vec![command.to_owned()]);
            for first in ARGUMENTS {
                lists.push(vec![command.to_owned(), first.to_owned()]);
                for second in ARGUMENTS {
                    lists.push(vec![
                        command.to_owned(),
                        first.to_owned(),
                        second.to_owned(),
                    ]);
                }
            }
        }
        let failures: Vec<String> = lists.iter().filter_map(|w| check(w).err()).collect();
        assert!(failures.is_empty(), "{}", failures.join("\n"));
    }

    /// Any word list, drawn mostly from the vocabulary but with any text mixed in.
    fn words() -> impl Strategy<Value = Vec<String>> {
        let command = prop_oneof![
            3 => proptest::sample::select(COMMANDS.to_vec()).prop_map(str::to_owned),
            1 => any::<String>(),
        ];
        let argument = prop_oneof![
            3 => proptest::sample::select(ARGUMENTS.to_vec()).prop_map(str::to_owned),
            1 => "[ -~]{0,12}",
            1 => any::<String>(),
        ];
        proptest::option::of((command, proptest::collection::vec(argument, 0..6))).prop_map(
            |list| match list {
                Some((command, mut rest)) => {
                    rest.insert(0, command);
                    rest
                }
                None => Vec::new(),
            },
        )
    }

    proptest! {
        #[test]
        fn every_word_list_means_what_the_usage_says(words in words()) {
            check(&words).map_err(TestCaseError::fail)?;
        }

        #[cfg(unix)]
        #[test]
        fn words_that_are_not_utf8_never_panic(
            words in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..8), 1..4),
        ) {
            use std::os::unix::ffi::OsStringExt;
            let args: Vec<OsString> = words.into_iter().map(OsString::from_vec).collect();
            let result = parse(&args);
            if args[0].to_str().is_none() {
                let err = result.expect_err("a command that is not UTF-8 is unknown");
                prop_assert!(err.starts_with("unknown command `"), "{}", err);
            }
        }
    }

    #[test]
    fn no_arguments_and_help_show_usage() {
        for words in [&[][..], &["help"], &["--help"], &["-h"]] {
            assert_eq!(parse_words(words), Ok(Task::Help), "{words:?}");
        }
    }

    #[test]
    fn unknown_command_is_an_error() {
        let err = parse_words(&["lint"]).expect_err("lint is not a command");
        assert!(err.contains("`lint`"), "{err}");
    }

    #[test]
    fn ci_takes_only_skip_slow() {
        assert_eq!(parse_words(&["ci"]), Ok(Task::Ci { skip_slow: false }));
        assert_eq!(
            parse_words(&["ci", "--skip-slow"]),
            Ok(Task::Ci { skip_slow: true })
        );
        assert!(parse_words(&["ci", "--quick"]).is_err());
        assert!(parse_words(&["ci", "--skip-slow", "--skip-slow"]).is_err());
    }

    #[test]
    fn tidy_takes_no_arguments() {
        assert_eq!(parse_words(&["tidy"]), Ok(Task::Tidy));
        assert!(parse_words(&["tidy", "--fix"]).is_err());
    }

    #[test]
    fn torture_defaults_to_all_and_passes_the_rest_through() {
        assert_eq!(
            parse_words(&["torture"]),
            Ok(Task::Torture {
                suite: "all".to_owned(),
                rest: Vec::new()
            })
        );
        assert_eq!(
            parse_words(&["torture", "--quick", "--seed", "7"]),
            Ok(Task::Torture {
                suite: "all".to_owned(),
                rest: os(&["--quick", "--seed", "7"])
            })
        );
        assert_eq!(
            parse_words(&["torture", "atomic", "--quick"]),
            Ok(Task::Torture {
                suite: "atomic".to_owned(),
                rest: os(&["--quick"])
            })
        );
        assert!(parse_words(&["torture", "atomc"]).is_err());
    }

    #[test]
    fn bench_needs_a_suite() {
        assert_eq!(
            parse_words(&["bench", "all", "--quick"]),
            Ok(Task::Bench {
                suite: "all".to_owned(),
                rest: os(&["--quick"])
            })
        );
        assert!(parse_words(&["bench"]).is_err());
        assert!(parse_words(&["bench", "--quick"]).is_err());
    }

    #[test]
    fn sweep_is_a_bench_suite_only() {
        assert_eq!(
            parse_words(&["bench", "sweep", "--quick"]),
            Ok(Task::Bench {
                suite: "sweep".to_owned(),
                rest: os(&["--quick"])
            })
        );
        let err = parse_words(&["torture", "sweep"]).expect_err("no sweep torture suite");
        assert!(err.contains("atomic, lock, store, all"), "{err}");
        let err = parse_words(&["bench", "swep"]).expect_err("a typo is not a suite");
        assert!(err.contains("atomic, lock, sweep, store, all"), "{err}");
    }

    #[test]
    fn workspace_root_holds_the_workspace_manifest() {
        let root = workspace_root().expect("the root is found");
        assert!(
            root.join("xtask").join("Cargo.toml").is_file(),
            "{}",
            root.display()
        );
        assert!(root.join("Cargo.toml").is_file(), "{}", root.display());
    }
}
