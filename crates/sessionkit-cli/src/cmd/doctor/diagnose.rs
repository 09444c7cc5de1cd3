//! The read-only half of `doctor`: what is in the state directory and what is wrong with it.
//!
//! Nothing here writes: locks are judged by a dry-run sweep, the registry is read as `store
//! check` reads it, transcripts are read (only their last byte, or back to their last newline
//! if it shows a torn tail), and the rest is one directory listing.

use std::collections::HashMap;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use sessionkit::atomic_fs;
use sessionkit::store::{SeqTracker, State, is_transcript_name, journal_path_for};
use sessionkit::sweeper::{Status, SweepReport, Sweeper};

use super::{
    DiskUse, Finding, Headers, Kind, RegistryInfo, Report, SNAPSHOT, Section, Settings, Summary,
    human_age, quoted,
};
use crate::cmd::store::check::{self, Examined};
use crate::cmd::sweep::{reasons, sweep_error};
use crate::failure::Failure;

/// What kind of file a directory entry is, by its name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// `sessions.json`, its journal, or the journal's fence.
    Registry,
    /// `<sessionId>.jsonl` or `<sessionId>-topic-<thread>.jsonl`.
    Transcript,
    /// `*.jsonl.deleted.*`, `*.jsonl.reset.*`, `sessions.json.bak.*`.
    Archive,
    /// `sessions.json.corrupt.*`, `sessions.json.journal.corrupt.*`,
    /// `sessions.json.journal.fence.corrupt.*`.
    Quarantined,
    /// `*.lock` and `*.lock.gen`.
    Lock,
    /// An atomic-fs temp file.
    Temp,
    /// Not sessionkit's.
    Other,
}

/// One regular file of the directory.
#[derive(Clone, Debug)]
pub(crate) struct FileInfo {
    pub(crate) path: PathBuf,
    pub(crate) name: String,
    pub(crate) kind: FileKind,
    pub(crate) len: u64,
    /// Since it was last modified (zero for a file dated in the future).
    pub(crate) age: Duration,
}

/// Classifies a file name of the state directory.
pub(crate) fn classify(name: &str) -> FileKind {
    let journal = format!("{SNAPSHOT}.journal");
    if name == SNAPSHOT || name == journal || name == format!("{journal}.fence") {
        FileKind::Registry
    } else if atomic_fs::is_temp_file_name(name.as_ref()) {
        FileKind::Temp
    } else if name.ends_with(".lock") || name.ends_with(".lock.gen") {
        FileKind::Lock
    } else if is_transcript_name(name) {
        FileKind::Transcript
    } else if name.contains(".jsonl.deleted.")
        || name.contains(".jsonl.reset.")
        || name.starts_with(&format!("{SNAPSHOT}.bak."))
    {
        FileKind::Archive
    } else if name.starts_with(&format!("{SNAPSHOT}.corrupt."))
        || name.starts_with(&format!("{journal}.corrupt."))
        || name.starts_with(&format!("{journal}.fence.corrupt."))
    {
        FileKind::Quarantined
    } else {
        FileKind::Other
    }
}

/// The regular files of `dir`, sorted by name; symlinks and subdirectories are skipped.
fn list(dir: &Path) -> Result<Vec<FileInfo>, Failure> {
    let failure = |source| Failure::Doctor {
        dir: dir.to_path_buf(),
        source,
    };
    let now = SystemTime::now();
    let mut files = Vec::new();
    for entry in fs::read_dir(dir).map_err(failure)? {
        let entry = entry.map_err(failure)?;
        let meta = match entry.metadata() {
            Ok(meta) => meta,
            // Removed since the listing: nothing to report.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(failure(e)),
        };
        if !meta.file_type().is_file() {
            continue;
        }
        let name = entry.file_name().to_string_lossy().into_owned();
        let age = meta
            .modified()
            .ok()
            .and_then(|m| now.duration_since(m).ok())
            .unwrap_or(Duration::ZERO);
        files.push(FileInfo {
            kind: classify(&name),
            path: entry.path(),
            name,
            len: meta.len(),
            age,
        });
    }
    files.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(files)
}

