//! `sessionkit doctor`: one report on a state directory, and with `--fix` its repair.
//!
//! The report is read-only: locks are judged by a dry-run sweep, the registry is read as
//! `store check` reads it (under a shared lock, never repaired), transcripts and temp files
//! are looked at, nothing is written. `--fix` then calls the same library functions the other
//! commands use: the sweeper, the store opened with `recover` (which cuts a torn journal tail
//! and quarantines a corrupt file), one maintenance pass that only handles orphans, a
//! compaction, and a transcript's write lock around the repair of its torn tail.

mod diagnose;
mod fix;

use std::fmt::Write as _;
use std::io;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Args;
use serde::Serialize;

use super::locks::age as human_age;
use super::sweep::{one_line, print};
use crate::failure::Failure;
use crate::{duration, exit};

/// The registry's snapshot in the state directory.
pub(crate) const SNAPSHOT: &str = "sessions.json";

/// By default, how old a temp file of an atomic write must be before it counts as left by a
/// crash: 5 minutes, the age past which the store removes its own.
const TEMP_GRACE: Duration = Duration::from_secs(5 * 60);

/// Arguments of `sessionkit doctor`.
#[derive(Debug, Args)]
pub(crate) struct DoctorArgs {
    /// The state directory: sessions.json and its journal, the transcripts, the lock files.
    #[arg(value_name = "DIR")]
    pub(crate) dir: PathBuf,

    /// Repair what can be repaired: remove stale locks and old temp files, cut torn tails,
    /// quarantine a corrupt registry, archive orphan transcripts past the grace, compact the
    /// journal; print each action.
    #[arg(long)]
    pub(crate) fix: bool,

    /// Print the report as one JSON object (pretty-printed) instead of lines.
    #[arg(long)]
    pub(crate) json: bool,

    /// Leave transcripts no entry references alone until they are this old, as 500ms, 60s, 5m
    /// or 1h [default: 1h].
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    pub(crate) orphan_grace: Option<Duration>,

    /// Count temp files of atomic writes as left by a crash once they are this old [default:
    /// 5m].
    #[arg(long, value_name = "DUR", value_parser = duration::parse)]
    pub(crate) temp_older_than: Option<Duration>,

    /// The disk budget of the directory, in bytes, as `store maintain --max-disk-bytes` counts
    /// it: all its files, those below its subdirectories included [default: none, the use is
    /// only reported].
    #[arg(long, value_name = "BYTES")]
    pub(crate) max_disk_bytes: Option<u64>,
}

/// The settings of one run, with their defaults filled in.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Settings {
    pub(crate) orphan_grace: Duration,
    pub(crate) temp_older_than: Duration,
    pub(crate) max_disk_bytes: Option<u64>,
}

/// The part of the report a finding belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Section {
    Locks,
    Registry,
    Transcripts,
    Temps,
    Disk,
}

impl Section {
    const ALL: [Section; 5] = [
        Section::Locks,
        Section::Registry,
        Section::Transcripts,
        Section::Temps,
        Section::Disk,
    ];
}

