//! The command line of `sessionkit-torture` (hand-parsed, std only) and the suite runner.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::child::{ChildArgs, Variant, parse_u64};
use crate::kill9::{self, Kill9Config};
use crate::lock_child::{self, LockVariant, LockerArgs};
use crate::lockcheck::{self, LockCheckConfig};
use crate::power::{self, PowerConfig, PowerOutcome};
use crate::rng::{mix64, seed_from_clock};

/// Kills in a `--quick` run, the CI floor of the plan's R5 quick tier.
pub const QUICK_KILLS: u64 = 2_000;
/// Kills in a long soak.
pub const SOAK_KILLS: u64 = 20_000;
/// Correct-writer images in a `--quick` run.
pub const QUICK_IMAGES: u64 = 300;
/// Correct-writer images in a long soak.
pub const SOAK_IMAGES: u64 = 3_000;
/// The most images each fsync mutant gets before it counts as not caught.
pub const MUTANT_IMAGE_CAP: u64 = 400;
/// Completed lock sections (correct lock) in a `--quick` run, the plan's R7 floor.
pub const QUICK_SECTIONS: u64 = 20_000;
/// Completed lock sections in a long soak.
pub const SOAK_SECTIONS: u64 = 200_000;
/// The counter the steal-mutant run aims at (it also ends on [`MUTANT_TIME_LIMIT`]).
pub const MUTANT_SECTIONS: u64 = 2_000;
/// The longest the steal-mutant run lasts.
pub const MUTANT_TIME_LIMIT: Duration = Duration::from_secs(30);

/// The help text.
pub const USAGE: &str = "\
usage: sessionkit-torture <suite> [--quick] [--seed N] [--kills N] [--images N] [--sections N]
                          [--dir PATH]

suites:
  atomic    kill -9 torture and power-loss images for sessionkit-atomic-fs
  lock      lock-set checker for sessionkit-write-lock: 4 processes increment a counter under
            the lock while SIGKILL and SIGSTOP nemeses strike; then the naive-steal mutant,
            which must be caught
  all       every suite: atomic, then lock

options:
  --quick     CI size: 2,000 kills, 300 images and 20,000 lock sections (default: a soak of
              20,000 kills, 3,000 images and 200,000 lock sections)
  --seed N    replay a run; the seed is printed at the start of every run
  --kills N   number of kill -9 rounds
  --images N  power-loss images with the correct writer (each mutant: until caught, max 400)
  --sections N
              lock sections the correct lock must complete
  --dir PATH  where scratch dirs and the ext4 image go (default: the system temp dir)
  --kill9-writer VARIANT
              self-test: run the kill -9 part with a broken writer (in-place, no-temp-fsync,
              no-dir-fsync) to see the run fail; default: correct

Parts this machine cannot run print a line starting with `SKIP: `.
Exit status: 0 when no violation, 1 on a violation or harness error, 2 on a usage error.";

/// Which suite to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Suite {
    /// The atomic-fs suite.
    Atomic,
    /// The write-lock suite.
    Lock,
    /// Every suite.
    All,
}

/// The options of a suite run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SuiteOptions {
    /// The suite.
    pub suite: Suite,
    /// CI size instead of a soak.
    pub quick: bool,
    /// The seed, if given.
    pub seed: Option<u64>,
    /// Kill -9 rounds, if given.
    pub kills: Option<u64>,
    /// Correct-writer images, if given.
    pub images: Option<u64>,
    /// Completed lock sections, if given.
    pub sections: Option<u64>,
    /// The scratch base directory, if given.
    pub dir: Option<PathBuf>,
    /// The writer the kill -9 part uses; anything but [`Variant::Correct`] is a self-test that
    /// must fail.
    pub kill9_writer: Variant,
    /// Set for the internal `child-locker` role: play a lock-set worker instead of a suite
    /// (routed through [`Invocation::Suite`] so the binary's dispatch stays as it is).
    pub child_locker: Option<LockerArgs>,
}

impl SuiteOptions {
    /// The options of `suite` with every option left at its default.
    pub fn new(suite: Suite) -> SuiteOptions {
        SuiteOptions {
            suite,
            quick: false,
            seed: None,
            kills: None,
            images: None,
            sections: None,
            dir: None,
            kill9_writer: Variant::Correct,
            child_locker: None,
        }
    }
}

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// Print the help text.
    Help,
    /// Run a suite (or, with [`SuiteOptions::child_locker`], play a lock-set worker).
    Suite(SuiteOptions),
    /// Play a child writer (spawned by the harness itself).
    ChildWriter(ChildArgs),
}

