//! `sessionkit sweep`: remove the stale locks in some directories and print what was done.
//!
//! Every `*.lock` file is judged by the lock library's judge; a stale one is removed only if it
//! is still stale and unchanged when its OS lock is held, so a live owner is never robbed. The
//! sweep goes on past files it cannot judge or remove; they are listed, and the exit status is
//! then 74.

use std::fmt::Write as _;
use std::io::{self, Write as _};
use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use sessionkit::sweeper::{self, SweepEntry, SweepReport, Sweeper};

use crate::duration;
use crate::exit;
use crate::failure::Failure;

/// Arguments of `sessionkit sweep`.
#[derive(Debug, Args)]
pub(crate) struct SweepArgs {
    /// The directories to sweep; a missing one has no locks.
    #[arg(value_name = "DIR", required = true, num_args = 1..)]
    pub(crate) dirs: Vec<PathBuf>,

    /// Judge and report, but remove nothing.
    #[arg(long)]
    pub(crate) dry_run: bool,

    /// Print the sweep report as one JSON object (pretty-printed) instead of lines.
    #[arg(long)]
    pub(crate) json: bool,

    /// Also remove orphan temp files of atomic writes (.NAME.PID.RANDOM.sktmp) last modified
    /// longer ago than this, as 500ms, 60s, 5m or 1h [default: temp files are left alone].
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    pub(crate) temp_older_than: Option<Duration>,
}

/// Sweeps the directories, prints the report, and returns 0, or 74 if some file or directory
/// could not be handled.
pub(crate) fn run(args: &SweepArgs) -> Result<u8, Failure> {
    let sweeper = Sweeper::builder()
        .dry_run(args.dry_run)
        .temp_older_than(args.temp_older_than)
        .from_env()
        .build()
        .map_err(sweep_error)?;
    let report = sweeper.sweep(&args.dirs).map_err(sweep_error)?;
    let text = if args.json {
        report_json(&report)?
    } else {
        human(&report)
    };
    print(&text)?;
    let temp_errors = report.temps.as_ref().is_some_and(|t| !t.errors.is_empty());
    Ok(if report.totals.errors > 0 || temp_errors {
        exit::IO_ERR
    } else {
        exit::SUCCESS
    })
}

/// The report for people: a line per removed (or, in a dry run, removable) lock and temp file,
/// a line per error, then the summary line.
fn human(report: &SweepReport) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        let _ = writeln!(out, "{}", one_line(&text));
    };
    for entry in &report.entries {
        if entry.removed {
            line(format!(
                "removed {} ({})",
                entry.path.display(),
                reasons(entry)
            ));
        } else if report.dry_run && entry.is_stale() {
            line(format!(
                "would remove {} ({})",
                entry.path.display(),
                reasons(entry)
            ));
        }
        if let Some(error) = &entry.error {
            line(format!("error {}: {error}", entry.path.display()));
        }
    }
    for dir in &report.dir_errors {
        line(format!("error {}: {}", dir.path.display(), dir.error));
    }
    if let Some(temps) = &report.temps {
        let verb = if report.dry_run {
            "would remove"
        } else {
            "removed"
        };
        for temp in &temps.removed {
            line(format!("{verb} {} (orphan temp file)", temp.path.display()));
        }
        for error in &temps.errors {
            line(format!("error {}: {}", error.path.display(), error.error));
        }
    }
    let t = &report.totals;
    line(format!(
        "scanned {}, removed {}, kept {}, errors {}, lookups {}, in {}",
        t.scanned,
        t.removed,
        t.kept,
        t.errors,
        report.lookups,
        duration::human(Duration::from_millis(report.elapsed_ms)),
    ));
    out
}

/// A sweeper error as a failure: a bad setting is a usage error, anything else an I/O error.
pub(super) fn sweep_error(err: sweeper::Error) -> Failure {
    Failure::Sweep(err)
}

/// The report as pretty JSON, with a final newline.
pub(super) fn report_json(report: &SweepReport) -> Result<String, Failure> {
    let mut json = serde_json::to_string_pretty(report).map_err(Failure::ReportJson)?;
    json.push('\n');
    Ok(json)
}

/// Writes `text` to standard output.
pub(super) fn print(text: &str) -> Result<(), Failure> {
    let mut stdout = io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
        .map_err(Failure::Stdout)
}

/// An entry's reasons as `dead-pid, too-old`, or `no reason`.
pub(super) fn reasons(entry: &SweepEntry) -> String {
    if entry.reasons.is_empty() {
        return "no reason".to_owned();
    }
    let names: Vec<&str> = entry.reasons.iter().map(|r| r.as_str()).collect();
    names.join(", ")
}

/// A status as the JSON form writes it (`held`, `stale`, ...).
pub(super) fn status_name(status: sweeper::Status) -> String {
    match serde_json::to_value(status) {
        Ok(serde_json::Value::String(name)) => name,
        // The library serializes the status as a string; say so plainly if that changes.
        _ => "unknown".to_owned(),
    }
}

/// `text` with line breaks (a path may contain them) shown as `\n` and `\r`, so that it stays
/// on one line.
pub(super) fn one_line(text: &str) -> String {
    text.replace('\n', "\\n").replace('\r', "\\r")
}