/// What a finding is about. A kind is either always a problem or never one, except
/// `registry` (information) and the error kinds (problems that `--fix` cannot touch).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Kind {
    /// A live owner holds the lock.
    HeldLock,
    /// The lock's owner is gone; `--fix` removes it.
    StaleLock,
    /// The lock file holds no owner record yet and is within the grace period.
    MalformedLock,
    /// A regular file with a `.lock` name that holds no lock record: another program's
    /// file, never touched.
    NotALock,
    /// A lock file or the directory could not be judged.
    LockError,
    /// No `sessions.json` and no journal.
    NoRegistry,
    /// The registry's sizes.
    Registry,
    /// The snapshot cannot be read; `--fix` quarantines it.
    SnapshotCorrupt,
    /// A whole journal line is not a record; `--fix` quarantines the journal.
    JournalCorrupt,
    /// The journal was written by a newer format version; nothing touches it.
    JournalUnsupported,
    /// The snapshot is missing beside a journal a compaction wrote: it was lost; nothing
    /// touches the registry, so that the journal's records stay for an operator.
    SnapshotMissing,
    /// The journal ends in a torn tail; `--fix` cuts it.
    JournalTornTail,
    /// The journal ends in a failed batch behind its fence; `--fix` cuts it.
    JournalFencedBatch,
    /// The journal's fence file cannot be read; `--fix` quarantines it.
    FenceCorrupt,
    /// A journal record every reader skips (its `seq` is not above an earlier one of its
    /// writer): damage; nothing touches the registry, so that the record stays for an
    /// operator rather than be dropped by a compaction.
    JournalSkippedRecord,
    /// The registry could not be read.
    RegistryError,
    /// A damaged file set aside earlier (a snapshot renamed, a journal copied); an operator
    /// looks at it.
    QuarantinedFile,
    /// A transcript ends in a torn tail; `--fix` cuts it under the transcript's lock.
    TranscriptTornTail,
    /// A transcript no entry references, past the grace; `--fix` archives it.
    OrphanTranscript,
    /// A transcript no entry references, within the grace; kept.
    RecentOrphanTranscript,
    /// A transcript could not be read.
    TranscriptError,
    /// A temp file of an atomic write older than the age; `--fix` removes it.
    TempFile,
    /// Temp files younger than the age; kept.
    RecentTempFiles,
    /// A temp file could not be looked at or removed.
    TempError,
    /// Above the high water mark of the budget, within the budget.
    OverHighWater,
    /// Over the budget; `--fix` does not evict.
    OverBudget,
}

impl Kind {
    /// The name as the JSON form writes it.
    fn as_str(self) -> String {
        match serde_json::to_value(self) {
            Ok(serde_json::Value::String(name)) => name,
            _ => format!("{self:?}"),
        }
    }
}

/// What became of a problem under `--fix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Outcome {
    /// It is gone.
    Fixed,
    /// The damaged file was set aside (a snapshot renamed, a journal copied and replaced); it
    /// still needs an operator, so it counts as left.
    Quarantined,
    /// It is still there.
    Left,
    /// The repair failed; the action says why.
    Failed,
}

/// One thing the doctor found.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Finding {
    pub(crate) section: Section,
    pub(crate) kind: Kind,
    /// True if it is a problem (counted, and making the exit status non-zero while it is left).
    pub(crate) problem: bool,
    /// True if it is an I/O error (exit status 74).
    pub(crate) error: bool,
    /// The file it is about, if one.
    pub(crate) path: Option<PathBuf>,
    /// What and where, in words.
    pub(crate) message: String,
    /// What `--fix` does about it; `None` if it leaves it.
    pub(crate) fix: Option<String>,
    /// What `--fix` did about it; `None` without `--fix` and for findings that are not
    /// problems.
    pub(crate) outcome: Option<Outcome>,
    /// The lock owner's pid, for a lock (or a transcript whose lock is held).
    pub(crate) pid: Option<u32>,
    /// The age in milliseconds: of a lock, or since a file was last modified.
    pub(crate) age_ms: Option<u64>,
    /// A size in bytes: of a file, a torn tail, or the directory's use.
    pub(crate) bytes: Option<u64>,
}

impl Finding {
    /// A finding that is not a problem.
    pub(crate) fn info(section: Section, kind: Kind, path: Option<&Path>, message: String) -> Self {
        Finding {
            section,
            kind,
            problem: false,
            error: false,
            path: path.map(Path::to_path_buf),
            message,
            fix: None,
            outcome: None,
            pid: None,
            age_ms: None,
            bytes: None,
        }
    }

    /// A problem; `fix` says what `--fix` does about it, if anything.
    pub(crate) fn problem(
        section: Section,
        kind: Kind,
        path: Option<&Path>,
        message: String,
        fix: Option<String>,
    ) -> Self {
        Finding {
            problem: true,
            fix,
            ..Finding::info(section, kind, path, message)
        }
    }

    /// An I/O error: a problem that `--fix` cannot repair.
    pub(crate) fn error(
        section: Section,
        kind: Kind,
        path: Option<&Path>,
        message: String,
    ) -> Self {
        Finding {
            error: true,
            ..Finding::problem(section, kind, path, message, None)
        }
    }