/// The bytes of the regular files below the subdirectories of `dir`, at any depth, counted as
/// the store's maintenance counts them for its disk budget: symlinks are not followed, a
/// directory on another file system (a mount point) is skipped with everything below it, and
/// each directory is counted once, known by its device and inode (`dir`'s included), so a bind
/// mount of a directory inside itself is not counted again. A file with several hard links
/// counts once per link. What cannot be read counts as nothing, as it does for maintenance.
fn subdirectory_bytes(dir: &Path) -> u64 {
    use std::collections::HashSet;
    use std::os::unix::fs::MetadataExt as _;

    let Ok(top) = fs::metadata(dir) else {
        return 0;
    };
    let mut seen = HashSet::from([(top.dev(), top.ino())]);
    let mut first_visit =
        |meta: &fs::Metadata| meta.dev() == top.dev() && seen.insert((meta.dev(), meta.ino()));
    let mut total = 0;
    let mut pending = Vec::new();
    let mut below = |dir: &Path, pending: &mut Vec<PathBuf>, files: bool| {
        let Ok(entries) = fs::read_dir(dir) else {
            return;
        };
        for entry in entries.flatten() {
            // `DirEntry::metadata` does not follow a symlink.
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.is_dir() {
                if first_visit(&meta) {
                    pending.push(entry.path());
                }
            } else if files && meta.is_file() {
                total += meta.len();
            }
        }
    };
    // The files directly in `dir` are the listing's; only its subdirectories are walked here.
    below(dir, &mut pending, false);
    while let Some(next) = pending.pop() {
        below(&next, &mut pending, true);
    }
    total
}

/// What the registry looks like to `--fix`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RegistryState {
    /// Neither file exists.
    Missing,
    /// It can be opened (with `recover`, if it is damaged).
    Present,
    /// A newer version wrote the journal, or the files could not be read: leave it alone.
    Untouchable,
}

/// Examines `dir` and returns the report, without changing anything.
pub(crate) fn diagnose(dir: &Path, settings: &Settings) -> Result<Report, Failure> {
    let mut findings = Vec::new();
    let mut headers = Headers::default();
    let sweep = sweep_dry(dir, settings)?;
    locks(&sweep, &mut findings, &mut headers);
    let files = list(dir)?;
    let (registry, state) = registry(dir, &files, &mut findings, &mut headers);
    let held = held_locks(&sweep);
    transcripts(
        &files,
        state.as_ref(),
        &held,
        settings,
        &mut findings,
        &mut headers,
    );
    temps(&sweep, settings, &mut findings, &mut headers);
    let subdirectory_bytes = subdirectory_bytes(dir);
    let disk = disk(
        &files,
        subdirectory_bytes,
        settings,
        &mut findings,
        &mut headers,
    );
    Ok(Report {
        dir: dir.to_path_buf(),
        fix: false,
        headers,
        registry,
        disk,
        findings,
        actions: Vec::new(),
        summary: Summary::default(),
    })
}

/// The sweeper as `locks` and `sweep --dry-run` use it, with the temp age of this run.
pub(crate) fn sweeper(settings: &Settings, dry_run: bool) -> Result<Sweeper, Failure> {
    let mut builder = Sweeper::builder();
    builder
        .dry_run(dry_run)
        .temp_older_than(Some(settings.temp_older_than))
        .from_env();
    builder.build().map_err(sweep_error)
}

fn sweep_dry(dir: &Path, settings: &Settings) -> Result<SweepReport, Failure> {
    sweeper(settings, true)?.sweep(&[dir]).map_err(sweep_error)
}

/// The live holders of the locks, by lock file.
fn held_locks(sweep: &SweepReport) -> HashMap<PathBuf, Option<u32>> {
    sweep
        .entries
        .iter()
        .filter(|e| e.status == Some(Status::Held))
        .map(|e| (e.path.clone(), e.pid))
        .collect()
}