/// Parses the arguments after the program name.
///
/// # Errors
///
/// A message for a usage error.
pub fn parse(args: &[OsString]) -> Result<Invocation, String> {
    let Some((first, rest)) = args.split_first() else {
        return Err("missing suite".into());
    };
    let suite = match first.to_string_lossy().as_ref() {
        "-h" | "--help" | "help" => return Ok(Invocation::Help),
        "child-writer" => return ChildArgs::parse(rest).map(Invocation::ChildWriter),
        "child-locker" => {
            let mut options = SuiteOptions::new(Suite::Lock);
            options.child_locker = Some(LockerArgs::parse(rest)?);
            return Ok(Invocation::Suite(options));
        }
        "atomic" => Suite::Atomic,
        "lock" => Suite::Lock,
        "all" => Suite::All,
        other => return Err(format!("unknown suite {other:?}")),
    };
    let mut options = SuiteOptions::new(suite);
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy();
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_ref() {
            "--quick" => options.quick = true,
            "--seed" => options.seed = Some(parse_u64("--seed", value()?)?),
            "--kills" => options.kills = Some(parse_u64("--kills", value()?)?),
            "--images" => options.images = Some(parse_u64("--images", value()?)?),
            "--sections" => options.sections = Some(parse_u64("--sections", value()?)?),
            "--dir" => options.dir = Some(PathBuf::from(value()?)),
            "--kill9-writer" => {
                let name = value()?.to_string_lossy();
                options.kill9_writer =
                    Variant::parse(&name).ok_or_else(|| format!("unknown writer {name:?}"))?;
            }
            other => return Err(format!("unknown option {other:?}")),
        }
    }
    Ok(Invocation::Suite(options))
}

/// Runs a suite, printing the report to stdout, and returns true if it passed. With
/// [`SuiteOptions::child_locker`] set, plays that lock-set worker instead and returns true if it
/// stopped cleanly.
pub fn run_suite(options: &SuiteOptions) -> bool {
    if let Some(args) = &options.child_locker {
        return match lock_child::run(args) {
            Ok(()) => true,
            Err(e) => {
                eprintln!("child-locker: {e}");
                false
            }
        };
    }
    let started = Instant::now();
    let seed = options.seed.unwrap_or_else(seed_from_clock);
    let base_dir = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let suite = match options.suite {
        Suite::Atomic => "atomic",
        Suite::Lock => "lock",
        Suite::All => "all",
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            println!("ERROR: cannot find this program's path to spawn children: {e}");
            return false;
        }
    };
    say(&format!(
        "sessionkit-torture {suite}{}: seed {seed} (replay with --seed {seed})",
        if options.quick { " --quick" } else { "" }
    ));
    let mut failures = Vec::new();
    if matches!(options.suite, Suite::Atomic | Suite::All) {
        run_atomic(options, &exe, &base_dir, seed, &mut failures);
    }
    if matches!(options.suite, Suite::Lock | Suite::All) {
        run_lock(options, &exe, &base_dir, seed, &mut failures);
    }

    let elapsed = started.elapsed().as_secs_f64();
    say("");
    if failures.is_empty() {
        say(&format!(
            "RESULT: PASS (seed {seed}, elapsed {elapsed:.1}s)"
        ));
        true
    } else {
        for failure in &failures {
            say(&format!("FAIL: {failure}"));
        }
        say(&format!(
            "RESULT: FAIL (seed {seed}, elapsed {elapsed:.1}s); replay with --seed {seed}"
        ));
        false
    }
}