    /// Sets the pid.
    pub(crate) fn pid(mut self, pid: Option<u32>) -> Self {
        self.pid = pid;
        self
    }

    /// Sets the age.
    pub(crate) fn age(mut self, age: Option<Duration>) -> Self {
        self.age_ms = age.map(millis);
        self
    }

    /// Sets the size.
    pub(crate) fn bytes(mut self, bytes: u64) -> Self {
        self.bytes = Some(bytes);
        self
    }

    /// The line for people: `kind: message; --fix <does this>`.
    fn line(&self) -> String {
        let mut line = format!("{}: {}", self.kind.as_str(), self.message);
        match (&self.fix, self.problem) {
            (Some(fix), _) => {
                let _ = write!(line, "; --fix {fix}");
            }
            (None, true) => line.push_str("; --fix leaves it"),
            (None, false) => {}
        }
        line
    }
}

/// One thing `--fix` did, or tried to do.
#[derive(Clone, Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Action {
    /// What was done, as a short name: `remove-lock`, `cut-tail`, `quarantine`, ...
    pub(crate) action: &'static str,
    /// The file acted on.
    pub(crate) path: Option<PathBuf>,
    /// What was done (or why it failed), in words.
    pub(crate) message: String,
    /// True if it failed.
    pub(crate) failed: bool,
}

/// The sizes of the registry's files, for the report.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RegistryInfo {
    pub(crate) path: PathBuf,
    pub(crate) journal_path: PathBuf,
    /// True if the snapshot or the journal exists.
    pub(crate) exists: bool,
    /// The entries after the journal is replayed; `None` if there is no registry or it could
    /// not be read.
    pub(crate) entries: Option<usize>,
    pub(crate) snapshot_bytes: u64,
    pub(crate) journal_bytes: u64,
    /// Journal records since the last compaction.
    pub(crate) journal_records: usize,
}

/// The bytes of the directory's files, by kind.
#[derive(Clone, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct DiskUse {
    /// The bytes of the sessionkit files: everything below but `otherBytes`.
    pub(crate) bytes: u64,
    /// How many sessionkit files there are.
    pub(crate) files: u64,
    pub(crate) registry_bytes: u64,
    pub(crate) transcript_bytes: u64,
    pub(crate) archive_bytes: u64,
    pub(crate) quarantined_bytes: u64,
    pub(crate) lock_bytes: u64,
    pub(crate) temp_bytes: u64,
    /// Regular files of the directory that are not sessionkit's; not counted in `bytes`.
    pub(crate) other_bytes: u64,
    /// The regular files below the directory's subdirectories, at any depth, counted as the
    /// store's disk budget counts them; not counted in `bytes`.
    pub(crate) subdirectory_bytes: u64,
    /// `bytes`, `otherBytes` and `subdirectoryBytes`: what the store's disk budget counts, and
    /// what the budget is compared with.
    pub(crate) total_bytes: u64,
    pub(crate) max_bytes: Option<u64>,
    /// 80 % of `maxBytes`.
    pub(crate) high_water_bytes: Option<u64>,
}

/// The counts of the final line.
#[derive(Clone, Copy, Debug, Default, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Summary {
    pub(crate) problems: usize,
    pub(crate) fixed: usize,
    pub(crate) left: usize,
    /// I/O errors: files that could not be read, and repairs that failed.
    pub(crate) errors: usize,
}

/// The whole report, as `--json` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Report {
    pub(crate) dir: PathBuf,
    pub(crate) fix: bool,
    /// The section headers' counts, for people; the findings carry the details.
    #[serde(skip)]
    pub(crate) headers: Headers,
    pub(crate) registry: RegistryInfo,
    pub(crate) disk: DiskUse,
    pub(crate) findings: Vec<Finding>,
    pub(crate) actions: Vec<Action>,
    pub(crate) summary: Summary,
}

