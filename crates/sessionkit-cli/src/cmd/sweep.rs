//! `sessionkit sweep`: remove the stale locks in some directories and print what was done.
//!
//! Every `*.lock` file is judged by the lock library's judge; a stale one is removed only if it
//! is still stale and unchanged when its OS lock is held, so a live owner is never robbed. The
//! sweep goes on past files it cannot judge or remove; they are listed, and the exit status is
//! then 74.

use std::fmt::Write as _;
use std::io::{self, IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use clap::{Args, ValueEnum};
use sessionkit::sweeper::{
    self, OwnerRule, SweepEntry, SweepProgress, SweepReport, Sweeper, SweeperBuilder,
};

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

    #[command(flatten)]
    pub(crate) owners: OwnerArgs,

    /// When to draw a progress bar on standard error: `auto` draws one on a terminal once the
    /// sweep has taken a second, `always` draws one from the start, `never` draws none.
    #[arg(long, value_enum, value_name = "WHEN", default_value_t = ProgressWhen::Auto)]
    pub(crate) progress: ProgressWhen,
}

/// Which owners count as ours, shared by `locks` and `sweep`.
#[derive(Debug, Args)]
#[command(group(
    clap::ArgGroup::new("ours_rule")
        .args(["programs", "ours_openclaw"])
        .multiple(true)
))]
pub(crate) struct OwnerArgs {
    /// A program whose processes count as ours, by the last path component of any word of the
    /// owner's command line (`gateway` matches `/usr/bin/gateway` and `node gateway.mjs`);
    /// repeat it for several [default: every owner counts as ours].
    #[arg(long = "ours", value_name = "PROGRAM")]
    pub(crate) programs: Vec<String>,

    /// Count OpenClaw's processes as ours, by OpenClaw's own command-line rule.
    #[arg(long)]
    pub(crate) ours_openclaw: bool,

    /// Judge a lock stale when its record makes no OS-lock promise and its live owner runs a
    /// program that is not ours (OpenClaw's non-owner rule); needs --ours or --ours-openclaw.
    #[arg(long, requires = "ours_rule")]
    pub(crate) foreign_owners_stale: bool,
}

impl OwnerArgs {
    /// Sets the owner rule and the non-owner rule on `builder`.
    pub(crate) fn apply(&self, builder: &mut SweeperBuilder) {
        let programs = (!self.programs.is_empty()).then(|| OwnerRule::programs(&self.programs));
        let openclaw = self.ours_openclaw.then(OwnerRule::openclaw);
        let rule = match (programs, openclaw) {
            (Some(p), Some(o)) => Some(OwnerRule::predicate(move |argv| {
                p.is_ours(argv) || o.is_ours(argv)
            })),
            (p, o) => p.or(o),
        };
        if let Some(rule) = rule {
            builder.ours(rule);
        }
        builder.foreign_owners_stale(self.foreign_owners_stale);
    }
}

/// When `sweep` draws its progress bar.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ProgressWhen {
    /// On a terminal, once the sweep has taken a second.
    Auto,
    /// From the start, terminal or not.
    Always,
    /// Never.
    Never,
}

/// How long a sweep runs before `auto` draws a bar.
const PROGRESS_AFTER: Duration = Duration::from_secs(1);
/// The shortest time between two redraws.
const REDRAW_EVERY: Duration = Duration::from_millis(100);

/// The progress bar on standard error, drawn from the sweeper's progress hook.
struct Bar {
    started: Instant,
    after: Duration,
    /// When the bar was last drawn, if it was.
    last: Mutex<Option<Instant>>,
}

impl Bar {
    /// The bar `when` asks for, or `None`.
    fn new(when: ProgressWhen) -> Option<Arc<Bar>> {
        let after = match when {
            ProgressWhen::Never => return None,
            ProgressWhen::Auto if !io::stderr().is_terminal() => return None,
            ProgressWhen::Auto => PROGRESS_AFTER,
            ProgressWhen::Always => Duration::ZERO,
        };
        Some(Arc::new(Bar {
            started: Instant::now(),
            after,
            last: Mutex::new(None),
        }))
    }

    fn tell(&self, progress: SweepProgress) {
        let now = Instant::now();
        if now.duration_since(self.started) < self.after {
            return;
        }
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let finished = progress.dirs_listed == progress.dirs && progress.done == progress.found;
        if last.is_some_and(|at| now.duration_since(at) < REDRAW_EVERY) && !finished {
            return;
        }
        *last = Some(now);
        // A progress bar that cannot be drawn is not worth failing the sweep for.
        let _ = write!(io::stderr().lock(), "\r{}", bar_line(progress, 30));
    }

    /// Ends the bar's line, if one was drawn.
    fn finish(&self) {
        let drawn = self
            .last
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_some();
        if drawn {
            let _ = writeln!(io::stderr().lock());
        }
    }
}

/// One frame of the bar, `width` cells wide:
/// `[#########.....] 6000 of 10000 locks, 4 of 6 dirs listed`.
fn bar_line(p: SweepProgress, width: usize) -> String {
    let filled = if p.found == 0 {
        0
    } else {
        (p.done.min(p.found) as u128 * width as u128 / p.found as u128) as usize
    };
    format!(
        "[{}{}] {} of {} locks, {} of {} dirs listed",
        "#".repeat(filled),
        ".".repeat(width - filled),
        p.done,
        p.found,
        p.dirs_listed,
        p.dirs
    )
}

/// Sweeps the directories, prints the report, and returns 0, or 74 if some file or directory
/// could not be handled.
pub(crate) fn run(args: &SweepArgs) -> Result<u8, Failure> {
    let mut builder = Sweeper::builder();
    builder
        .dry_run(args.dry_run)
        .temp_older_than(args.temp_older_than)
        .from_env();
    args.owners.apply(&mut builder);
    let bar = Bar::new(args.progress);
    if let Some(bar) = &bar {
        let bar = bar.clone();
        builder.progress(move |p| bar.tell(p));
    }
    let sweeper = builder.build().map_err(sweep_error)?;
    let report = sweeper.sweep(&args.dirs);
    if let Some(bar) = &bar {
        bar.finish();
    }
    let report = report.map_err(sweep_error)?;
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
        } else if report.dry_run && entry.is_removable() {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn progress(dirs: u64, dirs_listed: u64, found: u64, done: u64) -> SweepProgress {
        let mut p = SweepProgress::default();
        (p.dirs, p.dirs_listed, p.found, p.done) = (dirs, dirs_listed, found, done);
        p
    }

    #[test]
    fn bar_fills_in_proportion() {
        assert_eq!(
            bar_line(progress(6, 4, 10_000, 6_000), 10),
            "[######....] 6000 of 10000 locks, 4 of 6 dirs listed"
        );
        assert_eq!(
            bar_line(progress(1, 0, 0, 0), 4),
            "[....] 0 of 0 locks, 0 of 1 dirs listed"
        );
        assert_eq!(
            bar_line(progress(1, 1, 3, 3), 4),
            "[####] 3 of 3 locks, 1 of 1 dirs listed"
        );
    }
}
