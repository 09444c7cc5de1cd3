//! The command line, parsed by hand with std.

use std::ffi::OsString;
use std::path::PathBuf;

/// The usage text printed by `--help` and after a bad argument.
pub const USAGE: &str = "\
usage: sessionkit-bench <atomic|lock|sweep|store|all> [--quick] [--iters N] [--dir PATH]

suites:
  atomic       atomic whole-file writes side by side, then the tokio stall probe
  lock         the write lock: uncontended cost, hand-off latency, contended throughput
  sweep        a startup sweep of stale locks, ours against the original's way, with a ticker
  store        the session registry at its cap: ours, the original's way, SQLite;
               then several processes writing one store: ours, SQLite
  all          every suite: atomic, then lock, then sweep, then store

options:
  --quick      the smoke run: few iterations, well under a minute
  --iters N    atomic: writes per thread per implementation in every cell;
               lock: acquires per implementation and hand-offs per row;
               sweep: rounds (every row sweeps once per round);
               store: rounds (every row runs once per round)
               (overrides the mode's counts)
  --dir PATH   run in a fresh temp dir inside PATH instead of the system temp dir
";

/// Which suite to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Suite {
    Atomic,
    Lock,
    Sweep,
    Store,
    All,
}

impl Suite {
    /// Whether this suite runs the `atomic` suite.
    pub(crate) fn runs_atomic(self) -> bool {
        matches!(self, Suite::Atomic | Suite::All)
    }

    /// Whether this suite runs the `lock` suite.
    pub(crate) fn runs_lock(self) -> bool {
        matches!(self, Suite::Lock | Suite::All)
    }

    /// Whether this suite runs the `sweep` suite.
    pub(crate) fn runs_sweep(self) -> bool {
        matches!(self, Suite::Sweep | Suite::All)
    }

    /// Whether this suite runs the `store` suite.
    pub(crate) fn runs_store(self) -> bool {
        matches!(self, Suite::Store | Suite::All)
    }
}

/// The hidden first word that starts a helper process of the `lock` suite.
pub(crate) const LOCK_CHILD: &str = "lock-child";

/// A parsed command line that asks for a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Options {
    pub(crate) suite: Suite,
    pub(crate) quick: bool,
    pub(crate) iters: Option<usize>,
    pub(crate) dir: Option<PathBuf>,
}

/// What the command line asks for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Parsed {
    Run(Options),
    Help,
    /// The binary was started by the `lock` suite as one of its contenders (the words after
    /// `lock-child`); not in the usage.
    LockChild(Vec<OsString>),
}