/// One line per section heading the human report.
#[derive(Debug, Default)]
pub(crate) struct Headers {
    pub(crate) locks: String,
    pub(crate) registry: String,
    pub(crate) transcripts: String,
    pub(crate) temps: String,
    pub(crate) disk: String,
}

impl Headers {
    fn of(&self, section: Section) -> &str {
        match section {
            Section::Locks => &self.locks,
            Section::Registry => &self.registry,
            Section::Transcripts => &self.transcripts,
            Section::Temps => &self.temps,
            Section::Disk => &self.disk,
        }
    }
}

/// Where actions go as they happen: printed at once for people, kept for the JSON report.
pub(crate) struct Actions {
    json: bool,
    done: Vec<Action>,
}

impl Actions {
    /// Records an action that succeeded, printing it at once for people.
    pub(crate) fn done(
        &mut self,
        action: &'static str,
        path: Option<&Path>,
        message: String,
    ) -> Result<(), Failure> {
        self.push(action, path, message, false)
    }

    /// Records an action that failed, printing it at once for people.
    pub(crate) fn failed(
        &mut self,
        action: &'static str,
        path: Option<&Path>,
        message: String,
    ) -> Result<(), Failure> {
        self.push(action, path, message, true)
    }

    fn push(
        &mut self,
        action: &'static str,
        path: Option<&Path>,
        message: String,
        failed: bool,
    ) -> Result<(), Failure> {
        if !self.json {
            let prefix = if failed { "error: " } else { "" };
            print(&format!("  {prefix}{}\n", one_line(&message)))?;
        }
        self.done.push(Action {
            action,
            path: path.map(Path::to_path_buf),
            message,
            failed,
        });
        Ok(())
    }
}

/// Examines the directory, repairs it with `--fix`, prints the report and returns the exit
/// status: 0 if nothing is left to fix, 65 if problems are left, 74 after an I/O error.
pub(crate) fn run(args: &DoctorArgs) -> Result<u8, Failure> {
    let dir = args.dir.as_path();
    // Lock settings are checked before anything is looked at, so a bad variable is a usage
    // error whatever the directory holds.
    let locker = sessionkit::lock::Locker::from_env()?;
    check_dir(dir)?;
    let settings = Settings {
        orphan_grace: args
            .orphan_grace
            .unwrap_or(sessionkit::store::DEFAULT_ORPHAN_GRACE),
        temp_older_than: args.temp_older_than.unwrap_or(TEMP_GRACE),
        max_disk_bytes: args.max_disk_bytes,
    };
    let mut report = diagnose::diagnose(dir, &settings)?;
    report.fix = args.fix;
    if !args.json {
        print(&human_findings(&report))?;
    }
    let mut actions = Actions {
        json: args.json,
        done: Vec::new(),
    };
    if args.fix {
        if !args.json {
            print("fix:\n")?;
        }
        fix::fix(dir, &settings, &locker, &mut report, &mut actions)?;
        if !args.json && actions.done.is_empty() {
            print("  nothing to do\n")?;
        }
    }
    report.actions = actions.done;
    report.summary = summarize(&report);
    if args.json {
        let mut json = serde_json::to_string_pretty(&report).map_err(Failure::DoctorJson)?;
        json.push('\n');
        print(&json)?;
    } else {
        print(&human_end(&report))?;
    }
    let s = report.summary;
    Ok(if s.errors > 0 {
        exit::IO_ERR
    } else if s.left > 0 {
        exit::DATA_ERR
    } else {
        exit::SUCCESS
    })
}

/// Fails unless `dir` is a directory that exists.
fn check_dir(dir: &Path) -> Result<(), Failure> {
    let failure = |source| Failure::Doctor {
        dir: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => Ok(()),
        Ok(_) => Err(failure(io::Error::new(
            io::ErrorKind::NotADirectory,
            "it is not a directory",
        ))),
        Err(e) => Err(failure(e)),
    }
}