/// The lock section: one finding per lock file, from the dry-run sweep.
fn locks(sweep: &SweepReport, findings: &mut Vec<Finding>, headers: &mut Headers) {
    let (mut held, mut stale, mut malformed, mut not_locks) = (0, 0, 0, 0);
    for entry in &sweep.entries {
        let path = entry.path.as_path();
        let age = entry.age_ms.map(Duration::from_millis);
        let age_text = age.map_or_else(String::new, |a| format!(", age {}", human_age(a)));
        let pid_text = entry
            .pid
            .map_or_else(|| "no pid".to_owned(), |p| format!("pid {p}"));
        let finding = match entry.status {
            Some(_) if entry.not_a_record => {
                not_locks += 1;
                Finding::info(
                    Section::Locks,
                    Kind::NotALock,
                    Some(path),
                    format!(
                        "{} holds no lock record{age_text}: another program's file, never \
                         touched",
                        quoted(path)
                    ),
                )
            }
            Some(Status::Held) => {
                held += 1;
                let mut message = format!("{} is held by {pid_text}{age_text}", quoted(path));
                if !entry.reasons.is_empty() {
                    // Too old or past its max hold: reported, but a live owner is never robbed.
                    message.push_str(&format!(" ({})", reasons(entry)));
                }
                Finding::info(Section::Locks, Kind::HeldLock, Some(path), message)
            }
            Some(Status::Stale) => {
                stale += 1;
                Finding::problem(
                    Section::Locks,
                    Kind::StaleLock,
                    Some(path),
                    format!(
                        "{} is stale ({}), {pid_text}{age_text}",
                        quoted(path),
                        reasons(entry)
                    ),
                    Some("removes it".to_owned()),
                )
            }
            Some(_) => {
                malformed += 1;
                Finding::info(
                    Section::Locks,
                    Kind::MalformedLock,
                    Some(path),
                    format!(
                        "{} holds no valid owner record yet{age_text}: kept for the grace \
                         period, its owner may be writing it",
                        quoted(path)
                    ),
                )
            }
            None => Finding::error(
                Section::Locks,
                Kind::LockError,
                Some(path),
                format!(
                    "{} could not be judged: {}",
                    quoted(path),
                    entry.error.as_deref().unwrap_or("unknown error")
                ),
            ),
        };
        findings.push(finding.pid(entry.pid).age(age));
    }
    for dir in &sweep.dir_errors {
        findings.push(Finding::error(
            Section::Locks,
            Kind::LockError,
            Some(&dir.path),
            format!("{} could not be listed: {}", quoted(&dir.path), dir.error),
        ));
    }
    headers.locks = format!(
        "locks: {} ({held} held, {stale} stale, {malformed} malformed",
        sweep.entries.len()
    );
    if not_locks > 0 {
        headers.locks.push_str(&format!(", {not_locks} not locks"));
    }
    headers.locks.push(')');
}