/// The atomic suite: kill -9 torture and power-loss images.
fn run_atomic(
    options: &SuiteOptions,
    exe: &Path,
    base_dir: &Path,
    seed: u64,
    failures: &mut Vec<String>,
) {
    let kills = options.kills.unwrap_or(if options.quick {
        QUICK_KILLS
    } else {
        SOAK_KILLS
    });
    let images = options.images.unwrap_or(if options.quick {
        QUICK_IMAGES
    } else {
        SOAK_IMAGES
    });
    say(&format!(
        "\n== kill -9 torture (R5): {kills} kills, writer {}, durable/atomic-only alternating ==",
        options.kill9_writer
    ));
    let mut config = Kill9Config::new(exe.to_path_buf(), kills, seed, options.kill9_writer);
    config.base_dir = base_dir.to_path_buf();
    match kill9::run(&config) {
        Ok(report) => {
            say(&report.to_string());
            if report.violations > 0 {
                failures.push(format!("kill -9: {} violations", report.violations));
            }
        }
        Err(e) => {
            say(&format!("ERROR: kill -9 torture could not run: {e}"));
            failures.push(format!("kill -9 harness error: {e}"));
        }
    }

    say(&format!(
        "\n== power-loss images (R6): ext4 on loop, commit=60; correct writer {images} images, \
         each fsync mutant until caught (max {MUTANT_IMAGE_CAP}) =="
    ));
    let config = PowerConfig {
        exe: exe.to_path_buf(),
        base_dir: base_dir.to_path_buf(),
        correct_images: images,
        mutant_cap: MUTANT_IMAGE_CAP,
        seed,
    };
    match power::run(&config) {
        Ok(PowerOutcome::Skipped(reason)) => say(&format!("SKIP: power-loss images: {reason}")),
        Ok(PowerOutcome::Ran(report)) => {
            say(&report.to_string());
            failures.extend(report.failures());
        }
        Err(e) => {
            say(&format!("ERROR: power-loss images could not run: {e}"));
            failures.push(format!("power-loss harness error: {e}"));
        }
    }
}

/// The lock suite: the lock-set checker on the correct lock, then on the steal mutant.
fn run_lock(
    options: &SuiteOptions,
    exe: &Path,
    base_dir: &Path,
    seed: u64,
    failures: &mut Vec<String>,
) {
    let sections = options.sections.unwrap_or(if options.quick {
        QUICK_SECTIONS
    } else {
        SOAK_SECTIONS
    });
    let mut config = LockCheckConfig::new(exe.to_path_buf(), LockVariant::Correct, sections, seed);
    config.base_dir = base_dir.to_path_buf();
    // At the measured rate a soak takes minutes; the limit only catches a crawl.
    config.time_limit = Duration::from_secs(60) + Duration::from_millis(sections.min(1 << 40) * 5);
    say(&format!(
        "\n== lock-set checker (R7): correct lock, {} workers, {sections} sections; nemeses: \
         SIGKILL and SIGSTOP for {} ms (max hold {} ms, stale age {} ms), mostly of the holder; \
         at least {} kills and {} stopped holders ==",
        config.workers,
        config.pause.as_millis(),
        config.timing.max_hold.as_millis(),
        config.timing.stale_after.as_millis(),
        config.min_kills,
        config.min_holder_stops,
    ));
    match lockcheck::run(&config) {
        Ok(report) => {
            say(&report.to_string());
            if report.violations() > 0 {
                failures.push(format!(
                    "lock-set checker: {} violations",
                    report.violations()
                ));
            }
            if report.fell_short {
                failures.push(format!(
                    "lock-set checker: only {} of {sections} sections within {:?}",
                    report.verdict.sections, config.time_limit
                ));
            }
        }
        Err(e) => {
            say(&format!("ERROR: lock-set checker could not run: {e}"));
            failures.push(format!("lock-set checker harness error: {e}"));
        }
    }

    let mut config = LockCheckConfig::steal_mutant(
        exe.to_path_buf(),
        MUTANT_SECTIONS,
        MUTANT_TIME_LIMIT,
        mix64(seed ^ 0x57ea1),
    );
    config.base_dir = base_dir.to_path_buf();
    say(&format!(
        "\n== lock-set checker, mutant: naive steal of a lock file older than {} ms, {} workers, \
         SIGSTOP of the holder for {} ms; must show lost updates or overlaps ==",
        config.timing.steal_after.as_millis(),
        config.workers,
        config.pause.as_millis(),
    ));
    match lockcheck::run(&config) {
        Ok(report) => {
            say(&report.to_string());
            if report.caught() {
                say(&format!(
                    "mutant caught: {} lost updates, {} overlaps",
                    report.verdict.lost_updates, report.verdict.overlaps
                ));
            } else {
                failures.push(
                    "lock-set checker: the steal mutant showed no lost update or overlap"
                        .to_owned(),
                );
            }
        }
        Err(e) => {
            say(&format!("ERROR: lock-set mutant run could not run: {e}"));
            failures.push(format!("lock-set mutant harness error: {e}"));
        }
    }
}

/// Prints a line and flushes it, so progress shows while a long part runs.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
