//! The command line of `sessionkit-torture` (hand-parsed, std only) and the suite runner.

use std::ffi::OsString;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

use crate::child::{ChildArgs, Variant, parse_u64};
use crate::kill9::{self, Kill9Config};
use crate::power::{self, PowerConfig, PowerOutcome};
use crate::rng::seed_from_clock;

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

/// The help text.
pub const USAGE: &str = "\
usage: sessionkit-torture <suite> [--quick] [--seed N] [--kills N] [--images N] [--dir PATH]

suites:
  atomic    kill -9 torture and power-loss images for sessionkit-atomic-fs
  all       every suite (currently the same as atomic)

options:
  --quick     CI size: 2,000 kills and 300 images (default: a 20,000-kill, 3,000-image soak)
  --seed N    replay a run; the seed is printed at the start of every run
  --kills N   number of kill -9 rounds
  --images N  power-loss images with the correct writer (each mutant: until caught, max 400)
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
    /// The scratch base directory, if given.
    pub dir: Option<PathBuf>,
    /// The writer the kill -9 part uses; anything but [`Variant::Correct`] is a self-test that
    /// must fail.
    pub kill9_writer: Variant,
}

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Invocation {
    /// Print the help text.
    Help,
    /// Run a suite.
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
        "atomic" => Suite::Atomic,
        "all" => Suite::All,
        other => return Err(format!("unknown suite {other:?}")),
    };
    let mut options = SuiteOptions {
        suite,
        quick: false,
        seed: None,
        kills: None,
        images: None,
        dir: None,
        kill9_writer: Variant::Correct,
    };
    let mut it = rest.iter();
    while let Some(flag) = it.next() {
        let flag = flag.to_string_lossy();
        let mut value = || it.next().ok_or_else(|| format!("{flag} needs a value"));
        match flag.as_ref() {
            "--quick" => options.quick = true,
            "--seed" => options.seed = Some(parse_u64("--seed", value()?)?),
            "--kills" => options.kills = Some(parse_u64("--kills", value()?)?),
            "--images" => options.images = Some(parse_u64("--images", value()?)?),
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

/// Runs a suite, printing the report to stdout, and returns true if it passed.
pub fn run_suite(options: &SuiteOptions) -> bool {
    let started = Instant::now();
    let seed = options.seed.unwrap_or_else(seed_from_clock);
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
    let base_dir = options.dir.clone().unwrap_or_else(std::env::temp_dir);
    let suite = match options.suite {
        Suite::Atomic => "atomic",
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

    say(&format!(
        "\n== kill -9 torture (R5): {kills} kills, writer {}, durable/atomic-only alternating ==",
        options.kill9_writer
    ));
    let mut config = Kill9Config::new(exe.clone(), kills, seed, options.kill9_writer);
    config.base_dir = base_dir.clone();
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
        exe,
        base_dir,
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

/// Prints a line and flushes it, so progress shows while a long part runs.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}