/// Counts problems, what `--fix` fixed and left, and the I/O errors.
fn summarize(report: &Report) -> Summary {
    let problems = report.findings.iter().filter(|f| f.problem).count();
    let fixed = report
        .findings
        .iter()
        .filter(|f| f.problem && f.outcome == Some(Outcome::Fixed))
        .count();
    let errors = report.findings.iter().filter(|f| f.error).count()
        + report.actions.iter().filter(|a| a.failed).count();
    Summary {
        problems,
        fixed,
        left: problems - fixed,
        errors,
    }
}

/// The report for people, before any action: each section's heading, then its findings.
fn human_findings(report: &Report) -> String {
    let mut out = String::new();
    for section in Section::ALL {
        let _ = writeln!(out, "{}", one_line(report.headers.of(section)));
        for finding in report.findings.iter().filter(|f| f.section == section) {
            let _ = writeln!(out, "  {}", one_line(&finding.line()));
        }
    }
    out
}

/// The end of the report for people: with `--fix`, what is left; then the summary line.
fn human_end(report: &Report) -> String {
    let mut out = String::new();
    let left: Vec<&Finding> = report
        .findings
        .iter()
        .filter(|f| f.problem && f.outcome.is_some_and(|o| o != Outcome::Fixed))
        .collect();
    if !left.is_empty() {
        out.push_str("left:\n");
        for finding in left {
            let outcome = match finding.outcome {
                Some(Outcome::Quarantined) => "quarantined, for an operator to look at",
                Some(Outcome::Failed) => "the repair failed",
                _ => "left",
            };
            let _ = writeln!(
                out,
                "  {} ({outcome}): {}",
                finding.kind.as_str(),
                one_line(&finding.message)
            );
        }
    }
    let s = report.summary;
    let noun = if s.problems == 1 {
        "problem"
    } else {
        "problems"
    };
    let _ = write!(
        out,
        "doctor: {} {noun}, {} fixed, {} left",
        s.problems, s.fixed, s.left
    );
    if s.errors > 0 {
        let _ = write!(out, ", {} errors", s.errors);
    }
    out.push('\n');
    out
}

/// A duration in milliseconds, saturating.
pub(crate) fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// `path` in backticks, as every message names files.
pub(crate) fn quoted(path: &Path) -> String {
    format!("`{}`", path.display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_kebab_case() {
        assert_eq!(Kind::StaleLock.as_str(), "stale-lock");
        assert_eq!(
            Kind::RecentOrphanTranscript.as_str(),
            "recent-orphan-transcript"
        );
    }

    #[test]
    fn problems_say_what_fix_does_or_that_it_leaves_them() {
        let path = Path::new("/d/a.lock");
        let fixable = Finding::problem(
            Section::Locks,
            Kind::StaleLock,
            Some(path),
            "`/d/a.lock` is stale".to_owned(),
            Some("removes it".to_owned()),
        );
        assert_eq!(
            fixable.line(),
            "stale-lock: `/d/a.lock` is stale; --fix removes it"
        );
        let stuck = Finding::problem(
            Section::Registry,
            Kind::JournalUnsupported,
            None,
            "newer".to_owned(),
            None,
        );
        assert_eq!(stuck.line(), "journal-unsupported: newer; --fix leaves it");
        let info = Finding::info(Section::Locks, Kind::HeldLock, None, "held".to_owned());
        assert_eq!(info.line(), "held-lock: held");
    }

    #[test]
    fn the_summary_counts_only_fixed_problems_as_fixed() {
        let mut report = Report {
            dir: PathBuf::from("/d"),
            fix: true,
            headers: Headers::default(),
            registry: RegistryInfo::default(),
            disk: DiskUse::default(),
            findings: Vec::new(),
            actions: Vec::new(),
            summary: Summary::default(),
        };
        let problem = |outcome| Finding {
            outcome: Some(outcome),
            ..Finding::problem(Section::Locks, Kind::StaleLock, None, String::new(), None)
        };
        report.findings = vec![
            problem(Outcome::Fixed),
            problem(Outcome::Quarantined),
            problem(Outcome::Left),
            Finding::info(Section::Disk, Kind::OverHighWater, None, String::new()),
        ];
        let s = summarize(&report);
        assert_eq!((s.problems, s.fixed, s.left, s.errors), (3, 1, 2, 0));
    }
}