/// Parses the arguments after the program name; an error is a message to show with the usage.
pub(crate) fn parse(args: &[OsString]) -> Result<Parsed, String> {
    if let Some((first, rest)) = args.split_first()
        && first == LOCK_CHILD
    {
        return Ok(Parsed::LockChild(rest.to_vec()));
    }
    let mut suite = None;
    let mut quick = false;
    let mut iters = None;
    let mut dir = None;
    let mut rest = args.iter();
    while let Some(arg) = rest.next() {
        let Some(word) = arg.to_str() else {
            return Err(format!("unexpected argument `{}`", arg.to_string_lossy()));
        };
        match word {
            "-h" | "--help" | "help" => return Ok(Parsed::Help),
            "--quick" => quick = true,
            "--iters" => {
                let value = rest.next().ok_or("--iters needs a number")?;
                let n = value
                    .to_str()
                    .and_then(|v| v.parse::<usize>().ok())
                    .filter(|&n| n > 0)
                    .ok_or_else(|| {
                        format!(
                            "--iters needs a positive number, not `{}`",
                            value.to_string_lossy()
                        )
                    })?;
                iters = Some(n);
            }
            "--dir" => {
                let value = rest.next().ok_or("--dir needs a path")?;
                dir = Some(PathBuf::from(value));
            }
            "atomic" if suite.is_none() => suite = Some(Suite::Atomic),
            "lock" if suite.is_none() => suite = Some(Suite::Lock),
            "sweep" if suite.is_none() => suite = Some(Suite::Sweep),
            "store" if suite.is_none() => suite = Some(Suite::Store),
            "all" if suite.is_none() => suite = Some(Suite::All),
            other if other.starts_with('-') => return Err(format!("unknown option `{other}`")),
            other => {
                return Err(format!(
                    "unknown suite `{other}`; the suites are atomic, lock, sweep, store, all"
                ));
            }
        }
    }
    let suite =
        suite.ok_or("name a suite first; the suites are atomic, lock, sweep, store, all")?;
    Ok(Parsed::Run(Options {
        suite,
        quick,
        iters,
        dir,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_words(words: &[&str]) -> Result<Parsed, String> {
        let args: Vec<OsString> = words.iter().map(OsString::from).collect();
        parse(&args)
    }

    #[test]
    fn full_command_line() {
        let parsed = parse_words(&["atomic", "--quick", "--iters", "7", "--dir", "/mnt/x"]);
        assert_eq!(
            parsed,
            Ok(Parsed::Run(Options {
                suite: Suite::Atomic,
                quick: true,
                iters: Some(7),
                dir: Some(PathBuf::from("/mnt/x")),
            }))
        );
    }

    #[test]
    fn all_is_a_suite() {
        let Ok(Parsed::Run(options)) = parse_words(&["all"]) else {
            panic!("`all` should parse");
        };
        assert_eq!(options.suite, Suite::All);
        assert!(!options.quick);
    }

    #[test]
    fn lock_is_a_suite_and_all_runs_both() {
        let Ok(Parsed::Run(options)) = parse_words(&["lock", "--quick"]) else {
            panic!("`lock` should parse");
        };
        assert_eq!(options.suite, Suite::Lock);
        assert!(options.quick);
        assert!(options.suite.runs_lock() && !options.suite.runs_atomic());
        assert!(Suite::All.runs_atomic() && Suite::All.runs_lock());
        assert!(!Suite::Atomic.runs_lock());
    }

    #[test]
    fn sweep_is_a_suite_and_all_runs_it() {
        let Ok(Parsed::Run(options)) = parse_words(&["sweep", "--quick"]) else {
            panic!("`sweep` should parse");
        };
        assert_eq!(options.suite, Suite::Sweep);
        assert!(options.quick);
        assert!(options.suite.runs_sweep());
        assert!(!options.suite.runs_atomic() && !options.suite.runs_lock());
        assert!(Suite::All.runs_sweep());
        assert!(!Suite::Atomic.runs_sweep() && !Suite::Lock.runs_sweep());
    }

    #[test]
    fn the_child_role_takes_the_rest_unparsed() {
        assert_eq!(
            parse_words(&["lock-child", "churn", "--quick"]),
            Ok(Parsed::LockChild(vec!["churn".into(), "--quick".into()]))
        );
        // Only as the first word.
        assert!(parse_words(&["lock", "lock-child"]).is_err());
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(parse_words(&[]).is_err());
        assert!(parse_words(&["--quick"]).is_err());
        assert!(parse_words(&["atomic", "--iters"]).is_err());
        assert!(parse_words(&["atomic", "--iters", "0"]).is_err());
        assert!(parse_words(&["atomic", "--iters", "many"]).is_err());
        assert!(parse_words(&["atomic", "--fast"]).is_err());
        assert!(parse_words(&["atomic", "atomic"]).is_err());
        assert!(parse_words(&["atomic", "lock"]).is_err());
        assert!(parse_words(&["sweep", "sweep"]).is_err());
        assert!(parse_words(&["locks"]).is_err());
    }

    #[test]
    fn help_wins() {
        assert_eq!(parse_words(&["atomic", "--help"]), Ok(Parsed::Help));
    }
}