/// The registry section; returns the registry's sizes and, if the entries are known, the
/// state `--fix` will see once it has opened the store (a corrupt snapshot without its
/// entries, a corrupt journal cut before its first bad line).
fn registry(
    dir: &Path,
    files: &[FileInfo],
    findings: &mut Vec<Finding>,
    headers: &mut Headers,
) -> (RegistryInfo, Option<State>) {
    let path = dir.join(SNAPSHOT);
    let mut info = RegistryInfo {
        journal_path: journal_path_for(&path),
        path: path.clone(),
        ..RegistryInfo::default()
    };
    let examined = match check::examine(&path) {
        Ok(examined) => examined,
        Err(Failure::Store(err)) if err.is_not_found() => {
            headers.registry = format!("registry: none in {}", quoted(dir));
            findings.push(Finding::info(
                Section::Registry,
                Kind::NoRegistry,
                Some(&path),
                format!(
                    "no registry: neither {} nor {} exists; transcripts are not judged as \
                     orphans",
                    quoted(&path),
                    quoted(&info.journal_path)
                ),
            ));
            quarantined(files, findings);
            return (info, None);
        }
        Err(err) => {
            info.exists = true;
            headers.registry = format!("registry: {}", quoted(&path));
            findings.push(Finding::error(
                Section::Registry,
                Kind::RegistryError,
                Some(&path),
                err.message(),
            ));
            quarantined(files, findings);
            return (info, None);
        }
    };
    info.exists = true;
    let Examined {
        journal,
        snapshot,
        records,
        snapshot_bytes,
        journal_bytes,
        problems,
    } = examined;
    info.snapshot_bytes = snapshot_bytes;
    info.journal_bytes = journal_bytes;
    let mut state = Some(snapshot);
    let mut cut_at = None;
    let mut skipped = false;
    let corrupt: Vec<_> = problems
        .iter()
        .filter(|p| p.kind == check::Kind::JournalCorrupt)
        .collect();
    for problem in &problems {
        let file = problem.file.as_path();
        match problem.kind {
            check::Kind::SnapshotCorrupt => findings.push(Finding::problem(
                Section::Registry,
                Kind::SnapshotCorrupt,
                Some(file),
                problem.message.clone(),
                Some(format!(
                    "quarantines it (renames it to {}, where its entries stay for an operator; \
                     the registry goes on without them)",
                    quoted(&aside(file))
                )),
            )),
            check::Kind::SnapshotMissing => {
                state = None;
                findings.push(Finding::problem(
                    Section::Registry,
                    Kind::SnapshotMissing,
                    Some(file),
                    format!(
                        "{}; restore it from a backup (`--fix` leaves the registry alone: \
                         opening it would go on with the journal's entries only)",
                        problem.message
                    ),
                    None,
                ));
            }
            check::Kind::JournalUnsupported => {
                state = None;
                findings.push(Finding::problem(
                    Section::Registry,
                    Kind::JournalUnsupported,
                    Some(file),
                    format!(
                        "{}; use the sessionkit version that wrote it",
                        problem.message
                    ),
                    None,
                ));
            }
            check::Kind::JournalTornTail | check::Kind::JournalFencedBatch => {
                let offset = problem.offset.unwrap_or(journal_bytes);
                let len = journal_bytes.saturating_sub(offset);
                let (kind, what) = if problem.kind == check::Kind::JournalTornTail {
                    (
                        Kind::JournalTornTail,
                        format!(
                            "a torn tail of {} at byte offset {offset}: an append was cut short \
                             by a crash",
                            check::count(len, "byte")
                        ),
                    )
                } else {
                    (
                        Kind::JournalFencedBatch,
                        format!(
                            "a failed batch of {} at byte offset {offset} that its writer could \
                             not cut back out, and fenced off from readers instead",
                            check::count(len, "byte")
                        ),
                    )
                };
                findings.push(
                    Finding::problem(
                        Section::Registry,
                        kind,
                        Some(file),
                        format!("{} ends in {what}", quoted(file)),
                        Some("cuts it, under the journal's lock".to_owned()),
                    )
                    .bytes(len),
                );
            }
            check::Kind::FenceCorrupt => findings.push(Finding::problem(
                Section::Registry,
                Kind::FenceCorrupt,
                Some(file),
                problem.message.clone(),
                Some(format!(
                    "quarantines it (renames it to {}; a failed batch it fenced off, if any, is \
                     then read as part of the journal)",
                    quoted(&aside(file))
                )),
            )),
            // Several corrupt lines are one problem: `--fix` quarantines the file once.
            check::Kind::JournalCorrupt => {}
            // `examine` replays nothing and looks at no transcript; the replay below and the
            // transcripts section find these.
            check::Kind::JournalSkippedRecord
            | check::Kind::TranscriptMissing
            | check::Kind::TranscriptError
            | check::Kind::TranscriptTornTail => {}
        }
    }
    if let Some(first) = corrupt.first() {
        let offset = first.offset.unwrap_or(0);
        cut_at = Some(offset);
        let kept = records.iter().filter(|r| r.offset < offset).count();
        let more = match corrupt.len() {
            1 => String::new(),
            n => format!(" ({n} problems in all)"),
        };
        findings.push(Finding::problem(
            Section::Registry,
            Kind::JournalCorrupt,
            Some(&journal),
            format!("{}{more}", first.message),
            Some(format!(
                "quarantines it (copies it to {} and replaces it with the {} before the damage)",
                quoted(&aside(&journal)),
                check::count(kept, "whole record")
            )),
        ));
    }
    if let Some(state) = state.as_mut() {
        let kept: Vec<_> = records
            .into_iter()
            .filter(|r| cut_at.is_none_or(|at| r.offset < at))
            .collect();
        let replayed = state.replay(&kept, &mut SeqTracker::new());
        skipped = !replayed.skipped.is_empty();
        for problem in check::skipped_records(&path, &journal, &kept, &replayed.skipped) {
            findings.push(Finding::problem(
                Section::Registry,
                Kind::JournalSkippedRecord,
                Some(&journal),
                problem.message,
                None,
            ));
        }
        info.journal_records = replayed.applied;
        info.entries = Some(state.len());
    }
    let entries = match info.entries {
        Some(n) => check::count(n, "entry"),
        None => "unknown entries".to_owned(),
    };
    headers.registry = format!(
        "registry: {}: {entries}, snapshot {}, journal {} with {}",
        quoted(&path),
        check::count(info.snapshot_bytes, "byte"),
        check::count(info.journal_bytes, "byte"),
        check::count(info.journal_records, "record")
    );
    // With a skipped record `--fix` leaves the registry alone (see `registry_state`).
    if state.is_some() && info.journal_records > 0 && !skipped {
        let mut compact = Finding::info(
            Section::Registry,
            Kind::Registry,
            Some(&journal),
            format!(
                "{} holds {} since the last compaction",
                quoted(&journal),
                check::count(info.journal_records, "record")
            ),
        );
        compact.fix = Some("compacts it into the snapshot".to_owned());
        findings.push(compact.bytes(info.journal_bytes));
    }
    quarantined(files, findings);
    (info, state)
}

