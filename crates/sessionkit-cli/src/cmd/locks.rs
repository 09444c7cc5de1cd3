//! `sessionkit locks`: list every lock in some directories with its status and reasons,
//! changing nothing.
//!
//! It is a dry-run sweep: the sweeper's judge looks at each `*.lock` file, and the report is
//! printed one lock a line for people, or whole as JSON for scripts. Whatever the locks'
//! states, the command succeeds: the states are the answer.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sessionkit::sweeper::{SweepEntry, SweepReport, Sweeper};

use super::sweep::{OwnerArgs, one_line, print, reasons, report_json, status_name, sweep_error};
use crate::duration;
use crate::failure::Failure;

/// Arguments of `sessionkit locks`.
#[derive(Debug, Args)]
pub(crate) struct LocksArgs {
    /// The directories to look in; a missing one has no locks.
    #[arg(value_name = "DIR", required = true, num_args = 1..)]
    pub(crate) dirs: Vec<PathBuf>,

    /// Print the sweep report as one JSON object (pretty-printed) instead of one lock a line.
    #[arg(long)]
    pub(crate) json: bool,

    #[command(flatten)]
    pub(crate) owners: OwnerArgs,
}

/// Judges every lock in the directories, removing nothing, and prints what was found.
pub(crate) fn run(args: &LocksArgs) -> Result<(), Failure> {
    let mut builder = Sweeper::builder();
    builder.dry_run(true).from_env();
    args.owners.apply(&mut builder);
    let sweeper = builder.build().map_err(sweep_error)?;
    let report = sweeper.sweep(&args.dirs).map_err(sweep_error)?;
    let text = if args.json {
        report_json(&report)?
    } else {
        human(&report)
    };
    print(&text)
}

/// The report for people: one line per lock, one per directory that could not be listed, and
/// the counts.
fn human(report: &SweepReport) -> String {
    let mut out = String::new();
    let (mut held, mut stale, mut malformed, mut not_locks, mut errors) = (0, 0, 0, 0, 0);
    for entry in &report.entries {
        match label(entry).as_str() {
            "held" => held += 1,
            "stale" => stale += 1,
            "malformed" => malformed += 1,
            NOT_A_LOCK => not_locks += 1,
            _ => errors += 1,
        }
        let _ = writeln!(out, "{}", one_line(&line(entry)));
    }
    for dir in &report.dir_errors {
        errors += 1;
        let _ = writeln!(
            out,
            "{}",
            one_line(&format!("error  {}  {}", dir.path.display(), dir.error))
        );
    }
    let count = report.entries.len();
    let noun = if count == 1 { "lock" } else { "locks" };
    let _ = write!(
        out,
        "{count} {noun}: {held} held, {stale} stale, {malformed} malformed"
    );
    if not_locks > 0 {
        let _ = write!(out, ", {not_locks} not locks");
    }
    if errors > 0 {
        let _ = write!(out, ", {errors} errors");
    }
    out.push('\n');
    out
}

/// One lock: `stale     /d/b.lock  pid 456  age 2 h  reasons: dead-pid, too-old`; the status
/// is padded to the width of `malformed`, so the paths line up.
fn line(entry: &SweepEntry) -> String {
    let status = label(entry);
    let mut line = format!("{status:<9} {}", entry.path.display());
    if entry.symlink {
        line.push_str(" (symlink)");
    }
    if let Some(pid) = entry.pid {
        let _ = write!(line, "  pid {pid}");
    }
    if let Some(age_ms) = entry.age_ms {
        let _ = write!(line, "  age {}", age(Duration::from_millis(age_ms)));
    }
    if !entry.reasons.is_empty() {
        let _ = write!(line, "  reasons: {}", reasons(entry));
    }
    if let Some(error) = &entry.error {
        let _ = write!(line, "  error: {error}");
    }
    line
}

/// The label of a file that holds no lock record, which a sweep never touches, whatever the
/// judge made of it.
const NOT_A_LOCK: &str = "not-lock";

/// A file's status as listed: the judge's, or `not-lock`, or `error`.
fn label(entry: &SweepEntry) -> String {
    match entry.status {
        Some(_) if entry.not_a_record => NOT_A_LOCK.to_owned(),
        Some(status) => status_name(status),
        None => "error".to_owned(),
    }
}

/// A lock's age for people: as [`duration::human`] under 100 s, then whole minutes, hours or
/// days, rounded down (`5 min`, `2 h`, `2191 d`).
pub(super) fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 100 {
        duration::human(d)
    } else if s < 2 * 3_600 {
        format!("{} min", s / 60)
    } else if s < 2 * 86_400 {
        format!("{} h", s / 3_600)
    } else {
        format!("{} d", s / 86_400)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ages_pick_a_readable_unit() {
        assert_eq!(age(Duration::from_millis(12_345)), "12.3 s");
        assert_eq!(age(Duration::from_secs(99)), "99.0 s");
        assert_eq!(age(Duration::from_secs(100)), "1 min");
        assert_eq!(age(Duration::from_secs(7_199)), "119 min");
        assert_eq!(age(Duration::from_secs(7_200)), "2 h");
        assert_eq!(age(Duration::from_secs(172_800)), "2 d");
    }
}