/// `path` with `suffix` added to its name.
pub(crate) fn with_suffix(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// The name a damaged file is quarantined under, with the time left as a placeholder.
fn aside(path: &Path) -> PathBuf {
    with_suffix(path, ".corrupt.<UTC time>")
}

/// Quarantined files: information, since nothing ever deletes them.
fn quarantined(files: &[FileInfo], findings: &mut Vec<Finding>) {
    for f in files.iter().filter(|f| f.kind == FileKind::Quarantined) {
        // A damaged journal is copied aside and replaced, so that its path always names a
        // journal; a damaged snapshot is renamed.
        let what = if f.name.starts_with(&format!("{SNAPSHOT}.journal.corrupt.")) {
            "journal copied"
        } else if f
            .name
            .starts_with(&format!("{SNAPSHOT}.journal.fence.corrupt."))
        {
            "journal fence renamed"
        } else {
            "snapshot renamed"
        };
        findings.push(
            Finding::info(
                Section::Registry,
                Kind::QuarantinedFile,
                Some(&f.path),
                format!(
                    "{} ({}) is a damaged {what} aside {} ago; nothing removes it: look at \
                     it, then delete it",
                    quoted(&f.path),
                    check::count(f.len, "byte"),
                    human_age(f.age)
                ),
            )
            .age(Some(f.age))
            .bytes(f.len),
        );
    }
}

/// What the registry state says about the registry for `--fix`.
pub(crate) fn registry_state(report: &Report) -> RegistryState {
    let untouchable = report.findings.iter().any(|f| {
        f.section == Section::Registry
            && matches!(
                f.kind,
                Kind::JournalUnsupported
                    | Kind::SnapshotMissing
                    | Kind::JournalSkippedRecord
                    | Kind::RegistryError
            )
    });
    if untouchable {
        RegistryState::Untouchable
    } else if report.registry.exists {
        RegistryState::Present
    } else {
        RegistryState::Missing
    }
}

/// The transcripts section: torn tails, and orphans when the entries are known.
fn transcripts(
    files: &[FileInfo],
    state: Option<&State>,
    held: &HashMap<PathBuf, Option<u32>>,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    headers: &mut Headers,
) {
    let grace = human_age(settings.orphan_grace);
    let (mut count, mut bytes, mut archives) = (0, 0, 0);
    for f in files {
        if f.kind == FileKind::Archive {
            archives += 1;
        }
        if f.kind != FileKind::Transcript {
            continue;
        }
        count += 1;
        bytes += f.len;
        let path = f.path.as_path();
        match atomic_fs::find_torn_tail(path) {
            Ok(None) => {}
            Ok(Some(tail)) => {
                let holder = held.get(&with_suffix(path, ".lock"));
                let message = format!(
                    "{} ends in a torn tail of {} at byte offset {}: an append was cut short \
                     by a crash",
                    quoted(path),
                    check::count(tail.len, "byte"),
                    tail.offset
                );
                let finding = match holder {
                    Some(pid) => {
                        let by =
                            pid.map_or_else(|| "a live owner".to_owned(), |p| format!("pid {p}"));
                        Finding::problem(
                            Section::Transcripts,
                            Kind::TranscriptTornTail,
                            Some(path),
                            format!("{message}; its lock is held by {by}"),
                            None,
                        )
                        .pid(*pid)
                    }
                    None => Finding::problem(
                        Section::Transcripts,
                        Kind::TranscriptTornTail,
                        Some(path),
                        message,
                        Some("cuts it, under the transcript's write lock".to_owned()),
                    ),
                };
                findings.push(finding.bytes(tail.len));
            }
            Err(e) => findings.push(Finding::error(
                Section::Transcripts,
                Kind::TranscriptError,
                Some(path),
                format!("{} could not be read: {e}", quoted(path)),
            )),
        }
        let Some(state) = state else {
            continue;
        };
        if state.transcript_refs(&f.name) > 0 {
            continue;
        }
        let what = format!(
            "{} ({}) is referenced by no entry and was last modified {} ago",
            quoted(path),
            check::count(f.len, "byte"),
            human_age(f.age)
        );
        let finding = if f.age > settings.orphan_grace {
            Finding::problem(
                Section::Transcripts,
                Kind::OrphanTranscript,
                Some(path),
                format!("{what}, past the grace of {grace}"),
                Some(format!(
                    "archives it as {}",
                    quoted(&with_suffix(path, ".deleted.<UTC time>"))
                )),
            )
        } else {
            Finding::info(
                Section::Transcripts,
                Kind::RecentOrphanTranscript,
                Some(path),
                format!("{what}, within the grace of {grace}: kept, its entry may be on the way"),
            )
        };
        findings.push(finding.age(Some(f.age)).bytes(f.len));
    }
    headers.transcripts = format!(
        "transcripts: {count} ({}), {}",
        check::count(bytes, "byte"),
        check::count(archives, "archive")
    );
}

/// The temp-file section, from the dry-run sweep.
fn temps(
    sweep: &SweepReport,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    headers: &mut Headers,
) {
    let older = human_age(settings.temp_older_than);
    let Some(temps) = &sweep.temps else {
        headers.temps = "temp files: not looked at".to_owned();
        return;
    };
    for temp in &temps.removed {
        let age = Duration::from_millis(temp.age_ms);
        findings.push(
            Finding::problem(
                Section::Temps,
                Kind::TempFile,
                Some(&temp.path),
                format!(
                    "{} ({}) was last modified {} ago, more than {older}: a write that never \
                     finished",
                    quoted(&temp.path),
                    check::count(temp.len, "byte"),
                    human_age(age)
                ),
                Some("removes it".to_owned()),
            )
            .age(Some(age))
            .bytes(temp.len),
        );
    }
    if temps.kept_young > 0 {
        findings.push(Finding::info(
            Section::Temps,
            Kind::RecentTempFiles,
            None,
            format!(
                "{} temp files younger than {older} kept: a write may be in flight",
                temps.kept_young
            ),
        ));
    }
    for error in &temps.errors {
        findings.push(Finding::error(
            Section::Temps,
            Kind::TempError,
            Some(&error.path),
            format!("{}: {}", quoted(&error.path), error.error),
        ));
    }
    headers.temps = format!(
        "temp files: {} ({} older than {older})",
        temps.removed.len() as u64 + temps.kept_young,
        temps.removed.len()
    );
}

/// The disk section: the bytes of the sessionkit files by kind, other files and subdirectories,
/// and their total against the budget, as `store maintain` counts it.
fn disk(
    files: &[FileInfo],
    subdirectory_bytes: u64,
    settings: &Settings,
    findings: &mut Vec<Finding>,
    headers: &mut Headers,
) -> DiskUse {
    let mut use_ = DiskUse {
        subdirectory_bytes,
        max_bytes: settings.max_disk_bytes,
        high_water_bytes: settings
            .max_disk_bytes
            .map(|max| (max as f64 * sessionkit::store::DEFAULT_HIGH_WATER) as u64),
        ..DiskUse::default()
    };
    for f in files {
        let slot = match f.kind {
            FileKind::Registry => &mut use_.registry_bytes,
            FileKind::Transcript => &mut use_.transcript_bytes,
            FileKind::Archive => &mut use_.archive_bytes,
            FileKind::Quarantined => &mut use_.quarantined_bytes,
            FileKind::Lock => &mut use_.lock_bytes,
            FileKind::Temp => &mut use_.temp_bytes,
            FileKind::Other => {
                use_.other_bytes += f.len;
                continue;
            }
        };
        *slot += f.len;
        use_.bytes += f.len;
        use_.files += 1;
    }
    use_.total_bytes = use_.bytes + use_.other_bytes + use_.subdirectory_bytes;
    let breakdown = format!(
        "sessionkit files {} in {} (registry {}, transcripts {}, archives {}, quarantined {}, \
         locks {}, temp files {}), other files {}, subdirectories {}",
        use_.bytes,
        use_.files,
        use_.registry_bytes,
        use_.transcript_bytes,
        use_.archive_bytes,
        use_.quarantined_bytes,
        use_.lock_bytes,
        use_.temp_bytes,
        use_.other_bytes,
        use_.subdirectory_bytes,
    );
    let total = use_.total_bytes;
    headers.disk = match (use_.max_bytes, use_.high_water_bytes) {
        (Some(max), Some(high)) => {
            let percent = total.saturating_mul(100) / max.max(1);
            if total > max {
                // As maintenance decides: subdirectories that alone hold the high water mark
                // make it free nothing for the budget.
                let then = if use_.subdirectory_bytes > 0 && use_.subdirectory_bytes >= high {
                    format!(
                        "the subdirectories alone take {} bytes, at least the high water mark \
                         of {high} bytes, so `sessionkit store maintain --max-disk-bytes {max}` \
                         frees nothing for the budget; only removing files below them helps",
                        use_.subdirectory_bytes
                    )
                } else {
                    format!(
                        "`sessionkit store maintain --max-disk-bytes {max}` frees space down to \
                         {high} bytes, evicting the oldest entries if it must"
                    )
                };
                findings.push(
                    Finding::problem(
                        Section::Disk,
                        Kind::OverBudget,
                        None,
                        format!("{total} bytes are over the budget of {max} bytes; {then}"),
                        None,
                    )
                    .bytes(total),
                );
            } else if total > high {
                findings.push(
                    Finding::info(
                        Section::Disk,
                        Kind::OverHighWater,
                        None,
                        format!(
                            "{total} bytes are above the high water mark of {high} bytes (80 % of \
                             the budget)"
                        ),
                    )
                    .bytes(total),
                );
            }
            format!("disk: {total} of {max} bytes ({percent} %): {breakdown}")
        }
        _ => format!("disk: {total} bytes, no budget: {breakdown}"),
    };
    use_
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use proptest::sample::select;

    /// A session id as OpenClaw makes them: no dots, never starting with `-`.
    fn session_id() -> impl Strategy<Value = String> {
        "[A-Za-z0-9_]{1,12}(-[A-Za-z0-9_]{1,12}){0,4}"
    }

    /// `<sessionId>.jsonl` or `<sessionId>-topic-<thread>.jsonl`.
    fn transcript() -> impl Strategy<Value = String> {
        (session_id(), proptest::option::of("[0-9]{1,6}")).prop_map(|(id, thread)| match thread {
            Some(thread) => format!("{id}-topic-{thread}.jsonl"),
            None => format!("{id}.jsonl"),
        })
    }

    /// The times archive names end with: ours, OpenClaw's, and 13 digits of milliseconds.
    fn stamp() -> impl Strategy<Value = String> {
        prop_oneof![
            "[0-9]{8}T[0-9]{6}\\.[0-9]{3}Z",
            "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}-[0-9]{2}-[0-9]{2}\\.[0-9]{3}Z",
            "[0-9]{13}",
        ]
    }

    fn archive() -> impl Strategy<Value = String> {
        prop_oneof![
            (transcript(), select(vec!["deleted", "reset"]), stamp())
                .prop_map(|(t, why, stamp)| format!("{t}.{why}.{stamp}")),
            stamp().prop_map(|stamp| format!("sessions.json.bak.{stamp}")),
        ]
    }

    fn quarantined() -> impl Strategy<Value = String> {
        (
            select(vec!["sessions.json", "sessions.json.journal"]),
            stamp(),
            proptest::option::of(1_u32..100),
        )
            .prop_map(|(file, stamp, n)| match n {
                Some(n) => format!("{file}.corrupt.{stamp}.{n}"),
                None => format!("{file}.corrupt.{stamp}"),
            })
    }

    /// A lock sidecar of any file of the directory, or its generation file.
    fn lock() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                transcript(),
                Just("sessions.json".to_owned()),
                "[a-z.]{1,10}"
            ],
            select(vec![".lock", ".lock.gen"]),
        )
            .prop_map(|(file, ext)| format!("{file}{ext}"))
    }

    /// An atomic-fs temp file of the registry or a transcript.
    fn temp() -> impl Strategy<Value = String> {
        (
            prop_oneof![
                transcript(),
                Just("sessions.json".to_owned()),
                Just("sessions.json.journal".to_owned())
            ],
            "[0-9]{1,10}",
            "[0-9a-f]{16}",
        )
            .prop_map(|(target, pid, hex)| format!(".{target}.{pid}.{hex}.sktmp"))
    }

    /// Names one step away from a recognised one, none of which is sessionkit's.
    fn near_miss() -> impl Strategy<Value = String> {
        prop_oneof![
            session_id().prop_map(|id| format!("{id}.json")),
            transcript().prop_map(|t| format!("{t}x")),
            transcript().prop_map(|t| format!("{t}.deleted")),
            transcript().prop_map(|t| format!("{t}.bak.1")),
            select(vec![
                "sessions.jsonx",
                "sessions.json.tmp",
                "sessions.json.journalx",
                "sessions.json.corrupt",
                "sessions.json.bak",
                "sessions.json.journal.bak.1",
                ".jsonl",
                "sessions.json.LOCK",
            ])
            .prop_map(str::to_owned),
            (lock(), select(vec!["~", "x", ".1"])).prop_map(|(l, tail)| format!("{l}{tail}")),
            (transcript(), "[0-9a-f]{15}").prop_map(|(t, hex)| format!(".{t}.12.{hex}.sktmp")),
        ]
    }

    proptest! {
        #[test]
        fn generated_names_of_each_kind_get_that_kind(
            (name, kind) in prop_oneof![
                select(vec!["sessions.json", "sessions.json.journal"])
                    .prop_map(|n| (n.to_owned(), FileKind::Registry)),
                transcript().prop_map(|n| (n, FileKind::Transcript)),
                archive().prop_map(|n| (n, FileKind::Archive)),
                quarantined().prop_map(|n| (n, FileKind::Quarantined)),
                lock().prop_map(|n| (n, FileKind::Lock)),
                temp().prop_map(|n| (n, FileKind::Temp)),
                near_miss().prop_map(|n| (n, FileKind::Other)),
            ],
        ) {
            prop_assert_eq!(classify(&name), kind, "{:?}", name);
        }

        #[test]
        fn any_name_gets_a_kind_its_shape_allows(
            name in prop_oneof![
                "\\PC*",
                // Pieces of every pattern, in any order, so every kind turns up often.
                proptest::collection::vec(
                    select(vec![
                        "sessions", ".json", ".jsonl", ".journal", ".lock", ".gen", ".corrupt.",
                        ".deleted.", ".reset.", ".bak.", "-topic-", ".", "x", "1", ".sktmp",
                        "0123456789abcdef",
                    ]),
                    0..8,
                )
                .prop_map(|pieces| pieces.concat()),
            ],
        ) {
            // Each kind has a mark it cannot be without, whatever else the name holds.
            let allowed = match classify(&name) {
                FileKind::Registry => name == "sessions.json" || name == "sessions.json.journal",
                FileKind::Temp => name.starts_with('.') && name.ends_with(".sktmp"),
                FileKind::Lock => name.ends_with(".lock") || name.ends_with(".lock.gen"),
                FileKind::Transcript => name.ends_with(".jsonl") && name.len() > ".jsonl".len(),
                FileKind::Archive => [".deleted.", ".reset.", ".bak."].iter().any(|m| name.contains(m)),
                FileKind::Quarantined => name.contains(".corrupt."),
                FileKind::Other => true,
            };
            prop_assert!(allowed, "{:?}", name);
        }
    }

    #[test]
    fn file_names_are_classified_as_maintenance_sees_them() {
        for (name, kind) in [
            ("sessions.json", FileKind::Registry),
            ("sessions.json.journal", FileKind::Registry),
            ("0b7e.jsonl", FileKind::Transcript),
            ("0b7e-topic-9.jsonl", FileKind::Transcript),
            ("0b7e.jsonl.deleted.20261121T073012.123Z", FileKind::Archive),
            (
                "0b7e.jsonl.reset.2026-11-21T07-30-12.123Z",
                FileKind::Archive,
            ),
            ("sessions.json.bak.3", FileKind::Archive),
            (
                "sessions.json.corrupt.20261121T073012.123Z",
                FileKind::Quarantined,
            ),
            (
                "sessions.json.journal.corrupt.20261121T073012.123Z.1",
                FileKind::Quarantined,
            ),
            ("0b7e.jsonl.lock", FileKind::Lock),
            ("sessions.json.lock", FileKind::Lock),
            ("0b7e.jsonl.lock.gen", FileKind::Lock),
            (".sessions.json.4242.00c0ffee00c0ffee.sktmp", FileKind::Temp),
            (".jsonl", FileKind::Other),
            ("notes.txt", FileKind::Other),
            ("sessions.json.tmp", FileKind::Other),
        ] {
            assert_eq!(classify(name), kind, "{name}");
        }
    }
}
